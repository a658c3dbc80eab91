/* test_gossip_sim.c -- the whole gossip stack (memberlist + serf layers) simulated: hundreds of
 * members in one process on the fake network (src/gossip/io_fake.c), virtual time, seeded
 * randomness, packet loss, delay and partitions. Every bound asserted below is derived in its
 * test's comment from memberlist's LAN timings (probe 1 s, timeout 500 ms, gossip 200 ms to 3,
 * retransmit 4 * ceil(log10(n + 1)), suspicion 4 * log10(n) s shrinking to that from 6x). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gossip/gossip.h"
#include "gossip/io_fake.h"
#include "gossip/serf.h"
#include "gossip/swim.h"
#include "lib/err.h"
#include "lib/log.h"

struct sim_node {
  struct gossip_io *io;
  struct serf *serf;
  char name[32];
  char addr_text[32];
  struct gossip_addr addr;
  bool dead;
  int events_seen;
  int queries_seen;
  int joins, fails, leaves, updates;
};

struct sim {
  struct fakenet *net;
  size_t n;
  struct sim_node *nodes;
};

static void on_member(void *ctx, enum gossip_event ev, const struct gossip_member *m) {
  struct sim_node *sn = ctx;
  (void)m;
  if (ev == GOSSIP_EVENT_JOIN) sn->joins++;
  if (ev == GOSSIP_EVENT_FAILED) sn->fails++;
  if (ev == GOSSIP_EVENT_LEAVE) sn->leaves++;
  if (ev == GOSSIP_EVENT_UPDATE) sn->updates++;
}

/* Every member answers a query with its own name. */
static void on_query(void *ctx, const struct gossip_query *q) {
  struct sim_node *sn = ctx;
  sn->queries_seen++;
  assert_int_equal(serf_query_respond(sn->serf, &q->token, sn->name, strlen(sn->name)), 0);
}

struct query_tally {
  int acks, responses, done;
  char seen[8][32];
};

static void on_query_result(void *arg, enum gossip_query_result what, const char *from,
                            const uint8_t *payload, size_t len) {
  struct query_tally *t = arg;
  if (what == GOSSIP_QUERY_ACK) t->acks++;
  if (what == GOSSIP_QUERY_RESPONSE) {
    assert_int_equal(len, strlen(from)); /* the payload is the responder's name */
    assert_memory_equal(payload, from, len);
    if (t->responses < 8) snprintf(t->seen[t->responses], sizeof t->seen[0], "%s", from);
    t->responses++;
  }
  if (what == GOSSIP_QUERY_DONE) t->done++;
}

static void on_event(void *ctx, const struct gossip_user_event *ev) {
  struct sim_node *sn = ctx;
  if (strcmp(ev->name, "deploy") == 0) sn->events_seen++;
}

/* Compression is off in the large runs: it changes no protocol decision (the receiver
 * inflates and handles the same messages) but is a fifth of the run time under ASan. The
 * five-member test keeps it on, as do the codec tests and the serf interop test. */
static bool sim_compress = true;
/* Gossip encryption: when set, member i gets the key sim_keys(i) (NULL: none). */
static const char *(*sim_keys)(size_t i);

static struct sim *sim_new(size_t n, uint64_t seed) {
  log_set_level(LOG_OFF);
  struct sim *s = calloc(1, sizeof *s);
  s->net = fakenet_new(seed);
  s->n = n;
  s->nodes = calloc(n, sizeof *s->nodes);
  for (size_t i = 0; i < n; i++) {
    struct sim_node *sn = &s->nodes[i];
    snprintf(sn->name, sizeof sn->name, "node-%03zu", i);
    snprintf(sn->addr_text, sizeof sn->addr_text, "10.0.%zu.%zu:7946", i / 250, i % 250 + 1);
    assert_int_equal(gossip_addr_parse(sn->addr_text, 7946, &sn->addr), 0);
    sn->io = fakenet_add(s->net, &sn->addr);
    struct gossip_config cfg;
    gossip_config_default(&cfg);
    cfg.node_name = sn->name;
    struct gossip_tag tags[2] = {{"role", "node"}, {"dc", "dc1"}};
    cfg.tags = tags;
    cfg.ntags = 2;
    cfg.on_member = on_member;
    cfg.on_user_event = on_event;
    cfg.on_query = on_query;
    cfg.cb_ctx = sn;
    cfg.disable_compression = !sim_compress;
    const char *key = sim_keys ? sim_keys(i) : NULL;
    cfg.encrypt_keys = key ? &key : NULL;
    cfg.nencrypt_keys = key ? 1 : 0;
    char err[128];
    sn->serf = serf_new(&cfg, &sn->addr, sn->io, err, sizeof err);
    assert_non_null(sn->serf);
  }
  return s;
}

static void sim_free(struct sim *s) {
  for (size_t i = 0; i < s->n; i++) serf_free(s->nodes[i].serf);
  fakenet_free(s->net);
  free(s->nodes);
  free(s);
}

static void sim_run(struct sim *s, uint64_t ms) { fakenet_run_until(s->net, fakenet_now(s->net) + ms); }

static void sim_join(struct sim *s, size_t i, size_t j) {
  const char *a[1] = {s->nodes[j].addr_text};
  assert_int_equal(serf_join(s->nodes[i].serf, a, 1, 7946, NULL, NULL), 0);
}

/* How many (observer, subject) pairs among live members see the subject as `want`. */
__attribute__((unused)) static size_t count_views(struct sim *s, enum gossip_status want, size_t subject_filter) {
  size_t c = 0;
  for (size_t i = 0; i < s->n; i++) {
    if (s->nodes[i].dead) continue;
    for (size_t j = 0; j < s->n; j++) {
      if (subject_filter != SIZE_MAX && j != subject_filter) continue;
      if (serf_member_status(s->nodes[i].serf, s->nodes[j].name) == want) c++;
    }
  }
  return c;
}

static size_t live(struct sim *s) {
  size_t c = 0;
  for (size_t i = 0; i < s->n; i++) c += !s->nodes[i].dead;
  return c;
}

/* Runs in steps of `step` ms until every live member sees every live member alive, or limit. */
static uint64_t run_until_converged(struct sim *s, uint64_t limit, uint64_t step) {
  uint64_t start = fakenet_now(s->net);
  size_t want = live(s) * live(s);
  while (fakenet_now(s->net) - start < limit) {
    sim_run(s, step);
    /* Cheap pre-check on two observers before the full n^2 one. */
    size_t first = 0, last = s->n - 1;
    while (s->nodes[first].dead) first++;
    while (s->nodes[last].dead) last--;
    bool maybe = true;
    for (size_t j = 0; j < s->n && maybe; j++)
      maybe = s->nodes[j].dead ||
              (serf_member_status(s->nodes[first].serf, s->nodes[j].name) == GOSSIP_STATUS_ALIVE &&
               serf_member_status(s->nodes[last].serf, s->nodes[j].name) == GOSSIP_STATUS_ALIVE);
    if (!maybe) continue;
    size_t alive = 0;
    for (size_t i = 0; i < s->n; i++) {
      if (s->nodes[i].dead) continue;
      for (size_t j = 0; j < s->n; j++)
        if (!s->nodes[j].dead && serf_member_status(s->nodes[i].serf, s->nodes[j].name) == GOSSIP_STATUS_ALIVE)
          alive++;
    }
    if (alive == want) return fakenet_now(s->net) - start;
  }
  return UINT64_MAX;
}

/* Five members: join, a user event reaches all exactly once, tags update, graceful leave shows
 * as "left" (not failed) everywhere, a crash shows as failed, force-leave turns it to left. */
static void test_small_cluster(void **state) {
  (void)state;
  struct sim *s = sim_new(5, 1);
  for (size_t i = 0; i < 5; i++) serf_start(s->nodes[i].serf);
  for (size_t i = 1; i < 5; i++) sim_join(s, i, 0);
  uint64_t t = run_until_converged(s, 10000, 100);
  assert_true(t != UINT64_MAX);

  assert_int_equal(serf_user_event(s->nodes[2].serf, "deploy", "v1", 2, false), 0);
  sim_run(s, 5000);
  for (size_t i = 0; i < 5; i++) assert_int_equal(s->nodes[i].events_seen, 1);

  /* Tags change: others see the new value. */
  struct gossip_tag tags[2] = {{"role", "web"}, {"dc", "dc1"}};
  assert_int_equal(serf_set_tags(s->nodes[3].serf, tags, 2), 0);
  sim_run(s, 3000);
  struct gossip_member *ms;
  size_t nm;
  assert_int_equal(serf_members(s->nodes[0].serf, &ms, &nm), 0);
  assert_int_equal(nm, 5);
  bool found = false;
  for (size_t i = 0; i < nm; i++) {
    if (strcmp(ms[i].name, "node-003") == 0) {
      assert_string_equal(gossip_member_tag(&ms[i], "role"), "web");
      assert_int_equal(ms[i].protocol_max, 5);
      assert_int_equal(ms[i].delegate_cur, 4);
      found = true;
    }
  }
  assert_true(found);
  gossip_members_free(ms, nm);

  /* Graceful leave of node 4. */
  assert_int_equal(serf_leave(s->nodes[4].serf, NULL, NULL), 0);
  sim_run(s, 10000);
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(serf_member_status(s->nodes[i].serf, "node-004"), GOSSIP_STATUS_LEFT);
  s->nodes[4].dead = true;
  fakenet_kill(s->net, s->nodes[4].io);

  /* Crash of node 1: failed everywhere within the suspicion bound (n = 5: min timeout
   * 4 * log10(5) = 2.8 s, k = 2 confirmations possible; at most ~17 s with no confirmations). */
  s->nodes[1].dead = true;
  fakenet_kill(s->net, s->nodes[1].io);
  sim_run(s, 25000);
  for (size_t i = 0; i < 4; i++) {
    if (s->nodes[i].dead) continue;
    assert_int_equal(serf_member_status(s->nodes[i].serf, "node-001"), GOSSIP_STATUS_FAILED);
  }
  /* force-leave turns failed into left everywhere. */
  assert_int_equal(serf_force_leave(s->nodes[0].serf, "node-001", false), 0);
  sim_run(s, 3000);
  for (size_t i = 0; i < 4; i++) {
    if (s->nodes[i].dead) continue;
    assert_int_equal(serf_member_status(s->nodes[i].serf, "node-001"), GOSSIP_STATUS_LEFT);
  }
  sim_free(s);
}

/* 200 members start together and join through member 0, 10 ms apart (a 2 s join window).
 *
 * Bound. Each join is a push-pull with the seed, so the joiner learns everyone the seed knew
 * and the seed learns the joiner; the rest is gossip. A member's queue holds at most one alive
 * message per member (newer news about a name replaces older), N = 200, each sent at most
 * L = 4 * ceil(log10(201)) = 12 times, and it drains at F = 3 packets per 200 ms round of
 * M = 16 messages (an alive message here is 83 bytes, 85 with its compound slot, in a
 * 1400-byte packet), not counting piggybacking on pings: N * L / (F * M) = 50 rounds = 10 s.
 * Once every queue has drained the epidemic is over, and RetransmitMult is chosen (memberlist's
 * rationale) so that a member missed by all L * F sends of every holder is vanishingly rare.
 * Bound: 2 s window + 10 s = 12 s.
 *
 * Then member 100 is killed. Bound: with 199 probers each probing one member per second in a
 * shuffled round, the victim is first probed within ~1 s on average (we allow 5 s: about
 * e^-5 odds of taking longer), the probe fails after one probe interval (1 s, indirect
 * checks included), and the suspicion timeout then runs from the maximum 6 * 9.2 s toward the
 * minimum 4 * log10(200) s = 9.2 s as k = 2 independent probers confirm (two more probers
 * arrive within ~2 s); the first member to time out broadcasts "dead", which everyone accepts
 * at once, reaching all within the ~1 s gossip spread. 5 + 1 + 9.2 + 2 = 17.2 s: bound 18 s. */
static void test_200_converge_and_detect(void **state) {
  (void)state;
  sim_compress = false;
  const size_t N = 200;
  struct sim *s = sim_new(N, 42);
  for (size_t i = 0; i < N; i++) serf_start(s->nodes[i].serf);
  sim_run(s, 10);
  for (size_t i = 1; i < N; i++) {
    sim_join(s, i, 0);
    sim_run(s, 10);
  }
  uint64_t t = run_until_converged(s, 20000, 100);
  fprintf(stderr, "# 200 members converged %.1f s after the last join\n", (double)t / 1000);
  assert_true(t <= 12000);

  const size_t victim = 100;
  s->nodes[victim].dead = true;
  fakenet_kill(s->net, s->nodes[victim].io);
  uint64_t start = fakenet_now(s->net), detected = UINT64_MAX;
  while (fakenet_now(s->net) - start < 60000) {
    sim_run(s, 100);
    size_t failed = 0;
    for (size_t i = 0; i < N; i++)
      if (!s->nodes[i].dead &&
          serf_member_status(s->nodes[i].serf, s->nodes[victim].name) == GOSSIP_STATUS_FAILED)
        failed++;
    if (failed == N - 1) {
      detected = fakenet_now(s->net) - start;
      break;
    }
  }
  fprintf(stderr, "# all 199 marked the killed member failed after %.1f s\n", (double)detected / 1000);
  assert_true(detected <= 18000);
  /* And nobody else was accused. */
  for (size_t i = 0; i < N; i++)
    for (size_t j = 0; j < N; j++)
      if (!s->nodes[i].dead && j != victim)
        assert_int_equal(serf_member_status(s->nodes[i].serf, s->nodes[j].name), GOSSIP_STATUS_ALIVE);
  sim_free(s);
}

/* 200 converged members, then 10% of UDP packets lost for 3 minutes of virtual time: no
 * member may be declared failed (Lifeguard: indirect probes through 3 relays, nacks telling
 * a prober the fault may be its own, the TCP fallback ping, refutation by the accused, and a
 * suspicion timeout that waits for independent confirmation). A direct probe fails with
 * p = 1 - 0.9^2 = 19%; each indirect path needs 4 packets (0.9^4 = 66%), all three fail with
 * 0.34^3 = 4%; the TCP ping rarely fails, and a member wrongly suspected has 9-55 s to hear of
 * it and refute. */
static void test_200_loss_no_false_failures(void **state) {
  (void)state;
  sim_compress = false;
  const size_t N = 200;
  struct sim *s = sim_new(N, 7);
  for (size_t i = 0; i < N; i++) serf_start(s->nodes[i].serf);
  sim_run(s, 10);
  for (size_t i = 1; i < N; i++) {
    sim_join(s, i, 0);
    sim_run(s, 10);
  }
  assert_true(run_until_converged(s, 20000, 100) != UINT64_MAX);
  fakenet_set_loss(s->net, 0.10);
  int fails_before = 0;
  for (size_t i = 0; i < N; i++) fails_before += s->nodes[i].fails;
  struct fakenet_stats st0, st1;
  fakenet_stats(s->net, &st0);
  for (int sec = 0; sec < 180; sec++) sim_run(s, 1000);
  fakenet_stats(s->net, &st1);
  fprintf(stderr, "# per member per second: %.1f packets, %.0f bytes delivered; %llu streams\n",
          (double)(st1.packets_sent - st0.packets_sent) / 180 / N,
          (double)(st1.bytes_delivered - st0.bytes_delivered) / 180 / N,
          (unsigned long long)(st1.streams_opened - st0.streams_opened));
  int fails = 0;
  for (size_t i = 0; i < N; i++) fails += s->nodes[i].fails;
  fprintf(stderr, "# 3 min at 10%% loss: %d failure events\n", fails - fails_before);
  assert_int_equal(fails - fails_before, 0);
  for (size_t i = 0; i < N; i++)
    for (size_t j = 0; j < N; j++)
      assert_int_equal(serf_member_status(s->nodes[i].serf, s->nodes[j].name), GOSSIP_STATUS_ALIVE);
  sim_free(s);
}

/* 100 members split 50/50 for 90 s: each side marks the other failed. After healing, serf's
 * reconnect (every 30 s, each member with probability failed/alive = 1 here) push-pulls
 * across: the exchange makes each side suspect the other's members as the state says, they
 * refute with a higher incarnation, and the next exchange carries the refutations over.
 * Bound: two reconnect intervals plus gossip spread, 60 s + 10 s; we allow 90 s. */
static void test_partition_heals(void **state) {
  (void)state;
  sim_compress = false;
  const size_t N = 100;
  struct sim *s = sim_new(N, 99);
  for (size_t i = 0; i < N; i++) serf_start(s->nodes[i].serf);
  sim_run(s, 10);
  for (size_t i = 1; i < N; i++) {
    sim_join(s, i, 0);
    sim_run(s, 10);
  }
  assert_true(run_until_converged(s, 20000, 100) != UINT64_MAX);
  for (size_t i = N / 2; i < N; i++) fakenet_set_group(s->net, s->nodes[i].io, 1);
  sim_run(s, 90000);
  /* Each side sees the other failed. */
  assert_int_equal(serf_member_status(s->nodes[0].serf, s->nodes[N - 1].name), GOSSIP_STATUS_FAILED);
  assert_int_equal(serf_member_status(s->nodes[N - 1].serf, s->nodes[0].name), GOSSIP_STATUS_FAILED);
  for (size_t i = N / 2; i < N; i++) fakenet_set_group(s->net, s->nodes[i].io, 0);
  uint64_t t = run_until_converged(s, 120000, 500);
  fprintf(stderr, "# partition healed after %.1f s\n", (double)t / 1000);
  assert_true(t <= 90000);
  sim_free(s);
}

/* Lifeguard's point: a member starved of CPU must not get anyone declared dead, itself
 * included. Here it runs only the first 100 ms of every 2 s, so a ping reaching it in the
 * other 1.9 s is answered late: direct probes of it fail, the relays' probes fail too (and the
 * relays nack, so its accusers' health is not blamed), the TCP fallback misses the 1 s probe
 * deadline, and it gets suspected by many independent probers, which shrinks the suspicion
 * timeout to its 6.8 s minimum (4 * log10(50)). It hears each suspicion at its next time
 * slice, at most 1.9 s later, and refutes with a higher incarnation, well inside that minimum.
 * Its own probes, sent at the start of a slice, are answered within it. 50 members, 2 minutes:
 * the starved member must have refuted (the scenario bites) and nobody may fail. */
static void test_starved_member_no_false_failures(void **state) {
  (void)state;
  sim_compress = false;
  const size_t N = 50;
  struct sim *s = sim_new(N, 5);
  for (size_t i = 0; i < N; i++) serf_start(s->nodes[i].serf);
  sim_run(s, 10);
  for (size_t i = 1; i < N; i++) {
    sim_join(s, i, 0);
    sim_run(s, 10);
  }
  assert_true(run_until_converged(s, 20000, 200) != UINT64_MAX);
  const size_t starved = 7;
  uint32_t inc_before = serf_ml(s->nodes[starved].serf)->incarnation;
  fakenet_set_starved(s->net, s->nodes[starved].io, 2000, 100);
  int before = 0;
  for (size_t i = 0; i < N; i++) before += s->nodes[i].fails;
  sim_run(s, 120000);
  int fails = 0;
  for (size_t i = 0; i < N; i++) fails += s->nodes[i].fails;
  uint32_t refutations = serf_ml(s->nodes[starved].serf)->incarnation - inc_before;
  fprintf(stderr, "# starved member refuted %u suspicions; %d failure events\n", refutations,
          fails - before);
  assert_true(refutations > 0);
  assert_int_equal(fails - before, 0);
  sim_free(s);
}

/* serf queries: everyone (ourselves included) acks and answers once; filters narrow who does;
 * DONE comes once, at the timeout. */
static void test_queries(void **state) {
  (void)state;
  sim_compress = true;
  struct sim *s = sim_new(5, 3);
  for (size_t i = 0; i < 5; i++) serf_start(s->nodes[i].serf);
  for (size_t i = 1; i < 5; i++) sim_join(s, i, 0);
  assert_true(run_until_converged(s, 10000, 100) != UINT64_MAX);

  struct query_tally t = {0};
  struct gossip_query_params qp = {.request_ack = true, .timeout = 3000};
  assert_int_equal(serf_query(s->nodes[1].serf, "who", "?", 1, &qp, on_query_result, &t), 0);
  sim_run(s, 2000);
  assert_int_equal(t.acks, 5);
  assert_int_equal(t.responses, 5);
  assert_int_equal(t.done, 0);
  sim_run(s, 2000);
  assert_int_equal(t.done, 1);
  for (size_t i = 0; i < 5; i++) assert_int_equal(s->nodes[i].queries_seen, 1);

  /* Only node-002 and node-004 by name. */
  struct query_tally t2 = {0};
  const char *only[2] = {"node-002", "node-004"};
  struct gossip_query_params qp2 = {.request_ack = true, .timeout = 2000, .filter_nodes = only,
                                    .nfilter_nodes = 2};
  assert_int_equal(serf_query(s->nodes[0].serf, "who", NULL, 0, &qp2, on_query_result, &t2), 0);
  sim_run(s, 3000);
  assert_int_equal(t2.acks, 2);
  assert_int_equal(t2.responses, 2);
  assert_int_equal(t2.done, 1);

  /* A tag filter nobody matches: silence, then DONE. */
  struct query_tally t3 = {0};
  struct gossip_tag tf[1] = {{"role", "^db$"}};
  struct gossip_query_params qp3 = {.request_ack = true, .timeout = 1000, .filter_tags = tf,
                                    .nfilter_tags = 1};
  assert_int_equal(serf_query(s->nodes[0].serf, "who", NULL, 0, &qp3, on_query_result, &t3), 0);
  sim_run(s, 2000);
  assert_int_equal(t3.acks + t3.responses, 0);
  assert_int_equal(t3.done, 1);

  /* Answering after the deadline fails; oversize queries are refused up front. */
  struct gossip_query_token late = {.deadline = 0, .addr_len = 4, .port = 1};
  assert_int_equal(serf_query_respond(s->nodes[0].serf, &late, "x", 1), CC_ETIMEOUT);
  char big[1100];
  memset(big, 'q', sizeof big);
  assert_int_equal(serf_query(s->nodes[0].serf, "big", big, sizeof big, NULL, on_query_result, &t3),
                   CC_ETOOBIG);
  /* A query still running when we stop ends with DONE. */
  struct query_tally t4 = {0};
  assert_int_equal(serf_query(s->nodes[0].serf, "who", NULL, 0, NULL, on_query_result, &t4), 0);
  sim_run(s, 100);
  sim_free(s);
  assert_int_equal(t4.done, 1);
}

/* Three keys (base64 of 32 bytes of 0x01, 0x02, 0x03). */
static const char *const enc_k1 = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
static const char *const enc_k2 = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
static const char *const enc_k3 = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";

/* Members 0..4 share k1, member 5 holds k3, member 6 only k2 (the key rotated to). */
static const char *enc_key_of(size_t i) { return i < 5 ? enc_k1 : i == 5 ? enc_k3 : enc_k2; }

struct key_result {
  int calls, num_nodes, num_resp, num_err;
  char error[96];
  int k1, k2; /* holders reported */
};

static void on_key_result(void *arg, const struct gossip_key_response *r) {
  struct key_result *kr = arg;
  kr->calls++;
  kr->num_nodes = r->num_nodes;
  kr->num_resp = r->num_resp;
  kr->num_err = r->num_err;
  snprintf(kr->error, sizeof kr->error, "%s", r->error);
  kr->k1 = kr->k2 = 0;
  for (size_t i = 0; i < r->nkeys; i++) {
    if (strcmp(r->keys[i].key, enc_k1) == 0) kr->k1 = r->keys[i].count;
    if (strcmp(r->keys[i].key, enc_k2) == 0) kr->k2 = r->keys[i].count;
  }
}

static void key_op(struct sim *s, size_t from, enum gossip_key_op op, const char *key,
                   struct key_result *kr) {
  memset(kr, 0, sizeof *kr);
  char err[64];
  assert_int_equal(serf_keys_op(s->nodes[from].serf, op, key, on_key_result, kr, err, sizeof err),
                   0);
  sim_run(s, 5000);
  assert_int_equal(kr->calls, 1);
}

/* An encrypted pool converges; a member with another key never gets in; the pool rotates to a
 * new key with serf's key queries and then admits a member that knows only the new key. */
static void test_encrypted_pool_and_rotation(void **state) {
  (void)state;
  sim_compress = true;
  sim_keys = enc_key_of;
  struct sim *s = sim_new(7, 4);
  sim_keys = NULL;
  for (size_t i = 0; i < 7; i++) serf_start(s->nodes[i].serf);
  for (size_t i = 1; i < 5; i++) sim_join(s, i, 0);
  sim_join(s, 5, 0);
  s->nodes[6].dead = true; /* not part of the pool yet (counts as absent for convergence) */
  s->nodes[5].dead = true;
  assert_true(run_until_converged(s, 10000, 100) != UINT64_MAX);
  sim_run(s, 5000);
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(serf_member_status(s->nodes[i].serf, "node-005"), GOSSIP_STATUS_NONE);
  assert_int_equal(serf_member_status(s->nodes[5].serf, "node-000"), GOSSIP_STATUS_NONE);

  struct key_result kr;
  key_op(s, 1, GOSSIP_KEY_LIST, NULL, &kr);
  assert_int_equal(kr.num_nodes, 5);
  assert_int_equal(kr.num_resp, 5);
  assert_string_equal(kr.error, "");
  assert_int_equal(kr.k1, 5);
  key_op(s, 2, GOSSIP_KEY_INSTALL, enc_k2, &kr);
  assert_string_equal(kr.error, "");
  key_op(s, 3, GOSSIP_KEY_USE, enc_k2, &kr);
  assert_string_equal(kr.error, "");
  key_op(s, 4, GOSSIP_KEY_REMOVE, enc_k2, &kr); /* the primary now: every member refuses */
  assert_int_equal(kr.num_err, 5);
  assert_string_equal(kr.error, "5/5 nodes reported failure");
  key_op(s, 0, GOSSIP_KEY_REMOVE, enc_k1, &kr);
  assert_string_equal(kr.error, "");
  key_op(s, 0, GOSSIP_KEY_LIST, NULL, &kr);
  assert_int_equal(kr.k1, 0);
  assert_int_equal(kr.k2, 5);
  /* Member 6, holding only k2, joins; the pool stays healthy under the new key. */
  s->nodes[6].dead = false;
  sim_join(s, 6, 3);
  assert_true(run_until_converged(s, 10000, 100) != UINT64_MAX);
  sim_run(s, 10000);
  for (size_t i = 0; i < 7; i++) {
    if (i == 5) continue;
    assert_int_equal(s->nodes[i].fails, 0);
  }
  /* Not base64: refused at once. */
  char err[64];
  assert_int_equal(serf_keys_op(s->nodes[0].serf, GOSSIP_KEY_INSTALL, "!!", on_key_result, &kr,
                                err, sizeof err), CC_EINVAL);
  sim_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encrypted_pool_and_rotation),
      cmocka_unit_test(test_small_cluster),
      cmocka_unit_test(test_queries),
      cmocka_unit_test(test_200_converge_and_detect),
      cmocka_unit_test(test_200_loss_no_false_failures),
      cmocka_unit_test(test_partition_heals),
      cmocka_unit_test(test_starved_member_no_false_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
