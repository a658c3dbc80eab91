/* dns.h -- Consul's DNS interface as a transport-free engine: query bytes in, answer bytes out.
 *
 * The engine answers names under the configured domain ("consul.") and alt_domain from a
 * catalog it reaches only through struct dns_backend (below), so unit tests and the fuzzer
 * drive it with an in-memory fake and the agent plugs in the state store. It never touches a
 * socket, a clock or the allocator while answering: the answer is written into the caller's
 * buffer, and scratch memory is allocated once with the engine. server.h puts it on a libuv
 * loop (UDP, TCP and forwarding to recursors). docs/dns.md lists every record form.
 *
 * Nothing here is thread-safe: one engine belongs to one loop. */
#ifndef CONCORD_DNS_DNS_H
#define CONCORD_DNS_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ---- Configuration (Consul's dns_config, domain, alt_domain, recursors) ---- */

#define DNS_MAX_RECURSORS 8
#define DNS_MAX_SERVICE_TTLS 64

/* One entry of dns_config.service_ttl: "web" matches exactly, "web-*" by prefix, "*" all.
 * An exact name wins over prefixes; the longest prefix wins among prefixes (as Consul). */
struct dns_service_ttl {
  char name[128];
  uint32_t ttl; /* seconds */
};

struct dns_config {
  char domain[256];           /* "consul." (a trailing dot is optional here) */
  char alt_domain[256];       /* "" for none */
  uint32_t node_ttl;          /* seconds; node, addr, NS and PTR answers */
  struct dns_service_ttl service_ttl[DNS_MAX_SERVICE_TTLS];
  size_t n_service_ttl;
  bool only_passing;          /* drop instances whose checks are warning, not just critical */
  bool enable_truncate;       /* also set TC when udp_answer_limit (not size) cut an answer */
  bool node_meta_txt;         /* enable_additional_node_meta_txt: node meta TXT in additional */
  bool translate_wan_addrs;   /* answer WAN tagged addresses for other datacenters' nodes */
  unsigned udp_answer_limit;  /* answers in a UDP reply without EDNS (capped at 8, as Consul) */
  unsigned a_record_limit;    /* answers in any A/AAAA service reply; 0 = no limit */
  uint32_t soa_refresh, soa_retry, soa_expire, soa_minttl;
  /* Upstream resolvers for names outside the domain, "ip" or "ip:port" ("[v6]:port"); used by
   * server.h. Without any, such names are REFUSED, as Consul does. */
  char recursors[DNS_MAX_RECURSORS][64];
  size_t n_recursors;
  unsigned recursor_timeout_ms;
};

/* Consul's defaults (agent/config/default.go and builder.go): domain "consul.", TTLs 0,
 * udp_answer_limit 3, a_record_limit 0, node_meta_txt on, SOA 3600/600/86400/0, recursor
 * timeout 2 s, everything else off or empty. */
void dns_config_defaults(struct dns_config *cfg);
/* The TTL for a service name under cfg.service_ttl (0 when nothing matches). */
uint32_t dns_config_service_ttl(const struct dns_config *cfg, const char *service);

/* ---- The catalog, as the engine sees it ---- */

enum dns_health { DNS_HEALTH_PASSING, DNS_HEALTH_WARNING, DNS_HEALTH_CRITICAL };

struct dns_kv {
  const char *key;
  const char *value;
};

/* A node. Strings are borrowed: valid only during the callback that receives the struct.
 * Absent tagged addresses are NULL or "". Addresses are text, as in the catalog: an IPv4 or
 * IPv6 address, or a host name (which Concord answers with a CNAME). */
struct dns_node {
  const char *name;
  const char *datacenter;
  const char *address;
  const char *lan_ipv4, *lan_ipv6, *wan, *wan_ipv4, *wan_ipv6; /* TaggedAddresses */
  const struct dns_kv *meta;
  size_t n_meta;
  /* Optional: `address` already parsed by the backend (a store parses it once per write),
   * which saves the engine an inet_pton per record. When address_parsed, address_family is 4
   * or 16 (address_ip in network order; IPv4-mapped IPv6 may be given as 16) or 0 (not an
   * IP). Left false (as by memset), the engine parses the text. */
  bool address_parsed;
  uint8_t address_family;
  uint8_t address_ip[16];
};

struct dns_service_addr {
  const char *address; /* NULL or "" when absent */
  uint16_t port;
};

/* One service instance with its node, borrowed for the duration of one emit call. */
struct dns_instance {
  struct dns_node node;
  const char *address; /* ServiceAddress, "" to use the node's */
  bool address_parsed;    /* as dns_node's, for `address` */
  uint8_t address_family;
  uint8_t address_ip[16];
  uint16_t port;
  struct dns_service_addr lan_ipv4, lan_ipv6, wan, wan_ipv4, wan_ipv6; /* ServiceTaggedAddresses */
  enum dns_health health; /* aggregated over the node's and the service's checks */
  int weight_passing, weight_warning; /* Service.Weights; Consul's default is 1 and 1 */
};

/* Where a backend sends instances. emit returns false when the engine wants no more (the
 * answer is full): the backend must then stop and return. */
struct dns_sink {
  bool (*emit)(struct dns_sink *sink, const struct dns_instance *inst);
};

struct dns_service_query {
  const char *datacenter;
  const char *service; /* matched case-insensitively, as Consul's catalog does */
  const char *tag;     /* NULL for any; else instances carrying this tag (case-insensitive) */
  bool only_passing;   /* a hint: the engine filters health again itself */
};

/* Filled by the backend's prepared_query before its first emit. */
struct dns_query_info {
  char service[256];    /* the service the query resolved to (for service_ttl) */
  char datacenter[128]; /* where the instances are (for SRV target names) */
  bool has_ttl;         /* the query's DNS.TTL was set... */
  uint32_t ttl;         /* ...to this many seconds */
};

/* What a reverse lookup found: a node whose Address is the IP, else a service instance whose
 * ServiceAddress is the IP. */
struct dns_reverse_result {
  bool is_service;
  char name[256];       /* node name, or service name when is_service */
  char datacenter[128];
};

/* The catalog behind the engine. Every call is synchronous and runs on the engine's loop; a
 * backend keeps no pointer it was given after returning, and the engine keeps no pointer it
 * was given after the callback that received it. Return values: 0, CC_ENOTFOUND (no such
 * node / datacenter / query: the engine answers NXDOMAIN), or another negative CC_E* code
 * (answered SERVFAIL). A NULL function pointer means "not supported" (NXDOMAIN). */
struct dns_backend {
  void *ctx;
  /* Copies the local datacenter's name into out (NUL-terminated). */
  int (*datacenter)(void *ctx, char *out, size_t outlen);
  /* Calls fn once with the node `name` (case-insensitive) of datacenter dc. */
  int (*node)(void *ctx, const char *dc, const char *name,
              void (*fn)(void *arg, const struct dns_node *node), void *arg);
  /* Emits the instances of q->service that are not critical (and not warning when
   * q->only_passing), IN RANDOM ORDER: the engine answers the first ones that fit, so the
   * order is the round robin. dns_perm below gives arrays a random order in O(1) per element,
   * so that the work done is proportional to the instances answered, not to all of them.
   * Returns 0 with no emit when the service has no such instance. */
  int (*service)(void *ctx, const struct dns_service_query *q, struct dns_sink *sink);
  /* Runs the prepared query `name` (an ID or a name) in dc: fills *info, then emits its
   * instances in the query's order (shuffled unless it sorts by distance). `client` is the
   * asker's address, for Near = "_ip". */
  int (*prepared_query)(void *ctx, const char *dc, const char *name,
                        const struct sockaddr *client, struct dns_query_info *info,
                        struct dns_sink *sink);
  /* Finds what has the address `ip` (4 or 16 bytes, network order) in dc. */
  int (*reverse)(void *ctx, const char *dc, const uint8_t *ip, size_t iplen,
                 struct dns_reverse_result *out);
  /* Optional: whether dc (lower case, never the local datacenter) is another datacenter this
   * agent can reach (a server that knows it through the WAN pool). When set, a service, node
   * or prepared query name for a known datacenter is not looked up here but handed back as
   * DNS_REMOTE_DC, and one for an unknown datacenter is NXDOMAIN (Consul's "No path to
   * datacenter"). NULL: every datacenter is looked up through the calls above. */
  bool (*datacenter_known)(void *ctx, const char *dc);
};

/* A random permutation of [0, n) enumerated in O(1) time and space per step (a bijection on
 * the next power of two, walked until it lands below n), for backends that keep instances in
 * arrays: `for (dns_perm_init(&p, n); dns_perm_next(&p, &i);) emit(arr[i])`. */
struct dns_perm {
  uint64_t n, mask, i, mul, add, shift;
};
void dns_perm_init(struct dns_perm *p, uint64_t n);
bool dns_perm_next(struct dns_perm *p, uint64_t *out);

/* ---- The engine ---- */

/* Largest messages: 512 without EDNS (RFC 1035), Consul's ceiling for an EDNS UDP reply
 * (65535 - 68), and TCP's 16-bit length prefix. */
#define DNS_UDP_MIN 512
#define DNS_UDP_MAX 65467
#define DNS_TCP_MAX 65535

enum dns_action {
  DNS_REPLY,   /* send the bytes written to out */
  DNS_DROP,    /* send nothing (not a query, or too short to answer) */
  DNS_FORWARD, /* outside the domain and recursors are configured: forward the query */
  DNS_REMOTE_DC, /* names another datacenter the backend knows: dns_engine_remote_dc says
                  * which; a server of that datacenter answers it (server.h's dc upstream) */
};

#define DNS_DC_MAX 128 /* a datacenter name's bytes, with the NUL */

struct dns_request {
  bool tcp;                     /* TCP: no answer-count limit, up to max_size bytes */
  size_t max_size;              /* the transport's ceiling (DNS_UDP_MAX or DNS_TCP_MAX) */
  const struct sockaddr *client; /* may be NULL */
  /* The question comes from another datacenter whose agent translates WAN addresses
   * (translate_wan_addrs): answer with every node's and instance's WAN addresses, as that
   * agent would for a datacenter not its own. */
  bool wan_addrs;
};

struct dns_engine;

/* Copies cfg and the backend struct (not what backend->ctx points to, which must outlive the
 * engine). Returns NULL and a sentence in errbuf on a bad domain. Caller frees with
 * dns_engine_free. */
struct dns_engine *dns_engine_new(const struct dns_config *cfg, const struct dns_backend *backend,
                                  char *errbuf, size_t errlen);
void dns_engine_free(struct dns_engine *e);
const struct dns_config *dns_engine_config(const struct dns_engine *e);
/* Replaces the clock used for SOA serials (unix seconds); tests pin it. */
void dns_engine_set_clock(struct dns_engine *e, uint32_t (*now)(void *arg), void *arg);

/* Answers one query. `out` must hold req->max_size bytes (at most DNS_TCP_MAX are used). On
 * DNS_REPLY, *outlen is the reply's length. Never fails otherwise: malformed queries get
 * FORMERR, other opcodes NOTIMP, and an unparseable header is dropped. */
enum dns_action dns_engine_answer(struct dns_engine *e, const uint8_t *query, size_t qlen,
                                  const struct dns_request *req, uint8_t *out, size_t *outlen);
/* After DNS_REMOTE_DC: the datacenter the question names, lower case (the engine's buffer,
 * valid until the next dns_engine_answer). "" otherwise. */
const char *dns_engine_remote_dc(const struct dns_engine *e);

/* Where a query belongs, without answering it (server.h uses this to send the catalog's
 * questions to a server when this agent has no catalog). */
enum dns_scope {
  DNS_SCOPE_LOCAL,   /* answered from the header alone: dropped, FORMERR, NOTIMP, not IN */
  DNS_SCOPE_DOMAIN,  /* a name under domain or alt_domain */
  DNS_SCOPE_ARPA,    /* a reverse name (under arpa.), answered from the catalog too */
  DNS_SCOPE_OUTSIDE, /* anything else: the recursors' business (or REFUSED) */
};
/* Also sets *udp_size (when not NULL) to the largest UDP reply the asker accepts: its EDNS
 * buffer size, at least 512. */
enum dns_scope dns_engine_scope(const struct dns_engine *e, const uint8_t *query, size_t qlen,
                                uint16_t *udp_size);

/* Writes a reply with `rcode` and no records to the (well-formed) query (SERVFAIL when every
 * recursor failed). Returns its length, or 0 if the query cannot be answered at all. */
size_t dns_engine_error_reply(struct dns_engine *e, const uint8_t *query, size_t qlen,
                              int rcode, uint8_t *out, size_t outcap);

#endif
