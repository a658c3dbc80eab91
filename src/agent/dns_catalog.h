/* dns_catalog.h -- the DNS engine's backend over the server's state store: nodes, service
 * instances with their health, and reverse lookups, read from the local store (DNS reads are
 * stale by default in Consul too: dns_config.allow_stale); with the WAN pool's datacenter
 * map, which other datacenters exist (their names are answered there: agent/dns_remote.h). */
#ifndef CONCORD_AGENT_DNS_CATALOG_H
#define CONCORD_AGENT_DNS_CATALOG_H

#include "dns/dns.h"

struct state_store;
struct wan_dcs;

/* Fills a backend whose context is `ctx` (borrowed; must outlive the engine). With a NULL
 * store every lookup fails with SERVFAIL; client agents never get here: their DNS server sends
 * catalog names to a server (agent/dns_remote.h). */
struct dns_catalog {
  struct state_store *store;
  const char *datacenter;
  struct wan_dcs *dcs; /* servers with a WAN pool; NULL: other datacenters are NXDOMAIN */
};
void dns_catalog_backend(struct dns_catalog *ctx, struct dns_backend *out);

#endif
