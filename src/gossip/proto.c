/* proto.c -- memberlist message encoding and decoding (see proto.h for the wire layout).
 *
 * Encoders write each struct as go-msgpack does: a map whose keys are the Go field names in
 * byte-sorted order, `omitempty` fields left out when zero, nil []byte as msgpack nil. Decoders
 * accept the keys in any order, skip unknown keys (go-msgpack ignores them too), and refuse
 * values that break our caps (names, meta, addresses). */
#include "gossip/proto.h"

#include <stdlib.h>
#include <string.h>

#include "gossip/lzw.h"
#include "gossip/mp.h"
#include "lib/alloc.h"
#include "lib/err.h"

/* ---- helpers ---- */

static void put_key(struct buf *b, const char *k) { mp_put_str(b, k); }

static void put_bytes(struct buf *b, struct proto_bytes v) { mp_put_bytes_or_nil(b, v.p, v.len); }
static void put_string(struct buf *b, struct proto_bytes v) { mp_put_raw(b, v.p, v.len); }

static int get_u32(struct mp_r *r, uint32_t *out) {
  uint64_t v;
  int rc = mp_read_uint(r, UINT32_MAX, &v);
  if (!rc) *out = (uint32_t)v;
  return rc;
}

static int get_u16(struct mp_r *r, uint16_t *out) {
  uint64_t v;
  int rc = mp_read_uint(r, UINT16_MAX, &v);
  if (!rc) *out = (uint16_t)v;
  return rc;
}

static int get_bytes(struct mp_r *r, uint32_t max, struct proto_bytes *out) {
  return mp_read_raw(r, max, &out->p, &out->len);
}

/* An IP is 0 (absent), 4 or 16 bytes, as Go's net.IP. */
static int get_ip(struct mp_r *r, struct proto_bytes *out) {
  int rc = get_bytes(r, 16, out);
  if (rc) return rc;
  if (out->len != 0 && out->len != 4 && out->len != 16) return CC_EINVAL;
  return 0;
}

/* Vsn is absent or at least 6 bytes: memberlist indexes [0..5] whenever it is non-empty. */
static int get_vsn(struct mp_r *r, struct proto_bytes *out) {
  int rc = get_bytes(r, 64, out);
  if (rc) return rc;
  if (out->len != 0 && out->len < 6) return CC_EINVAL;
  return 0;
}

/* Starts a struct decode: reads the map header. */
static int begin(struct mp_r *r, const uint8_t *p, size_t len, uint32_t *n) {
  mp_r_init(r, p, len);
  int rc = mp_read_map(r, n);
  return rc ? CC_EINVAL : 0;
}

static int key(struct mp_r *r, const uint8_t **k, uint32_t *klen) {
  return mp_read_raw(r, 64, k, klen);
}

/* Every decoder reports any failure as CC_EINVAL: for a packet, truncation is corruption. */
#define DECODE_FIELDS(r, n, body)                                                  \
  for (uint32_t i_ = 0; i_ < (n); i_++) {                                          \
    const uint8_t *k;                                                              \
    uint32_t klen;                                                                 \
    int rc_ = key(r, &k, &klen);                                                   \
    if (rc_) return CC_EINVAL;                                                     \
    body else rc_ = mp_skip(r);                                                    \
    if (rc_) return CC_EINVAL;                                                     \
  }

#define FIELD(name, expr) if (mp_key_is(k, klen, name)) rc_ = (expr);

/* ---- encoders ---- */

void proto_encode_ping(struct buf *out, const struct proto_ping *m) {
  buf_putc(out, PROTO_PING);
  uint32_t n = 2 + (m->source_addr.len > 0) + (m->source_node.len > 0) + (m->source_port > 0);
  mp_put_map(out, n);
  put_key(out, "Node");
  put_string(out, m->node);
  put_key(out, "SeqNo");
  mp_put_uint(out, m->seq);
  if (m->source_addr.len) {
    put_key(out, "SourceAddr");
    put_bytes(out, m->source_addr);
  }
  if (m->source_node.len) {
    put_key(out, "SourceNode");
    put_string(out, m->source_node);
  }
  if (m->source_port) {
    put_key(out, "SourcePort");
    mp_put_uint(out, m->source_port);
  }
}

void proto_encode_indirect_ping(struct buf *out, const struct proto_indirect_ping *m) {
  buf_putc(out, PROTO_INDIRECT_PING);
  uint32_t n = 5 + (m->source_addr.len > 0) + (m->source_node.len > 0) + (m->source_port > 0);
  mp_put_map(out, n);
  put_key(out, "Nack");
  mp_put_bool(out, m->nack);
  put_key(out, "Node");
  put_string(out, m->node);
  put_key(out, "Port");
  mp_put_uint(out, m->port);
  put_key(out, "SeqNo");
  mp_put_uint(out, m->seq);
  if (m->source_addr.len) {
    put_key(out, "SourceAddr");
    put_bytes(out, m->source_addr);
  }
  if (m->source_node.len) {
    put_key(out, "SourceNode");
    put_string(out, m->source_node);
  }
  if (m->source_port) {
    put_key(out, "SourcePort");
    mp_put_uint(out, m->source_port);
  }
  put_key(out, "Target");
  put_bytes(out, m->target);
}

void proto_encode_ack(struct buf *out, const struct proto_ack *m) {
  buf_putc(out, PROTO_ACK);
  mp_put_map(out, 2);
  put_key(out, "Payload");
  put_bytes(out, m->payload);
  put_key(out, "SeqNo");
  mp_put_uint(out, m->seq);
}

void proto_encode_nack(struct buf *out, const struct proto_nack *m) {
  buf_putc(out, PROTO_NACK);
  mp_put_map(out, 1);
  put_key(out, "SeqNo");
  mp_put_uint(out, m->seq);
}

static void encode_suspect_like(struct buf *out, uint8_t type, const struct proto_suspect *m) {
  buf_putc(out, (char)type);
  mp_put_map(out, 3);
  put_key(out, "From");
  put_string(out, m->from);
  put_key(out, "Incarnation");
  mp_put_uint(out, m->incarnation);
  put_key(out, "Node");
  put_string(out, m->node);
}

void proto_encode_suspect(struct buf *out, const struct proto_suspect *m) {
  encode_suspect_like(out, PROTO_SUSPECT, m);
}

void proto_encode_dead(struct buf *out, const struct proto_suspect *m) {
  encode_suspect_like(out, PROTO_DEAD, m);
}

void proto_encode_alive(struct buf *out, const struct proto_alive *m) {
  buf_putc(out, PROTO_ALIVE);
  mp_put_map(out, 6);
  put_key(out, "Addr");
  put_bytes(out, m->addr);
  put_key(out, "Incarnation");
  mp_put_uint(out, m->incarnation);
  put_key(out, "Meta");
  put_bytes(out, m->meta);
  put_key(out, "Node");
  put_string(out, m->node);
  put_key(out, "Port");
  mp_put_uint(out, m->port);
  put_key(out, "Vsn");
  put_bytes(out, m->vsn);
}

void proto_encode_err(struct buf *out, const char *msg) {
  buf_putc(out, PROTO_ERR);
  mp_put_map(out, 1);
  put_key(out, "Error");
  mp_put_str(out, msg);
}

void proto_encode_user(struct buf *out, const void *msg, size_t len) {
  buf_putc(out, PROTO_USER);
  buf_append(out, msg, len);
}

static void encode_push_node(struct buf *out, const struct proto_push_node *n) {
  mp_put_map(out, 7);
  put_key(out, "Addr");
  put_bytes(out, n->addr);
  put_key(out, "Incarnation");
  mp_put_uint(out, n->incarnation);
  put_key(out, "Meta");
  put_bytes(out, n->meta);
  put_key(out, "Name");
  put_string(out, n->name);
  put_key(out, "Port");
  mp_put_uint(out, n->port);
  put_key(out, "State");
  mp_put_int(out, n->state);
  put_key(out, "Vsn");
  put_bytes(out, n->vsn);
}

void proto_encode_push_pull(struct buf *out, bool join, const struct proto_push_node *nodes,
                            size_t n, const void *user, size_t user_len) {
  buf_putc(out, PROTO_PUSH_PULL);
  mp_put_map(out, 3);
  put_key(out, "Join");
  mp_put_bool(out, join);
  put_key(out, "Nodes");
  mp_put_int(out, (int64_t)n);
  put_key(out, "UserStateLen");
  mp_put_int(out, (int64_t)user_len);
  for (size_t i = 0; i < n; i++) encode_push_node(out, &nodes[i]);
  if (user_len) buf_append(out, user, user_len);
}

void proto_encode_user_stream(struct buf *out, const void *msg, size_t len) {
  buf_putc(out, PROTO_USER);
  mp_put_map(out, 1);
  put_key(out, "UserMsgLen");
  mp_put_int(out, (int64_t)len);
  if (len) buf_append(out, msg, len);
}

void proto_encode_compound(struct buf *out, const struct proto_bytes *msgs, size_t n) {
  buf_putc(out, PROTO_COMPOUND);
  buf_putc(out, (char)(uint8_t)n);
  for (size_t i = 0; i < n; i++) {
    buf_putc(out, (char)(uint8_t)(msgs[i].len >> 8));
    buf_putc(out, (char)(uint8_t)msgs[i].len);
  }
  for (size_t i = 0; i < n; i++) buf_append(out, msgs[i].p, msgs[i].len);
}

void proto_encode_crc(struct buf *out, const void *msg, size_t len) {
  uint32_t crc = proto_crc32(msg, len);
  uint8_t hdr[5] = {PROTO_HAS_CRC, (uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8),
                    (uint8_t)crc};
  buf_append(out, hdr, sizeof hdr);
  buf_append(out, msg, len);
}

void proto_encode_compress(struct buf *out, const void *msg, size_t len) {
  struct buf z = BUF_INIT;
  lzw_encode(msg, len, &z);
  buf_putc(out, PROTO_COMPRESS);
  mp_put_map(out, 2);
  put_key(out, "Algo");
  mp_put_uint(out, 0);
  put_key(out, "Buf");
  mp_put_raw(out, z.data, z.len);
  buf_free(&z);
}

/* ---- decoders ---- */

int proto_decode_ping(const uint8_t *p, size_t len, struct proto_ping *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  DECODE_FIELDS(&r, n,
                FIELD("SeqNo", get_u32(&r, &m->seq))
                else FIELD("Node", get_bytes(&r, PROTO_NAME_MAX, &m->node))
                else FIELD("SourceAddr", get_ip(&r, &m->source_addr))
                else FIELD("SourcePort", get_u16(&r, &m->source_port))
                else FIELD("SourceNode", get_bytes(&r, PROTO_NAME_MAX, &m->source_node)))
  return 0;
}

int proto_decode_indirect_ping(const uint8_t *p, size_t len, struct proto_indirect_ping *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  DECODE_FIELDS(&r, n,
                FIELD("SeqNo", get_u32(&r, &m->seq))
                else FIELD("Target", get_ip(&r, &m->target))
                else FIELD("Port", get_u16(&r, &m->port))
                else FIELD("Node", get_bytes(&r, PROTO_NAME_MAX, &m->node))
                else FIELD("Nack", mp_read_bool(&r, &m->nack))
                else FIELD("SourceAddr", get_ip(&r, &m->source_addr))
                else FIELD("SourcePort", get_u16(&r, &m->source_port))
                else FIELD("SourceNode", get_bytes(&r, PROTO_NAME_MAX, &m->source_node)))
  return 0;
}

int proto_decode_ack(const uint8_t *p, size_t len, struct proto_ack *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  DECODE_FIELDS(&r, n,
                FIELD("SeqNo", get_u32(&r, &m->seq))
                else FIELD("Payload", get_bytes(&r, PROTO_PAYLOAD_MAX, &m->payload)))
  return 0;
}

int proto_decode_nack(const uint8_t *p, size_t len, struct proto_nack *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  DECODE_FIELDS(&r, n, FIELD("SeqNo", get_u32(&r, &m->seq)))
  return 0;
}

int proto_decode_suspect(const uint8_t *p, size_t len, struct proto_suspect *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  DECODE_FIELDS(&r, n,
                FIELD("Incarnation", get_u32(&r, &m->incarnation))
                else FIELD("Node", get_bytes(&r, PROTO_NAME_MAX, &m->node))
                else FIELD("From", get_bytes(&r, PROTO_NAME_MAX, &m->from)))
  return 0;
}

static int decode_alive_fields(struct mp_r *r, uint32_t n, struct proto_alive *m) {
  DECODE_FIELDS(r, n,
                FIELD("Incarnation", get_u32(r, &m->incarnation))
                else FIELD("Node", get_bytes(r, PROTO_NAME_MAX, &m->node))
                else FIELD("Addr", get_ip(r, &m->addr))
                else FIELD("Port", get_u16(r, &m->port))
                else FIELD("Meta", get_bytes(r, PROTO_META_MAX, &m->meta))
                else FIELD("Vsn", get_vsn(r, &m->vsn)))
  return 0;
}

int proto_decode_alive(const uint8_t *p, size_t len, struct proto_alive *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  return decode_alive_fields(&r, n, m);
}

int proto_decode_err(const uint8_t *p, size_t len, struct proto_err *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  DECODE_FIELDS(&r, n, FIELD("Error", get_bytes(&r, 4096, &m->error)))
  return 0;
}

int proto_decode_compound(const uint8_t *p, size_t len, struct proto_bytes *parts, size_t *nparts,
                          size_t *trunc) {
  *nparts = 0;
  *trunc = 0;
  if (len < 1) return CC_EINVAL;
  size_t n = p[0];
  p++;
  len--;
  if (len < 2 * n) return CC_EINVAL;
  const uint8_t *body = p + 2 * n;
  size_t left = len - 2 * n;
  for (size_t i = 0; i < n; i++) {
    size_t l = (size_t)p[2 * i] << 8 | p[2 * i + 1];
    if (left < l) {
      *trunc = n - i;
      return 0;
    }
    parts[*nparts].p = body;
    parts[*nparts].len = (uint32_t)l;
    (*nparts)++;
    body += l;
    left -= l;
  }
  return 0;
}

int proto_check_crc(const uint8_t *p, size_t len, struct proto_bytes *inner) {
  if (len < 4) return CC_EINVAL;
  uint32_t want = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
  if (proto_crc32(p + 4, len - 4) != want) return CC_ECORRUPT;
  inner->p = p + 4;
  inner->len = (uint32_t)(len - 4);
  return 0;
}

/* Reads the compress struct; for a stream, a short buffer is "need more" (CC_ECORRUPT). */
static int read_compress(struct mp_r *r, struct proto_bytes *data) {
  uint32_t n;
  int rc = mp_read_map(r, &n);
  if (rc) return rc;
  uint64_t algo = 0;
  bool have_buf = false;
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *k;
    uint32_t klen;
    if ((rc = mp_read_raw(r, 64, &k, &klen))) return rc;
    if (mp_key_is(k, klen, "Algo"))
      rc = mp_read_uint(r, 255, &algo);
    else if (mp_key_is(k, klen, "Buf")) {
      rc = mp_read_raw(r, PROTO_STREAM_MAX, &data->p, &data->len);
      have_buf = true;
    } else
      rc = mp_skip(r);
    if (rc) return rc;
  }
  if (algo != 0 || !have_buf) return CC_EINVAL; /* only lzwAlgo exists */
  return 0;
}

int proto_decompress(const uint8_t *p, size_t len, size_t max, struct buf *out) {
  struct mp_r r;
  struct proto_bytes data;
  mp_r_init(&r, p, len);
  if (read_compress(&r, &data)) return CC_EINVAL;
  int rc = lzw_decode(data.p, data.len, max, out);
  return rc == CC_ETOOBIG ? rc : rc ? CC_EINVAL : 0;
}

/* CRC-32/IEEE (Go's crc32.ChecksumIEEE), reflected polynomial 0xEDB88320. */
uint32_t proto_crc32(const void *data, size_t len) {
  static uint32_t table[256];
  static bool ready;
  if (!ready) {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = true;
  }
  const uint8_t *p = data;
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < len; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

/* ---- streams ---- */

static int read_push_node(struct mp_r *r, struct proto_push_node *nd) {
  uint32_t n;
  int rc = mp_read_map(r, &n);
  if (rc) return rc;
  memset(nd, 0, sizeof *nd);
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *k;
    uint32_t klen;
    if ((rc = mp_read_raw(r, 64, &k, &klen))) return rc;
    if (mp_key_is(k, klen, "Name"))
      rc = get_bytes(r, PROTO_NAME_MAX, &nd->name);
    else if (mp_key_is(k, klen, "Addr"))
      rc = get_ip(r, &nd->addr);
    else if (mp_key_is(k, klen, "Port"))
      rc = get_u16(r, &nd->port);
    else if (mp_key_is(k, klen, "Meta"))
      rc = get_bytes(r, PROTO_META_MAX, &nd->meta);
    else if (mp_key_is(k, klen, "Incarnation"))
      rc = get_u32(r, &nd->incarnation);
    else if (mp_key_is(k, klen, "State"))
      rc = mp_read_int(r, &nd->state);
    else if (mp_key_is(k, klen, "Vsn"))
      rc = get_vsn(r, &nd->vsn);
    else
      rc = mp_skip(r);
    if (rc) return rc;
  }
  return 0;
}

/* Reads a struct with only int/bool fields we care about (push-pull and user headers). */
static int read_header(struct mp_r *r, int64_t *nodes, int64_t *user_len, bool *join) {
  uint32_t n;
  int rc = mp_read_map(r, &n);
  if (rc) return rc;
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *k;
    uint32_t klen;
    if ((rc = mp_read_raw(r, 64, &k, &klen))) return rc;
    if (nodes && mp_key_is(k, klen, "Nodes"))
      rc = mp_read_int(r, nodes);
    else if (mp_key_is(k, klen, "UserStateLen") || mp_key_is(k, klen, "UserMsgLen"))
      rc = mp_read_int(r, user_len);
    else if (join && mp_key_is(k, klen, "Join"))
      rc = mp_read_bool(r, join);
    else
      rc = mp_skip(r);
    if (rc) return rc;
  }
  return 0;
}

/* A struct message (ping, ack, err) inside a stream: find where its map ends, then decode. */
static int read_struct(struct mp_r *r, const uint8_t **start, size_t *len) {
  *start = r->p;
  int rc = mp_skip(r);
  if (rc) return rc;
  *len = (size_t)(r->p - *start);
  return 0;
}

static int parse_inner(const uint8_t *p, size_t len, struct proto_stream_msg *m) {
  if (len < 1) return CC_ECORRUPT;
  struct mp_r r;
  mp_r_init(&r, p + 1, len - 1);
  m->type = p[0];
  int rc;
  const uint8_t *s;
  size_t slen;
  switch (m->type) {
  case PROTO_PUSH_PULL: {
    int64_t nodes = 0, ulen = 0;
    if ((rc = read_header(&r, &nodes, &ulen, &m->join))) return rc;
    if (nodes < 0 || nodes > PROTO_PUSH_NODES_MAX || ulen < 0 || ulen > PROTO_STREAM_MAX)
      return CC_EINVAL;
    /* Each node state is a map of at least one byte: a count beyond the bytes we hold is
     * either more data to come or a lie, and is not worth allocating for until it arrives. */
    if ((uint64_t)nodes > mp_r_left(&r)) return CC_ECORRUPT;
    free(m->nodes);
    m->nodes = nodes ? xcalloc((size_t)nodes, sizeof *m->nodes) : NULL;
    m->nnodes = (size_t)nodes;
    for (int64_t i = 0; i < nodes; i++)
      if ((rc = read_push_node(&r, &m->nodes[i]))) return rc;
    if (mp_r_left(&r) < (uint64_t)ulen) return CC_ECORRUPT;
    m->user.p = ulen ? r.p : NULL;
    m->user.len = (uint32_t)ulen;
    return 0;
  }
  case PROTO_USER: {
    int64_t ulen = 0;
    if ((rc = read_header(&r, NULL, &ulen, NULL))) return rc;
    if (ulen < 0 || ulen > PROTO_STREAM_MAX) return CC_EINVAL;
    if (mp_r_left(&r) < (uint64_t)ulen) return CC_ECORRUPT;
    m->user.p = ulen ? r.p : NULL;
    m->user.len = (uint32_t)ulen;
    return 0;
  }
  case PROTO_PING:
    if ((rc = read_struct(&r, &s, &slen))) return rc;
    return proto_decode_ping(s, slen, &m->ping);
  case PROTO_ACK:
    if ((rc = read_struct(&r, &s, &slen))) return rc;
    return proto_decode_ack(s, slen, &m->ack);
  case PROTO_ERR:
    if ((rc = read_struct(&r, &s, &slen))) return rc;
    return proto_decode_err(s, slen, &m->err);
  default:
    /* encryptMsg needs a keyring we do not have; anything else is not a stream message. */
    return CC_EINVAL;
  }
}

int proto_parse_stream(const uint8_t *p, size_t len, struct proto_stream_msg *m) {
  if (len > PROTO_STREAM_MAX) return CC_ETOOBIG;
  if (len < 1) return CC_ECORRUPT;
  if (p[0] != PROTO_COMPRESS) {
    int rc = parse_inner(p, len, m);
    return rc == CC_EINVAL || rc == CC_ECORRUPT || rc == 0 ? rc : CC_EINVAL;
  }
  struct mp_r r;
  struct proto_bytes data;
  mp_r_init(&r, p + 1, len - 1);
  int rc = read_compress(&r, &data);
  if (rc) return rc;
  buf_reset(&m->plain);
  rc = lzw_decode(data.p, data.len, PROTO_STREAM_MAX, &m->plain);
  if (rc) return rc == CC_ETOOBIG ? rc : CC_EINVAL;
  if (m->plain.len == 0) return CC_EINVAL;
  if (m->plain.data[0] == PROTO_COMPRESS) return CC_EINVAL; /* no nesting */
  rc = parse_inner((const uint8_t *)m->plain.data, m->plain.len, m);
  /* The whole compressed body is here, so a short inner message can never complete. */
  return rc ? CC_EINVAL : 0;
}

void proto_stream_msg_free(struct proto_stream_msg *m) {
  buf_free(&m->plain);
  free(m->nodes);
  m->nodes = NULL;
  m->nnodes = 0;
}
