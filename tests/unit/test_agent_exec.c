/* test_agent_exec.c -- the remote-exec runner on a real loop with a fake KV (the interface the
 * lead will point at RPC): the spec is read, the ack written first, output chunked at 4 KiB,
 * heartbeats while quiet, the exit code last; a refused write stops uploading and records
 * 255; a missing spec or a bad event does nothing; close kills a running job. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "agent/exec.h"
#include "lib/alloc.h"
#include "lib/b64.h"
#include "lib/buf.h"
#include "lib/err.h"

#define MAXW 64

struct fake_kv {
  uv_loop_t *loop;
  const char *spec; /* value at the job key, or NULL */
  char *keys[MAXW];
  struct buf vals[MAXW];
  char *sessions[MAXW];
  int n;
  int refuse_after; /* writes after this many answer false (-1: never) */
  int fail_sync_after; /* writes after this many are refused at once, CC_ENOTLEADER (0: never) */
  bool fail_all;       /* every write refused at once */
};

static int fake_get(void *ctx, const char *key, agent_exec_get_done done, void *arg)
{
  struct fake_kv *kv = ctx;
  assert_string_equal(key, "_rexec/sess-1/job");
  done(arg, 0, kv->spec != NULL, (const uint8_t *)kv->spec, kv->spec ? strlen(kv->spec) : 0);
  return 0;
}

struct pending {
  uv_timer_t t;
  agent_exec_write_done done;
  void *arg;
  bool ok;
};

static void pending_closed(uv_handle_t *h) { free(h->data); }

static void pending_fire(uv_timer_t *t)
{
  struct pending *p = t->data;
  p->done(p->arg, 0, p->ok);
  uv_close((uv_handle_t *)t, pending_closed);
}

/* Answers later, from the loop, as Raft or RPC would. */
static int fake_lock(void *ctx, const char *key, const void *val, size_t len, const char *session,
                     agent_exec_write_done done, void *arg)
{
  struct fake_kv *kv = ctx;
  assert_true(kv->n < MAXW);
  if (kv->fail_all || (kv->fail_sync_after && kv->n >= kv->fail_sync_after)) return CC_ENOTLEADER;
  kv->keys[kv->n] = xstrdup(key);
  kv->vals[kv->n] = (struct buf)BUF_INIT;
  buf_append(&kv->vals[kv->n], val ? val : "", len);
  kv->sessions[kv->n] = xstrdup(session);
  bool ok = kv->refuse_after < 0 || kv->n < kv->refuse_after;
  kv->n++;
  struct pending *p = xcalloc(1, sizeof *p);
  p->done = done;
  p->arg = arg;
  p->ok = ok;
  uv_timer_init(kv->loop, &p->t);
  p->t.data = p;
  uv_timer_start(&p->t, pending_fire, 1, 0);
  return 0;
}

static void fake_free(struct fake_kv *kv)
{
  for (int i = 0; i < kv->n; i++) {
    free(kv->keys[i]);
    free(kv->sessions[i]);
    buf_free(&kv->vals[i]);
  }
}

static const char *EVENT = "{\"Prefix\":\"_rexec\",\"Session\":\"sess-1\"}";

static struct agent_exec *setup(uv_loop_t *loop, struct fake_kv *kv)
{
  uv_loop_init(loop);
  kv->loop = loop;
  struct agent_exec *x = agent_exec_new(loop, "n1", NULL, NULL);
  struct agent_exec_kv iface = {fake_get, fake_lock, kv};
  agent_exec_set_kv(x, &iface);
  return x;
}

static void run_until_idle(uv_loop_t *loop, struct agent_exec *x)
{
  for (int i = 0; i < 20000 && agent_exec_jobs(x) > 0; i++) uv_run(loop, UV_RUN_ONCE);
  assert_int_equal(agent_exec_jobs(x), 0);
}

static void teardown(uv_loop_t *loop, struct agent_exec *x, struct fake_kv *kv)
{
  agent_exec_close(x);
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(loop), 0);
  fake_free(kv);
}

static void test_runs_and_reports(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake_kv kv = {.refuse_after = -1,
                       .spec = "{\"Command\":\"printf hello; exit 7\",\"Wait\":2000000000}"};
  struct agent_exec *x = setup(&loop, &kv);
  agent_exec_handle(x, (const uint8_t *)EVENT, strlen(EVENT));
  run_until_idle(&loop, x);
  assert_int_equal(kv.n, 3);
  assert_string_equal(kv.keys[0], "_rexec/sess-1/n1/ack");
  assert_int_equal(kv.vals[0].len, 0);
  assert_string_equal(kv.keys[1], "_rexec/sess-1/n1/out/00000");
  assert_int_equal(kv.vals[1].len, 5);
  assert_memory_equal(kv.vals[1].data, "hello", 5);
  assert_string_equal(kv.keys[2], "_rexec/sess-1/n1/exit");
  assert_memory_equal(kv.vals[2].data, "7", 1);
  for (int i = 0; i < kv.n; i++) assert_string_equal(kv.sessions[i], "sess-1");
  teardown(&loop, x, &kv);
}

static void test_chunks_heartbeats_args_script(void **state)
{
  (void)state;
  uv_loop_t loop;
  /* 10000 bytes of output: chunks of 4096, 4096, 1808; then quiet for a while: heartbeats. */
  struct fake_kv kv = {.refuse_after = -1,
                       .spec = "{\"Command\":\"head -c 10000 /dev/zero | tr '\\\\0' x; sleep 0.5\","
                               "\"Wait\":100000000}"};
  struct agent_exec *x = setup(&loop, &kv);
  agent_exec_handle(x, (const uint8_t *)EVENT, strlen(EVENT));
  run_until_idle(&loop, x);
  size_t total = 0;
  int heartbeats = 0;
  for (int i = 1; i < kv.n - 1; i++) {
    char want[64];
    snprintf(want, sizeof want, "_rexec/sess-1/n1/out/%05x", i - 1);
    assert_string_equal(kv.keys[i], want);
    assert_true(kv.vals[i].len <= AGENT_EXEC_OUTPUT_CHUNK);
    total += kv.vals[i].len;
    if (kv.vals[i].len == 0) heartbeats++;
  }
  assert_int_equal(total, 10000);
  assert_true(heartbeats >= 1);
  assert_string_equal(kv.keys[kv.n - 1], "_rexec/sess-1/n1/exit");
  assert_memory_equal(kv.vals[kv.n - 1].data, "0", 1);
  teardown(&loop, x, &kv);

  /* Args run without a shell; a Script is spilled to a file and run by /bin/sh. */
  struct fake_kv kv2 = {.refuse_after = -1,
                        .spec = "{\"Args\":[\"printf\",\"%s|\",\"a b\",\"$HOME\"],\"Wait\":1000000000}"};
  x = setup(&loop, &kv2);
  agent_exec_handle(x, (const uint8_t *)EVENT, strlen(EVENT));
  run_until_idle(&loop, x);
  assert_int_equal(kv2.n, 3);
  assert_int_equal(kv2.vals[1].len, 10);
  assert_memory_equal(kv2.vals[1].data, "a b|$HOME|", 10);
  teardown(&loop, x, &kv2);

  const char *script = "echo from script; exit 4\n";
  char b64[128];
  b64_encode(script, strlen(script), b64);
  char spec[256];
  snprintf(spec, sizeof spec, "{\"Script\":\"%s\",\"Wait\":1000000000}", b64);
  struct fake_kv kv3 = {.refuse_after = -1, .spec = spec};
  x = setup(&loop, &kv3);
  agent_exec_handle(x, (const uint8_t *)EVENT, strlen(EVENT));
  run_until_idle(&loop, x);
  assert_int_equal(kv3.n, 3);
  assert_memory_equal(kv3.vals[1].data, "from script\n", 12);
  assert_memory_equal(kv3.vals[2].data, "4", 1);
  teardown(&loop, x, &kv3);
}

static void test_refused_write_records_255(void **state)
{
  (void)state;
  uv_loop_t loop;
  /* The ack lands, the first output is refused (session gone): exit 255, nothing else. */
  struct fake_kv kv = {.refuse_after = 1, .spec = "{\"Command\":\"echo a\",\"Wait\":1000000000}"};
  struct agent_exec *x = setup(&loop, &kv);
  agent_exec_handle(x, (const uint8_t *)EVENT, strlen(EVENT));
  run_until_idle(&loop, x);
  assert_int_equal(kv.n, 3);
  assert_string_equal(kv.keys[2], "_rexec/sess-1/n1/exit");
  assert_memory_equal(kv.vals[2].data, "255", 3);
  teardown(&loop, x, &kv);
}

static void test_write_refused_at_once(void **state)
{
  (void)state;
  uv_loop_t loop;
  /* Leadership lost mid-job: the output and the exit-code writes are refused synchronously,
   * the job still ends (freed once the process is reaped) without touching freed memory. */
  struct fake_kv kv = {.refuse_after = -1, .fail_sync_after = 1,
                       .spec = "{\"Command\":\"echo a; echo b\",\"Wait\":1000000000}"};
  struct agent_exec *x = setup(&loop, &kv);
  agent_exec_handle(x, (const uint8_t *)EVENT, strlen(EVENT));
  run_until_idle(&loop, x);
  assert_int_equal(kv.n, 1);
  assert_string_equal(kv.keys[0], "_rexec/sess-1/n1/ack");
  teardown(&loop, x, &kv);
  /* Refused from the ack on: nothing runs. */
  struct fake_kv kv2 = {.refuse_after = -1, .fail_all = true,
                        .spec = "{\"Command\":\"echo a\",\"Wait\":1000000000}"};
  x = setup(&loop, &kv2);
  agent_exec_handle(x, (const uint8_t *)EVENT, strlen(EVENT));
  run_until_idle(&loop, x);
  assert_int_equal(kv2.n, 0);
  teardown(&loop, x, &kv2);
}

static void test_nothing_to_do(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake_kv kv = {.refuse_after = -1, .spec = NULL}; /* spec missing */
  struct agent_exec *x = setup(&loop, &kv);
  agent_exec_handle(x, (const uint8_t *)EVENT, strlen(EVENT));
  agent_exec_handle(x, (const uint8_t *)"not json", 8);
  agent_exec_handle(x, (const uint8_t *)"{\"Prefix\":\"_rexec\"}", 19);
  run_until_idle(&loop, x);
  assert_int_equal(kv.n, 0);
  teardown(&loop, x, &kv);
  /* A spec that is not JSON, or has nothing to run: no ack either. */
  struct fake_kv kv2 = {.refuse_after = -1, .spec = "{\"Wait\":1}"};
  x = setup(&loop, &kv2);
  agent_exec_handle(x, (const uint8_t *)EVENT, strlen(EVENT));
  run_until_idle(&loop, x);
  assert_int_equal(kv2.n, 0);
  teardown(&loop, x, &kv2);
}

static void test_close_kills_running_job(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake_kv kv = {.refuse_after = -1, .spec = "{\"Command\":\"sleep 30\",\"Wait\":1000000000}"};
  struct agent_exec *x = setup(&loop, &kv);
  agent_exec_handle(x, (const uint8_t *)EVENT, strlen(EVENT));
  for (int i = 0; i < 200 && kv.n < 1; i++) uv_run(&loop, UV_RUN_ONCE);
  for (int i = 0; i < 5; i++) uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(agent_exec_jobs(x), 1);
  uint64_t t0 = uv_hrtime();
  teardown(&loop, x, &kv); /* must not wait 30 s, and must leave no handle open */
  assert_true(uv_hrtime() - t0 < 5000000000ULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_runs_and_reports),
      cmocka_unit_test(test_chunks_heartbeats_args_script),
      cmocka_unit_test(test_refused_write_records_255),
      cmocka_unit_test(test_write_refused_at_once),
      cmocka_unit_test(test_nothing_to_do),
      cmocka_unit_test(test_close_kills_running_job),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
