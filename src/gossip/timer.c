/* timer.c -- binary min-heap of protocol timers (see timer.h). */
#include "gossip/timer.h"

#include <stdlib.h>

#include "lib/alloc.h"

static bool less(const struct gtimer *a, const struct gtimer *b) { return a->due < b->due; }

static void place(struct gtimers *h, size_t i, struct gtimer *t) {
  h->heap[i] = t;
  t->idx = i;
}

static void sift_up(struct gtimers *h, size_t i) {
  struct gtimer *t = h->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!less(t, h->heap[parent])) break;
    place(h, i, h->heap[parent]);
    i = parent;
  }
  place(h, i, t);
}

static void sift_down(struct gtimers *h, size_t i) {
  struct gtimer *t = h->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, best = i;
    const struct gtimer *bt = t;
    if (l < h->n && less(h->heap[l], bt)) best = l, bt = h->heap[l];
    if (l + 1 < h->n && less(h->heap[l + 1], bt)) best = l + 1;
    if (best == i) break;
    place(h, i, h->heap[best]);
    i = best;
  }
  place(h, i, t);
}

void gtimers_free(struct gtimers *h) {
  for (size_t i = 0; i < h->n; i++) h->heap[i]->idx = GTIMER_IDLE;
  free(h->heap);
  h->heap = NULL;
  h->n = h->cap = 0;
}

void gtimers_cancel(struct gtimers *h, struct gtimer *t) {
  if (t->idx == GTIMER_IDLE) return;
  size_t i = t->idx;
  t->idx = GTIMER_IDLE;
  h->n--;
  if (i == h->n) return;
  struct gtimer *moved = h->heap[h->n];
  place(h, i, moved);
  sift_down(h, i);
  sift_up(h, moved->idx);
}

void gtimers_arm(struct gtimers *h, struct gtimer *t, uint64_t due) {
  gtimers_cancel(h, t);
  if (h->n == h->cap) {
    h->cap = h->cap ? 2 * h->cap : 64;
    h->heap = xrealloc(h->heap, h->cap * sizeof *h->heap);
  }
  t->due = due;
  place(h, h->n, t);
  h->n++;
  sift_up(h, h->n - 1);
}

uint64_t gtimers_next(const struct gtimers *h) { return h->n ? h->heap[0]->due : UINT64_MAX; }

struct gtimer *gtimers_pop_due(struct gtimers *h, uint64_t now) {
  if (!h->n || h->heap[0]->due > now) return NULL;
  struct gtimer *t = h->heap[0];
  gtimers_cancel(h, t);
  return t;
}
