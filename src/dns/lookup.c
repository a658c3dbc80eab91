/* lookup.c -- the names under Consul's domain, resolved against the backend, and reverse
 * (PTR) lookups. Each follows agent/dns.go in hashicorp/consul; docs/dns.md has the table.
 *
 *   [tag.]<service>.service[.<dc>].<domain>     A/AAAA/ANY, SRV (+ target A/AAAA, node TXT)
 *   _<service>._<tag|tcp>.service[.<dc>]...     RFC 2782 form ("_tcp" means any tag)
 *   _<service>._<tag|tcp>[.<dc>].<domain>       SRV only: the "service" label is optional
 *   <node>.node[.<dc>].<domain>                 A/AAAA (+ node meta TXT), TXT, ANY
 *   <hex>.addr[.<dc>].<domain>                  the address itself (8 or 32 hex digits)
 *   <query>.query[.<dc>].<domain>               a prepared query, answered like a service
 *   <d>.<c>.<b>.<a>.in-addr.arpa / ip6.arpa     PTR to <node>.node.<dc>.<domain>
 *
 * The datacenter part may also be spelled <dc>.dc. With a backend that knows datacenters, the
 * service, node and query forms for another datacenter go there (DNS_REMOTE, see dc_route);
 * .addr names need no catalog and are answered here whatever they say. Answers are added one instance at a time
 * as the backend emits them (already shuffled), until the size or count limit is reached, so
 * a service with 10,000 instances costs what the three answered ones cost. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dns/internal.h"
#include "lib/err.h"

#define QNAME_OFF DNS_HDR /* the question's name: every answer's owner points at it */

/* Which addresses a query type can use (Consul's TranslateAddressAccept). */
enum { ACC_DOMAIN = 1, ACC_V4 = 2, ACC_V6 = 4, ACC_ANY = 7 };

static bool nz(const char *s) { return s && *s; }

static int accept_for(uint16_t qtype)
{
  if (qtype == DNS_T_A)
    return ACC_V4 | ACC_DOMAIN;
  if (qtype == DNS_T_AAAA)
    return ACC_V6 | ACC_DOMAIN;
  return ACC_ANY;
}

/* Consul's translateAddressAccept: a tagged address of the wanted family first, else the
 * default address (which makeARecord may then find to be of the wrong family). */
static const char *pick_addr(int acc, const char *def, const char *v4, const char *v6)
{
  if ((acc & ACC_V6) && nz(v6))
    return v6;
  if ((acc & ACC_V4) && nz(v4))
    return v4;
  return def ? def : "";
}

/* Consul's translate_wan_addrs: WAN addresses for another datacenter's nodes -- or for every
 * node, when the asker is an agent of another datacenter that translates (req->wan_addrs). */
static bool use_wan(const struct dns__reply *r, const char *dc)
{
  if (r->req->wan_addrs)
    return true;
  return r->e->cfg.translate_wan_addrs && dc && strcasecmp(dc, r->e->dc) != 0;
}

static const char *node_addr(const struct dns__reply *r, const struct dns_node *n, int acc)
{
  if (use_wan(r, n->datacenter))
    return pick_addr(acc, nz(n->wan) ? n->wan : n->address, nz(n->wan_ipv4) ? n->wan_ipv4 : n->lan_ipv4,
                     nz(n->wan_ipv6) ? n->wan_ipv6 : n->lan_ipv6);
  return pick_addr(acc, n->address, n->lan_ipv4, n->lan_ipv6);
}

static const char *service_addr(const struct dns__reply *r, const struct dns_instance *in,
                                const char *dc, int acc)
{
  if (use_wan(r, dc))
    return pick_addr(acc, nz(in->wan.address) ? in->wan.address : in->address,
                     nz(in->wan_ipv4.address) ? in->wan_ipv4.address : in->lan_ipv4.address,
                     nz(in->wan_ipv6.address) ? in->wan_ipv6.address : in->lan_ipv6.address);
  return pick_addr(acc, in->address, in->lan_ipv4.address, in->lan_ipv6.address);
}

static uint16_t service_port(const struct dns__reply *r, const struct dns_instance *in,
                             const char *dc)
{
  if (use_wan(r, dc) && nz(in->wan.address) && in->wan.port != 0)
    return in->wan.port;
  return in->port;
}

/* 16 bytes of IPv6 as Go's net.ParseIP reads them: IPv4-mapped counts as IPv4. */
static int unmap_v6(uint8_t ip[16])
{
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (memcmp(ip, mapped, 12) == 0) {
    memmove(ip, ip + 12, 4);
    return 4;
  }
  return 16;
}

/* An IP address as Go's net.ParseIP reads it. Returns 4, 16 or 0 (not an address: a host
 * name). */
static int parse_ip(const char *s, uint8_t ip[16])
{
  if (!nz(s))
    return 0;
  if (inet_pton(AF_INET, s, ip) == 1)
    return 4;
  if (inet_pton(AF_INET6, s, ip) == 1)
    return unmap_v6(ip);
  return 0;
}

/* parse_ip, from the backend's parsed copy when s is the very string it parsed (the store
 * parses addresses once per write: inet_pton per record was a tenth of a large answer). */
static int parse_ip_known(const char *s, const char *known, bool parsed, uint8_t family,
                          const uint8_t known_ip[16], uint8_t ip[16])
{
  if (!parsed || s != known || (family != 0 && family != 4 && family != 16))
    return parse_ip(s, ip);
  if (family == 0)
    return 0;
  memcpy(ip, known_ip, family);
  return family == 16 ? unmap_v6(ip) : 4;
}

/* Consul's makeARecord: which query types an address of this family answers. */
static bool family_answers(uint16_t qtype, int family)
{
  if (qtype == DNS_T_SRV || qtype == DNS_T_ANY || qtype == DNS_T_NS || qtype == DNS_T_TXT)
    return true;
  return family == 4 ? qtype == DNS_T_A : qtype == DNS_T_AAAA;
}

/* The owner of a record in additional: a pointer to the name already in the message at off,
 * or the whole name when off is beyond a pointer's 14 bits (big TCP answers). */
static void put_owner(struct dns__writer *w, size_t off, const struct dns__name *nm)
{
  if (off < 0x4000 || !nm)
    dns__w_ptr(w, off);
  else
    dns__w_name(w, nm, false);
}

/* An A or AAAA record owned by the name at owner_off (spelled nm, if given). */
static void put_addr_rr(struct dns__writer *w, size_t owner_off, const struct dns__name *nm,
                        const uint8_t *ip, int family, uint32_t ttl)
{
  put_owner(w, owner_off, nm);
  size_t at = dns__w_rr_begin(w, family == 4 ? DNS_T_A : DNS_T_AAAA, ttl);
  dns__w_bytes(w, ip, (size_t)family);
  dns__w_rr_end(w, at);
}

/* "<label>.<kind>.<dc>.<response domain>" (Consul's nodeCanonicalDNSName and
 * serviceCanonicalDNSName, and the .addr names of encodeIPAsFqdn). A name holding dots
 * becomes several labels, as Consul's string concatenation does. */
static int canonical_name(const struct dns__reply *r, struct dns__name *nm, const char *label,
                          const char *kind, const char *dc, bool config_domain)
{
  dns__name_init(nm);
  if (dns__name_text(nm, label) != 0 || nm->n == 0 || dns__name_text(nm, kind) != 0 ||
      dns__name_text(nm, dc) != 0)
    return -1;
  if (config_domain)
    return dns__name_append(nm, &r->e->domain, 0, r->e->domain.n);
  return dns__name_append(nm, &r->q->name, r->dom, r->q->name.n);
}

static void hex_ip(char *out, const uint8_t *ip, int family)
{
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < family; i++) {
    out[2 * i] = hx[ip[i] >> 4];
    out[2 * i + 1] = hx[ip[i] & 15];
  }
  out[2 * family] = '\0';
}

/* Node meta as TXT (Consul's makeTXTRecordFromNodeMeta): "key=value" escaped as RFC 1464
 * says, or the bare value for keys starting "rfc1035-". Long texts are split into 255-byte
 * character-strings. */
static void put_meta_txt(struct dns__writer *w, const struct dns_kv *kv, uint32_t ttl)
{
  char txt[2048];
  size_t n = 0;
#define PUT(c) do { if (n < sizeof txt) txt[n++] = (c); } while (0)
  const char *key = kv->key ? kv->key : "", *val = kv->value ? kv->value : "";
  if (strncasecmp(key, "rfc1035-", 8) != 0) {
    size_t klen = strlen(key), lead = 0, trail = 0;
    while (lead < klen && key[lead] == ' ')
      lead++;
    while (trail < klen - lead && key[klen - 1 - trail] == ' ')
      trail++;
    for (size_t i = 0; i < klen; i++) {
      char c = key[i];
      if (c == '`' || c == '=' || (c == ' ' && (i < lead || i >= klen - trail)))
        PUT('`');
      PUT(c);
    }
    PUT('=');
    for (; *val; val++) {
      if (*val == '`')
        PUT('`');
      PUT(*val);
    }
  } else {
    for (; *val; val++)
      PUT(*val);
  }
#undef PUT
  size_t at = dns__w_rr_begin(w, DNS_T_TXT, ttl);
  size_t off = 0;
  do {
    size_t chunk = n - off > 255 ? 255 : n - off;
    dns__w_u8(w, (uint8_t)chunk);
    dns__w_bytes(w, txt + off, chunk);
    off += chunk;
  } while (off < n);
  dns__w_rr_end(w, at);
}

/* Locality labels after the kind: none (the local datacenter), "<dc>" or "<dc>.dc". Peers,
 * namespaces and partitions are Enterprise or peering features Concord does not have. */
static bool parse_dc(struct dns__reply *r, size_t from, const char **dc)
{
  size_t n = r->dom - from;
  if (n == 0) {
    *dc = r->e->dc;
    return true;
  }
  if (n == 1 || (n == 2 && strcmp(r->lab[from + 1], "dc") == 0)) {
    *dc = r->lab[from];
    return true;
  }
  return false;
}

/* Where a name for datacenter dc is answered: here (DNS_OK: the local datacenter, or a backend
 * that does not know datacenters), by that datacenter (DNS_REMOTE, dc kept in e->remote_dc),
 * or nowhere (NXDOMAIN: a datacenter nobody knows, Consul's ErrNoDCPath). */
static enum dns__result dc_route(struct dns__reply *r, const char *dc)
{
  struct dns_engine *e = r->e;
  if (!e->be.datacenter_known || strcasecmp(dc, e->dc) == 0)
    return DNS_OK;
  if (strlen(dc) >= sizeof e->remote_dc || !e->be.datacenter_known(e->be.ctx, dc))
    return DNS_NXDOMAIN;
  snprintf(e->remote_dc, sizeof e->remote_dc, "%s", dc);
  return DNS_REMOTE;
}

/* Joins labels [from, to) with dots into out (Consul allows dots in tags, nodes, queries). */
static void join(const struct dns__reply *r, size_t from, size_t to, char *out, size_t cap)
{
  size_t n = 0;
  out[0] = '\0';
  for (size_t i = from; i < to; i++)
    n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s", i > from ? "." : "", r->lab[i]);
}

/* True if text names exactly the question (Consul compares dns.Fqdn(addr) with the name as
 * asked). */
static bool fqdn_matches_question(const struct dns__reply *r, const char *text)
{
  struct dns__name nm;
  const struct dns__name *qn = &r->q->name;
  dns__name_init(&nm);
  if (dns__name_text(&nm, text) != 0 || nm.n != qn->n)
    return false;
  for (size_t i = 0; i < nm.n; i++)
    if (nm.len[i] != qn->len[i] || memcmp(nm.lab[i], qn->lab[i], nm.len[i]) != 0)
      return false;
  return true;
}

/* ---- Services and prepared queries ---- */

struct svc_run {
  struct dns_sink sink; /* first: the backend hands it back */
  struct dns__reply *r;
  const char *service;
  const char *dc;          /* the queried datacenter: SRV target names and WAN translation */
  uint32_t ttl;
  bool drop_warning;
  bool any;                /* some instance passed the health filter */
  bool stop;
  unsigned count;
  struct dns_query_info *pq; /* prepared queries: read at the first emit */
  bool pq_ready;
  bool have_cname;
  char cname[DNS_MAX_NAME + 1];
};

enum target_kind { T_NODE, T_IP, T_FQDN };

/* The SRV answer for one instance, its target's address and the node's meta. */
static bool add_srv(struct svc_run *s, const struct dns_instance *in, enum target_kind kind,
                    const uint8_t *ip, int family, const char *fqdn)
{
  struct dns__reply *r = s->r;
  const struct dns_config *c = &r->e->cfg;
  struct dns__name target, node_fqdn;
  char hex[33];
  int rc;
  if (kind == T_NODE) {
    rc = canonical_name(r, &target, in->node.name, "node", s->dc, false);
  } else if (kind == T_IP) {
    hex_ip(hex, ip, family);
    rc = canonical_name(r, &target, hex, "addr", s->dc, false);
  } else {
    dns__name_init(&target);
    rc = dns__name_text(&target, fqdn);
  }
  if (rc != 0)
    return true; /* a name DNS cannot carry: skip this instance */

  if (s->count >= r->max_answers) {
    r->cut = DNS_CUT_COUNT;
    return s->stop = true, false;
  }
  size_t mw = dns__w_mark(&r->w), mx = dns__w_mark(&r->x);
  int weight = in->health == DNS_HEALTH_WARNING ? in->weight_warning : in->weight_passing;
  dns__w_ptr(&r->w, QNAME_OFF);
  size_t at = dns__w_rr_begin(&r->w, DNS_T_SRV, s->ttl);
  dns__w_u16(&r->w, 1); /* priority */
  dns__w_u16(&r->w, (uint16_t)(weight < 0 ? 0 : weight > 65535 ? 65535 : weight));
  dns__w_u16(&r->w, service_port(r, in, s->dc));
  size_t target_off = dns__w_name(&r->w, &target, false);
  dns__w_rr_end(&r->w, at);
  unsigned extras = 0;
  if (kind != T_FQDN) {
    put_addr_rr(&r->x, target_off, &target, ip, family, s->ttl);
    extras++;
  }
  if (!dns__fits(r, mw, mx)) {
    r->cut = DNS_CUT_SIZE;
    return s->stop = true, false;
  }
  r->an++;
  r->ar = (uint16_t)(r->ar + extras);
  s->count++;

  /* Node meta TXT in additional (enable_additional_node_meta_txt), owned by the node's name
   * even when the target is an .addr name. Optional: dropped when it does not fit. */
  if (c->node_meta_txt && in->node.n_meta > 0 &&
      (kind == T_NODE || canonical_name(r, &node_fqdn, in->node.name, "node", s->dc, false) == 0)) {
    for (size_t i = 0; i < in->node.n_meta; i++) {
      mw = dns__w_mark(&r->w);
      mx = dns__w_mark(&r->x);
      if (kind == T_NODE)
        put_owner(&r->x, target_off, &target);
      else
        dns__w_name(&r->x, &node_fqdn, false);
      put_meta_txt(&r->x, &in->node.meta[i], s->ttl);
      if (!dns__fits(r, mw, mx))
        break;
      r->ar++;
    }
  }
  return true;
}

/* The A/AAAA answer for one instance (or remembers its CNAME). */
static bool add_addr(struct svc_run *s, const uint8_t *ip, int family, const char *fqdn)
{
  struct dns__reply *r = s->r;
  const struct dns_config *c = &r->e->cfg;
  if (!ip) {
    /* Consul keeps the first CNAME aside and answers it only if no instance has an IP. */
    if (!s->have_cname && strlen(fqdn) < sizeof s->cname) {
      strcpy(s->cname, fqdn);
      s->have_cname = true;
    }
    return true;
  }
  /* An IPv4 address is its own key (tagged so that it meets no hash); IPv6 is hashed. */
  uint64_t key;
  if (family == 4)
    key = 0x4000000000000000ull | (uint64_t)ip[0] << 24 | (uint64_t)ip[1] << 16 |
          (uint64_t)ip[2] << 8 | ip[3];
  else
    key = dns__hash(dns__hash(0, &family, sizeof family), ip, (size_t)family);
  if (!dns__first_seen(r->e, key))
    return true; /* the same address twice (one node, several ports) */
  if (s->count >= r->max_answers) {
    r->cut = DNS_CUT_COUNT;
    return s->stop = true, false;
  }
  size_t mw = dns__w_mark(&r->w), mx = dns__w_mark(&r->x);
  put_addr_rr(&r->w, QNAME_OFF, NULL, ip, family, s->ttl);
  if (!dns__fits(r, mw, mx)) {
    r->cut = DNS_CUT_SIZE;
    return s->stop = true, false;
  }
  r->an++;
  s->count++;
  if (c->a_record_limit > 0 && s->count >= c->a_record_limit)
    return s->stop = true, false; /* a_record_limit cuts without TC, as in Consul */
  return true;
}

static bool svc_emit(struct dns_sink *sink, const struct dns_instance *in)
{
  struct svc_run *s = (struct svc_run *)sink;
  struct dns__reply *r = s->r;
  if (in->health == DNS_HEALTH_CRITICAL || (in->health == DNS_HEALTH_WARNING && s->drop_warning))
    return true;
  s->any = true;
  if (s->stop)
    return false;
  if (s->pq && !s->pq_ready) {
    s->pq_ready = true;
    s->ttl = s->pq->has_ttl ? s->pq->ttl : dns_config_service_ttl(&r->e->cfg, s->pq->service);
    if (s->pq->datacenter[0])
      s->dc = s->pq->datacenter;
  }
  if (!nz(in->node.name))
    return true;

  uint16_t qt = r->q->qtype;
  int acc = accept_for(qt);
  const char *saddr = service_addr(r, in, s->dc, acc);
  const char *naddr = node_addr(r, &in->node, acc);
  if (!*saddr && !*naddr)
    return true;
  if (qt == DNS_T_SRV) {
    /* Consul's duplicate filter: node, service address and port. */
    char key[600];
    int n = snprintf(key, sizeof key, "%s:%s:%u", in->node.name,
                     service_addr(r, in, s->dc, ACC_ANY), (unsigned)service_port(r, in, s->dc));
    if (!dns__first_seen(r->e, dns__hash(0x5352, key, n > 0 ? (size_t)n : 0)))
      return true;
  }

  /* Consul's makeNodeServiceRecords: which address answers, and what the SRV target is. */
  uint8_t nip[16], sip[16];
  int nfam = parse_ip_known(naddr, in->node.address, in->node.address_parsed,
                            in->node.address_family, in->node.address_ip, nip);
  int sfam = parse_ip_known(saddr, in->address, in->address_parsed, in->address_family,
                            in->address_ip, sip);
  enum target_kind kind;
  const uint8_t *ip = NULL;
  int fam = 0;
  const char *fqdn = NULL;
  if (!*saddr && nfam) {
    /* A tagged address (not the node's own) is named by its .addr form. */
    kind = in->node.address != naddr && strcmp(in->node.address ? in->node.address : "", naddr) != 0
               ? T_IP
               : T_NODE;
    ip = nip;
    fam = nfam;
  } else if (!*saddr) {
    kind = T_FQDN;
    fqdn = naddr;
  } else if (sfam) {
    kind = T_IP;
    ip = sip;
    fam = sfam;
  } else if (nfam && fqdn_matches_question(r, saddr)) {
    kind = T_NODE;
    ip = nip;
    fam = nfam;
  } else {
    kind = T_FQDN;
    fqdn = saddr;
  }
  if (ip && !family_answers(qt, fam))
    return true;
  if (qt == DNS_T_SRV)
    return add_srv(s, in, kind, ip, fam, fqdn);
  return add_addr(s, ip, fam, fqdn);
}

/* After the backend is done: the outcome, and the CNAME answer if no instance had an IP. */
static enum dns__result svc_finish(struct svc_run *s, int rc)
{
  struct dns__reply *r = s->r;
  if (rc == CC_ENOTFOUND)
    return DNS_NXDOMAIN;
  if (rc < 0)
    return DNS_SERVFAIL;
  if (!s->any)
    return DNS_NXDOMAIN;
  if (r->an == 0 && s->have_cname && r->cut == DNS_CUT_NONE) {
    struct dns__name target;
    dns__name_init(&target);
    if (dns__name_text(&target, s->cname) == 0 && target.n > 0) {
      size_t mw = dns__w_mark(&r->w), mx = dns__w_mark(&r->x);
      dns__w_ptr(&r->w, QNAME_OFF);
      size_t at = dns__w_rr_begin(&r->w, DNS_T_CNAME, s->ttl);
      dns__w_name(&r->w, &target, true);
      dns__w_rr_end(&r->w, at);
      if (dns__fits(r, mw, mx))
        r->an++;
      else
        r->cut = DNS_CUT_SIZE;
    }
  }
  return DNS_OK;
}

static enum dns__result lookup_service(struct dns__reply *r, const char *service, const char *tag,
                                       const char *dc)
{
  struct svc_run s;
  memset(&s, 0, sizeof s);
  s.sink.emit = svc_emit;
  s.r = r;
  s.service = service;
  s.dc = dc;
  s.ttl = dns_config_service_ttl(&r->e->cfg, service);
  s.drop_warning = r->e->cfg.only_passing;
  if (!r->e->be.service)
    return DNS_NXDOMAIN;
  struct dns_service_query q = {
      .datacenter = dc, .service = service, .tag = tag, .only_passing = s.drop_warning};
  return svc_finish(&s, r->e->be.service(r->e->be.ctx, &q, &s.sink));
}

static enum dns__result lookup_query(struct dns__reply *r, const char *name, const char *dc)
{
  struct svc_run s;
  struct dns_query_info info;
  memset(&s, 0, sizeof s);
  memset(&info, 0, sizeof info);
  s.sink.emit = svc_emit;
  s.r = r;
  s.dc = dc;
  s.pq = &info;
  /* The query applies its own OnlyPassing; Consul's DNS does not filter its results again. */
  s.drop_warning = false;
  if (!r->e->be.prepared_query)
    return DNS_NXDOMAIN;
  int rc = r->e->be.prepared_query(r->e->be.ctx, dc, name, r->req->client, &info, &s.sink);
  return svc_finish(&s, rc);
}

/* ---- Nodes ---- */

struct node_run {
  struct dns__reply *r;
  bool found;
};

static void node_found(void *arg, const struct dns_node *n)
{
  struct node_run *nr = arg;
  struct dns__reply *r = nr->r;
  const struct dns_config *c = &r->e->cfg;
  uint16_t qt = r->q->qtype;
  if (nr->found)
    return; /* one node per name */
  nr->found = true;
  if (qt != DNS_T_ANY && qt != DNS_T_A && qt != DNS_T_AAAA && qt != DNS_T_TXT)
    return; /* the name exists, with no records of that type */
  size_t mw, mx;
  if (qt != DNS_T_TXT) {
    const char *addr = node_addr(r, n, accept_for(qt));
    uint8_t ip[16];
    int fam = parse_ip_known(addr, n->address, n->address_parsed, n->address_family,
                             n->address_ip, ip);
    mw = dns__w_mark(&r->w);
    mx = dns__w_mark(&r->x);
    if (fam && family_answers(qt, fam)) {
      put_addr_rr(&r->w, QNAME_OFF, NULL, ip, fam, c->node_ttl);
    } else if (!fam && *addr) {
      struct dns__name target;
      dns__name_init(&target);
      if (dns__name_text(&target, addr) == 0 && target.n > 0) {
        dns__w_ptr(&r->w, QNAME_OFF);
        size_t at = dns__w_rr_begin(&r->w, DNS_T_CNAME, c->node_ttl);
        dns__w_name(&r->w, &target, true);
        dns__w_rr_end(&r->w, at);
      }
    }
    if (dns__w_mark(&r->w) != mw) {
      if (!dns__fits(r, mw, mx)) {
        r->cut = DNS_CUT_SIZE;
        return;
      }
      r->an++;
    }
  }
  /* Node meta: answers for TXT and ANY, additional records otherwise (when enabled). */
  bool in_answer = qt == DNS_T_TXT || qt == DNS_T_ANY;
  if (!in_answer && !c->node_meta_txt)
    return;
  for (size_t i = 0; i < n->n_meta; i++) {
    mw = dns__w_mark(&r->w);
    mx = dns__w_mark(&r->x);
    struct dns__writer *w = in_answer ? &r->w : &r->x;
    dns__w_ptr(w, QNAME_OFF);
    put_meta_txt(w, &n->meta[i], c->node_ttl);
    if (!dns__fits(r, mw, mx)) {
      if (in_answer)
        r->cut = DNS_CUT_SIZE;
      return;
    }
    if (in_answer)
      r->an++;
    else
      r->ar++;
  }
}

static enum dns__result lookup_node(struct dns__reply *r, const char *name, const char *dc)
{
  struct node_run nr = {r, false};
  if (!r->e->be.node)
    return DNS_NXDOMAIN;
  int rc = r->e->be.node(r->e->be.ctx, dc, name, node_found, &nr);
  if (rc == CC_ENOTFOUND || (rc == 0 && !nr.found))
    return DNS_NXDOMAIN;
  return rc < 0 ? DNS_SERVFAIL : DNS_OK;
}

/* ---- <addr>.addr ---- */

static int unhex(const char *s, uint8_t *out, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    int v = 0;
    for (int k = 0; k < 2; k++) {
      char c = s[2 * i + (size_t)k];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0)
        return -1;
      v = v * 16 + d;
    }
    out[i] = (uint8_t)v;
  }
  return 0;
}

/* <hex>.addr: 8 hex digits for IPv4, 32 for IPv6 (Consul). Concord also takes the dotted
 * IPv4 form, 10.0.0.1.addr.consul, which Consul answers NXDOMAIN. The record goes to the
 * answer for A/AAAA/ANY of its family, else to additional (as Consul). */
static enum dns__result lookup_addr(struct dns__reply *r, size_t nparts)
{
  uint8_t ip[16];
  int fam = 0;
  if (nparts == 1) {
    size_t len = strlen(r->lab[0]);
    if (len == 8 && unhex(r->lab[0], ip, 4) == 0)
      fam = 4;
    else if (len == 32 && unhex(r->lab[0], ip, 16) == 0)
      fam = 16;
  } else if (nparts == 4) {
    char dotted[64];
    join(r, 0, 4, dotted, sizeof dotted);
    if (inet_pton(AF_INET, dotted, ip) == 1)
      fam = 4;
  }
  if (!fam)
    return DNS_NXDOMAIN;
  uint16_t qt = r->q->qtype;
  bool answer = qt == DNS_T_ANY || qt == (fam == 4 ? DNS_T_A : DNS_T_AAAA);
  size_t mw = dns__w_mark(&r->w), mx = dns__w_mark(&r->x);
  put_addr_rr(answer ? &r->w : &r->x, QNAME_OFF, NULL, ip, fam, r->e->cfg.node_ttl);
  if (dns__fits(r, mw, mx)) {
    if (answer)
      r->an++;
    else
      r->ar++;
  }
  return DNS_OK;
}

/* ---- Dispatch ---- */

static bool is_kind(const char *l)
{
  static const char *const kinds[] = {"service", "connect", "virtual", "ingress",
                                      "node",    "query",   "addr"};
  for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
    if (strcmp(l, kinds[i]) == 0)
      return true;
  return false;
}

enum dns__result dns__lookup(struct dns__reply *r)
{
  /* Consul's dispatch: the right-most kind label splits the name into the query parts on its
   * left and the locality on its right. For SRV, a right-most label starting with '_' stands
   * for "service" (so _web._tcp.consul works). */
  const char *kind = NULL;
  size_t parts = 0, loc = 0;
  for (size_t i = r->dom; i-- > 0;) {
    if (is_kind(r->lab[i])) {
      kind = r->lab[i];
      parts = i;
      loc = i + 1;
      break;
    }
    if (r->q->qtype == DNS_T_SRV && r->lab[i][0] == '_') {
      kind = "service";
      parts = loc = i + 1;
      break;
    }
  }
  if (!kind || parts == 0)
    return DNS_NXDOMAIN;
  const char *dc;
  char buf[DNS_MAX_NAME + 1];
  enum dns__result where;

  if (strcmp(kind, "service") == 0) {
    if (!parse_dc(r, loc, &dc))
      return DNS_NXDOMAIN;
    if ((where = dc_route(r, dc)) != DNS_OK)
      return where;
    if (parts == 2 && r->lab[0][0] == '_' && r->lab[1][0] == '_') {
      /* RFC 2782: _service._tag; "_tcp" means any tag. */
      const char *tag = r->lab[1] + 1;
      return lookup_service(r, r->lab[0] + 1, strcmp(tag, "tcp") == 0 ? NULL : tag, dc);
    }
    /* tag[.tag].service: a tag may contain dots. */
    join(r, 0, parts - 1, buf, sizeof buf);
    return lookup_service(r, r->lab[parts - 1], parts > 1 ? buf : NULL, dc);
  }
  if (strcmp(kind, "node") == 0) {
    if (!parse_dc(r, loc, &dc))
      return DNS_NXDOMAIN;
    if ((where = dc_route(r, dc)) != DNS_OK)
      return where;
    join(r, 0, parts, buf, sizeof buf); /* node names may contain dots */
    return lookup_node(r, buf, dc);
  }
  if (strcmp(kind, "query") == 0) {
    size_t nsuf = r->dom - loc;
    if (nsuf > 1) /* Consul's parseDatacenter: at most one label */
      return DNS_NXDOMAIN;
    dc = nsuf == 1 ? r->lab[loc] : r->e->dc;
    if ((where = dc_route(r, dc)) != DNS_OK)
      return where;
    if (parts >= 2 && r->lab[0][0] == '_' && r->lab[parts - 1][0] == '_') {
      /* _query._proto: the last part is the protocol, ignored. */
      join(r, 0, parts - 1, buf, sizeof buf);
      return lookup_query(r, buf + 1, dc);
    }
    join(r, 0, parts, buf, sizeof buf);
    return lookup_query(r, buf, dc);
  }
  if (strcmp(kind, "addr") == 0)
    return lookup_addr(r, parts);
  /* connect, ingress, virtual: service mesh names Concord does not serve yet. */
  return DNS_NXDOMAIN;
}

/* ---- Reverse lookups ---- */

/* The address a reverse name spells, or 0: a.b.c.d.in-addr.arpa (4 decimal labels) or 32
 * nibble labels before ip6.arpa. */
static int arpa_ip(const struct dns__name *nm, uint8_t ip[16])
{
  size_t n = nm->n;
  if (n == 6 && nm->len[4] == 7 && strncasecmp((const char *)nm->lab[4], "in-addr", 7) == 0) {
    for (size_t i = 0; i < 4; i++) {
      unsigned v = 0;
      if (nm->len[i] > 3 || (nm->len[i] > 1 && nm->lab[i][0] == '0'))
        return 0;
      for (size_t k = 0; k < nm->len[i]; k++) {
        if (nm->lab[i][k] < '0' || nm->lab[i][k] > '9')
          return 0;
        v = v * 10 + (unsigned)(nm->lab[i][k] - '0');
      }
      if (v > 255)
        return 0;
      ip[3 - i] = (uint8_t)v;
    }
    return 4;
  }
  if (n == 34 && nm->len[32] == 3 && strncasecmp((const char *)nm->lab[32], "ip6", 3) == 0) {
    memset(ip, 0, 16);
    for (size_t i = 0; i < 32; i++) {
      char c = (char)(nm->len[i] == 1 ? nm->lab[i][0] : 'x');
      int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (v < 0)
        return 0;
      size_t nib = 31 - i; /* the first label is the last nibble */
      ip[nib / 2] |= (uint8_t)(nib % 2 ? v : v << 4);
    }
    return 16;
  }
  return 0;
}

enum dns__result dns__lookup_ptr(struct dns__reply *r)
{
  uint8_t ip[16];
  struct dns_reverse_result res;
  memset(&res, 0, sizeof res);
  int fam = arpa_ip(&r->q->name, ip);
  bool found = fam && r->e->be.reverse &&
               r->e->be.reverse(r->e->be.ctx, r->e->dc, ip, (size_t)fam, &res) == 0 &&
               res.name[0];
  if (!found)
    return r->e->cfg.n_recursors > 0 ? DNS_FWD : DNS_NXDOMAIN;
  uint16_t qt = r->q->qtype;
  if (qt != DNS_T_PTR && qt != DNS_T_ANY)
    return DNS_OK; /* the name exists; NODATA */
  struct dns__name target;
  res.name[sizeof res.name - 1] = res.datacenter[sizeof res.datacenter - 1] = '\0';
  if (canonical_name(r, &target, res.name, res.is_service ? "service" : "node",
                     res.datacenter[0] ? res.datacenter : r->e->dc, true) != 0)
    return DNS_NXDOMAIN;
  size_t mw = dns__w_mark(&r->w), mx = dns__w_mark(&r->x);
  dns__w_ptr(&r->w, QNAME_OFF);
  size_t at = dns__w_rr_begin(&r->w, DNS_T_PTR, r->e->cfg.node_ttl);
  dns__w_name(&r->w, &target, true);
  dns__w_rr_end(&r->w, at);
  if (dns__fits(r, mw, mx))
    r->an++;
  return DNS_OK;
}

/* ---- NS ---- */

struct ns_run {
  struct dns_sink sink;
  struct dns__reply *r;
  bool authority;
  unsigned added;
};

static bool ns_emit(struct dns_sink *sink, const struct dns_instance *in)
{
  struct ns_run *s = (struct ns_run *)sink;
  struct dns__reply *r = s->r;
  const struct dns_config *c = &r->e->cfg;
  if (in->health == DNS_HEALTH_CRITICAL || (in->health == DNS_HEALTH_WARNING && c->only_passing))
    return true;
  if (s->added >= 3) /* Consul names at most three servers */
    return false;
  char lower[DNS_MAX_NAME + 1];
  size_t i = 0;
  for (const char *p = in->node.name ? in->node.name : ""; *p && i < DNS_MAX_NAME; p++)
    lower[i++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
  lower[i] = '\0';
  if (!dns__first_seen(r->e, dns__hash(0x4e53, lower, i)))
    return true;
  struct dns__name target, dom;
  const char *dc = nz(in->node.datacenter) ? in->node.datacenter : r->e->dc;
  if (canonical_name(r, &target, lower, "node", dc, false) != 0)
    return true; /* Consul skips server names DNS cannot carry */
  dns__resp_domain(r, &dom);
  size_t mw = dns__w_mark(&r->w), mx = dns__w_mark(&r->x);
  dns__w_name(&r->w, &dom, true);
  size_t at = dns__w_rr_begin(&r->w, DNS_T_NS, c->node_ttl);
  size_t target_off = dns__w_name(&r->w, &target, true);
  dns__w_rr_end(&r->w, at);
  uint8_t ip[16];
  int fam = parse_ip(node_addr(r, &in->node, ACC_ANY), ip);
  if (fam)
    put_addr_rr(&r->x, target_off, &target, ip, fam, c->node_ttl);
  if (!dns__fits(r, mw, mx)) {
    r->cut = DNS_CUT_SIZE;
    return false;
  }
  if (s->authority)
    r->ns++;
  else
    r->an++;
  if (fam)
    r->ar++;
  s->added++;
  return true;
}

void dns__add_ns(struct dns__reply *r, bool authority)
{
  struct ns_run s = {{ns_emit}, r, authority, 0};
  if (!r->e->be.service)
    return;
  struct dns_service_query q = {.datacenter = r->e->dc, .service = "consul", .tag = NULL,
                                .only_passing = r->e->cfg.only_passing};
  r->e->be.service(r->e->be.ctx, &q, &s.sink); /* no servers: no NS records, as Consul */
}
