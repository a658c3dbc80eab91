/* fuzz_local_httpc.c -- libFuzzer target for the check client's response side
 * (src/local/httpc.c, and src/local/tls.c for https): whatever a checked server sends back
 * must give a status or an error, never a crash, leak or sanitizer report.
 *
 * Each input runs on a fresh libuv loop with a loopback listener that answers the client's
 * connection with the input's bytes (after the first), half-closes, and drains until the
 * client hangs up. The first byte picks the request: bit 0 https (TLSSkipVerify, so the bytes
 * reach the handshake), bit 1 HEAD instead of GET, bits 2-3 the body cap (16 B .. 4 KiB).
 * Redirects are off: an absolute Location would make the client resolve a fuzzed host name,
 * and nothing may leave 127.0.0.0/8. Seeds: fuzz/corpus/local_httpc/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "local/httpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
  uv_loop_t loop;
  uv_tcp_t lis;
  const uint8_t *data;
  size_t len;
  bool done;
};

struct fz_conn {
  uv_tcp_t tcp;
  uv_write_t w;
  uv_shutdown_t sd;
};

static void conn_closed(uv_handle_t *h) { free(h->data); }

static void drain_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
  static char sink[65536];
  (void)h;
  (void)suggested;
  *b = uv_buf_init(sink, sizeof sink);
}

static void drain(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
  (void)b;
  if (n < 0 && !uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, conn_closed);
}

static void shut(uv_shutdown_t *r, int status) { (void)r, (void)status; }

static void written(uv_write_t *w, int status)
{
  struct fz_conn *c = w->data;
  if (status == 0) {
    c->sd.data = c;
    if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, shut) == 0) return;
  }
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_conn(uv_stream_t *lis, int status)
{
  struct fz *f = lis->data;
  if (status < 0) return;
  struct fz_conn *c = calloc(1, sizeof *c);
  if (!c) abort();
  uv_tcp_init(&f->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(lis, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, drain_alloc, drain);
  c->w.data = c;
  uv_buf_t b = uv_buf_init((char *)f->data, (unsigned)f->len);
  if (uv_write(&c->w, (uv_stream_t *)&c->tcp, &b, 1, written) != 0)
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_result(void *arg, const struct local_httpc_result *res)
{
  struct fz *f = arg;
  f->done = true;
  if (res->status_code == 0 && !res->error) abort(); /* an error always has its text */
  if (res->body_len > res->body_total) abort();
  if (res->body[res->body_len] != '\0') abort();
  uv_close((uv_handle_t *)&f->lis, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1 || size > (1u << 18)) return 0;
  static struct fz f;
  memset(&f, 0, sizeof f);
  f.data = data + 1;
  f.len = size - 1;
  uv_loop_init(&f.loop);
  uv_tcp_init(&f.loop, &f.lis);
  f.lis.data = &f;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  if (uv_tcp_bind(&f.lis, (const struct sockaddr *)&a, 0) != 0 ||
      uv_listen((uv_stream_t *)&f.lis, 8, on_conn) != 0)
    abort();
  int alen = sizeof a;
  uv_tcp_getsockname(&f.lis, (struct sockaddr *)&a, &alen);
  char url[64];
  snprintf(url, sizeof url, "%s://127.0.0.1:%d/x", (data[0] & 1) ? "https" : "http",
           ntohs(a.sin_port));
  struct local_httpc_req req = {
      .method = (data[0] & 2) ? "HEAD" : "GET",
      .url = url,
      .timeout_ms = 2000,
      .max_body = (size_t)16 << (2 * ((data[0] >> 2) & 3)),
      .no_redirects = true,
      .tls_skip_verify = true,
      .capture_header = "X-Consul-Index",
  };
  local__httpc_start(&f.loop, &req, on_result, &f);
  uv_run(&f.loop, UV_RUN_DEFAULT); /* ends when the client, listener and connection closed */
  if (!f.done) abort();
  if (uv_loop_close(&f.loop) != 0) abort();
  return 0;
}
