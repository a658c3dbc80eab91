/* txn.c -- PUT /v1/txn: Consul's transactions (agent/txn_endpoint.go on the HTTP side,
 * agent/consul/txn_endpoint.go on the server side; the store's part is state/txn.h).
 *
 * The body is a JSON array of up to 128 ops, each {"KV": {...}} (Verb, Key, Value base64,
 * Flags, Index, Session) or {"Node"|"Service"|"Check": {...}}; field names match
 * case-insensitively, as Go's decoder. Limits and answers as Consul's convertOps:
 *   - a body over max(txn_max_req_len, kv_max_value_size): 413 (the HTTP server enforces the
 *     same cap first);
 *   - undecodable JSON: 400 "Failed to parse body: ...";
 *   - more than 128 ops: 413 "Transaction contains too many operations (n > 128)";
 *   - a KV value over kv_max_value_size: 413 "Value for key \"k\" is too large (n > m bytes)".
 * Catalog ops carry what convertOps copies: Node {ID, Node, Address, Datacenter (default the
 * agent's), TaggedAddresses, Meta, ModifyIndex}; Service's Node and Service {ID, Service,
 * Tags, Address, Meta, Port, Weights, EnableTagOverride, ModifyIndex}; Check {Node, CheckID,
 * Name, Status, Notes, Output, ServiceID, Definition {HTTP, TLSSkipVerify, Header, Method,
 * Body, TCP, Interval, Timeout, DeregisterCriticalServiceAfter}, ModifyIndex}.
 * Then Consul's preCheck, on the proposer: an empty key (except delete-tree) is "Must provide
 * key", and a lock on a key in lock-delay is "failed to lock key \"k\" due to lock delay";
 * catalog writes get nodePreApply/servicePreApply/checkPreApply (a node name, a node ID that
 * is a UUID, a service name with an ID, no 0.0.0.0 service address; the service ID and check
 * ID default to the name); these answer 409 without touching Raft. A transaction with a write goes through Raft as one
 * entry and answers 200 {"Results":[...],"Errors":null} or 409 {"Results":null,"Errors":[...]}
 * (everything rolled back). One without writes is read here, honouring ?stale and
 * ?consistent (a Raft barrier) but never blocking, with X-Consul-KnownLeader and
 * X-Consul-LastContact headers and the QueryMeta fields Go prints in a TxnReadResponse. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

#include <jansson.h>

#include "api/internal.h"
#include "lib/alloc.h"
#include "lib/b64.h"
#include "lib/duration.h"
#include "lib/err.h"
#include "lib/jsonw.h"
#include "state/session.h"
#include "state/txn.h"

/* ---- decoding ---- */

struct decoded {
  json_t *root;
  struct state_txn_op ops[STATE_TXN_MAX_OPS];
  size_t n;
  size_t writes;
  uint8_t *values[STATE_TXN_MAX_OPS]; /* decoded KV values (owned) */
  void **allocs; /* catalog rows the ops point at (owned, each freed) */
  size_t n_allocs, cap_allocs;
  json_t *keep; /* JSON values the rows point into besides root (owned) */
  const char *svc_names[STATE_TXN_MAX_OPS]; /* a Service op's Service.Service (preCheck) */
  int status;                        /* on failure: the HTTP status to answer */
  char err[512];                     /* and the message */
};

static void decoded_free(struct decoded *d)
{
  json_decref(d->root);
  json_decref(d->keep);
  for (size_t i = 0; i < STATE_TXN_MAX_OPS; i++) free(d->values[i]);
  for (size_t i = 0; i < d->n_allocs; i++) free(d->allocs[i]);
  free(d->allocs);
}

static const char *json_kind(const json_t *v)
{
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "object";
  case JSON_ARRAY: return "array";
  case JSON_STRING: return "string";
  case JSON_INTEGER:
  case JSON_REAL: return "number";
  case JSON_TRUE:
  case JSON_FALSE: return "bool";
  default: return "null";
  }
}

static int fail(struct decoded *d, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct decoded *d, int status, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->err, sizeof d->err, fmt, ap);
  va_end(ap);
  d->status = status;
  return -1;
}

/* Go matches keys to fields case-insensitively; the last matching key wins. */
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

static int type_error(struct decoded *d, const json_t *v, const char *path, const char *gotype)
{
  return fail(d, 400,
              "Failed to parse body: json: cannot unmarshal %s into Go struct field %s of type %s",
              json_kind(v), path, gotype);
}

static int get_str(struct decoded *d, const json_t *obj, const char *name, const char *path,
                   const char **out)
{
  *out = "";
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_string(v)) return type_error(d, v, path, "string");
  *out = json_string_value(v);
  return 0;
}

static int get_u64(struct decoded *d, const json_t *obj, const char *name, const char *path,
                   uint64_t *out)
{
  *out = 0;
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return 0;
  if (json_is_integer(v) && json_integer_value(v) >= 0) {
    *out = (uint64_t)json_integer_value(v);
    return 0;
  }
  if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) < 18446744073709551616.0 &&
      json_real_value(v) == (double)(uint64_t)json_real_value(v)) {
    *out = (uint64_t)json_real_value(v); /* beyond int64: jansson parsed it as a double */
    return 0;
  }
  return type_error(d, v, path, "uint64");
}

static int decode_kv(struct api_ctx *ctx, struct decoded *d, const json_t *kv, size_t i)
{
  struct state_txn_op *op = &d->ops[d->n];
  *op = (struct state_txn_op){.kind = STATE_TXN_KV};
  if (!json_is_object(kv)) return type_error(d, kv, "TxnOp.KV", "api.KVTxnOp");
  const char *key;
  if (get_str(d, kv, "Verb", "KVTxnOp.Verb", &op->verb) ||
      get_str(d, kv, "Key", "KVTxnOp.Key", &key) ||
      get_str(d, kv, "Session", "KVTxnOp.Session", &op->session) ||
      get_u64(d, kv, "Flags", "KVTxnOp.Flags", &op->flags) ||
      get_u64(d, kv, "Index", "KVTxnOp.Index", &op->index))
    return -1;
  op->key = key;
  op->key_len = strlen(key);
  if (op->key_len > STATE_KV_MAX_KEY) return fail(d, 413, "Key is longer than %d bytes", STATE_KV_MAX_KEY);
  if (strlen(op->session) > STATE_KV_MAX_SESSION) return fail(d, 400, "Session is too long");
  if (strlen(op->verb) > 64) return fail(d, 400, "Verb is too long");
  json_t *v = field(kv, "Value");
  if (v && !json_is_null(v)) {
    if (!json_is_string(v)) return type_error(d, v, "KVTxnOp.Value", "[]uint8");
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    uint8_t *out = xmalloc(len / 4 * 3 + 4);
    size_t n;
    if (b64_decode(s, len, out, &n) != 0) {
      free(out);
      return fail(d, 400, "Failed to parse body: illegal base64 data at input byte 0");
    }
    d->values[i] = out;
    op->value = out;
    op->value_len = n;
    if (n > ctx->cfg->kv_max_value_size) {
      char q[300];
      snprintf(q, sizeof q, "%.256s", key);
      return fail(d, 413, "Value for key \"%s\" is too large (%zu > %llu bytes)", q, n,
                  (unsigned long long)ctx->cfg->kv_max_value_size);
    }
  }
  if (state_txn_op_is_write(op)) d->writes++;
  d->n++;
  return 0;
}

/* ---- catalog ops: the rows set and cas write, as convertOps builds them ---- */

static void *dalloc(struct decoded *d, size_t size)
{
  if (d->n_allocs == d->cap_allocs) {
    d->cap_allocs = d->cap_allocs ? d->cap_allocs * 2 : 16;
    d->allocs = xrealloc(d->allocs, d->cap_allocs * sizeof *d->allocs);
  }
  return d->allocs[d->n_allocs++] = xcalloc(1, size ? size : 1);
}

static char *dstrdup(struct decoded *d, const char *s)
{
  char *c = dalloc(d, strlen(s) + 1);
  strcpy(c, s);
  return c;
}

static int get_i64(struct decoded *d, const json_t *obj, const char *name, const char *path,
                   int64_t *out)
{
  *out = 0;
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_integer(v)) return type_error(d, v, path, "int");
  *out = json_integer_value(v);
  return 0;
}

static int get_bool(struct decoded *d, const json_t *obj, const char *name, const char *path,
                    bool *out)
{
  *out = false;
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_boolean(v)) return type_error(d, v, path, "bool");
  *out = json_is_true(v);
  return 0;
}

/* map[string]string (Meta, TaggedAddresses); null stays null. */
static int get_strmap(struct decoded *d, const json_t *obj, const char *name, const char *path,
                      struct state_map *out)
{
  *out = (struct state_map){NULL, 0, true};
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_object(v)) return type_error(d, v, path, "map[string]string");
  size_t n = json_object_size(v), i = 0;
  if (n > STATE_CAT_MAX_LIST) return fail(d, 400, "Failed to parse body: %s is too large", path);
  struct state_pair *items = dalloc(d, n * sizeof *items);
  const char *k;
  json_t *e;
  json_object_foreach(v, k, e)
  {
    if (!json_is_string(e) && !json_is_null(e)) return type_error(d, e, path, "string");
    items[i++] = (struct state_pair){k, json_is_string(e) ? json_string_value(e) : ""};
  }
  *out = (struct state_map){items, n, false};
  return 0;
}

/* []string; null stays null. */
static int get_strs(struct decoded *d, const json_t *obj, const char *name, const char *path,
                    const char *const **out, size_t *n, bool *null)
{
  *out = NULL;
  *n = 0;
  *null = true;
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_array(v)) return type_error(d, v, path, "[]string");
  *n = json_array_size(v);
  if (*n > STATE_CAT_MAX_LIST) return fail(d, 400, "Failed to parse body: %s is too large", path);
  *null = false;
  const char **a = dalloc(d, *n * sizeof *a);
  for (size_t i = 0; i < *n; i++) {
    json_t *e = json_array_get(v, i);
    if (!json_is_string(e) && !json_is_null(e)) return type_error(d, e, path, "string");
    a[i] = json_is_string(e) ? json_string_value(e) : "";
  }
  *out = a;
  return 0;
}

/* api.ReadableDuration / time.Duration: "10s" or nanoseconds. */
static int get_dur(struct decoded *d, const json_t *obj, const char *name, int64_t *out)
{
  *out = 0;
  json_t *v = field(obj, name);
  if (!v || json_is_null(v)) return 0;
  if (json_is_integer(v)) {
    *out = json_integer_value(v);
    return 0;
  }
  if (json_is_string(v)) {
    const char *t = json_string_value(v);
    if (duration_parse(t, strlen(t), out) == 0) return 0;
    return fail(d, 400, "Failed to parse body: time: invalid duration \"%.200s\"", t);
  }
  return type_error(d, v, "HealthCheckDefinition", "api.ReadableDuration");
}

/* The fields of api.HealthCheckDefinition that convertOps copies, as the canonical JSON the
 * catalog stores (the field order of structs.HealthCheckDefinition); NULL when empty. */
static int get_definition(struct decoded *d, const json_t *chk, const char **out)
{
  *out = NULL;
  json_t *v = field(chk, "Definition");
  if (!v || json_is_null(v)) return 0;
  if (!json_is_object(v)) return type_error(d, v, "HealthCheck.Definition", "api.HealthCheckDefinition");
  int64_t iv, to, dcsa;
  const char *http, *method, *body, *tcp;
  bool skip;
  if (get_dur(d, v, "Interval", &iv) || get_dur(d, v, "Timeout", &to) ||
      get_dur(d, v, "DeregisterCriticalServiceAfter", &dcsa) ||
      get_str(d, v, "HTTP", "HealthCheckDefinition.HTTP", &http) ||
      get_str(d, v, "Method", "HealthCheckDefinition.Method", &method) ||
      get_str(d, v, "Body", "HealthCheckDefinition.Body", &body) ||
      get_str(d, v, "TCP", "HealthCheckDefinition.TCP", &tcp) ||
      get_bool(d, v, "TLSSkipVerify", "HealthCheckDefinition.TLSSkipVerify", &skip))
    return -1;
  json_t *o = json_object();
  char dur[32];
  if (iv) json_object_set_new(o, "Interval", json_string(duration_format(iv, dur, sizeof dur)));
  if (to) json_object_set_new(o, "Timeout", json_string(duration_format(to, dur, sizeof dur)));
  if (dcsa)
    json_object_set_new(o, "DeregisterCriticalServiceAfter",
                        json_string(duration_format(dcsa, dur, sizeof dur)));
  if (*http) json_object_set_new(o, "HTTP", json_string(http));
  if (skip) json_object_set_new(o, "TLSSkipVerify", json_true());
  json_t *hdr = field(v, "Header");
  if (hdr && json_is_object(hdr) && json_object_size(hdr)) {
    json_t *h = json_object();
    const char *k;
    json_t *vals;
    json_object_foreach(hdr, k, vals)
    {
      json_t *arr = json_array();
      for (size_t i = 0; json_is_array(vals) && i < json_array_size(vals); i++)
        if (json_is_string(json_array_get(vals, i))) json_array_append(arr, json_array_get(vals, i));
      json_object_set_new(h, k, arr);
    }
    json_object_set_new(o, "Header", h);
  }
  if (*method) json_object_set_new(o, "Method", json_string(method));
  if (*body) json_object_set_new(o, "Body", json_string(body));
  if (*tcp) json_object_set_new(o, "TCP", json_string(tcp));
  if (json_object_size(o)) {
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    *out = dstrdup(d, text);
    free(text);
  }
  json_decref(o);
  if (*out && strlen(*out) > STATE_CAT_MAX_JSON)
    return fail(d, 400, "Failed to parse body: check definition is too large");
  return 0;
}

static int decode_node_row(struct api_ctx *ctx, struct decoded *d, const json_t *n,
                           struct state_txn_op *op)
{
  struct state_register *r = dalloc(d, sizeof *r);
  r->node = op->node;
  r->id = op->node_id;
  if (get_str(d, n, "Address", "Node.Address", &r->address) ||
      get_str(d, n, "Datacenter", "Node.Datacenter", &r->datacenter) ||
      get_strmap(d, n, "TaggedAddresses", "Node.TaggedAddresses", &r->tagged_addresses) ||
      get_strmap(d, n, "Meta", "Node.Meta", &r->node_meta))
    return -1;
  if (!*r->datacenter) r->datacenter = ctx->cfg->datacenter; /* convertOps' default */
  op->reg = r;
  return 0;
}

static int decode_service_row(struct decoded *d, const json_t *svc, struct state_txn_op *op)
{
  struct state_register *r = dalloc(d, sizeof *r);
  struct state_register_service *s = dalloc(d, sizeof *s);
  r->node = op->node;
  r->skip_node_update = true;
  s->id = op->service_id;
  if (get_str(d, svc, "Service", "AgentService.Service", &s->name) ||
      get_strs(d, svc, "Tags", "AgentService.Tags", &s->tags, &s->n_tags, &s->tags_null) ||
      get_str(d, svc, "Address", "AgentService.Address", &s->address) ||
      get_strmap(d, svc, "Meta", "AgentService.Meta", &s->meta) ||
      get_i64(d, svc, "Port", "AgentService.Port", &s->port) ||
      get_bool(d, svc, "EnableTagOverride", "AgentService.EnableTagOverride",
               &s->enable_tag_override))
    return -1;
  json_t *w = field(svc, "Weights");
  if (w && !json_is_null(w) && !json_is_object(w))
    return type_error(d, w, "AgentService.Weights", "api.AgentWeights");
  /* convertOps always sends Weights; zero ones become {1, 1} here (the catalog's rule). */
  s->has_weights = true;
  if (w && json_is_object(w) &&
      (get_i64(d, w, "Passing", "AgentWeights.Passing", &s->weight_passing) ||
       get_i64(d, w, "Warning", "AgentWeights.Warning", &s->weight_warning)))
    return -1;
  r->service = s;
  op->reg = r;
  return 0;
}

static int decode_check_row(struct decoded *d, const json_t *chk, struct state_txn_op *op)
{
  struct state_register *r = dalloc(d, sizeof *r);
  struct state_register_check *c = dalloc(d, sizeof *c);
  r->node = op->node;
  r->skip_node_update = true;
  c->node = op->node;
  c->check_id = op->check_id;
  if (get_str(d, chk, "Name", "HealthCheck.Name", &c->name) ||
      get_str(d, chk, "Status", "HealthCheck.Status", &c->status) ||
      get_str(d, chk, "Notes", "HealthCheck.Notes", &c->notes) ||
      get_str(d, chk, "Output", "HealthCheck.Output", &c->output) ||
      get_str(d, chk, "ServiceID", "HealthCheck.ServiceID", &c->service_id) ||
      get_definition(d, chk, &c->definition))
    return -1;
  if (strlen(c->output) > STATE_CAT_MAX_OUTPUT)
    return fail(d, 400, "Failed to parse body: check output is too large");
  r->checks = c;
  r->n_checks = 1;
  op->reg = r;
  return 0;
}

static int decode_catalog(struct api_ctx *ctx, struct decoded *d, const json_t *v,
                          enum state_txn_kind kind)
{
  static const char *const names[] = {"KV", "Node", "Service", "Check"};
  struct state_txn_op *op = &d->ops[d->n];
  *op = (struct state_txn_op){.kind = kind};
  char path[64];
  snprintf(path, sizeof path, "TxnOp.%s", names[kind]);
  if (!json_is_object(v)) return type_error(d, v, path, "api.TxnOp");
  if (get_str(d, v, "Verb", "Verb", &op->verb)) return -1;
  op->node = op->service_id = op->check_id = op->node_id = "";
  json_t *inner = field(v, names[kind]);
  if (inner && !json_is_null(inner) && !json_is_object(inner)) {
    snprintf(path, sizeof path, "%sTxnOp.%s", names[kind], names[kind]);
    return type_error(d, inner, path, kind == STATE_TXN_SERVICE ? "api.AgentService"
                                      : kind == STATE_TXN_CHECK ? "api.HealthCheck"
                                                                : "api.Node");
  }
  if (inner && json_is_null(inner)) inner = NULL;
  switch (kind) {
  case STATE_TXN_NODE:
    if (inner && (get_str(d, inner, "Node", "Node.Node", &op->node) ||
                  get_str(d, inner, "ID", "Node.ID", &op->node_id) ||
                  get_u64(d, inner, "ModifyIndex", "Node.ModifyIndex", &op->index)))
      return -1;
    break;
  case STATE_TXN_SERVICE:
    if (get_str(d, v, "Node", "ServiceTxnOp.Node", &op->node)) return -1;
    if (inner && (get_str(d, inner, "ID", "AgentService.ID", &op->service_id) ||
                  get_u64(d, inner, "ModifyIndex", "AgentService.ModifyIndex", &op->index)))
      return -1;
    break;
  case STATE_TXN_CHECK:
    if (inner && (get_str(d, inner, "Node", "HealthCheck.Node", &op->node) ||
                  get_str(d, inner, "CheckID", "HealthCheck.CheckID", &op->check_id) ||
                  get_u64(d, inner, "ModifyIndex", "HealthCheck.ModifyIndex", &op->index)))
      return -1;
    break;
  default: break;
  }
  if (strlen(op->verb) > 64 || strlen(op->node) > STATE_CAT_MAX_NAME ||
      strlen(op->service_id) > STATE_CAT_MAX_NAME || strlen(op->check_id) > STATE_CAT_MAX_NAME ||
      strlen(op->node_id) > STATE_CAT_MAX_NAME)
    return fail(d, 400, "Failed to parse body: a name is too long");
  /* preCheck's defaults (servicePreApply, checkPreApply): the ID from the name. */
  bool row = strcmp(op->verb, "set") == 0 || strcmp(op->verb, "cas") == 0;
  json_t *empty = NULL;
  if (!inner) inner = empty = json_object();
  int rc = 0;
  if (kind == STATE_TXN_SERVICE) {
    const char *name;
    rc = get_str(d, inner, "Service", "AgentService.Service", &name);
    if (!rc && !*op->service_id && *name) op->service_id = name;
    d->svc_names[d->n] = rc ? "" : name;
  } else if (kind == STATE_TXN_CHECK) {
    const char *name;
    rc = get_str(d, inner, "Name", "HealthCheck.Name", &name);
    if (!rc && !*op->check_id && *name) op->check_id = name;
  }
  if (!rc && row) {
    if (kind == STATE_TXN_NODE) rc = decode_node_row(ctx, d, inner, op);
    else if (kind == STATE_TXN_SERVICE) rc = decode_service_row(d, inner, op);
    else rc = decode_check_row(d, inner, op);
  }
  /* The row's strings point into the JSON tree; an empty object made here must live as
   * long: keep it in the root's care. */
  if (empty) {
    if (rc == 0 && op->reg) json_array_append_new(d->keep, empty);
    else json_decref(empty);
  }
  if (rc) return -1;
  if (state_txn_op_is_write(op)) d->writes++;
  d->n++;
  return 0;
}

/* convertOps. Returns 0, or -1 with d->status and d->err. */
static int decode(struct api_ctx *ctx, struct http_request *req, struct decoded *d)
{
  memset(d, 0, sizeof *d);
  d->keep = json_array();
  uint64_t max = ctx->cfg->txn_max_req_len > ctx->cfg->kv_max_value_size
                     ? ctx->cfg->txn_max_req_len
                     : ctx->cfg->kv_max_value_size;
  if (req->body_len > max)
    return fail(d, 413,
                "Request body(%zu bytes) too large, max size: %llu bytes. See "
                "https://www.consul.io/docs/agent/config/config-files#txn_max_req_len.",
                req->body_len, (unsigned long long)max);
  if (!req->body_len) return fail(d, 400, "Failed to parse body: EOF");
  json_error_t jerr;
  d->root = json_loadb((const char *)req->body, req->body_len, JSON_DECODE_ANY, &jerr);
  if (!d->root) return fail(d, 400, "Failed to parse body: %s", jerr.text);
  if (json_is_null(d->root)) return 0;
  if (!json_is_array(d->root))
    return fail(d, 400,
                "Failed to parse body: json: cannot unmarshal %s into Go value of type api.TxnOps",
                json_kind(d->root));
  size_t n = json_array_size(d->root);
  if (n > STATE_TXN_MAX_OPS)
    return fail(d, 413, "Transaction contains too many operations (%zu > %d)", n,
                STATE_TXN_MAX_OPS);
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_array_get(d->root, i);
    if (json_is_null(o)) continue;
    if (!json_is_object(o))
      return fail(d, 400,
                  "Failed to parse body: json: cannot unmarshal %s into Go value of type api.TxnOp",
                  json_kind(o));
    json_t *v;
    /* The first of KV, Node, Service, Check that is set wins; none: the op is dropped. */
    if ((v = field(o, "KV")) && !json_is_null(v)) {
      if (decode_kv(ctx, d, v, i)) return -1;
    } else if ((v = field(o, "Node")) && !json_is_null(v)) {
      if (decode_catalog(ctx, d, v, STATE_TXN_NODE)) return -1;
    } else if ((v = field(o, "Service")) && !json_is_null(v)) {
      if (decode_catalog(ctx, d, v, STATE_TXN_SERVICE)) return -1;
    } else if ((v = field(o, "Check")) && !json_is_null(v)) {
      if (decode_catalog(ctx, d, v, STATE_TXN_CHECK)) return -1;
    }
  }
  return 0;
}

/* ---- answering ---- */

/* Re-indents compact JSON as Go's json.MarshalIndent(v, "", "    ") plus a newline. */
static void indent(struct buf *out, const char *s, size_t len)
{
  int depth = 0;
  bool in_str = false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (in_str) {
      buf_putc(out, c);
      if (c == '\\' && i + 1 < len) buf_putc(out, s[++i]);
      else if (c == '"') in_str = false;
      continue;
    }
    switch (c) {
    case '"':
      in_str = true;
      buf_putc(out, c);
      break;
    case '{':
    case '[':
      if (i + 1 < len && (s[i + 1] == '}' || s[i + 1] == ']')) {
        buf_putc(out, c);
        buf_putc(out, s[++i]);
        break;
      }
      buf_putc(out, c);
      depth++;
      buf_putc(out, '\n');
      for (int k = 0; k < depth; k++) buf_puts(out, "    ");
      break;
    case '}':
    case ']':
      depth--;
      buf_putc(out, '\n');
      for (int k = 0; k < depth; k++) buf_puts(out, "    ");
      buf_putc(out, c);
      break;
    case ',':
      buf_putc(out, ',');
      buf_putc(out, '\n');
      for (int k = 0; k < depth; k++) buf_puts(out, "    ");
      break;
    case ':':
      buf_puts(out, ": ");
      break;
    default: buf_putc(out, c); break;
    }
  }
  buf_putc(out, '\n');
}

static void respond_json(struct http_request *req, int status, const char *body, size_t len)
{
  struct buf b = BUF_INIT;
  if (http_query_has(req, "pretty")) indent(&b, body, len);
  else buf_append(&b, body, len);
  http_respond_buf(req, status, "application/json", &b);
}

/* ipaddr.IsAny: the unspecified address, bare or bracketed. */
static bool is_any_addr(const char *a)
{
  return strcmp(a, "0.0.0.0") == 0 || strcmp(a, "::") == 0 || strcmp(a, "[::]") == 0;
}

/* uuid.ParseUUID's complaints, for "Bad node ID: ...". */
static bool uuid_error(const char *id, struct buf *why)
{
  if (strlen(id) != 36) {
    buf_puts(why, "uuid string is wrong length");
    return true;
  }
  if (id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-') {
    buf_puts(why, "uuid is improperly formatted");
    return true;
  }
  for (size_t i = 0; i < 36; i++) {
    unsigned char c = (unsigned char)id[i];
    if (i == 8 || i == 13 || i == 18 || i == 23 || isxdigit(c)) continue;
    if (c < 0x80) buf_printf(why, "encoding/hex: invalid byte: U+%04X '%c'", c, c);
    else buf_puts(why, "encoding/hex: invalid byte");
    return true;
  }
  return false;
}

/* nodePreApply, servicePreApply and checkPreApply for catalog writes: a sentence in msg
 * (returned) or NULL. Reads are not checked (Consul skips "get"). */
static const char *catalog_precheck(const struct decoded *d, size_t i, struct buf *msg)
{
  const struct state_txn_op *op = &d->ops[i];
  if (!state_txn_op_is_write(op)) return NULL;
  switch (op->kind) {
  case STATE_TXN_NODE:
    if (!*op->node) return "Must provide node";
    if (*op->node_id) {
      struct buf why = BUF_INIT;
      if (uuid_error(op->node_id, &why)) {
        buf_printf(msg, "Bad node ID: %s", why.data);
        buf_free(&why);
        return msg->data;
      }
    }
    return NULL;
  case STATE_TXN_SERVICE: {
    const struct state_register_service *svc = op->reg ? op->reg->service : NULL;
    if (*op->service_id && !*d->svc_names[i])
      return "Must provide service name (Service.Service) when service ID is provided";
    if (svc && svc->address && is_any_addr(svc->address)) return "Invalid service address";
    return NULL;
  }
  default: return NULL;
  }
}

/* preCheck: errors found on the proposer, before Raft. Returns true when it answered 409. */
static bool precheck(struct api_ctx *ctx, struct http_request *req, const struct decoded *d,
                     const char *tail)
{
  struct buf errs = BUF_INIT;
  struct jsonw w;
  size_t n = 0;
  for (size_t i = 0; i < d->n; i++) {
    const struct state_txn_op *op = &d->ops[i];
    const char *what = NULL;
    struct buf msg = BUF_INIT;
    if (op->kind != STATE_TXN_KV) {
      what = catalog_precheck(d, i, &msg);
    } else if (!op->key_len && strcmp(op->verb, "delete-tree") != 0) {
      what = "Must provide key";
    } else if (strcmp(op->verb, "lock") == 0 && ctx->store &&
               state_kv_lock_delay_ms(ctx->store, op->key, op->key_len) > 0) {
      buf_puts(&msg, "failed to lock key ");
      state_txn_quote(&msg, op->key, op->key_len);
      buf_puts(&msg, " due to lock delay");
      what = msg.data;
    }
    if (!what) continue;
    if (n++) buf_putc(&errs, ',');
    jsonw_init(&w, &errs, false);
    jsonw_object_begin(&w);
    jsonw_key(&w, "OpIndex");
    jsonw_u64(&w, i);
    jsonw_key(&w, "What");
    jsonw_string(&w, what);
    jsonw_object_end(&w);
    buf_free(&msg);
  }
  if (!n) return false;
  struct buf body = BUF_INIT;
  buf_puts(&body, "{\"Results\":null,\"Errors\":[");
  buf_append(&body, errs.data, errs.len);
  buf_puts(&body, "]");
  if (tail) buf_puts(&body, tail);
  buf_puts(&body, "}");
  respond_json(req, 409, body.data, body.len);
  buf_free(&errs);
  buf_free(&body);
  return true;
}

/* ---- writes ---- */

static void apply_done(struct api_ctx *ctx, struct http_request *req,
                       const struct state_cmd_result *res, uint64_t index)
{
  (void)ctx;
  (void)index;
  if (!res->body) {
    http_respond_error(req, 500, "%s", res->msg[0] ? res->msg : "transaction failed");
    return;
  }
  respond_json(req, res->ok ? 200 : 409, res->body, res->body_len);
}

/* ---- reads ---- */

/* TxnReadResponse embeds QueryMeta, which Go prints inline after Results and Errors. */
static void read_tail(struct api_ctx *ctx, struct buf *b)
{
  bool known = ctx->consensus && consensus_leader_address(ctx->consensus) != NULL;
  uint64_t contact_ms = ctx->consensus ? consensus_last_contact_ms(ctx->consensus) : 0;
  buf_printf(b,
             ",\"Index\":0,\"LastContact\":%llu,\"KnownLeader\":%s,\"ConsistencyLevel\":\"\","
             "\"NotModified\":false,\"Backend\":0",
             (unsigned long long)contact_ms * 1000000ull, known ? "true" : "false");
}

static void read_headers(struct api_ctx *ctx, struct http_request *req)
{
  char v[32];
  bool known = ctx->consensus && consensus_leader_address(ctx->consensus) != NULL;
  http_set_header(req, "X-Consul-KnownLeader", known ? "true" : "false");
  snprintf(v, sizeof v, "%llu",
           (unsigned long long)(ctx->consensus ? consensus_last_contact_ms(ctx->consensus) : 0));
  http_set_header(req, "X-Consul-LastContact", v);
}

static void read_now(struct api_ctx *ctx, struct http_request *req)
{
  struct decoded *d = xmalloc(sizeof *d);
  if (decode(ctx, req, d) != 0) { /* decoded fine before; the body has not changed */
    http_respond_error(req, d->status, "%s", d->err);
    decoded_free(d);
    free(d);
    return;
  }
  struct buf tail = BUF_INIT;
  read_tail(ctx, &tail);
  read_headers(ctx, req);
  if (!precheck(ctx, req, d, tail.data)) {
    struct buf out = BUF_INIT;
    bool ok;
    state_txn_read(ctx->store, d->ops, d->n, &out, &ok);
    /* Splice QueryMeta in before the closing brace. */
    out.len--;
    buf_append(&out, tail.data, tail.len);
    buf_putc(&out, '}');
    respond_json(req, ok ? 200 : 409, out.data, out.len);
    buf_free(&out);
  }
  buf_free(&tail);
  decoded_free(d);
  free(d);
}

struct barrier_op {
  struct api_ctx *ctx;
  struct http_request *req; /* NULL once the client has gone */
};

static void barrier_cancel(struct http_request *req, void *arg)
{
  (void)req;
  ((struct barrier_op *)arg)->req = NULL;
}

static void barrier_done(void *arg, int status)
{
  struct barrier_op *op = arg;
  if (op->req) {
    http_request_on_cancel(op->req, NULL, NULL);
    if (status == 0) read_now(op->ctx, op->req);
    else if (status == CC_ENOTLEADER) api_respond_no_leader(op->req); /* see common.c */
    else http_respond_error(op->req, 500, "consistent read failed: %s", cc_strerror(status));
  }
  free(op);
}

static void txn_read(struct api_ctx *ctx, struct http_request *req)
{
  struct api_query_opts opts;
  if (api_parse_query_opts(ctx, req, &opts) != 0) return;
  if (!ctx->store) {
    http_respond_error(req, 500, "No known Consul servers");
    return;
  }
  if (opts.mode == API_CONSISTENCY_STALE) {
    read_now(ctx, req);
    return;
  }
  if (api_require_leader(ctx, req)) return;
  if (opts.mode != API_CONSISTENCY_CONSISTENT) {
    read_now(ctx, req);
    return;
  }
  /* ?consistent: a barrier proves leadership and that everything committed is applied. */
  struct barrier_op *op = xcalloc(1, sizeof *op);
  op->ctx = ctx;
  op->req = req;
  if (consensus_barrier(ctx->consensus, barrier_done, op) != 0) {
    free(op);
    api_require_leader(ctx, req);
    return;
  }
  http_request_on_cancel(req, barrier_cancel, op);
}

/* ---- the handler ---- */

static void txn_handler(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  struct decoded *d = xmalloc(sizeof *d);
  if (decode(ctx, req, d) != 0) {
    http_respond_error(req, d->status, "%s", d->err);
    goto out;
  }
  if (d->writes == 0) {
    txn_read(ctx, req);
    goto out;
  }
  const char *dc = http_query(req, "dc");
  if (dc && *dc && strcasecmp(dc, ctx->cfg->datacenter) != 0) {
    http_respond_error(req, 500, "No path to datacenter");
    goto out;
  }
  if (api_require_leader(ctx, req)) goto out;
  if (precheck(ctx, req, d, NULL)) goto out;
  struct buf cmd = BUF_INIT;
  state_cmd_encode_txn(&cmd, d->ops, d->n);
  api_write(ctx, req, &cmd, apply_done);
  buf_free(&cmd);
out:
  decoded_free(d);
  free(d);
}

void api_txn_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_PUT, "/v1/txn", txn_handler, ctx);
}
