/* watch.h -- one-shot notifications that a part of the store changed, the mechanism under
 * blocking queries (Consul's memdb watch sets).
 *
 * A watch names what a query read: one KV key, every KV key under a prefix, or a whole table.
 * When a write touches it, the store calls fn(arg) once, after the write is complete, and
 * frees the watch: a fired watch must not be cancelled. A watch that is no longer wanted is
 * cancelled with state_watch_cancel. Cost: a KV write of key K looks up each prefix of K in a
 * hash of watched prefixes, so it is O(len(K)) however many watches there are; the callback
 * must be cheap (mark something dirty and return) and must not write to the store. */
#ifndef CONCORD_STATE_WATCH_H
#define CONCORD_STATE_WATCH_H

#include <stddef.h>

struct state_store;
struct state_watch;

enum state_watch_kind {
  STATE_WATCH_KV_KEY,    /* fires when this exact key is set or deleted */
  STATE_WATCH_KV_PREFIX, /* fires when any key starting with the prefix changes ("" = all) */
  STATE_WATCH_TABLE,     /* fires when the named table changes ("kvs", "nodes", ...) */
};

typedef void (*state_watch_fn)(void *arg);

/* Registers a watch. The store copies key. Never fails (aborts on OOM). */
struct state_watch *state_watch_add(struct state_store *s, enum state_watch_kind kind,
                                    const char *key, size_t key_len, state_watch_fn fn,
                                    void *arg);
void state_watch_cancel(struct state_watch *w);
/* How many watches are registered (for tests and metrics). */
size_t state_watch_count(const struct state_store *s);

#endif
