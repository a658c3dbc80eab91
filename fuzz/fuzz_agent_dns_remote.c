/* fuzz_agent_dns_remote.c -- libFuzzer target for agent/dns_remote.c's request decoder (the
 * body a client agent sends a server for DNS) and the answer behind it.
 *
 * The input is one request body as it would arrive over RPC. dns_remote_answer must either
 * refuse it (CC_EINVAL), say it is dc2's (the engine's backend knows dc2: DNS_REMOTE_OTHER_DC,
 * never for a body marked forwarded), or answer with a reply that carries the query's ID with
 * QR set, fits the ceiling the body asked for, and parses with ldns_wire2pkt; anything else
 * aborts. Seeds: fuzz/corpus/agent_dns_remote/ (UDP/TCP, IPv4/IPv6/no address, every record
 * form from fuzz/corpus/dns/ behind a header, forwarded and WAN flags, malformed headers). */
#include <ldns/ldns.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/dns_remote.h"
#include "dns/memcat.h"
#include "lib/err.h"

static const char catalog[] =
    "{\"Nodes\": [{\"Node\": \"node1\", \"Address\": \"10.0.0.1\"},"
    "  {\"Node\": \"node6\", \"Address\": \"2001:db8::6\"}],"
    " \"Services\": [{\"Node\": \"node1\", \"Service\": \"web\", \"Port\": 80},"
    "  {\"Node\": \"node6\", \"Service\": \"web\", \"Port\": 81}],"
    " \"Queries\": [{\"Name\": \"myq\", \"Service\": \"web\"}]}";

static struct dns_memcat *cat;

static bool knows_dc2(void *ctx, const char *dc)
{
  (void)ctx;
  return strcmp(dc, "dc2") == 0;
}

static struct dns_engine *engine;
static uint8_t out[DNS_TCP_MAX];

static void init(void)
{
  char err[256];
  struct dns_config c;
  dns_config_defaults(&c);
  c.n_recursors = 1; /* so that unknown reverse names take the DNS_FORWARD path */
  strcpy(c.recursors[0], "127.0.0.1:53");
  strcpy(c.alt_domain, "alt.test");
  struct dns_backend be;
  cat = dns_memcat_new("dc1");
  dns_memcat_backend(cat, &be);
  be.datacenter_known = knows_dc2;
  engine = dns_engine_new(&c, &be, err, sizeof err);
  if (!engine || dns_memcat_load_json(cat, catalog, sizeof catalog - 1, err, sizeof err) != 0)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!cat)
    init();
  if (size > DNS_REMOTE_MAX_BODY)
    return 0;
  size_t len = 0;
  int rc = dns_remote_answer(engine, data, size, out, &len);
  if (rc == CC_EINVAL)
    return 0;
  if (rc == DNS_REMOTE_OTHER_DC) {
    if (size < 2 || (data[1] & 0x02) || strcmp(dns_engine_remote_dc(engine), "dc2") != 0)
      abort();
    return 0;
  }
  if (rc != 0 || size < 5)
    abort();
  size_t qoff = 5 + (data[4] == 4 ? 6 : data[4] == 6 ? 18 : 0);
  size_t ceiling = (size_t)data[2] << 8 | data[3];
  if (qoff + 2 > size || len < 12 || len > ceiling || len > sizeof out)
    abort();
  if (out[0] != data[qoff] || out[1] != data[qoff + 1] || !(out[2] & 0x80))
    abort();
  ldns_pkt *p = NULL;
  if (ldns_wire2pkt(&p, out, len) != LDNS_STATUS_OK)
    abort();
  ldns_pkt_free(p);
  return 0;
}
