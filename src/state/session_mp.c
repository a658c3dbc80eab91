/* session_mp.c -- a session as msgpack: the "Session" of a session command (structs.Session
 * inside structs.SessionRequest) and a row of the snapshot's "Sessions" list.
 *
 *   {"ID", "Name", "Node", "LockDelay"(int ns), "Behavior", "TTL",
 *    "NodeChecks"(array|nil), "ServiceChecks"([{"ID", "Namespace"}]|nil),
 *    "Checks"(array|nil) [, "CreateIndex", "ModifyIndex"]}
 *
 * Decoding trusts nothing (bytes from disk and other servers, fuzzed): types checked, strings
 * capped and copied NUL-terminated into the caller's arena (an embedded NUL is corrupt),
 * lists capped at STATE_SESSION_MAX_CHECKS, unknown fields skipped. Whether the values make a
 * valid session (a UUID, a known Behavior) is the store's business, not the decoder's. */
#include <string.h>

#include "lib/err.h"
#include "state/internal.h"

static void pack_strs(msgpack_packer *pk, const char *const *v, size_t n, bool null)
{
  if (null && n == 0) {
    msgpack_pack_nil(pk);
    return;
  }
  msgpack_pack_array(pk, n);
  for (size_t i = 0; i < n; i++) state__mp_pack_cstr(pk, v[i] ? v[i] : "");
}

static void pack_s(msgpack_packer *pk, const char *s) { state__mp_pack_cstr(pk, s ? s : ""); }

void state__mp_pack_session(msgpack_packer *pk, const struct state_session *se, bool with_indexes)
{
  msgpack_pack_map(pk, with_indexes ? 11 : 9);
  state__mp_pack_cstr(pk, "ID");
  pack_s(pk, se->id);
  state__mp_pack_cstr(pk, "Name");
  pack_s(pk, se->name);
  state__mp_pack_cstr(pk, "Node");
  pack_s(pk, se->node);
  state__mp_pack_cstr(pk, "LockDelay");
  msgpack_pack_int64(pk, se->lock_delay_ns);
  state__mp_pack_cstr(pk, "Behavior");
  pack_s(pk, se->behavior);
  state__mp_pack_cstr(pk, "TTL");
  pack_s(pk, se->ttl);
  state__mp_pack_cstr(pk, "NodeChecks");
  pack_strs(pk, se->node_checks, se->n_node_checks, se->node_checks_null);
  state__mp_pack_cstr(pk, "ServiceChecks");
  if (se->service_checks_null && se->n_service_checks == 0) {
    msgpack_pack_nil(pk);
  } else {
    msgpack_pack_array(pk, se->n_service_checks);
    for (size_t i = 0; i < se->n_service_checks; i++) {
      msgpack_pack_map(pk, 2);
      state__mp_pack_cstr(pk, "ID");
      pack_s(pk, se->service_checks[i].id);
      state__mp_pack_cstr(pk, "Namespace");
      pack_s(pk, se->service_checks[i].ns);
    }
  }
  state__mp_pack_cstr(pk, "Checks");
  pack_strs(pk, se->checks, se->n_checks, true);
  if (with_indexes) {
    state__mp_pack_cstr(pk, "CreateIndex");
    msgpack_pack_uint64(pk, se->create_index);
    state__mp_pack_cstr(pk, "ModifyIndex");
    msgpack_pack_uint64(pk, se->modify_index);
  }
}

/* A str (or bin) copied into the arena; absent or nil gives "". */
static int get_str(const msgpack_object *o, struct state__arena *a, size_t cap, const char **out)
{
  *out = "";
  if (!o || o->type == MSGPACK_OBJECT_NIL) return 0;
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

static int get_strs(const msgpack_object *o, struct state__arena *a, const char *const **out,
                    size_t *n, bool *null)
{
  *out = NULL;
  *n = 0;
  *null = true;
  if (!o || o->type == MSGPACK_OBJECT_NIL) return 0;
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > STATE_SESSION_MAX_CHECKS)
    return CC_ECORRUPT;
  uint32_t count = o->via.array.size;
  const char **v = count ? state__arena_alloc(a, count * sizeof *v) : NULL;
  for (uint32_t i = 0; i < count; i++)
    if (get_str(&o->via.array.ptr[i], a, STATE_CAT_MAX_NAME, &v[i])) return CC_ECORRUPT;
  *out = v;
  *n = count;
  *null = false;
  return 0;
}

static int get_i64(const msgpack_object *o, int64_t *out)
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

int state__mp_decode_session(const msgpack_object *o, struct state__arena *a,
                             struct state_session *out, bool with_indexes)
{
  memset(out, 0, sizeof *out);
  struct state__mp_field f[] = {
      {"ID", NULL},         {"Name", NULL},          {"Node", NULL},   {"LockDelay", NULL},
      {"Behavior", NULL},   {"TTL", NULL},           {"NodeChecks", NULL},
      {"ServiceChecks", NULL}, {"Checks", NULL},     {"CreateIndex", NULL},
      {"ModifyIndex", NULL}};
  if (state__mp_fields(o, f, sizeof f / sizeof f[0])) return CC_ECORRUPT;
  if (!f[0].val) return CC_ECORRUPT; /* every encoder writes the ID */
  if (get_str(f[0].val, a, STATE_SESSION_ID_LEN, &out->id) ||
      get_str(f[1].val, a, STATE_SESSION_MAX_NAME, &out->name) ||
      get_str(f[2].val, a, STATE_CAT_MAX_NAME, &out->node) ||
      get_i64(f[3].val, &out->lock_delay_ns) || get_str(f[4].val, a, 64, &out->behavior) ||
      get_str(f[5].val, a, 64, &out->ttl))
    return CC_ECORRUPT;
  if (get_strs(f[6].val, a, &out->node_checks, &out->n_node_checks, &out->node_checks_null))
    return CC_ECORRUPT;
  bool null;
  if (get_strs(f[8].val, a, &out->checks, &out->n_checks, &null)) return CC_ECORRUPT;
  const msgpack_object *sc = f[7].val;
  out->service_checks_null = true;
  if (sc && sc->type != MSGPACK_OBJECT_NIL) {
    if (sc->type != MSGPACK_OBJECT_ARRAY || sc->via.array.size > STATE_SESSION_MAX_CHECKS)
      return CC_ECORRUPT;
    uint32_t n = sc->via.array.size;
    struct state_session_check *v = n ? state__arena_alloc(a, n * sizeof *v) : NULL;
    for (uint32_t i = 0; i < n; i++) {
      struct state__mp_field g[] = {{"ID", NULL}, {"Namespace", NULL}};
      if (state__mp_fields(&sc->via.array.ptr[i], g, 2) ||
          get_str(g[0].val, a, STATE_CAT_MAX_NAME, &v[i].id) ||
          get_str(g[1].val, a, STATE_CAT_MAX_NAME, &v[i].ns))
        return CC_ECORRUPT;
    }
    out->service_checks = v;
    out->n_service_checks = n;
    out->service_checks_null = false;
  }
  if (with_indexes) {
    if (!f[9].val || !f[10].val || state__mp_uint(f[9].val, &out->create_index) ||
        state__mp_uint(f[10].val, &out->modify_index))
      return CC_ECORRUPT;
  }
  return 0;
}
