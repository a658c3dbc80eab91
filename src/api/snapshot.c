/* snapshot.c -- /v1/snapshot: GET saves the whole state store as Consul's snapshot archive
 * (archive/archive.h), PUT restores one (agent/snapshot_endpoint.go).
 *
 * Both run on the leader (api/forward.c sends them there; GET ?stale is served by any
 * server). A restore is checked completely first (gzip, tar, SHA256SUMS, meta.json, and the
 * store document itself), so a bad archive answers 400 with nothing changed; then it goes
 * through Raft as one command (state/cmd.h, STATE_CMD_RESTORE) that every server applies at
 * the same log index, so all stores match, it survives restarts, and every watch fires.
 * state.bin is our store's encoding, not Consul's FSM stream: a Consul snapshot is refused. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/internal.h"
#include "archive/archive.h"
#include "consensus/consensus.h"
#include "http/server.h"
#include "lib/err.h"
#include "lib/log.h"

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void snapshot_save(struct api_ctx *ctx, struct http_request *req)
{
  struct api_query_opts opts;
  if (api_parse_query_opts(ctx, req, &opts) != 0) return;
  if (!ctx->store) {
    http_respond_error(req, 500, "No known Consul servers");
    return;
  }
  if (opts.mode != API_CONSISTENCY_STALE && api_require_leader(ctx, req)) return;

  struct buf state = BUF_INIT, out = BUF_INIT;
  state_store_snapshot(ctx->store, &state);
  uint64_t index = state_store_index(ctx->store);
  if (index == 0) index = 1; /* as every read answers */
  struct archive_meta meta = {.index = index, .version = 1, .size = state.len};
  meta.term = ctx->consensus ? consensus_term(ctx->consensus) : 0;
  int64_t ms = now_ms();
  snprintf(meta.id, sizeof meta.id, "%llu-%llu-%lld", (unsigned long long)meta.term,
           (unsigned long long)index, (long long)ms);
  if (state.len > API_SNAPSHOT_MAX_STATE)
    log_warn("api.snapshot", "snapshot state is %zu bytes: over the %zu a restore accepts",
             state.len, API_SNAPSHOT_MAX_STATE);
  archive_write(&out, &meta, state.data, state.len, ms / 1000);
  buf_free(&state);
  api_set_meta_headers(ctx, req, index, opts.mode);
  /* Consul sets no type; Go's content sniffing answers this for gzip data */
  http_respond_buf(req, 200, "application/x-gzip", &out);
}

static void restore_done(struct api_ctx *ctx, struct http_request *req,
                         const struct state_cmd_result *res, uint64_t index)
{
  (void)res;
  log_info("api.snapshot", "restored a snapshot at Raft index %llu", (unsigned long long)index);
  if (ctx->store) {
    char ix[24];
    snprintf(ix, sizeof ix, "%llu", (unsigned long long)state_store_index(ctx->store));
    http_set_header(req, "X-Consul-Index", ix);
  }
  http_respond(req, 200, NULL, "", 0);
}

static void snapshot_restore(struct api_ctx *ctx, struct http_request *req)
{
  struct api_query_opts opts;
  if (api_parse_query_opts(ctx, req, &opts) != 0) return;
  if (!ctx->store) {
    http_respond_error(req, 500, "No known Consul servers");
    return;
  }
  if (api_require_leader(ctx, req)) return;

  struct archive_meta meta;
  struct buf cmd = BUF_INIT, state = BUF_INIT;
  char err[256];
  int rc = archive_read(req->body, req->body_len, API_SNAPSHOT_MAX_STATE, &meta, &state, err,
                        sizeof err);
  if (rc == CC_ETOOBIG) {
    http_respond_error(req, 413, "Snapshot too large: %s (a restore is one Raft entry)", err);
    return;
  }
  if (rc != 0) {
    http_respond_error(req, 400, "Invalid snapshot: %s", err);
    return;
  }
  if (state_snapshot_check(state.data, state.len) != 0) {
    buf_free(&state);
    http_respond_error(req, 400,
                       "Invalid snapshot: state.bin is not a Concord state store "
                       "(snapshots of Consul servers cannot be restored)");
    return;
  }
  state_cmd_encode_restore(&cmd, state.data, state.len);
  buf_free(&state);
  api_write(ctx, req, &cmd, restore_done);
  buf_free(&cmd);
}

static void snapshot_endpoint(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (req->method == HTTP_M_GET) snapshot_save(ctx, req);
  else snapshot_restore(ctx, req);
}

void api_snapshot_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_GET | HTTP_M_PUT, API_SNAPSHOT_PATH, snapshot_endpoint,
                    ctx);
}
