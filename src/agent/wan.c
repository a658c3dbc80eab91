/* wan.c -- the servers' WAN gossip pool and the joins into it. See wan.h. */
#include "agent/wan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

struct wan {
  uv_loop_t *loop;
  struct gossip *gossip;
  struct wan_dcs *dcs;
  char **retry_join;  /* owned, NULL-terminated */
  size_t nretry;
  uint64_t retry_interval_ms;
  uv_timer_t *retry_timer; /* freed in its close callback */
  char *dc;                /* our datacenter, owned */
  struct gossip *lan;      /* borrowed (wan_flood_attach) */
  uv_timer_t *flood_timer; /* freed in its close callback; NULL until attached */
  bool flooding;           /* a flood join is in flight */
  void (*on_fatal)(void *arg);
  void *arg;
  bool stopping;
  void (*leave_cb)(void *arg);
  void *leave_arg;
};

/* Tags only the LAN carries (Consul's setupSerf adds them for the LAN pool alone). */
static bool lan_only_tag(const char *k)
{
  return strcmp(k, "segment") == 0 || strcmp(k, "wan_join_port") == 0;
}

static void wan_on_member(void *ctx, enum gossip_event ev, const struct gossip_member *m)
{
  struct wan *w = ctx;
  static const char *const names[] = {"joined", "left", "failed", "updated", "reaped"};
  log_info("agent.serf.wan", "member %s %s (%s:%u)", m->name, names[ev], m->addr, m->port);
  wan_dcs_on_member(w->dcs, ev, m);
}

/* ---- Flood joins ---- */

#define FLOOD_INTERVAL_MS 60000

static void flood_done(void *arg, int nsuccess, int err)
{
  struct wan *w = arg;
  if (err == CC_ECANCELED || w->stopping) return;
  w->flooding = false;
  if (nsuccess > 0) log_info("agent", "(WAN) flood-joined %d server(s) of %s", nsuccess, w->dc);
}

static bool member_is_our_server(const struct wan *w, const struct gossip_member *m)
{
  const char *role = gossip_member_tag(m, "role");
  const char *dc = gossip_member_tag(m, "dc");
  return role && strcmp(role, "consul") == 0 && dc && strcmp(dc, w->dc) == 0;
}

void wan_flood_notify(struct wan *w)
{
  if (!w || w->stopping || !w->lan || w->flooding) return;
  struct gossip_member *wm = NULL, *lm = NULL;
  size_t nw = 0, nl = 0;
  if (gossip_members(w->gossip, &wm, &nw) != 0) return;
  if (gossip_members(w->lan, &lm, &nl) != 0) {
    gossip_members_free(wm, nw);
    return;
  }
  char **addrs = xcalloc(nl + 1, sizeof *addrs);
  size_t n = 0;
  size_t dclen = strlen(w->dc);
  for (size_t i = 0; i < nl; i++) {
    const struct gossip_member *m = &lm[i];
    if (m->status != GOSSIP_STATUS_ALIVE || !member_is_our_server(w, m)) continue;
    const char *port = gossip_member_tag(m, "wan_join_port");
    if (!port || !*port) continue;
    /* WAN names are "<node>.<dc>": is this server in the WAN pool already? */
    bool known = false;
    size_t len = strlen(m->name);
    for (size_t j = 0; j < nw && !known; j++) {
      const char *name = wm[j].name;
      known = strlen(name) == len + 1 + dclen && strncmp(name, m->name, len) == 0 &&
              name[len] == '.' && strcmp(name + len + 1, w->dc) == 0;
    }
    if (known) continue;
    char buf[128];
    snprintf(buf, sizeof buf, strchr(m->addr, ':') ? "[%s]:%s" : "%s:%s", m->addr, port);
    addrs[n++] = xstrdup(buf);
  }
  gossip_members_free(wm, nw);
  gossip_members_free(lm, nl);
  if (n > 0) {
    w->flooding = true;
    if (gossip_join(w->gossip, (const char *const *)addrs, n, flood_done, w) != 0)
      w->flooding = false;
  }
  for (size_t i = 0; i < n; i++) free(addrs[i]);
  free(addrs);
}

static void flood_tick(uv_timer_t *t) { wan_flood_notify(t->data); }

void wan_flood_attach(struct wan *w, struct gossip *lan)
{
  if (!w || w->flood_timer) return;
  w->lan = lan;
  w->flood_timer = xmalloc(sizeof *w->flood_timer);
  uv_timer_init(w->loop, w->flood_timer);
  w->flood_timer->data = w;
  uv_timer_start(w->flood_timer, flood_tick, FLOOD_INTERVAL_MS, FLOOD_INTERVAL_MS);
  wan_flood_notify(w);
}

static void retry_tick(uv_timer_t *t);

static void retry_done(void *arg, int nsuccess, int err)
{
  struct wan *w = arg;
  if (w->stopping) return;
  if (nsuccess > 0) {
    log_info("agent", "(WAN) retry-join: joined %d server(s)", nsuccess);
    return;
  }
  log_warn("agent", "(WAN) retry-join: no server answered (%s), retrying in %llums",
           err ? cc_strerror(err) : "all failed", (unsigned long long)w->retry_interval_ms);
  uv_timer_start(w->retry_timer, retry_tick, w->retry_interval_ms, 0);
}

static void retry_tick(uv_timer_t *t)
{
  struct wan *w = t->data;
  if (w->stopping) return;
  if (gossip_join(w->gossip, (const char *const *)w->retry_join, w->nretry, retry_done, w) != 0)
    retry_done(w, 0, CC_EINVAL);
}

static void start_join_done(void *arg, int nsuccess, int err)
{
  struct wan *w = arg;
  if (w->stopping || err == CC_ECANCELED) return;
  if (nsuccess > 0) {
    log_info("agent", "(WAN) joined %d server(s)", nsuccess);
    return;
  }
  log_error("agent", "-join-wan failed (%s): shutting down",
            err ? cc_strerror(err) : "no server answered");
  if (w->on_fatal) w->on_fatal(w->arg);
}

int wan_start(uv_loop_t *loop, const struct wan_config *cfg, struct wan **out)
{
  struct wan *w = xcalloc(1, sizeof *w);
  w->loop = loop;
  w->dcs = wan_dcs_new(cfg->datacenter);
  w->dc = xstrdup(cfg->datacenter);
  w->on_fatal = cfg->on_fatal;
  w->arg = cfg->arg;
  w->retry_interval_ms = cfg->retry_interval_ms ? cfg->retry_interval_ms : 30000;
  w->retry_timer = xmalloc(sizeof *w->retry_timer);
  uv_timer_init(loop, w->retry_timer);
  w->retry_timer->data = w;

  size_t ntags = json_object_size(cfg->tags), i = 0;
  struct gossip_tag *tags = xcalloc(ntags + 1, sizeof *tags);
  const char *k;
  json_t *v;
  json_object_foreach(cfg->tags, k, v) {
    if (lan_only_tag(k) || !json_is_string(v)) continue;
    tags[i].key = (char *)k;
    tags[i].value = (char *)json_string_value(v);
    i++;
  }
  char name[512];
  snprintf(name, sizeof name, "%s.%s", cfg->node_name, cfg->datacenter);
  struct gossip_config gc;
  gossip_config_default(&gc);
  gossip_timing_wan(&gc.timing);
  gc.node_name = name;
  gc.bind_addr = cfg->bind_addr;
  gc.bind_port = cfg->port;
  gc.advertise_addr = cfg->advertise_addr;
  gc.tags = tags;
  gc.ntags = i;
  gc.on_member = wan_on_member;
  gc.cb_ctx = w;
  const char *key = cfg->encrypt_key;
  gc.encrypt_keys = key ? &key : NULL;
  gc.nencrypt_keys = key ? 1 : 0;
  gc.encrypt_verify_incoming = cfg->encrypt_verify_incoming;
  gc.encrypt_verify_outgoing = cfg->encrypt_verify_outgoing;
  gc.keyring_file = cfg->keyring_file;
  char err[256] = "";
  int rv = gossip_start(loop, &gc, &w->gossip, err, sizeof err);
  free(tags);
  if (rv != 0) {
    log_error("agent", "cannot start WAN gossip on %s:%u: %s", cfg->bind_addr, cfg->port, err);
    w->stopping = true;
    wan_stop(w, NULL, NULL);
    return -1;
  }
  log_info("agent", "serf WAN listening on %s:%u as %s", cfg->bind_addr, cfg->port, name);
  struct gossip_member self;
  if (gossip_local_member(w->gossip, &self) == 0) {
    wan_dcs_on_member(w->dcs, GOSSIP_EVENT_JOIN, &self);
    gossip_member_free(&self);
  }
  size_t n = 0;
  while (cfg->start_join && cfg->start_join[n]) n++;
  if (n > 0 && gossip_join(w->gossip, cfg->start_join, n, start_join_done, w) != 0) {
    log_error("agent", "-join-wan: bad address");
    wan_stop(w, NULL, NULL);
    return -1;
  }
  while (cfg->retry_join && cfg->retry_join[w->nretry]) w->nretry++;
  w->retry_join = xcalloc(w->nretry + 1, sizeof *w->retry_join);
  for (size_t j = 0; j < w->nretry; j++) w->retry_join[j] = xstrdup(cfg->retry_join[j]);
  if (w->nretry) uv_timer_start(w->retry_timer, retry_tick, 0, 0);
  *out = w;
  return 0;
}

static void left(void *arg, int err)
{
  struct wan *w = arg;
  if (err) log_warn("agent", "(WAN) graceful leave did not finish: %s", cc_strerror(err));
  void (*cb)(void *) = w->leave_cb;
  w->leave_cb = NULL;
  if (cb) cb(w->leave_arg);
}

void wan_leave(struct wan *w, void (*cb)(void *arg), void *arg)
{
  w->leave_cb = cb;
  w->leave_arg = arg;
  if (!w->gossip || gossip_leave(w->gossip, left, w) != 0) left(w, 0);
}

static void timer_closed(uv_handle_t *h) { free(h); }

void wan_stop(struct wan *w, void (*done)(void *arg), void *arg)
{
  w->stopping = true;
  w->leave_cb = NULL;
  uv_close((uv_handle_t *)w->retry_timer, timer_closed);
  if (w->flood_timer) uv_close((uv_handle_t *)w->flood_timer, timer_closed);
  /* gossip_stop runs pending join/leave callbacks (ECANCELED) inside: w must still exist */
  if (w->gossip) gossip_stop(w->gossip, done, arg);
  wan_dcs_free(w->dcs);
  for (size_t j = 0; j < w->nretry; j++) free(w->retry_join[j]);
  free(w->retry_join);
  free(w->dc);
  bool had_gossip = w->gossip != NULL;
  free(w);
  if (!had_gossip && done) done(arg);
}

struct gossip *wan_gossip(struct wan *w) { return w->gossip; }

struct wan_dcs *wan_datacenters(struct wan *w) { return w->dcs; }

json_t *wan_datacenters_json(void *arg)
{
  struct wan *w = arg;
  char **names;
  size_t n = wan_dcs_names(w->dcs, &names);
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(names[i]));
  wan_dcs_names_free(names, n);
  return a;
}
