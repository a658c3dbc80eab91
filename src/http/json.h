/* json.h -- JSON text exactly as Go's encoding/json writes it, for Consul-identical responses.
 *
 * Differences from jansson's json_dumps that this fixes: strings are HTML-safe ('<', '>', '&'
 * become \u003c \u003e \u0026, U+2028/U+2029 are escaped, invalid UTF-8 becomes \ufffd),
 * floats use Go's shortest form (0.1, 1e-07 -> 1e-7, 1e+21), and pretty output is
 * json.MarshalIndent(v, "", "    "). Object keys come out in the json_t's insertion order, so
 * callers that mirror a Go map (which Go sorts) must insert keys sorted. */
#ifndef CONCORD_HTTP_JSON_H
#define CONCORD_HTTP_JSON_H

#include <jansson.h>
#include <stdbool.h>

#include "lib/buf.h"

/* Appends j to out: compact (json.Marshal) or indented by 4 spaces (json.MarshalIndent).
 * Borrows j. No trailing newline. */
void http_json_encode(const json_t *j, bool pretty, struct buf *out);

#endif
