/* state.c -- the agent's local services and checks (Consul's agent/local/state.go plus the
 * AddService/AddCheck/RemoveService/maintenance half of agent/agent.go).
 *
 * Records live in two maps by ID (IDs are case-sensitive on the agent, as in Consul). Every
 * record carries `in_sync` (the catalog has it as it is here) and `deleted` (removed here, not
 * yet removed from the catalog): removal only marks, and sync.c drops the record once the
 * catalog has let go of it, as Consul keeps a deleted entry "until it is actually removed".
 * A record's `gen` moves with every change, so a sync that completes after a newer change does
 * not mark the newer state as synced.
 *
 * Check status updates follow State.UpdateCheck: a status change syncs at once; a change of
 * output alone is kept here and synced after check_update_interval/2 plus a random part of it
 * (Consul's DeferCheck), because outputs of busy checks would otherwise fill the Raft log.
 *
 * One 1-second tick drives everything periodic: deferred outputs, reaping services whose check
 * has been critical longer than its DeregisterCriticalServiceAfter, the full sync, retries of
 * failed syncs, and noticing that this server became leader. A thousand checks cost a thousand
 * runner timers and nothing per tick but the scan of deferred outputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "consensus/consensus.h"
#include "lib/alloc.h"
#include "lib/duration.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/rand.h"
#include "local/internal.h"

#define TICK_MS 1000

void local_config_defaults(struct local_config *cfg)
{
  memset(cfg, 0, sizeof *cfg);
  cfg->check_update_interval_ms = 5 * 60 * 1000;
  cfg->sync_interval_ms = 60 * 1000;
  cfg->sync_retry_ms = 5 * 1000;
  cfg->check_reap_interval_ms = 30 * 1000;
  cfg->check_deregister_interval_min_ms = 60 * 1000;
  cfg->check_min_interval_ms = 1000;
  cfg->check_output_max_size = 4096;
}

/* ---- records ---- */

struct local_chk *local__chk(struct local_agent *la, const char *id)
{
  struct local_chk *c = map_get(&la->checks, id, strlen(id));
  return c && !c->deleted ? c : NULL;
}

struct local_svc *local__svc(struct local_agent *la, const char *id)
{
  struct local_svc *s = map_get(&la->services, id, strlen(id));
  return s && !s->deleted ? s : NULL;
}

void local__svc_free(struct local_svc *s)
{
  if (!s) return;
  local__service_def_free(s->def);
  free(s->id);
  free(s);
}

static void chk_fields_free(struct local_chk *c)
{
  char **strs[] = {&c->name, &c->status, &c->notes, &c->output, &c->service_id, &c->service_name,
                   &c->type, &c->interval, &c->timeout, &c->definition, &c->token};
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
    free(*strs[i]);
    *strs[i] = NULL;
  }
  for (size_t i = 0; i < c->n_service_tags; i++) free(c->service_tags[i]);
  free(c->service_tags);
  c->service_tags = NULL;
  c->n_service_tags = 0;
  local__check_def_free(c->def);
  c->def = NULL;
}

void local__chk_free(struct local_agent *la, struct local_chk *c)
{
  if (!c) return;
  local__runner_stop(la, c);
  if (c->defer_until) la->n_defer--;
  chk_fields_free(c);
  free(c->id);
  free(c);
}

static bool str_eq(const char *a, const char *b)
{
  return strcmp(a ? a : "", b ? b : "") == 0;
}

/* NodeService.IsSame over what a definition holds. */
static bool svc_def_same(const struct local_service_def *a, const struct local_service_def *b)
{
  if (!a || !b) return false;
  if (!str_eq(a->kind, b->kind) || !str_eq(a->id, b->id) || !str_eq(a->name, b->name) ||
      !str_eq(a->address, b->address) || !str_eq(a->socket_path, b->socket_path) ||
      a->port != b->port || a->enable_tag_override != b->enable_tag_override ||
      a->weight_passing != b->weight_passing || a->weight_warning != b->weight_warning ||
      !str_eq(a->proxy, b->proxy) || !str_eq(a->connect, b->connect) ||
      a->tags_null != b->tags_null || a->n_tags != b->n_tags || a->n_tagged != b->n_tagged ||
      a->n_meta != b->n_meta || a->meta_null != b->meta_null)
    return false;
  for (size_t i = 0; i < a->n_tags; i++)
    if (strcmp(a->tags[i], b->tags[i])) return false;
  for (size_t i = 0; i < a->n_tagged; i++)
    if (strcmp(a->tagged[i].key, b->tagged[i].key) ||
        strcmp(a->tagged[i].address, b->tagged[i].address) || a->tagged[i].port != b->tagged[i].port)
      return false;
  for (size_t i = 0; i < a->n_meta; i++)
    if (strcmp(a->meta[i].key, b->meta[i].key) || strcmp(a->meta[i].value, b->meta[i].value))
      return false;
  return true;
}

/* HealthCheck.IsSame (plus Type, Interval and Timeout, which we always send). */
static bool chk_same(const struct local_chk *a, const struct local_chk *b)
{
  if (!a->name || !b->name) return false;
  if (!str_eq(a->name, b->name) || !str_eq(a->status, b->status) || !str_eq(a->notes, b->notes) ||
      !str_eq(a->output, b->output) || !str_eq(a->service_id, b->service_id) ||
      !str_eq(a->service_name, b->service_name) || !str_eq(a->definition, b->definition) ||
      !str_eq(a->type, b->type) || !str_eq(a->interval, b->interval) ||
      !str_eq(a->timeout, b->timeout) || a->service_tags_null != b->service_tags_null ||
      a->n_service_tags != b->n_service_tags)
    return false;
  for (size_t i = 0; i < a->n_service_tags; i++)
    if (strcmp(a->service_tags[i], b->service_tags[i])) return false;
  return true;
}

/* ---- change notification ---- */

static void fire_watches(uv_timer_t *t)
{
  struct local_agent *la = t->data;
  struct local_watch *list = la->watches;
  la->watches = NULL;
  if (list) list->pprev = &list;
  while (list) {
    struct local_watch *w = list;
    list = w->next;
    if (list) list->pprev = &list;
    w->fn(w->arg);
    free(w);
  }
}

static void alias_soon_cb(uv_timer_t *t)
{
  local__runner_alias_all(t->data);
}

void local__changed(struct local_agent *la, bool statuses)
{
  (void)statuses;
  if (la->closing) return;
  local__sync_soon(la);
  if (la->watches && !uv_is_active((uv_handle_t *)&la->notify_soon))
    uv_timer_start(&la->notify_soon, fire_watches, 0, 0);
  if (la->n_alias && !uv_is_active((uv_handle_t *)&la->alias_soon))
    uv_timer_start(&la->alias_soon, alias_soon_cb, 0, 0);
}

struct local_watch *local_watch_add(struct local_agent *la, void (*fn)(void *arg), void *arg)
{
  struct local_watch *w = xcalloc(1, sizeof *w);
  w->fn = fn;
  w->arg = arg;
  w->next = la->watches;
  if (w->next) w->next->pprev = &w->next;
  w->pprev = &la->watches;
  la->watches = w;
  return w;
}

void local_watch_cancel(struct local_watch *w)
{
  if (!w) return;
  *w->pprev = w->next;
  if (w->next) w->next->pprev = w->pprev;
  free(w);
}

/* ---- check status (State.UpdateCheck) ---- */

void local__update_check(struct local_agent *la, struct local_chk *c, const char *status,
                         const char *output)
{
  if (!c || c->deleted || la->closing) return;
  if (la->cfg.discard_check_output) output = "";
  uint64_t now = uv_now(la->loop);
  /* Critical time is tracked locally and never synced. */
  if (strcmp(status, LOCAL_CRITICAL) == 0) {
    if (!c->critical_since) c->critical_since = now ? now : 1;
  } else {
    c->critical_since = 0;
  }
  if (str_eq(c->status, status) && str_eq(c->output, output)) return;
  if (la->cfg.check_update_interval_ms > 0 && str_eq(c->status, status)) {
    local__set(&c->output, output);
    if (!c->defer_until) {
      uint64_t d = la->cfg.check_update_interval_ms;
      c->defer_until = now + d / 2 + rand_below(d) + 1;
      la->n_defer++;
    }
    return;
  }
  local__set(&c->status, status);
  local__set(&c->output, output);
  c->in_sync = false;
  c->gen++;
  local__changed(la, true);
}

/* ---- adding checks ---- */

static char *dur_str(int64_t ns)
{
  char buf[32];
  return xstrdup(ns ? duration_format(ns, buf, sizeof buf) : "");
}

static int script_allowed(struct local_agent *la, const struct local_check_def *d,
                          enum local_source src, char *err, size_t errlen)
{
  if (!d || !local__check_def_is_script(d)) return 0;
  if (src == LOCAL_SRC_CONFIG && !la->cfg.enable_local_script_checks &&
      !la->cfg.enable_script_checks) {
    snprintf(err, errlen, "Scripts are disabled on this agent; to enable, configure "
                          "'enable_script_checks' or 'enable_local_script_checks' to true");
    return -1;
  }
  if (src == LOCAL_SRC_API && !la->cfg.enable_script_checks) {
    snprintf(err, errlen, "Scripts are disabled on this agent from remote calls; to enable, "
                          "configure 'enable_script_checks' to true");
    return -1;
  }
  return 0;
}

static void copy_service_fields(struct local_chk *c, const struct local_service_def *s)
{
  for (size_t i = 0; i < c->n_service_tags; i++) free(c->service_tags[i]);
  free(c->service_tags);
  c->service_tags = NULL;
  c->n_service_tags = 0;
  c->service_tags_null = true;
  local__set(&c->service_name, s ? s->name : "");
  if (!s || s->tags_null) return;
  c->service_tags_null = false;
  c->service_tags = xcalloc(s->n_tags + 1, sizeof *c->service_tags);
  for (size_t i = 0; i < s->n_tags; i++) c->service_tags[i] = xstrdup(s->tags[i]);
  c->n_service_tags = s->n_tags;
}

/* Installs check record c (a new one, not in the table), replacing any record with its ID:
 * in_sync carries over when nothing the catalog sees changed (setCheckStateLocked). Starts the
 * runner. Takes ownership of c. */
static int install_check(struct local_agent *la, struct local_chk *c, char *err, size_t errlen)
{
  struct local_chk *old = map_get(&la->checks, c->id, strlen(c->id));
  if (old) {
    c->in_sync = old->in_sync && chk_same(old, c);
    c->gen = old->gen + 1;
    map_del(&la->checks, old->id, strlen(old->id));
    local__chk_free(la, old);
  }
  map_put(&la->checks, c->id, strlen(c->id), c);
  if (c->def && local__runner_start(la, c, err, errlen) != 0) {
    map_del(&la->checks, c->id, strlen(c->id));
    local__chk_free(la, c);
    return -1;
  }
  return 0;
}

/* A check record from a definition: Agent.addServiceInternal (svc set: the check belongs to
 * the service being registered) or CheckDefinition.HealthCheck (svc NULL). index/count number
 * a service's checks for their default IDs. Takes ownership of d. */
static struct local_chk *chk_from_def(struct local_agent *la, struct local_check_def *d,
                                      const struct local_service_def *svc, size_t index,
                                      size_t count)
{
  struct local_chk *c = xcalloc(1, sizeof *c);
  char buf[LOCAL_MAX_ID * 2 + 64];
  if (svc) {
    if (*d->id) snprintf(buf, sizeof buf, "%s", d->id);
    else if (count > 1) snprintf(buf, sizeof buf, "service:%s:%zu", svc->id, index + 1);
    else snprintf(buf, sizeof buf, "service:%s", svc->id);
    c->id = xstrdup(buf);
    if (*d->name) c->name = xstrdup(d->name);
    else {
      snprintf(buf, sizeof buf, "Service '%s' check", svc->name);
      c->name = xstrdup(buf);
    }
    c->service_id = xstrdup(svc->id);
    c->interval = dur_str(d->interval);
    c->timeout = dur_str(d->timeout);
  } else {
    c->id = xstrdup(*d->id ? d->id : d->name);
    c->name = xstrdup(d->name);
    c->service_id = xstrdup(d->service_id);
    /* CheckDefinition.HealthCheck prints zero durations too ("0s"). */
    char tmp[32];
    c->interval = xstrdup(duration_format(d->interval, tmp, sizeof tmp));
    c->timeout = xstrdup(duration_format(d->timeout, tmp, sizeof tmp));
  }
  c->status = xstrdup(*d->status ? d->status : LOCAL_CRITICAL);
  c->notes = xstrdup(d->notes);
  c->output = xstrdup("");
  c->type = xstrdup(local__check_def_type(d));
  c->definition = local__definition_text(d);
  c->token = xstrdup(d->token);
  c->service_tags_null = true;
  /* FailuresBeforeWarning defaults to FailuresBeforeCritical (Agent.addCheck). */
  if (d->failures_before_warning == 0) d->failures_before_warning = d->failures_before_critical;
  if (d->dcsa > 0) {
    uint64_t ms = (uint64_t)(d->dcsa / 1000000);
    if (ms < la->cfg.check_deregister_interval_min_ms) {
      log_warn("agent", "check \"%s\" has deregister interval below minimum of %llums", c->id,
               (unsigned long long)la->cfg.check_deregister_interval_min_ms);
      ms = la->cfg.check_deregister_interval_min_ms;
    }
    c->reap_after_ms = ms;
  }
  c->def = d;
  return c;
}

static void chk_restore_status(struct local_agent *la, struct local_chk *c, const char *status,
                               const char *output)
{
  local__set(&c->status, status);
  local__set(&c->output, output);
  if (strcmp(status, LOCAL_CRITICAL) == 0) c->critical_since = uv_now(la->loop) ? uv_now(la->loop) : 1;
}

/* TTL checks come back in the state they were last set to, if it has not expired
 * (Agent.loadCheckState). */
static void chk_load_ttl_state(struct local_agent *la, struct local_chk *c)
{
  if (!c->def || c->def->ttl <= 0) return;
  char *status = NULL, *output = NULL;
  if (local__load_check_state(la, c->id, &status, &output) == 0 && status) {
    local__set(&c->status, status);
    local__set(&c->output, output);
  }
  free(status);
  free(output);
}

/* Agent.addCheckLocked: a node or service check from a CheckDefinition (API or config). d is
 * taken. Returns 0, or an HTTP status with Consul's message. */
static int add_check_def(struct local_agent *la, struct local_check_def *d, enum local_source src,
                         bool persist, char *err, size_t errlen)
{
  struct local_svc *svc = NULL;
  if (*d->service_id) {
    svc = local__svc(la, d->service_id);
    if (!svc) {
      snprintf(err, errlen, "ServiceID \"%s\" does not exist", d->service_id);
      local__check_def_free(d);
      return 404;
    }
  }
  if (local__check_def_validate(d, err, errlen) != 0) {
    char why[512];
    snprintf(why, sizeof why, "Check is not valid: %s", err);
    snprintf(err, errlen, "%s", why);
    local__check_def_free(d);
    return 500;
  }
  if (script_allowed(la, d, src, err, errlen) != 0) {
    local__check_def_free(d);
    return 500;
  }
  struct local_chk *c = chk_from_def(la, d, NULL, 0, 1);
  c->source = src;
  copy_service_fields(c, svc ? svc->def : NULL);
  /* Re-registering keeps the current status and output (the deferred UpdateCheck of
   * Agent.addCheckLocked), so a check does not flap on a repeated registration. */
  struct local_chk *existing = local__chk(la, c->id);
  if (existing) chk_restore_status(la, c, existing->status, existing->output);
  else chk_load_ttl_state(la, c);
  if (strcmp(c->status, LOCAL_CRITICAL) == 0 && !c->critical_since)
    c->critical_since = uv_now(la->loop) ? uv_now(la->loop) : 1;
  char *id = xstrdup(c->id);
  if (install_check(la, c, err, errlen) != 0) {
    free(id);
    return 500;
  }
  c = local__chk(la, id);
  free(id);
  if (persist && src == LOCAL_SRC_API && local__persist_check(la, c->def, c, src, err, errlen) != 0)
    return 500;
  local__changed(la, true);
  return 0;
}

/* Marks a check deleted (State.RemoveCheck): the runner stops now, the record goes once the
 * catalog has dropped it. */
static void remove_check(struct local_agent *la, struct local_chk *c, bool purge)
{
  local__runner_stop(la, c);
  if (c->defer_until) {
    c->defer_until = 0;
    la->n_defer--;
  }
  /* in_sync is left as it was: a record deleted and added back unchanged (a reload) needs
   * no write; `deleted` alone makes the sync deregister it. */
  c->deleted = true;
  c->gen++;
  if (purge) local__purge_check(la, c->id);
  local__changed(la, true);
}

/* ---- adding services ---- */

/* A literal IPv4 or IPv6 address (Go's net.ParseIP). */
static int ip_kind(const char *s)
{
  struct sockaddr_in6 a6;
  struct sockaddr_in a4;
  if (uv_ip4_addr(s, 0, &a4) == 0 && strchr(s, '.')) return 4;
  if (uv_ip6_addr(s, 0, &a6) == 0 && strchr(s, ':')) return 6;
  return 0;
}

static void add_tagged(struct local_service_def *s, const char *key)
{
  for (size_t i = 0; i < s->n_tagged; i++)
    if (strcmp(s->tagged[i].key, key) == 0) return;
  s->tagged = xrealloc(s->tagged, (s->n_tagged + 1) * sizeof *s->tagged);
  s->tagged[s->n_tagged++] = (struct state_svc_addr){xstrdup(key), xstrdup(s->address), s->port};
  for (size_t a = 1; a < s->n_tagged; a++) /* keep them sorted, as Go prints maps */
    for (size_t b = a; b > 0 && strcmp(s->tagged[b - 1].key, s->tagged[b].key) > 0; b--) {
      struct state_svc_addr t = s->tagged[b];
      s->tagged[b] = s->tagged[b - 1];
      s->tagged[b - 1] = t;
    }
}

/* Agent.validateService plus the defaults addServiceInternal fills in. */
static int validate_service(struct local_agent *la, struct local_service_def *s,
                            enum local_source src, char *err, size_t errlen)
{
  if (!*s->name) {
    snprintf(err, errlen, "Service name missing");
    return -1;
  }
  if (!*s->id) local__set(&s->id, s->name);
  char why[512];
  for (size_t i = 0; i < s->n_checks; i++) {
    if (local__check_def_validate(s->checks[i], why, sizeof why) != 0) {
      snprintf(err, errlen, "Check is not valid: %s", why);
      return -1;
    }
  }
  if (!s->has_weights) {
    s->has_weights = true;
    s->weight_passing = s->weight_warning = 1;
  }
  for (size_t i = 0; i < s->n_tagged; i++) {
    const char *k = s->tagged[i].key;
    int kind = ip_kind(s->tagged[i].address);
    if ((strcmp(k, "lan_ipv4") == 0 || strcmp(k, "wan_ipv4") == 0) && kind != 4) {
      snprintf(err, errlen, "Service tagged address \"%s\" must be a valid ipv4 address", k);
      return -1;
    }
    if ((strcmp(k, "lan_ipv6") == 0 || strcmp(k, "wan_ipv6") == 0) && kind != 6) {
      snprintf(err, errlen, "Service tagged address \"%s\" must be a valid ipv6 address", k);
      return -1;
    }
  }
  for (size_t i = 0; i < s->n_checks; i++)
    if (script_allowed(la, s->checks[i], src, err, errlen) != 0) return -1;
  /* Default tagged addresses from a literal service address (addServiceInternal). */
  int kind = ip_kind(s->address);
  if (kind == 4) {
    add_tagged(s, "lan_ipv4");
    add_tagged(s, "wan_ipv4");
  } else if (kind == 6) {
    add_tagged(s, "lan_ipv6");
    add_tagged(s, "wan_ipv6");
  }
  return 0;
}

/* Agent.addServiceInternal: installs service d (taken) and its checks. Returns 0, or an HTTP
 * status (500: Consul answers a failed AddService with its error) and the message. */
static int add_service_def(struct local_agent *la, struct local_service_def *d,
                           enum local_source src, bool persist, bool replace_checks,
                           const char *token, char *err, size_t errlen)
{
  if (validate_service(la, d, src, err, errlen) != 0) {
    local__service_def_free(d);
    return 500;
  }
  if (token && *token && !*d->token) local__set(&d->token, token);
  /* The service's checks, built before anything changes. */
  size_t n = d->n_checks;
  struct local_chk **chks = xcalloc(n + 1, sizeof *chks);
  for (size_t i = 0; i < n; i++) {
    struct local_check_def *cd = d->checks[i];
    d->checks[i] = NULL;
    chks[i] = chk_from_def(la, cd, d, i, n);
    chks[i]->source = src;
    local__set(&chks[i]->token, d->token);
    copy_service_fields(chks[i], d);
    struct local_chk *prev = local__chk(la, chks[i]->id);
    if (prev) chk_restore_status(la, chks[i], prev->status, prev->output);
    else chk_load_ttl_state(la, chks[i]);
    if (strcmp(chks[i]->status, LOCAL_CRITICAL) == 0 && !chks[i]->critical_since)
      chks[i]->critical_since = uv_now(la->loop) ? uv_now(la->loop) : 1;
  }
  d->n_checks = 0;
  char **ids = xcalloc(n + 1, sizeof *ids);
  for (size_t i = 0; i < n; i++) ids[i] = xstrdup(chks[i]->id);
  /* The service itself (setServiceStateLocked). */
  struct local_svc *s = xcalloc(1, sizeof *s);
  s->id = xstrdup(d->id);
  s->def = d;
  s->source = src;
  struct local_svc *old = map_get(&la->services, s->id, strlen(s->id));
  if (old) {
    s->in_sync = old->in_sync && svc_def_same(old->def, d);
    s->gen = old->gen + 1;
    map_del(&la->services, old->id, strlen(old->id));
    local__svc_free(old);
  }
  map_put(&la->services, s->id, strlen(s->id), s);
  int rv = 0;
  for (size_t i = 0; i < n; i++) {
    struct local_chk *c = chks[i];
    chks[i] = NULL;
    if (rv == 0) {
      char *id = xstrdup(c->id);
      if (install_check(la, c, err, errlen) != 0) rv = 500;
      else if (persist && src == LOCAL_SRC_API &&
               local__persist_check(la, local__chk(la, id)->def, local__chk(la, id), src, err,
                                    errlen) != 0)
        rv = 500;
      free(id);
    } else {
      local__chk_free(la, c);
    }
  }
  free(chks);
  if (rv == 0 && persist && src == LOCAL_SRC_API &&
      local__persist_service(la, d, src, err, errlen) != 0)
    rv = 500;
  if (rv == 0 && replace_checks) {
    /* Checks of this service the new registration does not name go
     * (?replace-existing-checks). */
    size_t cap = map_count(&la->checks), k = 0;
    struct local_chk **drop = xcalloc(cap + 1, sizeof *drop);
    for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
      struct local_chk *c = it.entry->value;
      if (c->deleted || strcmp(c->service_id, s->id) != 0) continue;
      bool keep = false;
      for (size_t i = 0; i < n && !keep; i++) keep = strcmp(ids[i], c->id) == 0;
      if (!keep) drop[k++] = c;
    }
    for (size_t i = 0; i < k; i++) remove_check(la, drop[i], persist);
    free(drop);
  }
  for (size_t i = 0; i < n; i++) free(ids[i]);
  free(ids);
  local__changed(la, true);
  return rv;
}

static void remove_service(struct local_agent *la, struct local_svc *s, bool purge)
{
  /* Its checks go with it (RemoveServiceWithChecks). */
  size_t cap = map_count(&la->checks), k = 0;
  struct local_chk **drop = xcalloc(cap + 1, sizeof *drop);
  for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
    struct local_chk *c = it.entry->value;
    if (!c->deleted && c->service_id && strcmp(c->service_id, s->id) == 0) drop[k++] = c;
  }
  for (size_t i = 0; i < k; i++) remove_check(la, drop[i], purge);
  free(drop);
  s->deleted = true;
  s->gen++;
  if (purge) local__purge_service(la, s->id);
  local__changed(la, true);
}

/* ---- maintenance (Agent.EnableServiceMaintenance / EnableNodeMaintenance) ---- */

static void add_maint_check(struct local_agent *la, const char *id, const char *name,
                            const char *reason, const struct local_svc *svc)
{
  struct local_chk *c = xcalloc(1, sizeof *c);
  c->id = xstrdup(id);
  c->name = xstrdup(name);
  c->status = xstrdup(LOCAL_CRITICAL);
  c->notes = xstrdup(reason);
  c->output = xstrdup("");
  c->service_id = xstrdup(svc ? svc->id : "");
  c->type = xstrdup(LOCAL_MAINT);
  c->interval = xstrdup("");
  c->timeout = xstrdup("");
  c->token = xstrdup("");
  c->source = LOCAL_SRC_CONFIG; /* ConfigSourceLocal, as Consul registers it */
  c->critical_since = uv_now(la->loop) ? uv_now(la->loop) : 1;
  copy_service_fields(c, svc ? svc->def : NULL);
  /* The maintenance check carries the service's name but not its tags (Consul sets
   * ServiceName only). */
  for (size_t i = 0; i < c->n_service_tags; i++) free(c->service_tags[i]);
  free(c->service_tags);
  c->service_tags = NULL;
  c->n_service_tags = 0;
  c->service_tags_null = true;
  char err[256];
  install_check(la, c, err, sizeof err);
  c = local__chk(la, id);
  if (c) local__persist_check(la, NULL, c, LOCAL_SRC_CONFIG, err, sizeof err);
  local__changed(la, true);
}

int local_service_maintenance(struct local_agent *la, const char *id, bool enable,
                              const char *reason, char *err, size_t errlen)
{
  struct local_svc *s = local__svc(la, id);
  if (!s) {
    snprintf(err, errlen,
             "Unknown service ID \"%s\". Ensure that the service ID is passed, not the service name.",
             id);
    return 404;
  }
  char cid[LOCAL_MAX_ID + 64];
  snprintf(cid, sizeof cid, "%s%s", LOCAL_SERVICE_MAINT_PREFIX, id);
  struct local_chk *c = local__chk(la, cid);
  if (enable) {
    if (c) return 0;
    add_maint_check(la, cid, "Service Maintenance Mode",
                    reason && *reason ? reason : LOCAL_SERVICE_MAINT_REASON, s);
    log_info("agent", "Service entered maintenance mode: service=%s", id);
  } else {
    if (!c) return 0;
    remove_check(la, c, true);
    log_info("agent", "Service left maintenance mode: service=%s", id);
  }
  return 0;
}

int local_node_maintenance(struct local_agent *la, bool enable, const char *reason, char *err,
                           size_t errlen)
{
  (void)err;
  (void)errlen;
  struct local_chk *c = local__chk(la, LOCAL_NODE_MAINT);
  if (enable) {
    if (c) return 0;
    add_maint_check(la, LOCAL_NODE_MAINT, "Node Maintenance Mode",
                    reason && *reason ? reason : LOCAL_NODE_MAINT_REASON, NULL);
    log_info("agent", "Node entered maintenance mode");
  } else if (c) {
    remove_check(la, c, true);
    log_info("agent", "Node left maintenance mode");
  }
  return 0;
}

/* ---- the HTTP API ---- */

/* ipaddr.IsAny: 0.0.0.0, :: and [::]. */
static bool addr_is_any(const char *a)
{
  return strcmp(a, "0.0.0.0") == 0 || strcmp(a, "::") == 0 || strcmp(a, "[::]") == 0;
}

static json_t *parse_body(const void *body, size_t len, char *err, size_t errlen)
{
  if (len == 0) {
    snprintf(err, errlen, "Request decode failed: EOF");
    return NULL;
  }
  if (len > LOCAL_MAX_BODY) {
    snprintf(err, errlen, "Request decode failed: body larger than %u bytes", LOCAL_MAX_BODY);
    return NULL;
  }
  json_error_t jerr;
  json_t *j = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
  if (!j) snprintf(err, errlen, "Request decode failed: %s", jerr.text);
  return j;
}

int local_service_register(struct local_agent *la, const void *body, size_t len,
                           bool replace_existing_checks, const char *token, char *err,
                           size_t errlen)
{
  json_t *j = parse_body(body, len, err, errlen);
  if (!j) return 400;
  char why[512];
  bool was_null = json_is_null(j);
  struct local_service_def *d = was_null ? NULL : local__service_def_decode(j, why, sizeof why);
  json_decref(j);
  if (!d && !was_null) {
    snprintf(err, errlen, "Request decode failed: %s", why);
    return 400;
  }
  if (!d || !*d->name) {
    local__service_def_free(d);
    snprintf(err, errlen, "Missing service name");
    return 400;
  }
  int st = 400;
  if (addr_is_any(d->address)) {
    snprintf(err, errlen, "Invalid service address");
    goto bad;
  }
  if (d->has_weights) {
    const char *w = NULL;
    if (d->weight_passing < 1) w = "Passing must be greater than 0";
    else if (d->weight_warning < 0) w = "Warning must be greater or equal than 0";
    else if (d->weight_passing > 65535 || d->weight_warning > 65535)
      w = "Passing and Warning must be lower than 65536";
    if (w) {
      snprintf(err, errlen, "Invalid Weights: %s", w);
      goto bad;
    }
  }
  if (local__meta_validate(d->meta, d->n_meta, why, sizeof why) != 0) {
    snprintf(err, errlen, "Invalid Service Meta: %s", why);
    goto bad;
  }
  if (*d->kind && strcmp(d->kind, "connect-proxy") && strcmp(d->kind, "mesh-gateway") &&
      strcmp(d->kind, "terminating-gateway") && strcmp(d->kind, "ingress-gateway") &&
      strcmp(d->kind, "api-gateway")) {
    snprintf(err, errlen, "Validation failed: Invalid service kind: \"%s\"", d->kind);
    goto bad;
  }
  for (size_t i = 0; i < d->n_checks; i++) {
    if (local__check_def_validate(d->checks[i], why, sizeof why) != 0) {
      snprintf(err, errlen, "Invalid check: %s", why);
      goto bad;
    }
  }
  for (size_t i = 0; i < d->n_checks; i++) {
    if (*d->checks[i]->status && !local__status_valid(d->checks[i]->status)) {
      snprintf(err, errlen, "Status for checks must 'passing', 'warning', 'critical'");
      goto bad;
    }
  }
  return add_service_def(la, d, LOCAL_SRC_API, true, replace_existing_checks, token, err, errlen);
bad:
  local__service_def_free(d);
  return st;
}

int local_service_deregister(struct local_agent *la, const char *id, char *err, size_t errlen)
{
  struct local_svc *s = local__svc(la, id);
  if (!s) {
    snprintf(err, errlen,
             "Unknown service ID \"%s\". Ensure that the service ID is passed, not the service name.",
             id);
    return 404;
  }
  remove_service(la, s, true);
  log_debug("agent", "removed service %s", id);
  return 0;
}

int local_check_register(struct local_agent *la, const void *body, size_t len,
                         const char *token, char *err, size_t errlen)
{
  json_t *j = parse_body(body, len, err, errlen);
  if (!j) return 400;
  char why[512];
  struct local_check_def *d =
      json_is_null(j) ? NULL : local__check_def_decode(j, "CheckDefinition", why, sizeof why);
  bool was_null = json_is_null(j);
  json_decref(j);
  if (!d && !was_null) {
    snprintf(err, errlen, "Request decode failed: %s", why);
    return 400;
  }
  if (!d || !*d->name) {
    local__check_def_free(d);
    snprintf(err, errlen, "Missing check name");
    return 400;
  }
  if (*d->status && !local__status_valid(d->status)) {
    local__check_def_free(d);
    snprintf(err, errlen, "Bad check status");
    return 400;
  }
  if (local__check_def_validate(d, why, sizeof why) != 0) {
    local__check_def_free(d);
    snprintf(err, errlen, "Invalid check: %s", why);
    return 400;
  }
  if (token && *token && !*d->token) local__set(&d->token, token);
  return add_check_def(la, d, LOCAL_SRC_API, true, err, errlen);
}

static int unknown_check(const char *id, char *err, size_t errlen)
{
  snprintf(err, errlen,
           "Unknown check ID \"%s\". Ensure that the check ID is passed, not the check name.", id);
  return 404;
}

int local_check_deregister(struct local_agent *la, const char *id, char *err, size_t errlen)
{
  struct local_chk *c = local__chk(la, id);
  if (!c) return unknown_check(id, err, errlen);
  remove_check(la, c, true);
  log_debug("agent", "removed check %s", id);
  return 0;
}

int local_check_update(struct local_agent *la, const char *id, const char *status,
                       const char *output, char *err, size_t errlen)
{
  struct local_chk *c = local__chk(la, id);
  if (!c) return unknown_check(id, err, errlen);
  if (!local__runner_is_ttl(c)) {
    snprintf(err, errlen, "CheckID \"%s\" does not have associated TTL", id);
    return 500;
  }
  char *out = local__runner_ttl_set(la, c, status, output ? output : "");
  /* Persisted so a long TTL comes back in a good state after a restart. */
  c = local__chk(la, id);
  if (c) local__persist_check_state(la, c, c->def ? c->def->ttl : 0);
  free(out);
  return 0;
}

/* ---- JSON (agent_endpoint.go buildAgentService; structs.HealthCheck) ---- */

static json_t *agent_service_json(struct local_agent *la, const struct local_service_def *d)
{
  json_t *o = json_object();
  if (*d->kind) json_object_set_new(o, "Kind", json_string(d->kind));
  json_object_set_new(o, "ID", json_string(d->id));
  json_object_set_new(o, "Service", json_string(d->name));
  json_t *tags = json_array();
  for (size_t i = 0; i < d->n_tags; i++) json_array_append_new(tags, json_string(d->tags[i]));
  json_object_set_new(o, "Tags", tags);
  json_t *meta = json_object();
  for (size_t i = 0; i < d->n_meta; i++)
    json_object_set_new(meta, d->meta[i].key, json_string(d->meta[i].value));
  json_object_set_new(o, "Meta", meta);
  json_object_set_new(o, "Port", json_integer(d->port));
  json_object_set_new(o, "Address", json_string(d->address));
  if (*d->socket_path) json_object_set_new(o, "SocketPath", json_string(d->socket_path));
  if (d->n_tagged) {
    json_t *ta = json_object();
    for (size_t i = 0; i < d->n_tagged; i++) {
      json_t *a = json_object();
      json_object_set_new(a, "Address", json_string(d->tagged[i].address));
      json_object_set_new(a, "Port", json_integer(d->tagged[i].port));
      json_object_set_new(ta, d->tagged[i].key, a);
    }
    json_object_set_new(o, "TaggedAddresses", ta);
  }
  json_t *w = json_object();
  json_object_set_new(w, "Passing", json_integer(d->weight_passing > 0 ? d->weight_passing : 1));
  json_object_set_new(w, "Warning", json_integer(d->weight_warning));
  json_object_set_new(o, "Weights", w);
  json_object_set_new(o, "EnableTagOverride", json_boolean(d->enable_tag_override));
  bool proxy_kind = *d->kind != '\0';
  if (proxy_kind && d->proxy) json_object_set_new(o, "Proxy", json_loads(d->proxy, 0, NULL));
  if (d->connect) {
    json_t *cn = json_loads(d->connect, 0, NULL);
    json_t *native = json_object_get(cn, "Native");
    if (json_is_true(native)) {
      json_t *c = json_object();
      json_object_set_new(c, "Native", json_true());
      json_object_set_new(o, "Connect", c);
    }
    json_decref(cn);
  }
  json_object_set_new(o, "Datacenter", json_string(la->datacenter));
  return o;
}

static int cmp_strp(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The live IDs of a map, sorted. Caller frees the array (not the strings). */
static const char **live_ids(struct map *m, bool services, size_t *n)
{
  const char **ids = xcalloc(map_count(m) + 1, sizeof *ids);
  *n = 0;
  for (struct map_iter it = map_iter_start(m); map_iter_next(&it);) {
    bool deleted = services ? ((struct local_svc *)it.entry->value)->deleted
                            : ((struct local_chk *)it.entry->value)->deleted;
    if (!deleted) ids[(*n)++] = it.entry->key;
  }
  qsort(ids, *n, sizeof *ids, cmp_strp);
  return ids;
}

json_t *local_services_json(struct local_agent *la)
{
  size_t n;
  const char **ids = live_ids(&la->services, true, &n);
  json_t *o = json_object();
  for (size_t i = 0; i < n; i++)
    json_object_set_new(o, ids[i], agent_service_json(la, local__svc(la, ids[i])->def));
  free(ids);
  return o;
}

json_t *local_service_json(struct local_agent *la, const char *id)
{
  struct local_svc *s = local__svc(la, id);
  if (!s) return NULL;
  json_t *o = agent_service_json(la, s->def);
  /* ContentHash: any stable hash of the answer works for hash-based blocking. */
  char *text = json_dumps(o, JSON_COMPACT);
  uint64_t h = 14695981039346656037ULL;
  for (const char *p = text; p && *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  free(text);
  char hex[24];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  /* Go prints struct fields in order: ContentHash comes after EnableTagOverride. */
  json_t *out = json_object();
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    json_object_set(out, k, v);
    if (strcmp(k, "EnableTagOverride") == 0) json_object_set_new(out, "ContentHash", json_string(hex));
  }
  json_decref(o);
  return out;
}

static json_t *check_json(struct local_agent *la, const struct local_chk *c)
{
  struct state_check sc = {
      .node = la->node_name,
      .check_id = c->id,
      .name = c->name,
      .status = c->status,
      .notes = c->notes,
      .output = c->output,
      .service_id = c->service_id,
      .service_name = c->service_name,
      .service_tags = (const char *const *)c->service_tags,
      .n_service_tags = c->n_service_tags,
      .service_tags_null = c->service_tags_null,
      .type = c->type,
      .interval = c->interval,
      .timeout = c->timeout,
      .definition = c->definition,
  };
  return state_check_json(&sc);
}

/* agentHealthService: the service's checks and the node's, with their aggregated status. */
static json_t *service_health(struct local_agent *la, const struct local_svc *s)
{
  size_t n;
  const char **ids = live_ids(&la->checks, false, &n);
  json_t *checks = json_array();
  bool passing = false, warning = false, critical = false, maint = false, odd = false;
  for (size_t i = 0; i < n; i++) {
    struct local_chk *c = local__chk(la, ids[i]);
    if (*c->service_id && strcmp(c->service_id, s->id) != 0) continue;
    json_array_append_new(checks, check_json(la, c));
    if (strcmp(c->id, LOCAL_NODE_MAINT) == 0 ||
        strncmp(c->id, LOCAL_SERVICE_MAINT_PREFIX, strlen(LOCAL_SERVICE_MAINT_PREFIX)) == 0)
      maint = true;
    else if (strcmp(c->status, LOCAL_PASSING) == 0) passing = true;
    else if (strcmp(c->status, LOCAL_WARNING) == 0) warning = true;
    else if (strcmp(c->status, LOCAL_CRITICAL) == 0) critical = true;
    else odd = true;
  }
  free(ids);
  (void)passing;
  const char *agg = odd ? "" : maint ? LOCAL_MAINT : critical ? LOCAL_CRITICAL
                    : warning ? LOCAL_WARNING : LOCAL_PASSING;
  json_t *o = json_object();
  json_object_set_new(o, "AggregatedStatus", json_string(agg));
  json_object_set_new(o, "Service", agent_service_json(la, s->def));
  json_object_set_new(o, "Checks", checks);
  return o;
}

json_t *local_service_health_json(struct local_agent *la, const char *id)
{
  struct local_svc *s = local__svc(la, id);
  return s ? service_health(la, s) : NULL;
}

json_t *local_service_health_by_name_json(struct local_agent *la, const char *name)
{
  size_t n;
  const char **ids = live_ids(&la->services, true, &n);
  json_t *out = json_array();
  for (size_t i = 0; i < n; i++) {
    struct local_svc *s = local__svc(la, ids[i]);
    if (strcmp(s->def->name, name) == 0) json_array_append_new(out, service_health(la, s));
  }
  free(ids);
  return out;
}

json_t *local_checks_json(struct local_agent *la)
{
  size_t n;
  const char **ids = live_ids(&la->checks, false, &n);
  json_t *o = json_object();
  for (size_t i = 0; i < n; i++) json_object_set_new(o, ids[i], check_json(la, local__chk(la, ids[i])));
  free(ids);
  return o;
}

void local_agent_stats(const struct local_agent *la, struct local_stats *out)
{
  memset(out, 0, sizeof *out);
  struct map *sm = (struct map *)&la->services, *cm = (struct map *)&la->checks;
  for (struct map_iter it = map_iter_start(sm); map_iter_next(&it);)
    out->services += !((struct local_svc *)it.entry->value)->deleted;
  for (struct map_iter it = map_iter_start(cm); map_iter_next(&it);) {
    struct local_chk *c = it.entry->value;
    if (c->deleted) continue;
    out->checks++;
    out->check_ttls += local__runner_is_ttl(c);
    out->check_monitors += local__runner_is_script(c);
  }
}

/* ---- loading (config files, the data dir) ---- */

static void restore_service(struct local_agent *la, struct local_service_def *d,
                            enum local_source src, const char *file)
{
  char err[512];
  if (local__svc(la, d->id)) {
    /* A config file defines it now: config wins, the persisted copy goes (loadServices). */
    log_debug("agent", "service %s exists, not restoring from %s", d->id, file);
    local__purge_service(la, d->id);
    local__service_def_free(d);
    return;
  }
  char *id = xstrdup(d->id);
  if (add_service_def(la, d, src, false, false, NULL, err, sizeof err) != 0)
    log_warn("agent", "failed restoring service %s from %s: %s", id, file, err);
  else
    log_debug("agent", "restored service definition %s from %s", id, file);
  free(id);
}

static void restore_check(struct local_agent *la, struct local_check_def *d,
                          enum local_source src, const char *file, const char *interval,
                          const char *timeout)
{
  char err[512];
  const char *cid = *d->id ? d->id : d->name;
  if (local__chk(la, cid)) {
    log_debug("agent", "check %s exists, not restoring from %s", cid, file);
    local__purge_check(la, cid);
    local__check_def_free(d);
    return;
  }
  char *id = xstrdup(cid);
  /* Persisted checks come back critical until they run (loadChecks), TTL state aside. */
  local__set(&d->status, LOCAL_CRITICAL);
  if (add_check_def(la, d, src, false, err, sizeof err) != 0) {
    log_warn("agent", "Failed to restore check %s: %s", id, err);
    local__purge_check(la, id);
  } else {
    /* A service's check shows "" for a zero duration, a check registered on its own "0s":
     * keep what it showed before the restart. */
    struct local_chk *c = local__chk(la, id);
    if (c) {
      local__set(&c->interval, interval);
      local__set(&c->timeout, timeout);
    }
    log_debug("agent", "restored health check %s from %s", id, file);
  }
  free(id);
}

/* Restores a persisted maintenance check (a check file without a definition). */
void local__restore_maint(struct local_agent *la, const char *id, const char *name,
                          const char *notes, const char *service_id);
void local__restore_maint(struct local_agent *la, const char *id, const char *name,
                          const char *notes, const char *service_id)
{
  if (local__chk(la, id)) return;
  struct local_svc *s = NULL;
  if (service_id && *service_id && !(s = local__svc(la, service_id))) {
    local__purge_check(la, id);
    return;
  }
  add_maint_check(la, id, name, notes, s);
}

/* What a reload snapshots: check statuses by ID. */
struct snap {
  char **ids, **status, **output;
  size_t n;
};

int local_agent_load(struct local_agent *la, const struct local_defs *defs, char *err,
                     size_t errlen)
{
  /* Reload: the config-file services and checks go, their statuses are remembered and the
   * new definitions start from them (Agent.reloadConfigInternal's snapshot). */
  struct snap sn = {0};
  size_t cap = map_count(&la->checks) + 1;
  sn.ids = xcalloc(cap, sizeof *sn.ids);
  sn.status = xcalloc(cap, sizeof *sn.status);
  sn.output = xcalloc(cap, sizeof *sn.output);
  for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
    struct local_chk *c = it.entry->value;
    if (c->deleted || c->source != LOCAL_SRC_CONFIG || !c->def) continue;
    sn.ids[sn.n] = xstrdup(c->id);
    sn.status[sn.n] = xstrdup(c->status);
    sn.output[sn.n++] = xstrdup(c->output);
  }
  {
    size_t n = map_count(&la->services), k = 0;
    struct local_svc **drop = xcalloc(n + 1, sizeof *drop);
    for (struct map_iter it = map_iter_start(&la->services); map_iter_next(&it);) {
      struct local_svc *s = it.entry->value;
      if (!s->deleted && s->source == LOCAL_SRC_CONFIG) drop[k++] = s;
    }
    for (size_t i = 0; i < k; i++) remove_service(la, drop[i], false);
    free(drop);
    n = map_count(&la->checks);
    k = 0;
    struct local_chk **cdrop = xcalloc(n + 1, sizeof *cdrop);
    for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
      struct local_chk *c = it.entry->value;
      if (!c->deleted && c->source == LOCAL_SRC_CONFIG && c->def) cdrop[k++] = c;
    }
    for (size_t i = 0; i < k; i++) remove_check(la, cdrop[i], false);
    free(cdrop);
  }
  int rv = 0;
  for (size_t i = 0; defs && i < defs->n_services && rv == 0; i++) {
    json_t *j = local__service_def_json(defs->services[i]);
    char why[512];
    struct local_service_def *d = local__service_def_decode(j, why, sizeof why);
    json_decref(j);
    if (!d) {
      snprintf(err, errlen, "Failed to register service \"%s\": %s", defs->services[i]->name, why);
      rv = -1;
      break;
    }
    for (size_t c = 0; c < defs->services[i]->n_checks; c++) {
      d->checks = xrealloc(d->checks, (d->n_checks + 1) * sizeof *d->checks);
      d->checks[d->n_checks++] = local__check_def_copy(defs->services[i]->checks[c]);
    }
    local__set(&d->token, defs->services[i]->token);
    if (add_service_def(la, d, LOCAL_SRC_CONFIG, false, false, NULL, why, sizeof why) != 0) {
      snprintf(err, errlen, "Failed to register service \"%s\": %s", defs->services[i]->name, why);
      rv = -1;
    }
  }
  for (size_t i = 0; defs && i < defs->n_checks && rv == 0; i++) {
    char why[512];
    struct local_check_def *d = local__check_def_copy(defs->checks[i]);
    if (add_check_def(la, d, LOCAL_SRC_CONFIG, false, why, sizeof why) != 0) {
      snprintf(err, errlen, "Failed to register check '%s': %s", defs->checks[i]->name, why);
      rv = -1;
    }
  }
  /* Statuses carry over into the reloaded checks. */
  for (size_t i = 0; i < sn.n; i++) {
    struct local_chk *c = local__chk(la, sn.ids[i]);
    if (c && c->source == LOCAL_SRC_CONFIG) {
      chk_restore_status(la, c, sn.status[i], sn.output[i]);
      if (strcmp(sn.status[i], LOCAL_CRITICAL) != 0) c->critical_since = 0;
    }
    free(sn.ids[i]);
    free(sn.status[i]);
    free(sn.output[i]);
  }
  free(sn.ids);
  free(sn.status);
  free(sn.output);
  if (!la->loaded) {
    la->loaded = true;
    local__restore(la, restore_service, restore_check);
    uint64_t now = uv_now(la->loop);
    la->next_reap = now + la->cfg.check_reap_interval_ms;
    la->next_full_sync = now; /* a full sync at start, as Consul's StateSyncer does */
  }
  local__changed(la, true);
  return rv;
}

/* ---- the tick ---- */

/* Agent.reapServicesInternal: a service goes when one of its checks has been critical longer
 * than that check's DeregisterCriticalServiceAfter. */
static void reap(struct local_agent *la, uint64_t now)
{
  size_t cap = map_count(&la->checks), k = 0;
  char **ids = xcalloc(cap + 1, sizeof *ids);
  for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
    struct local_chk *c = it.entry->value;
    if (c->deleted || !c->reap_after_ms || !c->critical_since || !*c->service_id) continue;
    if (now - c->critical_since > c->reap_after_ms) ids[k++] = xstrdup(c->service_id);
  }
  for (size_t i = 0; i < k; i++) {
    struct local_svc *s = local__svc(la, ids[i]);
    if (s) {
      remove_service(la, s, true);
      log_info("agent", "Check for service has been critical for too long; deregistered "
                        "service: service=%s", ids[i]);
    }
    free(ids[i]);
  }
  free(ids);
}

static void tick(uv_timer_t *t)
{
  struct local_agent *la = t->data;
  if (la->closing || !la->loaded) return;
  uint64_t now = uv_now(la->loop);
  if (la->n_defer) {
    for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
      struct local_chk *c = it.entry->value;
      if (c->defer_until && now >= c->defer_until) {
        c->defer_until = 0;
        la->n_defer--;
        c->in_sync = false;
        c->gen++;
        local__sync_soon(la);
      }
    }
  }
  if (now >= la->next_reap) {
    la->next_reap = now + la->cfg.check_reap_interval_ms;
    reap(la, now);
  }
  bool leader = la->consensus && consensus_is_leader(la->consensus);
  bool became_leader = leader && !la->was_leader;
  la->was_leader = leader;
  if (became_leader || now >= la->next_full_sync) {
    /* scaled by cluster size, plus a random stagger of up to a sixteenth, as Consul's
     * StateSyncer, so that agents started together do not sync together forever */
    size_t n = la->cfg.cluster_size ? la->cfg.cluster_size(la->cfg.cluster_size_arg) : 1;
    uint64_t every = local_sync_interval_scaled(la->cfg.sync_interval_ms, n);
    la->next_full_sync = now + every + rand_below(every / 16 + 1);
    local__sync_full(la);
  } else if (la->retry_at && now >= la->retry_at) {
    la->retry_at = 0;
    local__sync_soon(la);
  }
}

uint64_t local_sync_interval_scaled(uint64_t interval_ms, size_t n)
{
  const size_t threshold = 128; /* Consul's scaleThreshold */
  if (n <= threshold) return interval_ms;
  /* ceil(log2(n) - log2(128)) + 1 */
  unsigned mult = 1;
  for (size_t limit = threshold; limit < n; limit *= 2) mult++;
  return interval_ms * mult;
}

/* ---- life ---- */

struct local_agent *local_agent_new(uv_loop_t *loop, const struct local_config *cfg,
                                    struct state_store *store, struct consensus *consensus,
                                    char *err, size_t errlen)
{
  if (!cfg->node_name || !*cfg->node_name || !cfg->datacenter || !*cfg->datacenter) {
    snprintf(err, errlen, "local agent: node name and datacenter are required");
    return NULL;
  }
  struct local_agent *la = xcalloc(1, sizeof *la);
  la->loop = loop;
  la->cfg = *cfg;
  la->node_name = xstrdup(cfg->node_name);
  la->node_id = local__strdup0(cfg->node_id);
  la->datacenter = xstrdup(cfg->datacenter);
  la->advertise = local__strdup0(cfg->advertise_addr);
  la->data_dir = cfg->data_dir && *cfg->data_dir ? xstrdup(cfg->data_dir) : NULL;
  la->cfg.node_name = la->node_name;
  la->cfg.node_id = la->node_id;
  la->cfg.datacenter = la->datacenter;
  la->cfg.advertise_addr = la->advertise;
  la->cfg.data_dir = la->data_dir;
  if (!la->cfg.check_output_max_size) la->cfg.check_output_max_size = 4096;
  if (!la->cfg.sync_interval_ms) la->cfg.sync_interval_ms = 60000;
  if (!la->cfg.sync_retry_ms) la->cfg.sync_retry_ms = 5000;
  if (!la->cfg.check_reap_interval_ms) la->cfg.check_reap_interval_ms = 30000;
  la->store = store;
  la->consensus = consensus;
  map_init(&la->services);
  map_init(&la->checks);
  local__remote_default(la, &la->remote);
  uv_timer_t *timers[] = {&la->tick, &la->sync_soon, &la->alias_soon, &la->notify_soon};
  for (size_t i = 0; i < 4; i++) {
    uv_timer_init(loop, timers[i]);
    timers[i]->data = la;
    la->open_handles++;
  }
  uint64_t period = TICK_MS;
  if (la->cfg.sync_interval_ms < period) period = la->cfg.sync_interval_ms;
  if (la->cfg.check_reap_interval_ms < period) period = la->cfg.check_reap_interval_ms;
  if (la->cfg.sync_retry_ms < period) period = la->cfg.sync_retry_ms;
  uv_timer_start(&la->tick, tick, period, period);
  uv_unref((uv_handle_t *)&la->tick);
  return la;
}

void local_agent_set_remote(struct local_agent *la, const struct local_remote *remote)
{
  la->remote = *remote;
}

static void finish_close(struct local_agent *la)
{
  for (struct map_iter it = map_iter_start(&la->services); map_iter_next(&it);)
    local__svc_free(it.entry->value);
  map_free(&la->services);
  for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);)
    local__chk_free(la, it.entry->value);
  map_free(&la->checks);
  while (la->watches) local_watch_cancel(la->watches);
  void (*cb)(void *) = la->close_cb;
  void *arg = la->close_arg;
  free(la->node_name);
  free(la->node_id);
  free(la->datacenter);
  free(la->advertise);
  free(la->data_dir);
  free(la);
  if (cb) cb(arg);
}

void local__handle_closed(uv_handle_t *h)
{
  struct local_agent *la = h->data;
  if (--la->open_handles == 0 && la->closing) finish_close(la);
}

void local_agent_close(struct local_agent *la, void (*cb)(void *arg), void *arg)
{
  la->closing = true;
  la->close_cb = cb;
  la->close_arg = arg;
  local__sync_detach_all(la);
  /* Runners stop now (scripts are killed); the records go in finish_close. */
  for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);)
    local__runner_stop(la, it.entry->value);
  uv_timer_t *timers[] = {&la->tick, &la->sync_soon, &la->alias_soon, &la->notify_soon};
  for (size_t i = 0; i < 4; i++) uv_close((uv_handle_t *)timers[i], local__handle_closed);
}
