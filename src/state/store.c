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
  return s;
}

void state_store_free(struct state_store *s)
{
  if (!s) return;
  state__kv_free_all(s->kvs);
  state__tomb_free_all(s->tombs);
  state__catalog_free(s->cat);
  state__watch_free(&s->w);
  free(s);
}

static uint64_t kvs_max_index(const struct state_store *s)
{
  return s->kvs_index > s->tomb_index ? s->kvs_index : s->tomb_index;
}

uint64_t state_store_index(const struct state_store *s)
{
  uint64_t kv = kvs_max_index(s), cat = state__catalog_max_index(s->cat);
  return kv > cat ? kv : cat;
}

uint64_t state_table_index(const struct state_store *s, const char *table)
{
  if (!table) return 0;
  if (strcmp(table, "kvs") == 0) return kvs_max_index(s);
  if (strcmp(table, "tombstones") == 0) return s->tomb_index;
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

/* Records (key, index) in the graveyard, replacing an older tombstone for the same key. */
static void tomb_put(struct state_store *s, const char *key, size_t len, uint64_t index)
{
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

  struct state__kv_row *r =
      state__kv_row_new(op->key, op->key_len, op->value, op->value_len, session, slen);
  r->kv.flags = op->flags;
  r->kv.lock_index = lock_index;
  r->kv.create_index = old ? old->kv.create_index : index;
  r->kv.modify_index = index;
  if (old) {
    state__tree_replace(&s->kvs, &old->node, &r->node);
    free(old); /* after the copy above: session may have pointed into it */
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
  state__tree_remove(&s->kvs, r->kv.key, r->kv.key_len);
  s->kv_count--;
  tomb_put(s, r->kv.key, r->kv.key_len, index);
  s->kvs_index = index;
  state__watch_kv_changed(&s->w, r->kv.key, r->kv.key_len);
  state__watch_table_changed(&s->w, "kvs");
  free(r);
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
    state__tree_remove(&s->kvs, n->key, n->key_len);
    s->kv_count--;
    deleted++;
    /* Exact-key watches of each deleted key and prefix watches of each of its prefixes:
     * this covers the prefixes of the tree prefix and every watched key or prefix under it
     * that actually lost a row, and nothing that did not. */
    state__watch_kv_changed(&s->w, n->key, n->key_len);
    free(n);
  }
  if (!deleted) return;
  if (plen) tomb_put(s, prefix, plen, index);
  s->kvs_index = index;
  state__watch_table_changed(&s->w, "kvs");
}

/* Hook for the sessions table (a later issue): Consul's kvsLockTxn fails with "invalid
 * session" when the session does not exist. Until sessions exist every session is taken as
 * live. Returns 0 or a CC_E* code for state_kv_apply to return. */
static int session_check(struct state_store *s, const char *session)
{
  (void)s;
  (void)session;
  return 0;
}

static int check_op(const struct state_store *s, uint64_t index, const struct state_kv_op *op)
{
  if (!op || index == 0 || index < s->applied) return CC_EINVAL;
  if ((unsigned)op->verb > STATE_KV_UNLOCK) return CC_EINVAL;
  if (op->key_len > STATE_KV_MAX_KEY || (op->key_len && !op->key)) return CC_EINVAL;
  if (!op->key_len && op->verb != STATE_KV_DELETE_TREE) return CC_EINVAL;
  if (op->value_len > STATE_KV_MAX_VALUE || (op->value_len && !op->value)) return CC_EINVAL;
  if (op->verb == STATE_KV_LOCK || op->verb == STATE_KV_UNLOCK) {
    if (!op->session || !op->session[0]) return CC_EINVAL; /* Consul: "missing session" */
    if (strnlen(op->session, STATE_KV_MAX_SESSION + 1) > STATE_KV_MAX_SESSION) return CC_EINVAL;
  }
  return 0;
}

int state_kv_apply(struct state_store *s, uint64_t index, const struct state_kv_op *op, bool *ok)
{
  bool dummy;
  if (!ok) ok = &dummy;
  *ok = false;
  int rc = check_op(s, index, op);
  if (rc) return rc;
  if (op->verb == STATE_KV_LOCK && (rc = session_check(s, op->session))) return rc;
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
  state__watch_flush(&s->w);
  return 0;
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
