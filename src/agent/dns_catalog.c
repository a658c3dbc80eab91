/* dns_catalog.c -- the DNS backend over the state store's catalog (see dns_catalog.h).
 *
 * The service lookup is the DNS hot path: the store keeps each service's instances in an
 * array, and dns_perm walks it in random order, so a query costs what its answered instances
 * cost (plus skipped unhealthy ones), not the size of the service. */
#include "agent/dns_catalog.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <stdlib.h>

#include <jansson.h>

#include "agent/wan_dcs.h"
#include "lib/duration.h"
#include "lib/err.h"
#include "state/catalog.h"
#include "state/query.h"

#define DNS_CATALOG_MAX_META 64
#define DNS_CATALOG_AHEAD 8 /* instances prefetched ahead of the one answered (a power of 2) */

static bool dns_catalog_dc_ok(const struct dns_catalog *c, const char *dc)
{
  return !dc || !*dc || strcasecmp(dc, c->datacenter) == 0;
}

static const char *dns_catalog_pair(const struct state_map *m, const char *key)
{
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->items[i].key, key) == 0) return m->items[i].value;
  return NULL;
}

/* Fills a dns_node from a catalog node; meta entries go into the caller's array. */
static void dns_catalog_node(const struct dns_catalog *c, const struct state_node *n,
                             struct dns_node *out, struct dns_kv *meta)
{
  memset(out, 0, sizeof *out);
  out->name = n->name;
  out->datacenter = n->datacenter && *n->datacenter ? n->datacenter : c->datacenter;
  out->address = n->address;
  out->lan_ipv4 = dns_catalog_pair(&n->tagged_addresses, "lan_ipv4");
  out->lan_ipv6 = dns_catalog_pair(&n->tagged_addresses, "lan_ipv6");
  out->wan = dns_catalog_pair(&n->tagged_addresses, "wan");
  out->wan_ipv4 = dns_catalog_pair(&n->tagged_addresses, "wan_ipv4");
  out->wan_ipv6 = dns_catalog_pair(&n->tagged_addresses, "wan_ipv6");
  size_t nm = n->meta.n < DNS_CATALOG_MAX_META ? n->meta.n : DNS_CATALOG_MAX_META;
  for (size_t i = 0; i < nm; i++) {
    meta[i].key = n->meta.items[i].key;
    meta[i].value = n->meta.items[i].value;
  }
  out->meta = meta;
  out->n_meta = nm;
  out->address_parsed = true;
  out->address_family = n->addr_family;
  memcpy(out->address_ip, n->addr_ip, sizeof out->address_ip);
}

static int dns_catalog_datacenter(void *ctx, char *out, size_t outlen)
{
  struct dns_catalog *c = ctx;
  snprintf(out, outlen, "%s", c->datacenter);
  return 0;
}

static int dns_catalog_lookup_node(void *ctx, const char *dc, const char *name,
                                   void (*fn)(void *arg, const struct dns_node *node), void *arg)
{
  struct dns_catalog *c = ctx;
  if (!c->store) return CC_EIO;
  if (!dns_catalog_dc_ok(c, dc)) return CC_ENOTFOUND;
  const struct state_node *n = state_node_get(c->store, name);
  if (!n) return CC_ENOTFOUND;
  struct dns_node node;
  struct dns_kv meta[DNS_CATALOG_MAX_META];
  dns_catalog_node(c, n, &node, meta);
  fn(arg, &node);
  return 0;
}

static struct dns_service_addr dns_catalog_svc_addr(const struct state_service *svc,
                                                    const char *key)
{
  for (size_t i = 0; i < svc->n_tagged; i++) {
    if (strcmp(svc->tagged_addresses[i].key, key) == 0)
      return (struct dns_service_addr){svc->tagged_addresses[i].address,
                                        (uint16_t)svc->tagged_addresses[i].port};
  }
  return (struct dns_service_addr){NULL, 0};
}

static bool dns_catalog_has_tag(const struct state_service *svc, const char *tag)
{
  for (size_t i = 0; i < svc->n_tags; i++)
    if (strcasecmp(svc->tags[i], tag) == 0) return true;
  return false;
}

/* One instance to the engine; false when the engine wants no more. */
static bool dns_catalog_emit(const struct dns_catalog *c, const struct state_service *svc,
                             enum state_health h, struct dns_sink *sink)
{
  struct dns_instance inst;
  struct dns_kv meta[DNS_CATALOG_MAX_META];
  dns_catalog_node(c, svc->node, &inst.node, meta);
  inst.address = svc->address ? svc->address : "";
  inst.address_parsed = true;
  inst.address_family = svc->addr_family;
  memcpy(inst.address_ip, svc->addr_ip, sizeof inst.address_ip);
  inst.port = (uint16_t)svc->port;
  inst.lan_ipv4 = dns_catalog_svc_addr(svc, "lan_ipv4");
  inst.lan_ipv6 = dns_catalog_svc_addr(svc, "lan_ipv6");
  inst.wan = dns_catalog_svc_addr(svc, "wan");
  inst.wan_ipv4 = dns_catalog_svc_addr(svc, "wan_ipv4");
  inst.wan_ipv6 = dns_catalog_svc_addr(svc, "wan_ipv6");
  inst.health = h == STATE_HEALTH_PASSING ? DNS_HEALTH_PASSING
                : h == STATE_HEALTH_CRITICAL ? DNS_HEALTH_CRITICAL
                                             : DNS_HEALTH_WARNING;
  inst.weight_passing = (int)svc->weight_passing;
  inst.weight_warning = (int)svc->weight_warning;
  return sink->emit(sink, &inst);
}

static int dns_catalog_service(void *ctx, const struct dns_service_query *q,
                               struct dns_sink *sink)
{
  struct dns_catalog *c = ctx;
  if (!c->store) return CC_EIO;
  if (!dns_catalog_dc_ok(c, q->datacenter)) return CC_ENOTFOUND;
  const struct state_service *const *arr;
  size_t n = state_service_instances(c->store, q->service, &arr);
  struct dns_perm perm;
  /* The next DNS_CATALOG_AHEAD indices of the permutation, so that each instance's rows are
   * prefetched (state_instance_prefetch) a few instances before they are read: in random
   * order, cache misses were most of the cost of a large answer. */
  uint64_t ahead[DNS_CATALOG_AHEAD];
  unsigned head = 0, queued = 0;
  dns_perm_init(&perm, n);
  for (;;) {
    uint64_t next;
    while (queued < DNS_CATALOG_AHEAD && dns_perm_next(&perm, &next)) {
      ahead[(head + queued++) % DNS_CATALOG_AHEAD] = next;
      state_instance_prefetch(arr[next], 0);
    }
    if (queued == 0) break;
    uint64_t i = ahead[head];
    head = (head + 1) % DNS_CATALOG_AHEAD;
    queued--;
    if (queued >= DNS_CATALOG_AHEAD / 2)
      state_instance_prefetch(arr[ahead[(head + DNS_CATALOG_AHEAD / 2 - 1) % DNS_CATALOG_AHEAD]], 1);
    if (queued >= 2) state_instance_prefetch(arr[ahead[(head + 1) % DNS_CATALOG_AHEAD]], 2);
    const struct state_service *svc = arr[i];
    if (q->tag && !dns_catalog_has_tag(svc, q->tag)) continue;
    enum state_health h = state_instance_health(svc);
    if (h == STATE_HEALTH_CRITICAL || (q->only_passing && h != STATE_HEALTH_PASSING)) continue;
    if (!dns_catalog_emit(c, svc, h, sink)) break;
  }
  return 0;
}

/* A prepared query: resolved and filtered by the store (state/query.h), its instances
 * emitted in random order (Consul shuffles an execute's results). */
static int dns_catalog_prepared_query(void *ctx, const char *dc, const char *name,
                                      const struct sockaddr *client, struct dns_query_info *info,
                                      struct dns_sink *sink)
{
  (void)client; /* Near = "_ip": no distance sorting */
  struct dns_catalog *c = ctx;
  if (!c->store) return CC_EIO;
  if (!dns_catalog_dc_ok(c, dc)) return CC_ENOTFOUND;
  json_t *q;
  char err[256];
  int rc = state_query_resolve(c->store, name, &q, err, sizeof err);
  if (rc) return rc == CC_ENOTFOUND ? CC_ENOTFOUND : CC_EIO;
  const json_t *svc_q = json_object_get(q, "Service");
  snprintf(info->service, sizeof info->service, "%s",
           json_string_value(json_object_get(svc_q, "Service")));
  snprintf(info->datacenter, sizeof info->datacenter, "%s", c->datacenter);
  const char *ttl = json_string_value(json_object_get(json_object_get(q, "DNS"), "TTL"));
  int64_t ns;
  info->has_ttl = ttl && *ttl && duration_parse(ttl, strlen(ttl), &ns) == 0 && ns >= 0;
  info->ttl = info->has_ttl ? (uint32_t)(ns / 1000000000LL > UINT32_MAX ? UINT32_MAX
                                                                         : ns / 1000000000LL)
                            : 0;
  const struct state_service **arr;
  size_t n = state_query_execute(c->store, q, &arr);
  json_decref(q);
  struct dns_perm perm;
  uint64_t i;
  for (dns_perm_init(&perm, n); dns_perm_next(&perm, &i);) {
    /* Critical only through a check the query ignores: it answers (with Warning's weight). */
    enum state_health h = state_instance_health(arr[i]);
    if (!dns_catalog_emit(c, arr[i], h == STATE_HEALTH_CRITICAL ? STATE_HEALTH_WARNING : h, sink))
      break;
  }
  free(arr);
  return 0;
}

/* Reverse lookups scan the nodes, then the services: PTR queries are rare next to forward
 * ones; an address index in the store is the fix if they ever matter. */
struct dns_catalog_rev {
  const uint8_t *ip;
  size_t iplen;
  struct dns_reverse_result *out;
  bool found;
};

static bool dns_catalog_ip_eq(const char *text, const uint8_t *ip, size_t iplen)
{
  uint8_t buf[16];
  if (!text || !*text) return false;
  if (iplen == 4) return inet_pton(AF_INET, text, buf) == 1 && memcmp(buf, ip, 4) == 0;
  return inet_pton(AF_INET6, text, buf) == 1 && memcmp(buf, ip, 16) == 0;
}

static int dns_catalog_rev_node(const struct state_node *n, void *arg)
{
  struct dns_catalog_rev *r = arg;
  if (!dns_catalog_ip_eq(n->address, r->ip, r->iplen)) return 0;
  r->out->is_service = false;
  snprintf(r->out->name, sizeof r->out->name, "%s", n->name);
  snprintf(r->out->datacenter, sizeof r->out->datacenter, "%s", n->datacenter);
  r->found = true;
  return 1;
}

static int dns_catalog_rev_service(const struct state_service *svc, void *arg)
{
  struct dns_catalog_rev *r = arg;
  if (!dns_catalog_ip_eq(svc->address, r->ip, r->iplen)) return 0;
  r->out->is_service = true;
  snprintf(r->out->name, sizeof r->out->name, "%s", svc->name);
  snprintf(r->out->datacenter, sizeof r->out->datacenter, "%s", svc->node->datacenter);
  r->found = true;
  return 1;
}

static int dns_catalog_reverse(void *ctx, const char *dc, const uint8_t *ip, size_t iplen,
                               struct dns_reverse_result *out)
{
  struct dns_catalog *c = ctx;
  if (!c->store) return CC_EIO;
  if (!dns_catalog_dc_ok(c, dc)) return CC_ENOTFOUND;
  struct dns_catalog_rev r = {ip, iplen, out, false};
  state_node_list(c->store, dns_catalog_rev_node, &r);
  if (!r.found) state_service_list(c->store, dns_catalog_rev_service, &r);
  if (r.found && !out->datacenter[0]) snprintf(out->datacenter, sizeof out->datacenter, "%s", c->datacenter);
  return r.found ? 0 : CC_ENOTFOUND;
}

/* Another datacenter is known while the WAN pool shows any server of it (alive or not: a
 * datacenter whose servers all failed is SERVFAIL, not NXDOMAIN, as Consul's
 * ErrDCNotAvailable). */
static bool dns_catalog_dc_known(void *ctx, const char *dc)
{
  struct dns_catalog *c = ctx;
  return wan_dcs_known(c->dcs, dc);
}

void dns_catalog_backend(struct dns_catalog *ctx, struct dns_backend *out)
{
  memset(out, 0, sizeof *out);
  out->ctx = ctx;
  out->datacenter = dns_catalog_datacenter;
  out->node = dns_catalog_lookup_node;
  out->service = dns_catalog_service;
  out->prepared_query = dns_catalog_prepared_query;
  out->reverse = dns_catalog_reverse;
  if (ctx->dcs) out->datacenter_known = dns_catalog_dc_known;
}
