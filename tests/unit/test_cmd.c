/* test_cmd.c -- Raft command encoding: encode -> apply round trips for every verb, and the
 * decoder's rejection of malformed bytes (it reads untrusted input; see fuzz/fuzz_cmd.c).
 *
 * With CONCORD_CMD_CORPUS=<dir> set, also writes each encoded command there as a seed for
 * the fuzzer (that is how fuzz/corpus/cmd/ was made). */
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
#include "state/cmd.h"
#include "state/store.h"
#include "state/watch.h"

static int corpus_n;

/* Writes b to $CONCORD_CMD_CORPUS/<name> when that is set. */
static void corpus_save(const char *name, const struct buf *b)
{
  const char *dir = getenv("CONCORD_CMD_CORPUS");
  if (!dir) return;
  char path[512];
  snprintf(path, sizeof path, "%s/seed-%02d-%s", dir, corpus_n++, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b->data, 1, b->len, f), b->len);
  fclose(f);
}

static struct state_cmd_result apply_op(struct state_store *s, uint64_t index,
                                        const struct state_kv_op *op, const char *name)
{
  struct buf b = BUF_INIT;
  state_cmd_encode_kv(&b, op);
  corpus_save(name, &b);
  assert_int_equal(state_cmd_validate(b.data, b.len), 0);
  struct state_cmd_result res = {.err = -99, .ok = false};
  assert_int_equal(state_cmd_apply(s, index, b.data, b.len, &res), 0);
  buf_free(&b);
  return res;
}

static struct state_kv_op mkop(enum state_kv_verb verb, const char *key, const char *value,
                               uint64_t flags, uint64_t cas, const char *session)
{
  struct state_kv_op op = {verb,  key,   key ? strlen(key) : 0, (const uint8_t *)value,
                           value ? strlen(value) : 0, flags, cas, session};
  return op;
}

static void test_roundtrip(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct state_kv_op op = mkop(STATE_KV_SET, "app/cfg", "v1", 42, 0, NULL);
  struct state_cmd_result r = apply_op(s, 1, &op, "set");
  assert_int_equal(r.err, 0);
  assert_true(r.ok);
  const struct state_kv *e = state_kv_get(s, "app/cfg", 7, NULL);
  assert_non_null(e);
  assert_int_equal(e->flags, 42);
  assert_memory_equal(e->value, "v1", 2);
  assert_int_equal(e->modify_index, 1);

  /* Binary value with NULs, empty value. */
  struct state_kv_op bin = {.verb = STATE_KV_SET, .key = "bin", .key_len = 3,
                            .value = (const uint8_t *)"\0\xff\0", .value_len = 3};
  assert_true(apply_op(s, 2, &bin, "set-binary").ok);
  e = state_kv_get(s, "bin", 3, NULL);
  assert_int_equal(e->value_len, 3);
  assert_memory_equal(e->value, "\0\xff\0", 3);
  op = mkop(STATE_KV_SET, "empty", NULL, 0, 0, NULL);
  assert_true(apply_op(s, 3, &op, "set-empty").ok);
  assert_int_equal(state_kv_get(s, "empty", 5, NULL)->value_len, 0);

  op = mkop(STATE_KV_CAS, "app/cfg", "v2", 0, 7, NULL);
  r = apply_op(s, 4, &op, "cas-fail");
  assert_int_equal(r.err, 0);
  assert_false(r.ok);
  op = mkop(STATE_KV_CAS, "app/cfg", "v2", 0, 1, NULL);
  assert_true(apply_op(s, 5, &op, "cas").ok);
  assert_int_equal(state_kv_get(s, "app/cfg", 7, NULL)->modify_index, 5);

  const char *sess = "44444444-4444-4444-4444-444444444444";
  struct state_register reg = {.node = "n1", .address = "127.0.0.1"};
  assert_int_equal(state_catalog_register(s, 6, &reg, NULL, 0), 0);
  struct state_session se = {.id = sess, .node = "n1"};
  assert_int_equal(state_session_create(s, 6, &se, NULL, 0), 0);
  op = mkop(STATE_KV_LOCK, "lock", "me", 0, 0, sess);
  assert_true(apply_op(s, 6, &op, "lock").ok);
  e = state_kv_get(s, "lock", 4, NULL);
  assert_string_equal(e->session, sess);
  assert_int_equal(e->lock_index, 1);
  op = mkop(STATE_KV_LOCK, "lock", "me", 0, 0, "other");
  assert_false(apply_op(s, 7, &op, "lock-held").ok);
  op = mkop(STATE_KV_UNLOCK, "lock", "free", 0, 0, sess);
  assert_true(apply_op(s, 8, &op, "unlock").ok);
  assert_null(state_kv_get(s, "lock", 4, NULL)->session);
  /* LOCK without a session decodes fine and applies as an error result. */
  op = mkop(STATE_KV_LOCK, "lock", "x", 0, 0, NULL);
  r = apply_op(s, 9, &op, "lock-nosession");
  assert_int_equal(r.err, CC_EINVAL);
  assert_false(r.ok);

  op = mkop(STATE_KV_DELETE_CAS, "app/cfg", NULL, 0, 1, NULL);
  assert_false(apply_op(s, 10, &op, "delete-cas-fail").ok);
  op = mkop(STATE_KV_DELETE_CAS, "app/cfg", NULL, 0, 5, NULL);
  assert_true(apply_op(s, 11, &op, "delete-cas").ok);
  assert_null(state_kv_get(s, "app/cfg", 7, NULL));
  op = mkop(STATE_KV_DELETE, "bin", NULL, 0, 0, NULL);
  assert_true(apply_op(s, 12, &op, "delete").ok);
  assert_int_equal(state_tombstone_count(s), 2);
  op = mkop(STATE_KV_SET, "tree/a", "1", 0, 0, NULL);
  apply_op(s, 13, &op, "set-tree");
  op = mkop(STATE_KV_DELETE_TREE, "tree/", NULL, 0, 0, NULL);
  assert_true(apply_op(s, 14, &op, "delete-tree").ok);
  assert_null(state_kv_get(s, "tree/a", 6, NULL));
  op = mkop(STATE_KV_DELETE_TREE, "", NULL, 0, 0, NULL);
  assert_true(apply_op(s, 15, &op, "delete-tree-all").ok);
  assert_int_equal(state_kv_count(s), 0);

  /* Reap and no-op. */
  struct buf b = BUF_INIT;
  state_cmd_encode_tombstone_reap(&b, 14);
  corpus_save("reap", &b);
  assert_int_equal(state_cmd_validate(b.data, b.len), 0);
  assert_int_equal(state_cmd_apply(s, 16, b.data, b.len, &r), 0);
  assert_int_equal(r.err, 0);
  assert_true(r.ok);
  assert_int_equal(state_tombstone_count(s), 0);
  buf_reset(&b);
  state_cmd_encode_noop(&b);
  corpus_save("noop", &b);
  uint64_t before = state_store_index(s);
  assert_int_equal(state_cmd_apply(s, 17, b.data, b.len, &r), 0);
  assert_int_equal(r.err, 0);
  assert_int_equal(state_store_index(s), before);
  /* An index that goes backwards is an error result, not corruption. */
  assert_int_equal(state_cmd_apply(s, 3, b.data, b.len, &r), 0);
  assert_int_equal(r.err, CC_EINVAL);
  buf_free(&b);
  state_store_free(s);
}

/* ---- hand-built commands ---- */

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

/* What a Go client's msgpack would look like: extra fields, Datacenter, value as str. */
static void test_consul_shaped(void **st)
{
  (void)st;
  struct buf b = BUF_INIT;
  msgpack_packer pk;
  msgpack_packer_init(&pk, &b, pack_write);
  buf_putc(&b, STATE_CMD_KV);
  msgpack_pack_map(&pk, 4);
  pstr(&pk, "Datacenter");
  pstr(&pk, "dc1");
  pstr(&pk, "Op");
  pstr(&pk, "set");
  pstr(&pk, "Token");
  pstr(&pk, "");
  pstr(&pk, "DirEnt");
  msgpack_pack_map(&pk, 8);
  pstr(&pk, "LockIndex");
  msgpack_pack_uint64(&pk, 0);
  pstr(&pk, "Key");
  pstr(&pk, "go/key");
  pstr(&pk, "Flags");
  msgpack_pack_int8(&pk, 3); /* a positive value in a signed encoding */
  pstr(&pk, "Value");
  pstr(&pk, "as-str");
  pstr(&pk, "Session");
  pstr(&pk, "sess-ignored-by-set");
  pstr(&pk, "CreateIndex");
  msgpack_pack_uint64(&pk, 0);
  pstr(&pk, "ModifyIndex");
  msgpack_pack_uint64(&pk, 0);
  pstr(&pk, "EnterpriseMeta");
  msgpack_pack_map(&pk, 0);
  corpus_save("consul-shaped", &b);

  struct state_store *s = state_store_new();
  struct state_cmd_result r;
  assert_int_equal(state_cmd_apply(s, 1, b.data, b.len, &r), 0);
  assert_int_equal(r.err, 0);
  assert_true(r.ok);
  const struct state_kv *e = state_kv_get(s, "go/key", 6, NULL);
  assert_non_null(e);
  assert_int_equal(e->flags, 3);
  assert_memory_equal(e->value, "as-str", 6);
  assert_null(e->session);
  buf_free(&b);
  state_store_free(s);
}

enum bad {
  B_KEY_INT, B_NO_KEY, B_NO_OP, B_BAD_OP, B_OP_INT, B_NO_DIRENT, B_DIRENT_ARRAY, B_FLAGS_NEG,
  B_FLAGS_STR, B_CAS_FLOAT, B_VALUE_MAP, B_SESSION_NUL, B_SESSION_BIN, B_SESSION_LONG,
  B_DUP_OP, B_DC_INT, B_ROOT_ARRAY, B_KEY_LONG, B_TRAILING, B_GET_OP, B_COUNT
};

static void build_bad(struct buf *b, enum bad v)
{
  msgpack_packer pk;
  msgpack_packer_init(&pk, b, pack_write);
  buf_putc(b, STATE_CMD_KV);
  if (v == B_ROOT_ARRAY) {
    msgpack_pack_array(&pk, 0);
    return;
  }
  int top = 2 + (v == B_DUP_OP) + (v == B_DC_INT) - (v == B_NO_OP) - (v == B_NO_DIRENT);
  msgpack_pack_map(&pk, (size_t)top);
  if (v == B_DC_INT) {
    pstr(&pk, "Datacenter");
    msgpack_pack_uint64(&pk, 1);
  }
  if (v != B_NO_OP) {
    pstr(&pk, "Op");
    if (v == B_OP_INT) msgpack_pack_uint64(&pk, 1);
    else pstr(&pk, v == B_BAD_OP ? "frobnicate" : v == B_GET_OP ? "get" : "set");
  }
  if (v == B_DUP_OP) {
    pstr(&pk, "Op");
    pstr(&pk, "delete");
  }
  if (v != B_NO_DIRENT) {
    pstr(&pk, "DirEnt");
    if (v == B_DIRENT_ARRAY) {
      msgpack_pack_array(&pk, 0);
    } else {
      msgpack_pack_map(&pk, v == B_NO_KEY ? 4 : 5);
      if (v != B_NO_KEY) {
        pstr(&pk, "Key");
        if (v == B_KEY_INT) {
          msgpack_pack_uint64(&pk, 7);
        } else if (v == B_KEY_LONG) {
          size_t n = STATE_KV_MAX_KEY + 1;
          char *k = malloc(n);
          memset(k, 'k', n);
          msgpack_pack_str(&pk, n);
          msgpack_pack_str_body(&pk, k, n);
          free(k);
        } else {
          pstr(&pk, "k");
        }
      }
      pstr(&pk, "Value");
      if (v == B_VALUE_MAP) msgpack_pack_map(&pk, 0);
      else msgpack_pack_bin(&pk, 1), msgpack_pack_bin_body(&pk, "v", 1);
      pstr(&pk, "Flags");
      if (v == B_FLAGS_NEG) msgpack_pack_int64(&pk, -1);
      else if (v == B_FLAGS_STR) pstr(&pk, "1");
      else msgpack_pack_uint64(&pk, 1);
      pstr(&pk, "ModifyIndex");
      if (v == B_CAS_FLOAT) msgpack_pack_double(&pk, 1.0);
      else msgpack_pack_uint64(&pk, 0);
      pstr(&pk, "Session");
      if (v == B_SESSION_NUL) {
        msgpack_pack_str(&pk, 3);
        msgpack_pack_str_body(&pk, "a\0b", 3);
      } else if (v == B_SESSION_BIN) {
        msgpack_pack_bin(&pk, 1);
        msgpack_pack_bin_body(&pk, "s", 1);
      } else if (v == B_SESSION_LONG) {
        char sess[STATE_KV_MAX_SESSION + 1];
        memset(sess, 's', sizeof sess);
        msgpack_pack_str(&pk, sizeof sess);
        msgpack_pack_str_body(&pk, sess, sizeof sess);
      } else {
        msgpack_pack_nil(&pk);
      }
    }
  }
  if (v == B_TRAILING) buf_putc(b, 0);
}

static void expect_corrupt(const void *data, size_t len)
{
  struct state_store *s = state_store_new();
  struct state_cmd_result r = {.err = 0, .ok = true};
  assert_int_equal(state_cmd_validate(data, len), CC_ECORRUPT);
  assert_int_equal(state_cmd_apply(s, 1, data, len, &r), CC_ECORRUPT);
  assert_int_equal(r.err, CC_ECORRUPT);
  assert_false(r.ok);
  assert_int_equal(state_kv_count(s), 0);
  assert_int_equal(state_store_index(s), 0);
  state_store_free(s);
}

static void test_malformed(void **st)
{
  (void)st;
  struct buf b = BUF_INIT;
  for (int v = 0; v < B_COUNT; v++) {
    buf_reset(&b);
    build_bad(&b, (enum bad)v);
    expect_corrupt(b.data, b.len);
  }

  /* Values over the cap: a real 16 MiB + 1 value. */
  buf_reset(&b);
  size_t big = STATE_KV_MAX_VALUE + 1;
  uint8_t *val = calloc(1, big);
  struct state_kv_op op = {.verb = STATE_KV_SET, .key = "k", .key_len = 1, .value = val,
                           .value_len = big};
  state_cmd_encode_kv(&b, &op);
  expect_corrupt(b.data, b.len);
  free(val);

  /* Every truncation of a valid command. */
  buf_reset(&b);
  op = (struct state_kv_op){.verb = STATE_KV_LOCK, .key = "a/b", .key_len = 3,
                            .value = (const uint8_t *)"xyz", .value_len = 3, .flags = 1,
                            .session = "sess"};
  state_cmd_encode_kv(&b, &op);
  for (size_t n = 0; n < b.len; n++) expect_corrupt(b.data, n);
  assert_int_equal(state_cmd_validate(b.data, b.len), 0);

  /* Type bytes: 0 and 4..127 are corrupt; a bare type byte is corrupt. */
  for (int t = 0; t < 128; t++) {
    if (t >= STATE_CMD_KV && t <= STATE_CMD_NOOP) continue;
    b.data[0] = (char)t;
    expect_corrupt(b.data, b.len);
  }
  expect_corrupt("\x01", 1);
  expect_corrupt("\x03", 1);
  expect_corrupt("", 0);
  expect_corrupt(NULL, 0);
  expect_corrupt("\x03\x90", 2);          /* noop with an array */
  expect_corrupt("\x02\x80", 2);          /* reap without ReapIndex */
  expect_corrupt("\x02\x81\xa2Op\xa3set", 8); /* reap with the wrong Op */
  /* A 4-billion-element array header, and a 4-billion-pair map: rejected before msgpack-c
   * would try to allocate for them. */
  expect_corrupt("\x01\xdd\xff\xff\xff\xff", 6);
  expect_corrupt("\x01\xdf\xff\xff\xff\xff", 6);
  expect_corrupt("\x01\x81\xa1x\xdd\x7f\xff\xff\xff", 9);
  /* Nesting deeper than the cap. */
  buf_reset(&b);
  buf_putc(&b, STATE_CMD_KV);
  for (int i = 0; i < 40; i++) buf_putc(&b, (char)0x91);
  buf_putc(&b, (char)0xc0);
  expect_corrupt(b.data, b.len);
  /* 0xc1 is never valid msgpack. */
  expect_corrupt("\x03\x81\xa1x\xc1", 5);
  buf_free(&b);
}

static void count_fn(void *arg) { (*(int *)arg)++; }

static struct state_cmd_result apply_restore(struct state_store *s, uint64_t index,
                                             const struct buf *doc, int want)
{
  struct buf b = BUF_INIT;
  state_cmd_encode_restore(&b, doc->data, doc->len);
  if (want == 0) corpus_save("restore", &b);
  assert_int_equal(state_cmd_validate(b.data, b.len), want);
  struct state_cmd_result res = {.err = -99, .ok = false};
  assert_int_equal(state_cmd_apply(s, index, b.data, b.len, &res), want);
  buf_free(&b);
  return res;
}

/* The restore command: replaces the store, keeps the saved indexes, shifts later indexes
 * above them when they run past the entry's, fires every watch, refuses a bad document. */
static void test_restore(void **st)
{
  (void)st;
  /* the source: 30 writes, so its rows reach index 30 */
  struct state_store *src = state_store_new();
  for (uint64_t i = 1; i <= 30; i++) {
    struct state_kv_op op = mkop(STATE_KV_SET, i % 2 ? "odd" : "even", "v", i, 0, NULL);
    assert_int_equal(apply_op(src, i, &op, "restore-src").err, 0);
  }
  struct buf doc = BUF_INIT;
  state_store_snapshot(src, &doc);

  /* the target is at Raft index 5: below the snapshot's 30 */
  struct state_store *s = state_store_new();
  struct state_kv_op op = mkop(STATE_KV_SET, "mine", "x", 0, 0, NULL);
  assert_int_equal(apply_op(s, 5, &op, "restore-dst").err, 0);
  int fired = 0;
  state_watch_add(s, STATE_WATCH_KV_KEY, "mine", 4, count_fn, &fired);
  state_watch_add(s, STATE_WATCH_TABLE, "nodes", 5, count_fn, &fired);
  uint64_t restores = state_store_restores(s);

  struct state_cmd_result r = apply_restore(s, 6, &doc, 0);
  assert_int_equal(r.err, 0);
  assert_true(r.ok);
  assert_int_equal(fired, 2);
  assert_int_equal(state_store_restores(s), restores + 1);
  assert_null(state_kv_get(s, "mine", 4, NULL));
  uint64_t ix;
  const struct state_kv *e = state_kv_get(s, "odd", 3, &ix);
  assert_non_null(e);
  assert_int_equal(e->modify_index, 29);
  assert_int_equal(e->flags, 29);
  assert_int_equal(state_kv_get(s, "even", 4, NULL)->modify_index, 30);

  /* Raft entry 7 now stamps rows above 30; the offset survives a snapshot of the target */
  op = mkop(STATE_KV_SET, "after", "y", 0, 0, NULL);
  assert_int_equal(apply_op(s, 7, &op, "restore-after").err, 0);
  assert_int_equal(state_kv_get(s, "after", 5, NULL)->modify_index, 32);
  struct buf again = BUF_INIT;
  state_store_snapshot(s, &again);
  struct state_store *copy = state_store_new();
  assert_int_equal(state_store_restore(copy, again.data, again.len), 0);
  op = mkop(STATE_KV_SET, "later", "z", 0, 0, NULL);
  assert_int_equal(apply_op(copy, 8, &op, "restore-later").err, 0);
  assert_int_equal(state_kv_get(copy, "later", 5, NULL)->modify_index, 33);

  /* a restore below the applied index is refused as malformed, nothing changed */
  r = apply_restore(copy, 1, &doc, 0);
  assert_int_equal(r.err, CC_EINVAL);
  assert_non_null(state_kv_get(copy, "later", 5, NULL));

  /* a damaged document is a corrupt command: nothing changed */
  struct buf bad = BUF_INIT;
  buf_append(&bad, doc.data, doc.len);
  bad.data[bad.len - 1] ^= 0x7f;
  fired = 0;
  state_watch_add(s, STATE_WATCH_KV_KEY, "odd", 3, count_fn, &fired);
  r = apply_restore(s, 9, &bad, CC_ECORRUPT);
  assert_int_equal(r.err, CC_ECORRUPT);
  assert_false(r.ok);
  assert_int_equal(fired, 0);
  assert_non_null(state_kv_get(s, "after", 5, NULL));

  /* a snapshot below the entry's index: no offset, applied moves to the entry */
  struct state_store *low = state_store_new();
  assert_int_equal(apply_restore(low, 100, &doc, 0).err, 0);
  op = mkop(STATE_KV_SET, "n", "1", 0, 0, NULL);
  assert_int_equal(apply_op(low, 101, &op, "restore-low").err, 0);
  assert_int_equal(state_kv_get(low, "n", 1, NULL)->modify_index, 101);

  buf_free(&bad);
  buf_free(&doc);
  buf_free(&again);
  state_store_free(src);
  state_store_free(s);
  state_store_free(copy);
  state_store_free(low);
}

static void test_unknown_types_ignored(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct state_cmd_result r = {.err = -99, .ok = false};
  for (int t = 128; t < 256; t++) {
    uint8_t data[3] = {(uint8_t)t, 0xc1, 0xff}; /* the body is never read */
    assert_int_equal(state_cmd_validate(data, sizeof data), 0);
    assert_int_equal(state_cmd_apply(s, 5, data, sizeof data, &r), 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(state_kv_count(s), 0);
    assert_int_equal(state_store_index(s), 0);
  }
  uint8_t one = 200;
  assert_int_equal(state_cmd_validate(&one, 1), 0);
  state_store_free(s);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_consul_shaped),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_unknown_types_ignored),
      cmocka_unit_test(test_restore),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
