/* engine.c -- one DNS query in, one answer out: header and question handling, routing by
 * domain, EDNS0, size limits and truncation, SOA and NS records. The forms under the domain
 * are resolved in lookup.c.
 *
 * Behaviour follows Consul's agent/dns.go (the spec, per docs/dns.md), with these choices:
 *  - Names outside the domain and outside arpa. are REFUSED when no recursor is configured
 *    (miekg/dns's ServeMux answers REFUSED when no handler matches), else forwarded.
 *  - Every empty NOERROR answer carries the SOA in authority (RFC 2308 NODATA), where Consul
 *    omits it in a few paths (node lookups of other types, .addr of the other family).
 *  - A UDP answer cut to fit the client's buffer has TC set, so resolvers retry over TCP;
 *    Consul sets TC only with dns_config.enable_truncate. An answer cut only by
 *    udp_answer_limit gets TC with enable_truncate, as in Consul. TCP answers are cut
 *    silently at 64 KiB (there is nothing bigger to retry with).
 *  - Records are added one at a time against the size limit instead of building everything
 *    and trimming (Consul's dnsBinaryTruncate), so the work is proportional to what is sent.
 *  - EDNS: the OPT record of the reply echoes the client's buffer size and DO bit (RFC 3225);
 *    an EDNS version above 0 gets BADVERS (RFC 6891 6.1.3). Client-subnet is not echoed.
 *  - Another datacenter (with a backend that knows datacenters): Consul's agent asks that
 *    datacenter's catalog over RPC and builds the answer itself; here the whole question is
 *    handed back (DNS_REMOTE_DC) for a server of that datacenter to answer with its engine,
 *    so that datacenter's dns_config (TTLs, limits) shapes the answer. SOA, NS and AXFR
 *    questions, .addr names and reverse names are always answered here, as in Consul. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dns/internal.h"
#include "lib/alloc.h"

/* Consul's maxUDPAnswerLimit: whatever udp_answer_limit says, at most 8 answers fit a 512-byte
 * reply comfortably. */
#define UDP_ANSWER_CAP 8
#define OPT_LEN 11

void dns_config_defaults(struct dns_config *cfg)
{
  memset(cfg, 0, sizeof *cfg);
  strcpy(cfg->domain, "consul.");
  cfg->udp_answer_limit = 3;
  cfg->node_meta_txt = true;
  cfg->soa_refresh = 3600;
  cfg->soa_retry = 600;
  cfg->soa_expire = 86400;
  cfg->soa_minttl = 0;
  cfg->recursor_timeout_ms = 2000;
}

uint32_t dns_config_service_ttl(const struct dns_config *cfg, const char *service)
{
  size_t best = 0;
  long found = -1;
  for (size_t i = 0; i < cfg->n_service_ttl && i < DNS_MAX_SERVICE_TTLS; i++) {
    const char *pat = cfg->service_ttl[i].name;
    size_t plen = strlen(pat);
    if (plen > 0 && pat[plen - 1] == '*') {
      if (strncasecmp(service, pat, plen - 1) == 0 && (found < 0 || plen - 1 > best)) {
        best = plen - 1;
        found = (long)i;
      }
    } else if (strcasecmp(service, pat) == 0) {
      return cfg->service_ttl[i].ttl; /* an exact name beats any prefix */
    }
  }
  return found >= 0 ? cfg->service_ttl[found].ttl : 0;
}

static uint32_t wall_clock(void *arg)
{
  (void)arg;
  return (uint32_t)time(NULL);
}

/* Lower-cases a domain into buf and splits it into nm. Returns -1 if it is not a name. */
static int set_domain(const char *text, char *buf, struct dns__name *nm)
{
  size_t n = strlen(text);
  if (n >= 256)
    return -1;
  for (size_t i = 0; i <= n; i++)
    buf[i] = (char)tolower((unsigned char)text[i]);
  dns__name_init(nm);
  return dns__name_text(nm, buf);
}

struct dns_engine *dns_engine_new(const struct dns_config *cfg, const struct dns_backend *backend,
                                  char *errbuf, size_t errlen)
{
  struct dns_engine *e = xcalloc(1, sizeof *e);
  e->seen_bits = DNS_SEEN_MIN_BITS;
  e->cfg = *cfg;
  e->be = *backend;
  e->now = wall_clock;
  if (set_domain(cfg->domain, e->domain_lc, &e->domain) != 0 || e->domain.n == 0) {
    snprintf(errbuf, errlen, "invalid DNS domain \"%s\"", cfg->domain);
    free(e);
    return NULL;
  }
  if (set_domain(cfg->alt_domain, e->alt_lc, &e->alt) != 0) {
    snprintf(errbuf, errlen, "invalid DNS alt_domain \"%s\"", cfg->alt_domain);
    free(e);
    return NULL;
  }
  if (e->cfg.n_recursors > DNS_MAX_RECURSORS)
    e->cfg.n_recursors = DNS_MAX_RECURSORS;
  if (e->cfg.n_service_ttl > DNS_MAX_SERVICE_TTLS)
    e->cfg.n_service_ttl = DNS_MAX_SERVICE_TTLS;
  return e;
}

void dns_engine_free(struct dns_engine *e)
{
  free(e);
}

const char *dns_engine_remote_dc(const struct dns_engine *e)
{
  return e->remote_dc;
}

const struct dns_config *dns_engine_config(const struct dns_engine *e)
{
  return &e->cfg;
}

void dns_engine_set_clock(struct dns_engine *e, uint32_t (*now)(void *arg), void *arg)
{
  e->now = now ? now : wall_clock;
  e->now_arg = arg;
}

/* ---- Helpers for lookup.c ---- */

uint64_t dns__hash(uint64_t h, const void *p, size_t n)
{
  const uint8_t *b = p;
  if (h == 0)
    h = 14695981039346656037ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

/* Fibonacci hashing: keys whose FNV hashes share low bits (addresses in one subnet) still
 * spread over the table. */
static size_t seen_slot(uint64_t key, unsigned bits)
{
  return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

/* Inserts key (known to be absent) into the current generation. */
static void seen_put(struct dns_engine *e, uint64_t key)
{
  size_t mask = ((size_t)1 << e->seen_bits) - 1;
  size_t i = seen_slot(key, e->seen_bits);
  while (e->seen[i].gen == e->seen_gen)
    i = (i + 1) & mask;
  e->seen[i].gen = e->seen_gen;
  e->seen[i].key = key;
}

/* Doubles the set: takes this generation's keys out of the old slots, then rehashes them. */
static void seen_grow(struct dns_engine *e)
{
  size_t cap = (size_t)1 << e->seen_bits, n = 0;
  for (size_t i = 0; i < cap; i++) {
    if (e->seen[i].gen == e->seen_gen) {
      e->seen_tmp[n++] = e->seen[i].key;
      e->seen[i].gen = 0; /* no generation is 0 (dns_engine_answer skips it) */
    }
  }
  e->seen_bits++;
  for (size_t i = 0; i < n; i++)
    seen_put(e, e->seen_tmp[i]);
}

bool dns__first_seen(struct dns_engine *e, uint64_t key)
{
  _Static_assert(DNS_SEEN_SLOTS == 1u << 13, "DNS_SEEN_SLOTS is a power of 2");
  if (e->seen_used >= (3u << e->seen_bits) / 4) {
    if (((size_t)1 << e->seen_bits) >= DNS_SEEN_SLOTS)
      return true;
    seen_grow(e);
  }
  size_t mask = ((size_t)1 << e->seen_bits) - 1;
  for (size_t i = seen_slot(key, e->seen_bits);; i = (i + 1) & mask) {
    if (e->seen[i].gen != e->seen_gen) {
      e->seen[i].gen = e->seen_gen;
      e->seen[i].key = key;
      e->seen_used++;
      return true;
    }
    if (e->seen[i].key == key)
      return false;
  }
}

bool dns__fits(struct dns__reply *r, size_t mark_w, size_t mark_x)
{
  if (!r->w.full && !r->x.full && r->w.len + r->x.len + r->opt_len <= r->limit)
    return true;
  dns__w_undo(&r->w, mark_w);
  dns__w_undo(&r->x, mark_x);
  return false;
}

void dns__resp_domain(const struct dns__reply *r, struct dns__name *nm)
{
  dns__name_init(nm);
  dns__name_append(nm, &r->q->name, r->dom, r->q->name.n);
}

/* ---- SOA ---- */

/* The SOA of the domain the question used (Consul's makeSOARecord): ns.<domain>,
 * hostmaster.<domain>, serial = now, then the configured timers. Its TTL is minttl, so
 * negative answers are cached no longer than the SOA says. */
static bool add_soa(struct dns__reply *r, bool authority)
{
  struct dns__name dom, ns, mbox;
  if (r->dom < r->q->name.n) {
    dns__resp_domain(r, &dom);
  } else {
    dom = r->e->domain; /* arpa. questions: Consul uses its own domain */
  }
  dns__name_init(&ns);
  dns__name_init(&mbox);
  if (dns__name_label(&ns, "ns", 2) != 0 || dns__name_append(&ns, &dom, 0, dom.n) != 0 ||
      dns__name_label(&mbox, "hostmaster", 10) != 0 ||
      dns__name_append(&mbox, &dom, 0, dom.n) != 0)
    return false;
  const struct dns_config *c = &r->e->cfg;
  size_t mw = dns__w_mark(&r->w), mx = dns__w_mark(&r->x);
  dns__w_name(&r->w, &dom, true);
  size_t at = dns__w_rr_begin(&r->w, DNS_T_SOA, c->soa_minttl);
  dns__w_name(&r->w, &ns, true);
  dns__w_name(&r->w, &mbox, true);
  dns__w_u32(&r->w, r->e->now(r->e->now_arg));
  dns__w_u32(&r->w, c->soa_refresh);
  dns__w_u32(&r->w, c->soa_retry);
  dns__w_u32(&r->w, c->soa_expire);
  dns__w_u32(&r->w, c->soa_minttl);
  dns__w_rr_end(&r->w, at);
  if (!dns__fits(r, mw, mx))
    return false;
  if (authority)
    r->ns++;
  else
    r->an++;
  return true;
}

/* ---- Routing ---- */

static bool label_eq(const uint8_t *a, uint8_t alen, const uint8_t *b, uint8_t blen)
{
  if (alen != blen)
    return false;
  for (uint8_t i = 0; i < alen; i++)
    if (tolower(a[i]) != tolower(b[i]))
      return false;
  return true;
}

/* If q's name ends with dom, returns the index of dom's first label in it, else -1. */
static long suffix_at(const struct dns__name *qn, const struct dns__name *dom)
{
  if (dom->n == 0 || dom->n > qn->n)
    return -1;
  size_t start = qn->n - dom->n;
  for (size_t i = 0; i < dom->n; i++)
    if (!label_eq(qn->lab[start + i], qn->len[start + i], dom->lab[i], dom->len[i]))
      return -1;
  return (long)start;
}

/* Which domain, if any, the name is in (the index of its first label, else -1): the longer
 * of domain and alt_domain first, as Consul's trimDomain does. *arpa: not in either but
 * under arpa. (reverse lookups, also answered from the catalog). */
static long route(const struct dns_engine *e, const struct dns__name *qn, bool *arpa)
{
  const struct dns__name *first = &e->domain, *second = &e->alt;
  if (e->alt.wire > e->domain.wire) {
    first = &e->alt;
    second = &e->domain;
  }
  long at = suffix_at(qn, first);
  if (at < 0)
    at = suffix_at(qn, second);
  *arpa = at < 0 && qn->n > 0 &&
          label_eq(qn->lab[qn->n - 1], qn->len[qn->n - 1], (const uint8_t *)"arpa", 4);
  return at;
}

enum dns_scope dns_engine_scope(const struct dns_engine *e, const uint8_t *query, size_t qlen,
                                uint16_t *udp_size)
{
  struct dns__query q;
  bool have_q, arpa;
  int rc = dns__parse_query(query, qlen, &q, &have_q);
  if (udp_size)
    *udp_size = rc >= 0 && q.edns && q.edns_size > DNS_UDP_MIN ? q.edns_size : DNS_UDP_MIN;
  if (rc != 0 || (q.qclass != DNS_C_IN && q.qclass != DNS_C_ANY))
    return DNS_SCOPE_LOCAL;
  if (route(e, &q.name, &arpa) >= 0)
    return DNS_SCOPE_DOMAIN;
  return arpa ? DNS_SCOPE_ARPA : DNS_SCOPE_OUTSIDE;
}

/* Splits labels [0, dom) into lower-case C strings for the lookups. A label holding a NUL
 * or a dot cannot name anything in the catalog: returns false. */
static bool split_labels(struct dns__reply *r)
{
  char *p = r->lc;
  for (size_t i = 0; i < r->dom; i++) {
    const uint8_t *l = r->q->name.lab[i];
    uint8_t n = r->q->name.len[i];
    r->lab[i] = p;
    for (uint8_t k = 0; k < n; k++) {
      if (l[k] == 0 || l[k] == '.')
        return false;
      *p++ = (char)tolower(l[k]);
    }
    *p++ = '\0';
  }
  return true;
}

static void put_header(uint8_t *out, const struct dns__query *q, bool qd, bool aa, bool tc,
                       bool ra, int rcode, uint16_t an, uint16_t ns, uint16_t ar)
{
  out[0] = (uint8_t)(q->id >> 8);
  out[1] = (uint8_t)q->id;
  out[2] = (uint8_t)(0x80 | (q->opcode & 0x0F) << 3 | (aa ? 0x04 : 0) | (tc ? 0x02 : 0) |
                     (q->rd ? 0x01 : 0));
  out[3] = (uint8_t)((ra ? 0x80 : 0) | (q->cd ? 0x10 : 0) | (rcode & 0x0F));
  out[4] = 0;
  out[5] = qd ? 1 : 0;
  out[6] = (uint8_t)(an >> 8);
  out[7] = (uint8_t)an;
  out[8] = (uint8_t)(ns >> 8);
  out[9] = (uint8_t)ns;
  out[10] = (uint8_t)(ar >> 8);
  out[11] = (uint8_t)ar;
}

static void put_opt(struct dns__writer *w, const struct dns__query *q, int rcode)
{
  uint16_t size = q->edns_size < DNS_UDP_MIN ? DNS_UDP_MIN : q->edns_size;
  dns__w_u8(w, 0); /* the root */
  dns__w_u16(w, DNS_T_OPT);
  dns__w_u16(w, size);
  dns__w_u8(w, (uint8_t)(rcode >> 4)); /* extended rcode: its upper 8 bits */
  dns__w_u8(w, 0);                     /* version 0 */
  dns__w_u16(w, q->edns_do ? 0x8000 : 0);
  dns__w_u16(w, 0);
}

/* A reply without records beyond the question (and OPT when the query had one). */
static size_t bare_reply(struct dns_engine *e, const struct dns__query *q, bool have_q, int rcode,
                         uint8_t *out, size_t cap)
{
  struct dns__writer w;
  if (cap < DNS_HDR)
    return 0;
  dns__w_init(&w, out, cap, NULL);
  w.len = DNS_HDR;
  if (have_q) {
    dns__w_name(&w, &q->name, false);
    dns__w_u16(&w, q->qtype);
    dns__w_u16(&w, q->qclass);
  }
  bool opt = have_q && q->edns;
  if (opt)
    put_opt(&w, q, rcode);
  if (w.full) { /* cannot happen with cap >= 512, but never send a broken packet */
    w.len = DNS_HDR;
    have_q = opt = false;
  }
  put_header(out, q, have_q, false, false, e->cfg.n_recursors > 0, rcode, 0, 0, opt ? 1 : 0);
  return w.len;
}

size_t dns_engine_error_reply(struct dns_engine *e, const uint8_t *query, size_t qlen, int rcode,
                              uint8_t *out, size_t outcap)
{
  struct dns__query q;
  bool have_q;
  if (dns__parse_query(query, qlen, &q, &have_q) < 0)
    return 0;
  return bare_reply(e, &q, have_q, rcode, out, outcap);
}

enum dns_action dns_engine_answer(struct dns_engine *e, const uint8_t *query, size_t qlen,
                                  const struct dns_request *req, uint8_t *out, size_t *outlen)
{
  struct dns__query q;
  bool have_q;
  size_t ceiling = req->max_size < DNS_TCP_MAX ? req->max_size : DNS_TCP_MAX;
  e->remote_dc[0] = '\0';
  if (ceiling < DNS_UDP_MIN)
    return DNS_DROP; /* the caller's buffer must hold at least a classic reply */
  int rc = dns__parse_query(query, qlen, &q, &have_q);
  if (rc < 0)
    return DNS_DROP;
  if (rc > 0) {
    *outlen = bare_reply(e, &q, have_q, rc, out, ceiling);
    return *outlen ? DNS_REPLY : DNS_DROP;
  }
  if (q.qclass != DNS_C_IN && q.qclass != DNS_C_ANY) {
    *outlen = bare_reply(e, &q, true, DNS_R_REFUSED, out, ceiling);
    return DNS_REPLY;
  }

  bool arpa;
  long at = route(e, &q.name, &arpa);
  if (at < 0 && !arpa) {
    if (e->cfg.n_recursors > 0)
      return DNS_FORWARD;
    *outlen = bare_reply(e, &q, true, DNS_R_REFUSED, out, ceiling);
    return DNS_REPLY;
  }

  struct dns__reply r;
  memset(&r, 0, offsetof(struct dns__reply, lc));
  r.e = e;
  r.q = &q;
  r.req = req;
  r.aa = true;
  r.dom = at >= 0 ? (size_t)at : q.name.n;
  r.opt_len = q.edns ? OPT_LEN : 0;
  r.max_answers = UINT32_MAX;
  if (req->tcp) {
    r.limit = ceiling;
  } else {
    size_t want = q.edns && q.edns_size > DNS_UDP_MIN ? q.edns_size : DNS_UDP_MIN;
    r.limit = want < ceiling ? want : ceiling;
    /* Consul limits the number of answers only for classic 512-byte clients. */
    if (r.limit == DNS_UDP_MIN) {
      unsigned lim = e->cfg.udp_answer_limit;
      r.max_answers = lim == 0 || lim > UDP_ANSWER_CAP ? UDP_ANSWER_CAP : lim;
    }
  }
  dns__w_init(&r.w, out, r.limit - r.opt_len, &e->ctab);
  dns__w_init(&r.x, e->extra, sizeof e->extra, NULL);
  if (++e->seen_gen == 0) {
    memset(e->seen, 0, sizeof e->seen);
    e->seen_gen = 1;
  }
  e->seen_used = 0;
  e->seen_bits = DNS_SEEN_MIN_BITS;
  r.w.len = DNS_HDR;
  dns__w_name(&r.w, &q.name, false);
  dns__w_u16(&r.w, q.qtype);
  dns__w_u16(&r.w, q.qclass);
  size_t after_q = r.w.len;

  e->dc[0] = '\0';
  if (!e->be.datacenter || e->be.datacenter(e->be.ctx, e->dc, sizeof e->dc) != 0 || !e->dc[0])
    snprintf(e->dc, sizeof e->dc, "dc1");

  enum dns__result res = DNS_OK;
  if (arpa) {
    res = dns__lookup_ptr(&r);
    if (res == DNS_FWD)
      return DNS_FORWARD;
  } else if (!split_labels(&r)) {
    res = DNS_NXDOMAIN;
  } else if (q.qtype == DNS_T_SOA) {
    add_soa(&r, false);
    dns__add_ns(&r, true);
  } else if (q.qtype == DNS_T_NS) {
    dns__add_ns(&r, false);
  } else if (q.qtype == DNS_T_AXFR || q.qtype == DNS_T_IXFR) {
    r.rcode = DNS_R_NOTIMP;
  } else {
    res = dns__lookup(&r);
    if (res == DNS_REMOTE) {
      *outlen = 0;
      return DNS_REMOTE_DC; /* nothing written is kept: that datacenter answers it all */
    }
  }

  if (res != DNS_OK) {
    /* No partial answers with an error: start over after the question. */
    dns__w_undo(&r.w, after_q);
    dns__w_undo(&r.x, 0);
    r.an = r.ns = r.ar = 0;
    r.cut = DNS_CUT_NONE;
    r.rcode = res == DNS_NXDOMAIN ? DNS_R_NXDOMAIN : DNS_R_SERVFAIL;
  }
  /* An answer emptied by truncation is not NODATA: the client retries over TCP. */
  if ((r.rcode == DNS_R_NOERROR && r.an == 0 && r.cut != DNS_CUT_SIZE) ||
      r.rcode == DNS_R_NXDOMAIN)
    add_soa(&r, true);

  bool tc = !req->tcp && (r.cut == DNS_CUT_SIZE || (r.cut == DNS_CUT_COUNT &&
                                                     e->cfg.enable_truncate));
  size_t len = r.w.len;
  memcpy(out + len, e->extra, r.x.len); /* dns__fits kept len + x.len + opt_len <= limit */
  len += r.x.len;
  struct dns__writer tail;
  dns__w_init(&tail, out + len, r.opt_len, NULL);
  if (q.edns)
    put_opt(&tail, &q, r.rcode);
  len += tail.len;
  put_header(out, &q, true, r.aa, tc, e->cfg.n_recursors > 0, r.rcode, r.an, r.ns,
             (uint16_t)(r.ar + (q.edns ? 1 : 0)));
  *outlen = len;
  return DNS_REPLY;
}
