/* txn.c -- transactions: Consul's txnDispatch (agent/consul/state/txn.go) over the store,
 * all-or-nothing through store.c's undo log (rules in txn.h).
 *
 * Every op runs against the live store in order, so later ops see earlier ones; errors are
 * collected (Consul reports them all); at the end the undo log either keeps everything or
 * puts every touched KV row and tombstone back. The answer is written as JSON here, at apply
 * time, because a result is a snapshot of the row as that op left it (a "get" after a "set"
 * in the same transaction), which nothing can recompute later. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/jsonw.h"
#include "state/internal.h"
#include "state/txn.h"

enum kv_verb {
  V_SET,
  V_CAS,
  V_LOCK,
  V_UNLOCK,
  V_GET,
  V_GET_OR_EMPTY,
  V_GET_TREE,
  V_CHECK_INDEX,
  V_CHECK_SESSION,
  V_CHECK_NOT_EXISTS,
  V_DELETE,
  V_DELETE_TREE,
  V_DELETE_CAS,
  V_UNKNOWN,
};

static const char *const kv_verbs[] = {
    [V_SET] = "set",
    [V_CAS] = "cas",
    [V_LOCK] = "lock",
    [V_UNLOCK] = "unlock",
    [V_GET] = "get",
    [V_GET_OR_EMPTY] = "get-or-empty",
    [V_GET_TREE] = "get-tree",
    [V_CHECK_INDEX] = "check-index",
    [V_CHECK_SESSION] = "check-session",
    [V_CHECK_NOT_EXISTS] = "check-not-exists",
    [V_DELETE] = "delete",
    [V_DELETE_TREE] = "delete-tree",
    [V_DELETE_CAS] = "delete-cas",
};

static enum kv_verb kv_verb_of(const char *v)
{
  for (int i = 0; i < V_UNKNOWN; i++)
    if (v && strcmp(v, kv_verbs[i]) == 0) return (enum kv_verb)i;
  return V_UNKNOWN;
}

bool state_txn_op_is_write(const struct state_txn_op *op)
{
  if (op->kind != STATE_TXN_KV) return !op->verb || strcmp(op->verb, "get") != 0;
  switch (kv_verb_of(op->verb)) {
  case V_SET:
  case V_CAS:
  case V_LOCK:
  case V_UNLOCK:
  case V_DELETE:
  case V_DELETE_TREE:
  case V_DELETE_CAS: return true;
  default: return false;
  }
}

/* ---- Go's %q, for the error sentences ---- */

static size_t utf8_len(const unsigned char *p, size_t left)
{
  unsigned char c = p[0];
  size_t n = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
  if (!n || n > left) return 0;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80) return 0;
  return n;
}

void state_txn_quote(struct buf *b, const char *s, size_t len)
{
  buf_putc(b, '"');
  for (size_t i = 0; i < len;) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    switch (c) {
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\a': esc = "\\a"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    case '\v': esc = "\\v"; break;
    default: break;
    }
    if (esc) {
      buf_puts(b, esc);
      i++;
    } else if (c < 0x20 || c == 0x7f) {
      buf_printf(b, "\\x%02x", c);
      i++;
    } else if (c < 0x80) {
      buf_putc(b, (char)c);
      i++;
    } else {
      size_t n = utf8_len((const unsigned char *)s + i, len - i);
      if (n) {
        buf_append(b, s + i, n);
        i += n;
      } else {
        buf_printf(b, "\\x%02x", c);
        i++;
      }
    }
  }
  buf_putc(b, '"');
}

static void quote(struct buf *b, const char *s, size_t len) { state_txn_quote(b, s, len); }

/* ---- collecting results and errors ---- */

struct run {
  struct state_store *s;
  uint64_t index; /* 0: read-only */
  struct buf results; /* comma-separated TxnResult objects */
  size_t n_results;
  struct buf errors; /* comma-separated TxnError objects */
  size_t n_errors;
  size_t op_index;
  bool catalog_written; /* a catalog write succeeded: rollback needs the saved copy */
};

/* Records an error for the current op; the sentence is built by the caller in msg. */
static void op_error(struct run *r, const struct buf *msg)
{
  struct jsonw w;
  if (r->n_errors++) buf_putc(&r->errors, ',');
  jsonw_init(&w, &r->errors, false);
  jsonw_object_begin(&w);
  jsonw_key(&w, "OpIndex");
  jsonw_u64(&w, r->op_index);
  jsonw_key(&w, "What");
  jsonw_stringn(&w, msg->data ? msg->data : "", msg->len);
  jsonw_object_end(&w);
}

static void op_errorf(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void op_errorf(struct run *r, const char *fmt, ...)
{
  struct buf m = BUF_INIT;
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(&m, fmt, ap);
  va_end(ap);
  op_error(r, &m);
  buf_free(&m);
}

/* "<prefix>"key"<suffix>", the shape of most of Consul's sentences. */
static void op_error_key(struct run *r, const char *prefix, const char *key, size_t len,
                         const char *suffix)
{
  struct buf m = BUF_INIT;
  buf_puts(&m, prefix);
  quote(&m, key, len);
  buf_puts(&m, suffix);
  op_error(r, &m);
  buf_free(&m);
}

/* One TxnResult {"KV": DirEntry}, fields as kv.c prints them (structs.DirEntry order). */
static void result_kv(struct run *r, const struct state_kv *e, bool with_value)
{
  struct jsonw w;
  if (r->n_results++) buf_putc(&r->results, ',');
  jsonw_init(&w, &r->results, false);
  jsonw_object_begin(&w);
  jsonw_key(&w, "KV");
  jsonw_object_begin(&w);
  jsonw_key(&w, "LockIndex");
  jsonw_u64(&w, e->lock_index);
  jsonw_key(&w, "Key");
  jsonw_stringn(&w, e->key, e->key_len);
  jsonw_key(&w, "Flags");
  jsonw_u64(&w, e->flags);
  jsonw_key(&w, "Value");
  jsonw_base64(&w, with_value && e->value_len ? e->value : NULL, e->value_len);
  if (e->session && e->session[0]) {
    jsonw_key(&w, "Session");
    jsonw_string(&w, e->session);
  }
  jsonw_key(&w, "CreateIndex");
  jsonw_u64(&w, e->create_index);
  jsonw_key(&w, "ModifyIndex");
  jsonw_u64(&w, e->modify_index);
  jsonw_object_end(&w);
  jsonw_object_end(&w);
}

/* One TxnResult {"<kind>": <row JSON>} from a jansson tree (taken). */
static void result_json(struct run *r, const char *kind, json_t *j)
{
  char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(j);
  struct jsonw w;
  if (r->n_results++) buf_putc(&r->results, ',');
  jsonw_init(&w, &r->results, false);
  jsonw_object_begin(&w);
  jsonw_key(&w, kind);
  jsonw_raw(&w, text, strlen(text));
  jsonw_object_end(&w);
  free(text);
}

static const struct state_kv *kv_get(struct run *r, const struct state_txn_op *op)
{
  return state_kv_get(r->s, op->key ? op->key : "", op->key_len, NULL);
}

static int each_tree(const struct state_kv *e, void *arg)
{
  result_kv(arg, e, true);
  return 0;
}

/* ---- the KV verbs (txnKVS) ---- */

static void run_kv(struct run *r, const struct state_txn_op *op)
{
  enum kv_verb v = kv_verb_of(op->verb);
  const char *key = op->key ? op->key : "";
  size_t klen = op->key_len;
  if (v == V_UNKNOWN) {
    struct buf m = BUF_INIT;
    buf_puts(&m, "unknown KV verb ");
    quote(&m, op->verb ? op->verb : "", strlen(op->verb ? op->verb : ""));
    op_error(r, &m);
    buf_free(&m);
    return;
  }
  bool write = state_txn_op_is_write(op);
  if (write && !r->index) {
    op_errorf(r, "cannot %s in a read-only transaction", kv_verbs[v]);
    return;
  }
  if (!klen && v != V_DELETE_TREE) { /* kvsPreApply */
    op_errorf(r, "Must provide key");
    return;
  }
  if (write) {
    static const enum state_kv_verb map[] = {
        [V_SET] = STATE_KV_SET,       [V_CAS] = STATE_KV_CAS,
        [V_LOCK] = STATE_KV_LOCK,     [V_UNLOCK] = STATE_KV_UNLOCK,
        [V_DELETE] = STATE_KV_DELETE, [V_DELETE_TREE] = STATE_KV_DELETE_TREE,
        [V_DELETE_CAS] = STATE_KV_DELETE_CAS};
    struct state_kv_op kop = {.verb = map[v], .key = key, .key_len = klen,
                              .value = op->value, .value_len = op->value_len,
                              .flags = op->flags, .cas = op->index, .session = op->session};
    char msg[256];
    bool ok = false;
    int rc = state__kv_check_op(r->s, r->index, &kop);
    if (rc) {
      op_errorf(r, "invalid operation");
      return;
    }
    rc = state__kv_do(r->s, r->index, &kop, &ok, msg, sizeof msg);
    if (rc) {
      op_errorf(r, "%s", msg);
      return;
    }
    if (!ok) {
      switch (v) {
      case V_CAS: op_error_key(r, "failed to set key ", key, klen, ", index is stale"); return;
      case V_LOCK: op_error_key(r, "failed to lock key ", key, klen, ", lock is already held"); return;
      case V_UNLOCK:
        op_error_key(r, "failed to unlock key ", key, klen,
                     ", lock isn't held, or is held by another session");
        return;
      case V_DELETE_CAS: op_error_key(r, "failed to delete key ", key, klen, ", index is stale"); return;
      default: return;
      }
    }
    if (v == V_DELETE || v == V_DELETE_TREE || v == V_DELETE_CAS) return;
    const struct state_kv *e = kv_get(r, op);
    if (e) result_kv(r, e, false);
    return;
  }

  const struct state_kv *e = v == V_GET_TREE ? NULL : kv_get(r, op);
  switch (v) {
  case V_GET:
    if (!e) op_error_key(r, "key ", key, klen, " doesn't exist");
    else result_kv(r, e, true);
    return;
  case V_GET_OR_EMPTY:
    if (e) {
      result_kv(r, e, true);
    } else {
      /* Consul answers the op's own DirEnt with Value nil. */
      struct state_kv empty = {.key = key, .key_len = klen, .flags = op->flags,
                               .modify_index = op->index, .session = op->session};
      result_kv(r, &empty, false);
    }
    return;
  case V_GET_TREE:
    state_kv_list(r->s, key, klen, each_tree, r);
    return;
  case V_CHECK_INDEX:
    if (!e) {
      op_error_key(r, "failed to check index, key ", key, klen, " doesn't exist");
    } else if (e->modify_index != op->index) {
      struct buf m = BUF_INIT;
      buf_puts(&m, "failed index check for key ");
      quote(&m, key, klen);
      buf_printf(&m, ", current modify index %llu != %llu", (unsigned long long)e->modify_index,
                 (unsigned long long)op->index);
      op_error(r, &m);
      buf_free(&m);
    } else {
      result_kv(r, e, false);
    }
    return;
  case V_CHECK_SESSION: {
    const char *want = op->session ? op->session : "";
    const char *cur = e && e->session ? e->session : "";
    if (!e) {
      op_error_key(r, "failed to check session, key ", key, klen, " doesn't exist");
    } else if (strcmp(cur, want) != 0) {
      struct buf m = BUF_INIT;
      buf_puts(&m, "failed session check for key ");
      quote(&m, key, klen);
      buf_puts(&m, ", current session ");
      quote(&m, cur, strlen(cur));
      buf_puts(&m, " != ");
      quote(&m, want, strlen(want));
      op_error(r, &m);
      buf_free(&m);
    } else {
      result_kv(r, e, false);
    }
    return;
  }
  case V_CHECK_NOT_EXISTS:
    if (e) op_error_key(r, "key ", key, klen, " exists");
    return;
  default: return;
  }
}

/* ---- catalog ops (txnNode, txnService, txnCheck) ---- */

enum cat_verb { C_GET, C_SET, C_CAS, C_DELETE, C_DELETE_CAS, C_UNKNOWN };

static enum cat_verb cat_verb_of(const char *v)
{
  static const char *const names[] = {"get", "set", "cas", "delete", "delete-cas"};
  for (int i = 0; i < C_UNKNOWN; i++)
    if (v && strcmp(v, names[i]) == 0) return (enum cat_verb)i;
  return C_UNKNOWN;
}

/* A sentence with up to two %q-quoted names: "<a>"x"<b>"y"<c>" (y may be NULL). */
static void op_error_q2(struct run *r, const char *a, const char *x, const char *b,
                        const char *y, const char *c)
{
  struct buf m = BUF_INIT;
  buf_puts(&m, a);
  quote(&m, x ? x : "", strlen(x ? x : ""));
  buf_puts(&m, b);
  if (y) {
    quote(&m, y, strlen(y));
    buf_puts(&m, c);
  }
  op_error(r, &m);
  buf_free(&m);
}

/* Writes a set/cas row through the catalog; false (error recorded) when it could not. */
static bool cat_register(struct run *r, const struct state_txn_op *op, bool need_node)
{
  if (!op->reg) {
    op_errorf(r, "invalid operation");
    return false;
  }
  const char *node = op->reg->node ? op->reg->node : "";
  if (need_node && !state_node_get(r->s, node)) {
    op_errorf(r, "Missing node registration");
    return false;
  }
  /* ensureCheckTxn's own sentence (the registration path wraps it in more words). */
  for (size_t i = 0; i < op->reg->n_checks; i++) {
    const char *sid = op->reg->checks[i].service_id;
    if (sid && *sid && !op->reg->service && !state_service_get(r->s, node, sid)) {
      op_errorf(r, "Missing service registration");
      return false;
    }
  }
  char msg[256];
  int rc = state_catalog_register(r->s, r->index, op->reg, msg, sizeof msg);
  if (rc) {
    op_errorf(r, "%s", msg[0] ? msg : "invalid operation");
    return false;
  }
  r->catalog_written = true;
  return true;
}

static void cat_deregister(struct run *r, const char *node, const char *svc, const char *chk)
{
  struct state_deregister d = {.node = node, .service_id = svc, .check_id = chk};
  char msg[256];
  if (!node || !*node) return; /* nothing to delete: Consul's lookup finds no row */
  if (state_catalog_deregister(r->s, r->index, &d, msg, sizeof msg)) op_errorf(r, "%s", msg);
  else r->catalog_written = true;
}

static void run_node(struct run *r, const struct state_txn_op *op, enum cat_verb v)
{
  const char *name = op->node ? op->node : "";
  const struct state_node *n;
  switch (v) {
  case C_GET:
    n = op->node_id && *op->node_id ? state_node_get_by_id(r->s, op->node_id)
                                    : state_node_get(r->s, name);
    if (n) result_json(r, "Node", state_node_json(n));
    else op_error_q2(r, "node ", name, " doesn't exist", NULL, NULL);
    return;
  case C_CAS:
    n = state_node_get(r->s, name);
    if (op->index != (n ? n->modify_index : 0)) {
      op_error_q2(r, "failed to set node ", name, ", index is stale", NULL, NULL);
      return;
    }
    /* fallthrough */
  case C_SET:
    if (!cat_register(r, op, false)) return;
    n = state_node_get(r->s, name);
    if (n) result_json(r, "Node", state_node_json(n));
    return;
  case C_DELETE_CAS:
    n = state_node_get(r->s, name);
    if (!n || n->modify_index != op->index) {
      op_error_q2(r, "failed to delete node ", name, ", index is stale", NULL, NULL);
      return;
    }
    /* fallthrough */
  case C_DELETE: cat_deregister(r, name, NULL, NULL); return;
  default: return;
  }
}

static void run_service(struct run *r, const struct state_txn_op *op, enum cat_verb v)
{
  const char *node = op->node ? op->node : "";
  const char *id = op->service_id ? op->service_id : "";
  const struct state_service *svc = state_service_get(r->s, node, id);
  switch (v) {
  case C_GET:
    if (svc) result_json(r, "Service", state_node_service_json(svc));
    else op_error_q2(r, "service ", id, " on node ", node, " doesn't exist");
    return;
  case C_CAS:
    if (op->index != (svc ? svc->modify_index : 0)) {
      op_error_q2(r, "failed to set service ", id, " on node ", node, ", index is stale");
      return;
    }
    /* fallthrough */
  case C_SET:
    if (!cat_register(r, op, true)) return;
    svc = state_service_get(r->s, node, id);
    if (svc) result_json(r, "Service", state_node_service_json(svc));
    return;
  case C_DELETE_CAS:
    if (!svc || svc->modify_index != op->index) {
      op_error_q2(r, "failed to delete service ", id, " on node ", node, ", index is stale");
      return;
    }
    /* fallthrough */
  case C_DELETE:
    if (*id) cat_deregister(r, node, id, NULL);
    return;
  default: return;
  }
}

static void run_check(struct run *r, const struct state_txn_op *op, enum cat_verb v)
{
  const char *node = op->node ? op->node : "";
  const char *id = op->check_id ? op->check_id : "";
  const struct state_check *c = state_check_get(r->s, node, id);
  switch (v) {
  case C_GET:
    if (c) result_json(r, "Check", state_check_json(c));
    else op_error_q2(r, "check ", id, " on node ", node, " doesn't exist");
    return;
  case C_CAS:
    if (op->index != (c ? c->modify_index : 0)) {
      op_error_q2(r, "failed to set check ", id, " on node ", node, ", index is stale");
      return;
    }
    /* fallthrough */
  case C_SET:
    if (!cat_register(r, op, true)) return;
    c = state_check_get(r->s, node, id);
    if (c) result_json(r, "Check", state_check_json(c));
    return;
  case C_DELETE_CAS:
    if (!c || c->modify_index != op->index) {
      op_error_q2(r, "failed to delete check ", id, " on node ", node, ", index is stale");
      return;
    }
    /* fallthrough */
  case C_DELETE:
    if (*id) cat_deregister(r, node, NULL, id);
    return;
  default: return;
  }
}

static void run_catalog(struct run *r, const struct state_txn_op *op)
{
  static const char *const kinds[] = {"KV", "Node", "Service", "Check"};
  const char *verb = op->verb ? op->verb : "";
  enum cat_verb v = cat_verb_of(verb);
  if (v == C_UNKNOWN) {
    struct buf m = BUF_INIT;
    buf_printf(&m, "unknown %s verb ", kinds[op->kind]);
    quote(&m, verb, strlen(verb));
    op_error(r, &m);
    buf_free(&m);
    return;
  }
  if (v != C_GET && !r->index) {
    op_errorf(r, "cannot %s in a read-only transaction", verb);
    return;
  }
  switch (op->kind) {
  case STATE_TXN_NODE: run_node(r, op, v); break;
  case STATE_TXN_SERVICE: run_service(r, op, v); break;
  case STATE_TXN_CHECK: run_check(r, op, v); break;
  default: break;
  }
}

static void dispatch(struct run *r, const struct state_txn_op *ops, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    r->op_index = i;
    if (ops[i].kind == STATE_TXN_KV) run_kv(r, &ops[i]);
    else run_catalog(r, &ops[i]);
  }
}

/* TxnResponse: {"Results": [...] | null, "Errors": [...] | null}. */
static void answer(struct run *r, struct buf *out, bool *ok)
{
  *ok = r->n_errors == 0;
  buf_puts(out, "{\"Results\":");
  if (*ok) {
    buf_putc(out, '[');
    if (r->results.len) buf_append(out, r->results.data, r->results.len);
    buf_putc(out, ']');
  } else {
    buf_puts(out, "null");
  }
  buf_puts(out, ",\"Errors\":");
  if (*ok) {
    buf_puts(out, "null");
  } else {
    buf_putc(out, '[');
    buf_append(out, r->errors.data, r->errors.len);
    buf_putc(out, ']');
  }
  buf_putc(out, '}');
  buf_free(&r->results);
  buf_free(&r->errors);
}

int state_txn_apply(struct state_store *s, uint64_t index, const struct state_txn_op *ops,
                    size_t n, struct buf *out, bool *ok)
{
  bool dummy;
  if (!ok) ok = &dummy;
  *ok = false;
  if (index == 0 || index < s->applied || n > STATE_TXN_MAX_OPS || (n && !ops) || s->undo)
    return CC_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (ops[i].key_len > STATE_KV_MAX_KEY || (ops[i].key_len && !ops[i].key) ||
        ops[i].value_len > STATE_KV_MAX_VALUE || (ops[i].value_len && !ops[i].value) ||
        (unsigned)ops[i].kind > STATE_TXN_CHECK)
      return CC_EINVAL;
  }
  /* A copy of the catalog and sessions to put back, only when an op may write to them. */
  struct buf saved = BUF_INIT;
  for (size_t i = 0; i < n && !saved.len; i++)
    if (ops[i].kind != STATE_TXN_KV && state_txn_op_is_write(&ops[i]))
      state__catalog_save(s, &saved);
  s->applied = index;
  struct run r = {.s = s, .index = index};
  state__kv_undo_begin(s);
  /* Holds every watch until the end: the catalog's writes flush as they go, and a blocking
   * query woken mid-transaction would read a state that may yet be rolled back. */
  bool was_firing = s->w.firing;
  s->w.firing = true;
  dispatch(&r, ops, n);
  if (r.n_errors) {
    state__kv_undo_rollback(s);
    if (r.catalog_written && state__catalog_rollback(s, saved.data, saved.len) != 0)
      abort(); /* our own bytes: failing to read them back is a bug, not bad input */
    s->applied = index;
  } else {
    state__kv_undo_commit(s);
  }
  buf_free(&saved);
  s->w.firing = was_firing;
  answer(&r, out, ok);
  state__watch_flush(&s->w);
  return 0;
}

void state_txn_read(struct state_store *s, const struct state_txn_op *ops, size_t n,
                    struct buf *out, bool *ok)
{
  bool dummy;
  if (!ok) ok = &dummy;
  struct run r = {.s = s, .index = 0};
  if (n > STATE_TXN_MAX_OPS) n = STATE_TXN_MAX_OPS;
  dispatch(&r, ops, n);
  answer(&r, out, ok);
}
