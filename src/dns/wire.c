/* wire.c -- DNS wire format: reading a query, and a bounded writer with name compression.
 *
 * Concord parses and builds messages itself rather than through ldns: a query is a header and
 * one question (plus an OPT record), and building an answer directly into the caller's buffer
 * avoids the dozens of allocations ldns makes per packet (ldns_wire2pkt, ldns_rr_new, ...),
 * which matters for the benchmark against unbound. ldns is still the independent check: the
 * unit tests and the fuzzer parse every answer with ldns_wire2pkt.
 *
 * Reading is strict where the protocol is (RFC 1035 4.1.4: pointers must point backwards, so
 * every walk ends; labels are at most 63 bytes, names 255) and follows miekg/dns, which Consul
 * uses, on what a query may hold: exactly one question, at most one answer and one authority
 * record (NOTIFY, IXFR), at most two additional records, else FORMERR. */
#include <string.h>

#include "dns/internal.h"

/* ---- Names ---- */

void dns__name_init(struct dns__name *nm)
{
  nm->n = 0;
  nm->wire = 1; /* the root label */
}

int dns__name_label(struct dns__name *nm, const void *p, size_t len)
{
  if (len == 0 || len > DNS_MAX_LABEL || nm->n >= DNS_MAX_LABELS ||
      nm->wire + 1 + len > DNS_MAX_NAME)
    return -1;
  nm->lab[nm->n] = p;
  nm->len[nm->n] = (uint8_t)len;
  nm->n++;
  nm->wire += 1 + len;
  return 0;
}

int dns__name_text(struct dns__name *nm, const char *text)
{
  const char *s = text;
  if (*s == '\0' || (s[0] == '.' && s[1] == '\0'))
    return 0; /* the root: nothing to add */
  for (;;) {
    const char *dot = strchr(s, '.');
    size_t len = dot ? (size_t)(dot - s) : strlen(s);
    if (dns__name_label(nm, s, len) != 0)
      return -1;
    if (!dot || dot[1] == '\0')
      return 0;
    s = dot + 1;
  }
}

int dns__name_append(struct dns__name *nm, const struct dns__name *src, size_t from, size_t to)
{
  for (size_t i = from; i < to && i < src->n; i++)
    if (dns__name_label(nm, src->lab[i], src->len[i]) != 0)
      return -1;
  return 0;
}

/* ---- Reading ---- */

int dns__read_name(const uint8_t *msg, size_t len, size_t off, uint8_t *out, size_t *end)
{
  size_t pos = off, n = 0;
  bool jumped = false;
  for (int jumps = 0;;) {
    if (pos >= len)
      return -1;
    uint8_t c = msg[pos];
    if ((c & 0xC0) == 0xC0) {
      if (pos + 1 >= len || ++jumps > 64)
        return -1;
      size_t target = ((size_t)(c & 0x3F) << 8) | msg[pos + 1];
      if (target >= pos) /* only backwards, so the walk ends */
        return -1;
      if (!jumped)
        *end = pos + 2;
      jumped = true;
      pos = target;
      continue;
    }
    if (c & 0xC0) /* 0x40 and 0x80 are extended label types nobody uses */
      return -1;
    if (c == 0) {
      if (n + 1 > DNS_MAX_NAME)
        return -1;
      out[n++] = 0;
      if (!jumped)
        *end = pos + 1;
      return (int)n;
    }
    if (pos + 1 + c > len || n + 1 + c + 1 > DNS_MAX_NAME)
      return -1;
    memcpy(out + n, msg + pos, 1 + (size_t)c);
    n += 1 + (size_t)c;
    pos += 1 + (size_t)c;
  }
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Skips one RR at *off (bounds-checked). Fills type/class/ttl/rdata for the caller. */
static int read_rr(const uint8_t *msg, size_t len, size_t *off, uint8_t *name, uint16_t *type,
                   uint16_t *klass, uint32_t *ttl, size_t *rdoff, uint16_t *rdlen)
{
  size_t end;
  if (dns__read_name(msg, len, *off, name, &end) < 0 || end + 10 > len)
    return -1;
  *type = rd16(msg + end);
  *klass = rd16(msg + end + 2);
  *ttl = (uint32_t)rd16(msg + end + 4) << 16 | rd16(msg + end + 6);
  *rdlen = rd16(msg + end + 8);
  *rdoff = end + 10;
  if (*rdoff + *rdlen > len)
    return -1;
  *off = *rdoff + *rdlen;
  return 0;
}

int dns__parse_query(const uint8_t *msg, size_t len, struct dns__query *q, bool *have_question)
{
  *have_question = false;
  if (len < DNS_HDR || (msg[2] & 0x80)) /* too short to answer, or a response: drop */
    return -1;
  q->id = rd16(msg);
  q->opcode = (msg[2] >> 3) & 0x0F;
  q->rd = msg[2] & 0x01;
  q->cd = (msg[3] & 0x10) != 0;
  q->edns = false;
  q->edns_size = 0;
  q->edns_version = 0;
  q->edns_do = false;
  uint16_t qd = rd16(msg + 4), an = rd16(msg + 6), ns = rd16(msg + 8), ar = rd16(msg + 10);
  if (q->opcode != 0)
    return DNS_R_NOTIMP;
  if (qd != 1 || an > 1 || ns > 1 || ar > 2)
    return DNS_R_FORMERR;

  size_t off = DNS_HDR, end;
  int n = dns__read_name(msg, len, off, q->qname_wire, &end);
  if (n < 0 || end + 4 > len)
    return DNS_R_FORMERR;
  q->qtype = rd16(msg + end);
  q->qclass = rd16(msg + end + 2);
  off = end + 4;
  dns__name_init(&q->name);
  for (size_t p = 0; q->qname_wire[p] != 0; p += 1 + q->qname_wire[p])
    if (dns__name_label(&q->name, q->qname_wire + p + 1, q->qname_wire[p]) != 0)
      return DNS_R_FORMERR;
  *have_question = true;

  uint8_t name[DNS_MAX_NAME + 1];
  uint16_t type, klass, rdlen;
  uint32_t ttl;
  size_t rdoff;
  for (unsigned i = 0; i < (unsigned)an + ns; i++)
    if (read_rr(msg, len, &off, name, &type, &klass, &ttl, &rdoff, &rdlen) != 0)
      return DNS_R_FORMERR;
  for (unsigned i = 0; i < ar; i++) {
    if (read_rr(msg, len, &off, name, &type, &klass, &ttl, &rdoff, &rdlen) != 0)
      return DNS_R_FORMERR;
    if (type != DNS_T_OPT)
      continue; /* TSIG and friends: not supported, ignored */
    if (q->edns || name[0] != 0) /* RFC 6891 6.1.1: one OPT, owned by the root */
      return DNS_R_FORMERR;
    /* The options must be well-formed code/length/value triples. */
    for (size_t o = rdoff; o < rdoff + rdlen;) {
      if (o + 4 > rdoff + rdlen || o + 4 + rd16(msg + o + 2) > rdoff + rdlen)
        return DNS_R_FORMERR;
      o += 4 + rd16(msg + o + 2);
    }
    q->edns = true;
    q->edns_size = klass;
    q->edns_version = (uint8_t)(ttl >> 16);
    q->edns_do = (ttl & 0x8000) != 0;
  }
  if (q->edns && q->edns_version > 0)
    return DNS_R_BADVERS;
  return 0;
}

/* ---- Writing ---- */

void dns__w_init(struct dns__writer *w, uint8_t *buf, size_t cap, struct dns__ctab *ct)
{
  w->buf = buf;
  w->len = 0;
  w->cap = cap;
  w->full = false;
  w->ct = ct;
  if (ct) {
    /* A new generation forgets every name without clearing 2048 slots per message. */
    if (++ct->gen == 0) {
      memset(ct->slot, 0, sizeof ct->slot);
      ct->gen = 1;
    }
    ct->used = 0;
  }
}

static bool room(struct dns__writer *w, size_t n)
{
  if (w->full || w->len + n > w->cap) {
    w->full = true;
    return false;
  }
  return true;
}

void dns__w_u8(struct dns__writer *w, uint8_t v)
{
  if (room(w, 1))
    w->buf[w->len++] = v;
}

void dns__w_u16(struct dns__writer *w, uint16_t v)
{
  if (room(w, 2)) {
    w->buf[w->len++] = (uint8_t)(v >> 8);
    w->buf[w->len++] = (uint8_t)v;
  }
}

void dns__w_u32(struct dns__writer *w, uint32_t v)
{
  dns__w_u16(w, (uint16_t)(v >> 16));
  dns__w_u16(w, (uint16_t)v);
}

void dns__w_bytes(struct dns__writer *w, const void *p, size_t n)
{
  if (room(w, n)) {
    memcpy(w->buf + w->len, p, n);
    w->len += n;
  }
}

void dns__w_ptr(struct dns__writer *w, size_t off)
{
  dns__w_u16(w, (uint16_t)(0xC000 | off));
}

/* FNV-1a over the label, chained onto the hash of the labels after it: the hash of a suffix
 * names the exact bytes of that suffix (case-sensitive, so answers keep the asker's case). */
static uint32_t label_hash(uint32_t next, const uint8_t *p, uint8_t len)
{
  uint32_t h = next ^ 2166136261u;
  h = (h ^ len) * 16777619u;
  for (uint8_t i = 0; i < len; i++)
    h = (h ^ p[i]) * 16777619u;
  return h ? h : 1;
}

/* True if the name at off in the written message is exactly labels [from, n) of nm. */
static bool name_at(const struct dns__writer *w, size_t off, const struct dns__name *nm,
                    size_t from)
{
  size_t k = from;
  for (int jumps = 0; jumps < 64;) {
    if (off >= w->len)
      return false;
    uint8_t c = w->buf[off];
    if ((c & 0xC0) == 0xC0) {
      if (off + 1 >= w->len)
        return false;
      size_t t = ((size_t)(c & 0x3F) << 8) | w->buf[off + 1];
      if (t >= off)
        return false;
      off = t;
      jumps++;
      continue;
    }
    if (c == 0)
      return k == nm->n;
    if (k == nm->n || c != nm->len[k] || off + 1 + c > w->len ||
        memcmp(w->buf + off + 1, nm->lab[k], c) != 0)
      return false;
    off += 1 + (size_t)c;
    k++;
  }
  return false;
}

static void ctab_put(struct dns__ctab *ct, uint32_t hash, size_t off)
{
  if (off >= 0x4000 || ct->used >= DNS_CTAB_SLOTS * 3 / 4)
    return; /* beyond a pointer's reach, or the table is full enough: write it whole */
  for (size_t i = hash & (DNS_CTAB_SLOTS - 1);; i = (i + 1) & (DNS_CTAB_SLOTS - 1)) {
    if (ct->slot[i].gen != ct->gen) {
      ct->slot[i].gen = ct->gen;
      ct->slot[i].hash = hash;
      ct->slot[i].off = (uint16_t)off;
      ct->used++;
      return;
    }
  }
}

static long ctab_find(const struct dns__writer *w, uint32_t hash, const struct dns__name *nm,
                      size_t from)
{
  const struct dns__ctab *ct = w->ct;
  for (size_t i = hash & (DNS_CTAB_SLOTS - 1); ct->slot[i].gen == ct->gen;
       i = (i + 1) & (DNS_CTAB_SLOTS - 1))
    if (ct->slot[i].hash == hash && name_at(w, ct->slot[i].off, nm, from))
      return ct->slot[i].off;
  return -1;
}

size_t dns__w_name(struct dns__writer *w, const struct dns__name *nm, bool compress)
{
  size_t start = w->len;
  uint32_t h[DNS_MAX_LABELS + 1];
  size_t cut = nm->n; /* labels [cut, n) come from a pointer */
  long ptr = -1;
  if (w->ct) {
    h[nm->n] = 0;
    for (size_t i = nm->n; i-- > 0;)
      h[i] = label_hash(h[i + 1], nm->lab[i], nm->len[i]);
    for (size_t i = 0; compress && i < nm->n; i++) {
      if ((ptr = ctab_find(w, h[i], nm, i)) >= 0) {
        cut = i;
        break;
      }
    }
  }
  for (size_t i = 0; i < cut; i++) {
    size_t at = w->len;
    dns__w_u8(w, nm->len[i]);
    dns__w_bytes(w, nm->lab[i], nm->len[i]);
    if (w->ct && !w->full)
      ctab_put(w->ct, h[i], at);
  }
  if (ptr >= 0)
    dns__w_ptr(w, (size_t)ptr);
  else
    dns__w_u8(w, 0);
  return cut == 0 && ptr >= 0 ? (size_t)ptr : start;
}

size_t dns__w_rr_begin(struct dns__writer *w, uint16_t type, uint32_t ttl)
{
  dns__w_u16(w, type);
  dns__w_u16(w, DNS_C_IN);
  dns__w_u32(w, ttl);
  size_t at = w->len;
  dns__w_u16(w, 0);
  return at;
}

void dns__w_rr_end(struct dns__writer *w, size_t rdlen_at)
{
  if (w->full)
    return;
  size_t n = w->len - (rdlen_at + 2);
  w->buf[rdlen_at] = (uint8_t)(n >> 8);
  w->buf[rdlen_at + 1] = (uint8_t)n;
}
