/* catalog.c -- /v1/catalog/...: Consul's catalog endpoints (agent/catalog_endpoint.go on the
 * HTTP side, agent/consul/catalog_endpoint.go on the server side) over the state store.
 *
 * Writes: PUT register and deregister decode Consul's RegisterRequest / DeregisterRequest
 * JSON as Go's encoding/json would (field names matched case-insensitively, Go's type error
 * texts), apply Catalog.Register's defaults and checks, and propose a Raft command; they
 * answer `true`. Reads: datacenters, nodes, services, service/<name>, node/<node>,
 * node-services/<node>, every one but datacenters through api_read (blocking ?index/?wait,
 * ?stale/?consistent) with the index and the watches Consul's state store would use
 * (state/catalog.h lists them): a blocking service/<name> waits on "service.<name>" alone.
 *
 * Differences from Consul, on purpose (docs/compatibility.md): validation failures of a
 * registration (no Node, no Address, bad JSON or types, bad service metadata) answer 400
 * rather than the 500 Consul's RPC error path gives; /v1/catalog/services lists each
 * service's tags sorted (Consul's order is Go's random map order). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "filter/filter.h"
#include "http/json.h"
#include "lib/gojson.h"
#include "lib/alloc.h"
#include "lib/duration.h"
#include "lib/err.h"
#include "api/catalog_query.h"
#include "state/catalog.h"


/* ---- query helpers ---- */

/* ?node-meta=key:value, repeated (Consul's parseMetaFilter / ParseMetaPair). Points into
 * the request. */


/* Compiles ?filter= against t. Returns 0 with *out (NULL when there is no filter), or -1
 * with Consul's message in err. */
static int get_filter(struct http_request *req, const struct filter_type *t, struct filter **out,
                      char *err, size_t errlen)
{
  *out = NULL;
  const char *expr = http_query(req, "filter");
  if (!expr || !*expr) return 0;
  char msg[256];
  *out = filter_new(expr, t, msg, sizeof msg);
  if (*out) return 0;
  snprintf(err, errlen, "Failed to create boolean expression evaluator: %s", msg);
  return -1;
}

/* Answers 400 for a bad ?filter before any read runs. */
static bool filter_ok(struct http_request *req, const struct filter_type *t)
{
  struct filter *f;
  char err[512];
  if (get_filter(req, t, &f, err, sizeof err)) {
    http_respond_error(req, 400, "%s", err);
    return false;
  }
  filter_free(f);
  return true;
}

/* Keeps row (a new reference) when f is NULL or matches; the array takes it. */
static void keep(json_t *arr, json_t *row, const struct filter *f)
{
  if (!f || filter_match(f, row)) json_array_append(arr, row);
  json_decref(row);
}


/* "service.<name>" / "node.<name>" watch and index names, lowercased as the store keeps
 * them. */
static void table_name(char *out, size_t outlen, const char *prefix, const char *name)
{
  size_t p = (size_t)snprintf(out, outlen, "%s", prefix);
  for (size_t i = 0; name[i] && p + 1 < outlen; i++, p++) {
    char c = name[i];
    out[p] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
  }
  out[p < outlen ? p : outlen - 1] = '\0';
}


/* ---- GET /v1/catalog/datacenters ---- */

static void catalog_datacenters(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  /* The WAN pool's datacenters, ours first, then by name (Consul sorts by round-trip time;
   * we keep no coordinates). Without a WAN pool, ours alone. */
  json_t *a = ctx->datacenters ? ctx->datacenters(ctx->datacenters_arg) : NULL;
  if (!a) {
    a = json_array();
    json_array_append_new(a, json_string(ctx->cfg->datacenter));
  }
  http_respond_json(req, 200, a);
}

/* ---- GET /v1/catalog/nodes ---- */

struct nodes_ctx {
  json_t *arr;
  struct filter *f;
  struct api_meta_filter *mf;
};

static int nodes_each(const struct state_node *n, void *arg)
{
  struct nodes_ctx *c = arg;
  if (c->mf->n && !state_node_meta_match(n, c->mf->items, c->mf->n)) return 0;
  keep(c->arr, state_node_json(n), c->f);
  return 0;
}

static void nodes_read(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res)
{
  struct api_meta_filter mf;
  api_parse_node_meta(req, &mf);
  struct nodes_ctx c = {json_array(), NULL, &mf};
  char err[512];
  get_filter(req, &filter_type_node, &c.f, err, sizeof err);
  state_node_list(ctx->store, nodes_each, &c);
  filter_free(c.f);
  res->index = state_table_index(ctx->store, "nodes");
  api_watch_table(res, "nodes");
  api_finish_json(req, res, c.arr);
}

static void catalog_nodes(struct http_request *req, void *arg)
{
  if (filter_ok(req, &filter_type_node)) api_read(arg, req, nodes_read);
}

/* ---- GET /v1/catalog/services ---- */

struct services_ctx {
  json_t *names; /* name -> object used as a set of tags */
  struct filter *f;
  struct api_meta_filter *mf;
};

static int services_each(const struct state_service *s, void *arg)
{
  struct services_ctx *c = arg;
  if (c->mf->n && !state_node_meta_match(s->node, c->mf->items, c->mf->n)) return 0;
  if (c->f) {
    json_t *row = state_service_node_json(s);
    bool m = filter_match(c->f, row);
    json_decref(row);
    if (!m) return 0;
  }
  json_t *tags = json_object_get(c->names, s->name);
  if (!tags) {
    tags = json_object();
    json_object_set_new(c->names, s->name, tags);
  }
  for (size_t i = 0; i < s->n_tags; i++) json_object_set_new(tags, s->tags[i], json_true());
  return 0;
}

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A jansson object's keys, sorted (Go prints maps sorted). Caller frees the array. */
static const char **sorted_keys(json_t *o, size_t *n)
{
  *n = json_object_size(o);
  const char **keys = xcalloc(*n ? *n : 1, sizeof *keys);
  size_t i = 0;
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) keys[i++] = k;
  qsort(keys, *n, sizeof *keys, cmp_str);
  return keys;
}

static void services_read(struct api_ctx *ctx, struct http_request *req,
                          struct api_read_result *res)
{
  struct api_meta_filter mf;
  api_parse_node_meta(req, &mf);
  struct services_ctx c = {json_object(), NULL, &mf};
  char err[512];
  get_filter(req, &filter_type_service_node, &c.f, err, sizeof err);
  state_service_list(ctx->store, services_each, &c);
  filter_free(c.f);
  json_t *out = json_object();
  size_t n;
  const char **names = sorted_keys(c.names, &n);
  for (size_t i = 0; i < n; i++) {
    json_t *set = json_object_get(c.names, names[i]);
    size_t nt;
    const char **tags = sorted_keys(set, &nt);
    json_t *arr = json_array();
    for (size_t t = 0; t < nt; t++) json_array_append_new(arr, json_string(tags[t]));
    free(tags);
    json_object_set_new(out, names[i], arr);
  }
  free(names);
  json_decref(c.names);
  /* ServicesByNodeMeta answers max(services, nodes) and watches both. */
  res->index = state_table_index(ctx->store, "services");
  api_watch_table(res, "services");
  if (mf.n) {
    uint64_t ni = state_table_index(ctx->store, "nodes");
    if (ni > res->index) res->index = ni;
    api_watch_table(res, "nodes");
  }
  api_finish_json(req, res, out);
}

static void catalog_services(struct http_request *req, void *arg)
{
  if (filter_ok(req, &filter_type_service_node)) api_read(arg, req, services_read);
}

/* ---- GET /v1/catalog/service/<name> ---- */


static void service_read(struct api_ctx *ctx, struct http_request *req,
                         struct api_read_result *res)
{
  const char *name = req->tail;
  struct api_meta_filter mf;
  api_parse_node_meta(req, &mf);
  const char *tags[MAX_TAG_FILTERS];
  size_t nt = http_query_all(req, "tag", tags, MAX_TAG_FILTERS);
  if (nt > MAX_TAG_FILTERS) nt = MAX_TAG_FILTERS;
  struct filter *f;
  char err[512];
  get_filter(req, &filter_type_service_node, &f, err, sizeof err);
  json_t *arr = json_array();
  const struct state_service *const *inst;
  size_t n = state_service_instances(ctx->store, name, &inst);
  for (size_t i = 0; i < n; i++) {
    if (!api_service_has_tags(inst[i], tags, nt)) continue;
    if (mf.n && !state_node_meta_match(inst[i]->node, mf.items, mf.n)) continue;
    keep(arr, state_service_node_json(inst[i]), f);
  }
  filter_free(f);
  char table[STATE_CAT_MAX_NAME + 16];
  table_name(table, sizeof table, "service.", name);
  /* maxIndexForService: the service's own index, or the last extinction when it has no
   * instance (so that the index never goes backwards when it disappears). */
  res->index = n ? state_table_index(ctx->store, table)
                 : state_table_index(ctx->store, "service_last_extinction");
  api_watch_table(res, table);
  api_finish_json(req, res, arr);
}

static void catalog_service(struct http_request *req, void *arg)
{
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing service name");
    return;
  }
  if (filter_ok(req, &filter_type_service_node)) api_read(arg, req, service_read);
}

/* ---- GET /v1/catalog/node/<node> and /v1/catalog/node-services/<node> ---- */

struct node_services_ctx {
  json_t *out; /* object (node/) or array (node-services/) */
  struct filter *f;
};

static int node_service_each(const struct state_service *s, void *arg)
{
  struct node_services_ctx *c = arg;
  json_t *row = state_node_service_json(s);
  if (!c->f || filter_match(c->f, row)) {
    if (json_is_array(c->out)) json_array_append(c->out, row);
    else json_object_set(c->out, s->id, row);
  }
  json_decref(row);
  return 0;
}

/* The index of a node read: its "node.<name>" index, or node_last_extinction when it does
 * not exist (Consul's nodeServices). */
static uint64_t node_index(struct api_ctx *ctx, const struct state_node *n, const char *table)
{
  return n ? state_table_index(ctx->store, table)
           : state_table_index(ctx->store, "node_last_extinction");
}

static void node_read(struct api_ctx *ctx, struct http_request *req, struct api_read_result *res)
{
  const char *name = req->tail;
  char table[STATE_CAT_MAX_NAME + 16];
  table_name(table, sizeof table, "node.", name);
  const struct state_node *n = state_node_get(ctx->store, name);
  res->index = node_index(ctx, n, table);
  api_watch_table(res, table);
  if (!n) {
    api_finish_json(req, res, json_null()); /* Consul answers null for an unknown node */
    return;
  }
  struct node_services_ctx c = {json_object(), NULL};
  char err[512];
  get_filter(req, &filter_type_node_service, &c.f, err, sizeof err);
  state_node_services(ctx->store, n->name, node_service_each, &c);
  filter_free(c.f);
  /* Services is a Go map keyed by service ID: sorted. */
  json_t *services = json_object();
  size_t count;
  const char **ids = sorted_keys(c.out, &count);
  for (size_t i = 0; i < count; i++)
    json_object_set(services, ids[i], json_object_get(c.out, ids[i]));
  free(ids);
  json_decref(c.out);
  json_t *o = json_object();
  json_object_set_new(o, "Node", state_node_json(n));
  json_object_set_new(o, "Services", services);
  api_finish_json(req, res, o);
}

static void node_services_read(struct api_ctx *ctx, struct http_request *req,
                               struct api_read_result *res)
{
  const char *name = req->tail;
  char table[STATE_CAT_MAX_NAME + 16];
  table_name(table, sizeof table, "node.", name);
  const struct state_node *n = state_node_get(ctx->store, name);
  res->index = node_index(ctx, n, table);
  api_watch_table(res, table);
  json_t *o = json_object();
  if (!n) {
    json_object_set_new(o, "Node", json_null());
    json_object_set_new(o, "Services", json_null());
    api_finish_json(req, res, o);
    return;
  }
  struct node_services_ctx c = {json_array(), NULL};
  char err[512];
  get_filter(req, &filter_type_node_service, &c.f, err, sizeof err);
  state_node_services(ctx->store, n->name, node_service_each, &c);
  /* A Go nil slice prints null: without a filter an empty node has "Services": null; the
   * filter's Execute returns an empty slice, which prints []. */
  bool null = !c.f && json_array_size(c.out) == 0;
  filter_free(c.f);
  json_object_set_new(o, "Node", state_node_json(n));
  if (null) {
    json_decref(c.out);
    json_object_set_new(o, "Services", json_null());
  } else {
    json_object_set_new(o, "Services", c.out);
  }
  api_finish_json(req, res, o);
}

static void catalog_node(struct http_request *req, void *arg)
{
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing node name");
    return;
  }
  if (filter_ok(req, &filter_type_node_service)) api_read(arg, req, node_read);
}

static void catalog_node_services(struct http_request *req, void *arg)
{
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing node name");
    return;
  }
  if (filter_ok(req, &filter_type_node_service)) api_read(arg, req, node_services_read);
}

/* ---- decoding request bodies as Go's encoding/json does ---- */

struct dec {
  char err[512];
  bool failed;
  void **allocs; /* everything the decoded request points at besides the json_t tree */
  size_t n, cap;
};

static void *dalloc(struct dec *d, size_t size)
{
  if (d->n == d->cap) {
    d->cap = d->cap ? d->cap * 2 : 16;
    d->allocs = xrealloc(d->allocs, d->cap * sizeof *d->allocs);
  }
  return d->allocs[d->n++] = xcalloc(1, size ? size : 1);
}

static void dec_free(struct dec *d)
{
  for (size_t i = 0; i < d->n; i++) free(d->allocs[i]);
  free(d->allocs);
}

static void type_error(struct dec *d, const json_t *v, const char *path, const char *gotype)
{
  if (d->failed) return;
  d->failed = true;
  snprintf(d->err, sizeof d->err, "json: cannot unmarshal %s into Go struct field %s of type %s",
           json_go_kind(v), path, gotype);
}

/* Go matches JSON keys to struct fields case-insensitively; when several keys match, the
 * last one wins (each assigns in turn). */
static json_t *field(const json_t *obj, const char *name)
{
  json_t *hit = NULL, *v;
  const char *k;
  json_object_foreach((json_t *)obj, k, v)
  {
    if (strcasecmp(k, name) == 0) hit = v;
  }
  return hit;
}

static void path_of(char *out, size_t outlen, const char *parent, const char *name)
{
  snprintf(out, outlen, "%s.%s", parent, name);
}

static const char *get_string(struct dec *d, const json_t *obj, const char *name,
                              const char *parent, const char *gotype)
{
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return "";
  if (json_is_string(v)) return json_string_value(v);
  char path[256];
  path_of(path, sizeof path, parent, name);
  type_error(d, v, path, gotype ? gotype : "string");
  return "";
}

static int64_t get_int(struct dec *d, const json_t *obj, const char *name, const char *parent)
{
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return 0;
  if (json_is_integer(v)) return json_integer_value(v);
  char path[256];
  path_of(path, sizeof path, parent, name);
  type_error(d, v, path, "int");
  return 0;
}

static bool get_bool(struct dec *d, const json_t *obj, const char *name, const char *parent)
{
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return false;
  if (json_is_boolean(v)) return json_is_true(v);
  char path[256];
  path_of(path, sizeof path, parent, name);
  type_error(d, v, path, "bool");
  return false;
}

static struct state_map get_strmap(struct dec *d, const json_t *obj, const char *name,
                                   const char *parent)
{
  struct state_map m = {NULL, 0, true};
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return m;
  char path[256];
  path_of(path, sizeof path, parent, name);
  if (!json_is_object(v)) {
    type_error(d, v, path, "map[string]string");
    return m;
  }
  size_t n = json_object_size(v);
  struct state_pair *items = dalloc(d, n * sizeof *items);
  size_t i = 0;
  const char *k;
  json_t *e;
  json_object_foreach(v, k, e)
  {
    if (!json_is_string(e) && !json_is_null(e)) type_error(d, e, path, "string");
    items[i++] = (struct state_pair){k, json_is_string(e) ? json_string_value(e) : ""};
  }
  return (struct state_map){items, n, false};
}

static const char **get_strs(struct dec *d, const json_t *obj, const char *name,
                             const char *parent, size_t *n, bool *null)
{
  *n = 0;
  *null = true;
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return NULL;
  char path[256];
  path_of(path, sizeof path, parent, name);
  if (!json_is_array(v)) {
    type_error(d, v, path, "[]string");
    return NULL;
  }
  *n = json_array_size(v);
  *null = false;
  const char **out = dalloc(d, *n * sizeof *out);
  for (size_t i = 0; i < *n; i++) {
    json_t *e = json_array_get(v, i);
    if (!json_is_string(e) && !json_is_null(e)) type_error(d, e, path, "string");
    out[i] = json_is_string(e) ? json_string_value(e) : "";
  }
  return out;
}

/* A JSON object kept as compact text (Locality, Connect): NULL when absent, null or {}. */
static const char *get_blob(struct dec *d, const json_t *obj, const char *name, const char *parent,
                            const char *gotype)
{
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return NULL;
  char path[256];
  path_of(path, sizeof path, parent, name);
  if (!json_is_object(v)) {
    type_error(d, v, path, gotype);
    return NULL;
  }
  if (json_object_size(v) == 0) return NULL;
  char *text = json_dumps(v, JSON_COMPACT);
  char *copy = dalloc(d, strlen(text) + 1);
  strcpy(copy, text);
  free(text);
  return copy;
}

/* structs.ConnectProxyConfig, reordered as Go prints it: omitempty fields left out when
 * empty, Mode/MeshGateway/Expose always present. NULL for the empty config. */
static const char *get_proxy(struct dec *d, const json_t *obj, const char *parent)
{
  json_t *v = field(obj, "Proxy");
  if (!v || json_is_null(v)) return NULL;
  char path[256];
  path_of(path, sizeof path, parent, "Proxy");
  if (!json_is_object(v)) {
    type_error(d, v, path, "structs.ConnectProxyConfig");
    return NULL;
  }
  static const struct {
    const char *name;
    bool always;
  } order[] = {{"EnvoyExtensions", false}, {"DestinationServiceName", false},
               {"DestinationServiceID", false}, {"LocalServiceAddress", false},
               {"LocalServicePort", false}, {"LocalServiceSocketPath", false}, {"Mode", true},
               {"TransparentProxy", false}, {"Config", false}, {"Upstreams", false},
               {"MeshGateway", true}, {"Expose", true}, {"AccessLogs", false}};
  json_t *out = json_object();
  bool empty = true;
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    json_t *x = field(v, order[i].name);
    bool zero = !x || json_is_null(x) || (json_is_string(x) && !*json_string_value(x)) ||
                (json_is_integer(x) && json_integer_value(x) == 0) || json_is_false(x) ||
                ((json_is_object(x) && json_object_size(x) == 0) ||
                 (json_is_array(x) && json_array_size(x) == 0));
    if (!zero) empty = false;
    if (zero && !order[i].always) continue;
    if (zero) {
      x = strcmp(order[i].name, "Mode") == 0 ? json_string("") : json_object();
      json_object_set_new(out, order[i].name, x);
    } else {
      json_object_set(out, order[i].name, x);
    }
  }
  const char *result = NULL;
  if (!empty) {
    char *text = json_dumps(out, JSON_COMPACT);
    char *copy = dalloc(d, strlen(text) + 1);
    strcpy(copy, text);
    free(text);
    result = copy;
  }
  json_decref(out);
  return result;
}

/* A duration: Go string ("10s") or nanoseconds (HealthCheckDefinition.UnmarshalJSON). */
static int64_t get_duration(struct dec *d, const json_t *obj, const char *name)
{
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return 0;
  if (json_is_integer(v)) return json_integer_value(v);
  if (json_is_real(v)) return (int64_t)json_real_value(v);
  if (json_is_string(v)) {
    int64_t ns;
    const char *s = json_string_value(v);
    if (duration_parse(s, strlen(s), &ns) == 0) return ns;
    if (!d->failed) {
      d->failed = true;
      snprintf(d->err, sizeof d->err, "time: invalid duration \"%s\"", s);
    }
    return 0;
  }
  type_error(d, v, "HealthCheckDefinition", "time.Duration");
  return 0;
}

/* structs.HealthCheckDefinition as the canonical JSON its MarshalJSON prints. */
static const char *get_definition(struct dec *d, const json_t *obj, const char *parent)
{
  json_t *v = field(obj, "Definition");
  if (!v || json_is_null(v)) return NULL;
  char path[256];
  path_of(path, sizeof path, parent, "Definition");
  if (!json_is_object(v)) {
    type_error(d, v, path, "structs.HealthCheckDefinition");
    return NULL;
  }
  const char *P = "HealthCheck.Definition";
  json_t *o = json_object();
  char dur[32];
  int64_t iv = get_duration(d, v, "Interval"), to = get_duration(d, v, "Timeout"),
          dcsa = get_duration(d, v, "DeregisterCriticalServiceAfter"),
          ttl = get_duration(d, v, "TTL");
  int64_t oms = get_int(d, v, "OutputMaxSize", P);
  if (iv) json_object_set_new(o, "Interval", json_string(duration_format(iv, dur, sizeof dur)));
  if (oms > 0) json_object_set_new(o, "OutputMaxSize", json_integer(oms));
  if (to) json_object_set_new(o, "Timeout", json_string(duration_format(to, dur, sizeof dur)));
  if (dcsa)
    json_object_set_new(o, "DeregisterCriticalServiceAfter",
                        json_string(duration_format(dcsa, dur, sizeof dur)));
  static const char *const strs1[] = {"HTTP", "TLSServerName"};
  for (size_t i = 0; i < 2; i++) {
    const char *s = get_string(d, v, strs1[i], P, NULL);
    if (*s) json_object_set_new(o, strs1[i], json_string(s));
  }
  if (get_bool(d, v, "TLSSkipVerify", P)) json_object_set_new(o, "TLSSkipVerify", json_true());
  json_t *hdr = field(v, "Header");
  if (hdr && json_is_object(hdr) && json_object_size(hdr)) {
    size_t n;
    const char **keys = sorted_keys(hdr, &n);
    json_t *h = json_object();
    for (size_t i = 0; i < n; i++) {
      json_t *vals = json_object_get(hdr, keys[i]), *arr = json_array();
      for (size_t k = 0; json_is_array(vals) && k < json_array_size(vals); k++) {
        json_t *e = json_array_get(vals, k);
        if (!json_is_string(e)) type_error(d, e, "HealthCheck.Definition.Header", "string");
        else json_array_append(arr, e);
      }
      if (!json_is_array(vals) && !json_is_null(vals))
        type_error(d, vals, "HealthCheck.Definition.Header", "[]string");
      json_object_set_new(h, keys[i], arr);
    }
    free(keys);
    json_object_set_new(o, "Header", h);
  } else if (hdr && !json_is_null(hdr) && !json_is_object(hdr)) {
    type_error(d, hdr, "HealthCheck.Definition.Header", "map[string][]string");
  }
  static const char *const strs2[] = {"Method", "Body"};
  for (size_t i = 0; i < 2; i++) {
    const char *s = get_string(d, v, strs2[i], P, NULL);
    if (*s) json_object_set_new(o, strs2[i], json_string(s));
  }
  if (get_bool(d, v, "DisableRedirects", P)) json_object_set_new(o, "DisableRedirects", json_true());
  static const char *const strs3[] = {"TCP", "UDP", "H2PING", "OSService"};
  for (size_t i = 0; i < 4; i++) {
    const char *s = get_string(d, v, strs3[i], P, NULL);
    if (*s) json_object_set_new(o, strs3[i], json_string(s));
  }
  if (get_bool(d, v, "H2PingUseTLS", P)) json_object_set_new(o, "H2PingUseTLS", json_true());
  size_t nargs;
  bool args_null;
  const char **args = get_strs(d, v, "ScriptArgs", P, &nargs, &args_null);
  if (nargs) {
    json_t *a = json_array();
    for (size_t i = 0; i < nargs; i++) json_array_append_new(a, json_string(args[i]));
    json_object_set_new(o, "ScriptArgs", a);
  }
  static const char *const strs4[] = {"DockerContainerID", "Shell", "GRPC"};
  for (size_t i = 0; i < 3; i++) {
    const char *s = get_string(d, v, strs4[i], P, NULL);
    if (*s) json_object_set_new(o, strs4[i], json_string(s));
  }
  if (get_bool(d, v, "GRPCUseTLS", P)) json_object_set_new(o, "GRPCUseTLS", json_true());
  static const char *const strs5[] = {"AliasNode", "AliasService"};
  for (size_t i = 0; i < 2; i++) {
    const char *s = get_string(d, v, strs5[i], P, NULL);
    if (*s) json_object_set_new(o, strs5[i], json_string(s));
  }
  if (ttl) json_object_set_new(o, "TTL", json_integer(ttl));
  const char *result = NULL;
  if (json_object_size(o)) {
    char *text = json_dumps(o, JSON_COMPACT);
    char *copy = dalloc(d, strlen(text) + 1);
    strcpy(copy, text);
    free(text);
    result = copy;
  }
  json_decref(o);
  return result;
}

static void decode_check(struct dec *d, const json_t *v, const char *path,
                         struct state_register_check *c)
{
  if (!json_is_object(v)) {
    type_error(d, v, path, "structs.HealthCheck");
    return;
  }
  const char *P = "RegisterRequest.Check";
  c->node = get_string(d, v, "Node", P, NULL);
  c->check_id = get_string(d, v, "CheckID", P, "types.CheckID");
  c->name = get_string(d, v, "Name", P, NULL);
  c->status = get_string(d, v, "Status", P, NULL);
  c->notes = get_string(d, v, "Notes", P, NULL);
  c->output = get_string(d, v, "Output", P, NULL);
  c->service_id = get_string(d, v, "ServiceID", P, NULL);
  (void)get_string(d, v, "ServiceName", P, NULL); /* copied from the service */
  size_t n;
  bool null;
  (void)get_strs(d, v, "ServiceTags", P, &n, &null);
  c->type = get_string(d, v, "Type", P, NULL);
  c->interval = get_string(d, v, "Interval", P, NULL);
  c->timeout = get_string(d, v, "Timeout", P, NULL);
  c->exposed_port = get_int(d, v, "ExposedPort", P);
  c->definition = get_definition(d, v, P);
}

static void decode_service(struct dec *d, const json_t *v, struct state_register_service *s)
{
  const char *P = "RegisterRequest.Service";
  s->kind = get_string(d, v, "Kind", P, "structs.ServiceKind");
  s->id = get_string(d, v, "ID", P, NULL);
  s->name = get_string(d, v, "Service", P, NULL);
  s->tags = get_strs(d, v, "Tags", P, &s->n_tags, &s->tags_null);
  s->address = get_string(d, v, "Address", P, NULL);
  json_t *ta = field(v, "TaggedAddresses");
  if (ta && json_is_object(ta)) {
    size_t n = json_object_size(ta), i = 0;
    struct state_svc_addr *items = dalloc(d, n * sizeof *items);
    const char *k;
    json_t *e;
    json_object_foreach(ta, k, e)
    {
      if (!json_is_object(e) && !json_is_null(e)) {
        type_error(d, e, "RegisterRequest.Service.TaggedAddresses", "structs.ServiceAddress");
        continue;
      }
      items[i++] = (struct state_svc_addr){
          k, json_is_object(e) ? get_string(d, e, "Address", "ServiceAddress", NULL) : "",
          json_is_object(e) ? get_int(d, e, "Port", "ServiceAddress") : 0};
    }
    s->tagged_addresses = items;
    s->n_tagged = i;
  } else if (ta && !json_is_null(ta)) {
    type_error(d, ta, "RegisterRequest.Service.TaggedAddresses",
               "map[string]structs.ServiceAddress");
  }
  s->meta = get_strmap(d, v, "Meta", P);
  s->port = get_int(d, v, "Port", P);
  s->socket_path = get_string(d, v, "SocketPath", P, NULL);
  json_t *w = field(v, "Weights");
  if (w && json_is_object(w)) {
    s->has_weights = true;
    s->weight_passing = get_int(d, w, "Passing", "RegisterRequest.Service.Weights");
    s->weight_warning = get_int(d, w, "Warning", "RegisterRequest.Service.Weights");
  } else if (w && !json_is_null(w)) {
    type_error(d, w, "RegisterRequest.Service.Weights", "structs.Weights");
  }
  s->enable_tag_override = get_bool(d, v, "EnableTagOverride", P);
  s->proxy = get_proxy(d, v, P);
  s->connect = get_blob(d, v, "Connect", P, "structs.ServiceConnect");
  s->locality = get_blob(d, v, "Locality", P, "structs.Locality");
}

/* Decodes a RegisterRequest body into *r (pointing into *root and d's allocations, both
 * the caller's to free). Returns 0, or -1 with Consul's "Request decode failed: ..." in d. */
static int decode_register(struct http_request *req, json_t **root, struct dec *d,
                           struct state_register *r)
{
  memset(r, 0, sizeof *r);
  json_error_t jerr;
  *root = NULL;
  if (!req->body_len) {
    snprintf(d->err, sizeof d->err, "Request decode failed: EOF");
    return -1;
  }
  *root = json_loadb((const char *)req->body, req->body_len, JSON_DECODE_ANY, &jerr);
  if (!*root) {
    snprintf(d->err, sizeof d->err, "Request decode failed: %s", jerr.text);
    return -1;
  }
  json_t *v = *root;
  if (json_is_null(v)) return 0; /* Go decodes null into the zero request */
  if (!json_is_object(v)) {
    snprintf(d->err, sizeof d->err,
             "Request decode failed: json: cannot unmarshal %s into Go value of type "
             "structs.RegisterRequest",
             json_go_kind(v));
    return -1;
  }
  const char *P = "RegisterRequest";
  r->datacenter = get_string(d, v, "Datacenter", P, NULL);
  r->id = get_string(d, v, "ID", P, "types.NodeID");
  r->node = get_string(d, v, "Node", P, NULL);
  r->address = get_string(d, v, "Address", P, NULL);
  r->tagged_addresses = get_strmap(d, v, "TaggedAddresses", P);
  r->node_meta = get_strmap(d, v, "NodeMeta", P);
  r->locality = get_blob(d, v, "Locality", P, "structs.Locality");
  r->skip_node_update = get_bool(d, v, "SkipNodeUpdate", P);
  json_t *svc = field(v, "Service");
  if (svc && json_is_object(svc)) {
    struct state_register_service *s = dalloc(d, sizeof *s);
    decode_service(d, svc, s);
    r->service = s;
  } else if (svc && !json_is_null(svc)) {
    type_error(d, svc, "RegisterRequest.Service", "structs.NodeService");
  }
  /* Catalog.Register moves the single Check into Checks (after them). */
  json_t *checks = field(v, "Checks"), *check = field(v, "Check");
  size_t nc = json_is_array(checks) ? json_array_size(checks) : 0;
  if (checks && !json_is_null(checks) && !json_is_array(checks))
    type_error(d, checks, "RegisterRequest.Checks", "structs.HealthChecks");
  bool one = check && !json_is_null(check);
  if (nc + one > STATE_CAT_MAX_LIST) {
    snprintf(d->err, sizeof d->err, "Request decode failed: more than %d checks",
             STATE_CAT_MAX_LIST);
    return -1;
  }
  struct state_register_check *cs = dalloc(d, (nc + one) * sizeof *cs);
  for (size_t i = 0; i < nc; i++)
    if (!json_is_null(json_array_get(checks, i)))
      decode_check(d, json_array_get(checks, i), "RegisterRequest.Checks", &cs[r->n_checks++]);
  if (one) decode_check(d, check, "RegisterRequest.Check", &cs[r->n_checks++]);
  r->checks = cs;
  if (d->failed) {
    static const char prefix[] = "Request decode failed: ";
    size_t plen = sizeof prefix - 1, len = strnlen(d->err, sizeof d->err - 1 - plen);
    memmove(d->err + plen, d->err, len);
    memcpy(d->err, prefix, plen);
    d->err[plen + len] = '\0';
    return -1;
  }
  return 0;
}

/* ---- PUT /v1/catalog/register and /v1/catalog/deregister ---- */

/* A write naming another datacenter would be forwarded there; without WAN federation there
 * is no path to it (Consul's answer). */
static bool other_dc(struct api_ctx *ctx, struct http_request *req, const char *dc)
{
  const char *q = http_query(req, "dc");
  if ((dc && *dc && strcasecmp(dc, ctx->cfg->datacenter) != 0) ||
      (q && *q && strcasecmp(q, ctx->cfg->datacenter) != 0)) {
    http_respond_error(req, 500, "No path to datacenter");
    return true;
  }
  return false;
}

static void register_done(struct api_ctx *ctx, struct http_request *req,
                          const struct state_cmd_result *res, uint64_t index)
{
  (void)index;
  if (res->ok) {
    http_respond(req, 200, "application/json", "true", 4);
    return;
  }
  /* Refused at apply time (the store changed after the request was checked): the store
   * says why in Consul's words. */
  http_respond_error(req, 500, "%s",
                     res->msg[0] ? res->msg : "the catalog changed while the registration was in flight");
}

static void catalog_register(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  json_t *root;
  struct dec d = {0};
  struct state_register r;
  if (decode_register(req, &root, &d, &r) != 0) {
    http_respond_error(req, 400, "%s", d.err);
    goto out;
  }
  if (other_dc(ctx, req, r.datacenter)) goto out;
  r.datacenter = ctx->cfg->datacenter; /* Consul fills in the agent's datacenter */
  if (ctx->store) {
    char err[512];
    int rc = state_catalog_register_validate(ctx->store, &r, err, sizeof err);
    if (rc) {
      http_respond_error(req, rc == CC_EINVAL ? 400 : 500, "%s", err);
      goto out;
    }
  }
  struct buf cmd = BUF_INIT;
  state_cmd_encode_register(&cmd, &r);
  api_write(ctx, req, &cmd, register_done);
  buf_free(&cmd);
out:
  json_decref(root);
  dec_free(&d);
}

static void deregister_done(struct api_ctx *ctx, struct http_request *req,
                            const struct state_cmd_result *res, uint64_t index)
{
  (void)ctx;
  (void)res;
  (void)index;
  http_respond(req, 200, "application/json", "true", 4);
}

static void catalog_deregister(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  struct dec d = {0};
  json_error_t jerr;
  json_t *v = NULL;
  if (!req->body_len) {
    http_respond_error(req, 400, "Request decode failed: EOF");
    return;
  }
  v = json_loadb((const char *)req->body, req->body_len, JSON_DECODE_ANY, &jerr);
  if (!v) {
    http_respond_error(req, 400, "Request decode failed: %s", jerr.text);
    return;
  }
  if (!json_is_object(v) && !json_is_null(v)) {
    http_respond_error(req, 400,
                       "Request decode failed: json: cannot unmarshal %s into Go value of type "
                       "structs.DeregisterRequest",
                       json_go_kind(v));
    json_decref(v);
    return;
  }
  const char *P = "DeregisterRequest";
  const char *dc = json_is_object(v) ? get_string(&d, v, "Datacenter", P, NULL) : "";
  struct state_deregister r = {
      json_is_object(v) ? get_string(&d, v, "Node", P, NULL) : "",
      json_is_object(v) ? get_string(&d, v, "ServiceID", P, NULL) : "",
      json_is_object(v) ? get_string(&d, v, "CheckID", P, "types.CheckID") : ""};
  if (d.failed) {
    http_respond_error(req, 400, "Request decode failed: %s", d.err);
  } else if (!other_dc(ctx, req, dc)) {
    if (!*r.node) {
      http_respond_error(req, 400, "Must provide node");
    } else if (strlen(r.node) > STATE_CAT_MAX_NAME || strlen(r.service_id) > STATE_CAT_MAX_NAME ||
               strlen(r.check_id) > STATE_CAT_MAX_NAME) {
      http_respond_error(req, 400, "Node, ServiceID or CheckID is longer than %d bytes",
                         STATE_CAT_MAX_NAME);
    } else {
      struct buf cmd = BUF_INIT;
      state_cmd_encode_deregister(&cmd, &r);
      api_write(ctx, req, &cmd, deregister_done);
      buf_free(&cmd);
    }
  }
  json_decref(v);
  dec_free(&d);
}

void api_catalog_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_PUT, "/v1/catalog/register", catalog_register, ctx);
  http_server_route(ctx->http, HTTP_M_PUT, "/v1/catalog/deregister", catalog_deregister, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/catalog/datacenters", catalog_datacenters, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/catalog/nodes", catalog_nodes, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/catalog/services", catalog_services, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/catalog/service/", catalog_service, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/catalog/node/", catalog_node, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/catalog/node-services/", catalog_node_services,
                    ctx);
}
