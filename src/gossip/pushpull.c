/* pushpull.c -- memberlist's TCP side (net.go): full state exchange (push-pull) on join and
 * periodically, the TCP fallback ping, and reliable user messages.
 *
 * A stream carries one message each way and then closes; there is no length prefix, so the
 * reader parses incrementally (proto_parse_stream says "need more" until a whole message is
 * there). The side that connects writes first. Every stream has a deadline (TCPTimeout, or the
 * probe's deadline for a ping) and a size cap (memberlist's maxPushStateBytes), so a slow or
 * hostile peer costs a bounded amount. With a keyring, every message we write is encrypted
 * ([10][length][AES-GCM], crypt.h) and an incoming one is read whole and decrypted before it is
 * parsed (docs/gossip.md, "Encryption"). */
#include <stdlib.h>
#include <string.h>

#include "gossip/crypt.h"
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

/* memberlist rawSendMsgStream: compressed when enabled (always, not only when smaller), then
 * encrypted (encryptLocalState): [10][length:4, big-endian][encrypted], the 5-byte header
 * being the additional data. Returns the io's result; a failed write means the connection is
 * gone. */
static int stream_write_msg(struct ml *m, uint64_t id, const void *msg, size_t len) {
  struct buf z = BUF_INIT, e = BUF_INIT;
  if (m->cfg.enable_compression) {
    proto_encode_compress(&z, msg, len);
    msg = z.data;
    len = z.len;
  }
  int rc = 0;
  if (ml__encrypt_out(m)) {
    int vsn = ml__encryption_version(m);
    size_t elen = crypt_encrypted_length(vsn, len);
    uint8_t hdr[5] = {PROTO_ENCRYPT, (uint8_t)(elen >> 24), (uint8_t)(elen >> 16),
                      (uint8_t)(elen >> 8), (uint8_t)elen};
    buf_append(&e, hdr, sizeof hdr);
    const struct keyring *k = &m->cfg.keyring;
    rc = crypt_encrypt(vsn, k->key[0], k->len[0], msg, len, hdr, sizeof hdr, &e);
    if (rc) log_error(MOD, "failed to encrypt local state: %s", cc_strerror(rc));
    msg = e.data;
    len = e.len;
  }
  if (!rc) rc = m->io->ops->stream_write(m->io, id, msg, len);
  buf_free(&z);
  buf_free(&e);
  return rc;
}

static int stream_send(struct ml *m, struct ml_stream *s, const struct buf *msg) {
  return stream_write_msg(m, s->id, msg->data, msg->len);
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

/* memberlist readStream's encryption check: an encrypted stream is [10][length][payload],
 * which must be whole before it can be opened. Returns 0 with the plaintext in *plain (or
 * plain untouched and *use_rx set for a plain stream), CC_ECORRUPT for "need more", or another
 * error with *why set. */
static int open_stream_msg(struct ml *m, struct ml_stream *s, struct buf *plain, bool *use_rx,
                           const char **why) {
  const uint8_t *p = (const uint8_t *)s->rx.data;
  size_t len = s->rx.len;
  *use_rx = false;
  if (len == 0) return CC_ECORRUPT;
  if (p[0] != PROTO_ENCRYPT) {
    if (m->cfg.keyring.n && m->cfg.verify_incoming) {
      *why = "Encryption is configured but remote state is not encrypted";
      return CC_EINVAL;
    }
    *use_rx = true;
    return 0;
  }
  if (!m->cfg.keyring.n) {
    *why = "Remote state is encrypted and encryption is not configured";
    return CC_EINVAL;
  }
  if (len < 5) return CC_ECORRUPT;
  uint32_t more = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
  if (more > PROTO_STREAM_MAX) {
    *why = "Remote node state is larger than limit";
    return CC_ETOOBIG;
  }
  if (len - 5 < more) return CC_ECORRUPT;
  int rc = crypt_decrypt(&m->cfg.keyring, p + 5, more, p, 5, plain);
  if (rc) {
    *why = rc == CC_ECORRUPT ? "No installed keys could decrypt the message"
                             : "invalid encrypted payload";
    return CC_EINVAL;
  }
  if (plain->len == 0) {
    *why = "empty encrypted message";
    return CC_EINVAL;
  }
  return 0;
}

static void on_data(struct ml *m, struct ml_stream *s, const uint8_t *p, size_t len) {
  /* An encrypted stream is at most the limit plus its 5-byte header. */
  if (s->rx.len + len > PROTO_STREAM_MAX + 5) {
    finish(m, s, CC_ETOOBIG, false);
    return;
  }
  buf_append(&s->rx, p, len);
  struct proto_stream_msg msg = {0};
  struct buf plain = BUF_INIT;
  bool use_rx;
  const char *why = NULL;
  int rc = open_stream_msg(m, s, &plain, &use_rx, &why);
  if (rc == 0) {
    const uint8_t *mp = use_rx ? (const uint8_t *)s->rx.data : (const uint8_t *)plain.data;
    size_t mlen = use_rx ? s->rx.len : plain.len;
    rc = proto_parse_stream(mp, mlen, &msg);
    /* A decrypted message is complete: "need more" means it is cut short. */
    if (rc == CC_ECORRUPT && !use_rx) rc = CC_EINVAL;
  }
  if (rc == CC_ECORRUPT) { /* need more */
    proto_stream_msg_free(&msg);
    buf_free(&plain);
    return;
  }
  if (rc) {
    char a[GOSSIP_ADDR_STRLEN];
    log_warn(MOD, "failed to receive: %s from=%s", why ? why : cc_strerror(rc),
             gossip_addr_format(&s->peer, a, sizeof a));
    if (s->kind == ST_IN) {
      struct buf out = BUF_INIT;
      proto_encode_err(&out, why ? why : "bad message");
      stream_write_msg(m, s->id, out.data, out.len);
      buf_free(&out);
    }
    proto_stream_msg_free(&msg);
    buf_free(&plain);
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
  buf_free(&plain);
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
