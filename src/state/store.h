/* store.h -- the in-memory state store: Consul's tables, each row stamped with the Raft index
 * that created and last modified it, plus the watches that wake blocking queries.
 *
 * The store is written only by the FSM (cmd.c), in Raft log order, on every server; reads run
 * on the loop thread between writes, so a pointer a read returns is valid until the next
 * write (the next return to the loop). Nothing here does I/O or reads a clock.
 *
 * Indexes follow Consul's state store (agent/consul/state/kvs.go):
 *  - every table has a max index: the highest Raft index that changed it (tombstones count);
 *  - a single-key read answers with the key's ModifyIndex, or with the table index when the
 *    key is missing;
 *  - a prefix read answers with the highest ModifyIndex among the live keys and tombstones
 *    under the prefix, or the table index when that is 0 or the prefix is empty.
 * Deleting a key leaves a tombstone (key, deletion index) so that a prefix's index never goes
 * backwards; tombstones are reaped by a later command (Consul reaps after 15 minutes). */
#ifndef CONCORD_STATE_STORE_H
#define CONCORD_STATE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct state_store;

/* A KV row as reads see it. Borrowed from the store: valid until the next write. `value` is
 * followed by a NUL byte (not counted in value_len); `session` is NULL when no session holds
 * the key. */
struct state_kv {
  const char *key;
  size_t key_len;
  const uint8_t *value;
  size_t value_len;
  uint64_t flags;
  uint64_t create_index;
  uint64_t modify_index;
  uint64_t lock_index;
  const char *session;
};

struct state_store *state_store_new(void);
void state_store_free(struct state_store *s);

/* The highest Raft index applied to any table (0 for an empty store). */
uint64_t state_store_index(const struct state_store *s);
/* Table names for state_table_index and STATE_WATCH_TABLE: "kvs", "tombstones", ... */
uint64_t state_table_index(const struct state_store *s, const char *table);

/* ---- KV reads ---- */

/* The entry for key, or NULL. *index receives the index to answer with (see above). */
const struct state_kv *state_kv_get(struct state_store *s, const char *key, size_t key_len,
                                    uint64_t *index);

/* Calls fn for every live entry whose key starts with prefix, in byte order. fn returns 0 to
 * go on or non-zero to stop. Returns the index to answer with (see above). */
typedef int (*state_kv_fn)(const struct state_kv *e, void *arg);
uint64_t state_kv_list(struct state_store *s, const char *prefix, size_t prefix_len,
                       state_kv_fn fn, void *arg);

/* Consul's ?keys listing: calls fn once per key under prefix, in order; when separator is
 * non-empty, keys that contain the separator after the prefix are rolled up to their first
 * component including the separator ("a/b/c" with prefix "a/" and separator "/" gives "a/b/"),
 * each rolled-up name once. Returns the index to answer with, as state_kv_list. */
typedef int (*state_key_fn)(const char *key, size_t key_len, void *arg);
uint64_t state_kv_keys(struct state_store *s, const char *prefix, size_t prefix_len,
                       const char *separator, size_t separator_len, state_key_fn fn, void *arg);

size_t state_kv_count(const struct state_store *s);
size_t state_tombstone_count(const struct state_store *s);

/* ---- KV writes (called by the FSM with the entry's Raft index) ---- */

enum state_kv_verb {
  STATE_KV_SET,         /* set value and flags */
  STATE_KV_CAS,         /* set only if ModifyIndex == cas (cas 0: only if absent) */
  STATE_KV_DELETE,      /* delete one key (no-op success if absent) */
  STATE_KV_DELETE_CAS,  /* delete only if ModifyIndex == cas */
  STATE_KV_DELETE_TREE, /* delete every key with the prefix */
  STATE_KV_LOCK,        /* set and acquire with session (sessions issue) */
  STATE_KV_UNLOCK,      /* set and release session (sessions issue) */
};

struct state_kv_op {
  enum state_kv_verb verb;
  const char *key;
  size_t key_len;
  const uint8_t *value; /* may be NULL when value_len is 0 */
  size_t value_len;
  uint64_t flags;
  uint64_t cas;        /* for CAS and DELETE_CAS */
  const char *session; /* for LOCK and UNLOCK */
};

/* Applies op at Raft index `index` (> every index applied before). *ok receives Consul's
 * boolean answer (false when a CAS or lock attempt does not apply). Returns 0, or CC_EINVAL for
 * a malformed op (nothing changed). Fires the watches of everything that changed. */
int state_kv_apply(struct state_store *s, uint64_t index, const struct state_kv_op *op, bool *ok);

/* Removes tombstones whose deletion index is <= upto, at Raft index `index`. */
int state_tombstone_reap(struct state_store *s, uint64_t index, uint64_t upto);

/* ---- Snapshots ---- */

/* Appends the whole store to out as one self-describing msgpack document. */
void state_store_snapshot(const struct state_store *s, struct buf *out);
/* Replaces the store's contents with a snapshot's. Returns 0, or CC_ECORRUPT (store left
 * unchanged). Fires every watch, since anything may have changed. */
int state_store_restore(struct state_store *s, const void *data, size_t len);

#endif
