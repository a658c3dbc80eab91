/* session.c -- /v1/session/...: Consul's session endpoints (agent/session_endpoint.go on the
 * HTTP side, agent/consul/session_endpoint.go on the server side) over the state store.
 *
 *   PUT /v1/session/create          optional JSON body; answers {"ID": "<uuid>"}
 *   PUT /v1/session/destroy/<id>    answers true (also for an unknown ID, as Consul)
 *   PUT /v1/session/renew/<id>      answers [session], 404 "Session id '<id>' not found"
 *   GET /v1/session/info/<id>       [session] or [] (blocking, consistency modes)
 *   GET /v1/session/node/<node>     the node's sessions (blocking)
 *   GET /v1/session/list            every session (blocking)
 *
 * Create follows Consul step by step: defaults (the agent's node, NodeChecks ["serfHealth"],
 * LockDelay 15 s, Behavior release), the body decoded as Go's encoding/json would (field names
 * case-insensitive; LockDelay a duration string or a number, numbers below 1000 taken as
 * seconds: structs.Session.UnmarshalJSON), fixupEmptySessionChecks for the deprecated Checks
 * field (python-consul sends "checks"), then Session.Apply's checks with its 500 answers
 * ("Must provide Node", "Invalid Behavior setting 'x'", the TTL range 10s..24h), a fresh UUID
 * unused in the store, and one Raft entry. What only the store can tell (no such node, a
 * missing or critical check) comes back from the apply in Consul's words, also as 500.
 *
 * Renew resets the session's TTL timer on the leader (state_session_renew); the timers run in
 * src/agent/session_ttl.c. Reads answer with the "sessions" table index, as Consul; info
 * wakes only when its own session changes, node and list on any session change. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "api/internal.h"
#include "lib/gojson.h"
#include "lib/alloc.h"
#include "lib/duration.h"
#include "lib/err.h"
#include "lib/jsonw.h"
#include "lib/rand.h"
#include "state/session.h"

/* structs.lockDelayMinThreshold: a LockDelay below this many nanoseconds means seconds. */
#define LOCK_DELAY_MIN_THRESHOLD 1000

/* ---- JSON ---- */

static void write_strs(struct jsonw *w, const char *const *v, size_t n, bool null)
{
  if (null && n == 0) {
    jsonw_null(w);
    return;
  }
  jsonw_array_begin(w);
  for (size_t i = 0; i < n; i++) jsonw_string(w, v[i]);
  jsonw_array_end(w);
}

/* One structs.Session, fields in Go's order (Checks is omitempty; CE prints no namespace). */
static void session_write(struct jsonw *w, const struct state_session *se)
{
  jsonw_object_begin(w);
  jsonw_key(w, "ID");
  jsonw_string(w, se->id);
  jsonw_key(w, "Name");
  jsonw_string(w, se->name);
  jsonw_key(w, "Node");
  jsonw_string(w, se->node);
  jsonw_key(w, "LockDelay");
  jsonw_i64(w, se->lock_delay_ns);
  jsonw_key(w, "Behavior");
  jsonw_string(w, se->behavior);
  jsonw_key(w, "TTL");
  jsonw_string(w, se->ttl);
  jsonw_key(w, "NodeChecks");
  write_strs(w, se->node_checks, se->n_node_checks, se->node_checks_null);
  jsonw_key(w, "ServiceChecks");
  if (se->service_checks_null && se->n_service_checks == 0) {
    jsonw_null(w);
  } else {
    jsonw_array_begin(w);
    for (size_t i = 0; i < se->n_service_checks; i++) {
      jsonw_object_begin(w);
      jsonw_key(w, "ID");
      jsonw_string(w, se->service_checks[i].id);
      jsonw_key(w, "Namespace");
      jsonw_string(w, se->service_checks[i].ns);
      jsonw_object_end(w);
    }
    jsonw_array_end(w);
  }
  if (se->n_checks) {
    jsonw_key(w, "Checks");
    write_strs(w, se->checks, se->n_checks, false);
  }
  jsonw_key(w, "CreateIndex");
  jsonw_u64(w, se->create_index);
  jsonw_key(w, "ModifyIndex");
  jsonw_u64(w, se->modify_index);
  jsonw_object_end(w);
}

static int each_write(const struct state_session *se, void *arg)
{
  session_write(arg, se);
  return 0;
}

/* ---- reads ---- */

static void info_read(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res)
{
  struct jsonw w;
  jsonw_init(&w, &res->body, http_query_has(req, "pretty"));
  const struct state_session *se = state_session_get(ctx->store, req->tail);
  res->index = state_table_index(ctx->store, "sessions");
  jsonw_array_begin(&w);
  if (se) session_write(&w, se);
  jsonw_array_end(&w);
  /* Wake only when this session changes (Consul watches its row). */
  char name[16 + STATE_SESSION_ID_LEN + 1];
  size_t n = strlen(req->tail);
  if (n <= STATE_SESSION_ID_LEN) {
    int len = snprintf(name, sizeof name, "session.%s", req->tail);
    for (int i = 8; i < len; i++)
      if (name[i] >= 'A' && name[i] <= 'Z') name[i] = (char)(name[i] - 'A' + 'a');
    api_read_watch(res, STATE_WATCH_TABLE, name, (size_t)len);
  } else {
    api_read_watch(res, STATE_WATCH_TABLE, "sessions", 8);
  }
}

static void node_read(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res)
{
  struct jsonw w;
  jsonw_init(&w, &res->body, http_query_has(req, "pretty"));
  res->index = state_table_index(ctx->store, "sessions");
  jsonw_array_begin(&w);
  state_session_node(ctx->store, req->tail, each_write, &w);
  jsonw_array_end(&w);
  api_read_watch(res, STATE_WATCH_TABLE, "sessions", 8);
}

static void list_read(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res)
{
  struct jsonw w;
  jsonw_init(&w, &res->body, http_query_has(req, "pretty"));
  res->index = state_table_index(ctx->store, "sessions");
  jsonw_array_begin(&w);
  state_session_list(ctx->store, each_write, &w);
  jsonw_array_end(&w);
  api_read_watch(res, STATE_WATCH_TABLE, "sessions", 8);
}

static void session_info(struct http_request *req, void *arg)
{
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing session");
    return;
  }
  api_read(arg, req, info_read);
}

static void session_node(struct http_request *req, void *arg)
{
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing node name");
    return;
  }
  api_read(arg, req, node_read);
}

static void session_list(struct http_request *req, void *arg) { api_read(arg, req, list_read); }

/* ---- create ---- */

/* The session being built from defaults and the body; strings point into the JSON tree or
 * into the arrays here (freed by create_free). */
struct create {
  struct state_session se;
  json_t *root;
  const char **node_checks, **checks;
  struct state_session_check *service_checks;
  char id[STATE_SESSION_ID_LEN + 1];
  char err[512];
};

static void create_free(struct create *c)
{
  json_decref(c->root);
  free(c->node_checks);
  free(c->checks);
  free(c->service_checks);
}

/* Go matches keys to fields case-insensitively; the last matching key wins. */
static json_t *field(json_t *obj, const char *name)
{
  json_t *hit = NULL, *v;
  const char *k;
  json_object_foreach(obj, k, v)
  {
    if (strcasecmp(k, name) == 0) hit = v;
  }
  return hit;
}

static int type_error(struct create *c, const json_t *v, const char *name, const char *gotype)
{
  snprintf(c->err, sizeof c->err,
           "Request decode failed: json: cannot unmarshal %s into Go struct field "
           "Alias.%s of type %s",
           json_go_kind(v), name, gotype);
  return -1;
}

/* A string field; absent or null leaves *out as it was. */
static int get_string(struct create *c, const char *name, const char **out)
{
  json_t *v = field(c->root, name);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_string(v)) return type_error(c, v, name, "string");
  *out = json_string_value(v);
  return 0;
}

/* A []string field: absent leaves it, null makes it nil, an array replaces it. */
static int get_strs(struct create *c, const char *name, const char ***store, const char *const **v,
                    size_t *n, bool *null)
{
  json_t *a = field(c->root, name);
  if (!a) return 0;
  if (json_is_null(a)) {
    *v = NULL;
    *n = 0;
    *null = true;
    return 0;
  }
  if (!json_is_array(a)) return type_error(c, a, name, "[]string");
  size_t count = json_array_size(a);
  if (count > STATE_SESSION_MAX_CHECKS) {
    snprintf(c->err, sizeof c->err, "Request decode failed: more than %d %s",
             STATE_SESSION_MAX_CHECKS, name);
    return -1;
  }
  free(*store);
  *store = xcalloc(count ? count : 1, sizeof **store);
  for (size_t i = 0; i < count; i++) {
    json_t *e = json_array_get(a, i);
    if (json_is_null(e)) (*store)[i] = "";
    else if (json_is_string(e)) (*store)[i] = json_string_value(e);
    else return type_error(c, e, name, "string");
  }
  *v = *store;
  *n = count;
  *null = false;
  return 0;
}

static int get_service_checks(struct create *c)
{
  json_t *a = field(c->root, "ServiceChecks");
  if (!a) return 0;
  struct state_session *se = &c->se;
  if (json_is_null(a)) {
    se->service_checks = NULL;
    se->n_service_checks = 0;
    se->service_checks_null = true;
    return 0;
  }
  if (!json_is_array(a)) return type_error(c, a, "ServiceChecks", "[]structs.ServiceCheck");
  size_t count = json_array_size(a);
  if (count > STATE_SESSION_MAX_CHECKS) {
    snprintf(c->err, sizeof c->err, "Request decode failed: more than %d ServiceChecks",
             STATE_SESSION_MAX_CHECKS);
    return -1;
  }
  free(c->service_checks);
  c->service_checks = xcalloc(count ? count : 1, sizeof *c->service_checks);
  for (size_t i = 0; i < count; i++) {
    json_t *e = json_array_get(a, i);
    c->service_checks[i] = (struct state_session_check){"", ""};
    if (json_is_null(e)) continue;
    if (!json_is_object(e)) return type_error(c, e, "ServiceChecks", "structs.ServiceCheck");
    json_t *id = NULL, *ns = NULL, *v;
    const char *k;
    json_object_foreach(e, k, v)
    {
      if (strcasecmp(k, "ID") == 0) id = v;
      else if (strcasecmp(k, "Namespace") == 0) ns = v;
    }
    if (id && !json_is_null(id) && !json_is_string(id)) return type_error(c, id, "ServiceChecks.ID", "string");
    if (ns && !json_is_null(ns) && !json_is_string(ns)) return type_error(c, ns, "ServiceChecks.Namespace", "string");
    if (id && json_is_string(id)) c->service_checks[i].id = json_string_value(id);
    if (ns && json_is_string(ns)) c->service_checks[i].ns = json_string_value(ns);
  }
  se->service_checks = c->service_checks;
  se->n_service_checks = count;
  se->service_checks_null = false;
  return 0;
}

/* structs.Session.UnmarshalJSON's LockDelay: a duration string or a number of nanoseconds,
 * either taken as seconds below 1000. */
static int get_lock_delay(struct create *c)
{
  json_t *v = field(c->root, "LockDelay");
  if (!v || json_is_null(v)) return 0;
  int64_t dur = 0;
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    if (duration_parse(s, strlen(s), &dur) != 0) {
      snprintf(c->err, sizeof c->err, "Request decode failed: time: invalid duration \"%.200s\"", s);
      return -1;
    }
  } else if (json_is_number(v)) {
    double d = json_number_value(v);
    if (d >= 9.2e18 || d <= -9.2e18) dur = d > 0 ? INT64_MAX : INT64_MIN;
    else dur = (int64_t)d;
  }
  if (dur < LOCK_DELAY_MIN_THRESHOLD) {
    /* Go multiplies without overflow checks; clamp instead of wrapping. */
    if (dur < INT64_MIN / 1000000000LL) dur = INT64_MIN;
    else dur *= 1000000000LL;
  }
  c->se.lock_delay_ns = dur;
  return 0;
}

/* Decodes the optional body over the defaults. Returns 0, or -1 with c->err set. */
static int create_decode(struct http_request *req, struct create *c)
{
  if (!req->body_len) return 0;
  json_error_t jerr;
  c->root = json_loadb((const char *)req->body, req->body_len, JSON_DECODE_ANY, &jerr);
  if (!c->root) {
    snprintf(c->err, sizeof c->err, "Request decode failed: %s", jerr.text);
    return -1;
  }
  if (json_is_null(c->root)) return 0;
  if (!json_is_object(c->root)) {
    snprintf(c->err, sizeof c->err,
             "Request decode failed: json: cannot unmarshal %s into Go value of type "
             "structs.Session",
             json_go_kind(c->root));
    return -1;
  }
  struct state_session *se = &c->se;
  if (get_string(c, "Name", &se->name) || get_string(c, "Node", &se->node) ||
      get_string(c, "Behavior", &se->behavior) || get_string(c, "TTL", &se->ttl) ||
      get_lock_delay(c))
    return -1;
  bool null_checks;
  if (get_strs(c, "NodeChecks", &c->node_checks, &se->node_checks, &se->n_node_checks,
               &se->node_checks_null) ||
      get_strs(c, "Checks", &c->checks, &se->checks, &se->n_checks, &null_checks) ||
      get_service_checks(c))
    return -1;
  return 0;
}

/* fixupEmptySessionChecks: the deprecated Checks field against the NodeChecks default. */
static void fixup_checks(struct state_session *se)
{
  if (se->n_checks == 0) {
    se->node_checks = NULL;
    se->n_node_checks = 0;
    se->node_checks_null = false; /* make([]string, 0) */
    se->checks = NULL;
    return;
  }
  if (se->n_checks == 1 && strcmp(se->checks[0], "serfHealth") == 0) {
    se->checks = NULL;
    se->n_checks = 0;
    return;
  }
  if (se->n_node_checks == 0) {
    se->checks = NULL;
    se->n_checks = 0;
  }
}

static void create_done(struct api_ctx *ctx, struct http_request *req,
                        const struct state_cmd_result *res, uint64_t index)
{
  (void)ctx;
  (void)index;
  if (!res->ok || !res->body) {
    http_respond_error(req, 500, "%s", res->msg[0] ? res->msg : "session create failed");
    return;
  }
  struct buf b = BUF_INIT;
  struct jsonw w;
  jsonw_init(&w, &b, http_query_has(req, "pretty"));
  jsonw_object_begin(&w);
  jsonw_key(&w, "ID");
  jsonw_stringn(&w, res->body, res->body_len);
  jsonw_object_end(&w);
  http_respond_buf(req, 200, "application/json", &b);
}

static bool other_dc(struct api_ctx *ctx, struct http_request *req)
{
  const char *dc = http_query(req, "dc");
  if (dc && *dc && strcasecmp(dc, ctx->cfg->datacenter) != 0) {
    http_respond_error(req, 500, "No path to datacenter");
    return true;
  }
  return false;
}

static void session_create(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (other_dc(ctx, req)) return;
  static const char *const serf[] = {"serfHealth"};
  struct create c = {0};
  c.se = (struct state_session){.node = api_origin_node(ctx, req),
                                .node_checks = serf,
                                .n_node_checks = 1,
                                .service_checks_null = true,
                                .checks = serf,
                                .n_checks = 1,
                                .lock_delay_ns = STATE_SESSION_DEFAULT_LOCK_DELAY_NS,
                                .behavior = "release",
                                .ttl = ""};
  if (create_decode(req, &c) != 0) {
    http_respond_error(req, 400, "%s", c.err);
    goto out;
  }
  struct state_session *se = &c.se;
  fixup_checks(se);
  /* Session.Apply */
  if (!se->node || !*se->node) {
    http_respond_error(req, 500, "Must provide Node");
    goto out;
  }
  if (!*se->behavior) se->behavior = "release";
  if (strcmp(se->behavior, "release") != 0 && strcmp(se->behavior, "delete") != 0) {
    http_respond_error(req, 500, "Invalid Behavior setting '%s'", se->behavior);
    goto out;
  }
  if (*se->ttl) {
    int64_t ttl;
    if (duration_parse(se->ttl, strlen(se->ttl), &ttl) != 0) {
      http_respond_error(req, 500, "Session TTL '%s' invalid: time: invalid duration \"%s\"",
                         se->ttl, se->ttl);
      goto out;
    }
    if (ttl != 0 && (ttl < STATE_SESSION_TTL_MIN_NS || ttl > STATE_SESSION_TTL_MAX_NS)) {
      char lo[32], hi[32];
      http_respond_error(req, 500, "Invalid Session TTL '%lld', must be between [%s=%s]",
                         (long long)ttl, duration_format(STATE_SESSION_TTL_MIN_NS, lo, sizeof lo),
                         duration_format(STATE_SESSION_TTL_MAX_NS, hi, sizeof hi));
      goto out;
    }
  }
  if (strlen(se->name ? se->name : "") > STATE_SESSION_MAX_NAME ||
      strlen(se->node) > STATE_CAT_MAX_NAME) {
    http_respond_error(req, 400, "Session Name or Node too long");
    goto out;
  }
  if (api_require_leader(ctx, req)) goto out;
  /* The ID is chosen here, before Raft, so that applying stays deterministic; unused in the
   * store (as Consul's loop over uuid.GenerateUUID). */
  do {
    rand_uuid(c.id);
  } while (state_session_get(ctx->store, c.id));
  se->id = c.id;
  char err[256];
  int rc = state_session_create_validate(ctx->store, se, err, sizeof err);
  if (rc == CC_EINVAL) {
    http_respond_error(req, 400, "%s", err);
    goto out;
  }
  /* Other refusals (no node, a critical check) are decided by the apply, which sees the
   * store as it is then, and answered by create_done. */
  struct buf cmd = BUF_INIT;
  state_cmd_encode_session_create(&cmd, se);
  api_write(ctx, req, &cmd, create_done);
  buf_free(&cmd);
out:
  create_free(&c);
}

/* ---- destroy and renew ---- */

static void destroy_done(struct api_ctx *ctx, struct http_request *req,
                         const struct state_cmd_result *res, uint64_t index)
{
  (void)ctx;
  (void)res;
  (void)index;
  http_respond(req, 200, "application/json", "true", 4);
}

static void session_destroy(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing session");
    return;
  }
  if (other_dc(ctx, req)) return;
  if (strlen(req->tail) > STATE_SESSION_ID_LEN) {
    /* No session has such an ID: nothing to destroy (Consul answers true). */
    if (!api_require_leader(ctx, req)) http_respond(req, 200, "application/json", "true", 4);
    return;
  }
  struct buf cmd = BUF_INIT;
  state_cmd_encode_session_destroy(&cmd, req->tail);
  api_write(ctx, req, &cmd, destroy_done);
  buf_free(&cmd);
}

static void session_renew(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  struct api_query_opts opts;
  if (api_parse_query_opts(ctx, req, &opts) != 0) return;
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing session");
    return;
  }
  if (!ctx->store) {
    http_respond_error(req, 500, "No known Consul servers");
    return;
  }
  /* Renewals go to the leader: its timers are the ones that count. */
  if (api_require_leader(ctx, req)) return;
  const struct state_session *se = state_session_renew(ctx->store, req->tail);
  if (!se) {
    http_respond_error(req, 404, "Session id '%s' not found", req->tail);
    return;
  }
  struct buf b = BUF_INIT;
  struct jsonw w;
  jsonw_init(&w, &b, http_query_has(req, "pretty"));
  jsonw_array_begin(&w);
  session_write(&w, se);
  jsonw_array_end(&w);
  http_respond_buf(req, 200, "application/json", &b);
}

void api_session_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_PUT, "/v1/session/create", session_create, ctx);
  http_server_route(ctx->http, HTTP_M_PUT, "/v1/session/destroy/", session_destroy, ctx);
  http_server_route(ctx->http, HTTP_M_PUT, "/v1/session/renew/", session_renew, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/session/info/", session_info, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/session/node/", session_node, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/session/list", session_list, ctx);
}
