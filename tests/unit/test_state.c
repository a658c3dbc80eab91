/* test_state.c -- the state store: Consul's KV verbs and index rules (ported from Consul's
 * agent/consul/state/kvs_test.go where one exists), tombstones, watches, snapshots, and the
 * ordered tree under 100k keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "state/internal.h"
#include "state/store.h"
#include "state/watch.h"

/* ---- helpers ---- */

static bool kv_op(struct state_store *s, uint64_t idx, enum state_kv_verb verb, const char *key,
                  const char *value, uint64_t cas, const char *session)
{
  struct state_kv_op op = {
      .verb = verb,
      .key = key,
      .key_len = key ? strlen(key) : 0,
      .value = (const uint8_t *)value,
      .value_len = value ? strlen(value) : 0,
      .cas = cas,
      .session = session,
  };
  bool ok = false;
  assert_int_equal(state_kv_apply(s, idx, &op, &ok), 0);
  return ok;
}

/* Locks need a live session (kvsLockTxn): registers node "n1" if needed and creates a
 * session on it without checks, both at idx. */
static void mk_session(struct state_store *s, uint64_t idx, const char *id)
{
  if (!state_node_get(s, "n1")) {
    struct state_register reg = {.node = "n1", .address = "127.0.0.1"};
    assert_int_equal(state_catalog_register(s, idx, &reg, NULL, 0), 0);
  }
  struct state_session se = {.id = id, .node = "n1"};
  assert_int_equal(state_session_create(s, idx, &se, NULL, 0), 0);
}

static void set_key(struct state_store *s, uint64_t idx, const char *key, const char *value)
{
  assert_true(kv_op(s, idx, STATE_KV_SET, key, value, 0, NULL));
}

static const struct state_kv *get(struct state_store *s, const char *key, uint64_t *idx)
{
  return state_kv_get(s, key, strlen(key), idx);
}

static uint64_t list_idx(struct state_store *s, const char *prefix)
{
  return state_kv_list(s, prefix, strlen(prefix), NULL, NULL);
}

static int count_fn(const struct state_kv *e, void *arg)
{
  (void)e;
  (*(int *)arg)++;
  return 0;
}

static int stop_fn(const struct state_kv *e, void *arg)
{
  (void)e;
  (*(int *)arg)++;
  return 1;
}

static int list_count(struct state_store *s, const char *prefix)
{
  int n = 0;
  state_kv_list(s, prefix, strlen(prefix), count_fn, &n);
  return n;
}

/* ---- KV verbs ---- */

static void test_set_get(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  uint64_t idx = 99;
  assert_null(get(s, "foo", &idx));
  assert_int_equal(idx, 1); /* table index 0 is answered as 1 */
  assert_int_equal(state_store_index(s), 0);

  set_key(s, 1, "foo", "bar");
  const struct state_kv *e = get(s, "foo", &idx);
  assert_non_null(e);
  assert_int_equal(idx, 1);
  assert_int_equal(e->create_index, 1);
  assert_int_equal(e->modify_index, 1);
  assert_int_equal(e->lock_index, 0);
  assert_int_equal(e->value_len, 3);
  assert_memory_equal(e->value, "bar", 4); /* NUL after the value */
  assert_string_equal(e->key, "foo");
  assert_null(e->session);

  set_key(s, 2, "foo", "baz");
  e = get(s, "foo", &idx);
  assert_int_equal(e->create_index, 1);
  assert_int_equal(e->modify_index, 2);
  assert_int_equal(idx, 2);

  /* A plain SET cannot set a session. */
  assert_true(kv_op(s, 3, STATE_KV_SET, "foo", "zoo", 0, "nope"));
  e = get(s, "foo", &idx);
  assert_null(e->session);
  assert_int_equal(e->modify_index, 3);

  set_key(s, 8, "other", "yup");
  assert_null(get(s, "nope", &idx));
  assert_int_equal(idx, 8);
  assert_int_equal(state_table_index(s, "kvs"), 8);
  assert_int_equal(state_table_index(s, "nodes"), 0);
  assert_int_equal(state_kv_count(s), 2);

  /* Same contents again: nothing changes (Consul's DirEntry.Equal skip). */
  set_key(s, 9, "other", "yup");
  e = get(s, "other", &idx);
  assert_int_equal(e->modify_index, 8);
  assert_int_equal(state_table_index(s, "kvs"), 8);
  /* Flags count as a change. */
  struct state_kv_op op = {.verb = STATE_KV_SET, .key = "other", .key_len = 5,
                           .value = (const uint8_t *)"yup", .value_len = 3, .flags = 42};
  bool ok;
  assert_int_equal(state_kv_apply(s, 10, &op, &ok), 0);
  assert_true(ok);
  e = get(s, "other", &idx);
  assert_int_equal(e->flags, 42);
  assert_int_equal(e->modify_index, 10);

  /* Empty value, binary key with a NUL inside. */
  struct state_kv_op bin = {.verb = STATE_KV_SET, .key = "a\0b", .key_len = 3};
  assert_int_equal(state_kv_apply(s, 11, &bin, &ok), 0);
  e = state_kv_get(s, "a\0b", 3, &idx);
  assert_non_null(e);
  assert_int_equal(e->value_len, 0);
  assert_int_equal(e->value[0], 0);
  assert_null(state_kv_get(s, "a", 1, NULL));
  state_store_free(s);
}

static void test_cas(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  /* cas 0 on a missing key creates it */
  assert_true(kv_op(s, 1, STATE_KV_CAS, "foo", "bar", 0, NULL));
  uint64_t idx;
  const struct state_kv *e = get(s, "foo", &idx);
  assert_int_equal(e->create_index, 1);
  /* cas 0 on an existing key fails and changes nothing */
  assert_false(kv_op(s, 2, STATE_KV_CAS, "foo", "x", 0, NULL));
  assert_int_equal(state_table_index(s, "kvs"), 1);
  assert_string_equal((const char *)get(s, "foo", NULL)->value, "bar");
  /* wrong index fails */
  assert_false(kv_op(s, 3, STATE_KV_CAS, "foo", "x", 2, NULL));
  /* cas N on a missing key fails */
  assert_false(kv_op(s, 4, STATE_KV_CAS, "nope", "x", 1, NULL));
  assert_null(get(s, "nope", NULL));
  /* right index works */
  assert_true(kv_op(s, 5, STATE_KV_CAS, "foo", "x", 1, NULL));
  e = get(s, "foo", &idx);
  assert_int_equal(e->create_index, 1);
  assert_int_equal(e->modify_index, 5);
  assert_int_equal(idx, 5);
  assert_string_equal((const char *)e->value, "x");
  state_store_free(s);
}

/* Consul's TestStateStore_KVSDelete. */
static void test_delete(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  set_key(s, 1, "foo", "foo");
  set_key(s, 2, "foo/bar", "bar");
  assert_true(kv_op(s, 3, STATE_KV_DELETE, "foo", NULL, 0, NULL));
  assert_null(get(s, "foo", NULL));
  assert_non_null(get(s, "foo/bar", NULL));
  assert_int_equal(state_table_index(s, "kvs"), 3);
  assert_int_equal(state_table_index(s, "tombstones"), 3);
  assert_int_equal(state_tombstone_count(s), 1);
  assert_int_equal(list_idx(s, "foo"), 3);
  assert_int_equal(state_tombstone_reap(s, 4, 3), 0);
  assert_int_equal(state_tombstone_count(s), 0);
  assert_int_equal(list_idx(s, "foo"), 2);
  /* Deleting a missing key is an idempotent success that changes nothing. */
  assert_true(kv_op(s, 5, STATE_KV_DELETE, "foo", NULL, 0, NULL));
  assert_int_equal(state_table_index(s, "kvs"), 3);
  assert_int_equal(state_tombstone_count(s), 0);
  state_store_free(s);
}

/* Consul's TestStateStore_KVSDeleteCAS. */
static void test_delete_cas(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  set_key(s, 1, "foo", "foo");
  set_key(s, 2, "bar", "bar");
  set_key(s, 3, "baz", "baz");
  assert_false(kv_op(s, 4, STATE_KV_DELETE_CAS, "bar", NULL, 1, NULL));
  uint64_t idx;
  assert_non_null(get(s, "foo", &idx));
  assert_non_null(get(s, "bar", &idx));
  assert_int_equal(state_table_index(s, "kvs"), 3);
  assert_true(kv_op(s, 4, STATE_KV_DELETE_CAS, "bar", NULL, 2, NULL));
  assert_null(get(s, "bar", &idx));
  assert_int_equal(idx, 4);
  set_key(s, 5, "some/other/key", "baz");
  assert_int_equal(list_idx(s, "bar"), 4);
  assert_int_equal(state_tombstone_reap(s, 6, 4), 0);
  assert_int_equal(list_idx(s, "bar"), 5);
  /* A CAS delete of a missing key is a success that changes nothing. */
  assert_true(kv_op(s, 7, STATE_KV_DELETE_CAS, "bar", NULL, 2, NULL));
  assert_int_equal(state_table_index(s, "kvs"), 5);
  state_store_free(s);
}

static void test_delete_tree(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  set_key(s, 1, "foo/bar", "bar");
  set_key(s, 2, "foo/bar/baz", "baz");
  set_key(s, 3, "foo/bar/zip", "zip");
  set_key(s, 4, "foo/zorp", "zorp");
  set_key(s, 5, "foo", "foo");
  assert_true(kv_op(s, 6, STATE_KV_DELETE_TREE, "foo/bar", NULL, 0, NULL));
  assert_int_equal(state_kv_count(s), 2);
  assert_null(get(s, "foo/bar", NULL));
  assert_null(get(s, "foo/bar/zip", NULL));
  assert_non_null(get(s, "foo/zorp", NULL));
  assert_int_equal(state_table_index(s, "kvs"), 6);
  assert_int_equal(state_table_index(s, "tombstones"), 6);
  /* One tombstone, at the prefix (kvsDeleteTreeTxn). */
  assert_int_equal(state_tombstone_count(s), 1);
  assert_int_equal(list_idx(s, "foo/bar"), 6);
  assert_int_equal(list_idx(s, "foo/"), 6);
  assert_int_equal(list_idx(s, "foo/bar/baz"), 6); /* no rows, no tombstone: table index */
  /* Nothing under the prefix: no change at all. */
  assert_true(kv_op(s, 7, STATE_KV_DELETE_TREE, "nope", NULL, 0, NULL));
  assert_int_equal(state_table_index(s, "kvs"), 6);
  assert_int_equal(state_tombstone_count(s), 1);
  /* The empty prefix deletes everything and leaves no tombstone. */
  assert_true(kv_op(s, 8, STATE_KV_DELETE_TREE, "", NULL, 0, NULL));
  assert_int_equal(state_kv_count(s), 0);
  assert_int_equal(state_tombstone_count(s), 1);
  assert_int_equal(state_table_index(s, "kvs"), 8);
  assert_int_equal(list_idx(s, ""), 8);
  state_store_free(s);
}

static void test_lock_unlock(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  const char *s1 = "11111111-1111-1111-1111-111111111111";
  const char *s2 = "22222222-2222-2222-2222-222222222222";
  uint64_t idx;
  mk_session(s, 1, s1);
  mk_session(s, 1, s2);
  /* Lock a new key. */
  assert_true(kv_op(s, 1, STATE_KV_LOCK, "lock", "a", 0, s1));
  const struct state_kv *e = get(s, "lock", &idx);
  assert_int_equal(e->lock_index, 1);
  assert_int_equal(e->create_index, 1);
  assert_int_equal(e->modify_index, 1);
  assert_string_equal(e->session, s1);
  /* Re-lock by the holder updates the value and keeps LockIndex. */
  assert_true(kv_op(s, 2, STATE_KV_LOCK, "lock", "b", 0, s1));
  e = get(s, "lock", &idx);
  assert_int_equal(e->lock_index, 1);
  assert_int_equal(e->modify_index, 2);
  assert_string_equal((const char *)e->value, "b");
  /* Another session cannot take it. */
  assert_false(kv_op(s, 3, STATE_KV_LOCK, "lock", "c", 0, s2));
  assert_int_equal(get(s, "lock", NULL)->modify_index, 2);
  /* A plain SET keeps session and LockIndex. */
  set_key(s, 4, "lock", "d");
  e = get(s, "lock", NULL);
  assert_string_equal(e->session, s1);
  assert_int_equal(e->lock_index, 1);
  assert_int_equal(e->modify_index, 4);
  /* Only the holder can unlock. */
  assert_false(kv_op(s, 5, STATE_KV_UNLOCK, "lock", "e", 0, s2));
  assert_true(kv_op(s, 6, STATE_KV_UNLOCK, "lock", "f", 0, s1));
  e = get(s, "lock", NULL);
  assert_null(e->session);
  assert_int_equal(e->lock_index, 1);
  assert_int_equal(e->modify_index, 6);
  assert_int_equal(e->create_index, 1);
  assert_string_equal((const char *)e->value, "f");
  /* Unlocking a free key fails; so does unlocking a missing key. */
  assert_false(kv_op(s, 7, STATE_KV_UNLOCK, "lock", "g", 0, s1));
  assert_false(kv_op(s, 7, STATE_KV_UNLOCK, "missing", "g", 0, s1));
  assert_null(get(s, "missing", NULL));
  /* The next acquisition bumps LockIndex. */
  assert_true(kv_op(s, 8, STATE_KV_LOCK, "lock", "h", 0, s2));
  e = get(s, "lock", NULL);
  assert_int_equal(e->lock_index, 2);
  assert_string_equal(e->session, s2);
  /* A CAS keeps the session too. */
  assert_true(kv_op(s, 9, STATE_KV_CAS, "lock", "i", 8, NULL));
  assert_string_equal(get(s, "lock", NULL)->session, s2);
  /* LOCK/UNLOCK need a session. */
  bool ok = true;
  struct state_kv_op op = {.verb = STATE_KV_LOCK, .key = "k", .key_len = 1};
  assert_int_equal(state_kv_apply(s, 10, &op, &ok), CC_EINVAL);
  assert_false(ok);
  op.session = "";
  assert_int_equal(state_kv_apply(s, 10, &op, &ok), CC_EINVAL);
  op.verb = STATE_KV_UNLOCK;
  assert_int_equal(state_kv_apply(s, 10, &op, &ok), CC_EINVAL);
  assert_null(get(s, "k", NULL));
  state_store_free(s);
}

static void test_invalid_ops(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  set_key(s, 5, "a", "1");
  bool ok = true;
  struct state_kv_op op = {.verb = STATE_KV_SET, .key = "b", .key_len = 1};
  assert_int_equal(state_kv_apply(s, 0, &op, &ok), CC_EINVAL);
  assert_int_equal(state_kv_apply(s, 4, &op, &ok), CC_EINVAL); /* backwards */
  assert_false(ok);
  assert_int_equal(state_kv_apply(s, 5, &op, &ok), 0);          /* same index: a txn */
  assert_true(ok);
  op.key_len = 0;
  assert_int_equal(state_kv_apply(s, 6, &op, &ok), CC_EINVAL); /* empty key */
  op.key = NULL;
  op.key_len = 3;
  assert_int_equal(state_kv_apply(s, 6, &op, &ok), CC_EINVAL);
  char *big = calloc(1, STATE_KV_MAX_KEY + 1);
  memset(big, 'k', STATE_KV_MAX_KEY + 1);
  op.key = big;
  op.key_len = STATE_KV_MAX_KEY + 1;
  assert_int_equal(state_kv_apply(s, 6, &op, &ok), CC_EINVAL);
  op.key_len = STATE_KV_MAX_KEY; /* the cap itself is fine */
  assert_int_equal(state_kv_apply(s, 6, &op, &ok), 0);
  assert_non_null(state_kv_get(s, big, STATE_KV_MAX_KEY, NULL));
  free(big);
  op.key = "c";
  op.key_len = 1;
  op.value = NULL;
  op.value_len = 1;
  assert_int_equal(state_kv_apply(s, 7, &op, &ok), CC_EINVAL);
  op.value_len = 0;
  op.verb = (enum state_kv_verb)99;
  assert_int_equal(state_kv_apply(s, 7, &op, &ok), CC_EINVAL);
  assert_int_equal(state_kv_apply(s, 7, NULL, &ok), CC_EINVAL);
  assert_int_equal(state_tombstone_reap(s, 5, 1), CC_EINVAL);
  assert_int_equal(state_kv_count(s), 3);
  assert_int_equal(state_table_index(s, "kvs"), 6);
  state_store_free(s);
}

/* ---- index rules: Consul's TestStateStore_KVSList / _KVSListKeys / _ReapTombstones ---- */

static void test_list_index(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  assert_int_equal(list_idx(s, ""), 1); /* 0, answered as 1 */
  assert_int_equal(list_count(s, ""), 0);
  set_key(s, 1, "foo", "foo");
  set_key(s, 2, "foo/bar", "bar");
  set_key(s, 3, "foo/bar/zip", "zip");
  set_key(s, 4, "foo/bar/zip/zorp", "zorp");
  set_key(s, 5, "foo/bar/baz", "baz");
  assert_int_equal(list_idx(s, ""), 5);
  assert_int_equal(list_count(s, ""), 5);
  assert_int_equal(list_idx(s, "foo/bar/zip"), 4);
  assert_int_equal(list_count(s, "foo/bar/zip"), 2);
  assert_true(kv_op(s, 6, STATE_KV_DELETE, "foo/bar/baz", NULL, 0, NULL));
  assert_int_equal(list_idx(s, "foo/bar/baz"), 6);
  set_key(s, 7, "some/other/key", "");
  assert_int_equal(list_idx(s, "foo/bar/baz"), 6);
  assert_int_equal(state_tombstone_reap(s, 8, 6), 0);
  assert_int_equal(list_idx(s, "foo/bar/baz"), 7);
  assert_int_equal(list_idx(s, ""), 7);
  /* Stopping early still answers the index of every row under the prefix. */
  int seen = 0;
  assert_int_equal(state_kv_list(s, "foo", 3, stop_fn, &seen), 4);
  assert_int_equal(seen, 1);
  /* A prefix with nothing, ever: the table index. */
  assert_int_equal(list_idx(s, "zzz"), 7);
  state_store_free(s);
}

struct keys_out {
  char keys[16][32];
  int n;
  int stop_after;
};

static int keys_fn(const char *key, size_t len, void *arg)
{
  struct keys_out *o = arg;
  assert_true(len < 32);
  memcpy(o->keys[o->n], key, len);
  o->keys[o->n][len] = '\0';
  o->n++;
  return o->stop_after && o->n >= o->stop_after;
}

static uint64_t keys(struct state_store *s, const char *prefix, const char *sep,
                     struct keys_out *o)
{
  memset(o, 0, sizeof *o);
  return state_kv_keys(s, prefix, strlen(prefix), sep, strlen(sep), keys_fn, o);
}

static void test_keys(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct keys_out o;
  assert_int_equal(keys(s, "", "", &o), 1);
  assert_int_equal(o.n, 0);
  set_key(s, 1, "foo", "foo");
  set_key(s, 2, "foo/bar", "bar");
  set_key(s, 3, "foo/bar/baz", "baz");
  set_key(s, 4, "foo/bar/zip", "zip");
  set_key(s, 5, "foo/bar/zip/zam", "zam");
  set_key(s, 6, "foo/bar/zip/zorp", "zorp");
  set_key(s, 7, "some/other/prefix", "nack");
  assert_int_equal(keys(s, "", "", &o), 7);
  assert_int_equal(o.n, 7);
  assert_int_equal(keys(s, "foo/bar/", "/", &o), 6);
  assert_int_equal(o.n, 3);
  assert_string_equal(o.keys[0], "foo/bar/baz");
  assert_string_equal(o.keys[1], "foo/bar/zip");
  assert_string_equal(o.keys[2], "foo/bar/zip/");
  assert_int_equal(keys(s, "foo", "", &o), 6);
  assert_int_equal(o.n, 6);
  assert_string_equal(o.keys[5], "foo/bar/zip/zorp");
  /* Top level with a separator. */
  assert_int_equal(keys(s, "", "/", &o), 7);
  assert_int_equal(o.n, 3);
  assert_string_equal(o.keys[0], "foo");
  assert_string_equal(o.keys[1], "foo/");
  assert_string_equal(o.keys[2], "some/");
  /* A multi-byte separator. */
  set_key(s, 8, "x--a--b", "");
  set_key(s, 9, "x--a--c", "");
  set_key(s, 10, "x--a-d", "");
  assert_int_equal(keys(s, "x", "--", &o), 10);
  assert_int_equal(o.n, 1);
  assert_string_equal(o.keys[0], "x--");
  assert_int_equal(keys(s, "x--", "--", &o), 10);
  assert_int_equal(o.n, 2);
  assert_string_equal(o.keys[0], "x--a--");
  assert_string_equal(o.keys[1], "x--a-d");
  /* Stopping early still answers the index of the whole prefix. */
  memset(&o, 0, sizeof o);
  o.stop_after = 1;
  assert_int_equal(state_kv_keys(s, "foo", 3, "", 0, keys_fn, &o), 6);
  assert_int_equal(o.n, 1);
  /* Tombstones count, as in Consul's test. */
  assert_true(kv_op(s, 11, STATE_KV_DELETE, "foo/bar/baz", NULL, 0, NULL));
  assert_int_equal(keys(s, "foo/bar/baz", "", &o), 11);
  set_key(s, 12, "some/other/key", "");
  assert_int_equal(keys(s, "foo/bar/baz", "", &o), 11);
  assert_int_equal(state_tombstone_reap(s, 13, 11), 0);
  assert_int_equal(keys(s, "foo/bar/baz", "", &o), 12);
  assert_int_equal(keys(s, "", "", &o), 12);
  state_store_free(s);
}

static void test_reap(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  set_key(s, 1, "foo", "foo");
  set_key(s, 2, "foo/bar", "bar");
  set_key(s, 3, "foo/baz", "bar");
  set_key(s, 4, "foo/moo", "bar");
  set_key(s, 5, "foo/zoo", "bar");
  assert_true(kv_op(s, 6, STATE_KV_DELETE, "foo/baz", NULL, 0, NULL));
  assert_true(kv_op(s, 7, STATE_KV_DELETE, "foo/moo", NULL, 0, NULL));
  assert_int_equal(list_idx(s, "foo/"), 7);
  assert_int_equal(state_tombstone_reap(s, 8, 6), 0);
  assert_int_equal(state_tombstone_count(s), 1);
  assert_int_equal(list_idx(s, "foo/"), 7);
  assert_int_equal(state_tombstone_reap(s, 9, 7), 0);
  assert_int_equal(state_tombstone_count(s), 0);
  assert_int_equal(list_idx(s, "foo/"), 5); /* slides back, as in Consul */
  /* Reaping moves no table index. */
  assert_int_equal(state_table_index(s, "tombstones"), 7);
  assert_int_equal(state_table_index(s, "kvs"), 7);
  state_store_free(s);
}

static void test_tombstone_dropped_on_set(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  set_key(s, 1, "a/b", "1");
  assert_true(kv_op(s, 2, STATE_KV_DELETE, "a/b", NULL, 0, NULL));
  assert_int_equal(state_tombstone_count(s), 1);
  set_key(s, 3, "a/b", "2");
  assert_int_equal(state_tombstone_count(s), 0);
  const struct state_kv *e = get(s, "a/b", NULL);
  assert_int_equal(e->create_index, 3);
  assert_int_equal(list_idx(s, "a/"), 3);
  state_store_free(s);
}

/* ---- watches ---- */

static int fired[16];

static void fire_fn(void *arg) { fired[(intptr_t)arg]++; }

static struct state_watch *watch(struct state_store *s, enum state_watch_kind kind,
                                 const char *key, int slot)
{
  return state_watch_add(s, kind, key, strlen(key), fire_fn, (void *)(intptr_t)slot);
}

static void test_watch_key_prefix_table(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  memset(fired, 0, sizeof fired);
  watch(s, STATE_WATCH_KV_KEY, "foo/bar", 0);
  watch(s, STATE_WATCH_KV_KEY, "foo", 1);
  watch(s, STATE_WATCH_KV_PREFIX, "foo/", 2);
  watch(s, STATE_WATCH_KV_PREFIX, "", 3);
  watch(s, STATE_WATCH_KV_PREFIX, "foo/bar/baz", 4);
  watch(s, STATE_WATCH_TABLE, "kvs", 5);
  watch(s, STATE_WATCH_TABLE, "tombstones", 6);
  watch(s, STATE_WATCH_KV_PREFIX, "f", 7);
  assert_int_equal(state_watch_count(s), 8);

  set_key(s, 1, "foo/bar", "x");
  assert_int_equal(fired[0], 1);
  assert_int_equal(fired[1], 0);
  assert_int_equal(fired[2], 1);
  assert_int_equal(fired[3], 1);
  assert_int_equal(fired[4], 0);
  assert_int_equal(fired[5], 1);
  assert_int_equal(fired[6], 0);
  assert_int_equal(fired[7], 1);
  assert_int_equal(state_watch_count(s), 3);

  /* One-shot: the next write does not fire them again. */
  set_key(s, 2, "foo/bar", "y");
  assert_int_equal(fired[0], 1);
  assert_int_equal(fired[2], 1);

  /* A delete fires the tombstones table too. */
  watch(s, STATE_WATCH_KV_KEY, "foo/bar", 0);
  assert_true(kv_op(s, 3, STATE_KV_DELETE, "foo/bar", NULL, 0, NULL));
  assert_int_equal(fired[0], 2);
  assert_int_equal(fired[6], 1);
  assert_int_equal(fired[1], 0);
  assert_int_equal(fired[4], 0);
  assert_int_equal(state_watch_count(s), 2);
  state_store_free(s); /* frees the remaining watches */
}

static void test_watch_no_fire_without_change(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  memset(fired, 0, sizeof fired);
  set_key(s, 1, "k", "v");
  watch(s, STATE_WATCH_KV_KEY, "k", 0);
  watch(s, STATE_WATCH_KV_PREFIX, "", 1);
  watch(s, STATE_WATCH_TABLE, "kvs", 2);
  assert_false(kv_op(s, 2, STATE_KV_CAS, "k", "w", 7, NULL));   /* failed CAS */
  assert_false(kv_op(s, 3, STATE_KV_CAS, "k", "w", 0, NULL));
  assert_false(kv_op(s, 4, STATE_KV_DELETE_CAS, "k", NULL, 9, NULL));
  assert_true(kv_op(s, 5, STATE_KV_DELETE, "nope", NULL, 0, NULL));
  assert_true(kv_op(s, 6, STATE_KV_DELETE_TREE, "zz", NULL, 0, NULL));
  set_key(s, 7, "k", "v"); /* same contents */
  assert_false(kv_op(s, 8, STATE_KV_UNLOCK, "k", "v", 0, "s1"));
  assert_int_equal(state_tombstone_reap(s, 9, 100), 0); /* nothing to reap */
  assert_int_equal(fired[0] + fired[1] + fired[2], 0);
  assert_int_equal(state_watch_count(s), 3);
  set_key(s, 10, "k", "changed");
  assert_int_equal(fired[0] + fired[1] + fired[2], 3);
  assert_int_equal(state_watch_count(s), 0);
  state_store_free(s);
}

static void test_watch_delete_tree(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  memset(fired, 0, sizeof fired);
  set_key(s, 1, "app/a", "1");
  set_key(s, 2, "app/db/x", "2");
  set_key(s, 3, "other", "3");
  watch(s, STATE_WATCH_KV_PREFIX, "", 0);          /* prefix of the tree prefix */
  watch(s, STATE_WATCH_KV_PREFIX, "ap", 1);        /* prefix of the tree prefix */
  watch(s, STATE_WATCH_KV_PREFIX, "app/", 2);      /* the tree prefix itself */
  watch(s, STATE_WATCH_KV_PREFIX, "app/db/", 3);   /* under it, lost a row */
  watch(s, STATE_WATCH_KV_KEY, "app/a", 4);        /* under it, deleted */
  watch(s, STATE_WATCH_KV_KEY, "app/none", 5);     /* under it, never existed */
  watch(s, STATE_WATCH_KV_PREFIX, "app/cache/", 6); /* under it, held nothing */
  watch(s, STATE_WATCH_KV_KEY, "other", 7);        /* outside */
  watch(s, STATE_WATCH_KV_PREFIX, "o", 8);         /* outside */
  watch(s, STATE_WATCH_TABLE, "tombstones", 9);
  assert_true(kv_op(s, 4, STATE_KV_DELETE_TREE, "app/", NULL, 0, NULL));
  int want[10] = {1, 1, 1, 1, 1, 0, 0, 0, 0, 1};
  for (int i = 0; i < 10; i++) assert_int_equal(fired[i], want[i]);
  assert_int_equal(state_watch_count(s), 4);
  state_store_free(s);
}

static struct state_watch *victims[4];
static struct state_store *cb_store;

static void cancel_others_fn(void *arg)
{
  fired[(intptr_t)arg]++;
  for (int i = 0; i < 4; i++) {
    if (victims[i]) state_watch_cancel(victims[i]);
    victims[i] = NULL;
  }
  /* Adding a watch from a callback is safe and does not fire for this write. */
  watch(cb_store, STATE_WATCH_KV_KEY, "k", 9);
}

static void test_watch_cancel(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  cb_store = s;
  memset(fired, 0, sizeof fired);
  /* Plain cancel, O(1); cancelling the last watch of a key drops the key's list. */
  struct state_watch *w = watch(s, STATE_WATCH_KV_KEY, "k", 0);
  struct state_watch *p = watch(s, STATE_WATCH_KV_PREFIX, "k", 1);
  state_watch_cancel(w);
  state_watch_cancel(p);
  state_watch_cancel(NULL);
  assert_int_equal(state_watch_count(s), 0);
  assert_int_equal(s->w.nplens, 0);
  assert_int_equal(map_count(&s->w.keys), 0);
  assert_int_equal(map_count(&s->w.prefixes), 0);
  set_key(s, 1, "k", "v");
  assert_int_equal(fired[0] + fired[1], 0);

  /* A callback cancels watches that fired in the same write (pending) and one that did
   * not; the pending ones must then not run. */
  state_watch_add(s, STATE_WATCH_KV_KEY, "k", 1, cancel_others_fn, (void *)(intptr_t)2);
  victims[0] = watch(s, STATE_WATCH_KV_KEY, "k", 3);
  victims[1] = watch(s, STATE_WATCH_KV_PREFIX, "", 4);
  victims[2] = watch(s, STATE_WATCH_TABLE, "kvs", 5);
  victims[3] = watch(s, STATE_WATCH_KV_KEY, "unrelated", 6);
  set_key(s, 2, "k", "w");
  assert_int_equal(fired[2], 1);
  assert_int_equal(fired[3] + fired[4] + fired[5] + fired[6], 0);
  assert_int_equal(fired[9], 0);
  assert_int_equal(state_watch_count(s), 1); /* the one the callback added */
  set_key(s, 3, "k", "x");
  assert_int_equal(fired[9], 1);
  assert_int_equal(state_watch_count(s), 0);
  state_store_free(s);
}

static void test_watch_many_on_one_key(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  memset(fired, 0, sizeof fired);
  enum { N = 50000 };
  struct state_watch **ws = malloc(N * sizeof *ws);
  for (int i = 0; i < N; i++) ws[i] = watch(s, STATE_WATCH_KV_PREFIX, "svc/", i & 1);
  for (int i = 0; i < N; i += 4) state_watch_cancel(ws[i]);
  assert_int_equal(state_watch_count(s), N - N / 4);
  set_key(s, 1, "svc/web", "1");
  assert_int_equal(fired[0] + fired[1], N - N / 4);
  assert_int_equal(state_watch_count(s), 0);
  free(ws);
  state_store_free(s);
}

/* ---- snapshots ---- */

static void populate(struct state_store *s)
{
  set_key(s, 1, "a", "1");
  set_key(s, 2, "a/b", "2");
  mk_session(s, 3, "33333333-3333-3333-3333-333333333333");
  assert_true(kv_op(s, 3, STATE_KV_LOCK, "lock", "held", 0, "33333333-3333-3333-3333-333333333333"));
  struct state_kv_op op = {.verb = STATE_KV_SET, .key = "flags", .key_len = 5,
                           .value = (const uint8_t *)"\0\1\2", .value_len = 3, .flags = 1ull << 63};
  assert_int_equal(state_kv_apply(s, 4, &op, NULL), 0);
  set_key(s, 5, "gone", "x");
  assert_true(kv_op(s, 6, STATE_KV_DELETE, "gone", NULL, 0, NULL));
  set_key(s, 7, "tree/x", "x");
  assert_true(kv_op(s, 8, STATE_KV_DELETE_TREE, "tree/", NULL, 0, NULL));
  set_key(s, 9, "a", "1b");
  assert_int_equal(state_tombstone_reap(s, 10, 0), 0);
}

struct collect {
  struct buf b;
};

static int dump_fn(const struct state_kv *e, void *arg)
{
  struct buf *b = arg;
  buf_printf(b, "%.*s|", (int)e->key_len, e->key);
  buf_append(b, e->value, e->value_len);
  buf_printf(b, "|%llu|%llu|%llu|%llu|%s\n", (unsigned long long)e->flags,
             (unsigned long long)e->create_index, (unsigned long long)e->modify_index,
             (unsigned long long)e->lock_index, e->session ? e->session : "-");
  return 0;
}

/* With CONCORD_SNAPSHOT_CORPUS=<dir>, writes b there as a fuzzer seed (that is how
 * fuzz/corpus/snapshot/ was made). */
static void corpus_save(const char *name, const struct buf *b)
{
  const char *dir = getenv("CONCORD_SNAPSHOT_CORPUS");
  if (!dir) return;
  char path[512];
  snprintf(path, sizeof path, "%s/seed-%s", dir, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b->data, 1, b->len, f), b->len);
  fclose(f);
}

static void test_snapshot_roundtrip(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct buf snap = BUF_INIT, snap2 = BUF_INIT, d1 = BUF_INIT, d2 = BUF_INIT;
  state_store_snapshot(s, &snap);
  corpus_save("empty", &snap);
  buf_reset(&snap);
  populate(s);
  state_store_snapshot(s, &snap);
  corpus_save("populated", &snap);

  struct state_store *r = state_store_new();
  set_key(r, 100, "stale", "x"); /* replaced by the restore */
  memset(fired, 0, sizeof fired);
  watch(r, STATE_WATCH_KV_KEY, "nothing-here", 0);
  watch(r, STATE_WATCH_KV_PREFIX, "zz", 1);
  watch(r, STATE_WATCH_TABLE, "nodes", 2);
  assert_int_equal(state_store_restore(r, snap.data, snap.len), 0);
  assert_int_equal(fired[0] + fired[1] + fired[2], 3); /* every watch fires */
  assert_int_equal(state_watch_count(r), 0);
  assert_int_equal(r->w.nplens, 0);

  assert_null(get(r, "stale", NULL));
  assert_int_equal(state_kv_count(r), state_kv_count(s));
  assert_int_equal(state_tombstone_count(r), state_tombstone_count(s));
  assert_int_equal(state_tombstone_count(r), 2);
  assert_int_equal(state_table_index(r, "kvs"), state_table_index(s, "kvs"));
  assert_int_equal(state_table_index(r, "tombstones"), state_table_index(s, "tombstones"));
  assert_int_equal(list_idx(r, "gone"), 6);
  assert_int_equal(list_idx(r, "tree/"), 8);
  state_kv_list(s, "", 0, dump_fn, &d1);
  state_kv_list(r, "", 0, dump_fn, &d2);
  assert_int_equal(d1.len, d2.len);
  assert_memory_equal(d1.data, d2.data, d1.len);
  state_store_snapshot(r, &snap2);
  assert_int_equal(snap.len, snap2.len);
  assert_memory_equal(snap.data, snap2.data, snap.len);
  /* The restored store keeps working, and its applied index came along. */
  struct state_kv_op op = {.verb = STATE_KV_SET, .key = "x", .key_len = 1};
  assert_int_equal(state_kv_apply(r, 9, &op, NULL), CC_EINVAL);
  assert_int_equal(state_kv_apply(r, 11, &op, NULL), 0);
  buf_free(&snap);
  buf_free(&snap2);
  buf_free(&d1);
  buf_free(&d2);
  state_store_free(r);
  state_store_free(s);
}

/* A hand-built snapshot: one row and one tombstone, with one thing wrong per variant. */
enum snap_bad {
  BAD_NONE, BAD_VERSION, BAD_NO_TABLES, BAD_ORDER, BAD_DUP, BAD_CREATE_GT_MODIFY,
  BAD_MODIFY_GT_TABLE, BAD_KEY_TYPE, BAD_SESSION_NUL, BAD_TOMB_INDEX, BAD_APPLIED,
  BAD_TRAILING, BAD_EMPTY_KEY, BAD_VALUE_TYPE, BAD_KVS_NOT_ARRAY, BAD_DUP_FIELD,
  BAD_NEGATIVE, BAD_MISSING_FLAGS, BAD_CREATE_ZERO, BAD_ROOT_ARRAY, BAD_COUNT,
};

static int pack_write(void *data, const char *p, size_t len)
{
  buf_append(data, p, len);
  return 0;
}

static void pstr(msgpack_packer *pk, const char *s)
{
  msgpack_pack_str(pk, strlen(s));
  msgpack_pack_str_body(pk, s, strlen(s));
}

static void prow(msgpack_packer *pk, const char *key, uint64_t create, uint64_t modify,
                 enum snap_bad bad)
{
  msgpack_pack_map(pk, bad == BAD_DUP_FIELD ? 8 : bad == BAD_MISSING_FLAGS ? 6 : 7);
  pstr(pk, "Key");
  if (bad == BAD_KEY_TYPE) msgpack_pack_uint64(pk, 5);
  else pstr(pk, key);
  pstr(pk, "Value");
  if (bad == BAD_VALUE_TYPE) msgpack_pack_true(pk);
  else msgpack_pack_bin(pk, 2), msgpack_pack_bin_body(pk, "vv", 2);
  if (bad != BAD_MISSING_FLAGS) {
    pstr(pk, "Flags");
    if (bad == BAD_NEGATIVE) msgpack_pack_int64(pk, -1);
    else msgpack_pack_uint64(pk, 7);
  }
  pstr(pk, "CreateIndex");
  msgpack_pack_uint64(pk, create);
  pstr(pk, "ModifyIndex");
  msgpack_pack_uint64(pk, modify);
  pstr(pk, "LockIndex");
  msgpack_pack_uint64(pk, 1);
  pstr(pk, "Session");
  if (bad == BAD_SESSION_NUL) msgpack_pack_str(pk, 3), msgpack_pack_str_body(pk, "a\0b", 3);
  else pstr(pk, "sess");
  if (bad == BAD_DUP_FIELD) {
    pstr(pk, "Key");
    pstr(pk, key);
  }
}

static void build_snap(struct buf *b, enum snap_bad bad)
{
  msgpack_packer pk;
  msgpack_packer_init(&pk, b, pack_write);
  if (bad == BAD_ROOT_ARRAY) {
    msgpack_pack_array(&pk, 0);
    return;
  }
  msgpack_pack_map(&pk, bad == BAD_NO_TABLES ? 4 : 5);
  pstr(&pk, "Version");
  msgpack_pack_uint64(&pk, bad == BAD_VERSION ? 2 : 1);
  pstr(&pk, "Index");
  msgpack_pack_uint64(&pk, bad == BAD_APPLIED ? 5 : 20);
  if (bad != BAD_NO_TABLES) {
    pstr(&pk, "Tables");
    msgpack_pack_map(&pk, 2);
    pstr(&pk, "kvs");
    msgpack_pack_uint64(&pk, 10);
    pstr(&pk, "tombstones");
    msgpack_pack_uint64(&pk, 8);
  }
  pstr(&pk, "KVs");
  if (bad == BAD_KVS_NOT_ARRAY) {
    msgpack_pack_map(&pk, 0);
  } else {
    msgpack_pack_array(&pk, 2);
    const char *first = bad == BAD_EMPTY_KEY ? "" : "a";
    const char *second = bad == BAD_ORDER ? "0" : bad == BAD_DUP ? "a" : "b";
    prow(&pk, first, 2, 3, BAD_NONE);
    prow(&pk, second, bad == BAD_CREATE_GT_MODIFY ? 6 : bad == BAD_CREATE_ZERO ? 0 : 4,
         bad == BAD_MODIFY_GT_TABLE ? 11 : 5, bad);
  }
  pstr(&pk, "Tombstones");
  msgpack_pack_array(&pk, 1);
  msgpack_pack_map(&pk, 2);
  pstr(&pk, "Key");
  pstr(&pk, "c");
  pstr(&pk, "Index");
  msgpack_pack_uint64(&pk, bad == BAD_TOMB_INDEX ? 9 : 8);
  if (bad == BAD_TRAILING) buf_putc(b, 0);
}

static void test_snapshot_corrupt(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  populate(s);
  struct buf before = BUF_INIT, after = BUF_INIT, bad = BUF_INIT;
  state_store_snapshot(s, &before);

  /* The hand builder's valid form restores (so each variant fails for its own reason). */
  struct state_store *t = state_store_new();
  build_snap(&bad, BAD_NONE);
  assert_int_equal(state_store_restore(t, bad.data, bad.len), 0);
  assert_int_equal(state_kv_count(t), 2);
  assert_int_equal(state_tombstone_count(t), 1);
  assert_string_equal(get(t, "b", NULL)->session, "sess");
  state_store_free(t);

  for (int v = BAD_VERSION; v <= BAD_COUNT; v++) {
    buf_reset(&bad);
    if (v == BAD_COUNT) {
      /* an array header claiming 4 billion elements, then nothing */
      buf_append(&bad, "\x81\xa3KVs\xdd\xff\xff\xff\xff", 10);
    } else {
      build_snap(&bad, (enum snap_bad)v);
    }
    assert_int_equal(state_store_restore(s, bad.data, bad.len), CC_ECORRUPT);
  }
  /* Every truncation of a real snapshot fails. */
  for (size_t n = 0; n < before.len; n++)
    assert_int_equal(state_store_restore(s, before.data, n), CC_ECORRUPT);
  assert_int_equal(state_store_restore(s, NULL, 0), CC_ECORRUPT);
  /* Bit flips: either rejected or a valid document; never a crash or a leak. */
  for (size_t i = 0; i < before.len; i++) {
    struct state_store *f = state_store_new();
    char *copy = malloc(before.len);
    memcpy(copy, before.data, before.len);
    copy[i] ^= 0x41;
    int rc = state_store_restore(f, copy, before.len);
    assert_true(rc == 0 || rc == CC_ECORRUPT);
    free(copy);
    state_store_free(f);
  }

  state_store_snapshot(s, &after);
  assert_int_equal(before.len, after.len);
  assert_memory_equal(before.data, after.data, before.len);
  buf_free(&before);
  buf_free(&after);
  buf_free(&bad);
  state_store_free(s);
}

/* ---- the tree under load ---- */

struct order_check {
  char last[32];
  size_t last_len;
  size_t n;
};

static int order_fn(const struct state_kv *e, void *arg)
{
  struct order_check *o = arg;
  if (o->n) assert_true(state__tree_cmp(o->last, o->last_len, e->key, e->key_len) < 0);
  assert_true(e->key_len < sizeof o->last);
  memcpy(o->last, e->key, e->key_len);
  o->last_len = e->key_len;
  o->n++;
  return 0;
}

static int tree_height(const struct state__tnode *n) { return n ? n->height : 0; }

static void test_100k_keys(void **st)
{
  (void)st;
  enum { N = 100000 };
  struct state_store *s = state_store_new();
  /* Insert in a scrambled order (a multiplicative permutation of 0..N-1). */
  char key[32];
  uint64_t idx = 1;
  for (uint64_t i = 0; i < N; i++) {
    uint64_t k = (i * 7919) % N;
    int n = snprintf(key, sizeof key, "k/%06llu", (unsigned long long)k);
    struct state_kv_op op = {.verb = STATE_KV_SET, .key = key, .key_len = (size_t)n,
                             .value = (const uint8_t *)key, .value_len = (size_t)n};
    assert_int_equal(state_kv_apply(s, idx++, &op, NULL), 0);
  }
  assert_int_equal(state_kv_count(s), N);
  assert_int_equal(state__tree_check(s->kvs), N);
  /* AVL bound: height < 1.4405 log2(n + 2) ~ 23.9 for 100k. */
  assert_true(tree_height(s->kvs) <= 24);
  struct order_check o = {0};
  state_kv_list(s, "", 0, order_fn, &o);
  assert_int_equal(o.n, N);
  memset(&o, 0, sizeof o);
  state_kv_list(s, "k/0123", 6, order_fn, &o);
  assert_int_equal(o.n, 100);

  /* Delete every other key, then a range with a tree delete. */
  for (uint64_t k = 0; k < N; k += 2) {
    int n = snprintf(key, sizeof key, "k/%06llu", (unsigned long long)k);
    assert_true(kv_op(s, idx++, STATE_KV_DELETE, key, NULL, 0, NULL) || n < 0);
  }
  assert_int_equal(state_kv_count(s), N / 2);
  assert_int_equal(state_tombstone_count(s), N / 2);
  assert_int_equal(state__tree_check(s->kvs), N / 2);
  assert_int_equal(state__tree_check(s->tombs), N / 2);
  assert_true(kv_op(s, idx++, STATE_KV_DELETE_TREE, "k/05", NULL, 0, NULL));
  assert_int_equal(state_kv_count(s), N / 2 - 5000);
  assert_int_equal(state__tree_check(s->kvs), N / 2 - 5000);
  memset(&o, 0, sizeof o);
  state_kv_list(s, "", 0, order_fn, &o);
  assert_int_equal(o.n, N / 2 - 5000);
  assert_int_equal(state_tombstone_reap(s, idx, idx), 0);
  idx++;
  assert_int_equal(state_tombstone_count(s), 0);
  assert_int_equal(state__tree_check(s->tombs), 0);
  assert_true(kv_op(s, idx++, STATE_KV_DELETE_TREE, "", NULL, 0, NULL));
  assert_int_equal(state_kv_count(s), 0);
  assert_null(s->kvs);
  state_store_free(s);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_set_get),
      cmocka_unit_test(test_cas),
      cmocka_unit_test(test_delete),
      cmocka_unit_test(test_delete_cas),
      cmocka_unit_test(test_delete_tree),
      cmocka_unit_test(test_lock_unlock),
      cmocka_unit_test(test_invalid_ops),
      cmocka_unit_test(test_list_index),
      cmocka_unit_test(test_keys),
      cmocka_unit_test(test_reap),
      cmocka_unit_test(test_tombstone_dropped_on_set),
      cmocka_unit_test(test_watch_key_prefix_table),
      cmocka_unit_test(test_watch_no_fire_without_change),
      cmocka_unit_test(test_watch_delete_tree),
      cmocka_unit_test(test_watch_cancel),
      cmocka_unit_test(test_watch_many_on_one_key),
      cmocka_unit_test(test_snapshot_roundtrip),
      cmocka_unit_test(test_snapshot_corrupt),
      cmocka_unit_test(test_100k_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
