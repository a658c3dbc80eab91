/* codec.c -- RPC frames and the Raft handshake, encoded and decoded by hand (codec.h).
 *
 * Why not msgpack-c: its unpacker allocates containers from their declared counts before
 * reading them, and frames come from the network. The shapes here are three small fixed
 * maps, so a bounded (pos, end) reader that knows exactly which keys and types it accepts is
 * shorter than a pre-check plus msgpack-c, and it never allocates. The writer uses the
 * smallest msgpack form of every value, as msgpack-c and Go's codecs do. */
#include <string.h>

#include "lib/err.h"
#include "rpc/codec.h"

/* ---- writer ---- */

static void put_be(struct buf *b, uint64_t v, unsigned width)
{
  uint8_t tmp[8];
  for (unsigned i = 0; i < width; i++) tmp[i] = (uint8_t)(v >> (8 * (width - 1 - i)));
  buf_append(b, tmp, width);
}

static void put_byte(struct buf *b, uint8_t c) { buf_append(b, &c, 1); }

static void put_uint(struct buf *b, uint64_t v)
{
  if (v <= 0x7f) {
    put_byte(b, (uint8_t)v);
  } else if (v <= 0xff) {
    put_byte(b, 0xcc), put_be(b, v, 1);
  } else if (v <= 0xffff) {
    put_byte(b, 0xcd), put_be(b, v, 2);
  } else if (v <= 0xffffffffu) {
    put_byte(b, 0xce), put_be(b, v, 4);
  } else {
    put_byte(b, 0xcf), put_be(b, v, 8);
  }
}

static void put_str(struct buf *b, const char *s, size_t len)
{
  if (len <= 31) {
    put_byte(b, (uint8_t)(0xa0 | len));
  } else if (len <= 0xff) {
    put_byte(b, 0xd9), put_be(b, len, 1);
  } else if (len <= 0xffff) {
    put_byte(b, 0xda), put_be(b, len, 2);
  } else {
    put_byte(b, 0xdb), put_be(b, len, 4);
  }
  buf_append(b, s, len);
}

static size_t str_size(size_t len)
{
  return len + (len <= 31 ? 1 : len <= 0xff ? 2 : len <= 0xffff ? 3 : 5);
}

static void put_bin(struct buf *b, const void *p, size_t len)
{
  if (len <= 0xff) {
    put_byte(b, 0xc4), put_be(b, len, 1);
  } else if (len <= 0xffff) {
    put_byte(b, 0xc5), put_be(b, len, 2);
  } else {
    put_byte(b, 0xc6), put_be(b, len, 4);
  }
  if (len) buf_append(b, p, len);
}

static size_t bin_size(size_t len) { return len + (len <= 0xff ? 2 : len <= 0xffff ? 3 : 5); }

/* Reserves the length header; finish_frame patches it once the payload is written. */
static size_t start_frame(struct buf *b)
{
  size_t at = b->len;
  put_be(b, 0, RPC_FRAME_HEADER);
  return at;
}

static size_t finish_frame(struct buf *b, size_t at)
{
  size_t n = b->len - at - RPC_FRAME_HEADER;
  uint8_t *h = (uint8_t *)b->data + at;
  h[0] = (uint8_t)(n >> 24), h[1] = (uint8_t)(n >> 16), h[2] = (uint8_t)(n >> 8);
  h[3] = (uint8_t)n;
  return n;
}

size_t rpc_codec_request_size(const char *method, size_t body_len)
{
  /* fixmap + "Seq" + worst-case uint + "Method" + method + "Body" + body */
  return 1 + str_size(3) + 9 + str_size(6) + str_size(strlen(method)) + str_size(4) +
         bin_size(body_len);
}

size_t rpc_codec_response_size(const char *error, size_t body_len)
{
  return 1 + str_size(3) + 9 + (error ? str_size(5) + str_size(strlen(error)) : 0) +
         str_size(4) + bin_size(body_len);
}

size_t rpc_codec_put_request(struct buf *out, uint64_t seq, const char *method,
                             const void *body, size_t len)
{
  size_t at = start_frame(out);
  put_byte(out, 0x83);
  put_str(out, "Seq", 3), put_uint(out, seq);
  put_str(out, "Method", 6), put_str(out, method, strlen(method));
  put_str(out, "Body", 4), put_bin(out, body, len);
  return finish_frame(out, at);
}

size_t rpc_codec_put_cancel(struct buf *out, uint64_t seq)
{
  size_t at = start_frame(out);
  put_byte(out, 0x82);
  put_str(out, "Seq", 3), put_uint(out, seq);
  put_str(out, "Cancel", 6), put_byte(out, 0xc3);
  return finish_frame(out, at);
}

size_t rpc_codec_put_response(struct buf *out, uint64_t seq, const char *error,
                              const void *body, size_t len)
{
  size_t at = start_frame(out);
  put_byte(out, error ? 0x83 : 0x82);
  put_str(out, "Seq", 3), put_uint(out, seq);
  if (error) put_str(out, "Error", 5), put_str(out, error, strlen(error));
  put_str(out, "Body", 4), put_bin(out, body, len);
  return finish_frame(out, at);
}

int rpc_codec_raft_hs_put(struct buf *out, uint64_t id, const char *address)
{
  size_t n = strlen(address);
  if (id == 0 || n == 0 || n > RPC_RAFT_MAX_ADDRESS) return CC_EINVAL;
  put_be(out, id, 8);
  put_be(out, n, 2);
  buf_append(out, address, n);
  return 0;
}

int rpc_codec_raft_hs_fixed(const uint8_t p[RPC_RAFT_HS_FIXED], uint64_t *id,
                            size_t *addr_len)
{
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  size_t n = (size_t)p[8] << 8 | p[9];
  if (v == 0 || n == 0 || n > RPC_RAFT_MAX_ADDRESS) return CC_EINVAL;
  *id = v;
  *addr_len = n;
  return 0;
}

/* ---- reader ---- */

int rpc_codec_next_frame(const uint8_t *p, size_t len, size_t max_frame, size_t *payload_len)
{
  if (len < RPC_FRAME_HEADER) return 0;
  size_t n = rpc_codec_frame_len(p);
  if (n == 0) return CC_EINVAL;
  if (n > max_frame) return CC_ETOOBIG;
  if (len - RPC_FRAME_HEADER < n) return 0;
  *payload_len = n;
  return 1;
}

struct rd {
  const uint8_t *p, *end;
};

static int rd_be(struct rd *r, unsigned width, uint64_t *out)
{
  if ((size_t)(r->end - r->p) < width) return CC_EINVAL;
  uint64_t v = 0;
  for (unsigned i = 0; i < width; i++) v = v << 8 | r->p[i];
  r->p += width;
  *out = v;
  return 0;
}

static int rd_bytes(struct rd *r, uint64_t n, const uint8_t **out)
{
  if ((uint64_t)(r->end - r->p) < n) return CC_EINVAL;
  *out = r->p;
  r->p += n;
  return 0;
}

/* A str (fixstr, str8/16/32). */
static int rd_str(struct rd *r, const uint8_t **s, size_t *len)
{
  if (r->p >= r->end) return CC_EINVAL;
  uint8_t t = *r->p++;
  uint64_t n;
  if ((t & 0xe0) == 0xa0) n = t & 0x1f;
  else if (t == 0xd9 && rd_be(r, 1, &n) == 0) {}
  else if (t == 0xda && rd_be(r, 2, &n) == 0) {}
  else if (t == 0xdb && rd_be(r, 4, &n) == 0) {}
  else return CC_EINVAL;
  *len = (size_t)n;
  return rd_bytes(r, n, s);
}

/* Bytes: bin8/16/32, a str (older msgpack encoders write []byte as raw), or nil (empty). */
static int rd_bin(struct rd *r, const uint8_t **s, size_t *len)
{
  if (r->p >= r->end) return CC_EINVAL;
  uint8_t t = *r->p;
  uint64_t n;
  if (t == 0xc0) {
    r->p++;
    *s = NULL, *len = 0;
    return 0;
  }
  if (t < 0xc4 || t > 0xc6) return rd_str(r, s, len);
  r->p++;
  if (rd_be(r, t == 0xc4 ? 1 : t == 0xc5 ? 2 : 4, &n)) return CC_EINVAL;
  *len = (size_t)n;
  return rd_bytes(r, n, s);
}

/* A non-negative integer in any msgpack integer form. */
static int rd_uint(struct rd *r, uint64_t *out)
{
  if (r->p >= r->end) return CC_EINVAL;
  uint8_t t = *r->p++;
  uint64_t v;
  if (t <= 0x7f) {
    *out = t;
    return 0;
  }
  switch (t) {
  case 0xcc: case 0xcd: case 0xce: case 0xcf:
    if (rd_be(r, 1u << (t - 0xcc), &v)) return CC_EINVAL;
    *out = v;
    return 0;
  case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
    unsigned w = 1u << (t - 0xd0);
    if (rd_be(r, w, &v)) return CC_EINVAL;
    if (v >> (8 * w - 1) & 1) return CC_EINVAL; /* negative */
    *out = v;
    return 0;
  }
  default:
    return CC_EINVAL;
  }
}

static bool key_is(const uint8_t *k, size_t n, const char *name)
{
  return n == strlen(name) && memcmp(k, name, n) == 0;
}

enum { K_SEQ = 1, K_METHOD = 2, K_BODY = 4, K_ERROR = 8, K_CANCEL = 16 };

int rpc_codec_decode(const uint8_t *p, size_t len, struct rpc_frame *f)
{
  struct rd r = {p, p + len};
  memset(f, 0, sizeof *f);
  if (r.p >= r.end) return CC_EINVAL;
  uint8_t t = *r.p++;
  uint64_t n;
  if ((t & 0xf0) == 0x80) n = t & 0x0f;
  else if (t == 0xde && rd_be(&r, 2, &n) == 0) {}
  else return CC_EINVAL;
  if (n < 1 || n > 3) return CC_EINVAL; /* no frame has more than three keys */
  unsigned seen = 0;
  for (uint64_t i = 0; i < n; i++) {
    const uint8_t *k;
    size_t kl;
    if (rd_str(&r, &k, &kl)) return CC_EINVAL;
    unsigned bit;
    if (key_is(k, kl, "Seq")) bit = K_SEQ;
    else if (key_is(k, kl, "Method")) bit = K_METHOD;
    else if (key_is(k, kl, "Body")) bit = K_BODY;
    else if (key_is(k, kl, "Error")) bit = K_ERROR;
    else if (key_is(k, kl, "Cancel")) bit = K_CANCEL;
    else return CC_EINVAL;
    if (seen & bit) return CC_EINVAL; /* repeated key */
    const uint8_t *s;
    switch (bit) {
    case K_SEQ:
      if (rd_uint(&r, &f->seq)) return CC_EINVAL;
      break;
    case K_METHOD:
      if (rd_str(&r, &s, &f->method_len)) return CC_EINVAL;
      if (f->method_len == 0 || f->method_len > RPC_MAX_METHOD) return CC_EINVAL;
      if (memchr(s, 0, f->method_len)) return CC_EINVAL;
      f->method = (const char *)s;
      break;
    case K_BODY:
      if (rd_bin(&r, &f->body, &f->body_len)) return CC_EINVAL;
      break;
    case K_ERROR:
      if (rd_str(&r, &s, &f->error_len)) return CC_EINVAL;
      if (memchr(s, 0, f->error_len)) return CC_EINVAL;
      f->error = (const char *)s;
      break;
    default: /* K_CANCEL: only `true` means anything */
      if (r.p >= r.end || *r.p != 0xc3) return CC_EINVAL;
      r.p++;
      break;
    }
    seen |= bit;
  }
  if (r.p != r.end) return CC_EINVAL;
  if (!(seen & K_SEQ)) return CC_EINVAL;
  if (seen & K_METHOD) {
    if (seen & (K_ERROR | K_CANCEL)) return CC_EINVAL;
    f->kind = RPC_FRAME_REQUEST;
  } else if (seen & K_CANCEL) {
    if (seen & (K_ERROR | K_BODY)) return CC_EINVAL;
    f->kind = RPC_FRAME_CANCEL;
  } else {
    f->kind = RPC_FRAME_RESPONSE;
  }
  return 0;
}
