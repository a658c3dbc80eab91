/* internal.h -- what the dns/ files share and nobody else sees: the parsed query, domain
 * names as label lists, and the bounded message writer with name compression (wire.c).
 *
 * Message layout (RFC 1035 4.1), for reference:
 *
 *   0               16              32
 *   +---------------+---------------+
 *   |      ID       |QR|Op|AA|TC|RD|RA|Z|AD|CD|RCODE|
 *   +---------------+---------------+
 *   |    QDCOUNT    |    ANCOUNT    |
 *   |    NSCOUNT    |    ARCOUNT    |
 *   +---------------+---------------+
 *   | question: QNAME QTYPE QCLASS  |
 *   | answer / authority / additional RRs:
 *   |   NAME TYPE CLASS TTL RDLENGTH RDATA
 *   +-------------------------------+
 */
#ifndef CONCORD_DNS_INTERNAL_H
#define CONCORD_DNS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/dns.h"

#define DNS_HDR 12
#define DNS_MAX_NAME 255
#define DNS_MAX_LABEL 63
#define DNS_MAX_LABELS 128

enum {
  DNS_T_A = 1, DNS_T_NS = 2, DNS_T_CNAME = 5, DNS_T_SOA = 6, DNS_T_PTR = 12, DNS_T_MX = 15,
  DNS_T_TXT = 16, DNS_T_AAAA = 28, DNS_T_SRV = 33, DNS_T_OPT = 41, DNS_T_IXFR = 251,
  DNS_T_AXFR = 252, DNS_T_ANY = 255,
};
enum { DNS_C_IN = 1, DNS_C_ANY = 255 };
enum {
  DNS_R_NOERROR = 0, DNS_R_FORMERR = 1, DNS_R_SERVFAIL = 2, DNS_R_NXDOMAIN = 3,
  DNS_R_NOTIMP = 4, DNS_R_REFUSED = 5, DNS_R_BADVERS = 16,
};

/* A domain name as a list of labels pointing into someone else's bytes (borrowed). */
struct dns__name {
  uint8_t n;
  uint8_t len[DNS_MAX_LABELS];
  const uint8_t *lab[DNS_MAX_LABELS];
  size_t wire; /* bytes of the uncompressed wire form, including the root's 0 */
};

void dns__name_init(struct dns__name *nm);
/* Appends one label (1..63 bytes). Returns -1 if the label or the name would be too long. */
int dns__name_label(struct dns__name *nm, const void *p, size_t len);
/* Appends the dot-separated labels of text ("a.b", a trailing dot allowed). -1 on an empty
 * label or overflow. */
int dns__name_text(struct dns__name *nm, const char *text);
/* Appends labels [from, to) of another name. */
int dns__name_append(struct dns__name *nm, const struct dns__name *src, size_t from, size_t to);

/* A parsed query (wire.c's dns__parse_query). The name is kept uncompressed in qname_wire,
 * case preserved; `name` labels point into it. */
struct dns__query {
  uint16_t id;
  uint8_t opcode;
  bool rd, cd;
  uint16_t qtype, qclass;
  uint8_t qname_wire[DNS_MAX_NAME + 1];
  struct dns__name name;
  bool edns;
  uint16_t edns_size;
  uint8_t edns_version;
  bool edns_do;
};

/* Reads a query. Returns 0, -1 to drop it (shorter than a header, or a response), or the
 * rcode to answer it with (FORMERR, NOTIMP, BADVERS). What the header held (id, opcode, rd,
 * cd) is filled in whenever the result is not -1, and the question whenever it parsed. */
int dns__parse_query(const uint8_t *msg, size_t len, struct dns__query *q, bool *have_question);

/* Reads the name at off in msg (following compression pointers backwards only, at most
 * 64 jumps) into an uncompressed wire form at out (DNS_MAX_NAME+1 bytes). Sets *end to the
 * offset just past the name at its original place. Returns its length or -1 if malformed. */
int dns__read_name(const uint8_t *msg, size_t len, size_t off, uint8_t *out, size_t *end);

/* ---- The writer ---- */

#define DNS_CTAB_SLOTS 2048 /* names remembered for compression; more only compress less */

struct dns__ctab {
  uint32_t gen;
  unsigned used; /* slots of this generation, kept under 3/4 */
  struct {
    uint32_t gen;
    uint32_t hash;
    uint16_t off;
  } slot[DNS_CTAB_SLOTS];
};

/* Writes into buf[0..cap). Every write checks the room left and sets `full` instead of
 * writing past cap, so callers check once after a record (dns__w_mark/dns__w_undo). */
struct dns__writer {
  uint8_t *buf;
  size_t len, cap;
  bool full;
  struct dns__ctab *ct; /* NULL: no compression */
};

void dns__w_init(struct dns__writer *w, uint8_t *buf, size_t cap, struct dns__ctab *ct);
void dns__w_u8(struct dns__writer *w, uint8_t v);
void dns__w_u16(struct dns__writer *w, uint16_t v);
void dns__w_u32(struct dns__writer *w, uint32_t v);
void dns__w_bytes(struct dns__writer *w, const void *p, size_t n);
/* Writes a name, compressed against names written before when `compress` and the writer has
 * a table; either way its suffixes are remembered for later names (RFC 2782 forbids
 * compressing an SRV target, but the additional A record may point at it). Returns the
 * offset of a complete copy of the name, for pointers. */
size_t dns__w_name(struct dns__writer *w, const struct dns__name *nm, bool compress);
/* A compression pointer to a name already in the message at `off`. */
void dns__w_ptr(struct dns__writer *w, size_t off);
/* Starts an RR after its owner name: TYPE CLASS TTL and a RDLENGTH placeholder, whose
 * offset is returned for dns__w_rr_end. */
size_t dns__w_rr_begin(struct dns__writer *w, uint16_t type, uint32_t ttl);
void dns__w_rr_end(struct dns__writer *w, size_t rdlen_at);
/* Rolls the message back to an earlier length (a record that did not fit). */
static inline size_t dns__w_mark(const struct dns__writer *w) { return w->len; }
static inline void dns__w_undo(struct dns__writer *w, size_t mark)
{
  w->len = mark;
  w->full = false;
}


/* ---- The engine (engine.c) and the lookups (lookup.c) ---- */

#define DNS_SEEN_SLOTS 8192 /* answers deduplicated per message; beyond, duplicates pass */
#define DNS_SEEN_MIN_BITS 11 /* the set's first size, 2048 slots */

struct dns_engine {
  struct dns_config cfg;
  struct dns_backend be;
  char domain_lc[256], alt_lc[256];
  struct dns__name domain, alt; /* lower case, labels point into the strings above */
  uint32_t (*now)(void *arg);
  void *now_arg;
  struct dns__ctab ctab;
  uint8_t extra[DNS_TCP_MAX]; /* the additional section, built beside the message */
  /* The answers' dedup set: open addressing over the first 2^seen_bits slots, doubled as the
   * message grows, so a small answer touches a few cache lines and a large one no more than
   * its size needs; slots of older generations count as empty. */
  uint32_t seen_gen;
  unsigned seen_used, seen_bits;
  struct {
    uint32_t gen;
    uint64_t key;
  } seen[DNS_SEEN_SLOTS];
  uint64_t seen_tmp[DNS_SEEN_SLOTS * 3 / 4]; /* the keys being rehashed while growing */
  char dc[128]; /* the local datacenter, fetched per query */
  char remote_dc[DNS_DC_MAX]; /* the other datacenter of a DNS_REMOTE_DC answer, else "" */
};

/* Why an answer came out shorter than the catalog's. */
enum { DNS_CUT_NONE, DNS_CUT_COUNT, DNS_CUT_SIZE };

/* One reply under construction. The message (header, question, answer, authority) is in w;
 * additional records go to x, which only ever points at names already in w, so it can be
 * appended as is. Each record is checked against `limit` as it is added, so nothing is built
 * that is then thrown away. */
struct dns__reply {
  struct dns_engine *e;
  const struct dns__query *q;
  const struct dns_request *req;
  struct dns__writer w, x;
  uint16_t an, ns, ar;
  size_t limit;        /* the whole message, our OPT record included */
  size_t opt_len;
  unsigned max_answers; /* UINT32_MAX when only the size limits */
  int cut;             /* DNS_CUT_* */
  bool aa;
  int rcode;
  /* The name, split: labels [0, dom) are the query part (also lower-cased into `lc` as C
   * strings), labels [dom, n) are the domain as the asker spelled it. */
  size_t dom;
  char lc[DNS_MAX_NAME + 1];
  const char *lab[DNS_MAX_LABELS];
};

/* Outcome of a lookup, turned into an rcode and an SOA by the engine. */
enum dns__result {
  DNS_OK,       /* answered (maybe nothing, then NOERROR with an SOA: "NODATA") */
  DNS_NXDOMAIN, /* name does not exist */
  DNS_SERVFAIL, /* the backend failed */
  DNS_FWD,      /* a PTR nobody here owns, and recursors exist */
  DNS_REMOTE,   /* the name is for another datacenter the backend knows (e->remote_dc) */
};

/* True if the record just added (since mark_w/mark_x) fits; else rolls both back. */
bool dns__fits(struct dns__reply *r, size_t mark_w, size_t mark_x);
/* The response domain (labels [dom, n) of the question) as a name to build on. */
void dns__resp_domain(const struct dns__reply *r, struct dns__name *nm);
/* Deduplication of answers within one message: true the first time `key` is seen. */
bool dns__first_seen(struct dns_engine *e, uint64_t key);
uint64_t dns__hash(uint64_t h, const void *p, size_t n);

/* lookup.c: the forms under the domain, and reverse lookups. */
enum dns__result dns__lookup(struct dns__reply *r);
enum dns__result dns__lookup_ptr(struct dns__reply *r);
/* The NS records (up to three servers of the "consul" service) in the answer or authority
 * section, with their addresses in additional. */
void dns__add_ns(struct dns__reply *r, bool authority);

#endif
