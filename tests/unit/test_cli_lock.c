/* test_cli_lock.c -- unit tests of `concord lock`'s pure parts and KV steps: the semaphore's
 * `.lock` entry (decoding whatever Go would accept, encoding what Go writes, pruning dead
 * holders), each blocking step (acquire, release, cleanup of a lock and of a semaphore)
 * against a scripted HTTP server checking the exact requests, and the usage errors. The
 * process side (worker, child, signals) is driven by tests/integration/test_lock.py. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cli/lock.h"

#include "../lib/cli_harness.h"

/* ---- The semaphore entry ---- */

static void test_sem_decode(void **state)
{
  (void)state;
  char err[CLI__ERRLEN];
  struct cli__sem s;

  assert_int_equal(cli__sem_decode(NULL, 0, 3, &s, err, sizeof(err)), 0);
  assert_int_equal(s.limit, 3);
  assert_int_equal(s.n, 0);
  cli__sem_free(&s);

  const char *v = "{\"Limit\":2,\"Holders\":{\"b\":true,\"a\":true},\"Other\":[1]}";
  assert_int_equal(cli__sem_decode(v, strlen(v), 9, &s, err, sizeof(err)), 0);
  assert_int_equal(s.limit, 2);
  assert_int_equal(s.n, 2);
  assert_string_equal(s.h[0].session, "a"); /* kept sorted */
  assert_string_equal(s.h[1].session, "b");
  cli__sem_free(&s);

  /* Go matches field names case-insensitively; a false holder still counts. */
  v = "{\"limit\":4,\"HOLDERS\":{\"x\":false,\"y\":null}}";
  assert_int_equal(cli__sem_decode(v, strlen(v), 9, &s, err, sizeof(err)), 0);
  assert_int_equal(s.limit, 4);
  assert_int_equal(s.n, 2);
  assert_false(s.h[0].value);
  assert_true(cli__sem_has(&s, "x"));
  cli__sem_free(&s);

  /* null is the zero value: Limit 0 (a conflict for any -n), no holders. */
  assert_int_equal(cli__sem_decode("null", 4, 9, &s, err, sizeof(err)), 0);
  assert_int_equal(s.limit, 0);
  cli__sem_free(&s);

  static const char *const bad[] = {
      "[]", "{\"Limit\":\"3\"}", "{\"Limit\":1.5}", "{\"Holders\":[]}",
      "{\"Holders\":{\"a\":1}}", "{\"Limit\":", "garbage", "{\"Limit\":1e400}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err[0] = '\0';
    assert_int_equal(cli__sem_decode(bad[i], strlen(bad[i]), 1, &s, err, sizeof(err)), -1);
    assert_true(strncmp(err, "lock decoding failed: ", 22) == 0);
    cli__sem_free(&s);
  }
  v = "[]";
  cli__sem_decode(v, 2, 1, &s, err, sizeof(err));
  assert_string_equal(err, "lock decoding failed: json: cannot unmarshal array into Go value "
                           "of type api.semaphoreLock");
  cli__sem_free(&s);
}

static void test_sem_edit_encode_prune(void **state)
{
  (void)state;
  char err[CLI__ERRLEN];
  struct cli__sem s;
  assert_int_equal(cli__sem_decode("", 0, 3, &s, err, sizeof(err)), 0);
  struct buf b = BUF_INIT;
  cli__sem_encode(&s, &b);
  assert_string_equal(b.data, "{\"Limit\":3,\"Holders\":{}}");
  buf_reset(&b);

  assert_true(cli__sem_add(&s, "s2"));
  assert_true(cli__sem_add(&s, "s1"));
  assert_false(cli__sem_add(&s, "s1"));
  assert_true(cli__sem_add(&s, "<&>"));
  cli__sem_encode(&s, &b);
  assert_string_equal(b.data, "{\"Limit\":3,\"Holders\":{\"\\u003c\\u0026\\u003e\":true,"
                              "\"s1\":true,\"s2\":true}}");
  buf_reset(&b);
  assert_true(cli__sem_remove(&s, "<&>"));
  assert_false(cli__sem_remove(&s, "nope"));

  /* Only holders whose session still holds a key under the prefix survive. */
  struct cli__kvpair pairs[3];
  memset(pairs, 0, sizeof(pairs));
  pairs[0].key = "p/.lock";
  pairs[0].session = "";
  pairs[1].key = "p/s2";
  pairs[1].session = "s2";
  pairs[2].key = "p/other";
  pairs[2].session = "s9";
  cli__sem_prune(&s, pairs, 3);
  assert_int_equal(s.n, 1);
  assert_string_equal(s.h[0].session, "s2");
  cli__sem_encode(&s, &b);
  assert_string_equal(b.data, "{\"Limit\":3,\"Holders\":{\"s2\":true}}");
  buf_free(&b);
  cli__sem_free(&s);
}

/* ---- KV steps against a scripted agent ---- */

static FILE *null_out;

static void lock_init(struct cli__lock *l, struct cli__client *c, struct cli__ctx *ctx,
                      int port, const char *prefix, int64_t limit)
{
  memset(ctx, 0, sizeof(*ctx));
  null_out = null_out ? null_out : fopen("/dev/null", "w");
  ctx->out = ctx->err = null_out;
  ctx->getenv = fake_getenv;
  ctx->connect_timeout_ms = 5000;
  ctx->io_timeout_ms = 5000;
  set_addr(port);
  struct cli__http_opts o;
  memset(&o, 0, sizeof(o));
  char err[CLI__ERRLEN];
  assert_int_equal(cli__client_init(c, ctx, &o, err, sizeof(err)), 0);
  memset(l, 0, sizeof(*l));
  l->ctx = ctx;
  l->client = c;
  l->prefix = prefix;
  l->key = cli__path_join(prefix, CLI__LOCK_KEY);
  l->limit = limit;
  l->session = xstrdup("sid-1");
  l->monitor_retries = 3;
  l->monitor_retry_ns = 1000000;
  l->retry_ns = 1000000;
}

static void lock_done(struct cli__lock *l, struct cli__client *c)
{
  cli__lock_free(l);
  cli__client_free(c);
}

/* The request line of exchange i. */
static void assert_request(struct fake *f, int i, const char *line)
{
  assert_non_null(f->requests[i]);
  size_t n = strlen(line);
  if (strncmp(f->requests[i], line, n) != 0 || strncmp(f->requests[i] + n, " HTTP/1.1", 9) != 0)
    fail_msg("request %d: want %s, got %.200s", i, line, f->requests[i]);
}

static const char *body_of(struct fake *f, int i)
{
  char *b = strstr(f->requests[i], "\r\n\r\n");
  return b ? b + 4 : "";
}

#define HELD_BY(sess)                                                                          \
  "[{\"Key\":\"svc/leader/.lock\",\"Flags\":3304740253564472344,\"Value\":null,"              \
  "\"Session\":\"" sess "\",\"LockIndex\":1,\"CreateIndex\":5,\"ModifyIndex\":7}]"

static void test_lock_acquire_release_cleanup(void **state)
{
  (void)state;
  char err[CLI__ERRLEN];
  struct fake f;
  struct cli__lock l;
  struct cli__client c;
  struct cli__ctx ctx;

  /* Free key: read (blocking, 15 s), acquire with Consul's flag. */
  fake_start(&f, 2, reply(404, ""), reply(200, "true"));
  lock_init(&l, &c, &ctx, f.port, "svc/leader", 1);
  assert_int_equal(cli__lock_acquire(&l, err, sizeof(err)), CLI__LOCK_ACQUIRED);
  assert_request(&f, 0, "GET /v1/kv/svc/leader/.lock?wait=15000ms");
  assert_request(&f, 1, "PUT /v1/kv/svc/leader/.lock?acquire=sid-1&flags=3304740253564472344");
  fake_stop(&f);

  /* Taken: wait on its index; then free, acquire refused during a lock-delay (key free
   * again), so wait and retry. */
  fake_start(&f, 6, reply(200, HELD_BY("other")), reply(404, ""), reply(200, "false"),
             reply(404, ""), reply(404, ""), reply(200, "true"));
  lock_done(&l, &c);
  lock_init(&l, &c, &ctx, f.port, "svc/leader", 1);
  assert_int_equal(cli__lock_acquire(&l, err, sizeof(err)), CLI__LOCK_ACQUIRED);
  assert_request(&f, 3, "GET /v1/kv/svc/leader/.lock?wait=15000ms");
  assert_request(&f, 5, "PUT /v1/kv/svc/leader/.lock?acquire=sid-1&flags=3304740253564472344");
  fake_stop(&f);

  /* A key that is not a lock. */
  fake_start(&f, 1, reply(200, "[{\"Key\":\"svc/leader/.lock\",\"Flags\":0,\"Value\":null}]"));
  lock_done(&l, &c);
  lock_init(&l, &c, &ctx, f.port, "svc/leader", 1);
  assert_int_equal(cli__lock_acquire(&l, err, sizeof(err)), CLI__LOCK_FAILED);
  assert_string_equal(err, "Existing key does not match lock use");
  fake_stop(&f);

  /* One-shot: the time is spent after the first wait. */
  fake_start(&f, 1, reply(200, HELD_BY("other")));
  lock_done(&l, &c);
  lock_init(&l, &c, &ctx, f.port, "svc/leader", 1);
  l.oneshot = true;
  l.wait_ns = 1;
  assert_int_equal(cli__lock_acquire(&l, err, sizeof(err)), CLI__LOCK_TIMEOUT);
  assert_request(&f, 0, "GET /v1/kv/svc/leader/.lock?wait=1ms");
  fake_stop(&f);

  /* A 500 from the read is reported with the api package's words. */
  fake_start(&f, 1, reply(500, "boom"));
  lock_done(&l, &c);
  lock_init(&l, &c, &ctx, f.port, "svc/leader", 1);
  assert_int_equal(cli__lock_acquire(&l, err, sizeof(err)), CLI__LOCK_FAILED);
  assert_string_equal(err, "failed to read lock: Unexpected response code: 500 (boom)");
  fake_stop(&f);

  /* Monitor: held, then someone else's. Consistent reads, blocking on the index. */
  fake_start(&f, 2, reply(200, HELD_BY("sid-1")), reply(200, HELD_BY("other")));
  lock_done(&l, &c);
  lock_init(&l, &c, &ctx, f.port, "svc/leader", 1);
  cli__lock_monitor(&l);
  assert_request(&f, 0, "GET /v1/kv/svc/leader/.lock?consistent=");
  fake_stop(&f);
  assert_int_equal(f.served, 2);

  /* Monitor retries 500s (up to -monitor-retry in a row), then gives up. */
  fake_start(&f, 4, reply(500, "x"), reply(500, "x"), reply(500, "x"), reply(500, "x"));
  lock_done(&l, &c);
  lock_init(&l, &c, &ctx, f.port, "svc/leader", 1);
  cli__lock_monitor(&l);
  fake_stop(&f);
  assert_int_equal(f.served, 4);

  /* Release, then cleanup: in use by another -> 1; free -> DELETE with cas. */
  fake_start(&f, 4, reply(200, "true"), reply(200, HELD_BY("other")),
             reply(200, HELD_BY("")), reply(200, "true"));
  lock_done(&l, &c);
  lock_init(&l, &c, &ctx, f.port, "svc/leader", 1);
  assert_int_equal(cli__lock_release(&l, err, sizeof(err)), 0);
  assert_int_equal(cli__lock_cleanup(&l, err, sizeof(err)), 1);
  assert_int_equal(cli__lock_cleanup(&l, err, sizeof(err)), 0);
  assert_request(&f, 0, "PUT /v1/kv/svc/leader/.lock?flags=3304740253564472344&release=sid-1");
  assert_request(&f, 1, "GET /v1/kv/svc/leader/.lock");
  assert_request(&f, 3, "DELETE /v1/kv/svc/leader/.lock?cas=7");
  fake_stop(&f);
  lock_done(&l, &c);
}

#define SEM_PAIRS(holders)                                                                     \
  "[{\"Key\":\"jobs/.lock\",\"Flags\":16210313421097356768,\"Value\":\"" holders "\","        \
  "\"CreateIndex\":3,\"ModifyIndex\":9},"                                                     \
  "{\"Key\":\"jobs/sid-1\",\"Flags\":16210313421097356768,\"Value\":null,\"Session\":\"sid-1\"," \
  "\"CreateIndex\":4,\"ModifyIndex\":4},"                                                     \
  "{\"Key\":\"jobs/s2\",\"Flags\":16210313421097356768,\"Value\":null,\"Session\":\"s2\","    \
  "\"CreateIndex\":4,\"ModifyIndex\":4}]"
/* base64 of {"Limit":2,"Holders":{"dead":true,"s2":true}} */
#define B64_DEAD_S2 "eyJMaW1pdCI6MiwiSG9sZGVycyI6eyJkZWFkIjp0cnVlLCJzMiI6dHJ1ZX19"
/* base64 of {"Limit":2,"Holders":{"s2":true,"sid-1":true}} */
#define B64_S2_ME "eyJMaW1pdCI6MiwiSG9sZGVycyI6eyJzMiI6dHJ1ZSwic2lkLTEiOnRydWV9fQ=="
/* base64 of {"Limit":3,"Holders":{}} */
#define B64_LIMIT3 "eyJMaW1pdCI6MywiSG9sZGVycyI6e319"

static void test_semaphore_steps(void **state)
{
  (void)state;
  char err[CLI__ERRLEN];
  struct fake f;
  struct cli__lock l;
  struct cli__client c;
  struct cli__ctx ctx;

  /* Contender key, read the prefix, prune the dead holder, CAS ourselves in. */
  fake_start(&f, 3, reply(200, "true"), reply(200, SEM_PAIRS(B64_DEAD_S2)), reply(200, "true"));
  lock_init(&l, &c, &ctx, f.port, "jobs", 2);
  assert_int_equal(cli__lock_acquire(&l, err, sizeof(err)), CLI__LOCK_ACQUIRED);
  assert_request(&f, 0, "PUT /v1/kv/jobs/sid-1?acquire=sid-1&flags=16210313421097356768");
  assert_request(&f, 1, "GET /v1/kv/jobs?recurse=&wait=15000ms");
  assert_request(&f, 2, "PUT /v1/kv/jobs/.lock?cas=9&flags=16210313421097356768");
  assert_string_equal(body_of(&f, 2), "{\"Limit\":2,\"Holders\":{\"s2\":true,\"sid-1\":true}}");
  fake_stop(&f);

  /* The contender key refused: Go's "<nil>" error. */
  fake_start(&f, 1, reply(200, "false"));
  lock_done(&l, &c);
  lock_init(&l, &c, &ctx, f.port, "jobs", 2);
  assert_int_equal(cli__lock_acquire(&l, err, sizeof(err)), CLI__LOCK_FAILED);
  assert_string_equal(err, "failed to make contender entry: <nil>");
  fake_stop(&f);

  /* A different -n on the same prefix. */
  fake_start(&f, 2, reply(200, "true"), reply(200, SEM_PAIRS(B64_LIMIT3)));
  lock_done(&l, &c);
  lock_init(&l, &c, &ctx, f.port, "jobs", 2);
  assert_int_equal(cli__lock_acquire(&l, err, sizeof(err)), CLI__LOCK_FAILED);
  assert_string_equal(err, "semaphore limit conflict (lock: 3, local: 2)");
  fake_stop(&f);

  /* Monitor: held while we are a holder; lost once the list no longer names us. */
  fake_start(&f, 3, reply(200, SEM_PAIRS(B64_S2_ME)), reply(200, SEM_PAIRS(B64_DEAD_S2)),
             reply(200, "x"));
  lock_done(&l, &c);
  lock_init(&l, &c, &ctx, f.port, "jobs", 2);
  cli__lock_monitor(&l);
  assert_request(&f, 0, "GET /v1/kv/jobs?consistent=&recurse=");
  fake_stop(&f);
  assert_int_equal(f.served, 2); /* the third answer is never asked for */

  /* Release: off the list with a CAS, then the contender key goes. */
  fake_start(&f, 3, reply(200, SEM_PAIRS(B64_S2_ME)), reply(200, "true"), reply(200, "true"));
  lock_done(&l, &c);
  lock_init(&l, &c, &ctx, f.port, "jobs", 2);
  assert_int_equal(cli__lock_release(&l, err, sizeof(err)), 0);
  assert_request(&f, 0, "GET /v1/kv/jobs/.lock");
  assert_request(&f, 1, "PUT /v1/kv/jobs/.lock?cas=9&flags=16210313421097356768");
  assert_string_equal(body_of(&f, 1), "{\"Limit\":2,\"Holders\":{\"s2\":true}}");
  assert_request(&f, 2, "DELETE /v1/kv/jobs/sid-1");
  fake_stop(&f);

  /* Cleanup: a live holder remains -> in use; none -> DELETE ?cas. */
  fake_start(&f, 3, reply(200, SEM_PAIRS(B64_DEAD_S2)), reply(200, SEM_PAIRS(B64_LIMIT3)),
             reply(200, "true"));
  lock_done(&l, &c);
  lock_init(&l, &c, &ctx, f.port, "jobs", 3);
  assert_int_equal(cli__lock_cleanup(&l, err, sizeof(err)), 1);
  assert_int_equal(cli__lock_cleanup(&l, err, sizeof(err)), 0);
  assert_request(&f, 2, "DELETE /v1/kv/jobs/.lock?cas=9");
  fake_stop(&f);
  lock_done(&l, &c);
}

/* ---- Usage errors (before any request) ---- */

static void test_usage_errors(void **state)
{
  (void)state;
  set_addr(dead_port());
  struct {
    const char *const *args;
    const char *err;
  } cases[] = {
      {(const char *const[]){"lock", NULL}, "Key prefix and child command must be specified\n"},
      {(const char *const[]){"lock", "p", NULL},
       "Key prefix and child command must be specified\n"},
      {(const char *const[]){"lock", "-n", "0", "p", "c", NULL},
       "Lock holder limit must be positive\n"},
      {(const char *const[]){"lock", "-timeout", "-5s", "p", "c", NULL},
       "Timeout must be positive\n"},
      {(const char *const[]){"lock", "-monitor-retry", "-1", "p", "c", NULL},
       "Number for 'monitor-retry' must be >= 0\n"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct run r = run_cli(NULL, cases[i].args);
    assert_int_equal(r.code, 1);
    assert_string_equal(r.err, cases[i].err);
    assert_string_equal(r.out, "");
    run_free(&r);
  }
  struct run r = RUN(NULL, "lock", "-try", "later", "p", "c");
  assert_int_equal(r.code, 1);
  assert_true(strncmp(r.err, "invalid value \"later\" for flag -try: parse error\nUsage:\n", 56) ==
              0);
  run_free(&r);
  /* The agent is checked before anything else happens. */
  r = RUN(NULL, "lock", "p", "c");
  assert_int_equal(r.code, 1);
  assert_true(strncmp(r.err, "Error querying Consul agent: Get \"http://127.0.0.1:", 51) == 0);
  run_free(&r);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sem_decode),
      cmocka_unit_test(test_sem_edit_encode_prune),
      cmocka_unit_test(test_lock_acquire_release_cleanup),
      cmocka_unit_test(test_semaphore_steps),
      cmocka_unit_test(test_usage_errors),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (null_out) fclose(null_out);
  return rc;
}
