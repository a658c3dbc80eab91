/* snapshot.c -- the whole state store as one msgpack document, and back (format in store.h;
 * the catalog's part is written and read by catalog_mp.c).
 *
 * Raft snapshots hold this document; a restore happens on a follower that fell behind and
 * on every start, from bytes on disk or sent by the leader. So restore trusts nothing: the
 * bytes pass the bounded pre-check (mp.c), then every field is type- and range-checked, and
 * the new tables are built aside. Only when everything has passed are they swapped in, so a
 * bad snapshot leaves the store as it was. Rows must come in strictly increasing key order
 * (as the writer emits them), which also proves the keys unique. */
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "state/internal.h"

/* Version 2 added the catalog (Nodes, Services, Checks, ServiceIndexes and its table
 * indexes), version 3 the sessions (Sessions and the "sessions" table index), version 4 the
 * prepared queries (Queries and the "prepared-queries" table index), version 5 the
 * IndexOffset (cmd.c: what a restored archive added to Raft indexes); older documents still
 * restore, with what they lack empty or 0. */
#define SNAPSHOT_VERSION 5

/* ---- writing ---- */

static void pack_kv(msgpack_packer *pk, const struct state_kv *e)
{
  msgpack_pack_map(pk, 7);
  state__mp_pack_cstr(pk, "Key");
  state__mp_pack_str(pk, e->key, e->key_len);
  state__mp_pack_cstr(pk, "Value");
  state__mp_pack_bin(pk, e->value, e->value_len);
  state__mp_pack_cstr(pk, "Flags");
  msgpack_pack_uint64(pk, e->flags);
  state__mp_pack_cstr(pk, "CreateIndex");
  msgpack_pack_uint64(pk, e->create_index);
  state__mp_pack_cstr(pk, "ModifyIndex");
  msgpack_pack_uint64(pk, e->modify_index);
  state__mp_pack_cstr(pk, "LockIndex");
  msgpack_pack_uint64(pk, e->lock_index);
  state__mp_pack_cstr(pk, "Session");
  if (e->session) state__mp_pack_cstr(pk, e->session);
  else msgpack_pack_nil(pk);
}

static void pack_session(void *arg, const struct state_session *se)
{
  state__mp_pack_session(arg, se, true);
}

/* The document; without_kv leaves the KVs and Tombstones arrays empty (a transaction's copy
 * of the other tables, state__catalog_save). */
static void pack_doc(const struct state_store *s, struct buf *out, bool without_kv)
{
  msgpack_packer pk;
  state__mp_packer_init(&pk, out);
  msgpack_pack_map(&pk, 8 + STATE__CATALOG_SNAPSHOT_KEYS);
  state__mp_pack_cstr(&pk, "Version");
  msgpack_pack_uint64(&pk, SNAPSHOT_VERSION);
  state__mp_pack_cstr(&pk, "Index");
  msgpack_pack_uint64(&pk, s->applied);
  state__mp_pack_cstr(&pk, "IndexOffset");
  msgpack_pack_uint64(&pk, s->index_offset);
  struct state__catalog_indexes ix;
  state__catalog_indexes(s->cat, &ix);
  state__mp_pack_cstr(&pk, "Tables");
  msgpack_pack_map(&pk, 9);
  state__mp_pack_cstr(&pk, "kvs");
  msgpack_pack_uint64(&pk, s->kvs_index);
  state__mp_pack_cstr(&pk, "tombstones");
  msgpack_pack_uint64(&pk, s->tomb_index);
  state__mp_pack_cstr(&pk, "nodes");
  msgpack_pack_uint64(&pk, ix.nodes);
  state__mp_pack_cstr(&pk, "services");
  msgpack_pack_uint64(&pk, ix.services);
  state__mp_pack_cstr(&pk, "checks");
  msgpack_pack_uint64(&pk, ix.checks);
  state__mp_pack_cstr(&pk, "service_last_extinction");
  msgpack_pack_uint64(&pk, ix.svc_extinction);
  state__mp_pack_cstr(&pk, "node_last_extinction");
  msgpack_pack_uint64(&pk, ix.node_extinction);
  state__mp_pack_cstr(&pk, "sessions");
  msgpack_pack_uint64(&pk, state__sessions_index(s->sess));
  state__mp_pack_cstr(&pk, "prepared-queries");
  msgpack_pack_uint64(&pk, state__queries_index(s->queries));

  struct state__titer it;
  state__mp_pack_cstr(&pk, "KVs");
  msgpack_pack_array(&pk, without_kv ? 0 : s->kv_count);
  state__tree_seek(&it, without_kv ? NULL : s->kvs, NULL, 0);
  for (struct state__tnode *n; (n = state__tree_next(&it));)
    pack_kv(&pk, &((struct state__kv_row *)n)->kv);

  state__mp_pack_cstr(&pk, "Tombstones");
  msgpack_pack_array(&pk, without_kv ? 0 : s->tomb_count);
  state__tree_seek(&it, without_kv ? NULL : s->tombs, NULL, 0);
  for (struct state__tnode *n; (n = state__tree_next(&it));) {
    msgpack_pack_map(&pk, 2);
    state__mp_pack_cstr(&pk, "Key");
    state__mp_pack_str(&pk, n->key, n->key_len);
    state__mp_pack_cstr(&pk, "Index");
    msgpack_pack_uint64(&pk, ((struct state__tomb *)n)->index);
  }
  state__catalog_snapshot(s->cat, &pk);

  state__mp_pack_cstr(&pk, "Sessions");
  msgpack_pack_array(&pk, state__sessions_count(s->sess));
  state__sessions_walk(s->sess, pack_session, &pk);

  state__mp_pack_cstr(&pk, "Queries");
  state__queries_snapshot(s->queries, &pk);
}

void state_store_snapshot(const struct state_store *s, struct buf *out)
{
  pack_doc(s, out, false);
}

void state__catalog_save(const struct state_store *s, struct buf *out)
{
  pack_doc(s, out, true);
}

/* ---- reading ---- */

/* The tables being rebuilt, owned here until they are swapped into the store. */
struct restore {
  struct state__tnode *kvs, *tombs;
  size_t kv_count, tomb_count;
  uint64_t kvs_index, tomb_index, applied, index_offset;
  struct state__catalog *cat;
  struct state__sessions *sess;
  struct state__queries *queries;
};

static int get_uint(const msgpack_object *o, uint64_t *out)
{
  return o ? state__mp_uint(o, out) : CC_ECORRUPT;
}

/* A non-empty key no longer than the cap, strictly after *prev (NULL: the first). */
static int get_key(const msgpack_object *o, const char **prev, size_t *prev_len,
                   const char **key, size_t *len)
{
  if (!o || state__mp_bytes(o, false, key, len)) return CC_ECORRUPT;
  if (!*len || *len > STATE_KV_MAX_KEY) return CC_ECORRUPT;
  if (*prev && state__tree_cmp(*prev, *prev_len, *key, *len) >= 0) return CC_ECORRUPT;
  *prev = *key;
  *prev_len = *len;
  return 0;
}

static int restore_kv(struct restore *r, const msgpack_object *o, const char **prev,
                      size_t *prev_len)
{
  struct state__mp_field f[] = {{"Key", NULL},         {"Value", NULL},       {"Flags", NULL},
                                {"CreateIndex", NULL}, {"ModifyIndex", NULL}, {"LockIndex", NULL},
                                {"Session", NULL}};
  if (state__mp_fields(o, f, sizeof f / sizeof f[0])) return CC_ECORRUPT;
  const char *key, *value, *session = NULL;
  size_t key_len, value_len, session_len = 0;
  uint64_t flags, create, modify, lock;
  if (get_key(f[0].val, prev, prev_len, &key, &key_len)) return CC_ECORRUPT;
  if (!f[1].val || state__mp_bytes(f[1].val, true, &value, &value_len)) return CC_ECORRUPT;
  if (value_len > STATE_KV_MAX_VALUE) return CC_ECORRUPT;
  if (get_uint(f[2].val, &flags) || get_uint(f[3].val, &create) || get_uint(f[4].val, &modify) ||
      get_uint(f[5].val, &lock))
    return CC_ECORRUPT;
  if (!create || create > modify || modify > r->kvs_index) return CC_ECORRUPT;
  if (f[6].val && f[6].val->type != MSGPACK_OBJECT_NIL) {
    if (f[6].val->type != MSGPACK_OBJECT_STR) return CC_ECORRUPT;
    session = f[6].val->via.str.ptr;
    session_len = f[6].val->via.str.size;
    if (!session_len || session_len > STATE_KV_MAX_SESSION) return CC_ECORRUPT;
    if (memchr(session, '\0', session_len)) return CC_ECORRUPT;
  }
  struct state__kv_row *row = state__kv_row_new(key, key_len, (const uint8_t *)value, value_len,
                                                session, session_len);
  row->kv.flags = flags;
  row->kv.create_index = create;
  row->kv.modify_index = modify;
  row->kv.lock_index = lock;
  state__tree_insert(&r->kvs, &row->node);
  r->kv_count++;
  return 0;
}

static int restore_tomb(struct restore *r, const msgpack_object *o, const char **prev,
                        size_t *prev_len)
{
  struct state__mp_field f[] = {{"Key", NULL}, {"Index", NULL}};
  if (state__mp_fields(o, f, 2)) return CC_ECORRUPT;
  const char *key;
  size_t key_len;
  uint64_t index;
  if (get_key(f[0].val, prev, prev_len, &key, &key_len)) return CC_ECORRUPT;
  if (get_uint(f[1].val, &index) || !index || index > r->tomb_index) return CC_ECORRUPT;
  state__tree_insert(&r->tombs, &state__tomb_new(key, key_len, index)->node);
  r->tomb_count++;
  return 0;
}

static int restore_sessions(struct restore *r, const msgpack_object *index,
                            const msgpack_object *rows)
{
  uint64_t sindex;
  if (get_uint(index, &sindex) || sindex > r->applied) return CC_ECORRUPT;
  state__sessions_restore_index(r->sess, sindex);
  if (!rows || rows->type != MSGPACK_OBJECT_ARRAY) return CC_ECORRUPT;
  int rc = 0;
  for (uint32_t i = 0; i < rows->via.array.size && !rc; i++) {
    struct state__arena a = {0};
    struct state_session se;
    rc = state__mp_decode_session(&rows->via.array.ptr[i], &a, &se, true);
    if (!rc && (!se.create_index || se.create_index > se.modify_index || se.modify_index > sindex))
      rc = CC_ECORRUPT;
    if (!rc) rc = state__sessions_restore_row(r->sess, &se, se.create_index, se.modify_index);
    state__arena_free(&a);
  }
  return rc ? CC_ECORRUPT : 0;
}

static int restore_doc(struct restore *r, const msgpack_object *root)
{
  struct state__mp_field f[] = {{"Version", NULL},  {"Index", NULL},      {"Tables", NULL},
                                {"KVs", NULL},      {"Tombstones", NULL}, {"Nodes", NULL},
                                {"Services", NULL}, {"Checks", NULL},     {"ServiceIndexes", NULL},
                                {"Sessions", NULL}, {"Queries", NULL},    {"IndexOffset", NULL}};
  if (state__mp_fields(root, f, sizeof f / sizeof f[0])) return CC_ECORRUPT;
  uint64_t version;
  if (get_uint(f[0].val, &version) || version < 1 || version > SNAPSHOT_VERSION)
    return CC_ECORRUPT;
  if (get_uint(f[1].val, &r->applied)) return CC_ECORRUPT;
  if (version >= 5) {
    if (get_uint(f[11].val, &r->index_offset) || r->index_offset > r->applied) return CC_ECORRUPT;
  } else if (f[11].val) {
    return CC_ECORRUPT; /* the offset came with version 5 */
  }

  struct state__mp_field t[] = {{"kvs", NULL},      {"tombstones", NULL},
                                {"nodes", NULL},    {"services", NULL},
                                {"checks", NULL},   {"service_last_extinction", NULL},
                                {"node_last_extinction", NULL}, {"sessions", NULL},
                                {"prepared-queries", NULL}};
  if (!f[2].val || state__mp_fields(f[2].val, t, 9)) return CC_ECORRUPT;
  if (get_uint(t[0].val, &r->kvs_index) || get_uint(t[1].val, &r->tomb_index))
    return CC_ECORRUPT;
  if (r->kvs_index > r->applied || r->tomb_index > r->applied) return CC_ECORRUPT;
  struct state__catalog_indexes ix = {0};
  if (version >= 2) {
    if (get_uint(t[2].val, &ix.nodes) || get_uint(t[3].val, &ix.services) ||
        get_uint(t[4].val, &ix.checks) || get_uint(t[5].val, &ix.svc_extinction) ||
        get_uint(t[6].val, &ix.node_extinction))
      return CC_ECORRUPT;
    if (ix.nodes > r->applied || ix.services > r->applied || ix.checks > r->applied ||
        ix.svc_extinction > r->applied || ix.node_extinction > r->applied)
      return CC_ECORRUPT;
  } else if (f[5].val || f[6].val || f[7].val || f[8].val) {
    return CC_ECORRUPT; /* a version 1 document has no catalog */
  }
  if (state__catalog_restore(f[5].val, f[6].val, f[7].val, f[8].val, &ix, r->applied, &r->cat))
    return CC_ECORRUPT;
  r->sess = state__sessions_new();
  if (version >= 3) {
    if (restore_sessions(r, t[7].val, f[9].val)) return CC_ECORRUPT;
  } else if (t[7].val || f[9].val) {
    return CC_ECORRUPT; /* sessions came with version 3 */
  }
  r->queries = state__queries_new();
  if (version >= 4) {
    uint64_t qindex;
    if (get_uint(t[8].val, &qindex) || qindex > r->applied) return CC_ECORRUPT;
    if (state__queries_restore(r->queries, f[10].val, qindex)) return CC_ECORRUPT;
  } else if (t[8].val || f[10].val) {
    return CC_ECORRUPT; /* prepared queries came with version 4 */
  }

  const msgpack_object *kvs = f[3].val, *tombs = f[4].val;
  if (!kvs || kvs->type != MSGPACK_OBJECT_ARRAY) return CC_ECORRUPT;
  if (!tombs || tombs->type != MSGPACK_OBJECT_ARRAY) return CC_ECORRUPT;
  const char *prev = NULL;
  size_t prev_len = 0;
  for (uint32_t i = 0; i < kvs->via.array.size; i++) {
    if (restore_kv(r, &kvs->via.array.ptr[i], &prev, &prev_len)) return CC_ECORRUPT;
  }
  prev = NULL;
  for (uint32_t i = 0; i < tombs->via.array.size; i++) {
    if (restore_tomb(r, &tombs->via.array.ptr[i], &prev, &prev_len)) return CC_ECORRUPT;
  }
  return 0;
}

/* Parses and checks a whole document into r (nothing of the store is touched). On failure r
 * is freed and CC_ECORRUPT returned. */
static int parse(const void *data, size_t len, struct restore *r)
{
  if (state__mp_check(data, len)) return CC_ECORRUPT;
  msgpack_unpacked up;
  int rc = state__mp_unpack(data, len, &up);
  if (!rc) rc = restore_doc(r, &up.data);
  msgpack_unpacked_destroy(&up);
  if (rc) {
    state__kv_free_all(r->kvs);
    state__tomb_free_all(r->tombs);
    state__catalog_free(r->cat);
    state__sessions_free(r->sess);
    state__queries_free(r->queries);
    return CC_ECORRUPT;
  }
  return 0;
}

/* Swaps r's tables in (the store owns them from here), frees the old ones and fires every
 * watch. The caller sets applied and index_offset. */
static void swap_in(struct state_store *s, struct restore *r)
{
  state__queries_free(s->queries);
  s->queries = r->queries;
  state__kv_free_all(s->kvs);
  state__tomb_free_all(s->tombs);
  state__catalog_free(s->cat);
  s->cat = r->cat;
  s->kvs = r->kvs;
  s->tombs = r->tombs;
  s->kv_count = r->kv_count;
  s->tomb_count = r->tomb_count;
  s->kvs_index = r->kvs_index;
  s->tomb_index = r->tomb_index;
  struct state__sessions *old_sess = s->sess;
  s->sess = r->sess;
  state__sessions_adopt(s, old_sess);
  s->restores++;
  state__watch_all_changed(&s->w);
  state__watch_flush(&s->w);
}

int state_store_restore(struct state_store *s, const void *data, size_t len)
{
  struct restore r = {0};
  if (parse(data, len, &r)) return CC_ECORRUPT;
  s->applied = r.applied;
  s->index_offset = r.index_offset;
  swap_in(s, &r);
  return 0;
}

int state_snapshot_check(const void *data, size_t len)
{
  return state__snapshot_check(data, len);
}

int state__snapshot_check(const void *data, size_t len)
{
  struct restore r = {0};
  if (parse(data, len, &r)) return CC_ECORRUPT;
  state__kv_free_all(r.kvs);
  state__tomb_free_all(r.tombs);
  state__catalog_free(r.cat);
  state__sessions_free(r.sess);
  state__queries_free(r.queries);
  return 0;
}

int state__store_restore_at(struct state_store *s, uint64_t index, const void *data, size_t len)
{
  if (index == 0 || index < s->applied) return CC_EINVAL;
  struct restore r = {0};
  if (parse(data, len, &r)) return CC_ECORRUPT;
  /* Rows keep the indexes they were saved with. When those run past this entry's index, every
   * later Raft index is shifted so that the next write still lands above them all (Consul's
   * raft.Restore moves its log index past the snapshot's the same way). The archive's own
   * IndexOffset belonged to the cluster it came from: ignored. */
  if (r.applied >= index) {
    s->index_offset += r.applied + 1 - index;
    index = r.applied + 1;
  }
  s->applied = index;
  swap_in(s, &r);
  return 0;
}

int state__catalog_rollback(struct state_store *s, const void *data, size_t len)
{
  if (state__mp_check(data, len)) return CC_ECORRUPT;
  msgpack_unpacked up;
  struct restore r = {0};
  int rc = state__mp_unpack(data, len, &up);
  if (!rc) rc = restore_doc(&r, &up.data);
  msgpack_unpacked_destroy(&up);
  state__kv_free_all(r.kvs); /* empty in a saved copy */
  state__tomb_free_all(r.tombs);
  if (rc) {
    state__catalog_free(r.cat);
    state__sessions_free(r.sess);
    state__queries_free(r.queries);
    return CC_ECORRUPT;
  }
  state__queries_free(s->queries);
  s->queries = r.queries;
  state__catalog_free(s->cat);
  s->cat = r.cat;
  struct state__sessions *old_sess = s->sess;
  s->sess = r.sess;
  state__sessions_keep_delays(s->sess, old_sess);
  state__sessions_adopt(s, old_sess);
  return 0;
}
