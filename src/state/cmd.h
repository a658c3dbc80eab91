/* cmd.h -- the commands that change the state store: what a Raft log entry carries.
 *
 * An entry is one type byte followed by a msgpack map (field names as Consul's structs, so a
 * log dump reads like Consul's requests):
 *
 *   +------+--------------------------------------------+
 *   | type | msgpack map {"Op":..., "DirEnt": {...}}    |
 *   +------+--------------------------------------------+
 *
 * The decoder is fed bytes from disk and from other servers, so it is fuzzed
 * (fuzz/fuzz_cmd.c): any input gives CC_ECORRUPT or a valid command, never a crash. Unknown
 * type bytes with the high bit set (128..255) are ignored, as Consul's FSM ignores its
 * IgnoreUnknownTypeFlag, so that newer servers can add commands without breaking older ones. */
#ifndef CONCORD_STATE_CMD_H
#define CONCORD_STATE_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "state/session.h"
#include "state/store.h"
#include "state/query.h"
#include "state/txn.h"

enum state_cmd_type {
  STATE_CMD_KV = 1,             /* one state_kv_op */
  STATE_CMD_TOMBSTONE_REAP = 2, /* reap tombstones up to an index */
  STATE_CMD_NOOP = 3,           /* no change; used by the leader to establish its index */
  STATE_CMD_REGISTER = 4,       /* catalog register (structs.RegisterRequest) */
  STATE_CMD_DEREGISTER = 5,     /* catalog deregister (structs.DeregisterRequest) */
  STATE_CMD_SESSION = 6,        /* session create/destroy (structs.SessionRequest) */
  STATE_CMD_TXN = 7,            /* a transaction of KV ops (structs.TxnRequest) */
  STATE_CMD_QUERY = 8,          /* prepared query create/update/delete (PreparedQueryRequest) */
  STATE_CMD_RESTORE = 9,        /* replace the whole store (a snapshot archive's state.bin) */
};

/* What applying a command produced, handed back to the request that proposed it.
 * A catalog register that the store refuses for a reason the proposer could not see when it
 * proposed (the check's service was deleted meanwhile, a node name taken meanwhile) applies
 * as err 0 with ok false; err is CC_EINVAL only for a malformed request. */
struct state_cmd_result {
  int err;  /* 0 or a CC_E* code */
  bool ok;  /* Consul's true/false answer for KV writes; false for a refused register,
             * session create or transaction */
  char msg[256]; /* why, when err is set or a registration was refused; "" otherwise */
  /* The command's answer, when it has one: a transaction's TxnResponse as compact JSON
   * ({"Results":..,"Errors":..}), a created session's ID; NULL otherwise. Borrowed from the
   * store: valid until the next command applies (the proposer's callback runs right after
   * its entry applied). */
  const char *body;
  size_t body_len;
};

/* Encoders: append one command to out (the caller owns out; op is only read). */
void state_cmd_encode_kv(struct buf *out, const struct state_kv_op *op);
void state_cmd_encode_tombstone_reap(struct buf *out, uint64_t upto);
void state_cmd_encode_noop(struct buf *out);
/* Catalog commands (state/catalog.h); the request is only read. The agent and the leader
 * call these to register nodes, services and checks (e.g. the leader's serfHealth). */
void state_cmd_encode_register(struct buf *out, const struct state_register *req);
void state_cmd_encode_deregister(struct buf *out, const struct state_deregister *req);
/* Session commands: create (the session's ID chosen by the proposer: apply must be
 * deterministic) and destroy. A refused create (no such node, a critical check) applies as
 * err 0, ok false, with Consul's sentence in msg. */
void state_cmd_encode_session_create(struct buf *out, const struct state_session *se);
void state_cmd_encode_session_destroy(struct buf *out, const char *id);
/* A transaction (state/txn.h): all ops apply, or none; res->ok tells which and res->body
 * carries Consul's TxnResponse. */
void state_cmd_encode_txn(struct buf *out, const struct state_txn_op *ops, size_t n);
/* A prepared query write (state/query.h): op "create", "update" (q_json: the normalized query
 * as JSON text) or "delete" (q_json NULL). A refusal by the store's rules applies as err 0,
 * ok false, with Consul's sentence in msg. */
void state_cmd_encode_query(struct buf *out, const char *op, const char *id, const char *q_json);

/* A restore: the type byte followed by a store snapshot document (state_store_snapshot's
 * bytes, not wrapped: they are already one msgpack map). Every server replaces its tables
 * with the document's at the entry, so the restore is in the log like any write: replayed
 * after a restart, carried by Raft snapshots, the same on every server. Rows keep the indexes
 * they were saved with; when those run past the entry's index, every later entry's index is
 * raised by the difference (the store's IndexOffset, kept in its own snapshots), so indexes
 * never go backwards for writes after the restore. A document that does not check is a
 * corrupt command (CC_ECORRUPT, nothing changed): the proposer checks it first. */
void state_cmd_encode_restore(struct buf *out, const void *doc, size_t len);

/* Decodes and applies one command at Raft index `index` (plus the store's IndexOffset). Returns 0 (with *res filled), or
 * CC_ECORRUPT when the bytes are not a valid command (nothing changed; res->err is also
 * CC_ECORRUPT). A command that decodes but cannot apply (LOCK without a session, an empty
 * key, an index below one applied before) returns 0 with res->err = CC_EINVAL and changes
 * nothing, as Consul's FSM hands the state store's error back to the proposer. An ignored
 * type (128..255) returns 0 with res->err = 0, res->ok = true. Decoding caps: key
 * STATE_KV_MAX_KEY, value STATE_KV_MAX_VALUE, session STATE_KV_MAX_SESSION (no NUL bytes);
 * Key and Value may be msgpack str or bin; unknown map fields are skipped. Catalog commands
 * are capped by STATE_CAT_MAX_* (state/catalog.h) and may not carry NUL bytes in strings.
 * data is only read. */
int state_cmd_apply(struct state_store *s, uint64_t index, const void *data, size_t len,
                    struct state_cmd_result *res);

/* Decodes without applying (for the fuzzer and log inspection): 0 or CC_ECORRUPT. */
int state_cmd_validate(const void *data, size_t len);

#endif
