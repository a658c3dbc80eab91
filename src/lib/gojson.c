/* gojson.c -- Go's names for JSON values (see gojson.h). */
#include "lib/gojson.h"

const char *json_go_kind(const json_t *v)
{
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "object";
  case JSON_ARRAY: return "array";
  case JSON_STRING: return "string";
  case JSON_INTEGER:
  case JSON_REAL: return "number";
  case JSON_TRUE:
  case JSON_FALSE: return "bool";
  case JSON_NULL: return "null";
  }
  return "null";
}
