/* codec.c -- a user event's record: allocation, its msgpack wire form inside the serf event
 * (what Consul's agent writes and reads, agent/user_event.go), its JSON, and the index Consul
 * derives from its ID (agent/event_endpoint.go uuidToUint64).
 *
 * The writer reproduces ugorji's codec with WriteExt (Consul's msgpackHandle): strings as str
 * (fixstr, str8, str16, str32), []byte as bin, fields in struct order, omitempty fields left
 * out. The reader is gossip/mp.h's bounded cursor, which also takes the old raw forms. */
#include <stdlib.h>
#include <string.h>

#include "event/event.h"
#include "gossip/mp.h"
#include "lib/alloc.h"
#include "lib/b64.h"

struct event_user *event_user_new(void)
{
  struct event_user *ev = xcalloc(1, sizeof *ev);
  ev->name = xstrdup("");
  ev->node_filter = xstrdup("");
  ev->service_filter = xstrdup("");
  ev->tag_filter = xstrdup("");
  return ev;
}

void event_user_free(struct event_user *ev)
{
  if (!ev) return;
  free(ev->name);
  free(ev->payload);
  free(ev->node_filter);
  free(ev->service_filter);
  free(ev->tag_filter);
  free(ev);
}

struct event_user *event_user_dup(const struct event_user *src)
{
  struct event_user *ev = xcalloc(1, sizeof *ev);
  memcpy(ev->id, src->id, sizeof ev->id);
  ev->name = xstrdup(src->name);
  ev->node_filter = xstrdup(src->node_filter);
  ev->service_filter = xstrdup(src->service_filter);
  ev->tag_filter = xstrdup(src->tag_filter);
  if (src->payload) {
    ev->payload = xmalloc(src->payload_len + 1);
    memcpy(ev->payload, src->payload, src->payload_len);
    ev->payload[src->payload_len] = 0;
  }
  ev->payload_len = src->payload_len;
  ev->version = src->version;
  ev->ltime = src->ltime;
  return ev;
}

/* ---- writer (new msgpack spec, as WriteExt selects) ---- */

static void put_be(struct buf *b, uint64_t v, int bytes)
{
  uint8_t tmp[8];
  for (int i = 0; i < bytes; i++) tmp[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
  buf_append(b, tmp, (size_t)bytes);
}

static void put_byte(struct buf *b, uint8_t c) { buf_append(b, &c, 1); }

static void put_str(struct buf *b, const char *s)
{
  size_t n = strlen(s);
  if (n < 32) {
    put_byte(b, (uint8_t)(0xa0 | n));
  } else if (n < 256) {
    put_byte(b, 0xd9);
    put_be(b, n, 1);
  } else if (n < 65536) {
    put_byte(b, 0xda);
    put_be(b, n, 2);
  } else {
    put_byte(b, 0xdb);
    put_be(b, n, 4);
  }
  buf_append(b, s, n);
}

static void put_bin(struct buf *b, const uint8_t *p, size_t n)
{
  if (n < 256) {
    put_byte(b, 0xc4);
    put_be(b, n, 1);
  } else if (n < 65536) {
    put_byte(b, 0xc5);
    put_be(b, n, 2);
  } else {
    put_byte(b, 0xc6);
    put_be(b, n, 4);
  }
  buf_append(b, p, n);
}

static void put_int(struct buf *b, int64_t v)
{
  if (v >= 0 && v < 128) {
    put_byte(b, (uint8_t)v);
  } else if (v < 0 && v >= -32) {
    put_byte(b, (uint8_t)(int8_t)v);
  } else {
    put_byte(b, 0xd3); /* int64: rare enough not to need the smaller forms */
    put_be(b, (uint64_t)v, 8);
  }
}

void event_encode(struct buf *out, const struct event_user *ev)
{
  bool p = ev->payload_len > 0, nf = ev->node_filter[0], sf = ev->service_filter[0],
       tf = ev->tag_filter[0];
  put_byte(out, (uint8_t)(0x80 | (3 + p + nf + sf + tf)));
  put_str(out, "ID");
  put_str(out, ev->id);
  put_str(out, "n");
  put_str(out, ev->name);
  if (p) {
    put_str(out, "p");
    put_bin(out, ev->payload, ev->payload_len);
  }
  if (nf) {
    put_str(out, "nf");
    put_str(out, ev->node_filter);
  }
  if (sf) {
    put_str(out, "sf");
    put_str(out, ev->service_filter);
  }
  if (tf) {
    put_str(out, "tf");
    put_str(out, ev->tag_filter);
  }
  put_str(out, "v");
  put_int(out, ev->version);
}

/* ---- reader ---- */

/* A string field: no NUL inside (it would cut the C string short), at most EVENT_MAX_FIELD. */
static int read_string(struct mp_r *r, char **out)
{
  const uint8_t *p;
  uint32_t len;
  if (mp_read_raw(r, EVENT_MAX_FIELD, &p, &len) != 0) return -1;
  if (len && memchr(p, 0, len)) return -1;
  free(*out);
  *out = xstrndup((const char *)(p ? p : (const uint8_t *)""), len);
  return 0;
}

struct event_user *event_decode(const void *data, size_t len)
{
  struct mp_r r;
  mp_r_init(&r, data, len);
  uint32_t n;
  struct mp_val v;
  /* The top level must be a map (a nil would decode to an empty event in Go; it carries no
   * name, so it is useless to us either way). */
  struct mp_r peek = r;
  if (mp_next(&peek, &v) != 0 || v.type != MP_MAP) return NULL;
  if (mp_read_map(&r, &n) != 0) return NULL;
  struct event_user *ev = event_user_new();
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *k;
    uint32_t klen;
    if (mp_read_raw(&r, 64, &k, &klen) != 0) goto bad;
    int rv = 0;
    if (mp_key_is(k, klen, "ID")) {
      const uint8_t *p;
      uint32_t plen;
      rv = mp_read_raw(&r, sizeof ev->id - 1, &p, &plen);
      if (rv == 0) {
        if (plen && memchr(p, 0, plen)) goto bad;
        if (plen) memcpy(ev->id, p, plen);
        ev->id[plen] = 0;
      }
    } else if (mp_key_is(k, klen, "n")) {
      rv = read_string(&r, &ev->name);
    } else if (mp_key_is(k, klen, "p")) {
      const uint8_t *p;
      uint32_t plen;
      rv = mp_read_raw(&r, EVENT_MAX_FIELD, &p, &plen);
      if (rv == 0) {
        free(ev->payload);
        ev->payload = NULL;
        ev->payload_len = 0;
        if (plen) {
          ev->payload = xmalloc(plen + 1);
          memcpy(ev->payload, p, plen);
          ev->payload[plen] = 0;
          ev->payload_len = plen;
        }
      }
    } else if (mp_key_is(k, klen, "nf")) {
      rv = read_string(&r, &ev->node_filter);
    } else if (mp_key_is(k, klen, "sf")) {
      rv = read_string(&r, &ev->service_filter);
    } else if (mp_key_is(k, klen, "tf")) {
      rv = read_string(&r, &ev->tag_filter);
    } else if (mp_key_is(k, klen, "v")) {
      rv = mp_read_int(&r, &ev->version);
    } else {
      rv = mp_skip(&r);
    }
    if (rv != 0) goto bad;
  }
  return ev;
bad:
  event_user_free(ev);
  return NULL;
}

/* ---- index and JSON ---- */

static int hexval(char c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

uint64_t event_index_from_id(const char *id)
{
  /* Consul: lower = id[0:8]+id[9:13]+id[14:18], upper = id[19:23]+id[24:36]. */
  if (strlen(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-')
    return 0;
  uint64_t lo = 0, hi = 0;
  int ndig = 0;
  for (int i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) continue;
    int h = hexval(id[i]);
    if (h < 0) return 0;
    if (ndig < 16) lo = lo << 4 | (uint64_t)h;
    else hi = hi << 4 | (uint64_t)h;
    ndig++;
  }
  return lo ^ hi;
}

json_t *event_user_json(const struct event_user *ev)
{
  json_t *o = json_object();
  json_object_set_new(o, "ID", json_string_nocheck(ev->id));
  json_object_set_new(o, "Name", json_string_nocheck(ev->name));
  if (ev->payload) {
    char *b = xmalloc(b64_encoded_len(ev->payload_len) + 1);
    b64_encode(ev->payload, ev->payload_len, b);
    json_object_set_new(o, "Payload", json_string(b));
    free(b);
  } else {
    json_object_set_new(o, "Payload", json_null());
  }
  json_object_set_new(o, "NodeFilter", json_string_nocheck(ev->node_filter));
  json_object_set_new(o, "ServiceFilter", json_string_nocheck(ev->service_filter));
  json_object_set_new(o, "TagFilter", json_string_nocheck(ev->tag_filter));
  json_object_set_new(o, "Version", json_integer(ev->version));
  json_object_set_new(o, "LTime", json_integer((json_int_t)ev->ltime));
  return o;
}
