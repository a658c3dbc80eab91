/* common.c -- query options, Consul's meta headers and Raft writes shared by every endpoint
 * (Consul's agent/http.go parse*, setMeta; the KVS.Apply path). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "lib/alloc.h"
#include "lib/duration.h"
#include "lib/err.h"
#include "lib/log.h"

int api_parse_u64(const char *s, uint64_t *out)
{
  if (!s || !*s) return -1;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    uint64_t d = (uint64_t)(*p - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int api_parse_query_opts(struct api_ctx *ctx, struct http_request *req,
                         struct api_query_opts *opts)
{
  memset(opts, 0, sizeof *opts);
  opts->wait_ns = API_DEFAULT_WAIT_NS;
  const char *dc = http_query(req, "dc");
  if (dc && *dc && strcasecmp(dc, ctx->cfg->datacenter) != 0) {
    /* No WAN federation yet: any other datacenter is unreachable, as Consul says it. */
    http_respond_error(req, 500, "No path to datacenter");
    return -1;
  }
  const char *wait = http_query(req, "wait");
  if (wait && *wait) {
    int64_t ns;
    if (duration_parse(wait, strlen(wait), &ns) != 0 || ns < 0) {
      http_respond_error(req, 400, "Invalid wait time");
      return -1;
    }
    opts->wait_ns = ns > API_MAX_WAIT_NS ? API_MAX_WAIT_NS : ns;
    if (opts->wait_ns == 0) opts->wait_ns = API_DEFAULT_WAIT_NS;
  }
  const char *index = http_query(req, "index");
  if (index && *index && api_parse_u64(index, &opts->min_index) != 0) {
    http_respond_error(req, 400, "Invalid index");
    return -1;
  }
  bool stale = http_query_has(req, "stale");
  bool consistent = http_query_has(req, "consistent");
  if (stale && consistent) {
    http_respond_error(req, 400, "Cannot specify ?stale with ?consistent, conflicting semantics.");
    return -1;
  }
  opts->mode = stale ? API_CONSISTENCY_STALE
                     : consistent ? API_CONSISTENCY_CONSISTENT : API_CONSISTENCY_DEFAULT;
  return 0;
}

void api_set_meta_headers(struct api_ctx *ctx, struct http_request *req, uint64_t index,
                          enum api_consistency mode)
{
  char v[32];
  snprintf(v, sizeof v, "%llu", (unsigned long long)(index ? index : 1));
  http_set_header(req, "X-Consul-Index", v);
  bool known = ctx->consensus && consensus_leader_address(ctx->consensus) != NULL;
  http_set_header(req, "X-Consul-KnownLeader", known ? "true" : "false");
  uint64_t contact = ctx->consensus ? consensus_last_contact_ms(ctx->consensus) : 0;
  snprintf(v, sizeof v, "%llu", (unsigned long long)contact);
  http_set_header(req, "X-Consul-LastContact", v);
  http_set_header(req, "X-Consul-Effective-Consistency",
                  mode == API_CONSISTENCY_STALE ? "stale"
                  : mode == API_CONSISTENCY_CONSISTENT ? "consistent" : "leader");
}

void api_respond_no_leader(struct http_request *req)
{
  http_set_header(req, "X-Consul-KnownLeader", "false");
  http_respond_error(req, 500, "No cluster leader");
}

bool api_require_leader(struct api_ctx *ctx, struct http_request *req)
{
  if (ctx->consensus && consensus_is_leader(ctx->consensus)) return false;
  /* A server that is not the leader answers as Consul does when no leader is known (requests
   * that another server could serve were forwarded before reaching a handler). */
  api_respond_no_leader(req);
  return true;
}

/* One write in flight: lives until the commit callback, even if the client leaves first. */
struct api_write_op {
  struct api_ctx *ctx;
  struct http_request *req; /* NULL once the client has gone */
  api_write_done_fn done;
};

static void api_write_cancel(struct http_request *req, void *arg)
{
  struct api_write_op *op = arg;
  (void)req;
  op->req = NULL;
}

static void api_write_applied(void *arg, int status, const struct state_cmd_result *res,
                              uint64_t index)
{
  struct api_write_op *op = arg;
  if (op->req) {
    http_request_on_cancel(op->req, NULL, NULL);
    if (status == CC_ENOTLEADER) {
      /* The entry was in our log when we stepped down: it may never commit. Consul answers
       * with raft's ErrLeadershipLost text (rpc.go raftApply returns it as is). Not
       * api_require_leader(): libraft fails pending requests inside its step-down, before its
       * state leaves RAFT_LEADER, so "am I leader?" still says yes here. */
      http_respond_error(op->req, 500, "leadership lost while committing log");
    } else if (status != 0) {
      http_respond_error(op->req, 500, "%s", cc_strerror(status));
    } else if (res->err != 0) {
      http_respond_error(op->req, res->err == CC_EINVAL ? 400 : 500, "%s",
                         res->msg[0] ? res->msg : cc_strerror(res->err));
    } else {
      op->done(op->ctx, op->req, res, index);
    }
  }
  free(op);
}

void api_write(struct api_ctx *ctx, struct http_request *req, const struct buf *cmd,
               api_write_done_fn done)
{
  if (api_require_leader(ctx, req)) return;
  struct api_write_op *op = xcalloc(1, sizeof *op);
  op->ctx = ctx;
  op->req = req;
  op->done = done;
  int rv = consensus_apply(ctx->consensus, cmd, api_write_applied, op);
  if (rv != 0) {
    free(op);
    if (rv == CC_ENOTLEADER) api_require_leader(ctx, req);
    else http_respond_error(req, 500, "%s", cc_strerror(rv));
    return;
  }
  http_request_on_cancel(req, api_write_cancel, op);
}
