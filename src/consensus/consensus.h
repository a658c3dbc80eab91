/* consensus.h -- the Raft layer: glue between libraft (canonical raft 0.15, libuv backend)
 * and the state store. Every write to the store goes through here, even on a single server.
 *
 * All use of libraft stays behind this header (upstream is unmaintained; we may replace it).
 * Everything runs on the caller's uv loop. */
#ifndef CONCORD_CONSENSUS_CONSENSUS_H
#define CONCORD_CONSENSUS_CONSENSUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lib/buf.h"
#include "state/cmd.h"

struct consensus;

struct consensus_config {
  const char *data_dir;     /* raft log and snapshots live in <data_dir>/raft */
  const char *node_id;      /* the agent's node ID (UUID); the raft id is derived from it */
  const char *address;      /* "ip:port" this server's raft transport listens on */
  unsigned bootstrap_expect; /* 1: bootstrap a single-server cluster at first start */
  unsigned snapshot_threshold;  /* entries between snapshots (Consul: 16384) */
  unsigned snapshot_trailing;   /* entries kept after a snapshot (Consul: 10240) */
  unsigned election_timeout_ms; /* Consul with raft_multiplier 1: 1000 */
  unsigned heartbeat_timeout_ms;/* Consul with raft_multiplier 1: 1000 (we use 100) */
};

/* Fills a config with Concord's defaults (all fields but data_dir, node_id, address). */
void consensus_config_defaults(struct consensus_config *cfg);

/* Starts Raft on the loop over the given store: loads the log from data_dir (replaying it into
 * the store through the FSM), bootstraps when bootstrap_expect is 1 and the directory is new,
 * and begins elections. Returns 0 and *out, or a CC_E* code with a sentence in errbuf. */
int consensus_start(uv_loop_t *loop, const struct consensus_config *cfg,
                    struct state_store *store, struct consensus **out, char *errbuf,
                    size_t errlen);

/* Stops Raft; cb runs once every handle is closed, after which the consensus is freed.
 * Pending applies complete with CC_ESHUTDOWN first. */
void consensus_stop(struct consensus *c, void (*cb)(void *arg), void *arg);

/* Called when a proposed command has been committed and applied (status 0, res filled, index
 * is the entry's Raft index) or has failed (status CC_ENOTLEADER, CC_ESHUTDOWN, CC_EIO...). */
typedef void (*consensus_apply_cb)(void *arg, int status, const struct state_cmd_result *res,
                                   uint64_t index);

/* Proposes the encoded command in cmd (the bytes are copied; cmd stays the caller's). If this
 * call returns non-zero, cb is never called. */
int consensus_apply(struct consensus *c, const struct buf *cmd, consensus_apply_cb cb,
                    void *arg);

/* Completes (status 0) once everything committed before it is applied on this server and it
 * is still leader: the basis of ?consistent reads. Returns non-zero (cb not called) when not
 * leader. */
typedef void (*consensus_barrier_cb)(void *arg, int status);
int consensus_barrier(struct consensus *c, consensus_barrier_cb cb, void *arg);

bool consensus_is_leader(const struct consensus *c);
/* The leader's raft address ("ip:port"), or NULL when none is known. */
const char *consensus_leader_address(const struct consensus *c);
/* Milliseconds since this server last heard from the leader (0 on the leader). */
uint64_t consensus_last_contact_ms(const struct consensus *c);
uint64_t consensus_last_index(const struct consensus *c);
uint64_t consensus_applied_index(const struct consensus *c);
uint64_t consensus_term(const struct consensus *c);
/* "Leader", "Follower", "Candidate" or "Unavailable" (as Consul's raft state strings). */
const char *consensus_state_name(const struct consensus *c);

/* The servers in the current configuration. */
struct consensus_peer {
  uint64_t id;
  char address[64];
  bool voter;
};
/* Writes up to max peers into out; returns how many there are in total. */
size_t consensus_peers(const struct consensus *c, struct consensus_peer *out, size_t max);

#endif
