/* fsm.c -- libraft's finite state machine callbacks over the state store: apply a committed
 * command at its Raft index, take a snapshot, restore one.
 *
 * The entry's index. libraft 0.15's FSM apply receives only the entry's bytes, yet every row
 * must be stamped with the entry's Raft index (CreateIndex/ModifyIndex, X-Consul-Index). Its
 * replicationApply() (src/replication.c) applies entries strictly in order, from
 * last_applied + 1 up to commit_index, and only sets last_applied = index after the FSM
 * returned; snapshot restores set last_applied to the snapshot's index before the next apply.
 * So during apply the entry's index is raft_last_applied() + 1, on the leader, on followers,
 * and while replaying the log at start-up. The apply request's callback checks it against
 * the index raft_apply() gave the request (consensus.c), and tests/unit/test_consensus.c
 * pins it against the rows' ModifyIndex.
 *
 * Framing. Commands are padded to a multiple of 8 bytes in the log (internal.h says why);
 * the FSM strips the padding before the state store decodes the command.
 *
 * Errors. If the FSM's apply returns non-zero, libraft stops applying and retries the same
 * entry at the next commit, forever. A command that does not decode is the same bytes on
 * every server, so skipping it is deterministic: we log it, hand CC_ECORRUPT to the proposer
 * in the result, and return 0.
 *
 * Snapshots are taken synchronously on the loop (FSM version 2). libraft 0.15's uv backend is
 * raft_io version 1, which has no async_work, so the FSM's snapshot_async (version 3) cannot
 * be used; the store's encoder is a single pass over memory, and libraft writes the file (and
 * compresses it with LZ4 when built with it) on the thread pool without blocking appends.
 * With version 2's snapshot_finalize we keep ownership of the encoded bytes and free them
 * ourselves, saving a copy into raft_malloc memory. */
#include <stdlib.h>

#include "consensus/internal.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/log.h"

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
  struct consensus *c = fsm->data;
  uint64_t index = raft_last_applied(c->r) + 1;
  struct state_cmd_result res = {0, false};

  long n = consensus__unframe(buf->base, buf->len);
  int rv = n < 0 ? CC_ECORRUPT : state_cmd_apply(c->store, index, buf->base, (size_t)n, &res);
  if (rv != 0) {
    log_error("raft", "skipping log entry %llu: %s (%zu bytes)", (unsigned long long)index,
              cc_strerror(rv), buf->len);
    res.err = rv;
    res.ok = false;
  }
  c->applied.res = res;
  c->applied.index = index;
  *result = &c->applied;
  return 0;
}

/* Encodes the whole store into one buffer that we own; raft holds it until it calls
 * fsm_snapshot_finalize (after the file is written, or on failure). */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
  struct consensus *c = fsm->data;
  struct buf b = BUF_INIT;
  uint64_t t0 = uv_hrtime();

  state_store_snapshot(c->store, &b);
  struct raft_buffer *out = xmalloc(sizeof *out);
  size_t len = 0;
  out->base = buf_steal(&b, &len);
  out->len = len;
  *bufs = out;
  *n_bufs = 1;
  log_debug("raft", "snapshot at index %llu: %zu bytes encoded in %.1f ms",
            (unsigned long long)raft_last_applied(c->r), len, (uv_hrtime() - t0) / 1e6);
  return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                                 unsigned *n_bufs)
{
  (void)fsm;
  if (*bufs != NULL) {
    for (unsigned i = 0; i < *n_bufs; i++) free((*bufs)[i].base);
    free(*bufs);
  }
  *bufs = NULL;
  *n_bufs = 0;
  return 0;
}

/* On success libraft hands us buf->base (allocated with raft_malloc) and we free it; on
 * failure it keeps it (src/snapshot.c, snapshotRestore). */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
  struct consensus *c = fsm->data;
  int rv = state_store_restore(c->store, buf->base, buf->len);
  if (rv != 0) {
    log_error("raft", "cannot restore snapshot (%zu bytes): %s", buf->len, cc_strerror(rv));
    return RAFT_CORRUPT;
  }
  log_info("raft", "restored snapshot (%zu bytes), store index %llu", buf->len,
           (unsigned long long)state_store_index(c->store));
  raft_free(buf->base);
  return 0;
}

void consensus__fsm_init(struct consensus *c)
{
  c->fsm.version = 2;
  c->fsm.data = c;
  c->fsm.apply = fsm_apply;
  c->fsm.snapshot = fsm_snapshot;
  c->fsm.restore = fsm_restore;
  c->fsm.snapshot_finalize = fsm_snapshot_finalize;
  c->fsm.snapshot_async = NULL;
}
