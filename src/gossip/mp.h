/* mp.h -- the msgpack dialect hashicorp/memberlist and serf speak, written and read by hand.
 *
 * memberlist and serf encode with go-msgpack's codec.MsgpackHandle at its defaults
 * (WriteExt=false), which writes the *old* msgpack spec: strings and []byte alike become
 * "raw" (fixraw 0xa0-0xbf, raw16 0xda, raw32 0xdb; never str8 0xd9 or bin 0xc4-0xc6), a nil
 * slice or map becomes nil (0xc0), integers take the smallest form, and structs become maps
 * keyed by field name with the keys in byte-sorted order. The writer here reproduces exactly
 * that, so our bytes equal Go's for the same message. The reader accepts everything go-msgpack
 * accepts (str8 and bin too).
 *
 * Why not msgpack-c: its unpacker allocates a container's elements as soon as it reads the
 * header, so a 1400-byte packet declaring an array of 2^32 elements asks for 96 GB. This reader
 * is a bounded (pos, end) cursor: it never allocates, it rejects any container whose count
 * exceeds the bytes left, and it caps nesting depth, so hostile packets cost nothing. */
#ifndef CONCORD_GOSSIP_MP_H
#define CONCORD_GOSSIP_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* ---- writer: appends to a struct buf (which owns the memory) ---- */
void mp_put_nil(struct buf *b);
void mp_put_bool(struct buf *b, bool v);
void mp_put_uint(struct buf *b, uint64_t v);
void mp_put_int(struct buf *b, int64_t v);
/* A raw (Go string or []byte) of len bytes; p may be NULL when len is 0. */
void mp_put_raw(struct buf *b, const void *p, size_t len);
void mp_put_str(struct buf *b, const char *s);
/* A Go []byte that may be nil: NULL p writes nil (0xc0), as go-msgpack does for a nil slice. */
void mp_put_bytes_or_nil(struct buf *b, const void *p, size_t len);
void mp_put_map(struct buf *b, uint32_t n);
void mp_put_array(struct buf *b, uint32_t n);
void mp_put_float64(struct buf *b, double v);

/* ---- reader ---- */
enum mp_type { MP_NIL, MP_BOOL, MP_UINT, MP_INT, MP_FLOAT, MP_RAW, MP_ARRAY, MP_MAP, MP_EXT };

/* One value's header. For MP_RAW, p/len lend the bytes (borrowed from the reader's input).
 * For MP_ARRAY/MP_MAP, n is the element (pair) count; the elements follow in the stream. */
struct mp_val {
  enum mp_type type;
  bool b;
  uint64_t u;   /* MP_UINT, and MP_INT when non-negative */
  int64_t i;    /* MP_INT (and MP_UINT when it fits) */
  double f;
  const uint8_t *p;
  uint32_t len;
  uint32_t n;
};

struct mp_r {
  const uint8_t *p;
  const uint8_t *end;
};

#define MP_MAX_DEPTH 16

static inline void mp_r_init(struct mp_r *r, const void *p, size_t len) {
  r->p = (const uint8_t *)p;
  r->end = r->p + len;
}
static inline size_t mp_r_left(const struct mp_r *r) { return (size_t)(r->end - r->p); }

/* Reads one value header. Returns 0, CC_EINVAL on a malformed value, or CC_ECORRUPT when the
 * input ends inside it (callers reading a stream treat that as "need more bytes"). */
int mp_next(struct mp_r *r, struct mp_val *v);
/* Skips one complete value (containers recursively, at most MP_MAX_DEPTH deep). */
int mp_skip(struct mp_r *r);

/* Typed reads, with go-msgpack's conversions: nil reads as 0 / empty; an unsigned field
 * accepts any non-negative integer and rejects values above max. */
int mp_read_uint(struct mp_r *r, uint64_t max, uint64_t *out);
int mp_read_int(struct mp_r *r, int64_t *out);
int mp_read_bool(struct mp_r *r, bool *out);
/* A raw/str/bin (or nil, giving p=NULL len=0) of at most max bytes; lends the bytes. */
int mp_read_raw(struct mp_r *r, uint32_t max, const uint8_t **p, uint32_t *len);
/* A map or array header (nil gives 0). */
int mp_read_map(struct mp_r *r, uint32_t *n);
int mp_read_array(struct mp_r *r, uint32_t *n);
/* A map key (must be a raw); compares it to name. */
static inline bool mp_key_is(const uint8_t *k, uint32_t klen, const char *name) {
  size_t i = 0;
  for (; name[i]; i++)
    if (i >= klen || k[i] != (uint8_t)name[i]) return false;
  return i == klen;
}

#endif
