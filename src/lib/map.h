/* map.h -- a hash map from byte-string keys to pointers.
 *
 * Keys are copied into the map (the map owns them); values are the caller's (the map never
 * frees them). The hash is seeded per process so hostile keys cannot force collisions. */
#ifndef CONCORD_LIB_MAP_H
#define CONCORD_LIB_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct map_entry {
  struct map_entry *next;
  uint64_t hash;
  size_t key_len;
  void *value;
  char key[]; /* NUL-terminated copy */
};

struct map {
  struct map_entry **buckets;
  size_t nbuckets; /* a power of two, or 0 before the first insert */
  size_t count;
};

void map_init(struct map *m);
/* Frees the map's memory (keys, entries), not the values. */
void map_free(struct map *m);
void *map_get(const struct map *m, const void *key, size_t len);
/* Inserts or replaces. Returns the previous value, or NULL. */
void *map_put(struct map *m, const void *key, size_t len, void *value);
/* Removes the key. Returns its value, or NULL if absent. */
void *map_del(struct map *m, const void *key, size_t len);
static inline size_t map_count(const struct map *m) { return m->count; }

/* Iteration: for (struct map_iter it = map_iter_start(m); map_iter_next(&it);) use it.entry.
 * The map must not change during the walk (collect keys first, then delete). */
struct map_iter {
  struct map *m;
  size_t bucket;
  struct map_entry *entry;
  struct map_entry *next;
};
struct map_iter map_iter_start(struct map *m);
bool map_iter_next(struct map_iter *it);

uint64_t map_hash(const void *key, size_t len);

#endif
