/* test_txn.c -- transactions in the state store (state/txn.h): every KV verb with Consul's
 * results and error sentences (agent/consul/state/txn_test.go), ops seeing earlier ops, and
 * the all-or-nothing rule checked byte for byte: a failed transaction leaves a snapshot of the
 * store identical to the one before it (rows, tombstones, indexes, held locks). Also the
 * command encoding (seeds for fuzz/fuzz_cmd.c with CONCORD_CMD_CORPUS=<dir>). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "state/catalog.h"
#include "state/cmd.h"
#include "state/query.h"
#include "state/session.h"
#include "state/store.h"
#include "state/txn.h"
#include "state/watch.h"

#define S1 "11111111-1111-1111-1111-111111111111"
#define S2 "22222222-2222-2222-2222-222222222222"

static int corpus_n;
static void corpus_save(const char *name, const struct buf *b)
{
  const char *dir = getenv("CONCORD_CMD_CORPUS");
  if (!dir) return;
  char path[512];
  snprintf(path, sizeof path, "%s/txn-%02d-%s", dir, corpus_n++, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b->data, 1, b->len, f), b->len);
  fclose(f);
}

static struct state_txn_op kvop(const char *verb, const char *key, const char *value,
                                uint64_t index, const char *session)
{
  return (struct state_txn_op){.kind = STATE_TXN_KV,
                               .verb = verb,
                               .key = key,
                               .key_len = key ? strlen(key) : 0,
                               .value = (const uint8_t *)value,
                               .value_len = value ? strlen(value) : 0,
                               .index = index,
                               .session = session};
}

static void set(struct state_store *s, uint64_t idx, const char *key, const char *value)
{
  struct state_kv_op op = {.verb = STATE_KV_SET, .key = key, .key_len = strlen(key),
                           .value = (const uint8_t *)value, .value_len = strlen(value)};
  assert_int_equal(state_kv_apply(s, idx, &op, NULL), 0);
}

/* Applies and parses the answer (caller decrefs). */
static json_t *run(struct state_store *s, uint64_t idx, const struct state_txn_op *ops, size_t n,
                   bool *ok)
{
  struct buf out = BUF_INIT;
  assert_int_equal(state_txn_apply(s, idx, ops, n, &out, ok), 0);
  json_error_t e;
  json_t *j = json_loadb(out.data, out.len, 0, &e);
  if (!j) fail_msg("bad JSON %s: %.*s", e.text, (int)out.len, out.data);
  buf_free(&out);
  return j;
}

static const char *what(json_t *j, size_t i)
{
  return json_string_value(json_object_get(json_array_get(json_object_get(j, "Errors"), i), "What"));
}

static json_t *kv_result(json_t *j, size_t i)
{
  return json_object_get(json_array_get(json_object_get(j, "Results"), i), "KV");
}

static void session_setup(struct state_store *s, uint64_t idx)
{
  struct state_register reg = {.node = "n1", .address = "127.0.0.1"};
  assert_int_equal(state_catalog_register(s, idx, &reg, NULL, 0), 0);
  struct state_session se = {.id = S1, .node = "n1", .lock_delay_ns = 0};
  assert_int_equal(state_session_create(s, idx, &se, NULL, 0), 0);
  se.id = S2;
  assert_int_equal(state_session_create(s, idx, &se, NULL, 0), 0);
}

static void test_success_results(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  session_setup(s, 1);
  set(s, 2, "pre", "old");
  struct state_txn_op ops[] = {
      kvop("set", "a", "1", 0, NULL),
      kvop("get", "a", NULL, 0, NULL),         /* sees the set */
      kvop("cas", "a", "2", 10, NULL),         /* index is the txn's own */
      kvop("lock", "l", "held", 0, S1),
      kvop("check-session", "l", NULL, 0, S1),
      kvop("check-index", "pre", NULL, 2, NULL),
      kvop("check-not-exists", "nope", NULL, 0, NULL),
      kvop("get-or-empty", "nope", NULL, 7, NULL),
      kvop("get-tree", "pre", NULL, 0, NULL),
      kvop("delete", "pre", NULL, 0, NULL),
      kvop("get-or-empty", "pre", NULL, 0, NULL),
  };
  bool ok = false;
  json_t *j = run(s, 10, ops, sizeof ops / sizeof ops[0], &ok);
  assert_true(ok);
  assert_true(json_is_null(json_object_get(j, "Errors")));
  json_t *res = json_object_get(j, "Results");
  assert_int_equal(json_array_size(res), 9); /* check-not-exists and delete answer nothing */
  json_t *r = kv_result(j, 0);
  assert_string_equal(json_string_value(json_object_get(r, "Key")), "a");
  assert_true(json_is_null(json_object_get(r, "Value"))); /* writes blank the value */
  assert_int_equal(json_integer_value(json_object_get(r, "ModifyIndex")), 10);
  r = kv_result(j, 1);
  assert_string_equal(json_string_value(json_object_get(r, "Value")), "MQ=="); /* "1" */
  r = kv_result(j, 3);
  assert_string_equal(json_string_value(json_object_get(r, "Session")), S1);
  assert_int_equal(json_integer_value(json_object_get(r, "LockIndex")), 1);
  r = kv_result(j, 6); /* get-or-empty of a missing key: the op's own entry */
  assert_string_equal(json_string_value(json_object_get(r, "Key")), "nope");
  assert_int_equal(json_integer_value(json_object_get(r, "ModifyIndex")), 7);
  assert_int_equal(json_integer_value(json_object_get(r, "CreateIndex")), 0);
  r = kv_result(j, 7); /* get-tree "pre" */
  assert_string_equal(json_string_value(json_object_get(r, "Value")), "b2xk");
  r = kv_result(j, 8); /* after the delete */
  assert_true(json_is_null(json_object_get(r, "Value")));
  assert_int_equal(json_integer_value(json_object_get(r, "ModifyIndex")), 0);
  json_decref(j);
  /* The store has it all. */
  assert_string_equal((const char *)state_kv_get(s, "a", 1, NULL)->value, "2");
  assert_null(state_kv_get(s, "pre", 3, NULL));
  assert_int_equal(state_session_held_count(s, S1), 1);
  assert_int_equal(state_tombstone_count(s), 1);
  state_store_free(s);
}

static void snap(struct state_store *s, struct buf *b)
{
  buf_reset(b);
  state_store_snapshot(s, b);
}

static int fired;
static void on_fire(void *arg)
{
  (void)arg;
  fired++;
}

static void test_failure_rolls_back_everything(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  session_setup(s, 1);
  set(s, 2, "x/keep", "k");
  set(s, 3, "x/gone", "g");
  set(s, 4, "y", "y");
  struct state_kv_op del = {.verb = STATE_KV_DELETE, .key = "dead", .key_len = 4};
  set(s, 5, "dead", "d");
  assert_int_equal(state_kv_apply(s, 6, &del, NULL), 0); /* a tombstone to disturb */
  struct state_kv_op lk = {.verb = STATE_KV_LOCK, .key = "held", .key_len = 4, .session = S2};
  assert_int_equal(state_kv_apply(s, 7, &lk, NULL), 0);

  struct buf before = BUF_INIT, after = BUF_INIT;
  snap(s, &before);
  uint64_t kvs = state_table_index(s, "kvs");
  fired = 0;
  state_watch_add(s, STATE_WATCH_KV_PREFIX, "x/", 2, on_fire, NULL);

  struct state_txn_op ops[] = {
      kvop("set", "new", "n", 0, NULL),          /* insert */
      kvop("set", "y", "changed", 0, NULL),      /* update */
      kvop("delete-tree", "x/", NULL, 0, NULL),  /* deletes + prefix tombstone */
      kvop("set", "dead", "alive", 0, NULL),     /* removes a tombstone */
      kvop("unlock", "held", NULL, 0, S2),       /* held-key set changes */
      kvop("lock", "new", NULL, 0, S1),
      kvop("set", "new", "again", 0, NULL),      /* a row made and replaced inside */
      kvop("cas", "y", "z", 999, NULL),          /* fails: index is stale */
      kvop("get", "x/keep", NULL, 0, NULL),      /* fails: deleted above */
      kvop("bogus", "k", NULL, 0, NULL),         /* fails: unknown verb */
      kvop("lock", "l2", NULL, 0, "33333333-3333-3333-3333-333333333333"),
  };
  bool ok = true;
  json_t *j = run(s, 20, ops, sizeof ops / sizeof ops[0], &ok);
  assert_false(ok);
  assert_true(json_is_null(json_object_get(j, "Results")));
  json_t *errs = json_object_get(j, "Errors");
  assert_int_equal(json_array_size(errs), 4);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(errs, 0), "OpIndex")), 7);
  assert_string_equal(what(j, 0), "failed to set key \"y\", index is stale");
  assert_string_equal(what(j, 1), "key \"x/keep\" doesn't exist");
  assert_string_equal(what(j, 2), "unknown KV verb \"bogus\"");
  assert_string_equal(what(j, 3), "invalid session \"33333333-3333-3333-3333-333333333333\"");
  json_decref(j);

  /* The only trace: the entry's index was consumed (as by a failed CAS). */
  struct state_store *t = state_store_new();
  assert_int_equal(state_store_restore(t, before.data, before.len), 0);
  struct buf noop = BUF_INIT;
  state_cmd_encode_noop(&noop);
  assert_int_equal(state_cmd_apply(t, 20, noop.data, noop.len, NULL), 0);
  snap(t, &before);
  buf_free(&noop);
  state_store_free(t);
  snap(s, &after);
  assert_int_equal(before.len, after.len);
  assert_memory_equal(before.data, after.data, before.len);
  assert_int_equal(state_table_index(s, "kvs"), kvs);
  assert_int_equal(state_session_held_count(s, S2), 1);
  assert_int_equal(state_session_held_count(s, S1), 0);
  assert_true(fired > 0); /* a spurious wake is allowed; a lost one is not */
  /* And the store still works: destroying S2 releases "held". */
  assert_int_equal(state_session_destroy(s, 21, S2), 0);
  assert_null(state_kv_get(s, "held", 4, NULL)->session);
  buf_free(&before);
  buf_free(&after);
  state_store_free(s);
}

static void test_error_sentences(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  session_setup(s, 1);
  set(s, 2, "k", "v");
  struct state_kv_op lk = {.verb = STATE_KV_LOCK, .key = "lk", .key_len = 2, .session = S2};
  assert_int_equal(state_kv_apply(s, 3, &lk, NULL), 0);
  struct state_txn_op ops[] = {
      kvop("lock", "lk", NULL, 0, S1),
      kvop("unlock", "k", NULL, 0, S1),
      kvop("delete-cas", "k", NULL, 1, NULL),
      kvop("check-index", "k", NULL, 1, NULL),
      kvop("check-index", "zz", NULL, 1, NULL),
      kvop("check-session", "k", NULL, 0, S1),
      kvop("check-session", "zz", NULL, 0, S1),
      kvop("check-not-exists", "k", NULL, 0, NULL),
      kvop("get", "zz", NULL, 0, NULL),
      kvop("set", "", "v", 0, NULL),
      kvop("lock", "q", NULL, 0, ""),
      kvop("get", "quote\"\n\x01", NULL, 0, NULL),
  };
  bool ok;
  json_t *j = run(s, 10, ops, sizeof ops / sizeof ops[0], &ok);
  assert_false(ok);
  const char *want[] = {
      "failed to lock key \"lk\", lock is already held",
      "failed to unlock key \"k\", lock isn't held, or is held by another session",
      "failed to delete key \"k\", index is stale",
      "failed index check for key \"k\", current modify index 2 != 1",
      "failed to check index, key \"zz\" doesn't exist",
      "failed session check for key \"k\", current session \"\" != \"" S1 "\"",
      "failed to check session, key \"zz\" doesn't exist",
      "key \"k\" exists",
      "key \"zz\" doesn't exist",
      "Must provide key",
      "missing session",
      "key \"quote\\\"\\n\\x01\" doesn't exist",
  };
  assert_int_equal(json_array_size(json_object_get(j, "Errors")), sizeof want / sizeof want[0]);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) assert_string_equal(what(j, i), want[i]);
  json_decref(j);
  state_store_free(s);
}

static void test_catalog_reads_and_readonly(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct state_register_service svc = {.id = "web1", .name = "web", .port = 80};
  struct state_register_check ck = {.check_id = "c1", .name = "c1", .status = "passing"};
  struct state_register reg = {.node = "n1", .address = "10.0.0.1", .service = &svc,
                               .checks = &ck, .n_checks = 1};
  assert_int_equal(state_catalog_register(s, 1, &reg, NULL, 0), 0);
  set(s, 2, "k", "v");
  struct state_txn_op ops[] = {
      {.kind = STATE_TXN_NODE, .verb = "get", .node = "N1"},
      {.kind = STATE_TXN_SERVICE, .verb = "get", .node = "n1", .service_id = "web1"},
      {.kind = STATE_TXN_CHECK, .verb = "get", .node = "n1", .check_id = "c1"},
      kvop("get", "k", NULL, 0, NULL),
  };
  struct buf out = BUF_INIT;
  bool ok = false;
  state_txn_read(s, ops, 4, &out, &ok);
  assert_true(ok);
  json_t *j = json_loadb(out.data, out.len, 0, NULL);
  assert_non_null(j);
  json_t *res = json_object_get(j, "Results");
  assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(res, 0), "Node"), "Node")), "n1");
  assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(res, 1), "Service"), "ID")), "web1");
  assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(res, 2), "Check"), "CheckID")), "c1");
  json_decref(j);
  /* Misses, catalog writes, and writes in a read-only run are errors. */
  struct state_txn_op bad[] = {
      {.kind = STATE_TXN_NODE, .verb = "get", .node = "nope"},
      {.kind = STATE_TXN_SERVICE, .verb = "get", .node = "n1", .service_id = "x"},
      {.kind = STATE_TXN_CHECK, .verb = "get", .node = "n1", .check_id = "x"},
      {.kind = STATE_TXN_NODE, .verb = "set", .node = "n2"},
      {.kind = STATE_TXN_NODE, .verb = "frob", .node = "n2"},
      kvop("set", "k", "w", 0, NULL),
  };
  buf_reset(&out);
  state_txn_read(s, bad, 6, &out, &ok);
  assert_false(ok);
  j = json_loadb(out.data, out.len, 0, NULL);
  assert_string_equal(what(j, 0), "node \"nope\" doesn't exist");
  assert_string_equal(what(j, 1), "service \"x\" on node \"n1\" doesn't exist");
  assert_string_equal(what(j, 2), "check \"x\" on node \"n1\" doesn't exist");
  assert_string_equal(what(j, 3), "cannot set in a read-only transaction");
  assert_string_equal(what(j, 4), "unknown Node verb \"frob\"");
  assert_string_equal(what(j, 5), "cannot set in a read-only transaction");
  json_decref(j);
  assert_string_equal((const char *)state_kv_get(s, "k", 1, NULL)->value, "v");
  buf_free(&out);
  state_store_free(s);
}

static void test_command_roundtrip(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  session_setup(s, 1);
  struct state_txn_op ops[] = {
      kvop("set", "a", "1", 0, NULL),
      kvop("lock", "b", "2", 0, S1),
      kvop("get-tree", "a", NULL, 0, NULL),
      {.kind = STATE_TXN_NODE, .verb = "get", .node = "n1"},
      {.kind = STATE_TXN_SERVICE, .verb = "get", .node = "n1", .service_id = "s"},
      {.kind = STATE_TXN_CHECK, .verb = "get", .node = "n1", .check_id = "c"},
  };
  struct buf b = BUF_INIT;
  state_cmd_encode_txn(&b, ops, 3);
  corpus_save("kv", &b);
  assert_int_equal(state_cmd_validate(b.data, b.len), 0);
  struct state_cmd_result res;
  assert_int_equal(state_cmd_apply(s, 5, b.data, b.len, &res), 0);
  assert_int_equal(res.err, 0);
  assert_true(res.ok);
  assert_non_null(res.body);
  assert_true(strncmp(res.body, "{\"Results\":[", 12) == 0);
  assert_string_equal(state_kv_get(s, "b", 1, NULL)->session, S1);

  buf_reset(&b);
  state_cmd_encode_txn(&b, ops, 6);
  corpus_save("catalog", &b);
  assert_int_equal(state_cmd_apply(s, 6, b.data, b.len, &res), 0);
  assert_false(res.ok); /* service and check missing: 409 */
  assert_true(strncmp(res.body, "{\"Results\":null,\"Errors\":[", 26) == 0);

  /* Truncations are corrupt; over 128 ops is corrupt. */
  for (size_t n = 0; n < b.len; n++) assert_int_equal(state_cmd_validate(b.data, n), CC_ECORRUPT);
  struct state_txn_op many[STATE_TXN_MAX_OPS + 1];
  for (size_t i = 0; i <= STATE_TXN_MAX_OPS; i++) many[i] = kvop("get", "a", NULL, 0, NULL);
  buf_reset(&b);
  state_cmd_encode_txn(&b, many, STATE_TXN_MAX_OPS + 1);
  assert_int_equal(state_cmd_validate(b.data, b.len), CC_ECORRUPT);
  buf_reset(&b);
  state_cmd_encode_txn(&b, many, STATE_TXN_MAX_OPS);
  assert_int_equal(state_cmd_validate(b.data, b.len), 0);
  /* Directly: an index below one applied before is refused, nothing written. */
  struct buf out = BUF_INIT;
  bool ok;
  assert_int_equal(state_txn_apply(s, 3, ops, 1, &out, &ok), CC_EINVAL);
  assert_int_equal(out.len, 0);
  buf_free(&b);
  state_store_free(s);
}

/* ---- catalog writes ---- */

static json_t *cat_result(json_t *j, size_t i, const char *kind)
{
  return json_object_get(json_array_get(json_object_get(j, "Results"), i), kind);
}

static const char *jstr(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }
static uint64_t jint(json_t *o, const char *k) { return (uint64_t)json_integer_value(json_object_get(o, k)); }

static void test_catalog_writes(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct state_register n2 = {.node = "n2", .address = "10.0.0.2", .datacenter = "dc1"};
  struct state_register_service web = {.id = "web1", .name = "web", .port = 80,
                                       .has_weights = true, .weight_passing = 3,
                                       .weight_warning = 1};
  struct state_register svc = {.node = "n2", .skip_node_update = true, .service = &web};
  struct state_register_check ck = {.node = "n2", .check_id = "c1", .name = "c1",
                                    .status = "passing", .service_id = "web1"};
  struct state_register chk = {.node = "n2", .skip_node_update = true, .checks = &ck,
                               .n_checks = 1};
  struct state_txn_op ops[] = {
      {.kind = STATE_TXN_NODE, .verb = "set", .node = "n2", .reg = &n2},
      {.kind = STATE_TXN_SERVICE, .verb = "set", .node = "n2", .service_id = "web1", .reg = &svc},
      {.kind = STATE_TXN_CHECK, .verb = "cas", .node = "n2", .check_id = "c1", .reg = &chk},
      {.kind = STATE_TXN_SERVICE, .verb = "get", .node = "n2", .service_id = "web1"},
      kvop("set", "k", "v", 0, NULL),
  };
  bool ok = false;
  json_t *j = run(s, 5, ops, 5, &ok);
  assert_true(ok);
  assert_int_equal(json_array_size(json_object_get(j, "Results")), 5);
  json_t *n = cat_result(j, 0, "Node");
  assert_string_equal(jstr(n, "Node"), "n2");
  assert_string_equal(jstr(n, "Address"), "10.0.0.2");
  assert_int_equal(jint(n, "CreateIndex"), 5);
  json_t *sv = cat_result(j, 1, "Service");
  assert_string_equal(jstr(sv, "Service"), "web");
  assert_int_equal(jint(sv, "Port"), 80);
  assert_int_equal(jint(json_object_get(sv, "Weights"), "Passing"), 3);
  json_t *c = cat_result(j, 2, "Check");
  assert_string_equal(jstr(c, "Status"), "passing");
  assert_string_equal(jstr(c, "ServiceName"), "web"); /* copied from the service */
  assert_string_equal(jstr(cat_result(j, 3, "Service"), "ID"), "web1");
  json_decref(j);
  assert_int_equal(state_table_index(s, "nodes"), 5);
  assert_non_null(state_check_get(s, "n2", "c1"));

  /* cas with the right index updates; the stale and set-if-absent cases fail. */
  web.port = 81;
  struct state_txn_op cas[] = {
      {.kind = STATE_TXN_SERVICE, .verb = "cas", .node = "n2", .service_id = "web1", .index = 5,
       .reg = &svc},
  };
  j = run(s, 6, cas, 1, &ok);
  assert_true(ok);
  assert_int_equal(jint(cat_result(j, 0, "Service"), "Port"), 81);
  assert_int_equal(jint(cat_result(j, 0, "Service"), "ModifyIndex"), 6);
  json_decref(j);

  struct state_txn_op bad[] = {
      {.kind = STATE_TXN_SERVICE, .verb = "cas", .node = "n2", .service_id = "web1", .index = 5,
       .reg = &svc},
      {.kind = STATE_TXN_NODE, .verb = "cas", .node = "n2", .index = 0, .reg = &n2},
      {.kind = STATE_TXN_CHECK, .verb = "cas", .node = "n2", .check_id = "c1", .index = 0,
       .reg = &chk},
      {.kind = STATE_TXN_NODE, .verb = "delete-cas", .node = "n2", .index = 1},
      {.kind = STATE_TXN_SERVICE, .verb = "delete-cas", .node = "n2", .service_id = "nope", .index = 0},
      {.kind = STATE_TXN_CHECK, .verb = "delete-cas", .node = "n2", .check_id = "c1", .index = 1},
      {.kind = STATE_TXN_SERVICE, .verb = "set", .node = "ghost", .service_id = "web1", .reg = &svc},
      {.kind = STATE_TXN_CHECK, .verb = "frob", .node = "n2", .check_id = "c1"},
      {.kind = STATE_TXN_NODE, .verb = "set", .node = "n3"}, /* no row */
  };
  struct state_register ghost_svc = svc;
  ghost_svc.node = "ghost";
  bad[6].reg = &ghost_svc;
  j = run(s, 7, bad, sizeof bad / sizeof bad[0], &ok);
  assert_false(ok);
  const char *want[] = {
      "failed to set service \"web1\" on node \"n2\", index is stale",
      "failed to set node \"n2\", index is stale",
      "failed to set check \"c1\" on node \"n2\", index is stale",
      "failed to delete node \"n2\", index is stale",
      "failed to delete service \"nope\" on node \"n2\", index is stale",
      "failed to delete check \"c1\" on node \"n2\", index is stale",
      "Missing node registration",
      "unknown Check verb \"frob\"",
      "invalid operation",
  };
  assert_int_equal(json_array_size(json_object_get(j, "Errors")), sizeof want / sizeof want[0]);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) assert_string_equal(what(j, i), want[i]);
  json_decref(j);

  /* A check on a service that is not there. */
  struct state_register_check ck2 = {.node = "n2", .check_id = "c2", .name = "c2",
                                     .service_id = "nosvc"};
  struct state_register chk2 = {.node = "n2", .skip_node_update = true, .checks = &ck2,
                                .n_checks = 1};
  struct state_txn_op miss[] = {
      {.kind = STATE_TXN_CHECK, .verb = "set", .node = "n2", .check_id = "c2", .reg = &chk2}};
  j = run(s, 8, miss, 1, &ok);
  assert_false(ok);
  assert_string_equal(what(j, 0), "Missing service registration");
  json_decref(j);

  /* Deletes: absent rows are fine; delete-cas with the right index removes. */
  struct state_txn_op del[] = {
      {.kind = STATE_TXN_CHECK, .verb = "delete", .node = "n2", .check_id = "nope"},
      {.kind = STATE_TXN_CHECK, .verb = "delete-cas", .node = "n2", .check_id = "c1", .index = 5},
      {.kind = STATE_TXN_SERVICE, .verb = "delete", .node = "n2", .service_id = "web1"},
      {.kind = STATE_TXN_NODE, .verb = "delete", .node = "n9"},
  };
  j = run(s, 9, del, 4, &ok);
  assert_true(ok);
  assert_int_equal(json_array_size(json_object_get(j, "Results")), 0);
  json_decref(j);
  assert_null(state_check_get(s, "n2", "c1"));
  assert_null(state_service_get(s, "n2", "web1"));
  assert_non_null(state_node_get(s, "n2"));
  struct state_txn_op deln[] = {
      {.kind = STATE_TXN_NODE, .verb = "delete-cas", .node = "n2", .index = 5}};
  j = run(s, 10, deln, 1, &ok);
  assert_true(ok);
  json_decref(j);
  assert_null(state_node_get(s, "n2"));
  state_store_free(s);
}

static int fired_nodes, fired_kv;
static void on_nodes(void *arg)
{
  struct state_store *s = arg;
  /* Woken only after the whole transaction: never sees a half-applied one (the KV write
   * without the node, or the other way round). */
  assert_int_equal(state_kv_get(s, "k", 1, NULL) != NULL, state_node_get(s, "n3") != NULL);
  fired_nodes++;
}
static void on_kv(void *arg)
{
  (void)arg;
  fired_kv++;
}

static void test_catalog_rollback(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  session_setup(s, 1); /* n1 with sessions S1, S2 */
  struct state_register_service web = {.id = "web1", .name = "web", .port = 80};
  struct state_register_check ck = {.check_id = "c1", .name = "c1", .status = "passing",
                                    .service_id = "web1"};
  struct state_register reg = {.node = "n1", .address = "127.0.0.1", .service = &web,
                               .checks = &ck, .n_checks = 1};
  assert_int_equal(state_catalog_register(s, 2, &reg, NULL, 0), 0);
  struct state_register other = {.node = "n2", .address = "10.0.0.2"};
  assert_int_equal(state_catalog_register(s, 3, &other, NULL, 0), 0);
  /* A session tied to c1, holding a lock: a critical c1 would destroy it and free the key. */
  static const char *const c1[] = {"c1"};
  struct state_session se = {.id = "44444444-4444-4444-4444-444444444444", .node = "n1",
                             .checks = c1, .n_checks = 1};
  assert_int_equal(state_session_create(s, 4, &se, NULL, 0), 0);
  struct state_kv_op lk = {.verb = STATE_KV_LOCK, .key = "held", .key_len = 4, .session = se.id};
  assert_int_equal(state_kv_apply(s, 5, &lk, NULL), 0);
  /* A prepared query bound to that session: destroying the session would delete it. */
  static const char qjson[] =
      "{\"Session\":\"44444444-4444-4444-4444-444444444444\",\"Service\":{\"Service\":\"web\"}}";
  assert_int_equal(state_query_set(s, 6, "aaaaaaaa-1111-2222-3333-444444444444", qjson,
                                   strlen(qjson), NULL, 0),
                   0);

  struct buf before = BUF_INIT, after = BUF_INIT;
  snap(s, &before);

  struct state_register n3 = {.node = "n3", .address = "10.0.0.3"};
  struct state_register_service db = {.id = "db", .name = "db", .port = 5432};
  struct state_register dbreg = {.node = "n2", .skip_node_update = true, .service = &db};
  struct state_register_check crit = {.node = "n1", .check_id = "c1", .name = "c1",
                                      .status = "critical", .service_id = "web1"};
  struct state_register critreg = {.node = "n1", .skip_node_update = true, .checks = &crit,
                                   .n_checks = 1};
  struct state_txn_op ops[] = {
      kvop("set", "k", "v", 0, NULL),
      {.kind = STATE_TXN_NODE, .verb = "set", .node = "n3", .reg = &n3},
      {.kind = STATE_TXN_SERVICE, .verb = "set", .node = "n2", .service_id = "db", .reg = &dbreg},
      {.kind = STATE_TXN_CHECK, .verb = "set", .node = "n1", .check_id = "c1", .reg = &critreg},
      {.kind = STATE_TXN_NODE, .verb = "delete", .node = "n2"},
      {.kind = STATE_TXN_SERVICE, .verb = "delete", .node = "n1", .service_id = "web1"},
      kvop("check-not-exists", "k", NULL, 0, NULL), /* fails: set above */
  };
  fired_nodes = fired_kv = 0;
  state_watch_add(s, STATE_WATCH_TABLE, "nodes", 5, on_nodes, s);
  state_watch_add(s, STATE_WATCH_KV_KEY, "held", 4, on_kv, NULL);
  bool ok = true;
  json_t *j = run(s, 20, ops, sizeof ops / sizeof ops[0], &ok);
  assert_false(ok);
  assert_int_equal(json_array_size(json_object_get(j, "Errors")), 1);
  assert_string_equal(what(j, 0), "key \"k\" exists");
  json_decref(j);
  (void)fired_nodes;

  /* Byte-identical to the store before, but for the consumed index. */
  struct state_store *t = state_store_new();
  assert_int_equal(state_store_restore(t, before.data, before.len), 0);
  struct buf noop = BUF_INIT;
  state_cmd_encode_noop(&noop);
  assert_int_equal(state_cmd_apply(t, 20, noop.data, noop.len, NULL), 0);
  snap(t, &before);
  buf_free(&noop);
  state_store_free(t);
  snap(s, &after);
  assert_int_equal(before.len, after.len);
  assert_memory_equal(before.data, after.data, before.len);
  assert_non_null(state_session_get(s, se.id));
  assert_string_equal(state_kv_get(s, "held", 4, NULL)->session, se.id);
  assert_int_equal(state_session_held_count(s, se.id), 1);
  assert_int_equal(state_query_count(s), 1);
  assert_null(state_node_get(s, "n3"));
  assert_non_null(state_service_get(s, "n1", "web1"));
  assert_true(fired_kv > 0); /* spurious wakes allowed */
  /* The store still works: the same ops minus the failing one commit. */
  j = run(s, 21, ops, 6, &ok);
  assert_true(ok);
  json_decref(j);
  assert_null(state_session_get(s, se.id)); /* c1 went critical */
  assert_int_equal(state_query_count(s), 0);  /* and took its query along */
  assert_null(state_kv_get(s, "held", 4, NULL)->session);
  assert_null(state_node_get(s, "n2"));
  assert_non_null(state_node_get(s, "n3"));
  assert_true(fired_nodes > 0);
  buf_free(&before);
  buf_free(&after);
  state_store_free(s);
}

static void test_catalog_command_roundtrip(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct state_pair meta[] = {{"rack", "r1"}};
  struct state_register n1 = {.node = "n1", .id = "11111111-2222-3333-4444-555555555555",
                              .address = "10.0.0.1", .datacenter = "dc1",
                              .node_meta = {meta, 1, false}};
  const char *tags[] = {"v1", "primary"};
  struct state_register_service web = {.id = "web1", .name = "web", .port = 80, .tags = tags,
                                       .n_tags = 2, .has_weights = true, .weight_passing = 1};
  struct state_register svc = {.node = "n1", .skip_node_update = true, .service = &web};
  struct state_register_check ck = {.node = "n1", .check_id = "c1", .name = "c1",
                                    .status = "warning", .service_id = "web1",
                                    .definition = "{\"Interval\":\"10s\",\"HTTP\":\"http://x/\"}"};
  struct state_register chk = {.node = "n1", .skip_node_update = true, .checks = &ck,
                               .n_checks = 1};
  struct state_txn_op ops[] = {
      {.kind = STATE_TXN_NODE, .verb = "set", .node = "n1", .node_id = n1.id, .reg = &n1},
      {.kind = STATE_TXN_SERVICE, .verb = "cas", .node = "n1", .service_id = "web1", .reg = &svc},
      {.kind = STATE_TXN_CHECK, .verb = "set", .node = "n1", .check_id = "c1", .reg = &chk},
      {.kind = STATE_TXN_NODE, .verb = "get", .node = "x", .node_id = n1.id},
      kvop("set", "k", "v", 0, NULL),
  };
  struct buf b = BUF_INIT;
  state_cmd_encode_txn(&b, ops, 5);
  corpus_save("catalog-set", &b);
  assert_int_equal(state_cmd_validate(b.data, b.len), 0);
  struct state_cmd_result res;
  assert_int_equal(state_cmd_apply(s, 3, b.data, b.len, &res), 0);
  assert_true(res.ok);
  json_t *j = json_loadb(res.body, res.body_len, 0, NULL);
  assert_non_null(j);
  assert_string_equal(jstr(cat_result(j, 3, "Node"), "Node"), "n1"); /* found by ID */
  assert_string_equal(jstr(json_object_get(cat_result(j, 0, "Node"), "Meta"), "rack"), "r1");
  assert_int_equal(json_array_size(json_object_get(cat_result(j, 1, "Service"), "Tags")), 2);
  assert_string_equal(jstr(json_object_get(cat_result(j, 2, "Check"), "Definition"), "HTTP"),
                      "http://x/");
  json_decref(j);
  for (size_t n = 0; n < b.len; n++) assert_int_equal(state_cmd_validate(b.data, n), CC_ECORRUPT);

  struct state_txn_op dels[] = {
      {.kind = STATE_TXN_CHECK, .verb = "delete-cas", .node = "n1", .check_id = "c1", .index = 3},
      {.kind = STATE_TXN_SERVICE, .verb = "delete", .node = "n1", .service_id = "web1"},
      {.kind = STATE_TXN_NODE, .verb = "delete-cas", .node = "n1", .index = 3},
  };
  buf_reset(&b);
  state_cmd_encode_txn(&b, dels, 3);
  corpus_save("catalog-delete", &b);
  assert_int_equal(state_cmd_apply(s, 4, b.data, b.len, &res), 0);
  assert_true(res.ok);
  assert_int_equal(state_node_count(s), 0);
  buf_free(&b);
  state_store_free(s);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_success_results),
      cmocka_unit_test(test_failure_rolls_back_everything),
      cmocka_unit_test(test_error_sentences),
      cmocka_unit_test(test_catalog_reads_and_readonly),
      cmocka_unit_test(test_command_roundtrip),
      cmocka_unit_test(test_catalog_writes),
      cmocka_unit_test(test_catalog_rollback),
      cmocka_unit_test(test_catalog_command_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
