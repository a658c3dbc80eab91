/* cmd.c -- encoding, decoding and applying the commands the Raft log carries (see cmd.h).
 *
 * Wire form: one type byte, then one msgpack map shaped like Consul's request structs:
 *   STATE_CMD_KV              {"Datacenter"?, "Op": "set"|"cas"|"delete"|"delete-cas"|
 *                              "delete-tree"|"lock"|"unlock",
 *                              "DirEnt": {"Key", "Value"(bin), "Flags", "ModifyIndex"(the cas),
 *                                         "Session"?}}                    (structs.KVSRequest)
 *   STATE_CMD_TOMBSTONE_REAP  {"Datacenter"?, "Op": "reap"?, "ReapIndex"}  (TombstoneRequest)
 *   STATE_CMD_NOOP            {}
 *   STATE_CMD_REGISTER        structs.RegisterRequest   (shape in catalog_mp.c)
 *   STATE_CMD_DEREGISTER      structs.DeregisterRequest (shape in catalog_mp.c)
 *   STATE_CMD_SESSION         {"Datacenter"?, "Op": "create"|"destroy",
 *                              "Session": structs.Session (shape in session_mp.c)}
 *   STATE_CMD_TXN             {"Datacenter"?, "Ops": [{"KV": {"Verb", "DirEnt": {"Key",
 *                              "Value"(bin|nil), "Flags", "ModifyIndex", "Session"}}}
 *                              | {"Node": {"Verb", "Node": {"Node", "ID"}, CAT}}
 *                              | {"Service": {"Verb", "Node", "Service": {"ID"}, CAT}}
 *                              | {"Check": {"Verb", "Check": {"Node", "CheckID"}, CAT}}]}
 *                             CAT: "ModifyIndex" (cas, delete-cas) and "Register" (set,
 *                             cas: the row as a RegisterRequest, or nil); entries written
 *                             before catalog writes existed lack both and decode as reads.
 *                                                                      (structs.TxnRequest)
 *   STATE_CMD_QUERY           {"Datacenter"?, "Op": "create"|"update"|"delete", "ID",
 *                              "Query": the query as JSON text (nil for delete)}
 *                                                            (structs.PreparedQueryRequest)
 *   STATE_CMD_RESTORE         a store snapshot document itself (store.h), not wrapped
 * Decoding is strict about what it reads (types, caps, a known Op, exactly one map with no
 * trailing bytes) and skips fields it does not know, so a newer writer can add fields. The
 * bytes pass the bounded pre-check (mp.c) before msgpack-c unpacks them. A KV command that
 * decodes but is not a valid op (an empty key, LOCK without a session) is not corrupt: it
 * applies as an error result (res->err), as Consul's FSM returns the state store's error. */
#include <stdio.h>
#include <string.h>

#include "lib/err.h"
#include "state/cmd.h"
#include "state/internal.h"

static const struct {
  const char *name;
  enum state_kv_verb verb;
} kv_ops[] = {
    {"set", STATE_KV_SET},
    {"cas", STATE_KV_CAS},
    {"delete", STATE_KV_DELETE},
    {"delete-cas", STATE_KV_DELETE_CAS},
    {"delete-tree", STATE_KV_DELETE_TREE},
    {"lock", STATE_KV_LOCK},
    {"unlock", STATE_KV_UNLOCK},
};

#define NOPS (sizeof kv_ops / sizeof kv_ops[0])

/* ---- encoding ---- */

void state_cmd_encode_kv(struct buf *out, const struct state_kv_op *op)
{
  msgpack_packer pk;
  const char *name = "set";
  for (size_t i = 0; i < NOPS; i++) {
    if (kv_ops[i].verb == op->verb) name = kv_ops[i].name;
  }
  buf_putc(out, STATE_CMD_KV);
  state__mp_packer_init(&pk, out);
  msgpack_pack_map(&pk, 2);
  state__mp_pack_cstr(&pk, "Op");
  state__mp_pack_cstr(&pk, name);
  state__mp_pack_cstr(&pk, "DirEnt");
  msgpack_pack_map(&pk, op->session ? 5 : 4);
  state__mp_pack_cstr(&pk, "Key");
  state__mp_pack_str(&pk, op->key_len ? op->key : "", op->key_len);
  state__mp_pack_cstr(&pk, "Value");
  state__mp_pack_bin(&pk, op->value_len ? op->value : (const uint8_t *)"", op->value_len);
  state__mp_pack_cstr(&pk, "Flags");
  msgpack_pack_uint64(&pk, op->flags);
  state__mp_pack_cstr(&pk, "ModifyIndex");
  msgpack_pack_uint64(&pk, op->cas);
  if (op->session) {
    state__mp_pack_cstr(&pk, "Session");
    state__mp_pack_cstr(&pk, op->session);
  }
}

void state_cmd_encode_tombstone_reap(struct buf *out, uint64_t upto)
{
  msgpack_packer pk;
  buf_putc(out, STATE_CMD_TOMBSTONE_REAP);
  state__mp_packer_init(&pk, out);
  msgpack_pack_map(&pk, 2);
  state__mp_pack_cstr(&pk, "Op");
  state__mp_pack_cstr(&pk, "reap");
  state__mp_pack_cstr(&pk, "ReapIndex");
  msgpack_pack_uint64(&pk, upto);
}

void state_cmd_encode_noop(struct buf *out)
{
  msgpack_packer pk;
  buf_putc(out, STATE_CMD_NOOP);
  state__mp_packer_init(&pk, out);
  msgpack_pack_map(&pk, 0);
}

void state_cmd_encode_restore(struct buf *out, const void *doc, size_t len)
{
  buf_putc(out, STATE_CMD_RESTORE);
  buf_append(out, doc, len);
}

void state_cmd_encode_register(struct buf *out, const struct state_register *req)
{
  msgpack_packer pk;
  buf_putc(out, STATE_CMD_REGISTER);
  state__mp_packer_init(&pk, out);
  state__mp_pack_register(&pk, req);
}

void state_cmd_encode_deregister(struct buf *out, const struct state_deregister *req)
{
  msgpack_packer pk;
  buf_putc(out, STATE_CMD_DEREGISTER);
  state__mp_packer_init(&pk, out);
  state__mp_pack_deregister(&pk, req);
}

void state_cmd_encode_session_create(struct buf *out, const struct state_session *se)
{
  msgpack_packer pk;
  buf_putc(out, STATE_CMD_SESSION);
  state__mp_packer_init(&pk, out);
  msgpack_pack_map(&pk, 2);
  state__mp_pack_cstr(&pk, "Op");
  state__mp_pack_cstr(&pk, "create");
  state__mp_pack_cstr(&pk, "Session");
  state__mp_pack_session(&pk, se, false);
}

void state_cmd_encode_session_destroy(struct buf *out, const char *id)
{
  msgpack_packer pk;
  struct state_session se = {.id = id};
  buf_putc(out, STATE_CMD_SESSION);
  state__mp_packer_init(&pk, out);
  msgpack_pack_map(&pk, 2);
  state__mp_pack_cstr(&pk, "Op");
  state__mp_pack_cstr(&pk, "destroy");
  state__mp_pack_cstr(&pk, "Session");
  state__mp_pack_session(&pk, &se, false);
}

static const char *const txn_kinds[] = {"KV", "Node", "Service", "Check"};

/* The two map entries every catalog op ends with. */
static void pack_txn_cat(msgpack_packer *pk, const struct state_txn_op *op)
{
  state__mp_pack_cstr(pk, "ModifyIndex");
  msgpack_pack_uint64(pk, op->index);
  state__mp_pack_cstr(pk, "Register");
  if (op->reg) state__mp_pack_register(pk, op->reg);
  else msgpack_pack_nil(pk);
}

void state_cmd_encode_txn(struct buf *out, const struct state_txn_op *ops, size_t n)
{
  msgpack_packer pk;
  buf_putc(out, STATE_CMD_TXN);
  state__mp_packer_init(&pk, out);
  msgpack_pack_map(&pk, 1);
  state__mp_pack_cstr(&pk, "Ops");
  msgpack_pack_array(&pk, n);
  for (size_t i = 0; i < n; i++) {
    const struct state_txn_op *op = &ops[i];
    msgpack_pack_map(&pk, 1);
    state__mp_pack_cstr(&pk, txn_kinds[op->kind]);
    switch (op->kind) {
    case STATE_TXN_KV:
      msgpack_pack_map(&pk, 2);
      state__mp_pack_cstr(&pk, "Verb");
      state__mp_pack_cstr(&pk, op->verb ? op->verb : "");
      state__mp_pack_cstr(&pk, "DirEnt");
      msgpack_pack_map(&pk, 5);
      state__mp_pack_cstr(&pk, "Key");
      state__mp_pack_str(&pk, op->key_len ? op->key : "", op->key_len);
      state__mp_pack_cstr(&pk, "Value");
      if (op->value) state__mp_pack_bin(&pk, op->value, op->value_len);
      else msgpack_pack_nil(&pk);
      state__mp_pack_cstr(&pk, "Flags");
      msgpack_pack_uint64(&pk, op->flags);
      state__mp_pack_cstr(&pk, "ModifyIndex");
      msgpack_pack_uint64(&pk, op->index);
      state__mp_pack_cstr(&pk, "Session");
      state__mp_pack_cstr(&pk, op->session ? op->session : "");
      break;
    case STATE_TXN_NODE:
      msgpack_pack_map(&pk, 4);
      state__mp_pack_cstr(&pk, "Verb");
      state__mp_pack_cstr(&pk, op->verb ? op->verb : "");
      state__mp_pack_cstr(&pk, "Node");
      msgpack_pack_map(&pk, 2);
      state__mp_pack_cstr(&pk, "Node");
      state__mp_pack_cstr(&pk, op->node ? op->node : "");
      state__mp_pack_cstr(&pk, "ID");
      state__mp_pack_cstr(&pk, op->node_id ? op->node_id : "");
      pack_txn_cat(&pk, op);
      break;
    case STATE_TXN_SERVICE:
      msgpack_pack_map(&pk, 5);
      state__mp_pack_cstr(&pk, "Verb");
      state__mp_pack_cstr(&pk, op->verb ? op->verb : "");
      state__mp_pack_cstr(&pk, "Node");
      state__mp_pack_cstr(&pk, op->node ? op->node : "");
      state__mp_pack_cstr(&pk, "Service");
      msgpack_pack_map(&pk, 1);
      state__mp_pack_cstr(&pk, "ID");
      state__mp_pack_cstr(&pk, op->service_id ? op->service_id : "");
      pack_txn_cat(&pk, op);
      break;
    case STATE_TXN_CHECK:
      msgpack_pack_map(&pk, 4);
      state__mp_pack_cstr(&pk, "Verb");
      state__mp_pack_cstr(&pk, op->verb ? op->verb : "");
      state__mp_pack_cstr(&pk, "Check");
      msgpack_pack_map(&pk, 2);
      state__mp_pack_cstr(&pk, "Node");
      state__mp_pack_cstr(&pk, op->node ? op->node : "");
      state__mp_pack_cstr(&pk, "CheckID");
      state__mp_pack_cstr(&pk, op->check_id ? op->check_id : "");
      pack_txn_cat(&pk, op);
      break;
    }
  }
}

/* ---- decoding ---- */

struct decoded {
  int type;     /* enum state_cmd_type, or 0 for an ignored type */
  struct state_kv_op op;
  char session[STATE_KV_MAX_SESSION + 1]; /* op.session points here */
  uint64_t upto;
  struct state__arena arena; /* reg and dereg point here; freed with the unpacked document */
  struct state_register reg;
  struct state_deregister dereg;
  bool session_create; /* else destroy */
  struct state_session sess;
  struct state_txn_op *ops; /* in the arena */
  size_t n_ops;
  bool query_delete;             /* else create/update */
  const char *query_id;          /* in the arena */
  const char *query_json;        /* in data; NULL for delete */
  size_t query_len;
  const char *doc; /* a restore's document, in data */
  size_t doc_len;
};

static bool str_is(const msgpack_object *o, const char *s)
{
  return state__mp_key_is(o, s);
}

static int check_dc(const msgpack_object *dc)
{
  return dc && dc->type != MSGPACK_OBJECT_STR ? CC_ECORRUPT : 0;
}

static int decode_kv(const msgpack_object *root, struct decoded *d)
{
  struct state__mp_field f[] = {{"Datacenter", NULL}, {"Op", NULL}, {"DirEnt", NULL}};
  if (state__mp_fields(root, f, 3) || check_dc(f[0].val)) return CC_ECORRUPT;
  if (!f[1].val || !f[2].val) return CC_ECORRUPT;
  size_t i = 0;
  while (i < NOPS && !str_is(f[1].val, kv_ops[i].name)) i++;
  if (i == NOPS) return CC_ECORRUPT;
  d->op.verb = kv_ops[i].verb;

  struct state__mp_field e[] = {{"Key", NULL},         {"Value", NULL}, {"Flags", NULL},
                                {"ModifyIndex", NULL}, {"Session", NULL}};
  if (state__mp_fields(f[2].val, e, 5)) return CC_ECORRUPT;
  const char *p;
  size_t len;
  if (!e[0].val || state__mp_bytes(e[0].val, false, &p, &len)) return CC_ECORRUPT;
  if (len > STATE_KV_MAX_KEY) return CC_ECORRUPT;
  d->op.key = p;
  d->op.key_len = len;
  if (e[1].val) {
    if (state__mp_bytes(e[1].val, true, &p, &len) || len > STATE_KV_MAX_VALUE) return CC_ECORRUPT;
    d->op.value = (const uint8_t *)p;
    d->op.value_len = len;
  }
  if (e[2].val && state__mp_uint(e[2].val, &d->op.flags)) return CC_ECORRUPT;
  if (e[3].val && state__mp_uint(e[3].val, &d->op.cas)) return CC_ECORRUPT;
  if (e[4].val && e[4].val->type != MSGPACK_OBJECT_NIL) {
    if (e[4].val->type != MSGPACK_OBJECT_STR) return CC_ECORRUPT;
    len = e[4].val->via.str.size;
    p = e[4].val->via.str.ptr;
    if (len > STATE_KV_MAX_SESSION || memchr(p, '\0', len)) return CC_ECORRUPT;
    memcpy(d->session, p, len);
    d->session[len] = '\0';
    d->op.session = d->session; /* "" stays "": LOCK/UNLOCK then fail as "missing session" */
  }
  return 0;
}

static int decode_reap(const msgpack_object *root, struct decoded *d)
{
  struct state__mp_field f[] = {{"Datacenter", NULL}, {"Op", NULL}, {"ReapIndex", NULL}};
  if (state__mp_fields(root, f, 3) || check_dc(f[0].val)) return CC_ECORRUPT;
  if (f[1].val && !str_is(f[1].val, "reap")) return CC_ECORRUPT;
  if (!f[2].val || state__mp_uint(f[2].val, &d->upto)) return CC_ECORRUPT;
  return 0;
}

static int decode_session(const msgpack_object *root, struct decoded *d)
{
  struct state__mp_field f[] = {{"Datacenter", NULL}, {"Op", NULL}, {"Session", NULL}};
  if (state__mp_fields(root, f, 3) || check_dc(f[0].val)) return CC_ECORRUPT;
  if (!f[1].val || !f[2].val) return CC_ECORRUPT;
  if (str_is(f[1].val, "create")) d->session_create = true;
  else if (!str_is(f[1].val, "destroy")) return CC_ECORRUPT;
  return state__mp_decode_session(f[2].val, &d->arena, &d->sess, false);
}

/* A string field copied into the arena (absent or nil: ""); cap bytes at most, no NUL. */
static int txn_str(const msgpack_object *o, struct state__arena *a, size_t cap, const char **out)
{
  *out = "";
  if (!o || o->type == MSGPACK_OBJECT_NIL) return 0;
  const char *p;
  size_t len;
  if (state__mp_bytes(o, false, &p, &len) || len > cap || (len && memchr(p, '\0', len)))
    return CC_ECORRUPT;
  char *c = state__arena_alloc(a, len + 1);
  if (len) memcpy(c, p, len);
  c[len] = '\0';
  *out = c;
  return 0;
}

static int decode_txn_op(const msgpack_object *o, struct state__arena *a, struct state_txn_op *op)
{
  if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size != 1) return CC_ECORRUPT;
  const msgpack_object *k = &o->via.map.ptr[0].key, *v = &o->via.map.ptr[0].val;
  size_t kind = 0;
  while (kind < 4 && !str_is(k, txn_kinds[kind])) kind++;
  if (kind == 4) return CC_ECORRUPT;
  op->kind = (enum state_txn_kind)kind;
  struct state__mp_field f[] = {{"Verb", NULL},    {"DirEnt", NULL}, {"Node", NULL},
                                {"Service", NULL}, {"Check", NULL},  {"ModifyIndex", NULL},
                                {"Register", NULL}};
  if (state__mp_fields(v, f, 7) || !f[0].val || txn_str(f[0].val, a, 64, &op->verb))
    return CC_ECORRUPT;
  if (op->kind != STATE_TXN_KV) {
    if (f[5].val && state__mp_uint(f[5].val, &op->index)) return CC_ECORRUPT;
    if (f[6].val && f[6].val->type != MSGPACK_OBJECT_NIL) {
      struct state_register *reg = state__arena_alloc(a, sizeof *reg);
      if (state__mp_decode_register(f[6].val, a, reg)) return CC_ECORRUPT;
      op->reg = reg;
    }
  }
  switch (op->kind) {
  case STATE_TXN_KV: {
    struct state__mp_field e[] = {{"Key", NULL},         {"Value", NULL}, {"Flags", NULL},
                                  {"ModifyIndex", NULL}, {"Session", NULL}};
    if (!f[1].val || state__mp_fields(f[1].val, e, 5)) return CC_ECORRUPT;
    const char *p;
    size_t len;
    if (!e[0].val || state__mp_bytes(e[0].val, true, &p, &len) || len > STATE_KV_MAX_KEY)
      return CC_ECORRUPT;
    op->key = p;
    op->key_len = len;
    if (e[1].val && e[1].val->type != MSGPACK_OBJECT_NIL) {
      if (state__mp_bytes(e[1].val, false, &p, &len) || len > STATE_KV_MAX_VALUE) return CC_ECORRUPT;
      op->value = (const uint8_t *)(len ? p : "");
      op->value_len = len;
    }
    if (e[2].val && state__mp_uint(e[2].val, &op->flags)) return CC_ECORRUPT;
    if (e[3].val && state__mp_uint(e[3].val, &op->index)) return CC_ECORRUPT;
    return txn_str(e[4].val, a, STATE_KV_MAX_SESSION, &op->session);
  }
  case STATE_TXN_NODE: {
    struct state__mp_field g[] = {{"Node", NULL}, {"ID", NULL}};
    if (!f[2].val || state__mp_fields(f[2].val, g, 2)) return CC_ECORRUPT;
    if (txn_str(g[1].val, a, STATE_CAT_MAX_NAME, &op->node_id)) return CC_ECORRUPT;
    return txn_str(g[0].val, a, STATE_CAT_MAX_NAME, &op->node);
  }
  case STATE_TXN_SERVICE: {
    struct state__mp_field g[] = {{"ID", NULL}};
    if (txn_str(f[2].val, a, STATE_CAT_MAX_NAME, &op->node)) return CC_ECORRUPT;
    if (!f[3].val || state__mp_fields(f[3].val, g, 1)) return CC_ECORRUPT;
    return txn_str(g[0].val, a, STATE_CAT_MAX_NAME, &op->service_id);
  }
  case STATE_TXN_CHECK: {
    struct state__mp_field g[] = {{"Node", NULL}, {"CheckID", NULL}};
    if (!f[4].val || state__mp_fields(f[4].val, g, 2)) return CC_ECORRUPT;
    if (txn_str(g[0].val, a, STATE_CAT_MAX_NAME, &op->node)) return CC_ECORRUPT;
    return txn_str(g[1].val, a, STATE_CAT_MAX_NAME, &op->check_id);
  }
  }
  return CC_ECORRUPT;
}

static int decode_txn(const msgpack_object *root, struct decoded *d)
{
  struct state__mp_field f[] = {{"Datacenter", NULL}, {"Ops", NULL}};
  if (state__mp_fields(root, f, 2) || check_dc(f[0].val)) return CC_ECORRUPT;
  const msgpack_object *ops = f[1].val;
  if (!ops || ops->type != MSGPACK_OBJECT_ARRAY || ops->via.array.size > STATE_TXN_MAX_OPS)
    return CC_ECORRUPT;
  d->n_ops = ops->via.array.size;
  d->ops = d->n_ops ? state__arena_alloc(&d->arena, d->n_ops * sizeof *d->ops) : NULL;
  for (size_t i = 0; i < d->n_ops; i++) {
    memset(&d->ops[i], 0, sizeof d->ops[i]);
    if (decode_txn_op(&ops->via.array.ptr[i], &d->arena, &d->ops[i])) return CC_ECORRUPT;
  }
  return 0;
}

static int decode_query(const msgpack_object *root, struct decoded *d)
{
  struct state__mp_field f[] = {{"Datacenter", NULL}, {"Op", NULL}, {"ID", NULL}, {"Query", NULL}};
  if (state__mp_fields(root, f, 4) || check_dc(f[0].val) || !f[1].val) return CC_ECORRUPT;
  if (str_is(f[1].val, "delete")) d->query_delete = true;
  else if (!str_is(f[1].val, "create") && !str_is(f[1].val, "update")) return CC_ECORRUPT;
  if (txn_str(f[2].val, &d->arena, 36, &d->query_id)) return CC_ECORRUPT;
  if (!d->query_delete) {
    if (!f[3].val || state__mp_bytes(f[3].val, false, &d->query_json, &d->query_len) ||
        d->query_len > STATE_QUERY_MAX_JSON)
      return CC_ECORRUPT;
  }
  return 0;
}

void state_cmd_encode_query(struct buf *out, const char *op, const char *id, const char *q_json)
{
  msgpack_packer pk;
  buf_putc(out, STATE_CMD_QUERY);
  state__mp_packer_init(&pk, out);
  msgpack_pack_map(&pk, 3);
  state__mp_pack_cstr(&pk, "Op");
  state__mp_pack_cstr(&pk, op);
  state__mp_pack_cstr(&pk, "ID");
  state__mp_pack_cstr(&pk, id ? id : "");
  state__mp_pack_cstr(&pk, "Query");
  if (q_json) state__mp_pack_cstr(&pk, q_json);
  else msgpack_pack_nil(&pk);
}

/* Decodes into *d. On success *up holds the unpacked document (d's pointers point into data,
 * not into *up, but the caller destroys *up either way). */
static int decode(const void *data, size_t len, struct decoded *d, msgpack_unpacked *up)
{
  memset(d, 0, sizeof *d);
  msgpack_unpacked_init(up);
  if (!data || !len) return CC_ECORRUPT;
  uint8_t type = *(const uint8_t *)data;
  if (type >= 128) return 0; /* IgnoreUnknownTypeFlag: a newer server's command */
  if (type < STATE_CMD_KV || type > STATE_CMD_RESTORE) return CC_ECORRUPT;
  const char *body = (const char *)data + 1;
  if (state__mp_check(body, len - 1)) return CC_ECORRUPT;
  if (type == STATE_CMD_RESTORE) { /* checked in full when it applies (snapshot.c) */
    d->doc = body;
    d->doc_len = len - 1;
    d->type = type;
    return 0;
  }
  msgpack_unpacked_destroy(up);
  if (state__mp_unpack(body, len - 1, up)) return CC_ECORRUPT;
  int rc = 0;
  switch (type) {
  case STATE_CMD_KV: rc = decode_kv(&up->data, d); break;
  case STATE_CMD_TOMBSTONE_REAP: rc = decode_reap(&up->data, d); break;
  case STATE_CMD_REGISTER: rc = state__mp_decode_register(&up->data, &d->arena, &d->reg); break;
  case STATE_CMD_DEREGISTER:
    rc = state__mp_decode_deregister(&up->data, &d->arena, &d->dereg);
    break;
  case STATE_CMD_SESSION: rc = decode_session(&up->data, d); break;
  case STATE_CMD_TXN: rc = decode_txn(&up->data, d); break;
  case STATE_CMD_QUERY: rc = decode_query(&up->data, d); break;
  default: rc = up->data.type == MSGPACK_OBJECT_MAP ? 0 : CC_ECORRUPT; break;
  }
  if (!rc) d->type = type;
  return rc;
}

int state_cmd_validate(const void *data, size_t len)
{
  struct decoded d;
  msgpack_unpacked up;
  int rc = decode(data, len, &d, &up);
  if (!rc && d.type == STATE_CMD_RESTORE) rc = state__snapshot_check(d.doc, d.doc_len);
  msgpack_unpacked_destroy(&up);
  state__arena_free(&d.arena);
  return rc;
}

int state_cmd_apply(struct state_store *s, uint64_t index, const void *data, size_t len,
                    struct state_cmd_result *res)
{
  struct state_cmd_result dummy;
  if (!res) res = &dummy;
  res->msg[0] = '\0';
  res->body = NULL;
  res->body_len = 0;
  /* The previous transaction's answer has been read by now; a big one gives its memory back. */
  if (s->txn_out.cap > 64 * 1024) buf_free(&s->txn_out);
  else buf_reset(&s->txn_out);
  struct decoded d;
  msgpack_unpacked up;
  int rc = decode(data, len, &d, &up);
  if (rc) {
    msgpack_unpacked_destroy(&up);
    state__arena_free(&d.arena);
    res->err = CC_ECORRUPT;
    res->ok = false;
    return CC_ECORRUPT;
  }
  res->err = 0;
  res->ok = true;
  index += s->index_offset; /* see state_cmd_encode_restore */
  switch (d.type) {
  case STATE_CMD_RESTORE:
    res->err = state__store_restore_at(s, index, d.doc, d.doc_len);
    res->ok = res->err == 0;
    if (res->err == CC_ECORRUPT) { /* not a valid command after all: nothing changed */
      msgpack_unpacked_destroy(&up);
      snprintf(res->msg, sizeof res->msg, "snapshot state is corrupt");
      return CC_ECORRUPT;
    }
    break;
  case STATE_CMD_KV:
    res->err = state_kv_apply_msg(s, index, &d.op, &res->ok, res->msg, sizeof res->msg);
    break;
  case STATE_CMD_SESSION: {
    int src = d.session_create
                  ? state_session_create(s, index, &d.sess, res->msg, sizeof res->msg)
                  : state_session_destroy(s, index, d.sess.id);
    /* As for registrations: only a malformed request is the proposer's error; a refusal
     * that depends on the store's contents answers ok = false with Consul's sentence. */
    res->err = src == CC_EINVAL ? CC_EINVAL : 0;
    res->ok = src == 0;
    if (src == 0) {
      res->msg[0] = '\0';
      if (d.session_create) { /* the proposer answers {"ID": ...} */
        buf_puts(&s->txn_out, state_session_get(s, d.sess.id)->id);
        res->body = s->txn_out.data;
        res->body_len = s->txn_out.len;
      }
    } else if (!res->msg[0]) {
      snprintf(res->msg, sizeof res->msg, "%s", cc_strerror(src));
    }
    break;
  }
  case STATE_CMD_TXN:
    res->err = state_txn_apply(s, index, d.ops, d.n_ops, &s->txn_out, &res->ok);
    if (res->err == 0) {
      res->body = s->txn_out.data;
      res->body_len = s->txn_out.len;
    } else {
      res->ok = false;
    }
    break;
  case STATE_CMD_QUERY: {
    int qrc = d.query_delete
                  ? state_query_delete(s, index, d.query_id, res->msg, sizeof res->msg)
                  : state_query_set(s, index, d.query_id, d.query_json, d.query_len, res->msg,
                                    sizeof res->msg);
    /* A refusal (a name taken meanwhile, a session gone) is the store's answer to the
     * proposer, as Consul's FSM returns the state store's error; only a stale index is
     * malformed. */
    res->ok = qrc == 0;
    res->err = qrc && index < s->applied ? CC_EINVAL : 0;
    if (qrc == 0 && !d.query_delete) { /* the proposer answers {"ID": ...} */
      buf_puts(&s->txn_out, d.query_id);
      res->body = s->txn_out.data;
      res->body_len = s->txn_out.len;
    }
    break;
  }
  case STATE_CMD_TOMBSTONE_REAP:
    res->err = state_tombstone_reap(s, index, d.upto);
    res->ok = res->err == 0;
    break;
  case STATE_CMD_NOOP:
    if (index == 0 || index < s->applied) {
      res->err = CC_EINVAL;
      res->ok = false;
    } else {
      s->applied = index;
    }
    break;
  case STATE_CMD_REGISTER:
  case STATE_CMD_DEREGISTER: {
    char msg[256];
    int crc = d.type == STATE_CMD_REGISTER
                  ? state_catalog_register(s, index, &d.reg, msg, sizeof msg)
                  : state_catalog_deregister(s, index, &d.dereg, msg, sizeof msg);
    /* Malformed requests are the proposer's error (EINVAL); refusals that depend on the
     * store's contents answer ok = false (see state_cmd_result). */
    res->err = crc == CC_EINVAL ? CC_EINVAL : 0;
    res->ok = crc == 0;
    if (crc != 0) snprintf(res->msg, sizeof res->msg, "%s", msg);
    break;
  }
  default: /* ignored type */
    break;
  }
  msgpack_unpacked_destroy(&up);
  state__arena_free(&d.arena);
  return 0;
}
