/* memcat.c -- the in-memory catalog behind struct dns_backend (see memcat.h). */
#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns/memcat.h"
#include "lib/alloc.h"
#include "lib/duration.h"
#include "lib/err.h"
#include "lib/map.h"

enum { TA_LAN4, TA_LAN6, TA_WAN, TA_WAN4, TA_WAN6, TA_N };
static const char *const ta_names[TA_N] = {"lan_ipv4", "lan_ipv6", "wan", "wan_ipv4", "wan_ipv6"};

struct mc_node {
  char *dc, *name, *address, *tagged[TA_N];
  struct dns_kv *meta;
  size_t n_meta;
};

struct mc_svc {
  size_t node;
  char *name, *address;
  uint16_t port;
  char **tags;
  size_t n_tags;
  enum dns_health health;
  int wp, ww;
  char *tagged[TA_N];
  uint16_t tagged_port[TA_N];
};

/* The instances of one service in one datacenter: indexes into svcs. */
struct mc_list {
  size_t *idx;
  size_t n, cap;
};

struct mc_query {
  char *name, *service, *tag;
  bool only_passing, has_ttl;
  uint32_t ttl;
};

struct dns_memcat {
  char *dc;
  struct mc_node *nodes;
  size_t n_nodes, cap_nodes;
  struct mc_svc *svcs;
  size_t n_svcs, cap_svcs;
  struct mc_query *queries;
  size_t n_queries, cap_queries;
  struct map node_idx; /* "dc\0name" lower case -> index + 1 */
  struct map svc_idx;  /* "dc\0name" lower case -> struct mc_list */
  struct map dcs;      /* known datacenters, lower case -> (void *)1 */
  int fail;
};

static char *dup_or_empty(const char *s) { return xstrdup(s ? s : ""); }
static bool nz(const char *s) { return s && *s; }

/* Writes the lower-case "dc\0name" key into buf; returns its length. */
static size_t mkkey(char *buf, size_t cap, const char *dc, const char *name)
{
  size_t n = 0;
  for (const char *p = dc; *p && n + 2 < cap; p++)
    buf[n++] = (char)tolower((unsigned char)*p);
  buf[n++] = '\0';
  for (const char *p = name; *p && n + 1 < cap; p++)
    buf[n++] = (char)tolower((unsigned char)*p);
  buf[n] = '\0';
  return n;
}

static void add_dc(struct dns_memcat *m, const char *dc)
{
  char k[256];
  size_t n = mkkey(k, sizeof k, dc, "");
  map_put(&m->dcs, k, n, (void *)1);
}

static bool known_dc(const struct dns_memcat *m, const char *dc)
{
  char k[256];
  size_t n = mkkey(k, sizeof k, dc, "");
  return map_get(&m->dcs, k, n) != NULL;
}

struct dns_memcat *dns_memcat_new(const char *local_dc)
{
  struct dns_memcat *m = xcalloc(1, sizeof *m);
  m->dc = xstrdup(local_dc ? local_dc : "dc1");
  map_init(&m->node_idx);
  map_init(&m->svc_idx);
  map_init(&m->dcs);
  add_dc(m, m->dc);
  return m;
}

void dns_memcat_free(struct dns_memcat *m)
{
  if (!m)
    return;
  for (size_t i = 0; i < m->n_nodes; i++) {
    struct mc_node *n = &m->nodes[i];
    free(n->dc);
    free(n->name);
    free(n->address);
    for (int t = 0; t < TA_N; t++)
      free(n->tagged[t]);
    for (size_t k = 0; k < n->n_meta; k++) {
      free((char *)n->meta[k].key);
      free((char *)n->meta[k].value);
    }
    free(n->meta);
  }
  for (size_t i = 0; i < m->n_svcs; i++) {
    struct mc_svc *s = &m->svcs[i];
    free(s->name);
    free(s->address);
    for (size_t k = 0; k < s->n_tags; k++)
      free(s->tags[k]);
    free(s->tags);
    for (int t = 0; t < TA_N; t++)
      free(s->tagged[t]);
  }
  for (size_t i = 0; i < m->n_queries; i++) {
    free(m->queries[i].name);
    free(m->queries[i].service);
    free(m->queries[i].tag);
  }
  for (struct map_iter it = map_iter_start(&m->svc_idx); map_iter_next(&it);) {
    struct mc_list *l = it.entry->value;
    free(l->idx);
    free(l);
  }
  map_free(&m->node_idx);
  map_free(&m->svc_idx);
  map_free(&m->dcs);
  free(m->nodes);
  free(m->svcs);
  free(m->queries);
  free(m->dc);
  free(m);
}

int dns_memcat_add_node(struct dns_memcat *m, const struct dns_node *node)
{
  if (!nz(node->name) || !nz(node->address))
    return CC_EINVAL;
  if (m->n_nodes == m->cap_nodes) {
    m->cap_nodes = m->cap_nodes ? m->cap_nodes * 2 : 16;
    m->nodes = xrealloc(m->nodes, m->cap_nodes * sizeof *m->nodes);
  }
  struct mc_node *n = &m->nodes[m->n_nodes];
  memset(n, 0, sizeof *n);
  n->dc = xstrdup(nz(node->datacenter) ? node->datacenter : m->dc);
  n->name = xstrdup(node->name);
  n->address = xstrdup(node->address);
  const char *tagged[TA_N] = {node->lan_ipv4, node->lan_ipv6, node->wan, node->wan_ipv4,
                              node->wan_ipv6};
  for (int t = 0; t < TA_N; t++)
    n->tagged[t] = dup_or_empty(tagged[t]);
  n->meta = xcalloc(node->n_meta ? node->n_meta : 1, sizeof *n->meta);
  for (size_t k = 0; k < node->n_meta; k++) {
    n->meta[k].key = dup_or_empty(node->meta[k].key);
    n->meta[k].value = dup_or_empty(node->meta[k].value);
  }
  n->n_meta = node->n_meta;
  char key[512];
  size_t klen = mkkey(key, sizeof key, n->dc, n->name);
  map_put(&m->node_idx, key, klen, (void *)(uintptr_t)(m->n_nodes + 1));
  add_dc(m, n->dc);
  return (int)m->n_nodes++;
}

int dns_memcat_add_service(struct dns_memcat *m, const struct dns_memcat_service *svc)
{
  if (!nz(svc->name) || !nz(svc->node))
    return CC_EINVAL;
  const char *dc = nz(svc->datacenter) ? svc->datacenter : m->dc;
  char key[512];
  size_t klen = mkkey(key, sizeof key, dc, svc->node);
  uintptr_t node = (uintptr_t)map_get(&m->node_idx, key, klen);
  if (!node)
    return CC_ENOTFOUND;
  if (m->n_svcs == m->cap_svcs) {
    m->cap_svcs = m->cap_svcs ? m->cap_svcs * 2 : 16;
    m->svcs = xrealloc(m->svcs, m->cap_svcs * sizeof *m->svcs);
  }
  struct mc_svc *s = &m->svcs[m->n_svcs];
  memset(s, 0, sizeof *s);
  s->node = node - 1;
  s->name = xstrdup(svc->name);
  s->address = dup_or_empty(svc->address);
  s->port = svc->port;
  s->tags = xcalloc(svc->n_tags ? svc->n_tags : 1, sizeof *s->tags);
  for (size_t k = 0; k < svc->n_tags; k++)
    s->tags[k] = dup_or_empty(svc->tags[k]);
  s->n_tags = svc->n_tags;
  s->health = svc->health;
  s->wp = svc->weight_passing || svc->weight_warning ? svc->weight_passing : 1;
  s->ww = svc->weight_passing || svc->weight_warning ? svc->weight_warning : 1;
  const struct dns_service_addr *ta[TA_N] = {&svc->lan_ipv4, &svc->lan_ipv6, &svc->wan,
                                             &svc->wan_ipv4, &svc->wan_ipv6};
  for (int t = 0; t < TA_N; t++) {
    s->tagged[t] = dup_or_empty(ta[t]->address);
    s->tagged_port[t] = ta[t]->port;
  }
  klen = mkkey(key, sizeof key, dc, svc->name);
  struct mc_list *l = map_get(&m->svc_idx, key, klen);
  if (!l) {
    l = xcalloc(1, sizeof *l);
    map_put(&m->svc_idx, key, klen, l);
  }
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 4;
    l->idx = xrealloc(l->idx, l->cap * sizeof *l->idx);
  }
  l->idx[l->n++] = m->n_svcs++;
  return 0;
}

int dns_memcat_add_query(struct dns_memcat *m, const char *name, const char *service,
                         const char *tag, bool only_passing, bool has_ttl, uint32_t ttl)
{
  if (!nz(name) || !nz(service))
    return CC_EINVAL;
  if (m->n_queries == m->cap_queries) {
    m->cap_queries = m->cap_queries ? m->cap_queries * 2 : 4;
    m->queries = xrealloc(m->queries, m->cap_queries * sizeof *m->queries);
  }
  struct mc_query *q = &m->queries[m->n_queries++];
  q->name = xstrdup(name);
  q->service = xstrdup(service);
  q->tag = nz(tag) ? xstrdup(tag) : NULL;
  q->only_passing = only_passing;
  q->has_ttl = has_ttl;
  q->ttl = ttl;
  return 0;
}

void dns_memcat_fail(struct dns_memcat *m, int code)
{
  m->fail = code;
}

/* ---- The backend ---- */

static void fill_node(const struct mc_node *n, struct dns_node *out)
{
  out->name = n->name;
  out->datacenter = n->dc;
  out->address = n->address;
  out->lan_ipv4 = n->tagged[TA_LAN4];
  out->lan_ipv6 = n->tagged[TA_LAN6];
  out->wan = n->tagged[TA_WAN];
  out->wan_ipv4 = n->tagged[TA_WAN4];
  out->wan_ipv6 = n->tagged[TA_WAN6];
  out->meta = n->meta;
  out->n_meta = n->n_meta;
  out->address_parsed = false; /* the engine parses the text (dns_catalog gives it parsed) */
}

static int be_datacenter(void *ctx, char *out, size_t outlen)
{
  struct dns_memcat *m = ctx;
  if (m->fail)
    return m->fail;
  snprintf(out, outlen, "%s", m->dc);
  return 0;
}

static int be_node(void *ctx, const char *dc, const char *name,
                   void (*fn)(void *arg, const struct dns_node *node), void *arg)
{
  struct dns_memcat *m = ctx;
  if (m->fail)
    return m->fail;
  char key[512];
  size_t klen = mkkey(key, sizeof key, dc, name);
  uintptr_t i = (uintptr_t)map_get(&m->node_idx, key, klen);
  if (!i)
    return CC_ENOTFOUND;
  struct dns_node n;
  fill_node(&m->nodes[i - 1], &n);
  fn(arg, &n);
  return 0;
}

static bool has_tag(const struct mc_svc *s, const char *tag)
{
  if (!tag)
    return true;
  for (size_t i = 0; i < s->n_tags; i++)
    if (strcasecmp(s->tags[i], tag) == 0)
      return true;
  return false;
}

/* Emits the instances of service in dc in a random order (dns_perm), skipping critical ones
 * and, with only_passing, warning ones. */
static int emit_service(struct dns_memcat *m, const char *dc, const char *service,
                        const char *tag, bool only_passing, struct dns_sink *sink)
{
  if (!known_dc(m, dc))
    return CC_ENOTFOUND;
  char key[512];
  size_t klen = mkkey(key, sizeof key, dc, service);
  struct mc_list *l = map_get(&m->svc_idx, key, klen);
  if (!l)
    return 0;
  struct dns_perm p;
  uint64_t i;
  for (dns_perm_init(&p, l->n); dns_perm_next(&p, &i);) {
    const struct mc_svc *s = &m->svcs[l->idx[i]];
    if (s->health == DNS_HEALTH_CRITICAL || (only_passing && s->health != DNS_HEALTH_PASSING) ||
        !has_tag(s, tag))
      continue;
    struct dns_instance in;
    memset(&in, 0, sizeof in);
    fill_node(&m->nodes[s->node], &in.node);
    in.address = s->address;
    in.port = s->port;
    struct dns_service_addr *ta[TA_N] = {&in.lan_ipv4, &in.lan_ipv6, &in.wan, &in.wan_ipv4,
                                         &in.wan_ipv6};
    for (int t = 0; t < TA_N; t++) {
      ta[t]->address = s->tagged[t];
      ta[t]->port = s->tagged_port[t];
    }
    in.health = s->health;
    in.weight_passing = s->wp;
    in.weight_warning = s->ww;
    if (!sink->emit(sink, &in))
      break;
  }
  return 0;
}

static int be_service(void *ctx, const struct dns_service_query *q, struct dns_sink *sink)
{
  struct dns_memcat *m = ctx;
  if (m->fail)
    return m->fail;
  return emit_service(m, q->datacenter, q->service, q->tag, q->only_passing, sink);
}

static int be_prepared_query(void *ctx, const char *dc, const char *name,
                             const struct sockaddr *client, struct dns_query_info *info,
                             struct dns_sink *sink)
{
  struct dns_memcat *m = ctx;
  (void)client;
  if (m->fail)
    return m->fail;
  for (size_t i = 0; i < m->n_queries; i++) {
    const struct mc_query *q = &m->queries[i];
    if (strcasecmp(q->name, name) != 0)
      continue;
    snprintf(info->service, sizeof info->service, "%s", q->service);
    snprintf(info->datacenter, sizeof info->datacenter, "%s", dc);
    info->has_ttl = q->has_ttl;
    info->ttl = q->ttl;
    return emit_service(m, dc, q->service, q->tag, q->only_passing, sink);
  }
  return CC_ENOTFOUND;
}

static bool same_ip(const char *text, const uint8_t *ip, size_t iplen)
{
  uint8_t b[16];
  if (iplen == 4)
    return inet_pton(AF_INET, text, b) == 1 && memcmp(b, ip, 4) == 0;
  return inet_pton(AF_INET6, text, b) == 1 && memcmp(b, ip, 16) == 0;
}

static int be_reverse(void *ctx, const char *dc, const uint8_t *ip, size_t iplen,
                      struct dns_reverse_result *out)
{
  struct dns_memcat *m = ctx;
  if (m->fail)
    return m->fail;
  for (size_t i = 0; i < m->n_nodes; i++) {
    if (strcasecmp(m->nodes[i].dc, dc) == 0 && same_ip(m->nodes[i].address, ip, iplen)) {
      out->is_service = false;
      snprintf(out->name, sizeof out->name, "%s", m->nodes[i].name);
      snprintf(out->datacenter, sizeof out->datacenter, "%s", m->nodes[i].dc);
      return 0;
    }
  }
  for (size_t i = 0; i < m->n_svcs; i++) {
    const struct mc_node *n = &m->nodes[m->svcs[i].node];
    if (strcasecmp(n->dc, dc) == 0 && same_ip(m->svcs[i].address, ip, iplen)) {
      out->is_service = true;
      snprintf(out->name, sizeof out->name, "%s", m->svcs[i].name);
      snprintf(out->datacenter, sizeof out->datacenter, "%s", n->dc);
      return 0;
    }
  }
  return CC_ENOTFOUND;
}

void dns_memcat_backend(struct dns_memcat *m, struct dns_backend *out)
{
  memset(out, 0, sizeof *out);
  out->ctx = m;
  out->datacenter = be_datacenter;
  out->node = be_node;
  out->service = be_service;
  out->prepared_query = be_prepared_query;
  out->reverse = be_reverse;
}

/* ---- JSON ---- */

static const char *jstr(json_t *o, const char *key)
{
  json_t *v = json_object_get(o, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static enum dns_health parse_health(const char *s)
{
  if (s && strcasecmp(s, "critical") == 0)
    return DNS_HEALTH_CRITICAL;
  if (s && strcasecmp(s, "warning") == 0)
    return DNS_HEALTH_WARNING;
  return DNS_HEALTH_PASSING;
}

static int load_node(struct dns_memcat *m, json_t *o, char *errbuf, size_t errlen)
{
  struct dns_node n;
  memset(&n, 0, sizeof n);
  n.name = jstr(o, "Node");
  n.address = jstr(o, "Address");
  n.datacenter = jstr(o, "Datacenter");
  json_t *ta = json_object_get(o, "TaggedAddresses");
  const char **tagged[TA_N] = {&n.lan_ipv4, &n.lan_ipv6, &n.wan, &n.wan_ipv4, &n.wan_ipv6};
  for (int t = 0; t < TA_N; t++)
    *tagged[t] = jstr(ta, ta_names[t]);
  json_t *meta = json_object_get(o, "Meta");
  struct dns_kv kv[64];
  const char *k;
  json_t *v;
  json_object_foreach(meta, k, v) {
    if (n.n_meta < 64 && json_is_string(v))
      kv[n.n_meta++] = (struct dns_kv){k, json_string_value(v)};
  }
  n.meta = kv;
  if (dns_memcat_add_node(m, &n) < 0) {
    snprintf(errbuf, errlen, "a node needs \"Node\" and \"Address\"");
    return -1;
  }
  return 0;
}

static int load_service(struct dns_memcat *m, json_t *o, char *errbuf, size_t errlen)
{
  struct dns_memcat_service s;
  memset(&s, 0, sizeof s);
  s.node = jstr(o, "Node");
  s.datacenter = jstr(o, "Datacenter");
  s.name = jstr(o, "Service");
  s.address = jstr(o, "Address");
  json_t *port = json_object_get(o, "Port");
  s.port = json_is_integer(port) ? (uint16_t)json_integer_value(port) : 0;
  const char *tags[64];
  json_t *jt = json_object_get(o, "Tags"), *v;
  size_t i;
  json_array_foreach(jt, i, v) {
    if (s.n_tags < 64 && json_is_string(v))
      tags[s.n_tags++] = json_string_value(v);
  }
  s.tags = tags;
  s.health = parse_health(jstr(o, "Status"));
  json_t *w = json_object_get(o, "Weights");
  if (json_is_object(w)) {
    s.weight_passing = (int)json_integer_value(json_object_get(w, "Passing"));
    s.weight_warning = (int)json_integer_value(json_object_get(w, "Warning"));
  }
  json_t *ta = json_object_get(o, "TaggedAddresses");
  struct dns_service_addr *tagged[TA_N] = {&s.lan_ipv4, &s.lan_ipv6, &s.wan, &s.wan_ipv4,
                                           &s.wan_ipv6};
  for (int t = 0; t < TA_N; t++) {
    json_t *a = json_object_get(ta, ta_names[t]);
    tagged[t]->address = jstr(a, "Address");
    tagged[t]->port = (uint16_t)json_integer_value(json_object_get(a, "Port"));
  }
  int rc = dns_memcat_add_service(m, &s);
  if (rc != 0) {
    snprintf(errbuf, errlen, "service \"%s\": %s", s.name ? s.name : "",
             rc == CC_ENOTFOUND ? "no such node" : "needs \"Node\" and \"Service\"");
    return -1;
  }
  return 0;
}

static int load_query(struct dns_memcat *m, json_t *o, char *errbuf, size_t errlen)
{
  const char *ttl = jstr(o, "TTL");
  int64_t ns = 0;
  if (ttl && duration_parse(ttl, strlen(ttl), &ns) != 0) {
    snprintf(errbuf, errlen, "query TTL \"%s\" is not a duration", ttl);
    return -1;
  }
  if (dns_memcat_add_query(m, jstr(o, "Name"), jstr(o, "Service"), jstr(o, "Tag"),
                           json_is_true(json_object_get(o, "OnlyPassing")), ttl != NULL,
                           (uint32_t)(ns / DURATION_S)) != 0) {
    snprintf(errbuf, errlen, "a query needs \"Name\" and \"Service\"");
    return -1;
  }
  return 0;
}

int dns_memcat_load_json(struct dns_memcat *m, const char *text, size_t len, char *errbuf,
                         size_t errlen)
{
  json_error_t jerr;
  json_t *root = json_loadb(text, len, 0, &jerr);
  if (!json_is_object(root)) {
    snprintf(errbuf, errlen, "catalog JSON: %s (line %d)", root ? "not an object" : jerr.text,
             jerr.line);
    json_decref(root);
    return -1;
  }
  const char *dc = jstr(root, "Datacenter");
  if (dc) {
    free(m->dc);
    m->dc = xstrdup(dc);
    add_dc(m, dc);
  }
  json_t *v;
  size_t i;
  int rc = 0;
  json_array_foreach(json_object_get(root, "Nodes"), i, v) {
    if (rc == 0)
      rc = load_node(m, v, errbuf, errlen);
  }
  json_array_foreach(json_object_get(root, "Services"), i, v) {
    if (rc == 0)
      rc = load_service(m, v, errbuf, errlen);
  }
  json_array_foreach(json_object_get(root, "Queries"), i, v) {
    if (rc == 0)
      rc = load_query(m, v, errbuf, errlen);
  }
  json_decref(root);
  return rc;
}
