/* servers.c -- the known servers (from gossip tags), bootstrap, and the leader's Raft
 * membership upkeep. See servers.h. */
#include "agent/servers.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/log.h"
#include "rpc/rpc.h"

#define TICK_MS 1000
#define PROBE_TIMEOUT_MS 2000
#define MAX_PROBES 16

struct server_entry {
  char name[256];
  char addr[64];      /* RPC (and Raft) address, ip:port (fits consensus_peer) */
  uint64_t raft_id;   /* from the "id" tag; 0 when the tag is missing */
  unsigned expect;    /* its bootstrap_expect tag (0 when none) */
  bool alive;
  bool left;
  uint64_t failed_at; /* loop time it was seen failed, 0 while alive */
};

struct servers;

/* One "Status.Peers" question to another server before bootstrapping. */
struct probe {
  struct servers *s;
  struct rpc_req *req;
  bool done;
  long peers;         /* its answer; -1: no answer */
  bool includes_us;   /* its configuration lists this server */
  struct consensus_peer conf[MAX_PROBES]; /* that configuration, in its order */
  size_t nconf;
};

struct servers {
  uv_loop_t *loop;
  struct rpc *rpc;
  struct consensus *consensus;
  char *datacenter;
  char *node_name;
  unsigned expect;
  uint64_t dead_cleanup_ms;
  struct server_entry *v;
  size_t n, cap;
  size_t cur;               /* sticky pick */
  uv_timer_t timer;
  bool changing;            /* a Raft membership change is in flight */
  bool closing;
  /* bootstrap probes: the list being asked, and their answers */
  struct probe probes[MAX_PROBES];
  struct consensus_peer plan[MAX_PROBES];
  size_t nplan, nprobes, probes_left;
};

/* ---- the list ---- */

static struct server_entry *find_by_name(struct servers *s, const char *name)
{
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i].name, name) == 0) return &s->v[i];
  return NULL;
}

static struct server_entry *find_by_raft_id(struct servers *s, uint64_t id)
{
  for (size_t i = 0; i < s->n; i++)
    if (s->v[i].raft_id == id) return &s->v[i];
  return NULL;
}

void servers_on_member(struct servers *s, enum gossip_event ev, const struct gossip_member *m)
{
  const char *role = gossip_member_tag(m, "role");
  const char *dc = gossip_member_tag(m, "dc");
  const char *port = gossip_member_tag(m, "port");
  if (!role || strcmp(role, "consul") != 0 || !dc || strcmp(dc, s->datacenter) != 0 || !port)
    return;
  struct server_entry *e = find_by_name(s, m->name);
  if (!e) {
    if (ev == GOSSIP_EVENT_REAP || ev == GOSSIP_EVENT_LEAVE) return;
    if (s->n == s->cap) {
      s->cap = s->cap ? s->cap * 2 : 8;
      s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    e = &s->v[s->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", m->name);
  }
  snprintf(e->addr, sizeof e->addr, "%s:%s", m->addr, port);
  const char *id = gossip_member_tag(m, "id");
  e->raft_id = id && *id ? consensus_raft_id(id) : 0;
  const char *expect = gossip_member_tag(m, "expect");
  const char *bootstrap = gossip_member_tag(m, "bootstrap");
  e->expect = expect ? (unsigned)strtoul(expect, NULL, 10) : bootstrap ? 1 : 0;
  bool was_alive = e->alive;
  switch (ev) {
  case GOSSIP_EVENT_JOIN:
  case GOSSIP_EVENT_UPDATE:
    e->alive = m->status == GOSSIP_STATUS_ALIVE;
    e->left = m->status == GOSSIP_STATUS_LEFT;
    break;
  case GOSSIP_EVENT_FAILED:
    e->alive = false;
    break;
  case GOSSIP_EVENT_LEAVE:
  case GOSSIP_EVENT_REAP:
    e->alive = false;
    e->left = true;
    break;
  }
  if (e->alive) e->failed_at = 0;
  else if (was_alive || e->failed_at == 0) e->failed_at = uv_now(s->loop);
}

size_t servers_count(const struct servers *s)
{
  size_t n = 0;
  for (size_t i = 0; i < s->n; i++) n += s->v[i].alive;
  return n;
}

const char *servers_pick(struct servers *s)
{
  for (size_t k = 0; k < s->n; k++) {
    size_t i = (s->cur + k) % s->n;
    if (s->v[i].alive) {
      s->cur = i;
      return s->v[i].addr;
    }
  }
  return NULL;
}

void servers_failed(struct servers *s, const char *addr)
{
  if (s->n == 0) return;
  if (strcmp(s->v[s->cur % s->n].addr, addr) == 0) s->cur = (s->cur + 1) % s->n;
}

/* ---- bootstrap (Consul's maybeBootstrap) ---- */

static void probes_finish(struct servers *s)
{
  bool answered = true;
  struct probe *exists = NULL;
  for (size_t i = 0; i < s->nprobes; i++) {
    if (s->probes[i].peers < 0) answered = false;
    if (s->probes[i].peers > 0 && !exists) exists = &s->probes[i];
  }
  s->nprobes = 0;
  if (!s->consensus || !consensus_awaiting_bootstrap(s->consensus)) return;
  if (exists && exists->includes_us && exists->nconf == (size_t)exists->peers) {
    /* A peer bootstrapped a moment before us with a list that includes us: write the very
     * same configuration at index 1 (the same servers in the same order), as if we had got
     * there first; an empty log would never vote for it. */
    log_info("agent.servers", "bootstrap: a peer bootstrapped with us in its list: "
             "bootstrapping with the same %zu servers", exists->nconf);
    consensus_bootstrap(s->consensus, exists->conf, exists->nconf);
    return;
  }
  if (exists) {
    /* another cluster exists without us: never bootstrap a second one; wait to be added */
    consensus_start_joined(s->consensus);
    return;
  }
  if (!answered) {
    log_info("agent.servers", "bootstrap: not every server answered yet; will retry");
    return;
  }
  log_info("agent.servers", "bootstrap: %zu servers found, none has a Raft configuration: "
           "bootstrapping", s->nplan);
  consensus_bootstrap(s->consensus, s->plan, s->nplan);
}

static void probe_done(void *arg, int status, const char *error, const uint8_t *body,
                       size_t len)
{
  struct probe *p = arg;
  struct servers *s = p->s;
  p->req = NULL;
  p->done = true;
  if (status == 0 && !error && len > 0 && len < 8192) {
    /* "<count>\n" then one "<raft id hex> <address>\n" per server */
    char *text = xstrndup((const char *)body, len);
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    p->peers = line ? strtol(line, NULL, 10) : -1;
    uint64_t self = consensus_id(s->consensus);
    while ((line = strtok_r(NULL, "\n", &save)) != NULL && p->nconf < MAX_PROBES) {
      char addr[64];
      unsigned long long id;
      if (sscanf(line, "%llx %63s", &id, addr) != 2) continue;
      struct consensus_peer *c = &p->conf[p->nconf++];
      c->id = id;
      snprintf(c->address, sizeof c->address, "%s", addr);
      c->voter = true;
      if (id == self) p->includes_us = true;
    }
    free(text);
  }
  if (--s->probes_left == 0) probes_finish(s);
}

static int plan_cmp(const void *x, const void *y)
{
  const struct consensus_peer *a = x, *b = y;
  return a->id < b->id ? -1 : a->id > b->id;
}

static void maybe_bootstrap(struct servers *s)
{
  if (s->nprobes > 0) return; /* asking already */
  size_t n = 0;
  for (size_t i = 0; i < s->n; i++) {
    struct server_entry *e = &s->v[i];
    if (!e->alive || e->raft_id == 0) continue;
    if (e->expect != 0 && e->expect != s->expect) {
      log_error("agent.servers", "member %s has a conflicting expect value (%u, ours %u): all "
                "servers should have the same bootstrap_expect", e->name, e->expect, s->expect);
      return;
    }
    if (n == MAX_PROBES) break;
    s->plan[n].id = e->raft_id;
    snprintf(s->plan[n].address, sizeof s->plan[n].address, "%s", e->addr);
    s->plan[n].voter = true;
    n++;
  }
  if (n < s->expect) return;
  qsort(s->plan, n, sizeof *s->plan, plan_cmp);
  s->nplan = n;
  /* ask every other server whether it already belongs to a cluster */
  uint64_t self = consensus_id(s->consensus);
  s->nprobes = 0;
  for (size_t i = 0; i < n; i++) {
    if (s->plan[i].id == self) continue;
    struct probe *p = &s->probes[s->nprobes++];
    *p = (struct probe){.s = s, .peers = -1};
  }
  s->probes_left = s->nprobes;
  if (s->nprobes == 0) {
    probes_finish(s);
    return;
  }
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (s->plan[i].id == self) continue;
    struct probe *p = &s->probes[k++];
    int rv = rpc_request(s->rpc, s->plan[i].address, "Status.Peers", NULL, 0, PROBE_TIMEOUT_MS,
                         probe_done, p, &p->req);
    if (rv != 0) {
      p->done = true;
      if (--s->probes_left == 0) probes_finish(s);
    }
  }
}

/* ---- the leader keeps the Raft configuration in step with gossip ---- */

static void change_done(void *arg, int status)
{
  struct servers *s = arg;
  s->changing = false;
  if (status != 0) log_warn("agent.servers", "Raft membership change failed: %s", cc_strerror(status));
}

static void reconcile_raft(struct servers *s)
{
  if (s->changing) return;
  struct consensus_peer peers[64];
  size_t np = consensus_peers(s->consensus, peers, 64);
  if (np > 64) np = 64;
  uint64_t self = consensus_id(s->consensus);
  /* servers gossip sees alive but Raft does not have: add (one change at a time) */
  for (size_t i = 0; i < s->n; i++) {
    struct server_entry *e = &s->v[i];
    if (!e->alive || e->raft_id == 0) continue;
    bool known = false;
    for (size_t j = 0; j < np && !known; j++)
      known = peers[j].id == e->raft_id && peers[j].voter && strcmp(peers[j].address, e->addr) == 0;
    if (known) continue;
    bool present = false;
    for (size_t j = 0; j < np; j++) present |= peers[j].id == e->raft_id;
    if (present) {
      /* same id at another address (a server came back on a new port): replace it */
      bool wrong_addr = false;
      for (size_t j = 0; j < np; j++)
        if (peers[j].id == e->raft_id && strcmp(peers[j].address, e->addr) != 0) wrong_addr = true;
      if (wrong_addr && e->raft_id != self &&
          consensus_remove_peer(s->consensus, e->raft_id, change_done, s) == 0) {
        s->changing = true;
        log_info("agent.servers", "removing %s from Raft to re-add it at %s", e->name, e->addr);
        return;
      }
    }
    if (consensus_add_voter(s->consensus, e->raft_id, e->addr, change_done, s) == 0) {
      s->changing = true;
      log_info("agent.servers", "adding server %s (%s) to Raft", e->name, e->addr);
      return;
    }
  }
  /* servers that left, or failed long enough (autopilot's CleanupDeadServers): remove, as
   * long as the servers still alive stay a majority of what remains */
  size_t voters = 0, alive_voters = 0;
  for (size_t j = 0; j < np; j++) {
    if (!peers[j].voter) continue;
    voters++;
    struct server_entry *e = find_by_raft_id(s, peers[j].id);
    if (peers[j].id == self || (e && e->alive)) alive_voters++;
  }
  uint64_t now = uv_now(s->loop);
  for (size_t j = 0; j < np; j++) {
    if (peers[j].id == self) continue;
    struct server_entry *e = find_by_raft_id(s, peers[j].id);
    if (!e || e->alive) continue;
    bool dead = e->left || (s->dead_cleanup_ms && e->failed_at &&
                            now - e->failed_at >= s->dead_cleanup_ms);
    if (!dead) continue;
    size_t after = voters - (peers[j].voter ? 1 : 0);
    if (!e->left && alive_voters < after / 2 + 1) continue;
    if (consensus_remove_peer(s->consensus, peers[j].id, change_done, s) == 0) {
      s->changing = true;
      log_info("agent.servers", "removing %s server %s from Raft", e->left ? "departed" : "dead",
               e->name);
      return;
    }
  }
}

static void tick(uv_timer_t *t)
{
  struct servers *s = t->data;
  if (s->closing || !s->consensus) return;
  if (consensus_awaiting_bootstrap(s->consensus)) {
    maybe_bootstrap(s);
    return;
  }
  if (consensus_is_leader(s->consensus)) reconcile_raft(s);
}

/* ---- Status.Peers: how many servers this one's Raft configuration holds ---- */

static void status_peers(struct rpc_call *call, const uint8_t *body, size_t len, void *arg)
{
  struct servers *s = arg;
  (void)body;
  (void)len;
  struct consensus_peer peers[MAX_PROBES];
  size_t n = consensus_peers(s->consensus, peers, MAX_PROBES);
  struct buf out = BUF_INIT;
  buf_printf(&out, "%zu\n", n);
  for (size_t i = 0; i < n && i < MAX_PROBES; i++)
    if (peers[i].voter) buf_printf(&out, "%016" PRIx64 " %s\n", peers[i].id, peers[i].address);
  rpc_call_reply(call, NULL, out.data, out.len);
  buf_free(&out);
}

/* ---- life ---- */

struct servers *servers_new(uv_loop_t *loop, const struct servers_config *cfg, struct rpc *rpc,
                            struct consensus *consensus)
{
  struct servers *s = xcalloc(1, sizeof *s);
  s->loop = loop;
  s->rpc = rpc;
  s->consensus = consensus;
  s->datacenter = xstrdup(cfg->datacenter);
  s->node_name = xstrdup(cfg->node_name);
  s->expect = cfg->bootstrap_expect;
  s->dead_cleanup_ms = cfg->dead_server_cleanup_ms;
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  if (consensus) {
    rpc_handle(rpc, "Status.Peers", status_peers, s);
    uv_timer_start(&s->timer, tick, TICK_MS, TICK_MS);
  }
  return s;
}

static void timer_closed(uv_handle_t *h)
{
  struct servers *s = h->data;
  free(s->datacenter);
  free(s->node_name);
  free(s->v);
  free(s);
}

void servers_free(struct servers *s)
{
  s->closing = true;
  for (size_t i = 0; i < s->nprobes; i++)
    if (s->probes[i].req) rpc_request_cancel(s->probes[i].req);
  uv_close((uv_handle_t *)&s->timer, timer_closed);
}
