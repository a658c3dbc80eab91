/* broadcast.c -- the retransmit-limited broadcast queue (see broadcast.h).
 *
 * Go keeps a btree ordered by (transmits asc, length desc, id desc) and walks it one transmit
 * level at a time. Because the free space only shrinks while a packet is filled, that walk
 * picks exactly "the first item in that order that still fits and is not yet taken for this
 * packet". We keep the items in a sorted array instead: the scan from the front usually stops
 * at once, and a sent item moves back by binary-search reinsertion. */
#include "gossip/broadcast.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"

struct bcast_item {
  uint8_t *msg;
  size_t len;
  char *name;
  int transmits;
  uint64_t id;
  bool taken; /* chosen for the packet being built */
  bcast_finished_fn finished;
  void *arg;
};

/* ceil(log10(n + 1)) in integers: the number of decimal digits n + 1 needs, less one when
 * n + 1 is a power of ten (then the log is exact). */
int bcast_retransmit_limit(int mult, int n) {
  int scale = 0;
  for (long long p = 1; p < (long long)n + 1; p *= 10) scale++;
  return mult * scale;
}

void bcast_init(struct bcast_queue *q, int retransmit_mult, size_t max_items) {
  memset(q, 0, sizeof *q);
  q->retransmit_mult = retransmit_mult;
  q->max_items = max_items;
}

static void item_free(struct bcast_item *it, bool notify) {
  if (notify && it->finished) it->finished(it->arg);
  free(it->msg);
  free(it->name);
  free(it);
}

static bool before(const struct bcast_item *a, const struct bcast_item *b);

/* Removes index i, keeping the order. */
static struct bcast_item *remove_at(struct bcast_queue *q, size_t i) {
  struct bcast_item *it = q->items[i];
  memmove(&q->items[i], &q->items[i + 1], (q->n - i - 1) * sizeof *q->items);
  q->n--;
  if (q->n == 0) q->id_gen = 0;
  return it;
}

/* Inserts in order (binary search for the first item `it` goes before). */
static void insert_sorted(struct bcast_queue *q, struct bcast_item *it) {
  if (q->n == q->cap) {
    q->cap = q->cap ? 2 * q->cap : 16;
    q->items = xrealloc(q->items, q->cap * sizeof *q->items);
  }
  size_t lo = 0, hi = q->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (before(q->items[mid], it))
      lo = mid + 1;
    else
      hi = mid;
  }
  memmove(&q->items[lo + 1], &q->items[lo], (q->n - lo) * sizeof *q->items);
  q->items[lo] = it;
  q->n++;
}

void bcast_reset(struct bcast_queue *q) {
  /* Detach first: a finished callback may queue again. */
  struct bcast_item **items = q->items;
  size_t n = q->n;
  q->items = NULL;
  q->n = q->cap = 0;
  q->id_gen = 0;
  for (size_t i = 0; i < n; i++) item_free(items[i], true);
  free(items);
}

/* The order Go's btree sorts by: is a before b? */
static bool before(const struct bcast_item *a, const struct bcast_item *b) {
  if (a->transmits != b->transmits) return a->transmits < b->transmits;
  if (a->len != b->len) return a->len > b->len;
  return a->id > b->id;
}

void bcast_prune(struct bcast_queue *q, size_t max) {
  /* The last in order is the most sent (Go prunes its btree's Max). */
  while (q->n > max) item_free(remove_at(q, q->n - 1), true);
}

void bcast_queue(struct bcast_queue *q, const char *name, const void *msg, size_t len,
                 bcast_finished_fn finished, void *arg) {
  if (name) {
    for (size_t i = 0; i < q->n; i++) {
      if (q->items[i]->name && strcmp(q->items[i]->name, name) == 0) {
        item_free(remove_at(q, i), true);
        break;
      }
    }
  }
  struct bcast_item *it = xcalloc(1, sizeof *it);
  it->msg = xmemdup(msg, len);
  it->len = len;
  it->name = name ? xstrdup(name) : NULL;
  it->id = ++q->id_gen;
  it->finished = finished;
  it->arg = arg;
  insert_sorted(q, it);
  if (q->max_items && q->n > q->max_items) bcast_prune(q, q->max_items);
}

size_t bcast_len(const struct bcast_queue *q) { return q->n; }

size_t bcast_get(struct bcast_queue *q, int num_nodes, size_t overhead, size_t limit, int prefix,
                 struct bcast_out *out) {
  if (q->n == 0) return 0;
  int transmit_limit = bcast_retransmit_limit(q->retransmit_mult, num_nodes);
  size_t used = 0, ntaken = 0;
  struct bcast_item *taken[BCAST_OUT_MAX];
  size_t start = 0; /* items before this are taken or too big for any later choice */
  for (;;) {
    if (out->n >= BCAST_OUT_MAX || used + overhead >= limit) break;
    size_t free_bytes = limit - used - overhead;
    struct bcast_item *best = NULL;
    /* Everything skipped is taken, or too big now and so for the rest of this packet (free
     * space only shrinks): the next search can start past it. */
    for (size_t i = start; i < q->n; i++) {
      struct bcast_item *it = q->items[i];
      start = i + 1;
      if (it->taken || it->len > free_bytes) continue;
      best = it;
      break;
    }
    if (!best) break;
    best->taken = true;
    taken[ntaken++] = best;
    used += overhead + best->len;
    out->off[out->n] = out->data.len;
    if (prefix >= 0) buf_putc(&out->data, (char)prefix);
    buf_append(&out->data, best->msg, best->len);
    out->len[out->n] = out->data.len - out->off[out->n];
    out->n++;
  }
  /* Count the transmission: retire what reached the limit, move the rest back in order. */
  for (size_t k = 0; k < ntaken; k++) {
    struct bcast_item *it = taken[k];
    size_t i = 0;
    while (q->items[i] != it) i++;
    remove_at(q, i);
    it->taken = false;
    if (it->transmits + 1 >= transmit_limit) {
      item_free(it, true);
      continue;
    }
    it->transmits++;
    insert_sorted(q, it);
  }
  return used;
}
