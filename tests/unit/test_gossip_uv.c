/* test_gossip_uv.c -- the public API (gossip.h) on a real libuv loop and loopback sockets:
 * two members join, see each other with tags, exchange an event, see a tag update and a
 * graceful leave; bad configurations fail cleanly; stopping from inside a callback is safe.
 * Every test ends with uv_loop_close succeeding, so a leaked handle fails it (libuv's habit),
 * and LeakSanitizer checks the memory. Only 127.0.0.1 is used. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <uv.h>

#include "gossip/gossip.h"
#include "lib/err.h"
#include "lib/log.h"

struct member {
  struct gossip *g;
  const char *name;
  int joins, leaves, fails, updates, events;
  char last_event[64];
  bool stop_on_join; /* stop ourselves from inside the join callback */
  bool stopped;
};

static void on_member(void *ctx, enum gossip_event ev, const struct gossip_member *m) {
  struct member *me = ctx;
  if (strcmp(m->name, me->name) == 0) return; /* ourselves */
  if (ev == GOSSIP_EVENT_JOIN) me->joins++;
  if (ev == GOSSIP_EVENT_LEAVE) me->leaves++;
  if (ev == GOSSIP_EVENT_FAILED) me->fails++;
  if (ev == GOSSIP_EVENT_UPDATE) me->updates++;
  if (ev == GOSSIP_EVENT_JOIN && me->stop_on_join && !me->stopped) {
    me->stopped = true;
    gossip_stop(me->g, NULL, NULL);
  }
}

static void on_event(void *ctx, const struct gossip_user_event *ev) {
  struct member *me = ctx;
  me->events++;
  snprintf(me->last_event, sizeof me->last_event, "%s=%.*s", ev->name, (int)ev->payload_len,
           ev->payload ? (const char *)ev->payload : "");
}

static int start(uv_loop_t *loop, struct member *m, const char *name, uint16_t port) {
  struct gossip_config cfg;
  gossip_config_default(&cfg);
  cfg.node_name = name;
  cfg.bind_addr = "127.0.0.1";
  cfg.bind_port = port;
  struct gossip_tag tags[1] = {{"role", "test"}};
  cfg.tags = tags;
  cfg.ntags = 1;
  cfg.on_member = on_member;
  cfg.on_user_event = on_event;
  cfg.cb_ctx = m;
  m->name = name;
  char err[256];
  int rc = gossip_start(loop, &cfg, &m->g, err, sizeof err);
  if (rc) fprintf(stderr, "start: %s\n", err);
  return rc;
}

/* Runs the loop until cond(arg) holds or ms pass. */
static bool run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, uint64_t ms) {
  uint64_t end = uv_now(loop) + ms;
  while (!cond(arg)) {
    if (uv_now(loop) > end) return false;
    uv_run(loop, UV_RUN_ONCE);
    uv_update_time(loop);
  }
  return true;
}

static bool both_joined(void *arg) {
  struct member *m = arg;
  return m[0].joins >= 1 && m[1].joins >= 1;
}
static bool b_got_event(void *arg) { return ((struct member *)arg)[1].events >= 1; }
static bool a_got_update(void *arg) { return ((struct member *)arg)[0].updates >= 1; }
static bool a_saw_leave(void *arg) { return ((struct member *)arg)[0].leaves >= 1; }
static bool flag_set(void *arg) { return *(int *)arg != 0; }
static bool b_stopped(void *arg) { return ((struct member *)arg)[1].stopped; }

static int joined_n = -1, left_err = 99;
static void on_joined(void *arg, int n, int err) {
  (void)arg;
  (void)err;
  joined_n = n;
}
static void on_left(void *arg, int err) {
  *(int *)arg = 1;
  left_err = err;
}

static void finish_loop(uv_loop_t *loop) {
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(loop), 0);
}

static uint16_t local_port(struct gossip *g) {
  struct gossip_member self;
  assert_int_equal(gossip_local_member(g, &self), 0);
  uint16_t port = self.port;
  assert_string_equal(self.addr, "127.0.0.1");
  gossip_member_free(&self);
  return port;
}

static void test_two_members(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct member m[2];
  memset(m, 0, sizeof m);
  assert_int_equal(start(&loop, &m[0], "uv-a", 0), 0);
  assert_int_equal(start(&loop, &m[1], "uv-b", 0), 0);
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", local_port(m[0].g));
  const char *addrs[1] = {addr};
  assert_int_equal(gossip_join(m[1].g, addrs, 1, on_joined, NULL), 0);
  assert_true(run_until(&loop, both_joined, m, 10000));
  assert_int_equal(joined_n, 1);

  struct gossip_member *ms;
  size_t n;
  assert_int_equal(gossip_members(m[0].g, &ms, &n), 0);
  assert_int_equal(n, 2);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(ms[i].status, GOSSIP_STATUS_ALIVE);
    assert_string_equal(gossip_member_tag(&ms[i], "role"), "test");
  }
  gossip_members_free(ms, n);

  /* An event reaches the other member (and is delivered locally, once). */
  assert_int_equal(gossip_user_event(m[0].g, "deploy", "v1", 2, false), 0);
  assert_int_equal(m[0].events, 0); /* not inside the call */
  assert_true(run_until(&loop, b_got_event, m, 10000));
  assert_string_equal(m[1].last_event, "deploy=v1");
  assert_int_equal(m[0].events, 1);
  /* Too big for Consul's 512-byte limit. */
  char big[600];
  memset(big, 'x', sizeof big);
  assert_int_equal(gossip_user_event(m[0].g, "big", big, sizeof big, false), CC_ETOOBIG);

  /* Tags. */
  struct gossip_tag tags[2] = {{"role", "web"}, {"dc", "dc1"}};
  assert_int_equal(gossip_set_tags(m[1].g, tags, 2), 0);
  assert_true(run_until(&loop, a_got_update, m, 10000));

  /* Graceful leave: the other side records "left", not "failed". */
  int done = 0;
  assert_int_equal(gossip_leave(m[1].g, on_left, &done), 0);
  assert_true(run_until(&loop, flag_set, &done, 15000));
  assert_int_equal(left_err, 0);
  assert_true(run_until(&loop, a_saw_leave, m, 10000));
  assert_int_equal(m[0].fails, 0);

  gossip_stop(m[0].g, NULL, NULL);
  gossip_stop(m[1].g, NULL, NULL);
  finish_loop(&loop);
}

static void test_bad_configs(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct gossip_config cfg;
  struct gossip *g;
  char err[256];
  gossip_config_default(&cfg);
  cfg.node_name = "x";
  cfg.bind_addr = "not-an-ip";
  assert_int_equal(gossip_start(&loop, &cfg, &g, err, sizeof err), CC_EINVAL);
  cfg.bind_addr = "0.0.0.0"; /* no advertise address */
  assert_int_equal(gossip_start(&loop, &cfg, &g, err, sizeof err), CC_EINVAL);
  assert_non_null(strstr(err, "advertise"));
  /* Tags past memberlist's 512-byte meta. */
  char value[600];
  memset(value, 'v', sizeof value - 1);
  value[sizeof value - 1] = '\0';
  struct gossip_tag tags[1] = {{"big", value}};
  cfg.bind_addr = "127.0.0.1";
  cfg.tags = tags;
  cfg.ntags = 1;
  assert_int_equal(gossip_start(&loop, &cfg, &g, err, sizeof err), CC_EINVAL);
  assert_non_null(strstr(err, "512"));
  /* The port is taken. */
  struct member a;
  memset(&a, 0, sizeof a);
  assert_int_equal(start(&loop, &a, "holder", 0), 0);
  cfg.tags = NULL;
  cfg.ntags = 0;
  cfg.bind_port = local_port(a.g);
  assert_int_equal(gossip_start(&loop, &cfg, &g, err, sizeof err), CC_EIO);
  /* Joining nothing parseable fails without a callback. */
  const char *bad[1] = {"nowhere"};
  joined_n = -1;
  assert_int_not_equal(gossip_join(a.g, bad, 1, on_joined, NULL), 0);
  assert_int_equal(joined_n, -1);
  gossip_stop(a.g, NULL, NULL);
  finish_loop(&loop);
}

/* A member that stops itself from inside a member callback, while its stack is deep in the
 * protocol: nothing may touch the freed state afterwards. */
static void test_stop_inside_callback(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct member m[2];
  memset(m, 0, sizeof m);
  assert_int_equal(start(&loop, &m[0], "cb-a", 0), 0);
  assert_int_equal(start(&loop, &m[1], "cb-b", 0), 0);
  m[1].stop_on_join = true;
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", local_port(m[0].g));
  const char *addrs[1] = {addr};
  joined_n = -1;
  assert_int_equal(gossip_join(m[1].g, addrs, 1, on_joined, NULL), 0);
  assert_true(run_until(&loop, b_stopped, m, 5000));
  /* Its pending join completed with "canceled" inside the stop, or had already finished. */
  assert_true(joined_n == 1 || joined_n == 0);
  gossip_stop(m[0].g, NULL, NULL);
  finish_loop(&loop);
}

int main(void) {
  log_set_level(LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_two_members),
      cmocka_unit_test(test_bad_configs),
      cmocka_unit_test(test_stop_inside_callback),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
