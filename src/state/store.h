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
 *    under the prefix, or the table index when that is 0 or the prefix is empty;
 *  - the "kvs" table index answered above is Consul's kvsMaxIndex, max("kvs", "tombstones");
 *  - an index to answer with is never 0: like Consul's KVS endpoints, 1 is answered instead
 *    (Raft never commits a user entry at index 1), so a blocking query cannot spin on 0.
 * Deleting a key leaves a tombstone (key, deletion index) so that a prefix's index never goes
 * backwards; a tree delete leaves one tombstone at its prefix (none for the empty prefix), as
 * Consul's kvsDeleteTreeTxn does. Setting a key again drops its tombstone (the new
 * ModifyIndex is higher, so no prefix index moves). Tombstones are reaped by a later command
 * (Consul reaps after 15 minutes); as in Consul, reaping bumps no table index, so a prefix's
 * index may then fall back to its live keys' (Consul's TestStateStore_ReapTombstones). */
#ifndef CONCORD_STATE_STORE_H
#define CONCORD_STATE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "state/catalog.h"

struct state_store;

/* Caps on what a write may carry (every input size is capped). The HTTP layer applies
 * Consul's smaller kv_max_value_size (512 KiB) before a command is ever proposed. */
#define STATE_KV_MAX_KEY (64 * 1024)
#define STATE_KV_MAX_VALUE (16 * 1024 * 1024)
#define STATE_KV_MAX_SESSION 256

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

/* The highest Raft index that changed any table (0 for an empty store). */
uint64_t state_store_index(const struct state_store *s);
/* Table names for state_table_index and STATE_WATCH_TABLE: "kvs", "tombstones", "sessions"
 * (state/session.h), and the catalog's "nodes", "services", "checks", "service.<name>",
 * "node.<name>", "service_last_extinction", "node_last_extinction" (state/catalog.h).
 * "kvs" answers max(kvs, tombstones) (Consul's kvsMaxIndex); an unknown table answers 0. */
uint64_t state_table_index(const struct state_store *s, const char *table);

/* ---- KV reads ---- */

/* The entry for key, or NULL. *index (may be NULL) receives the index to answer with: the
 * entry's ModifyIndex, or the "kvs" table index when the key is missing. */
const struct state_kv *state_kv_get(struct state_store *s, const char *key, size_t key_len,
                                    uint64_t *index);

/* Calls fn for every live entry whose key starts with prefix, in byte order. fn returns 0 to
 * go on or non-zero to stop; fn may be NULL. Returns the index to answer with (see above),
 * computed over every entry under the prefix even when fn stops early. fn must not write to
 * the store. */
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
  STATE_KV_SET,         /* set value and flags; Session and LockIndex are kept */
  STATE_KV_CAS,         /* set only if ModifyIndex == cas (cas 0: only if absent) */
  STATE_KV_DELETE,      /* delete one key (no-op success if absent) */
  STATE_KV_DELETE_CAS,  /* delete only if ModifyIndex == cas; a missing key is success */
  STATE_KV_DELETE_TREE, /* delete every key with the prefix ("" = all) */
  STATE_KV_LOCK,        /* set and acquire with session (false if another session holds it) */
  STATE_KV_UNLOCK,      /* set and release (false unless session holds it) */
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

/* Applies op at Raft index `index` (>= every index applied before: a transaction applies
 * several ops at one index). *ok receives Consul's boolean answer (false when a CAS or lock
 * attempt does not apply; SET, DELETE and DELETE_TREE always answer true). A write that would
 * leave the row exactly as it is (same value, flags, session, LockIndex) changes nothing: no
 * index moves, no watch fires (Consul's kvsSetTxn). Returns 0, or CC_EINVAL for a malformed op
 * (nothing changed): index 0 or below one applied before, a key over STATE_KV_MAX_KEY or
 * empty (except DELETE_TREE), a value over STATE_KV_MAX_VALUE, LOCK/UNLOCK without a session
 * ("missing session"); or CC_ENOTFOUND for a LOCK whose session does not exist (Consul's
 * kvsLockTxn: "invalid session \"<id>\""). Lock-delay is not checked here (it is wall-clock
 * and would break determinism): the proposer checks state_kv_lock_delay_ms (state/session.h).
 * The op's pointers are only read during the call. Fires the watches of everything that
 * changed, after the write is complete. */
int state_kv_apply(struct state_store *s, uint64_t index, const struct state_kv_op *op, bool *ok);
/* The same, with Consul's sentence for a refused lock in err (may be NULL; "" on success). */
int state_kv_apply_msg(struct state_store *s, uint64_t index, const struct state_kv_op *op,
                       bool *ok, char *err, size_t errlen);

/* Removes tombstones whose deletion index is <= upto, at Raft index `index`. Fires the
 * "tombstones" table watches if any went; no table index moves (as in Consul). Returns 0, or
 * CC_EINVAL for an index below one applied before. */
int state_tombstone_reap(struct state_store *s, uint64_t index, uint64_t upto);

/* ---- Snapshots ---- */

/* Appends the whole store to out as one self-describing msgpack document:
 *   {"Version": 4, "Index": <highest index applied>,
 *    "Tables": {"kvs", "tombstones", "nodes", "services", "checks",
 *               "service_last_extinction", "node_last_extinction", "sessions",
 *               "prepared-queries": n},
 *    "KVs": [{"Key", "Value"(bin), "Flags", "CreateIndex", "ModifyIndex", "LockIndex",
 *             "Session"(str or nil)}...],             (in key order)
 *    "Tombstones": [{"Key", "Index"}...],               (in key order)
 *    "Nodes": [...], "Services": [...], "Checks": [...],  (rows as in state/catalog_mp.c)
 *    "ServiceIndexes": {"<service name>": n},
 *    "Sessions": [{session as in state/session_mp.c, with "CreateIndex", "ModifyIndex"}...],
 *    "Queries": [{"ID", "Query"(JSON text), "CreateIndex", "ModifyIndex"}...], (in ID order)
 *    "IndexOffset": n}  (what restored archives added to Raft indexes, cmd.h)
 * Version 1 documents (no catalog), version 2 ones (no sessions), version 3 ones (no
 * prepared queries) and version 4 ones (no IndexOffset) still restore. Lock-delays
 * and TTL deadlines are memory only and not in snapshots (session.h). */
void state_store_snapshot(const struct state_store *s, struct buf *out);
/* Replaces the store's contents with a snapshot's. Everything is checked before anything
 * is replaced: types, caps, keys unique and in order, CreateIndex <= ModifyIndex <= the
 * table index, tombstone indexes <= theirs. Returns 0, or CC_ECORRUPT (store left
 * unchanged). Fires every watch, since anything may have changed. data is only read. */
int state_store_restore(struct state_store *s, const void *data, size_t len);
/* Checks a snapshot document as state_store_restore would, changing nothing: 0 or
 * CC_ECORRUPT. */
int state_snapshot_check(const void *data, size_t len);
/* How many times the tables have been replaced wholesale (a Raft snapshot installed, an
 * archive restored). A blocking query parked before a restore answers after it whatever its
 * index, as Consul's abandoned state store wakes every query. */
uint64_t state_store_restores(const struct state_store *s);

#endif
