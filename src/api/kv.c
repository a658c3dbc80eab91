/* kv.c -- /v1/kv/<key>: Consul's KV endpoint (agent/kvs_endpoint.go) over the state store.
 *
 * GET answers one entry, a prefix (?recurse) or key names (?keys, ?separator), as JSON or the
 * raw value (?raw), blocking with ?index. PUT sets (?flags, ?cas, ?acquire, ?release) and DELETE
 * removes (?recurse, ?cas) through Raft, answering true/false. Difference from the newest Consul,
 * on purpose: keys are not restricted to [A-Za-z0-9,-_./] nor refused for ending in ".json"
 * (1.17 allowed them and users rely on it); only path traversal ("../") is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "lib/alloc.h"
#include "lib/jsonw.h"
#include "state/cmd.h"
#include "state/session.h"

/* One DirEntry, fields in the order of Consul's structs.DirEntry. */
static void kv_entry_write(struct jsonw *w, const struct state_kv *e)
{
  jsonw_object_begin(w);
  jsonw_key(w, "LockIndex");
  jsonw_u64(w, e->lock_index);
  jsonw_key(w, "Key");
  jsonw_stringn(w, e->key, e->key_len);
  jsonw_key(w, "Flags");
  jsonw_u64(w, e->flags);
  jsonw_key(w, "Value");
  /* Go marshals the empty []byte read from an empty body as null. */
  jsonw_base64(w, e->value_len ? e->value : NULL, e->value_len);
  if (e->session) {
    jsonw_key(w, "Session");
    jsonw_string(w, e->session);
  }
  jsonw_key(w, "CreateIndex");
  jsonw_u64(w, e->create_index);
  jsonw_key(w, "ModifyIndex");
  jsonw_u64(w, e->modify_index);
  jsonw_object_end(w);
}

struct kv_collect {
  struct jsonw w;
  size_t count;
};

static int kv_collect(const struct state_kv *e, void *arg)
{
  struct kv_collect *c = arg;
  kv_entry_write(&c->w, e);
  c->count++;
  return 0;
}

static int kv_collect_key(const char *key, size_t len, void *arg)
{
  struct kv_collect *c = arg;
  jsonw_stringn(&c->w, key, len);
  c->count++;
  return 0;
}

/* The read proper; runs again for every wake of a parked query. */
static void kv_read(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res)
{
  const char *key = req->tail;
  size_t key_len = strlen(key);
  struct kv_collect c = {.count = 0};
  jsonw_init(&c.w, &res->body, http_query_has(req, "pretty"));
  if (http_query_has(req, "keys")) {
    const char *sep = http_query(req, "separator");
    if (!sep) sep = http_query(req, "seperator"); /* Consul still honours the old spelling */
    if (!sep) sep = "";
    jsonw_array_begin(&c.w);
    res->index = state_kv_keys(ctx->store, key, key_len, sep, strlen(sep), kv_collect_key, &c);
    jsonw_array_end(&c.w);
    api_read_watch(res, STATE_WATCH_KV_PREFIX, key, key_len);
    if (c.count == 0 && key_len > 0) {
      res->status = 404; /* Consul: not found, except for the root, which lists [] */
      buf_reset(&res->body);
    }
    return;
  }
  if (http_query_has(req, "recurse")) {
    jsonw_array_begin(&c.w);
    res->index = state_kv_list(ctx->store, key, key_len, kv_collect, &c);
    jsonw_array_end(&c.w);
    api_read_watch(res, STATE_WATCH_KV_PREFIX, key, key_len);
    if (c.count == 0) {
      res->status = 404;
      buf_reset(&res->body);
    }
    return;
  }
  const struct state_kv *e = state_kv_get(ctx->store, key, key_len, &res->index);
  api_read_watch(res, STATE_WATCH_KV_KEY, key, key_len);
  if (!e) {
    res->status = 404;
    return;
  }
  res->index = e->modify_index;
  if (http_query_has(req, "raw")) {
    /* Consul's defence against stored XSS: no sniffing, no script. */
    res->content_type = "text/plain";
    api_read_header(res, "X-Content-Type-Options", "nosniff");
    api_read_header(res, "Content-Security-Policy", "sandbox");
    buf_append(&res->body, e->value, e->value_len);
    return;
  }
  jsonw_array_begin(&c.w);
  kv_entry_write(&c.w, e);
  jsonw_array_end(&c.w);
}

/* Consul answers "Conflicting flags: <query>\n" when non-composable parameters are combined. */
static bool kv_conflicting(struct http_request *req, const char *const *names, size_t n)
{
  size_t found = 0;
  for (size_t i = 0; i < n; i++) found += http_query_has(req, names[i]);
  if (found < 2) return false;
  http_respond_error(req, 400, "Conflicting flags: %s\n", req->raw_query);
  return true;
}

static void kv_write_done(struct api_ctx *ctx, struct http_request *req,
                          const struct state_cmd_result *res, uint64_t index)
{
  (void)ctx;
  (void)index;
  /* Plain set and delete answer true whatever happened; CAS, lock and unlock tell. */
  bool answer = req->data ? res->ok : true;
  http_respond(req, 200, "application/json", answer ? "true" : "false", answer ? 4 : 5);
}

static bool kv_key_ok(struct http_request *req, const char *key)
{
  if (strstr(req->path, "../") || strstr(key, "..\\")) {
    http_respond_error(req, 400, "URL path contains invalid traversal sequence");
    return false;
  }
  return true;
}

static void kv_put(struct api_ctx *ctx, struct http_request *req)
{
  const char *key = req->tail;
  if (!*key) {
    http_respond_error(req, 400, "Missing key name");
    return;
  }
  static const char *const conflicts[] = {"cas", "acquire", "release"};
  if (kv_conflicting(req, conflicts, 3)) return;
  struct state_kv_op op = {.verb = STATE_KV_SET, .key = key, .key_len = strlen(key)};
  const char *v;
  if ((v = http_query(req, "flags")) && api_parse_u64(v, &op.flags) != 0) {
    http_respond_error(req, 400, "Invalid flags: %s", v);
    return;
  }
  if ((v = http_query(req, "cas"))) {
    if (api_parse_u64(v, &op.cas) != 0) {
      http_respond_error(req, 400, "Invalid cas index: %s", v);
      return;
    }
    op.verb = STATE_KV_CAS;
  }
  if ((v = http_query(req, "acquire"))) {
    op.verb = STATE_KV_LOCK;
    op.session = v;
  }
  if ((v = http_query(req, "release"))) {
    op.verb = STATE_KV_UNLOCK;
    op.session = v;
  }
  if (req->body_len > ctx->cfg->kv_max_value_size) {
    http_respond_error(req, 413,
                       "Request body(%zu bytes) too large, max size: %llu bytes. See "
                       "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.",
                       req->body_len, (unsigned long long)ctx->cfg->kv_max_value_size);
    return;
  }
  /* Lock-delay: after a holder's session is invalidated nobody may acquire the key for its
   * LockDelay. It is wall-clock state kept in memory on each server (as Consul's), so the
   * proposer checks it rather than the FSM. */
  if (op.verb == STATE_KV_LOCK && ctx->store && ctx->consensus &&
      consensus_is_leader(ctx->consensus) &&
      state_kv_lock_delay_ms(ctx->store, op.key, op.key_len) > 0) {
    http_respond(req, 200, "application/json", "false", 5);
    return;
  }
  op.value = req->body;
  op.value_len = req->body_len;
  struct buf cmd = BUF_INIT;
  state_cmd_encode_kv(&cmd, &op);
  req->data = op.verb == STATE_KV_SET ? NULL : (void *)1; /* "report the boolean" */
  api_write(ctx, req, &cmd, kv_write_done);
  buf_free(&cmd);
}

static void kv_delete(struct api_ctx *ctx, struct http_request *req)
{
  const char *key = req->tail;
  static const char *const conflicts[] = {"recurse", "cas"};
  if (kv_conflicting(req, conflicts, 2)) return;
  struct state_kv_op op = {.verb = STATE_KV_DELETE, .key = key, .key_len = strlen(key)};
  if (http_query_has(req, "recurse")) {
    op.verb = STATE_KV_DELETE_TREE;
  } else if (!*key) {
    http_respond_error(req, 400, "Missing key name");
    return;
  }
  const char *v = http_query(req, "cas");
  if (v) {
    if (api_parse_u64(v, &op.cas) != 0) {
      http_respond_error(req, 400, "Invalid cas index: %s", v);
      return;
    }
    op.verb = STATE_KV_DELETE_CAS;
  }
  struct buf cmd = BUF_INIT;
  state_cmd_encode_kv(&cmd, &op);
  req->data = op.verb == STATE_KV_DELETE_CAS ? (void *)1 : NULL;
  api_write(ctx, req, &cmd, kv_write_done);
  buf_free(&cmd);
}

static void kv_handler(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (!kv_key_ok(req, req->tail)) return;
  switch (req->method) {
    case HTTP_M_GET:
    case HTTP_M_HEAD:
      if (!*req->tail && !http_query_has(req, "recurse") && !http_query_has(req, "keys")) {
        http_respond_error(req, 400, "Missing key name");
        return;
      }
      api_read(ctx, req, kv_read);
      return;
    case HTTP_M_PUT:
      kv_put(ctx, req);
      return;
    case HTTP_M_DELETE:
      kv_delete(ctx, req);
      return;
    default:
      http_respond_error(req, 405, "method %s not allowed", req->method_name);
  }
}

void api_kv_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_GET | HTTP_M_HEAD | HTTP_M_PUT | HTTP_M_DELETE, "/v1/kv/",
                    kv_handler, ctx);
}
