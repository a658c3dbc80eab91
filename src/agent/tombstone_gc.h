/* tombstone_gc.h -- when to reap KV tombstones, as Consul's leader does (agent/consul/state/
 * tombstone_gc.go): a tombstone must outlive every blocking query that could still need it,
 * so deletions are remembered in buckets of `granularity` and reaped `ttl` after their bucket
 * (Consul: TombstoneTTL 15 min, granularity 30 s). Pure logic on a caller's clock, so tests
 * can drive it; the agent calls it from a leader timer. */
#ifndef CONCORD_AGENT_TOMBSTONE_GC_H
#define CONCORD_AGENT_TOMBSTONE_GC_H

#include <stddef.h>
#include <stdint.h>

#define TOMBSTONE_GC_TTL_MS (15 * 60 * 1000)
#define TOMBSTONE_GC_GRANULARITY_MS (30 * 1000)
#define TOMBSTONE_GC_BUCKETS 64 /* more than ttl/granularity (30), so nothing is dropped */

struct tombstone_gc {
  uint64_t ttl_ms, granularity_ms;
  struct {
    uint64_t expires_ms; /* when this bucket may be reaped */
    uint64_t index;      /* the highest Raft index seen while the bucket was open */
  } buckets[TOMBSTONE_GC_BUCKETS];
  size_t head, count; /* a ring, oldest at head */
};

void tombstone_gc_init(struct tombstone_gc *gc, uint64_t ttl_ms, uint64_t granularity_ms);
/* Notes that the store's tombstones reach up to `index` now (call it on every tick with the
 * tombstones table index; repeats are cheap). */
void tombstone_gc_hint(struct tombstone_gc *gc, uint64_t now_ms, uint64_t index);
/* The index to reap up to now (0 for nothing): the newest expired bucket's, which is removed
 * with every older one. */
uint64_t tombstone_gc_expired(struct tombstone_gc *gc, uint64_t now_ms);
/* Forgets everything (on losing leadership: the next leader starts its own clock, as Consul). */
void tombstone_gc_reset(struct tombstone_gc *gc);

#endif
