/* serf.c -- the serf layer (hashicorp/serf serf/serf.go, delegate.go, internal_query.go).
 *
 * memberlist tells us who is reachable; serf adds *intent*. A member that stops answering is
 * "failed"; one that announced its departure is "left". The announcement (a leave intent) and
 * its counterpart (a join intent) are ordered by a Lamport clock, so an old intent arriving late
 * (gossip is unordered) cannot undo a newer one: each member remembers the Lamport time of the
 * last intent it applied (status_ltime) and ignores anything not newer. Intents about members
 * we have not met yet are parked for RecentIntentTimeout and applied when memberlist reports
 * the member.
 *
 * User events carry their own Lamport clock. Every member keeps the last 512 clock ticks of
 * events (EventBuffer) to drop duplicates that gossip inevitably delivers, and ships that
 * buffer in push-pulls so a member that missed an event still gets it. Queries are
 * deduplicated the same way; we acknowledge queries that ask for it (serf's internal ping query
 * needs no more), hand the others to the application, which may answer before the deadline,
 * and send our own, collecting acks and answers until the timeout.
 *
 * Failed members are retried (reconnect) every ReconnectInterval with probability
 * failed/alive, and forgotten (reaped) after ReconnectTimeout; left members after
 * TombstoneTimeout.
 *
 * serf's key queries (install/use/remove/list) are in serf_keys.c.
 *
 * Departures from serf: no snapshots, no coordinate (Vivaldi)
 * payloads on acks (serf skips empty payloads), no event coalescing, no relayed copies of
 * query answers (RelayFactor is sent but not acted on). A prune of a member that is still
 * leaving is immediate (serf sleeps in that case). Tag maps are written with sorted keys (Go's map order is random). */
#include "gossip/serf.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/broadcast.h"
#include "gossip/keyring.h"
#include "gossip/mp.h"
#include "gossip/proto.h"
#include "gossip/serf_proto.h"
#include "gossip/swim.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/map.h"

#define MOD "gossip"
#define EVENT_BUFFER 512
#define QUERY_BUFFER 512
#define USER_EVENT_SANE_LIMIT 9216 /* serf UserEventSizeLimit */
#define MAX_QUEUE_DEPTH 4096
#define QUERY_SIZE_LIMIT 1024          /* serf QuerySizeLimit */
#define QUERY_RESPONSE_SIZE_LIMIT 1024 /* serf QueryResponseSizeLimit */
#define QUERY_TIMEOUT_MULT 16          /* serf QueryTimeoutMult */
#define INTERNAL_QUERY_PREFIX "_serf_"

enum serf_state { SERF_ALIVE, SERF_LEAVING, SERF_LEFT, SERF_SHUTDOWN };

struct serf_member {
  char *name;
  struct gossip_addr addr;
  uint8_t *meta;
  size_t meta_len;
  enum gossip_status status;
  uint8_t vsn[6];
  uint64_t status_ltime;
  uint64_t leave_time; /* ms, when it failed or left */
};

struct intent {
  uint8_t type; /* SERF_MSG_JOIN or SERF_MSG_LEAVE */
  uint64_t wall, ltime;
};

struct stored_event {
  char *name;
  uint8_t *payload;
  size_t len;
};

struct event_slot {
  bool used;
  uint64_t ltime;
  struct stored_event *events;
  size_t n;
};

struct local_event {
  struct local_event *next;
  uint64_t ltime;
  char *name;
  uint8_t *payload;
  size_t len;
  bool cc;
};

/* A query we sent, collecting answers until its timeout (serf's QueryResponse). */
struct pending_query {
  struct pending_query *next;
  struct serf *s;
  uint64_t ltime;
  uint32_t id;
  gossip_query_cb cb;
  void *arg;
  char **acks, **responders; /* who answered, to drop duplicates */
  size_t nacks, nresponders;
  struct gtimer timer;
};

/* Our own query, handled from the loop like anyone else's (not inside the API call). */
struct local_query {
  struct local_query *next;
  struct buf raw; /* [SERF_MSG_QUERY][msgpack] */
};

struct query_slot {
  bool used;
  uint64_t ltime;
  uint32_t *ids;
  size_t n;
};

struct ptr_list {
  struct serf_member **v;
  size_t n, cap;
};

struct serf {
  struct gossip_config cfg;
  char *node_name;
  char **tag_keys, **tag_values;
  size_t ntags;
  struct ml ml;
  struct gossip_io *io;
  uint64_t clock, event_clock, query_clock;
  struct map members;
  struct ptr_list failed, left;
  struct map intents;
  struct bcast_queue bcasts, event_bcasts, query_bcasts;
  struct event_slot events[EVENT_BUFFER];
  struct query_slot queries[QUERY_BUFFER];
  uint64_t event_min_time, query_min_time;
  int joins_in_flight; /* while > 0, merged join state does not replay old events (Consul) */
  enum serf_state state;
  struct gtimer reap_timer, reconnect_timer, leave_timer, local_event_timer;
  /* Our own events, delivered to the application from the loop, not inside the API call. */
  struct local_event *local_events, **local_tail;
  struct local_query *local_queries, **local_queries_tail;
  struct gtimer local_query_timer;
  struct pending_query *queries_out;
  char *keyring_file; /* owned; NULL: key changes are not saved */
  void (*leave_cb)(void *arg, int err);
  void *leave_arg;
  int leave_phase, leave_err;
};

/* ---- defaults (memberlist DefaultLANConfig / DefaultWANConfig, serf DefaultConfig) ---- */

void gossip_timing_lan(struct gossip_timing *t) {
  struct ml_config c;
  ml_config_lan(&c);
  *t = (struct gossip_timing){
      .probe_interval = (uint32_t)c.probe_interval, .probe_timeout = (uint32_t)c.probe_timeout,
      .gossip_interval = (uint32_t)c.gossip_interval,
      .push_pull_interval = (uint32_t)c.push_pull_interval,
      .gossip_to_the_dead = (uint32_t)c.gossip_to_the_dead, .tcp_timeout = (uint32_t)c.tcp_timeout,
      .indirect_checks = (uint32_t)c.indirect_checks, .gossip_nodes = (uint32_t)c.gossip_nodes,
      .retransmit_mult = (uint32_t)c.retransmit_mult, .suspicion_mult = (uint32_t)c.suspicion_mult,
      .suspicion_max_timeout_mult = (uint32_t)c.suspicion_max_timeout_mult,
      .awareness_max_multiplier = (uint32_t)c.awareness_max_multiplier,
      .udp_buffer_size = (uint32_t)c.udp_buffer_size};
}

void gossip_timing_wan(struct gossip_timing *t) {
  gossip_timing_lan(t);
  t->tcp_timeout = 30000;
  t->suspicion_mult = 6;
  t->push_pull_interval = 60000;
  t->probe_timeout = 3000;
  t->probe_interval = 5000;
  t->gossip_nodes = 4;
  t->gossip_interval = 500;
  t->gossip_to_the_dead = 60000;
}

void gossip_config_default(struct gossip_config *c) {
  memset(c, 0, sizeof *c);
  gossip_timing_lan(&c->timing);
  c->bind_addr = "0.0.0.0";
  c->bind_port = 8301; /* Consul's serf LAN port */
  c->reconnect_timeout = 72ull * 3600 * 1000; /* Consul's LAN reconnect_timeout */
  c->tombstone_timeout = 24ull * 3600 * 1000;
  c->reap_interval = 15000;
  c->reconnect_interval = 30000;
  c->recent_intent_timeout = 5 * 60 * 1000;
  c->broadcast_timeout = 5000;
  c->leave_propagate_delay = 1000;
  c->user_event_size_limit = 512;
  c->protocol_version = 4;
  c->encrypt_verify_incoming = c->encrypt_verify_outgoing = true;
}

/* ---- small helpers ---- */

static uint64_t now_ms(struct serf *s) { return ml_now(&s->ml); }

static void witness(uint64_t *clock, uint64_t v) {
  if (v < *clock) return;
  *clock = v + 1;
}

static bool name_ok(struct proto_bytes b, char out[PROTO_NAME_MAX + 1]) {
  if (b.len == 0 || b.len > PROTO_NAME_MAX || memchr(b.p, 0, b.len)) return false;
  memcpy(out, b.p, b.len);
  out[b.len] = '\0';
  return true;
}

static struct serf_member *member_get(struct serf *s, const char *name) {
  return map_get(&s->members, name, strlen(name));
}

static void list_add(struct ptr_list *l, struct serf_member *m) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 8;
    l->v = xrealloc(l->v, l->cap * sizeof *l->v);
  }
  l->v[l->n++] = m;
}

static void list_remove(struct ptr_list *l, const struct serf_member *m) {
  for (size_t i = 0; i < l->n; i++) {
    if (l->v[i] == m) {
      l->v[i] = l->v[--l->n];
      return;
    }
  }
}

static int cmp_tag(const void *a, const void *b) {
  return strcmp(((const struct gossip_tag *)a)->key, ((const struct gossip_tag *)b)->key);
}

/* Fills out (owned copies) from a member. */
static void member_export(const struct serf_member *m, struct gossip_member *out) {
  memset(out, 0, sizeof *out);
  out->name = xstrdup(m->name);
  struct gossip_addr a = m->addr;
  char txt[GOSSIP_ADDR_STRLEN];
  gossip_addr_format(&a, txt, sizeof txt);
  /* strip the ":port" (and brackets) to keep only the IP */
  char *colon = strrchr(txt, ':');
  if (colon) *colon = '\0';
  const char *ip = txt;
  if (txt[0] == '[') {
    ip = txt + 1;
    char *rb = strchr(txt, ']');
    if (rb) *rb = '\0';
  }
  snprintf(out->addr, sizeof out->addr, "%.45s", ip);
  out->port = m->addr.port;
  out->status = m->status;
  out->protocol_min = m->vsn[0];
  out->protocol_max = m->vsn[1];
  out->protocol_cur = m->vsn[2];
  out->delegate_min = m->vsn[3];
  out->delegate_max = m->vsn[4];
  out->delegate_cur = m->vsn[5];
  struct proto_bytes keys[SERF_MAX_TAGS], vals[SERF_MAX_TAGS];
  size_t n = 0;
  if (m->meta_len || m->meta) {
    if (serf_decode_tags(m->meta, m->meta_len, keys, vals, SERF_MAX_TAGS, &n)) n = 0;
  } else {
    n = 0;
  }
  if (n) {
    out->tags = xcalloc(n, sizeof *out->tags);
    for (size_t i = 0; i < n; i++) {
      out->tags[i].key = xstrndup((const char *)keys[i].p, keys[i].len);
      out->tags[i].value = xstrndup((const char *)vals[i].p, vals[i].len);
    }
    out->ntags = n;
    qsort(out->tags, n, sizeof *out->tags, cmp_tag);
  }
}

void gossip_member_free(struct gossip_member *m) {
  if (!m) return;
  free(m->name);
  for (size_t i = 0; i < m->ntags; i++) {
    free(m->tags[i].key);
    free(m->tags[i].value);
  }
  free(m->tags);
  memset(m, 0, sizeof *m);
}

void gossip_members_free(struct gossip_member *m, size_t n) {
  for (size_t i = 0; i < n; i++) gossip_member_free(&m[i]);
  free(m);
}

const char *gossip_member_tag(const struct gossip_member *m, const char *key) {
  for (size_t i = 0; i < m->ntags; i++)
    if (strcmp(m->tags[i].key, key) == 0) return m->tags[i].value;
  return NULL;
}

static void emit(struct serf *s, enum gossip_event ev, const struct serf_member *m) {
  static const char *names[] = {"join", "leave", "failed", "update", "reap"};
  log_debug(MOD, "member %s: %s", names[ev], m->name);
  if (!s->cfg.on_member) return;
  struct gossip_member gm;
  member_export(m, &gm);
  s->cfg.on_member(s->cfg.cb_ctx, ev, &gm);
  gossip_member_free(&gm);
}

static void member_free(struct serf_member *m) {
  free(m->name);
  free(m->meta);
  free(m);
}

/* Forgets a member entirely (serf eraseNode), telling the application. */
static void erase(struct serf *s, struct serf_member *m) {
  map_del(&s->members, m->name, strlen(m->name));
  list_remove(&s->failed, m);
  list_remove(&s->left, m);
  emit(s, GOSSIP_EVENT_REAP, m);
  member_free(m);
}

static void queue_serf(struct serf *s, struct bcast_queue *q, const struct buf *msg,
                       bcast_finished_fn fin, void *arg) {
  bcast_queue(q, NULL, msg->data, msg->len, fin, arg);
}

/* ---- intents ---- */

static bool upsert_intent(struct serf *s, const char *node, uint8_t type, uint64_t ltime) {
  struct intent *it = map_get(&s->intents, node, strlen(node));
  if (it && ltime <= it->ltime) return false;
  if (!it) {
    it = xcalloc(1, sizeof *it);
    map_put(&s->intents, node, strlen(node), it);
  }
  it->type = type;
  it->wall = now_ms(s);
  it->ltime = ltime;
  return true;
}

static bool recent_intent(struct serf *s, const char *node, uint8_t type, uint64_t *ltime) {
  struct intent *it = map_get(&s->intents, node, strlen(node));
  if (!it || it->type != type) return false;
  *ltime = it->ltime;
  return true;
}

static bool handle_join_intent(struct serf *s, const char *node, uint64_t ltime) {
  witness(&s->clock, ltime);
  struct serf_member *m = member_get(s, node);
  if (!m) return upsert_intent(s, node, SERF_MSG_JOIN, ltime);
  if (ltime <= m->status_ltime) return false;
  m->status_ltime = ltime;
  /* A join intent newer than its leave intent: the member changed its mind. */
  if (m->status == GOSSIP_STATUS_LEAVING) m->status = GOSSIP_STATUS_ALIVE;
  return true;
}

static void broadcast_join(struct serf *s, uint64_t ltime) {
  struct serf_join_msg msg = {.ltime = ltime, .node = proto_str(s->node_name)};
  witness(&s->clock, ltime);
  handle_join_intent(s, s->node_name, ltime);
  struct buf b = BUF_INIT;
  serf_encode_join(&b, &msg);
  queue_serf(s, &s->bcasts, &b, NULL, NULL);
  buf_free(&b);
}

static void handle_prune(struct serf *s, struct serf_member *m) {
  log_info(MOD, "member reap (forced): %s", m->name);
  erase(s, m);
}

static bool handle_leave_intent(struct serf *s, const char *node, uint64_t ltime, bool prune) {
  witness(&s->clock, ltime);
  struct serf_member *m = member_get(s, node);
  if (!m) return upsert_intent(s, node, SERF_MSG_LEAVE, ltime);
  if (ltime <= m->status_ltime) return false;
  /* An old leave intent about us while we are alive: refute with a fresh join intent. */
  if (strcmp(node, s->node_name) == 0 && s->state == SERF_ALIVE) {
    log_debug(MOD, "refuting an older leave intent");
    broadcast_join(s, s->clock);
    return false;
  }
  m->status_ltime = ltime;
  switch (m->status) {
  case GOSSIP_STATUS_ALIVE:
    m->status = GOSSIP_STATUS_LEAVING;
    if (prune) handle_prune(s, m);
    return true;
  case GOSSIP_STATUS_FAILED:
    /* A failed member force-left: it will not come back, so it is left, not failed. */
    m->status = GOSSIP_STATUS_LEFT;
    list_remove(&s->failed, m);
    list_add(&s->left, m);
    log_info(MOD, "member leave (forced): %s", m->name);
    emit(s, GOSSIP_EVENT_LEAVE, m);
    if (prune) handle_prune(s, m);
    return true;
  case GOSSIP_STATUS_LEAVING:
  case GOSSIP_STATUS_LEFT:
    if (prune) handle_prune(s, m);
    return true;
  default:
    return false;
  }
}

/* ---- memberlist events ---- */

static void copy_node(struct serf_member *m, const struct ml_node *n) {
  m->addr = n->addr;
  free(m->meta);
  m->meta = n->meta_len ? xmemdup(n->meta, n->meta_len) : NULL;
  m->meta_len = n->meta_len;
  memcpy(m->vsn, n->vsn, 6);
}

static void notify_join(void *ctx, const struct ml_node *n) {
  struct serf *s = ctx;
  struct serf_member *m = member_get(s, n->name);
  enum gossip_status old;
  if (!m) {
    old = GOSSIP_STATUS_NONE;
    m = xcalloc(1, sizeof *m);
    m->name = xstrdup(n->name);
    m->status = GOSSIP_STATUS_ALIVE;
    uint64_t lt;
    if (recent_intent(s, n->name, SERF_MSG_JOIN, &lt)) m->status_ltime = lt;
    if (recent_intent(s, n->name, SERF_MSG_LEAVE, &lt)) {
      m->status = GOSSIP_STATUS_LEAVING;
      m->status_ltime = lt;
    }
    map_put(&s->members, m->name, strlen(m->name), m);
  } else {
    old = m->status;
    m->status = GOSSIP_STATUS_ALIVE;
    m->leave_time = 0;
  }
  copy_node(m, n);
  if (old == GOSSIP_STATUS_FAILED || old == GOSSIP_STATUS_LEFT) {
    list_remove(&s->failed, m);
    list_remove(&s->left, m);
  }
  log_info(MOD, "member join: %s", m->name);
  emit(s, GOSSIP_EVENT_JOIN, m);
}

static void notify_leave(void *ctx, const struct ml_node *n) {
  struct serf *s = ctx;
  struct serf_member *m = member_get(s, n->name);
  if (!m) return;
  switch (m->status) {
  case GOSSIP_STATUS_LEAVING:
    m->status = GOSSIP_STATUS_LEFT;
    m->leave_time = now_ms(s);
    list_add(&s->left, m);
    break;
  case GOSSIP_STATUS_ALIVE:
    m->status = GOSSIP_STATUS_FAILED;
    m->leave_time = now_ms(s);
    list_add(&s->failed, m);
    break;
  default:
    log_warn(MOD, "bad state when leave: %d", m->status);
    return;
  }
  log_info(MOD, "member %s: %s", m->status == GOSSIP_STATUS_LEFT ? "leave" : "failed", m->name);
  emit(s, m->status == GOSSIP_STATUS_LEFT ? GOSSIP_EVENT_LEAVE : GOSSIP_EVENT_FAILED, m);
}

static void notify_update(void *ctx, const struct ml_node *n) {
  struct serf *s = ctx;
  struct serf_member *m = member_get(s, n->name);
  if (!m) return;
  copy_node(m, n);
  emit(s, GOSSIP_EVENT_UPDATE, m);
}

/* ---- user events ---- */

static void slot_clear(struct event_slot *sl) {
  for (size_t i = 0; i < sl->n; i++) {
    free(sl->events[i].name);
    free(sl->events[i].payload);
  }
  free(sl->events);
  sl->events = NULL;
  sl->n = 0;
}

static void deliver_local_events(struct gtimer *t) {
  struct serf *s = container_of(t, struct serf, local_event_timer);
  while (s->local_events && s->state != SERF_SHUTDOWN) {
    struct local_event *e = s->local_events;
    s->local_events = e->next;
    if (!s->local_events) s->local_tail = &s->local_events;
    if (s->cfg.on_user_event) {
      struct gossip_user_event ev = {.ltime = e->ltime, .name = e->name, .payload = e->payload,
                                     .payload_len = e->len, .coalesce = e->cc};
      s->cfg.on_user_event(s->cfg.cb_ctx, &ev);
    }
    free(e->name);
    free(e->payload);
    free(e);
  }
}

static void local_events_free(struct serf *s) {
  while (s->local_events) {
    struct local_event *e = s->local_events;
    s->local_events = e->next;
    free(e->name);
    free(e->payload);
    free(e);
  }
  s->local_tail = &s->local_events;
}

/* Records an event and tells the application: at once for events from the network, through
 * the loop (local_event_timer) for our own. */
static bool handle_user_event(struct serf *s, uint64_t ltime, struct proto_bytes name,
                              struct proto_bytes payload, bool cc, bool local) {
  if (!name.p) name = (struct proto_bytes){(const uint8_t *)"", 0}; /* a nil name is "" in Go */
  witness(&s->event_clock, ltime);
  if (ltime < s->event_min_time) return false;
  uint64_t cur = s->event_clock;
  /* Older than the buffer: we cannot tell whether we saw it, so drop it as serf does. */
  if (cur > EVENT_BUFFER && ltime < cur - EVENT_BUFFER) {
    log_warn(MOD, "received old event %.*s from time %llu (current: %llu)", (int)name.len,
             (const char *)name.p, (unsigned long long)ltime, (unsigned long long)cur);
    return false;
  }
  struct event_slot *sl = &s->events[ltime % EVENT_BUFFER];
  if (sl->used && sl->ltime == ltime) {
    for (size_t i = 0; i < sl->n; i++) {
      const struct stored_event *e = &sl->events[i];
      if (strlen(e->name) == name.len && memcmp(e->name, name.p, name.len) == 0 &&
          e->len == payload.len && (payload.len == 0 || memcmp(e->payload, payload.p, payload.len) == 0))
        return false;
    }
  } else {
    slot_clear(sl);
    sl->used = true;
    sl->ltime = ltime;
  }
  if (memchr(name.p, 0, name.len)) return false;
  sl->events = xrealloc(sl->events, (sl->n + 1) * sizeof *sl->events);
  struct stored_event *e = &sl->events[sl->n++];
  e->name = xstrndup((const char *)name.p, name.len);
  e->payload = payload.len ? xmemdup(payload.p, payload.len) : NULL;
  e->len = payload.len;
  if (local) {
    struct local_event *le = xcalloc(1, sizeof *le);
    le->ltime = ltime;
    le->name = xstrdup(e->name);
    le->payload = e->len ? xmemdup(e->payload, e->len) : NULL;
    le->len = e->len;
    le->cc = cc;
    *s->local_tail = le;
    s->local_tail = &le->next;
    ml_arm(&s->ml, &s->local_event_timer, now_ms(s));
  } else if (s->cfg.on_user_event) {
    struct gossip_user_event ev = {.ltime = ltime, .name = e->name, .payload = e->payload,
                                   .payload_len = e->len, .coalesce = cc};
    s->cfg.on_user_event(s->cfg.cb_ctx, &ev);
  }
  return true;
}

int serf_user_event(struct serf *s, const char *name, const void *payload, size_t len,
                    bool coalesce) {
  size_t before = strlen(name) + len;
  if (before > s->cfg.user_event_size_limit || before > USER_EVENT_SANE_LIMIT) return CC_ETOOBIG;
  struct serf_user_event_msg msg = {.ltime = s->event_clock, .name = proto_str(name),
                                    .payload = {payload ? payload : NULL, (uint32_t)len},
                                    .cc = coalesce};
  if (!payload) msg.payload.p = NULL;
  struct buf raw = BUF_INIT;
  serf_encode_user_event(&raw, &msg);
  if (raw.len > s->cfg.user_event_size_limit || raw.len > USER_EVENT_SANE_LIMIT) {
    buf_free(&raw);
    return CC_ETOOBIG;
  }
  s->event_clock++;
  handle_user_event(s, msg.ltime, msg.name, msg.payload, coalesce, true);
  queue_serf(s, &s->event_bcasts, &raw, NULL, NULL);
  buf_free(&raw);
  ml_rearm(&s->ml);
  return 0;
}

/* ---- queries ---- */

static const char *tag_value(struct serf *s, const char *key) {
  for (size_t i = 0; i < s->ntags; i++)
    if (strcmp(s->tag_keys[i], key) == 0) return s->tag_values[i];
  return "";
}

/* serf shouldProcessQuery: a node filter lists names (we must be one); a tag filter is a
 * regular expression our tag's value must match (POSIX ERE here, RE2 in Go: the same for the
 * simple patterns people write). Undecodable filters reject the query, as in serf. */
static bool filter_matches(struct serf *s, struct proto_bytes f) {
  struct mp_r r;
  mp_r_init(&r, f.p + 1, f.len - 1);
  if (f.p[0] == 0) {
    uint32_t n;
    if (mp_read_array(&r, &n)) return false;
    for (uint32_t i = 0; i < n; i++) {
      const uint8_t *p;
      uint32_t len;
      if (mp_read_raw(&r, PROTO_NAME_MAX, &p, &len)) return false;
      if (len == strlen(s->node_name) && memcmp(p, s->node_name, len) == 0) return true;
    }
    return false;
  }
  if (f.p[0] == 1) {
    uint32_t n;
    const uint8_t *tag = NULL, *expr = NULL;
    uint32_t tlen = 0, elen = 0;
    if (mp_read_map(&r, &n)) return false;
    for (uint32_t i = 0; i < n; i++) {
      const uint8_t *k;
      uint32_t klen;
      int rc = mp_read_raw(&r, 64, &k, &klen);
      if (!rc && mp_key_is(k, klen, "Tag"))
        rc = mp_read_raw(&r, PROTO_META_MAX, &tag, &tlen);
      else if (!rc && mp_key_is(k, klen, "Expr"))
        rc = mp_read_raw(&r, 1024, &expr, &elen);
      else if (!rc)
        rc = mp_skip(&r);
      if (rc) return false;
    }
    char *tk = xstrndup(tag ? (const char *)tag : "", tlen);
    char *ex = xstrndup(expr ? (const char *)expr : "", elen);
    regex_t re;
    bool ok = false;
    if (regcomp(&re, ex, REG_EXTENDED | REG_NOSUB) == 0) {
      ok = regexec(&re, tag_value(s, tk), 0, NULL, 0) == 0;
      regfree(&re);
    }
    free(tk);
    free(ex);
    return ok;
  }
  return false;
}

static bool should_process(struct serf *s, const struct serf_query_msg *q) {
  for (size_t i = 0; i < q->nfilters; i++)
    if (!filter_matches(s, q->filters[i])) return false;
  return true;
}

static void send_query_response(struct serf *s, const struct serf_query_msg *q, uint32_t flags,
                                struct proto_bytes payload) {
  struct gossip_addr to;
  if (gossip_addr_from_bytes(q->addr.p, q->addr.len, q->port, &to)) return;
  struct serf_query_response_msg r = {.ltime = q->ltime, .id = q->id,
                                      .from = proto_str(s->node_name), .flags = flags,
                                      .payload = payload};
  struct buf b = BUF_INIT;
  serf_encode_query_response(&b, &r);
  ml_send_user(&s->ml, &to, b.data, b.len);
  buf_free(&b);
}

static bool handle_query(struct serf *s, const struct serf_query_msg *q) {
  witness(&s->query_clock, q->ltime);
  if (q->ltime < s->query_min_time) return false;
  uint64_t cur = s->query_clock;
  if (cur > QUERY_BUFFER && q->ltime < cur - QUERY_BUFFER) return false;
  struct query_slot *sl = &s->queries[q->ltime % QUERY_BUFFER];
  if (sl->used && sl->ltime == q->ltime) {
    for (size_t i = 0; i < sl->n; i++)
      if (sl->ids[i] == q->id) return false;
  } else {
    free(sl->ids);
    sl->ids = NULL;
    sl->n = 0;
    sl->used = true;
    sl->ltime = q->ltime;
  }
  if (sl->n < 64) {
    sl->ids = xrealloc(sl->ids, (sl->n + 1) * sizeof *sl->ids);
    sl->ids[sl->n++] = q->id;
  }
  bool rebroadcast = !(q->flags & SERF_QUERY_FLAG_NO_BROADCAST);
  if (!should_process(s, q)) return rebroadcast;
  if (q->flags & SERF_QUERY_FLAG_ACK)
    send_query_response(s, q, SERF_QUERY_FLAG_ACK, (struct proto_bytes){NULL, 0});
  /* serf's internal queries ("_serf_ping" needs only the ack) never reach the application;
   * the key queries are answered here (serf_keys.c). */
  size_t plen = strlen(INTERNAL_QUERY_PREFIX);
  bool internal = q->name.len >= plen && memcmp(q->name.p, INTERNAL_QUERY_PREFIX, plen) == 0;
  if (internal && q->name.len - plen < 32 && !memchr(q->name.p, 0, q->name.len)) {
    char iname[32];
    memcpy(iname, q->name.p + plen, q->name.len - plen);
    iname[q->name.len - plen] = '\0';
    struct buf ans = BUF_INIT;
    /* The answer travels inside a query response: From, ID, LTime and the envelope take the
     * name plus under 64 bytes of the 1 KiB limit. */
    size_t limit = QUERY_RESPONSE_SIZE_LIMIT - 64 - strlen(s->node_name);
    if (serf_keys_answer(&s->ml, s->keyring_file, iname, q->payload.p, q->payload.len, limit,
                         &ans))
      send_query_response(s, q, 0,
                          (struct proto_bytes){(const uint8_t *)ans.data, (uint32_t)ans.len});
    buf_free(&ans);
  }
  char src[PROTO_NAME_MAX + 1];
  if (!internal && s->cfg.on_query && q->name.p && !memchr(q->name.p, 0, q->name.len) &&
      (q->addr.len == 4 || q->addr.len == 16)) {
    if (!name_ok(q->source_node, src)) src[0] = '\0';
    char *name = xstrndup((const char *)q->name.p, q->name.len);
    struct gossip_query gq = {.ltime = q->ltime, .name = name, .payload = q->payload.p,
                              .payload_len = q->payload.len};
    gq.token.ltime = q->ltime;
    gq.token.id = q->id;
    memcpy(gq.token.addr, q->addr.p, q->addr.len);
    gq.token.addr_len = (uint8_t)q->addr.len;
    gq.token.port = q->port;
    int64_t tmo_ms = q->timeout > 0 ? q->timeout / 1000000 : 0;
    gq.token.deadline = now_ms(s) + (uint64_t)tmo_ms;
    snprintf(gq.token.source_node, sizeof gq.token.source_node, "%s", src);
    s->cfg.on_query(s->cfg.cb_ctx, &gq);
    free(name);
  }
  return rebroadcast;
}

static bool has_name(char **v, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i], name) == 0) return true;
  return false;
}

static void handle_query_response(struct serf *s, const struct serf_query_response_msg *r) {
  struct pending_query *pq = s->queries_out;
  while (pq && pq->ltime != r->ltime) pq = pq->next;
  if (!pq || pq->id != r->id) return; /* not ours, or no longer running */
  char from[PROTO_NAME_MAX + 1];
  if (!name_ok(r->from, from)) return;
  bool ack = r->flags & SERF_QUERY_FLAG_ACK;
  char ***list = ack ? &pq->acks : &pq->responders;
  size_t *n = ack ? &pq->nacks : &pq->nresponders;
  if (has_name(*list, *n, from) || *n >= 65536) return;
  *list = xrealloc(*list, (*n + 1) * sizeof **list);
  (*list)[(*n)++] = xstrdup(from);
  pq->cb(pq->arg, ack ? GOSSIP_QUERY_ACK : GOSSIP_QUERY_RESPONSE, from, r->payload.p, r->payload.len);
}

static void pending_query_free(struct pending_query *pq) {
  for (size_t i = 0; i < pq->nacks; i++) free(pq->acks[i]);
  for (size_t i = 0; i < pq->nresponders; i++) free(pq->responders[i]);
  free(pq->acks);
  free(pq->responders);
  free(pq);
}

static void unlink_query(struct serf *s, struct pending_query *pq) {
  for (struct pending_query **pp = &s->queries_out; *pp; pp = &(*pp)->next) {
    if (*pp == pq) {
      *pp = pq->next;
      return;
    }
  }
}

static void query_done(struct gtimer *t) {
  struct pending_query *pq = container_of(t, struct pending_query, timer);
  struct serf *s = pq->s;
  unlink_query(s, pq);
  pq->cb(pq->arg, GOSSIP_QUERY_DONE, NULL, NULL, 0);
  pending_query_free(pq);
}

static void handle_local_queries(struct gtimer *t) {
  struct serf *s = container_of(t, struct serf, local_query_timer);
  while (s->local_queries && s->state != SERF_SHUTDOWN) {
    struct local_query *lq = s->local_queries;
    s->local_queries = lq->next;
    if (!s->local_queries) s->local_queries_tail = &s->local_queries;
    struct serf_query_msg m;
    if (serf_decode_query((const uint8_t *)lq->raw.data + 1, lq->raw.len - 1, &m) == 0)
      handle_query(s, &m);
    buf_free(&lq->raw);
    free(lq);
  }
}

static void local_queries_free(struct serf *s) {
  while (s->local_queries) {
    struct local_query *lq = s->local_queries;
    s->local_queries = lq->next;
    buf_free(&lq->raw);
    free(lq);
  }
  s->local_queries_tail = &s->local_queries;
}

int serf_query(struct serf *s, const char *name, const void *payload, size_t len,
               const struct gossip_query_params *params, gossip_query_cb cb, void *arg) {
  if (s->state != SERF_ALIVE) return CC_ESHUTDOWN;
  if (!cb || !name) return CC_EINVAL;
  struct gossip_query_params def = {0};
  if (!params) params = &def;
  if (params->nfilter_nodes > 1024 || params->nfilter_tags > SERF_MAX_FILTERS - 1) return CC_ETOOBIG;
  /* Filters: [0][array of names], then one [1][{Expr, Tag}] per tag (serf encodeFilters). */
  struct buf fb[SERF_MAX_FILTERS];
  size_t nf = 0;
  if (params->nfilter_nodes) {
    fb[nf] = (struct buf)BUF_INIT;
    buf_putc(&fb[nf], 0);
    mp_put_array(&fb[nf], (uint32_t)params->nfilter_nodes);
    for (size_t i = 0; i < params->nfilter_nodes; i++) mp_put_str(&fb[nf], params->filter_nodes[i]);
    nf++;
  }
  for (size_t i = 0; i < params->nfilter_tags; i++) {
    fb[nf] = (struct buf)BUF_INIT;
    buf_putc(&fb[nf], 1);
    mp_put_map(&fb[nf], 2);
    mp_put_str(&fb[nf], "Expr");
    mp_put_str(&fb[nf], params->filter_tags[i].value);
    mp_put_str(&fb[nf], "Tag");
    mp_put_str(&fb[nf], params->filter_tags[i].key);
    nf++;
  }
  uint64_t timeout = params->timeout;
  if (!timeout) {
    int n = ml_num_alive_others(&s->ml) + 1;
    int scale = 0;
    for (long long p = 1; p < (long long)n + 1; p *= 10) scale++; /* ceil(log10(n + 1)) */
    timeout = (uint64_t)s->cfg.timing.gossip_interval * QUERY_TIMEOUT_MULT * (uint64_t)scale;
  }
  const struct ml_node *me = ml_local(&s->ml);
  struct serf_query_msg q = {.ltime = s->query_clock,
                             .id = (uint32_t)(ml_rand(&s->ml, 0x7fffffff)),
                             .addr = {me->addr.ip, me->addr.len},
                             .port = me->addr.port,
                             .source_node = proto_str(s->node_name),
                             .nfilters = nf,
                             .flags = params->request_ack ? SERF_QUERY_FLAG_ACK : 0,
                             .timeout = (int64_t)timeout * 1000000,
                             .name = proto_str(name),
                             .payload = {payload, (uint32_t)len}};
  if (!payload) q.payload.p = NULL;
  for (size_t i = 0; i < nf; i++) q.filters[i] = (struct proto_bytes){(const uint8_t *)fb[i].data, (uint32_t)fb[i].len};
  struct buf raw = BUF_INIT;
  serf_encode_query(&raw, &q);
  for (size_t i = 0; i < nf; i++) buf_free(&fb[i]);
  if (raw.len > QUERY_SIZE_LIMIT) {
    buf_free(&raw);
    return CC_ETOOBIG;
  }
  /* Only the next query may reuse this time (serf's Query leaves incrementing to the witness
   * of its own message; bumping here keeps two quick queries apart). */
  s->query_clock++;
  struct pending_query *pq = xcalloc(1, sizeof *pq);
  pq->s = s;
  pq->ltime = q.ltime;
  pq->id = q.id;
  pq->cb = cb;
  pq->arg = arg;
  gtimer_init(&pq->timer, query_done);
  ml_arm(&s->ml, &pq->timer, now_ms(s) + timeout);
  pq->next = s->queries_out;
  s->queries_out = pq;
  struct local_query *lq = xcalloc(1, sizeof *lq);
  lq->raw = raw; /* takes the bytes; the broadcast below copies them */
  *s->local_queries_tail = lq;
  s->local_queries_tail = &lq->next;
  ml_arm(&s->ml, &s->local_query_timer, now_ms(s));
  bcast_queue(&s->query_bcasts, NULL, raw.data, raw.len, NULL, NULL);
  ml_rearm(&s->ml);
  return 0;
}

int serf_query_respond(struct serf *s, const struct gossip_query_token *t, const void *payload,
                       size_t len) {
  if (s->state == SERF_SHUTDOWN) return CC_ESHUTDOWN;
  if (now_ms(s) > t->deadline) return CC_ETIMEOUT;
  struct gossip_addr to;
  if (gossip_addr_from_bytes(t->addr, t->addr_len, t->port, &to)) return CC_EINVAL;
  struct serf_query_response_msg r = {.ltime = t->ltime, .id = t->id,
                                      .from = proto_str(s->node_name),
                                      .payload = {payload, (uint32_t)len}};
  if (!payload) r.payload.p = NULL;
  struct buf b = BUF_INIT;
  serf_encode_query_response(&b, &r);
  if (b.len > QUERY_RESPONSE_SIZE_LIMIT) {
    buf_free(&b);
    return CC_ETOOBIG;
  }
  ml_send_user(&s->ml, &to, b.data, b.len);
  buf_free(&b);
  return 0;
}

/* ---- the memberlist delegate ---- */

static void node_meta(void *ctx, struct buf *out, size_t limit) {
  struct serf *s = ctx;
  serf_encode_tags(out, (const char *const *)s->tag_keys, (const char *const *)s->tag_values,
                   s->ntags);
  (void)limit;
}

/* serf's relay envelope: [relay][{DestAddr:{IP,Port,Zone}, DestName}][message]. */
static void handle_relay(struct serf *s, const uint8_t *p, size_t len);

static void notify_msg(void *ctx, const uint8_t *buf, size_t len) {
  struct serf *s = ctx;
  if (len == 0 || s->state == SERF_SHUTDOWN) return;
  uint8_t t = buf[0];
  const uint8_t *p = buf + 1;
  size_t plen = len - 1;
  bool rebroadcast = false;
  struct bcast_queue *q = &s->bcasts;
  char name[PROTO_NAME_MAX + 1];
  switch (t) {
  case SERF_MSG_LEAVE: {
    struct serf_leave_msg m;
    if (serf_decode_leave(p, plen, &m) || !name_ok(m.node, name)) break;
    rebroadcast = handle_leave_intent(s, name, m.ltime, m.prune);
    break;
  }
  case SERF_MSG_JOIN: {
    struct serf_join_msg m;
    if (serf_decode_join(p, plen, &m) || !name_ok(m.node, name)) break;
    rebroadcast = handle_join_intent(s, name, m.ltime);
    break;
  }
  case SERF_MSG_USER_EVENT: {
    struct serf_user_event_msg m;
    if (serf_decode_user_event(p, plen, &m)) break;
    rebroadcast = handle_user_event(s, m.ltime, m.name, m.payload, m.cc, false);
    q = &s->event_bcasts;
    break;
  }
  case SERF_MSG_QUERY: {
    struct serf_query_msg m;
    if (serf_decode_query(p, plen, &m)) break;
    rebroadcast = handle_query(s, &m);
    q = &s->query_bcasts;
    break;
  }
  case SERF_MSG_QUERY_RESPONSE: {
    struct serf_query_response_msg m;
    if (serf_decode_query_response(p, plen, &m) == 0) handle_query_response(s, &m);
    break;
  }
  case SERF_MSG_RELAY:
    handle_relay(s, p, plen);
    break;
  default:
    log_debug(MOD, "received serf message of unknown type %u", t);
    break;
  }
  if (rebroadcast) bcast_queue(q, NULL, buf, len, NULL, NULL);
}

static void get_broadcasts(void *ctx, size_t overhead, size_t limit, struct bcast_out *out) {
  struct serf *s = ctx;
  int n = (int)map_count(&s->members);
  size_t used = bcast_get(&s->bcasts, n, overhead, limit, PROTO_USER, out);
  if (used < limit) used += bcast_get(&s->query_bcasts, n, overhead, limit - used, PROTO_USER, out);
  if (used < limit) bcast_get(&s->event_bcasts, n, overhead, limit - used, PROTO_USER, out);
}

static void local_state(void *ctx, bool join, struct buf *out) {
  struct serf *s = ctx;
  (void)join;
  size_t nm = map_count(&s->members);
  struct serf_pp_status *status = nm ? xcalloc(nm, sizeof *status) : NULL;
  size_t i = 0;
  for (struct map_iter it = map_iter_start(&s->members); map_iter_next(&it);) {
    const struct serf_member *m = it.entry->value;
    status[i].name = proto_str(m->name);
    status[i].ltime = m->status_ltime;
    i++;
  }
  struct proto_bytes *left = s->left.n ? xcalloc(s->left.n, sizeof *left) : NULL;
  for (size_t j = 0; j < s->left.n; j++) left[j] = proto_str(s->left.v[j]->name);
  struct serf_pp_bucket buckets[EVENT_BUFFER];
  struct serf_pp_event *flat = NULL;
  size_t total = 0;
  for (size_t j = 0; j < EVENT_BUFFER; j++) total += s->events[j].used ? s->events[j].n : 0;
  if (total) flat = xcalloc(total, sizeof *flat);
  size_t k = 0;
  for (size_t j = 0; j < EVENT_BUFFER; j++) {
    const struct event_slot *sl = &s->events[j];
    buckets[j] = (struct serf_pp_bucket){.nil = !sl->used, .ltime = sl->ltime, .events = flat ? flat + k : NULL,
                                         .nevents = sl->used ? sl->n : 0};
    if (!sl->used) continue;
    for (size_t e = 0; e < sl->n; e++) {
      flat[k].ltime = sl->ltime;
      flat[k].name = proto_str(sl->events[e].name);
      flat[k].payload = (struct proto_bytes){sl->events[e].payload, (uint32_t)sl->events[e].len};
      k++;
    }
  }
  serf_encode_push_pull(out, s->clock, status, nm, left, s->left.n, s->event_clock, buckets,
                        EVENT_BUFFER, s->query_clock);
  free(flat);
  free(left);
  free(status);
}

static void merge_remote_state(void *ctx, const uint8_t *p, size_t len, bool join) {
  struct serf *s = ctx;
  if (len == 0 || p[0] != SERF_MSG_PUSH_PULL) {
    log_error(MOD, "remote state has bad type prefix");
    return;
  }
  struct serf_push_pull_msg pp;
  if (serf_decode_push_pull(p + 1, len - 1, &pp)) {
    log_error(MOD, "failed to decode remote state");
    return;
  }
  /* Witness one less than theirs: their clock is the next time they would use. */
  if (pp.ltime > 0) witness(&s->clock, pp.ltime - 1);
  if (pp.event_ltime > 0) witness(&s->event_clock, pp.event_ltime - 1);
  if (pp.query_ltime > 0) witness(&s->query_clock, pp.query_ltime - 1);

  struct map status, leftset;
  map_init(&status);
  map_init(&leftset);
  for (size_t i = 0; i < pp.nstatus; i++)
    map_put(&status, pp.status[i].name.p, pp.status[i].name.len, &pp.status[i]);
  char name[PROTO_NAME_MAX + 1];
  for (size_t i = 0; i < pp.nleft; i++) {
    if (!name_ok(pp.left[i], name)) continue;
    map_put(&leftset, name, strlen(name), &pp.left[i]);
    const struct serf_pp_status *st = map_get(&status, pp.left[i].p, pp.left[i].len);
    handle_leave_intent(s, name, (st ? st->ltime : 0) + 1, false);
  }
  for (size_t i = 0; i < pp.nstatus; i++) {
    if (!name_ok(pp.status[i].name, name) || map_get(&leftset, name, strlen(name))) continue;
    handle_join_intent(s, name, pp.status[i].ltime);
  }
  /* Joining with "ignore old events" (Consul always does): do not replay their history. */
  if (join && s->joins_in_flight > 0 && pp.event_ltime > s->event_min_time)
    s->event_min_time = pp.event_ltime;
  for (size_t i = 0; i < pp.nevents; i++)
    handle_user_event(s, pp.events[i].ltime, pp.events[i].name, pp.events[i].payload, false, false);
  map_free(&status);
  map_free(&leftset);
  serf_push_pull_free(&pp);
}

static void handle_relay(struct serf *s, const uint8_t *p, size_t len) {
  struct mp_r r;
  uint32_t n;
  mp_r_init(&r, p, len);
  if (mp_read_map(&r, &n)) return;
  const uint8_t *ip = NULL;
  uint32_t iplen = 0;
  uint64_t port = 0;
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *k;
    uint32_t klen;
    if (mp_read_raw(&r, 64, &k, &klen)) return;
    if (mp_key_is(k, klen, "DestAddr")) {
      uint32_t an;
      if (mp_read_map(&r, &an)) return;
      for (uint32_t j = 0; j < an; j++) {
        const uint8_t *k2;
        uint32_t k2len;
        int rc = mp_read_raw(&r, 64, &k2, &k2len);
        if (!rc && mp_key_is(k2, k2len, "IP"))
          rc = mp_read_raw(&r, 16, &ip, &iplen);
        else if (!rc && mp_key_is(k2, k2len, "Port"))
          rc = mp_read_uint(&r, UINT16_MAX, &port);
        else if (!rc)
          rc = mp_skip(&r);
        if (rc) return;
      }
    } else if (mp_skip(&r)) {
      return;
    }
  }
  struct gossip_addr to;
  if (!ip || gossip_addr_from_bytes(ip, iplen, (uint16_t)port, &to)) return;
  if (mp_r_left(&r) == 0) return;
  ml_send_user(&s->ml, &to, r.p, mp_r_left(&r));
}

/* ---- reaping and reconnecting ---- */

static void reap_list(struct serf *s, struct ptr_list *l, uint64_t now, uint64_t timeout) {
  for (size_t i = 0; i < l->n;) {
    struct serf_member *m = l->v[i];
    if (now - m->leave_time <= timeout) {
      i++;
      continue;
    }
    log_info(MOD, "member reap: %s", m->name);
    erase(s, m); /* removes it from l */
  }
}

static void reap_tick(struct gtimer *t) {
  struct serf *s = container_of(t, struct serf, reap_timer);
  uint64_t now = now_ms(s);
  ml_arm(&s->ml, &s->reap_timer, now + s->cfg.reap_interval);
  reap_list(s, &s->failed, now, s->cfg.reconnect_timeout);
  reap_list(s, &s->left, now, s->cfg.tombstone_timeout);
  /* Collect first: the map must not change during a walk. */
  char **expired = NULL;
  size_t nexp = 0;
  for (struct map_iter it = map_iter_start(&s->intents); map_iter_next(&it);) {
    struct intent *in = it.entry->value;
    if (now - in->wall > s->cfg.recent_intent_timeout) {
      expired = xrealloc(expired, (nexp + 1) * sizeof *expired);
      expired[nexp++] = xstrdup(it.entry->key);
    }
  }
  for (size_t i = 0; i < nexp; i++) {
    free(map_del(&s->intents, expired[i], strlen(expired[i])));
    free(expired[i]);
  }
  free(expired);
}

static void reconnect_tick(struct gtimer *t) {
  struct serf *s = container_of(t, struct serf, reconnect_timer);
  ml_arm(&s->ml, &s->reconnect_timer, now_ms(s) + s->cfg.reconnect_interval);
  size_t nfailed = s->failed.n;
  if (nfailed == 0 || s->state != SERF_ALIVE) return;
  /* Try with probability failed/alive, so a large cluster does not hammer the failed. */
  double alive = (double)map_count(&s->members) - (double)nfailed - (double)s->left.n;
  if (alive < 1) alive = 1;
  double prob = (double)nfailed / alive;
  double roll = (double)ml_rand(&s->ml, 1000000) / 1000000.0;
  if (roll > prob) return;
  struct serf_member *m = s->failed.v[ml_rand(&s->ml, nfailed)];
  char addr[GOSSIP_ADDR_STRLEN], target[PROTO_NAME_MAX + GOSSIP_ADDR_STRLEN + 2];
  gossip_addr_format(&m->addr, addr, sizeof addr);
  snprintf(target, sizeof target, "%s/%s", m->name, addr);
  log_info(MOD, "attempting reconnect to %s %s", m->name, addr);
  const char *one[1] = {target};
  ml_join(&s->ml, one, 1, m->addr.port, NULL, NULL);
}

/* ---- join / leave / force-leave ---- */

struct join_req {
  struct serf *s;
  void (*cb)(void *arg, int nsuccess, int err);
  void *arg;
};

static void join_done(void *arg, int nsuccess, int err) {
  struct join_req *jr = arg;
  struct serf *s = jr->s;
  s->joins_in_flight--;
  /* Announce ourselves with a join intent once anyone heard us. */
  if (nsuccess > 0 && s->state == SERF_ALIVE) broadcast_join(s, s->clock);
  if (s->state == SERF_SHUTDOWN) err = CC_ECANCELED;
  if (jr->cb) jr->cb(jr->arg, nsuccess, err);
  free(jr);
}

int serf_join(struct serf *s, const char *const *addrs, size_t n, uint16_t default_port,
              void (*cb)(void *arg, int nsuccess, int err), void *arg) {
  if (s->state != SERF_ALIVE) return CC_ESHUTDOWN;
  struct join_req *jr = xcalloc(1, sizeof *jr);
  jr->s = s;
  jr->cb = cb;
  jr->arg = arg;
  s->joins_in_flight++;
  int rc = ml_join(&s->ml, addrs, n, default_port, join_done, jr);
  if (rc) {
    s->joins_in_flight--;
    free(jr);
  }
  ml_rearm(&s->ml);
  return rc;
}

static void leave_step(struct serf *s, int err);

static void leave_intent_sent(void *arg) {
  struct serf *s = arg;
  if (s->leave_phase == 1 && s->state != SERF_SHUTDOWN) leave_step(s, 0);
}

static void ml_left(void *arg, int err) {
  struct serf *s = arg;
  if (s->leave_phase == 2) leave_step(s, err);
}

static void leave_tick(struct gtimer *t) {
  struct serf *s = container_of(t, struct serf, leave_timer);
  leave_step(s, s->leave_phase == 1 ? CC_ETIMEOUT : 0);
}

/* Phases: 1 leave intent broadcast (up to BroadcastTimeout), 2 memberlist leave (our death
 * as "left"), 3 LeavePropagateDelay for it to spread, then done. */
static void leave_step(struct serf *s, int err) {
  if (err && !s->leave_err) s->leave_err = err;
  ml_cancel(&s->ml, &s->leave_timer);
  if (s->leave_phase == 1) {
    s->leave_phase = 2;
    ml_leave(&s->ml, s->cfg.broadcast_timeout, ml_left, s);
    return;
  }
  if (s->leave_phase == 2) {
    s->leave_phase = 3;
    ml_arm(&s->ml, &s->leave_timer, now_ms(s) + s->cfg.leave_propagate_delay);
    return;
  }
  s->leave_phase = 0;
  if (s->state != SERF_SHUTDOWN) s->state = SERF_LEFT;
  void (*cb)(void *, int) = s->leave_cb;
  s->leave_cb = NULL;
  if (cb) cb(s->leave_arg, s->leave_err);
}

static bool has_alive_members(struct serf *s) {
  for (struct map_iter it = map_iter_start(&s->members); map_iter_next(&it);) {
    const struct serf_member *m = it.entry->value;
    if (strcmp(m->name, s->node_name) != 0 && m->status == GOSSIP_STATUS_ALIVE) return true;
  }
  return false;
}

int serf_leave(struct serf *s, void (*cb)(void *arg, int err), void *arg) {
  if (s->state == SERF_LEAVING) return CC_ECONFLICT;
  if (s->state != SERF_ALIVE) return CC_ESHUTDOWN;
  s->state = SERF_LEAVING;
  s->leave_cb = cb;
  s->leave_arg = arg;
  s->leave_err = 0;
  s->leave_phase = 1;
  struct serf_leave_msg msg = {.ltime = s->clock, .node = proto_str(s->node_name)};
  s->clock++;
  handle_leave_intent(s, s->node_name, msg.ltime, false);
  if (has_alive_members(s)) {
    struct buf b = BUF_INIT;
    serf_encode_leave(&b, &msg);
    queue_serf(s, &s->bcasts, &b, leave_intent_sent, s);
    buf_free(&b);
    ml_arm(&s->ml, &s->leave_timer, now_ms(s) + s->cfg.broadcast_timeout);
  } else {
    ml_arm(&s->ml, &s->leave_timer, now_ms(s)); /* nothing to wait for */
  }
  ml_rearm(&s->ml);
  return 0;
}

int serf_force_leave(struct serf *s, const char *node, bool prune) {
  if (!node || !*node || strlen(node) > PROTO_NAME_MAX) return CC_EINVAL;
  struct serf_leave_msg msg = {.ltime = s->clock, .node = proto_str(node), .prune = prune};
  s->clock++;
  handle_leave_intent(s, node, msg.ltime, prune);
  if (has_alive_members(s)) {
    struct buf b = BUF_INIT;
    serf_encode_leave(&b, &msg);
    queue_serf(s, &s->bcasts, &b, NULL, NULL);
    buf_free(&b);
  }
  ml_rearm(&s->ml);
  return 0;
}

/* ---- tags ---- */

static void tags_free(struct serf *s) {
  for (size_t i = 0; i < s->ntags; i++) {
    free(s->tag_keys[i]);
    free(s->tag_values[i]);
  }
  free(s->tag_keys);
  free(s->tag_values);
  s->tag_keys = s->tag_values = NULL;
  s->ntags = 0;
}

/* Validates and installs tags (sorted by key, duplicates: the last wins). */
static int tags_set(struct serf *s, const struct gossip_tag *tags, size_t n) {
  if (n > SERF_MAX_TAGS) return CC_ETOOBIG;
  struct gossip_tag *sorted = n ? xcalloc(n, sizeof *sorted) : NULL;
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (!tags[i].key || !tags[i].value) {
      free(sorted);
      return CC_EINVAL;
    }
    size_t j = 0;
    for (; j < m; j++)
      if (strcmp(sorted[j].key, tags[i].key) == 0) break;
    sorted[j] = tags[i];
    if (j == m) m++;
  }
  if (m) qsort(sorted, m, sizeof *sorted, cmp_tag);
  struct buf b = BUF_INIT;
  const char **k = m ? xcalloc(m, sizeof *k) : NULL, **v = m ? xcalloc(m, sizeof *v) : NULL;
  for (size_t i = 0; i < m; i++) {
    k[i] = sorted[i].key;
    v[i] = sorted[i].value;
  }
  serf_encode_tags(&b, k, v, m);
  int rc = b.len > PROTO_META_MAX ? CC_ETOOBIG : 0;
  if (rc == 0) {
    tags_free(s);
    s->tag_keys = m ? xcalloc(m, sizeof *s->tag_keys) : NULL;
    s->tag_values = m ? xcalloc(m, sizeof *s->tag_values) : NULL;
    for (size_t i = 0; i < m; i++) {
      s->tag_keys[i] = xstrdup(k[i]);
      s->tag_values[i] = xstrdup(v[i]);
    }
    s->ntags = m;
  }
  free(k);
  free(v);
  free(sorted);
  buf_free(&b);
  return rc;
}

int serf_set_tags(struct serf *s, const struct gossip_tag *tags, size_t n) {
  int rc = tags_set(s, tags, n);
  if (rc) return rc;
  ml_update_node(&s->ml);
  return 0;
}

/* ---- queries about members ---- */

int serf_members(struct serf *s, struct gossip_member **out, size_t *n) {
  size_t cnt = map_count(&s->members), i = 0;
  struct gossip_member *v = xcalloc(cnt ? cnt : 1, sizeof *v);
  for (struct map_iter it = map_iter_start(&s->members); map_iter_next(&it);)
    member_export(it.entry->value, &v[i++]);
  *out = v;
  *n = cnt;
  return 0;
}

int serf_local_member(struct serf *s, struct gossip_member *out) {
  const struct serf_member *m = member_get(s, s->node_name);
  if (!m) return CC_ENOTFOUND;
  member_export(m, out);
  return 0;
}

enum gossip_status serf_member_status(struct serf *s, const char *name) {
  const struct serf_member *m = member_get(s, name);
  return m ? m->status : GOSSIP_STATUS_NONE;
}

size_t serf_num_members(struct serf *s) { return map_count(&s->members); }
struct ml *serf_ml(struct serf *s) { return &s->ml; }
int serf_health_score(struct serf *s) { return s->ml.awareness; }

/* ---- lifecycle ---- */

/* Zero means "the default" for every timer and size (a zero reap interval would spin). */
static void fill_defaults(struct gossip_config *c) {
  struct gossip_config d;
  gossip_config_default(&d);
#define DEF(f) if (!c->f) c->f = d.f
  DEF(timing.probe_interval);
  DEF(timing.probe_timeout);
  DEF(timing.gossip_interval);
  DEF(timing.gossip_to_the_dead);
  DEF(timing.tcp_timeout);
  DEF(timing.indirect_checks);
  DEF(timing.gossip_nodes);
  DEF(timing.retransmit_mult);
  DEF(timing.suspicion_mult);
  DEF(timing.suspicion_max_timeout_mult);
  DEF(timing.awareness_max_multiplier);
  DEF(timing.udp_buffer_size);
  DEF(reconnect_timeout);
  DEF(tombstone_timeout);
  DEF(reap_interval);
  DEF(reconnect_interval);
  DEF(recent_intent_timeout);
  DEF(broadcast_timeout);
  DEF(leave_propagate_delay);
  DEF(user_event_size_limit);
  DEF(protocol_version);
#undef DEF
  /* push_pull_interval 0 is memberlist's "no periodic push-pull"; keep it. A packet budget
   * below the largest single message would stall dissemination. */
  if (c->timing.udp_buffer_size < 576) c->timing.udp_buffer_size = 576;
  if (c->timing.udp_buffer_size > 65000) c->timing.udp_buffer_size = 65000;
}

struct serf *serf_new(const struct gossip_config *cfg, const struct gossip_addr *advertise,
                      struct gossip_io *io, char *errbuf, size_t errlen) {
  if (!cfg->node_name || !*cfg->node_name || strlen(cfg->node_name) > PROTO_NAME_MAX) {
    snprintf(errbuf, errlen, "node name must be 1 to %d bytes", PROTO_NAME_MAX);
    return NULL;
  }
  if (cfg->user_event_size_limit > USER_EVENT_SANE_LIMIT) {
    snprintf(errbuf, errlen, "user event size limit exceeds limit of %d bytes",
             USER_EVENT_SANE_LIMIT);
    return NULL;
  }
  uint8_t pv = cfg->protocol_version ? cfg->protocol_version : 4;
  if (pv < 2 || pv > 5) {
    snprintf(errbuf, errlen, "protocol version '%u' out of range [2, 5]", pv);
    return NULL;
  }
  struct keyring keys = {0};
  if (cfg->keyring_file) {
    const char *enc = cfg->nencrypt_keys ? cfg->encrypt_keys[0] : NULL;
    if (keyring_setup(cfg->keyring_file, enc, &keys, errbuf, errlen)) return NULL;
  }
  for (size_t i = 0; !cfg->keyring_file && i < cfg->nencrypt_keys; i++) {
    uint8_t key[KEYRING_KEY_MAX];
    size_t klen;
    char why[64];
    int rc = keyring_decode(cfg->encrypt_keys[i], key, &klen, why, sizeof why);
    if (!rc) rc = keyring_add(&keys, key, klen);
    if (rc) {
      snprintf(errbuf, errlen, "Invalid key: %s", rc == CC_ETOOBIG ? "too many keys" : why);
      return NULL;
    }
  }
  struct serf *s = xcalloc(1, sizeof *s);
  const struct gossip_tag *tags = cfg->tags;
  size_t ntags = cfg->ntags;
  s->cfg = *cfg;
  fill_defaults(&s->cfg);
  cfg = &s->cfg; /* from here on, our copy (with defaults) */
  s->node_name = xstrdup(cfg->node_name);
  s->cfg.node_name = s->node_name;
  s->cfg.bind_addr = s->cfg.advertise_addr = NULL; /* borrowed strings we do not keep */
  s->cfg.tags = NULL;
  s->cfg.ntags = 0;
  if (tags_set(s, tags, ntags)) {
    snprintf(errbuf, errlen, "encoded length of tags exceeds limit of %d bytes", PROTO_META_MAX);
    free(s->node_name);
    free(s);
    return NULL;
  }
  s->io = io;
  map_init(&s->members);
  map_init(&s->intents);
  bcast_init(&s->bcasts, (int)cfg->timing.retransmit_mult, MAX_QUEUE_DEPTH);
  bcast_init(&s->event_bcasts, (int)cfg->timing.retransmit_mult, MAX_QUEUE_DEPTH);
  bcast_init(&s->query_bcasts, (int)cfg->timing.retransmit_mult, MAX_QUEUE_DEPTH);
  /* Clocks start at 1, as serf's Create increments each once. */
  s->clock = s->event_clock = s->query_clock = 1;
  s->state = SERF_ALIVE;

  struct ml_config mc;
  ml_config_lan(&mc);
  snprintf(mc.name, sizeof mc.name, "%s", s->node_name);
  mc.advertise = *advertise;
  const struct gossip_timing *t = &cfg->timing;
  mc.probe_interval = t->probe_interval;
  mc.probe_timeout = t->probe_timeout;
  mc.gossip_interval = t->gossip_interval;
  mc.push_pull_interval = t->push_pull_interval;
  mc.gossip_to_the_dead = t->gossip_to_the_dead;
  mc.tcp_timeout = t->tcp_timeout;
  mc.indirect_checks = (int)t->indirect_checks;
  mc.gossip_nodes = (int)t->gossip_nodes;
  mc.retransmit_mult = (int)t->retransmit_mult;
  mc.suspicion_mult = (int)t->suspicion_mult;
  mc.suspicion_max_timeout_mult = (int)t->suspicion_max_timeout_mult;
  mc.awareness_max_multiplier = (int)(t->awareness_max_multiplier ? t->awareness_max_multiplier : 1);
  mc.udp_buffer_size = t->udp_buffer_size;
  mc.enable_compression = !cfg->disable_compression;
  mc.vsn[5] = pv; /* memberlist 1..5 speaking 2; serf delegate 2..5 speaking pv */
  struct ml_delegate d = {.ctx = s,
                          .node_meta = node_meta,
                          .notify_msg = notify_msg,
                          .get_broadcasts = get_broadcasts,
                          .local_state = local_state,
                          .merge_remote_state = merge_remote_state,
                          .notify_join = notify_join,
                          .notify_leave = notify_leave,
                          .notify_update = notify_update};
  mc.verify_incoming = cfg->encrypt_verify_incoming;
  mc.verify_outgoing = cfg->encrypt_verify_outgoing;
  mc.keyring = keys;
  s->cfg.encrypt_keys = NULL; /* borrowed; the keyring holds them now */
  s->cfg.nencrypt_keys = 0;
  s->keyring_file = cfg->keyring_file ? xstrdup(cfg->keyring_file) : NULL;
  s->cfg.keyring_file = NULL;
  ml_init(&s->ml, &mc, io, &d);
  gtimer_init(&s->reap_timer, reap_tick);
  gtimer_init(&s->reconnect_timer, reconnect_tick);
  gtimer_init(&s->leave_timer, leave_tick);
  gtimer_init(&s->local_event_timer, deliver_local_events);
  s->local_tail = &s->local_events;
  gtimer_init(&s->local_query_timer, handle_local_queries);
  s->local_queries_tail = &s->local_queries;
  return s;
}

void serf_start(struct serf *s) {
  uint64_t now = ml_now(&s->ml);
  ml_arm(&s->ml, &s->reap_timer, now + s->cfg.reap_interval);
  ml_arm(&s->ml, &s->reconnect_timer, now + s->cfg.reconnect_interval);
  ml_start(&s->ml);
}

void serf_shutdown(struct serf *s) {
  if (s->state == SERF_SHUTDOWN) return;
  s->state = SERF_SHUTDOWN;
  s->leave_phase = 0;
  if (s->leave_cb) {
    void (*cb)(void *, int) = s->leave_cb;
    s->leave_cb = NULL;
    cb(s->leave_arg, CC_ECANCELED);
  }
  ml_cancel(&s->ml, &s->reap_timer);
  ml_cancel(&s->ml, &s->reconnect_timer);
  ml_cancel(&s->ml, &s->leave_timer);
  ml_cancel(&s->ml, &s->local_event_timer);
  ml_cancel(&s->ml, &s->local_query_timer);
  /* Queries still running end now, as if timed out. */
  while (s->queries_out) {
    struct pending_query *pq = s->queries_out;
    s->queries_out = pq->next;
    ml_cancel(&s->ml, &pq->timer);
    pq->cb(pq->arg, GOSSIP_QUERY_DONE, NULL, NULL, 0);
    pending_query_free(pq);
  }
  ml_shutdown(&s->ml); /* pending joins complete with CC_ECANCELED */
}

void serf_free(struct serf *s) {
  if (!s) return;
  serf_shutdown(s);
  ml_free(&s->ml);
  for (struct map_iter it = map_iter_start(&s->members); map_iter_next(&it);)
    member_free(it.entry->value);
  map_free(&s->members);
  for (struct map_iter it = map_iter_start(&s->intents); map_iter_next(&it);) free(it.entry->value);
  map_free(&s->intents);
  free(s->failed.v);
  free(s->left.v);
  bcast_reset(&s->bcasts);
  bcast_reset(&s->event_bcasts);
  bcast_reset(&s->query_bcasts);
  for (size_t i = 0; i < EVENT_BUFFER; i++) slot_clear(&s->events[i]);
  for (size_t i = 0; i < QUERY_BUFFER; i++) free(s->queries[i].ids);
  local_events_free(s);
  local_queries_free(s);
  tags_free(s);
  free(s->keyring_file);
  free(s->node_name);
  free(s);
}
