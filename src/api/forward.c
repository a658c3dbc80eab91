/* forward.c -- which requests this agent serves itself and which go to a server or to the
 * Raft leader (Consul's agent forwards every catalog/KV/session... RPC to a server; a server
 * forwards writes and default or consistent reads to the leader and answers ?stale reads
 * from its own store, agent/consul/rpc.go forward()).
 *
 * The decision is made once per request, before its handler runs, from the path alone: the
 * families below live in the state store; everything else (/v1/agent/, /v1/event/, the UI)
 * is the agent's own. The transport is the agent's (ctx->forward). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"

/* Endpoint families served from the replicated state. */
static const char *const state_prefixes[] = {
  "/v1/kv/", "/v1/catalog/", "/v1/health/", "/v1/session/", "/v1/txn", "/v1/status/",
  "/v1/operator/raft/", "/v1/operator/autopilot/", "/v1/query", "/v1/coordinate/",
  "/v1/acl/", "/v1/snapshot", "/v1/internal/", "/v1/connect/",
};

static bool has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static bool is_state_path(const char *path)
{
  for (size_t i = 0; i < sizeof state_prefixes / sizeof *state_prefixes; i++)
    if (has_prefix(path, state_prefixes[i])) return true;
  return false;
}

static unsigned forwarded_hops(const struct http_request *req)
{
  const char *h = http_header(req, API_FORWARD_HEADER);
  if (!h) return 0;
  unsigned long n = strtoul(h, NULL, 10);
  return n > 16 ? 16 : (unsigned)n;
}

static bool api_forward_hook(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (!ctx->forward || !is_state_path(req->path)) return false;
  unsigned hops = forwarded_hops(req);
  /* ?dc= naming another datacenter comes first: a client sends it to its server as any
   * request; a server sends it across the WAN to a server of that datacenter, which serves
   * it as its own (the datacenter list is every server's own, never forwarded). */
  const char *dc = http_query(req, "dc");
  if (ctx->store && dc && *dc && strcasecmp(dc, ctx->cfg->datacenter) != 0 && ctx->forward_dc &&
      strcmp(req->path, "/v1/catalog/datacenters") != 0) {
    ctx->forward_dc(ctx->forward_arg, req, dc, hops);
    return true;
  }
  if (!ctx->store) {
    /* a client agent holds no state: any server answers, and forwards on as needed */
    ctx->forward(ctx->forward_arg, req, false, hops);
    return true;
  }
  if (ctx->consensus && consensus_is_leader(ctx->consensus)) return false;
  /* A follower serves what does not need the leader: ?stale reads and its own status. */
  bool read = req->method == HTTP_M_GET || req->method == HTTP_M_HEAD;
  if (read && has_prefix(req->path, "/v1/status/")) return false;
  if (http_query_has(req, "stale") && (read || has_prefix(req->path, "/v1/txn"))) return false;
  /* client -> server -> leader is two hops; a third means leadership moved under us: answer
   * here (the handler says "No cluster leader") rather than bounce between servers */
  if (hops >= 2) return false;
  ctx->forward(ctx->forward_arg, req, true, hops);
  return true;
}

const char *api_origin_node(const struct api_ctx *ctx, const struct http_request *req)
{
  const char *h = http_header(req, API_ORIGIN_NODE_HEADER);
  if (h && *h && forwarded_hops(req) > 0) return h;
  return ctx->cfg->node_name;
}

void api__forward_init(struct api_ctx *ctx)
{
  http_server_set_dispatch_hook(ctx->http, api_forward_hook, ctx);
}
