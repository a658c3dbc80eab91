/* catalog_mp.c -- catalog requests and rows as msgpack: the register and deregister commands
 * of the Raft log, and the catalog part of snapshots.
 *
 * Shapes follow Consul's structs (RegisterRequest, NodeService, HealthCheck), so a log dump
 * reads like Consul's requests:
 *   register   {"Datacenter", "ID", "Node", "Address", "TaggedAddresses"(map|nil),
 *               "NodeMeta"(map|nil), "Locality"(JSON text|nil), "SkipNodeUpdate",
 *               "Service"(map|nil), "Checks"(array|nil)}
 *   service    {"Kind", "ID", "Service", "Tags"(array|nil), "Address",
 *               "TaggedAddresses"({k: {"Address", "Port"}}|nil), "Meta"(map|nil), "Port",
 *               "SocketPath", "Weights"({"Passing", "Warning"}|nil), "EnableTagOverride",
 *               "Proxy", "Connect", "Locality" (JSON texts|nil)}
 *   check      {"Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID",
 *               "ServiceName", "ServiceTags"(array|nil), "Type", "Interval", "Timeout",
 *               "ExposedPort", "Definition"(JSON text|nil)}
 *   deregister {"Datacenter", "Node", "ServiceID", "CheckID"}
 * Snapshot rows are the same maps plus "CreateIndex", "ModifyIndex" (and "NodeIndex" for a
 * node, "Node" for a service). The rich Consul structs that Concord only echoes (Proxy,
 * Connect, Locality, a check's Definition) travel as their canonical JSON text.
 *
 * Decoding trusts nothing (the bytes come from disk and other servers, and are fuzzed):
 * types are checked, every string is capped and copied NUL-terminated into an arena (an
 * embedded NUL is corrupt), lists are capped, unknown fields are skipped, and a request
 * without its "Node" field is corrupt (every encoder writes it). */
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "state/internal.h"

/* ---- arena ---- */

struct state__arena_block {
  struct state__arena_block *next;
  size_t used, cap;
  _Alignas(16) char data[];
};

void *state__arena_alloc(struct state__arena *a, size_t size)
{
  size = (size + 15) & ~(size_t)15;
  struct state__arena_block *b = a->head;
  if (!b || b->cap - b->used < size) {
    size_t cap = size > 4096 ? size : 4096;
    b = xmalloc(sizeof *b + cap);
    b->used = 0;
    b->cap = cap;
    b->next = a->head;
    a->head = b;
  }
  void *p = b->data + b->used;
  b->used += size;
  return p;
}

void state__arena_free(struct state__arena *a)
{
  while (a->head) {
    struct state__arena_block *b = a->head;
    a->head = b->next;
    free(b);
  }
}

/* ---- packing ---- */

static void pack_str(msgpack_packer *pk, const char *s) { state__mp_pack_cstr(pk, s ? s : ""); }

static void pack_opt(msgpack_packer *pk, const char *s)
{
  if (s) state__mp_pack_cstr(pk, s);
  else msgpack_pack_nil(pk);
}

static void pack_map(msgpack_packer *pk, const struct state_map *m)
{
  if (m->null && m->n == 0) {
    msgpack_pack_nil(pk);
    return;
  }
  msgpack_pack_map(pk, m->n);
  for (size_t i = 0; i < m->n; i++) {
    pack_str(pk, m->items[i].key);
    pack_str(pk, m->items[i].value);
  }
}

static void pack_strs(msgpack_packer *pk, const char *const *v, size_t n, bool null)
{
  if (null && n == 0) {
    msgpack_pack_nil(pk);
    return;
  }
  msgpack_pack_array(pk, n);
  for (size_t i = 0; i < n; i++) pack_str(pk, v[i]);
}

static void pack_addrs(msgpack_packer *pk, const struct state_svc_addr *v, size_t n)
{
  if (!n) {
    msgpack_pack_nil(pk);
    return;
  }
  msgpack_pack_map(pk, n);
  for (size_t i = 0; i < n; i++) {
    pack_str(pk, v[i].key);
    msgpack_pack_map(pk, 2);
    pack_str(pk, "Address");
    pack_str(pk, v[i].address);
    pack_str(pk, "Port");
    msgpack_pack_int64(pk, v[i].port);
  }
}

#define KEY(pk, name) state__mp_pack_cstr((pk), (name))

/* The service fields common to a register request and a snapshot row (14 pairs). */
#define SERVICE_PAIRS 14
static void pack_service_fields(msgpack_packer *pk, const char *kind, const char *id,
                                const char *name, const char *const *tags, size_t n_tags,
                                bool tags_null, const char *address,
                                const struct state_svc_addr *tagged, size_t n_tagged,
                                const struct state_map *meta, int64_t port, const char *socket,
                                bool has_weights, int64_t wp, int64_t ww, bool eto,
                                const char *proxy, const char *connect, const char *locality)
{
  KEY(pk, "Kind"); pack_str(pk, kind);
  KEY(pk, "ID"); pack_str(pk, id);
  KEY(pk, "Service"); pack_str(pk, name);
  KEY(pk, "Tags"); pack_strs(pk, tags, n_tags, tags_null);
  KEY(pk, "Address"); pack_str(pk, address);
  KEY(pk, "TaggedAddresses"); pack_addrs(pk, tagged, n_tagged);
  KEY(pk, "Meta"); pack_map(pk, meta);
  KEY(pk, "Port"); msgpack_pack_int64(pk, port);
  KEY(pk, "SocketPath"); pack_str(pk, socket);
  KEY(pk, "Weights");
  if (has_weights) {
    msgpack_pack_map(pk, 2);
    KEY(pk, "Passing"); msgpack_pack_int64(pk, wp);
    KEY(pk, "Warning"); msgpack_pack_int64(pk, ww);
  } else {
    msgpack_pack_nil(pk);
  }
  KEY(pk, "EnableTagOverride"); eto ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
  KEY(pk, "Proxy"); pack_opt(pk, proxy);
  KEY(pk, "Connect"); pack_opt(pk, connect);
  KEY(pk, "Locality"); pack_opt(pk, locality);
}

static void pack_reg_service(msgpack_packer *pk, const struct state_register_service *s)
{
  msgpack_pack_map(pk, SERVICE_PAIRS);
  pack_service_fields(pk, s->kind, s->id, s->name, s->tags, s->n_tags, s->tags_null, s->address,
                      s->tagged_addresses, s->n_tagged, &s->meta, s->port, s->socket_path,
                      s->has_weights, s->weight_passing, s->weight_warning,
                      s->enable_tag_override, s->proxy, s->connect, s->locality);
}

#define CHECK_PAIRS 14
static void pack_check_fields(msgpack_packer *pk, const char *node, const char *check_id,
                              const char *name, const char *status, const char *notes,
                              const char *output, const char *service_id,
                              const char *service_name, const char *const *tags, size_t n_tags,
                              bool tags_null, const char *type, const char *interval,
                              const char *timeout, int64_t exposed, const char *definition)
{
  KEY(pk, "Node"); pack_str(pk, node);
  KEY(pk, "CheckID"); pack_str(pk, check_id);
  KEY(pk, "Name"); pack_str(pk, name);
  KEY(pk, "Status"); pack_str(pk, status);
  KEY(pk, "Notes"); pack_str(pk, notes);
  KEY(pk, "Output"); pack_str(pk, output);
  KEY(pk, "ServiceID"); pack_str(pk, service_id);
  KEY(pk, "ServiceName"); pack_str(pk, service_name);
  KEY(pk, "ServiceTags"); pack_strs(pk, tags, n_tags, tags_null);
  KEY(pk, "Type"); pack_str(pk, type);
  KEY(pk, "Interval"); pack_str(pk, interval);
  KEY(pk, "Timeout"); pack_str(pk, timeout);
  KEY(pk, "ExposedPort"); msgpack_pack_int64(pk, exposed);
  KEY(pk, "Definition"); pack_opt(pk, definition);
}

void state__mp_pack_register(msgpack_packer *pk, const struct state_register *r)
{
  msgpack_pack_map(pk, 10);
  KEY(pk, "Datacenter"); pack_str(pk, r->datacenter);
  KEY(pk, "ID"); pack_str(pk, r->id);
  KEY(pk, "Node"); pack_str(pk, r->node);
  KEY(pk, "Address"); pack_str(pk, r->address);
  KEY(pk, "TaggedAddresses"); pack_map(pk, &r->tagged_addresses);
  KEY(pk, "NodeMeta"); pack_map(pk, &r->node_meta);
  KEY(pk, "Locality"); pack_opt(pk, r->locality);
  KEY(pk, "SkipNodeUpdate"); r->skip_node_update ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
  KEY(pk, "Service");
  if (r->service) pack_reg_service(pk, r->service);
  else msgpack_pack_nil(pk);
  KEY(pk, "Checks");
  msgpack_pack_array(pk, r->n_checks);
  for (size_t i = 0; i < r->n_checks; i++) {
    const struct state_register_check *c = &r->checks[i];
    msgpack_pack_map(pk, CHECK_PAIRS);
    pack_check_fields(pk, c->node, c->check_id, c->name, c->status, c->notes, c->output,
                      c->service_id, c->service_name, c->service_tags, c->n_service_tags,
                      c->service_tags_null, c->type, c->interval, c->timeout, c->exposed_port,
                      c->definition);
  }
}

void state__mp_pack_deregister(msgpack_packer *pk, const struct state_deregister *r)
{
  msgpack_pack_map(pk, 3);
  KEY(pk, "Node"); pack_str(pk, r->node);
  KEY(pk, "ServiceID"); pack_str(pk, r->service_id);
  KEY(pk, "CheckID"); pack_str(pk, r->check_id);
}

/* ---- decoding ---- */

/* A str/bin field (absent or nil: "" when !opt, NULL when opt), copied into the arena. */
static int get_str(const msgpack_object *o, struct state__arena *a, size_t cap, bool opt,
                   const char **out)
{
  if (!o || o->type == MSGPACK_OBJECT_NIL) {
    *out = opt ? NULL : "";
    return 0;
  }
  const char *p;
  size_t len;
  if (state__mp_bytes(o, false, &p, &len) || len > cap) return CC_ECORRUPT;
  if (len && memchr(p, '\0', len)) return CC_ECORRUPT;
  char *s = state__arena_alloc(a, len + 1);
  if (len) memcpy(s, p, len);
  s[len] = '\0';
  *out = s;
  return 0;
}

static int get_int(const msgpack_object *o, int64_t *out)
{
  *out = 0;
  if (!o || o->type == MSGPACK_OBJECT_NIL) return 0;
  if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
    if (o->via.u64 > INT64_MAX) return CC_ECORRUPT;
    *out = (int64_t)o->via.u64;
    return 0;
  }
  if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
    *out = o->via.i64;
    return 0;
  }
  return CC_ECORRUPT;
}

static int get_u64(const msgpack_object *o, uint64_t *out)
{
  return o ? state__mp_uint(o, out) : CC_ECORRUPT;
}

static int get_bool(const msgpack_object *o, bool *out)
{
  *out = false;
  if (!o || o->type == MSGPACK_OBJECT_NIL) return 0;
  if (o->type != MSGPACK_OBJECT_BOOLEAN) return CC_ECORRUPT;
  *out = o->via.boolean;
  return 0;
}

static int get_map(const msgpack_object *o, struct state__arena *a, struct state_map *out)
{
  *out = (struct state_map){NULL, 0, true};
  if (!o || o->type == MSGPACK_OBJECT_NIL) return 0;
  if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size > STATE_CAT_MAX_LIST) return CC_ECORRUPT;
  uint32_t n = o->via.map.size;
  struct state_pair *v = n ? state__arena_alloc(a, n * sizeof *v) : NULL;
  for (uint32_t i = 0; i < n; i++) {
    if (get_str(&o->via.map.ptr[i].key, a, STATE_CAT_MAX_NAME, false, &v[i].key) ||
        get_str(&o->via.map.ptr[i].val, a, STATE_CAT_MAX_STRING, false, &v[i].value))
      return CC_ECORRUPT;
  }
  *out = (struct state_map){v, n, false};
  return 0;
}

static int get_strs(const msgpack_object *o, struct state__arena *a, const char *const **out,
                    size_t *n, bool *null)
{
  *out = NULL;
  *n = 0;
  *null = true;
  if (!o || o->type == MSGPACK_OBJECT_NIL) return 0;
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > STATE_CAT_MAX_LIST) return CC_ECORRUPT;
  uint32_t count = o->via.array.size;
  const char **v = count ? state__arena_alloc(a, count * sizeof *v) : NULL;
  for (uint32_t i = 0; i < count; i++)
    if (get_str(&o->via.array.ptr[i], a, STATE_CAT_MAX_STRING, false, &v[i])) return CC_ECORRUPT;
  *out = v;
  *n = count;
  *null = false;
  return 0;
}

static int get_addrs(const msgpack_object *o, struct state__arena *a,
                     const struct state_svc_addr **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  if (!o || o->type == MSGPACK_OBJECT_NIL) return 0;
  if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size > STATE_CAT_MAX_LIST) return CC_ECORRUPT;
  uint32_t count = o->via.map.size;
  struct state_svc_addr *v = count ? state__arena_alloc(a, count * sizeof *v) : NULL;
  for (uint32_t i = 0; i < count; i++) {
    struct state__mp_field f[] = {{"Address", NULL}, {"Port", NULL}};
    if (get_str(&o->via.map.ptr[i].key, a, STATE_CAT_MAX_NAME, false, &v[i].key) ||
        state__mp_fields(&o->via.map.ptr[i].val, f, 2) ||
        get_str(f[0].val, a, STATE_CAT_MAX_STRING, false, &v[i].address) ||
        get_int(f[1].val, &v[i].port))
      return CC_ECORRUPT;
  }
  *out = v;
  *n = count;
  return 0;
}

static int decode_service(const msgpack_object *o, struct state__arena *a,
                          struct state_register_service *s)
{
  struct state__mp_field f[] = {
      {"Kind", NULL},    {"ID", NULL},       {"Service", NULL},    {"Tags", NULL},
      {"Address", NULL}, {"TaggedAddresses", NULL}, {"Meta", NULL}, {"Port", NULL},
      {"SocketPath", NULL}, {"Weights", NULL}, {"EnableTagOverride", NULL}, {"Proxy", NULL},
      {"Connect", NULL}, {"Locality", NULL}};
  memset(s, 0, sizeof *s);
  if (state__mp_fields(o, f, sizeof f / sizeof f[0])) return CC_ECORRUPT;
  if (get_str(f[0].val, a, STATE_CAT_MAX_NAME, false, &s->kind) ||
      get_str(f[1].val, a, STATE_CAT_MAX_NAME, false, &s->id) ||
      get_str(f[2].val, a, STATE_CAT_MAX_NAME, false, &s->name) ||
      get_strs(f[3].val, a, &s->tags, &s->n_tags, &s->tags_null) ||
      get_str(f[4].val, a, STATE_CAT_MAX_STRING, false, &s->address) ||
      get_addrs(f[5].val, a, &s->tagged_addresses, &s->n_tagged) || get_map(f[6].val, a, &s->meta) ||
      get_int(f[7].val, &s->port) || get_str(f[8].val, a, STATE_CAT_MAX_STRING, false, &s->socket_path) ||
      get_bool(f[10].val, &s->enable_tag_override) ||
      get_str(f[11].val, a, STATE_CAT_MAX_JSON, true, &s->proxy) ||
      get_str(f[12].val, a, STATE_CAT_MAX_JSON, true, &s->connect) ||
      get_str(f[13].val, a, STATE_CAT_MAX_JSON, true, &s->locality))
    return CC_ECORRUPT;
  if (f[9].val && f[9].val->type != MSGPACK_OBJECT_NIL) {
    struct state__mp_field w[] = {{"Passing", NULL}, {"Warning", NULL}};
    if (state__mp_fields(f[9].val, w, 2) || get_int(w[0].val, &s->weight_passing) ||
        get_int(w[1].val, &s->weight_warning))
      return CC_ECORRUPT;
    s->has_weights = true;
  }
  return 0;
}

static int decode_check(const msgpack_object *o, struct state__arena *a,
                        struct state_register_check *c)
{
  struct state__mp_field f[] = {
      {"Node", NULL},      {"CheckID", NULL},     {"Name", NULL},        {"Status", NULL},
      {"Notes", NULL},     {"Output", NULL},      {"ServiceID", NULL},   {"ServiceName", NULL},
      {"ServiceTags", NULL}, {"Type", NULL},      {"Interval", NULL},    {"Timeout", NULL},
      {"ExposedPort", NULL}, {"Definition", NULL}};
  memset(c, 0, sizeof *c);
  if (state__mp_fields(o, f, sizeof f / sizeof f[0])) return CC_ECORRUPT;
  if (get_str(f[0].val, a, STATE_CAT_MAX_NAME, false, &c->node) ||
      get_str(f[1].val, a, STATE_CAT_MAX_NAME, false, &c->check_id) ||
      get_str(f[2].val, a, STATE_CAT_MAX_STRING, false, &c->name) ||
      get_str(f[3].val, a, STATE_CAT_MAX_NAME, false, &c->status) ||
      get_str(f[4].val, a, STATE_CAT_MAX_STRING, false, &c->notes) ||
      get_str(f[5].val, a, STATE_CAT_MAX_OUTPUT, false, &c->output) ||
      get_str(f[6].val, a, STATE_CAT_MAX_NAME, false, &c->service_id) ||
      get_str(f[7].val, a, STATE_CAT_MAX_NAME, false, &c->service_name) ||
      get_strs(f[8].val, a, &c->service_tags, &c->n_service_tags, &c->service_tags_null) ||
      get_str(f[9].val, a, STATE_CAT_MAX_NAME, false, &c->type) ||
      get_str(f[10].val, a, STATE_CAT_MAX_NAME, false, &c->interval) ||
      get_str(f[11].val, a, STATE_CAT_MAX_NAME, false, &c->timeout) ||
      get_int(f[12].val, &c->exposed_port) ||
      get_str(f[13].val, a, STATE_CAT_MAX_JSON, true, &c->definition))
    return CC_ECORRUPT;
  return 0;
}

/* The node fields of a register request or a snapshot node row. */
static int decode_node_fields(const msgpack_object *id, const msgpack_object *node,
                              const msgpack_object *addr, const msgpack_object *dc,
                              const msgpack_object *tagged, const msgpack_object *meta,
                              const msgpack_object *locality, struct state__arena *a,
                              struct state_register *r)
{
  if (get_str(id, a, STATE_CAT_MAX_NAME, false, &r->id) ||
      get_str(node, a, STATE_CAT_MAX_NAME, false, &r->node) ||
      get_str(addr, a, STATE_CAT_MAX_STRING, false, &r->address) ||
      get_str(dc, a, STATE_CAT_MAX_NAME, false, &r->datacenter) ||
      get_map(tagged, a, &r->tagged_addresses) || get_map(meta, a, &r->node_meta) ||
      get_str(locality, a, STATE_CAT_MAX_JSON, true, &r->locality))
    return CC_ECORRUPT;
  return 0;
}

int state__mp_decode_register(const msgpack_object *o, struct state__arena *a,
                              struct state_register *r)
{
  struct state__mp_field f[] = {{"Datacenter", NULL}, {"ID", NULL},       {"Node", NULL},
                                {"Address", NULL},    {"TaggedAddresses", NULL},
                                {"NodeMeta", NULL},   {"Locality", NULL}, {"SkipNodeUpdate", NULL},
                                {"Service", NULL},    {"Checks", NULL}};
  memset(r, 0, sizeof *r);
  if (state__mp_fields(o, f, sizeof f / sizeof f[0])) return CC_ECORRUPT;
  if (!f[2].val) return CC_ECORRUPT; /* a register always names its node */
  if (decode_node_fields(f[1].val, f[2].val, f[3].val, f[0].val, f[4].val, f[5].val, f[6].val, a,
                         r) ||
      get_bool(f[7].val, &r->skip_node_update))
    return CC_ECORRUPT;
  if (f[8].val && f[8].val->type != MSGPACK_OBJECT_NIL) {
    struct state_register_service *s = state__arena_alloc(a, sizeof *s);
    if (decode_service(f[8].val, a, s)) return CC_ECORRUPT;
    r->service = s;
  }
  const msgpack_object *checks = f[9].val;
  if (checks && checks->type != MSGPACK_OBJECT_NIL) {
    if (checks->type != MSGPACK_OBJECT_ARRAY || checks->via.array.size > STATE_CAT_MAX_LIST)
      return CC_ECORRUPT;
    uint32_t n = checks->via.array.size;
    struct state_register_check *v = n ? state__arena_alloc(a, n * sizeof *v) : NULL;
    for (uint32_t i = 0; i < n; i++)
      if (decode_check(&checks->via.array.ptr[i], a, &v[i])) return CC_ECORRUPT;
    r->checks = v;
    r->n_checks = n;
  }
  return 0;
}

int state__mp_decode_deregister(const msgpack_object *o, struct state__arena *a,
                                struct state_deregister *r)
{
  struct state__mp_field f[] = {{"Datacenter", NULL}, {"Node", NULL}, {"ServiceID", NULL},
                                {"CheckID", NULL}};
  memset(r, 0, sizeof *r);
  const char *dc;
  if (state__mp_fields(o, f, 4) || !f[1].val || get_str(f[0].val, a, STATE_CAT_MAX_NAME, false, &dc) ||
      get_str(f[1].val, a, STATE_CAT_MAX_NAME, false, &r->node) ||
      get_str(f[2].val, a, STATE_CAT_MAX_NAME, false, &r->service_id) ||
      get_str(f[3].val, a, STATE_CAT_MAX_NAME, false, &r->check_id))
    return CC_ECORRUPT;
  return 0;
}

/* ---- snapshots ---- */

static void snap_node(void *arg, const struct state_node *n, uint64_t node_index)
{
  msgpack_packer *pk = arg;
  msgpack_pack_map(pk, 10);
  KEY(pk, "ID"); pack_str(pk, n->id);
  KEY(pk, "Node"); pack_str(pk, n->name);
  KEY(pk, "Address"); pack_str(pk, n->address);
  KEY(pk, "Datacenter"); pack_str(pk, n->datacenter);
  KEY(pk, "TaggedAddresses"); pack_map(pk, &n->tagged_addresses);
  KEY(pk, "Meta"); pack_map(pk, &n->meta);
  KEY(pk, "Locality"); pack_opt(pk, n->locality);
  KEY(pk, "CreateIndex"); msgpack_pack_uint64(pk, n->create_index);
  KEY(pk, "ModifyIndex"); msgpack_pack_uint64(pk, n->modify_index);
  KEY(pk, "NodeIndex"); msgpack_pack_uint64(pk, node_index);
}

static void snap_service(void *arg, const struct state_service *s)
{
  msgpack_packer *pk = arg;
  msgpack_pack_map(pk, SERVICE_PAIRS + 3);
  KEY(pk, "Node"); pack_str(pk, s->node->name);
  pack_service_fields(pk, s->kind, s->id, s->name, s->tags, s->n_tags, s->tags_null, s->address,
                      s->tagged_addresses, s->n_tagged, &s->meta, s->port, s->socket_path, true,
                      s->weight_passing, s->weight_warning, s->enable_tag_override, s->proxy,
                      s->connect, s->locality);
  KEY(pk, "CreateIndex"); msgpack_pack_uint64(pk, s->create_index);
  KEY(pk, "ModifyIndex"); msgpack_pack_uint64(pk, s->modify_index);
}

static void snap_check(void *arg, const struct state_check *c)
{
  msgpack_packer *pk = arg;
  msgpack_pack_map(pk, CHECK_PAIRS + 2);
  pack_check_fields(pk, c->node, c->check_id, c->name, c->status, c->notes, c->output,
                    c->service_id, c->service_name, c->service_tags, c->n_service_tags,
                    c->service_tags_null, c->type, c->interval, c->timeout, c->exposed_port,
                    c->definition);
  KEY(pk, "CreateIndex"); msgpack_pack_uint64(pk, c->create_index);
  KEY(pk, "ModifyIndex"); msgpack_pack_uint64(pk, c->modify_index);
}

static void snap_group(void *arg, const char *lname, uint64_t index)
{
  msgpack_packer *pk = arg;
  pack_str(pk, lname);
  msgpack_pack_uint64(pk, index);
}

/* The walk visits nodes, then services, then checks; the array headers go in between. */
struct snap_walk {
  msgpack_packer *pk;
  size_t n_services, n_checks;
  int phase; /* 0 nodes, 1 services, 2 checks */
};

static void walk_node(void *arg, const struct state_node *n, uint64_t node_index)
{
  struct snap_walk *w = arg;
  snap_node(w->pk, n, node_index);
}

static void walk_service(void *arg, const struct state_service *s)
{
  struct snap_walk *w = arg;
  if (w->phase == 0) {
    w->phase = 1;
    KEY(w->pk, "Services");
    msgpack_pack_array(w->pk, w->n_services);
  }
  snap_service(w->pk, s);
}

static void walk_check(void *arg, const struct state_check *c)
{
  struct snap_walk *w = arg;
  if (w->phase < 2) {
    if (w->phase == 0) {
      KEY(w->pk, "Services");
      msgpack_pack_array(w->pk, 0);
    }
    w->phase = 2;
    KEY(w->pk, "Checks");
    msgpack_pack_array(w->pk, w->n_checks);
  }
  snap_check(w->pk, c);
}

void state__catalog_snapshot(const struct state__catalog *c, msgpack_packer *pk)
{
  size_t nodes, services, checks;
  state__catalog_counts(c, &nodes, &services, &checks);
  struct snap_walk w = {pk, services, checks, 0};
  KEY(pk, "Nodes");
  msgpack_pack_array(pk, nodes);
  struct state__catalog_walker walker = {&w, walk_node, walk_service, walk_check};
  state__catalog_walk(c, &walker);
  if (w.phase == 0) {
    KEY(pk, "Services");
    msgpack_pack_array(pk, 0);
  }
  if (w.phase < 2) {
    KEY(pk, "Checks");
    msgpack_pack_array(pk, 0);
  }
  KEY(pk, "ServiceIndexes");
  msgpack_pack_map(pk, state__catalog_group_count(c));
  state__catalog_groups(c, snap_group, pk);
}

static int get_indexes(const msgpack_object *ci, const msgpack_object *mi, uint64_t max,
                       uint64_t *create, uint64_t *modify)
{
  if (get_u64(ci, create) || get_u64(mi, modify)) return CC_ECORRUPT;
  if (*create > *modify || *modify > max) return CC_ECORRUPT;
  return 0;
}

static int restore_rows(struct state__catalog *c, const msgpack_object *nodes,
                        const msgpack_object *services, const msgpack_object *checks,
                        uint64_t max)
{
  struct state__arena a = {NULL};
  int rc = 0;
  for (uint32_t i = 0; !rc && nodes && i < nodes->via.array.size; i++) {
    struct state__mp_field f[] = {{"ID", NULL},         {"Node", NULL},        {"Address", NULL},
                                  {"Datacenter", NULL}, {"TaggedAddresses", NULL},
                                  {"Meta", NULL},       {"Locality", NULL},    {"CreateIndex", NULL},
                                  {"ModifyIndex", NULL}, {"NodeIndex", NULL}};
    struct state_register r = {0};
    uint64_t ci, mi, ni;
    rc = state__mp_fields(&nodes->via.array.ptr[i], f, 10) ||
                 decode_node_fields(f[0].val, f[1].val, f[2].val, f[3].val, f[4].val, f[5].val,
                                    f[6].val, &a, &r) ||
                 get_indexes(f[7].val, f[8].val, max, &ci, &mi) || get_u64(f[9].val, &ni) ||
                 ni > max
             ? CC_ECORRUPT
             : 0;
    if (!rc) rc = state__catalog_restore_node(c, &r, ci, mi, ni);
    state__arena_free(&a);
  }
  for (uint32_t i = 0; !rc && services && i < services->via.array.size; i++) {
    const msgpack_object *o = &services->via.array.ptr[i];
    struct state__mp_field f[] = {{"Node", NULL}, {"CreateIndex", NULL}, {"ModifyIndex", NULL}};
    struct state_register_service s;
    const char *node;
    uint64_t ci, mi;
    rc = state__mp_fields(o, f, 3) || get_str(f[0].val, &a, STATE_CAT_MAX_NAME, false, &node) ||
                 get_indexes(f[1].val, f[2].val, max, &ci, &mi) || decode_service(o, &a, &s)
             ? CC_ECORRUPT
             : 0;
    if (!rc) rc = state__catalog_restore_service(c, node, &s, ci, mi);
    state__arena_free(&a);
  }
  for (uint32_t i = 0; !rc && checks && i < checks->via.array.size; i++) {
    const msgpack_object *o = &checks->via.array.ptr[i];
    struct state__mp_field f[] = {{"CreateIndex", NULL}, {"ModifyIndex", NULL}};
    struct state_register_check ck;
    uint64_t ci, mi;
    rc = state__mp_fields(o, f, 2) || get_indexes(f[0].val, f[1].val, max, &ci, &mi) ||
                 decode_check(o, &a, &ck)
             ? CC_ECORRUPT
             : 0;
    if (!rc) rc = state__catalog_restore_check(c, &ck, ci, mi);
    state__arena_free(&a);
  }
  return rc ? CC_ECORRUPT : 0;
}

static bool array_or_absent(const msgpack_object *o)
{
  return !o || o->type == MSGPACK_OBJECT_ARRAY;
}

int state__catalog_restore(const msgpack_object *nodes, const msgpack_object *services,
                           const msgpack_object *checks, const msgpack_object *svc_indexes,
                           const struct state__catalog_indexes *ix, uint64_t max_index,
                           struct state__catalog **out)
{
  *out = NULL;
  if (!array_or_absent(nodes) || !array_or_absent(services) || !array_or_absent(checks))
    return CC_ECORRUPT;
  if (svc_indexes && svc_indexes->type != MSGPACK_OBJECT_MAP) return CC_ECORRUPT;
  struct state__catalog *c = state__catalog_new();
  int rc = restore_rows(c, nodes, services, checks, max_index);
  for (uint32_t i = 0; !rc && svc_indexes && i < svc_indexes->via.map.size; i++) {
    struct state__arena a = {NULL};
    const char *name;
    uint64_t idx;
    if (get_str(&svc_indexes->via.map.ptr[i].key, &a, STATE_CAT_MAX_NAME, false, &name) ||
        get_u64(&svc_indexes->via.map.ptr[i].val, &idx) || idx > max_index ||
        state__catalog_restore_service_index(c, name, idx))
      rc = CC_ECORRUPT;
    state__arena_free(&a);
  }
  if (!rc) state__catalog_restore_indexes(c, ix);
  if (rc) {
    state__catalog_free(c);
    return CC_ECORRUPT;
  }
  *out = c;
  return 0;
}
