/* internal.h -- what the files of state/ share and nobody else sees: the store's layout,
 * the watch registry's hooks for writers, and the bounded msgpack pre-check. */
#ifndef CONCORD_STATE_INTERNAL_H
#define CONCORD_STATE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "lib/buf.h"
#include "lib/map.h"
#include "state/catalog.h"
#include "state/session.h"
#include "state/store.h"
#include "state/tree.h"
#include "state/watch.h"

/* A KV row: one allocation holding the tree links, the fields reads see, and the bytes
 * (key NUL value NUL [session NUL]) that kv's pointers point at. */
struct state__kv_row {
  struct state__tnode node; /* node.key == kv.key */
  struct state_kv kv;
  char data[];
};

/* A tombstone: a deleted key (or deleted tree prefix) and the index that deleted it. */
struct state__tomb {
  struct state__tnode node;
  uint64_t index;
  char key[];
};

/* A list of watches: the list of one watched key/prefix/table (inside a struct
 * state__watched) or the store's pending list of fired watches waiting for their callback. */
struct state__watch_list {
  struct state_watch *head, *tail;
  size_t count;
  bool pending; /* the store's pending list, never freed */
};

/* A watched key, prefix or table name and its watches; kept in a map by its key. */
struct state__watched {
  struct state__watch_list list; /* first: a list that is not pending is one of these */
  enum state_watch_kind kind;
  size_t key_len;
  char key[];
};

/* Distinct lengths of watched prefixes, with how many watched prefixes have each: a write
 * of key K looks up only K's prefixes of these lengths (see watch.c). */
struct state__plen {
  size_t len;
  size_t count;
};

struct state__watches {
  struct map keys;     /* key -> struct state__watched */
  struct map prefixes; /* prefix -> struct state__watched */
  struct map tables;   /* table name -> struct state__watched */
  struct state__plen *plens; /* sorted by len */
  size_t nplens, plens_cap;
  struct state__watch_list pending; /* fired, callback not yet run */
  size_t count;                     /* registered watches, pending ones included */
  bool firing;
};

struct state_store {
  struct state__tnode *kvs; /* struct state__kv_row, by key */
  size_t kv_count;
  struct state__tnode *tombs; /* struct state__tomb, by key */
  size_t tomb_count;
  uint64_t kvs_index;  /* table index "kvs" */
  uint64_t tomb_index; /* table index "tombstones" */
  uint64_t applied;    /* highest Raft index handed to any write, changed or not */
  uint64_t index_offset; /* added to every Raft index before it stamps a row (cmd.c) */
  uint64_t restores;   /* how many times the tables were replaced wholesale */
  struct state__watches w;
  struct state__catalog *cat; /* nodes, services, checks (catalog.c) */
  struct state__sessions *sess; /* sessions, lock-delays, TTL deadlines (session.c) */
  struct state__queries *queries; /* prepared queries (query.c) */
  struct buf txn_out; /* the last transaction's result (txn.c), until the next command */
  struct state__kv_undo *undo; /* while a transaction runs (store.c) */
};

/* ---- store.c helpers shared with snapshot.c ---- */
void state__kv_free_all(struct state__tnode *root);
void state__tomb_free_all(struct state__tnode *root);
/* Allocates a row (caller links it into a tree or frees it with free()). session may be
 * NULL. */
struct state__kv_row *state__kv_row_new(const char *key, size_t key_len, const uint8_t *value,
                                        size_t value_len, const char *session,
                                        size_t session_len);
struct state__tomb *state__tomb_new(const char *key, size_t key_len, uint64_t index);

/* Writes for session.c, without a flush (the caller's write flushes once): release a key
 * (Session cleared, value and LockIndex kept, new ModifyIndex; kvsSetTxn with
 * updateSession) and delete one (leaving a tombstone). Missing keys are ignored. */
void state__kv_release(struct state_store *s, uint64_t index, const char *key, size_t len);
void state__kv_delete_key(struct state_store *s, uint64_t index, const char *key, size_t len);
/* One KV op as state_kv_apply does it, minus the checks of check_op and the flush (txn.c).
 * Returns 0, or CC_EINVAL ("missing session") / CC_ENOTFOUND ("invalid session \"<id>\"")
 * for a lock, with the sentence in err. */
int state__kv_do(struct state_store *s, uint64_t index, const struct state_kv_op *op, bool *ok,
                 char *err, size_t errlen);
/* The undo log of a transaction (store.c): begin, then commit (keep every change) or
 * rollback (every KV row, tombstone, count and index as at begin). No flush. */
void state__kv_undo_begin(struct state_store *s);
void state__kv_undo_commit(struct state_store *s);
void state__kv_undo_rollback(struct state_store *s);
/* check_op of store.c: 0 or CC_EINVAL for a malformed op. */
int state__kv_check_op(const struct state_store *s, uint64_t index, const struct state_kv_op *op);

/* ---- snapshot.c, for txn.c ---- */

/* A transaction's copy of the catalog, sessions and prepared queries (a snapshot document
 * without KVs and tombstones: destroying a session deletes its queries), appended to out;
 * and putting it back after a rollback (the KV tables are the undo log's): swaps in rebuilt
 * catalog, sessions and queries tables, keeping the sessions'
 * clock, lock-delays and TTL tracking, without firing or flushing watches. 0 or
 * CC_ECORRUPT (nothing changed). */
void state__catalog_save(const struct state_store *s, struct buf *out);
int state__catalog_rollback(struct state_store *s, const void *data, size_t len);
/* The restore command (cmd.c) at store index `index`: replaces every table with a snapshot
 * document's, keeping its rows' indexes; when they run past `index`, index_offset grows so
 * that later writes land above them. Returns 0, CC_EINVAL (index below one applied) or
 * CC_ECORRUPT (store unchanged). */
int state__store_restore_at(struct state_store *s, uint64_t index, const void *data, size_t len);
/* Checks a snapshot document as a restore would, changing nothing: 0 or CC_ECORRUPT. */
int state__snapshot_check(const void *data, size_t len);

/* ---- query.c, for store.c and snapshot.c ---- */

struct state__queries;
struct state__queries *state__queries_new(void);
void state__queries_free(struct state__queries *t);
uint64_t state__queries_index(const struct state__queries *t);
/* Snapshot rows: an array of {"ID", "Query" (the JSON text), "CreateIndex", "ModifyIndex"}
 * in ID order; restore fills an empty table built aside (rows may be NULL: none) and sets
 * its index. CC_ECORRUPT for anything out of place. */
void state__queries_snapshot(const struct state__queries *t, msgpack_packer *pk);
int state__queries_restore(struct state__queries *t, const msgpack_object *rows, uint64_t index);
/* A session is being destroyed at idx: deletes the queries bound to it (Consul's
 * deleteSessionTxn), moving the table index and firing its watches, without a flush. */
void state__queries_session_deleted(struct state_store *s, uint64_t idx, const char *session);

/* ---- session.c, for store.c, catalog.c, snapshot.c and txn.c ---- */

struct state__sessions;
struct state__sessions *state__sessions_new(void);
void state__sessions_free(struct state__sessions *t);
uint64_t state__sessions_index(const struct state__sessions *t);
size_t state__sessions_count(const struct state__sessions *t);
bool state__session_exists(struct state_store *s, const char *id);
/* Key changed holder from `from` to `to` (either NULL): keeps each session's held-key set. */
void state__session_held_move(struct state_store *s, const char *key, size_t len,
                              const char *from, const char *to);
/* Invalidation hooks of the catalog (deleteNodeTxn, deleteCheckTxn, ensureCheckTxn writing a
 * critical check): destroy the tied sessions at idx, without a flush. */
void state__session_invalidate_node(struct state_store *s, uint64_t idx, const char *node);
void state__session_invalidate_check(struct state_store *s, uint64_t idx, const char *node,
                                     const char *check_id);
/* Snapshot writing: every session in ID order. */
void state__sessions_walk(const struct state__sessions *t,
                          void (*fn)(void *arg, const struct state_session *se), void *arg);
/* Snapshot restore into a table built aside; CC_ECORRUPT for a duplicate or invalid row. */
int state__sessions_restore_row(struct state__sessions *t, const struct state_session *se,
                                uint64_t create, uint64_t modify);
void state__sessions_restore_index(struct state__sessions *t, uint64_t index);
/* After the restored tables are in the store (s->sess is the new table): rebuilds the held
 * keys from the KV rows, keeps old's clock and tracking, frees old. */
void state__sessions_adopt(struct state_store *s, struct state__sessions *old);
/* Moves old's lock-delays (memory only, not in snapshots) into t, before adopt: a rolled
 * back transaction keeps them as they were. */
void state__sessions_keep_delays(struct state__sessions *t, struct state__sessions *old);

/* ---- session_mp.c: sessions as msgpack (command and snapshot rows) ---- */

struct state__arena;

/* {"ID", "Name", "Node", "LockDelay", "Behavior", "TTL", "NodeChecks"(array|nil),
 *  "ServiceChecks"([{"ID", "Namespace"}]|nil), "Checks"(array|nil)} plus, with indexes,
 *  "CreateIndex" and "ModifyIndex". */
void state__mp_pack_session(msgpack_packer *pk, const struct state_session *se,
                            bool with_indexes);
/* Decodes into *out, strings copied into the arena. 0 or CC_ECORRUPT. */
int state__mp_decode_session(const msgpack_object *o, struct state__arena *a,
                             struct state_session *out, bool with_indexes);

/* ---- watch.c hooks, called by writers ---- */
void state__watch_init(struct state__watches *w);
/* Frees every watch without calling it (store teardown). */
void state__watch_free(struct state__watches *w);
/* Moves the watches of exact key K and of every watched prefix of K to the pending list. */
void state__watch_kv_changed(struct state__watches *w, const char *key, size_t len);
void state__watch_table_changed(struct state__watches *w, const char *table);
/* Moves every registered watch to the pending list (restore). */
void state__watch_all_changed(struct state__watches *w);
/* Calls and frees the pending watches; run once a write is complete. */
void state__watch_flush(struct state__watches *w);

/* ---- catalog.c, for store.c, snapshot.c and catalog_mp.c ---- */

struct state__catalog;
struct state__catalog *state__catalog_new(void);
void state__catalog_free(struct state__catalog *c);
/* The highest of the catalog's table and extinction indexes. */
uint64_t state__catalog_max_index(const struct state__catalog *c);
/* Answers state_table_index for catalog names ("nodes", "service.<name>", ...); false when
 * the name is not one of them. */
bool state__catalog_table_index(const struct state__catalog *c, const char *table, uint64_t *out);

struct state__catalog_indexes {
  uint64_t nodes, services, checks, svc_extinction, node_extinction;
};
void state__catalog_indexes(const struct state__catalog *c, struct state__catalog_indexes *ix);

/* Snapshot writing: visits every node (with its "node.<name>" index), then every service,
 * then every check, each in key order. */
struct state__catalog_walker {
  void *arg;
  void (*node)(void *arg, const struct state_node *n, uint64_t node_index);
  void (*service)(void *arg, const struct state_service *svc);
  void (*check)(void *arg, const struct state_check *c);
};
void state__catalog_walk(const struct state__catalog *c, const struct state__catalog_walker *w);
size_t state__catalog_group_count(const struct state__catalog *c);
void state__catalog_counts(const struct state__catalog *c, size_t *nodes, size_t *services,
                           size_t *checks);
/* Every service name (lowercased) with its "service.<name>" index. */
void state__catalog_groups(const struct state__catalog *c,
                           void (*fn)(void *arg, const char *lname, uint64_t index), void *arg);

/* Snapshot restore into a catalog built aside (no watches): rows keep their stored indexes.
 * Services need their node, checks their node and service. CC_ECORRUPT for a duplicate or
 * dangling row. */
int state__catalog_restore_node(struct state__catalog *c, const struct state_register *req,
                                uint64_t create, uint64_t modify, uint64_t node_index);
int state__catalog_restore_service(struct state__catalog *c, const char *node,
                                   const struct state_register_service *s, uint64_t create,
                                   uint64_t modify);
int state__catalog_restore_check(struct state__catalog *c, const struct state_register_check *ck,
                                 uint64_t create, uint64_t modify);
int state__catalog_restore_indexes(struct state__catalog *c,
                                   const struct state__catalog_indexes *ix);
int state__catalog_restore_service_index(struct state__catalog *c, const char *name,
                                         uint64_t index);

/* ---- catalog_mp.c: catalog rows and requests as msgpack ---- */

/* A bump allocator for decoded requests: everything a decode points at lives here until
 * state__arena_free. */
struct state__arena {
  struct state__arena_block *head;
};
void *state__arena_alloc(struct state__arena *a, size_t size);
void state__arena_free(struct state__arena *a);

void state__mp_pack_register(msgpack_packer *pk, const struct state_register *req);
void state__mp_pack_deregister(msgpack_packer *pk, const struct state_deregister *req);
/* Decode into *out, pointing into the arena (NUL-terminated copies). 0 or CC_ECORRUPT. */
int state__mp_decode_register(const msgpack_object *o, struct state__arena *a,
                              struct state_register *out);
int state__mp_decode_deregister(const msgpack_object *o, struct state__arena *a,
                                struct state_deregister *out);

/* The catalog part of a snapshot: packs the map entries "Nodes", "Services", "Checks" and
 * "ServiceIndexes" (4 key/value pairs) into the enclosing map. */
#define STATE__CATALOG_SNAPSHOT_KEYS 4
void state__catalog_snapshot(const struct state__catalog *c, msgpack_packer *pk);
/* Rebuilds a catalog from those entries (any may be NULL: empty). Returns 0 and *out, or
 * CC_ECORRUPT. */
int state__catalog_restore(const msgpack_object *nodes, const msgpack_object *services,
                           const msgpack_object *checks, const msgpack_object *svc_indexes,
                           const struct state__catalog_indexes *ix, uint64_t max_index,
                           struct state__catalog **out);

/* ---- msgpack helpers (mp.c) ---- */

/* Caps that keep hostile bytes from making msgpack-c allocate: see mp.c. */
#define STATE__MP_MAX_DEPTH 16

/* Checks that data holds exactly one well-formed msgpack object (no trailing bytes), nested
 * at most STATE__MP_MAX_DEPTH deep, with every array/map count no larger than the bytes
 * left could hold. Returns 0 or CC_ECORRUPT. Only after this passes is msgpack-c's unpacker
 * run, since it allocates count * 24 bytes for an array header before reading elements. */
int state__mp_check(const void *data, size_t len);
/* Unpacks data (already checked) into *up; its str/bin objects point into data, so data
 * must outlive *up. Returns 0 or CC_ECORRUPT. The caller calls msgpack_unpacked_destroy. */
int state__mp_unpack(const void *data, size_t len, msgpack_unpacked *up);
/* A packer that appends to out. */
void state__mp_packer_init(msgpack_packer *pk, struct buf *out);
void state__mp_pack_cstr(msgpack_packer *pk, const char *s);
void state__mp_pack_str(msgpack_packer *pk, const char *s, size_t len);
void state__mp_pack_bin(msgpack_packer *pk, const void *p, size_t len);

/* Decoding helpers over an unpacked object: 0 or CC_ECORRUPT. */

/* Fills f[i].val with the value of map field f[i].name (NULL when absent). o must be a map;
 * a field named twice is corrupt; fields not asked for are skipped (newer writers may add
 * fields; anything incompatible bumps a version or a type byte). */
struct state__mp_field {
  const char *name;
  const msgpack_object *val;
};
int state__mp_fields(const msgpack_object *o, struct state__mp_field *f, size_t n);
bool state__mp_key_is(const msgpack_object *k, const char *name);
/* A non-negative integer (msgpack positive int). */
int state__mp_uint(const msgpack_object *o, uint64_t *out);
/* A str or bin (Go encodes []byte either way, depending on its codec settings); nil gives
 * an empty range when nil_ok. */
int state__mp_bytes(const msgpack_object *o, bool nil_ok, const char **p, size_t *len);

#endif
