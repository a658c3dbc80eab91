/* mp.c -- msgpack helpers for state/: a bounded pre-check that runs before msgpack-c sees
 * untrusted bytes, a packer that appends to a struct buf, and typed field readers.
 *
 * Why the pre-check: msgpack-c's unpacker allocates an array's element storage from the
 * declared count before reading any element, so the five bytes "dd ff ff ff ff" (an array of
 * 4 billion) ask its zone for ~96 GB. Raft entries and snapshots come from disk and from
 * other servers, so the count of every array and map is first checked against the bytes
 * left (each element needs at least one byte); after that msgpack-c allocates at most about
 * 24 bytes per input byte. The depth cap keeps the check's recursion and msgpack-c's own
 * 32-level stack safe. */
#include <string.h>

#include "lib/err.h"
#include "state/internal.h"

struct cursor {
  const uint8_t *p, *end;
};

static int need(struct cursor *c, uint64_t n)
{
  if ((uint64_t)(c->end - c->p) < n) return CC_ECORRUPT;
  return 0;
}

static int read_be(struct cursor *c, unsigned width, uint64_t *out)
{
  if (need(c, width)) return CC_ECORRUPT;
  uint64_t v = 0;
  for (unsigned i = 0; i < width; i++) v = v << 8 | c->p[i];
  c->p += width;
  *out = v;
  return 0;
}

static int skip(struct cursor *c, uint64_t n)
{
  if (need(c, n)) return CC_ECORRUPT;
  c->p += n;
  return 0;
}

static int check_obj(struct cursor *c, int depth);

static int check_items(struct cursor *c, uint64_t items, int depth)
{
  if (depth >= STATE__MP_MAX_DEPTH) return CC_ECORRUPT;
  if (need(c, items)) return CC_ECORRUPT; /* each item is at least one byte */
  for (uint64_t i = 0; i < items; i++) {
    if (check_obj(c, depth + 1)) return CC_ECORRUPT;
  }
  return 0;
}

static int check_obj(struct cursor *c, int depth)
{
  uint64_t n;
  if (need(c, 1)) return CC_ECORRUPT;
  uint8_t b = *c->p++;
  if (b <= 0x7f || b >= 0xe0) return 0;                   /* fixint */
  if (b <= 0x8f) return check_items(c, 2 * (uint64_t)(b & 0x0f), depth); /* fixmap */
  if (b <= 0x9f) return check_items(c, b & 0x0f, depth);  /* fixarray */
  if (b <= 0xbf) return skip(c, b & 0x1f);                /* fixstr */
  switch (b) {
  case 0xc0: case 0xc2: case 0xc3: return 0;              /* nil, false, true */
  case 0xc4: case 0xd9: return read_be(c, 1, &n) ? CC_ECORRUPT : skip(c, n);
  case 0xc5: case 0xda: return read_be(c, 2, &n) ? CC_ECORRUPT : skip(c, n);
  case 0xc6: case 0xdb: return read_be(c, 4, &n) ? CC_ECORRUPT : skip(c, n);
  case 0xc7: return read_be(c, 1, &n) ? CC_ECORRUPT : skip(c, n + 1); /* ext: type byte */
  case 0xc8: return read_be(c, 2, &n) ? CC_ECORRUPT : skip(c, n + 1);
  case 0xc9: return read_be(c, 4, &n) ? CC_ECORRUPT : skip(c, n + 1);
  case 0xca: return skip(c, 4);
  case 0xcb: return skip(c, 8);
  case 0xcc: case 0xd0: return skip(c, 1);
  case 0xcd: case 0xd1: return skip(c, 2);
  case 0xce: case 0xd2: return skip(c, 4);
  case 0xcf: case 0xd3: return skip(c, 8);
  case 0xd4: return skip(c, 2);  /* fixext 1 */
  case 0xd5: return skip(c, 3);
  case 0xd6: return skip(c, 5);
  case 0xd7: return skip(c, 9);
  case 0xd8: return skip(c, 17);
  case 0xdc: return read_be(c, 2, &n) ? CC_ECORRUPT : check_items(c, n, depth);
  case 0xdd: return read_be(c, 4, &n) ? CC_ECORRUPT : check_items(c, n, depth);
  case 0xde: return read_be(c, 2, &n) ? CC_ECORRUPT : check_items(c, 2 * n, depth);
  case 0xdf: return read_be(c, 4, &n) ? CC_ECORRUPT : check_items(c, 2 * n, depth);
  default: return CC_ECORRUPT; /* 0xc1 is never used */
  }
}

int state__mp_check(const void *data, size_t len)
{
  if (!data || !len) return CC_ECORRUPT;
  struct cursor c = {data, (const uint8_t *)data + len};
  if (check_obj(&c, 0)) return CC_ECORRUPT;
  return c.p == c.end ? 0 : CC_ECORRUPT;
}

int state__mp_unpack(const void *data, size_t len, msgpack_unpacked *up)
{
  msgpack_unpacked_init(up);
  size_t off = 0;
  msgpack_unpack_return r = msgpack_unpack_next(up, data, len, &off);
  if (r != MSGPACK_UNPACK_SUCCESS || off != len) return CC_ECORRUPT;
  return 0;
}

static int pack_write(void *data, const char *p, size_t len)
{
  buf_append(data, p, len);
  return 0;
}

void state__mp_packer_init(msgpack_packer *pk, struct buf *out)
{
  msgpack_packer_init(pk, out, pack_write);
}

void state__mp_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
  msgpack_pack_str(pk, len);
  msgpack_pack_str_body(pk, s, len);
}

void state__mp_pack_cstr(msgpack_packer *pk, const char *s)
{
  state__mp_pack_str(pk, s, strlen(s));
}

void state__mp_pack_bin(msgpack_packer *pk, const void *p, size_t len)
{
  msgpack_pack_bin(pk, len);
  msgpack_pack_bin_body(pk, p, len);
}

bool state__mp_key_is(const msgpack_object *k, const char *name)
{
  size_t n = strlen(name);
  return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
         memcmp(k->via.str.ptr, name, n) == 0;
}

int state__mp_uint(const msgpack_object *o, uint64_t *out)
{
  if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return CC_ECORRUPT;
  *out = o->via.u64;
  return 0;
}

int state__mp_bytes(const msgpack_object *o, bool nil_ok, const char **p, size_t *len)
{
  switch (o->type) {
  case MSGPACK_OBJECT_STR:
    *p = o->via.str.ptr;
    *len = o->via.str.size;
    return 0;
  case MSGPACK_OBJECT_BIN:
    *p = o->via.bin.ptr;
    *len = o->via.bin.size;
    return 0;
  case MSGPACK_OBJECT_NIL:
    if (!nil_ok) return CC_ECORRUPT;
    *p = NULL;
    *len = 0;
    return 0;
  default:
    return CC_ECORRUPT;
  }
}

int state__mp_fields(const msgpack_object *o, struct state__mp_field *f, size_t n)
{
  for (size_t i = 0; i < n; i++) f[i].val = NULL;
  if (o->type != MSGPACK_OBJECT_MAP) return CC_ECORRUPT;
  for (uint32_t j = 0; j < o->via.map.size; j++) {
    const msgpack_object_kv *kv = &o->via.map.ptr[j];
    for (size_t i = 0; i < n; i++) {
      if (!state__mp_key_is(&kv->key, f[i].name)) continue;
      if (f[i].val) return CC_ECORRUPT;
      f[i].val = &kv->val;
      break;
    }
  }
  return 0;
}
