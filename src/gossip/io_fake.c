/* io_fake.c -- the simulated network (see io_fake.h). */
#include "gossip/io_fake.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/map.h"

enum ev_kind { EV_WAKE, EV_PACKET, EV_STREAM };

struct fnode;

struct fstream {
  uint64_t id;
  struct fnode *owner;
  struct fstream *peer;
  bool closed;          /* the owner closed it, or was told it closed */
  uint64_t last_due;    /* keeps this direction's deliveries in order */
  struct fstream *next; /* all streams, freed with the network */
};

struct fevent {
  uint64_t due, seq;
  enum ev_kind kind;
  struct fnode *to;
  uint64_t gen;                 /* EV_WAKE: stale when the node re-armed since */
  struct gossip_addr from;      /* EV_PACKET, EV_STREAM accepted */
  struct fstream *stream;       /* EV_STREAM: the receiving end */
  enum gossip_stream_event sev;
  uint8_t *data; /* points at small[] or a heap copy */
  size_t len;
  struct fevent *free_next;
  uint8_t small[1500]; /* packets fit: no second allocation per packet */
};

struct fnode {
  struct gossip_io io;
  struct fakenet *net;
  struct gossip_addr addr;
  int group;
  bool dead;
  uint64_t starve_period, starve_run;
  uint64_t wake_gen;
  uint64_t rng;
};

struct fakenet {
  uint64_t now, seq, rng, next_stream;
  double loss;
  uint64_t dmin, dmax;
  struct fevent **heap;
  size_t n, cap;
  struct fnode **nodes;
  size_t nnodes;
  struct map by_addr;
  struct fstream *streams;
  struct fevent *free_events; /* recycled: the simulation sends millions */
  struct fakenet_stats st;
};

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static struct fevent *ev_new(struct fakenet *n) {
  struct fevent *e = n->free_events;
  if (e) {
    n->free_events = e->free_next;
    memset(e, 0, offsetof(struct fevent, small));
  } else {
    e = xmalloc(sizeof *e);
    memset(e, 0, offsetof(struct fevent, small));
  }
  return e;
}

static void ev_set_data(struct fevent *e, const void *p, size_t len) {
  e->data = len <= sizeof e->small ? e->small : xmalloc(len);
  memcpy(e->data, p, len);
  e->len = len;
}

static void ev_free(struct fakenet *n, struct fevent *e) {
  if (e->data && e->data != e->small) free(e->data);
  e->free_next = n->free_events;
  n->free_events = e;
}

static bool ev_less(const struct fevent *a, const struct fevent *b) {
  return a->due != b->due ? a->due < b->due : a->seq < b->seq;
}

static void push(struct fakenet *n, struct fevent *e) {
  e->seq = n->seq++;
  if (n->n == n->cap) {
    n->cap = n->cap ? 2 * n->cap : 256;
    n->heap = xrealloc(n->heap, n->cap * sizeof *n->heap);
  }
  size_t i = n->n++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!ev_less(e, n->heap[p])) break;
    n->heap[i] = n->heap[p];
    i = p;
  }
  n->heap[i] = e;
}

static struct fevent *pop(struct fakenet *n) {
  struct fevent *top = n->heap[0], *last = n->heap[--n->n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, b = i;
    const struct fevent *be = last;
    if (l < n->n && ev_less(n->heap[l], be)) b = l, be = n->heap[l];
    if (l + 1 < n->n && ev_less(n->heap[l + 1], be)) b = l + 1;
    if (b == i) break;
    n->heap[i] = n->heap[b];
    i = b;
  }
  if (n->n) n->heap[i] = last;
  return top;
}

static uint64_t delay(struct fakenet *n) {
  return n->dmin + (n->dmax > n->dmin ? splitmix(&n->rng) % (n->dmax - n->dmin + 1) : 0);
}

static bool reachable(const struct fnode *a, const struct fnode *b) {
  return !a->dead && !b->dead && a->group == b->group;
}

static struct fnode *lookup(struct fakenet *n, const struct gossip_addr *a) {
  uint8_t key[18];
  memcpy(key, a->ip, 16);
  key[16] = (uint8_t)(a->port >> 8);
  key[17] = (uint8_t)a->port;
  if (a->len == 4) memset(key + 4, 0, 12);
  return map_get(&n->by_addr, key, sizeof key);
}

/* ---- ops ---- */

static struct fnode *node_of(struct gossip_io *io) { return (struct fnode *)io; }

static uint64_t op_now(struct gossip_io *io) { return node_of(io)->net->now; }
static uint64_t op_random(struct gossip_io *io) { return splitmix(&node_of(io)->rng); }

static void op_wake_at(struct gossip_io *io, uint64_t when) {
  struct fnode *nd = node_of(io);
  nd->wake_gen++;
  if (when == UINT64_MAX) return;
  struct fevent *e = ev_new(nd->net);
  e->kind = EV_WAKE;
  e->to = nd;
  e->gen = nd->wake_gen;
  e->due = when < nd->net->now ? nd->net->now : when;
  push(nd->net, e);
}

static int op_send_packet(struct gossip_io *io, const struct gossip_addr *to, const void *p,
                          size_t len) {
  struct fnode *nd = node_of(io);
  struct fakenet *n = nd->net;
  n->st.packets_sent++;
  struct fnode *dst = lookup(n, to);
  if (!dst || nd->dead) return 0; /* UDP: silently nowhere */
  if (n->loss > 0 && (double)(splitmix(&n->rng) >> 11) / 9007199254740992.0 < n->loss) {
    n->st.packets_lost++;
    return 0;
  }
  struct fevent *e = ev_new(n);
  e->kind = EV_PACKET;
  e->to = dst;
  e->from = nd->addr;
  ev_set_data(e, p, len);
  e->due = n->now + delay(n);
  push(n, e);
  return 0;
}

static struct fstream *stream_new(struct fakenet *n, struct fnode *owner) {
  struct fstream *s = xcalloc(1, sizeof *s);
  s->id = ++n->next_stream;
  s->owner = owner;
  s->next = n->streams;
  n->streams = s;
  return s;
}

static struct fstream *stream_find(struct fakenet *n, uint64_t id) {
  for (struct fstream *s = n->streams; s; s = s->next)
    if (s->id == id) return s;
  return NULL;
}

static void stream_event(struct fakenet *n, struct fstream *to, enum gossip_stream_event ev,
                         const struct gossip_addr *from, const void *p, size_t len, uint64_t due) {
  struct fevent *e = ev_new(n);
  e->kind = EV_STREAM;
  e->to = to->owner;
  e->stream = to;
  e->sev = ev;
  if (from) e->from = *from;
  if (len) ev_set_data(e, p, len);
  /* In order per receiving end. */
  if (due < to->last_due) due = to->last_due;
  to->last_due = due;
  e->due = due;
  push(n, e);
}

static int op_stream_open(struct gossip_io *io, const struct gossip_addr *to, uint64_t *id) {
  struct fnode *nd = node_of(io);
  struct fakenet *n = nd->net;
  if (nd->dead) return CC_EIO;
  n->st.streams_opened++;
  struct fstream *a = stream_new(n, nd);
  *id = a->id;
  struct fnode *dst = lookup(n, to);
  uint64_t d = delay(n);
  if (!dst || dst->dead) {
    stream_event(n, a, GOSSIP_STREAM_CLOSED, NULL, NULL, 0, n->now + d); /* refused */
    return 0;
  }
  if (dst->group != nd->group) return 0; /* never answered: the caller times out */
  struct fstream *b = stream_new(n, dst);
  a->peer = b;
  b->peer = a;
  stream_event(n, b, GOSSIP_STREAM_ACCEPTED, &nd->addr, NULL, 0, n->now + d);
  stream_event(n, a, GOSSIP_STREAM_CONNECTED, &dst->addr, NULL, 0, n->now + 2 * d);
  return 0;
}

static int op_stream_write(struct gossip_io *io, uint64_t id, const void *p, size_t len) {
  struct fnode *nd = node_of(io);
  struct fakenet *n = nd->net;
  struct fstream *s = stream_find(n, id);
  if (!s || s->closed || !s->peer) return CC_EIO;
  stream_event(n, s->peer, GOSSIP_STREAM_DATA, NULL, p, len, n->now + delay(n));
  return 0;
}

static void op_stream_close(struct gossip_io *io, uint64_t id) {
  struct fnode *nd = node_of(io);
  struct fakenet *n = nd->net;
  struct fstream *s = stream_find(n, id);
  if (!s || s->closed) return;
  s->closed = true;
  if (s->peer && !s->peer->closed)
    stream_event(n, s->peer, GOSSIP_STREAM_CLOSED, NULL, NULL, 0, n->now + delay(n));
}

static const struct gossip_io_ops fake_ops = {
    .now = op_now,
    .random = op_random,
    .wake_at = op_wake_at,
    .send_packet = op_send_packet,
    .stream_open = op_stream_open,
    .stream_write = op_stream_write,
    .stream_close = op_stream_close,
};

/* ---- the network ---- */

struct fakenet *fakenet_new(uint64_t seed) {
  struct fakenet *n = xcalloc(1, sizeof *n);
  n->rng = seed;
  n->dmin = 1;
  n->dmax = 5;
  map_init(&n->by_addr);
  return n;
}

struct gossip_io *fakenet_add(struct fakenet *n, const struct gossip_addr *addr) {
  struct fnode *nd = xcalloc(1, sizeof *nd);
  nd->io.ops = &fake_ops;
  nd->net = n;
  nd->addr = *addr;
  nd->rng = splitmix(&n->rng);
  n->nodes = xrealloc(n->nodes, (n->nnodes + 1) * sizeof *n->nodes);
  n->nodes[n->nnodes++] = nd;
  uint8_t key[18];
  memcpy(key, addr->ip, 16);
  if (addr->len == 4) memset(key + 4, 0, 12);
  key[16] = (uint8_t)(addr->port >> 8);
  key[17] = (uint8_t)addr->port;
  map_put(&n->by_addr, key, sizeof key, nd);
  return &nd->io;
}

void fakenet_set_loss(struct fakenet *n, double loss) { n->loss = loss; }

void fakenet_set_delay(struct fakenet *n, uint64_t min_ms, uint64_t max_ms) {
  n->dmin = min_ms;
  n->dmax = max_ms < min_ms ? min_ms : max_ms;
}

void fakenet_set_group(struct fakenet *n, struct gossip_io *io, int group) {
  (void)n;
  node_of(io)->group = group;
}

void fakenet_set_starved(struct fakenet *n, struct gossip_io *io, uint64_t period_ms, uint64_t run_ms) {
  (void)n;
  node_of(io)->starve_period = period_ms;
  node_of(io)->starve_run = run_ms;
}

void fakenet_kill(struct fakenet *n, struct gossip_io *io) {
  (void)n;
  node_of(io)->dead = true;
}

uint64_t fakenet_now(const struct fakenet *n) { return n->now; }

static void dispatch(struct fakenet *n, struct fevent *e) {
  struct fnode *to = e->to;
  if (to->dead) return;
  struct gossip_io_sink *sk = &to->io.sink;
  switch (e->kind) {
  case EV_WAKE:
    if (e->gen == to->wake_gen && sk->wake) sk->wake(sk->ctx);
    return;
  case EV_PACKET: {
    struct fnode *from = lookup(n, &e->from);
    if (from && !reachable(from, to)) {
      n->st.packets_lost++;
      return;
    }
    n->st.packets_delivered++;
    n->st.bytes_delivered += e->len;
    if (sk->packet) sk->packet(sk->ctx, &e->from, e->data, e->len);
    return;
  }
  case EV_STREAM: {
    struct fstream *s = e->stream;
    if (s->closed) return;
    if (e->sev != GOSSIP_STREAM_CLOSED && s->peer && !reachable(s->peer->owner, to)) return;
    if (e->sev == GOSSIP_STREAM_CLOSED) s->closed = true;
    if (sk->stream) sk->stream(sk->ctx, s->id, e->sev, &e->from, e->data, e->len);
    return;
  }
  }
}

void fakenet_run_until(struct fakenet *n, uint64_t t) {
  while (n->n && n->heap[0]->due <= t) {
    struct fevent *e = pop(n);
    n->now = e->due;
    struct fnode *to = e->to;
    if (to->starve_period && n->now % to->starve_period >= to->starve_run) {
      /* Descheduled: the event waits for the member's next time slice, in order. */
      e->due = n->now - n->now % to->starve_period + to->starve_period;
      push(n, e);
      continue;
    }
    n->st.events++;
    dispatch(n, e);
    ev_free(n, e);
  }
  if (t > n->now) n->now = t;
}

void fakenet_stats(const struct fakenet *n, struct fakenet_stats *out) { *out = n->st; }

void fakenet_free(struct fakenet *n) {
  for (size_t i = 0; i < n->n; i++) ev_free(n, n->heap[i]);
  while (n->free_events) {
    struct fevent *e = n->free_events;
    n->free_events = e->free_next;
    free(e);
  }
  free(n->heap);
  while (n->streams) {
    struct fstream *s = n->streams;
    n->streams = s->next;
    free(s);
  }
  for (size_t i = 0; i < n->nnodes; i++) free(n->nodes[i]);
  free(n->nodes);
  map_free(&n->by_addr);
  free(n);
}
