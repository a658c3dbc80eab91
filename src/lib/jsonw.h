/* jsonw.h -- a streaming JSON writer that prints what Go's encoding/json prints.
 *
 * Why not jansson here: jansson's integers are signed 64-bit, and Consul's KV Flags and indexes
 * are uint64 (a Flags of 2^64-1 must print as 18446744073709551615); and hot read paths (KV
 * GET) should not build a tree to throw away. Strings are escaped as Go does: \" \\ \n \r \t,
 * other control bytes and the HTML-sensitive < > & as \u00XX, U+2028/2029 as \u2028/\u2029,
 * and invalid UTF-8 as \ufffd. With `pretty`, layout is Go's json.MarshalIndent(v, "", "    ").
 *
 *   struct jsonw w; jsonw_init(&w, &buf, pretty);
 *   jsonw_array_begin(&w); jsonw_object_begin(&w); jsonw_key(&w, "Key"); jsonw_string(&w, k);
 *   jsonw_object_end(&w); jsonw_array_end(&w);
 */
#ifndef CONCORD_LIB_JSONW_H
#define CONCORD_LIB_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define JSONW_MAX_DEPTH 32

struct jsonw {
  struct buf *out;     /* borrowed */
  bool pretty;
  int depth;
  bool first[JSONW_MAX_DEPTH]; /* no member written yet at this depth */
  bool after_key;
};

void jsonw_init(struct jsonw *w, struct buf *out, bool pretty);
void jsonw_object_begin(struct jsonw *w);
void jsonw_object_end(struct jsonw *w);
void jsonw_array_begin(struct jsonw *w);
void jsonw_array_end(struct jsonw *w);
void jsonw_key(struct jsonw *w, const char *key);
void jsonw_string(struct jsonw *w, const char *s);
void jsonw_stringn(struct jsonw *w, const char *s, size_t len);
void jsonw_u64(struct jsonw *w, uint64_t v);
void jsonw_i64(struct jsonw *w, int64_t v);
void jsonw_bool(struct jsonw *w, bool v);
void jsonw_null(struct jsonw *w);
/* Base64 of bytes as a JSON string (Go's []byte), or null when data is NULL. */
void jsonw_base64(struct jsonw *w, const void *data, size_t len);
/* Appends already-encoded JSON as one value. */
void jsonw_raw(struct jsonw *w, const char *json, size_t len);
/* Escapes s into out without quotes (used by jsonw_stringn). */
void jsonw_escape(struct buf *out, const char *s, size_t len);

#endif
