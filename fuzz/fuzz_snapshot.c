/* fuzz_snapshot.c -- libFuzzer target for snapshot restore (src/state/snapshot.c).
 *
 * Snapshots are read from disk at start-up and received from the leader, so any bytes must
 * give CC_ECORRUPT (store unchanged) or a restored store, never a crash, a leak or a
 * sanitizer report. A restored store must snapshot to a document that restores again to the
 * same bytes. Seeds: fuzz/corpus/snapshot/, written by tests/unit/test_state.c
 * (CONCORD_SNAPSHOT_CORPUS=dir). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "state/store.h"
#include "state/watch.h"

static void noop_fn(void *arg) { (void)arg; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct state_store *s = state_store_new();
  struct state_kv_op op = {.verb = STATE_KV_SET, .key = "keep", .key_len = 4};
  state_kv_apply(s, 1, &op, NULL);
  state_watch_add(s, STATE_WATCH_KV_PREFIX, "k", 1, noop_fn, NULL);

  struct buf before = BUF_INIT, after = BUF_INIT, again = BUF_INIT;
  state_store_snapshot(s, &before);
  int rc = state_store_restore(s, data, size);
  if (rc != 0 && rc != CC_ECORRUPT) abort();
  state_store_snapshot(s, &after);
  if (rc) {
    if (before.len != after.len || memcmp(before.data, after.data, before.len)) abort();
  } else {
    struct state_store *t = state_store_new();
    if (state_store_restore(t, after.data, after.len) != 0) abort();
    state_store_snapshot(t, &again);
    if (again.len != after.len || memcmp(again.data, after.data, after.len)) abort();
    state_store_free(t);
  }
  buf_free(&before);
  buf_free(&after);
  buf_free(&again);
  state_store_free(s);
  return 0;
}
