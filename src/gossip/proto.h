/* proto.h -- memberlist's wire messages (hashicorp/memberlist net.go, util.go), encoded and
 * decoded byte-for-byte as Go does.
 *
 * A UDP packet is one message: a type byte, then a msgpack map (mp.h). Wrappers nest:
 *
 *   [12 hasCrc][crc32 BE, 4 bytes][message...]       protocol >= 5 receivers only
 *   [9 compress][{Algo:0, Buf:<LZW LSB/8 bytes>}]      Buf decompresses to a message
 *   [7 compound][n:1][len1:2]..[lenN:2][msg1]..[msgN] lengths big-endian
 *
 * A TCP stream carries one message the same way (no length prefix): push-pull is the header
 * map, then Nodes node-state maps, then UserStateLen raw bytes of delegate (serf) state.
 *
 * Decoded messages borrow: every struct proto_bytes points into the input buffer, which must
 * outlive the struct. A NULL p means Go's nil slice (written as msgpack nil). */
#ifndef CONCORD_GOSSIP_PROTO_H
#define CONCORD_GOSSIP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum proto_type {
  PROTO_PING = 0,
  PROTO_INDIRECT_PING = 1,
  PROTO_ACK = 2,
  PROTO_SUSPECT = 3,
  PROTO_ALIVE = 4,
  PROTO_DEAD = 5,
  PROTO_PUSH_PULL = 6,
  PROTO_COMPOUND = 7,
  PROTO_USER = 8,
  PROTO_COMPRESS = 9,
  PROTO_ENCRYPT = 10,
  PROTO_NACK = 11,
  PROTO_HAS_CRC = 12,
  PROTO_ERR = 13,
};

/* memberlist's NodeStateType. */
enum proto_state { PROTO_STATE_ALIVE = 0, PROTO_STATE_SUSPECT = 1, PROTO_STATE_DEAD = 2, PROTO_STATE_LEFT = 3 };

/* Limits. Meta is memberlist's MetaMaxSize; names are not capped by Go, 256 is our cap (Consul
 * node names are DNS labels, far shorter). The stream cap is memberlist's maxPushStateBytes. */
#define PROTO_NAME_MAX 256
#define PROTO_META_MAX 512
#define PROTO_PAYLOAD_MAX 65535
#define PROTO_STREAM_MAX (20u * 1024 * 1024)
#define PROTO_PUSH_NODES_MAX 65536
#define PROTO_UDP_MAX 65536

struct proto_bytes {
  const uint8_t *p;
  uint32_t len;
};

static inline struct proto_bytes proto_str(const char *s);

struct proto_ping {
  uint32_t seq;
  struct proto_bytes node;
  struct proto_bytes source_addr; /* omitempty */
  uint16_t source_port;           /* omitempty */
  struct proto_bytes source_node; /* omitempty */
};

struct proto_indirect_ping {
  uint32_t seq;
  struct proto_bytes target;
  uint16_t port;
  struct proto_bytes node;
  bool nack;
  struct proto_bytes source_addr;
  uint16_t source_port;
  struct proto_bytes source_node;
};

struct proto_ack {
  uint32_t seq;
  struct proto_bytes payload;
};

struct proto_nack {
  uint32_t seq;
};

/* suspect and dead have the same fields. */
struct proto_suspect {
  uint32_t incarnation;
  struct proto_bytes node;
  struct proto_bytes from;
};

struct proto_alive {
  uint32_t incarnation;
  struct proto_bytes node;
  struct proto_bytes addr;
  uint16_t port;
  struct proto_bytes meta;
  struct proto_bytes vsn; /* pmin pmax pcur dmin dmax dcur; Go's []uint8 goes out as raw */
};

struct proto_push_node {
  struct proto_bytes name;
  struct proto_bytes addr;
  uint16_t port;
  struct proto_bytes meta;
  uint32_t incarnation;
  int64_t state;
  struct proto_bytes vsn;
};

struct proto_err {
  struct proto_bytes error;
};

/* ---- encoders: append [type][msgpack] to out ---- */
void proto_encode_ping(struct buf *out, const struct proto_ping *m);
void proto_encode_indirect_ping(struct buf *out, const struct proto_indirect_ping *m);
void proto_encode_ack(struct buf *out, const struct proto_ack *m);
void proto_encode_nack(struct buf *out, const struct proto_nack *m);
void proto_encode_suspect(struct buf *out, const struct proto_suspect *m);
void proto_encode_dead(struct buf *out, const struct proto_suspect *m);
void proto_encode_alive(struct buf *out, const struct proto_alive *m);
void proto_encode_err(struct buf *out, const char *msg);
/* [user][bytes] (memberlist's userMsg packet form). */
void proto_encode_user(struct buf *out, const void *msg, size_t len);
/* The push-pull stream: header, n node maps, then user state bytes. */
void proto_encode_push_pull(struct buf *out, bool join, const struct proto_push_node *nodes,
                            size_t n, const void *user, size_t user_len);
/* The user-message stream: [user][{UserMsgLen}][bytes]. */
void proto_encode_user_stream(struct buf *out, const void *msg, size_t len);
/* compound of n (<= 255) messages, each under 64 KiB. */
void proto_encode_compound(struct buf *out, const struct proto_bytes *msgs, size_t n);
/* Prefixes msg with [hasCrc][crc32]. */
void proto_encode_crc(struct buf *out, const void *msg, size_t len);
/* Wraps msg as [compress]{Algo:0, Buf: LZW(msg)}. */
void proto_encode_compress(struct buf *out, const void *msg, size_t len);

/* ---- decoders: p/len is the map after the type byte. 0, or CC_EINVAL ---- */
int proto_decode_ping(const uint8_t *p, size_t len, struct proto_ping *m);
int proto_decode_indirect_ping(const uint8_t *p, size_t len, struct proto_indirect_ping *m);
int proto_decode_ack(const uint8_t *p, size_t len, struct proto_ack *m);
int proto_decode_nack(const uint8_t *p, size_t len, struct proto_nack *m);
int proto_decode_suspect(const uint8_t *p, size_t len, struct proto_suspect *m);
int proto_decode_alive(const uint8_t *p, size_t len, struct proto_alive *m);
int proto_decode_err(const uint8_t *p, size_t len, struct proto_err *m);

/* Splits a compound body (after the type byte). parts must hold 255. *trunc counts parts
 * the lengths promised but the buffer lacks (Go logs and drops those). */
int proto_decode_compound(const uint8_t *p, size_t len, struct proto_bytes *parts, size_t *nparts,
                          size_t *trunc);
/* Checks a hasCrc body (after the type byte): returns 0 and the inner message, or CC_ECORRUPT
 * when the checksum does not match. */
int proto_check_crc(const uint8_t *p, size_t len, struct proto_bytes *inner);
/* Decodes a compress body (after the type byte) into out (appended, at most max bytes). */
int proto_decompress(const uint8_t *p, size_t len, size_t max, struct buf *out);

uint32_t proto_crc32(const void *p, size_t len);

/* ---- streams (TCP) ---- */
/* One message read from a stream. Borrowed fields point into the caller's buffer or into
 * `plain` (owned, when the stream was compressed); `nodes` is owned. Free with
 * proto_stream_msg_free. */
struct proto_stream_msg {
  uint8_t type;
  struct buf plain;
  /* push-pull */
  bool join;
  struct proto_push_node *nodes;
  size_t nnodes;
  struct proto_bytes user;  /* push-pull user state, or the user message */
  struct proto_ping ping;
  struct proto_ack ack;
  struct proto_err err;
};

/* Parses one complete message from the start of a stream buffer. Returns 0 (filled), CC_ECORRUPT
 * if more bytes are needed, CC_EINVAL if the bytes can never be a valid message (including an
 * encrypted stream, which we are not configured for), CC_ETOOBIG if it exceeds PROTO_STREAM_MAX. */
int proto_parse_stream(const uint8_t *p, size_t len, struct proto_stream_msg *m);
void proto_stream_msg_free(struct proto_stream_msg *m);

static inline struct proto_bytes proto_str(const char *s) {
  struct proto_bytes b = {(const uint8_t *)s, 0};
  if (s)
    while (s[b.len]) b.len++;
  return b;
}

static inline bool proto_bytes_eq(struct proto_bytes a, const char *s, size_t len) {
  if (a.len != len) return false;
  for (size_t i = 0; i < len; i++)
    if (a.p[i] != (uint8_t)s[i]) return false;
  return true;
}

#endif
