/* swim.c -- SWIM failure detection with Lifeguard, as hashicorp/memberlist does it
 * (state.go, net.go, memberlist.go). The design essay is docs/gossip.md; in short:
 *
 * Probing. Every ProbeInterval we ping the next member in a shuffled round-robin order (each
 * member is probed once per round, which bounds first detection to one round even in the
 * worst case; the order is reshuffled at each wrap). No ack within ProbeTimeout: we ask
 * IndirectChecks random members to ping it for us (with a nack request so a relay that hears
 * nothing still answers), and try a TCP ping in case only UDP is broken. Nothing by the end of
 * the (health-scaled) probe interval: we suspect it.
 *
 * Lifeguard. Our own health score (`awareness`) rises when probes fail without the expected
 * nacks (likely our fault, not theirs: we are slow or our network is bad) and when we must
 * refute suspicion of ourselves; it falls on every successful probe. The probe interval is
 * multiplied by (score + 1), so an unhealthy member probes less and accuses less. Suspicion
 * timeouts start long and shrink with independent confirmations (suspicion.h).
 *
 * Dissemination. alive/suspect/dead messages go into a retransmit-limited queue (broadcast.h)
 * and ride on every packet we send (piggyback) plus a gossip round every GossipInterval to
 * GossipNodes random members. Incarnation numbers order news about a member: only the member
 * itself raises its own, to refute a suspicion or death. Push-pull (pushpull.c) does a full
 * state exchange over TCP on join and every PushPullInterval (scaled up in large clusters).
 *
 * Departures from memberlist, each deliberate:
 *  - one event loop, no goroutines: the probe is a small state machine driven by timers;
 *  - left nodes are removed after GossipToTheDeadTime like dead ones (this memberlist version
 *    keeps them forever; newer ones do as we do);
 *  - we add the CRC whenever we know the receiver speaks protocol 5, not only on the gossip
 *    path (Go looks nodes up by IP there, which never matches a name);
 *  - names with a NUL byte are refused (we keep names as C strings). */
#include "gossip/swim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/crypt.h"
#include "gossip/lzw.h"
#include "gossip/proto.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

#define MOD "gossip"
#define COMPOUND_HEADER_OVERHEAD 2 /* memberlist compoundHeaderOverhead */
#define COMPOUND_OVERHEAD 2        /* per message in a compound */
#define USER_MSG_OVERHEAD 1
#define MAX_NESTING 4              /* compound/compress inside each other */
#define DECOMPRESS_MAX (1u << 20)  /* a packet never legitimately inflates past this */
/* memberlist tries to compress every packet and keeps the result if smaller. LZW's 9-bit codes
 * plus the 12-byte compress envelope never win below about 100 bytes (a lone 75-byte ping
 * grows to 86; two messages, 150 bytes, shrink to 122), so we skip the attempt for the small
 * packets that make up almost all steady-state traffic: same bytes on the wire, less CPU. */
#define COMPRESS_MIN 128

struct ml_probe {
  char *name;
  uint32_t incarnation;
  int state; /* the target's state when the probe began */
  struct gossip_addr addr;
  uint8_t pmax;
  uint32_t seq;
  uint64_t sent, deadline;
  int expected_nacks, nacks;
  bool tcp_ok;
  struct gtimer timeout_timer, deadline_timer;
  struct ml *m;
};

/* An indirect ping we are relaying for someone else. */
struct ml_ack {
  uint32_t seq, orig_seq;
  struct gossip_addr requester;
  char *requester_name;
  bool want_nack;
  struct gtimer timer;
  struct ml *m;
};

static void probe_tick(struct gtimer *t);
static void gossip_tick(struct gtimer *t);
static void push_pull_tick(struct gtimer *t);
static void leave_timeout(struct gtimer *t);
static void suspicion_fired(struct gtimer *t);
static void dead_node(struct ml *m, const struct proto_suspect *d);
static void leave_broadcast_done(void *arg);

void ml_config_lan(struct ml_config *c) {
  memset(c, 0, sizeof *c);
  c->probe_interval = 1000;
  c->probe_timeout = 500;
  c->gossip_interval = 200;
  c->push_pull_interval = 30000;
  c->gossip_to_the_dead = 30000;
  c->tcp_timeout = 10000;
  c->indirect_checks = 3;
  c->gossip_nodes = 3;
  c->retransmit_mult = 4;
  c->suspicion_mult = 4;
  c->suspicion_max_timeout_mult = 6;
  c->awareness_max_multiplier = 8;
  c->udp_buffer_size = 1400;
  c->enable_compression = true;
  /* memberlist protocol 1..5 speaking 2 (serf's ProtocolVersionMap), serf delegate 2..5. */
  const uint8_t vsn[6] = {1, 5, 2, 2, 5, 4};
  memcpy(c->vsn, vsn, 6);
}

/* ---- small helpers ---- */

uint64_t ml_now(struct ml *m) { return m->io->ops->now(m->io); }

uint64_t ml_rand(struct ml *m, uint64_t n) { return n ? m->io->ops->random(m->io) % n : 0; }

static void rearm_wake(struct ml *m) {
  if (m->shutdown) return;
  m->io->ops->wake_at(m->io, gtimers_next(&m->timers));
}

void ml_rearm(struct ml *m) { rearm_wake(m); }

void ml_arm(struct ml *m, struct gtimer *t, uint64_t due) { gtimers_arm(&m->timers, t, due); }
void ml_cancel(struct ml *m, struct gtimer *t) { gtimers_cancel(&m->timers, t); }

void ml_run_timers(struct ml *m) {
  if (m->shutdown) return;
  struct gtimer *t;
  uint64_t now = ml_now(m);
  while ((t = gtimers_pop_due(&m->timers, now)) != NULL) {
    t->cb(t);
    if (m->shutdown) return;
  }
  rearm_wake(m);
}

static void sink_wake(void *ctx) { ml_run_timers(ctx); }

struct ml_node *ml_find(struct ml *m, const char *name) {
  return map_get(&m->node_map, name, strlen(name));
}

const struct ml_node *ml_local(struct ml *m) { return ml_find(m, m->cfg.name); }

int ml_num_nodes(const struct ml *m) { return (int)m->nnodes; }

int ml_num_alive_others(const struct ml *m) {
  int n = 0;
  for (size_t i = 0; i < m->nnodes; i++) {
    const struct ml_node *nd = m->nodes[i];
    if (strcmp(nd->name, m->cfg.name) != 0 && nd->state != PROTO_STATE_DEAD &&
        nd->state != PROTO_STATE_LEFT)
      n++;
  }
  return n;
}

static bool dead_or_left(const struct ml_node *n) {
  return n->state == PROTO_STATE_DEAD || n->state == PROTO_STATE_LEFT;
}

static bool is_local(const struct ml *m, const char *name) { return strcmp(name, m->cfg.name) == 0; }

/* Copies wire bytes into a C string; refuses NULs. */
static bool name_of(struct proto_bytes b, char out[PROTO_NAME_MAX + 1]) {
  if (b.len == 0 || b.len > PROTO_NAME_MAX || memchr(b.p, 0, b.len)) return false;
  memcpy(out, b.p, b.len);
  out[b.len] = '\0';
  return true;
}

static void awareness_delta(struct ml *m, int delta) {
  int s = m->awareness + delta;
  if (s < 0) s = 0;
  if (s > m->cfg.awareness_max_multiplier - 1) s = m->cfg.awareness_max_multiplier - 1;
  if (s != m->awareness) log_debug(MOD, "health score now %d", s);
  m->awareness = s;
}

/* memberlist kRandomNodes: up to 3n random picks, keeping k distinct that pass the filter. */
typedef bool (*node_filter)(struct ml *m, const struct ml_node *n, const void *arg);

static size_t k_random_nodes(struct ml *m, size_t k, node_filter skip, const void *arg,
                             struct ml_node **out) {
  size_t got = 0, n = m->nnodes;
  for (size_t i = 0; i < 3 * n && got < k; i++) {
    struct ml_node *nd = m->nodes[ml_rand(m, n)];
    if (skip(m, nd, arg)) continue;
    bool dup = false;
    for (size_t j = 0; j < got; j++) dup |= out[j] == nd;
    if (!dup) out[got++] = nd;
  }
  return got;
}

/* ---- sending ---- */

bool ml__encrypt_out(const struct ml *m) { return m->cfg.keyring.n > 0 && m->cfg.verify_outgoing; }

int ml__encryption_version(const struct ml *m) { return m->cfg.vsn[2] == 1 ? 0 : 1; }

/* What piggybacking may fill: the packet budget less encryption's worst case. */
static size_t packet_budget(const struct ml *m) {
  size_t b = m->cfg.udp_buffer_size;
  if (ml__encrypt_out(m)) b -= crypt_overhead(ml__encryption_version(m));
  return b;
}

void ml__send_raw(struct ml *m, const struct gossip_addr *addr, const struct ml_node *to,
                  const void *msg, size_t len) {
  struct buf *z = &m->scratch_z, *c = &m->scratch_crc;
  if (m->cfg.enable_compression && len >= COMPRESS_MIN) {
    buf_reset(z);
    proto_encode_compress(z, msg, len);
    if (z->len < len) {
      msg = z->data;
      len = z->len;
    }
  }
  if (to && to->vsn[1] >= 5) {
    buf_reset(c);
    proto_encode_crc(c, msg, len);
    msg = c->data;
    len = c->len;
  }
  /* memberlist rawSendMsgPacket: compress, CRC, then encrypt with the primary key. */
  if (ml__encrypt_out(m)) {
    struct buf *e = &m->scratch_enc;
    buf_reset(e);
    const struct keyring *k = &m->cfg.keyring;
    int rc = crypt_encrypt(ml__encryption_version(m), k->key[0], k->len[0], msg, len, NULL, 0, e);
    if (rc) {
      log_error(MOD, "encryption of message failed: %s", cc_strerror(rc));
      return;
    }
    msg = e->data;
    len = e->len;
  }
  m->stat_udp_sent++;
  m->stat_bytes_sent += len;
  int rc = m->io->ops->send_packet(m->io, addr, msg, len);
  if (rc) {
    char a[GOSSIP_ADDR_STRLEN];
    log_debug(MOD, "send to %s failed: %s", gossip_addr_format(addr, a, sizeof a), cc_strerror(rc));
  }
}

/* Sends msgs as one packet: alone, or wrapped in a compound. */
static void send_parts(struct ml *m, const struct gossip_addr *addr, const struct ml_node *to,
                       const struct proto_bytes *parts, size_t n) {
  if (n == 1) {
    ml__send_raw(m, addr, to, parts[0].p, parts[0].len);
    return;
  }
  struct buf *c = &m->scratch_compound;
  buf_reset(c);
  proto_encode_compound(c, parts, n);
  ml__send_raw(m, addr, to, c->data, c->len);
}

/* memberlist getBroadcasts: our own queue first, then the delegate's in what is left. */
static void get_broadcasts(struct ml *m, size_t overhead, size_t limit, struct bcast_out *out) {
  size_t used = bcast_get(&m->broadcasts, ml_num_nodes(m), overhead, limit, -1, out);
  if (m->d.get_broadcasts && limit > used && limit - used > overhead + USER_MSG_OVERHEAD)
    m->d.get_broadcasts(m->d.ctx, overhead + USER_MSG_OVERHEAD, limit - used, out);
}

/* memberlist sendMsg: piggybacks pending broadcasts on a message. */
static void send_msg(struct ml *m, const struct gossip_addr *addr, const struct ml_node *to,
                     const struct buf *msg) {
  size_t budget = packet_budget(m);
  size_t avail = budget > msg->len + COMPOUND_HEADER_OVERHEAD
                     ? budget - msg->len - COMPOUND_HEADER_OVERHEAD
                     : 0;
  struct bcast_out *out = &m->scratch_out;
  bcast_out_reset(out);
  if (avail) get_broadcasts(m, COMPOUND_OVERHEAD, avail, out);
  struct proto_bytes parts[BCAST_OUT_MAX + 1];
  size_t n = 0;
  parts[n++] = (struct proto_bytes){(const uint8_t *)msg->data, (uint32_t)msg->len};
  for (size_t i = 0; i < out->n && n < 255; i++)
    parts[n++] = (struct proto_bytes){(const uint8_t *)out->data.data + out->off[i], (uint32_t)out->len[i]};
  send_parts(m, addr, to, parts, n);
}

int ml_send_user(struct ml *m, const struct gossip_addr *to, const void *msg, size_t len) {
  struct buf b = BUF_INIT;
  proto_encode_user(&b, msg, len);
  ml__send_raw(m, to, NULL, b.data, b.len);
  buf_free(&b);
  return 0;
}

static void node_addr_bytes(const struct ml_node *n, struct proto_bytes *addr) {
  addr->p = n->addr.ip;
  addr->len = n->addr.len;
}

static void queue_broadcast(struct ml *m, const char *node, const struct buf *msg,
                            bcast_finished_fn fin, void *arg) {
  bcast_queue(&m->broadcasts, node, msg->data, msg->len, fin, arg);
}

static void broadcast_alive(struct ml *m, const struct proto_alive *a, const char *name,
                            bcast_finished_fn fin, void *arg) {
  struct buf b = BUF_INIT;
  proto_encode_alive(&b, a);
  queue_broadcast(m, name, &b, fin, arg);
  buf_free(&b);
}

/* ---- node table ---- */

static struct ml_node *add_node(struct ml *m, const char *name) {
  struct ml_node *n = xcalloc(1, sizeof *n);
  n->name = xstrdup(name);
  n->state = PROTO_STATE_DEAD;
  n->ml = m;
  map_put(&m->node_map, name, strlen(name), n);
  if (m->nnodes == m->cap_nodes) {
    m->cap_nodes = m->cap_nodes ? 2 * m->cap_nodes : 16;
    m->nodes = xrealloc(m->nodes, m->cap_nodes * sizeof *m->nodes);
  }
  /* A random position keeps the expected time to the first probe of a new node low. */
  size_t offset = (size_t)ml_rand(m, m->nnodes);
  m->nodes[m->nnodes] = n;
  struct ml_node *tmp = m->nodes[offset];
  m->nodes[offset] = m->nodes[m->nnodes];
  m->nodes[m->nnodes] = tmp;
  m->nnodes++;
  return n;
}

static void clear_suspicion(struct ml *m, struct ml_node *n) {
  if (!n->susp) return;
  ml_cancel(m, &n->susp->timer);
  suspicion_free(n->susp);
  free(n->susp);
  n->susp = NULL;
}

static void free_node(struct ml *m, struct ml_node *n) {
  clear_suspicion(m, n);
  free(n->name);
  free(n->meta);
  free(n);
}

/* memberlist resetNodes: drop members dead (or left) for longer than GossipToTheDeadTime,
 * then shuffle the probe order. */
static void reset_nodes(struct ml *m) {
  uint64_t now = ml_now(m);
  size_t w = 0;
  for (size_t i = 0; i < m->nnodes; i++) {
    struct ml_node *n = m->nodes[i];
    if (dead_or_left(n) && now - n->state_change > m->cfg.gossip_to_the_dead &&
        !is_local(m, n->name)) {
      map_del(&m->node_map, n->name, strlen(n->name));
      free_node(m, n);
      continue;
    }
    m->nodes[w++] = n;
  }
  m->nnodes = w;
  for (size_t i = m->nnodes; i > 1; i--) {
    size_t j = (size_t)ml_rand(m, i);
    struct ml_node *t = m->nodes[i - 1];
    m->nodes[i - 1] = m->nodes[j];
    m->nodes[j] = t;
  }
}

/* ---- state transitions (memberlist aliveNode, suspectNode, deadNode, refute) ---- */

static void refute(struct ml *m, struct ml_node *me, uint32_t accused) {
  uint32_t inc = ++m->incarnation;
  if (accused >= inc) {
    m->incarnation += accused - inc + 1;
    inc = m->incarnation;
  }
  me->incarnation = inc;
  /* Having to refute says others cannot hear us well: count it against our health. */
  awareness_delta(m, 1);
  struct proto_alive a = {.incarnation = inc, .node = proto_str(me->name), .port = me->addr.port,
                          .meta = {me->meta, (uint32_t)me->meta_len}, .vsn = {me->vsn, 6}};
  node_addr_bytes(me, &a.addr);
  if (!me->meta) a.meta.p = NULL;
  broadcast_alive(m, &a, me->name, NULL, NULL);
}

static void alive_node(struct ml *m, const struct proto_alive *a, bool bootstrap,
                       bcast_finished_fn fin, void *arg) {
  char name[PROTO_NAME_MAX + 1];
  if (!name_of(a->node, name)) return;
  if (m->left && is_local(m, name)) return;
  if (a->vsn.len >= 3) {
    uint8_t pmin = a->vsn.p[0], pmax = a->vsn.p[1];
    if (pmin == 0 || pmax == 0 || pmin > pmax) {
      log_warn(MOD, "ignoring an alive message for '%s': bad protocol versions", name);
      return;
    }
  }
  struct gossip_addr addr;
  if (gossip_addr_from_bytes(a->addr.p, a->addr.len, a->port, &addr) != 0) return;

  struct ml_node *st = ml_find(m, name);
  bool updates = false;
  if (!st) {
    st = add_node(m, name);
    st->addr = addr;
    if (a->meta.len) {
      st->meta = xmemdup(a->meta.p, a->meta.len);
      st->meta_len = a->meta.len;
    }
    if (a->vsn.len > 5) memcpy(st->vsn, a->vsn.p, 6);
  } else if (!gossip_addr_eq(&st->addr, &addr)) {
    if (st->state == PROTO_STATE_LEFT) {
      char o[GOSSIP_ADDR_STRLEN], nw[GOSSIP_ADDR_STRLEN];
      log_info(MOD, "updating address for left node %s from %s to %s", name,
               gossip_addr_format(&st->addr, o, sizeof o), gossip_addr_format(&addr, nw, sizeof nw));
      updates = true;
    } else {
      char o[GOSSIP_ADDR_STRLEN], nw[GOSSIP_ADDR_STRLEN];
      log_error(MOD, "conflicting address for %s: mine %s, theirs %s", name,
                gossip_addr_format(&st->addr, o, sizeof o), gossip_addr_format(&addr, nw, sizeof nw));
      return;
    }
  }

  bool local = is_local(m, name);
  if (a->incarnation <= st->incarnation && !local && !updates) return;
  if (a->incarnation < st->incarnation && local) return;

  clear_suspicion(m, st);
  int old_state = st->state;
  bool meta_changed = !(a->meta.len == st->meta_len &&
                        (a->meta.len == 0 || memcmp(a->meta.p, st->meta, st->meta_len) == 0));

  if (!bootstrap && local) {
    /* Someone gossips about us. The same incarnation with the same meta and versions is just
     * our own news coming back; anything else (a restart with new config, a stale view) must
     * be overridden with a newer incarnation. */
    bool same_vsn = a->vsn.len >= 6 && memcmp(a->vsn.p, st->vsn, 6) == 0;
    if (a->incarnation == st->incarnation && !meta_changed && same_vsn) return;
    refute(m, st, a->incarnation);
    log_warn(MOD, "refuting an alive message for '%s'", name);
    return;
  }

  broadcast_alive(m, a, name, fin, arg);
  if (a->vsn.len > 5) memcpy(st->vsn, a->vsn.p, 6);
  st->incarnation = a->incarnation;
  if (meta_changed) {
    free(st->meta);
    st->meta = a->meta.len ? xmemdup(a->meta.p, a->meta.len) : NULL;
    st->meta_len = a->meta.len;
  }
  st->addr = addr;
  if (st->state != PROTO_STATE_ALIVE) {
    st->state = PROTO_STATE_ALIVE;
    st->state_change = ml_now(m);
  }
  if (old_state == PROTO_STATE_DEAD || old_state == PROTO_STATE_LEFT) {
    if (m->d.notify_join) m->d.notify_join(m->d.ctx, st);
  } else if (meta_changed) {
    if (m->d.notify_update) m->d.notify_update(m->d.ctx, st);
  }
}

static void suspect_node(struct ml *m, const struct proto_suspect *s) {
  char name[PROTO_NAME_MAX + 1], from[PROTO_NAME_MAX + 1];
  if (!name_of(s->node, name)) return;
  if (!name_of(s->from, from)) from[0] = '\0';
  struct ml_node *st = ml_find(m, name);
  if (!st || s->incarnation < st->incarnation) return;

  struct buf b = BUF_INIT;
  if (st->susp) {
    /* Already suspect: an independent accuser confirms, which shortens the timeout. */
    uint64_t due;
    if (suspicion_confirm(st->susp, from, ml_now(m), &due)) {
      proto_encode_suspect(&b, s);
      queue_broadcast(m, name, &b, NULL, NULL);
      ml_arm(m, &st->susp->timer, due);
    }
    buf_free(&b);
    return;
  }
  if (st->state != PROTO_STATE_ALIVE) return;
  if (is_local(m, name)) {
    refute(m, st, s->incarnation);
    log_warn(MOD, "refuting a suspect message (from: %s)", from);
    return;
  }
  proto_encode_suspect(&b, s);
  queue_broadcast(m, name, &b, NULL, NULL);
  buf_free(&b);

  uint64_t now = ml_now(m);
  st->incarnation = s->incarnation;
  st->state = PROTO_STATE_SUSPECT;
  st->state_change = now;

  /* We expect SuspicionMult - 2 confirmations: the nominal timeout is then reached about two
   * probe intervals short of SuspicionMult, as memberlist reasons. Too few members to confirm
   * (leaving out us and the suspect): expect none and use the short timeout. */
  int n = ml_num_nodes(m);
  int k = m->cfg.suspicion_mult - 2;
  if (n - 2 < k) k = 0;
  uint64_t min = suspicion_timeout(m->cfg.suspicion_mult, n, m->cfg.probe_interval);
  uint64_t max = (uint64_t)m->cfg.suspicion_max_timeout_mult * min;
  st->susp = xcalloc(1, sizeof *st->susp);
  gtimer_init(&st->susp->timer, suspicion_fired);
  st->susp->owner = st;
  uint64_t due = suspicion_start(st->susp, from, (uint32_t)(k < 0 ? 0 : k), min, max, now);
  ml_arm(m, &st->susp->timer, due);
  log_info(MOD, "suspect %s (from %s)", name, from);
}

/* The suspicion timer expired with no refutation: declare the member dead. */
static void suspicion_fired(struct gtimer *t) {
  struct suspicion *s = container_of(t, struct suspicion, timer);
  struct ml_node *n = s->owner;
  struct ml *m = n->ml;
  if (n->state != PROTO_STATE_SUSPECT || n->state_change != s->start) return;
  log_info(MOD, "marking %s as failed, suspect timeout reached (%u peer confirmations)", n->name,
           s->n);
  char name[PROTO_NAME_MAX + 1];
  snprintf(name, sizeof name, "%s", n->name);
  struct proto_suspect d = {.incarnation = n->incarnation, .node = proto_str(name),
                            .from = proto_str(m->cfg.name)};
  dead_node(m, &d);
}

static void dead_node(struct ml *m, const struct proto_suspect *d) {
  char name[PROTO_NAME_MAX + 1], from[PROTO_NAME_MAX + 1];
  if (!name_of(d->node, name)) return;
  if (!name_of(d->from, from)) from[0] = '\0';
  struct ml_node *st = ml_find(m, name);
  if (!st || d->incarnation < st->incarnation) return;
  clear_suspicion(m, st);
  if (dead_or_left(st)) return;

  struct buf b = BUF_INIT;
  proto_encode_dead(&b, d);
  if (is_local(m, name)) {
    if (!m->left) {
      buf_free(&b);
      refute(m, st, d->incarnation);
      log_warn(MOD, "refuting a dead message (from: %s)", from);
      return;
    }
    queue_broadcast(m, name, &b, leave_broadcast_done, m);
  } else {
    queue_broadcast(m, name, &b, NULL, NULL);
  }
  buf_free(&b);

  st->incarnation = d->incarnation;
  /* A member announcing its own death is leaving gracefully. */
  st->state = strcmp(name, from) == 0 ? PROTO_STATE_LEFT : PROTO_STATE_DEAD;
  st->state_change = ml_now(m);
  if (st->state == PROTO_STATE_DEAD) log_info(MOD, "marking %s as failed", name);
  if (m->d.notify_leave) m->d.notify_leave(m->d.ctx, st);
}

/* ---- probing ---- */

static void probe_free(struct ml *m, struct ml_probe *p) {
  ml_cancel(m, &p->timeout_timer);
  ml_cancel(m, &p->deadline_timer);
  free(p->name);
  free(p);
}

static void start_next_probe(struct ml *m);

static void probe_finish(struct ml *m, bool ok) {
  struct ml_probe *p = m->probe;
  m->probe = NULL;
  if (ok) {
    awareness_delta(m, -1);
  } else {
    /* Lifeguard: relays that answered with nacks are alive and reachable, so a silent target is
     * likely the target's fault. Missing nacks point at us; with no relays to ask, count the
     * failure against ourselves as a plain health signal. */
    int delta = 0;
    if (p->expected_nacks > 0) {
      if (p->nacks < p->expected_nacks) delta = p->expected_nacks - p->nacks;
    } else {
      delta = 1;
    }
    awareness_delta(m, delta);
    log_info(MOD, "suspect %s has failed, no acks received", p->name);
    struct proto_suspect s = {.incarnation = p->incarnation, .node = proto_str(p->name),
                              .from = proto_str(m->cfg.name)};
    suspect_node(m, &s);
  }
  probe_free(m, p);
  if (m->probe_tick_pending && !m->shutdown) {
    m->probe_tick_pending = false;
    start_next_probe(m);
  }
}

static bool skip_for_indirect(struct ml *m, const struct ml_node *n, const void *arg) {
  const char *target = arg;
  return is_local(m, n->name) || strcmp(n->name, target) == 0 || n->state != PROTO_STATE_ALIVE;
}

static struct proto_ping make_ping(struct ml *m, uint32_t seq, const char *node) {
  struct proto_ping ping = {.seq = seq, .node = proto_str(node),
                            .source_addr = {m->cfg.advertise.ip, m->cfg.advertise.len},
                            .source_port = m->cfg.advertise.port,
                            .source_node = proto_str(m->cfg.name)};
  return ping;
}

/* No ack within ProbeTimeout: ask others, and try TCP. */
static void probe_timeout(struct gtimer *t) {
  struct ml_probe *p = container_of(t, struct ml_probe, timeout_timer);
  struct ml *m = p->m;
  struct ml_node *peers[16];
  size_t k = (size_t)m->cfg.indirect_checks;
  if (k > 16) k = 16;
  size_t got = k_random_nodes(m, k, skip_for_indirect, p->name, peers);
  struct proto_indirect_ping ind = {.seq = p->seq, .target = {p->addr.ip, p->addr.len},
                                    .port = p->addr.port, .node = proto_str(p->name),
                                    .source_addr = {m->cfg.advertise.ip, m->cfg.advertise.len},
                                    .source_port = m->cfg.advertise.port,
                                    .source_node = proto_str(m->cfg.name)};
  for (size_t i = 0; i < got; i++) {
    /* Only protocol 4+ relays send nacks. */
    ind.nack = peers[i]->vsn[1] >= 4;
    if (ind.nack) p->expected_nacks++;
    struct buf b = BUF_INIT;
    proto_encode_indirect_ping(&b, &ind);
    send_msg(m, &peers[i]->addr, peers[i], &b);
    buf_free(&b);
  }
  /* A member that can still speak TCP is not dead, only cut off from UDP: without this it
   * would flap, and feed stale state back through push-pull. */
  struct ml_node *target = ml_find(m, p->name);
  if (!m->cfg.disable_tcp_pings && target && p->pmax >= 3) ml__tcp_ping(m, target, p->seq, p->deadline);
}

static void probe_deadline(struct gtimer *t) {
  struct ml_probe *p = container_of(t, struct ml_probe, deadline_timer);
  struct ml *m = p->m;
  if (p->tcp_ok) {
    log_warn(MOD, "was able to connect to %s but other probes failed, network may be misconfigured",
             p->name);
    probe_finish(m, true);
    return;
  }
  probe_finish(m, false);
}

void ml__tcp_ping_result(struct ml *m, uint32_t seq, bool ok) {
  if (m->probe && m->probe->seq == seq && ok) m->probe->tcp_ok = true;
}

static void probe_node(struct ml *m, struct ml_node *node) {
  struct ml_probe *p = xcalloc(1, sizeof *p);
  p->m = m;
  p->name = xstrdup(node->name);
  p->incarnation = node->incarnation;
  p->state = node->state;
  p->addr = node->addr;
  p->pmax = node->vsn[1];
  p->seq = ++m->seq;
  p->sent = ml_now(m);
  /* Lifeguard: an unhealthy member waits longer for answers before accusing anyone. */
  p->deadline = p->sent + m->cfg.probe_interval * (uint64_t)(m->awareness + 1);
  gtimer_init(&p->timeout_timer, probe_timeout);
  gtimer_init(&p->deadline_timer, probe_deadline);
  m->probe = p;

  struct proto_ping ping = make_ping(m, p->seq, node->name);
  struct buf b = BUF_INIT;
  proto_encode_ping(&b, &ping);
  if (node->state == PROTO_STATE_ALIVE) {
    send_msg(m, &node->addr, node, &b);
  } else {
    /* Already suspect: tell it so, so it can refute as soon as possible. */
    struct buf s = BUF_INIT, c = BUF_INIT;
    struct proto_suspect sus = {.incarnation = node->incarnation, .node = proto_str(node->name),
                                .from = proto_str(m->cfg.name)};
    proto_encode_suspect(&s, &sus);
    struct proto_bytes parts[2] = {{(const uint8_t *)b.data, (uint32_t)b.len},
                                   {(const uint8_t *)s.data, (uint32_t)s.len}};
    proto_encode_compound(&c, parts, 2);
    ml__send_raw(m, &node->addr, node, c.data, c.len);
    buf_free(&s);
    buf_free(&c);
  }
  buf_free(&b);
  ml_arm(m, &p->timeout_timer, p->sent + m->cfg.probe_timeout);
  ml_arm(m, &p->deadline_timer, p->deadline);
}

/* memberlist probe(): the next member in the round, skipping us and the dead. */
static void start_next_probe(struct ml *m) {
  for (size_t checked = 0; checked <= m->nnodes + 1; checked++) {
    if (m->probe_index >= m->nnodes) {
      reset_nodes(m);
      m->probe_index = 0;
      continue;
    }
    struct ml_node *n = m->nodes[m->probe_index++];
    if (is_local(m, n->name) || dead_or_left(n)) continue;
    probe_node(m, n);
    return;
  }
}

static void probe_tick(struct gtimer *t) {
  struct ml *m = container_of(t, struct ml, probe_timer);
  ml_arm(m, &m->probe_timer, ml_now(m) + m->cfg.probe_interval);
  if (m->probe) {
    m->probe_tick_pending = true;
    return;
  }
  start_next_probe(m);
}

/* ---- gossip and push-pull rounds ---- */

static bool skip_for_gossip(struct ml *m, const struct ml_node *n, const void *arg) {
  (void)arg;
  if (is_local(m, n->name)) return true;
  switch (n->state) {
  case PROTO_STATE_ALIVE:
  case PROTO_STATE_SUSPECT:
    return false;
  case PROTO_STATE_DEAD:
    /* Keep telling the recently dead, so a wrongly accused member hears it and refutes. */
    return ml_now(m) - n->state_change > m->cfg.gossip_to_the_dead;
  default:
    return true;
  }
}

static void gossip_tick(struct gtimer *t) {
  struct ml *m = container_of(t, struct ml, gossip_timer);
  ml_arm(m, &m->gossip_timer, ml_now(m) + m->cfg.gossip_interval);
  struct ml_node *targets[16];
  size_t k = (size_t)m->cfg.gossip_nodes;
  if (k > 16) k = 16;
  size_t got = k_random_nodes(m, k, skip_for_gossip, NULL, targets);
  size_t avail = packet_budget(m) - COMPOUND_HEADER_OVERHEAD;
  struct bcast_out *out = &m->scratch_out;
  for (size_t i = 0; i < got; i++) {
    bcast_out_reset(out);
    get_broadcasts(m, COMPOUND_OVERHEAD, avail, out);
    if (out->n == 0) break;
    struct proto_bytes parts[BCAST_OUT_MAX];
    for (size_t j = 0; j < out->n; j++)
      parts[j] = (struct proto_bytes){(const uint8_t *)out->data.data + out->off[j], (uint32_t)out->len[j]};
    send_parts(m, &targets[i]->addr, targets[i], parts, out->n);
  }
}

static bool skip_for_push_pull(struct ml *m, const struct ml_node *n, const void *arg) {
  (void)arg;
  return is_local(m, n->name) || n->state != PROTO_STATE_ALIVE;
}

static void push_pull_tick(struct gtimer *t) {
  struct ml *m = container_of(t, struct ml, push_pull_timer);
  /* The interval grows with log2(n) past 32 members so full syncs do not swamp big clusters. */
  ml_arm(m, &m->push_pull_timer,
         ml_now(m) + push_pull_scale(m->cfg.push_pull_interval, ml_num_nodes(m)));
  struct ml_node *n;
  if (k_random_nodes(m, 1, skip_for_push_pull, NULL, &n) == 1) ml__push_pull(m, &n->addr, false, NULL);
}

/* ---- push-pull merge (memberlist verifyProtocol + mergeState) ---- */

static int verify_protocol(struct ml *m, const struct proto_stream_msg *msg) {
  uint8_t maxpmin = 0, minpmax = 255, maxdmin = 0, mindmax = 255;
  for (size_t i = 0; i < msg->nnodes; i++) {
    const struct proto_push_node *r = &msg->nodes[i];
    if (r->state != PROTO_STATE_ALIVE || r->vsn.len == 0) continue;
    if (r->vsn.p[0] > maxpmin) maxpmin = r->vsn.p[0];
    if (r->vsn.p[1] < minpmax) minpmax = r->vsn.p[1];
    if (r->vsn.p[3] > maxdmin) maxdmin = r->vsn.p[3];
    if (r->vsn.p[4] < mindmax) mindmax = r->vsn.p[4];
  }
  for (size_t i = 0; i < m->nnodes; i++) {
    const struct ml_node *n = m->nodes[i];
    if (n->state != PROTO_STATE_ALIVE) continue;
    if (n->vsn[0] > maxpmin) maxpmin = n->vsn[0];
    if (n->vsn[1] < minpmax) minpmax = n->vsn[1];
    if (n->vsn[3] > maxdmin) maxdmin = n->vsn[3];
    if (n->vsn[4] < mindmax) mindmax = n->vsn[4];
  }
  for (size_t i = 0; i < msg->nnodes; i++) {
    const struct proto_push_node *r = &msg->nodes[i];
    uint8_t pcur = r->vsn.len ? r->vsn.p[2] : 0, dcur = r->vsn.len ? r->vsn.p[5] : 0;
    if (pcur < maxpmin || pcur > minpmax || dcur < maxdmin || dcur > mindmax) {
      log_warn(MOD, "node '%.*s' protocol versions (%u, delegate %u) are incompatible",
               (int)r->name.len, (const char *)r->name.p, pcur, dcur);
      return CC_EINVAL;
    }
  }
  for (size_t i = 0; i < m->nnodes; i++) {
    const struct ml_node *n = m->nodes[i];
    if (n->vsn[2] < maxpmin || n->vsn[2] > minpmax || n->vsn[5] < maxdmin || n->vsn[5] > mindmax) {
      log_warn(MOD, "node '%s' protocol versions are incompatible with the remote cluster", n->name);
      return CC_EINVAL;
    }
  }
  return 0;
}

int ml__merge_remote(struct ml *m, const struct proto_stream_msg *msg) {
  int rc = verify_protocol(m, msg);
  if (rc) return rc;
  for (size_t i = 0; i < msg->nnodes && !m->shutdown; i++) {
    const struct proto_push_node *r = &msg->nodes[i];
    switch (r->state) {
    case PROTO_STATE_ALIVE: {
      struct proto_alive a = {.incarnation = r->incarnation, .node = r->name, .addr = r->addr,
                              .port = r->port, .meta = r->meta, .vsn = r->vsn};
      alive_node(m, &a, false, NULL, NULL);
      break;
    }
    case PROTO_STATE_LEFT: {
      struct proto_suspect d = {.incarnation = r->incarnation, .node = r->name, .from = r->name};
      dead_node(m, &d);
      break;
    }
    case PROTO_STATE_DEAD:
      /* Prefer suspecting over believing a remote death outright. */
    case PROTO_STATE_SUSPECT: {
      struct proto_suspect s = {.incarnation = r->incarnation, .node = r->name,
                                .from = proto_str(m->cfg.name)};
      suspect_node(m, &s);
      break;
    }
    default:
      break;
    }
  }
  if (msg->user.len && m->d.merge_remote_state && !m->shutdown)
    m->d.merge_remote_state(m->d.ctx, msg->user.p, msg->user.len, msg->join);
  return 0;
}

void ml__encode_local_state(struct ml *m, bool join, struct buf *out) {
  struct proto_push_node *nodes = m->nnodes ? xcalloc(m->nnodes, sizeof *nodes) : NULL;
  for (size_t i = 0; i < m->nnodes; i++) {
    const struct ml_node *n = m->nodes[i];
    nodes[i] = (struct proto_push_node){.name = proto_str(n->name), .addr = {n->addr.ip, n->addr.len},
                                        .port = n->addr.port, .meta = {n->meta, (uint32_t)n->meta_len},
                                        .incarnation = n->incarnation, .state = n->state,
                                        .vsn = {n->vsn, 6}};
  }
  struct buf user = BUF_INIT;
  if (m->d.local_state) m->d.local_state(m->d.ctx, join, &user);
  proto_encode_push_pull(out, join, nodes, m->nnodes, user.data, user.len);
  buf_free(&user);
  free(nodes);
}

/* ---- incoming packets ---- */

static void send_ack(struct ml *m, uint32_t seq, const struct gossip_addr *to, const char *to_name) {
  struct proto_ack ack = {.seq = seq};
  struct buf b = BUF_INIT;
  proto_encode_ack(&b, &ack);
  struct ml_node *n = to_name && to_name[0] ? ml_find(m, to_name) : NULL;
  send_msg(m, to, n, &b);
  buf_free(&b);
}

/* Where to answer: the source the sender wrote in the message, else the packet's origin. */
static void reply_addr(const struct gossip_addr *from, struct proto_bytes sa, uint16_t sp,
                       struct gossip_addr *out) {
  if (sa.len && sp && gossip_addr_from_bytes(sa.p, sa.len, sp, out) == 0) return;
  *out = *from;
}

static void handle_ping(struct ml *m, const struct gossip_addr *from, const uint8_t *p, size_t len) {
  struct proto_ping ping;
  if (proto_decode_ping(p, len, &ping)) {
    m->stat_bad_packets++;
    return;
  }
  /* A ping for another name means we restarted under a new one at this address: stay quiet. */
  if (ping.node.len && !proto_bytes_eq(ping.node, m->cfg.name, strlen(m->cfg.name))) {
    log_warn(MOD, "got ping for unexpected node '%.*s'", (int)ping.node.len, (const char *)ping.node.p);
    return;
  }
  struct gossip_addr to;
  reply_addr(from, ping.source_addr, ping.source_port, &to);
  char src[PROTO_NAME_MAX + 1];
  if (!name_of(ping.source_node, src)) src[0] = '\0';
  send_ack(m, ping.seq, &to, src);
}

static void ack_free(struct ml *m, struct ml_ack *a) {
  uint8_t key[4];
  memcpy(key, &a->seq, 4);
  map_del(&m->acks, key, 4);
  ml_cancel(m, &a->timer);
  free(a->requester_name);
  free(a);
}

/* The relay's ping went unanswered for ProbeTimeout: say so if asked (Lifeguard nack). */
static void relay_timeout(struct gtimer *t) {
  struct ml_ack *a = container_of(t, struct ml_ack, timer);
  struct ml *m = a->m;
  if (a->want_nack) {
    struct proto_nack nack = {.seq = a->orig_seq};
    struct buf b = BUF_INIT;
    proto_encode_nack(&b, &nack);
    struct ml_node *n = a->requester_name ? ml_find(m, a->requester_name) : NULL;
    send_msg(m, &a->requester, n, &b);
    buf_free(&b);
  }
  ack_free(m, a);
}

static void handle_indirect_ping(struct ml *m, const struct gossip_addr *from, const uint8_t *p,
                                 size_t len) {
  struct proto_indirect_ping ind;
  if (proto_decode_indirect_ping(p, len, &ind)) {
    m->stat_bad_packets++;
    return;
  }
  char node[PROTO_NAME_MAX + 1], src[PROTO_NAME_MAX + 1];
  if (!name_of(ind.node, node)) node[0] = '\0';
  if (!name_of(ind.source_node, src)) src[0] = '\0';
  struct gossip_addr target;
  if (gossip_addr_from_bytes(ind.target.p, ind.target.len,
                             ind.port ? ind.port : m->cfg.advertise.port, &target))
    return;
  struct ml_ack *a = xcalloc(1, sizeof *a);
  a->m = m;
  a->seq = ++m->seq;
  a->orig_seq = ind.seq;
  a->want_nack = ind.nack;
  a->requester_name = src[0] ? xstrdup(src) : NULL;
  reply_addr(from, ind.source_addr, ind.source_port, &a->requester);
  gtimer_init(&a->timer, relay_timeout);
  uint8_t key[4];
  memcpy(key, &a->seq, 4);
  map_put(&m->acks, key, 4, a);
  ml_arm(m, &a->timer, ml_now(m) + m->cfg.probe_timeout);

  struct proto_ping ping = make_ping(m, a->seq, node);
  struct buf b = BUF_INIT;
  proto_encode_ping(&b, &ping);
  send_msg(m, &target, node[0] ? ml_find(m, node) : NULL, &b);
  buf_free(&b);
}

static void handle_ack(struct ml *m, const uint8_t *p, size_t len) {
  struct proto_ack ack;
  if (proto_decode_ack(p, len, &ack)) {
    m->stat_bad_packets++;
    return;
  }
  if (m->probe && m->probe->seq == ack.seq) {
    probe_finish(m, true);
    return;
  }
  uint8_t key[4];
  memcpy(key, &ack.seq, 4);
  struct ml_ack *a = map_get(&m->acks, key, 4);
  if (!a) return;
  /* Relay the good news to whoever asked us to ping, under their sequence number. */
  struct ml_node *n = a->requester_name ? ml_find(m, a->requester_name) : NULL;
  struct gossip_addr to = a->requester;
  uint32_t orig = a->orig_seq;
  ack_free(m, a);
  struct proto_ack fwd = {.seq = orig};
  struct buf b = BUF_INIT;
  proto_encode_ack(&b, &fwd);
  send_msg(m, &to, n, &b);
  buf_free(&b);
}

static void handle_nack(struct ml *m, const uint8_t *p, size_t len) {
  struct proto_nack nack;
  if (proto_decode_nack(p, len, &nack)) {
    m->stat_bad_packets++;
    return;
  }
  if (m->probe && m->probe->seq == nack.seq) m->probe->nacks++;
}

static void handle_command(struct ml *m, const struct gossip_addr *from, const uint8_t *p, size_t len,
                           int depth) {
  if (len < 1 || m->shutdown) return;
  uint8_t type = p[0];
  p++;
  len--;
  switch (type) {
  case PROTO_COMPOUND: {
    if (depth >= MAX_NESTING) return;
    struct proto_bytes parts[255];
    size_t n, trunc;
    if (proto_decode_compound(p, len, parts, &n, &trunc)) {
      m->stat_bad_packets++;
      return;
    }
    if (trunc) log_warn(MOD, "compound request had %zu truncated messages", trunc);
    for (size_t i = 0; i < n; i++) handle_command(m, from, parts[i].p, parts[i].len, depth + 1);
    return;
  }
  case PROTO_COMPRESS: {
    if (depth >= MAX_NESTING) return;
    struct buf plain = BUF_INIT;
    if (proto_decompress(p, len, DECOMPRESS_MAX, &plain) == 0)
      handle_command(m, from, (const uint8_t *)plain.data, plain.len, depth + 1);
    else
      m->stat_bad_packets++;
    buf_free(&plain);
    return;
  }
  case PROTO_PING:
    handle_ping(m, from, p, len);
    return;
  case PROTO_INDIRECT_PING:
    handle_indirect_ping(m, from, p, len);
    return;
  case PROTO_ACK:
    handle_ack(m, p, len);
    return;
  case PROTO_NACK:
    handle_nack(m, p, len);
    return;
  case PROTO_SUSPECT: {
    struct proto_suspect s;
    if (proto_decode_suspect(p, len, &s) == 0)
      suspect_node(m, &s);
    else
      m->stat_bad_packets++;
    return;
  }
  case PROTO_ALIVE: {
    struct proto_alive a;
    if (proto_decode_alive(p, len, &a) == 0) {
      if (a.port == 0) a.port = m->cfg.advertise.port;
      alive_node(m, &a, false, NULL, NULL);
    } else {
      m->stat_bad_packets++;
    }
    return;
  }
  case PROTO_DEAD: {
    struct proto_suspect d;
    if (proto_decode_suspect(p, len, &d) == 0)
      dead_node(m, &d);
    else
      m->stat_bad_packets++;
    return;
  }
  case PROTO_USER:
    if (m->d.notify_msg && len) m->d.notify_msg(m->d.ctx, p, len);
    return;
  default:
    m->stat_bad_packets++;
    log_debug(MOD, "msg type (%u) not supported", type);
    return;
  }
}

static void sink_packet(void *ctx, const struct gossip_addr *from, const uint8_t *p, size_t len) {
  struct ml *m = ctx;
  if (m->shutdown || len == 0 || len > PROTO_UDP_MAX) return;
  m->stat_udp_recv++;
  /* memberlist ingestPacket: with a keyring, decrypt first; a packet no key opens is dropped,
   * unless verify_incoming is off (the upgrade window), when it is taken as plaintext. */
  struct buf *plain = &m->scratch_plain; /* not scratch_enc: answers encrypt while we parse */
  if (m->cfg.keyring.n) {
    buf_reset(plain);
    int rc = crypt_decrypt(&m->cfg.keyring, p, len, NULL, 0, plain);
    if (rc == 0) {
      p = (const uint8_t *)plain->data;
      len = plain->len;
    } else if (m->cfg.verify_incoming) {
      char a[GOSSIP_ADDR_STRLEN];
      log_error(MOD, "decrypt packet failed: %s from=%s",
                rc == CC_ECORRUPT ? "No installed keys could decrypt the message"
                                  : "invalid encrypted payload",
                gossip_addr_format(from, a, sizeof a));
      m->stat_decrypt_failed++;
      m->stat_bad_packets++;
      rearm_wake(m);
      return;
    }
    if (len == 0) return;
  }
  if (len >= 5 && p[0] == PROTO_HAS_CRC) {
    struct proto_bytes inner;
    if (proto_check_crc(p + 1, len - 1, &inner)) {
      log_warn(MOD, "got invalid checksum for UDP packet");
      m->stat_bad_packets++;
    } else {
      handle_command(m, from, inner.p, inner.len, 0);
    }
  } else {
    handle_command(m, from, p, len, 0);
  }
  if (!m->shutdown) rearm_wake(m);
}

static void sink_stream(void *ctx, uint64_t id, enum gossip_stream_event ev,
                        const struct gossip_addr *peer, const uint8_t *p, size_t len) {
  struct ml *m = ctx;
  ml__on_stream(ctx, id, ev, peer, p, len);
  if (!m->shutdown) rearm_wake(m);
}

/* ---- lifecycle ---- */

void ml_init(struct ml *m, const struct ml_config *cfg, struct gossip_io *io,
             const struct ml_delegate *d) {
  memset(m, 0, sizeof *m);
  m->cfg = *cfg;
  m->io = io;
  if (d) m->d = *d;
  map_init(&m->node_map);
  map_init(&m->acks);
  bcast_init(&m->broadcasts, cfg->retransmit_mult, 4096);
  gtimer_init(&m->probe_timer, probe_tick);
  gtimer_init(&m->gossip_timer, gossip_tick);
  gtimer_init(&m->push_pull_timer, push_pull_tick);
  gtimer_init(&m->leave_timer, leave_timeout);
  io->sink.ctx = m;
  io->sink.wake = sink_wake;
  io->sink.packet = sink_packet;
  io->sink.stream = sink_stream;
}

static void set_alive(struct ml *m) {
  struct buf meta = BUF_INIT;
  if (m->d.node_meta) m->d.node_meta(m->d.ctx, &meta, PROTO_META_MAX);
  if (meta.len > PROTO_META_MAX) meta.len = PROTO_META_MAX; /* serf refuses oversized tags first */
  struct proto_alive a = {.incarnation = ++m->incarnation, .node = proto_str(m->cfg.name),
                          .addr = {m->cfg.advertise.ip, m->cfg.advertise.len},
                          .port = m->cfg.advertise.port,
                          .meta = {meta.len ? (const uint8_t *)meta.data : NULL, (uint32_t)meta.len},
                          .vsn = {m->cfg.vsn, 6}};
  alive_node(m, &a, true, NULL, NULL);
  buf_free(&meta);
}

void ml_start(struct ml *m) {
  set_alive(m);
  uint64_t now = ml_now(m);
  /* Random stagger, as memberlist's triggerFunc, so members do not tick in lockstep. */
  ml_arm(m, &m->probe_timer, now + ml_rand(m, m->cfg.probe_interval));
  ml_arm(m, &m->gossip_timer, now + ml_rand(m, m->cfg.gossip_interval));
  if (m->cfg.push_pull_interval)
    ml_arm(m, &m->push_pull_timer, now + ml_rand(m, m->cfg.push_pull_interval));
  rearm_wake(m);
}

void ml_update_node(struct ml *m) {
  if (!ml_local(m)) return;
  set_alive(m);
  rearm_wake(m);
}

void ml_shutdown(struct ml *m) {
  if (m->shutdown) return;
  m->shutdown = true;
  m->leave_cb = NULL;
  if (m->probe) probe_free(m, m->probe);
  m->probe = NULL;
  ml__streams_free(m); /* closes streams; pending joins complete with CC_ECANCELED */
  m->io->ops->wake_at(m->io, UINT64_MAX);
}

void ml_free(struct ml *m) {
  ml_shutdown(m);
  /* From here on the io may already be gone: memory only. */
  for (struct map_iter it = map_iter_start(&m->acks); map_iter_next(&it);) {
    struct ml_ack *a = it.entry->value;
    ml_cancel(m, &a->timer);
    free(a->requester_name);
    free(a);
  }
  map_free(&m->acks);
  for (size_t i = 0; i < m->nnodes; i++) free_node(m, m->nodes[i]);
  free(m->nodes);
  m->nodes = NULL;
  m->nnodes = 0;
  map_free(&m->node_map);
  bcast_reset(&m->broadcasts);
  gtimers_free(&m->timers);
  buf_free(&m->scratch_out.data);
  buf_free(&m->scratch_compound);
  buf_free(&m->scratch_z);
  buf_free(&m->scratch_crc);
  buf_free(&m->scratch_enc);
  buf_free(&m->scratch_plain);
  lzw_release();
}

/* ---- leave ---- */

static void leave_done(struct ml *m, int err) {
  ml_done_cb cb = m->leave_cb;
  void *arg = m->leave_arg;
  m->leave_cb = NULL;
  ml_cancel(m, &m->leave_timer);
  if (cb) cb(arg, err);
}

static void leave_broadcast_done(void *arg) {
  struct ml *m = arg;
  if (m->leave_cb) leave_done(m, 0);
}

static void leave_timeout(struct gtimer *t) {
  struct ml *m = container_of(t, struct ml, leave_timer);
  /* With nobody to tell, the leave is complete at once (armed at "now"). */
  leave_done(m, ml_num_alive_others(m) ? CC_ETIMEOUT : 0);
}

void ml_leave(struct ml *m, uint64_t timeout, ml_done_cb cb, void *arg) {
  m->leave_cb = cb;
  m->leave_arg = arg;
  uint64_t now = ml_now(m);
  struct ml_node *me = (struct ml_node *)ml_local(m);
  if (!m->left && me) {
    m->left = true;
    struct proto_suspect d = {.incarnation = me->incarnation, .node = proto_str(me->name),
                              .from = proto_str(me->name)};
    dead_node(m, &d);
  }
  ml_arm(m, &m->leave_timer, ml_num_alive_others(m) ? now + timeout : now);
  rearm_wake(m);
}
