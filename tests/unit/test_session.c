/* test_session.c -- the sessions table (state/session.h): Consul's create rules, destroy with
 * release and delete behaviours, lock-delay on a fake clock, invalidation by node and check
 * failure, TTL deadlines, the session command and snapshots (ported from Consul's
 * agent/consul/state/session_test.go where one exists).
 *
 * With CONCORD_CMD_CORPUS=<dir> set, also writes each encoded session command there as a
 * seed for fuzz/fuzz_cmd.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "state/catalog.h"
#include "state/cmd.h"
#include "state/session.h"
#include "state/store.h"
#include "state/watch.h"

#define S1 "11111111-1111-1111-1111-111111111111"
#define S2 "22222222-2222-2222-2222-222222222222"
#define S3 "33333333-3333-3333-3333-333333333333"

/* ---- helpers ---- */

static uint64_t fake_now;
static uint64_t fake_clock(void *arg)
{
  (void)arg;
  return fake_now;
}

static struct state_store *new_store(void)
{
  struct state_store *s = state_store_new();
  fake_now = 1000000;
  state_store_set_clock(s, fake_clock, NULL);
  return s;
}

static int corpus_n;
static void corpus_save(const char *name, const struct buf *b)
{
  const char *dir = getenv("CONCORD_CMD_CORPUS");
  if (!dir) return;
  char path[512];
  snprintf(path, sizeof path, "%s/session-%02d-%s", dir, corpus_n++, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b->data, 1, b->len, f), b->len);
  fclose(f);
}

/* A node with a serfHealth check of the given status. */
static void reg_node(struct state_store *s, uint64_t idx, const char *node, const char *status)
{
  struct state_register_check ck = {.check_id = "serfHealth", .name = "Serf", .status = status};
  struct state_register reg = {.node = node, .address = "10.0.0.1", .checks = &ck, .n_checks = 1};
  assert_int_equal(state_catalog_register(s, idx, &reg, NULL, 0), 0);
}

static void reg_service_check(struct state_store *s, uint64_t idx, const char *node,
                              const char *svc, const char *check, const char *status)
{
  struct state_register_service sv = {.id = svc, .name = svc, .port = 80};
  struct state_register_check ck = {.check_id = check, .name = check, .status = status,
                                    .service_id = svc};
  struct state_register reg = {.node = node, .address = "10.0.0.1", .service = &sv,
                               .checks = &ck, .n_checks = 1, .skip_node_update = true};
  assert_int_equal(state_catalog_register(s, idx, &reg, NULL, 0), 0);
}

static const char *const serf[] = {"serfHealth"};

static int create(struct state_store *s, uint64_t idx, const char *id, const char *node,
                  const char *behavior, int64_t delay_ns, char *err)
{
  struct state_session se = {.id = id, .node = node, .behavior = behavior,
                             .lock_delay_ns = delay_ns, .node_checks = serf, .n_node_checks = 1,
                             .service_checks_null = true};
  return state_session_create(s, idx, &se, err, 256);
}

static bool kv(struct state_store *s, uint64_t idx, enum state_kv_verb verb, const char *key,
               const char *value, const char *session, int *rc)
{
  struct state_kv_op op = {.verb = verb, .key = key, .key_len = strlen(key),
                           .value = (const uint8_t *)value, .value_len = value ? strlen(value) : 0,
                           .session = session};
  bool ok = false;
  int r = state_kv_apply(s, idx, &op, &ok);
  if (rc) *rc = r;
  else assert_int_equal(r, 0);
  return ok;
}

/* ---- create ---- */

static void test_create_rules(void **st)
{
  (void)st;
  struct state_store *s = new_store();
  char err[256];
  /* The node must exist. */
  assert_int_equal(create(s, 1, S1, "n1", NULL, 0, err), CC_ENOTFOUND);
  assert_string_equal(err, "Missing node registration");
  assert_int_equal(state_table_index(s, "sessions"), 0);
  reg_node(s, 2, "n1", "passing");
  /* An ID is required and must be a UUID; Behavior must be known. */
  assert_int_equal(create(s, 3, "", "n1", NULL, 0, err), CC_EINVAL);
  assert_string_equal(err, "Missing session ID");
  assert_int_equal(create(s, 3, "nope", "n1", NULL, 0, err), CC_EINVAL);
  assert_int_equal(create(s, 3, S1, "n1", "explode", 0, err), CC_EINVAL);
  assert_string_equal(err, "Invalid session behavior: explode");
  /* Checks must exist and not be critical. */
  const char *const missing[] = {"nope"};
  struct state_session se = {.id = S1, .node = "n1", .node_checks = missing, .n_node_checks = 1};
  assert_int_equal(state_session_create(s, 3, &se, err, sizeof err), CC_ENOTFOUND);
  assert_string_equal(err, "Missing check 'nope' registration");
  reg_node(s, 4, "n2", "critical");
  assert_int_equal(create(s, 5, S1, "n2", NULL, 0, err), CC_ECONFLICT);
  assert_string_equal(err, "Check 'serfHealth' is in critical state");
  /* Service checks too (by ID, on the session's node). */
  reg_service_check(s, 6, "n1", "web", "web-check", "critical");
  struct state_session_check sc = {"web-check", ""};
  se = (struct state_session){.id = S1, .node = "n1", .service_checks = &sc, .n_service_checks = 1};
  assert_int_equal(state_session_create(s, 7, &se, err, sizeof err), CC_ECONFLICT);
  assert_string_equal(err, "Check 'web-check' is in critical state");
  assert_int_equal(state_session_count(s), 0);

  /* A good one: defaults filled, indexes set, node case-insensitive. */
  assert_int_equal(create(s, 8, S1, "N1", NULL, 15000000000LL, err), 0);
  const struct state_session *got = state_session_get(s, S1);
  assert_non_null(got);
  assert_string_equal(got->behavior, "release");
  assert_string_equal(got->node, "N1");
  assert_int_equal(got->create_index, 8);
  assert_int_equal(got->modify_index, 8);
  assert_int_equal(got->n_node_checks, 1);
  assert_string_equal(got->node_checks[0], "serfHealth");
  assert_true(got->service_checks_null);
  assert_int_equal(state_table_index(s, "sessions"), 8);
  assert_int_equal(state_store_index(s), 8);
  /* Lookups ignore case; the same ID again is refused. */
  assert_non_null(state_session_get(s, "11111111-1111-1111-1111-111111111111"));
  assert_int_equal(create(s, 9, "11111111-1111-1111-1111-111111111111", "n1", NULL, 0, err),
                   CC_ECONFLICT);
  /* Index below one applied before. */
  assert_int_equal(create(s, 7, S2, "n1", NULL, 0, err), CC_EINVAL);
  state_store_free(s);
}

static int collect_ids(const struct state_session *se, void *arg)
{
  struct buf *b = arg;
  buf_printf(b, "%s,", se->id);
  return 0;
}

static void test_list_and_node(void **st)
{
  (void)st;
  struct state_store *s = new_store();
  reg_node(s, 1, "n1", "passing");
  reg_node(s, 2, "n2", "passing");
  assert_int_equal(create(s, 3, S3, "n1", NULL, 0, NULL), 0);
  assert_int_equal(create(s, 4, S1, "n2", NULL, 0, NULL), 0);
  assert_int_equal(create(s, 5, S2, "n1", NULL, 0, NULL), 0);
  struct buf b = BUF_INIT;
  state_session_list(s, collect_ids, &b);
  assert_string_equal(b.data, S1 "," S2 "," S3 ",");
  buf_reset(&b);
  state_session_node(s, "N1", collect_ids, &b);
  assert_string_equal(b.data, S2 "," S3 ",");
  buf_reset(&b);
  state_session_node(s, "nobody", collect_ids, &b);
  assert_int_equal(b.len, 0);
  buf_free(&b);
  state_store_free(s);
}

/* ---- destroy, locks, lock-delay ---- */

static void test_lock_needs_session(void **st)
{
  (void)st;
  struct state_store *s = new_store();
  int rc;
  char err[128];
  struct state_kv_op op = {.verb = STATE_KV_LOCK, .key = "k", .key_len = 1, .session = S1};
  bool ok = true;
  assert_int_equal(state_kv_apply_msg(s, 1, &op, &ok, err, sizeof err), CC_ENOTFOUND);
  assert_false(ok);
  assert_string_equal(err, "invalid session \"" S1 "\"");
  assert_null(state_kv_get(s, "k", 1, NULL));
  reg_node(s, 2, "n1", "passing");
  assert_int_equal(create(s, 3, S1, "n1", NULL, 0, NULL), 0);
  assert_true(kv(s, 4, STATE_KV_LOCK, "k", "v", S1, &rc));
  assert_int_equal(state_session_held_count(s, S1), 1);
  /* An unlock does not need the session to exist, only to hold the key. */
  assert_false(kv(s, 5, STATE_KV_UNLOCK, "k", "v", S2, NULL));
  assert_true(kv(s, 6, STATE_KV_UNLOCK, "k", "v", S1, NULL));
  assert_int_equal(state_session_held_count(s, S1), 0);
  state_store_free(s);
}

static int fired;
static void on_fire(void *arg)
{
  (void)arg;
  fired++;
}

static void test_destroy_release(void **st)
{
  (void)st;
  struct state_store *s = new_store();
  reg_node(s, 1, "n1", "passing");
  assert_int_equal(create(s, 2, S1, "n1", NULL, 10 * 1000000000LL, NULL), 0);
  assert_true(kv(s, 3, STATE_KV_LOCK, "a", "1", S1, NULL));
  assert_true(kv(s, 4, STATE_KV_LOCK, "b", "2", S1, NULL));
  assert_true(kv(s, 5, STATE_KV_SET, "c", "3", NULL, NULL));
  assert_int_equal(state_session_held_count(s, S1), 2);
  fired = 0;
  state_watch_add(s, STATE_WATCH_TABLE, "sessions", 8, on_fire, NULL);
  state_watch_add(s, STATE_WATCH_KV_KEY, "a", 1, on_fire, NULL);
  state_watch_add(s, STATE_WATCH_KV_KEY, "c", 1, on_fire, NULL);

  assert_int_equal(state_session_destroy(s, 6, S1), 0);
  assert_int_equal(fired, 2); /* sessions and "a", not "c" */
  assert_null(state_session_get(s, S1));
  assert_int_equal(state_table_index(s, "sessions"), 6);
  const struct state_kv *e = state_kv_get(s, "a", 1, NULL);
  assert_null(e->session);
  assert_int_equal(e->lock_index, 1);
  assert_int_equal(e->modify_index, 6);
  assert_int_equal(e->create_index, 3);
  assert_string_equal((const char *)e->value, "1");
  assert_int_equal(state_kv_get(s, "c", 1, NULL)->modify_index, 5);

  /* Lock-delay: 10 s on the released keys only, on the store's clock. */
  assert_int_equal(state_kv_lock_delay_ms(s, "a", 1), 10000);
  assert_int_equal(state_kv_lock_delay_ms(s, "b", 1), 10000);
  assert_int_equal(state_kv_lock_delay_ms(s, "c", 1), 0);
  fake_now += 9999;
  assert_int_equal(state_kv_lock_delay_ms(s, "a", 1), 1);
  fake_now += 1;
  assert_int_equal(state_kv_lock_delay_ms(s, "a", 1), 0);
  /* Destroying a missing session is a no-op success. */
  assert_int_equal(state_session_destroy(s, 7, S1), 0);
  assert_int_equal(state_table_index(s, "sessions"), 6);
  state_store_free(s);
}

static void test_destroy_delete_and_cap(void **st)
{
  (void)st;
  struct state_store *s = new_store();
  reg_node(s, 1, "n1", "passing");
  /* LockDelay over the 60 s cap is kept as given but applied as 60 s. */
  assert_int_equal(create(s, 2, S1, "n1", "delete", 120 * 1000000000LL, NULL), 0);
  assert_int_equal(state_session_get(s, S1)->lock_delay_ns, 120 * 1000000000LL);
  assert_true(kv(s, 3, STATE_KV_LOCK, "x/a", "1", S1, NULL));
  assert_int_equal(state_session_destroy(s, 4, S1), 0);
  assert_null(state_kv_get(s, "x/a", 3, NULL));
  assert_int_equal(state_tombstone_count(s), 1);
  assert_int_equal(state_kv_list(s, "x/", 2, NULL, NULL), 4);
  assert_int_equal(state_kv_lock_delay_ms(s, "x/a", 3), 60000);
  /* A zero delay sets none. */
  assert_int_equal(create(s, 5, S2, "n1", NULL, 0, NULL), 0);
  assert_true(kv(s, 6, STATE_KV_LOCK, "y", "1", S2, NULL));
  assert_int_equal(state_session_destroy(s, 7, S2), 0);
  assert_int_equal(state_kv_lock_delay_ms(s, "y", 1), 0);
  state_store_free(s);
}

static void test_held_keys_follow_rows(void **st)
{
  (void)st;
  struct state_store *s = new_store();
  reg_node(s, 1, "n1", "passing");
  assert_int_equal(create(s, 2, S1, "n1", NULL, 0, NULL), 0);
  assert_true(kv(s, 3, STATE_KV_LOCK, "t/a", "1", S1, NULL));
  assert_true(kv(s, 3, STATE_KV_LOCK, "t/b", "1", S1, NULL));
  assert_true(kv(s, 3, STATE_KV_LOCK, "u", "1", S1, NULL));
  assert_int_equal(state_session_held_count(s, S1), 3);
  /* Deleting a held key, or its tree, drops it from the session. */
  assert_true(kv(s, 4, STATE_KV_DELETE, "u", NULL, NULL, NULL));
  assert_int_equal(state_session_held_count(s, S1), 2);
  struct state_kv_op op = {.verb = STATE_KV_DELETE_TREE, .key = "t/", .key_len = 2};
  assert_int_equal(state_kv_apply(s, 5, &op, NULL), 0);
  assert_int_equal(state_session_held_count(s, S1), 0);
  /* So the destroy touches nothing. */
  assert_true(kv(s, 6, STATE_KV_SET, "t/a", "again", NULL, NULL));
  assert_int_equal(state_session_destroy(s, 7, S1), 0);
  assert_int_equal(state_kv_get(s, "t/a", 3, NULL)->modify_index, 6);
  state_store_free(s);
}

/* ---- invalidation ---- */

static void test_invalidate_node_delete(void **st)
{
  (void)st;
  struct state_store *s = new_store();
  reg_node(s, 1, "n1", "passing");
  reg_node(s, 1, "n2", "passing");
  assert_int_equal(create(s, 2, S1, "n1", NULL, 5 * 1000000000LL, NULL), 0);
  assert_int_equal(create(s, 2, S2, "n2", NULL, 0, NULL), 0);
  assert_true(kv(s, 3, STATE_KV_LOCK, "lock", "v", S1, NULL));
  struct state_deregister d = {.node = "N1"};
  assert_int_equal(state_catalog_deregister(s, 4, &d, NULL, 0), 0);
  assert_null(state_session_get(s, S1));
  assert_non_null(state_session_get(s, S2));
  const struct state_kv *e = state_kv_get(s, "lock", 4, NULL);
  assert_null(e->session);
  assert_int_equal(e->modify_index, 4);
  assert_int_equal(state_table_index(s, "sessions"), 4);
  assert_int_equal(state_kv_lock_delay_ms(s, "lock", 4), 5000);
  state_store_free(s);
}

static void test_invalidate_check(void **st)
{
  (void)st;
  struct state_store *s = new_store();
  reg_node(s, 1, "n1", "passing");
  reg_service_check(s, 1, "n1", "web", "web-check", "passing");
  assert_int_equal(create(s, 2, S1, "n1", NULL, 0, NULL), 0); /* serfHealth */
  struct state_session_check sc = {"web-check", ""};
  struct state_session se = {.id = S2, .node = "n1", .service_checks = &sc, .n_service_checks = 1};
  assert_int_equal(state_session_create(s, 2, &se, NULL, 0), 0);
  se = (struct state_session){.id = S3, .node = "n1"}; /* no checks at all */
  assert_int_equal(state_session_create(s, 2, &se, NULL, 0), 0);
  assert_true(kv(s, 3, STATE_KV_LOCK, "svc-lock", "v", S2, NULL));

  /* A warning changes nothing; a critical service check takes its session only. */
  reg_service_check(s, 4, "n1", "web", "web-check", "warning");
  assert_int_equal(state_session_count(s), 3);
  reg_service_check(s, 5, "n1", "web", "WEB-CHECK", "critical");
  assert_null(state_session_get(s, S2));
  assert_non_null(state_session_get(s, S1));
  assert_null(state_kv_get(s, "svc-lock", 8, NULL)->session);
  assert_int_equal(state_kv_get(s, "svc-lock", 8, NULL)->modify_index, 5);

  /* Deleting the node-level check takes the serfHealth session. */
  struct state_deregister d = {.node = "n1", .check_id = "serfHealth"};
  assert_int_equal(state_catalog_deregister(s, 6, &d, NULL, 0), 0);
  assert_null(state_session_get(s, S1));
  assert_non_null(state_session_get(s, S3));
  assert_int_equal(state_table_index(s, "sessions"), 6);
  state_store_free(s);
}

/* ---- TTL deadlines ---- */

static void test_ttl(void **st)
{
  (void)st;
  struct state_store *s = new_store();
  reg_node(s, 1, "n1", "passing");
  struct state_session se = {.id = S1, .node = "n1", .ttl = "10s"};
  assert_int_equal(state_session_create(s, 2, &se, NULL, 0), 0);
  se = (struct state_session){.id = S2, .node = "n1"}; /* no TTL */
  assert_int_equal(state_session_create(s, 2, &se, NULL, 0), 0);
  char ids[4][STATE_SESSION_ID_LEN + 1];
  /* Not tracking (a follower): nothing expires. */
  fake_now += 3600 * 1000;
  assert_int_equal(state_session_ttl_expired(s, ids, 4, 1000), 0);
  assert_int_equal(state_session_ttl_next(s), 0);
  /* Leader: armed at now + TTL * 2. */
  state_session_ttl_track(s, true);
  uint64_t t0 = fake_now;
  assert_int_equal(state_session_ttl_next(s), t0 + 20000);
  fake_now = t0 + 19999;
  assert_int_equal(state_session_ttl_expired(s, ids, 4, 1000), 0);
  /* A renew pushes it back. */
  assert_non_null(state_session_renew(s, S1));
  assert_null(state_session_renew(s, S3));
  assert_int_equal(state_session_ttl_next(s), t0 + 19999 + 20000);
  fake_now = t0 + 25000; /* past the old deadline: a scan finds nothing */
  assert_int_equal(state_session_ttl_expired(s, ids, 4, 1000), 0);
  fake_now = t0 + 19999 + 20000;
  assert_int_equal(state_session_ttl_expired(s, ids, 4, 1000), 1);
  assert_string_equal(ids[0], S1);
  /* Pushed by the retry interval while the destroy is in flight. */
  assert_int_equal(state_session_ttl_expired(s, ids, 4, 1000), 0);
  assert_int_equal(state_session_ttl_next(s), fake_now + 1000);
  /* A session created while tracking is armed at once; losing leadership forgets all. */
  se = (struct state_session){.id = S3, .node = "n1", .ttl = "1m"};
  assert_int_equal(state_session_create(s, 3, &se, NULL, 0), 0);
  assert_int_equal(state_session_ttl_next(s), fake_now + 1000);
  assert_int_equal(state_session_destroy(s, 4, S1), 0);
  assert_int_equal(state_session_ttl_next(s), fake_now + 120000);
  state_session_ttl_track(s, false);
  assert_int_equal(state_session_ttl_next(s), 0);
  assert_false(state_session_ttl_tracking(s));
  state_store_free(s);
}

/* ---- commands and snapshots ---- */

static struct state_cmd_result apply(struct state_store *s, uint64_t idx, const struct buf *b)
{
  struct state_cmd_result res;
  assert_int_equal(state_cmd_validate(b->data, b->len), 0);
  assert_int_equal(state_cmd_apply(s, idx, b->data, b->len, &res), 0);
  return res;
}

static void test_commands(void **st)
{
  (void)st;
  struct state_store *s = new_store();
  reg_node(s, 1, "n1", "passing");
  const char *const nc[] = {"serfHealth"};
  const char *const legacy[] = {"serfHealth"};
  struct state_session_check sc = {"web-check", ""};
  struct state_session se = {.id = S1, .name = "my-lock", .node = "n1", .lock_delay_ns = 15000000000LL,
                             .behavior = "delete", .ttl = "30s", .node_checks = nc,
                             .n_node_checks = 1, .service_checks_null = true, .checks = legacy,
                             .n_checks = 1};
  struct buf b = BUF_INIT;
  state_cmd_encode_session_create(&b, &se);
  corpus_save("create", &b);
  struct state_cmd_result r = apply(s, 2, &b);
  assert_int_equal(r.err, 0);
  assert_true(r.ok);
  const struct state_session *got = state_session_get(s, S1);
  assert_string_equal(got->name, "my-lock");
  assert_string_equal(got->behavior, "delete");
  assert_string_equal(got->ttl, "30s");
  assert_int_equal(got->lock_delay_ns, 15000000000LL);
  assert_int_equal(got->n_checks, 1);
  assert_true(got->service_checks_null);

  /* Refused at apply: ok false with Consul's sentence, no error. */
  buf_reset(&b);
  se.id = S2;
  se.service_checks = &sc;
  se.n_service_checks = 1;
  se.service_checks_null = false;
  state_cmd_encode_session_create(&b, &se);
  corpus_save("create-missing-check", &b);
  r = apply(s, 3, &b);
  assert_int_equal(r.err, 0);
  assert_false(r.ok);
  assert_string_equal(r.msg, "Missing check 'web-check' registration");

  /* Lock through the command path; an unknown session is Consul's 500 sentence. */
  buf_reset(&b);
  struct state_kv_op op = {.verb = STATE_KV_LOCK, .key = "k", .key_len = 1, .session = S2};
  state_cmd_encode_kv(&b, &op);
  r = apply(s, 4, &b);
  assert_int_equal(r.err, CC_ENOTFOUND);
  assert_string_equal(r.msg, "invalid session \"" S2 "\"");
  buf_reset(&b);
  op.session = S1;
  state_cmd_encode_kv(&b, &op);
  assert_true(apply(s, 5, &b).ok);

  buf_reset(&b);
  state_cmd_encode_session_destroy(&b, S1);
  corpus_save("destroy", &b);
  r = apply(s, 6, &b);
  assert_true(r.ok);
  assert_null(state_session_get(s, S1));
  assert_null(state_kv_get(s, "k", 1, NULL)); /* Behavior delete */

  /* Malformed: unknown Op, no Session, a Session without ID, an over-long ID. */
  static const char *const bad[] = {
      "\x06\x82\xa2Op\xa4zzzz\xa7Session\x81\xa2ID\xa1x",
      "\x06\x81\xa2Op\xa6" "create",
      "\x06\x82\xa2Op\xa6" "create\xa7Session\x80",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(state_cmd_validate(bad[i], strlen(bad[i])), CC_ECORRUPT);
  buf_free(&b);
  state_store_free(s);
}

static void test_snapshot(void **st)
{
  (void)st;
  struct state_store *s = new_store();
  reg_node(s, 1, "n1", "passing");
  const char *const nc[] = {"serfHealth"};
  struct state_session_check sc = {"c1", "default"};
  struct state_session se = {.id = S1, .name = "a", .node = "n1", .lock_delay_ns = -5,
                             .ttl = "15s", .node_checks = nc, .n_node_checks = 1};
  assert_int_equal(state_session_create(s, 2, &se, NULL, 0), 0);
  reg_service_check(s, 3, "n1", "web", "c1", "passing");
  se = (struct state_session){.id = S2, .node = "n1", .node_checks_null = false,
                              .service_checks = &sc, .n_service_checks = 1, .behavior = "delete"};
  assert_int_equal(state_session_create(s, 4, &se, NULL, 0), 0);
  assert_true(kv(s, 5, STATE_KV_LOCK, "held", "v", S2, NULL));

  struct buf a = BUF_INIT, b = BUF_INIT;
  state_store_snapshot(s, &a);
  const char *dir = getenv("CONCORD_SNAPSHOT_CORPUS");
  if (dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/sessions", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(a.data, 1, a.len, f);
    fclose(f);
  }
  struct state_store *t = new_store();
  state_session_ttl_track(t, true);
  assert_int_equal(state_store_restore(t, a.data, a.len), 0);
  state_store_snapshot(t, &b);
  assert_int_equal(a.len, b.len);
  assert_memory_equal(a.data, b.data, a.len);
  assert_int_equal(state_session_count(t), 2);
  assert_int_equal(state_table_index(t, "sessions"), 4);
  const struct state_session *got = state_session_get(t, S2);
  assert_int_equal(got->n_service_checks, 1);
  assert_string_equal(got->service_checks[0].ns, "default");
  assert_true(got->node_checks_null == false && got->n_node_checks == 0);
  assert_int_equal(state_session_get(t, S1)->lock_delay_ns, -5);
  /* The held keys came back from the KV rows, and tracking re-armed the TTL. */
  assert_int_equal(state_session_held_count(t, S2), 1);
  assert_int_equal(state_session_ttl_next(t), fake_now + 30000);
  assert_int_equal(state_session_destroy(t, 6, S2), 0);
  assert_null(state_kv_get(t, "held", 4, NULL));
  buf_free(&a);
  buf_free(&b);
  state_store_free(t);
  state_store_free(s);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_rules),
      cmocka_unit_test(test_list_and_node),
      cmocka_unit_test(test_lock_needs_session),
      cmocka_unit_test(test_destroy_release),
      cmocka_unit_test(test_destroy_delete_and_cap),
      cmocka_unit_test(test_held_keys_follow_rows),
      cmocka_unit_test(test_invalidate_node_delete),
      cmocka_unit_test(test_invalidate_check),
      cmocka_unit_test(test_ttl),
      cmocka_unit_test(test_commands),
      cmocka_unit_test(test_snapshot),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
