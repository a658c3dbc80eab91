/* gojson.h -- Go's names for JSON values, for error messages worded as Go's encoding/json
 * words them ("json: cannot unmarshal string into Go struct field X of type int"), which
 * Consul's API and CLI pass through to their users. */
#ifndef CONCORD_LIB_GOJSON_H
#define CONCORD_LIB_GOJSON_H

#include <jansson.h>

/* "object", "array", "string", "number", "bool" or "null" (a static string). */
const char *json_go_kind(const json_t *v);

#endif
