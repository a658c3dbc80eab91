/* pushpull.c -- memberlist's TCP side (net.go): full state exchange (push-pull) on join and
 * periodically, the TCP fallback ping, and reliable user messages.
 *
 * A stream carries one message each way and then closes; there is no length prefix, so the
 * reader parses incrementally (proto_parse_stream says "need more" until a whole message is
 * there). The side that connects writes first. Every stream has a deadline (TCPTimeout, or the
 * probe's deadline for a ping) and a size cap (memberlist's maxPushStateBytes), so a slow or
 * hostile peer costs a bounded amount. */
#include <stdlib.h>
#include <string.h>

#include "gossip/proto.h"
#include "gossip/swim.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

#define MOD "gossip"
#define MAX_STREAMS 128 /* memberlist's maxPushPullRequests */

enum st_kind { ST_IN, ST_PUSH_PULL, ST_PING, ST_USER };

struct ml_join_op {
  struct ml_join_op *next;
  int pending, success, err;
  ml_join_cb cb;
  void *arg;
};

struct ml_stream {
  struct ml_stream *next;
  struct ml *m;
  uint64_t id;
  enum st_kind kind;
  bool connected;
  struct gossip_addr peer;
  struct buf rx, tx;
  struct gtimer timer;
  bool join;
  struct ml_join_op *op;
  uint32_t seq;
};

static struct ml_stream *find(struct ml *m, uint64_t id) {
  for (struct ml_stream *s = m->streams; s; s = s->next)
    if (s->id == id) return s;
  return NULL;
}

static void unlink_stream(struct ml *m, struct ml_stream *s) {
  for (struct ml_stream **pp = &m->streams; *pp; pp = &(*pp)->next) {
    if (*pp == s) {
      *pp = s->next;
      m->nstreams--;
      return;
    }
  }
}

static void join_op_done(struct ml *m, struct ml_join_op *op, int err) {
  if (!op) return;
  if (err)
    op->err = err;
  else
    op->success++;
  if (--op->pending > 0) return;
  for (struct ml_join_op **pp = &m->joins; *pp; pp = &(*pp)->next) {
    if (*pp == op) {
      *pp = op->next;
      break;
    }
  }
  if (op->cb) op->cb(op->arg, op->success, op->success ? 0 : op->err);
  free(op);
}

/* Ends a stream: tells whoever waits on it, closes it (unless the io already did), frees it. */
static void finish(struct ml *m, struct ml_stream *s, int err, bool io_closed) {
  unlink_stream(m, s);
  ml_cancel(m, &s->timer);
  if (!io_closed) m->io->ops->stream_close(m->io, s->id);
  if (s->kind == ST_PUSH_PULL) {
    if (err) {
      char a[GOSSIP_ADDR_STRLEN];
      log_debug(MOD, "push/pull with %s failed: %s", gossip_addr_format(&s->peer, a, sizeof a),
                cc_strerror(err));
    }
    join_op_done(m, s->op, err);
  } else if (s->kind == ST_PING) {
    ml__tcp_ping_result(m, s->seq, err == 0);
  }
  buf_free(&s->rx);
  buf_free(&s->tx);
  free(s);
}

static void stream_timeout(struct gtimer *t) {
  struct ml_stream *s = container_of(t, struct ml_stream, timer);
  finish(s->m, s, CC_ETIMEOUT, false);
}

static struct ml_stream *new_stream(struct ml *m, uint64_t id, enum st_kind kind,
                                    const struct gossip_addr *peer, uint64_t deadline) {
  struct ml_stream *s = xcalloc(1, sizeof *s);
  s->m = m;
  s->id = id;
  s->kind = kind;
  if (peer) s->peer = *peer;
  gtimer_init(&s->timer, stream_timeout);
  ml_arm(m, &s->timer, deadline);
  s->next = m->streams;
  m->streams = s;
  m->nstreams++;
  return s;
}

/* memberlist rawSendMsgStream: compressed when enabled (always, not only when smaller).
 * Returns the io's result; a failed write means the connection is gone. */
static int stream_send(struct ml *m, struct ml_stream *s, const struct buf *msg) {
  int rc;
  if (m->cfg.enable_compression) {
    struct buf z = BUF_INIT;
    proto_encode_compress(&z, msg->data, msg->len);
    rc = m->io->ops->stream_write(m->io, s->id, z.data, z.len);
    buf_free(&z);
  } else {
    rc = m->io->ops->stream_write(m->io, s->id, msg->data, msg->len);
  }
  return rc;
}

static struct ml_stream *open_stream(struct ml *m, const struct gossip_addr *to, enum st_kind kind,
                                     uint64_t deadline, struct buf *tx) {
  uint64_t id;
  int rc = m->io->ops->stream_open(m->io, to, &id);
  if (rc) return NULL;
  struct ml_stream *s = new_stream(m, id, kind, to, deadline);
  s->tx = *tx;
  *tx = (struct buf)BUF_INIT;
  return s;
}

void ml__push_pull(struct ml *m, const struct gossip_addr *addr, bool join, struct ml_join_op *op) {
  struct buf tx = BUF_INIT;
  ml__encode_local_state(m, join, &tx);
  struct ml_stream *s = open_stream(m, addr, ST_PUSH_PULL, ml_now(m) + m->cfg.tcp_timeout, &tx);
  buf_free(&tx);
  if (!s) {
    join_op_done(m, op, CC_EIO);
    return;
  }
  s->join = join;
  s->op = op;
}

void ml__tcp_ping(struct ml *m, const struct ml_node *node, uint32_t seq, uint64_t deadline) {
  struct proto_ping ping = {.seq = seq, .node = proto_str(node->name),
                            .source_addr = {m->cfg.advertise.ip, m->cfg.advertise.len},
                            .source_port = m->cfg.advertise.port,
                            .source_node = proto_str(m->cfg.name)};
  struct buf tx = BUF_INIT;
  proto_encode_ping(&tx, &ping);
  /* Due by the probe's deadline; the probe itself reads the result then. */
  struct ml_stream *s = open_stream(m, &node->addr, ST_PING, deadline, &tx);
  buf_free(&tx);
  if (s) s->seq = seq;
}

int ml_join(struct ml *m, const char *const *addrs, size_t n, uint16_t default_port,
            ml_join_cb cb, void *arg) {
  struct ml_join_op *op = xcalloc(1, sizeof *op);
  op->cb = cb;
  op->arg = arg;
  op->pending = 1; /* held until every start is issued */
  op->err = CC_EINVAL;
  op->next = m->joins;
  m->joins = op;
  int started = 0;
  for (size_t i = 0; i < n; i++) {
    const char *s = addrs[i];
    const char *slash = strchr(s, '/'); /* "name/addr": memberlist's optional node name */
    if (slash) s = slash + 1;
    struct gossip_addr a;
    if (gossip_addr_parse(s, default_port, &a)) {
      log_warn(MOD, "failed to resolve %s", addrs[i]);
      continue;
    }
    op->pending++;
    started++;
    ml__push_pull(m, &a, true, op);
  }
  if (started == 0) {
    m->joins = op->next;
    free(op);
    return CC_EINVAL;
  }
  /* Drop the hold. If every push-pull already failed synchronously, report through the loop
   * rather than from inside this call. */
  if (op->pending == 1 && op->success == 0) {
    op->pending = 0;
    m->joins = op->next;
    int err = op->err ? op->err : CC_EIO;
    free(op);
    return err;
  }
  op->pending--;
  return 0;
}

/* A complete message arrived on a stream someone opened to us. */
static void serve(struct ml *m, struct ml_stream *s, struct proto_stream_msg *msg) {
  switch (msg->type) {
  case PROTO_PUSH_PULL: {
    /* Answer with our state first, then merge theirs (memberlist's order: the joiner gets our
     * view even if merging theirs fails verification). */
    struct buf out = BUF_INIT;
    ml__encode_local_state(m, msg->join, &out);
    int rc = stream_send(m, s, &out);
    buf_free(&out);
    if (rc) log_debug(MOD, "push/pull answer not sent: %s", cc_strerror(rc));
    rc = ml__merge_remote(m, msg);
    if (rc) log_warn(MOD, "failed push/pull merge: %s", cc_strerror(rc));
    break;
  }
  case PROTO_PING: {
    if (msg->ping.node.len && !proto_bytes_eq(msg->ping.node, m->cfg.name, strlen(m->cfg.name))) {
      log_warn(MOD, "got TCP ping for unexpected node '%.*s'", (int)msg->ping.node.len,
               (const char *)msg->ping.node.p);
      break;
    }
    struct proto_ack ack = {.seq = msg->ping.seq};
    struct buf out = BUF_INIT;
    proto_encode_ack(&out, &ack);
    if (stream_send(m, s, &out)) log_debug(MOD, "TCP ping answer not sent");
    buf_free(&out);
    break;
  }
  case PROTO_USER:
    if (msg->user.len && m->d.notify_msg) m->d.notify_msg(m->d.ctx, msg->user.p, msg->user.len);
    break;
  default:
    log_warn(MOD, "received invalid stream message type (%u)", msg->type);
    break;
  }
}

/* A complete answer on a stream we opened. Returns 0 on success. */
static int conclude(struct ml *m, struct ml_stream *s, struct proto_stream_msg *msg) {
  if (msg->type == PROTO_ERR) {
    log_warn(MOD, "remote error: %.*s", (int)msg->err.error.len, (const char *)msg->err.error.p);
    return CC_EIO;
  }
  if (s->kind == ST_PUSH_PULL) {
    if (msg->type != PROTO_PUSH_PULL) return CC_EINVAL;
    return ml__merge_remote(m, msg);
  }
  if (s->kind == ST_PING) {
    if (msg->type != PROTO_ACK || msg->ack.seq != s->seq) return CC_EINVAL;
    return 0;
  }
  return 0;
}

static void on_data(struct ml *m, struct ml_stream *s, const uint8_t *p, size_t len) {
  if (s->rx.len + len > PROTO_STREAM_MAX) {
    finish(m, s, CC_ETOOBIG, false);
    return;
  }
  buf_append(&s->rx, p, len);
  struct proto_stream_msg msg = {0};
  int rc = proto_parse_stream((const uint8_t *)s->rx.data, s->rx.len, &msg);
  if (rc == CC_ECORRUPT) { /* need more */
    proto_stream_msg_free(&msg);
    return;
  }
  if (rc) {
    log_warn(MOD, "bad stream message: %s", cc_strerror(rc));
    if (s->kind == ST_IN) {
      struct buf out = BUF_INIT;
      proto_encode_err(&out, "bad message");
      m->io->ops->stream_write(m->io, s->id, out.data, out.len);
      buf_free(&out);
    }
    proto_stream_msg_free(&msg);
    finish(m, s, CC_EINVAL, false);
    return;
  }
  if (s->kind == ST_IN) {
    serve(m, s, &msg);
    rc = 0;
  } else {
    rc = conclude(m, s, &msg);
  }
  proto_stream_msg_free(&msg);
  /* serve/conclude may have run delegate code that shut us down. */
  if (m->shutdown) return;
  finish(m, s, rc, false);
}

void ml__on_stream(void *ctx, uint64_t id, enum gossip_stream_event ev,
                   const struct gossip_addr *peer, const uint8_t *p, size_t len) {
  struct ml *m = ctx;
  if (m->shutdown) return;
  struct ml_stream *s = find(m, id);
  switch (ev) {
  case GOSSIP_STREAM_ACCEPTED:
    if (s) return;
    if (m->nstreams >= MAX_STREAMS) {
      log_warn(MOD, "too many pending stream requests");
      m->io->ops->stream_close(m->io, id);
      return;
    }
    m->stat_tcp_accept++;
    new_stream(m, id, ST_IN, peer, ml_now(m) + m->cfg.tcp_timeout);
    return;
  case GOSSIP_STREAM_CONNECTED:
    if (!s || s->connected) return;
    s->connected = true;
    int rc = stream_send(m, s, &s->tx);
    buf_free(&s->tx);
    if (rc) finish(m, s, rc, false);
    return;
  case GOSSIP_STREAM_DATA:
    if (s) on_data(m, s, p, len);
    return;
  case GOSSIP_STREAM_CLOSED:
    if (s) finish(m, s, CC_EIO, true);
    return;
  }
}

void ml__streams_free(struct ml *m) {
  while (m->streams) {
    struct ml_stream *s = m->streams;
    m->streams = s->next;
    ml_cancel(m, &s->timer);
    m->io->ops->stream_close(m->io, s->id);
    buf_free(&s->rx);
    buf_free(&s->tx);
    free(s);
  }
  m->nstreams = 0;
  while (m->joins) {
    struct ml_join_op *op = m->joins;
    m->joins = op->next;
    if (op->cb) op->cb(op->arg, 0, CC_ECANCELED);
    free(op);
  }
}
