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
 * Snapshots are encoded off the loop by a forked child (snapshot.c says why and how). */
#include <stdlib.h>

#include "consensus/internal.h"
#include "lib/err.h"
#include "lib/log.h"

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
  struct consensus *c = fsm->data;
  uint64_t index = raft_last_applied(c->r) + 1;
  struct state_cmd_result res = {0};

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

/* Snapshots: see snapshot.c. libraft calls `snapshot` on the loop, `snapshot_async` on its
 * thread pool, then `snapshot_finalize` on the loop, whatever happened in between (FSM
 * version 3; with finalize, the buffers stay ours). */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
  *bufs = NULL;
  *n_bufs = 0;
  return consensus__snapshot_start(fsm->data);
}

static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                              unsigned *n_bufs)
{
  return consensus__snapshot_collect(fsm->data, bufs, n_bufs);
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                                 unsigned *n_bufs)
{
  consensus__snapshot_finish(fsm->data, bufs, n_bufs);
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
  c->fsm.version = 3;
  c->fsm.data = c;
  c->fsm.apply = fsm_apply;
  c->fsm.snapshot = fsm_snapshot;
  c->fsm.restore = fsm_restore;
  c->fsm.snapshot_finalize = fsm_snapshot_finalize;
  c->fsm.snapshot_async = fsm_snapshot_async;
}
