/* status.c -- /v1/status/leader and /v1/status/peers: the Raft leader's and peers' server RPC
 * addresses as JSON strings, "" when there is no leader (Consul's status_endpoint.go). */
#include <jansson.h>
#include <string.h>

#include "api/internal.h"

static void status_leader(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (api_parse_query_opts(ctx, req, &(struct api_query_opts){0}) != 0) return;
  const char *leader = ctx->consensus ? consensus_leader_address(ctx->consensus) : NULL;
  http_respond_json(req, 200, json_string(leader ? leader : ""));
}

static void status_peers(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (api_parse_query_opts(ctx, req, &(struct api_query_opts){0}) != 0) return;
  json_t *list = json_array();
  if (ctx->consensus) {
    struct consensus_peer peers[16];
    size_t n = consensus_peers(ctx->consensus, peers, 16);
    for (size_t i = 0; i < n && i < 16; i++)
      if (peers[i].voter) json_array_append_new(list, json_string(peers[i].address));
  }
  http_respond_json(req, 200, list);
}

void api_status_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_GET, "/v1/status/leader", status_leader, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/status/peers", status_peers, ctx);
}
