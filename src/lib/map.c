/* map.c -- chained hash map with a seeded 64-bit hash (see map.h). */
#include "lib/map.h"

#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/rand.h"

static uint64_t map_seed;

uint64_t map_hash(const void *key, size_t len)
{
  if (!map_seed) map_seed = rand_u64() | 1;
  /* FNV-1a over the bytes, then a murmur3 finalizer to spread the seed through all bits. */
  const uint8_t *p = key;
  uint64_t h = 0xcbf29ce484222325ULL ^ map_seed;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

void map_init(struct map *m)
{
  m->buckets = NULL;
  m->nbuckets = 0;
  m->count = 0;
}

void map_free(struct map *m)
{
  for (size_t i = 0; i < m->nbuckets; i++) {
    struct map_entry *e = m->buckets[i];
    while (e) {
      struct map_entry *next = e->next;
      free(e);
      e = next;
    }
  }
  free(m->buckets);
  map_init(m);
}

static struct map_entry **map_find(const struct map *m, const void *key, size_t len, uint64_t h)
{
  if (!m->nbuckets) return NULL;
  struct map_entry **pp = &m->buckets[h & (m->nbuckets - 1)];
  for (; *pp; pp = &(*pp)->next) {
    if ((*pp)->hash == h && (*pp)->key_len == len && memcmp((*pp)->key, key, len) == 0) return pp;
  }
  return pp;
}

void *map_get(const struct map *m, const void *key, size_t len)
{
  if (!m->count) return NULL;
  struct map_entry **pp = map_find(m, key, len, map_hash(key, len));
  return pp && *pp ? (*pp)->value : NULL;
}

static void map_grow(struct map *m)
{
  size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
  struct map_entry **b = xcalloc(n, sizeof *b);
  for (size_t i = 0; i < m->nbuckets; i++) {
    struct map_entry *e = m->buckets[i];
    while (e) {
      struct map_entry *next = e->next;
      e->next = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(m->buckets);
  m->buckets = b;
  m->nbuckets = n;
}

void *map_put(struct map *m, const void *key, size_t len, void *value)
{
  uint64_t h = map_hash(key, len);
  if (m->count >= m->nbuckets) map_grow(m);
  struct map_entry **pp = map_find(m, key, len, h);
  if (*pp) {
    void *old = (*pp)->value;
    (*pp)->value = value;
    return old;
  }
  struct map_entry *e = xmalloc(sizeof *e + len + 1);
  e->next = NULL;
  e->hash = h;
  e->key_len = len;
  e->value = value;
  memcpy(e->key, key, len);
  e->key[len] = '\0';
  *pp = e;
  m->count++;
  return NULL;
}

void *map_del(struct map *m, const void *key, size_t len)
{
  if (!m->count) return NULL;
  struct map_entry **pp = map_find(m, key, len, map_hash(key, len));
  if (!pp || !*pp) return NULL;
  struct map_entry *e = *pp;
  void *value = e->value;
  *pp = e->next;
  free(e);
  m->count--;
  return value;
}

struct map_iter map_iter_start(struct map *m)
{
  struct map_iter it = {m, 0, NULL, NULL};
  it.next = m->nbuckets ? m->buckets[0] : NULL;
  return it;
}

bool map_iter_next(struct map_iter *it)
{
  while (!it->next) {
    if (++it->bucket >= it->m->nbuckets) {
      it->entry = NULL;
      return false;
    }
    it->next = it->m->buckets[it->bucket];
  }
  it->entry = it->next;
  it->next = it->entry->next;
  return true;
}
