/* fuzz_query_remote.c -- libFuzzer target for the server side of prepared query failover
 * (api_query_execute_remote): the PreparedQuery.ExecuteRemote body another datacenter's
 * server sends, {"Query": <query>, "Limit": n}, decoded and executed against a small catalog.
 * It must either refuse the body (NULL with a sentence) or answer an object whose Nodes is an
 * array no longer than the limit asks; anything else aborts. Seeds:
 * fuzz/corpus/query_remote/. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "state/catalog.h"
#include "state/store.h"

static struct state_store *store;
static struct config cfg;
static struct api_ctx ctx;

static void init(void)
{
  store = state_store_new();
  static const char *const tags[] = {"v1", "prod"};
  struct state_register_service svc = {.id = "web1", .name = "web", .tags = tags, .n_tags = 2,
                                       .port = 80};
  struct state_register reg = {.node = "n1", .address = "10.0.0.1", .service = &svc};
  if (state_catalog_register(store, 1, &reg, NULL, 0) != 0) abort();
  struct state_register_service svc2 = {.id = "web2", .name = "web", .port = 81};
  struct state_register reg2 = {.node = "n2", .address = "10.0.0.2", .service = &svc2};
  if (state_catalog_register(store, 2, &reg2, NULL, 0) != 0) abort();
  cfg.datacenter = (char *)"dc2";
  ctx.cfg = &cfg;
  ctx.store = store;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!store) init();
  char err[128] = "";
  json_t *o = api_query_execute_remote(&ctx, data, size, err, sizeof err);
  if (!o) {
    if (!err[0]) abort();
    return 0;
  }
  const json_t *nodes = json_object_get(o, "Nodes");
  if (!json_is_array(nodes) || json_array_size(nodes) > 2) abort();
  if (strcmp(json_string_value(json_object_get(o, "Datacenter")), "dc2") != 0) abort();
  json_decref(o);
  return 0;
}
