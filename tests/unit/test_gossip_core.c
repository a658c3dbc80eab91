/* test_gossip_core.c -- the pieces under the gossip state machines, each against memberlist's
 * or serf's own expectations: suspicion timeouts (memberlist suspicion_test.go, util_test.go),
 * the retransmit-limited queue (queue_test.go), the timer heap, addresses, and serf's messages
 * against bytes go-msgpack produced (generator in docs/gossip.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gossip/broadcast.h"
#include "gossip/io.h"
#include "gossip/proto.h"
#include "gossip/serf_proto.h"
#include "gossip/suspicion.h"
#include "gossip/timer.h"
#include "lib/buf.h"
#include "lib/err.h"

static const char go_serf_join[] = "0182a54c54696d6505a44e6f6465a66e6f64652d61";
static const char go_serf_leave[] = "0083a54c54696d6506a44e6f6465a66e6f64652d61a55072756e65c3";
static const char go_serf_event[] = "0384a24343c3a54c54696d6502a44e616d65a66465706c6f79a75061796c6f6164a27631";
static const char go_serf_push_pull[] = "0286aa4576656e744c54696d6506a64576656e747394c082a64576656e74739182a44e616d65a66465706c6f79a75061796c6f6164a27631a54c54696d6505c0c0a54c54696d6507ab4c6566744d656d6265727390aa51756572794c54696d6501ac5374617475734c54696d657381a66e6f64652d6103";
static const char go_serf_query[] = "048ba441646472a47f000001a746696c74657273c0a5466c61677301a2494463a54c54696d6503a44e616d65aa5f736572665f70696e67a75061796c6f6164c0a4506f7274cd1f0aab52656c6179466163746f7200aa536f757263654e6f6465a66e6f64652d61a754696d656f7574cf000000012a05f200";
static const char go_serf_query_resp[] = "0585a5466c61677301a446726f6da66e6f64652d62a2494463a54c54696d6503a75061796c6f6164c0";

static uint8_t *unhex(const char *hex, size_t *len) {
  size_t n = strlen(hex) / 2;
  uint8_t *out = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    out[i] = (uint8_t)v;
  }
  *len = n;
  return out;
}

static void assert_buf_hex(const struct buf *b, const char *hex) {
  size_t n;
  uint8_t *want = unhex(hex, &n);
  if (b->len != n || memcmp(b->data, want, n) != 0) {
    fprintf(stderr, "got:  ");
    for (size_t i = 0; i < b->len; i++) fprintf(stderr, "%02x", (uint8_t)b->data[i]);
    fprintf(stderr, "\nwant: %s\n", hex);
  }
  assert_int_equal(b->len, n);
  assert_memory_equal(b->data, want, n);
  free(want);
}

/* ---- suspicion math: memberlist's own test tables ---- */

static void test_suspicion_remaining(void **state) {
  (void)state;
  struct {
    uint32_t n, k;
    uint64_t elapsed, min, max;
    int64_t want;
  } cases[] = {
      {0, 3, 0, 2000, 30000, 30000},     {1, 3, 2000, 2000, 30000, 14000},
      {2, 3, 3000, 2000, 30000, 4810},   {3, 3, 4000, 2000, 30000, -2000},
      {4, 3, 5000, 2000, 30000, -3000},  {5, 3, 10000, 2000, 30000, -8000},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_int_equal(suspicion_remaining(cases[i].n, cases[i].k, cases[i].elapsed, cases[i].min,
                                         cases[i].max),
                     cases[i].want);
}

static void test_suspicion_timeout(void **state) {
  (void)state;
  /* memberlist TestSuspicionTimeout: suspicionTimeout(3, n, 1s) / 3. */
  struct {
    int n;
    uint64_t want;
  } cases[] = {{5, 1000}, {10, 1000}, {50, 1698}, {100, 2000}, {500, 2698}, {1000, 3000}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_int_equal(suspicion_timeout(3, cases[i].n, 1000) / 3, cases[i].want);
  /* The LAN profile at the simulation's size: 4 * log10(200) s, truncated to the ms. */
  assert_int_equal(suspicion_timeout(4, 200, 1000), 9204);
  assert_int_equal(suspicion_timeout(4, 1, 1000), 4000);
  assert_int_equal(suspicion_timeout(4, 0, 1000), 4000);
}

static void test_push_pull_scale_and_retransmit(void **state) {
  (void)state;
  for (int i = 0; i <= 32; i++) assert_int_equal(push_pull_scale(1000, i), 1000);
  for (int i = 33; i <= 64; i++) assert_int_equal(push_pull_scale(1000, i), 2000);
  for (int i = 65; i <= 128; i++) assert_int_equal(push_pull_scale(1000, i), 3000);
  assert_int_equal(push_pull_scale(30000, 200), 120000);
  /* memberlist TestRetransmitLimit, plus the powers of ten where the ceiling turns. */
  assert_int_equal(bcast_retransmit_limit(3, 0), 0);
  assert_int_equal(bcast_retransmit_limit(3, 1), 3);
  assert_int_equal(bcast_retransmit_limit(3, 99), 6);
  assert_int_equal(bcast_retransmit_limit(4, 9), 4);
  assert_int_equal(bcast_retransmit_limit(4, 10), 8);
  assert_int_equal(bcast_retransmit_limit(4, 200), 12);
}

/* Lifeguard: confirmations shrink the timeout; duplicates and extras do not count. */
static void test_suspicion_confirm(void **state) {
  (void)state;
  struct suspicion s;
  memset(&s, 0, sizeof s);
  uint64_t due = suspicion_start(&s, "a", 3, 2000, 30000, 1000);
  assert_int_equal(due, 1000 + 30000); /* k > 0: start at max */
  uint64_t nd = 0;
  assert_false(suspicion_confirm(&s, "a", 3000, &nd)); /* the accuser again */
  assert_true(suspicion_confirm(&s, "b", 3000, &nd));
  assert_int_equal(nd, 1000 + 16000); /* n=1 of k=3: 16 s in all (14 s left after 2 s) */
  assert_false(suspicion_confirm(&s, "b", 3500, &nd));
  assert_true(suspicion_confirm(&s, "c", 4000, &nd));
  assert_int_equal(nd, 1000 + 7810); /* n=2: 7.81 s in all */
  assert_true(suspicion_confirm(&s, "d", 7000, &nd));
  assert_int_equal(nd, 7000); /* past due: fire now */
  assert_false(suspicion_confirm(&s, "e", 7000, &nd)); /* k reached */
  suspicion_free(&s);
  /* k = 0 (too few members to confirm): the minimum at once. */
  memset(&s, 0, sizeof s);
  assert_int_equal(suspicion_start(&s, "a", 0, 2000, 30000, 0), 2000);
  suspicion_free(&s);
}

/* ---- broadcast queue: memberlist queue_test.go semantics ---- */

static int finished_count;
static void on_finished(void *arg) {
  (void)arg;
  finished_count++;
}

static void test_bcast_get_and_limit(void **state) {
  (void)state;
  struct bcast_queue q;
  bcast_init(&q, 1, 0);
  assert_int_equal(bcast_retransmit_limit(1, 10), 2);
  const char *msgs[4] = {"1. this is a test.", "2. this is a test.", "3. this is a test.",
                         "4. this is a test."};
  const char *names[4] = {"test", "foo", "bar", "baz"};
  finished_count = 0;
  for (int i = 0; i < 4; i++) bcast_queue(&q, names[i], msgs[i], 18, on_finished, NULL);
  assert_int_equal(q.id_gen, 4);
  struct bcast_out out = {0};
  /* 3 bytes overhead each, 80 bytes: three 21-byte slots fit. */
  bcast_get(&q, 10, 3, 80, -1, &out);
  assert_int_equal(out.n, 3);
  /* Newest first among equals (highest id): 4, 3, 2. */
  assert_memory_equal(out.data.data + out.off[0], "4.", 2);
  assert_memory_equal(out.data.data + out.off[2], "2.", 2);
  assert_int_equal(q.id_gen, 4);
  bcast_out_reset(&out);
  bcast_get(&q, 10, 3, 80, -1, &out);
  assert_int_equal(out.n, 3);
  /* The never-sent one goes first. */
  assert_memory_equal(out.data.data + out.off[0], "1.", 2);
  bcast_out_reset(&out);
  bcast_get(&q, 10, 3, 80, -1, &out);
  assert_int_equal(out.n, 2);
  assert_int_equal(q.id_gen, 0); /* resets when empty */
  assert_int_equal(finished_count, 4);
  bcast_out_reset(&out);
  bcast_get(&q, 10, 3, 80, -1, &out);
  assert_int_equal(out.n, 0);
  buf_free(&out.data);
  bcast_reset(&q);
}

static void test_bcast_named_unique_prune(void **state) {
  (void)state;
  struct bcast_queue q;
  bcast_init(&q, 4, 3);
  finished_count = 0;
  bcast_queue(&q, "test", "a", 1, on_finished, NULL);
  bcast_queue(&q, "foo", "b", 1, on_finished, NULL);
  /* Same name: the old message is finished (invalidated) and replaced. */
  bcast_queue(&q, "test", "c", 1, on_finished, NULL);
  assert_int_equal(bcast_len(&q), 2);
  assert_int_equal(finished_count, 1);
  /* Unnamed (serf's) never invalidate. */
  bcast_queue(&q, NULL, "d", 1, on_finished, NULL);
  bcast_queue(&q, NULL, "d", 1, on_finished, NULL);
  /* Cap 3: the most-transmitted/oldest is pruned and finished. */
  assert_int_equal(bcast_len(&q), 3);
  assert_int_equal(finished_count, 2);
  /* A prefix byte (memberlist's userMsg) is added and charged. */
  struct bcast_out out = {0};
  size_t used = bcast_get(&q, 3, 2, 1400, PROTO_USER, &out);
  assert_int_equal(out.n, 3);
  assert_int_equal((uint8_t)out.data.data[out.off[0]], PROTO_USER);
  assert_int_equal(out.len[0], 2);
  assert_int_equal(used, 3 * (2 + 1));
  /* Too small a packet takes nothing. */
  bcast_out_reset(&out);
  assert_int_equal(bcast_get(&q, 3, 2, 2, -1, &out), 0);
  assert_int_equal(out.n, 0);
  buf_free(&out.data);
  bcast_prune(&q, 0);
  assert_int_equal(bcast_len(&q), 0);
  assert_int_equal(finished_count, 5);
  bcast_reset(&q);
}

/* Retransmits follow RetransmitMult * ceil(log10(n + 1)): with 200 members, 12 sends. */
static void test_bcast_transmit_count(void **state) {
  (void)state;
  struct bcast_queue q;
  bcast_init(&q, 4, 0);
  bcast_queue(&q, "x", "hello", 5, NULL, NULL);
  struct bcast_out out = {0};
  int sends = 0;
  for (int i = 0; i < 100 && bcast_len(&q); i++) {
    bcast_out_reset(&out);
    bcast_get(&q, 200, 2, 1400, -1, &out);
    sends += (int)out.n;
  }
  assert_int_equal(sends, 12);
  buf_free(&out.data);
  bcast_reset(&q);
}

/* ---- timers ---- */

static int fired[16], nfired;
struct tt {
  struct gtimer t;
  int id;
};
static void tcb(struct gtimer *t) { fired[nfired++] = container_of(t, struct tt, t)->id; }

static void test_timer_heap(void **state) {
  (void)state;
  struct gtimers h = {0};
  struct tt ts[8];
  uint64_t due[8] = {50, 10, 40, 30, 20, 60, 70, 5};
  for (int i = 0; i < 8; i++) {
    gtimer_init(&ts[i].t, tcb);
    ts[i].id = i;
    gtimers_arm(&h, &ts[i].t, due[i]);
  }
  gtimers_cancel(&h, &ts[2].t);   /* 40 */
  gtimers_arm(&h, &ts[5].t, 1);   /* 60 -> 1 */
  gtimers_cancel(&h, &ts[2].t);   /* twice is harmless */
  assert_int_equal(gtimers_next(&h), 1);
  nfired = 0;
  struct gtimer *t;
  while ((t = gtimers_pop_due(&h, 45)) != NULL) t->cb(t);
  int want[] = {5, 7, 1, 4, 3};
  assert_int_equal(nfired, 5);
  for (int i = 0; i < 5; i++) assert_int_equal(fired[i], want[i]);
  assert_int_equal(gtimers_next(&h), 50);
  assert_false(gtimer_armed(&ts[1].t));
  assert_true(gtimer_armed(&ts[0].t));
  gtimers_free(&h);
  assert_false(gtimer_armed(&ts[0].t));
}

/* ---- addresses ---- */

static void test_addr(void **state) {
  (void)state;
  struct gossip_addr a;
  char txt[GOSSIP_ADDR_STRLEN];
  assert_int_equal(gossip_addr_parse("127.0.0.1:8301", 1, &a), 0);
  assert_int_equal(a.len, 4);
  assert_int_equal(a.port, 8301);
  assert_string_equal(gossip_addr_format(&a, txt, sizeof txt), "127.0.0.1:8301");
  assert_int_equal(gossip_addr_parse("10.1.2.3", 7946, &a), 0);
  assert_int_equal(a.port, 7946);
  assert_int_equal(gossip_addr_parse("[::1]:99", 1, &a), 0);
  assert_int_equal(a.len, 16);
  assert_string_equal(gossip_addr_format(&a, txt, sizeof txt), "[::1]:99");
  /* v4-mapped v6 becomes v4, as Go's To4 does. */
  assert_int_equal(gossip_addr_parse("[::ffff:1.2.3.4]:5", 1, &a), 0);
  assert_int_equal(a.len, 4);
  assert_int_not_equal(gossip_addr_parse("example.com:1", 1, &a), 0);
  assert_int_not_equal(gossip_addr_parse("1.2.3.4:70000", 1, &a), 0);
  assert_int_not_equal(gossip_addr_parse("", 1, &a), 0);
  const uint8_t five[5] = {1, 2, 3, 4, 5};
  assert_int_not_equal(gossip_addr_from_bytes(five, 5, 1, &a), 0);
}

/* ---- serf messages against go-msgpack's bytes ---- */

static void test_serf_vectors(void **state) {
  (void)state;
  struct buf b = BUF_INIT;
  struct serf_join_msg j = {.ltime = 5, .node = proto_str("node-a")};
  serf_encode_join(&b, &j);
  assert_buf_hex(&b, go_serf_join);
  struct serf_join_msg dj;
  assert_int_equal(serf_decode_join((uint8_t *)b.data + 1, b.len - 1, &dj), 0);
  assert_int_equal(dj.ltime, 5);
  buf_reset(&b);

  struct serf_leave_msg l = {.ltime = 6, .node = proto_str("node-a"), .prune = true};
  serf_encode_leave(&b, &l);
  assert_buf_hex(&b, go_serf_leave);
  struct serf_leave_msg dl;
  assert_int_equal(serf_decode_leave((uint8_t *)b.data + 1, b.len - 1, &dl), 0);
  assert_true(dl.prune);
  buf_reset(&b);

  struct serf_user_event_msg e = {.ltime = 2, .name = proto_str("deploy"),
                                  .payload = proto_str("v1"), .cc = true};
  serf_encode_user_event(&b, &e);
  assert_buf_hex(&b, go_serf_event);
  buf_reset(&b);

  const uint8_t ip[4] = {127, 0, 0, 1};
  struct serf_query_msg q = {.ltime = 3, .id = 99, .addr = {ip, 4}, .port = 7946,
                             .source_node = proto_str("node-a"), .flags = 1,
                             .timeout = 5000000000LL, .name = proto_str("_serf_ping")};
  serf_encode_query(&b, &q);
  assert_buf_hex(&b, go_serf_query);
  struct serf_query_msg dq;
  assert_int_equal(serf_decode_query((uint8_t *)b.data + 1, b.len - 1, &dq), 0);
  assert_int_equal(dq.id, 99);
  assert_int_equal(dq.timeout, 5000000000LL);
  assert_true(proto_bytes_eq(dq.name, "_serf_ping", 10));
  buf_reset(&b);

  struct serf_query_response_msg r = {.ltime = 3, .id = 99, .from = proto_str("node-b"), .flags = 1};
  serf_encode_query_response(&b, &r);
  assert_buf_hex(&b, go_serf_query_resp);
  buf_reset(&b);

  /* Push-pull: 4 event buckets, only [1] used, as serf's fixed buffer ships them. */
  struct serf_pp_status st = {proto_str("node-a"), 3};
  struct serf_pp_event ev = {5, proto_str("deploy"), proto_str("v1")};
  struct serf_pp_bucket bk[4] = {{.nil = true}, {.ltime = 5, .events = &ev, .nevents = 1},
                                 {.nil = true}, {.nil = true}};
  serf_encode_push_pull(&b, 7, &st, 1, NULL, 0, 6, bk, 4, 1);
  assert_buf_hex(&b, go_serf_push_pull);
  struct serf_push_pull_msg pp;
  assert_int_equal(serf_decode_push_pull((uint8_t *)b.data + 1, b.len - 1, &pp), 0);
  assert_int_equal(pp.ltime, 7);
  assert_int_equal(pp.event_ltime, 6);
  assert_int_equal(pp.nstatus, 1);
  assert_int_equal(pp.status[0].ltime, 3);
  assert_int_equal(pp.nevents, 1);
  assert_int_equal(pp.events[0].ltime, 5);
  assert_true(proto_bytes_eq(pp.events[0].payload, "v1", 2));
  serf_push_pull_free(&pp);
  /* Every truncation fails cleanly, without leaks. */
  for (size_t n = 0; n + 1 < b.len; n++)
    assert_int_equal(serf_decode_push_pull((uint8_t *)b.data + 1, n, &pp), CC_EINVAL);
  buf_free(&b);
}

static void test_serf_tags(void **state) {
  (void)state;
  struct buf b = BUF_INIT;
  const char *k[1] = {"role"}, *v[1] = {"web"};
  serf_encode_tags(&b, k, v, 1);
  assert_buf_hex(&b, "ff81a4726f6c65a3776562"); /* serf encodeTags({"role":"web"}) */
  struct proto_bytes keys[4], vals[4];
  size_t n;
  assert_int_equal(serf_decode_tags((uint8_t *)b.data, b.len, keys, vals, 4, &n), 0);
  assert_int_equal(n, 1);
  assert_true(proto_bytes_eq(vals[0], "web", 3));
  /* Protocol-2 meta: the role string itself. */
  assert_int_equal(serf_decode_tags((const uint8_t *)"lb", 2, keys, vals, 4, &n), 0);
  assert_true(proto_bytes_eq(keys[0], "role", 4));
  assert_true(proto_bytes_eq(vals[0], "lb", 2));
  /* Too many pairs for the caller's arrays. */
  buf_reset(&b);
  const char *k5[5] = {"a", "b", "c", "d", "e"}, *v5[5] = {"1", "2", "3", "4", "5"};
  serf_encode_tags(&b, k5, v5, 5);
  assert_int_equal(serf_decode_tags((uint8_t *)b.data, b.len, keys, vals, 4, &n), CC_EINVAL);
  buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_suspicion_remaining),
      cmocka_unit_test(test_suspicion_timeout),
      cmocka_unit_test(test_push_pull_scale_and_retransmit),
      cmocka_unit_test(test_suspicion_confirm),
      cmocka_unit_test(test_bcast_get_and_limit),
      cmocka_unit_test(test_bcast_named_unique_prune),
      cmocka_unit_test(test_bcast_transmit_count),
      cmocka_unit_test(test_timer_heap),
      cmocka_unit_test(test_addr),
      cmocka_unit_test(test_serf_vectors),
      cmocka_unit_test(test_serf_tags),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
