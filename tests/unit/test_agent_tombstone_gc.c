/* test_agent_tombstone_gc.c -- when tombstones are reaped: never before ttl after the delete,
 * and at the latest ttl + granularity after it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/tombstone_gc.h"

static void test_reap_after_ttl(void **state)
{
  (void)state;
  struct tombstone_gc gc;
  tombstone_gc_init(&gc, 1000, 100);
  tombstone_gc_hint(&gc, 50, 7);   /* delete at t=50, index 7: bucket closes at 100 */
  tombstone_gc_hint(&gc, 60, 9);   /* same bucket */
  tombstone_gc_hint(&gc, 150, 12); /* next bucket, closes at 200 */
  tombstone_gc_hint(&gc, 160, 12); /* nothing new */
  assert_int_equal(tombstone_gc_expired(&gc, 1049), 0); /* not yet ttl after the delete */
  assert_int_equal(tombstone_gc_expired(&gc, 1099), 0);
  assert_int_equal(tombstone_gc_expired(&gc, 1100), 9);  /* first bucket */
  assert_int_equal(tombstone_gc_expired(&gc, 1150), 0);
  assert_int_equal(tombstone_gc_expired(&gc, 5000), 12); /* second bucket */
  assert_int_equal(tombstone_gc_expired(&gc, 9000), 0);
}

static void test_many_buckets_and_reset(void **state)
{
  (void)state;
  struct tombstone_gc gc;
  tombstone_gc_init(&gc, TOMBSTONE_GC_TTL_MS, TOMBSTONE_GC_GRANULARITY_MS);
  uint64_t t = 0, idx = 1;
  for (int i = 0; i < 200; i++, t += 10000, idx += 3) tombstone_gc_hint(&gc, t, idx);
  /* Everything deleted before t - ttl is reapable; nothing after. */
  uint64_t upto = tombstone_gc_expired(&gc, t);
  assert_true(upto > 0);
  uint64_t deleted_at = (upto - 1) / 3 * 10000; /* when index `upto` was hinted */
  assert_true(deleted_at + TOMBSTONE_GC_TTL_MS <= t);
  assert_true(deleted_at + TOMBSTONE_GC_TTL_MS + 2 * TOMBSTONE_GC_GRANULARITY_MS > t);
  tombstone_gc_reset(&gc);
  assert_int_equal(tombstone_gc_expired(&gc, UINT64_MAX), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reap_after_ttl),
      cmocka_unit_test(test_many_buckets_and_reset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
