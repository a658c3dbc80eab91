/* query.c -- /v1/query: Consul's prepared queries (agent/prepared_query_endpoint.go on the
 * HTTP side, agent/consul/prepared_query_endpoint.go on the server side; the table and the
 * templates are state/query.h).
 *
 *   POST /v1/query                  create: {"ID": "<uuid>"}
 *   GET  /v1/query                  list (blocking on the table's index)
 *   GET|PUT|DELETE /v1/query/<id>   read ([query], 404 "Query not found"), replace, delete
 *   GET  /v1/query/<id|name>/execute[?limit=N]   the healthy instances, shuffled
 *   GET  /v1/query/<id|name>/explain             the query as resolved (templates rendered)
 *
 * Answers as Consul's: body decode errors are 400 "Request decode failed: ..."; the server's
 * refusals are 500 with its sentence ("Invalid prepared query: Must provide a Service name to
 * query", "Cannot modify non-existent prepared query: '<id>'", "name 'x' aliases an existing
 * query name", ...). Not done: ACLs and the query's Token (stored and shown, never used),
 * distance sorting (?near= and Service.Near are accepted and ignored: results are always
 * shuffled), Connect (Service.Connect is stored, the lookup is the plain one).
 *
 * Failover (Consul's queryFailover): when the local datacenter has no healthy instance, a
 * server with a WAN pool runs the query in other datacenters, in turn, until one has some:
 * first the NearestN nearest (we have no coordinates: the other datacenters by name), then
 * the Failover.Datacenters we know of, not repeated. Each goes as a
 * PreparedQuery.ExecuteRemote RPC with the query itself (the remote datacenter need not have
 * it); the answer is the remote's, with Datacenter set there and Failovers counting the
 * datacenters tried. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "api/catalog_query.h"
#include "api/internal.h"
#include "lib/alloc.h"
#include "lib/duration.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/rand.h"
#include "state/query.h"

#define REDACTED_TOKEN "<hidden>"

/* ---- writes ---- */

/* parseQuery: what the server checks before proposing. NULL or the sentence (in buf). */
static const char *parse_query(const json_t *q, char *buf, size_t len)
{
  const char *name = json_string_value(json_object_get(q, "Name"));
  const char *type = json_string_value(json_object_get(json_object_get(q, "Template"), "Type"));
  const char *sess = json_string_value(json_object_get(q, "Session"));
  const char *token = json_string_value(json_object_get(q, "Token"));
  const json_t *svc = json_object_get(q, "Service");
  if (!*name && !*type && !*sess) return "Invalid prepared query: Must be bound to a session";
  if (strcmp(token, REDACTED_TOKEN) == 0) {
    snprintf(buf, len,
             "Invalid prepared query: Bad Token '%s', it looks like a query definition with a "
             "redacted token was submitted",
             token);
    return buf;
  }
  if (!*json_string_value(json_object_get(svc, "Service")))
    return "Invalid prepared query: Must provide a Service name to query";
  json_int_t nn = json_integer_value(json_object_get(json_object_get(svc, "Failover"), "NearestN"));
  if (nn < 0) {
    snprintf(buf, len, "Invalid prepared query: Bad NearestN '%lld', must be >= 0", (long long)nn);
    return buf;
  }
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(svc, "NodeMeta"), k, v)
  {
    if (!*k) return "Invalid prepared query: Couldn't load metadata pair: Key cannot be blank";
    if (strlen(k) > 128) {
      snprintf(buf, len, "Invalid prepared query: Key is too long (limit: 128 characters)");
      return buf;
    }
    if (strlen(json_string_value(v)) > 512) {
      snprintf(buf, len, "Invalid prepared query: Value is too long (limit: 512 characters)");
      return buf;
    }
  }
  const char *ttl = json_string_value(json_object_get(json_object_get(q, "DNS"), "TTL"));
  if (*ttl) {
    int64_t ns;
    if (duration_parse(ttl, strlen(ttl), &ns) != 0) {
      snprintf(buf, len,
               "Invalid prepared query: Bad DNS TTL '%.100s': time: invalid duration \"%.100s\"",
               ttl, ttl);
      return buf;
    }
    if (ns < 0) {
      snprintf(buf, len, "Invalid prepared query: DNS TTL '%lld', must be >=0", (long long)ns);
      return buf;
    }
  }
  return NULL;
}

static bool other_dc(struct api_ctx *ctx, struct http_request *req)
{
  const char *q = http_query(req, "dc");
  if (q && *q && strcasecmp(q, ctx->cfg->datacenter) != 0) {
    http_respond_error(req, 500, "No path to datacenter");
    return true;
  }
  return false;
}

/* Decodes the body (decodeBody into structs.PreparedQuery). NULL after answering 400. */
static json_t *decode_body(struct http_request *req)
{
  if (!req->body_len) {
    http_respond_error(req, 400, "Request decode failed: EOF");
    return NULL;
  }
  json_error_t je;
  json_t *in = json_loadb((const char *)req->body, req->body_len, JSON_DECODE_ANY, &je);
  if (!in) {
    http_respond_error(req, 400, "Request decode failed: %s", je.text);
    return NULL;
  }
  char err[512];
  json_t *q = state_query_normalize(in, err, sizeof err);
  json_decref(in);
  if (!q) http_respond_error(req, 400, "Request decode failed: %s", err);
  return q;
}

static void create_done(struct api_ctx *ctx, struct http_request *req,
                        const struct state_cmd_result *res, uint64_t index)
{
  (void)ctx;
  (void)index;
  if (!res->ok || !res->body) {
    http_respond_error(req, 500, "%s", res->msg[0] ? res->msg : "prepared query create failed");
    return;
  }
  json_t *o = json_object();
  json_object_set_new(o, "ID", json_stringn(res->body, res->body_len));
  http_respond_json(req, 200, o);
}

static void update_done(struct api_ctx *ctx, struct http_request *req,
                        const struct state_cmd_result *res, uint64_t index)
{
  (void)ctx;
  (void)index;
  if (!res->ok) {
    http_respond_error(req, 500, "%s", res->msg[0] ? res->msg : "prepared query update failed");
    return;
  }
  http_respond(req, 200, "application/json", "", 0);
}

/* Checks and proposes a create or update of q (normalized; taken). */
static void propose_set(struct api_ctx *ctx, struct http_request *req, const char *op,
                        const char *id, json_t *q, api_write_done_fn done)
{
  char buf[600];
  const char *why = parse_query(q, buf, sizeof buf);
  if (why) {
    http_respond_error(req, 500, "%s", why);
    json_decref(q);
    return;
  }
  json_object_set_new(q, "ID", json_string(id));
  if (state_query_check(ctx->store, id, q, buf, sizeof buf) != 0) {
    http_respond_error(req, 500, "%s", buf);
    json_decref(q);
    return;
  }
  char *text = json_dumps(q, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(q);
  struct buf cmd = BUF_INIT;
  state_cmd_encode_query(&cmd, op, id, text);
  free(text);
  api_write(ctx, req, &cmd, done);
  buf_free(&cmd);
}

static bool write_prelude(struct api_ctx *ctx, struct http_request *req)
{
  if (other_dc(ctx, req)) return false;
  if (!ctx->store) {
    http_respond_error(req, 500, "No known Consul servers");
    return false;
  }
  return !api_require_leader(ctx, req);
}

static void query_create(struct api_ctx *ctx, struct http_request *req)
{
  json_t *q = decode_body(req);
  if (!q) return;
  if (!write_prelude(ctx, req)) {
    json_decref(q);
    return;
  }
  if (*json_string_value(json_object_get(q, "ID"))) {
    http_respond_error(req, 500, "ID must be empty when creating a new prepared query");
    json_decref(q);
    return;
  }
  char id[37];
  for (;;) { /* the proposer picks the ID: apply must be deterministic */
    rand_uuid(id);
    json_t *taken = state_query_get(ctx->store, id);
    if (!taken) break;
    json_decref(taken);
  }
  propose_set(ctx, req, "create", id, q, create_done);
}

static bool exists(struct api_ctx *ctx, struct http_request *req, const char *id)
{
  json_t *q = state_query_get(ctx->store, id);
  if (!q) {
    http_respond_error(req, 500, "Cannot modify non-existent prepared query: '%s'", id);
    return false;
  }
  json_decref(q);
  return true;
}

static void query_update(struct api_ctx *ctx, struct http_request *req, const char *id)
{
  json_t *q;
  if (req->body_len) {
    q = decode_body(req);
    if (!q) return;
  } else {
    q = state_query_normalize(NULL, NULL, 0);
  }
  if (!write_prelude(ctx, req) || !exists(ctx, req, id)) {
    json_decref(q);
    return;
  }
  propose_set(ctx, req, "update", id, q, update_done);
}

static void query_delete(struct api_ctx *ctx, struct http_request *req, const char *id)
{
  if (!write_prelude(ctx, req) || !exists(ctx, req, id)) return;
  struct buf cmd = BUF_INIT;
  state_cmd_encode_query(&cmd, "delete", id, NULL);
  api_write(ctx, req, &cmd, update_done);
  buf_free(&cmd);
}

/* ---- reads ---- */

static void list_read(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res)
{
  res->index = state_table_index(ctx->store, STATE_QUERY_TABLE);
  api_watch_table(res, STATE_QUERY_TABLE);
  api_finish_json(req, res, state_query_list(ctx->store));
}

static void not_found(struct api_read_result *res)
{
  res->status = 404;
  res->content_type = "text/plain; charset=utf-8";
  buf_puts(&res->body, "Query not found");
}

static void get_read(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res)
{
  res->index = state_table_index(ctx->store, STATE_QUERY_TABLE);
  api_watch_table(res, STATE_QUERY_TABLE);
  json_t *q = state_query_get(ctx->store, req->tail);
  if (!q) {
    not_found(res);
    return;
  }
  json_t *a = json_array();
  json_array_append_new(a, q);
  api_finish_json(req, res, a);
}

/* QueryMeta, which Go prints inline after the response's own fields. */
static void query_meta(struct api_ctx *ctx, struct http_request *req, json_t *o)
{
  bool known = ctx->consensus && consensus_leader_address(ctx->consensus) != NULL;
  uint64_t contact_ms = ctx->consensus ? consensus_last_contact_ms(ctx->consensus) : 0;
  const char *level = !req                                ? "leader"
                      : http_query_has(req, "stale")        ? "stale"
                      : http_query_has(req, "consistent") ? "consistent"
                                                          : "leader";
  json_object_set_new(o, "Index", json_integer(0));
  json_object_set_new(o, "LastContact", json_integer((json_int_t)(contact_ms * 1000000ull)));
  json_object_set_new(o, "KnownLeader", json_boolean(known));
  json_object_set_new(o, "ConsistencyLevel", json_string(level));
  json_object_set_new(o, "NotModified", json_false());
  json_object_set_new(o, "Backend", json_integer(0));
}

/* Resolves the name in req->tail minus suffix; answers res on failure (NULL). */
static json_t *resolve(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res,
                       size_t suffix_len)
{
  res->index = 0; /* Consul's execute and explain answer no index (clients see 1) */
  api_watch_table(res, STATE_QUERY_TABLE);
  size_t len = strlen(req->tail) - suffix_len;
  char *name = xmalloc(len + 1);
  memcpy(name, req->tail, len);
  name[len] = '\0';
  json_t *q;
  char err[512];
  int rc = state_query_resolve(ctx->store, name, &q, err, sizeof err);
  free(name);
  if (rc == CC_ENOTFOUND) {
    not_found(res);
    return NULL;
  }
  if (rc) {
    res->status = 500;
    res->content_type = "text/plain; charset=utf-8";
    buf_puts(&res->body, err);
    return NULL;
  }
  return q;
}

static void explain_read(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res)
{
  json_t *q = resolve(ctx, req, res, strlen("/explain"));
  if (!q) return;
  json_t *o = json_object();
  json_object_set_new(o, "Query", q);
  query_meta(ctx, req, o);
  api_finish_json(req, res, o);
}

/* The execute answer for q here (shuffled, then limited; limit 0: all); *n: how many
 * instances. req (may be NULL) gives the consistency level shown. */
static json_t *execute_json(struct api_ctx *ctx, struct http_request *req, const json_t *q,
                            long limit, size_t *n_out)
{
  const json_t *svc = json_object_get(q, "Service");
  const struct state_service **inst;
  size_t n = state_query_execute(ctx->store, q, &inst);
  /* Shuffle (Consul's CheckServiceNodes.Shuffle), then the limit. */
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)rand_below(i);
    const struct state_service *t = inst[i - 1];
    inst[i - 1] = inst[j];
    inst[j] = t;
  }
  if (limit > 0 && (size_t)limit < n) n = (size_t)limit;
  json_t *nodes = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(nodes, state_check_service_node_json(inst[i]));
  free(inst);
  json_t *o = json_object();
  json_object_set(o, "Service", json_object_get(svc, "Service"));
  json_object_set_new(o, "Nodes", nodes);
  json_object_set(o, "DNS", json_object_get(q, "DNS"));
  json_object_set_new(o, "Datacenter", json_string(ctx->cfg->datacenter));
  json_object_set_new(o, "PeerName", json_string(""));
  json_object_set_new(o, "Failovers", json_integer(0));
  query_meta(ctx, req, o);
  *n_out = n;
  return o;
}

static void execute_read(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res)
{
  const char *lim = http_query(req, "limit");
  long limit = 0;
  if (lim && *lim) {
    char *end;
    limit = strtol(lim, &end, 10);
    if (*end || end == lim) {
      res->status = 500;
      res->content_type = "text/plain; charset=utf-8";
      buf_printf(&res->body, "Bad limit: strconv.Atoi: parsing \"%.100s\": invalid syntax", lim);
      return;
    }
  }
  json_t *q = resolve(ctx, req, res, strlen("/execute"));
  if (!q) return;
  const json_t *svc = json_object_get(q, "Service");
  /* The instances' checks move with "checks" and the service's own index. */
  char table[STATE_CAT_MAX_NAME + 16];
  snprintf(table, sizeof table, "service.%.*s", STATE_CAT_MAX_NAME,
           json_string_value(json_object_get(svc, "Service")));
  for (char *p = table; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
  api_watch_table(res, table);
  api_watch_table(res, "checks");
  api_watch_table(res, "nodes");
  size_t n;
  json_t *o = execute_json(ctx, req, q, limit, &n);
  json_decref(q);
  api_finish_json(req, res, o);
}

/* ---- failover to other datacenters ---- */

#define MAX_FAILOVER_DCS 64

struct failover_op {
  struct api_ctx *ctx;
  struct http_request *req; /* NULL once the client has gone */
  char **dcs;               /* owned: the datacenters to try, in order */
  size_t n, next;
  char *body;               /* owned: the ExecuteRemote request */
  json_t *answer;           /* the answer so far (local at first) */
};

static void failover_free(struct failover_op *op)
{
  for (size_t i = 0; i < op->n; i++) free(op->dcs[i]);
  free(op->dcs);
  free(op->body);
  json_decref(op->answer);
  free(op);
}

static void failover_cancel(struct http_request *req, void *arg)
{
  (void)req;
  ((struct failover_op *)arg)->req = NULL;
}

static void failover_step(void *arg, json_t *answer);

static void failover_next(struct failover_op *op)
{
  if (op->next < op->n && json_array_size(json_object_get(op->answer, "Nodes")) == 0) {
    const char *dc = op->dcs[op->next++];
    op->ctx->query_remote(op->ctx->query_remote_arg, dc, op->body, strlen(op->body),
                          failover_step, op);
    return;
  }
  struct http_request *req = op->req;
  http_request_on_cancel(req, NULL, NULL);
  json_object_set_new(op->answer, "Failovers", json_integer((json_int_t)op->next));
  api_set_meta_headers(op->ctx, req, 0, API_CONSISTENCY_DEFAULT);
  http_respond_json(req, 200, json_incref(op->answer));
  failover_free(op);
}

static void failover_step(void *arg, json_t *answer)
{
  struct failover_op *op = arg;
  if (!op->req) { /* the client went away: stop here */
    json_decref(answer);
    failover_free(op);
    return;
  }
  if (answer && json_is_object(answer)) {
    json_decref(op->answer);
    op->answer = answer;
  } else {
    json_decref(answer);
    log_warn("prepared_query", "failover to datacenter %s failed", op->dcs[op->next - 1]);
  }
  failover_next(op);
}

static bool dc_listed(char **dcs, size_t n, const char *dc)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(dcs[i], dc) == 0) return true;
  return false;
}

/* The datacenters to try, as Consul's queryFailover orders them. */
static size_t failover_dcs(struct api_ctx *ctx, const json_t *fo, char ***out)
{
  json_t *known = ctx->datacenters(ctx->datacenters_arg); /* ours first, then by name */
  char **dcs = xcalloc(MAX_FAILOVER_DCS, sizeof *dcs);
  size_t n = 0;
  json_int_t nearest = json_integer_value(json_object_get(fo, "NearestN"));
  size_t i;
  json_t *v;
  json_array_foreach(known, i, v) {
    const char *dc = json_string_value(v);
    if ((json_int_t)n >= nearest || n >= MAX_FAILOVER_DCS) break;
    if (dc && strcmp(dc, ctx->cfg->datacenter) != 0) dcs[n++] = xstrdup(dc);
  }
  json_array_foreach(json_object_get(fo, "Datacenters"), i, v) {
    const char *dc = json_string_value(v);
    if (!dc || n >= MAX_FAILOVER_DCS || dc_listed(dcs, n, dc)) continue;
    /* unknown datacenters are skipped, as Consul does (and so is ours: already tried) */
    bool is_known = false;
    for (size_t k = 1; k < json_array_size(known) && !is_known; k++)
      is_known = strcmp(json_string_value(json_array_get(known, k)), dc) == 0;
    if (is_known) dcs[n++] = xstrdup(dc);
  }
  json_decref(known);
  *out = dcs;
  return n;
}

/* GET /v1/query/<id>/execute when failover may be needed: answers req and returns true, or
 * returns false for the ordinary (local, blocking-capable) path. */
static bool execute_with_failover(struct api_ctx *ctx, struct http_request *req)
{
  if (!ctx->store || !ctx->query_remote || !ctx->datacenters) return false;
  const char *lim = http_query(req, "limit");
  long limit = 0;
  if (lim && *lim) {
    char *end;
    limit = strtol(lim, &end, 10);
    if (*end || end == lim) return false; /* execute_read answers the error */
  }
  size_t len = strlen(req->tail) - strlen("/execute");
  char *name = xstrndup(req->tail, len);
  json_t *q;
  char err[512];
  int rc = state_query_resolve(ctx->store, name, &q, err, sizeof err);
  free(name);
  if (rc) return false;
  const json_t *fo = json_object_get(json_object_get(q, "Service"), "Failover");
  if (json_integer_value(json_object_get(fo, "NearestN")) <= 0 &&
      json_array_size(json_object_get(fo, "Datacenters")) == 0) {
    json_decref(q);
    return false;
  }
  size_t n;
  json_t *local = execute_json(ctx, req, q, limit, &n);
  char **dcs;
  size_t ndcs = n == 0 ? failover_dcs(ctx, fo, &dcs) : 0;
  if (n > 0 || ndcs == 0) {
    if (n == 0) free(dcs);
    json_decref(local);
    json_decref(q);
    return false;
  }
  json_t *body = json_object();
  json_object_set_new(body, "Query", q);
  json_object_set_new(body, "Limit", json_integer(limit));
  struct failover_op *op = xcalloc(1, sizeof *op);
  op->ctx = ctx;
  op->req = req;
  op->dcs = dcs;
  op->n = ndcs;
  op->body = json_dumps(body, JSON_COMPACT);
  op->answer = local;
  json_decref(body);
  if (!op->body) {
    failover_free(op);
    return false;
  }
  http_request_on_cancel(req, failover_cancel, op);
  failover_next(op);
  return true;
}

json_t *api_query_execute_remote(struct api_ctx *ctx, const void *body, size_t len, char *err,
                                 size_t errlen)
{
  if (len > STATE_QUERY_MAX_JSON + 64) {
    snprintf(err, errlen, "remote prepared query too large");
    return NULL;
  }
  json_error_t jerr;
  json_t *in = json_loadb(body, len, 0, &jerr);
  /* whatever arrives is decoded as a new query would be, so execute sees Consul's shape */
  json_t *q = json_is_object(in) ? state_query_normalize(json_object_get(in, "Query"), err, errlen)
                                 : NULL;
  if (!q || !*json_string_value(json_object_get(json_object_get(q, "Service"), "Service"))) {
    if (q || !json_is_object(in)) snprintf(err, errlen, "invalid remote prepared query");
    json_decref(q);
    json_decref(in);
    return NULL;
  }
  json_int_t limit = json_integer_value(json_object_get(in, "Limit"));
  size_t n;
  json_t *o = execute_json(ctx, NULL, q, limit > 0 ? (long)limit : 0, &n);
  json_decref(q);
  json_decref(in);
  return o;
}

/* ---- routing ---- */

static bool ends_with(const char *s, const char *suffix)
{
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void query_general(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (req->method == HTTP_M_POST) {
    query_create(ctx, req);
    return;
  }
  if (!ctx->store) {
    http_respond_error(req, 500, "No known Consul servers");
    return;
  }
  api_read(ctx, req, list_read);
}

static void query_specific(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  const char *tail = req->tail;
  bool exec = ends_with(tail, "/execute"), expl = ends_with(tail, "/explain");
  if ((exec || expl) && req->method != HTTP_M_GET) {
    http_set_header(req, "Allow", "OPTIONS,GET");
    http_respond_error(req, 405, "method %s not allowed",
                       req->method == HTTP_M_PUT ? "PUT" : "DELETE");
    return;
  }
  if (!ctx->store && req->method == HTTP_M_GET) {
    http_respond_error(req, 500, "No known Consul servers");
    return;
  }
  if (exec && execute_with_failover(ctx, req)) return;
  if (exec) api_read(ctx, req, execute_read);
  else if (expl) api_read(ctx, req, explain_read);
  else if (req->method == HTTP_M_GET) api_read(ctx, req, get_read);
  else if (req->method == HTTP_M_PUT) query_update(ctx, req, tail);
  else query_delete(ctx, req, tail);
}

void api_query_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_GET | HTTP_M_POST, "/v1/query", query_general, ctx);
  http_server_route(ctx->http, HTTP_M_GET | HTTP_M_PUT | HTTP_M_DELETE, "/v1/query/",
                    query_specific, ctx);
}
