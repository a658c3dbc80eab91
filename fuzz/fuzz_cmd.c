/* fuzz_cmd.c -- libFuzzer target for the Raft command decoder (src/state/cmd.c).
 *
 * Raft entries come from disk and from other servers, so any bytes must give CC_ECORRUPT or
 * a valid command, never a crash, a leak or a sanitizer report. Each input is validated,
 * then applied to a small store holding a locked key, a plain key and a tombstone (so that
 * CAS, lock and tree verbs have something to act on), and the invariants are checked:
 * validate and apply agree, a corrupt command changes nothing, and the store afterwards
 * still snapshots and restores to the same bytes. Seeds: fuzz/corpus/cmd/, written by
 * tests/unit/test_cmd.c (CONCORD_CMD_CORPUS=dir). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "state/catalog.h"
#include "state/cmd.h"
#include "state/session.h"
#include "state/store.h"
#include "state/watch.h"

static void noop_fn(void *arg) { (void)arg; }

static struct state_store *seeded_store(void)
{
  struct state_store *s = state_store_new();
  struct state_kv_op op = {.verb = STATE_KV_SET, .key = "k", .key_len = 1,
                           .value = (const uint8_t *)"v", .value_len = 1};
  state_kv_apply(s, 1, &op, NULL);
  op.key = "a/b";
  op.key_len = 3;
  state_kv_apply(s, 2, &op, NULL);
  op.verb = STATE_KV_DELETE;
  state_kv_apply(s, 3, &op, NULL);
  /* A real session on a real node holds "lock", so unlock/lock/destroy inputs meet a held
   * key (locks need a live session since sessions exist). */
  struct state_register reg = {.node = "n1", .address = "127.0.0.1"};
  if (state_catalog_register(s, 4, &reg, NULL, 0) != 0) abort();
  static const char *const no_checks[1] = {NULL};
  struct state_session sess = {.id = "11111111-2222-4333-8444-555555555555", .node = "n1",
                               .behavior = "release", .ttl = "", .node_checks = no_checks,
                               .n_node_checks = 0, .service_checks_null = true};
  if (state_session_create(s, 5, &sess, NULL, 0) != 0) abort();
  op.verb = STATE_KV_LOCK;
  op.key = "lock";
  op.key_len = 4;
  op.session = sess.id;
  bool ok = false;
  if (state_kv_apply(s, 6, &op, &ok) != 0 || !ok) abort();
  state_watch_add(s, STATE_WATCH_KV_PREFIX, "", 0, noop_fn, NULL);
  state_watch_add(s, STATE_WATCH_KV_KEY, "k", 1, noop_fn, NULL);
  state_watch_add(s, STATE_WATCH_TABLE, "kvs", 3, noop_fn, NULL);
  return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  int valid = state_cmd_validate(data, size);
  if (valid != 0 && valid != CC_ECORRUPT) abort();

  struct state_store *s = seeded_store();
  struct buf before = BUF_INIT, after = BUF_INIT;
  state_store_snapshot(s, &before);
  struct state_cmd_result res;
  int rc = state_cmd_apply(s, 10, data, size, &res);
  if (rc != valid) abort();
  state_store_snapshot(s, &after);
  if (rc && (before.len != after.len || memcmp(before.data, after.data, before.len))) abort();

  /* Whatever the command did, the store must still round-trip. */
  struct state_store *t = state_store_new();
  if (state_store_restore(t, after.data, after.len) != 0) abort();
  buf_reset(&before);
  state_store_snapshot(t, &before);
  if (before.len != after.len || memcmp(before.data, after.data, before.len)) abort();

  buf_free(&before);
  buf_free(&after);
  state_store_free(t);
  state_store_free(s);
  return 0;
}
