/* health.c -- /v1/health/...: Consul's health endpoints (agent/health_endpoint.go on the HTTP
 * side, agent/consul/health_endpoint.go on the server side) over the state store:
 * node/<node>, checks/<service>, service/<service> and state/<state>, all through api_read
 * (blocking ?index/?wait, ?stale/?consistent), with ?filter and ?node-meta, and for
 * service/<service> ?tag (repeated, all required) and ?passing.
 *
 * Indexes and watches as Consul's state store: the checks endpoints answer with the
 * "checks" table index and wake on any check change; service/<name> answers with the
 * "service.<name>" index and wakes only when that service, one of its checks, its nodes or
 * their node-level checks change.
 *
 * Difference from Consul, on purpose: state/<state> answers 400 for a state that is not
 * any, passing, warning or critical (Consul answers an empty list). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "filter/filter.h"
#include "http/json.h"
#include "api/catalog_query.h"
#include "state/catalog.h"


/* ---- query helpers (shared ones are in catalog_query.c) ---- */



/* The compiled ?filter (NULL when absent). The handler has already answered 400 for a bad
 * one, so here it compiles. */
static struct filter *get_filter(struct http_request *req, const struct filter_type *t)
{
  const char *expr = http_query(req, "filter");
  return expr && *expr ? filter_new(expr, t, NULL, 0) : NULL;
}

static bool filter_ok(struct http_request *req, const struct filter_type *t)
{
  const char *expr = http_query(req, "filter");
  if (!expr || !*expr) return true;
  char msg[256];
  struct filter *f = filter_new(expr, t, msg, sizeof msg);
  if (f) {
    filter_free(f);
    return true;
  }
  http_respond_error(req, 400, "Failed to create boolean expression evaluator: %s", msg);
  return false;
}



/* The index of the checks table, and with ?node-meta also of the nodes it looked at. */
static void checks_index(struct api_ctx *ctx, struct api_read_result *res, bool node_meta)
{
  res->index = state_table_index(ctx->store, "checks");
  api_watch_table(res, "checks");
  if (node_meta) api_watch_table(res, "nodes");
}

/* ---- check lists ---- */

struct checks_ctx {
  struct api_ctx *ctx;
  json_t *arr;
  struct filter *f;
  struct api_meta_filter *mf;
  const char *state; /* for state/: NULL for any */
};

static int check_each(const struct state_check *c, void *arg)
{
  struct checks_ctx *x = arg;
  if (x->state && strcmp(c->status, x->state) != 0) return 0;
  if (x->mf && x->mf->n) {
    const struct state_node *n = state_node_get(x->ctx->store, c->node);
    if (!n || !state_node_meta_match(n, x->mf->items, x->mf->n)) return 0;
  }
  json_t *row = state_check_json(c);
  if (!x->f || filter_match(x->f, row)) json_array_append(x->arr, row);
  json_decref(row);
  return 0;
}

/* GET /v1/health/node/<node> */
static void node_read(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res)
{
  struct checks_ctx x = {ctx, json_array(), get_filter(req, &filter_type_health_check), NULL, NULL};
  state_node_checks(ctx->store, req->tail, check_each, &x);
  filter_free(x.f);
  checks_index(ctx, res, false);
  api_finish_json(req, res, x.arr);
}

/* GET /v1/health/state/<state> */
static void state_read(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res)
{
  struct api_meta_filter mf;
  api_parse_node_meta(req, &mf);
  const char *state = req->tail;
  struct checks_ctx x = {ctx, json_array(), get_filter(req, &filter_type_health_check), &mf,
                         strcmp(state, "any") == 0 ? NULL : state};
  state_check_list(ctx->store, check_each, &x);
  filter_free(x.f);
  checks_index(ctx, res, mf.n > 0);
  api_finish_json(req, res, x.arr);
}

/* GET /v1/health/checks/<service>: the checks of every instance of the service, in Consul's
 * order (by node, then check ID). */
static int cmp_check(const void *a, const void *b)
{
  const struct state_check *x = *(const struct state_check *const *)a;
  const struct state_check *y = *(const struct state_check *const *)b;
  int c = strcasecmp(x->node, y->node);
  return c ? c : strcasecmp(x->check_id, y->check_id);
}

struct collect {
  const struct state_check **v;
  size_t n, cap;
};

static int collect_service_check(const struct state_check *c, void *arg)
{
  struct collect *col = arg;
  if (!*c->service_id) return 0; /* node-level checks are not the service's */
  if (col->n == col->cap) {
    col->cap = col->cap ? col->cap * 2 : 16;
    col->v = realloc(col->v, col->cap * sizeof *col->v);
    if (!col->v) abort();
  }
  col->v[col->n++] = c;
  return 0;
}

static void checks_read(struct api_ctx *ctx, struct http_request *req,
                        struct api_read_result *res)
{
  struct api_meta_filter mf;
  api_parse_node_meta(req, &mf);
  const struct state_service *const *inst;
  size_t n = state_service_instances(ctx->store, req->tail, &inst);
  struct collect col = {NULL, 0, 0};
  for (size_t i = 0; i < n; i++) {
    if (mf.n && !state_node_meta_match(inst[i]->node, mf.items, mf.n)) continue;
    state_instance_checks(inst[i], collect_service_check, &col);
  }
  if (col.n) qsort(col.v, col.n, sizeof *col.v, cmp_check);
  struct checks_ctx x = {ctx, json_array(), get_filter(req, &filter_type_health_check), NULL, NULL};
  for (size_t i = 0; i < col.n; i++) check_each(col.v[i], &x);
  free(col.v);
  filter_free(x.f);
  checks_index(ctx, res, false);
  if (mf.n) {
    /* ServiceChecksByNodeMeta answers with the service's index (maxIndexForService), and
     * the whole catalog's when the service has none. */
    char table[STATE_CAT_MAX_NAME + 16];
    snprintf(table, sizeof table, "service.%s", req->tail);
    uint64_t idx = state_table_index(ctx->store, table);
    if (!idx) {
      idx = state_table_index(ctx->store, "checks");
      uint64_t s = state_table_index(ctx->store, "services"), nd = state_table_index(ctx->store, "nodes");
      if (s > idx) idx = s;
      if (nd > idx) idx = nd;
    }
    res->index = idx;
    api_watch_table(res, "nodes");
  }
  api_finish_json(req, res, x.arr);
}

/* ---- GET /v1/health/service/<service> ---- */

/* ?passing: absent false, present without a value true, else strconv.ParseBool. Returns -1
 * for a bad value. */
static int passing_param(struct http_request *req, bool *out)
{
  *out = false;
  const char *v = http_query(req, "passing");
  if (!v) return 0;
  if (!*v) {
    *out = true;
    return 0;
  }
  static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (size_t i = 0; i < 6; i++) {
    if (strcmp(v, t[i]) == 0) return *out = true, 0;
    if (strcmp(v, f[i]) == 0) return 0;
  }
  return -1;
}


static bool all_passing(const json_t *row)
{
  json_t *checks = json_object_get(row, "Checks");
  for (size_t i = 0; i < json_array_size(checks); i++) {
    const char *st = json_string_value(json_object_get(json_array_get(checks, i), "Status"));
    if (!st || strcmp(st, "passing") != 0) return false;
  }
  return true;
}

static void service_read(struct api_ctx *ctx, struct http_request *req,
                         struct api_read_result *res)
{
  const char *name = req->tail;
  struct api_meta_filter mf;
  api_parse_node_meta(req, &mf);
  const char *tags[MAX_TAG_FILTERS];
  size_t nt = http_query_all(req, "tag", tags, MAX_TAG_FILTERS);
  if (nt > MAX_TAG_FILTERS) nt = MAX_TAG_FILTERS;
  bool passing;
  passing_param(req, &passing); /* validated by the handler */
  struct filter *f = get_filter(req, &filter_type_check_service_node);
  const struct state_service *const *inst;
  size_t n = state_service_instances(ctx->store, name, &inst);
  json_t **rows = calloc(n ? n : 1, sizeof *rows);
  if (!rows) abort();
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    if (!api_service_has_tags(inst[i], tags, nt)) continue;
    if (mf.n && !state_node_meta_match(inst[i]->node, mf.items, mf.n)) continue;
    json_t *row = state_check_service_node_json(inst[i]);
    if (f && !filter_match(f, row)) {
      json_decref(row);
      continue;
    }
    rows[kept++] = row;
  }
  filter_free(f);
  /* Consul's filterNonPassing swaps each dropped instance with the last one kept, so the
   * order of what remains is Consul's too. */
  if (passing) {
    size_t m = kept;
    for (size_t i = 0; i < m; i++) {
      if (all_passing(rows[i])) continue;
      json_decref(rows[i]);
      rows[i] = rows[m - 1];
      rows[m - 1] = NULL;
      m--;
      i--;
    }
    kept = m;
  }
  json_t *arr = json_array();
  for (size_t i = 0; i < kept; i++) json_array_append_new(arr, rows[i]);
  free(rows);
  char table[STATE_CAT_MAX_NAME + 16];
  size_t p = (size_t)snprintf(table, sizeof table, "service.");
  for (size_t i = 0; name[i] && p + 1 < sizeof table; i++, p++)
    table[p] = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] - 'A' + 'a') : name[i];
  table[p] = '\0';
  /* maxIndexAndWatchChForService: the service's index while it has instances, the last
   * service extinction otherwise; the watch is on "service.<name>" alone (Consul's
   * watch-limit optimisation, hashicorp/consul#4984). */
  res->index = n ? state_table_index(ctx->store, table)
                 : state_table_index(ctx->store, "service_last_extinction");
  api_watch_table(res, table);
  api_finish_json(req, res, arr);
}

/* ---- handlers ---- */

static void health_node(struct http_request *req, void *arg)
{
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing node name");
    return;
  }
  if (filter_ok(req, &filter_type_health_check)) api_read(arg, req, node_read);
}

static void health_checks(struct http_request *req, void *arg)
{
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing service name");
    return;
  }
  if (filter_ok(req, &filter_type_health_check)) api_read(arg, req, checks_read);
}

static void health_service(struct http_request *req, void *arg)
{
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing service name");
    return;
  }
  bool passing;
  if (passing_param(req, &passing)) {
    http_respond_error(req, 400, "Invalid value for ?passing");
    return;
  }
  if (filter_ok(req, &filter_type_check_service_node)) api_read(arg, req, service_read);
}

static void health_state(struct http_request *req, void *arg)
{
  const char *s = req->tail;
  if (!*s) {
    http_respond_error(req, 400, "Missing check state");
    return;
  }
  if (strcmp(s, "any") != 0 && strcmp(s, "passing") != 0 && strcmp(s, "warning") != 0 &&
      strcmp(s, "critical") != 0) {
    http_respond_error(req, 400,
                       "Invalid check state \"%s\": must be one of any, passing, warning or "
                       "critical",
                       s);
    return;
  }
  if (filter_ok(req, &filter_type_health_check)) api_read(arg, req, state_read);
}

void api_health_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_GET, "/v1/health/node/", health_node, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/health/checks/", health_checks, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/health/service/", health_service, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/health/state/", health_state, ctx);
}
