/* server.c -- the DNS engine on libuv: UDP and TCP listeners, forwarding to recursors, the
 * asynchronous upstream for catalog names on agents that have no catalog, and the one for
 * names of other datacenters on servers.
 *
 * The engine does all the DNS; this file only moves bytes. A query waiting for an answer from
 * elsewhere -- recursors or an upstream -- is one struct fwd: same cap, same timer, same
 * relaying and the same TCP ordering; `upstream` says which way it is being answered.
 *
 * UDP is read with recvmmsg (up to UDP_RECV_CHUNKS datagrams a system call) and the replies
 * to one such batch are sent together with sendmmsg: under load the system calls, not the
 * answers, were most of a small query's cost. Memory: a 64 KiB receive buffer for forwards,
 * UDP_RECV_CHUNKS 64 KiB chunks for the listener (libuv's recvmmsg wants whole 64 KiB chunks;
 * only the pages datagrams land in are ever touched), one 64 KiB reply buffer per server
 * (every reply is built and copied out before the next datagram is answered), the batch of
 * replies waiting for sendmmsg, a receive buffer per TCP connection, and a copy of each query
 * being forwarded. Handles are counted so that dns_server_close can free the server only
 * after libuv has closed the last one. */
#define _GNU_SOURCE /* sendmmsg, struct mmsghdr */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dns/server.h"
#include "lib/alloc.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/rand.h"

#define TCP_BUF_MAX (2 * (2 + 65535)) /* a full frame plus the start of the next */
#define TCP_WRITE_QUEUE_MAX (1u << 20) /* stop reading a client that does not read */
#define UDP_PENDING_MAX 256            /* replies queued when the socket was full */
#define UDP_RECV_CHUNKS 16             /* datagrams per recvmmsg */
#define UDP_BATCH 32                   /* replies per sendmmsg */
#define UDP_BATCH_BYTES (128 * 1024)   /* their bytes; a larger reply goes out alone */
#define UPSTREAM_TIMEOUT_MS 5000

struct tcp_conn;
struct fwd;

struct dns_server {
  uv_loop_t *loop;
  struct dns_engine *engine;
  struct dns_server_config cfg;
  struct sockaddr_storage recursors[DNS_MAX_RECURSORS];
  size_t n_recursors;
  unsigned recursor_timeout_ms;
  uv_udp_t udp;
  uv_tcp_t tcp;
  bool udp_open, tcp_open;
  int port;
  unsigned handles; /* open libuv handles that point back here */
  unsigned udp_pending;
  bool closing;
  void (*close_cb)(void *arg);
  void *close_arg;
  struct tcp_conn *conns;
  unsigned n_conns;
  struct fwd *fwds;
  unsigned n_fwds;
  struct dns_upstream up;    /* up.start NULL: no upstream */
  struct dns_upstream dc_up; /* other datacenters' names; dc_up.start NULL: none */
  uint8_t rbuf[65536];
  uint8_t wbuf[DNS_TCP_MAX];
  /* UDP replies answered from one recvmmsg batch, sent by udp_flush at its end. */
  struct {
    unsigned n;
    size_t used;
    struct mmsghdr msg[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    struct sockaddr_storage to[UDP_BATCH];
    uint8_t data[UDP_BATCH_BYTES];
  } ub;
  uint8_t udp_rbuf[UDP_RECV_CHUNKS * 65536];
};

struct tcp_conn {
  struct dns_server *s;
  struct tcp_conn *prev, *next;
  uv_tcp_t h;
  uv_timer_t idle;
  int open; /* handles not yet closed (2, then 0) */
  bool closing, reading;
  bool eof; /* the client sent FIN while a query waited: answer it, then close */
  bool in_process; /* inside conn_process: a forward ending now must not re-enter it */
  struct sockaddr_storage peer;
  uint8_t *buf; /* received bytes not yet answered */
  size_t len, cap;
  struct fwd *fwd; /* a forwarded query in flight: reading waits for it */
};

struct fwd_sock {
  uv_udp_t h;
  struct dns_server *s;
  struct fwd *f; /* NULL once this attempt is over */
};

struct fwd {
  struct dns_server *s;
  struct fwd *prev, *next;
  uv_timer_t timer;
  struct fwd_sock *sock;
  size_t attempt;
  uint16_t client_id, up_id;
  uint8_t *query; /* with up_id in place of the client's ID */
  size_t qlen;
  bool tcp, done;
  struct tcp_conn *conn; /* NULL if the connection went away */
  struct sockaddr_storage client;
  /* Upstream mode: the query keeps the client's ID; up_pending while start has returned 0
   * and no reply came (cancel is owed then); qdata is start's, for cancel; via is s->up or
   * s->dc_up, whichever was started. */
  bool upstream, up_pending;
  void *qdata;
  const struct dns_upstream *via;
  enum dns_scope scope;
  uint16_t udp_size; /* the client's UDP limit, for checking the upstream's reply */
};

static void handle_gone(struct dns_server *s)
{
  if (--s->handles == 0 && s->closing) {
    void (*cb)(void *) = s->close_cb;
    void *arg = s->close_arg;
    free(s);
    if (cb)
      cb(arg);
  }
}

static void on_server_handle_closed(uv_handle_t *h)
{
  handle_gone(h->data);
}

void dns_server_config_defaults(struct dns_server_config *cfg)
{
  cfg->max_tcp_connections = 512;
  cfg->tcp_idle_timeout_ms = 8000;
  cfg->max_forwards = 1024;
}

int dns_parse_recursor(const char *text, struct sockaddr_storage *out)
{
  char host[64];
  int port = 53;
  size_t n = strlen(text);
  memset(out, 0, sizeof *out);
  if (n == 0 || n >= sizeof host)
    return -1;
  const char *colon = strrchr(text, ':');
  if (text[0] == '[') {
    const char *close = strchr(text, ']');
    if (!close || (close[1] != '\0' && close[1] != ':'))
      return -1;
    snprintf(host, sizeof host, "%.*s", (int)(close - text - 1), text + 1);
    if (close[1] == ':')
      port = atoi(close + 2);
  } else if (colon && strchr(text, ':') == colon) { /* one colon: host:port */
    snprintf(host, sizeof host, "%.*s", (int)(colon - text), text);
    port = atoi(colon + 1);
  } else {
    snprintf(host, sizeof host, "%s", text); /* no port, or a bare IPv6 address */
  }
  if (port <= 0 || port > 65535)
    return -1;
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0)
    return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) == 0)
    return 0;
  return -1;
}

struct dns_server *dns_server_new(uv_loop_t *loop, struct dns_engine *engine,
                                  const struct dns_server_config *cfg, char *errbuf,
                                  size_t errlen)
{
  const struct dns_config *dc = dns_engine_config(engine);
  struct dns_server *s = xcalloc(1, sizeof *s);
  s->loop = loop;
  s->engine = engine;
  if (cfg)
    s->cfg = *cfg;
  else
    dns_server_config_defaults(&s->cfg);
  s->port = -1;
  s->recursor_timeout_ms = dc->recursor_timeout_ms ? dc->recursor_timeout_ms : 2000;
  for (size_t i = 0; i < dc->n_recursors && i < DNS_MAX_RECURSORS; i++) {
    if (dns_parse_recursor(dc->recursors[i], &s->recursors[s->n_recursors]) != 0) {
      snprintf(errbuf, errlen, "Invalid recursor address: \"%s\"", dc->recursors[i]);
      free(s);
      return NULL;
    }
    s->n_recursors++;
  }
  return s;
}

/* ---- Replies ---- */

struct udp_send {
  uv_udp_send_t req;
  struct dns_server *s;
  uint8_t data[];
};

static void on_udp_sent(uv_udp_send_t *req, int status)
{
  struct udp_send *u = (struct udp_send *)req;
  (void)status;
  u->s->udp_pending--;
  free(u);
}

static void udp_reply(struct dns_server *s, const struct sockaddr *to, const uint8_t *p,
                      size_t len)
{
  if (!s->udp_open || s->closing)
    return;
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
  int rc = uv_udp_try_send(&s->udp, &b, 1, to);
  if (rc >= 0)
    return;
  if ((rc != UV_EAGAIN && rc != UV_ENOSYS) || s->udp_pending >= UDP_PENDING_MAX) {
    log_debug("dns", "dropped a UDP reply: %s", uv_strerror(rc));
    return;
  }
  struct udp_send *u = xmalloc(sizeof *u + len);
  u->s = s;
  memcpy(u->data, p, len);
  b = uv_buf_init((char *)u->data, (unsigned)len);
  if (uv_udp_send(&u->req, &s->udp, &b, 1, to, on_udp_sent) != 0) {
    free(u);
    return;
  }
  s->udp_pending++;
}

static socklen_t sockaddr_len(const struct sockaddr *sa)
{
  return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* Sends the batched replies; what sendmmsg cannot take (a full socket buffer) takes the
 * ordinary path, which queues it in libuv or drops it. */
static void udp_flush(struct dns_server *s)
{
  unsigned i = 0, n = s->ub.n;
  s->ub.n = 0;
  s->ub.used = 0;
  uv_os_fd_t fd;
  if (n == 0 || !s->udp_open || s->closing || uv_fileno((uv_handle_t *)&s->udp, &fd) != 0)
    return;
  while (i < n) {
    int m = sendmmsg(fd, &s->ub.msg[i], n - i, 0);
    if (m < 0 && errno == EINTR)
      continue;
    if (m > 0) {
      i += (unsigned)m;
      continue;
    }
    const struct msghdr *h = &s->ub.msg[i].msg_hdr;
    udp_reply(s, h->msg_name, h->msg_iov->iov_base, h->msg_iov->iov_len);
    i++;
  }
}

/* A reply to the batch being answered (sent by udp_flush), or at once when it does not fit. */
static void udp_batch_reply(struct dns_server *s, const struct sockaddr *to, const uint8_t *p,
                            size_t len)
{
  if (s->ub.n == UDP_BATCH || s->ub.used + len > sizeof s->ub.data)
    udp_flush(s);
  if (len > sizeof s->ub.data) {
    udp_reply(s, to, p, len);
    return;
  }
  unsigned k = s->ub.n++;
  uint8_t *d = s->ub.data + s->ub.used;
  memcpy(d, p, len);
  s->ub.used += len;
  socklen_t tl = sockaddr_len(to);
  memcpy(&s->ub.to[k], to, tl);
  s->ub.iov[k] = (struct iovec){d, len};
  s->ub.msg[k] = (struct mmsghdr){.msg_hdr = {.msg_name = &s->ub.to[k], .msg_namelen = tl,
                                              .msg_iov = &s->ub.iov[k], .msg_iovlen = 1}};
}

struct tcp_write {
  uv_write_t req;
  struct tcp_conn *c;
  uint8_t data[];
};

static void conn_close(struct tcp_conn *c);
static void conn_process(struct tcp_conn *c);

static void on_tcp_written(uv_write_t *req, int status)
{
  struct tcp_write *w = (struct tcp_write *)req;
  struct tcp_conn *c = w->c;
  free(w);
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (!c->closing && !c->reading && !c->fwd)
    conn_process(c); /* the client caught up: read again */
}

/* Sends one framed reply: straight from the caller's buffer when the socket takes it all
 * (no allocation), else whatever is left is copied and queued. */
static void tcp_reply(struct tcp_conn *c, const uint8_t *p, size_t len)
{
  if (c->closing)
    return;
  uint8_t hdr[2] = {(uint8_t)(len >> 8), (uint8_t)len};
  size_t done = 0;
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->h) == 0) {
    uv_buf_t bufs[2] = {uv_buf_init((char *)hdr, 2), uv_buf_init((char *)p, (unsigned)len)};
    int n = uv_try_write((uv_stream_t *)&c->h, bufs, 2);
    if (n > 0)
      done = (size_t)n;
    else if (n != UV_EAGAIN) {
      conn_close(c);
      return;
    }
  }
  if (done == 2 + len)
    return;
  size_t rest = 2 + len - done;
  struct tcp_write *w = xmalloc(sizeof *w + rest);
  w->c = c;
  size_t k = 0;
  for (; done < 2; done++)
    w->data[k++] = hdr[done];
  memcpy(w->data + k, p + (done - 2), rest - k);
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)rest);
  if (uv_write(&w->req, (uv_stream_t *)&c->h, &b, 1, on_tcp_written) != 0) {
    free(w);
    conn_close(c);
  }
}

/* ---- Forwarding ---- */

static void fwd_attempt(struct fwd *f);

static void on_fwd_timer_closed(uv_handle_t *h)
{
  struct fwd *f = h->data;
  struct dns_server *s = f->s;
  free(f->query);
  free(f);
  handle_gone(s);
}

static void on_fwd_sock_closed(uv_handle_t *h)
{
  struct fwd_sock *fs = h->data;
  struct dns_server *s = fs->s;
  free(fs);
  handle_gone(s);
}

static void fwd_drop_sock(struct fwd *f)
{
  if (!f->sock)
    return;
  f->sock->f = NULL;
  uv_close((uv_handle_t *)&f->sock->h, on_fwd_sock_closed);
  f->sock = NULL;
}

/* Ends a forward: relays the reply (or SERVFAIL when reply is NULL) unless the server is
 * closing or the TCP client left, and frees everything once libuv is done with it. */
static void fwd_finish(struct fwd *f, uint8_t *reply, size_t len)
{
  struct dns_server *s = f->s;
  if (f->done)
    return;
  f->done = true;
  fwd_drop_sock(f);
  uv_timer_stop(&f->timer);
  if (f->up_pending) {
    f->up_pending = false;
    if (f->via->cancel)
      f->via->cancel(f->via->ctx, f->qdata);
  }
  bool someone = !s->closing && (!f->tcp || (f->conn && !f->conn->closing));
  if (!someone) {
    len = 0;
  } else if (!reply) {
    f->query[0] = (uint8_t)(f->client_id >> 8);
    f->query[1] = (uint8_t)f->client_id;
    len = dns_engine_error_reply(s->engine, f->query, f->qlen, 2 /* SERVFAIL */, s->wbuf,
                                 sizeof s->wbuf);
    reply = s->wbuf;
  } else {
    reply[0] = (uint8_t)(f->client_id >> 8);
    reply[1] = (uint8_t)f->client_id;
  }
  if (len > 0) {
    if (!f->tcp)
      udp_reply(s, (struct sockaddr *)&f->client, reply, len);
    else if (f->conn)
      tcp_reply(f->conn, reply, len);
  }
  struct tcp_conn *c = f->conn;
  if (c)
    c->fwd = NULL;
  if (f->prev)
    f->prev->next = f->next;
  else
    s->fwds = f->next;
  if (f->next)
    f->next->prev = f->prev;
  s->n_fwds--;
  uv_close((uv_handle_t *)&f->timer, on_fwd_timer_closed);
  if (c && !c->closing && !s->closing && !c->in_process)
    conn_process(c); /* answer what the client sent meanwhile */
}

static void on_fwd_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct fwd_sock *fs = h->data;
  (void)suggested;
  if (!fs->f) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init((char *)fs->f->s->rbuf, sizeof fs->f->s->rbuf);
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr_storage *b)
{
  if (a->sa_family != b->ss_family)
    return false;
  if (a->sa_family == AF_INET) {
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
  return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
}

static void on_fwd_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags)
{
  struct fwd_sock *fs = h->data;
  struct fwd *f = fs->f;
  if (!f || nread < 12 || !from || (flags & UV_UDP_PARTIAL))
    return;
  uint8_t *p = (uint8_t *)buf->base;
  /* Only the recursor's own answer to our ID counts (anything else may be spoofed). */
  if (!same_addr(from, &f->s->recursors[f->attempt]) || (p[0] << 8 | p[1]) != f->up_id ||
      !(p[2] & 0x80))
    return;
  int rcode = p[3] & 0x0F;
  if (rcode != 0 && rcode != 3) { /* as Consul: only NOERROR and NXDOMAIN are answers */
    log_debug("dns", "recursor %zu answered rcode %d, trying the next", f->attempt, rcode);
    f->attempt++;
    fwd_attempt(f);
    return;
  }
  fwd_finish(f, p, (size_t)nread);
}

static void on_fwd_timeout(uv_timer_t *t)
{
  struct fwd *f = t->data;
  if (f->upstream) {
    log_debug("dns", "upstream query timed out");
    fwd_finish(f, NULL, 0);
    return;
  }
  log_debug("dns", "recursor %zu timed out", f->attempt);
  f->attempt++;
  fwd_attempt(f);
}

/* Sends the query to recursor f->attempt from a fresh socket, or ends with SERVFAIL when
 * every recursor has been tried. */
static void fwd_attempt(struct fwd *f)
{
  struct dns_server *s = f->s;
  fwd_drop_sock(f);
  for (; f->attempt < s->n_recursors; f->attempt++) {
    const struct sockaddr_storage *to = &s->recursors[f->attempt];
    struct fwd_sock *fs = xcalloc(1, sizeof *fs);
    fs->f = f;
    fs->s = s;
    if (uv_udp_init_ex(s->loop, &fs->h, to->ss_family) != 0) {
      free(fs);
      continue;
    }
    fs->h.data = fs;
    s->handles++;
    f->sock = fs;
    uv_buf_t b = uv_buf_init((char *)f->query, (unsigned)f->qlen);
    if (uv_udp_recv_start(&fs->h, on_fwd_alloc, on_fwd_recv) != 0 ||
        uv_udp_try_send(&fs->h, &b, 1, (const struct sockaddr *)to) < 0) {
      fwd_drop_sock(f);
      continue;
    }
    uv_timer_start(&f->timer, on_fwd_timeout, s->recursor_timeout_ms, 0);
    return;
  }
  log_debug("dns", "all recursors failed");
  fwd_finish(f, NULL, 0);
}

/* Hands the query to f->via (for datacenter dc, or NULL); its answer comes through
 * dns_server_upstream_reply, possibly before start returns. */
static void up_attempt(struct fwd *f, const char *dc)
{
  const struct dns_upstream *up = f->via;
  const struct sockaddr *client = NULL;
  if (!f->tcp)
    client = (const struct sockaddr *)&f->client;
  else if (f->conn)
    client = (const struct sockaddr *)&f->conn->peer;
  uv_timer_start(&f->timer, on_fwd_timeout, up->timeout_ms ? up->timeout_ms : UPSTREAM_TIMEOUT_MS,
                 0);
  f->up_pending = true;
  int rc = up->start(up->ctx, (struct dns_upstream_query *)f, f->query, f->qlen, f->tcp,
                     f->tcp ? DNS_TCP_MAX : DNS_UDP_MAX, client, dc, &f->qdata);
  if (rc != 0 && !f->done) {
    log_debug("dns", "upstream refused the query: %d", rc);
    f->up_pending = false; /* nothing started: nothing to cancel */
    fwd_finish(f, NULL, 0);
  }
}

/* The first NOERROR/NXDOMAIN a recursor gives wins: the query goes out with a fresh ID. */
static void fwd_to_recursors(struct fwd *f)
{
  f->upstream = false;
  f->attempt = 0;
  f->up_id = (uint16_t)rand_u64();
  f->query[0] = (uint8_t)(f->up_id >> 8);
  f->query[1] = (uint8_t)f->up_id;
  fwd_attempt(f);
}

void dns_server_upstream_reply(struct dns_upstream_query *q, const uint8_t *reply, size_t len)
{
  struct fwd *f = (struct fwd *)q;
  struct dns_server *s = f->s;
  if (f->done || !f->upstream || !f->up_pending)
    return; /* a second reply, or one after cancel: the contract says never; ignore it */
  f->up_pending = false;
  if (!reply || len < 12 || len > sizeof s->wbuf || !(reply[2] & 0x80)) {
    if (reply)
      log_debug("dns", "upstream reply is not a DNS response (%zu bytes)", len);
    fwd_finish(f, NULL, 0);
    return;
  }
  if (f->scope == DNS_SCOPE_ARPA && (reply[3] & 0x0F) == 3 && s->n_recursors > 0) {
    uv_timer_stop(&f->timer);
    fwd_to_recursors(f); /* Consul's handlePtr: not in the catalog, ask the recursors */
    return;
  }
  size_t udp_limit = f->udp_size < DNS_UDP_MAX ? f->udp_size : DNS_UDP_MAX;
  if (!f->tcp && len > udp_limit) {
    /* Not for this client's buffer: an empty answer with TC sends it to TCP. */
    len = dns_engine_error_reply(s->engine, f->query, f->qlen, 0, s->wbuf, sizeof s->wbuf);
    if (len == 0) {
      fwd_finish(f, NULL, 0);
      return;
    }
    s->wbuf[2] |= 0x02;
  } else {
    memcpy(s->wbuf, reply, len);
  }
  /* RA tells whether *this* agent recurses, as a local answer would. */
  s->wbuf[3] = (uint8_t)((s->wbuf[3] & 0x7F) | (s->n_recursors > 0 ? 0x80 : 0));
  fwd_finish(f, s->wbuf, len);
}

void dns_server_set_upstream(struct dns_server *s, const struct dns_upstream *up)
{
  if (up && up->start)
    s->up = *up;
  else
    memset(&s->up, 0, sizeof s->up);
}

void dns_server_set_dc_upstream(struct dns_server *s, const struct dns_upstream *up)
{
  if (up && up->start)
    s->dc_up = *up;
  else
    memset(&s->dc_up, 0, sizeof s->dc_up);
}

/* Forwards query (copied) for a UDP client at `client`, or for TCP connection c: to the dc
 * upstream when dc is not NULL, to the upstream when `scope` is DOMAIN or ARPA, else to the
 * recursors. */
static void fwd_start(struct dns_server *s, const uint8_t *query, size_t qlen,
                      const struct sockaddr *client, struct tcp_conn *c, enum dns_scope scope,
                      uint16_t udp_size, const char *dc)
{
  if (s->n_fwds >= s->cfg.max_forwards) {
    size_t len = dns_engine_error_reply(s->engine, query, qlen, 2, s->wbuf, sizeof s->wbuf);
    if (len && c)
      tcp_reply(c, s->wbuf, len);
    else if (len)
      udp_reply(s, client, s->wbuf, len);
    return;
  }
  struct fwd *f = xcalloc(1, sizeof *f);
  f->s = s;
  f->query = xmemdup(query, qlen);
  f->qlen = qlen;
  f->client_id = (uint16_t)(query[0] << 8 | query[1]);
  f->scope = scope;
  f->udp_size = udp_size;
  f->tcp = c != NULL;
  f->conn = c;
  if (c)
    c->fwd = f;
  else
    memcpy(&f->client, client,
           client->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
  uv_timer_init(s->loop, &f->timer);
  f->timer.data = f;
  s->handles++;
  f->next = s->fwds;
  if (s->fwds)
    s->fwds->prev = f;
  s->fwds = f;
  s->n_fwds++;
  if (dc) {
    f->upstream = true;
    f->via = &s->dc_up;
    up_attempt(f, dc);
  } else if (scope == DNS_SCOPE_DOMAIN || scope == DNS_SCOPE_ARPA) {
    f->upstream = true;
    f->via = &s->up;
    up_attempt(f, NULL);
  } else {
    fwd_to_recursors(f);
  }
}

/* With an upstream, the catalog's questions go there; the scope when they do, else LOCAL. */
static enum dns_scope upstream_scope(struct dns_server *s, const uint8_t *q, size_t qlen,
                                     uint16_t *udp_size)
{
  if (!s->up.start)
    return DNS_SCOPE_LOCAL;
  enum dns_scope sc = dns_engine_scope(s->engine, q, qlen, udp_size);
  return sc == DNS_SCOPE_DOMAIN || sc == DNS_SCOPE_ARPA ? sc : DNS_SCOPE_LOCAL;
}

/* A name of another datacenter (the engine said DNS_REMOTE_DC): to the dc upstream, or
 * SERVFAIL without one (the backend knows datacenters this server cannot reach). */
static void remote_dc(struct dns_server *s, const uint8_t *q, size_t qlen,
                      const struct sockaddr *from, struct tcp_conn *c)
{
  char dc[DNS_DC_MAX];
  uint16_t udp_size = DNS_UDP_MIN;
  snprintf(dc, sizeof dc, "%s", dns_engine_remote_dc(s->engine));
  dns_engine_scope(s->engine, q, qlen, &udp_size);
  if (s->dc_up.start) {
    fwd_start(s, q, qlen, from, c, DNS_SCOPE_DOMAIN, udp_size, dc);
    return;
  }
  size_t len = dns_engine_error_reply(s->engine, q, qlen, 2 /* SERVFAIL */, s->wbuf,
                                      sizeof s->wbuf);
  if (len && c)
    tcp_reply(c, s->wbuf, len);
  else if (len)
    udp_batch_reply(s, from, s->wbuf, len);
}

/* ---- UDP ---- */

static void udp_answer(struct dns_server *s, const uint8_t *q, size_t qlen,
                       const struct sockaddr *from)
{
  uint16_t udp_size = DNS_UDP_MIN;
  metrics_g.dns_queries++;
  enum dns_scope up = upstream_scope(s, q, qlen, &udp_size);
  if (up != DNS_SCOPE_LOCAL) {
    fwd_start(s, q, qlen, from, NULL, up, udp_size, NULL);
    return;
  }
  struct dns_request req = {.tcp = false, .max_size = DNS_UDP_MAX, .client = from};
  size_t len = 0;
  switch (dns_engine_answer(s->engine, q, qlen, &req, s->wbuf, &len)) {
  case DNS_REPLY:
    udp_batch_reply(s, from, s->wbuf, len);
    break;
  case DNS_FORWARD:
    fwd_start(s, q, qlen, from, NULL, DNS_SCOPE_OUTSIDE, DNS_UDP_MIN, NULL);
    break;
  case DNS_REMOTE_DC:
    remote_dc(s, q, qlen, from, NULL);
    break;
  case DNS_DROP:
    break;
  }
}

static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct dns_server *s = h->data;
  (void)suggested;
  *buf = uv_buf_init((char *)s->udp_rbuf, sizeof s->udp_rbuf);
}

/* Called once per datagram of a recvmmsg batch (UV_UDP_MMSG_CHUNK), then once with nread 0
 * (UV_UDP_MMSG_FREE, or nothing more to read): that is when the batch's replies go out. */
static void on_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags)
{
  struct dns_server *s = h->data;
  if (nread <= 0 || !from || (flags & UV_UDP_PARTIAL) || s->closing) {
    if (!(flags & UV_UDP_MMSG_CHUNK))
      udp_flush(s);
    return;
  }
  udp_answer(s, (const uint8_t *)buf->base, (size_t)nread, from);
  if (!(flags & UV_UDP_MMSG_CHUNK))
    udp_flush(s); /* read without recvmmsg: no end-of-batch call follows */
}


/* ---- TCP ---- */

static void on_conn_handle_closed(uv_handle_t *h)
{
  struct tcp_conn *c = h->data;
  struct dns_server *s = c->s;
  if (--c->open == 0) {
    free(c->buf);
    free(c);
  }
  handle_gone(s);
}

static void conn_close(struct tcp_conn *c)
{
  if (c->closing)
    return;
  c->closing = true;
  struct dns_server *s = c->s;
  struct fwd *f = c->fwd;
  c->fwd = NULL;
  if (f) {
    f->conn = NULL;
    if (f->upstream)
      fwd_finish(f, NULL, 0); /* nobody to answer: let the upstream drop the work */
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->n_conns--;
  uv_close((uv_handle_t *)&c->h, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->idle, on_conn_handle_closed);
}

static void on_idle(uv_timer_t *t)
{
  conn_close(t->data);
}

static void on_conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct tcp_conn *c = h->data;
  (void)suggested;
  if (c->cap - c->len < 4096 && c->cap < TCP_BUF_MAX) {
    c->cap = c->cap ? c->cap * 2 : 4096;
    if (c->cap > TCP_BUF_MAX)
      c->cap = TCP_BUF_MAX;
    c->buf = xrealloc(c->buf, c->cap);
  }
  *buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_conn_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
  struct tcp_conn *c = st->data;
  (void)buf;
  if (nread == UV_EOF && c->fwd) {
    /* A half-close means "no more queries", not "gone": the waiting one is still answered
     * (as miekg/dns does). A client that is really gone resets, or fails the write. */
    c->eof = true;
    uv_read_stop(st);
    c->reading = false;
    return;
  }
  if (nread < 0) { /* EOF, reset, or ENOBUFS (a client sending more than it reads) */
    conn_close(c);
    return;
  }
  c->len += (size_t)nread;
  if (nread > 0)
    uv_timer_start(&c->idle, on_idle, c->s->cfg.tcp_idle_timeout_ms, 0);
  conn_process(c);
}

/* Answers every complete frame received, in order, stopping at a forward (which resumes
 * this when it ends); reads more while the buffer and the write queue have room. */
static void conn_process(struct tcp_conn *c)
{
  struct dns_server *s = c->s;
  size_t off = 0;
  c->in_process = true;
  while (!c->closing && !c->fwd && c->len - off >= 2 &&
         uv_stream_get_write_queue_size((uv_stream_t *)&c->h) < TCP_WRITE_QUEUE_MAX) {
    size_t flen = (size_t)c->buf[off] << 8 | c->buf[off + 1];
    if (c->len - off < 2 + flen)
      break;
    const uint8_t *q = c->buf + off + 2;
    off += 2 + flen;
    uint16_t udp_size = DNS_UDP_MIN;
    metrics_g.dns_queries++;
    enum dns_scope up = upstream_scope(s, q, flen, &udp_size);
    if (up != DNS_SCOPE_LOCAL) {
      fwd_start(s, q, flen, NULL, c, up, udp_size, NULL);
      continue;
    }
    struct dns_request req = {.tcp = true, .max_size = DNS_TCP_MAX,
                              .client = (struct sockaddr *)&c->peer};
    size_t len = 0;
    switch (dns_engine_answer(s->engine, q, flen, &req, s->wbuf, &len)) {
    case DNS_REPLY:
      tcp_reply(c, s->wbuf, len);
      break;
    case DNS_FORWARD:
      fwd_start(s, q, flen, NULL, c, DNS_SCOPE_OUTSIDE, DNS_UDP_MIN, NULL);
      break;
    case DNS_REMOTE_DC:
      remote_dc(s, q, flen, NULL, c);
      break;
    case DNS_DROP:
      break;
    }
  }
  c->in_process = false;
  if (c->closing)
    return;
  if (c->eof && !c->fwd) {
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->h) == 0)
      conn_close(c); /* else on_tcp_written comes back here */
    return;
  }
  if (off > 0) {
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
  }
  /* Reading goes on while a query waits (up to the buffer's cap), so that a client leaving
   * is noticed and an upstream query it no longer wants is cancelled. */
  bool want = !c->eof && c->len < TCP_BUF_MAX &&
              uv_stream_get_write_queue_size((uv_stream_t *)&c->h) < TCP_WRITE_QUEUE_MAX;
  if (want && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->h, on_conn_alloc, on_conn_read) != 0) {
      conn_close(c);
      return;
    }
    c->reading = true;
  } else if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->h);
    c->reading = false;
  }
}

static void on_connection(uv_stream_t *server, int status)
{
  struct dns_server *s = server->data;
  if (status < 0 || s->closing)
    return;
  struct tcp_conn *c = xcalloc(1, sizeof *c);
  c->s = s;
  uv_tcp_init(s->loop, &c->h);
  uv_timer_init(s->loop, &c->idle);
  c->h.data = c->idle.data = c;
  c->open = 2;
  s->handles += 2;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->n_conns++;
  if (uv_accept(server, (uv_stream_t *)&c->h) != 0 || s->n_conns > s->cfg.max_tcp_connections) {
    conn_close(c);
    return;
  }
  int plen = sizeof c->peer;
  uv_tcp_getpeername(&c->h, (struct sockaddr *)&c->peer, &plen);
  uv_timer_start(&c->idle, on_idle, s->cfg.tcp_idle_timeout_ms, 0);
  conn_process(c);
}

/* ---- Listening ---- */

/* A port free for both UDP and TCP on addr right now (binding port 0 for each would give
 * two different ports). */
static int free_port(const struct sockaddr *addr, socklen_t alen)
{
  for (int tries = 0; tries < 50; tries++) {
    struct sockaddr_storage a;
    memcpy(&a, addr, alen);
    int u = socket(addr->sa_family, SOCK_DGRAM, 0), t = -1, port = -1;
    if (u < 0)
      return -1;
    socklen_t l = alen;
    if (bind(u, (struct sockaddr *)&a, alen) == 0 && getsockname(u, (struct sockaddr *)&a, &l) == 0) {
      t = socket(addr->sa_family, SOCK_STREAM, 0);
      if (t >= 0 && bind(t, (struct sockaddr *)&a, alen) == 0)
        port = ntohs(addr->sa_family == AF_INET ? ((struct sockaddr_in *)&a)->sin_port
                                                : ((struct sockaddr_in6 *)&a)->sin6_port);
    }
    close(u);
    if (t >= 0)
      close(t);
    if (port > 0)
      return port;
  }
  return -1;
}

int dns_server_listen(struct dns_server *s, const char *ip, int port, char *errbuf, size_t errlen)
{
  struct sockaddr_storage addr;
  socklen_t alen;
  int rc;
  if (s->udp_open || s->tcp_open) {
    snprintf(errbuf, errlen, "DNS server already listening");
    return UV_EINVAL;
  }
  if (uv_ip4_addr(ip, 0, (struct sockaddr_in *)&addr) == 0) {
    alen = sizeof(struct sockaddr_in);
  } else if (uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)&addr) == 0) {
    alen = sizeof(struct sockaddr_in6);
  } else {
    snprintf(errbuf, errlen, "invalid DNS bind address \"%s\"", ip);
    return UV_EINVAL;
  }
  if (port == 0 && (port = free_port((struct sockaddr *)&addr, alen)) < 0) {
    snprintf(errbuf, errlen, "no free port for DNS on %s", ip);
    return UV_EADDRINUSE;
  }
  if (addr.ss_family == AF_INET)
    ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)port);

  if ((rc = uv_udp_init_ex(s->loop, &s->udp, AF_UNSPEC | UV_UDP_RECVMMSG)) != 0) {
    snprintf(errbuf, errlen, "Error starting DNS server on %s:%d (udp): %s", ip, port,
             uv_strerror(rc));
    return rc;
  }
  s->udp.data = s;
  s->handles++;
  s->udp_open = true;
  if ((rc = uv_udp_bind(&s->udp, (struct sockaddr *)&addr, 0)) != 0 ||
      (rc = uv_udp_recv_start(&s->udp, on_udp_alloc, on_udp_recv)) != 0) {
    snprintf(errbuf, errlen, "Error starting DNS server on %s:%d (udp): %s", ip, port,
             uv_strerror(rc));
    return rc;
  }
  uv_tcp_init(s->loop, &s->tcp);
  s->tcp.data = s;
  s->handles++;
  s->tcp_open = true;
  if ((rc = uv_tcp_bind(&s->tcp, (struct sockaddr *)&addr, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&s->tcp, 128, on_connection)) != 0) {
    snprintf(errbuf, errlen, "Error starting DNS server on %s:%d (tcp): %s", ip, port,
             uv_strerror(rc));
    return rc;
  }
  s->port = port;
  log_info("dns", "listening on %s:%d (udp, tcp)", ip, port);
  return 0;
}

int dns_server_port(const struct dns_server *s)
{
  return s->port;
}

void dns_server_close(struct dns_server *s, void (*cb)(void *arg), void *arg)
{
  s->closing = true;
  s->close_cb = cb;
  s->close_arg = arg;
  while (s->fwds)
    fwd_finish(s->fwds, NULL, 0); /* nothing is sent while closing */
  while (s->conns)
    conn_close(s->conns);
  if (s->udp_open)
    uv_close((uv_handle_t *)&s->udp, on_server_handle_closed);
  if (s->tcp_open)
    uv_close((uv_handle_t *)&s->tcp, on_server_handle_closed);
  s->udp_open = s->tcp_open = false;
  if (s->handles == 0) {
    free(s);
    if (cb)
      cb(arg);
  }
}
