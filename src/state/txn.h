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
 *  - catalog verbs (txnNode, txnService, txnCheck): get, set, cas, delete, delete-cas on a
 *    Node (by ID when given, else by name), a Service (Node + Service.ID) or a Check
 *    (Check.Node + Check.CheckID). set writes the row as a registration does (a Service or
 *    Check needs its node: "Missing node registration"; a Check of a service needs it:
 *    "Missing service registration"); cas with ModifyIndex 0 is set-if-absent, else the
 *    row's ModifyIndex must match ("failed to set node \"n\", index is stale"); delete of
 *    something absent succeeds; delete-cas needs the row and its ModifyIndex. set, cas and get
 *    answer the row as the catalog endpoints print it ({"Node": ...}, {"Service": ...},
 *    {"Check": ...}); deletes answer nothing. Unknown verbs: "unknown Node verb \"x\"".
 * Results: a write op answers its entry with Value null (set, cas, lock, unlock, the check
 * verbs), a get its entry with the value, get-tree every entry under the prefix, deletes
 * nothing. Rollback restores every KV row, tombstone, table index and held-key set exactly,
 * and, when the transaction wrote to the catalog, the catalog, sessions and prepared queries (from
 * a copy taken before the first op: O(catalog + sessions) for such transactions only);
 * watches fire once, after the whole transaction (a rolled-back one still wakes them: a
 * spurious wake re-runs a blocking query, which then parks again), and no index moves.
 *
 * Lock-delay and empty keys are checked by the proposer before Raft (Consul's preCheck), not
 * here. */
#ifndef CONCORD_STATE_TXN_H
#define CONCORD_STATE_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "state/catalog.h"

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
  /* catalog: Node.Node / Service's Node and Service.ID / Check.Node and Check.CheckID;
   * `index` is the row's ModifyIndex for cas and delete-cas */
  const char *node;
  const char *service_id;
  const char *check_id;
  const char *node_id; /* Node.ID: a Node get looks the node up by it when non-empty */
  /* set and cas: the row to write, as a registration: the node's fields (Node), the node's
   * name and .service with has_weights (Service, SkipNodeUpdate), or the node's name and one
   * check (Check, SkipNodeUpdate). NULL for other verbs; a set or cas without one fails. */
  const struct state_register *reg;
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
