/* store.c -- the state store's KV table, graveyard and table indexes, with Consul's rules.
 *
 * The rules are those of Consul's agent/consul/state/kvs.go, kvs_ce.go and graveyard.go and
 * of agent/consul/kvs_endpoint.go (the index a read answers with); store.h lists them. Two
 * ordered trees (tree.h) hold the live rows and the tombstones. Each row is one allocation:
 * tree links, the struct state_kv that reads borrow, then key, value and session bytes, so
 * the table costs about 120 bytes per row over the raw key and value.
 *
 * Every write builds its new row before it unlinks the old one, so a failed or no-op write
 * leaves the store exactly as it was, and collects the watches to fire into the pending
 * list, which is flushed (callbacks run) only once the write is complete. Prefix indexes are
 * computed by walking the prefix's range of rows and tombstones, as Consul does; that is
 * O(keys under the prefix), the same order as the listing itself. */
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "state/internal.h"

/* ---- rows and tombstones ---- */

struct state__kv_row *state__kv_row_new(const char *key, size_t key_len, const uint8_t *value,
                                        size_t value_len, const char *session,
                                        size_t session_len)
{
  size_t extra = key_len + 1 + value_len + 1 + (session ? session_len + 1 : 0);
  struct state__kv_row *r = xmalloc(sizeof *r + extra);
  char *p = r->data;
  if (key_len) memcpy(p, key, key_len);
  p[key_len] = '\0';
  r->kv.key = p;
  r->kv.key_len = key_len;
  p += key_len + 1;
  if (value_len) memcpy(p, value, value_len);
  p[value_len] = '\0';
  r->kv.value = (const uint8_t *)p;
  r->kv.value_len = value_len;
  p += value_len + 1;
  if (session) {
    memcpy(p, session, session_len);
    p[session_len] = '\0';
    r->kv.session = p;
  } else {
    r->kv.session = NULL;
  }
  r->kv.flags = 0;
  r->kv.create_index = r->kv.modify_index = r->kv.lock_index = 0;
  r->node.key = r->kv.key;
  r->node.key_len = (uint32_t)key_len;
  r->node.child[0] = r->node.child[1] = NULL;
  r->node.height = 1;
  return r;
}

struct state__tomb *state__tomb_new(const char *key, size_t key_len, uint64_t index)
{
  struct state__tomb *t = xmalloc(sizeof *t + key_len + 1);
  if (key_len) memcpy(t->key, key, key_len);
  t->key[key_len] = '\0';
  t->index = index;
  t->node.key = t->key;
  t->node.key_len = (uint32_t)key_len;
  t->node.child[0] = t->node.child[1] = NULL;
  t->node.height = 1;
  return t;
}

/* Post-order, so each node is freed after its children are read. Recursion depth is the
 * tree height. The node is the first member of both row types, so the node pointer is the
 * allocation. */
static void free_tree(struct state__tnode *n)
{
  if (!n) return;
  free_tree(n->child[0]);
  free_tree(n->child[1]);
  free(n);
}

void state__kv_free_all(struct state__tnode *root) { free_tree(root); }
void state__tomb_free_all(struct state__tnode *root) { free_tree(root); }

static struct state__kv_row *row_of(struct state__tnode *n)
{
  return (struct state__kv_row *)n;
}

static struct state__tomb *tomb_of(struct state__tnode *n)
{
  return (struct state__tomb *)n;
}

/* ---- the store ---- */

struct state_store *state_store_new(void)
{
  struct state_store *s = xcalloc(1, sizeof *s);
  state__watch_init(&s->w);
  s->cat = state__catalog_new();
  s->sess = state__sessions_new();
  s->queries = state__queries_new();
  return s;
}

void state_store_free(struct state_store *s)
{
  if (!s) return;
  state__kv_free_all(s->kvs);
  state__tomb_free_all(s->tombs);
  state__catalog_free(s->cat);
  state__sessions_free(s->sess);
  state__queries_free(s->queries);
  buf_free(&s->txn_out);
  state__watch_free(&s->w);
  free(s);
}

static uint64_t kvs_max_index(const struct state_store *s)
{
  return s->kvs_index > s->tomb_index ? s->kvs_index : s->tomb_index;
}

uint64_t state_store_restores(const struct state_store *s)
{
  return s->restores;
}

uint64_t state_store_index(const struct state_store *s)
{
  uint64_t kv = kvs_max_index(s), cat = state__catalog_max_index(s->cat);
  uint64_t sess = state__sessions_index(s->sess);
  uint64_t max = kv > cat ? kv : cat;
  uint64_t q = state__queries_index(s->queries);
  max = q > max ? q : max;
  return sess > max ? sess : max;
}

uint64_t state_table_index(const struct state_store *s, const char *table)
{
  if (!table) return 0;
  if (strcmp(table, "kvs") == 0) return kvs_max_index(s);
  if (strcmp(table, "tombstones") == 0) return s->tomb_index;
  if (strcmp(table, "sessions") == 0) return state__sessions_index(s->sess);
  if (strcmp(table, "prepared-queries") == 0) return state__queries_index(s->queries);
  uint64_t idx;
  if (state__catalog_table_index(s->cat, table, &idx)) return idx;
  return 0;
}

size_t state_kv_count(const struct state_store *s) { return s->kv_count; }
size_t state_tombstone_count(const struct state_store *s) { return s->tomb_count; }

/* Consul's endpoints answer 1 rather than 0 so that a blocking query never waits on 0. */
static uint64_t answer(uint64_t index) { return index ? index : 1; }

/* ---- reads ---- */

const struct state_kv *state_kv_get(struct state_store *s, const char *key, size_t key_len,
                                    uint64_t *index)
{
  struct state__tnode *n = key || !key_len ? state__tree_find(s->kvs, key, key_len) : NULL;
  const struct state_kv *e = n ? &row_of(n)->kv : NULL;
  if (index) *index = answer(e ? e->modify_index : kvs_max_index(s));
  return e;
}

/* The highest tombstone index under prefix (0 if none). */
static uint64_t tomb_max_under(struct state_store *s, const char *prefix, size_t plen)
{
  uint64_t max = 0;
  struct state__titer it;
  state__tree_seek(&it, s->tombs, prefix, plen);
  for (struct state__tnode *n; (n = state__tree_next(&it));) {
    if (!state__has_prefix(n->key, n->key_len, prefix, plen)) break;
    if (tomb_of(n)->index > max) max = tomb_of(n)->index;
  }
  return max;
}

/* kvsListTxn's rule, given the highest live ModifyIndex under the prefix. */
static uint64_t prefix_answer(struct state_store *s, const char *prefix, size_t plen,
                              uint64_t live_max)
{
  uint64_t idx = kvs_max_index(s);
  uint64_t lindex = live_max;
  if (plen) {
    uint64_t g = tomb_max_under(s, prefix, plen);
    if (g > lindex) lindex = g;
  } else {
    lindex = idx;
  }
  return answer(lindex ? lindex : idx);
}

uint64_t state_kv_list(struct state_store *s, const char *prefix, size_t prefix_len,
                       state_kv_fn fn, void *arg)
{
  if (!prefix) prefix_len = 0;
  uint64_t live_max = 0;
  bool calling = fn != NULL;
  struct state__titer it;
  state__tree_seek(&it, s->kvs, prefix, prefix_len);
  for (struct state__tnode *n; (n = state__tree_next(&it));) {
    if (!state__has_prefix(n->key, n->key_len, prefix, prefix_len)) break;
    const struct state_kv *e = &row_of(n)->kv;
    if (e->modify_index > live_max) live_max = e->modify_index;
    if (calling && fn(e, arg)) calling = false;
  }
  return prefix_answer(s, prefix, prefix_len, live_max);
}

/* Where sep first occurs in p[0..len), or -1. */
static long find_sep(const char *p, size_t len, const char *sep, size_t sep_len)
{
  if (sep_len > len) return -1;
  for (size_t i = 0; i + sep_len <= len; i++) {
    if (p[i] == sep[0] && memcmp(p + i, sep, sep_len) == 0) return (long)i;
  }
  return -1;
}

uint64_t state_kv_keys(struct state_store *s, const char *prefix, size_t prefix_len,
                       const char *separator, size_t separator_len, state_key_fn fn, void *arg)
{
  if (!prefix) prefix_len = 0;
  if (!separator) separator_len = 0;
  uint64_t live_max = 0;
  bool calling = fn != NULL;
  /* Keys rolling up to the same name R all start with R, so they are adjacent in key order
   * (anything sorting between two keys with prefix R has prefix R too, and its first
   * separator after the prefix is at the same place): remembering the last rolled-up name
   * is enough to emit each once, as Consul's `seen` map does. */
  const char *last = NULL;
  size_t last_len = 0;
  struct state__titer it;
  state__tree_seek(&it, s->kvs, prefix, prefix_len);
  for (struct state__tnode *n; (n = state__tree_next(&it));) {
    if (!state__has_prefix(n->key, n->key_len, prefix, prefix_len)) break;
    const struct state_kv *e = &row_of(n)->kv;
    if (e->modify_index > live_max) live_max = e->modify_index;
    if (!calling) continue;
    size_t out_len = e->key_len;
    if (separator_len) {
      long at = find_sep(e->key + prefix_len, e->key_len - prefix_len, separator, separator_len);
      if (at >= 0) {
        out_len = prefix_len + (size_t)at + separator_len;
        if (last && last_len == out_len && memcmp(last, e->key, out_len) == 0) continue;
        last = e->key;
        last_len = out_len;
      }
    }
    if (fn(e->key, out_len, arg)) calling = false;
  }
  return prefix_answer(s, prefix, prefix_len, live_max);
}

/* ---- writes ---- */

static bool session_eq(const char *a, const char *b, size_t blen);

/* ---- transactions' undo log ----
 *
 * While a transaction runs (txn.c), every key it touches is recorded once, before its first
 * change: the row live then (its "before" row) and its tombstone. Rows unlinked during the
 * transaction are not freed but kept in a list, so a rollback can put the before rows back
 * exactly (same pointers, same indexes); tombstones are just (key, index) and are recreated.
 * A commit frees the kept rows. The held-key sets of sessions follow the rows (each restored
 * row change goes through state__session_held_move), and the counts are restored wholesale. */

struct undo_key {
  struct state__kv_row *before; /* live row before the transaction, or NULL */
  bool had_tomb;
  uint64_t tomb_index;
  size_t key_len;
  char key[];
};

struct state__kv_undo {
  struct map keys; /* key -> struct undo_key */
  struct state__kv_row **retired; /* rows unlinked during the transaction */
  size_t n_retired, cap_retired;
  size_t kv_count, tomb_count;
  uint64_t kvs_index, tomb_index;
};

static void undo_touch(struct state_store *s, const char *key, size_t len)
{
  struct state__kv_undo *u = s->undo;
  if (!u || map_get(&u->keys, key, len)) return;
  struct undo_key *k = xcalloc(1, sizeof *k + len + 1);
  struct state__tnode *n = state__tree_find(s->kvs, key, len);
  struct state__tnode *t = state__tree_find(s->tombs, key, len);
  k->before = n ? row_of(n) : NULL;
  k->had_tomb = t != NULL;
  k->tomb_index = t ? tomb_of(t)->index : 0;
  k->key_len = len;
  if (len) memcpy(k->key, key, len);
  map_put(&u->keys, key, len, k);
}

/* Frees a row that left the tree, or keeps it for a rollback while a transaction runs. */
static void row_retire(struct state_store *s, struct state__kv_row *r)
{
  struct state__kv_undo *u = s->undo;
  if (!u) {
    free(r);
    return;
  }
  if (u->n_retired == u->cap_retired) {
    u->cap_retired = u->cap_retired ? u->cap_retired * 2 : 16;
    u->retired = xrealloc(u->retired, u->cap_retired * sizeof *u->retired);
  }
  u->retired[u->n_retired++] = r;
}

void state__kv_undo_begin(struct state_store *s)
{
  struct state__kv_undo *u = xcalloc(1, sizeof *u);
  map_init(&u->keys);
  u->kv_count = s->kv_count;
  u->tomb_count = s->tomb_count;
  u->kvs_index = s->kvs_index;
  u->tomb_index = s->tomb_index;
  s->undo = u;
}

static void undo_free(struct state__kv_undo *u)
{
  for (struct map_iter it = map_iter_start(&u->keys); map_iter_next(&it);) free(it.entry->value);
  map_free(&u->keys);
  free(u->retired);
  free(u);
}

void state__kv_undo_commit(struct state_store *s)
{
  struct state__kv_undo *u = s->undo;
  s->undo = NULL;
  for (size_t i = 0; i < u->n_retired; i++) free(u->retired[i]);
  undo_free(u);
}

void state__kv_undo_rollback(struct state_store *s)
{
  struct state__kv_undo *u = s->undo;
  s->undo = NULL;
  for (struct map_iter it = map_iter_start(&u->keys); map_iter_next(&it);) {
    struct undo_key *k = it.entry->value;
    struct state__tnode *n = state__tree_find(s->kvs, k->key, k->key_len);
    struct state__kv_row *cur = n ? row_of(n) : NULL;
    if (cur != k->before) {
      const char *from = cur ? cur->kv.session : NULL, *to = k->before ? k->before->kv.session : NULL;
      if (!session_eq(from, to, to ? strlen(to) : 0))
        state__session_held_move(s, k->key, k->key_len, from, to);
      if (cur) {
        state__tree_remove(&s->kvs, k->key, k->key_len);
        free(cur); /* made by the transaction: no before row is ever live but its own */
      }
      if (k->before) state__tree_insert(&s->kvs, &k->before->node);
      state__watch_kv_changed(&s->w, k->key, k->key_len);
    }
    struct state__tnode *t = state__tree_remove(&s->tombs, k->key, k->key_len);
    free(t);
    if (k->had_tomb) state__tree_insert(&s->tombs, &state__tomb_new(k->key, k->key_len, k->tomb_index)->node);
  }
  /* Kept rows that are before rows are back in the tree; the others were made and dropped
   * by the transaction itself. */
  for (size_t i = 0; i < u->n_retired; i++) {
    struct state__kv_row *r = u->retired[i];
    struct undo_key *k = map_get(&u->keys, r->kv.key, r->kv.key_len);
    if (!k || k->before != r) free(r);
  }
  s->kv_count = u->kv_count;
  s->tomb_count = u->tomb_count;
  s->kvs_index = u->kvs_index;
  s->tomb_index = u->tomb_index;
  undo_free(u);
}

/* Records (key, index) in the graveyard, replacing an older tombstone for the same key. */
static void tomb_put(struct state_store *s, const char *key, size_t len, uint64_t index)
{
  undo_touch(s, key, len);
  struct state__tnode *n = state__tree_find(s->tombs, key, len);
  if (n) {
    tomb_of(n)->index = index;
  } else {
    state__tree_insert(&s->tombs, &state__tomb_new(key, len, index)->node);
    s->tomb_count++;
  }
  s->tomb_index = index;
  state__watch_table_changed(&s->w, "tombstones");
}

static bool session_eq(const char *a, const char *b, size_t blen)
{
  if (!a || !b) return a == b;
  return strlen(a) == blen && memcmp(a, b, blen) == 0;
}

/* Writes key's row with these contents at index, keeping the old row's CreateIndex (the
 * tail of Consul's kvsSetTxn). An identical row is left alone: Consul's DirEntry.Equal
 * compares LockIndex, Key, Flags, Value and Session. */
static void kv_write(struct state_store *s, uint64_t index, struct state__kv_row *old,
                     const struct state_kv_op *op, const char *session, uint64_t lock_index)
{
  size_t slen = session ? strlen(session) : 0;
  if (old && old->kv.flags == op->flags && old->kv.lock_index == lock_index &&
      old->kv.value_len == op->value_len &&
      (!op->value_len || memcmp(old->kv.value, op->value, op->value_len) == 0) &&
      session_eq(old->kv.session, session, slen))
    return;

  undo_touch(s, op->key, op->key_len);
  if (!session_eq(old ? old->kv.session : NULL, session, slen))
    state__session_held_move(s, op->key, op->key_len, old ? old->kv.session : NULL, session);
  struct state__kv_row *r =
      state__kv_row_new(op->key, op->key_len, op->value, op->value_len, session, slen);
  r->kv.flags = op->flags;
  r->kv.lock_index = lock_index;
  r->kv.create_index = old ? old->kv.create_index : index;
  r->kv.modify_index = index;
  if (old) {
    state__tree_replace(&s->kvs, &old->node, &r->node);
    row_retire(s, old); /* after the copy above: session may have pointed into it */
  } else {
    state__tree_insert(&s->kvs, &r->node);
    s->kv_count++;
    struct state__tnode *t = state__tree_remove(&s->tombs, op->key, op->key_len);
    if (t) {
      free(t);
      s->tomb_count--;
      state__watch_table_changed(&s->w, "tombstones");
    }
  }
  s->kvs_index = index;
  state__watch_kv_changed(&s->w, r->kv.key, r->kv.key_len);
  state__watch_table_changed(&s->w, "kvs");
}

/* Deletes a live row at index and leaves its tombstone (kvsDeleteTxn). */
static void kv_delete(struct state_store *s, uint64_t index, struct state__kv_row *r)
{
  undo_touch(s, r->kv.key, r->kv.key_len);
  if (r->kv.session) state__session_held_move(s, r->kv.key, r->kv.key_len, r->kv.session, NULL);
  state__tree_remove(&s->kvs, r->kv.key, r->kv.key_len);
  s->kv_count--;
  tomb_put(s, r->kv.key, r->kv.key_len, index);
  s->kvs_index = index;
  state__watch_kv_changed(&s->w, r->kv.key, r->kv.key_len);
  state__watch_table_changed(&s->w, "kvs");
  row_retire(s, r);
}

/* kvsDeleteTreeTxn: every row under prefix goes; one tombstone marks the prefix (none for the
 * empty prefix: every key then answers with the table index anyway). */
static void kv_delete_tree(struct state_store *s, uint64_t index, const char *prefix,
                           size_t plen)
{
  size_t deleted = 0;
  for (;;) {
    struct state__titer it;
    state__tree_seek(&it, s->kvs, prefix, plen);
    struct state__tnode *n = state__tree_next(&it);
    if (!n || !state__has_prefix(n->key, n->key_len, prefix, plen)) break;
    const struct state_kv *e = &row_of(n)->kv;
    undo_touch(s, e->key, e->key_len);
    if (e->session) state__session_held_move(s, e->key, e->key_len, e->session, NULL);
    state__tree_remove(&s->kvs, n->key, n->key_len);
    s->kv_count--;
    deleted++;
    /* Exact-key watches of each deleted key and prefix watches of each of its prefixes:
     * this covers the prefixes of the tree prefix and every watched key or prefix under it
     * that actually lost a row, and nothing that did not. */
    state__watch_kv_changed(&s->w, n->key, n->key_len);
    row_retire(s, row_of(n));
  }
  if (!deleted) return;
  if (plen) tomb_put(s, prefix, plen, index);
  s->kvs_index = index;
  state__watch_table_changed(&s->w, "kvs");
}

int state__kv_check_op(const struct state_store *s, uint64_t index, const struct state_kv_op *op)
{
  if (!op || index == 0 || index < s->applied) return CC_EINVAL;
  if ((unsigned)op->verb > STATE_KV_UNLOCK) return CC_EINVAL;
  if (op->key_len > STATE_KV_MAX_KEY || (op->key_len && !op->key)) return CC_EINVAL;
  if (!op->key_len && op->verb != STATE_KV_DELETE_TREE) return CC_EINVAL;
  if (op->value_len > STATE_KV_MAX_VALUE || (op->value_len && !op->value)) return CC_EINVAL;
  if (op->verb == STATE_KV_LOCK || op->verb == STATE_KV_UNLOCK) {
    if (op->session && strnlen(op->session, STATE_KV_MAX_SESSION + 1) > STATE_KV_MAX_SESSION)
      return CC_EINVAL;
  }
  return 0;
}

static int kv_err(char *err, size_t errlen, int code, const char *msg, const char *session)
{
  if (err && errlen) {
    if (session) snprintf(err, errlen, msg, session);
    else snprintf(err, errlen, "%s", msg);
  }
  return code;
}

int state__kv_do(struct state_store *s, uint64_t index, const struct state_kv_op *op, bool *ok,
                 char *err, size_t errlen)
{
  *ok = false;
  if (op->verb == STATE_KV_LOCK || op->verb == STATE_KV_UNLOCK) {
    /* kvsLockTxn / kvsUnlockTxn: "missing session"; a lock also needs the session to exist
     * (Consul prints the ID with %#v, i.e. quoted). */
    if (!op->session || !op->session[0]) return kv_err(err, errlen, CC_EINVAL, "missing session", NULL);
    if (op->verb == STATE_KV_LOCK && !state__session_exists(s, op->session))
      return kv_err(err, errlen, CC_ENOTFOUND, "invalid session \"%s\"", op->session);
  }
  s->applied = index;

  struct state__tnode *n =
      op->verb == STATE_KV_DELETE_TREE ? NULL : state__tree_find(s->kvs, op->key, op->key_len);
  struct state__kv_row *old = n ? row_of(n) : NULL;

  switch (op->verb) {
  case STATE_KV_SET: /* kvsSetTxn without updateSession: the row's session stays */
    kv_write(s, index, old, op, old ? old->kv.session : NULL, old ? old->kv.lock_index : 0);
    *ok = true;
    break;
  case STATE_KV_CAS: /* kvsSetCASTxn */
    if (op->cas == 0 ? old != NULL : (!old || old->kv.modify_index != op->cas)) break;
    kv_write(s, index, old, op, old ? old->kv.session : NULL, old ? old->kv.lock_index : 0);
    *ok = true;
    break;
  case STATE_KV_DELETE:
    if (old) kv_delete(s, index, old);
    *ok = true;
    break;
  case STATE_KV_DELETE_CAS: /* kvsDeleteCASTxn: `return entry == nil` on a mismatch */
    if (!old) {
      *ok = true;
    } else if (old->kv.modify_index == op->cas) {
      kv_delete(s, index, old);
      *ok = true;
    }
    break;
  case STATE_KV_DELETE_TREE:
    kv_delete_tree(s, index, op->key, op->key_len);
    *ok = true;
    break;
  case STATE_KV_LOCK: { /* kvsLockTxn */
    uint64_t lock_index = 1;
    if (old) {
      if (old->kv.session && strcmp(old->kv.session, op->session) == 0)
        lock_index = old->kv.lock_index; /* already held by this session */
      else if (old->kv.session)
        break; /* someone else holds it */
      else
        lock_index = old->kv.lock_index + 1;
    }
    kv_write(s, index, old, op, op->session, lock_index);
    *ok = true;
    break;
  }
  case STATE_KV_UNLOCK: /* kvsUnlockTxn */
    if (!old || !old->kv.session || strcmp(old->kv.session, op->session) != 0) break;
    kv_write(s, index, old, op, NULL, old->kv.lock_index);
    *ok = true;
    break;
  }
  return 0;
}

void state__kv_release(struct state_store *s, uint64_t index, const char *key, size_t len)
{
  struct state__tnode *n = state__tree_find(s->kvs, key, len);
  if (!n) return;
  struct state__kv_row *old = row_of(n);
  struct state_kv_op op = {.verb = STATE_KV_SET, .key = old->kv.key, .key_len = old->kv.key_len,
                           .value = old->kv.value, .value_len = old->kv.value_len,
                           .flags = old->kv.flags};
  kv_write(s, index, old, &op, NULL, old->kv.lock_index);
}

void state__kv_delete_key(struct state_store *s, uint64_t index, const char *key, size_t len)
{
  struct state__tnode *n = state__tree_find(s->kvs, key, len);
  if (n) kv_delete(s, index, row_of(n));
}

int state_kv_apply(struct state_store *s, uint64_t index, const struct state_kv_op *op, bool *ok)
{
  return state_kv_apply_msg(s, index, op, ok, NULL, 0);
}

int state_kv_apply_msg(struct state_store *s, uint64_t index, const struct state_kv_op *op,
                       bool *ok, char *err, size_t errlen)
{
  bool dummy;
  if (!ok) ok = &dummy;
  *ok = false;
  if (err && errlen) err[0] = '\0';
  int rc = state__kv_check_op(s, index, op);
  if (rc) return rc;
  rc = state__kv_do(s, index, op, ok, err, errlen);
  state__watch_flush(&s->w);
  return rc;
}

int state_tombstone_reap(struct state_store *s, uint64_t index, uint64_t upto)
{
  if (index == 0 || index < s->applied) return CC_EINVAL;
  s->applied = index;
  /* Collect first, then unlink: the iterator must not see the tree change. A full scan, as
   * Consul's ReapTxn does; reaps are rare (every few minutes on the leader). */
  size_t n = 0, cap = 0;
  struct state__tnode **victims = NULL;
  struct state__titer it;
  state__tree_seek(&it, s->tombs, NULL, 0);
  for (struct state__tnode *t; (t = state__tree_next(&it));) {
    if (tomb_of(t)->index > upto) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      victims = xrealloc(victims, cap * sizeof *victims);
    }
    victims[n++] = t;
  }
  for (size_t i = 0; i < n; i++) {
    state__tree_remove(&s->tombs, victims[i]->key, victims[i]->key_len);
    free(victims[i]);
  }
  free(victims);
  s->tomb_count -= n;
  if (n) state__watch_table_changed(&s->w, "tombstones");
  state__watch_flush(&s->w);
  return 0;
}
