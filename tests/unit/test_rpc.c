/* test_rpc.c -- the server port: RPC and Raft on one listener, two or more rpc instances on
 * 127.0.0.1 in one loop. Codec round trips and rejections; echo; 1,000 multiplexed requests;
 * remote errors and unknown methods; timeouts and cancels (the server sees the cancel);
 * a server stopped mid-request (CC_EIO) and the reconnect once it is back; oversize frames;
 * garbage first bytes; idle close; and a 3-server Raft cluster (consensus/) running over the
 * rpc ports, electing, replicating and failing over while RPC keeps working on the same
 * ports. Every test ends with uv_loop_close() == 0, under ASan. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <raft.h>
#include <raft/uv.h>

#include "consensus/consensus.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/log.h"
#include "rpc/codec.h"
#include "rpc/internal.h"
#include "rpc/rpc.h"
#include "state/cmd.h"
#include "state/store.h"

/* ---- helpers ---- */

/* A string literal and its length (without the terminating NUL; NULs inside count). */
#define S(lit) lit, sizeof lit - 1

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

static void noop_timer_cb(uv_timer_t *t) { (void)t; }
static void noop_close_cb(uv_handle_t *h) { (void)h; }

static bool run_until(uv_loop_t *loop, bool (*pred)(void *), void *arg, unsigned timeout_ms)
{
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, noop_timer_cb, 5, 5);
  uint64_t deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
  bool ok;
  while (!(ok = pred(arg)) && uv_hrtime() < deadline) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, noop_close_cb);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

static bool never(void *arg) { (void)arg; return false; }
static void run_for(uv_loop_t *loop, unsigned ms) { run_until(loop, never, NULL, ms); }

static int setup(void **state)
{
  uv_loop_t *loop = xmalloc(sizeof *loop);
  assert_int_equal(uv_loop_init(loop), 0);
  *state = loop;
  return 0;
}

static int teardown(void **state)
{
  uv_loop_t *loop = *state;
  uv_run(loop, UV_RUN_NOWAIT);
  int rv = uv_loop_close(loop);
  free(loop);
  assert_int_equal(rv, 0);
  return 0;
}

struct inst {
  struct rpc *r;
  int port;
  char addr[64];
  bool stopped;
};

static void inst_start_cfg(uv_loop_t *loop, struct inst *in, int port, size_t max_frame,
                           unsigned idle_ms)
{
  struct rpc_config cfg;
  rpc_config_defaults(&cfg);
  cfg.bind_ip = "127.0.0.1";
  cfg.port = port;
  if (max_frame) cfg.max_frame = max_frame;
  if (idle_ms) cfg.idle_timeout_ms = idle_ms;
  char err[256] = "";
  in->port = port;
  snprintf(in->addr, sizeof in->addr, "127.0.0.1:%d", port);
  in->stopped = false;
  int rv = rpc_start(loop, &cfg, &in->r, err, sizeof err);
  if (rv != 0) fail_msg("rpc_start: %s (%s)", cc_strerror(rv), err);
}

static void inst_start(uv_loop_t *loop, struct inst *in, int port)
{
  inst_start_cfg(loop, in, port, 0, 0);
}

static void stopped_cb(void *arg) { ((struct inst *)arg)->stopped = true; }
static bool inst_stopped(void *arg) { return ((struct inst *)arg)->stopped; }

static void inst_stop(uv_loop_t *loop, struct inst *in)
{
  rpc_stop(in->r, stopped_cb, in);
  assert_true(run_until(loop, inst_stopped, in, 5000));
  in->r = NULL;
}

/* What a request's callback saw. */
struct res {
  int calls;
  int status;
  char error[128];
  bool has_error;
  struct buf body;
};

static void done_cb(void *arg, int status, const char *error, const uint8_t *body, size_t len)
{
  struct res *x = arg;
  x->calls++;
  x->status = status;
  x->has_error = error != NULL;
  snprintf(x->error, sizeof x->error, "%s", error ? error : "");
  buf_reset(&x->body);
  if (len) buf_append(&x->body, body, len);
}

static bool res_done(void *arg) { return ((struct res *)arg)->calls > 0; }

/* Server handlers. */
static void echo_handler(struct rpc_call *call, const uint8_t *body, size_t len, void *arg)
{
  int *count = arg;
  if (count) (*count)++;
  rpc_call_reply(call, NULL, body, len);
}

static void fail_handler(struct rpc_call *call, const uint8_t *body, size_t len, void *arg)
{
  rpc_call_reply(call, "boom: bad thing", "x", 1);
}

static void big_handler(struct rpc_call *call, const uint8_t *body, size_t len, void *arg)
{
  static uint8_t big[2000];
  rpc_call_reply(call, NULL, big, sizeof big);
}

static void peer_handler(struct rpc_call *call, const uint8_t *body, size_t len, void *arg)
{
  const char *peer = rpc_call_peer(call);
  rpc_call_reply(call, NULL, peer, strlen(peer));
}

/* Hang: never answers on its own; counts cancels. */
struct hang {
  int calls;
  int cancels;
  struct rpc_call *call;
};

static void hang_cancel(struct rpc_call *call, void *arg)
{
  struct hang *h = arg;
  h->cancels++;
  if (h->call == call) h->call = NULL;
}

static void hang_handler(struct rpc_call *call, const uint8_t *body, size_t len, void *arg)
{
  struct hang *h = arg;
  h->calls++;
  h->call = call;
  rpc_call_on_cancel(call, hang_cancel, h);
}

static bool hang_cancelled(void *arg) { return ((struct hang *)arg)->cancels > 0; }
static bool hang_called(void *arg) { return ((struct hang *)arg)->calls > 0; }

/* ---- codec ---- */

static void test_codec(void **state)
{
  (void)state;
  struct buf b = BUF_INIT;
  struct rpc_frame f;
  uint64_t seqs[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 0xffffffffu, 0x100000000ull,
                     UINT64_MAX};
  for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
    buf_reset(&b);
    size_t n = rpc_codec_put_request(&b, seqs[i], "KVS.Apply", "hello", 5);
    assert_int_equal(n + 4, b.len);
    assert_int_equal(rpc_codec_frame_len((const uint8_t *)b.data), n);
    assert_true(n <= rpc_codec_request_size("KVS.Apply", 5));
    assert_int_equal(rpc_codec_decode((const uint8_t *)b.data + 4, n, &f), 0);
    assert_int_equal(f.kind, RPC_FRAME_REQUEST);
    assert_true(f.seq == seqs[i]);
    assert_int_equal(f.method_len, 9);
    assert_memory_equal(f.method, "KVS.Apply", 9);
    assert_int_equal(f.body_len, 5);
    assert_memory_equal(f.body, "hello", 5);
  }
  /* bodies of every length class */
  size_t lens[] = {0, 1, 255, 256, 65535, 65536, 200000};
  uint8_t *big = xcalloc(1, 200000);
  for (size_t i = 0; i < 200000; i++) big[i] = (uint8_t)(i * 7);
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    buf_reset(&b);
    size_t n = rpc_codec_put_response(&b, 9, i % 2 ? "err" : NULL, big, lens[i]);
    assert_true(n <= rpc_codec_response_size(i % 2 ? "err" : NULL, lens[i]));
    assert_int_equal(rpc_codec_decode((const uint8_t *)b.data + 4, n, &f), 0);
    assert_int_equal(f.kind, RPC_FRAME_RESPONSE);
    assert_int_equal(f.body_len, lens[i]);
    if (lens[i]) assert_memory_equal(f.body, big, lens[i]);
    if (i % 2) {
      assert_int_equal(f.error_len, 3);
      assert_memory_equal(f.error, "err", 3);
    } else {
      assert_null(f.error);
    }
  }
  /* long method and error strings (str8/str16) */
  char method[RPC_MAX_METHOD + 2];
  memset(method, 'm', sizeof method);
  method[RPC_MAX_METHOD] = '\0';
  buf_reset(&b);
  size_t n = rpc_codec_put_request(&b, 1, method, NULL, 0);
  assert_int_equal(rpc_codec_decode((const uint8_t *)b.data + 4, n, &f), 0);
  assert_int_equal(f.method_len, RPC_MAX_METHOD);
  method[RPC_MAX_METHOD] = 'm';
  method[RPC_MAX_METHOD + 1] = '\0';
  buf_reset(&b);
  n = rpc_codec_put_request(&b, 1, method, NULL, 0);
  assert_int_equal(rpc_codec_decode((const uint8_t *)b.data + 4, n, &f), CC_EINVAL);

  buf_reset(&b);
  n = rpc_codec_put_cancel(&b, 77);
  assert_int_equal(rpc_codec_decode((const uint8_t *)b.data + 4, n, &f), 0);
  assert_int_equal(f.kind, RPC_FRAME_CANCEL);
  assert_int_equal(f.seq, 77);

  /* rejections */
  struct {
    const char *what;
    const char *bytes;
    size_t len;
  } bad[] = {
      {"empty", S("")},
      {"not a map", S("\x91\x01")},
      {"empty map", S("\x80")},
      {"no seq", S("\x81\xa4" "Body\xc4\x00")},
      {"unknown key", S("\x82\xa3Seq\x01\xa3" "Foo\x01")},
      {"repeated key", S("\x82\xa3Seq\x01\xa3Seq\x02")},
      {"negative seq", S("\x81\xa3Seq\xff")},
      {"seq as string", S("\x81\xa3Seq\xa1x")},
      {"cancel false", S("\x82\xa3Seq\x01\xa6" "Cancel\xc2")},
      {"method and cancel", S("\x83\xa3Seq\x01\xa6Method\xa1m\xa6" "Cancel\xc3")},
      {"method and error", S("\x83\xa3Seq\x01\xa6Method\xa1m\xa5" "Error\xa1x")},
      {"cancel and body", S("\x83\xa3Seq\x01\xa6" "Cancel\xc3\xa4" "Body\xc4\x00")},
      {"empty method", S("\x82\xa3Seq\x01\xa6Method\xa0")},
      {"NUL in method", S("\x82\xa3Seq\x01\xa6Method\xa2m\x00")},
      {"NUL in error", S("\x82\xa3Seq\x01\xa5" "Error\xa2x\x00")},
      {"body length past end", S("\x82\xa3Seq\x01\xa4" "Body\xc6\xff\xff\xff\xff")},
      {"string length past end", S("\x81\xdb\xff\xff\xff\xff")},
      {"truncated seq", S("\x81\xa3Seq\xcf\x00\x00")},
      {"trailing bytes", S("\x81\xa3Seq\x01\x00")},
      {"four keys", S("\x84\xa3Seq\x01")},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (rpc_codec_decode((const uint8_t *)bad[i].bytes, bad[i].len, &f) != CC_EINVAL)
      fail_msg("accepted: %s", bad[i].what);
  }
  /* tolerated forms: nil body, str body, signed non-negative seq, map16 */
  const char ok1[] = "\x82\xa3Seq\xd0\x05\xa4" "Body\xc0";
  assert_int_equal(rpc_codec_decode((const uint8_t *)ok1, sizeof ok1 - 1, &f), 0);
  assert_int_equal(f.seq, 5);
  assert_int_equal(f.body_len, 0);
  const char ok2[] = "\xde\x00\x02\xa3Seq\x01\xa4" "Body\xa2hi";
  assert_int_equal(rpc_codec_decode((const uint8_t *)ok2, sizeof ok2 - 1, &f), 0);
  assert_int_equal(f.body_len, 2);

  /* raft handshake */
  buf_reset(&b);
  assert_int_equal(rpc_codec_raft_hs_put(&b, 0xa1b2c3d4e5f60708ull, "127.0.0.1:8300"), 0);
  assert_int_equal(b.len, RPC_RAFT_HS_FIXED + 14);
  uint64_t id;
  size_t alen;
  assert_int_equal(rpc_codec_raft_hs_fixed((const uint8_t *)b.data, &id, &alen), 0);
  assert_true(id == 0xa1b2c3d4e5f60708ull);
  assert_int_equal(alen, 14);
  assert_int_equal(rpc_codec_raft_hs_put(&b, 0, "x"), CC_EINVAL);
  assert_int_equal(rpc_codec_raft_hs_put(&b, 1, ""), CC_EINVAL);
  const uint8_t zero_id[RPC_RAFT_HS_FIXED] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  assert_int_equal(rpc_codec_raft_hs_fixed(zero_id, &id, &alen), CC_EINVAL);
  const uint8_t long_addr[RPC_RAFT_HS_FIXED] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 0};
  assert_int_equal(rpc_codec_raft_hs_fixed(long_addr, &id, &alen), CC_EINVAL);
  free(big);
  buf_free(&b);
}

/* ---- RPC ---- */

static void test_echo_and_errors(void **state)
{
  uv_loop_t *loop = *state;
  struct inst srv, cli;
  inst_start(loop, &srv, free_port());
  inst_start(loop, &cli, -1);
  int echoes = 0;
  rpc_handle(srv.r, "Test.Echo", echo_handler, &echoes);
  rpc_handle(srv.r, "Test.Fail", fail_handler, NULL);
  rpc_handle(srv.r, "Test.Peer", peer_handler, NULL);
  rpc_handle(srv.r, "Test.Gone", echo_handler, NULL);
  rpc_handle(srv.r, "Test.Gone", NULL, NULL);

  struct res a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", "ping", 4, 5000, done_cb, &a,
                               NULL), 0);
  assert_int_equal(a.calls, 0); /* never before rpc_request returns */
  assert_true(run_until(loop, res_done, &a, 5000));
  assert_int_equal(a.status, 0);
  assert_false(a.has_error);
  assert_int_equal(a.body.len, 4);
  assert_memory_equal(a.body.data, "ping", 4);
  assert_int_equal(echoes, 1);

  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Fail", NULL, 0, 5000, done_cb, &b,
                               NULL), 0);
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Nope", NULL, 0, 5000, done_cb, &c,
                               NULL), 0);
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Gone", NULL, 0, 5000, done_cb, &d,
                               NULL), 0);
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Peer", NULL, 0, 5000, done_cb, &e,
                               NULL), 0);
  assert_true(run_until(loop, res_done, &e, 5000));
  assert_true(run_until(loop, res_done, &d, 5000));
  assert_int_equal(b.status, 0);
  assert_string_equal(b.error, "boom: bad thing");
  assert_int_equal(b.body.len, 1);
  assert_int_equal(c.status, 0);
  assert_string_equal(c.error, "rpc: can't find method Test.Nope");
  assert_string_equal(d.error, "rpc: can't find method Test.Gone");
  assert_false(e.has_error);
  assert_string_equal(e.body.data, "127.0.0.1");
  /* one pooled connection carried all of them */
  assert_int_equal(map_count(&cli.r->pool), 1);

  /* bad arguments: refused at once, no callback */
  struct res z = {0};
  assert_int_equal(rpc_request(cli.r, "nonsense", "Test.Echo", NULL, 0, 0, done_cb, &z, NULL),
                   CC_EINVAL);
  assert_int_equal(rpc_request(cli.r, "127.0.0.1:0", "Test.Echo", NULL, 0, 0, done_cb, &z,
                               NULL), CC_EINVAL);
  assert_int_equal(rpc_request(cli.r, srv.addr, "", NULL, 0, 0, done_cb, &z, NULL), CC_EINVAL);
  run_for(loop, 20);
  assert_int_equal(z.calls, 0);

  inst_stop(loop, &cli);
  inst_stop(loop, &srv);
  buf_free(&a.body), buf_free(&b.body), buf_free(&c.body), buf_free(&d.body);
  buf_free(&e.body), buf_free(&z.body);
}

struct many {
  struct res res[1000];
  int done;
};

struct many_ctx {
  struct many *m;
  unsigned i;
};

static void many_cb(void *arg, int status, const char *error, const uint8_t *body, size_t len)
{
  struct many_ctx *x = arg;
  done_cb(&x->m->res[x->i], status, error, body, len);
  x->m->done++;
}

static bool many_done(void *arg) { return ((struct many *)arg)->done == 1000; }

static void test_concurrent(void **state)
{
  uv_loop_t *loop = *state;
  struct inst srv, cli;
  inst_start(loop, &srv, free_port());
  inst_start(loop, &cli, free_port());
  rpc_handle(srv.r, "Test.Echo", echo_handler, NULL);
  struct many *m = xcalloc(1, sizeof *m);
  struct many_ctx *ctx = xcalloc(1000, sizeof *ctx);
  for (unsigned i = 0; i < 1000; i++) {
    char body[32];
    int n = snprintf(body, sizeof body, "request %u", i);
    ctx[i].m = m;
    ctx[i].i = i;
    assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", body, (size_t)n, 10000,
                                 many_cb, &ctx[i], NULL), 0);
  }
  assert_true(run_until(loop, many_done, m, 20000));
  for (unsigned i = 0; i < 1000; i++) {
    char body[32];
    snprintf(body, sizeof body, "request %u", i);
    assert_int_equal(m->res[i].calls, 1);
    assert_int_equal(m->res[i].status, 0);
    assert_string_equal(m->res[i].body.data, body);
    buf_free(&m->res[i].body);
  }
  assert_int_equal(map_count(&cli.r->pool), 1);

  /* large bodies, both ways, several at once */
  size_t big = 8u << 20;
  uint8_t *body = xmalloc(big);
  for (size_t i = 0; i < big; i++) body[i] = (uint8_t)(i * 131 + 7);
  struct res br[3];
  memset(br, 0, sizeof br);
  for (int i = 0; i < 3; i++)
    assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", body, big - (size_t)i, 20000,
                                 done_cb, &br[i], NULL), 0);
  for (int i = 0; i < 3; i++) {
    assert_true(run_until(loop, res_done, &br[i], 20000));
    assert_int_equal(br[i].status, 0);
    assert_int_equal(br[i].body.len, big - (size_t)i);
    assert_memory_equal(br[i].body.data, body, big - (size_t)i);
    buf_free(&br[i].body);
  }
  free(body);
  inst_stop(loop, &cli);
  inst_stop(loop, &srv);
  free(m);
  free(ctx);
}

/* Replies 200 ms late without a cancel callback: the client has given up by then. */
struct late {
  uv_timer_t timer;
  struct rpc_call *call;
  int replied;
};

static void late_fire(uv_timer_t *t)
{
  struct late *l = t->data;
  rpc_call_reply(l->call, NULL, "late", 4); /* detached: dropped and freed */
  l->replied++;
}

static void late_handler(struct rpc_call *call, const uint8_t *body, size_t len, void *arg)
{
  struct late *l = arg;
  l->call = call;
  uv_timer_start(&l->timer, late_fire, 200, 0);
}

static bool late_replied(void *arg) { return ((struct late *)arg)->replied > 0; }

static void test_timeout_and_cancel(void **state)
{
  uv_loop_t *loop = *state;
  struct inst srv, cli;
  inst_start(loop, &srv, free_port());
  inst_start(loop, &cli, -1);
  struct hang h = {0};
  rpc_handle(srv.r, "Test.Hang", hang_handler, &h);
  struct late l = {0};
  uv_timer_init(loop, &l.timer);
  l.timer.data = &l;
  rpc_handle(srv.r, "Test.Late", late_handler, &l);

  /* timeout: the caller gets CC_ETIMEOUT, the server is told */
  struct res a = {0};
  uint64_t t0 = uv_hrtime();
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Hang", NULL, 0, 150, done_cb, &a, NULL),
                   0);
  assert_true(run_until(loop, res_done, &a, 5000));
  uint64_t took = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(a.status, CC_ETIMEOUT);
  assert_true(took >= 140 && took < 1000);
  assert_true(run_until(loop, hang_cancelled, &h, 2000));
  assert_int_equal(h.calls, 1);
  assert_int_equal(h.cancels, 1);

  /* cancel: the callback never runs, the server sees the cancel */
  struct res b = {0};
  struct rpc_req *hb = NULL;
  h.cancels = 0;
  h.calls = 0;
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Hang", NULL, 0, 5000, done_cb, &b, &hb),
                   0);
  assert_true(run_until(loop, hang_called, &h, 2000));
  rpc_request_cancel(hb);
  assert_true(run_until(loop, hang_cancelled, &h, 2000));
  run_for(loop, 50);
  assert_int_equal(b.calls, 0);

  /* cancel before the connection is even up (a fresh client) */
  struct inst cli2;
  inst_start(loop, &cli2, -1);
  struct res b2 = {0};
  h.cancels = 0;
  h.calls = 0;
  assert_int_equal(rpc_request(cli2.r, srv.addr, "Test.Hang", NULL, 0, 5000, done_cb, &b2,
                               &hb), 0);
  rpc_request_cancel(hb);
  assert_true(run_until(loop, hang_cancelled, &h, 2000));
  assert_int_equal(b2.calls, 0);
  inst_stop(loop, &cli2);

  /* a late reply to a caller that timed out is dropped */
  struct res c = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Late", NULL, 0, 50, done_cb, &c, NULL),
                   0);
  assert_true(run_until(loop, late_replied, &l, 2000));
  run_for(loop, 50);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.status, CC_ETIMEOUT);

  /* stop with a request outstanding: CC_ESHUTDOWN, exactly once */
  struct res d = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Hang", NULL, 0, 5000, done_cb, &d, NULL),
                   0);
  h.cancels = 0;
  h.calls = 0;
  assert_true(run_until(loop, hang_called, &h, 2000));
  inst_stop(loop, &cli);
  assert_int_equal(d.calls, 1);
  assert_int_equal(d.status, CC_ESHUTDOWN);
  assert_true(run_until(loop, hang_cancelled, &h, 2000)); /* connection gone: cancel */
  uv_close((uv_handle_t *)&l.timer, NULL);
  inst_stop(loop, &srv);
  buf_free(&a.body), buf_free(&b.body), buf_free(&b2.body), buf_free(&c.body);
  buf_free(&d.body);
}

static void test_server_restart(void **state)
{
  uv_loop_t *loop = *state;
  struct inst srv, cli;
  int port = free_port();
  inst_start(loop, &srv, port);
  inst_start(loop, &cli, -1);
  struct hang h = {0};
  rpc_handle(srv.r, "Test.Hang", hang_handler, &h);
  rpc_handle(srv.r, "Test.Echo", echo_handler, NULL);

  /* server stops mid-request: the caller gets CC_EIO, the server's call its cancel */
  struct res a = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Hang", NULL, 0, 5000, done_cb, &a, NULL),
                   0);
  assert_true(run_until(loop, hang_called, &h, 2000));
  inst_stop(loop, &srv);
  assert_int_equal(h.cancels, 1);
  assert_true(run_until(loop, res_done, &a, 2000));
  assert_int_equal(a.status, CC_EIO);

  /* nobody listening: CC_ENOCONN (nothing was sent), after rpc_request returns */
  struct res b = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", "x", 1, 5000, done_cb, &b, NULL),
                   0);
  assert_int_equal(b.calls, 0);
  assert_true(run_until(loop, res_done, &b, 2000));
  assert_int_equal(b.status, CC_ENOCONN);

  /* back on the same port: the next request dials again and succeeds */
  inst_start(loop, &srv, port);
  rpc_handle(srv.r, "Test.Echo", echo_handler, NULL);
  struct res c = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", "again", 5, 5000, done_cb, &c,
                               NULL), 0);
  assert_true(run_until(loop, res_done, &c, 2000));
  assert_int_equal(c.status, 0);
  assert_string_equal(c.body.data, "again");

  /* a second listener on the same port is refused with a sentence */
  struct rpc_config cfg;
  rpc_config_defaults(&cfg);
  cfg.bind_ip = "127.0.0.1";
  cfg.port = port;
  struct rpc *dup = NULL;
  char err[256] = "";
  assert_int_equal(rpc_start(loop, &cfg, &dup, err, sizeof err), CC_EIO);
  assert_non_null(strstr(err, "address already in use"));
  run_for(loop, 20); /* the failed start's handles close */
  cfg.bind_ip = "not-an-ip";
  assert_int_equal(rpc_start(loop, &cfg, &dup, err, sizeof err), CC_EINVAL);

  inst_stop(loop, &cli);
  inst_stop(loop, &srv);
  buf_free(&a.body), buf_free(&b.body), buf_free(&c.body);
}

static void test_oversize(void **state)
{
  uv_loop_t *loop = *state;
  struct inst srv, cli;
  inst_start_cfg(loop, &srv, free_port(), 1024, 0);
  inst_start(loop, &cli, -1);
  rpc_handle(srv.r, "Test.Echo", echo_handler, NULL);
  rpc_handle(srv.r, "Test.Big", big_handler, NULL);
  size_t big = 4096;
  uint8_t *body = xcalloc(1, big);

  /* the client's own cap refuses at once */
  struct inst small;
  inst_start_cfg(loop, &small, -1, 1024, 0);
  struct res z = {0};
  assert_int_equal(rpc_request(small.r, srv.addr, "Test.Echo", body, big, 0, done_cb, &z,
                               NULL), CC_ETOOBIG);
  inst_stop(loop, &small);

  /* the server's cap: it closes the connection, the caller gets CC_EIO */
  struct res a = {0}, b = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", "ok", 2, 5000, done_cb, &a, NULL),
                   0);
  assert_true(run_until(loop, res_done, &a, 2000));
  assert_int_equal(a.status, 0);
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", body, big, 5000, done_cb, &b,
                               NULL), 0);
  assert_true(run_until(loop, res_done, &b, 2000));
  assert_int_equal(b.status, CC_EIO);

  /* a large frame being written when the server drops the connection fails with CC_EIO
   * (it may have run); one still queued behind it with CC_ENOCONN (it cannot have) */
  size_t huge = 8u << 20;
  uint8_t *hbody = xcalloc(1, huge);
  struct res d = {0}, e = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", "ok", 2, 5000, done_cb, &a, NULL),
                   0);
  a.calls = 0;
  assert_true(run_until(loop, res_done, &a, 2000)); /* connected, nothing queued */
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", hbody, huge, 5000, done_cb, &d,
                               NULL), 0);
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", "q", 1, 5000, done_cb, &e, NULL),
                   0);
  assert_true(run_until(loop, res_done, &e, 2000));
  assert_true(run_until(loop, res_done, &d, 2000));
  assert_int_equal(d.status, CC_EIO);
  assert_int_equal(e.status, CC_ENOCONN);
  free(hbody);
  buf_free(&d.body), buf_free(&e.body);

  /* a reply over the server's cap becomes an error reply */
  struct res c = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Big", NULL, 0, 5000, done_cb, &c, NULL),
                   0);
  assert_true(run_until(loop, res_done, &c, 2000));
  assert_int_equal(c.status, 0);
  assert_non_null(strstr(c.error, "response too large"));

  inst_stop(loop, &cli);
  inst_stop(loop, &srv);
  free(body);
  buf_free(&a.body), buf_free(&b.body), buf_free(&c.body), buf_free(&z.body);
}

/* A plain socket that sends bytes and reports whether the server closed it. */
static int raw_connect(int port)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0); /* the backlog takes it */
  return fd;
}

static bool raw_closed(void *arg)
{
  int fd = *(int *)arg;
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static void test_garbage(void **state)
{
  uv_loop_t *loop = *state;
  struct inst srv, cli;
  inst_start(loop, &srv, free_port());
  inst_start(loop, &cli, -1);
  rpc_handle(srv.r, "Test.Echo", echo_handler, NULL);

  struct {
    const char *what;
    const char *bytes;
    size_t len;
  } cases[] = {
      {"unknown first byte", S("\x07hello")},
      {"HTTP", S("GET / HTTP/1.1\r\n\r\n")},
      {"raft handshake with id 0", S("\x01\0\0\0\0\0\0\0\0\0\x05")},
      {"raft while no raft runs", S("\x01\0\0\0\0\0\0\0\x01\0\x01x")},
      {"rpc: zero-length frame", S("\x00\0\0\0\0")},
      {"rpc: oversize frame", S("\x00\xff\xff\xff\xff")},
      {"rpc: not msgpack", S("\x00\0\0\0\x02\xc1\xc1")},
      {"rpc: a response sent to a server", S("\x00\0\0\0\x06\x81\xa3Seq\x01")},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int fd = raw_connect(srv.port);
    assert_int_equal(send(fd, cases[i].bytes, cases[i].len, 0), (ssize_t)cases[i].len);
    if (!run_until(loop, raw_closed, &fd, 2000)) fail_msg("not closed: %s", cases[i].what);
    close(fd);
  }
  /* a well-formed request from a raw socket gets its answer */
  int fd = raw_connect(srv.port);
  struct buf b = BUF_INIT;
  buf_putc(&b, 0);
  rpc_codec_put_request(&b, 5, "Test.Echo", "raw", 3);
  assert_int_equal(send(fd, b.data, b.len, 0), (ssize_t)b.len);
  run_for(loop, 100);
  uint8_t reply[256];
  ssize_t n = recv(fd, reply, sizeof reply, MSG_DONTWAIT);
  assert_true(n > 4);
  struct rpc_frame f;
  assert_int_equal(rpc_codec_frame_len(reply), (size_t)n - 4);
  assert_int_equal(rpc_codec_decode(reply + 4, (size_t)n - 4, &f), 0);
  assert_int_equal(f.kind, RPC_FRAME_RESPONSE);
  assert_int_equal(f.seq, 5);
  assert_memory_equal(f.body, "raw", 3);
  close(fd);
  buf_free(&b);

  /* the server still serves */
  struct res a = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", "ok", 2, 5000, done_cb, &a, NULL),
                   0);
  assert_true(run_until(loop, res_done, &a, 2000));
  assert_int_equal(a.status, 0);
  /* a silent connection is still open (the 10 s sniff deadline has not passed) */
  fd = raw_connect(srv.port);
  run_for(loop, 100);
  assert_false(raw_closed(&fd));
  assert_int_equal(srv.r->n_inbound, 2);
  /* a Raft handshake arriving in pieces, stalled halfway */
  int fd2 = raw_connect(srv.port);
  const char hs[] = "\x01\0\0\0\0\0\0\0\x01\0\x0e" "127.0.0.1:8300";
  assert_int_equal(send(fd2, hs, 1, 0), 1);
  run_for(loop, 20);
  assert_int_equal(send(fd2, hs + 1, 6, 0), 6);
  run_for(loop, 20);
  assert_int_equal(send(fd2, hs + 7, 8, 0), 8);
  run_for(loop, 20);
  assert_false(raw_closed(&fd2));
  assert_int_equal(srv.r->n_inbound, 3);
  /* the 10 s deadline for the first byte and the handshake (swept as if time had passed) */
  rpc__in_sweep(srv.r, uv_now(loop) + RPC_SNIFF_TIMEOUT_MS);
  assert_true(run_until(loop, raw_closed, &fd, 2000));
  assert_true(run_until(loop, raw_closed, &fd2, 2000));
  assert_int_equal(srv.r->n_inbound, 1); /* the client's RPC connection stays */
  close(fd2);
  inst_stop(loop, &cli);
  inst_stop(loop, &srv);
  assert_true(raw_closed(&fd));
  close(fd);
  buf_free(&a.body);
}

static bool hang_all(void *arg) { return ((struct hang *)arg)->calls == RPC_MAX_INFLIGHT; }

/* The client caps requests in flight per connection; everything is cancelled at stop. */
static void test_inflight_cap(void **state)
{
  uv_loop_t *loop = *state;
  struct inst srv, cli;
  inst_start(loop, &srv, free_port());
  inst_start(loop, &cli, -1);
  struct hang h = {0};
  rpc_handle(srv.r, "Test.Hang", hang_handler, &h);
  struct res *res = xcalloc(RPC_MAX_INFLIGHT, sizeof *res);
  for (int i = 0; i < RPC_MAX_INFLIGHT; i++)
    assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Hang", NULL, 0, 0, done_cb, &res[i],
                                 NULL), 0);
  struct res extra = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Hang", NULL, 0, 0, done_cb, &extra,
                               NULL), CC_ENOCONN);
  assert_true(run_until(loop, hang_all, &h, 10000));
  assert_int_equal(h.calls, RPC_MAX_INFLIGHT);
  inst_stop(loop, &srv); /* every call cancelled; every request fails with CC_EIO */
  assert_int_equal(h.cancels, RPC_MAX_INFLIGHT);
  assert_true(run_until(loop, res_done, &res[RPC_MAX_INFLIGHT - 1], 5000));
  for (int i = 0; i < RPC_MAX_INFLIGHT; i++) {
    assert_int_equal(res[i].calls, 1);
    assert_int_equal(res[i].status, CC_EIO);
    buf_free(&res[i].body);
  }
  inst_stop(loop, &cli);
  free(res);
}

/* A dial still connecting when the connect timeout passes fails its requests with CC_EIO
 * (swept as if the time had passed); IPv6 literals work where the host has ::1. */
static void test_connect_timeout_ipv6(void **state)
{
  uv_loop_t *loop = *state;
  struct inst srv, cli;
  inst_start(loop, &srv, free_port());
  inst_start(loop, &cli, -1);
  rpc_handle(srv.r, "Test.Echo", echo_handler, NULL);
  struct res a = {0}, b = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", "1", 1, 0, done_cb, &a, NULL), 0);
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", "2", 1, 0, done_cb, &b, NULL), 0);
  assert_int_equal(a.calls, 0);
  rpc__out_sweep(cli.r, uv_now(loop) + 5000);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.status, CC_ENOCONN);
  assert_int_equal(b.status, CC_ENOCONN);
  assert_int_equal(map_count(&cli.r->pool), 0);
  /* the next request dials again */
  a.calls = 0;
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", "3", 1, 0, done_cb, &a, NULL), 0);
  assert_true(run_until(loop, res_done, &a, 2000));
  assert_int_equal(a.status, 0);
  assert_string_equal(a.body.data, "3");

  struct rpc_config cfg;
  rpc_config_defaults(&cfg);
  cfg.bind_ip = "::1";
  cfg.port = free_port();
  struct rpc *r6 = NULL;
  char err[256] = "";
  if (rpc_start(loop, &cfg, &r6, err, sizeof err) == 0) {
    rpc_handle(r6, "Test.Peer", peer_handler, NULL);
    char addr[64];
    snprintf(addr, sizeof addr, "[::1]:%d", cfg.port);
    struct res c = {0};
    assert_int_equal(rpc_request(cli.r, addr, "Test.Peer", NULL, 0, 5000, done_cb, &c, NULL),
                     0);
    assert_true(run_until(loop, res_done, &c, 2000));
    assert_int_equal(c.status, 0);
    assert_string_equal(c.body.data, "::1");
    buf_free(&c.body);
    struct inst i6 = {.r = r6};
    inst_stop(loop, &i6);
  } else {
    fprintf(stderr, "no IPv6 loopback here (%s): skipped\n", err);
    run_for(loop, 20);
  }
  inst_stop(loop, &cli);
  inst_stop(loop, &srv);
  buf_free(&a.body), buf_free(&b.body);
}

/* A raw client that writes `out` without blocking and collects answers, driving the loop
 * until `want` response frames are in (or the server closes, or time runs out). */
struct pump {
  int fd;
  uv_loop_t *loop;
  const uint8_t *out;
  size_t out_len, sent;
  struct buf in;
  size_t want, frames;
  bool closed;
  size_t max_in_before_read; /* read nothing until this much was sent (0: read always) */
};

static size_t count_frames(struct pump *p)
{
  size_t off = 0, n = 0, len;
  if (p->in.len == 0) return 0;
  while (rpc_codec_next_frame((const uint8_t *)p->in.data + off, p->in.len - off, UINT32_MAX,
                              &len) == 1) {
    off += RPC_FRAME_HEADER + len;
    n++;
  }
  return n;
}

static bool pump_step(void *arg)
{
  struct pump *p = arg;
  while (p->sent < p->out_len) {
    ssize_t n = send(p->fd, p->out + p->sent, p->out_len - p->sent, MSG_DONTWAIT);
    if (n <= 0) break;
    p->sent += (size_t)n;
  }
  if (p->sent < p->max_in_before_read) return false;
  char tmp[65536];
  for (;;) {
    ssize_t n = recv(p->fd, tmp, sizeof tmp, MSG_DONTWAIT);
    if (n == 0) p->closed = true;
    if (n <= 0) break;
    buf_append(&p->in, tmp, (size_t)n);
  }
  p->frames = count_frames(p);
  return p->closed || p->frames >= p->want;
}

/* Server-side limits: the in-flight cap answers an error; a client that does not read its
 * answers makes the server stop reading (and resume once it reads); a reused sequence number
 * closes the connection. */
static void test_server_limits(void **state)
{
  uv_loop_t *loop = *state;
  struct inst srv;
  inst_start(loop, &srv, free_port());
  struct hang h = {0};
  rpc_handle(srv.r, "Test.Hang", hang_handler, &h);
  rpc_handle(srv.r, "Test.Echo", echo_handler, NULL);

  /* RPC_MAX_INFLIGHT + 1 hanging requests: the last is refused with an error reply */
  struct buf out = BUF_INIT;
  buf_putc(&out, RPC_BYTE_RPC);
  for (uint64_t seq = 1; seq <= RPC_MAX_INFLIGHT + 1; seq++)
    rpc_codec_put_request(&out, seq, "Test.Hang", NULL, 0);
  struct pump p = {.fd = raw_connect(srv.port), .loop = loop, .out = (uint8_t *)out.data,
                   .out_len = out.len, .want = 1};
  assert_true(run_until(loop, pump_step, &p, 10000));
  assert_false(p.closed);
  assert_int_equal(p.frames, 1);
  struct rpc_frame f;
  assert_int_equal(rpc_codec_decode((uint8_t *)p.in.data + 4, p.in.len - 4, &f), 0);
  assert_int_equal(f.seq, RPC_MAX_INFLIGHT + 1);
  assert_non_null(f.error);
  assert_memory_equal(f.error, "rpc: too many requests in flight", f.error_len);
  assert_int_equal(h.calls, RPC_MAX_INFLIGHT);
  /* a sequence number still in flight, reused: protocol error, connection closed */
  buf_reset(&out);
  rpc_codec_put_request(&out, 5, "Test.Hang", NULL, 0);
  p.out = (uint8_t *)out.data, p.out_len = out.len, p.sent = 0, p.want = 2;
  assert_true(run_until(loop, pump_step, &p, 5000));
  assert_true(p.closed);
  assert_int_equal(h.cancels, RPC_MAX_INFLIGHT);
  close(p.fd);
  buf_free(&p.in);

  /* 48 MiB of echo requests, answers read only once everything is sent: the server stops
   * reading while its answers back up, and every answer arrives in the end */
  size_t body = 1u << 20;
  int n = 48;
  uint8_t *payload = xcalloc(1, body);
  buf_reset(&out);
  buf_putc(&out, RPC_BYTE_RPC);
  for (int i = 1; i <= n; i++) rpc_codec_put_request(&out, (uint64_t)i, "Test.Echo", payload, body);
  struct pump q = {.fd = raw_connect(srv.port), .loop = loop, .out = (uint8_t *)out.data,
                   .out_len = out.len, .want = (size_t)n, .max_in_before_read = out.len};
  /* small client buffers, so that what the kernel can hold on both sides stays well under
   * 48 MiB whatever its autotuning allows (else the test could pass through unpaused) */
  int small = 64 * 1024;
  setsockopt(q.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  setsockopt(q.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  assert_false(run_until(loop, pump_step, &q, 1500)); /* stuck: nobody reads the answers */
  assert_true(q.sent < q.out_len);
  struct rpc_in *in = RPC_CONTAINER(srv.r->inbound.next, struct rpc_in, link);
  assert_true(in->s.paused);
  q.max_in_before_read = 0;
  assert_true(run_until(loop, pump_step, &q, 20000));
  assert_false(q.closed);
  assert_int_equal(q.frames, (size_t)n);
  assert_false(in->s.paused);
  close(q.fd);
  buf_free(&q.in);
  free(payload);
  buf_free(&out);
  inst_stop(loop, &srv);
}

static bool pool_empty(void *arg) { return map_count(&((struct rpc *)arg)->pool) == 0; }

static void test_idle_close(void **state)
{
  uv_loop_t *loop = *state;
  struct inst srv, cli;
  inst_start(loop, &srv, free_port());
  inst_start_cfg(loop, &cli, -1, 0, 100);
  rpc_handle(srv.r, "Test.Echo", echo_handler, NULL);
  struct res a = {0};
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", "1", 1, 5000, done_cb, &a, NULL),
                   0);
  assert_true(run_until(loop, res_done, &a, 2000));
  assert_int_equal(map_count(&cli.r->pool), 1);
  assert_true(run_until(loop, pool_empty, cli.r, 1000));
  /* and the server notices the close */
  run_for(loop, 50);
  assert_int_equal(srv.r->n_inbound, 0);
  a.calls = 0;
  assert_int_equal(rpc_request(cli.r, srv.addr, "Test.Echo", "2", 1, 5000, done_cb, &a, NULL),
                   0);
  assert_true(run_until(loop, res_done, &a, 2000));
  assert_int_equal(a.status, 0);
  assert_string_equal(a.body.data, "2");
  inst_stop(loop, &cli);
  inst_stop(loop, &srv);
  buf_free(&a.body);
}

/* ---- the Raft transport alone (as libraft drives it) ---- */

struct tr_side {
  int accepts;
  uint64_t id;
  char address[64];
  uv_stream_t *stream; /* accepted or connected */
  struct buf got;
  char rbuf[64];
  int connects;
  int connect_status;
  int closed;
};

static void tr_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
  struct tr_side *x = h->data;
  b->base = x->rbuf;
  b->len = sizeof x->rbuf;
}

static void tr_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
  struct tr_side *x = st->data;
  if (n > 0) buf_append(&x->got, b->base, (size_t)n);
}

static void tr_accept(struct raft_uv_transport *t, raft_id id, const char *address,
                      uv_stream_t *stream)
{
  struct tr_side *x = t->data;
  x->accepts++;
  x->id = id;
  snprintf(x->address, sizeof x->address, "%s", address);
  x->stream = stream;
  stream->data = x;
  assert_int_equal(uv_read_start(stream, tr_alloc, tr_read), 0);
}

static void tr_connected(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
  struct tr_side *x = req->data;
  x->connects++;
  x->connect_status = status;
  x->stream = stream;
  if (stream) stream->data = x;
}

static void tr_closed(struct raft_uv_transport *t) { ((struct tr_side *)t->data)->closed++; }
static bool tr_accepted(void *arg) { return ((struct tr_side *)arg)->accepts > 0; }
static bool tr_did_connect(void *arg) { return ((struct tr_side *)arg)->connects > 0; }
static bool tr_did_close(void *arg) { return ((struct tr_side *)arg)->closed > 0; }
static bool tr_got7(void *arg) { return ((struct tr_side *)arg)->got.len >= 7; }

static void raft_free_cb(uv_handle_t *h) { raft_free(h); }

static void tr_reset(struct tr_side *x)
{
  if (x->stream) uv_close((uv_handle_t *)x->stream, raft_free_cb);
  x->stream = NULL;
  x->accepts = x->connects = 0;
  x->connect_status = -100;
  buf_reset(&x->got);
}

static void test_raft_transport(void **state)
{
  uv_loop_t *loop = *state;
  struct inst a, b;
  inst_start(loop, &a, free_port());
  inst_start(loop, &b, -1);
  struct raft_uv_transport ta, tb;
  memset(&ta, 0, sizeof ta);
  memset(&tb, 0, sizeof tb);
  struct tr_side xa, xb;
  memset(&xa, 0, sizeof xa);
  memset(&xb, 0, sizeof xb);
  ta.data = &xa;
  tb.data = &xb;
  assert_int_equal(rpc_raft_transport_init(a.r, &ta), 0);
  assert_int_equal(rpc_raft_transport_init(b.r, &tb), 0);
  assert_ptr_equal(ta.data, &xa); /* the transport's user data is left alone */
  assert_int_equal(ta.init(&ta, 7, a.addr), 0);
  assert_int_equal(tb.init(&tb, 9, "127.0.0.1:9999"), 0);
  assert_int_equal(ta.listen(&ta, tr_accept), 0);
  assert_int_not_equal(tb.listen(&tb, tr_accept), 0); /* b has no listener */

  /* handshake and payload in one segment: the payload is libraft's, to the byte */
  int fd = raw_connect(a.port);
  const char hs[] = "\x01\0\0\0\0\0\0\0\x2a\0\x0b" "127.0.0.1:1" "PAYLOAD";
  assert_int_equal(send(fd, hs, sizeof hs - 1, 0), (ssize_t)(sizeof hs - 1));
  assert_true(run_until(loop, tr_accepted, &xa, 2000));
  assert_int_equal(xa.id, 42);
  assert_string_equal(xa.address, "127.0.0.1:1");
  assert_true(run_until(loop, tr_got7, &xa, 2000));
  assert_int_equal(xa.got.len, 7);
  assert_memory_equal(xa.got.data, "PAYLOAD", 7);
  close(fd);
  tr_reset(&xa);

  /* dial: b connects to a; a accepts with b's identity; bytes flow */
  struct raft_uv_connect req;
  req.data = &xb;
  assert_int_equal(tb.connect(&tb, &req, 7, a.addr, tr_connected), 0);
  assert_int_equal(xb.connects, 0);
  assert_true(run_until(loop, tr_did_connect, &xb, 2000));
  assert_int_equal(xb.connect_status, 0);
  assert_true(run_until(loop, tr_accepted, &xa, 2000));
  assert_int_equal(xa.id, 9);
  assert_string_equal(xa.address, "127.0.0.1:9999");
  uv_write_t w;
  uv_buf_t wb = uv_buf_init((char *)"0123456", 7);
  assert_int_equal(uv_write(&w, xb.stream, &wb, 1, NULL), 0);
  assert_true(run_until(loop, tr_got7, &xa, 2000));
  assert_memory_equal(xa.got.data, "0123456", 7);
  tr_reset(&xa);
  tr_reset(&xb);

  /* nobody there: RAFT_NOCONNECTION, from the loop */
  char dead[64];
  snprintf(dead, sizeof dead, "127.0.0.1:%d", free_port());
  assert_int_equal(tb.connect(&tb, &req, 7, dead, tr_connected), 0);
  assert_int_equal(xb.connects, 0);
  assert_true(run_until(loop, tr_did_connect, &xb, 2000));
  assert_int_equal(xb.connect_status, RAFT_NOCONNECTION);
  assert_null(xb.stream);
  tr_reset(&xb);
  assert_int_not_equal(tb.connect(&tb, &req, 7, "nonsense", tr_connected), 0);

  /* the connect timeout (swept as if the time had passed) */
  assert_int_equal(tb.connect(&tb, &req, 7, a.addr, tr_connected), 0);
  rpc__raft_sweep(b.r, uv_now(loop) + 5000);
  assert_true(run_until(loop, tr_did_connect, &xb, 2000));
  assert_int_equal(xb.connect_status, RAFT_NOCONNECTION);
  tr_reset(&xb);
  run_for(loop, 50); /* a may have seen the connection come and go */
  tr_reset(&xa);

  /* close with a connect pending: RAFT_CANCELED, then the close callback */
  assert_int_equal(tb.connect(&tb, &req, 7, a.addr, tr_connected), 0);
  tb.close(&tb, tr_closed);
  assert_int_equal(xb.connects, 0);
  assert_int_equal(xb.closed, 0);
  assert_true(run_until(loop, tr_did_connect, &xb, 2000));
  assert_int_equal(xb.connect_status, RAFT_CANCELED);
  assert_int_equal(xb.closed, 1);
  rpc_raft_transport_close(b.r, &tb);
  /* after close, a's rpc takes no raft connections: they are closed */
  ta.close(&ta, tr_closed);
  /* never from inside close (libraft goes on using its io after close returns) */
  assert_int_equal(xa.closed, 0);
  assert_true(run_until(loop, tr_did_close, &xa, 2000));
  assert_int_equal(xa.closed, 1);
  rpc_raft_transport_close(a.r, &ta);
  fd = raw_connect(a.port);
  assert_int_equal(send(fd, hs, sizeof hs - 1, 0), (ssize_t)(sizeof hs - 1));
  assert_true(run_until(loop, raw_closed, &fd, 2000));
  close(fd);
  assert_int_equal(xa.accepts, 0);

  inst_stop(loop, &a);
  inst_stop(loop, &b);
  buf_free(&xa.got);
  buf_free(&xb.got);
}

/* ---- Raft over the shared port ---- */

struct node {
  char dir[256];
  char node_id[37];
  struct inst rpc;
  struct state_store *store;
  struct consensus *c;
  bool stopped;
};

static char tmp_base[64];

static void node_start(uv_loop_t *loop, struct node *n, unsigned expect)
{
  struct consensus_config cfg;
  consensus_config_defaults(&cfg);
  cfg.data_dir = n->dir;
  cfg.node_id = n->node_id;
  cfg.address = n->rpc.addr;
  cfg.bootstrap_expect = expect;
  cfg.transport_init = rpc_raft_transport_init;
  cfg.transport_close = rpc_raft_transport_close;
  cfg.transport_arg = n->rpc.r;
  char err[256] = "";
  n->store = state_store_new();
  n->stopped = false;
  int rv = consensus_start(loop, &cfg, n->store, &n->c, err, sizeof err);
  if (rv != 0) fail_msg("consensus_start: %s (%s)", cc_strerror(rv), err);
}

static void node_stopped_cb(void *arg) { ((struct node *)arg)->stopped = true; }
static bool node_stopped(void *arg) { return ((struct node *)arg)->stopped; }

static void node_stop(uv_loop_t *loop, struct node *n)
{
  consensus_stop(n->c, node_stopped_cb, n);
  assert_true(run_until(loop, node_stopped, n, 5000));
  n->c = NULL;
  state_store_free(n->store);
  n->store = NULL;
}

static bool is_leader(void *arg) { return consensus_is_leader(((struct node *)arg)->c); }

struct change {
  int status;
  int calls;
};

static void change_cb(void *arg, int status)
{
  struct change *c = arg;
  c->status = status;
  c->calls++;
}

static bool change_done(void *arg) { return ((struct change *)arg)->calls > 0; }

struct applied {
  int done;
  int failed;
  int want;
};

static bool applied_all(void *arg)
{
  struct applied *a = arg;
  return a->done + a->failed >= a->want;
}

static void apply_cb(void *arg, int status, const struct state_cmd_result *res, uint64_t index)
{
  struct applied *a = arg;
  if (status == 0) a->done++;
  else a->failed++;
}

static void apply_n(uv_loop_t *loop, struct node *leader, const char *prefix, int n)
{
  struct applied a = {0, 0, n};
  struct buf b = BUF_INIT;
  for (int i = 0; i < n; i++) {
    char key[64];
    snprintf(key, sizeof key, "%s/%03d", prefix, i);
    struct state_kv_op op;
    memset(&op, 0, sizeof op);
    op.verb = STATE_KV_SET;
    op.key = key;
    op.key_len = strlen(key);
    op.value = (const uint8_t *)"v";
    op.value_len = 1;
    buf_reset(&b);
    state_cmd_encode_kv(&b, &op);
    assert_int_equal(consensus_apply(leader->c, &b, apply_cb, &a), 0);
  }
  buf_free(&b);
  assert_true(run_until(loop, applied_all, &a, 10000));
  assert_int_equal(a.done, n);
}

struct cluster {
  struct node *nodes;
  unsigned n;
  size_t want_keys;
};

static bool replicated(void *arg)
{
  struct cluster *cl = arg;
  for (unsigned i = 0; i < cl->n; i++) {
    if (cl->nodes[i].c == NULL) continue;
    if (state_kv_count(cl->nodes[i].store) < cl->want_keys) return false;
  }
  return true;
}

static bool new_leader(void *arg)
{
  struct cluster *cl = arg;
  for (unsigned i = 0; i < cl->n; i++)
    if (cl->nodes[i].c != NULL && consensus_is_leader(cl->nodes[i].c)) return true;
  return false;
}

/* Echo to every node's port from a separate client: RPC works beside Raft. */
static void echo_all(uv_loop_t *loop, struct rpc *cli, struct node *nodes, unsigned n)
{
  for (unsigned i = 0; i < n; i++) {
    struct res a = {0};
    assert_int_equal(rpc_request(cli, nodes[i].rpc.addr, "Test.Echo", "raft?", 5, 5000,
                                 done_cb, &a, NULL), 0);
    assert_true(run_until(loop, res_done, &a, 5000));
    assert_int_equal(a.status, 0);
    assert_string_equal(a.body.data, "raft?");
    buf_free(&a.body);
  }
}

static void test_raft_over_rpc(void **state)
{
  uv_loop_t *loop = *state;
  snprintf(tmp_base, sizeof tmp_base, "/tmp/concord-rpc-XXXXXX");
  assert_non_null(mkdtemp(tmp_base));
  struct node nodes[3];
  memset(nodes, 0, sizeof nodes);
  struct inst cli;
  inst_start(loop, &cli, -1);
  for (int i = 0; i < 3; i++) {
    snprintf(nodes[i].dir, sizeof nodes[i].dir, "%s/node%d", tmp_base, i);
    snprintf(nodes[i].node_id, sizeof nodes[i].node_id, "%08x-1111-4222-8333-444455556666",
             0xb0 + i);
    inst_start(loop, &nodes[i].rpc, free_port());
    rpc_handle(nodes[i].rpc.r, "Test.Echo", echo_handler, NULL);
  }
  node_start(loop, &nodes[0], 1);
  node_start(loop, &nodes[1], 0);
  node_start(loop, &nodes[2], 0);
  /* one transport per rpc */
  struct raft_uv_transport extra;
  memset(&extra, 0, sizeof extra);
  assert_int_not_equal(rpc_raft_transport_init(nodes[0].rpc.r, &extra), 0);

  assert_true(run_until(loop, is_leader, &nodes[0], 5000));
  for (int i = 1; i < 3; i++) {
    struct change ch = {-100, 0};
    assert_int_equal(consensus_add_voter(nodes[0].c, consensus_id(nodes[i].c),
                                         nodes[i].rpc.addr, change_cb, &ch), 0);
    assert_true(run_until(loop, change_done, &ch, 8000));
    assert_int_equal(ch.status, 0);
  }
  struct consensus_peer peers[4];
  assert_int_equal(consensus_peers(nodes[0].c, peers, 4), 3);
  echo_all(loop, cli.r, nodes, 3);

  apply_n(loop, &nodes[0], "a", 100);
  struct cluster cl = {nodes, 3, 100};
  assert_true(run_until(loop, replicated, &cl, 5000));
  assert_string_equal(consensus_leader_address(nodes[1].c), nodes[0].rpc.addr);
  echo_all(loop, cli.r, nodes, 3);

  /* kill the leader's consensus (its rpc stays up and keeps answering RPC) */
  node_stop(loop, &nodes[0]);
  assert_true(run_until(loop, new_leader, &cl, 8000));
  struct node *leader = consensus_is_leader(nodes[1].c) ? &nodes[1] : &nodes[2];
  echo_all(loop, cli.r, nodes, 3);
  apply_n(loop, leader, "b", 50);
  cl.want_keys = 150;
  assert_true(run_until(loop, replicated, &cl, 5000));

  /* the old leader comes back on the same port and catches up */
  node_start(loop, &nodes[0], 1);
  assert_true(run_until(loop, replicated, &cl, 8000));
  assert_int_equal(state_kv_count(nodes[0].store), 150);
  echo_all(loop, cli.r, nodes, 3);

  for (int i = 0; i < 3; i++) node_stop(loop, &nodes[i]);
  inst_stop(loop, &cli);
  for (int i = 0; i < 3; i++) inst_stop(loop, &nodes[i].rpc);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_base);
  assert_int_equal(system(cmd), 0);
}

int main(void)
{
  log_set_level(getenv("TEST_LOG") ? LOG_DEBUG : LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_codec),
      cmocka_unit_test_setup_teardown(test_echo_and_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout_and_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_restart, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
      cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
      cmocka_unit_test_setup_teardown(test_idle_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connect_timeout_ipv6, setup, teardown),
      cmocka_unit_test_setup_teardown(test_inflight_cap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_raft_transport, setup, teardown),
      cmocka_unit_test_setup_teardown(test_raft_over_rpc, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
