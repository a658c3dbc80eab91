/* watch.h -- one-shot notifications that a part of the store changed, the mechanism under
 * blocking queries (Consul's memdb watch sets).
 *
 * A watch names what a query read: one KV key, every KV key under a prefix, or a whole table.
 * When a write touches it, the store calls fn(arg) once, after the write is complete, and
 * frees the watch: a fired watch must not be cancelled. A watch that is no longer wanted is
 * cancelled with state_watch_cancel. Cost: a KV write of key K looks up K's prefixes in a
 * hash of watched prefixes, only at the lengths some watched prefix has, so it is
 * O(len(K) * distinct watched prefix lengths) however many watches there are; firing n
 * watches is O(n). A tree delete fires exactly the watches whose key or prefix lost a row.
 * Only a real change fires: a failed CAS or lock, a delete of a missing key, a write that
 * leaves the row as it was fire nothing. A restore fires every watch. The callback must be
 * cheap (mark something dirty and return) and must not write to the store. */
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

/* Registers a watch. The store copies key and owns the returned watch, which stays valid
 * until it fires or is cancelled (state_store_free frees any left). Never fails (aborts on
 * OOM). Safe to call from a watch callback: the new watch waits for a later write. */
struct state_watch *state_watch_add(struct state_store *s, enum state_watch_kind kind,
                                    const char *key, size_t key_len, state_watch_fn fn,
                                    void *arg);
/* Unregisters and frees a watch that has not fired; O(1). NULL is ignored. Safe from a
 * callback, also for a watch fired by the same write whose callback has not run yet (it
 * then never runs). */
void state_watch_cancel(struct state_watch *w);
/* How many watches are registered (for tests and metrics). */
size_t state_watch_count(const struct state_store *s);

#endif
