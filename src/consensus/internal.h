/* internal.h -- what the files of src/consensus/ share: the consensus object and the hooks
 * between them. Nothing outside src/consensus/ includes this (libraft's types stay here). */
#ifndef CONCORD_CONSENSUS_INTERNAL_H
#define CONCORD_CONSENSUS_INTERNAL_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "lib/buf.h"

#include "consensus/consensus.h"
#include "state/cmd.h"
#include "state/store.h"

/* The outcome of the command the FSM applied last. libraft 0.15 calls the FSM's apply and,
 * right after it and before applying the next entry, the proposing request's callback with
 * the `result` pointer the FSM set (src/replication.c, applyCommand). So one slot per server
 * is enough, and no allocation per entry is needed: entries replayed at start-up or applied
 * on a follower have no request, and a per-entry allocation would leak there. The index is
 * kept next to the result so the callback can check that it matches the request's index. */
struct consensus__applied {
  struct state_cmd_result res;
  uint64_t index;
};

/* A snapshot being taken (snapshot.c): the child encoding the store, or the bytes encoded on
 * the loop when fork failed. */
struct consensus__snap {
  pid_t pid;        /* the encoding child, or -1 */
  int fd;           /* read end of its pipe, or -1 */
  struct buf sync;  /* encoded on the loop (fallback) */
  int status;       /* 0 once collected successfully */
  uint64_t index;   /* last applied index the snapshot captures */
  uint64_t started_at, loop_done_at; /* uv_hrtime() */
};

struct consensus {
  uv_loop_t *loop;
  struct raft *r; /* points at `raft`; lets const accessors call libraft's non-const getters */
  struct raft raft;
  struct raft_io io;
  bool io_inited;       /* raft_uv_init succeeded: raft_uv_close owes io.impl's memory */
  /* libraft's own io->close, and the raft's close callback we deliver exactly once
   * (see io_close_once in consensus.c). */
  void (*io_close)(struct raft_io *io, raft_io_close_cb cb);
  raft_io_close_cb io_closed_cb;
  bool io_close_fired;
  struct consensus *retired_next; /* on the retired list once stopped (consensus.c) */
  struct raft_uv_transport transport;
  void (*transport_close)(void *arg, struct raft_uv_transport *t); /* NULL: libraft's own */
  void *transport_arg;
  bool deferred; /* Raft not started yet: waiting for the bootstrap decision */
  struct raft_fsm fsm;
  struct state_store *store; /* borrowed from the caller for the consensus' whole life */
  struct consensus__applied applied;
  struct consensus__snap snap;
  bool snapshot_fork;        /* cfg->snapshot_fork */
  uint64_t id;
  char *dir;      /* <data_dir>/raft, owned */
  char *address;  /* owned copy of cfg->address */

  uv_timer_t poll;     /* polls raft_state() (libraft 0.15 has no state-change callback) */
  int last_state;      /* RAFT_* state seen by the last poll */
  uint64_t last_contact_at; /* uv_now() when we last knew the leader was alive */

  consensus_leader_cb leader_cb;
  void *leader_arg;

  unsigned pending;     /* requests whose callback has not run yet */
  uint64_t leader_appended; /* highest log index we appended as leader (see stop_timer_cb) */
  bool stopping;        /* consensus_stop() was called (or start failed) */
  bool raft_closed;     /* raft_close() completed and the transport is released */
  bool poll_closed;     /* the poll timer's close callback ran (or it never existed) */
  uint64_t stop_started_at; /* uv_now() when consensus_stop was called */
  void (*stop_cb)(void *arg);
  void *stop_arg;
};

/* How a command sits in a Raft log entry. libraft 0.15's segment encoder requires every
 * entry's length to be a multiple of 8 (src/uv_segment.c asserts it, but Debian's build
 * compiles asserts out): an odd-length entry is written so that the loader misreads the
 * next batch and declares the segment corrupt at the next start. So the command is padded
 * with zeros, and the last byte says how many padding bytes there are (1..8):
 *
 *   +---------------------+---------------+-----+
 *   | command (n bytes)   | zeros (p - 1) |  p  |    n + p is a multiple of 8, 1 <= p <= 8
 *   +---------------------+---------------+-----+
 */
size_t consensus__framed_len(size_t cmd_len);
/* Writes the framed command into out (consensus__framed_len(len) bytes). */
void consensus__frame(void *out, const void *cmd, size_t len);
/* Returns the command's length inside a framed entry, or -1 if the framing is invalid. */
long consensus__unframe(const void *entry, size_t len);

/* The three steps of a snapshot (snapshot.c): start on the loop at the index to capture
 * (forks the encoder), collect on a thread-pool thread (fills bufs; we own the memory),
 * finish on the loop (frees bufs, reaps a child left behind). */
int consensus__snapshot_start(struct consensus *c);
int consensus__snapshot_collect(struct consensus *c, struct raft_buffer *bufs[],
                                unsigned *n_bufs);
void consensus__snapshot_finish(struct consensus *c, struct raft_buffer *bufs[],
                                unsigned *n_bufs);

/* Fills c->fsm with the state store's apply/snapshot/restore callbacks (fsm.c). */
void consensus__fsm_init(struct consensus *c);

/* Maps a libraft error code to a CC_E* code. While stopping, a lost leadership is reported as
 * CC_ESHUTDOWN: libraft 0.15's raft_close fails pending requests with RAFT_LEADERSHIPLOST. */
int consensus__error(const struct consensus *c, int raft_rv);

#endif
