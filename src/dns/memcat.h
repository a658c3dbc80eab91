/* memcat.h -- a small in-memory catalog behind struct dns_backend: the fake that unit tests,
 * the fuzzer and tests/tools/dns_fake_server use until the state store implements the
 * backend. It is also the reference for what a backend must do (random order through
 * dns_perm, case-insensitive names, CC_ENOTFOUND for unknown datacenters).
 *
 * Lookups by node and service name are hash lookups; reverse lookups scan the nodes (tests
 * only). Everything given to it is copied. */
#ifndef CONCORD_DNS_MEMCAT_H
#define CONCORD_DNS_MEMCAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/dns.h"

struct dns_memcat;

/* local_dc is what the backend's datacenter() reports. Caller frees with dns_memcat_free. */
struct dns_memcat *dns_memcat_new(const char *local_dc);
void dns_memcat_free(struct dns_memcat *m);

/* Adds a node (fields copied; node.datacenter NULL means the local one). Returns its index,
 * or CC_EINVAL without a name or address. */
int dns_memcat_add_node(struct dns_memcat *m, const struct dns_node *node);

struct dns_memcat_service {
  const char *node;       /* an existing node's name */
  const char *datacenter; /* NULL: the local one */
  const char *name;
  const char *address;    /* "" or NULL: none */
  uint16_t port;
  const char *const *tags;
  size_t n_tags;
  enum dns_health health;
  int weight_passing, weight_warning; /* 0, 0 means Consul's default 1, 1 */
  struct dns_service_addr lan_ipv4, lan_ipv6, wan, wan_ipv4, wan_ipv6;
};
/* Returns 0, or CC_ENOTFOUND if the node does not exist, CC_EINVAL without a name. */
int dns_memcat_add_service(struct dns_memcat *m, const struct dns_memcat_service *svc);

/* A prepared query answering with the instances of `service` (and `tag`, may be NULL). */
int dns_memcat_add_query(struct dns_memcat *m, const char *name, const char *service,
                         const char *tag, bool only_passing, bool has_ttl, uint32_t ttl);

/* Loads {"Datacenter": "dc1", "Nodes": [...], "Services": [...], "Queries": [...]} in
 * Consul's field names (docs/dns.md has the format). Returns 0, or -1 with a sentence in
 * errbuf. */
int dns_memcat_load_json(struct dns_memcat *m, const char *text, size_t len, char *errbuf,
                         size_t errlen);

/* Makes every backend call fail with code (0 to stop), for SERVFAIL tests. */
void dns_memcat_fail(struct dns_memcat *m, int code);

/* The backend over m (which must outlive its use). */
void dns_memcat_backend(struct dns_memcat *m, struct dns_backend *out);

#endif
