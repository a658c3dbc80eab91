/* txn.h -- Consul's transactions (/v1/txn) over the state store: up to 128 operations that
 * apply together or not at all, in one Raft entry (agent/consul/state/txn.go, txn_endpoint.go).
 *
 * Semantics, as Consul's txnDispatch inside one memdb write transaction:
 *  - the ops run in order and each sees what the ones before it did (a "get" after a "set"
 *    returns the new value); every op runs even after one failed, so that every error is
 *    reported; if any failed, everything is rolled back and the answer is the errors alone
 *    (HTTP 409), else the results (HTTP 200);
 *  - KV verbs: set, cas, lock, unlock, get, get-or-empty, get-tree, check-index,
 *    check-session, check-not-exists, delete, delete-tree, delete-cas, with Consul's error
 *    sentences ("failed to set key \"k\", index is stale", ...); an unknown verb is an error
 *    of that op ("unknown KV verb \"x\"");
 *  - catalog reads: Node "get", Service "get", Check "get" answer the row as the catalog
 *    endpoints print it. Catalog writes inside a transaction are not supported yet: such an
 *    op fails with "<kind> operations that write are not supported in transactions yet".
 * Results: a write op answers its entry with Value null (set, cas, lock, unlock, the check
 * verbs), a get its entry with the value, get-tree every entry under the prefix, deletes
 * nothing. Rollback restores every KV row, tombstone, table index and held-key set exactly;
 * watches that fired during a rolled-back transaction still run (a spurious wake re-runs a
 * blocking query, which then parks again), and no index moves.
 *
 * Lock-delay and empty keys are checked by the proposer before Raft (Consul's preCheck), not
 * here. */
#ifndef CONCORD_STATE_TXN_H
#define CONCORD_STATE_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct state_store;

#define STATE_TXN_MAX_OPS 128 /* Consul's maxTxnOps */

enum state_txn_kind {
  STATE_TXN_KV,
  STATE_TXN_NODE,
  STATE_TXN_SERVICE,
  STATE_TXN_CHECK,
};

/* One operation (api.TxnOp). Strings are NUL-terminated except key/value (lengths given). */
struct state_txn_op {
  enum state_txn_kind kind;
  const char *verb; /* "set", "get-tree", ... as given */
  /* KV (DirEnt): ModifyIndex is `index` */
  const char *key;
  size_t key_len;
  const uint8_t *value; /* NULL: Go's nil []byte */
  size_t value_len;
  uint64_t flags;
  uint64_t index;
  const char *session;
  /* catalog: Node.Node / Service's Node and Service.ID / Check.Node and Check.CheckID */
  const char *node;
  const char *service_id;
  const char *check_id;
};

/* True when the op may change the store (Consul's isWrite and the catalog verbs other than
 * "get"): a transaction without any goes the read-only path. Unknown KV verbs are not writes
 * (Consul's isWrite lists the write verbs). */
bool state_txn_op_is_write(const struct state_txn_op *op);

/* Runs a transaction at Raft index `index` (the FSM). Appends Consul's TxnResponse JSON,
 * compact, to out: {"Results":[...],"Errors":null} when every op succeeded (*ok true), or
 * {"Results":null,"Errors":[{"OpIndex":i,"What":"..."}...]} after rolling everything back
 * (*ok false). Returns 0, or CC_EINVAL (nothing done, out untouched) for an index below one
 * applied before, n over STATE_TXN_MAX_OPS, or an op over the KV caps of store.h. ops are only
 * read. */
int state_txn_apply(struct state_store *s, uint64_t index, const struct state_txn_op *ops,
                    size_t n, struct buf *out, bool *ok);

/* A read-only transaction (Consul's TxnRO), changing nothing: same JSON as above. Write ops
 * fail as errors ("cannot write in a read-only transaction"). */
void state_txn_read(struct state_store *s, const struct state_txn_op *ops, size_t n,
                    struct buf *out, bool *ok);

/* Appends s quoted as Go's %q (strconv.Quote) does in the error sentences: \" \\ and the C
 * escapes, other control bytes and invalid UTF-8 as \xNN, valid UTF-8 kept. */
void state_txn_quote(struct buf *b, const char *s, size_t len);

#endif
