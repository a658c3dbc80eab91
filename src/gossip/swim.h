/* swim.h -- the memberlist layer: SWIM failure detection with Lifeguard, dissemination by
 * piggybacked gossip, and push-pull state sync (hashicorp/memberlist state.go, net.go).
 *
 * One struct ml is one member. It runs entirely on the io interface (io.h): give it an io and a
 * delegate (serf.c is the only one in Concord), call ml_start, and it probes, gossips and syncs
 * on its own timers. Internal to the gossip module; gossip.h is the public face. */
#ifndef CONCORD_GOSSIP_SWIM_H
#define CONCORD_GOSSIP_SWIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/broadcast.h"
#include "gossip/io.h"
#include "gossip/keyring.h"
#include "gossip/proto.h"
#include "gossip/suspicion.h"
#include "gossip/timer.h"
#include "lib/buf.h"
#include "lib/map.h"

/* Timings and sizes; memberlist's DefaultLANConfig values are in ml_config_lan. */
struct ml_config {
  char name[257];
  struct gossip_addr advertise;
  uint64_t probe_interval, probe_timeout, gossip_interval, push_pull_interval;
  uint64_t gossip_to_the_dead, tcp_timeout; /* ms */
  int indirect_checks, gossip_nodes, retransmit_mult, suspicion_mult;
  int suspicion_max_timeout_mult, awareness_max_multiplier;
  size_t udp_buffer_size;
  bool disable_tcp_pings;
  bool enable_compression;
  uint8_t vsn[6]; /* pmin pmax pcur dmin dmax dcur */
  /* Gossip encryption (memberlist Keyring, GossipVerifyIncoming/Outgoing). An empty keyring
   * is no encryption. serf's key queries change it at run time (m->cfg.keyring). */
  struct keyring keyring;
  bool verify_incoming, verify_outgoing;
};

void ml_config_lan(struct ml_config *c);

struct ml_node {
  char *name;
  struct gossip_addr addr;
  uint8_t *meta;
  size_t meta_len;
  uint8_t vsn[6];
  int state; /* enum proto_state */
  uint32_t incarnation;
  uint64_t state_change;
  struct suspicion *susp; /* set while suspect with a running timer */
  struct ml *ml;
};

/* What serf plugs in (memberlist's Delegate + EventDelegate). Every callback may be NULL. */
struct ml_delegate {
  void *ctx;
  /* Meta for our alive messages, at most limit bytes, appended to out. */
  void (*node_meta)(void *ctx, struct buf *out, size_t limit);
  void (*notify_msg)(void *ctx, const uint8_t *msg, size_t len);
  /* Appends user messages for a packet (see bcast_get; prefix them with PROTO_USER). */
  void (*get_broadcasts)(void *ctx, size_t overhead, size_t limit, struct bcast_out *out);
  void (*local_state)(void *ctx, bool join, struct buf *out);
  void (*merge_remote_state)(void *ctx, const uint8_t *p, size_t len, bool join);
  void (*notify_join)(void *ctx, const struct ml_node *n);
  void (*notify_leave)(void *ctx, const struct ml_node *n);
  void (*notify_update)(void *ctx, const struct ml_node *n);
};

/* Completion of ml_join: how many addresses answered a push-pull, and the last error. */
typedef void (*ml_join_cb)(void *arg, int nsuccess, int err);
typedef void (*ml_done_cb)(void *arg, int err);

struct ml_probe;
struct ml_stream;
struct ml_join_op;

struct ml {
  struct ml_config cfg;
  struct gossip_io *io;
  struct ml_delegate d;
  struct gtimers timers;

  struct ml_node **nodes; /* probe order */
  size_t nnodes, cap_nodes;
  struct map node_map; /* name -> struct ml_node* */
  size_t probe_index;

  uint32_t seq, incarnation;
  int awareness; /* Lifeguard health score, 0 = healthy, up to awareness_max_multiplier - 1 */
  struct bcast_queue broadcasts;
  struct map acks; /* seq (4 bytes) -> struct ml_ack* */

  struct ml_probe *probe;
  bool probe_tick_pending; /* a tick came while a scaled-up probe was still running */
  struct gtimer probe_timer, gossip_timer, push_pull_timer;

  struct ml_stream *streams;
  size_t nstreams;
  struct ml_join_op *joins;

  bool left, shutdown;
  /* leave waiting for our dead broadcast */
  ml_done_cb leave_cb;
  void *leave_arg;
  struct gtimer leave_timer;

  /* Reused per packet so the hot path does not allocate: piggybacked messages, the compound
   * being built, the compressed form, the CRC-wrapped form, the encrypted form, and the
   * decrypted incoming packet. Never held across calls. */
  struct bcast_out scratch_out;
  struct buf scratch_compound, scratch_z, scratch_crc, scratch_enc, scratch_plain;

  /* Counters for tests and metrics. */
  uint64_t stat_udp_sent, stat_udp_recv, stat_bytes_sent, stat_tcp_accept, stat_bad_packets;
  uint64_t stat_decrypt_failed;
};

/* Prepares m (does nothing on the network). Copies cfg. */
void ml_init(struct ml *m, const struct ml_config *cfg, struct gossip_io *io,
             const struct ml_delegate *d);
/* Announces ourselves alive and starts the probe, gossip and push-pull timers. */
void ml_start(struct ml *m);
/* Stops everything: no timer, packet or stream is handled after it, open streams are closed,
 * pending joins complete with CC_ECANCELED (inside this call); a pending leave's callback does
 * not run. The last call that touches the io. Safe from inside any callback. */
void ml_shutdown(struct ml *m);
/* ml_shutdown if not done yet, then frees memory (without touching the io). */
void ml_free(struct ml *m);

/* Push-pull with each address (join=true); cb when all have answered or failed. addrs may
 * carry a node name as "name/ip:port" like memberlist; default_port fills a missing port. */
int ml_join(struct ml *m, const char *const *addrs, size_t n, uint16_t default_port,
            ml_join_cb cb, void *arg);
/* Broadcasts our own death (a graceful leave); cb when it has gone out or after timeout. */
void ml_leave(struct ml *m, uint64_t timeout, ml_done_cb cb, void *arg);
/* Re-announces us with fresh meta (after a tag change). */
void ml_update_node(struct ml *m);
/* Sends a user message as a UDP packet to addr (serf query acks and responses). */
int ml_send_user(struct ml *m, const struct gossip_addr *to, const void *msg, size_t len);

struct ml_node *ml_find(struct ml *m, const char *name);
const struct ml_node *ml_local(struct ml *m);
/* Number of known nodes, any state (memberlist's estNumNodes). */
int ml_num_nodes(const struct ml *m);
/* Alive or suspect members other than us. */
int ml_num_alive_others(const struct ml *m);
uint64_t ml_now(struct ml *m);
uint64_t ml_rand(struct ml *m, uint64_t n);
/* Runs any due timers and re-arms the io's wake-up; the io sink calls this. */
void ml_run_timers(struct ml *m);
/* Re-arms the io's wake-up after timers changed outside an io event (API calls): due timers
 * then run from the loop, never inside the caller's call. */
void ml_rearm(struct ml *m);
void ml_arm(struct ml *m, struct gtimer *t, uint64_t due);
void ml_cancel(struct ml *m, struct gtimer *t);

/* ---- shared with pushpull.c (ml__ = internal to the module) ---- */
void ml__on_stream(void *ctx, uint64_t id, enum gossip_stream_event ev,
                   const struct gossip_addr *peer, const uint8_t *p, size_t len);
/* Opens a TCP ping to node for the probe with this seq; the probe learns the result. */
void ml__tcp_ping(struct ml *m, const struct ml_node *node, uint32_t seq, uint64_t deadline);
void ml__tcp_ping_result(struct ml *m, uint32_t seq, bool ok);
/* Merges nodes from a push-pull (memberlist mergeState, after verifyProtocol). */
int ml__merge_remote(struct ml *m, const struct proto_stream_msg *msg);
/* Encodes our push-pull state (join flag, our nodes, the delegate's state). */
void ml__encode_local_state(struct ml *m, bool join, struct buf *out);
void ml__streams_free(struct ml *m);
/* Starts a push-pull with addr; op (may be NULL) learns the outcome. */
void ml__push_pull(struct ml *m, const struct gossip_addr *addr, bool join, struct ml_join_op *op);
/* Encryption as memberlist applies it: on when the keyring has keys; outgoing only with
 * verify_outgoing; the version follows our memberlist protocol (0 for protocol 1, else 1). */
bool ml__encrypt_out(const struct ml *m);
int ml__encryption_version(const struct ml *m);
/* Wraps and sends a complete packet: compression, CRC when `to` understands it. */
void ml__send_raw(struct ml *m, const struct gossip_addr *addr, const struct ml_node *to,
                  const void *msg, size_t len);

#endif
