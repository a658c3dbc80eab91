/* fuzz_filter.c -- libFuzzer target for the ?filter parser and evaluator (src/filter/).
 *
 * A filter expression arrives in a query string from any client, so any bytes must give a
 * filter or an error message, never a crash, a leak, unbounded recursion or a sanitizer
 * report. Each input is compiled against the richest Consul type (CheckServiceNode: nested
 * structs, maps, lists of structs) and, when it compiles, evaluated against a row, twice
 * (evaluation must not change the filter). Seeds: fuzz/corpus/filter/, the expressions of
 * tests/unit/test_filter.c; dictionary: fuzz/filter.dict. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filter/filter.h"

static json_t *row;

static const char *row_json =
    "{\"Node\":{\"ID\":\"\",\"Node\":\"node-1\",\"Address\":\"10.0.0.1\",\"Datacenter\":\"dc1\","
    "\"TaggedAddresses\":{\"lan\":\"10.0.0.1\"},\"Meta\":{\"rack\":\"r12\"}},"
    "\"Service\":{\"ID\":\"web-1\",\"Service\":\"web\",\"Tags\":[\"v1\"],\"Address\":\"\","
    "\"TaggedAddresses\":{\"wan\":{\"Address\":\"1.2.3.4\",\"Port\":80}},"
    "\"Meta\":{\"version\":\"1\"},\"Port\":8080,\"Weights\":{\"Passing\":1,\"Warning\":1},"
    "\"EnableTagOverride\":false,\"Proxy\":{\"Mode\":\"\",\"MeshGateway\":{},\"Expose\":{},"
    "\"Upstreams\":[{\"DestinationName\":\"db\",\"LocalBindPort\":9000}]},\"Connect\":{}},"
    "\"Checks\":[{\"Node\":\"node-1\",\"CheckID\":\"serfHealth\",\"Status\":\"passing\","
    "\"ServiceTags\":[]}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!row) row = json_loads(row_json, 0, NULL);
  if (size > FILTER_MAX_EXPR + 16) return 0;
  char *expr = malloc(size + 1);
  memcpy(expr, data, size);
  expr[size] = '\0'; /* a NUL inside ends the expression, as a C string does */
  char err[256];
  struct filter *f = filter_new(expr, &filter_type_check_service_node, err, sizeof err);
  if (f) {
    bool a = filter_match(f, row);
    bool b = filter_match(f, row);
    if (a != b) abort();
    filter_free(f);
  } else if (!err[0]) {
    abort(); /* every refusal says why */
  }
  free(expr);
  return 0;
}
