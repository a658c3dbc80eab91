/* test_operator_raft.c -- the Raft operator endpoints (src/api/operator.c) for real: three
 * Raft servers in this process (libraft's uv backend on 127.0.0.1, temporary directories),
 * the leader's HTTP API with GET /v1/operator/raft/configuration and DELETE
 * /v1/operator/raft/peer, driven by `concord operator raft list-peers` and `remove-peer`
 * (the CLI's blocking client on this thread, the loop on a second one). Ends with
 * uv_loop_close() == 0. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "api/internal.h"
#include "cli/cli.h"
#include "cli/internal.h"
#include "config/config.h"
#include "consensus/consensus.h"
#include "http/server.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "state/store.h"

/* ---- Running a command with captured streams ---- */

struct run {
  int code;
  char *out, *err;
  size_t outlen, errlen;
};

static const char *env_table[16];

static const char *fake_getenv(void *arg, const char *name)
{
  (void)arg;
  size_t n = strlen(name);
  for (int i = 0; env_table[i]; i++)
    if (strncmp(env_table[i], name, n) == 0 && env_table[i][n] == '=') return env_table[i] + n + 1;
  return NULL;
}

/* Runs `concord args...` (NULL-terminated) with the given stdin text and environment
 * entries ("NAME=value", NULL-terminated list in env_table). */
static struct run run_cli(const char *stdin_text, const char *const *args)
{
  struct run r;
  memset(&r, 0, sizeof(r));
  char *argv[32];
  int argc = 0;
  for (; args[argc]; argc++) argv[argc] = (char *)args[argc];
  argv[argc] = NULL;
  FILE *out = open_memstream(&r.out, &r.outlen);
  FILE *err = open_memstream(&r.err, &r.errlen);
  const char *in_text = stdin_text ? stdin_text : "";
  FILE *in = fmemopen((void *)in_text, strlen(in_text) ? strlen(in_text) : 1, "r");
  if (!stdin_text || !stdin_text[0]) fgetc(in); /* leave it at EOF */
  struct cli__ctx ctx = {
      .out = out,
      .err = err,
      .in = in,
      .getenv = fake_getenv,
      .connect_timeout_ms = 5000,
      .io_timeout_ms = 5000,
  };
  r.code = cli__dispatch(&ctx, argc, argv);
  fclose(out);
  fclose(err);
  fclose(in);
  return r;
}

static void run_free(struct run *r)
{
  free(r->out);
  free(r->err);
}

#define RUN(stdin_text, ...) run_cli(stdin_text, (const char *const[]){__VA_ARGS__, NULL})

static char addr_env[64];

static void set_addr(int port)
{
  snprintf(addr_env, sizeof(addr_env), "CONSUL_HTTP_ADDR=127.0.0.1:%d", port);
  env_table[0] = addr_env;
  env_table[1] = NULL;
}

static bool starts(const char *s, const char *prefix)
{
  return strncmp(s, prefix, strlen(prefix)) == 0;
}


/* ---- The real endpoints: three Raft servers in this process ---- */

struct server {
  char dir[300];
  char address[64];
  char node_id[37];
  struct state_store *store;
  struct consensus *c;
  bool stopped;
};

static int free_tcp_port(void)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  socklen_t sl = sizeof(sa);
  getsockname(fd, (struct sockaddr *)&sa, &sl);
  close(fd);
  return ntohs(sa.sin_port);
}

static void tick_cb(uv_timer_t *t) { (void)t; }
static void closed_cb(uv_handle_t *h) { (void)h; }

/* Runs the loop (on this thread) until pred(arg) holds or timeout_ms pass. */
static bool run_until(uv_loop_t *loop, bool (*pred)(void *), void *arg, unsigned timeout_ms)
{
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, tick_cb, 5, 5);
  uint64_t deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
  bool ok;
  while (!(ok = pred(arg)) && uv_hrtime() < deadline) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, closed_cb);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

static void server_start(uv_loop_t *loop, struct server *sv, const char *base, int i)
{
  snprintf(sv->dir, sizeof(sv->dir), "%s/s%d", base, i);
  snprintf(sv->address, sizeof(sv->address), "127.0.0.1:%d", free_tcp_port());
  snprintf(sv->node_id, sizeof(sv->node_id), "%08x-1111-4222-8333-444455556666", 0xa0 + i);
  struct consensus_config cfg;
  consensus_config_defaults(&cfg);
  cfg.data_dir = sv->dir;
  cfg.node_id = sv->node_id;
  cfg.address = sv->address;
  cfg.bootstrap_expect = i == 0 ? 1 : 0;
  char err[256] = "";
  sv->store = state_store_new();
  sv->stopped = false;
  int rv = consensus_start(loop, &cfg, sv->store, &sv->c, err, sizeof(err));
  if (rv != 0) fail_msg("consensus_start: %s (%s)", cc_strerror(rv), err);
}

static void server_stopped(void *arg) { ((struct server *)arg)->stopped = true; }
static bool is_stopped(void *arg) { return ((struct server *)arg)->stopped; }
static bool is_leader(void *arg) { return consensus_is_leader(((struct server *)arg)->c); }

struct change {
  int status, calls;
};
static void change_cb(void *arg, int status)
{
  struct change *ch = arg;
  ch->status = status;
  ch->calls++;
}
static bool change_done(void *arg) { return ((struct change *)arg)->calls > 0; }

static bool http_closed;
static void http_closed_cb(void *arg)
{
  (void)arg;
  http_closed = true;
}
static bool is_http_closed(void *arg)
{
  (void)arg;
  return http_closed;
}

/* The loop thread: serves until the main thread signals the async handle. */
static void stop_async_cb(uv_async_t *a)
{
  uv_close((uv_handle_t *)a, closed_cb);
  uv_stop(a->loop);
}
static void *loop_main(void *arg)
{
  uv_run(arg, UV_RUN_DEFAULT);
  return NULL;
}

static void test_endpoints_three_servers(void **state)
{
  (void)state;
  char base[64];
  snprintf(base, sizeof(base), "/tmp/concord-cli-operator-XXXXXX");
  assert_non_null(mkdtemp(base));
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);

  struct server sv[3];
  for (int i = 0; i < 3; i++) server_start(&loop, &sv[i], base, i);
  assert_true(run_until(&loop, is_leader, &sv[0], 5000));
  for (int i = 1; i < 3; i++) {
    struct change ch = {-100, 0};
    assert_int_equal(consensus_add_voter(sv[0].c, consensus_id(sv[i].c), sv[i].address,
                                         change_cb, &ch), 0);
    assert_true(run_until(&loop, change_done, &ch, 8000));
    assert_int_equal(ch.status, 0);
  }

  /* The leader's HTTP API with the operator endpoints (no gossip: Node names are known for
   * the answering server only). */
  struct config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.datacenter = (char *)"dc1";
  cfg.node_name = (char *)"n0";
  struct http_server_config hc;
  http_server_config_defaults(&hc);
  struct api_ctx ctx;
  memset(&ctx, 0, sizeof(ctx));
  ctx.loop = &loop;
  ctx.cfg = &cfg;
  ctx.store = sv[0].store;
  ctx.consensus = sv[0].c;
  ctx.node_id = sv[0].node_id;
  ctx.http = http_server_new(&loop, &hc);
  char err[256];
  assert_int_equal(http_server_listen(ctx.http, "127.0.0.1", 0, err, sizeof(err)), 0);
  api_operator_register(&ctx);
  set_addr(http_server_port(ctx.http));

  uv_async_t stop;
  assert_int_equal(uv_async_init(&loop, &stop, stop_async_cb), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, loop_main, &loop), 0);

  /* Leader first, then the two followers by raft ID (hex) with no member to name them. */
  struct run r = RUN(NULL, "operator", "raft", "list-peers");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.err, "");
  char line[512];
  snprintf(line, sizeof(line), "n0         %s  %s  leader    true   3             ",
           sv[0].node_id, sv[0].address);
  assert_non_null(strstr(r.out, line));
  for (int i = 1; i < 3; i++) {
    snprintf(line, sizeof(line), "\n(unknown)  %016" PRIx64 "%*s  %s  follower  true   unknown"
             "       0             ", consensus_id(sv[i].c), 20, "", sv[i].address);
    assert_non_null(strstr(r.out, line));
  }
  assert_true(starts(r.out, "Node       ID"));
  run_free(&r);

  r = RUN(NULL, "operator", "raft", "remove-peer", "-id=0123");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error removing peer: Unexpected response code: 500 (id \"0123\" "
                             "was not found in the Raft configuration)\n");
  run_free(&r);

  /* By the ID list-peers shows, then by address. */
  char id[64];
  snprintf(id, sizeof(id), "-id=%016" PRIx64, consensus_id(sv[1].c));
  r = RUN(NULL, "operator", "raft", "remove-peer", id);
  assert_int_equal(r.code, 0);
  snprintf(line, sizeof(line), "Removed peer with id \"%s\"\n", id + 4);
  assert_string_equal(r.out, line);
  run_free(&r);

  char addr[96];
  snprintf(addr, sizeof(addr), "-address=%s", sv[2].address);
  r = RUN(NULL, "operator", "raft", "remove-peer", addr);
  assert_int_equal(r.code, 0);
  snprintf(line, sizeof(line), "Removed peer with address \"%s\"\n", sv[2].address);
  assert_string_equal(r.out, line);
  run_free(&r);

  r = RUN(NULL, "operator", "raft", "list-peers", "-stale");
  assert_int_equal(r.code, 0);
  assert_null(strstr(r.out, "(unknown)"));
  assert_int_equal(strchr(strchr(r.out, '\n') + 1, '\n') - r.out + 1, (long)strlen(r.out));
  run_free(&r);

  /* A node ID (UUID) whose raft ID is no longer in the configuration. */
  snprintf(id, sizeof(id), "-id=%s", sv[1].node_id);
  r = RUN(NULL, "operator", "raft", "remove-peer", id);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "was not found in the Raft configuration"));
  run_free(&r);

  uv_async_send(&stop);
  pthread_join(th, NULL);

  http_closed = false;
  http_server_close(ctx.http, http_closed_cb, NULL);
  assert_true(run_until(&loop, is_http_closed, NULL, 5000));
  for (int i = 0; i < 3; i++) {
    consensus_stop(sv[i].c, server_stopped, &sv[i]);
    assert_true(run_until(&loop, is_stopped, &sv[i], 5000));
    state_store_free(sv[i].store);
  }
  uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(uv_loop_close(&loop), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
  assert_int_equal(system(cmd), 0);
}

int main(void)
{
  log_set_level(LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_endpoints_three_servers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
