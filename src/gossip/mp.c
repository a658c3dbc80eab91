/* mp.c -- go-msgpack-compatible msgpack writer and bounded reader (see mp.h for the why). */
#include "gossip/mp.h"

#include <string.h>

#include "lib/err.h"

static void put_be(struct buf *b, uint8_t tag, uint64_t v, int nbytes) {
  uint8_t tmp[9];
  tmp[0] = tag;
  for (int i = 0; i < nbytes; i++) tmp[1 + i] = (uint8_t)(v >> (8 * (nbytes - 1 - i)));
  buf_append(b, tmp, (size_t)nbytes + 1);
}

void mp_put_nil(struct buf *b) { buf_putc(b, (char)0xc0); }

void mp_put_bool(struct buf *b, bool v) { buf_putc(b, (char)(v ? 0xc3 : 0xc2)); }

/* go-msgpack encodeUint: positive fixnum up to 127, then uint8/16/32/64. */
void mp_put_uint(struct buf *b, uint64_t v) {
  if (v <= 0x7f)
    buf_putc(b, (char)v);
  else if (v <= 0xff)
    put_be(b, 0xcc, v, 1);
  else if (v <= 0xffff)
    put_be(b, 0xcd, v, 2);
  else if (v <= 0xffffffffu)
    put_be(b, 0xce, v, 4);
  else
    put_be(b, 0xcf, v, 8);
}

/* go-msgpack encodeInt: non-negative values are written as unsigned. */
void mp_put_int(struct buf *b, int64_t v) {
  if (v >= 0)
    mp_put_uint(b, (uint64_t)v);
  else if (v >= -32)
    buf_putc(b, (char)(uint8_t)v);
  else if (v >= INT8_MIN)
    put_be(b, 0xd0, (uint64_t)v, 1);
  else if (v >= INT16_MIN)
    put_be(b, 0xd1, (uint64_t)v, 2);
  else if (v >= INT32_MIN)
    put_be(b, 0xd2, (uint64_t)v, 4);
  else
    put_be(b, 0xd3, (uint64_t)v, 8);
}

/* Old-spec raw: fixraw below 32, raw16, raw32 (go-msgpack with WriteExt=false never uses the
 * 8-bit length form for strings). */
void mp_put_raw(struct buf *b, const void *p, size_t len) {
  if (len < 32)
    buf_putc(b, (char)(0xa0 | len));
  else if (len < 65536)
    put_be(b, 0xda, len, 2);
  else
    put_be(b, 0xdb, len, 4);
  if (len) buf_append(b, p, len);
}

void mp_put_str(struct buf *b, const char *s) { mp_put_raw(b, s, strlen(s)); }

void mp_put_bytes_or_nil(struct buf *b, const void *p, size_t len) {
  if (!p)
    mp_put_nil(b);
  else
    mp_put_raw(b, p, len);
}

void mp_put_map(struct buf *b, uint32_t n) {
  if (n < 16)
    buf_putc(b, (char)(0x80 | n));
  else if (n < 65536)
    put_be(b, 0xde, n, 2);
  else
    put_be(b, 0xdf, n, 4);
}

void mp_put_array(struct buf *b, uint32_t n) {
  if (n < 16)
    buf_putc(b, (char)(0x90 | n));
  else if (n < 65536)
    put_be(b, 0xdc, n, 2);
  else
    put_be(b, 0xdd, n, 4);
}

void mp_put_float64(struct buf *b, double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof u);
  put_be(b, 0xcb, u, 8);
}

/* ---- reader ---- */

static int take(struct mp_r *r, size_t n, uint64_t *out) {
  if (mp_r_left(r) < n) return CC_ECORRUPT;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v = (v << 8) | r->p[i];
  r->p += n;
  *out = v;
  return 0;
}

static int take_raw(struct mp_r *r, uint64_t len, struct mp_val *v) {
  if (mp_r_left(r) < len) return CC_ECORRUPT;
  v->type = MP_RAW;
  v->p = r->p;
  v->len = (uint32_t)len;
  r->p += len;
  return 0;
}

/* Containers: every element takes at least one byte, so a count above the bytes left can
 * never be satisfied. Refusing it here keeps callers from sizing anything by a lie. For a
 * stream that is still arriving, the same check says "need more" (CC_ECORRUPT). */
static int container(struct mp_r *r, enum mp_type t, uint64_t n, struct mp_val *v) {
  uint64_t min_bytes = t == MP_MAP ? 2 * n : n;
  if (min_bytes > mp_r_left(r)) return CC_ECORRUPT;
  v->type = t;
  v->n = (uint32_t)n;
  return 0;
}

int mp_next(struct mp_r *r, struct mp_val *v) {
  memset(v, 0, sizeof *v);
  if (r->p >= r->end) return CC_ECORRUPT;
  uint8_t c = *r->p++;
  uint64_t x;
  int rc;
  if (c <= 0x7f) {
    v->type = MP_UINT;
    v->u = c;
    v->i = c;
    return 0;
  }
  if (c >= 0xe0) {
    v->type = MP_INT;
    v->i = (int8_t)c;
    return 0;
  }
  if ((c & 0xe0) == 0xa0) return take_raw(r, c & 0x1f, v);
  if ((c & 0xf0) == 0x90) return container(r, MP_ARRAY, c & 0x0f, v);
  if ((c & 0xf0) == 0x80) return container(r, MP_MAP, c & 0x0f, v);
  switch (c) {
  case 0xc0: v->type = MP_NIL; return 0;
  case 0xc2: v->type = MP_BOOL; v->b = false; return 0;
  case 0xc3: v->type = MP_BOOL; v->b = true; return 0;
  case 0xcc: case 0xcd: case 0xce: case 0xcf:
    if ((rc = take(r, (size_t)1 << (c - 0xcc), &x))) return rc;
    v->type = MP_UINT;
    v->u = x;
    v->i = (int64_t)x;
    return 0;
  case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
    int nb = 1 << (c - 0xd0);
    if ((rc = take(r, (size_t)nb, &x))) return rc;
    int64_t s;
    if (nb == 1) s = (int8_t)x;
    else if (nb == 2) s = (int16_t)x;
    else if (nb == 4) s = (int32_t)x;
    else s = (int64_t)x;
    v->type = MP_INT;
    v->i = s;
    if (s >= 0) v->u = (uint64_t)s;
    return 0;
  }
  case 0xca:
    if ((rc = take(r, 4, &x))) return rc;
    {
      uint32_t u32 = (uint32_t)x;
      float f;
      memcpy(&f, &u32, sizeof f);
      v->type = MP_FLOAT;
      v->f = f;
    }
    return 0;
  case 0xcb:
    if ((rc = take(r, 8, &x))) return rc;
    v->type = MP_FLOAT;
    memcpy(&v->f, &x, sizeof v->f);
    return 0;
  case 0xd9: case 0xc4:
    if ((rc = take(r, 1, &x))) return rc;
    return take_raw(r, x, v);
  case 0xda: case 0xc5:
    if ((rc = take(r, 2, &x))) return rc;
    return take_raw(r, x, v);
  case 0xdb: case 0xc6:
    if ((rc = take(r, 4, &x))) return rc;
    return take_raw(r, x, v);
  case 0xdc:
    if ((rc = take(r, 2, &x))) return rc;
    return container(r, MP_ARRAY, x, v);
  case 0xdd:
    if ((rc = take(r, 4, &x))) return rc;
    return container(r, MP_ARRAY, x, v);
  case 0xde:
    if ((rc = take(r, 2, &x))) return rc;
    return container(r, MP_MAP, x, v);
  case 0xdf:
    if ((rc = take(r, 4, &x))) return rc;
    return container(r, MP_MAP, x, v);
  case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: /* fixext 1..16: type + data */
    if ((rc = take_raw(r, 1 + ((uint64_t)1 << (c - 0xd4)), v))) return rc;
    v->type = MP_EXT;
    return 0;
  case 0xc7: case 0xc8: case 0xc9:
    if ((rc = take(r, (size_t)1 << (c - 0xc7), &x))) return rc;
    if ((rc = take_raw(r, x + 1, v))) return rc;
    v->type = MP_EXT;
    return 0;
  default: /* 0xc1 is never used */
    return CC_EINVAL;
  }
}

static int skip_depth(struct mp_r *r, int depth) {
  struct mp_val v;
  int rc = mp_next(r, &v);
  if (rc) return rc;
  if (v.type != MP_ARRAY && v.type != MP_MAP) return 0;
  if (depth >= MP_MAX_DEPTH) return CC_EINVAL;
  uint64_t items = v.type == MP_MAP ? 2 * (uint64_t)v.n : v.n;
  for (uint64_t i = 0; i < items; i++)
    if ((rc = skip_depth(r, depth + 1))) return rc;
  return 0;
}

int mp_skip(struct mp_r *r) { return skip_depth(r, 0); }

int mp_read_uint(struct mp_r *r, uint64_t max, uint64_t *out) {
  struct mp_val v;
  int rc = mp_next(r, &v);
  if (rc) return rc;
  if (v.type == MP_NIL) {
    *out = 0;
    return 0;
  }
  if (v.type == MP_UINT || (v.type == MP_INT && v.i >= 0)) {
    if (v.u > max) return CC_EINVAL;
    *out = v.u;
    return 0;
  }
  return CC_EINVAL;
}

int mp_read_int(struct mp_r *r, int64_t *out) {
  struct mp_val v;
  int rc = mp_next(r, &v);
  if (rc) return rc;
  if (v.type == MP_NIL) {
    *out = 0;
    return 0;
  }
  if (v.type == MP_INT || (v.type == MP_UINT && v.u <= INT64_MAX)) {
    *out = v.i;
    return 0;
  }
  return CC_EINVAL;
}

int mp_read_bool(struct mp_r *r, bool *out) {
  struct mp_val v;
  int rc = mp_next(r, &v);
  if (rc) return rc;
  if (v.type == MP_NIL) {
    *out = false;
    return 0;
  }
  if (v.type != MP_BOOL) return CC_EINVAL;
  *out = v.b;
  return 0;
}

int mp_read_raw(struct mp_r *r, uint32_t max, const uint8_t **p, uint32_t *len) {
  struct mp_val v;
  int rc = mp_next(r, &v);
  if (rc) return rc;
  if (v.type == MP_NIL) {
    *p = NULL;
    *len = 0;
    return 0;
  }
  if (v.type != MP_RAW || v.len > max) return CC_EINVAL;
  *p = v.p;
  *len = v.len;
  return 0;
}

static int read_container(struct mp_r *r, enum mp_type t, uint32_t *n) {
  struct mp_val v;
  int rc = mp_next(r, &v);
  if (rc) return rc;
  if (v.type == MP_NIL) {
    *n = 0;
    return 0;
  }
  if (v.type != t) return CC_EINVAL;
  *n = v.n;
  return 0;
}

int mp_read_map(struct mp_r *r, uint32_t *n) { return read_container(r, MP_MAP, n); }
int mp_read_array(struct mp_r *r, uint32_t *n) { return read_container(r, MP_ARRAY, n); }
