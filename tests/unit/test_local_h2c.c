/* test_local_h2c.c -- the HTTP/2 client of gRPC and H2PING checks (src/local/h2c.c): the
 * HealthCheckResponse decoder, the protocol session against an in-process nghttp2 server
 * session (SERVING, NOT_SERVING, grpc-status errors, HTTP errors, missing trailers, PING,
 * garbage, EOF, the read cap), and the libuv transport against a fake h2 server on a real
 * socket (cleartext, and TLS refused by it) and against a closed port. */
#define _DEFAULT_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "local/h2c.h"

/* ---- the fake server: an nghttp2 server session answering Health/Check ---- */

struct fake {
  nghttp2_session *ng;
  /* what the request carried */
  char path[128], method[16], content_type[64], te[32];
  struct buf body;
  /* how to answer */
  const char *http_status;  /* ":status" */
  const char *ctype;        /* content-type, NULL: none */
  int serving;              /* HealthCheckResponse.status; -1: no message */
  const char *grpc_status;  /* in trailers; NULL: no trailers (stream just ends) */
  const char *grpc_message;
  uint8_t msg[16];
  size_t msg_len, msg_off;
  int32_t stream;
};

static int f_header(nghttp2_session *ng, const nghttp2_frame *fr, const uint8_t *n, size_t nl,
                    const uint8_t *v, size_t vl, uint8_t flags, void *u)
{
  (void)ng;
  (void)fr;
  (void)flags;
  struct fake *f = u;
  char *dst = NULL;
  size_t cap = 0;
  if (nl == 5 && !memcmp(n, ":path", 5)) dst = f->path, cap = sizeof f->path;
  if (nl == 7 && !memcmp(n, ":method", 7)) dst = f->method, cap = sizeof f->method;
  if (nl == 12 && !memcmp(n, "content-type", 12)) dst = f->content_type, cap = sizeof f->content_type;
  if (nl == 2 && !memcmp(n, "te", 2)) dst = f->te, cap = sizeof f->te;
  if (dst) snprintf(dst, cap, "%.*s", (int)vl, (const char *)v);
  return 0;
}

static int f_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *d, size_t len,
                  void *u)
{
  (void)ng;
  (void)flags;
  (void)sid;
  struct fake *f = u;
  buf_append(&f->body, d, len);
  return 0;
}

static ssize_t f_read(nghttp2_session *ng, int32_t sid, uint8_t *out, size_t len, uint32_t *flags,
                      nghttp2_data_source *src, void *u)
{
  (void)src;
  struct fake *f = u;
  size_t n = f->msg_len - f->msg_off;
  if (n > len) n = len;
  memcpy(out, f->msg + f->msg_off, n);
  f->msg_off += n;
  if (f->msg_off == f->msg_len) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (f->grpc_status) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      nghttp2_nv tr[2] = {
          {(uint8_t *)"grpc-status", (uint8_t *)f->grpc_status, 11, strlen(f->grpc_status), 0},
          {(uint8_t *)"grpc-message", (uint8_t *)(f->grpc_message ? f->grpc_message : ""), 12,
           f->grpc_message ? strlen(f->grpc_message) : 0, 0}};
      nghttp2_submit_trailer(ng, sid, tr, f->grpc_message ? 2 : 1);
    }
  }
  return (ssize_t)n;
}

static int f_frame(nghttp2_session *ng, const nghttp2_frame *fr, void *u)
{
  struct fake *f = u;
  if ((fr->hd.type == NGHTTP2_DATA || fr->hd.type == NGHTTP2_HEADERS) &&
      (fr->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    f->stream = fr->hd.stream_id;
    nghttp2_nv h[2] = {
        {(uint8_t *)":status", (uint8_t *)f->http_status, 7, strlen(f->http_status), 0},
        {(uint8_t *)"content-type", (uint8_t *)(f->ctype ? f->ctype : ""), 12,
         f->ctype ? strlen(f->ctype) : 0, 0}};
    f->msg_len = 0;
    if (f->serving >= 0) {
      uint8_t m[] = {0, 0, 0, 0, 2, 0x08, (uint8_t)f->serving};
      memcpy(f->msg, m, sizeof m);
      f->msg_len = sizeof m;
    }
    nghttp2_data_provider prd = {.source = {.ptr = f}, .read_callback = f_read};
    nghttp2_submit_response(ng, fr->hd.stream_id, h, f->ctype ? 2 : 1, &prd);
  }
  return 0;
}

static void fake_init(struct fake *f)
{
  memset(f, 0, sizeof *f);
  buf_init(&f->body);
  f->http_status = "200";
  f->ctype = "application/grpc";
  f->serving = 1;
  f->grpc_status = "0";
  nghttp2_session_callbacks *cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, f_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, f_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, f_frame);
  assert_int_equal(nghttp2_session_server_new(&f->ng, cbs, f), 0);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(f->ng, NGHTTP2_FLAG_NONE, NULL, 0);
}

static void fake_free(struct fake *f)
{
  nghttp2_session_del(f->ng);
  buf_free(&f->body);
}

/* Moves bytes both ways until neither side has anything to say. */
static void pump(struct local_h2c_sess *s, struct fake *f)
{
  for (int round = 0; round < 50; round++) {
    struct buf out = BUF_INIT;
    local__h2c_sess_send(s, &out);
    size_t moved = out.len;
    if (out.len) assert_true(nghttp2_session_mem_recv(f->ng, (uint8_t *)out.data, out.len) >= 0);
    buf_free(&out);
    const uint8_t *p;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(f->ng, &p)) > 0) {
      moved += (size_t)n;
      if (local__h2c_sess_recv(s, p, (size_t)n) != 0) return;
    }
    if (!moved) return;
  }
}

static const char *run_grpc(struct fake *f, const char *service, bool *passing)
{
  static char out[512];
  struct local_h2c_sess *s = local__h2c_sess_new("127.0.0.1:9", "127.0.0.1:9/x", service, false);
  pump(s, f);
  const char *o = NULL;
  assert_true(local__h2c_sess_result(s, passing, &o));
  snprintf(out, sizeof out, "%s", o);
  local__h2c_sess_free(s);
  return out;
}

/* ---- tests ---- */

static void test_health_status_decode(void **state)
{
  (void)state;
  int64_t st;
  assert_int_equal(local__h2c_health_status((const uint8_t *)"", 0, &st), 0);
  assert_int_equal(st, 0);
  const uint8_t serving[] = {0x08, 0x01};
  assert_int_equal(local__h2c_health_status(serving, sizeof serving, &st), 0);
  assert_int_equal(st, 1);
  /* unknown fields of every wire type are skipped, the last status wins */
  const uint8_t mixed[] = {0x12, 0x02, 'a', 'b', 0x19, 1, 2, 3, 4, 5, 6, 7, 8,
                           0x25, 1, 2, 3, 4, 0x08, 0x02, 0x30, 0x96, 0x01};
  assert_int_equal(local__h2c_health_status(mixed, sizeof mixed, &st), 0);
  assert_int_equal(st, 2);
  const uint8_t trunc[] = {0x08};
  assert_int_equal(local__h2c_health_status(trunc, sizeof trunc, &st), -1);
  const uint8_t badlen[] = {0x12, 0x05, 'a'};
  assert_int_equal(local__h2c_health_status(badlen, sizeof badlen, &st), -1);
  const uint8_t group[] = {0x0b};
  assert_int_equal(local__h2c_health_status(group, sizeof group, &st), -1);
  const uint8_t field0[] = {0x00, 0x01};
  assert_int_equal(local__h2c_health_status(field0, sizeof field0, &st), -1);
  const uint8_t longvar[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  assert_int_equal(local__h2c_health_status(longvar, sizeof longvar, &st), -1);
}

static void test_serving(void **state)
{
  (void)state;
  struct fake f;
  fake_init(&f);
  bool passing = false;
  assert_string_equal(run_grpc(&f, "my.service", &passing), "gRPC check 127.0.0.1:9/x: success");
  assert_true(passing);
  assert_string_equal(f.path, "/grpc.health.v1.Health/Check");
  assert_string_equal(f.method, "POST");
  assert_string_equal(f.content_type, "application/grpc");
  assert_string_equal(f.te, "trailers");
  /* 5-byte prefix, then HealthCheckRequest{service: "my.service"} */
  const uint8_t want[] = {0, 0, 0, 0, 12, 0x0a, 10, 'm', 'y', '.', 's', 'e', 'r', 'v', 'i', 'c', 'e'};
  assert_int_equal(f.body.len, sizeof want);
  assert_memory_equal(f.body.data, want, sizeof want);
  fake_free(&f);

  /* The whole server: an empty request message. */
  fake_init(&f);
  run_grpc(&f, "", &passing);
  assert_true(passing);
  assert_int_equal(f.body.len, 5);
  fake_free(&f);
}

static void test_not_serving_and_errors(void **state)
{
  (void)state;
  struct fake f;
  bool passing = true;

  fake_init(&f);
  f.serving = 2;
  assert_string_equal(run_grpc(&f, "s", &passing), "gRPC 127.0.0.1:9/x serving status: NOT_SERVING");
  assert_false(passing);
  fake_free(&f);

  fake_init(&f);
  f.serving = 7;
  assert_string_equal(run_grpc(&f, "s", &passing), "gRPC 127.0.0.1:9/x serving status: 7");
  fake_free(&f);

  fake_init(&f);
  f.serving = -1;
  f.grpc_status = "5";
  f.grpc_message = "unknown%20service";
  assert_string_equal(run_grpc(&f, "s", &passing),
                      "rpc error: code = NotFound desc = unknown service");
  assert_false(passing);
  fake_free(&f);

  fake_init(&f);
  f.serving = -1;
  f.grpc_status = "99";
  assert_string_equal(run_grpc(&f, "s", &passing), "rpc error: code = Code(99) desc = ");
  fake_free(&f);

  fake_init(&f);
  f.http_status = "404";
  f.ctype = "text/plain";
  f.serving = -1;
  f.grpc_status = NULL;
  assert_string_equal(run_grpc(&f, "s", &passing),
                      "rpc error: code = Unimplemented desc = unexpected HTTP status code received "
                      "from server: 404");
  fake_free(&f);

  fake_init(&f);
  f.ctype = "text/html";
  assert_string_equal(run_grpc(&f, "s", &passing),
                      "rpc error: code = Internal desc = transport: received unexpected "
                      "content-type \"text/html\"");
  fake_free(&f);

  fake_init(&f);
  f.grpc_status = NULL; /* the stream ends after the message, no trailers */
  assert_string_equal(run_grpc(&f, "s", &passing),
                      "rpc error: code = Internal desc = server closed the stream without "
                      "sending trailers");
  fake_free(&f);

  fake_init(&f);
  f.serving = -1; /* OK status but no message */
  assert_string_equal(run_grpc(&f, "s", &passing),
                      "rpc error: code = Internal desc = grpc: server returned no response message");
  assert_false(passing);
  fake_free(&f);
}

static void test_ping(void **state)
{
  (void)state;
  struct fake f;
  fake_init(&f);
  struct local_h2c_sess *s = local__h2c_sess_new("h:1", "h:1", "", true);
  pump(s, &f);
  bool passing = false;
  const char *out;
  assert_true(local__h2c_sess_result(s, &passing, &out));
  assert_true(passing);
  assert_string_equal(out, "HTTP2 ping was successful");
  local__h2c_sess_free(s);
  fake_free(&f);
}

static void test_garbage_eof_and_cap(void **state)
{
  (void)state;
  bool passing = true;
  const char *out;
  /* an HTTP/1.1 server answering the preface */
  struct local_h2c_sess *s = local__h2c_sess_new("h:1", "h:1", "", true);
  struct buf b = BUF_INIT;
  local__h2c_sess_send(s, &b);
  buf_free(&b);
  const char *h1 = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
  local__h2c_sess_recv(s, (const uint8_t *)h1, strlen(h1));
  local__h2c_sess_send(s, &b); /* the GOAWAY */
  buf_free(&b);
  assert_true(local__h2c_sess_result(s, &passing, &out));
  assert_false(passing);
  assert_non_null(strstr(out, "HTTP2 ping failed: "));
  local__h2c_sess_free(s);

  /* the server hangs up before answering */
  s = local__h2c_sess_new("h:1", "h:1/svc", "svc", false);
  local__h2c_sess_send(s, &b);
  buf_free(&b);
  assert_false(local__h2c_sess_result(s, &passing, &out));
  local__h2c_sess_eof(s);
  assert_true(local__h2c_sess_result(s, &passing, &out));
  assert_string_equal(out, "rpc error: code = Unavailable desc = error reading from server: EOF");
  local__h2c_sess_free(s);

  /* more than the read cap: refused without being parsed */
  s = local__h2c_sess_new("h:1", "h:1", "", false);
  uint8_t *big = xcalloc(1, LOCAL_H2C_MAX_READ + 1);
  assert_int_equal(local__h2c_sess_recv(s, big, LOCAL_H2C_MAX_READ + 1), -1);
  assert_true(local__h2c_sess_result(s, &passing, &out));
  assert_false(passing);
  free(big);
  local__h2c_sess_free(s);
}

/* ---- the transport on a real loop ---- */

struct srv_conn {
  uv_tcp_t tcp;
  struct fake f;
};

struct result {
  int calls;
  bool passing;
  char out[512];
};

static void got(void *arg, bool passing, const char *output)
{
  struct result *r = arg;
  r->calls++;
  r->passing = passing;
  snprintf(r->out, sizeof r->out, "%s", output);
}

static void srv_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
  (void)h;
  b->base = xmalloc(sz);
  b->len = sz;
}

static void srv_written(uv_write_t *w, int status)
{
  (void)status;
  free(w->data);
  free(w);
}

static void srv_conn_closed(uv_handle_t *h)
{
  struct srv_conn *c = h->data;
  fake_free(&c->f);
  free(c);
}

static void srv_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
  struct srv_conn *c = st->data;
  if (n > 0) nghttp2_session_mem_recv(c->f.ng, (uint8_t *)b->base, (size_t)n);
  free(b->base);
  if (n < 0) {
    uv_close((uv_handle_t *)st, srv_conn_closed);
    return;
  }
  const uint8_t *p;
  ssize_t len;
  while ((len = nghttp2_session_mem_send(c->f.ng, &p)) > 0) {
    uv_write_t *w = xmalloc(sizeof *w);
    w->data = xmemdup(p, (size_t)len);
    uv_buf_t ub = uv_buf_init(w->data, (unsigned)len);
    uv_write(w, st, &ub, 1, srv_written);
  }
}

static void srv_accept(uv_stream_t *ls, int status)
{
  assert_int_equal(status, 0);
  struct srv_conn *c = xcalloc(1, sizeof *c);
  fake_init(&c->f);
  c->f.serving = *(int *)ls->data;
  uv_tcp_init(ls->loop, &c->tcp);
  c->tcp.data = c;
  assert_int_equal(uv_accept(ls, (uv_stream_t *)&c->tcp), 0);
  uv_read_start((uv_stream_t *)&c->tcp, srv_alloc, srv_read);
}

static void run_until(uv_loop_t *loop, struct result *r)
{
  for (int i = 0; i < 2000 && r->calls == 0; i++) uv_run(loop, UV_RUN_ONCE);
}

static void test_transport(void **state)
{
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_tcp_t ls;
  uv_tcp_init(&loop, &ls);
  int serving = 1;
  ls.data = &serving;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  assert_int_equal(uv_tcp_bind(&ls, (struct sockaddr *)&sa, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&ls, 8, srv_accept), 0);
  int len = sizeof sa;
  uv_tcp_getsockname(&ls, (struct sockaddr *)&sa, &len);
  char port[16];
  snprintf(port, sizeof port, "%d", ntohs(sa.sin_port));
  char label[64];
  snprintf(label, sizeof label, "127.0.0.1:%s/svc", port);

  struct result r = {0};
  struct local_h2c_req req = {.host = "127.0.0.1", .port = port, .label = label,
                              .service = "svc", .timeout_ms = 5000};
  local__h2c_start(&loop, &req, got, &r);
  run_until(&loop, &r);
  assert_int_equal(r.calls, 1);
  assert_true(r.passing);
  char want[400];
  snprintf(want, sizeof want, "gRPC check %s: success", label);
  assert_string_equal(r.out, want);

  serving = 2;
  memset(&r, 0, sizeof r);
  local__h2c_start(&loop, &req, got, &r);
  run_until(&loop, &r);
  assert_false(r.passing);
  snprintf(want, sizeof want, "gRPC %s serving status: NOT_SERVING", label);
  assert_string_equal(r.out, want);

  memset(&r, 0, sizeof r);
  req.ping = true;
  local__h2c_start(&loop, &req, got, &r);
  run_until(&loop, &r);
  assert_true(r.passing);
  assert_string_equal(r.out, "HTTP2 ping was successful");

  /* cancelled in flight: no callback, nothing leaks */
  memset(&r, 0, sizeof r);
  struct local_h2c *h = local__h2c_start(&loop, &req, got, &r);
  uv_run(&loop, UV_RUN_NOWAIT);
  local__h2c_cancel(h);

  /* TLS to a cleartext server: the handshake fails, as the check's output says */
  memset(&r, 0, sizeof r);
  req.ping = false;
  req.tls = true;
  req.tls_skip_verify = true;
  local__h2c_start(&loop, &req, got, &r);
  run_until(&loop, &r);
  assert_false(r.passing);
  assert_non_null(strstr(r.out, "rpc error: code = Unavailable desc = connection error: desc = "
                                "\"transport: authentication handshake failed: tls: "));
  req.tls = false;

  /* a closed port */
  uv_close((uv_handle_t *)&ls, NULL);
  memset(&r, 0, sizeof r);
  req.ping = false;
  local__h2c_start(&loop, &req, got, &r);
  run_until(&loop, &r);
  snprintf(want, sizeof want,
           "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error "
           "while dialing: dial tcp 127.0.0.1:%s: connect: connection refused\"", port);
  assert_string_equal(r.out, want);
  memset(&r, 0, sizeof r);
  req.ping = true;
  local__h2c_start(&loop, &req, got, &r);
  run_until(&loop, &r);
  snprintf(want, sizeof want,
           "Failed to dial to %s: dial tcp 127.0.0.1:%s: connect: connection refused", label, port);
  assert_string_equal(r.out, want);

  assert_int_equal(r.calls, 1);
  while (uv_run(&loop, UV_RUN_NOWAIT)) {}
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_health_status_decode),
      cmocka_unit_test(test_serving),
      cmocka_unit_test(test_not_serving_and_errors),
      cmocka_unit_test(test_ping),
      cmocka_unit_test(test_garbage_eof_and_cap),
      cmocka_unit_test(test_transport),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
