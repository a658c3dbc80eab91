/* sync.c -- anti-entropy: the catalog's entries for this node follow the agent's local state
 * (Consul's agent/local/state.go SyncChanges/SyncFull and agent/ae).
 *
 * Partial sync (SyncChanges) runs on the loop turn after any change: every service or check
 * that is out of sync is registered (a service with its out-of-sync checks riding along in the
 * same request, as Consul does, so they land atomically), every deleted one deregistered. Full
 * sync (updateSyncState then SyncChanges) runs at start, every sync_interval, and when this
 * server becomes leader: it reads what the catalog has for this node and marks differences,
 * including catalog entries the agent does not have, which are then deregistered, except the
 * node's serfHealth check and the "consul" service, which the leader owns.
 *
 * Writes go through struct local_remote (agent/forward.c sends them to the leader over RPC
 * from followers and clients). With no leader a write is refused with CC_ENOTLEADER and
 * retried after
 * sync_retry_ms. Each record is sent at most once at a time; a record changed while its write
 * was in flight stays out of sync (its gen moved) and goes again. At most SYNC_MAX_INFLIGHT
 * writes are in flight, so registering a thousand services does not flood Raft in one turn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/consensus.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/rand.h"
#include "local/internal.h"
#include "state/cmd.h"

#define SYNC_MAX_INFLIGHT 256

enum op_kind { OP_SVC_REG, OP_SVC_DEREG, OP_CHK_REG, OP_CHK_DEREG };

struct local_sync_op {
  struct local_sync_op *next, **pprev;
  struct local_agent *la; /* NULL once detached */
  enum op_kind kind;
  char *id;
  uint64_t gen;
  size_t n_chk; /* checks that rode along a service registration */
  char **chk_ids;
  uint64_t *chk_gens;
};

static void op_free(struct local_sync_op *op)
{
  free(op->id);
  for (size_t i = 0; i < op->n_chk; i++) free(op->chk_ids[i]);
  free(op->chk_ids);
  free(op->chk_gens);
  free(op);
}

static void op_unlink(struct local_sync_op *op)
{
  if (!op->pprev) return;
  *op->pprev = op->next;
  if (op->next) op->next->pprev = op->pprev;
  op->pprev = NULL;
  op->next = NULL;
}

void local__sync_detach_all(struct local_agent *la)
{
  if (la->fetching && la->remote.fetch_cancel) la->remote.fetch_cancel(la->remote.ctx, la->fetching);
  la->fetching = NULL;
  while (la->sync_ops) {
    struct local_sync_op *op = la->sync_ops;
    op_unlink(op);
    op->la = NULL;
  }
}

/* ---- the default remote: consensus on the leader, the local store ---- */

struct apply_ctx {
  local_remote_done_fn done;
  void *arg;
};

static void default_applied(void *arg, int status, const struct state_cmd_result *res,
                            uint64_t index)
{
  (void)index;
  struct apply_ctx *a = arg;
  a->done(a->arg, status, res);
  free(a);
}

static int default_write(void *ctx, const struct buf *cmd, local_remote_done_fn done, void *arg)
{
  struct local_agent *la = ctx;
  if (!la->consensus || !consensus_is_leader(la->consensus)) return CC_ENOTLEADER;
  struct apply_ctx *a = xcalloc(1, sizeof *a);
  a->done = done;
  a->arg = arg;
  int rv = consensus_apply(la->consensus, cmd, default_applied, a);
  if (rv != 0) free(a);
  return rv;
}

static struct state_store *default_store(void *ctx)
{
  return ((struct local_agent *)ctx)->store;
}

void local__remote_default(struct local_agent *la, struct local_remote *out)
{
  *out = (struct local_remote){.write = default_write, .store = default_store, .ctx = la};
}

/* ---- requests ---- */

static void fill_service(struct state_register_service *rs, const struct local_service_def *d)
{
  *rs = (struct state_register_service){
      .kind = d->kind,
      .id = d->id,
      .name = d->name,
      .tags = (const char *const *)d->tags,
      .n_tags = d->n_tags,
      .tags_null = d->tags_null,
      .address = d->address,
      .tagged_addresses = d->tagged,
      .n_tagged = d->n_tagged,
      .meta = {d->meta, d->n_meta, d->meta_null},
      .port = d->port,
      .socket_path = d->socket_path,
      .has_weights = true,
      .weight_passing = d->weight_passing,
      .weight_warning = d->weight_warning,
      .enable_tag_override = d->enable_tag_override,
      .proxy = d->proxy,
      .connect = d->connect,
  };
}

static void fill_check(struct state_register_check *rc, const struct local_chk *c)
{
  *rc = (struct state_register_check){
      .check_id = c->id,
      .name = c->name,
      .status = c->status,
      .notes = c->notes,
      .output = c->output,
      .service_id = c->service_id,
      .type = c->type,
      .interval = c->interval,
      .timeout = c->timeout,
      .definition = c->definition,
  };
}

static void fill_node(struct local_agent *la, struct state_register *reg)
{
  *reg = (struct state_register){
      .id = uuid_is_valid(la->node_id) ? la->node_id : NULL,
      .node = la->node_name,
      .address = la->advertise,
      .datacenter = la->datacenter,
      .tagged_addresses = {NULL, 0, true},
      .node_meta = {NULL, 0, true},
      /* The node's own entry (address, tagged addresses, meta) is the leader's to write
       * (agent.c reconciles it from gossip); a sync only creates it if it is missing. */
      .skip_node_update = true,
  };
}

static void retry_later(struct local_agent *la)
{
  if (!la->retry_at) la->retry_at = uv_now(la->loop) + la->cfg.sync_retry_ms;
}

static void op_done(void *arg, int status, const struct state_cmd_result *res)
{
  struct local_sync_op *op = arg;
  struct local_agent *la = op->la;
  op_unlink(op);
  if (!la) {
    op_free(op);
    return;
  }
  la->sync_inflight--;
  bool ok = status == 0 && res && res->err == 0 &&
            (op->kind == OP_SVC_DEREG || op->kind == OP_CHK_DEREG || res->ok);
  struct local_svc *s = NULL;
  struct local_chk *c = NULL;
  if (op->kind == OP_SVC_REG || op->kind == OP_SVC_DEREG) {
    s = map_get(&la->services, op->id, strlen(op->id));
    if (s) s->inflight = false;
  } else {
    c = map_get(&la->checks, op->id, strlen(op->id));
    if (c) c->inflight = false;
  }
  for (size_t i = 0; i < op->n_chk; i++) {
    struct local_chk *rc = map_get(&la->checks, op->chk_ids[i], strlen(op->chk_ids[i]));
    if (!rc) continue;
    rc->inflight = false;
    if (ok && !rc->deleted && rc->gen == op->chk_gens[i]) rc->in_sync = true;
  }
  if (!ok) {
    const char *why = status ? cc_strerror(status)
                             : res && res->msg[0] ? res->msg
                                                  : res ? cc_strerror(res->err) : "failed";
    if (status == CC_ENOTLEADER)
      log_debug("agent", "sync of %s deferred: not the leader", op->id);
    else
      log_warn("agent", "Syncing %s %s failed: %s",
               op->kind == OP_SVC_REG || op->kind == OP_SVC_DEREG ? "service" : "check", op->id, why);
    retry_later(la);
    op_free(op);
    return;
  }
  switch (op->kind) {
  case OP_SVC_REG:
    if (s && !s->deleted && s->gen == op->gen) {
      s->in_sync = true;
      log_debug("agent", "Synced service %s", op->id);
    }
    break;
  case OP_CHK_REG:
    if (c && !c->deleted && c->gen == op->gen) {
      c->in_sync = true;
      log_debug("agent", "Synced check %s", op->id);
    }
    break;
  case OP_SVC_DEREG:
    if (s && !s->deleted) {
      /* Registered again while the deregistration was in flight: the catalog no longer has
       * it (nor its checks), so everything of it goes again. */
      s->in_sync = false;
      for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
        struct local_chk *x = it.entry->value;
        if (!x->deleted && x->service_id && strcmp(x->service_id, op->id) == 0) x->in_sync = false;
      }
    } else if (s && s->deleted) {
      map_del(&la->services, s->id, strlen(s->id));
      /* The catalog dropped the service's checks with it. */
      size_t cap = map_count(&la->checks), k = 0;
      struct local_chk **drop = xcalloc(cap + 1, sizeof *drop);
      for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
        struct local_chk *x = it.entry->value;
        if (x->deleted && !x->inflight && x->service_id && strcmp(x->service_id, op->id) == 0)
          drop[k++] = x;
      }
      for (size_t i = 0; i < k; i++) {
        map_del(&la->checks, drop[i]->id, strlen(drop[i]->id));
        local__chk_free(la, drop[i]);
      }
      free(drop);
      log_info("agent", "Deregistered service %s", op->id);
      local__svc_free(s);
    }
    break;
  case OP_CHK_DEREG:
    if (c && !c->deleted) {
      c->in_sync = false; /* registered again meanwhile */
    } else if (c && c->deleted) {
      map_del(&la->checks, c->id, strlen(c->id));
      local__chk_free(la, c);
      log_info("agent", "Deregistered check %s", op->id);
    }
    break;
  }
  op_free(op);
  /* More may be waiting (the in-flight cap, or changes made meanwhile). */
  local__sync_soon(la);
}

static struct local_sync_op *op_new(struct local_agent *la, enum op_kind kind, const char *id,
                                    uint64_t gen)
{
  struct local_sync_op *op = xcalloc(1, sizeof *op);
  op->la = la;
  op->kind = kind;
  op->id = xstrdup(id);
  op->gen = gen;
  return op;
}

/* Sends op's command; on a refusal (not leader) undoes the in-flight marks. Returns 0 if sent. */
static int op_send(struct local_agent *la, struct local_sync_op *op, const struct buf *cmd)
{
  op->next = la->sync_ops;
  if (op->next) op->next->pprev = &op->next;
  op->pprev = &la->sync_ops;
  la->sync_ops = op;
  la->sync_inflight++;
  int rv = la->remote.write(la->remote.ctx, cmd, op_done, op);
  if (rv == 0) return 0;
  /* Not sent: nothing will call back. */
  op_unlink(op);
  la->sync_inflight--;
  struct local_svc *s = NULL;
  struct local_chk *c = NULL;
  if (op->kind == OP_SVC_REG || op->kind == OP_SVC_DEREG) s = local__svc(la, op->id);
  if (!s && (op->kind == OP_SVC_REG || op->kind == OP_SVC_DEREG))
    s = map_get(&la->services, op->id, strlen(op->id));
  if (s) s->inflight = false;
  if (op->kind == OP_CHK_REG || op->kind == OP_CHK_DEREG)
    c = map_get(&la->checks, op->id, strlen(op->id));
  if (c) c->inflight = false;
  for (size_t i = 0; i < op->n_chk; i++) {
    struct local_chk *rc = map_get(&la->checks, op->chk_ids[i], strlen(op->chk_ids[i]));
    if (rc) rc->inflight = false;
  }
  if (rv != CC_ENOTLEADER) log_warn("agent", "sync of %s not sent: %s", op->id, cc_strerror(rv));
  op_free(op);
  retry_later(la);
  return -1;
}

static int sync_service(struct local_agent *la, struct local_svc *s)
{
  struct buf cmd = BUF_INIT;
  struct local_sync_op *op = op_new(la, s->deleted ? OP_SVC_DEREG : OP_SVC_REG, s->id, s->gen);
  if (s->deleted) {
    struct state_deregister dr = {.node = la->node_name, .service_id = s->id};
    state_cmd_encode_deregister(&cmd, &dr);
  } else {
    /* Out-of-sync checks of this service with the same token ride along. */
    size_t cap = map_count(&la->checks);
    struct state_register_check *rcs = xcalloc(cap + 1, sizeof *rcs);
    op->chk_ids = xcalloc(cap + 1, sizeof *op->chk_ids);
    op->chk_gens = xcalloc(cap + 1, sizeof *op->chk_gens);
    for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
      struct local_chk *c = it.entry->value;
      if (c->deleted || c->in_sync || c->inflight || strcmp(c->service_id, s->id) != 0) continue;
      if (strcmp(c->token ? c->token : "", s->def->token) != 0) continue;
      if (op->n_chk >= STATE_CAT_MAX_LIST) break;
      fill_check(&rcs[op->n_chk], c);
      op->chk_ids[op->n_chk] = xstrdup(c->id);
      op->chk_gens[op->n_chk++] = c->gen;
      c->inflight = true;
    }
    struct state_register reg;
    struct state_register_service rs;
    fill_node(la, &reg);
    fill_service(&rs, s->def);
    reg.service = &rs;
    reg.checks = rcs;
    reg.n_checks = op->n_chk;
    state_cmd_encode_register(&cmd, &reg);
    free(rcs);
  }
  s->inflight = true;
  int rv = op_send(la, op, &cmd);
  buf_free(&cmd);
  return rv;
}

static int sync_check(struct local_agent *la, struct local_chk *c)
{
  struct buf cmd = BUF_INIT;
  struct local_sync_op *op = op_new(la, c->deleted ? OP_CHK_DEREG : OP_CHK_REG, c->id, c->gen);
  if (c->deleted) {
    struct state_deregister dr = {.node = la->node_name, .check_id = c->id};
    state_cmd_encode_deregister(&cmd, &dr);
  } else {
    struct state_register reg;
    struct state_register_service rs;
    struct state_register_check rc;
    fill_node(la, &reg);
    fill_check(&rc, c);
    struct local_svc *s = *c->service_id ? local__svc(la, c->service_id) : NULL;
    if (s) {
      /* Pull in the service, so the check never lands without it (syncCheck). */
      fill_service(&rs, s->def);
      reg.service = &rs;
    }
    reg.checks = &rc;
    reg.n_checks = 1;
    state_cmd_encode_register(&cmd, &reg);
  }
  c->inflight = true;
  int rv = op_send(la, op, &cmd);
  buf_free(&cmd);
  return rv;
}

/* SyncChanges. */
static void sync_changes(struct local_agent *la)
{
  if (la->closing || !la->loaded) return;
  size_t cap = map_count(&la->services);
  struct local_svc **svcs = xcalloc(cap + 1, sizeof *svcs);
  size_t ns = 0;
  for (struct map_iter it = map_iter_start(&la->services); map_iter_next(&it);) {
    struct local_svc *s = it.entry->value;
    if (!s->inflight && (s->deleted || !s->in_sync)) svcs[ns++] = s;
  }
  for (size_t i = 0; i < ns && la->sync_inflight < SYNC_MAX_INFLIGHT; i++)
    if (sync_service(la, svcs[i]) != 0) break;
  free(svcs);
  if (la->retry_at || la->sync_inflight >= SYNC_MAX_INFLIGHT) return;
  cap = map_count(&la->checks);
  struct local_chk **chks = xcalloc(cap + 1, sizeof *chks);
  size_t nc = 0;
  for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
    struct local_chk *c = it.entry->value;
    if (c->inflight || (!c->deleted && c->in_sync)) continue;
    /* A new service's checks go with it; wait for it rather than racing it. */
    struct local_svc *s = c->service_id && *c->service_id
                              ? map_get(&la->services, c->service_id, strlen(c->service_id))
                              : NULL;
    if (!c->deleted && s && s->inflight) continue;
    chks[nc++] = c;
  }
  for (size_t i = 0; i < nc && la->sync_inflight < SYNC_MAX_INFLIGHT; i++)
    if (sync_check(la, chks[i]) != 0) break;
  free(chks);
}

static void sync_soon_cb(uv_timer_t *t)
{
  sync_changes(t->data);
}

void local__sync_soon(struct local_agent *la)
{
  if (la->closing || !la->loaded) return;
  if (!uv_is_active((uv_handle_t *)&la->sync_soon))
    uv_timer_start(&la->sync_soon, sync_soon_cb, 0, 0);
}

/* ---- full sync (updateSyncState) ---- */

static bool strs_same(char *const *a, size_t na, bool anull, const char *const *b, size_t nb,
                      bool bnull)
{
  if (na != nb || anull != bnull) return false;
  for (size_t i = 0; i < na; i++)
    if (strcmp(a[i], b[i])) return false;
  return true;
}

static bool opt_same(const char *a, const char *b)
{
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool svc_matches(const struct local_service_def *d, const struct state_service *r)
{
  if (strcmp(d->kind, r->kind ? r->kind : "") || strcmp(d->id, r->id) || strcmp(d->name, r->name) ||
      strcmp(d->address, r->address ? r->address : "") || d->port != r->port ||
      strcmp(d->socket_path, r->socket_path ? r->socket_path : "") ||
      d->weight_passing != r->weight_passing || d->weight_warning != r->weight_warning ||
      d->enable_tag_override != r->enable_tag_override || !opt_same(d->proxy, r->proxy) ||
      !opt_same(d->connect, r->connect) ||
      !strs_same(d->tags, d->n_tags, d->tags_null, r->tags, r->n_tags, r->tags_null) ||
      d->n_tagged != r->n_tagged || d->n_meta != r->meta.n)
    return false;
  for (size_t i = 0; i < d->n_tagged; i++)
    if (strcmp(d->tagged[i].key, r->tagged_addresses[i].key) ||
        strcmp(d->tagged[i].address, r->tagged_addresses[i].address) ||
        d->tagged[i].port != r->tagged_addresses[i].port)
      return false;
  for (size_t i = 0; i < d->n_meta; i++)
    if (strcmp(d->meta[i].key, r->meta.items[i].key) ||
        strcmp(d->meta[i].value, r->meta.items[i].value))
      return false;
  return true;
}

static bool chk_matches(const struct local_chk *c, const struct state_check *r, bool ignore_output)
{
  return strcmp(c->name, r->name) == 0 && strcmp(c->status, r->status) == 0 &&
         strcmp(c->notes, r->notes ? r->notes : "") == 0 &&
         (ignore_output || strcmp(c->output, r->output ? r->output : "") == 0) &&
         strcmp(c->service_id, r->service_id ? r->service_id : "") == 0 &&
         strcmp(c->service_name, r->service_name ? r->service_name : "") == 0 &&
         strcmp(c->type, r->type ? r->type : "") == 0 &&
         strcmp(c->interval, r->interval ? r->interval : "") == 0 &&
         strcmp(c->timeout, r->timeout ? r->timeout : "") == 0 &&
         opt_same(c->definition, r->definition) &&
         strs_same(c->service_tags, c->n_service_tags, c->service_tags_null, r->service_tags,
                   r->n_service_tags, r->service_tags_null);
}

struct remote_scan {
  struct local_agent *la;
  struct map seen; /* IDs the catalog has */
};

static void copy_tags(struct local_service_def *d, const struct state_service *r)
{
  for (size_t i = 0; i < d->n_tags; i++) free(d->tags[i]);
  free(d->tags);
  d->tags = xcalloc(r->n_tags + 1, sizeof *d->tags);
  for (size_t i = 0; i < r->n_tags; i++) d->tags[i] = xstrdup(r->tags[i]);
  d->n_tags = r->n_tags;
  d->tags_null = r->tags_null;
}

static int scan_service(const struct state_service *r, void *arg)
{
  struct remote_scan *sc = arg;
  struct local_agent *la = sc->la;
  map_put(&sc->seen, r->id, strlen(r->id), (void *)1);
  struct local_svc *s = map_get(&la->services, r->id, strlen(r->id));
  if (!s) {
    /* The leader's own "consul" service is not the agent's to remove. */
    if (strcmp(r->id, "consul") == 0) return 0;
    s = xcalloc(1, sizeof *s);
    s->id = xstrdup(r->id);
    s->deleted = true;
    map_put(&la->services, s->id, strlen(s->id), s);
    return 0;
  }
  if (s->deleted || s->inflight) return 0;
  /* EnableTagOverride: the catalog's tags win (updateSyncState). */
  if (s->def->enable_tag_override &&
      !strs_same(s->def->tags, s->def->n_tags, s->def->tags_null, r->tags, r->n_tags, r->tags_null))
    copy_tags(s->def, r);
  s->in_sync = svc_matches(s->def, r);
  return 0;
}

static int scan_check(const struct state_check *r, void *arg)
{
  struct remote_scan *sc = arg;
  struct local_agent *la = sc->la;
  map_put(&sc->seen, r->check_id, strlen(r->check_id), (void *)2);
  struct local_chk *c = map_get(&la->checks, r->check_id, strlen(r->check_id));
  if (!c) {
    if (strcmp(r->check_id, "serfHealth") == 0) return 0; /* the leader's */
    c = xcalloc(1, sizeof *c);
    c->id = xstrdup(r->check_id);
    c->deleted = true;
    map_put(&la->checks, c->id, strlen(c->id), c);
    return 0;
  }
  if (c->deleted || c->inflight) return 0;
  /* With an output change waiting (DeferCheck), outputs are not compared. */
  c->in_sync = chk_matches(c, r, la->cfg.check_update_interval_ms > 0 && c->defer_until);
  return 0;
}

/* Marks what differs between the agent and the catalog's rows in store. */
static void compare_with(struct local_agent *la, struct state_store *store)
{
  struct remote_scan sc = {la, {0}};
  map_init(&sc.seen);
  state_node_services(store, la->node_name, scan_service, &sc);
  for (struct map_iter it = map_iter_start(&la->services); map_iter_next(&it);) {
    struct local_svc *s = it.entry->value;
    if (!s->deleted && !s->inflight && !map_get(&sc.seen, s->id, strlen(s->id))) s->in_sync = false;
  }
  map_free(&sc.seen);
  map_init(&sc.seen);
  state_node_checks(store, la->node_name, scan_check, &sc);
  for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
    struct local_chk *c = it.entry->value;
    if (!c->deleted && !c->inflight && !map_get(&sc.seen, c->id, strlen(c->id))) c->in_sync = false;
  }
  map_free(&sc.seen);
}

static void push_everything(struct local_agent *la)
{
  for (struct map_iter it = map_iter_start(&la->services); map_iter_next(&it);)
    ((struct local_svc *)it.entry->value)->in_sync = false;
  for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);)
    ((struct local_chk *)it.entry->value)->in_sync = false;
}

/* A client's copy of its node's catalog rows arrived (NULL: the fetch failed). */
static void fetched(void *arg, struct state_store *st)
{
  struct local_agent *la = arg;
  la->fetching = NULL;
  if (la->closing || !la->loaded) return;
  if (st) compare_with(la, st);
  else push_everything(la);
  la->retry_at = 0;
  sync_changes(la);
}

void local__sync_full(struct local_agent *la)
{
  if (la->closing || !la->loaded) return;
  struct state_store *store = la->remote.store ? la->remote.store(la->remote.ctx) : NULL;
  if (store) {
    compare_with(la, store);
  } else if (la->remote.fetch) {
    /* a client agent: read the catalog's rows for this node from a server first, so that
     * entries the agent no longer has are found and removed (Consul's updateSyncState) */
    if (la->fetching) return;
    void *h = NULL;
    if (la->remote.fetch(la->remote.ctx, la->node_name, fetched, la, &h) == 0) {
      la->fetching = h;
      return;
    }
    push_everything(la);
  } else {
    /* Nothing to compare with: push everything again. */
    push_everything(la);
  }
  la->retry_at = 0;
  sync_changes(la);
}
