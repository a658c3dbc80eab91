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
 * Then Consul's preCheck, on the proposer: an empty key (except delete-tree) is "Must provide
 * key", and a lock on a key in lock-delay is "failed to lock key \"k\" due to lock delay";
 * these answer 409 without touching Raft. A transaction with a write goes through Raft as one
 * entry and answers 200 {"Results":[...],"Errors":null} or 409 {"Results":null,"Errors":[...]}
 * (everything rolled back). One without writes is read here, honouring ?stale and
 * ?consistent (a Raft barrier) but never blocking, with X-Consul-KnownLeader and
 * X-Consul-LastContact headers and the QueryMeta fields Go prints in a TxnReadResponse. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "api/internal.h"
#include "lib/alloc.h"
#include "lib/b64.h"
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
  int status;                        /* on failure: the HTTP status to answer */
  char err[512];                     /* and the message */
};

static void decoded_free(struct decoded *d)
{
  json_decref(d->root);
  for (size_t i = 0; i < STATE_TXN_MAX_OPS; i++) free(d->values[i]);
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

static int decode_catalog(struct decoded *d, const json_t *v, enum state_txn_kind kind)
{
  static const char *const names[] = {"KV", "Node", "Service", "Check"};
  struct state_txn_op *op = &d->ops[d->n];
  *op = (struct state_txn_op){.kind = kind};
  char path[64];
  snprintf(path, sizeof path, "TxnOp.%s", names[kind]);
  if (!json_is_object(v)) return type_error(d, v, path, "api.TxnOp");
  if (get_str(d, v, "Verb", "Verb", &op->verb)) return -1;
  json_t *inner;
  switch (kind) {
  case STATE_TXN_NODE:
    inner = field(v, "Node");
    if (inner && json_is_object(inner) && get_str(d, inner, "Node", "Node.Node", &op->node)) return -1;
    break;
  case STATE_TXN_SERVICE:
    if (get_str(d, v, "Node", "ServiceTxnOp.Node", &op->node)) return -1;
    inner = field(v, "Service");
    if (inner && json_is_object(inner) && get_str(d, inner, "ID", "AgentService.ID", &op->service_id))
      return -1;
    break;
  case STATE_TXN_CHECK:
    inner = field(v, "Check");
    if (inner && json_is_object(inner) &&
        (get_str(d, inner, "Node", "HealthCheck.Node", &op->node) ||
         get_str(d, inner, "CheckID", "HealthCheck.CheckID", &op->check_id)))
      return -1;
    break;
  default: break;
  }
  if (!op->node) op->node = "";
  if (!op->service_id) op->service_id = "";
  if (!op->check_id) op->check_id = "";
  if (strlen(op->verb) > 64 || strlen(op->node) > STATE_CAT_MAX_NAME ||
      strlen(op->service_id) > STATE_CAT_MAX_NAME || strlen(op->check_id) > STATE_CAT_MAX_NAME)
    return fail(d, 400, "Failed to parse body: a name is too long");
  if (state_txn_op_is_write(op)) d->writes++;
  d->n++;
  return 0;
}

/* convertOps. Returns 0, or -1 with d->status and d->err. */
static int decode(struct api_ctx *ctx, struct http_request *req, struct decoded *d)
{
  memset(d, 0, sizeof *d);
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
      if (decode_catalog(d, v, STATE_TXN_NODE)) return -1;
    } else if ((v = field(o, "Service")) && !json_is_null(v)) {
      if (decode_catalog(d, v, STATE_TXN_SERVICE)) return -1;
    } else if ((v = field(o, "Check")) && !json_is_null(v)) {
      if (decode_catalog(d, v, STATE_TXN_CHECK)) return -1;
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

/* preCheck: errors found on the proposer, before Raft. Returns true when it answered 409. */
static bool precheck(struct api_ctx *ctx, struct http_request *req, const struct decoded *d,
                     const char *tail)
{
  struct buf errs = BUF_INIT;
  struct jsonw w;
  size_t n = 0;
  for (size_t i = 0; i < d->n; i++) {
    const struct state_txn_op *op = &d->ops[i];
    if (op->kind != STATE_TXN_KV) continue;
    const char *what = NULL;
    struct buf msg = BUF_INIT;
    if (!op->key_len && strcmp(op->verb, "delete-tree") != 0) {
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
