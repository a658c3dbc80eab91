/* watch.c -- one-shot watches on KV keys, KV prefixes and tables (see watch.h).
 *
 * Registry: three hash maps (lib/map.h) from the watched key, prefix or table name to a list
 * of watches. Every watch sits on exactly one doubly linked list, either its key's list or
 * the store's pending list, and knows which, so state_watch_cancel is O(1) (plus one map
 * delete when it empties its key's list).
 *
 * A write of key K fires K's exact list and the list of each watched prefix of K. Hashing
 * every prefix of K would cost O(len(K)^2), so the registry also keeps the distinct lengths
 * of watched prefixes (with a count each): only K's prefixes of those lengths are looked up,
 * which is O(len(K) * distinct lengths); real watchers use a handful of lengths. A tree
 * delete calls this for each deleted key (store.c), so exactly the watches whose key or
 * prefix lost a row fire: the prefixes of the tree prefix, and the keys and prefixes under
 * it that held deleted rows. That costs O(deleted keys) lookups, the same order as the
 * delete itself, and needs no sorted index of watched keys.
 *
 * Firing: during a write, a fired list is taken out of its map and its watches are moved to
 * the pending list; once the write is complete state__watch_flush pops them one by one,
 * frees each before calling it (a fired watch is gone: it must not be cancelled), and calls
 * it. A callback may cancel any other watch, pending or not (it is simply unlinked), and may
 * add new ones (they land in the maps, not on the pending list, so this write does not fire
 * them). */
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "state/internal.h"

struct state_watch {
  struct state_watch *prev, *next;
  struct state__watch_list *list;
  struct state__watches *reg;
  state_watch_fn fn;
  void *arg;
};

static struct map *map_for(struct state__watches *w, enum state_watch_kind kind)
{
  switch (kind) {
  case STATE_WATCH_KV_KEY: return &w->keys;
  case STATE_WATCH_KV_PREFIX: return &w->prefixes;
  default: return &w->tables;
  }
}

/* ---- distinct prefix lengths ---- */

static size_t plen_find(const struct state__watches *w, size_t len)
{
  size_t lo = 0, hi = w->nplens;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (w->plens[mid].len < len) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static void plen_add(struct state__watches *w, size_t len)
{
  size_t i = plen_find(w, len);
  if (i < w->nplens && w->plens[i].len == len) {
    w->plens[i].count++;
    return;
  }
  if (w->nplens == w->plens_cap) {
    w->plens_cap = w->plens_cap ? w->plens_cap * 2 : 8;
    w->plens = xrealloc(w->plens, w->plens_cap * sizeof *w->plens);
  }
  memmove(&w->plens[i + 1], &w->plens[i], (w->nplens - i) * sizeof *w->plens);
  w->plens[i].len = len;
  w->plens[i].count = 1;
  w->nplens++;
}

static void plen_del(struct state__watches *w, size_t len)
{
  size_t i = plen_find(w, len);
  if (i >= w->nplens || w->plens[i].len != len) return;
  if (--w->plens[i].count) return;
  memmove(&w->plens[i], &w->plens[i + 1], (w->nplens - i - 1) * sizeof *w->plens);
  w->nplens--;
}

/* ---- lists ---- */

static void list_unlink(struct state_watch *x)
{
  struct state__watch_list *l = x->list;
  if (x->prev) x->prev->next = x->next;
  else l->head = x->next;
  if (x->next) x->next->prev = x->prev;
  else l->tail = x->prev;
  x->prev = x->next = NULL;
  l->count--;
}

static void list_append(struct state__watch_list *l, struct state_watch *x)
{
  x->list = l;
  x->next = NULL;
  x->prev = l->tail;
  if (l->tail) l->tail->next = x;
  else l->head = x;
  l->tail = x;
  l->count++;
}

/* Takes a watched record out of its map (it is no longer findable) and drops its prefix
 * length. */
static void watched_detach(struct state__watches *w, struct state__watched *d)
{
  map_del(map_for(w, d->kind), d->key, d->key_len);
  if (d->kind == STATE_WATCH_KV_PREFIX) plen_del(w, d->key_len);
}

/* Moves every watch of d to the pending list and frees d, which must be detached. */
static void watched_fire(struct state__watches *w, struct state__watched *d)
{
  struct state_watch *x = d->list.head;
  while (x) {
    struct state_watch *next = x->next;
    list_append(&w->pending, x);
    x = next;
  }
  free(d);
}

static void fire_key(struct state__watches *w, enum state_watch_kind kind, const char *key,
                     size_t len)
{
  struct map *m = map_for(w, kind);
  if (!map_count(m)) return;
  struct state__watched *d = map_get(m, key, len);
  if (!d) return;
  watched_detach(w, d);
  watched_fire(w, d);
}

/* ---- public API ---- */

struct state_watch *state_watch_add(struct state_store *s, enum state_watch_kind kind,
                                    const char *key, size_t key_len, state_watch_fn fn,
                                    void *arg)
{
  struct state__watches *w = &s->w;
  if (kind != STATE_WATCH_KV_KEY && kind != STATE_WATCH_KV_PREFIX) kind = STATE_WATCH_TABLE;
  if (!key) key_len = 0;
  struct map *m = map_for(w, kind);
  struct state__watched *d = map_get(m, key ? key : "", key_len);
  if (!d) {
    d = xcalloc(1, sizeof *d + key_len + 1);
    d->kind = kind;
    d->key_len = key_len;
    if (key_len) memcpy(d->key, key, key_len);
    map_put(m, d->key, key_len, d);
    if (kind == STATE_WATCH_KV_PREFIX) plen_add(w, key_len);
  }
  struct state_watch *x = xcalloc(1, sizeof *x);
  x->reg = w;
  x->fn = fn;
  x->arg = arg;
  list_append(&d->list, x);
  w->count++;
  return x;
}

void state_watch_cancel(struct state_watch *x)
{
  if (!x) return;
  struct state__watches *w = x->reg;
  struct state__watch_list *l = x->list;
  list_unlink(x);
  w->count--;
  free(x);
  if (!l->pending && !l->count) {
    struct state__watched *d = (struct state__watched *)l; /* list is its first member */
    watched_detach(w, d);
    free(d);
  }
}

size_t state_watch_count(const struct state_store *s) { return s->w.count; }

/* ---- hooks for writers ---- */

void state__watch_init(struct state__watches *w)
{
  memset(w, 0, sizeof *w);
  map_init(&w->keys);
  map_init(&w->prefixes);
  map_init(&w->tables);
  w->pending.pending = true;
}

static void free_map_lists(struct map *m)
{
  for (struct map_iter it = map_iter_start(m); map_iter_next(&it);) {
    struct state__watched *d = it.entry->value;
    for (struct state_watch *x = d->list.head, *next; x; x = next) {
      next = x->next;
      free(x);
    }
    free(d);
  }
  map_free(m);
}

void state__watch_free(struct state__watches *w)
{
  free_map_lists(&w->keys);
  free_map_lists(&w->prefixes);
  free_map_lists(&w->tables);
  for (struct state_watch *x = w->pending.head, *next; x; x = next) {
    next = x->next;
    free(x);
  }
  free(w->plens);
  memset(w, 0, sizeof *w);
}

void state__watch_kv_changed(struct state__watches *w, const char *key, size_t len)
{
  fire_key(w, STATE_WATCH_KV_KEY, key, len);
  if (!map_count(&w->prefixes)) return;
  /* plens changes under us when a fired prefix was the last of its length. */
  for (size_t i = 0; i < w->nplens && w->plens[i].len <= len;) {
    size_t plen = w->plens[i].len, before = w->nplens;
    fire_key(w, STATE_WATCH_KV_PREFIX, key, plen);
    if (w->nplens == before) i++;
  }
}

void state__watch_table_changed(struct state__watches *w, const char *table)
{
  fire_key(w, STATE_WATCH_TABLE, table, strlen(table));
}

static void fire_all(struct state__watches *w, struct map *m)
{
  /* Every list of the map fires, so the map is emptied wholesale after the walk (lib/map.h
   * declares no way to delete during a walk). */
  for (struct map_iter it = map_iter_start(m); map_iter_next(&it);)
    watched_fire(w, it.entry->value);
  map_free(m);
  map_init(m);
}

void state__watch_all_changed(struct state__watches *w)
{
  fire_all(w, &w->keys);
  fire_all(w, &w->prefixes);
  fire_all(w, &w->tables);
  w->nplens = 0;
}

void state__watch_flush(struct state__watches *w)
{
  if (w->firing) return; /* a callback's own write would be a bug; never recurse */
  w->firing = true;
  struct state_watch *x;
  while ((x = w->pending.head)) {
    list_unlink(x);
    w->count--;
    state_watch_fn fn = x->fn;
    void *arg = x->arg;
    free(x);
    if (fn) fn(arg);
  }
  w->firing = false;
}
