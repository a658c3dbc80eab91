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
struct raft_uv_transport;

/* A server in the Raft configuration. */
struct consensus_peer {
  uint64_t id;
  char address[64];
  bool voter;
};

struct consensus_config {
  const char *data_dir;     /* raft log and snapshots live in <data_dir>/raft */
  const char *node_id;      /* the agent's node ID (UUID); the raft id is derived from it */
  const char *address;      /* "ip:port" (IPv4) this server's raft transport listens on */
  /* 1: bootstrap a single-server cluster at first start (-bootstrap, -dev).
   * 0 (Consul's default for -server) or >1: never bootstrap here; the server starts with an
   * empty configuration and waits to be added by a leader (consensus_add_voter). */
  unsigned bootstrap_expect;
  unsigned snapshot_threshold;  /* entries between snapshots (Consul: 16384) */
  unsigned snapshot_trailing;   /* entries kept after a snapshot (Consul: 10240) */
  unsigned election_timeout_ms; /* Consul with raft_multiplier 1: 1000 (we use 500) */
  unsigned heartbeat_timeout_ms;/* Consul with raft_multiplier 1: 1000 (we use 50) */
  /* Encode snapshots in a forked child (copy-on-write image) instead of on the loop. Off by
   * default: on the 2-vCPU VM we measure on, the copy-on-write faults and TLB shootdowns in
   * the parent cost more than the encode they move off the loop (snapshot.c). */
  bool snapshot_fork;
  /* The Raft transport. NULL transport_init: libraft's own TCP transport on `address`.
   * Otherwise transport_init fills *t (it returns 0 or a libraft error code) and
   * transport_close releases it once libraft has closed it; rpc/ passes one that shares the
   * server port with RPC, as Consul's port 8300 does. */
  int (*transport_init)(void *arg, struct raft_uv_transport *t);
  void (*transport_close)(void *arg, struct raft_uv_transport *t);
  void *transport_arg;
};

/* Fills a config with Concord's defaults (all fields but data_dir, node_id, address):
 * bootstrap_expect 0, snapshots every 16384 entries keeping 10240 (Consul's), election
 * timeout 500 ms and heartbeat 50 ms (measured failover of a 3-server cluster on loopback:
 * 0.75-0.95 s typical, against 1.6-1.9 s with 1000/100, which leaves no room under the 2 s
 * target), snapshots encoded on the loop. */
void consensus_config_defaults(struct consensus_config *cfg);

/* The raft server id derived from a node ID: the first 16 hex digits of the UUID, so it is
 * stable across restarts, readable in logs and computable by any server that knows a peer's
 * node ID from gossip. Falls back to a hash for IDs that are not hex. Never 0. */
uint64_t consensus_raft_id(const char *node_id);

/* Starts Raft on the loop over the given store: loads the log from data_dir (replaying it into
 * the store through the FSM), bootstraps when bootstrap_expect is 1 and the directory is new,
 * and begins elections. Returns 0 and *out, or a CC_E* code with a sentence in errbuf. */
int consensus_start(uv_loop_t *loop, const struct consensus_config *cfg,
                    struct state_store *store, struct consensus **out, char *errbuf,
                    size_t errlen);

/* If consensus_start fails after libraft opened handles, their closing finishes on the loop:
 * run the loop before uv_loop_close. */

/* Stops Raft; cb runs once every handle is closed, after which the consensus is freed.
 * New proposals are refused at once (CC_ESHUTDOWN). Pending applies and barriers complete
 * before cb, exactly once each: with 0 if they commit while the log writes already under way
 * drain, else with CC_ESHUTDOWN. Call it once; safe from inside an apply or barrier callback
 * (the close starts on a later loop turn). */
void consensus_stop(struct consensus *c, void (*cb)(void *arg), void *arg);

/* bootstrap_expect > 1 on a server with no Raft data: Raft is initialised but not started
 * until the agent has found the other servers (Consul's maybeBootstrap). Then either every
 * one of the expected servers calls consensus_bootstrap with the same list (itself included):
 * they all write the same configuration at index 1, as hashicorp/raft's BootstrapCluster
 * does, and elect a leader among themselves; or, when a cluster turns out to exist already,
 * consensus_start_joined starts Raft empty, to be added by that cluster's leader. Both return
 * 0, CC_ECONFLICT when Raft is already started, or another CC_E* code. */
bool consensus_awaiting_bootstrap(const struct consensus *c);
int consensus_bootstrap(struct consensus *c, const struct consensus_peer *peers, size_t n);
int consensus_start_joined(struct consensus *c);

/* Called when a proposed command has been committed and applied (status 0, res filled, index
 * is the entry's Raft index) or has failed (status CC_ENOTLEADER, CC_ESHUTDOWN, CC_EIO...). */
typedef void (*consensus_apply_cb)(void *arg, int status, const struct state_cmd_result *res,
                                   uint64_t index);

/* Proposes the encoded command in cmd (the bytes are copied; cmd stays the caller's). If this
 * call returns non-zero (CC_ENOTLEADER, CC_ESHUTDOWN, CC_EINVAL for an empty command,
 * CC_ETOOBIG above CONSENSUS_MAX_COMMAND), cb is never called. `res` is borrowed for the
 * callback's duration only. */
#define CONSENSUS_MAX_COMMAND (8u << 20)
int consensus_apply(struct consensus *c, const struct buf *cmd, consensus_apply_cb cb,
                    void *arg);

/* Completes (status 0) once everything committed before it is applied on this server and it
 * is still leader: the basis of ?consistent reads. Returns non-zero (cb not called) when not
 * leader. */
typedef void (*consensus_barrier_cb)(void *arg, int status);
int consensus_barrier(struct consensus *c, consensus_barrier_cb cb, void *arg);

bool consensus_is_leader(const struct consensus *c);
/* Called on the loop when this server gains (true) or loses (false) leadership; seen by a
 * 50 ms poll, as libraft 0.15 has no state-change callback. If the server is already leader,
 * cb(arg, true) runs before this returns. NULL cb clears it. Not called during stop. */
typedef void (*consensus_leader_cb)(void *arg, bool leader);
void consensus_set_leader_cb(struct consensus *c, consensus_leader_cb cb, void *arg);

/* The leader's raft address ("ip:port"), or NULL when none is known. Borrowed from libraft:
 * valid until control returns to the loop. */
const char *consensus_leader_address(const struct consensus *c);
/* Milliseconds since this server last heard from the leader (0 on the leader). */
uint64_t consensus_last_contact_ms(const struct consensus *c);
uint64_t consensus_last_index(const struct consensus *c);
uint64_t consensus_applied_index(const struct consensus *c);
uint64_t consensus_term(const struct consensus *c);
/* Index of the last snapshot taken or restored (0 if none). */
uint64_t consensus_snapshot_index(const struct consensus *c);
/* This server's raft id (consensus_raft_id of its node ID). */
uint64_t consensus_id(const struct consensus *c);
/* "Leader", "Follower", "Candidate" or "Unavailable" (as Consul's raft state strings). */
const char *consensus_state_name(const struct consensus *c);


/* Writes up to max peers into out; returns how many there are in total. */
size_t consensus_peers(const struct consensus *c, struct consensus_peer *out, size_t max);

/* Membership changes (leader only; one at a time, as Raft's single-server changes require).
 * Both return 0 and later call cb exactly once (status 0, or CC_ENOTLEADER / CC_ESHUTDOWN /
 * CC_ECONFLICT / CC_EIO), or return non-zero without calling cb: CC_ENOTLEADER,
 * CC_ESHUTDOWN, CC_ECONFLICT (another change is in progress, or the server is already a
 * voter at that address), CC_ENOTFOUND (remove: unknown id), CC_EINVAL. */
typedef void (*consensus_change_cb)(void *arg, int status);
/* Adds the server as a non-voter, lets it catch up, then promotes it to voter. If it is
 * already in the configuration as a non-voter, only promotes it. */
int consensus_add_voter(struct consensus *c, uint64_t id, const char *address,
                        consensus_change_cb cb, void *arg);
int consensus_remove_peer(struct consensus *c, uint64_t id, consensus_change_cb cb,
                          void *arg);

#endif
