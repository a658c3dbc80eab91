/* io_uv.c -- the gossip io (io.h) on libuv: one UDP socket and one TCP listener on the same
 * port (memberlist binds both), a single timer for the protocol's wake-up, TCP streams for
 * push-pull and fallback pings.
 *
 * Handles are freed only in close callbacks (libuv's rule). A stream the protocol closes is
 * closed once its queued writes have completed, so a push-pull answer is not cut short;
 * after the protocol's stream_close, or after we reported CLOSED, the stream is never
 * reported again. io_uv_close stops everything and frees the io when the last handle has
 * closed. */
#include "gossip/io_uv.h"

#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/rand.h"

#define MOD "gossip"
#define UDP_RECV_BUF (2 * 1024 * 1024) /* memberlist udpRecvBufSize */
#define UDP_PACKET_MAX 65536

struct uv_gstream {
  struct uv_gstream *next;
  struct io_uv *io;
  uint64_t id;
  uv_tcp_t tcp;
  uv_connect_t connect;
  int pending_writes;
  bool core_closed; /* the protocol is done with it: report nothing more */
  bool closing;     /* uv_close called */
  char rbuf[16384];
};

struct write_req {
  uv_write_t req;
  struct uv_gstream *s;
  char data[];
};

struct io_uv {
  struct gossip_io io;
  uv_loop_t *loop;
  uv_udp_t udp;
  uv_tcp_t listener;
  uv_timer_t timer;
  struct uv_gstream *streams;
  uint64_t next_id;
  bool stopping;
  int open_handles;
  void (*done)(void *arg);
  void *done_arg;
  char udp_buf[UDP_PACKET_MAX];
};

static struct io_uv *io_of(struct gossip_io *g) { return (struct io_uv *)g; }

static void sockaddr_to_addr(const struct sockaddr *sa, struct gossip_addr *out) {
  memset(out, 0, sizeof *out);
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    gossip_addr_from_bytes((const uint8_t *)&in->sin_addr, 4, ntohs(in->sin_port), out);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    gossip_addr_from_bytes((const uint8_t *)&in6->sin6_addr, 16, ntohs(in6->sin6_port), out);
  }
}

static void addr_to_sockaddr(const struct gossip_addr *a, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (a->len == 4) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(a->port);
    memcpy(&in->sin_addr, a->ip, 4);
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(a->port);
    memcpy(&in6->sin6_addr, a->ip, 16);
  }
}

/* ---- handle lifetime ---- */

static void maybe_done(struct io_uv *io) {
  if (!io->stopping || io->open_handles > 0) return;
  void (*done)(void *) = io->done;
  void *arg = io->done_arg;
  free(io);
  if (done) done(arg);
}

static void handle_closed(uv_handle_t *h) {
  struct io_uv *io = h->data;
  io->open_handles--;
  maybe_done(io);
}

static void unlink_stream(struct io_uv *io, struct uv_gstream *s) {
  for (struct uv_gstream **pp = &io->streams; *pp; pp = &(*pp)->next) {
    if (*pp == s) {
      *pp = s->next;
      return;
    }
  }
}

static void stream_closed(uv_handle_t *h) {
  struct uv_gstream *s = h->data;
  struct io_uv *io = s->io;
  unlink_stream(io, s);
  free(s);
  io->open_handles--;
  maybe_done(io);
}

static void stream_close_now(struct uv_gstream *s) {
  if (s->closing) return;
  s->closing = true;
  uv_close((uv_handle_t *)&s->tcp, stream_closed);
}

/* The connection ended under us: tell the protocol once, then close. */
static void stream_fail(struct uv_gstream *s) {
  struct io_uv *io = s->io;
  if (!s->core_closed && !io->stopping) {
    s->core_closed = true;
    if (io->io.sink.stream)
      io->io.sink.stream(io->io.sink.ctx, s->id, GOSSIP_STREAM_CLOSED, NULL, NULL, 0);
  }
  stream_close_now(s);
}

static struct uv_gstream *stream_find(struct io_uv *io, uint64_t id) {
  for (struct uv_gstream *s = io->streams; s; s = s->next)
    if (s->id == id) return s;
  return NULL;
}

static struct uv_gstream *stream_new(struct io_uv *io) {
  struct uv_gstream *s = xcalloc(1, sizeof *s);
  s->io = io;
  s->id = ++io->next_id;
  uv_tcp_init(io->loop, &s->tcp);
  s->tcp.data = s;
  io->open_handles++;
  s->next = io->streams;
  io->streams = s;
  return s;
}

/* ---- stream reads and writes ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct uv_gstream *s = h->data;
  (void)suggested;
  buf->base = s->rbuf;
  buf->len = sizeof s->rbuf;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  struct uv_gstream *s = st->data;
  struct io_uv *io = s->io;
  if (nread > 0) {
    if (!s->core_closed && !io->stopping && io->io.sink.stream)
      io->io.sink.stream(io->io.sink.ctx, s->id, GOSSIP_STREAM_DATA, NULL, (const uint8_t *)buf->base,
                         (size_t)nread);
    return;
  }
  if (nread < 0) {
    uv_read_stop(st);
    if (s->core_closed) {
      /* Already done with it; the close waits only for writes. */
      if (s->pending_writes == 0) stream_close_now(s);
      return;
    }
    stream_fail(s);
  }
}

static void on_write(uv_write_t *req, int status) {
  struct write_req *w = (struct write_req *)req;
  struct uv_gstream *s = w->s;
  free(w);
  s->pending_writes--;
  if (status < 0 && !s->closing) {
    stream_fail(s);
    return;
  }
  if (s->core_closed && s->pending_writes == 0) stream_close_now(s);
}

static void on_connect(uv_connect_t *req, int status) {
  struct uv_gstream *s = req->data;
  struct io_uv *io = s->io;
  if (status < 0) {
    if (status != UV_ECANCELED) stream_fail(s);
    return;
  }
  if (s->core_closed || io->stopping) {
    if (s->pending_writes == 0) stream_close_now(s);
    return;
  }
  uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  struct gossip_addr peer = {0};
  if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0)
    sockaddr_to_addr((struct sockaddr *)&ss, &peer);
  if (io->io.sink.stream)
    io->io.sink.stream(io->io.sink.ctx, s->id, GOSSIP_STREAM_CONNECTED, &peer, NULL, 0);
}

static void on_connection(uv_stream_t *server, int status) {
  struct io_uv *io = server->data;
  if (status < 0 || io->stopping) return;
  struct uv_gstream *s = stream_new(io);
  if (uv_accept(server, (uv_stream_t *)&s->tcp) != 0) {
    s->core_closed = true;
    stream_close_now(s);
    return;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  struct gossip_addr peer = {0};
  if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0)
    sockaddr_to_addr((struct sockaddr *)&ss, &peer);
  uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
  if (io->io.sink.stream)
    io->io.sink.stream(io->io.sink.ctx, s->id, GOSSIP_STREAM_ACCEPTED, &peer, NULL, 0);
}

/* ---- UDP and the timer ---- */

static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct io_uv *io = h->data;
  (void)suggested;
  buf->base = io->udp_buf;
  buf->len = sizeof io->udp_buf;
}

static void on_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                        unsigned flags) {
  struct io_uv *io = h->data;
  if (nread <= 0 || !addr || io->stopping || (flags & UV_UDP_PARTIAL)) return;
  struct gossip_addr from;
  sockaddr_to_addr(addr, &from);
  if (io->io.sink.packet)
    io->io.sink.packet(io->io.sink.ctx, &from, (const uint8_t *)buf->base, (size_t)nread);
}

static void on_timer(uv_timer_t *t) {
  struct io_uv *io = t->data;
  if (!io->stopping && io->io.sink.wake) io->io.sink.wake(io->io.sink.ctx);
}

/* ---- ops ---- */

static uint64_t op_now(struct gossip_io *g) { return uv_now(io_of(g)->loop); }
static uint64_t op_random(struct gossip_io *g) {
  (void)g;
  return rand_u64();
}

static void op_wake_at(struct gossip_io *g, uint64_t when) {
  struct io_uv *io = io_of(g);
  if (io->stopping) return;
  if (when == UINT64_MAX) {
    uv_timer_stop(&io->timer);
    return;
  }
  uint64_t now = uv_now(io->loop);
  uv_timer_start(&io->timer, on_timer, when > now ? when - now : 0, 0);
}

static int op_send_packet(struct gossip_io *g, const struct gossip_addr *to, const void *p, size_t len) {
  struct io_uv *io = io_of(g);
  struct sockaddr_storage ss;
  addr_to_sockaddr(to, &ss);
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
  /* UDP is best effort: a full socket buffer drops the packet, as a lossy network would. */
  int rc = uv_udp_try_send(&io->udp, &b, 1, (const struct sockaddr *)&ss);
  return rc < 0 ? CC_EIO : 0;
}

static int op_stream_open(struct gossip_io *g, const struct gossip_addr *to, uint64_t *id) {
  struct io_uv *io = io_of(g);
  if (io->stopping) return CC_ESHUTDOWN;
  struct uv_gstream *s = stream_new(io);
  struct sockaddr_storage ss;
  addr_to_sockaddr(to, &ss);
  s->connect.data = s;
  int rc = uv_tcp_connect(&s->connect, &s->tcp, (const struct sockaddr *)&ss, on_connect);
  if (rc) {
    s->core_closed = true;
    stream_close_now(s);
    return CC_EIO;
  }
  *id = s->id;
  return 0;
}

static int op_stream_write(struct gossip_io *g, uint64_t id, const void *p, size_t len) {
  struct io_uv *io = io_of(g);
  struct uv_gstream *s = stream_find(io, id);
  if (!s || s->closing) return CC_EIO;
  struct write_req *w = xmalloc(sizeof *w + len);
  w->s = s;
  memcpy(w->data, p, len);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_write);
  if (rc) {
    free(w);
    return CC_EIO;
  }
  s->pending_writes++;
  return 0;
}

static void op_stream_close(struct gossip_io *g, uint64_t id) {
  struct io_uv *io = io_of(g);
  struct uv_gstream *s = stream_find(io, id);
  if (!s || s->core_closed) return;
  s->core_closed = true;
  if (s->pending_writes == 0) stream_close_now(s);
}

static const struct gossip_io_ops uv_ops = {
    .now = op_now,
    .random = op_random,
    .wake_at = op_wake_at,
    .send_packet = op_send_packet,
    .stream_open = op_stream_open,
    .stream_write = op_stream_write,
    .stream_close = op_stream_close,
};

/* ---- setup and teardown ---- */

int io_uv_open(uv_loop_t *loop, const struct gossip_addr *bind, struct io_uv **out,
               uint16_t *bound_port, char *errbuf, size_t errlen) {
  struct io_uv *io = xcalloc(1, sizeof *io);
  io->io.ops = &uv_ops;
  io->loop = loop;
  struct sockaddr_storage ss;
  addr_to_sockaddr(bind, &ss);
  int rc;
  uv_tcp_init(loop, &io->listener);
  io->listener.data = io;
  io->open_handles++;
  uv_udp_init(loop, &io->udp);
  io->udp.data = io;
  io->open_handles++;
  uv_timer_init(loop, &io->timer);
  io->timer.data = io;
  io->open_handles++;

  /* TCP first: with port 0 the kernel picks one, and UDP then takes the same number. */
  if ((rc = uv_tcp_bind(&io->listener, (const struct sockaddr *)&ss, 0)) ||
      (rc = uv_listen((uv_stream_t *)&io->listener, 128, on_connection))) {
    snprintf(errbuf, errlen, "failed to start TCP listener on port %u: %s", bind->port, uv_strerror(rc));
    goto err_after_handles;
  }
  struct sockaddr_storage got;
  int glen = sizeof got;
  uv_tcp_getsockname(&io->listener, (struct sockaddr *)&got, &glen);
  struct gossip_addr actual;
  sockaddr_to_addr((struct sockaddr *)&got, &actual);
  struct gossip_addr udp_addr = *bind;
  udp_addr.port = actual.port;
  addr_to_sockaddr(&udp_addr, &ss);
  if ((rc = uv_udp_bind(&io->udp, (const struct sockaddr *)&ss, 0)) ||
      (rc = uv_udp_recv_start(&io->udp, on_udp_alloc, on_udp_recv))) {
    snprintf(errbuf, errlen, "failed to start UDP listener on port %u: %s", actual.port, uv_strerror(rc));
    goto err_after_handles;
  }
  int size = UDP_RECV_BUF;
  uv_recv_buffer_size((uv_handle_t *)&io->udp, &size);
  *bound_port = actual.port;
  *out = io;
  return 0;

err_after_handles:
  io->stopping = true;
  uv_close((uv_handle_t *)&io->listener, handle_closed);
  uv_close((uv_handle_t *)&io->udp, handle_closed);
  uv_close((uv_handle_t *)&io->timer, handle_closed);
  return CC_EIO;
}

struct gossip_io *io_uv_io(struct io_uv *io) { return &io->io; }

void io_uv_close(struct io_uv *io, void (*done)(void *arg), void *arg) {
  io->stopping = true;
  io->done = done;
  io->done_arg = arg;
  memset(&io->io.sink, 0, sizeof io->io.sink);
  uv_close((uv_handle_t *)&io->listener, handle_closed);
  uv_close((uv_handle_t *)&io->udp, handle_closed);
  uv_close((uv_handle_t *)&io->timer, handle_closed);
  for (struct uv_gstream *s = io->streams; s; s = s->next) {
    s->core_closed = true;
    stream_close_now(s);
  }
}
