/* h2c.c -- the HTTP/2 client behind gRPC and H2PING checks (see h2c.h).
 *
 * Two halves. The session (local_h2c_sess) is pure protocol: an nghttp2 client session fed
 * with bytes and drained of bytes, which sends the preface, our SETTINGS (and ACKs theirs),
 * then either one PING or one POST /grpc.health.v1.Health/Check stream carrying a
 * length-prefixed HealthCheckRequest, and turns what comes back (:status, content-type,
 * grpc-status / grpc-message in headers or trailers, the HealthCheckResponse message) into a
 * result. The transport (local_h2c) resolves, connects, shuttles bytes between the socket and
 * the session, and enforces the deadline, on the libuv loop; with TLS the socket's bytes go
 * through OpenSSL memory BIOs first, and the session's first bytes wait for the handshake.
 *
 * Outputs follow what Consul's check produces, which is grpc-go's and Go http2's error text:
 * a refused dial is `rpc error: code = Unavailable desc = connection error: desc = "transport:
 * Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "local/h2c.h"

#define HEALTH_PATH "/grpc.health.v1.Health/Check"
#define MAX_SERVICE 4096 /* HealthCheckRequest.service bytes sent */

/* ---- protobuf: HealthCheckResponse { ServingStatus status = 1; } ---- */

static int pb_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v)
{
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*off >= len) return -1;
    uint8_t b = p[(*off)++];
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1; /* more than ten bytes */
}

int local__h2c_health_status(const uint8_t *msg, size_t len, int64_t *status)
{
  size_t off = 0;
  *status = 0;
  while (off < len) {
    uint64_t key, v;
    if (pb_varint(msg, len, &off, &key) != 0) return -1;
    uint64_t field = key >> 3;
    if (field == 0) return -1;
    switch (key & 7) {
    case 0:
      if (pb_varint(msg, len, &off, &v) != 0) return -1;
      if (field == 1) *status = (int32_t)(uint32_t)v; /* an enum is an int32 */
      break;
    case 1:
      if (len - off < 8) return -1;
      off += 8;
      break;
    case 2:
      if (pb_varint(msg, len, &off, &v) != 0 || v > len - off) return -1;
      off += (size_t)v;
      break;
    case 5:
      if (len - off < 4) return -1;
      off += 4;
      break;
    default: return -1; /* groups and reserved wire types */
    }
  }
  return 0;
}

static const char *serving_status_name(int64_t st, char *tmp, size_t tmplen)
{
  static const char *const names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
  if (st >= 0 && st < 4) return names[st];
  snprintf(tmp, tmplen, "%lld", (long long)st); /* protobuf-go prints unknown values as numbers */
  return tmp;
}

/* grpc-go's codes.Code names. */
static const char *grpc_code_name(long code, char *tmp, size_t tmplen)
{
  static const char *const names[] = {
      "OK",         "Canceled",          "Unknown",          "InvalidArgument", "DeadlineExceeded",
      "NotFound",   "AlreadyExists",     "PermissionDenied", "ResourceExhausted",
      "FailedPrecondition", "Aborted",   "OutOfRange",       "Unimplemented",   "Internal",
      "Unavailable", "DataLoss",         "Unauthenticated"};
  if (code >= 0 && code < (long)(sizeof names / sizeof names[0])) return names[code];
  snprintf(tmp, tmplen, "Code(%ld)", code);
  return tmp;
}

/* ---- the session ---- */

struct local_h2c_sess {
  nghttp2_session *ng;
  bool ping;
  char *label; /* owned */
  uint8_t *body; /* the request message (owned), body_off bytes of it sent */
  size_t body_len, body_off;
  int32_t stream_id;
  size_t read_total;
  /* the response */
  int http_status;
  long grpc_status; /* -1: none yet */
  char *grpc_message; /* owned, percent-decoded; NULL when none */
  char content_type[128];
  struct buf data; /* DATA bytes of our stream, at most 5 + LOCAL_H2C_MAX_MESSAGE */
  bool data_too_big;
  /* the result */
  bool done, passing;
  char *output; /* owned */
};

static void sess_result(struct local_h2c_sess *s, bool passing, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sess_result(struct local_h2c_sess *s, bool passing, const char *fmt, ...)
{
  if (s->done) return;
  struct buf b = BUF_INIT;
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(&b, fmt, ap);
  va_end(ap);
  s->done = true;
  s->passing = passing;
  s->output = buf_steal(&b, NULL);
}

/* A gRPC call failed: grpc-go's status error text. */
static void rpc_error(struct local_h2c_sess *s, long code, const char *desc)
{
  char tmp[32];
  sess_result(s, false, "rpc error: code = %s desc = %s", grpc_code_name(code, tmp, sizeof tmp),
              desc);
}

/* The connection went before the call ended (ping or gRPC). */
static void conn_error(struct local_h2c_sess *s, const char *why)
{
  if (s->ping) {
    sess_result(s, false, "HTTP2 ping failed: %s", why);
    return;
  }
  struct buf b = BUF_INIT;
  buf_printf(&b, "connection error: desc = \"%s\"", why);
  rpc_error(s, 14 /* Unavailable */, b.data);
  buf_free(&b);
}

/* grpc-message is percent-encoded (gRPC over HTTP/2, "Percent-Encoded"). */
static int hexval(uint8_t c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static char *percent_decode(const uint8_t *v, size_t len)
{
  char *out = xmalloc(len + 1);
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    if (v[i] == '%' && i + 2 < len && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
      out[o++] = (char)(hexval(v[i + 1]) << 4 | hexval(v[i + 2]));
      i += 2;
    } else {
      out[o++] = (char)v[i];
    }
  }
  out[o] = '\0';
  return out;
}

static bool name_is(const uint8_t *name, size_t namelen, const char *want)
{
  return namelen == strlen(want) && memcmp(name, want, namelen) == 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
  (void)ng;
  (void)flags;
  struct local_h2c_sess *s = user;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->hd.stream_id != s->stream_id) return 0;
  if (name_is(name, namelen, ":status")) {
    int st = 0;
    for (size_t i = 0; i < valuelen && i < 3; i++)
      st = st * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
    s->http_status = st;
  } else if (name_is(name, namelen, "content-type")) {
    snprintf(s->content_type, sizeof s->content_type, "%.*s",
             (int)(valuelen < 100 ? valuelen : 100), (const char *)value);
  } else if (name_is(name, namelen, "grpc-status")) {
    long code = 0;
    for (size_t i = 0; i < valuelen && i < 9; i++) {
      if (value[i] < '0' || value[i] > '9') {
        code = 2; /* grpc-go: a malformed grpc-status is an Unknown/Internal error */
        break;
      }
      code = code * 10 + (value[i] - '0');
    }
    s->grpc_status = code;
  } else if (name_is(name, namelen, "grpc-message")) {
    free(s->grpc_message);
    s->grpc_message = percent_decode(value, valuelen < 4096 ? valuelen : 4096);
  }
  return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t stream_id, const uint8_t *data,
                   size_t len, void *user)
{
  (void)ng;
  (void)flags;
  struct local_h2c_sess *s = user;
  if (stream_id != s->stream_id) return 0;
  if (s->data.len + len > 5 + LOCAL_H2C_MAX_MESSAGE) {
    s->data_too_big = true;
    return 0;
  }
  buf_append(&s->data, data, len);
  return 0;
}

static int on_frame(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
  (void)ng;
  struct local_h2c_sess *s = user;
  if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK) && s->ping) {
    sess_result(s, true, "HTTP2 ping was successful");
  } else if (frame->hd.type == NGHTTP2_GOAWAY && s->ping) {
    char why[128];
    snprintf(why, sizeof why, "http2: server sent GOAWAY with error code %s",
             nghttp2_http2_strerror(frame->goaway.error_code));
    conn_error(s, why);
  }
  return 0;
}

/* The call's stream ended: the result from what came back (grpc-go's order of checks). */
static void grpc_finish(struct local_h2c_sess *s, uint32_t error_code)
{
  char tmp[256];
  if (s->http_status == 0) {
    snprintf(tmp, sizeof tmp, "stream terminated by RST_STREAM with error code: %s",
             nghttp2_http2_strerror(error_code));
    rpc_error(s, error_code == NGHTTP2_REFUSED_STREAM ? 14 : 13, tmp);
    return;
  }
  if (s->http_status != 200) {
    /* grpc-go's HTTP status to code mapping */
    long code = 2;
    switch (s->http_status) {
    case 400: code = 13; break;
    case 401: code = 16; break;
    case 403: code = 7; break;
    case 404: code = 12; break;
    case 429: case 502: case 503: case 504: code = 14; break;
    }
    snprintf(tmp, sizeof tmp, "unexpected HTTP status code received from server: %d",
             s->http_status);
    rpc_error(s, code, tmp);
    return;
  }
  if (strncmp(s->content_type, "application/grpc", 16) != 0 ||
      (s->content_type[16] != '\0' && s->content_type[16] != '+' && s->content_type[16] != ';')) {
    snprintf(tmp, sizeof tmp, "transport: received unexpected content-type \"%s\"",
             s->content_type);
    rpc_error(s, 13, tmp);
    return;
  }
  if (s->grpc_status < 0) {
    if (error_code != NGHTTP2_NO_ERROR) {
      snprintf(tmp, sizeof tmp, "stream terminated by RST_STREAM with error code: %s",
               nghttp2_http2_strerror(error_code));
      rpc_error(s, 13, tmp);
    } else {
      rpc_error(s, 13, "server closed the stream without sending trailers");
    }
    return;
  }
  if (s->grpc_status != 0) {
    rpc_error(s, s->grpc_status, s->grpc_message ? s->grpc_message : "");
    return;
  }
  if (s->data_too_big) {
    snprintf(tmp, sizeof tmp, "grpc: received message larger than max (%u)",
             LOCAL_H2C_MAX_MESSAGE);
    rpc_error(s, 8, tmp);
    return;
  }
  const uint8_t *d = (const uint8_t *)s->data.data;
  if (s->data.len < 5) {
    rpc_error(s, 13, "grpc: server returned no response message");
    return;
  }
  uint32_t mlen = (uint32_t)d[1] << 24 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 8 | d[4];
  if (d[0] != 0) {
    rpc_error(s, 13, "grpc: compressed flag set with identity or empty encoding");
    return;
  }
  if (mlen != s->data.len - 5) {
    rpc_error(s, 13, "grpc: malformed response message framing");
    return;
  }
  int64_t status;
  if (local__h2c_health_status(d + 5, mlen, &status) != 0) {
    rpc_error(s, 13, "grpc: failed to unmarshal the received message: proto: cannot parse "
                     "invalid wire-format data");
    return;
  }
  if (status != 1) {
    sess_result(s, false, "gRPC %s serving status: %s", s->label,
                serving_status_name(status, tmp, sizeof tmp));
    return;
  }
  sess_result(s, true, "gRPC check %s: success", s->label);
}

static int on_close(nghttp2_session *ng, int32_t stream_id, uint32_t error_code, void *user)
{
  (void)ng;
  struct local_h2c_sess *s = user;
  if (stream_id == s->stream_id && !s->ping) grpc_finish(s, error_code);
  return 0;
}

static ssize_t body_read(nghttp2_session *ng, int32_t stream_id, uint8_t *out, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
  (void)ng;
  (void)stream_id;
  (void)src;
  struct local_h2c_sess *s = user;
  size_t n = s->body_len - s->body_off;
  if (n > len) n = len;
  memcpy(out, s->body + s->body_off, n);
  s->body_off += n;
  if (s->body_off == s->body_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

struct local_h2c_sess *local__h2c_sess_new(const char *authority, const char *label,
                                           const char *service, bool ping)
{
  struct local_h2c_sess *s = xcalloc(1, sizeof *s);
  s->ping = ping;
  s->label = xstrdup(label);
  s->grpc_status = -1;
  buf_init(&s->data);
  nghttp2_session_callbacks *cbs;
  if (nghttp2_session_callbacks_new(&cbs) != 0) abort(); /* only fails on OOM */
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
  int rv = nghttp2_session_client_new(&s->ng, cbs, s);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) abort();
  /* The preface (magic) goes out with this first SETTINGS frame. No server push. */
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                 {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024}};
  nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
  if (ping) {
    uint8_t opaque[8] = {'c', 'o', 'n', 'c', 'o', 'r', 'd', '!'};
    nghttp2_submit_ping(s->ng, NGHTTP2_FLAG_NONE, opaque);
    return s;
  }
  /* HealthCheckRequest{service}: field 1, length-delimited, after gRPC's 5-byte prefix. */
  size_t slen = strlen(service);
  if (slen > MAX_SERVICE) slen = MAX_SERVICE;
  s->body = xmalloc(5 + 1 + 5 + slen);
  size_t n = 5;
  if (slen) {
    s->body[n++] = 0x0a;
    for (size_t v = slen;; v >>= 7) {
      s->body[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
      if (v <= 0x7f) break;
    }
    memcpy(s->body + n, service, slen);
    n += slen;
  }
  size_t mlen = n - 5;
  s->body[0] = 0;
  s->body[1] = (uint8_t)(mlen >> 24);
  s->body[2] = (uint8_t)(mlen >> 16);
  s->body[3] = (uint8_t)(mlen >> 8);
  s->body[4] = (uint8_t)mlen;
  s->body_len = n;
  nghttp2_nv hdrs[] = {
      NV(":method", "POST"),
      NV(":scheme", "http"),
      NV(":path", HEALTH_PATH),
      NV(":authority", authority),
      NV("content-type", "application/grpc"),
      NV("te", "trailers"),
      NV("user-agent", "Concord gRPC health check"),
  };
  nghttp2_data_provider prd = {.source = {.ptr = s}, .read_callback = body_read};
  s->stream_id = nghttp2_submit_request(s->ng, NULL, hdrs, sizeof hdrs / sizeof hdrs[0], &prd, s);
  if (s->stream_id < 0) conn_error(s, nghttp2_strerror(s->stream_id));
  return s;
}

void local__h2c_sess_free(struct local_h2c_sess *s)
{
  if (!s) return;
  nghttp2_session_del(s->ng);
  free(s->label);
  free(s->body);
  free(s->grpc_message);
  buf_free(&s->data);
  free(s->output);
  free(s);
}

/* The session ended (protocol error, GOAWAY) without a result. */
static void sess_check_over(struct local_h2c_sess *s)
{
  if (s->done) return;
  if (!nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng))
    conn_error(s, s->ping ? "http2: client connection lost"
                          : "error reading server preface: http2: protocol error");
}

int local__h2c_sess_recv(struct local_h2c_sess *s, const uint8_t *data, size_t len)
{
  if (s->done) return -1;
  if (len > LOCAL_H2C_MAX_READ - s->read_total) {
    conn_error(s, "http2: the server sent more than this client reads");
    return -1;
  }
  s->read_total += len;
  ssize_t rv = nghttp2_session_mem_recv(s->ng, data, len);
  if (rv < 0) {
    conn_error(s, nghttp2_strerror((int)rv));
    return -1;
  }
  sess_check_over(s);
  return s->done ? -1 : 0;
}

void local__h2c_sess_send(struct local_h2c_sess *s, struct buf *out)
{
  for (;;) {
    const uint8_t *p;
    ssize_t n = nghttp2_session_mem_send(s->ng, &p);
    if (n < 0) {
      conn_error(s, nghttp2_strerror((int)n));
      return;
    }
    if (n == 0) break;
    buf_append(out, p, (size_t)n);
  }
  sess_check_over(s);
}

void local__h2c_sess_eof(struct local_h2c_sess *s)
{
  if (s->ping) conn_error(s, "unexpected EOF");
  else rpc_error(s, 14, "error reading from server: EOF");
}

bool local__h2c_sess_result(const struct local_h2c_sess *s, bool *passing, const char **output)
{
  if (!s->done) return false;
  *passing = s->passing;
  *output = s->output;
  return true;
}

/* ---- the transport ---- */

struct local_h2c {
  local_h2c_cb cb; /* NULL once cancelled */
  void *arg;
  struct local_h2c_sess *sess;
  char *label; /* owned */
  bool ping, done, connected, tcp_open, want_tls;
  int pending; /* handles and requests whose callbacks are still to come */
  uv_timer_t timer;
  uv_tcp_t tcp;
  uv_connect_t conn;
  uv_getaddrinfo_t gai;
  char host[256];
  char raddr[128];
  char early_err[400]; /* a lookup that failed inside start, reported from the timer */
  /* TLS (req.tls): the socket's bytes go through memory BIOs; the session's bytes wait until
   * the handshake is done. All owned; NULL without TLS. */
  SSL_CTX *ctx;
  SSL *ssl;
  BIO *rbio, *wbio; /* network -> ssl, ssl -> network (owned by ssl) */
  bool handshook, skip_verify;
  char server_name[256];
};

struct h2c_write {
  uv_write_t req;
  char *data; /* owned */
};

static void h2c_unref(struct local_h2c *h)
{
  if (--h->pending > 0) return;
  if (h->ssl) SSL_free(h->ssl); /* frees the BIOs too */
  if (h->ctx) SSL_CTX_free(h->ctx);
  local__h2c_sess_free(h->sess);
  free(h->label);
  free(h);
}

static void h2c_closed(uv_handle_t *hd)
{
  h2c_unref(hd->data);
}

static void h2c_finish(struct local_h2c *h, bool passing, const char *output)
{
  if (h->done) return;
  h->done = true;
  if (h->cb) h->cb(h->arg, passing, output);
  h->cb = NULL;
  uv_timer_stop(&h->timer);
  uv_close((uv_handle_t *)&h->timer, h2c_closed);
  if (h->tcp_open) uv_close((uv_handle_t *)&h->tcp, h2c_closed);
  h->tcp_open = false;
}

/* Reports the session's result if it has one. */
static bool h2c_maybe_done(struct local_h2c *h)
{
  bool passing;
  const char *out;
  if (!local__h2c_sess_result(h->sess, &passing, &out)) return false;
  h2c_finish(h, passing, out);
  return true;
}

/* Dialing failed: the words of each check. */
static void h2c_dial_error(struct local_h2c *h, const char *err)
{
  struct buf b = BUF_INIT;
  if (h->ping)
    buf_printf(&b, "Failed to dial to %s: %s", h->label, err);
  else
    buf_printf(&b, "rpc error: code = Unavailable desc = connection error: desc = \"transport: "
                   "Error while dialing: %s\"", err);
  h2c_finish(h, false, b.data);
  buf_free(&b);
}

static void h2c_written(uv_write_t *req, int status)
{
  struct h2c_write *w = (struct h2c_write *)req;
  struct local_h2c *h = req->data;
  free(w->data);
  free(w);
  if (status < 0 && status != UV_ECANCELED && !h->done) {
    char why[160];
    snprintf(why, sizeof why, "write tcp %s: %s", h->raddr, uv_strerror(status));
    if (h->ping) {
      struct buf b = BUF_INIT;
      buf_printf(&b, "HTTP2 ping failed: %s", why);
      h2c_finish(h, false, b.data);
      buf_free(&b);
    } else {
      struct buf b = BUF_INIT;
      buf_printf(&b, "rpc error: code = Unavailable desc = connection error: desc = \"%s\"", why);
      h2c_finish(h, false, b.data);
      buf_free(&b);
    }
  }
  h2c_unref(h);
}

/* Writes out's bytes to the socket (out is emptied). */
static void h2c_write_raw(struct local_h2c *h, struct buf *out)
{
  if (out->len && h->tcp_open) {
    struct h2c_write *w = xcalloc(1, sizeof *w);
    size_t len;
    w->data = buf_steal(out, &len);
    w->req.data = h;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    h->pending++;
    int rv = uv_write(&w->req, (uv_stream_t *)&h->tcp, &b, 1, h2c_written);
    if (rv != 0) {
      h->pending--;
      free(w->data);
      free(w);
      char why[160];
      snprintf(why, sizeof why, "write tcp %s: %s", h->raddr, uv_strerror(rv));
      h2c_dial_error(h, why);
    }
  }
  buf_free(out);
}

/* What OpenSSL has for the network goes out. */
static void tls_pump_out(struct local_h2c *h)
{
  struct buf out = BUF_INIT;
  char tmp[16384];
  int n;
  while ((n = BIO_read(h->wbio, tmp, sizeof tmp)) > 0) buf_append(&out, tmp, (size_t)n);
  h2c_write_raw(h, &out);
}

/* Sends whatever the session has queued (over TLS once the handshake is done). */
static void h2c_flush(struct local_h2c *h)
{
  if (h->ssl && !h->handshook) return; /* the session's bytes wait in nghttp2 */
  struct buf out = BUF_INIT;
  local__h2c_sess_send(h->sess, &out);
  if (h->ssl) {
    if (out.len && SSL_write(h->ssl, out.data, (int)out.len) <= 0) {
      buf_free(&out);
      h2c_dial_error(h, "tls: write failed");
      return;
    }
    buf_free(&out);
    tls_pump_out(h);
  } else {
    h2c_write_raw(h, &out);
  }
  h2c_maybe_done(h);
}

/* The handshake failed: Go's words where there are some. */
static void tls_failed(struct local_h2c *h)
{
  char why[512];
  long vr = h->ssl ? SSL_get_verify_result(h->ssl) : X509_V_OK; /* NULL: set-up failed */
  unsigned long e = ERR_peek_last_error();
  if (vr != X509_V_OK)
    snprintf(why, sizeof why, "tls: failed to verify certificate: x509: %s",
             X509_verify_cert_error_string(vr));
  else if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER)
    snprintf(why, sizeof why, "tls: first record does not look like a TLS handshake");
  else if (e)
    snprintf(why, sizeof why, "tls: handshake failure: %s", ERR_reason_error_string(e));
  else
    snprintf(why, sizeof why, "tls: handshake failure: EOF");
  ERR_clear_error();
  struct buf b = BUF_INIT;
  if (h->ping)
    buf_printf(&b, "Failed to dial to %s: %s", h->label, why);
  else
    buf_printf(&b, "rpc error: code = Unavailable desc = connection error: desc = \"transport: "
                   "authentication handshake failed: %s\"", why);
  h2c_finish(h, false, b.data);
  buf_free(&b);
}

/* Bytes from the socket through OpenSSL: the handshake first, then into the session. */
static void tls_input(struct local_h2c *h, const char *data, size_t len)
{
  BIO_write(h->rbio, data, (int)len);
  if (!h->handshook) {
    int rv = SSL_do_handshake(h->ssl);
    if (rv != 1) {
      int err = SSL_get_error(h->ssl, rv);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        tls_pump_out(h);
        return;
      }
      tls_failed(h);
      return;
    }
    h->handshook = true;
    tls_pump_out(h);
  }
  char tmp[16384];
  for (;;) {
    int n = SSL_read(h->ssl, tmp, sizeof tmp);
    if (n > 0) {
      if (local__h2c_sess_recv(h->sess, (const uint8_t *)tmp, (size_t)n) != 0) break;
      continue;
    }
    int err = SSL_get_error(h->ssl, n);
    if (err == SSL_ERROR_ZERO_RETURN) local__h2c_sess_eof(h->sess);
    else if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
      conn_error(h->sess, "tls: read failed");
    ERR_clear_error();
    break;
  }
}

/* After the TCP connect: a client SSL with ALPN h2, SNI and the host check as Go's. */
static int tls_start(struct local_h2c *h)
{
  h->ctx = SSL_CTX_new(TLS_client_method());
  if (!h->ctx) return -1;
  SSL_CTX_set_min_proto_version(h->ctx, TLS1_2_VERSION);
  if (!h->skip_verify) SSL_CTX_set_default_verify_paths(h->ctx);
  SSL_CTX_set_verify(h->ctx, h->skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
  static const unsigned char alpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(h->ctx, alpn, sizeof alpn);
  h->ssl = SSL_new(h->ctx);
  if (!h->ssl) return -1;
  h->rbio = BIO_new(BIO_s_mem());
  h->wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(h->ssl, h->rbio, h->wbio);
  SSL_set_connect_state(h->ssl);
  struct in6_addr a6;
  bool is_ip = inet_pton(AF_INET, h->server_name, &a6) == 1 ||
               inet_pton(AF_INET6, h->server_name, &a6) == 1;
  if (!is_ip) SSL_set_tlsext_host_name(h->ssl, h->server_name); /* Go sends no SNI for IPs */
  if (!h->skip_verify) {
    X509_VERIFY_PARAM *p = SSL_get0_param(h->ssl);
    if (is_ip) X509_VERIFY_PARAM_set1_ip_asc(p, h->server_name);
    else X509_VERIFY_PARAM_set1_host(p, h->server_name, 0);
  }
  int rv = SSL_do_handshake(h->ssl);
  int err = SSL_get_error(h->ssl, rv);
  if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return -1;
  tls_pump_out(h);
  return 0;
}

static void h2c_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *b)
{
  (void)hd;
  (void)suggested;
  b->base = xmalloc(16384);
  b->len = 16384;
}

static void h2c_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
  struct local_h2c *h = st->data;
  if (h->done) {
    free(b->base);
    return;
  }
  if (nread > 0) {
    if (h->ssl) tls_input(h, b->base, (size_t)nread);
    else local__h2c_sess_recv(h->sess, (const uint8_t *)b->base, (size_t)nread);
    free(b->base);
    if (h->done) return;
    if (!h2c_maybe_done(h)) h2c_flush(h);
    return;
  }
  free(b->base);
  if (nread == 0) return;
  if (nread == UV_EOF && h->ssl && !h->handshook) {
    tls_failed(h);
    return;
  } else if (nread == UV_EOF) {
    local__h2c_sess_eof(h->sess);
  } else {
    char why[160];
    snprintf(why, sizeof why, "read tcp %s: %s", h->raddr, uv_strerror((int)nread));
    conn_error(h->sess, why);
  }
  h2c_maybe_done(h);
}

static void h2c_connected(uv_connect_t *c, int status)
{
  struct local_h2c *h = c->data;
  if (!h->done && status < 0) {
    char err[300];
    snprintf(err, sizeof err, "dial tcp %s: connect: %s", h->raddr, uv_strerror(status));
    h2c_dial_error(h, err);
  } else if (!h->done) {
    h->connected = true;
    uv_read_start((uv_stream_t *)&h->tcp, h2c_alloc, h2c_read);
    if (h->want_tls && tls_start(h) != 0) tls_failed(h);
    else h2c_flush(h);
  }
  h2c_unref(h); /* the connect request */
}

static void h2c_addr_name(const struct sockaddr *sa, char *out, size_t outlen)
{
  char ip[64] = "";
  if (sa->sa_family == AF_INET6) {
    uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof ip);
    snprintf(out, outlen, "[%s]:%d", ip, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
  } else {
    uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof ip);
    snprintf(out, outlen, "%s:%d", ip, ntohs(((const struct sockaddr_in *)sa)->sin_port));
  }
}

static void h2c_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
  struct local_h2c *h = req->data;
  if (h->done || status < 0 || !ai) {
    if (!h->done) {
      char err[400];
      snprintf(err, sizeof err, "dial tcp: lookup %s: %s", h->host,
               status == UV_EAI_NONAME || status == UV_EAI_NODATA ? "no such host"
                                                                  : uv_strerror(status));
      h2c_dial_error(h, err);
    }
    if (ai) uv_freeaddrinfo(ai);
    h2c_unref(h);
    return;
  }
  h2c_addr_name(ai->ai_addr, h->raddr, sizeof h->raddr);
  uv_tcp_init(h->timer.loop, &h->tcp);
  h->tcp.data = h;
  h->tcp_open = true;
  h->pending++; /* the tcp handle */
  h->conn.data = h;
  h->pending++; /* the connect request */
  int rv = uv_tcp_connect(&h->conn, &h->tcp, ai->ai_addr, h2c_connected);
  uv_freeaddrinfo(ai);
  if (rv != 0) {
    h->pending--;
    char err[300];
    snprintf(err, sizeof err, "dial tcp %s: %s", h->raddr, uv_strerror(rv));
    h2c_dial_error(h, err);
  }
  h2c_unref(h); /* the getaddrinfo request */
}

static void h2c_timeout(uv_timer_t *t)
{
  struct local_h2c *h = t->data;
  if (h->early_err[0]) {
    h2c_dial_error(h, h->early_err);
    return;
  }
  if (h->ping) {
    if (!h->connected) {
      char err[300];
      snprintf(err, sizeof err, "dial tcp %s: i/o timeout", h->raddr[0] ? h->raddr : h->label);
      h2c_dial_error(h, err);
    } else {
      h2c_finish(h, false, "HTTP2 ping failed: context deadline exceeded");
    }
    return;
  }
  h2c_finish(h, false, "rpc error: code = DeadlineExceeded desc = context deadline exceeded");
}

struct local_h2c *local__h2c_start(uv_loop_t *loop, const struct local_h2c_req *req,
                                   local_h2c_cb cb, void *arg)
{
  struct local_h2c *h = xcalloc(1, sizeof *h);
  h->cb = cb;
  h->arg = arg;
  h->ping = req->ping;
  h->label = xstrdup(req->label);
  snprintf(h->host, sizeof h->host, "%s", req->host);
  h->want_tls = req->tls;
  h->skip_verify = req->tls_skip_verify;
  snprintf(h->server_name, sizeof h->server_name, "%s",
           req->tls_server_name && *req->tls_server_name ? req->tls_server_name : req->host);
  char authority[400];
  bool v6 = strchr(req->host, ':') != NULL;
  snprintf(authority, sizeof authority, "%s%s%s:%s", v6 ? "[" : "", req->host, v6 ? "]" : "",
           req->port);
  h->sess = local__h2c_sess_new(authority, req->label, req->service ? req->service : "",
                                req->ping);
  uv_timer_init(loop, &h->timer);
  h->timer.data = h;
  h->pending = 1; /* the timer */
  uv_timer_start(&h->timer, h2c_timeout, req->timeout_ms ? req->timeout_ms : 1, 0);
  struct addrinfo hints = {0};
  hints.ai_socktype = SOCK_STREAM;
  h->gai.data = h;
  h->pending++;
  int rv = uv_getaddrinfo(loop, &h->gai, h2c_resolved, req->host, req->port, &hints);
  if (rv != 0) {
    h->pending--;
    snprintf(h->early_err, sizeof h->early_err, "dial tcp: lookup %s: %s", h->host,
             uv_strerror(rv));
    /* cb must come from the loop, not from inside start: the timer reports it. */
    uv_timer_start(&h->timer, h2c_timeout, 0, 0);
  }
  return h;
}

void local__h2c_cancel(struct local_h2c *h)
{
  if (!h) return;
  h->cb = NULL;
  h2c_finish(h, false, NULL);
}
