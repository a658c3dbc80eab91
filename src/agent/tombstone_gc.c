/* tombstone_gc.c -- bucketed tombstone expiry (see tombstone_gc.h). */
#include "agent/tombstone_gc.h"

#include <string.h>

void tombstone_gc_init(struct tombstone_gc *gc, uint64_t ttl_ms, uint64_t granularity_ms)
{
  memset(gc, 0, sizeof *gc);
  gc->ttl_ms = ttl_ms;
  gc->granularity_ms = granularity_ms ? granularity_ms : 1;
}

void tombstone_gc_reset(struct tombstone_gc *gc)
{
  tombstone_gc_init(gc, gc->ttl_ms, gc->granularity_ms);
}

void tombstone_gc_hint(struct tombstone_gc *gc, uint64_t now_ms, uint64_t index)
{
  if (index == 0) return;
  /* A bucket collects every hint until its granularity boundary; it expires ttl after that. */
  uint64_t expires = (now_ms / gc->granularity_ms + 1) * gc->granularity_ms + gc->ttl_ms;
  if (gc->count > 0) {
    size_t last = (gc->head + gc->count - 1) % TOMBSTONE_GC_BUCKETS;
    if (gc->buckets[last].index >= index) return; /* nothing new was deleted */
    if (gc->buckets[last].expires_ms == expires) {
      gc->buckets[last].index = index;
      return;
    }
  }
  if (gc->count == TOMBSTONE_GC_BUCKETS) {
    /* Cannot happen with ttl/granularity < buckets; if it does, merge into the newest bucket
     * (reaping later is always safe, earlier never is). */
    size_t last = (gc->head + gc->count - 1) % TOMBSTONE_GC_BUCKETS;
    gc->buckets[last].index = index;
    gc->buckets[last].expires_ms = expires;
    return;
  }
  size_t slot = (gc->head + gc->count) % TOMBSTONE_GC_BUCKETS;
  gc->buckets[slot].expires_ms = expires;
  gc->buckets[slot].index = index;
  gc->count++;
}

uint64_t tombstone_gc_expired(struct tombstone_gc *gc, uint64_t now_ms)
{
  uint64_t upto = 0;
  while (gc->count > 0 && gc->buckets[gc->head].expires_ms <= now_ms) {
    upto = gc->buckets[gc->head].index;
    gc->head = (gc->head + 1) % TOMBSTONE_GC_BUCKETS;
    gc->count--;
  }
  return upto;
}
