/* fuzz_dns.c -- libFuzzer target for the DNS engine (src/dns/: wire.c, engine.c, lookup.c).
 *
 * The input is one DNS message as it would arrive on port 8600. It is answered by two
 * engines over the same in-memory catalog (dns/memcat.h): Consul's defaults, and one with an
 * alt_domain, recursors, only_passing, enable_truncate, an A-record limit, TTLs and a backend
 * that knows datacenter dc3 (its names are handed back: DNS_REMOTE_DC, which must name dc3),
 * each as a UDP and as a TCP query. Every reply must:
 *   - be no bigger than the transport allows (512 bytes for a classic UDP query),
 *   - carry the query's ID with QR set and at most one question,
 *   - parse with ldns_wire2pkt (an independent implementation), with the counts in its header
 *     matching the records ldns found;
 * anything else aborts. Seeds: fuzz/corpus/dns/, real queries from dig (every record form,
 * EDNS and not, cookies) plus hand-made malformed ones; dictionary fuzz/dns.dict. */
#include <ldns/ldns.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"
#include "dns/memcat.h"

static const char catalog[] =
    "{\"Datacenter\": \"dc1\","
    " \"Nodes\": ["
    "  {\"Node\": \"node1\", \"Address\": \"10.0.0.1\", \"Meta\": {\"rack\": \"a\", "
    "   \" sp`=x \": \"v`\", \"rfc1035-x\": \"plain\"}},"
    "  {\"Node\": \"node2\", \"Address\": \"10.0.0.2\","
    "   \"TaggedAddresses\": {\"wan\": \"192.0.2.2\", \"lan_ipv6\": \"2001:db8::2\"}},"
    "  {\"Node\": \"node6\", \"Address\": \"2001:db8::6\"},"
    "  {\"Node\": \"ext\", \"Address\": \"host.example.com\"},"
    "  {\"Node\": \"a.b\", \"Address\": \"10.0.0.9\"},"
    "  {\"Node\": \"far\", \"Address\": \"10.1.0.1\", \"Datacenter\": \"dc2\","
    "   \"TaggedAddresses\": {\"wan\": \"198.51.100.1\"}}],"
    " \"Services\": ["
    "  {\"Node\": \"node1\", \"Service\": \"web\", \"Port\": 80, \"Tags\": [\"primary\", \"v.1\"]},"
    "  {\"Node\": \"node2\", \"Service\": \"web\", \"Port\": 80, \"Status\": \"warning\"},"
    "  {\"Node\": \"node6\", \"Service\": \"web\", \"Port\": 81},"
    "  {\"Node\": \"node1\", \"Service\": \"db\", \"Address\": \"10.0.0.100\", \"Port\": 5432},"
    "  {\"Node\": \"node1\", \"Service\": \"alias\", \"Address\": \"web.service.consul\"},"
    "  {\"Node\": \"ext\", \"Service\": \"api\", \"Port\": 443},"
    "  {\"Node\": \"a.b\", \"Service\": \"dotted\", \"Port\": 1},"
    "  {\"Node\": \"node2\", \"Service\": \"down\", \"Status\": \"critical\"},"
    "  {\"Node\": \"node1\", \"Service\": \"consul\", \"Port\": 8300},"
    "  {\"Node\": \"far\", \"Service\": \"web\", \"Datacenter\": \"dc2\", \"Port\": 80,"
    "   \"TaggedAddresses\": {\"wan\": {\"Address\": \"198.51.100.9\", \"Port\": 8080}}}],"
    " \"Queries\": [{\"Name\": \"myq\", \"Service\": \"web\", \"TTL\": \"30s\"}]}";

static struct dns_memcat *cat;

static bool knows_dc3(void *ctx, const char *dc)
{
  (void)ctx;
  return strcmp(dc, "dc3") == 0;
}

static struct dns_engine *engines[2];
static uint8_t out[DNS_TCP_MAX];

static void init(void)
{
  char err[256];
  cat = dns_memcat_new("dc1");
  if (dns_memcat_load_json(cat, catalog, sizeof catalog - 1, err, sizeof err) != 0)
    abort();
  for (int i = 0; i < 300; i++) {
    char name[16], addr[32];
    snprintf(name, sizeof name, "m%d", i);
    snprintf(addr, sizeof addr, "10.2.%d.%d", i / 250, i % 250 + 1);
    struct dns_node node = {.name = name, .address = addr};
    dns_memcat_add_node(cat, &node);
    struct dns_memcat_service s = {.node = name, .name = "many", .port = (uint16_t)i};
    dns_memcat_add_service(cat, &s);
  }
  struct dns_backend be;
  dns_memcat_backend(cat, &be);
  struct dns_config c;
  dns_config_defaults(&c);
  engines[0] = dns_engine_new(&c, &be, err, sizeof err);
  strcpy(c.alt_domain, "alt.test");
  c.n_recursors = 1;
  strcpy(c.recursors[0], "127.0.0.1:53");
  c.only_passing = true;
  c.enable_truncate = true;
  c.translate_wan_addrs = true;
  c.a_record_limit = 7;
  c.udp_answer_limit = 5;
  c.node_ttl = 11;
  c.n_service_ttl = 2;
  strcpy(c.service_ttl[0].name, "w*");
  c.service_ttl[0].ttl = 12;
  strcpy(c.service_ttl[1].name, "*");
  c.service_ttl[1].ttl = 13;
  be.datacenter_known = knows_dc3;
  engines[1] = dns_engine_new(&c, &be, err, sizeof err);
  if (!engines[0] || !engines[1])
    abort();
}

static void check(const uint8_t *q, size_t qlen, bool tcp, size_t len)
{
  if (len < 12 || len > (tcp ? DNS_TCP_MAX : DNS_UDP_MAX))
    abort();
  if (out[0] != q[0] || out[1] != q[1] || !(out[2] & 0x80))
    abort();
  unsigned qd = (unsigned)out[4] << 8 | out[5];
  if (qd > 1)
    abort();
  ldns_pkt *p = NULL;
  if (ldns_wire2pkt(&p, out, len) != LDNS_STATUS_OK)
    abort();
  if (ldns_pkt_ancount(p) != ldns_rr_list_rr_count(ldns_pkt_answer(p)) ||
      ldns_pkt_nscount(p) != ldns_rr_list_rr_count(ldns_pkt_authority(p)))
    abort();
  /* A classic UDP query (no OPT in the reply) gets at most 512 bytes. */
  if (!tcp && !ldns_pkt_edns(p) && len > DNS_UDP_MIN)
    abort();
  ldns_pkt_free(p);
  (void)qlen;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!cat)
    init();
  if (size > 65535)
    return 0;
  for (int e = 0; e < 2; e++) {
    for (int tcp = 0; tcp < 2; tcp++) {
      struct dns_request req = {.tcp = tcp, .max_size = tcp ? DNS_TCP_MAX : DNS_UDP_MAX};
      size_t len = 0;
      enum dns_action a = dns_engine_answer(engines[e], data, size, &req, out, &len);
      if (a == DNS_REPLY)
        check(data, size, tcp, len);
      else if (a == DNS_REMOTE_DC && (e == 0 || strcmp(dns_engine_remote_dc(engines[e]), "dc3")))
        abort();
    }
  }
  /* The SERVFAIL the server sends after failed recursion must be well-formed too. */
  size_t len = dns_engine_error_reply(engines[1], data, size, 2, out, sizeof out);
  if (len)
    check(data, size, false, len);
  return 0;
}
