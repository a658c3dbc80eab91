/* wan_dcs.c -- datacenter -> servers, from WAN member events. See wan_dcs.h. */
#include "agent/wan_dcs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/map.h"

/* Caps against a hostile or broken pool: names as serf's, servers per datacenter. */
#define MAX_NAME 256
#define MAX_SERVERS_PER_DC 64

struct wan_server {
  char *name;     /* the WAN member name, "<node>.<dc>" (owned) */
  char addr[80];  /* RPC address, "ip:port" */
  bool alive;
};

struct wan_dc {
  char *name;                 /* owned; also the map key */
  struct wan_server *servers; /* owned array */
  size_t n;
  size_t next;                /* round-robin cursor for picks */
};

struct wan_dcs {
  char *local;
  struct map dcs; /* name -> struct wan_dc * (owned) */
};

struct wan_dcs *wan_dcs_new(const char *local_dc)
{
  struct wan_dcs *d = xcalloc(1, sizeof *d);
  d->local = xstrdup(local_dc);
  map_init(&d->dcs);
  return d;
}

static void dc_free(struct wan_dc *dc)
{
  for (size_t i = 0; i < dc->n; i++) free(dc->servers[i].name);
  free(dc->servers);
  free(dc->name);
  free(dc);
}

void wan_dcs_free(struct wan_dcs *d)
{
  if (!d) return;
  struct map_iter it = map_iter_start(&d->dcs);
  while (map_iter_next(&it)) dc_free(it.entry->value);
  map_free(&d->dcs);
  free(d->local);
  free(d);
}

static struct wan_dc *dc_get(const struct wan_dcs *d, const char *name)
{
  return map_get(&d->dcs, name, strlen(name));
}

static struct wan_server *server_find(struct wan_dc *dc, const char *name)
{
  for (size_t i = 0; i < dc->n; i++)
    if (strcmp(dc->servers[i].name, name) == 0) return &dc->servers[i];
  return NULL;
}

static void server_remove(struct wan_dcs *d, struct wan_dc *dc, struct wan_server *s)
{
  size_t i = (size_t)(s - dc->servers);
  free(s->name);
  memmove(&dc->servers[i], &dc->servers[i + 1], (dc->n - i - 1) * sizeof *dc->servers);
  dc->n--;
  if (dc->next > i) dc->next--;
  if (dc->n == 0) {
    map_del(&d->dcs, dc->name, strlen(dc->name));
    dc_free(dc);
  }
}

void wan_dcs_on_member(struct wan_dcs *d, enum gossip_event ev, const struct gossip_member *m)
{
  const char *role = gossip_member_tag(m, "role");
  const char *dcname = gossip_member_tag(m, "dc");
  const char *port = gossip_member_tag(m, "port");
  if (!role || strcmp(role, "consul") != 0 || !dcname || !*dcname || !port || !m->name) return;
  if (strlen(dcname) > MAX_NAME || strlen(m->name) > MAX_NAME) return;
  char *end;
  unsigned long p = strtoul(port, &end, 10);
  if (*end || p == 0 || p > 65535) return;
  struct wan_dc *dc = dc_get(d, dcname);
  struct wan_server *s = dc ? server_find(dc, m->name) : NULL;
  if (ev == GOSSIP_EVENT_LEAVE || ev == GOSSIP_EVENT_REAP || m->status == GOSSIP_STATUS_LEFT) {
    if (s) server_remove(d, dc, s);
    return;
  }
  if (!s) {
    if (dc && dc->n >= MAX_SERVERS_PER_DC) return;
    if (!dc) {
      dc = xcalloc(1, sizeof *dc);
      dc->name = xstrdup(dcname);
      map_put(&d->dcs, dc->name, strlen(dc->name), dc);
    }
    dc->servers = xrealloc(dc->servers, (dc->n + 1) * sizeof *dc->servers);
    s = &dc->servers[dc->n++];
    memset(s, 0, sizeof *s);
    s->name = xstrdup(m->name);
  }
  /* IPv6 addresses go in brackets, as the RPC client parses "host:port" */
  if (strchr(m->addr, ':')) snprintf(s->addr, sizeof s->addr, "[%s]:%lu", m->addr, p);
  else snprintf(s->addr, sizeof s->addr, "%s:%lu", m->addr, p);
  s->alive = ev != GOSSIP_EVENT_FAILED && m->status != GOSSIP_STATUS_FAILED;
}

static int name_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t wan_dcs_names(const struct wan_dcs *d, char ***out)
{
  size_t n = 0, cap = map_count(&d->dcs) + 1;
  char **names = xcalloc(cap, sizeof *names);
  names[n++] = xstrdup(d->local);
  struct map_iter it = map_iter_start((struct map *)&d->dcs);
  while (map_iter_next(&it)) {
    const struct wan_dc *dc = it.entry->value;
    if (strcmp(dc->name, d->local) != 0) names[n++] = xstrdup(dc->name);
  }
  qsort(names + 1, n - 1, sizeof *names, name_cmp);
  *out = names;
  return n;
}

void wan_dcs_names_free(char **names, size_t n)
{
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
}

bool wan_dcs_known(const struct wan_dcs *d, const char *dc)
{
  return dc_get(d, dc) != NULL;
}

const char *wan_dcs_pick(struct wan_dcs *d, const char *dcname)
{
  struct wan_dc *dc = dc_get(d, dcname);
  if (!dc) return NULL;
  for (size_t k = 0; k < dc->n; k++) {
    size_t i = (dc->next + k) % dc->n;
    if (dc->servers[i].alive) {
      dc->next = i; /* sticky until it fails, as Consul's manager keeps its first server */
      return dc->servers[i].addr;
    }
  }
  return NULL;
}

void wan_dcs_failed(struct wan_dcs *d, const char *dcname, const char *addr)
{
  struct wan_dc *dc = dc_get(d, dcname);
  if (!dc || dc->n == 0) return;
  if (strcmp(dc->servers[dc->next % dc->n].addr, addr) == 0) dc->next = (dc->next + 1) % dc->n;
}
