/* session.c -- the sessions table, the keys each session holds, lock-delay and TTL deadlines
 * (rules in session.h; the code follows Consul's sessionCreateTxn, deleteSessionTxn,
 * validateSessionChecksTxn, delay.go and session_ttl.go).
 *
 * Layout. Sessions sit in an ordered tree keyed by their lowercased ID (Consul lists them in
 * ID order), each row one allocation built by a measure-then-fill packer. Two side indexes
 * keep the hot paths independent of the table's size:
 *   - by node: lowercased node name -> the node's sessions, so that a node or check failing
 *     looks only at that node's sessions (checks are written often; sessions may be many);
 *   - held keys: each row keeps the set of KV keys locked with it, maintained by store.c on
 *     every change of a row's Session (state__session_held_move), so that a destroy visits
 *     exactly the keys it must release. The set is a pure function of the KV rows, which is
 *     what lets a rolled-back transaction (txn.c) restore it by replaying row changes.
 *
 * Lock-delay expiries live in a map key -> expiry on the store's clock. Expired entries are
 * dropped lazily: on lookup, and by a sweep whenever the map has doubled since the last one,
 * so its size stays within twice the keys still delayed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/alloc.h"
#include "lib/duration.h"
#include "lib/err.h"
#include "lib/rand.h"
#include "state/internal.h"

struct sess_row {
  struct state__tnode tn; /* key: lowercased ID */
  struct state_session pub;
  const char *lnode; /* lowercased node */
  struct map held;   /* KV keys this session holds (values unused) */
  int64_t ttl_ms;    /* parsed TTL; 0 = no timer */
  uint64_t deadline; /* TTL deadline on the store clock; 0 = not armed */
  char data[];
};

struct node_sessions {
  struct sess_row **v;
  size_t n, cap;
};

struct state__sessions {
  struct state__tnode *rows;
  size_t count;
  uint64_t index;     /* table index "sessions" */
  struct map by_node; /* lowercased node -> struct node_sessions */
  struct map delays;  /* KV key -> uint64_t expiry (ms, store clock) */
  size_t delays_sweep_at;
  state_clock_fn clock;
  void *clock_arg;
  bool tracking;
  size_t n_ttl; /* sessions with ttl_ms > 0 */
  /* A lower bound of every armed deadline (0: none armed), so that the leader's frequent
   * expiry checks cost O(1) until something may have expired: arming only lowers it, and
   * renewals move deadlines later, which keeps it a lower bound until the next scan. */
  uint64_t min_deadline;
};

static struct sess_row *row_of(struct state__tnode *n) { return (struct sess_row *)n; }
static const char *nz(const char *s) { return s ? s : ""; }

static void lower_into(char *dst, const char *src, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    char c = src[i];
    dst[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
  }
  dst[n] = '\0';
}

/* The lookup key of an ID: lowercased into buf. Returns false when id cannot be one (too
 * long), so that lookups of junk simply find nothing. */
static bool id_key(char buf[STATE_SESSION_ID_LEN + 1], const char *id)
{
  size_t n = strnlen(nz(id), STATE_SESSION_ID_LEN + 1);
  if (n > STATE_SESSION_ID_LEN) return false;
  lower_into(buf, nz(id), n);
  return true;
}

/* ---- lifetime ---- */

static uint64_t default_clock(void *arg)
{
  (void)arg;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct state__sessions *state__sessions_new(void)
{
  struct state__sessions *t = xcalloc(1, sizeof *t);
  map_init(&t->by_node);
  map_init(&t->delays);
  t->clock = default_clock;
  return t;
}

static void free_rows(struct state__tnode *n)
{
  if (!n) return;
  free_rows(n->child[0]);
  free_rows(n->child[1]);
  map_free(&row_of(n)->held);
  free(n);
}

static void free_by_node(struct map *m)
{
  for (struct map_iter it = map_iter_start(m); map_iter_next(&it);) {
    struct node_sessions *ns = it.entry->value;
    free(ns->v);
    free(ns);
  }
  map_free(m);
}

static void free_delays(struct map *m)
{
  for (struct map_iter it = map_iter_start(m); map_iter_next(&it);) free(it.entry->value);
  map_free(m);
}

void state__sessions_free(struct state__sessions *t)
{
  if (!t) return;
  free_rows(t->rows);
  free_by_node(&t->by_node);
  free_delays(&t->delays);
  free(t);
}

uint64_t state__sessions_index(const struct state__sessions *t) { return t->index; }

void state_store_set_clock(struct state_store *s, state_clock_fn fn, void *arg)
{
  s->sess->clock = fn ? fn : default_clock;
  s->sess->clock_arg = fn ? arg : NULL;
}

uint64_t state_store_now_ms(const struct state_store *s)
{
  return s->sess->clock(s->sess->clock_arg);
}

/* ---- rows ---- */

struct fill_arg {
  const struct state_session *req;
  uint64_t create, modify;
};

struct pk {
  char *base; /* NULL while measuring */
  size_t off;
};

static void *pk_alloc(struct pk *p, size_t size, size_t align)
{
  p->off = (p->off + align - 1) & ~(align - 1);
  void *r = p->base ? p->base + p->off : NULL;
  p->off += size;
  return r;
}

static const char *pk_str(struct pk *p, const char *s)
{
  size_t n = strlen(nz(s));
  char *d = pk_alloc(p, n + 1, 1);
  if (d) memcpy(d, nz(s), n + 1);
  return d;
}

static const char *pk_lower(struct pk *p, const char *s)
{
  size_t n = strlen(nz(s));
  char *d = pk_alloc(p, n + 1, 1);
  if (d) lower_into(d, nz(s), n);
  return d;
}

static const char *const *pk_strs(struct pk *p, const char *const *v, size_t n)
{
  const char **out = n ? pk_alloc(p, n * sizeof *out, _Alignof(const char *)) : NULL;
  for (size_t i = 0; i < n; i++) {
    const char *s = pk_str(p, v[i]);
    if (out) out[i] = s;
  }
  return out;
}

static void fill(struct pk *p, struct sess_row *r, const struct fill_arg *a)
{
  const struct state_session *q = a->req;
  struct state_session pub = {
      .lock_delay_ns = q->lock_delay_ns,
      .n_node_checks = q->n_node_checks,
      .node_checks_null = q->node_checks_null && q->n_node_checks == 0,
      .n_service_checks = q->n_service_checks,
      .service_checks_null = q->service_checks_null && q->n_service_checks == 0,
      .n_checks = q->n_checks,
      .create_index = a->create,
      .modify_index = a->modify,
  };
  const char *lid = pk_lower(p, q->id);
  pub.id = pk_str(p, q->id);
  pub.name = pk_str(p, q->name);
  pub.node = pk_str(p, q->node);
  pub.behavior = pk_str(p, q->behavior && *q->behavior ? q->behavior : "release");
  pub.ttl = pk_str(p, q->ttl);
  pub.node_checks = pk_strs(p, q->node_checks, q->n_node_checks);
  pub.checks = pk_strs(p, q->checks, q->n_checks);
  struct state_session_check *sc =
      q->n_service_checks
          ? pk_alloc(p, q->n_service_checks * sizeof *sc, _Alignof(struct state_session_check))
          : NULL;
  for (size_t i = 0; i < q->n_service_checks; i++) {
    const char *id = pk_str(p, q->service_checks[i].id);
    const char *ns = pk_str(p, q->service_checks[i].ns);
    if (sc) sc[i] = (struct state_session_check){id, ns};
  }
  pub.service_checks = sc;
  const char *lnode = pk_lower(p, q->node);
  if (!r) return;
  r->pub = pub;
  r->lnode = lnode;
  r->tn.key = lid;
  r->tn.key_len = (uint32_t)strlen(lid);
  r->tn.child[0] = r->tn.child[1] = NULL;
  r->tn.height = 1;
  map_init(&r->held);
  int64_t ttl = 0;
  if (pub.ttl[0] && duration_parse(pub.ttl, strlen(pub.ttl), &ttl) == 0 && ttl > 0)
    r->ttl_ms = ttl / 1000000 ? ttl / 1000000 : 1;
}

static struct sess_row *row_build(const struct state_session *req, uint64_t create,
                                  uint64_t modify)
{
  struct fill_arg a = {req, create, modify};
  struct pk p = {NULL, sizeof(struct sess_row)};
  fill(&p, NULL, &a);
  struct sess_row *r = xcalloc(1, p.off);
  struct pk q = {(char *)r, sizeof(struct sess_row)};
  fill(&q, r, &a);
  return r;
}

static struct sess_row *find(const struct state__sessions *t, const char *id)
{
  char key[STATE_SESSION_ID_LEN + 1];
  if (!id_key(key, id)) return NULL;
  struct state__tnode *n = state__tree_find(t->rows, key, strlen(key));
  return n ? row_of(n) : NULL;
}

static void by_node_add(struct state__sessions *t, struct sess_row *r)
{
  size_t len = strlen(r->lnode);
  struct node_sessions *ns = map_get(&t->by_node, r->lnode, len);
  if (!ns) {
    ns = xcalloc(1, sizeof *ns);
    map_put(&t->by_node, r->lnode, len, ns);
  }
  if (ns->n == ns->cap) {
    ns->cap = ns->cap ? ns->cap * 2 : 4;
    ns->v = xrealloc(ns->v, ns->cap * sizeof *ns->v);
  }
  ns->v[ns->n++] = r;
}

static void by_node_del(struct state__sessions *t, struct sess_row *r)
{
  size_t len = strlen(r->lnode);
  struct node_sessions *ns = map_get(&t->by_node, r->lnode, len);
  if (!ns) return;
  for (size_t i = 0; i < ns->n; i++) {
    if (ns->v[i] == r) {
      ns->v[i] = ns->v[--ns->n];
      break;
    }
  }
  if (ns->n == 0) {
    map_del(&t->by_node, r->lnode, len);
    free(ns->v);
    free(ns);
  }
}

/* Links a built row into the table and its indexes (create and restore). */
static void note_deadline(struct state__sessions *t, uint64_t d)
{
  if (d && (!t->min_deadline || d < t->min_deadline)) t->min_deadline = d;
}

static void link_row(struct state__sessions *t, struct sess_row *r, uint64_t now)
{
  state__tree_insert(&t->rows, &r->tn);
  t->count++;
  by_node_add(t, r);
  if (r->ttl_ms) {
    t->n_ttl++;
    if (t->tracking) {
      r->deadline = now + (uint64_t)r->ttl_ms * STATE_SESSION_TTL_MULTIPLIER;
      note_deadline(t, r->deadline);
    }
  }
}

static void unlink_row(struct state__sessions *t, struct sess_row *r)
{
  state__tree_remove(&t->rows, r->tn.key, r->tn.key_len);
  t->count--;
  by_node_del(t, r);
  if (r->ttl_ms) t->n_ttl--;
}

static void fire_session(struct state_store *s, const struct sess_row *r)
{
  char name[16 + STATE_SESSION_ID_LEN];
  snprintf(name, sizeof name, "session.%s", r->tn.key);
  state__watch_table_changed(&s->w, name);
  state__watch_table_changed(&s->w, "sessions");
}

/* ---- validation ---- */

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

static bool too_long(const char *s, size_t cap) { return s && strnlen(s, cap + 1) > cap; }

/* Calls fn for each check ID the session is tied to (Session.CheckIDs: Checks, NodeChecks,
 * then ServiceChecks), stopping at the first non-zero return. */
typedef int (*check_id_fn)(const char *id, void *arg);
static int each_check_id(const struct state_session *q, check_id_fn fn, void *arg)
{
  int rc;
  for (size_t i = 0; i < q->n_checks; i++)
    if ((rc = fn(nz(q->checks[i]), arg))) return rc;
  for (size_t i = 0; i < q->n_node_checks; i++)
    if ((rc = fn(nz(q->node_checks[i]), arg))) return rc;
  for (size_t i = 0; i < q->n_service_checks; i++)
    if ((rc = fn(nz(q->service_checks[i].id), arg))) return rc;
  return 0;
}

struct check_ctx {
  struct state_store *s;
  const char *node;
  char *err;
  size_t errlen;
};

static int check_one(const char *id, void *arg)
{
  struct check_ctx *c = arg;
  const struct state_check *ck = state_check_get(c->s, c->node, id);
  if (!ck) return fail(c->err, c->errlen, CC_ENOTFOUND, "Missing check '%s' registration", id);
  if (strcmp(nz(ck->status), "critical") == 0)
    return fail(c->err, c->errlen, CC_ECONFLICT, "Check '%s' is in %s state", id, ck->status);
  return 0;
}

static int check_caps(const struct state_session *q, char *err, size_t errlen)
{
  if (too_long(q->name, STATE_SESSION_MAX_NAME) || too_long(q->node, STATE_CAT_MAX_NAME) ||
      too_long(q->ttl, 64) || too_long(q->behavior, 64))
    return fail(err, errlen, CC_EINVAL, "session field too long");
  if (q->n_node_checks > STATE_SESSION_MAX_CHECKS || q->n_checks > STATE_SESSION_MAX_CHECKS ||
      q->n_service_checks > STATE_SESSION_MAX_CHECKS)
    return fail(err, errlen, CC_EINVAL, "session has more than %d checks in a list",
                STATE_SESSION_MAX_CHECKS);
  if ((q->n_node_checks && !q->node_checks) || (q->n_checks && !q->checks) ||
      (q->n_service_checks && !q->service_checks))
    return fail(err, errlen, CC_EINVAL, "malformed session checks");
  for (size_t i = 0; i < q->n_node_checks; i++)
    if (too_long(q->node_checks[i], STATE_CAT_MAX_NAME)) return fail(err, errlen, CC_EINVAL, "check ID too long");
  for (size_t i = 0; i < q->n_checks; i++)
    if (too_long(q->checks[i], STATE_CAT_MAX_NAME)) return fail(err, errlen, CC_EINVAL, "check ID too long");
  for (size_t i = 0; i < q->n_service_checks; i++)
    if (too_long(q->service_checks[i].id, STATE_CAT_MAX_NAME) ||
        too_long(q->service_checks[i].ns, STATE_CAT_MAX_NAME))
      return fail(err, errlen, CC_EINVAL, "check ID too long");
  return 0;
}

int state_session_create_validate(struct state_store *s, const struct state_session *q,
                                  char *err, size_t errlen)
{
  if (err && errlen) err[0] = '\0';
  if (!q) return fail(err, errlen, CC_EINVAL, "Missing session");
  if (!q->id || !*q->id) return fail(err, errlen, CC_EINVAL, "Missing session ID");
  if (!uuid_is_valid(q->id)) return fail(err, errlen, CC_EINVAL, "Invalid session ID '%.64s'", q->id);
  const char *b = nz(q->behavior);
  if (*b && strcmp(b, "release") != 0 && strcmp(b, "delete") != 0)
    return fail(err, errlen, CC_EINVAL, "Invalid session behavior: %.64s", b);
  int rc = check_caps(q, err, errlen);
  if (rc) return rc;
  if (find(s->sess, q->id)) return fail(err, errlen, CC_ECONFLICT, "Session ID '%s' already exists", q->id);
  if (!q->node || !*q->node || !state_node_get(s, q->node))
    return fail(err, errlen, CC_ENOTFOUND, "Missing node registration");
  struct check_ctx c = {s, q->node, err, errlen};
  return each_check_id(q, check_one, &c);
}

int state_session_create(struct state_store *s, uint64_t index, const struct state_session *q,
                         char *err, size_t errlen)
{
  if (index == 0 || index < s->applied)
    return fail(err, errlen, CC_EINVAL, "index %llu is below one applied before",
                (unsigned long long)index);
  int rc = state_session_create_validate(s, q, err, errlen);
  if (rc) return rc;
  s->applied = index;
  struct state__sessions *t = s->sess;
  struct sess_row *r = row_build(q, index, index);
  link_row(t, r, t->tracking ? state_store_now_ms(s) : 0);
  t->index = index;
  fire_session(s, r);
  state__watch_flush(&s->w);
  return 0;
}

/* ---- lock-delay ---- */

static void delays_sweep(struct state__sessions *t, uint64_t now)
{
  size_t n = 0, cap = map_count(&t->delays);
  char **dead = cap ? xmalloc(cap * sizeof *dead) : NULL;
  size_t *lens = cap ? xmalloc(cap * sizeof *lens) : NULL;
  for (struct map_iter it = map_iter_start(&t->delays); map_iter_next(&it);) {
    if (*(uint64_t *)it.entry->value <= now) {
      dead[n] = it.entry->key;
      lens[n++] = it.entry->key_len;
    }
  }
  /* Delete after the walk (the map must not change during it); copy the keys first since
   * deleting frees the entry that holds them. */
  for (size_t i = 0; i < n; i++) dead[i] = xmemdup(dead[i], lens[i]);
  for (size_t i = 0; i < n; i++) {
    free(map_del(&t->delays, dead[i], lens[i]));
    free(dead[i]);
  }
  free(dead);
  free(lens);
}

/* Delay.SetExpiration: key may not be locked before now + delay. */
static void delay_set(struct state__sessions *t, const char *key, size_t len, uint64_t now,
                      int64_t delay_ns)
{
  if (delay_ns > STATE_SESSION_MAX_LOCK_DELAY_NS) delay_ns = STATE_SESSION_MAX_LOCK_DELAY_NS;
  if (delay_ns <= 0) return;
  uint64_t ms = (uint64_t)delay_ns / 1000000u;
  if (!ms) ms = 1;
  uint64_t *v = map_get(&t->delays, key, len);
  if (!v) {
    if (map_count(&t->delays) >= t->delays_sweep_at) {
      delays_sweep(t, now);
      t->delays_sweep_at = 2 * map_count(&t->delays) + 64;
    }
    v = xmalloc(sizeof *v);
    map_put(&t->delays, key, len, v);
  }
  *v = now + ms;
}

uint64_t state_kv_lock_delay_ms(struct state_store *s, const char *key, size_t key_len)
{
  struct state__sessions *t = s->sess;
  uint64_t *v = map_get(&t->delays, key, key_len);
  if (!v) return 0;
  uint64_t now = state_store_now_ms(s);
  if (*v > now) return *v - now;
  free(map_del(&t->delays, key, key_len));
  return 0;
}

/* ---- the keys a session holds (kept by store.c) ---- */

void state__session_held_move(struct state_store *s, const char *key, size_t len,
                              const char *from, const char *to)
{
  if (from && to && strcasecmp(from, to) == 0) return;
  struct sess_row *r;
  if (from && (r = find(s->sess, from))) map_del(&r->held, key, len);
  if (to && (r = find(s->sess, to))) map_put(&r->held, key, len, r);
}

bool state__session_exists(struct state_store *s, const char *id)
{
  return find(s->sess, id) != NULL;
}

size_t state_session_held_count(struct state_store *s, const char *id)
{
  struct sess_row *r = find(s->sess, id);
  return r ? map_count(&r->held) : 0;
}

/* ---- destroy and invalidation ---- */

/* deleteSessionTxn on a row: the row goes, then its keys are released or deleted at idx and
 * their lock-delay starts. No flush (the caller's write flushes once). */
static void session_delete(struct state_store *s, uint64_t idx, struct sess_row *r)
{
  struct state__sessions *t = s->sess;
  unlink_row(t, r);
  t->index = idx;
  fire_session(s, r);
  size_t n = map_count(&r->held);
  if (n) {
    /* Copy the keys out: releasing a key calls back into held_move, but the row is already
     * unlinked so nothing touches r->held during the walk. */
    struct { char *key; size_t len; } *keys = xmalloc(n * sizeof *keys);
    size_t i = 0;
    for (struct map_iter it = map_iter_start(&r->held); map_iter_next(&it);) {
      keys[i].key = xmemdup(it.entry->key, it.entry->key_len);
      keys[i++].len = it.entry->key_len;
    }
    bool del = strcmp(r->pub.behavior, "delete") == 0;
    uint64_t now = state_store_now_ms(s);
    for (i = 0; i < n; i++) {
      if (del) state__kv_delete_key(s, idx, keys[i].key, keys[i].len);
      else state__kv_release(s, idx, keys[i].key, keys[i].len);
      delay_set(t, keys[i].key, keys[i].len, now, r->pub.lock_delay_ns);
      free(keys[i].key);
    }
    free(keys);
  }
  map_free(&r->held);
  state__queries_session_deleted(s, idx, r->pub.id); /* deleteSessionTxn: its queries go */
  free(r);
}

int state_session_destroy(struct state_store *s, uint64_t index, const char *id)
{
  if (index == 0 || index < s->applied) return CC_EINVAL;
  s->applied = index;
  struct sess_row *r = find(s->sess, id);
  if (r) session_delete(s, index, r);
  state__watch_flush(&s->w);
  return 0;
}

/* Collects the node's sessions for which keep(row, arg) is true (a copy: deleting changes the
 * node's list). Caller frees. */
static struct sess_row **node_rows(struct state__sessions *t, const char *node, size_t *count,
                                   bool (*keep)(const struct sess_row *r, const void *arg),
                                   const void *arg)
{
  *count = 0;
  size_t len = strlen(node);
  char *lnode = xmalloc(len + 1);
  lower_into(lnode, node, len);
  struct node_sessions *ns = map_get(&t->by_node, lnode, len);
  free(lnode);
  if (!ns || !ns->n) return NULL;
  struct sess_row **v = xmalloc(ns->n * sizeof *v);
  for (size_t i = 0; i < ns->n; i++)
    if (!keep || keep(ns->v[i], arg)) v[(*count)++] = ns->v[i];
  return v;
}

void state__session_invalidate_node(struct state_store *s, uint64_t idx, const char *node)
{
  size_t n;
  struct sess_row **v = node_rows(s->sess, node, &n, NULL, NULL);
  for (size_t i = 0; i < n; i++) session_delete(s, idx, v[i]);
  free(v);
}

static int is_id(const char *id, void *arg)
{
  return strcasecmp(id, (const char *)arg) == 0;
}

static bool tied_to(const struct sess_row *r, const void *check_id)
{
  return each_check_id(&r->pub, is_id, (void *)check_id) != 0;
}

void state__session_invalidate_check(struct state_store *s, uint64_t idx, const char *node,
                                     const char *check_id)
{
  size_t n;
  struct sess_row **v = node_rows(s->sess, node, &n, tied_to, check_id);
  for (size_t i = 0; i < n; i++) session_delete(s, idx, v[i]);
  free(v);
}

/* ---- reads ---- */

size_t state_session_count(const struct state_store *s) { return s->sess->count; }

const struct state_session *state_session_get(struct state_store *s, const char *id)
{
  struct sess_row *r = find(s->sess, id);
  return r ? &r->pub : NULL;
}

void state_session_list(struct state_store *s, state_session_fn fn, void *arg)
{
  struct state__titer it;
  state__tree_seek(&it, s->sess->rows, NULL, 0);
  for (struct state__tnode *n; (n = state__tree_next(&it));)
    if (fn(&row_of(n)->pub, arg)) return;
}

static int cmp_rows(const void *a, const void *b)
{
  const struct sess_row *x = *(const struct sess_row *const *)a;
  const struct sess_row *y = *(const struct sess_row *const *)b;
  return strcmp(x->tn.key, y->tn.key);
}

void state_session_node(struct state_store *s, const char *node, state_session_fn fn, void *arg)
{
  size_t n;
  struct sess_row **v = node_rows(s->sess, nz(node), &n, NULL, NULL);
  if (n > 1) qsort(v, n, sizeof *v, cmp_rows);
  for (size_t i = 0; i < n; i++)
    if (fn(&v[i]->pub, arg)) break;
  free(v);
}

/* ---- TTL timers ---- */

static void arm(struct state__sessions *t, struct sess_row *r, uint64_t now)
{
  r->deadline = r->ttl_ms ? now + (uint64_t)r->ttl_ms * STATE_SESSION_TTL_MULTIPLIER : 0;
  note_deadline(t, r->deadline);
}

void state_session_ttl_track(struct state_store *s, bool on)
{
  struct state__sessions *t = s->sess;
  if (t->tracking == on) return;
  t->tracking = on;
  t->min_deadline = 0;
  uint64_t now = on ? state_store_now_ms(s) : 0;
  struct state__titer it;
  state__tree_seek(&it, t->rows, NULL, 0);
  for (struct state__tnode *n; (n = state__tree_next(&it));) {
    if (on) arm(t, row_of(n), now);
    else row_of(n)->deadline = 0;
  }
}

bool state_session_ttl_tracking(const struct state_store *s) { return s->sess->tracking; }

const struct state_session *state_session_renew(struct state_store *s, const char *id)
{
  struct sess_row *r = find(s->sess, id);
  if (!r) return NULL;
  if (s->sess->tracking) arm(s->sess, r, state_store_now_ms(s));
  return &r->pub;
}

size_t state_session_ttl_expired(struct state_store *s, char (*ids)[STATE_SESSION_ID_LEN + 1],
                                 size_t max, uint64_t retry_ms)
{
  struct state__sessions *t = s->sess;
  if (!t->tracking || !t->n_ttl || !max || !t->min_deadline) return 0;
  uint64_t now = state_store_now_ms(s);
  if (now < t->min_deadline) return 0;
  size_t n = 0;
  uint64_t min = 0;
  struct state__titer it;
  state__tree_seek(&it, t->rows, NULL, 0);
  for (struct state__tnode *node; (node = state__tree_next(&it));) {
    struct sess_row *r = row_of(node);
    if (!r->deadline) continue;
    if (r->deadline <= now && n < max) {
      memcpy(ids[n++], r->tn.key, r->tn.key_len + 1);
      r->deadline = now + (retry_ms ? retry_ms : 1);
    }
    if (!min || r->deadline < min) min = r->deadline;
  }
  t->min_deadline = min;
  return n;
}

uint64_t state_session_ttl_next(struct state_store *s)
{
  struct state__sessions *t = s->sess;
  if (!t->tracking || !t->n_ttl) return 0;
  uint64_t next = 0;
  struct state__titer it;
  state__tree_seek(&it, t->rows, NULL, 0);
  for (struct state__tnode *n; (n = state__tree_next(&it));) {
    uint64_t d = row_of(n)->deadline;
    if (d && (!next || d < next)) next = d;
  }
  return next;
}

/* ---- snapshots ---- */

void state__sessions_walk(const struct state__sessions *t,
                          void (*fn)(void *arg, const struct state_session *se), void *arg)
{
  struct state__titer it;
  state__tree_seek(&it, t->rows, NULL, 0);
  for (struct state__tnode *n; (n = state__tree_next(&it));) fn(arg, &row_of(n)->pub);
}

size_t state__sessions_count(const struct state__sessions *t) { return t->count; }

int state__sessions_restore_row(struct state__sessions *t, const struct state_session *se,
                                uint64_t create, uint64_t modify)
{
  if (!se->id || !uuid_is_valid(se->id) || find(t, se->id)) return CC_ECORRUPT;
  const char *b = nz(se->behavior);
  if (strcmp(b, "release") != 0 && strcmp(b, "delete") != 0) return CC_ECORRUPT;
  if (check_caps(se, NULL, 0) || !se->node || !*se->node) return CC_ECORRUPT;
  struct sess_row *r = row_build(se, create, modify);
  link_row(t, r, 0);
  return 0;
}

void state__sessions_restore_index(struct state__sessions *t, uint64_t index)
{
  t->index = index;
}

/* After a restore has swapped the new tables in: the held-key sets from the KV rows, the
 * clock and tracking carried over from the old table (which is then freed), deadlines armed
 * afresh when tracking (as a new leader would). Lock-delays start empty, as in Consul, whose
 * restore builds a new state store. */
void state__sessions_adopt(struct state_store *s, struct state__sessions *old)
{
  struct state__sessions *t = s->sess;
  t->clock = old->clock;
  t->clock_arg = old->clock_arg;
  struct state__titer it;
  state__tree_seek(&it, s->kvs, NULL, 0);
  for (struct state__tnode *n; (n = state__tree_next(&it));) {
    const struct state_kv *e = &((struct state__kv_row *)n)->kv;
    if (e->session) state__session_held_move(s, e->key, e->key_len, NULL, e->session);
  }
  if (old->tracking) state_session_ttl_track(s, true);
  state__sessions_free(old);
}

void state__sessions_keep_delays(struct state__sessions *t, struct state__sessions *old)
{
  struct map m = t->delays;
  t->delays = old->delays;
  t->delays_sweep_at = old->delays_sweep_at;
  old->delays = m;
}
