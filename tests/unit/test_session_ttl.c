/* test_session_ttl.c -- the leader's TTL clockwork (src/agent/session_ttl.c) on a real loop
 * and a real single-server Raft, with the store on a fake clock: nothing expires before
 * TTL * 2, a renewed session survives, an expired one is destroyed through Raft (its lock
 * released), and the loop closes clean after session_ttl_stop. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/session_ttl.h"
#include "consensus/consensus.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "state/catalog.h"
#include "state/cmd.h"
#include "state/session.h"
#include "state/store.h"

#define SID1 "aaaaaaaa-1111-4111-8111-111111111111"
#define SID2 "bbbbbbbb-2222-4222-8222-222222222222"

static uint64_t fake_now = 5000000;
static uint64_t fake_clock(void *arg)
{
  (void)arg;
  return fake_now;
}

static int free_port(void)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  socklen_t len = sizeof sa;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

static void noop_timer(uv_timer_t *t) { (void)t; }
static void noop_close(uv_handle_t *h) { (void)h; }

static bool run_until(uv_loop_t *loop, bool (*pred)(void *), void *arg, unsigned timeout_ms)
{
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, noop_timer, 5, 5);
  uint64_t deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
  bool ok;
  while (!(ok = pred(arg)) && uv_hrtime() < deadline) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, noop_close);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

struct fix {
  uv_loop_t loop;
  char dir[128];
  struct state_store *store;
  struct consensus *c;
  int applied;
  bool stopped;
};

static bool is_leader(void *arg) { return consensus_is_leader(((struct fix *)arg)->c); }
static bool applied_pred(void *arg) { return ((struct fix *)arg)->applied == 0; }

static void applied_cb(void *arg, int status, const struct state_cmd_result *res, uint64_t index)
{
  (void)index;
  struct fix *f = arg;
  assert_int_equal(status, 0);
  assert_true(res->ok);
  f->applied--;
}

static void propose(struct fix *f, const struct buf *cmd)
{
  f->applied++;
  assert_int_equal(consensus_apply(f->c, cmd, applied_cb, f), 0);
  assert_true(run_until(&f->loop, applied_pred, f, 5000));
}

static void stopped_cb(void *arg) { ((struct fix *)arg)->stopped = true; }
static bool stopped_pred(void *arg) { return ((struct fix *)arg)->stopped; }

static bool s1_gone(void *arg) { return !state_session_get(((struct fix *)arg)->store, SID1); }

static void test_expiry_through_raft(void **st)
{
  (void)st;
  struct fix f = {0};
  uv_loop_init(&f.loop);
  snprintf(f.dir, sizeof f.dir, "/tmp/concord-ttl-XXXXXX");
  assert_non_null(mkdtemp(f.dir));
  struct consensus_config cfg;
  consensus_config_defaults(&cfg);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
  cfg.data_dir = f.dir;
  cfg.node_id = "cccccccc-1111-4222-8333-444455556666";
  cfg.address = addr;
  cfg.bootstrap_expect = 1;
  f.store = state_store_new();
  state_store_set_clock(f.store, fake_clock, NULL);
  char err[256];
  assert_int_equal(consensus_start(&f.loop, &cfg, f.store, &f.c, err, sizeof err), 0);
  assert_true(run_until(&f.loop, is_leader, &f, 10000));

  /* A node, two TTL sessions, a lock held by the first. */
  struct buf cmd = BUF_INIT;
  struct state_register reg = {.node = "n1", .address = "127.0.0.1"};
  state_cmd_encode_register(&cmd, &reg);
  propose(&f, &cmd);
  struct state_session se = {.id = SID1, .node = "n1", .ttl = "10s", .behavior = "release"};
  buf_reset(&cmd);
  state_cmd_encode_session_create(&cmd, &se);
  propose(&f, &cmd);
  se.id = SID2;
  buf_reset(&cmd);
  state_cmd_encode_session_create(&cmd, &se);
  propose(&f, &cmd);
  struct state_kv_op op = {.verb = STATE_KV_LOCK, .key = "lock", .key_len = 4, .session = SID1};
  buf_reset(&cmd);
  state_cmd_encode_kv(&cmd, &op);
  propose(&f, &cmd);

  struct session_ttl t;
  assert_int_equal(session_ttl_start(&t, &f.loop, f.store, f.c), 0);
  session_ttl_tick(&t); /* sees leadership: arms both at now + 20 s */
  assert_true(state_session_ttl_tracking(f.store));
  assert_int_equal(state_session_ttl_next(f.store), fake_now + 20000);

  fake_now += 19000;
  session_ttl_tick(&t);
  assert_int_equal(t.proposed, 0);
  assert_non_null(state_session_renew(f.store, SID2)); /* SID2 now lives to +39 s */
  fake_now += 1000;
  /* The timer's own ticks do the rest. */
  assert_true(run_until(&f.loop, s1_gone, &f, 5000));
  assert_int_equal(t.proposed, 1);
  assert_non_null(state_session_get(f.store, SID2));
  const struct state_kv *e = state_kv_get(f.store, "lock", 4, NULL);
  assert_non_null(e);
  assert_null(e->session);

  session_ttl_stop(&t);
  session_ttl_stop(&t); /* twice is fine */
  assert_false(state_session_ttl_tracking(f.store));
  consensus_stop(f.c, stopped_cb, &f);
  assert_true(run_until(&f.loop, stopped_pred, &f, 10000));
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f.loop), 0);
  buf_free(&cmd);
  state_store_free(f.store);
  char rm[256];
  snprintf(rm, sizeof rm, "rm -rf '%s'", f.dir);
  assert_int_equal(system(rm), 0);
}

/* Not leader (no consensus at all): never tracks, never proposes. */
static void test_follower_does_nothing(void **st)
{
  (void)st;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct state_store *s = state_store_new();
  state_store_set_clock(s, fake_clock, NULL);
  struct session_ttl t;
  assert_int_equal(session_ttl_start(&t, &loop, s, NULL), 0);
  session_ttl_tick(&t);
  assert_false(state_session_ttl_tracking(s));
  assert_int_equal(t.proposed, 0);
  session_ttl_stop(&t);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  state_store_free(s);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_follower_does_nothing),
      cmocka_unit_test(test_expiry_through_raft),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
