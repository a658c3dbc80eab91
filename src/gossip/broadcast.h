/* broadcast.h -- memberlist's TransmitLimitedQueue (queue.go): messages piggybacked on
 * outgoing packets, each sent at most RetransmitMult * ceil(log10(n + 1)) times.
 *
 * Selection order is Go's: fewest transmits first; among equals the largest message that still
 * fits, then the newest. A named message (memberlist's per-node alive/suspect/dead) replaces an
 * older one of the same name, since only the latest news about a node matters; unnamed ones
 * (serf's intents, events, queries) never invalidate each other. When a message leaves the
 * queue (sent enough times, replaced, pruned or reset) its `finished` callback runs: leave
 * waits on that to know its "I am leaving" went out. */
#ifndef CONCORD_GOSSIP_BROADCAST_H
#define CONCORD_GOSSIP_BROADCAST_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Messages chosen for one packet, copied into `data` at off[i], len[i]. */
#define BCAST_OUT_MAX 255
struct bcast_out {
  struct buf data;
  size_t off[BCAST_OUT_MAX];
  size_t len[BCAST_OUT_MAX];
  size_t n;
};

struct bcast_item;

struct bcast_queue {
  struct bcast_item **items;
  size_t n, cap;
  uint64_t id_gen;
  int retransmit_mult;
  size_t max_items; /* serf's MaxQueueDepth: past it the most-sent messages are dropped */
};

typedef void (*bcast_finished_fn)(void *arg);

void bcast_init(struct bcast_queue *q, int retransmit_mult, size_t max_items);
/* Runs every pending finished callback, then frees the queue. */
void bcast_reset(struct bcast_queue *q);
/* Copies msg. name may be NULL (unique message); finished may be NULL. */
void bcast_queue(struct bcast_queue *q, const char *name, const void *msg, size_t len,
                 bcast_finished_fn finished, void *arg);
/* Picks messages for a packet with `limit` bytes free, charging `overhead` per message, and
 * appends them to out (each prefixed with the byte `prefix` when prefix >= 0). num_nodes sizes
 * the retransmit limit. Returns the bytes used, overhead included. */
size_t bcast_get(struct bcast_queue *q, int num_nodes, size_t overhead, size_t limit, int prefix,
                 struct bcast_out *out);
size_t bcast_len(const struct bcast_queue *q);
/* Drops the most-transmitted messages until at most max remain (serf's Prune). */
void bcast_prune(struct bcast_queue *q, size_t max);

/* memberlist's retransmitLimit: mult * ceil(log10(n + 1)). */
int bcast_retransmit_limit(int mult, int n);

static inline void bcast_out_reset(struct bcast_out *o) {
  buf_reset(&o->data);
  o->n = 0;
}

#endif
