/* fuzz_rpc.c -- libFuzzer target for what rpc/ reads off the server port: the frame
 * splitter, the frame decoder and the Raft handshake.
 *
 * Input: [mode][bytes...]
 *   mode & 1 == 0: bytes are one frame payload (the msgpack map)
 *   mode & 1 == 1: bytes are an RPC byte stream: split into frames (max_frame from mode's
 *                  high bits), each decoded
 * Every input is also read as a Raft handshake. Whatever decodes is encoded again and must
 * decode to the same frame (the writer and the reader agree). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "rpc/codec.h"

static void check_round_trip(const struct rpc_frame *f)
{
  struct buf b = BUF_INIT;
  char method[RPC_MAX_METHOD + 1];
  char *error = NULL;
  size_t n;
  switch (f->kind) {
  case RPC_FRAME_REQUEST:
    memcpy(method, f->method, f->method_len);
    method[f->method_len] = '\0';
    n = rpc_codec_put_request(&b, f->seq, method, f->body, f->body_len);
    if (n > rpc_codec_request_size(method, f->body_len)) abort();
    break;
  case RPC_FRAME_CANCEL:
    n = rpc_codec_put_cancel(&b, f->seq);
    break;
  default:
    if (f->error != NULL) {
      error = malloc(f->error_len + 1);
      memcpy(error, f->error, f->error_len);
      error[f->error_len] = '\0';
    }
    n = rpc_codec_put_response(&b, f->seq, error, f->body, f->body_len);
    if (n > rpc_codec_response_size(error, f->body_len)) abort();
    break;
  }
  struct rpc_frame g;
  size_t len;
  if (rpc_codec_next_frame((const uint8_t *)b.data, b.len, UINT32_MAX, &len) != 1) abort();
  if (len != n || rpc_codec_decode((const uint8_t *)b.data + RPC_FRAME_HEADER, n, &g) != 0)
    abort();
  if (g.kind != f->kind || g.seq != f->seq || g.body_len != f->body_len ||
      (f->body_len && memcmp(g.body, f->body, f->body_len) != 0))
    abort();
  if (f->kind == RPC_FRAME_REQUEST &&
      (g.method_len != f->method_len || memcmp(g.method, f->method, f->method_len) != 0))
    abort();
  if (f->kind == RPC_FRAME_RESPONSE &&
      ((g.error == NULL) != (f->error == NULL) || g.error_len != f->error_len ||
       (f->error_len && memcmp(g.error, f->error, f->error_len) != 0)))
    abort();
  free(error);
  buf_free(&b);
}

static void decode_one(const uint8_t *p, size_t n)
{
  struct rpc_frame f;
  if (rpc_codec_decode(p, n, &f) == 0) check_round_trip(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1) return 0;
  uint8_t mode = data[0];
  const uint8_t *p = data + 1;
  size_t n = size - 1;

  if (n >= RPC_RAFT_HS_FIXED) {
    uint64_t id;
    size_t alen;
    if (rpc_codec_raft_hs_fixed(p, &id, &alen) == 0 &&
        (id == 0 || alen == 0 || alen > RPC_RAFT_MAX_ADDRESS))
      abort();
  }

  if ((mode & 1) == 0) {
    decode_one(p, n);
    return 0;
  }
  size_t max_frame = (size_t)64 << (mode >> 1 & 15); /* 64 B .. 2 MiB */
  size_t off = 0;
  for (;;) {
    size_t len;
    int rv = rpc_codec_next_frame(p + off, n - off, max_frame, &len);
    if (rv != 1) break;
    if (len == 0 || len > max_frame) abort();
    decode_one(p + off + RPC_FRAME_HEADER, len);
    off += RPC_FRAME_HEADER + len;
  }
  return 0;
}
