/* test_dns.c -- dns/ engine: every record form, NXDOMAIN vs NODATA with the SOA, truncation
 * with and without EDNS, TCP sizes, case-insensitivity, malformed packets. The engine runs
 * over the in-memory catalog (dns/memcat.h); every reply is parsed by ldns, an independent
 * implementation, so a reply ldns rejects fails the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ldns/ldns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"
#include "dns/memcat.h"
#include "lib/err.h"

static const char *catalog_json =
    "{\"Datacenter\": \"dc1\","
    " \"Nodes\": ["
    "  {\"Node\": \"node1\", \"Address\": \"10.0.0.1\","
    "   \"Meta\": {\"rack\": \"a\", \"rfc1035-x\": \"plain\"}},"
    "  {\"Node\": \"node2\", \"Address\": \"10.0.0.2\"},"
    "  {\"Node\": \"node6\", \"Address\": \"2001:db8::6\"},"
    "  {\"Node\": \"dual\", \"Address\": \"10.0.0.4\","
    "   \"TaggedAddresses\": {\"lan_ipv6\": \"2001:db8::4\"}},"
    "  {\"Node\": \"ext\", \"Address\": \"host.example.com\"},"
    "  {\"Node\": \"far\", \"Address\": \"10.1.0.1\", \"Datacenter\": \"dc2\","
    "   \"TaggedAddresses\": {\"wan\": \"198.51.100.1\"}},"
    "  {\"Node\": \"far2\", \"Address\": \"10.1.0.2\", \"Datacenter\": \"dc2\","
    "   \"TaggedAddresses\": {\"wan\": \"198.51.100.2\"}}],"
    " \"Services\": ["
    "  {\"Node\": \"node1\", \"Service\": \"web\", \"Port\": 80, \"Tags\": [\"primary\", \"v1\"]},"
    "  {\"Node\": \"node2\", \"Service\": \"web\", \"Port\": 80, \"Tags\": [\"v1\"],"
    "   \"Status\": \"warning\", \"Weights\": {\"Passing\": 10, \"Warning\": 3}},"
    "  {\"Node\": \"node6\", \"Service\": \"web\", \"Port\": 81},"
    "  {\"Node\": \"node1\", \"Service\": \"db\", \"Address\": \"10.0.0.100\", \"Port\": 5432},"
    "  {\"Node\": \"node1\", \"Service\": \"dup\", \"Port\": 1},"
    "  {\"Node\": \"node1\", \"Service\": \"dup\", \"Port\": 1},"
    "  {\"Node\": \"node2\", \"Service\": \"down\", \"Port\": 1, \"Status\": \"critical\"},"
    "  {\"Node\": \"ext\", \"Service\": \"api\", \"Port\": 443},"
    "  {\"Node\": \"dual\", \"Service\": \"ds\", \"Port\": 7},"
    "  {\"Node\": \"node1\", \"Service\": \"consul\", \"Port\": 8300},"
    "  {\"Node\": \"node2\", \"Service\": \"consul\", \"Port\": 8300},"
    "  {\"Node\": \"far\", \"Service\": \"web\", \"Datacenter\": \"dc2\", \"Port\": 80},"
    "  {\"Node\": \"far2\", \"Service\": \"api\", \"Datacenter\": \"dc2\", \"Port\": 80,"
    "   \"Address\": \"10.1.0.20\","
    "   \"TaggedAddresses\": {\"wan\": {\"Address\": \"198.51.100.20\", \"Port\": 8080}}}],"
    " \"Queries\": [{\"Name\": \"myq\", \"Service\": \"web\", \"TTL\": \"30s\"}]}";

struct fx {
  struct dns_memcat *m;
  struct dns_engine *e;
  struct dns_config cfg;
};

static uint32_t fixed_clock(void *arg)
{
  (void)arg;
  return 1700000000u;
}

static void add_many(struct dns_memcat *m, const char *svc, const char *prefix, int n, int net)
{
  for (int i = 0; i < n; i++) {
    char name[32], addr[32];
    snprintf(name, sizeof name, "%s%d", prefix, i);
    snprintf(addr, sizeof addr, "10.%d.%d.%d", net, i / 250, i % 250 + 1);
    struct dns_node node = {.name = name, .address = addr};
    assert_true(dns_memcat_add_node(m, &node) >= 0);
    struct dns_memcat_service s = {.node = name, .name = svc, .port = (uint16_t)(1000 + i)};
    assert_int_equal(dns_memcat_add_service(m, &s), 0);
  }
}

/* The other datacenters the next fx_new's backend knows (NULL: it does not know any). */
static bool (*fx_dc_known)(void *ctx, const char *dc);

static struct fx *fx_new(void (*tweak)(struct dns_config *))
{
  struct fx *f = calloc(1, sizeof *f);
  char err[256];
  f->m = dns_memcat_new("dc1");
  assert_int_equal(dns_memcat_load_json(f->m, catalog_json, strlen(catalog_json), err, sizeof err),
                   0);
  add_many(f->m, "many", "m", 200, 2);
  add_many(f->m, "huge", "h", 5000, 3);
  dns_config_defaults(&f->cfg);
  if (tweak)
    tweak(&f->cfg);
  struct dns_backend be;
  dns_memcat_backend(f->m, &be);
  be.datacenter_known = fx_dc_known;
  f->e = dns_engine_new(&f->cfg, &be, err, sizeof err);
  assert_non_null(f->e);
  dns_engine_set_clock(f->e, fixed_clock, NULL);
  return f;
}

static void fx_free(struct fx *f)
{
  dns_engine_free(f->e);
  dns_memcat_free(f->m);
  free(f);
}

static int setup(void **state)
{
  *state = fx_new(NULL);
  return 0;
}

static int teardown(void **state)
{
  fx_free(*state);
  return 0;
}

/* A query for name/type; edns > 0 adds an OPT record with that buffer size. */
static size_t mkq(uint8_t *b, const char *name, uint16_t type, int edns)
{
  size_t n = 0;
  memset(b, 0, 12);
  b[0] = 0x12, b[1] = 0x34, b[2] = 0x01; /* id 0x1234, RD */
  b[5] = 1;
  b[11] = edns > 0 ? 1 : 0;
  n = 12;
  const char *s = name;
  while (*s) {
    const char *dot = strchr(s, '.');
    size_t len = dot ? (size_t)(dot - s) : strlen(s);
    b[n++] = (uint8_t)len;
    memcpy(b + n, s, len);
    n += len;
    s += len + (dot ? 1 : 0);
  }
  b[n++] = 0;
  b[n++] = (uint8_t)(type >> 8), b[n++] = (uint8_t)type;
  b[n++] = 0, b[n++] = 1;
  if (edns > 0) {
    uint8_t opt[11] = {0, 0, 41, (uint8_t)(edns >> 8), (uint8_t)edns, 0, 0, 0, 0, 0, 0};
    memcpy(b + n, opt, 11);
    n += 11;
  }
  return n;
}

static uint8_t out[DNS_TCP_MAX];
static size_t out_len;

static ldns_pkt *ask_raw(struct fx *f, const uint8_t *q, size_t qlen, bool tcp)
{
  struct dns_request req = {.tcp = tcp, .max_size = tcp ? DNS_TCP_MAX : DNS_UDP_MAX};
  assert_int_equal(dns_engine_answer(f->e, q, qlen, &req, out, &out_len), DNS_REPLY);
  ldns_pkt *p = NULL;
  assert_int_equal(ldns_wire2pkt(&p, out, out_len), LDNS_STATUS_OK);
  assert_int_equal(ldns_pkt_id(p), 0x1234);
  assert_true(ldns_pkt_qr(p));
  return p;
}

static ldns_pkt *ask(struct fx *f, const char *name, uint16_t type, int edns, bool tcp)
{
  uint8_t q[600];
  return ask_raw(f, q, mkq(q, name, type, edns), tcp);
}

static ldns_pkt *askq(struct fx *f, const char *name, uint16_t type)
{
  return ask(f, name, type, 0, false);
}

/* The section as zone-file text, for strstr checks. Caller frees. */
static char *sect(ldns_pkt *p, int which)
{
  ldns_rr_list *l = which == 0 ? ldns_pkt_answer(p) : which == 1 ? ldns_pkt_authority(p)
                                                                  : ldns_pkt_additional(p);
  char *s = ldns_rr_list2str(l);
  return s ? s : strdup("");
}

static bool has(ldns_pkt *p, int which, const char *needle)
{
  char *s = sect(p, which);
  bool ok = strstr(s, needle) != NULL;
  if (!ok)
    fprintf(stderr, "section %d lacks \"%s\":\n%s", which, needle, s);
  free(s);
  return ok;
}

static void check_soa(ldns_pkt *p, const char *domain)
{
  char want[256];
  snprintf(want, sizeof want, "%s\t0\tIN\tSOA\tns.%s hostmaster.%s 1700000000 3600 600 86400 0",
           domain, domain, domain);
  assert_int_equal(ldns_pkt_nscount(p), 1);
  assert_true(has(p, 1, want));
}

/* ---- Services ---- */

static void test_service_a(void **state)
{
  struct fx *f = *state;
  ldns_pkt *p = askq(f, "web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
  assert_true(ldns_pkt_aa(p));
  assert_false(ldns_pkt_ra(p)); /* no recursors */
  assert_true(ldns_pkt_rd(p));
  assert_int_equal(ldns_pkt_ancount(p), 2); /* node1 passing, node2 warning; node6 is IPv6 */
  assert_true(has(p, 0, "web.service.consul.\t0\tIN\tA\t10.0.0.1"));
  assert_true(has(p, 0, "web.service.consul.\t0\tIN\tA\t10.0.0.2"));
  assert_int_equal(ldns_pkt_nscount(p), 0);
  assert_int_equal(ldns_pkt_arcount(p), 0);
  ldns_pkt_free(p);

  p = askq(f, "web.service.consul", LDNS_RR_TYPE_AAAA);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  assert_true(has(p, 0, "IN\tAAAA\t2001:db8::6"));
  ldns_pkt_free(p);

  p = askq(f, "web.service.dc1.consul", LDNS_RR_TYPE_ANY);
  assert_int_equal(ldns_pkt_ancount(p), 3);
  ldns_pkt_free(p);

  /* Tags, including the datacenter spelled <dc>.dc. */
  p = askq(f, "primary.web.service.dc1.dc.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  assert_true(has(p, 0, "10.0.0.1"));
  ldns_pkt_free(p);
  p = askq(f, "v1.web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 2);
  ldns_pkt_free(p);

  /* Another datacenter. */
  p = askq(f, "web.service.dc2.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  assert_true(has(p, 0, "10.1.0.1"));
  ldns_pkt_free(p);
}

static void test_service_missing(void **state)
{
  struct fx *f = *state;
  const char *names[] = {"nope.service.consul", "down.service.consul", "web.service.dc9.consul",
                         "nope.v1.web.service.consul", "web.service.a.b.c.consul",
                         "service.consul", "web.connect.consul"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    ldns_pkt *p = askq(f, names[i], LDNS_RR_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    assert_true(ldns_pkt_aa(p));
    assert_int_equal(ldns_pkt_ancount(p), 0);
    check_soa(p, "consul.");
    ldns_pkt_free(p);
  }
  /* The service exists but has no record of this type: NOERROR, empty, SOA. */
  ldns_pkt *p = askq(f, "db.service.consul", LDNS_RR_TYPE_AAAA);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
  assert_int_equal(ldns_pkt_ancount(p), 0);
  check_soa(p, "consul.");
  ldns_pkt_free(p);
  p = askq(f, "web.service.consul", LDNS_RR_TYPE_MX);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
  check_soa(p, "consul.");
  ldns_pkt_free(p);
}

static void test_service_srv(void **state)
{
  struct fx *f = *state;
  ldns_pkt *p = askq(f, "web.service.consul", LDNS_RR_TYPE_SRV);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
  assert_int_equal(ldns_pkt_ancount(p), 3);
  assert_true(has(p, 0, "web.service.consul.\t0\tIN\tSRV\t1 1 80 node1.node.dc1.consul."));
  assert_true(has(p, 0, "web.service.consul.\t0\tIN\tSRV\t1 3 80 node2.node.dc1.consul."));
  assert_true(has(p, 0, "web.service.consul.\t0\tIN\tSRV\t1 1 81 node6.node.dc1.consul."));
  assert_true(has(p, 2, "node1.node.dc1.consul.\t0\tIN\tA\t10.0.0.1"));
  assert_true(has(p, 2, "node2.node.dc1.consul.\t0\tIN\tA\t10.0.0.2"));
  assert_true(has(p, 2, "node6.node.dc1.consul.\t0\tIN\tAAAA\t2001:db8::6"));
  /* enable_additional_node_meta_txt: node1's meta, RFC 1464 or bare for rfc1035- keys. */
  assert_true(has(p, 2, "node1.node.dc1.consul.\t0\tIN\tTXT\t\"rack=a\""));
  assert_true(has(p, 2, "node1.node.dc1.consul.\t0\tIN\tTXT\t\"plain\""));
  assert_int_equal(ldns_pkt_arcount(p), 5);
  ldns_pkt_free(p);

  /* A service address is named by its hex .addr form. */
  p = askq(f, "db.service.consul", LDNS_RR_TYPE_SRV);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  assert_true(has(p, 0, "SRV\t1 1 5432 0a000064.addr.dc1.consul."));
  assert_true(has(p, 2, "0a000064.addr.dc1.consul.\t0\tIN\tA\t10.0.0.100"));
  assert_true(has(p, 2, "node1.node.dc1.consul.\t0\tIN\tTXT\t\"rack=a\""));
  ldns_pkt_free(p);

  /* A node's tagged IPv6 address wins for SRV (Consul's translateAddressAccept). */
  p = askq(f, "ds.service.consul", LDNS_RR_TYPE_SRV);
  assert_true(has(p, 0, "SRV\t1 1 7 20010db8000000000000000000000004.addr.dc1.consul."));
  assert_true(has(p, 2, "AAAA\t2001:db8::4"));
  ldns_pkt_free(p);
  p = askq(f, "ds.service.consul", LDNS_RR_TYPE_A);
  assert_true(has(p, 0, "ds.service.consul.\t0\tIN\tA\t10.0.0.4"));
  ldns_pkt_free(p);

  /* Duplicates (same node, address and port) are answered once. */
  p = askq(f, "dup.service.consul", LDNS_RR_TYPE_SRV);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  ldns_pkt_free(p);
  p = askq(f, "dup.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  ldns_pkt_free(p);
}

static void test_service_rfc2782(void **state)
{
  struct fx *f = *state;
  ldns_pkt *p = askq(f, "_web._tcp.service.consul", LDNS_RR_TYPE_SRV);
  assert_int_equal(ldns_pkt_ancount(p), 3); /* _tcp: any tag */
  assert_true(has(p, 0, "_web._tcp.service.consul.\t0\tIN\tSRV\t1 1 80 node1.node.dc1.consul."));
  ldns_pkt_free(p);
  p = askq(f, "_web._primary.service.dc1.consul", LDNS_RR_TYPE_SRV);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  ldns_pkt_free(p);
  /* Without the "service" label (SRV only). */
  p = askq(f, "_web._tcp.consul", LDNS_RR_TYPE_SRV);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
  assert_int_equal(ldns_pkt_ancount(p), 3);
  ldns_pkt_free(p);
  p = askq(f, "_web._tcp.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
  ldns_pkt_free(p);
}

static void test_service_cname(void **state)
{
  struct fx *f = *state;
  ldns_pkt *p = askq(f, "api.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  assert_true(has(p, 0, "api.service.consul.\t0\tIN\tCNAME\thost.example.com."));
  ldns_pkt_free(p);
  p = askq(f, "api.service.consul", LDNS_RR_TYPE_SRV);
  assert_true(has(p, 0, "SRV\t1 1 443 host.example.com."));
  assert_int_equal(ldns_pkt_arcount(p), 0);
  ldns_pkt_free(p);
}

static void test_case_insensitive(void **state)
{
  struct fx *f = *state;
  ldns_pkt *p = askq(f, "WEB.Service.CONSUL", LDNS_RR_TYPE_SRV);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
  assert_int_equal(ldns_pkt_ancount(p), 3);
  /* Owners keep the asker's spelling; targets use the domain as asked, as Consul. */
  assert_true(has(p, 0, "WEB.Service.CONSUL.\t0\tIN\tSRV\t1 1 80 node1.node.dc1.CONSUL."));
  ldns_pkt_free(p);
  p = askq(f, "Node1.NODE.Dc1.Consul", LDNS_RR_TYPE_A);
  assert_true(has(p, 0, "Node1.NODE.Dc1.Consul.\t0\tIN\tA\t10.0.0.1"));
  ldns_pkt_free(p);
  p = askq(f, "PRIMARY.web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  ldns_pkt_free(p);
}

/* ---- Nodes, addr, queries, PTR ---- */

static void test_node(void **state)
{
  struct fx *f = *state;
  ldns_pkt *p = askq(f, "node1.node.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  assert_true(has(p, 0, "node1.node.consul.\t0\tIN\tA\t10.0.0.1"));
  assert_int_equal(ldns_pkt_arcount(p), 2); /* meta TXT in additional */
  assert_true(has(p, 2, "node1.node.consul.\t0\tIN\tTXT\t\"rack=a\""));
  ldns_pkt_free(p);

  p = askq(f, "node1.node.dc1.consul", LDNS_RR_TYPE_TXT);
  assert_int_equal(ldns_pkt_ancount(p), 2);
  assert_true(has(p, 0, "TXT\t\"plain\""));
  assert_int_equal(ldns_pkt_arcount(p), 0);
  ldns_pkt_free(p);

  p = askq(f, "node1.node.consul", LDNS_RR_TYPE_ANY);
  assert_int_equal(ldns_pkt_ancount(p), 3);
  ldns_pkt_free(p);

  p = askq(f, "node6.node.consul", LDNS_RR_TYPE_AAAA);
  assert_true(has(p, 0, "AAAA\t2001:db8::6"));
  ldns_pkt_free(p);
  p = askq(f, "dual.node.consul", LDNS_RR_TYPE_AAAA);
  assert_true(has(p, 0, "AAAA\t2001:db8::4"));
  ldns_pkt_free(p);
  p = askq(f, "dual.node.consul", LDNS_RR_TYPE_A);
  assert_true(has(p, 0, "A\t10.0.0.4"));
  ldns_pkt_free(p);
  p = askq(f, "ext.node.consul", LDNS_RR_TYPE_A);
  assert_true(has(p, 0, "CNAME\thost.example.com."));
  ldns_pkt_free(p);
  p = askq(f, "far.node.dc2.consul", LDNS_RR_TYPE_A);
  assert_true(has(p, 0, "A\t10.1.0.1"));
  ldns_pkt_free(p);

  /* Exists, but nothing of that type: NODATA with the SOA. */
  uint16_t types[] = {LDNS_RR_TYPE_AAAA, LDNS_RR_TYPE_MX};
  for (size_t i = 0; i < 2; i++) {
    p = askq(f, "node1.node.consul", types[i]);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 0);
    check_soa(p, "consul.");
    ldns_pkt_free(p);
  }
  p = askq(f, "nobody.node.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
  check_soa(p, "consul.");
  ldns_pkt_free(p);
  p = askq(f, "far.node.consul", LDNS_RR_TYPE_A); /* far is in dc2 */
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
  ldns_pkt_free(p);
}

static void test_addr(void **state)
{
  struct fx *f = *state;
  ldns_pkt *p = askq(f, "0a000001.addr.dc1.consul", LDNS_RR_TYPE_A);
  assert_true(has(p, 0, "0a000001.addr.dc1.consul.\t0\tIN\tA\t10.0.0.1"));
  ldns_pkt_free(p);
  p = askq(f, "20010db8000000000000000000000006.addr.consul", LDNS_RR_TYPE_AAAA);
  assert_true(has(p, 0, "AAAA\t2001:db8::6"));
  ldns_pkt_free(p);
  p = askq(f, "10.0.0.9.addr.consul", LDNS_RR_TYPE_A); /* Concord's dotted extension */
  assert_true(has(p, 0, "A\t10.0.0.9"));
  ldns_pkt_free(p);
  /* Other types: the record goes to additional, the answer is NODATA. */
  p = askq(f, "0a000001.addr.dc1.consul", LDNS_RR_TYPE_AAAA);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
  assert_int_equal(ldns_pkt_ancount(p), 0);
  assert_true(has(p, 2, "A\t10.0.0.1"));
  check_soa(p, "consul.");
  ldns_pkt_free(p);
  const char *bad[] = {"0a00001.addr.consul", "zz000001.addr.consul", "a.b.addr.consul"};
  for (size_t i = 0; i < 3; i++) {
    p = askq(f, bad[i], LDNS_RR_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    ldns_pkt_free(p);
  }
}

static void test_prepared_query(void **state)
{
  struct fx *f = *state;
  ldns_pkt *p = askq(f, "myq.query.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 2);
  assert_true(has(p, 0, "myq.query.consul.\t30\tIN\tA\t10.0.0.")); /* DNS.TTL "30s" */
  ldns_pkt_free(p);
  p = askq(f, "_myq._tcp.query.dc1.consul", LDNS_RR_TYPE_SRV);
  assert_int_equal(ldns_pkt_ancount(p), 3);
  assert_true(has(p, 0, "\t30\tIN\tSRV\t1 1 80 node1.node.dc1.consul."));
  ldns_pkt_free(p);
  p = askq(f, "nope.query.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
  ldns_pkt_free(p);
}

static void test_ptr(void **state)
{
  struct fx *f = *state;
  ldns_pkt *p = askq(f, "1.0.0.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
  assert_true(ldns_pkt_aa(p));
  assert_true(has(p, 0, "1.0.0.10.in-addr.arpa.\t0\tIN\tPTR\tnode1.node.dc1.consul."));
  ldns_pkt_free(p);
  p = askq(f, "100.0.0.10.IN-ADDR.ARPA", LDNS_RR_TYPE_PTR);
  assert_true(has(p, 0, "PTR\tdb.service.dc1.consul."));
  ldns_pkt_free(p);
  p = askq(f, "6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
           LDNS_RR_TYPE_PTR);
  assert_true(has(p, 0, "PTR\tnode6.node.dc1.consul."));
  ldns_pkt_free(p);
  const char *missing[] = {"9.9.9.10.in-addr.arpa", "0.0.10.in-addr.arpa", "x.in-addr.arpa",
                           "01.0.0.10.in-addr.arpa", "arpa"};
  for (size_t i = 0; i < 5; i++) {
    p = askq(f, missing[i], LDNS_RR_TYPE_PTR);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    check_soa(p, "consul.");
    ldns_pkt_free(p);
  }
}

/* ---- SOA, NS, domains ---- */

static void test_soa_ns(void **state)
{
  struct fx *f = *state;
  ldns_pkt *p = askq(f, "consul", LDNS_RR_TYPE_SOA);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  assert_true(has(p, 0, "consul.\t0\tIN\tSOA\tns.consul. hostmaster.consul. 1700000000 3600 600 "
                        "86400 0"));
  assert_int_equal(ldns_pkt_nscount(p), 2); /* the two "consul" servers */
  assert_true(has(p, 1, "consul.\t0\tIN\tNS\tnode1.node.dc1.consul."));
  assert_true(has(p, 2, "node2.node.dc1.consul.\t0\tIN\tA\t10.0.0.2"));
  ldns_pkt_free(p);
  p = askq(f, "consul", LDNS_RR_TYPE_NS);
  assert_int_equal(ldns_pkt_ancount(p), 2);
  assert_int_equal(ldns_pkt_arcount(p), 2);
  ldns_pkt_free(p);
  p = askq(f, "consul", LDNS_RR_TYPE_A); /* the domain itself has no address */
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
  ldns_pkt_free(p);
  p = askq(f, "consul", LDNS_RR_TYPE_AXFR);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOTIMPL);
  ldns_pkt_free(p);
}

static void alt_domain(struct dns_config *c)
{
  strcpy(c->domain, "cluster.local");
  strcpy(c->alt_domain, "alt.test.");
  c->node_ttl = 7;
  c->n_service_ttl = 2;
  strcpy(c->service_ttl[0].name, "*");
  c->service_ttl[0].ttl = 5;
  strcpy(c->service_ttl[1].name, "web");
  c->service_ttl[1].ttl = 10;
}

static void test_domains_and_ttls(void **state)
{
  (void)state;
  struct fx *f = fx_new(alt_domain);
  ldns_pkt *p = askq(f, "web.service.cluster.local", LDNS_RR_TYPE_SRV);
  assert_true(has(p, 0, "\t10\tIN\tSRV\t1 1 80 node1.node.dc1.cluster.local."));
  ldns_pkt_free(p);
  p = askq(f, "web.service.alt.test", LDNS_RR_TYPE_SRV);
  assert_true(has(p, 0, "\t10\tIN\tSRV\t1 1 80 node1.node.dc1.alt.test."));
  ldns_pkt_free(p);
  p = askq(f, "db.service.alt.test", LDNS_RR_TYPE_A);
  assert_true(has(p, 0, "db.service.alt.test.\t5\tIN\tA\t10.0.0.100"));
  ldns_pkt_free(p);
  p = askq(f, "node2.node.alt.test", LDNS_RR_TYPE_A);
  assert_true(has(p, 0, "\t7\tIN\tA\t10.0.0.2"));
  ldns_pkt_free(p);
  p = askq(f, "nope.service.alt.test", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
  check_soa(p, "alt.test.");
  ldns_pkt_free(p);
  p = askq(f, "web.service.consul", LDNS_RR_TYPE_A); /* no longer ours */
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
  assert_false(ldns_pkt_aa(p));
  ldns_pkt_free(p);
  fx_free(f);

  struct dns_config c;
  struct dns_backend be = {0};
  char err[128];
  dns_config_defaults(&c);
  strcpy(c.domain, "bad..domain");
  assert_null(dns_engine_new(&c, &be, err, sizeof err));
  assert_non_null(strstr(err, "invalid DNS domain"));
  assert_int_equal(dns_config_service_ttl(&c, "x"), 0);
}

static void wan(struct dns_config *c) { c->translate_wan_addrs = true; }

static void test_translate_wan(void **state)
{
  (void)state;
  struct fx *f = fx_new(wan);
  /* Another datacenter: the WAN addresses (node and service) and the service's WAN port. */
  ldns_pkt *p = askq(f, "web.service.dc2.consul", LDNS_RR_TYPE_SRV);
  assert_true(has(p, 0, "SRV\t1 1 80 c6336401.addr.dc2.consul."));
  assert_true(has(p, 2, "c6336401.addr.dc2.consul.\t0\tIN\tA\t198.51.100.1"));
  ldns_pkt_free(p);
  p = askq(f, "api.service.dc2.consul", LDNS_RR_TYPE_SRV);
  assert_true(has(p, 0, "SRV\t1 1 8080 c6336414.addr.dc2.consul."));
  ldns_pkt_free(p);
  p = askq(f, "far.node.dc2.consul", LDNS_RR_TYPE_A);
  assert_true(has(p, 0, "A\t198.51.100.1"));
  ldns_pkt_free(p);
  /* The local datacenter is never translated. */
  p = askq(f, "web.service.consul", LDNS_RR_TYPE_SRV);
  assert_true(has(p, 0, "SRV\t1 1 80 node1.node.dc1.consul."));
  ldns_pkt_free(p);
  fx_free(f);
  /* Off (the default): LAN addresses everywhere. */
  f = fx_new(NULL);
  p = askq(f, "api.service.dc2.consul", LDNS_RR_TYPE_SRV);
  assert_true(has(p, 0, "SRV\t1 1 80 0a010014.addr.dc2.consul."));
  ldns_pkt_free(p);
  p = askq(f, "web.service.dc2.consul", LDNS_RR_TYPE_SRV);
  assert_true(has(p, 0, "SRV\t1 1 80 far.node.dc2.consul."));
  ldns_pkt_free(p);
  fx_free(f);
}

static void only_passing(struct dns_config *c) { c->only_passing = true; }

static void test_only_passing(void **state)
{
  (void)state;
  struct fx *f = fx_new(only_passing);
  ldns_pkt *p = askq(f, "web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  assert_true(has(p, 0, "10.0.0.1"));
  ldns_pkt_free(p);
  p = askq(f, "v1.web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  ldns_pkt_free(p);
  fx_free(f);
}

/* ---- Sizes and truncation ---- */

static void test_udp_answer_limit(void **state)
{
  struct fx *f = *state;
  ldns_pkt *p = askq(f, "many.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 3);
  assert_false(ldns_pkt_tc(p)); /* cut by count only: TC needs enable_truncate */
  assert_false(ldns_pkt_edns(p));
  ldns_pkt_free(p);
  p = askq(f, "many.service.consul", LDNS_RR_TYPE_SRV);
  assert_int_equal(ldns_pkt_ancount(p), 3);
  assert_int_equal(ldns_pkt_arcount(p), 3);
  assert_true(out_len <= 512);
  ldns_pkt_free(p);
  /* EDNS: no count limit, the buffer size is. */
  p = ask(f, "many.service.consul", LDNS_RR_TYPE_A, 4096, false);
  assert_int_equal(ldns_pkt_ancount(p), 200);
  assert_false(ldns_pkt_tc(p));
  assert_true(ldns_pkt_edns(p));
  assert_int_equal(ldns_pkt_edns_udp_size(p), 4096);
  ldns_pkt_free(p);
  /* An EDNS buffer of 512 or less is a classic client. */
  p = ask(f, "many.service.consul", LDNS_RR_TYPE_A, 300, false);
  assert_int_equal(ldns_pkt_ancount(p), 3);
  assert_true(ldns_pkt_edns(p));
  assert_int_equal(ldns_pkt_edns_udp_size(p), 512);
  ldns_pkt_free(p);
}

static void truncate_on(struct dns_config *c)
{
  c->enable_truncate = true;
  c->udp_answer_limit = 20; /* capped at 8 */
  c->a_record_limit = 0;
}

static void test_truncation(void **state)
{
  struct fx *f = *state;
  /* EDNS 1232: SRV answers cut to fit, TC set (Concord always flags a cut to fit). */
  ldns_pkt *p = ask(f, "many.service.consul", LDNS_RR_TYPE_SRV, 1232, false);
  size_t n = ldns_pkt_ancount(p);
  assert_true(n > 3 && n < 200);
  assert_true(ldns_pkt_tc(p));
  assert_true(out_len <= 1232);
  assert_true(out_len > 1232 - 80); /* filled, not cut early */
  assert_int_equal(ldns_pkt_arcount(p), n); /* one A per SRV (ldns counts the OPT apart) */
  ldns_pkt_free(p);
  /* The same over TCP: everything, no TC. */
  p = ask(f, "many.service.consul", LDNS_RR_TYPE_SRV, 1232, true);
  assert_int_equal(ldns_pkt_ancount(p), 200);
  assert_false(ldns_pkt_tc(p));
  ldns_pkt_free(p);
  p = askq(f, "many.service.consul", LDNS_RR_TYPE_SRV);
  ldns_pkt_free(p);
  /* TCP caps at 64 KiB: 5000 A records do not fit; no TC over TCP. */
  p = ask(f, "huge.service.consul", LDNS_RR_TYPE_A, 0, true);
  n = ldns_pkt_ancount(p);
  assert_true(n > 3000 && n < 5000);
  assert_true(out_len <= 65535 && out_len > 65535 - 16);
  assert_false(ldns_pkt_tc(p));
  ldns_pkt_free(p);
  p = ask(f, "huge.service.consul", LDNS_RR_TYPE_SRV, 0, true);
  n = ldns_pkt_ancount(p);
  assert_true(n > 500 && n < 5000);
  assert_int_equal(ldns_pkt_arcount(p), n);
  assert_true(out_len <= 65535);
  ldns_pkt_free(p);
  /* UDP with a 64 KiB EDNS buffer is capped at Consul's 65467. */
  p = ask(f, "huge.service.consul", LDNS_RR_TYPE_A, 65535, false);
  assert_true(out_len <= DNS_UDP_MAX);
  assert_true(ldns_pkt_tc(p));
  ldns_pkt_free(p);

  struct fx *g = fx_new(truncate_on);
  p = askq(g, "many.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 8);
  assert_true(ldns_pkt_tc(p)); /* enable_truncate: a count cut sets TC too */
  ldns_pkt_free(p);
  p = askq(g, "web.service.consul", LDNS_RR_TYPE_A); /* nothing cut */
  assert_false(ldns_pkt_tc(p));
  ldns_pkt_free(p);
  fx_free(g);
}

/* Duplicate addresses are answered once however large the answer: 4,000 instances on 2,000
 * addresses over TCP cross the point where the engine's dedup set grows (engine.c). */
static void test_dedup_large(void **state)
{
  (void)state;
  struct dns_memcat *m = dns_memcat_new("dc1");
  for (int i = 0; i < 4000; i++) {
    char name[32], addr[32];
    snprintf(name, sizeof name, "d%d", i);
    snprintf(addr, sizeof addr, "10.4.%d.%d", (i % 2000) / 250, (i % 2000) % 250 + 1);
    struct dns_node node = {.name = name, .address = addr};
    assert_true(dns_memcat_add_node(m, &node) >= 0);
    struct dns_memcat_service sv = {.node = name, .name = "dupes", .port = 80};
    assert_int_equal(dns_memcat_add_service(m, &sv), 0);
  }
  struct dns_config cfg;
  dns_config_defaults(&cfg);
  struct dns_backend be;
  dns_memcat_backend(m, &be);
  char err[256];
  struct dns_engine *e = dns_engine_new(&cfg, &be, err, sizeof err);
  assert_non_null(e);
  struct fx f = {.m = m, .e = e};
  for (int round = 0; round < 2; round++) { /* the second reuses the set of the first */
    ldns_pkt *p = ask(&f, "dupes.service.consul", LDNS_RR_TYPE_A, 0, true);
    assert_int_equal(ldns_pkt_ancount(p), 2000);
    assert_false(ldns_pkt_tc(p));
    static uint8_t seen[8][256];
    memset(seen, 0, sizeof seen);
    ldns_rr_list *an = ldns_pkt_answer(p);
    for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++) {
      const uint8_t *ip = ldns_rdf_data(ldns_rr_rdf(ldns_rr_list_rr(an, i), 0));
      assert_int_equal(ip[0], 10);
      assert_true(ip[2] < 8);
      assert_int_equal(seen[ip[2]][ip[3]]++, 0);
    }
    ldns_pkt_free(p);
  }
  dns_engine_free(e);
  dns_memcat_free(m);
}

static void a_limit(struct dns_config *c) { c->a_record_limit = 5; }

static void test_a_record_limit(void **state)
{
  (void)state;
  struct fx *f = fx_new(a_limit);
  ldns_pkt *p = ask(f, "many.service.consul", LDNS_RR_TYPE_A, 0, true);
  assert_int_equal(ldns_pkt_ancount(p), 5);
  assert_false(ldns_pkt_tc(p));
  ldns_pkt_free(p);
  fx_free(f);
}

static void test_round_robin(void **state)
{
  struct fx *f = *state;
  char first[64][64];
  size_t distinct = 0;
  for (int i = 0; i < 40; i++) {
    ldns_pkt *p = askq(f, "many.service.consul", LDNS_RR_TYPE_A);
    char *s = sect(p, 0);
    char line[64];
    snprintf(line, sizeof line, "%.*s", (int)strcspn(s, "\n"), s);
    bool seen = false;
    for (size_t k = 0; k < distinct; k++)
      seen |= strcmp(first[k], line) == 0;
    if (!seen && distinct < 64)
      strcpy(first[distinct++], line);
    free(s);
    ldns_pkt_free(p);
  }
  assert_true(distinct > 10); /* 40 draws out of 200 */

  /* dns_perm enumerates each index exactly once. */
  for (uint64_t n = 0; n < 70; n++) {
    struct dns_perm perm;
    uint64_t v, count = 0;
    uint8_t hit[70] = {0};
    for (dns_perm_init(&perm, n); dns_perm_next(&perm, &v); count++) {
      assert_true(v < n);
      assert_int_equal(hit[v], 0);
      hit[v] = 1;
    }
    assert_int_equal(count, n);
  }
}

/* ---- Protocol errors ---- */

static void test_malformed(void **state)
{
  struct fx *f = *state;
  uint8_t q[600];
  size_t n = mkq(q, "web.service.consul", LDNS_RR_TYPE_A, 0);
  struct dns_request req = {.tcp = false, .max_size = DNS_UDP_MAX};
  size_t len;

  /* Too short, or a response: dropped. */
  assert_int_equal(dns_engine_answer(f->e, q, 11, &req, out, &len), DNS_DROP);
  q[2] |= 0x80;
  assert_int_equal(dns_engine_answer(f->e, q, n, &req, out, &len), DNS_DROP);
  q[2] &= 0x7f;

  /* Two questions: FORMERR. */
  q[5] = 2;
  ldns_pkt *p = ask_raw(f, q, n, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
  assert_int_equal(ldns_pkt_qdcount(p), 0);
  ldns_pkt_free(p);
  q[5] = 0;
  p = ask_raw(f, q, n, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
  ldns_pkt_free(p);
  q[5] = 1;

  /* Opcode STATUS (2) and UPDATE (5): NOTIMP. */
  q[2] = 0x01 | (2 << 3);
  p = ask_raw(f, q, n, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOTIMPL);
  ldns_pkt_free(p);
  q[2] = 0x01 | (5 << 3);
  p = ask_raw(f, q, n, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOTIMPL);
  ldns_pkt_free(p);
  q[2] = 0x01;

  /* Truncated question, a forward pointer, a label running off the end. */
  p = ask_raw(f, q, n - 2, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
  ldns_pkt_free(p);
  uint8_t bad[] = {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1};
  p = ask_raw(f, bad, sizeof bad, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
  ldns_pkt_free(p);
  uint8_t bad2[] = {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 40, 'a', 'b'};
  p = ask_raw(f, bad2, sizeof bad2, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
  ldns_pkt_free(p);
  /* Three additional records, a claimed OPT that is not there, two OPTs. */
  q[11] = 3;
  p = ask_raw(f, q, n, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
  ldns_pkt_free(p);
  q[11] = 1;
  p = ask_raw(f, q, n, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
  ldns_pkt_free(p);
  n = mkq(q, "web.service.consul", LDNS_RR_TYPE_A, 1232);
  memcpy(q + n, q + n - 11, 11);
  q[11] = 2;
  p = ask_raw(f, q, n + 11, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
  ldns_pkt_free(p);

  /* EDNS version 1: BADVERS (extended rcode 16), with an OPT. */
  n = mkq(q, "web.service.consul", LDNS_RR_TYPE_A, 1232);
  q[n - 11 + 6] = 1;
  assert_int_equal(dns_engine_answer(f->e, q, n, &req, out, &len), DNS_REPLY);
  assert_int_equal(out[3] & 0x0F, 0);
  assert_int_equal(out[11], 1);
  assert_int_equal(out[len - 11 + 5], 1); /* upper rcode bits: 16 >> 4 */

  /* A query may carry one answer record (NOTIFY's SOA); its name may point back at the
   * question. */
  n = mkq(q, "web.service.consul", LDNS_RR_TYPE_A, 0);
  q[7] = 1;
  uint8_t rr[] = {0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4};
  memcpy(q + n, rr, sizeof rr);
  p = ask_raw(f, q, n + sizeof rr, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
  assert_int_equal(ldns_pkt_ancount(p), 2);
  ldns_pkt_free(p);
  q[7] = 2;
  p = ask_raw(f, q, n + sizeof rr, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
  ldns_pkt_free(p);

  /* Class CHAOS: REFUSED. */
  n = mkq(q, "version.bind", LDNS_RR_TYPE_TXT, 0);
  q[n - 1] = 3;
  p = ask_raw(f, q, n, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
  ldns_pkt_free(p);

  /* A NUL inside a label names nothing. */
  n = mkq(q, "web.service.consul", LDNS_RR_TYPE_A, 0);
  q[14] = 0;
  p = ask_raw(f, q, n, false);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
  ldns_pkt_free(p);

  /* The caller's buffer must hold a classic reply. */
  req.max_size = 100;
  assert_int_equal(dns_engine_answer(f->e, q, n, &req, out, &len), DNS_DROP);
}

static void recursors(struct dns_config *c)
{
  c->n_recursors = 1;
  strcpy(c->recursors[0], "127.0.0.1:53");
}

static void test_outside_domain(void **state)
{
  struct fx *f = *state;
  ldns_pkt *p = askq(f, "example.com", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
  assert_int_equal(ldns_pkt_ancount(p), 0);
  ldns_pkt_free(p);
  p = askq(f, "", LDNS_RR_TYPE_NS);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
  ldns_pkt_free(p);

  struct fx *g = fx_new(recursors);
  uint8_t q[600];
  size_t len, n = mkq(q, "example.com", LDNS_RR_TYPE_A, 0);
  struct dns_request req = {.tcp = false, .max_size = DNS_UDP_MAX};
  assert_int_equal(dns_engine_answer(g->e, q, n, &req, out, &len), DNS_FORWARD);
  n = mkq(q, "9.9.9.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 0);
  assert_int_equal(dns_engine_answer(g->e, q, n, &req, out, &len), DNS_FORWARD);
  n = mkq(q, "1.0.0.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 0); /* ours: answered */
  assert_int_equal(dns_engine_answer(g->e, q, n, &req, out, &len), DNS_REPLY);
  p = askq(g, "web.service.consul", LDNS_RR_TYPE_A);
  assert_true(ldns_pkt_ra(p));
  ldns_pkt_free(p);
  /* The SERVFAIL the server sends when every recursor failed. */
  n = mkq(q, "example.com", LDNS_RR_TYPE_A, 1232);
  len = dns_engine_error_reply(g->e, q, n, LDNS_RCODE_SERVFAIL, out, sizeof out);
  assert_true(len > 12);
  ldns_pkt *s = NULL;
  assert_int_equal(ldns_wire2pkt(&s, out, len), LDNS_STATUS_OK);
  assert_int_equal(ldns_pkt_get_rcode(s), LDNS_RCODE_SERVFAIL);
  assert_true(ldns_pkt_ra(s));
  assert_true(ldns_pkt_edns(s));
  assert_int_equal(ldns_pkt_qdcount(s), 1);
  ldns_pkt_free(s);
  fx_free(g);
}

/* ---- Other datacenters ---- */

static char dc_asked[64];
static int dc_calls;

static bool knows_dc3(void *ctx, const char *dc)
{
  (void)ctx;
  dc_calls++;
  snprintf(dc_asked, sizeof dc_asked, "%s", dc);
  return strcmp(dc, "dc3") == 0;
}

/* The action for name/type over UDP; the reply in out/out_len when it is DNS_REPLY. */
static enum dns_action act(struct fx *f, const char *name, uint16_t type)
{
  uint8_t q[600];
  size_t qn = mkq(q, name, type, 0);
  struct dns_request req = {.tcp = false, .max_size = DNS_UDP_MAX};
  return dns_engine_answer(f->e, q, qn, &req, out, &out_len);
}

static void test_other_datacenters(void **state)
{
  (void)state;
  fx_dc_known = knows_dc3;
  struct fx *f = fx_new(NULL);
  fx_dc_known = NULL;
  /* A known datacenter: handed back, with its name (lower case), for every catalog form. */
  const char *remote[] = {"web.service.dc3.consul", "v1.web.service.DC3.consul",
                          "web.service.dc3.dc.consul", "far.node.dc3.consul",
                          "a.b.node.dc3.consul", "myq.query.dc3.consul",
                          "_myq._tcp.query.dc3.consul"};
  for (size_t i = 0; i < sizeof remote / sizeof *remote; i++) {
    dc_calls = 0;
    assert_int_equal(act(f, remote[i], LDNS_RR_TYPE_A), DNS_REMOTE_DC);
    assert_string_equal(dns_engine_remote_dc(f->e), "dc3");
    assert_int_equal(dc_calls, 1);
    assert_string_equal(dc_asked, "dc3");
  }
  /* RFC 2782, with and without the "service" label. */
  assert_int_equal(act(f, "_web._tcp.service.dc3.consul", LDNS_RR_TYPE_SRV), DNS_REMOTE_DC);
  assert_int_equal(act(f, "_web._tcp.dc3.consul", LDNS_RR_TYPE_SRV), DNS_REMOTE_DC);
  assert_int_equal(act(f, "web.service.dc3.alt.test", LDNS_RR_TYPE_A), DNS_REPLY); /* no alt */

  /* An unknown one is NXDOMAIN with the SOA, without asking the catalog: dc2's data in the
   * memcat is not answered, as it would be without the hook (test_service_a). */
  const char *unknown[] = {"web.service.dc2.consul", "far.node.dc2.consul",
                           "myq.query.nowhere.consul", "_web._tcp.dc9.consul"};
  for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
    uint16_t type = i == 3 ? LDNS_RR_TYPE_SRV : LDNS_RR_TYPE_A;
    assert_int_equal(act(f, unknown[i], type), DNS_REPLY);
    assert_string_equal(dns_engine_remote_dc(f->e), "");
    ldns_pkt *p = askq(f, unknown[i], type);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    check_soa(p, "consul.");
    ldns_pkt_free(p);
  }
  /* Ours (any spelling) is answered here without asking the hook. */
  dc_calls = 0;
  ldns_pkt *p = askq(f, "web.service.dc1.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 2);
  ldns_pkt_free(p);
  p = askq(f, "node1.node.DC1.dc.consul", LDNS_RR_TYPE_A);
  assert_true(has(p, 0, "10.0.0.1"));
  ldns_pkt_free(p);
  p = askq(f, "web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_ancount(p), 2);
  ldns_pkt_free(p);
  assert_int_equal(dc_calls, 0);

  /* Needing no catalog of that datacenter: .addr, SOA, NS, PTR are answered here. */
  p = askq(f, "0a000063.addr.dc3.consul", LDNS_RR_TYPE_A);
  assert_true(has(p, 0, "0a000063.addr.dc3.consul.	0	IN	A	10.0.0.99"));
  ldns_pkt_free(p);
  p = askq(f, "web.service.dc3.consul", LDNS_RR_TYPE_SOA);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
  assert_true(has(p, 0, "SOA"));
  ldns_pkt_free(p);
  p = askq(f, "web.service.dc3.consul", LDNS_RR_TYPE_NS);
  assert_true(has(p, 0, "NS	node1.node.dc1.consul."));
  ldns_pkt_free(p);
  p = askq(f, "1.0.0.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
  assert_true(has(p, 0, "node1.node.dc1.consul."));
  ldns_pkt_free(p);
  assert_int_equal(dc_calls, 0);
  /* A malformed datacenter part stays NXDOMAIN (parse first, ask after). */
  p = askq(f, "web.service.dc3.x.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
  ldns_pkt_free(p);
  assert_int_equal(dc_calls, 0);
  fx_free(f);
}

/* A question from an agent of another datacenter that translates WAN addresses: every node
 * answers with its WAN address, the local datacenter's included. */
static void test_request_wan_addrs(void **state)
{
  struct fx *f = *state;
  struct dns_node n = {.name = "wn", .address = "10.0.0.77", .wan = "198.51.100.77"};
  assert_true(dns_memcat_add_node(f->m, &n) >= 0);
  struct dns_memcat_service svc = {.node = "wn", .name = "wsvc", .port = 9,
                                   .wan = {.address = "198.51.100.78", .port = 99}};
  assert_int_equal(dns_memcat_add_service(f->m, &svc), 0);
  struct dns_memcat_service plain = {.node = "wn", .name = "psvc", .port = 7};
  assert_int_equal(dns_memcat_add_service(f->m, &plain), 0);
  for (int wan = 0; wan < 2; wan++) {
    uint8_t q[600];
    struct dns_request req = {.max_size = DNS_UDP_MAX, .wan_addrs = wan};
    size_t qn = mkq(q, "wn.node.consul", LDNS_RR_TYPE_A, 0);
    assert_int_equal(dns_engine_answer(f->e, q, qn, &req, out, &out_len), DNS_REPLY);
    ldns_pkt *p = NULL;
    assert_int_equal(ldns_wire2pkt(&p, out, out_len), LDNS_STATUS_OK);
    assert_true(has(p, 0, wan ? "198.51.100.77" : "10.0.0.77"));
    ldns_pkt_free(p);
    qn = mkq(q, "wsvc.service.consul", LDNS_RR_TYPE_SRV, 0);
    assert_int_equal(dns_engine_answer(f->e, q, qn, &req, out, &out_len), DNS_REPLY);
    assert_int_equal(ldns_wire2pkt(&p, out, out_len), LDNS_STATUS_OK);
    assert_true(has(p, 0, wan ? "SRV	1 1 99 c633644e.addr.dc1.consul."
                              : "SRV	1 1 9 wn.node.dc1.consul."));
    ldns_pkt_free(p);
    qn = mkq(q, "psvc.service.consul", LDNS_RR_TYPE_A, 0);
    assert_int_equal(dns_engine_answer(f->e, q, qn, &req, out, &out_len), DNS_REPLY);
    assert_int_equal(ldns_wire2pkt(&p, out, out_len), LDNS_STATUS_OK);
    assert_true(has(p, 0, wan ? "198.51.100.77" : "10.0.0.77"));
    ldns_pkt_free(p);
  }
}

static void test_backend_failure(void **state)
{
  struct fx *f = *state;
  dns_memcat_fail(f->m, CC_EIO);
  ldns_pkt *p = askq(f, "web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
  assert_int_equal(ldns_pkt_ancount(p), 0);
  ldns_pkt_free(p);
  p = askq(f, "node1.node.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
  ldns_pkt_free(p);
  dns_memcat_fail(f->m, 0);
}

static void test_compression(void **state)
{
  struct fx *f = *state;
  /* 200 SRV answers in one TCP reply: names must compress (each SRV target is written whole,
   * RFC 2782, but its A record points at it, and owners point at the question). */
  ldns_pkt *p = ask(f, "many.service.consul", LDNS_RR_TYPE_SRV, 0, true);
  assert_int_equal(ldns_pkt_ancount(p), 200);
  assert_true(out_len < 200 * 70);
  ldns_pkt_free(p);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_service_a, setup, teardown),
      cmocka_unit_test_setup_teardown(test_service_missing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_service_srv, setup, teardown),
      cmocka_unit_test_setup_teardown(test_service_rfc2782, setup, teardown),
      cmocka_unit_test_setup_teardown(test_service_cname, setup, teardown),
      cmocka_unit_test_setup_teardown(test_case_insensitive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_node, setup, teardown),
      cmocka_unit_test_setup_teardown(test_addr, setup, teardown),
      cmocka_unit_test_setup_teardown(test_prepared_query, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ptr, setup, teardown),
      cmocka_unit_test_setup_teardown(test_soa_ns, setup, teardown),
      cmocka_unit_test(test_domains_and_ttls),
      cmocka_unit_test(test_only_passing),
      cmocka_unit_test(test_translate_wan),
      cmocka_unit_test_setup_teardown(test_udp_answer_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
      cmocka_unit_test(test_a_record_limit),
      cmocka_unit_test_setup_teardown(test_round_robin, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_outside_domain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backend_failure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_compression, setup, teardown),
      cmocka_unit_test(test_dedup_large),
      cmocka_unit_test(test_other_datacenters),
      cmocka_unit_test_setup_teardown(test_request_wan_addrs, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
