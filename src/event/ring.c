/* ring.c -- the last 256 events an agent accepted (Consul's eventBuf), and one-shot
 * notifications for the blocking /v1/event/list.
 *
 * Consul overwrites the oldest slot without looking; we also drop an event whose ID is
 * already in the ring, because gossip may hand the same event over twice (serf dedupes by
 * Lamport time and name only within its own buffer window). */
#include <stdlib.h>
#include <string.h>

#include "event/event.h"
#include "lib/alloc.h"

struct event_waiter {
  void (*fn)(void *arg);
  void *arg;
  struct event_waiter *next;
};

void event_ring_init(struct event_ring *r)
{
  memset(r, 0, sizeof *r);
}

void event_ring_free(struct event_ring *r)
{
  for (size_t i = 0; i < EVENT_RING_SIZE; i++) event_user_free(r->slots[i]);
  while (r->waiters) {
    struct event_waiter *w = r->waiters;
    r->waiters = w->next;
    free(w);
  }
  memset(r, 0, sizeof *r);
}

bool event_ring_add(struct event_ring *r, struct event_user *ev)
{
  for (size_t i = 0; i < EVENT_RING_SIZE; i++) {
    if (r->slots[i] && strcmp(r->slots[i]->id, ev->id) == 0) {
      event_user_free(ev);
      return false;
    }
  }
  event_user_free(r->slots[r->next]);
  r->slots[r->next] = ev;
  r->next = (r->next + 1) % EVENT_RING_SIZE;
  r->added++;
  /* Detach the list first: a waiter may register a new one, which must wait for the next
   * event, not fire now. */
  struct event_waiter *w = r->waiters;
  r->waiters = NULL;
  while (w) {
    struct event_waiter *next = w->next;
    w->fn(w->arg);
    free(w);
    w = next;
  }
  return true;
}

size_t event_ring_list(const struct event_ring *r, const struct event_user **out)
{
  size_t n = 0;
  /* Oldest first: from the slot about to be overwritten, round to the newest. */
  for (size_t i = 0; i < EVENT_RING_SIZE; i++) {
    const struct event_user *ev = r->slots[(r->next + i) % EVENT_RING_SIZE];
    if (ev) out[n++] = ev;
  }
  return n;
}

const struct event_user *event_ring_last(const struct event_ring *r)
{
  return r->slots[(r->next + EVENT_RING_SIZE - 1) % EVENT_RING_SIZE];
}

struct event_waiter *event_ring_wait(struct event_ring *r, void (*fn)(void *arg), void *arg)
{
  struct event_waiter *w = xcalloc(1, sizeof *w);
  w->fn = fn;
  w->arg = arg;
  w->next = r->waiters;
  r->waiters = w;
  return w;
}

void event_ring_unwait(struct event_ring *r, struct event_waiter *w)
{
  for (struct event_waiter **pp = &r->waiters; *pp; pp = &(*pp)->next) {
    if (*pp == w) {
      *pp = w->next;
      free(w);
      return;
    }
  }
}
