/* httpc.c -- the HTTP check client (see httpc.h): resolve, connect, write one request, parse
 * the response with llhttp, follow redirects, all on the loop with one deadline.
 *
 * Lifetime: the client owns a timer and, per attempt, a TCP handle and a getaddrinfo request.
 * `pending` counts what is still open; the client is freed when the result has been delivered
 * (or the caller cancelled) and pending reaches zero. A getaddrinfo in flight cannot always be
 * cancelled, so its callback may come after the result: it then only drops its reference. */
#include "local/httpc.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "local/tls.h"

#define HTTPC_MAX_REDIRECTS 10
#define HTTPC_MAX_HEADER_BYTES (64 * 1024)

struct local_httpc {
  uv_loop_t *loop;
  local_httpc_cb cb;
  void *arg;
  bool cancelled, delivered;
  int pending;
  uv_timer_t timer;
  /* the request */
  char *method, *orig_method, *url, *body, *op; /* op: "Get", as Go's url.Error prints it */
  char *orig_url;
  json_t *header;
  size_t max_body;
  bool no_redirects;
  int redirects;
  char *tls_server_name; /* NULL: the URL's host */
  bool tls_skip_verify;
  /* the current attempt */
  int attempt; /* bumped per attempt, so late callbacks of an old one are ignored */
  char host[1024], port[16], path[8192], hostport[1100];
  bool tls;              /* the current URL is https */
  bool tls_ready;        /* handshake done and peer verified; request queued */
  struct local_tls *tls_s; /* the session over tcp; NULL when none */
  uv_tcp_t *tcp; /* NULL when none open */
  uv_connect_t conn;
  uv_write_t wreq;
  struct buf out;
  llhttp_t parser;
  llhttp_settings_t settings;
  bool headers_done, complete, in_location, in_capture, last_was_value, captured;
  char *capture_name; /* req.capture_header */
  struct buf status_text, field, location, resp_body, capture;
  size_t body_total, header_bytes;
  char dial_addr[128];
  char *deferred_error; /* an error found while starting, delivered from the loop */
};

static void maybe_free(struct local_httpc *h)
{
  if (h->pending > 0 || !(h->delivered || h->cancelled)) return;
  free(h->method);
  free(h->orig_method);
  free(h->url);
  free(h->orig_url);
  free(h->body);
  free(h->op);
  free(h->tls_server_name);
  free(h->deferred_error);
  json_decref(h->header);
  buf_free(&h->out);
  buf_free(&h->status_text);
  buf_free(&h->field);
  buf_free(&h->location);
  buf_free(&h->resp_body);
  buf_free(&h->capture);
  free(h->capture_name);
  free(h);
}

static void handle_closed(uv_handle_t *hd)
{
  struct local_httpc *h = hd->data;
  if (hd != (uv_handle_t *)&h->timer) free(hd);
  h->pending--;
  maybe_free(h);
}

static void close_tcp(struct local_httpc *h)
{
  local__tls_free(h->tls_s);
  h->tls_s = NULL;
  h->tls_ready = false;
  if (!h->tcp) return;
  uv_close((uv_handle_t *)h->tcp, handle_closed);
  h->tcp = NULL;
}

static void fail(struct local_httpc *h, const char *fmt, const char *detail);

static void finish(struct local_httpc *h, int code, const char *error)
{
  if (h->delivered) return;
  if (!error && code < 100) {
    /* llhttp takes "000"; the result contract keeps status_code 0 for failures, so say so. */
    char d[16];
    snprintf(d, sizeof d, "%03d", code < 0 ? 0 : code);
    fail(h, "net/http: HTTP/1.x transport connection broken: malformed HTTP status code \"%s\"",
         d);
    return;
  }
  h->delivered = true;
  close_tcp(h);
  uv_timer_stop(&h->timer);
  uv_close((uv_handle_t *)&h->timer, handle_closed);
  if (!h->cancelled) {
    /* The circular buffer: the last max_body bytes. */
    size_t keep = h->resp_body.len > h->max_body ? h->max_body : h->resp_body.len;
    const char *b = h->resp_body.data ? h->resp_body.data + h->resp_body.len - keep : "";
    char *body = xmemdup(b, keep);
    struct buf status = BUF_INIT;
    if (code) buf_printf(&status, "%d %s", code, h->status_text.data ? h->status_text.data : "");
    struct local_httpc_result res = {code, code ? status.data : "", body, keep, error,
                                     h->body_total, h->captured ? h->capture.data : NULL};
    if (res.captured_header == NULL && h->captured) res.captured_header = "";
    h->cb(h->arg, &res);
    free(body);
    buf_free(&status);
  }
  maybe_free(h);
}

static void fail(struct local_httpc *h, const char *fmt, const char *detail)
{
  char msg[2048];
  char inner[1536];
  snprintf(inner, sizeof inner, fmt, detail ? detail : "");
  snprintf(msg, sizeof msg, "%s \"%s\": %s", h->op, h->url, inner);
  finish(h, 0, msg);
}

static void on_timeout(uv_timer_t *t)
{
  struct local_httpc *h = t->data;
  if (h->deferred_error) {
    finish(h, 0, h->deferred_error);
    return;
  }
  if (h->headers_done) {
    /* Go reports the response with whatever body arrived (io.Copy failed, logged). */
    finish(h, llhttp_get_status_code(&h->parser), NULL);
    return;
  }
  fail(h, "context deadline exceeded (Client.Timeout exceeded while awaiting headers)%s", "");
}

/* ---- URL ---- */

/* Splits an absolute http or https URL. Returns 0, or -1 with Go's complaint in err. */
static int parse_url(struct local_httpc *h, const char *url, char *err, size_t errlen)
{
  const char *p = strstr(url, "://");
  if (!p) {
    snprintf(err, errlen, "unsupported protocol scheme \"\"");
    return -1;
  }
  size_t slen = (size_t)(p - url);
  h->tls = slen == 5 && strncasecmp(url, "https", 5) == 0;
  if (!h->tls && !(slen == 4 && strncasecmp(url, "http", 4) == 0)) {
    snprintf(err, errlen, "unsupported protocol scheme \"%.*s\"", (int)(slen > 64 ? 64 : slen), url);
    return -1;
  }
  const char *auth = p + 3;
  size_t alen = strcspn(auth, "/?#");
  const char *rest = auth + alen;
  const char *at = memchr(auth, '@', alen); /* userinfo is dropped (no basic auth here) */
  if (at) {
    alen -= (size_t)(at + 1 - auth);
    auth = at + 1;
  }
  if (alen == 0 || alen >= sizeof h->hostport) {
    snprintf(err, errlen, "http: no Host in request URL");
    return -1;
  }
  memcpy(h->hostport, auth, alen);
  h->hostport[alen] = '\0';
  const char *port = NULL;
  if (auth[0] == '[') {
    const char *close = memchr(auth, ']', alen);
    if (!close) {
      snprintf(err, errlen, "parse \"%s\": missing ']' in host", url);
      return -1;
    }
    snprintf(h->host, sizeof h->host, "%.*s", (int)(close - auth - 1), auth + 1);
    if (close + 1 < auth + alen && close[1] == ':') port = close + 2;
  } else {
    const char *colon = memchr(auth, ':', alen);
    snprintf(h->host, sizeof h->host, "%.*s", (int)((colon ? colon : auth + alen) - auth), auth);
    if (colon) port = colon + 1;
  }
  size_t plen = port ? (size_t)(auth + alen - port) : 0;
  if (port && plen > 0 && plen < sizeof h->port) snprintf(h->port, sizeof h->port, "%.*s", (int)plen, port);
  else snprintf(h->port, sizeof h->port, "%s", h->tls ? "443" : "80");
  for (const char *c = h->port; *c; c++)
    if (*c < '0' || *c > '9') {
      snprintf(err, errlen, "parse \"%s\": invalid port \":%s\" after host", url, h->port);
      return -1;
    }
  size_t rlen = strcspn(rest, "#");
  if (rlen == 0) snprintf(h->path, sizeof h->path, "/");
  else if (rest[0] == '?') snprintf(h->path, sizeof h->path, "/%.*s", (int)rlen, rest);
  else snprintf(h->path, sizeof h->path, "%.*s", (int)rlen, rest);
  return 0;
}

/* ---- response ---- */

static int on_status(llhttp_t *p, const char *at, size_t len)
{
  struct local_httpc *h = p->data;
  if (h->status_text.len + len > 1024) return -1;
  buf_append(&h->status_text, at, len);
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
  struct local_httpc *h = p->data;
  h->header_bytes += len;
  if (h->header_bytes > HTTPC_MAX_HEADER_BYTES) return -1;
  if (h->last_was_value) buf_reset(&h->field);
  h->last_was_value = false;
  buf_append(&h->field, at, len);
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
  struct local_httpc *h = p->data;
  h->header_bytes += len;
  if (h->header_bytes > HTTPC_MAX_HEADER_BYTES) return -1;
  if (!h->last_was_value) {
    h->in_location = h->field.data && strcasecmp(h->field.data, "location") == 0;
    if (h->in_location) buf_reset(&h->location);
    h->in_capture = h->capture_name && h->field.data && strcasecmp(h->field.data, h->capture_name) == 0;
    if (h->in_capture) {
      buf_reset(&h->capture);
      h->captured = true;
    }
  }
  h->last_was_value = true;
  if (h->in_location) buf_append(&h->location, at, len);
  if (h->in_capture) buf_append(&h->capture, at, len);
  return 0;
}

static int on_headers_complete(llhttp_t *p)
{
  struct local_httpc *h = p->data;
  h->headers_done = true;
  return strcmp(h->method, "HEAD") == 0 ? 1 : 0; /* no body follows a HEAD answer */
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
  struct local_httpc *h = p->data;
  h->body_total += len;
  buf_append(&h->resp_body, at, len);
  /* Keep at most twice the cap, then drop the front: amortised O(1) per byte. */
  if (h->resp_body.len > 2 * h->max_body + 4096)
    buf_consume(&h->resp_body, h->resp_body.len - h->max_body);
  return 0;
}

static int on_message_complete(llhttp_t *p)
{
  struct local_httpc *h = p->data;
  h->complete = true;
  return HPE_PAUSED;
}

static void start_attempt(struct local_httpc *h);

/* The response is complete: deliver it, or follow a redirect (Go's http.Client). */
static void response_done(struct local_httpc *h)
{
  int code = llhttp_get_status_code(&h->parser);
  bool redirect = (code == 301 || code == 302 || code == 303 || code == 307 || code == 308) &&
                  h->location.len > 0 && !h->no_redirects;
  if (!redirect) {
    finish(h, code, NULL);
    return;
  }
  if (++h->redirects > HTTPC_MAX_REDIRECTS) {
    fail(h, "stopped after 10 redirects%s", "");
    return;
  }
  char *loc = xstrdup(h->location.data);
  char *next;
  if (strstr(loc, "://")) {
    next = loc;
  } else {
    struct buf u = BUF_INIT;
    buf_printf(&u, "%s://%s%s%s", h->tls ? "https" : "http", h->hostport,
               loc[0] == '/' ? "" : "/", loc);
    next = buf_steal(&u, NULL);
    free(loc);
  }
  free(h->url);
  h->url = next;
  if (code == 301 || code == 302 || code == 303) {
    /* Go turns these into a GET without a body (HEAD stays HEAD). */
    if (strcmp(h->method, "HEAD") != 0) {
      free(h->method);
      h->method = xstrdup("GET");
    }
    free(h->body);
    h->body = NULL;
  }
  close_tcp(h);
  start_attempt(h);
}

static void alloc_cb(uv_handle_t *hd, size_t suggested, uv_buf_t *b)
{
  (void)hd;
  b->base = xmalloc(suggested);
  b->len = suggested;
}

/* Response bytes (plaintext) for llhttp. Returns true when the attempt is over: the result
 * was delivered, or a redirect started another attempt (the caller must stop then). */
static bool consume(struct local_httpc *h, const char *data, size_t len)
{
  llhttp_errno_t e = llhttp_execute(&h->parser, data, len);
  if (e == HPE_PAUSED || h->complete) {
    response_done(h);
    return true;
  }
  if (e != HPE_OK) {
    fail(h, "net/http: HTTP/1.x transport connection broken: malformed HTTP response (%s)",
         llhttp_errno_name(e));
    return true;
  }
  return false;
}

/* The peer closed the stream (TCP EOF, or TLS close_notify). */
static void on_eof(struct local_httpc *h)
{
  llhttp_errno_t e = llhttp_finish(&h->parser);
  if (h->complete || (e == HPE_OK && h->headers_done) || e == HPE_PAUSED) {
    response_done(h);
    return;
  }
  if (!h->headers_done) {
    fail(h, "EOF%s", "");
    return;
  }
  finish(h, llhttp_get_status_code(&h->parser), NULL); /* body cut short: unexpected EOF */
}

/* One write of ciphertext; owns its bytes until the write completes. */
struct httpc_write {
  uv_write_t req;
  struct buf data;
};

static void on_write(uv_write_t *w, int status)
{
  struct local_httpc *h = w->data;
  if (w != &h->wreq) {
    struct httpc_write *hw = (struct httpc_write *)w;
    buf_free(&hw->data);
    free(hw);
  }
  if (status < 0 && status != UV_ECANCELED && !h->delivered && h->tcp)
    fail(h, "write: %s", uv_strerror(status));
}

/* Sends what the TLS session has queued. Returns false when the attempt failed. */
static bool tls_flush(struct local_httpc *h)
{
  struct httpc_write *hw = xcalloc(1, sizeof *hw);
  if (local__tls_take(h->tls_s, &hw->data) == 0) {
    free(hw);
    return true;
  }
  hw->req.data = h;
  uv_buf_t b = uv_buf_init(hw->data.data, (unsigned)hw->data.len);
  int rv = uv_write(&hw->req, (uv_stream_t *)h->tcp, &b, 1, on_write);
  if (rv != 0) {
    buf_free(&hw->data);
    free(hw);
    fail(h, "write: %s", uv_strerror(rv));
    return false;
  }
  return true;
}

/* Moves the TLS session on after new ciphertext: the handshake, then the request (h->out),
 * then decrypted response bytes into llhttp; whatever TLS wants sent goes out. */
static void tls_pump(struct local_httpc *h)
{
  char err[1024];
  if (!h->tls_ready) {
    int rc = local__tls_handshake(h->tls_s, err, sizeof err);
    if (rc < 0) {
      fail(h, "%s", err);
      return;
    }
    if (rc == 0) {
      tls_flush(h);
      return;
    }
    h->tls_ready = true;
    if (local__tls_write(h->tls_s, h->out.data, h->out.len, err, sizeof err) != 0) {
      fail(h, "%s", err);
      return;
    }
  }
  char plain[16384];
  for (;;) {
    int n = local__tls_read(h->tls_s, plain, sizeof plain, err, sizeof err);
    if (n > 0) {
      if (consume(h, plain, (size_t)n)) return;
      continue;
    }
    if (n == -1) {
      on_eof(h);
      return;
    }
    if (n == -2) {
      fail(h, "%s", err);
      return;
    }
    break;
  }
  tls_flush(h);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
  struct local_httpc *h = s->data;
  if (nread > 0 && !h->delivered) {
    if (h->tls_s) {
      local__tls_feed(h->tls_s, b->base, (size_t)nread);
      free(b->base);
      tls_pump(h);
      return;
    }
    bool over = consume(h, b->base, (size_t)nread);
    free(b->base);
    if (over) return;
  } else {
    free(b->base);
  }
  if (nread < 0 && !h->delivered) {
    if (nread == UV_EOF) {
      on_eof(h);
      return;
    }
    fail(h, "read: %s", uv_strerror((int)nread));
  }
}

static void on_connect(uv_connect_t *c, int status)
{
  struct local_httpc *h = c->data;
  if (h->delivered || !h->tcp || c->handle != (uv_stream_t *)h->tcp) return;
  if (status < 0) {
    char d[256];
    snprintf(d, sizeof d, "%s: connect: %s", h->dial_addr, uv_strerror(status));
    fail(h, "dial tcp %s", d);
    return;
  }
  /* The request, as Go writes it: Host, User-Agent, headers, Content-Length. */
  buf_reset(&h->out);
  buf_printf(&h->out, "%s %s HTTP/1.1\r\n", h->method, h->path);
  const char *host = h->hostport;
  bool ua = false, accept = false;
  const char *k;
  json_t *vals;
  if (h->header) {
    json_object_foreach(h->header, k, vals) {
      if (strcasecmp(k, "host") == 0 && json_array_size(vals) > 0 &&
          json_is_string(json_array_get(vals, 0)))
        host = json_string_value(json_array_get(vals, 0));
      if (strcasecmp(k, "user-agent") == 0 && json_array_size(vals)) ua = true;
      if (strcasecmp(k, "accept") == 0 && json_array_size(vals)) accept = true;
    }
  }
  buf_printf(&h->out, "Host: %s\r\n", host);
  if (!ua) buf_puts(&h->out, "User-Agent: Consul Health Check\r\n");
  if (!accept) buf_puts(&h->out, "Accept: text/plain, text/*, */*\r\n");
  if (h->header) {
    json_object_foreach(h->header, k, vals) {
      if (strcasecmp(k, "host") == 0) continue;
      for (size_t i = 0; i < json_array_size(vals); i++) {
        json_t *v = json_array_get(vals, i);
        if (!json_is_string(v)) continue;
        /* Header names and values cannot carry line breaks into the request. */
        if (strpbrk(k, "\r\n:") || strpbrk(json_string_value(v), "\r\n")) continue;
        buf_printf(&h->out, "%s: %s\r\n", k, json_string_value(v));
      }
    }
  }
  size_t blen = h->body ? strlen(h->body) : 0;
  if (blen) buf_printf(&h->out, "Content-Length: %zu\r\n", blen);
  buf_puts(&h->out, "Connection: close\r\nAccept-Encoding: identity\r\n\r\n");
  if (blen) buf_append(&h->out, h->body, blen);
  if (h->tls) {
    /* The request waits in h->out until the handshake is done and the peer verified. */
    char err[1024];
    h->tls_s = local__tls_new(h->host, h->tls_server_name, h->tls_skip_verify, err, sizeof err);
    if (!h->tls_s) {
      fail(h, "%s", err);
      return;
    }
    uv_read_start((uv_stream_t *)h->tcp, alloc_cb, on_read);
    tls_pump(h); /* sends the ClientHello */
    return;
  }
  uv_buf_t b = uv_buf_init(h->out.data, (unsigned)h->out.len);
  h->wreq.data = h;
  if (uv_write(&h->wreq, (uv_stream_t *)h->tcp, &b, 1, on_write) != 0) {
    fail(h, "write failed%s", "");
    return;
  }
  uv_read_start((uv_stream_t *)h->tcp, alloc_cb, on_read);
}

struct gai_ctx {
  struct local_httpc *h;
  int attempt;
  uv_getaddrinfo_t req;
};

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
  struct gai_ctx *g = req->data;
  struct local_httpc *h = g->h;
  h->pending--;
  bool stale = g->attempt != h->attempt || h->delivered || h->cancelled;
  free(g);
  if (stale) {
    if (ai) uv_freeaddrinfo(ai);
    maybe_free(h);
    return;
  }
  if (status < 0 || !ai) {
    char d[1200];
    snprintf(d, sizeof d, "lookup %s: %s", h->host,
             status == UV_EAI_NONAME || status == UV_EAI_NODATA ? "no such host" : uv_strerror(status));
    if (ai) uv_freeaddrinfo(ai);
    fail(h, "dial tcp: %s", d);
    return;
  }
  char ip[64] = "";
  if (ai->ai_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, ip, sizeof ip);
    snprintf(h->dial_addr, sizeof h->dial_addr, "[%s]:%s", ip, h->port);
  } else {
    uv_ip4_name((struct sockaddr_in *)ai->ai_addr, ip, sizeof ip);
    snprintf(h->dial_addr, sizeof h->dial_addr, "%s:%s", ip, h->port);
  }
  h->tcp = xcalloc(1, sizeof *h->tcp);
  uv_tcp_init(h->loop, h->tcp);
  h->tcp->data = h;
  h->pending++;
  h->conn.data = h;
  int rv = uv_tcp_connect(&h->conn, h->tcp, ai->ai_addr, on_connect);
  uv_freeaddrinfo(ai);
  if (rv != 0) {
    char d[256];
    snprintf(d, sizeof d, "%s: connect: %s", h->dial_addr, uv_strerror(rv));
    fail(h, "dial tcp %s", d);
  }
}

/* Like fail(), but from the loop: the callback never runs inside local__httpc_start. */
static void fail_later(struct local_httpc *h, const char *fmt, const char *detail)
{
  char inner[1536];
  struct buf msg = BUF_INIT;
  snprintf(inner, sizeof inner, fmt, detail ? detail : "");
  buf_printf(&msg, "%s \"%s\": %s", h->op, h->url, inner);
  free(h->deferred_error);
  h->deferred_error = buf_steal(&msg, NULL);
  uv_timer_start(&h->timer, on_timeout, 0, 0);
}

static void start_attempt(struct local_httpc *h)
{
  h->attempt++;
  char err[1024];
  if (parse_url(h, h->url, err, sizeof err) != 0) {
    fail_later(h, "%s", err);
    return;
  }
  h->headers_done = h->complete = h->in_location = h->last_was_value = false;
  h->in_capture = h->captured = false;
  h->header_bytes = 0;
  h->body_total = 0;
  buf_reset(&h->capture);
  buf_reset(&h->status_text);
  buf_reset(&h->field);
  buf_reset(&h->location);
  buf_reset(&h->resp_body);
  llhttp_settings_init(&h->settings);
  h->settings.on_status = on_status;
  h->settings.on_header_field = on_header_field;
  h->settings.on_header_value = on_header_value;
  h->settings.on_headers_complete = on_headers_complete;
  h->settings.on_body = on_body;
  h->settings.on_message_complete = on_message_complete;
  llhttp_init(&h->parser, HTTP_RESPONSE, &h->settings);
  h->parser.data = h;
  struct gai_ctx *g = xcalloc(1, sizeof *g);
  g->h = h;
  g->attempt = h->attempt;
  g->req.data = g;
  struct addrinfo hints = {0};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  h->pending++;
  int rv = uv_getaddrinfo(h->loop, &g->req, on_resolved, h->host, h->port, &hints);
  if (rv != 0) {
    h->pending--;
    free(g);
    char d[1200];
    snprintf(d, sizeof d, "lookup %s: %s", h->host, uv_strerror(rv));
    fail_later(h, "dial tcp: %s", d);
  }
}

struct local_httpc *local__httpc_start(uv_loop_t *loop, const struct local_httpc_req *req,
                                       local_httpc_cb cb, void *arg)
{
  struct local_httpc *h = xcalloc(1, sizeof *h);
  h->loop = loop;
  h->cb = cb;
  h->arg = arg;
  h->method = xstrdup(req->method && *req->method ? req->method : "GET");
  h->orig_method = xstrdup(h->method);
  h->url = xstrdup(req->url);
  h->orig_url = xstrdup(req->url);
  h->body = req->body && *req->body ? xstrdup(req->body) : NULL;
  h->header = req->header ? json_deep_copy(req->header) : NULL;
  h->max_body = req->max_body ? req->max_body : 4096;
  h->no_redirects = req->no_redirects;
  h->capture_name = req->capture_header ? xstrdup(req->capture_header) : NULL;
  h->tls_server_name =
      req->tls_server_name && *req->tls_server_name ? xstrdup(req->tls_server_name) : NULL;
  h->tls_skip_verify = req->tls_skip_verify;
  /* Go's url.Error names the method as "Get", "Post"... */
  h->op = xstrdup(h->method);
  for (char *p = h->op + 1; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
  uv_timer_init(loop, &h->timer);
  h->timer.data = h;
  h->pending++;
  uv_timer_start(&h->timer, on_timeout, req->timeout_ms ? req->timeout_ms : 10000, 0);
  start_attempt(h);
  return h;
}

void local__httpc_cancel(struct local_httpc *h)
{
  if (!h || h->cancelled) return;
  h->cancelled = true;
  if (!h->delivered) {
    h->delivered = true;
    close_tcp(h);
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, handle_closed);
  }
  maybe_free(h);
}
