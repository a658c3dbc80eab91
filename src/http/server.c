/* server.c -- connections, timeouts, dispatch and answers of the HTTP/1.1 server.
 *
 * One libuv loop. A connection owns a uv_tcp_t, a request parser (http/parser.c) and at most
 * one request in flight: pipelined requests are answered strictly in order by not parsing
 * the next one until the current one is answered. Bytes that arrive meanwhile are kept in
 * `in`, up to PENDING_MAX, past which reading stops until the request is answered. Otherwise
 * the connection keeps reading while a request is in flight, because a blocking query may
 * be parked for ten minutes and a client that hangs up must be noticed at once: then the
 * request's cancel callback runs and everything is freed.
 *
 * Memory of an idle or parked connection: reads land in one per-server buffer and are parsed
 * straight from it; only unparsed leftovers are copied into the connection, and the parser's
 * scratch is freed after each request. A parked connection is the uv_tcp_t, this struct with
 * its parser, and the request (one block from the parser plus a small wrapper).
 *
 * Timeouts need no timer per connection: there are three durations (idle, read, linger), so
 * the connections waiting on each form a FIFO ordered by deadline, and one server timer
 * fires for the earliest head. No timeout runs while a request is in flight.
 *
 * Closing: a connection's memory is freed only in its uv_close callback. A response that
 * ends a connection (Connection: close, HTTP/1.0, an error) is followed by a write shutdown
 * and a short linger that discards input, so the client reads the response instead of a
 * reset (as Go's closeWriteAndWait does). */
#include "http/server.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <sys/resource.h>

#include "http/json.h"
#include "http/parser.h"
#include "http/response.h"
#include "http/router.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

/* One read buffer per server: libuv calls alloc and read back to back for one stream. */
#define READ_BUF_SIZE (64 * 1024)
/* Unparsed bytes held behind a request in flight before the connection stops reading. */
#define PENDING_MAX (64 * 1024)
/* Queued response bytes past which further pipelined requests wait for the client to read. */
#define WRITE_HIGH (1024 * 1024)
/* How long a closing connection keeps draining input after its last response (Go: 500 ms). */
#define LINGER_MS 500
/* Bodies up to this size are copied behind the head so a response is a single write. */
#define COALESCE_MAX (16 * 1024)
#define LISTEN_BACKLOG 511

enum { TQ_IDLE, TQ_READ, TQ_LINGER, TQ_COUNT, TQ_NONE = TQ_COUNT };

struct conn;

struct tqueue {
  struct conn *head, *tail;
};

struct listener {
  uv_tcp_t tcp;
  struct http_server *s;
  struct listener *next;
};

struct req {
  struct http_request pub;
  struct http_msg *msg;
  struct conn *conn;   /* NULL once the connection is gone */
  struct buf hdrs;     /* handler headers, "Name: value\r\n" each */
  char *peer;          /* remote address text, made on first use */
  http_cancel_fn cancel;
  void *cancel_arg;
  bool keep_alive;
  bool in_cancel;      /* the cancel callback is running; the canceller frees */
  /* In-process requests (http_server_inject) have no connection: the answer goes to done. */
  bool injected;
  struct http_server *srv;          /* injected only */
  struct req *iprev, *inext;        /* the server's injected requests */
  http_inject_done_fn inject_done;  /* NULL once cancelled: the answer is dropped */
  void *inject_arg;
  bool has_ctype, has_date;
  bool streaming;      /* http_stream_start sent the head: chunks follow */
  const char *route;   /* the matched route's path (lives as long as the server), or NULL */
  uint64_t start_ns;   /* uv_hrtime when it was parsed, for the observer */
};

struct conn {
  uv_tcp_t tcp;
  struct http_server *s;
  struct conn *prev, *next;   /* all connections of the server */
  struct conn *tprev, *tnext; /* the timeout queue it is on */
  uint64_t deadline;
  uint8_t tq;
  bool linked;           /* on the server's list (accepted and counted) */
  bool closing;          /* uv_close called */
  bool served;           /* at least one request taken */
  bool no_more;          /* the last request ends the connection: parse nothing more */
  bool close_after_write;
  bool draining;         /* shut down for writing, discarding input until EOF or linger */
  bool read_paused;
  bool eof;
  bool in_parse;         /* inside conn_parse: answers must not recurse into parsing */
  unsigned writes_pending;
  size_t write_bytes;
  struct req *req;       /* the request in flight */
  struct buf in;         /* received bytes not parsed yet */
  struct http_parser parser;
};

struct wreq {
  uv_write_t w;
  struct conn *c;
  char *a, *b;
  size_t len;
};

struct http_server {
  uv_loop_t *loop;
  struct http_server_config cfg;
  struct http_router router;
  struct listener *listeners;
  struct conn *conns;
  struct tqueue tq[TQ_COUNT];
  uv_timer_t timer;
  uint64_t timer_due;   /* when the timer fires, 0 if stopped */
  char *rbuf;
  struct http_server_stats stats;
  unsigned handles;     /* open handles: listeners, connections, the timer */
  bool closing;
  void (*close_cb)(void *arg);
  void *close_arg;
  struct req *injected;  /* in-process requests not answered yet */
  http_dispatch_hook_fn hook;
  void *hook_arg;
  http_observer_fn observer;
  void *observer_arg;
};

static void conn_close(struct conn *c);
static void conn_drain(struct conn *c);
static void conn_finish(struct conn *c);

/* ---- configuration ---- */

void http_server_config_defaults(struct http_server_config *cfg)
{
  cfg->max_header_bytes = 1 << 20; /* Go's http.DefaultMaxHeaderBytes */
  cfg->max_body_bytes = 1 << 20;
  cfg->max_connections = 10000;
  cfg->idle_timeout_ms = 90 * 1000;
  cfg->read_timeout_ms = 30 * 1000;
  cfg->big_body_path = NULL;
  cfg->big_body_bytes = 0;
}

/* ---- timeout queues ---- */

static unsigned tq_duration(const struct http_server *s, int q)
{
  switch (q) {
  case TQ_IDLE: return s->cfg.idle_timeout_ms;
  case TQ_READ: return s->cfg.read_timeout_ms;
  default: return LINGER_MS;
  }
}

static void tq_remove(struct conn *c)
{
  if (c->tq == TQ_NONE) return;
  struct tqueue *q = &c->s->tq[c->tq];
  if (c->tprev) c->tprev->tnext = c->tnext; else q->head = c->tnext;
  if (c->tnext) c->tnext->tprev = c->tprev; else q->tail = c->tprev;
  c->tprev = c->tnext = NULL;
  c->tq = TQ_NONE;
}

static void on_timer(uv_timer_t *t);

static void timer_arm(struct http_server *s, uint64_t due)
{
  if (s->closing) return;
  if (s->timer_due && s->timer_due <= due) return;
  uint64_t now = uv_now(s->loop);
  uv_timer_start(&s->timer, on_timer, due > now ? due - now : 0, 0);
  s->timer_due = due;
}

/* Puts c at the tail of queue q with a fresh deadline (a zero duration means no timeout). */
static void tq_add(struct conn *c, int q)
{
  tq_remove(c);
  struct http_server *s = c->s;
  unsigned ms = tq_duration(s, q);
  if (ms == 0) return;
  c->deadline = uv_now(s->loop) + ms;
  c->tq = (uint8_t)q;
  struct tqueue *tq = &s->tq[q];
  c->tprev = tq->tail;
  c->tnext = NULL;
  if (tq->tail) tq->tail->tnext = c; else tq->head = c;
  tq->tail = c;
  timer_arm(s, c->deadline);
}

static void conn_send_error(struct conn *c, int status, const char *msg);

static void on_timer(uv_timer_t *t)
{
  struct http_server *s = t->data;
  s->timer_due = 0;
  uint64_t now = uv_now(s->loop);
  for (int q = 0; q < TQ_COUNT; q++) {
    struct conn *c;
    while ((c = s->tq[q].head) && c->deadline <= now) {
      tq_remove(c);
      if (q == TQ_READ && http_parser_started(&c->parser)) {
        /* a request that did not arrive in time (slow client or slow-loris) */
        conn_send_error(c, 408, "Request Timeout");
      } else {
        conn_close(c);
      }
    }
  }
  for (int q = 0; q < TQ_COUNT; q++)
    if (s->tq[q].head) timer_arm(s, s->tq[q].head->deadline);
}

/* Chooses the timeout for what the connection is waiting for now. */
static void conn_update_timeout(struct conn *c)
{
  if (c->closing || c->draining) return;
  if (c->req) {
    tq_remove(c); /* handlers may park a request for minutes */
  } else if (!c->served || http_parser_started(&c->parser) || c->in.len) {
    if (c->tq != TQ_READ) tq_add(c, TQ_READ);
  } else {
    if (c->tq != TQ_IDLE) tq_add(c, TQ_IDLE);
  }
}

/* ---- server life ---- */

struct http_server *http_server_new(uv_loop_t *loop, const struct http_server_config *cfg)
{
  struct http_server *s = xcalloc(1, sizeof *s);
  s->loop = loop;
  if (cfg)
    s->cfg = *cfg;
  else
    http_server_config_defaults(&s->cfg);
  http__router_init(&s->router);
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  s->handles = 1;
  s->rbuf = xmalloc(READ_BUF_SIZE);
  return s;
}

static void server_handle_closed(struct http_server *s)
{
  if (--s->handles > 0 || !s->closing) return;
  void (*cb)(void *) = s->close_cb;
  void *arg = s->close_arg;
  http__router_free(&s->router);
  free(s->rbuf);
  free(s);
  if (cb) cb(arg);
}

static void on_listener_close(uv_handle_t *h)
{
  struct listener *l = h->data;
  struct http_server *s = l->s;
  free(l);
  server_handle_closed(s);
}

static void on_timer_close(uv_handle_t *h) { server_handle_closed(h->data); }

void http_server_close(struct http_server *s, void (*cb)(void *arg), void *arg)
{
  if (s->closing) return;
  s->closing = true;
  s->close_cb = cb;
  s->close_arg = arg;
  for (struct listener *l = s->listeners, *next; l; l = next) {
    next = l->next;
    uv_close((uv_handle_t *)&l->tcp, on_listener_close);
  }
  s->listeners = NULL;
  for (struct conn *c = s->conns; c; c = c->next) conn_close(c);
  /* in-process requests end like connections do: the handler's cancel runs, and whoever
   * injected them hears status 0 (no answer) */
  while (s->injected) {
    struct req *r = s->injected;
    http_inject_done_fn done = r->inject_done;
    void *darg = r->inject_arg;
    http_injected_cancel((struct http_injected *)r);
    if (done) done(darg, 0, NULL, NULL, 0, NULL, 0);
  }
  uv_close((uv_handle_t *)&s->timer, on_timer_close);
}

void http_server_stats(const struct http_server *s, struct http_server_stats *out)
{
  *out = s->stats;
}

int http_server_port(const struct http_server *s)
{
  if (!s->listeners) return -1;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getsockname(&s->listeners->tcp, (struct sockaddr *)&ss, &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -1;
}

void http_server_route(struct http_server *s, unsigned methods, const char *path,
                       http_handler_fn fn, void *arg)
{
  http__router_add(&s->router, methods, path, fn, arg);
}

/* ---- requests ---- */

static void req_free(struct req *r)
{
  http_msg_free(r->msg);
  buf_free(&r->hdrs);
  free(r->peer);
  free(r);
}

static struct req *REQ(struct http_request *pub) { return (struct req *)pub; }

/* Detaches the request in flight from a connection that is going away: its cancel callback
 * runs and it is freed, or, without one, it waits for the handler's answer. */
static void conn_cancel_req(struct conn *c)
{
  struct req *r = c->req;
  if (!r) return;
  c->req = NULL;
  r->conn = NULL;
  c->s->stats.requests_in_flight--;
  if (r->cancel) {
    r->in_cancel = true;
    r->cancel(&r->pub, r->cancel_arg);
    req_free(r);
  }
}

void http_request_on_cancel(struct http_request *pub, http_cancel_fn fn, void *arg)
{
  struct req *r = REQ(pub);
  r->cancel = fn;
  r->cancel_arg = arg;
}

const char *http_query(const struct http_request *pub, const char *name)
{
  const struct http_msg *m = ((const struct req *)pub)->msg;
  for (size_t i = 0; i < m->nparams; i++)
    if (strcmp(m->params[i].name, name) == 0) return m->params[i].value;
  return NULL;
}

bool http_query_has(const struct http_request *pub, const char *name)
{
  return http_query(pub, name) != NULL;
}

size_t http_query_all(const struct http_request *pub, const char *name, const char **out,
                      size_t max)
{
  const struct http_msg *m = ((const struct req *)pub)->msg;
  size_t n = 0;
  for (size_t i = 0; i < m->nparams; i++) {
    if (strcmp(m->params[i].name, name) == 0) {
      if (n < max) out[n] = m->params[i].value;
      n++;
    }
  }
  return n;
}

const char *http_header(const struct http_request *pub, const char *name)
{
  return http_msg_header(((const struct req *)pub)->msg, name);
}

const char *http_remote_addr(const struct http_request *pub)
{
  struct req *r = REQ((struct http_request *)pub);
  if (r->peer) return r->peer;
  if (!r->conn) return "";
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char text[64] = "";
  if (uv_tcp_getpeername(&r->conn->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET)
      uv_ip4_name((struct sockaddr_in *)&ss, text, sizeof text);
    else if (ss.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&ss, text, sizeof text);
  }
  r->peer = xstrdup(text);
  return r->peer;
}

static bool is_token_char(unsigned char c)
{
  return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

void http_set_header(struct http_request *pub, const char *name, const char *value)
{
  struct req *r = REQ(pub);
  size_t nlen = strlen(name);
  if (nlen == 0) return;
  for (size_t i = 0; i < nlen; i++)
    if (!is_token_char((unsigned char)name[i])) return;
  if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0 ||
      strcasecmp(name, "Connection") == 0)
    return;
  if (strcasecmp(name, "Content-Type") == 0) r->has_ctype = true;
  if (strcasecmp(name, "Date") == 0) r->has_date = true;
  buf_append(&r->hdrs, name, nlen);
  buf_puts(&r->hdrs, ": ");
  size_t at = r->hdrs.len;
  buf_puts(&r->hdrs, value);
  /* a CR or LF would let a value smuggle in headers of its own */
  for (size_t i = at; i < r->hdrs.len; i++)
    if (r->hdrs.data[i] == '\r' || r->hdrs.data[i] == '\n') r->hdrs.data[i] = ' ';
  buf_puts(&r->hdrs, "\r\n");
}

/* ---- in-process requests ---- */

static void injected_unlink(struct req *r)
{
  struct http_server *s = r->srv;
  if (r->iprev) r->iprev->inext = r->inext; else if (s->injected == r) s->injected = r->inext;
  if (r->inext) r->inext->iprev = r->iprev;
  r->iprev = r->inext = NULL;
  r->inject_done = NULL;
  s->stats.requests_in_flight--;
}

static void route_request(struct http_server *s, struct req *r);

int http_server_inject(struct http_server *s, const char *raw, size_t len, const char *peer,
                       http_inject_done_fn done, void *arg, struct http_injected **out)
{
  if (s->closing) return CC_ESHUTDOWN;
  struct http_parser p;
  http_parser_init(&p, s->cfg.max_header_bytes, s->cfg.max_body_bytes);
  http_parser_set_big_body(&p, s->cfg.big_body_path, s->cfg.big_body_bytes);
  size_t used = 0;
  enum http_parse_result pr = http_parser_feed(&p, raw, len, &used);
  if (pr != HTTP_PARSE_DONE) {
    http_parser_free(&p);
    return pr == HTTP_PARSE_ERROR ? CC_EINVAL : CC_ETOOBIG;
  }
  struct http_msg *m = http_parser_take(&p);
  http_parser_free(&p);
  struct req *r = xcalloc(1, sizeof *r);
  r->msg = m;
  r->injected = true;
  r->srv = s;
  r->inject_done = done;
  r->inject_arg = arg;
  r->start_ns = uv_hrtime();
  r->peer = xstrdup(peer ? peer : "");
  r->pub.method = m->method;
  r->pub.method_name = m->method_name;
  r->pub.path = m->path;
  r->pub.tail = "";
  r->pub.raw_query = m->raw_query;
  r->pub.body = m->body;
  r->pub.body_len = m->body_len;
  r->inext = s->injected;
  if (s->injected) s->injected->iprev = r;
  s->injected = r;
  s->stats.requests_total++;
  s->stats.requests_in_flight++;
  if (out) *out = (struct http_injected *)r;
  route_request(s, r);
  return 0;
}

void http_injected_cancel(struct http_injected *h)
{
  struct req *r = (struct req *)h;
  if (!r->inject_done) return; /* answered or cancelled already */
  injected_unlink(r);
  if (r->cancel) {
    r->in_cancel = true;
    r->cancel(&r->pub, r->cancel_arg);
    req_free(r);
  }
  /* else the handler still answers later; respond() drops that answer and frees */
}

size_t http_header_count(const struct http_request *pub)
{
  return ((const struct req *)pub)->msg->nheaders;
}

void http_header_at(const struct http_request *pub, size_t i, const char **name,
                    const char **value)
{
  const struct http_msg *m = ((const struct req *)pub)->msg;
  *name = m->headers[i].name;
  *value = m->headers[i].value;
}

void http_server_set_dispatch_hook(struct http_server *s, http_dispatch_hook_fn fn, void *arg)
{
  s->hook = fn;
  s->hook_arg = arg;
}

void http_server_set_observer(struct http_server *s, http_observer_fn fn, void *arg)
{
  s->observer = fn;
  s->observer_arg = arg;
}

/* Consul's debug line for every request, with ?token= values hidden as Consul does. */
static void req_log(const struct req *r, uint64_t elapsed_ns)
{
  struct buf url = BUF_INIT;
  buf_puts(&url, r->msg->path);
  const char *q = r->msg->raw_query;
  if (*q) {
    buf_putc(&url, '?');
    while (*q) {
      size_t len = strcspn(q, "&");
      if (len >= 6 && strncmp(q, "token=", 6) == 0) buf_puts(&url, "token=<hidden>");
      else buf_append(&url, q, len);
      q += len;
      if (*q) buf_putc(&url, *q++);
    }
  }
  char lat[32];
  if (elapsed_ns < 1000000)
    snprintf(lat, sizeof lat, "%.3fµs", (double)elapsed_ns / 1e3);
  else
    snprintf(lat, sizeof lat, "%.6gms", (double)elapsed_ns / 1e6);
  log_debug("agent.http", "Request finished: method=%s url=%s from=%s latency=%s",
            r->msg->method_name, url.data, r->injected ? r->peer : http_remote_addr(&r->pub),
            lat);
  buf_free(&url);
}

static void req_observe(struct http_server *s, const struct req *r, int status)
{
  if (!s) return;
  uint64_t elapsed = uv_hrtime() - r->start_ns;
  if (log_enabled(LOG_DEBUG)) req_log(r, elapsed);
  if (s->observer) s->observer(s->observer_arg, r->msg->method, r->route, status, elapsed);
}

/* ---- writing ---- */

static void on_write(uv_write_t *w, int status);

/* Writes a (alen bytes) then b (blen bytes), taking both (malloc'd; b may be NULL). On a
 * write error the connection is closed. */
static void conn_write(struct conn *c, char *a, size_t alen, char *b, size_t blen)
{
  uv_buf_t bufs[2] = {uv_buf_init(a, (unsigned)alen), uv_buf_init(b ? b : a, (unsigned)blen)};
  unsigned nbufs = blen ? 2 : 1;
  size_t total = alen + (blen ? blen : 0);
  uv_buf_t *first = bufs;
  if (c->writes_pending == 0) {
    int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
    if (n >= 0 && (size_t)n == total) {
      free(a);
      free(b);
      return;
    }
    if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS) {
      free(a);
      free(b);
      conn_close(c);
      return;
    }
    if (n > 0) {
      total -= (size_t)n;
      size_t skip = (size_t)n;
      while (skip >= first->len) {
        skip -= first->len;
        first++;
        nbufs--;
      }
      first->base += skip;
      first->len -= skip;
    }
  }
  struct wreq *wr = xmalloc(sizeof *wr);
  wr->c = c;
  wr->a = a;
  wr->b = b;
  wr->len = total;
  int rv = uv_write(&wr->w, (uv_stream_t *)&c->tcp, first, nbufs, on_write);
  if (rv < 0) {
    free(a);
    free(b);
    free(wr);
    conn_close(c);
    return;
  }
  c->writes_pending++;
  c->write_bytes += total;
}

static void on_write(uv_write_t *w, int status)
{
  struct wreq *wr = (struct wreq *)w;
  struct conn *c = wr->c;
  bool was_high = c->write_bytes >= WRITE_HIGH;
  c->writes_pending--;
  c->write_bytes -= wr->len;
  free(wr->a);
  free(wr->b);
  free(wr);
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (c->writes_pending == 0 && c->close_after_write) {
    conn_finish(c);
  } else if (was_high && c->write_bytes < WRITE_HIGH) {
    conn_drain(c);
  }
}

/* Sends the complete response for the request in flight and moves on: the next pipelined
 * request, or idle, or closing. Takes body (malloc'd, may be NULL when len is 0). */
static void respond(struct req *r, int status, const char *ctype, char *body, size_t len)
{
  struct conn *c = r->conn;
  req_observe(r->injected ? r->srv : c ? c->s : NULL, r, status);
  if (r->injected) {
    http_inject_done_fn done = r->inject_done;
    if (done) {
      injected_unlink(r);
      if (status < 100 || status > 999) status = 500;
      if (r->msg->method == HTTP_M_HEAD || http__status_bodiless(status)) len = 0;
      done(r->inject_arg, status, r->has_ctype ? NULL : ctype, r->hdrs.data ? r->hdrs.data : "",
           r->hdrs.len, len ? body : NULL, len);
      if (len == 0) free(body);
    } else {
      free(body);
    }
    if (!r->in_cancel) req_free(r);
    return;
  }
  if (!c) {
    /* the client is gone: drop the answer; the canceller frees a request it is cancelling */
    free(body);
    if (!r->in_cancel) req_free(r);
    return;
  }
  struct http_server *s = c->s;
  c->req = NULL;
  r->conn = NULL;
  s->stats.requests_in_flight--;
  bool keep = r->keep_alive && !s->closing;
  bool head = r->msg->method == HTTP_M_HEAD;
  if (status < 100 || status > 999) status = 500;

  struct buf out = BUF_INIT;
  struct http__head h = {
    .status = status,
    .content_type = r->has_ctype ? NULL : ctype,
    .extra = r->hdrs.data,
    .extra_len = r->hdrs.len,
    .body_len = len,
    .has_date = r->has_date,
    .close = !keep,
    .keep_alive_10 = keep && r->msg->http_minor == 0,
  };
  /* a body the client did not ask for (HEAD) or that the status forbids is not sent */
  bool send_body = !head && !http__status_bodiless(status) && len > 0;
  buf_reserve(&out, 160 + r->hdrs.len + (send_body && len <= COALESCE_MAX ? len : 0));
  http__head_write(&h, &out);
  req_free(r);
  if (send_body && len <= COALESCE_MAX) {
    buf_append(&out, body, len);
    free(body);
    body = NULL;
    send_body = false;
  }
  size_t hlen;
  char *hdata = buf_steal(&out, &hlen);
  if (send_body) {
    conn_write(c, hdata, hlen, body, len);
  } else {
    free(body);
    conn_write(c, hdata, hlen, NULL, 0);
  }
  if (c->closing) return;
  if (!keep) {
    conn_finish(c);
  } else {
    conn_drain(c);
  }
}

void http_respond(struct http_request *pub, int status, const char *content_type,
                  const void *body, size_t len)
{
  char *copy = len ? xmemdup(body, len) : NULL;
  respond(REQ(pub), status, content_type, copy, len);
}

void http_respond_buf(struct http_request *pub, int status, const char *content_type,
                      struct buf *body)
{
  size_t len;
  char *data = buf_steal(body, &len);
  respond(REQ(pub), status, content_type, data, len);
}

void http_respond_json(struct http_request *pub, int status, json_t *j)
{
  struct buf b = BUF_INIT;
  bool pretty = http_query_has(pub, "pretty");
  http_json_encode(j, pretty, &b);
  if (pretty) buf_putc(&b, '\n'); /* Consul appends one to indented output only */
  json_decref(j);
  http_respond_buf(pub, status, "application/json", &b);
}

void http_respond_error(struct http_request *pub, int status, const char *fmt, ...)
{
  struct buf b = BUF_INIT;
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(&b, fmt, ap);
  va_end(ap);
  http_respond_buf(pub, status, "text/plain; charset=utf-8", &b);
}

/* ---- streaming ---- */

int http_stream_start(struct http_request *pub, int status, const char *content_type)
{
  struct req *r = REQ(pub);
  struct conn *c = r->conn;
  if (r->injected || !c || r->streaming) return CC_EINVAL;
  req_observe(c->s, r, status);
  r->streaming = true;
  c->no_more = true; /* the stream ends the connection: nothing after it is parsed */
  struct buf out = BUF_INIT;
  struct http__head h = {
    .status = status,
    .content_type = r->has_ctype ? NULL : content_type,
    .extra = r->hdrs.data,
    .extra_len = r->hdrs.len,
    .has_date = r->has_date,
    .chunked = true,
    .close = true,
  };
  http__head_write(&h, &out);
  buf_free(&r->hdrs);
  size_t len;
  char *data = buf_steal(&out, &len);
  conn_write(c, data, len, NULL, 0);
  return c->closing ? CC_EIO : 0;
}

int http_stream_write(struct http_request *pub, const void *data, size_t len)
{
  struct req *r = REQ(pub);
  struct conn *c = r->conn;
  if (!r->streaming || !c) return CC_EINVAL;
  if (len == 0) return 0;
  struct buf out = BUF_INIT;
  buf_reserve(&out, len + 24);
  buf_printf(&out, "%zx\r\n", len);
  buf_append(&out, data, len);
  buf_puts(&out, "\r\n");
  size_t n;
  char *chunk = buf_steal(&out, &n);
  conn_write(c, chunk, n, NULL, 0);
  return c->closing ? CC_EIO : 0;
}

size_t http_stream_queued(const struct http_request *pub)
{
  const struct req *r = (const struct req *)pub;
  return r->conn ? r->conn->write_bytes : 0;
}

void http_stream_end(struct http_request *pub)
{
  struct req *r = REQ(pub);
  struct conn *c = r->conn;
  if (!c) {
    if (!r->in_cancel) req_free(r);
    return;
  }
  c->req = NULL;
  r->conn = NULL;
  c->s->stats.requests_in_flight--;
  req_free(r);
  static const char last[] = "0\r\n\r\n";
  conn_write(c, xmemdup(last, sizeof last - 1), sizeof last - 1, NULL, 0);
  if (!c->closing) conn_finish(c);
}

/* ---- connections ---- */

static void on_conn_close(uv_handle_t *h)
{
  struct conn *c = h->data;
  struct http_server *s = c->s;
  if (c->linked) {
    if (c->prev) c->prev->next = c->next; else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->stats.connections_open--;
  }
  http_parser_free(&c->parser);
  buf_free(&c->in);
  free(c);
  server_handle_closed(s);
}

/* Closes at once: cancels the request in flight, drops queued writes. */
static void conn_close(struct conn *c)
{
  if (c->closing) return;
  c->closing = true;
  tq_remove(c);
  conn_cancel_req(c);
  uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
  struct conn *c = sr->data;
  free(sr);
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  c->draining = true;
  tq_add(c, TQ_LINGER);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);

/* Ends the connection gracefully once its queued responses are written. */
static void conn_finish(struct conn *c)
{
  if (c->closing || c->draining) return;
  c->no_more = true;
  if (c->writes_pending) {
    /* a client that never reads its answer is dropped after the idle timeout */
    c->close_after_write = true;
    tq_add(c, TQ_IDLE);
    return;
  }
  c->close_after_write = false;
  if (c->eof) {
    conn_close(c);
    return;
  }
  uv_shutdown_t *sr = xmalloc(sizeof *sr);
  sr->data = c;
  if (uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    free(sr);
    conn_close(c);
    return;
  }
  tq_remove(c);
  if (c->read_paused) {
    /* keep reading (and discarding) so the client's last bytes don't turn into a reset */
    c->read_paused = false;
    buf_free(&c->in);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) conn_close(c);
  }
}

/* Answers a request the parser refused, and ends the connection. */
static void conn_send_error(struct conn *c, int status, const char *msg)
{
  struct buf out = BUF_INIT;
  struct buf body = BUF_INIT;
  buf_printf(&body, "%d %s", status, msg);
  struct http__head h = {
    .status = status,
    .content_type = "text/plain; charset=utf-8",
    .body_len = body.len,
    .close = true,
  };
  http__head_write(&h, &out);
  buf_append(&out, body.data, body.len);
  buf_free(&body);
  size_t len;
  char *data = buf_steal(&out, &len);
  c->no_more = true;
  conn_write(c, data, len, NULL, 0);
  if (!c->closing) conn_finish(c);
}

static bool conn_can_process(const struct conn *c)
{
  return !c->closing && !c->draining && !c->no_more && !c->req && !c->close_after_write &&
         c->write_bytes < WRITE_HIGH;
}

static void route_request(struct http_server *s, struct req *r)
{
  struct http_msg *m = r->msg;
  struct http_request *pub = &r->pub;
  if (m->options_star) {
    /* Go's server answers "OPTIONS *" itself */
    if (m->method == HTTP_M_OPTIONS)
      http_respond(pub, 200, NULL, NULL, 0);
    else
      http_respond_error(pub, 400, "Bad Request");
    return;
  }
  const struct http_route *rt;
  size_t tail_off;
  struct buf target = BUF_INIT;
  enum http_match mt = http__router_match(&s->router, m->path, &rt, &tail_off, &target);
  if (mt == HTTP_MATCH_REDIRECT) {
    /* Location in URL form: the clean path escaped as Go's URL.EscapedPath does */
    struct buf loc = BUF_INIT;
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < target.len; i++) {
      unsigned char ch = (unsigned char)target.data[i];
      if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          strchr("-._~$&+,/:;=@", ch)) {
        buf_putc(&loc, (char)ch);
      } else {
        char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
        buf_append(&loc, e, 3);
      }
    }
    if (*m->raw_query) {
      buf_putc(&loc, '?');
      buf_puts(&loc, m->raw_query);
    }
    buf_free(&target);
    http_set_header(pub, "Location", loc.data);
    if (m->method == HTTP_M_GET || m->method == HTTP_M_HEAD) {
      struct buf body = BUF_INIT;
      buf_puts(&body, "<a href=\"");
      for (const char *p = loc.data; *p; p++) {
        switch (*p) {
        case '&': buf_puts(&body, "&amp;"); break;
        case '<': buf_puts(&body, "&lt;"); break;
        case '>': buf_puts(&body, "&gt;"); break;
        case '"': buf_puts(&body, "&#34;"); break;
        case '\'': buf_puts(&body, "&#39;"); break;
        default: buf_putc(&body, *p);
        }
      }
      buf_puts(&body, "\">Moved Permanently</a>.\n\n");
      buf_free(&loc);
      http_respond_buf(pub, 301, "text/html; charset=utf-8", &body);
    } else {
      buf_free(&loc);
      http_respond(pub, 301, NULL, NULL, 0);
    }
    return;
  }
  buf_free(&target);
  if (mt == HTTP_MATCH_NONE) {
    /* Consul's index handler: 404 with no body for any path it does not serve */
    http_respond(pub, 404, NULL, NULL, 0);
    return;
  }
  if (m->query_invalid) {
    /* Consul's wrap(): url.ParseQuery failed -> 500 with no body */
    http_respond(pub, 500, NULL, NULL, 0);
    return;
  }
  if (!(rt->methods & m->method)) {
    struct buf allow = BUF_INIT;
    http__router_allow(rt->methods, &allow);
    http_set_header(pub, "Allow", allow.data);
    buf_free(&allow);
    if (m->method == HTTP_M_OPTIONS)
      http_respond(pub, 200, NULL, NULL, 0);
    else
      http_respond_error(pub, 405, "method %s not allowed", m->method_name);
    return;
  }
  r->pub.tail = m->path + tail_off;
  r->route = rt->path;
  if (s->hook && s->hook(pub, s->hook_arg)) return;
  rt->fn(pub, rt->arg);
}

static void conn_dispatch(struct conn *c, struct http_msg *m)
{
  struct http_server *s = c->s;
  struct req *r = xcalloc(1, sizeof *r);
  r->msg = m;
  r->conn = c;
  r->keep_alive = m->keep_alive;
  r->pub.method = m->method;
  r->pub.method_name = m->method_name;
  r->pub.path = m->path;
  r->pub.tail = "";
  r->pub.raw_query = m->raw_query;
  r->pub.body = m->body;
  r->pub.body_len = m->body_len;
  r->start_ns = uv_hrtime();
  c->req = r;
  c->served = true;
  if (!m->keep_alive) c->no_more = true;
  s->stats.requests_total++;
  s->stats.requests_in_flight++;
  tq_remove(c);
  route_request(s, r);
}

/* Parses and dispatches requests from data while the connection may take one. Returns how
 * many bytes were used; the rest must be kept for later. */
static size_t conn_parse(struct conn *c, const char *data, size_t len)
{
  size_t off = 0;
  c->in_parse = true;
  while (off < len && conn_can_process(c)) {
    size_t used;
    enum http_parse_result pr = http_parser_feed(&c->parser, data + off, len - off, &used);
    off += used;
    if (http_parser_take_continue(&c->parser)) {
      static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      conn_write(c, xmemdup(cont, sizeof cont - 1), sizeof cont - 1, NULL, 0);
      if (c->closing) break;
    }
    if (pr == HTTP_PARSE_AGAIN) break;
    if (pr == HTTP_PARSE_ERROR) {
      const char *msg;
      int status = http_parser_error(&c->parser, &msg);
      conn_send_error(c, status, msg);
      break;
    }
    conn_dispatch(c, http_parser_take(&c->parser));
  }
  c->in_parse = false;
  return off;
}

/* Resumes after an answer or a drained write queue: parses what was held back, restarts
 * reading, and picks the timeout. */
static void conn_drain(struct conn *c)
{
  if (c->in_parse || c->closing) return;
  if (c->in.len && conn_can_process(c)) {
    size_t used = conn_parse(c, c->in.data, c->in.len);
    if (c->closing) return;
    buf_consume(&c->in, used);
  }
  if (c->in.len == 0) buf_free(&c->in);
  if (c->read_paused && c->in.len < PENDING_MAX && !c->draining) {
    c->read_paused = false;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
      conn_close(c);
      return;
    }
  }
  conn_update_timeout(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
  struct conn *c = h->data;
  b->base = c->s->rbuf;
  b->len = READ_BUF_SIZE;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
  struct conn *c = st->data;
  if (c->closing || nread == 0) return;
  if (nread < 0) {
    /* EOF or an error: the client hung up. A request in flight is cancelled; responses
     * already queued are still written if the client only half-closed. */
    if (nread != UV_EOF || c->req || c->draining || !c->writes_pending) {
      conn_close(c);
      return;
    }
    c->eof = true;
    conn_finish(c);
    return;
  }
  if (c->draining || c->no_more) return; /* nothing more will be answered: discard */
  size_t n = (size_t)nread;
  if (c->in.len == 0 && conn_can_process(c)) {
    size_t used = conn_parse(c, b->base, n);
    if (c->closing) return;
    if (used < n && !c->no_more && !c->draining) buf_append(&c->in, b->base + used, n - used);
  } else {
    buf_append(&c->in, b->base, n);
    conn_drain(c);
    if (c->closing) return;
  }
  if (c->in.len >= PENDING_MAX && !c->read_paused) {
    uv_read_stop(st);
    c->read_paused = true;
  }
  conn_update_timeout(c);
}

static void on_connection(uv_stream_t *ls, int status)
{
  struct listener *l = ls->data;
  struct http_server *s = l->s;
  if (status < 0) {
    log_warn("agent.http", "accept failed: %s", uv_strerror(status));
    return;
  }
  if (s->closing) return;
  struct conn *c = xcalloc(1, sizeof *c);
  c->s = s;
  c->tq = TQ_NONE;
  uv_tcp_init(s->loop, &c->tcp);
  c->tcp.data = c;
  s->handles++;
  http_parser_init(&c->parser, s->cfg.max_header_bytes, s->cfg.max_body_bytes);
  http_parser_set_big_body(&c->parser, s->cfg.big_body_path, s->cfg.big_body_bytes);
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0 ||
      s->stats.connections_open >= s->cfg.max_connections) {
    /* over the limit: closed at once, before anything is read */
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_conn_close);
    return;
  }
  c->linked = true;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->stats.connections_open++;
  s->stats.connections_total++;
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
    return;
  }
  tq_add(c, TQ_READ);
}

/* Lets the process hold as many sockets as its hard limit allows: the default soft limit
 * (1024) is far below the 10,000 connections a server is expected to carry. */
static void raise_nofile(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      log_warn("agent.http", "could not raise the open-file limit");
  }
}

/* libuv writes with write(2), so a client that resets the connection while its answer is
 * being written raises SIGPIPE, whose default action kills the process. Go's runtime ignores
 * it for sockets too; here it is ignored process-wide unless someone installed a handler. */
static void ignore_sigpipe(void)
{
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

int http_server_listen(struct http_server *s, const char *ip, int port, char *errbuf,
                       size_t errlen)
{
  struct sockaddr_storage ss;
  if (port < 0 || port > 65535 ||
      (uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss) != 0 &&
       uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&ss) != 0)) {
    snprintf(errbuf, errlen, "Invalid HTTP address %s:%d.", ip, port);
    return UV_EINVAL;
  }
  raise_nofile();
  ignore_sigpipe();
  struct listener *l = xcalloc(1, sizeof *l);
  l->s = s;
  uv_tcp_init(s->loop, &l->tcp);
  l->tcp.data = l;
  s->handles++;
  int rv = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
  if (rv == 0) rv = uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_connection);
  if (rv != 0) {
    snprintf(errbuf, errlen, "Could not listen for HTTP on %s:%d: %s.", ip, port,
             uv_strerror(rv));
    uv_close((uv_handle_t *)&l->tcp, on_listener_close);
    return rv;
  }
  struct listener **tail = &s->listeners;
  while (*tail) tail = &(*tail)->next;
  *tail = l;
  return 0;
}
