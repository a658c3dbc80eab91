/* codec.h -- the RPC frame format, transport-free (fuzzed by fuzz/fuzz_rpc.c).
 *
 * A connection's first byte says what it carries (RPC_BYTE_*). An RPC connection then carries
 * frames in both directions:
 *
 *   +----------------+-------------------------------------------+
 *   | length: u32 BE | one msgpack map of `length` bytes          |
 *   +----------------+-------------------------------------------+
 *
 *   request  {"Seq": uint, "Method": str, "Body": bin}   client -> server
 *   cancel   {"Seq": uint, "Cancel": true}               client -> server
 *   response {"Seq": uint, "Error": str, "Body": bin}    server -> client ("Error" absent = ok)
 *
 * Decoding is strict: one map, string keys, no unknown or repeated keys, nothing after the
 * map, every length checked against the bytes left (the decoder never allocates). A Raft
 * connection instead carries a handshake (rpc_codec_raft_hs) and then libraft's own stream. */
#ifndef CONCORD_RPC_CODEC_H
#define CONCORD_RPC_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define RPC_BYTE_RPC 0x00
#define RPC_BYTE_RAFT 0x01

#define RPC_FRAME_HEADER 4
#define RPC_MAX_METHOD 256
/* Raft handshake after the 0x01 byte: raft id u64 BE, address length u16 BE, address. */
#define RPC_RAFT_HS_FIXED 10
#define RPC_RAFT_MAX_ADDRESS 255

enum rpc_frame_kind { RPC_FRAME_REQUEST, RPC_FRAME_CANCEL, RPC_FRAME_RESPONSE };

/* A decoded frame; the pointers are lent from the decoder's input. */
struct rpc_frame {
  enum rpc_frame_kind kind;
  uint64_t seq;
  const char *method;  /* request: 1..RPC_MAX_METHOD bytes, no NUL */
  size_t method_len;
  const char *error;   /* response: NULL when absent; no NUL inside */
  size_t error_len;
  const uint8_t *body; /* request/response; may be NULL when body_len is 0 */
  size_t body_len;
};

/* The payload length announced by a frame header (4 bytes at p). */
static inline uint32_t rpc_codec_frame_len(const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Splits a byte stream: returns 1 when p starts with a complete frame (*payload_len set; the
 * payload is at p + RPC_FRAME_HEADER), 0 when more bytes are needed, CC_EINVAL for an empty
 * frame, CC_ETOOBIG for one announced above max_frame (checked as soon as the header is in,
 * before anything is buffered for it). */
int rpc_codec_next_frame(const uint8_t *p, size_t len, size_t max_frame, size_t *payload_len);

/* Decodes one frame payload (the map, without the length header). Returns 0 or CC_EINVAL. */
int rpc_codec_decode(const uint8_t *p, size_t len, struct rpc_frame *f);

/* Append a whole frame (header included) to out. Return the payload size they wrote. */
size_t rpc_codec_put_request(struct buf *out, uint64_t seq, const char *method,
                             const void *body, size_t len);
size_t rpc_codec_put_cancel(struct buf *out, uint64_t seq);
/* error NULL: success. */
size_t rpc_codec_put_response(struct buf *out, uint64_t seq, const char *error,
                              const void *body, size_t len);
/* The payload size rpc_codec_put_request would write (to refuse oversize requests early). */
size_t rpc_codec_request_size(const char *method, size_t body_len);
size_t rpc_codec_response_size(const char *error, size_t body_len);

/* The Raft handshake (after the 0x01 byte). Encode: writes RPC_RAFT_HS_FIXED + address bytes
 * to out (address at most RPC_RAFT_MAX_ADDRESS bytes, else CC_EINVAL). Decode the fixed part:
 * returns 0 with the id and the address length still to read, or CC_EINVAL (id 0, address
 * empty or too long). */
int rpc_codec_raft_hs_put(struct buf *out, uint64_t id, const char *address);
int rpc_codec_raft_hs_fixed(const uint8_t p[RPC_RAFT_HS_FIXED], uint64_t *id,
                            size_t *addr_len);

#endif
