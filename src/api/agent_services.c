/* agent_services.c -- the agent's own services and checks over HTTP (Consul's
 * agent/agent_endpoint.go: AgentServices, AgentService, AgentRegisterService,
 * AgentDeregisterService, AgentServiceMaintenance, AgentChecks, AgentRegisterCheck,
 * AgentDeregisterCheck, AgentCheckPass/Warn/Fail/Update, AgentNodeMaintenance,
 * AgentHealthServiceByID/ByName).
 *
 * The work and Consul's validation messages live in src/local/; this file routes, reads query
 * parameters and answers: writes answer 200 with an empty body, failures the status and text
 * local/ chose. GET /v1/agent/service/<id> supports Consul's hash-based blocking
 * (?hash=<ContentHash>&wait=): it parks until the local state changes in a way that changes
 * the answer. These endpoints exist only when the agent wired a local state (ctx->local).
 *
 * Difference from Consul 1.x, on purpose: service/deregister, check/deregister and
 * check/pass|warn|fail also accept GET, as Consul before 1.0 did, because python-consul 0.7
 * (Debian's) still sends GET for them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "filter/filter.h"
#include "http/json.h"
#include "lib/alloc.h"
#include "lib/duration.h"
#include "lib/rand.h"
#include "local/local.h"

#define LOCAL_STATUS_TEXT 1100

static const char *req_token(struct http_request *req)
{
  const char *t = http_header(req, "X-Consul-Token");
  if (!t) t = http_query(req, "token");
  return t ? t : "";
}

static void answer(struct http_request *req, int status, const char *err)
{
  if (status == 0) http_respond(req, 200, "application/json", "", 0);
  else http_respond_error(req, status, "%s", err);
}

/* ?filter= over a map of rows (Consul filters the map's values). Returns false after
 * answering 400 for a bad expression. */
static bool filtered(struct http_request *req, json_t **map, const struct filter_type *type)
{
  const char *expr = http_query(req, "filter");
  if (!expr || !*expr) return true;
  char msg[256];
  struct filter *f = filter_new(expr, type, msg, sizeof msg);
  if (!f) {
    http_respond_error(req, 400, "Failed to create boolean expression evaluator: %s", msg);
    json_decref(*map);
    return false;
  }
  json_t *out = json_object();
  const char *k;
  json_t *v;
  json_object_foreach(*map, k, v) {
    if (filter_match(f, v)) json_object_set(out, k, v);
  }
  filter_free(f);
  json_decref(*map);
  *map = out;
  return true;
}

static void services_list(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  json_t *m = local_services_json(ctx->local);
  if (filtered(req, &m, &filter_type_node_service)) http_respond_json(req, 200, m);
}

static void checks_list(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  json_t *m = local_checks_json(ctx->local);
  if (filtered(req, &m, &filter_type_health_check)) http_respond_json(req, 200, m);
}

/* ---- GET /v1/agent/service/<id>, with hash-based blocking ---- */

struct parked {
  struct api_ctx *ctx;
  struct http_request *req;
  struct local_watch *watch;
  uv_timer_t timer;
  char *id, *hash;
};

static void parked_closed(uv_handle_t *h)
{
  struct parked *p = h->data;
  free(p->id);
  free(p->hash);
  free(p);
}

static void parked_end(struct parked *p)
{
  local_watch_cancel(p->watch);
  p->watch = NULL;
  uv_timer_stop(&p->timer);
  uv_close((uv_handle_t *)&p->timer, parked_closed);
}

/* Answers with the service now. Returns true if it answered (false: hash unchanged). */
static bool service_answer(struct api_ctx *ctx, struct http_request *req, const char *id,
                           const char *hash, bool force)
{
  json_t *s = local_service_json(ctx->local, id);
  if (!s) {
    http_respond_error(req, 404, "unknown service ID: %s", id);
    return true;
  }
  const char *h = json_string_value(json_object_get(s, "ContentHash"));
  if (!force && hash && h && strcmp(hash, h) == 0) {
    json_decref(s);
    return false;
  }
  if (h) http_set_header(req, "X-Consul-ContentHash", h);
  http_respond_json(req, 200, s);
  return true;
}

static void parked_changed(void *arg);

static void parked_cancel(struct http_request *req, void *arg)
{
  (void)req;
  parked_end(arg);
}

static void parked_timeout(uv_timer_t *t)
{
  struct parked *p = t->data;
  http_request_on_cancel(p->req, NULL, NULL); /* before answering: answering frees req */
  service_answer(p->ctx, p->req, p->id, p->hash, true);
  parked_end(p);
}

/* True when the answer would differ from the client's hash (or the service went). */
static bool service_changed(struct api_ctx *ctx, const char *id, const char *hash)
{
  json_t *s = local_service_json(ctx->local, id);
  if (!s) return true;
  const char *h = json_string_value(json_object_get(s, "ContentHash"));
  bool changed = !h || strcmp(h, hash) != 0;
  json_decref(s);
  return changed;
}

static void parked_changed(void *arg)
{
  struct parked *p = arg;
  p->watch = NULL; /* fired watches are freed */
  if (!service_changed(p->ctx, p->id, p->hash)) {
    p->watch = local_watch_add(p->ctx->local, parked_changed, p);
    return;
  }
  http_request_on_cancel(p->req, NULL, NULL);
  service_answer(p->ctx, p->req, p->id, p->hash, true);
  parked_end(p);
}

static void service_get(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  const char *id = req->tail;
  const char *hash = http_query(req, "hash");
  if (!hash || !*hash) {
    service_answer(ctx, req, id, NULL, true);
    return;
  }
  int64_t wait = API_DEFAULT_WAIT_NS;
  const char *w = http_query(req, "wait");
  if (w && *w) {
    if (duration_parse(w, strlen(w), &wait) != 0 || wait < 0) {
      http_respond_error(req, 400, "Invalid wait time");
      return;
    }
    if (wait == 0) wait = API_DEFAULT_WAIT_NS;
    if (wait > API_MAX_WAIT_NS) wait = API_MAX_WAIT_NS;
  }
  if (service_answer(ctx, req, id, hash, false)) return;
  struct parked *p = xcalloc(1, sizeof *p);
  p->ctx = ctx;
  p->req = req;
  p->id = xstrdup(id);
  p->hash = xstrdup(hash);
  uv_timer_init(ctx->loop, &p->timer);
  p->timer.data = p;
  uint64_t ms = (uint64_t)(wait / 1000000);
  ms += rand_below(ms / 16 + 1); /* Consul's jitter: up to wait/16 */
  uv_timer_start(&p->timer, parked_timeout, ms, 0);
  p->watch = local_watch_add(ctx->local, parked_changed, p);
  http_request_on_cancel(req, parked_cancel, p);
}

/* ---- GET /v1/agent/health/service/id/<id> and name/<name> ---- */

/* Consul answers these with the aggregated status as the HTTP status: 200 passing, 429
 * warning, 503 otherwise (critical, maintenance), as text with Accept: text/plain or
 * ?format=text. */
static int health_code(const char *status)
{
  return strcmp(status, "passing") == 0 ? 200 : strcmp(status, "warning") == 0 ? 429 : 503;
}

static bool want_text(struct http_request *req)
{
  const char *accept = http_header(req, "Accept");
  if (accept && strncmp(accept, "text/plain", 10) == 0) return true;
  const char *format = http_query(req, "format");
  return format && *format && strcmp(format, "text") == 0;
}

static void health_by_id(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  const char *id = req->tail;
  if (!*id) {
    http_respond_error(req, 400, "Missing serviceID");
    return;
  }
  json_t *info = local_service_health_json(ctx->local, id);
  if (!info) {
    if (want_text(req)) {
      http_respond_error(req, 404, "ServiceId %s not found", id);
      return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "AggregatedStatus", json_string("critical"));
    json_object_set_new(o, "Service", json_null());
    json_object_set_new(o, "Checks", json_null());
    http_respond_json(req, 404, o);
    return;
  }
  const char *agg = json_string_value(json_object_get(info, "AggregatedStatus"));
  int code = health_code(agg);
  if (want_text(req)) {
    http_respond(req, code, "text/plain", agg, strlen(agg));
    json_decref(info);
    return;
  }
  http_respond_json(req, code, info);
}

static void health_by_name(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  const char *name = req->tail;
  if (!*name) {
    http_respond_error(req, 400, "Missing service Name");
    return;
  }
  json_t *all = local_service_health_by_name_json(ctx->local, name);
  int code = 404;
  char status[LOCAL_STATUS_TEXT] = "";
  snprintf(status, sizeof status, "ServiceName %s Not Found", name);
  size_t i;
  json_t *v;
  json_array_foreach(all, i, v) {
    const char *agg = json_string_value(json_object_get(v, "AggregatedStatus"));
    int c = health_code(agg);
    if (code == 404 || c > code) { /* the worst: 200 < 429 < 503 */
      code = c;
      snprintf(status, sizeof status, "%s", agg);
    }
  }
  if (want_text(req)) {
    json_decref(all);
    http_respond(req, code, "text/plain", status, strlen(status));
    return;
  }
  http_respond_json(req, code, all);
}

/* ---- writes ---- */

static void service_register(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  char err[1024];
  const char *rec = http_query(req, "replace-existing-checks");
  bool replace = rec && (!*rec || strcmp(rec, "true") == 0);
  int st = local_service_register(ctx->local, req->body, req->body_len, replace, req_token(req),
                                  err, sizeof err);
  answer(req, st, err);
}

static void service_deregister(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  char err[1024];
  answer(req, local_service_deregister(ctx->local, req->tail, err, sizeof err), err);
}

/* Go's strconv.ParseBool. */
static int parse_bool(const char *s, bool *out)
{
  static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (size_t i = 0; i < 6; i++) {
    if (strcmp(s, t[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcmp(s, f[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  return -1;
}

/* ?enable= as Consul reads it; answers 400 and returns -1 when missing or bad. */
static int enable_param(struct http_request *req, bool *enable)
{
  if (!http_query_has(req, "enable")) {
    http_respond_error(req, 400, "Missing value for enable");
    return -1;
  }
  const char *raw = http_query(req, "enable");
  if (parse_bool(raw, enable) != 0) {
    http_respond_error(req, 400, "Invalid value for enable: \"%s\"", raw);
    return -1;
  }
  return 0;
}

static void service_maintenance(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing service ID");
    return;
  }
  bool enable;
  if (enable_param(req, &enable) != 0) return;
  char err[1024];
  answer(req,
         local_service_maintenance(ctx->local, req->tail, enable, http_query(req, "reason"), err,
                                   sizeof err),
         err);
}

static void node_maintenance(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  bool enable;
  if (enable_param(req, &enable) != 0) return;
  char err[1024];
  answer(req, local_node_maintenance(ctx->local, enable, http_query(req, "reason"), err, sizeof err),
         err);
}

static void check_register(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  char err[1024];
  answer(req,
         local_check_register(ctx->local, req->body, req->body_len, req_token(req), err, sizeof err),
         err);
}

static void check_deregister(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  char err[1024];
  answer(req, local_check_deregister(ctx->local, req->tail, err, sizeof err), err);
}

static void check_ttl(struct http_request *req, struct api_ctx *ctx, const char *status)
{
  char err[1024];
  const char *note = http_query(req, "note");
  answer(req, local_check_update(ctx->local, req->tail, status, note ? note : "", err, sizeof err),
         err);
}

static void check_pass(struct http_request *req, void *arg) { check_ttl(req, arg, "passing"); }
static void check_warn(struct http_request *req, void *arg) { check_ttl(req, arg, "warning"); }
static void check_fail(struct http_request *req, void *arg) { check_ttl(req, arg, "critical"); }

/* PUT /v1/agent/check/update/<id> {"Status": ..., "Output": ...} (Go matches the keys
 * case-insensitively). */
static void check_update(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (!req->body_len) {
    http_respond_error(req, 400, "Request decode failed: EOF");
    return;
  }
  json_error_t jerr;
  json_t *j = json_loadb((const char *)req->body, req->body_len, JSON_DECODE_ANY, &jerr);
  if (!j) {
    http_respond_error(req, 400, "Request decode failed: %s", jerr.text);
    return;
  }
  const char *status = "", *output = "";
  bool bad = false;
  if (json_is_object(j)) {
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
      const char **dst = strcasecmp(k, "Status") == 0 ? &status
                         : strcasecmp(k, "Output") == 0 ? &output : NULL;
      if (!dst || json_is_null(v)) continue;
      if (!json_is_string(v)) {
        http_respond_error(req, 400,
                           "Request decode failed: json: cannot unmarshal %s into Go struct field "
                           "checkUpdate.%s of type string",
                           json_is_object(v) ? "object" : json_is_array(v) ? "array"
                           : json_is_boolean(v) ? "bool" : "number",
                           dst == &status ? "Status" : "Output");
        bad = true;
        break;
      }
      *dst = json_string_value(v);
    }
  } else if (!json_is_null(j)) {
    http_respond_error(req, 400,
                       "Request decode failed: json: cannot unmarshal %s into Go value of type "
                       "agent.checkUpdate",
                       json_is_array(j) ? "array" : json_is_string(j) ? "string" : "value");
    bad = true;
  }
  if (!bad) {
    if (strcmp(status, "passing") && strcmp(status, "warning") && strcmp(status, "critical")) {
      http_respond_error(req, 400, "Invalid check status: '%s'", status);
    } else {
      char err[1024];
      answer(req, local_check_update(ctx->local, req->tail, status, output, err, sizeof err), err);
    }
  }
  json_decref(j);
}

void api_agent_services_register(struct api_ctx *ctx)
{
  if (!ctx->local) return;
  struct http_server *s = ctx->http;
  http_server_route(s, HTTP_M_GET, "/v1/agent/services", services_list, ctx);
  http_server_route(s, HTTP_M_GET, "/v1/agent/service/", service_get, ctx);
  http_server_route(s, HTTP_M_PUT, "/v1/agent/service/register", service_register, ctx);
  http_server_route(s, HTTP_M_PUT | HTTP_M_GET, "/v1/agent/service/deregister/", service_deregister,
                    ctx);
  http_server_route(s, HTTP_M_PUT, "/v1/agent/service/maintenance/", service_maintenance, ctx);
  http_server_route(s, HTTP_M_GET, "/v1/agent/checks", checks_list, ctx);
  http_server_route(s, HTTP_M_PUT, "/v1/agent/check/register", check_register, ctx);
  http_server_route(s, HTTP_M_PUT | HTTP_M_GET, "/v1/agent/check/deregister/", check_deregister, ctx);
  http_server_route(s, HTTP_M_PUT | HTTP_M_GET, "/v1/agent/check/pass/", check_pass, ctx);
  http_server_route(s, HTTP_M_PUT | HTTP_M_GET, "/v1/agent/check/warn/", check_warn, ctx);
  http_server_route(s, HTTP_M_PUT | HTTP_M_GET, "/v1/agent/check/fail/", check_fail, ctx);
  http_server_route(s, HTTP_M_PUT, "/v1/agent/check/update/", check_update, ctx);
  http_server_route(s, HTTP_M_PUT, "/v1/agent/maintenance", node_maintenance, ctx);
  http_server_route(s, HTTP_M_GET, "/v1/agent/health/service/id/", health_by_id, ctx);
  http_server_route(s, HTTP_M_GET, "/v1/agent/health/service/name/", health_by_name, ctx);
}
