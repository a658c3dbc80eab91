/* catalog.c -- the catalog tables: nodes, services and checks with Consul's index rules (the
 * rules are listed in catalog.h; the code follows agent/consul/state/catalog.go and
 * catalog_ce.go function by function: ensureNodeTxn, ensureServiceTxn, ensureCheckTxn,
 * deleteNodeTxn, deleteServiceTxn, deleteCheckTxn).
 *
 * Layout. Three ordered trees (tree.h) hold the rows, keyed by lowercased names so that
 * iteration order is Consul's memdb order:
 *   nodes     "<node>"
 *   services  "<node>\0<service id>"   (a node's services are one key range)
 *   checks    "<node>\0<check id>"
 * Each row is one allocation: tree links, the public struct reads borrow, then every string
 * and array it points at (built by a two-pass packer: measure, allocate, fill). Rows are
 * immutable; a write builds the new row and swaps it in, so a failed or no-op write leaves
 * everything as it was.
 *
 * Cross links make the hot reads independent of catalog size: a service name maps to a
 * group holding its instances as a sorted array (the DNS path picks from it at random) and
 * the "service.<name>" index; each instance lists its own checks and each node its
 * node-level checks, so an instance's health costs O(its checks), not O(checks on the node)
 * (one agent may run a thousand services, each with a check).
 *
 * Every request is validated in full before anything changes (Consul gets all-or-nothing
 * from its memdb transaction); the mutations after that cannot fail. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/rand.h"
#include "state/internal.h"

#define ROW_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

struct chk_row;
struct svc_group;

struct node_row {
  struct state__tnode tn; /* key: lowercased name */
  struct state_node pub;
  struct chk_row **checks; /* node-level checks, by lowercased check ID */
  size_t n_checks, cap_checks;
  size_t n_services;
  uint8_t health;      /* enum state_health: the worst of the node-level checks */
  uint64_t node_index; /* "node.<name>" */
  const char *lid;     /* lowercased ID, or NULL */
  char data[];
};

struct svc_row {
  struct state__tnode tn; /* key: "<node>\0<id>", lowercased */
  struct state_service pub;
  struct node_row *owner;
  struct svc_group *group;
  struct chk_row **checks; /* by lowercased check ID */
  size_t n_checks, cap_checks;
  uint8_t health;    /* enum state_health: the worst of the service's own checks */
  const char *lname; /* lowercased service name */
  char data[];
};

struct chk_row {
  struct state__tnode tn; /* key: "<node>\0<check id>", lowercased */
  struct state_check pub;
  struct node_row *owner;
  struct svc_row *svc; /* NULL for a node-level check */
  uint8_t health;      /* enum state_health of pub.status, so health reads compare no strings */
  char data[];
};

struct svc_group {
  const struct state_service **inst; /* sorted by their rows' tree keys */
  size_t n, cap;
  uint64_t index; /* "service.<name>" */
  char lname[];
};

struct state__catalog {
  struct state__tnode *nodes, *services, *checks;
  size_t n_nodes, n_services, n_checks;
  struct map groups;   /* lowercased service name -> struct svc_group */
  struct map node_ids; /* lowercased node ID -> struct node_row */
  uint64_t nodes_index, services_index, checks_index;
  uint64_t svc_extinction, node_extinction;
};

static struct node_row *node_of(struct state__tnode *n) { return (struct node_row *)n; }
static struct svc_row *svc_of(struct state__tnode *n) { return (struct svc_row *)n; }
static struct chk_row *chk_of(struct state__tnode *n) { return (struct chk_row *)n; }
static struct svc_row *svc_row_of(const struct state_service *s)
{
  return ROW_OF(s, struct svc_row, pub);
}

static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* ---- strings ---- */

static const char *nz(const char *s) { return s ? s : ""; }

/* How Consul's CheckServiceNodes.Filter reads a status (catalog.h, enum state_health). */
static enum state_health status_health(const char *status)
{
  if (strcmp(status, "passing") == 0) return STATE_HEALTH_PASSING;
  if (strcmp(status, "critical") == 0) return STATE_HEALTH_CRITICAL;
  return STATE_HEALTH_WARNING;
}

/* An address as the DNS path wants it (catalog.h, addr_family): parsed once per write. */
static void parse_addr(const char *text, uint8_t *family, uint8_t ip[16])
{
  memset(ip, 0, 16);
  *family = 0;
  if (!text || !*text) return;
  if (inet_pton(AF_INET, text, ip) == 1) *family = 4;
  else if (inet_pton(AF_INET6, text, ip) == 1) *family = 16;
}

/* ASCII lowercase (Go's strings.ToLower on the names Consul indexes; non-ASCII bytes are
 * kept, so names differing only in non-ASCII case stay distinct). */
static void lower_into(char *dst, const char *src, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    char ch = src[i];
    dst[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
  }
}

/* A lowercased key "<a>\0<b>" (b may be NULL for "<a>" alone) in buf; returns its length. */
static size_t make_key(char *buf, size_t cap, const char *a, const char *b)
{
  size_t al = strlen(a), bl = b ? strlen(b) : 0;
  size_t len = b ? al + 1 + bl : al;
  if (len + 1 > cap) return 0;
  lower_into(buf, a, al);
  if (b) {
    buf[al] = '\0';
    lower_into(buf + al + 1, b, bl);
  }
  buf[len] = '\0';
  return len;
}

#define KEY_CAP (2 * STATE_CAT_MAX_NAME + 2)

/* ---- the two-pass row packer ---- */

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

static const char *pk_strn(struct pk *p, const char *s, size_t n)
{
  char *d = pk_alloc(p, n + 1, 1);
  if (d) {
    if (n) memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static const char *pk_str(struct pk *p, const char *s) { return pk_strn(p, nz(s), strlen(nz(s))); }
static const char *pk_opt(struct pk *p, const char *s) { return s ? pk_str(p, s) : NULL; }

static const char *pk_lower(struct pk *p, const char *s)
{
  size_t n = strlen(nz(s));
  char *d = pk_alloc(p, n + 1, 1);
  if (d) {
    lower_into(d, nz(s), n);
    d[n] = '\0';
  }
  return d;
}

static int pair_cmp(const void *a, const void *b)
{
  return strcmp(((const struct state_pair *)a)->key, ((const struct state_pair *)b)->key);
}

static int addr_cmp(const void *a, const void *b)
{
  return strcmp(((const struct state_svc_addr *)a)->key, ((const struct state_svc_addr *)b)->key);
}

/* Copies a map, sorted by key (validation has refused duplicate keys). */
static struct state_map pk_map(struct pk *p, const struct state_map *m)
{
  struct state_map out = {NULL, m->n, m->null && m->n == 0};
  struct state_pair *items = m->n ? pk_alloc(p, m->n * sizeof *items, _Alignof(struct state_pair))
                                  : NULL;
  for (size_t i = 0; i < m->n; i++) {
    const char *k = pk_str(p, m->items[i].key), *v = pk_str(p, m->items[i].value);
    if (items) {
      items[i].key = k;
      items[i].value = v;
    }
  }
  if (items) qsort(items, m->n, sizeof *items, pair_cmp);
  out.items = items;
  return out;
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

/* Runs fill twice: to measure, then into one allocation of `head` + the measured bytes.
 * fill writes the row's fields when p->base is set. Returns the allocation (caller frees). */
typedef void (*fill_fn)(struct pk *p, void *row, const void *arg);
static void *pk_build(size_t head, fill_fn fill, const void *arg)
{
  struct pk p = {NULL, head};
  fill(&p, NULL, arg);
  char *row = xcalloc(1, p.off);
  struct pk q = {row, head};
  fill(&q, row, arg);
  return row;
}

/* ---- equality (Go's reflect.DeepEqual on the fields Consul compares) ---- */

static bool str_eq(const char *a, const char *b) { return strcmp(nz(a), nz(b)) == 0; }

/* NULL vs text for optional JSON blobs. */
static bool opt_eq(const char *a, const char *b)
{
  if (!a || !b) return a == b;
  return strcmp(a, b) == 0;
}

/* m1 is stored (sorted); m2 is a request's (any order). */
static bool map_eq(const struct state_map *stored, const struct state_map *req)
{
  bool req_null = req->null && req->n == 0;
  if (stored->null != req_null || stored->n != req->n) return false;
  for (size_t i = 0; i < req->n; i++) {
    const struct state_pair key = {req->items[i].key, NULL};
    const struct state_pair *hit =
        stored->n ? bsearch(&key, stored->items, stored->n, sizeof key, pair_cmp) : NULL;
    if (!hit || strcmp(hit->value, nz(req->items[i].value)) != 0) return false;
  }
  return true;
}

static bool strs_eq(const char *const *a, size_t na, bool a_null, const char *const *b, size_t nb,
                    bool b_null)
{
  if ((a_null && na == 0) != (b_null && nb == 0) || na != nb) return false;
  for (size_t i = 0; i < na; i++)
    if (strcmp(a[i], nz(b[i])) != 0) return false;
  return true;
}

/* ---- catalog lifetime ---- */

struct state__catalog *state__catalog_new(void)
{
  struct state__catalog *c = xcalloc(1, sizeof *c);
  map_init(&c->groups);
  map_init(&c->node_ids);
  return c;
}

static void free_rows(struct state__tnode *n, int kind)
{
  if (!n) return;
  free_rows(n->child[0], kind);
  free_rows(n->child[1], kind);
  if (kind == 0) free(node_of(n)->checks);
  if (kind == 1) free(svc_of(n)->checks);
  free(n);
}

void state__catalog_free(struct state__catalog *c)
{
  if (!c) return;
  free_rows(c->nodes, 0);
  free_rows(c->services, 1);
  free_rows(c->checks, 2);
  for (struct map_iter it = map_iter_start(&c->groups); map_iter_next(&it);) {
    struct svc_group *g = it.entry->value;
    free(g->inst);
    free(g);
  }
  map_free(&c->groups);
  map_free(&c->node_ids);
  free(c);
}

uint64_t state__catalog_max_index(const struct state__catalog *c)
{
  uint64_t m = max_u64(c->nodes_index, c->services_index);
  m = max_u64(m, c->checks_index);
  m = max_u64(m, c->svc_extinction);
  return max_u64(m, c->node_extinction);
}

/* ---- lookups ---- */

static struct node_row *find_node(const struct state__catalog *c, const char *name)
{
  char key[KEY_CAP];
  size_t len = make_key(key, sizeof key, nz(name), NULL);
  if (!len) return NULL;
  struct state__tnode *n = state__tree_find(c->nodes, key, len);
  return n ? node_of(n) : NULL;
}

static struct node_row *find_node_id(const struct state__catalog *c, const char *id)
{
  char key[KEY_CAP];
  size_t len = make_key(key, sizeof key, nz(id), NULL);
  if (!len) return NULL;
  return map_get(&c->node_ids, key, len);
}

static struct svc_row *find_svc(const struct state__catalog *c, const char *node, const char *id)
{
  char key[KEY_CAP];
  size_t len = make_key(key, sizeof key, nz(node), nz(id));
  if (!len) return NULL;
  struct state__tnode *n = state__tree_find(c->services, key, len);
  return n ? svc_of(n) : NULL;
}

static struct chk_row *find_chk(const struct state__catalog *c, const char *node, const char *id)
{
  char key[KEY_CAP];
  size_t len = make_key(key, sizeof key, nz(node), nz(id));
  if (!len) return NULL;
  struct state__tnode *n = state__tree_find(c->checks, key, len);
  return n ? chk_of(n) : NULL;
}

static struct svc_group *find_group(const struct state__catalog *c, const char *name)
{
  char key[KEY_CAP];
  size_t len = make_key(key, sizeof key, nz(name), NULL);
  if (!len) return NULL;
  return map_get(&c->groups, key, len);
}

/* Walks the rows of a tree whose key starts with "<node>\0" (lname is a node row's key,
 * whose terminating NUL is part of the prefix). The tree must not change during the walk. */
struct range {
  struct state__titer it;
  const char *prefix;
  size_t plen;
};

static void range_start(struct range *r, struct state__tnode *tree, const char *lname)
{
  r->prefix = lname;
  r->plen = strlen(lname) + 1;
  state__tree_seek(&r->it, tree, lname, r->plen);
}

static struct state__tnode *range_next(struct range *r)
{
  struct state__tnode *t = state__tree_next(&r->it);
  if (!t || !state__has_prefix(t->key, t->key_len, r->prefix, r->plen)) return NULL;
  return t;
}

#define FOR_NODE_RANGE(tree, lname, var)                                                       \
  for (struct range rg_##var, *once_##var = (range_start(&rg_##var, (tree), (lname)), &rg_##var); \
       once_##var; once_##var = NULL)                                                          \
    for (struct state__tnode *var; (var = range_next(&rg_##var));)

/* Collects the rows under a node's key range into an array (caller frees), so that callers
 * may change the tree while visiting them. */
static struct state__tnode **collect_range(struct state__tnode *tree, const char *lname,
                                           size_t *count)
{
  size_t n = 0, cap = 0;
  struct state__tnode **v = NULL;
  FOR_NODE_RANGE(tree, lname, t)
  {
    if (n == cap) {
      cap = cap ? cap * 2 : 8;
      v = xrealloc(v, cap * sizeof *v);
    }
    v[n++] = t;
  }
  *count = n;
  return v;
}

/* ---- indexes and watches ---- */

struct wctx {
  struct state__catalog *c;
  struct state__watches *w; /* NULL while a restore builds a catalog aside */
  struct state_store *s;    /* for session invalidation; NULL while restoring */
};

static void fire(struct wctx *x, const char *table)
{
  if (x->w) state__watch_table_changed(x->w, table);
}

static void fire2(struct wctx *x, const char *prefix, const char *lname)
{
  if (!x->w) return;
  char name[STATE_CAT_MAX_NAME + 16];
  snprintf(name, sizeof name, "%s%s", prefix, lname);
  state__watch_table_changed(x->w, name);
}

static void bump_group(struct wctx *x, struct svc_group *g, uint64_t idx)
{
  g->index = max_u64(g->index, idx);
  fire2(x, "service.", g->lname);
}

static void bump_node_index(struct wctx *x, struct node_row *n, uint64_t idx)
{
  n->node_index = max_u64(n->node_index, idx);
  fire2(x, "node.", n->tn.key);
}

static void bump_nodes(struct wctx *x, uint64_t idx)
{
  x->c->nodes_index = max_u64(x->c->nodes_index, idx);
  fire(x, "nodes");
}

static void bump_services(struct wctx *x, uint64_t idx)
{
  x->c->services_index = max_u64(x->c->services_index, idx);
  fire(x, "services");
}

static void bump_checks(struct wctx *x, uint64_t idx)
{
  x->c->checks_index = max_u64(x->c->checks_index, idx);
  fire(x, "checks");
}

/* updateAllServiceIndexesOfNode: a node or node-level check change shows in the health of
 * every service on the node. */
static void bump_node_services(struct wctx *x, struct node_row *n, uint64_t idx)
{
  FOR_NODE_RANGE(x->c->services, n->tn.key, t) bump_group(x, svc_of(t)->group, idx);
}

bool state__catalog_table_index(const struct state__catalog *c, const char *table, uint64_t *out)
{
  if (strcmp(table, "nodes") == 0) *out = c->nodes_index;
  else if (strcmp(table, "services") == 0) *out = c->services_index;
  else if (strcmp(table, "checks") == 0) *out = c->checks_index;
  else if (strcmp(table, "service_last_extinction") == 0) *out = c->svc_extinction;
  else if (strcmp(table, "node_last_extinction") == 0) *out = c->node_extinction;
  else if (strncmp(table, "service.", 8) == 0) {
    struct svc_group *g = find_group(c, table + 8);
    *out = g ? g->index : 0;
  } else if (strncmp(table, "node.", 5) == 0) {
    struct node_row *n = find_node(c, table + 5);
    *out = n ? n->node_index : 0;
  } else {
    return false;
  }
  return true;
}

/* ---- sorted pointer arrays (group instances, per-row check lists) ---- */

/* Position of key in a sorted array of rows' tree nodes, or where it would go. */
static size_t tn_search(struct state__tnode *const *v, size_t n, const struct state__tnode *key,
                        bool *found)
{
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = state__tree_cmp(v[mid]->key, v[mid]->key_len, key->key, key->key_len);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  *found = false;
  return lo;
}

/* Inserts or replaces (same key) x in the sorted array *v. */
static void ptrs_put(void ***v, size_t *n, size_t *cap, struct state__tnode *x, void *elem)
{
  bool found;
  size_t i = tn_search((struct state__tnode *const *)*v, *n, x, &found);
  if (found) {
    (*v)[i] = elem;
    return;
  }
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 4;
    *v = xrealloc(*v, *cap * sizeof **v);
  }
  memmove(*v + i + 1, *v + i, (*n - i) * sizeof **v);
  (*v)[i] = elem;
  (*n)++;
}

static void ptrs_del(void **v, size_t *n, struct state__tnode *x)
{
  bool found;
  size_t i = tn_search((struct state__tnode *const *)v, *n, x, &found);
  if (!found) return;
  memmove(v + i, v + i + 1, (*n - i - 1) * sizeof *v);
  (*n)--;
}

/* Group arrays hold public pointers; the tree node is at the start of each row. */
static size_t grp_search(const struct svc_group *g, const struct state__tnode *key, bool *found)
{
  size_t lo = 0, hi = g->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const struct state__tnode *t = &svc_row_of(g->inst[mid])->tn;
    int c = state__tree_cmp(t->key, t->key_len, key->key, key->key_len);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  *found = false;
  return lo;
}

static void group_put(struct svc_group *g, struct svc_row *r)
{
  bool found;
  size_t i = grp_search(g, &r->tn, &found);
  if (found) {
    g->inst[i] = &r->pub;
    return;
  }
  if (g->n == g->cap) {
    g->cap = g->cap ? g->cap * 2 : 4;
    g->inst = xrealloc(g->inst, g->cap * sizeof *g->inst);
  }
  memmove(g->inst + i + 1, g->inst + i, (g->n - i) * sizeof *g->inst);
  g->inst[i] = &r->pub;
  g->n++;
}

static void group_del(struct svc_group *g, struct svc_row *r)
{
  bool found;
  size_t i = grp_search(g, &r->tn, &found);
  if (!found) return;
  memmove(g->inst + i, g->inst + i + 1, (g->n - i - 1) * sizeof *g->inst);
  g->n--;
}

static struct svc_group *group_get_or_add(struct state__catalog *c, const char *lname)
{
  size_t len = strlen(lname);
  struct svc_group *g = map_get(&c->groups, lname, len);
  if (g) return g;
  g = xcalloc(1, sizeof *g + len + 1);
  memcpy(g->lname, lname, len + 1);
  map_put(&c->groups, g->lname, len, g);
  return g;
}

/* Takes an instance out of its group; the last one going drops the group and its
 * "service.<name>" index and sets service_last_extinction (deleteServiceTxn). */
static void group_leave(struct wctx *x, struct svc_row *r, uint64_t idx)
{
  struct svc_group *g = r->group;
  group_del(g, r);
  r->group = NULL;
  if (g->n) {
    bump_group(x, g, idx);
    return;
  }
  fire2(x, "service.", g->lname);
  map_del(&x->c->groups, g->lname, strlen(g->lname));
  free(g->inst);
  free(g);
  x->c->svc_extinction = max_u64(x->c->svc_extinction, idx);
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

static int check_map(const struct state_map *m, const char *what, char *err, size_t errlen)
{
  if (m->n > STATE_CAT_MAX_LIST)
    return fail(err, errlen, CC_EINVAL, "%s has more than %d entries", what, STATE_CAT_MAX_LIST);
  if (m->n && !m->items) return fail(err, errlen, CC_EINVAL, "%s is malformed", what);
  for (size_t i = 0; i < m->n; i++) {
    const char *k = m->items[i].key;
    if (!k || too_long(k, STATE_CAT_MAX_NAME) || too_long(m->items[i].value, STATE_CAT_MAX_STRING))
      return fail(err, errlen, CC_EINVAL, "%s entry is too long", what);
    for (size_t j = 0; j < i; j++)
      if (strcmp(m->items[j].key, k) == 0)
        return fail(err, errlen, CC_EINVAL, "%s has the key %s twice", what, k);
  }
  return 0;
}

static bool meta_key_ok(const char *k)
{
  for (; *k; k++) {
    char ch = *k;
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '_' || ch == '-'))
      return false;
  }
  return true;
}

/* structs.ValidateServiceMetadata(kind, meta, false), with its messages. */
static int check_service_meta(const char *node, const struct state_register_service *svc,
                              const char *id, char *err, size_t errlen)
{
  const struct state_map *m = &svc->meta;
  const char *pre = "Invalid Service Meta for node";
  if (m->n > 64)
    return fail(err, errlen, CC_EINVAL,
                "%s %s and serviceID %s: Node metadata cannot contain more than 64 key/value "
                "pairs",
                pre, node, id);
  for (size_t i = 0; i < m->n; i++) {
    const char *k = m->items[i].key, *v = nz(m->items[i].value), *why = NULL;
    if (!*k) why = "Key cannot be blank";
    else if (!meta_key_ok(k)) why = "Key contains invalid characters";
    else if (strlen(k) > 128) why = "Key is too long (limit: 128 characters)";
    else if (strncmp(k, "consul-", 7) == 0 &&
             !(strcmp(nz(svc->kind), "mesh-gateway") == 0 &&
               strcmp(k, "consul-wan-federation") == 0))
      why = "Key prefix 'consul-' is reserved for internal use";
    else if (strlen(v) > 512) why = "Value is too long (limit: 512 characters)";
    if (why)
      return fail(err, errlen, CC_EINVAL,
                  "%s %s and serviceID %s: Couldn't load metadata pair ('%s', '%s'): %s", pre,
                  node, id, k, v, why);
  }
  return 0;
}

/* ipaddr.IsAny: the unspecified address cannot be a service's address. */
static bool is_any_addr(const char *a)
{
  return strcmp(a, "0.0.0.0") == 0 || strcmp(a, "::") == 0 || strcmp(a, "[::]") == 0;
}

static const char *svc_id(const struct state_register_service *svc)
{
  return svc->id && *svc->id ? svc->id : nz(svc->name);
}

static int validate_service(const struct state_register *req, char *err, size_t errlen)
{
  const struct state_register_service *svc = req->service;
  if (!svc->name || !*svc->name) {
    if (svc->id && *svc->id) return fail(err, errlen, CC_EINVAL, "Must provide service name with ID");
    return fail(err, errlen, CC_EINVAL, "Must provide service name");
  }
  if (too_long(svc->name, STATE_CAT_MAX_NAME) || too_long(svc->id, STATE_CAT_MAX_NAME) ||
      too_long(svc->kind, STATE_CAT_MAX_NAME))
    return fail(err, errlen, CC_EINVAL, "Service name, ID or kind is too long");
  if (too_long(svc->address, STATE_CAT_MAX_STRING) ||
      too_long(svc->socket_path, STATE_CAT_MAX_STRING))
    return fail(err, errlen, CC_EINVAL, "Service address is too long");
  if (is_any_addr(nz(svc->address))) return fail(err, errlen, CC_EINVAL, "Invalid service address");
  if (too_long(svc->proxy, STATE_CAT_MAX_JSON) || too_long(svc->connect, STATE_CAT_MAX_JSON) ||
      too_long(svc->locality, STATE_CAT_MAX_JSON))
    return fail(err, errlen, CC_EINVAL, "Service Proxy, Connect or Locality is too large");
  if (svc->n_tags > STATE_CAT_MAX_LIST || (svc->n_tags && !svc->tags))
    return fail(err, errlen, CC_EINVAL, "Service has more than %d tags", STATE_CAT_MAX_LIST);
  for (size_t i = 0; i < svc->n_tags; i++)
    if (!svc->tags[i] || too_long(svc->tags[i], STATE_CAT_MAX_STRING))
      return fail(err, errlen, CC_EINVAL, "Service tag is too long");
  if (svc->n_tagged > STATE_CAT_MAX_LIST || (svc->n_tagged && !svc->tagged_addresses))
    return fail(err, errlen, CC_EINVAL, "Service has too many tagged addresses");
  for (size_t i = 0; i < svc->n_tagged; i++) {
    const struct state_svc_addr *a = &svc->tagged_addresses[i];
    if (!a->key || too_long(a->key, STATE_CAT_MAX_NAME) ||
        too_long(a->address, STATE_CAT_MAX_STRING))
      return fail(err, errlen, CC_EINVAL, "Service tagged address is too long");
    for (size_t j = 0; j < i; j++)
      if (strcmp(svc->tagged_addresses[j].key, a->key) == 0)
        return fail(err, errlen, CC_EINVAL, "Service has the tagged address %s twice", a->key);
  }
  int rc = check_map(&svc->meta, "Service meta", err, errlen);
  if (rc) return rc;
  return check_service_meta(req->node, svc, svc_id(svc), err, errlen);
}

static bool node_healthy(const struct state__catalog *c, const struct node_row *n)
{
  /* ensureNoNodeWithSimilarNameTxn: a node without a serfHealth check is an external
   * registration and may be taken over; one whose serfHealth is critical is dead. */
  const struct chk_row *h = find_chk(c, n->pub.name, "serfHealth");
  return h && strcmp(h->pub.status, "critical") != 0;
}

static bool changes_node(const struct state_register *req, const struct node_row *n)
{
  if (!n) return true;
  if (req->skip_node_update) return false;
  const struct state_node *p = &n->pub;
  return !str_eq(req->id, p->id) || strcasecmp(req->node, p->name) != 0 ||
         !str_eq(req->address, p->address) || !str_eq(req->datacenter, p->datacenter) ||
         !map_eq(&p->tagged_addresses, &req->tagged_addresses) ||
         !map_eq(&p->meta, &req->node_meta) || !opt_eq(req->locality, p->locality);
}

/* What ensureNodeTxn decides about node IDs. *rename receives the node that currently holds
 * req->id under another name (to be deleted), or NULL. */
static int plan_node(const struct state__catalog *c, const struct state_register *req,
                     struct node_row **rename, char *err, size_t errlen)
{
  *rename = NULL;
  if (!req->id || !*req->id) return 0;
  struct node_row *byid = find_node_id(c, req->id);
  struct node_row *byname = find_node(c, req->node);
  if (byid && strcasecmp(byid->pub.name, req->node) == 0) return 0;
  /* allowClashWithoutID: an ID may be added to a node that had none; taking a name from a
   * live node with another ID is refused. When renaming (byid set) no clash is allowed. */
  if (byname && strcmp(byname->pub.id, req->id) != 0 && (byid || *byname->pub.id) &&
      node_healthy(c, byname)) {
    if (byid)
      return fail(err, errlen, CC_ECONFLICT,
                  "Error while renaming Node ID: \"%s\" (%s): Node name %s is reserved by node %s "
                  "with name %s (%s)",
                  req->id, nz(req->address), req->node, byname->pub.id, byname->pub.name,
                  byname->pub.address);
    return fail(err, errlen, CC_ECONFLICT,
                "Error while renaming Node ID: \"%s\": Node name %s is reserved by node %s with "
                "name %s (%s)",
                req->id, req->node, byname->pub.id, byname->pub.name, byname->pub.address);
  }
  *rename = byid;
  return 0;
}

static int validate(struct state__catalog *c, const struct state_register *req, char *err,
                    size_t errlen)
{
  if (!req || !req->node || !*req->node) return fail(err, errlen, CC_EINVAL, "Must provide node");
  if (too_long(req->node, STATE_CAT_MAX_NAME))
    return fail(err, errlen, CC_EINVAL, "Node name is longer than %d bytes", STATE_CAT_MAX_NAME);
  if ((!req->address || !*req->address) && !req->skip_node_update)
    return fail(err, errlen, CC_EINVAL, "Must provide address if SkipNodeUpdate is not set");
  if (too_long(req->address, STATE_CAT_MAX_STRING) || too_long(req->datacenter, STATE_CAT_MAX_NAME))
    return fail(err, errlen, CC_EINVAL, "Node address or datacenter is too long");
  if (req->id && *req->id && !uuid_is_valid(req->id))
    return fail(err, errlen, CC_EINVAL, "Bad node ID: uuid string is wrong length");
  if (too_long(req->locality, STATE_CAT_MAX_JSON))
    return fail(err, errlen, CC_EINVAL, "Locality is too large");
  int rc;
  if ((rc = check_map(&req->tagged_addresses, "TaggedAddresses", err, errlen))) return rc;
  if ((rc = check_map(&req->node_meta, "NodeMeta", err, errlen))) return rc;
  if (req->service && (rc = validate_service(req, err, errlen))) return rc;
  if (req->n_checks > STATE_CAT_MAX_LIST || (req->n_checks && !req->checks))
    return fail(err, errlen, CC_EINVAL, "More than %d checks", STATE_CAT_MAX_LIST);
  for (size_t i = 0; i < req->n_checks; i++) {
    const struct state_register_check *ck = &req->checks[i];
    const char *cnode = ck->node && *ck->node ? ck->node : req->node;
    if (strcasecmp(cnode, req->node) != 0)
      return fail(err, errlen, CC_EINVAL, "check node \"%s\" does not match node \"%s\"", cnode,
                  req->node);
    const char *cid = ck->check_id && *ck->check_id ? ck->check_id : nz(ck->name);
    if (!*cid) return fail(err, errlen, CC_EINVAL, "Must provide a check ID or name");
    if (too_long(cid, STATE_CAT_MAX_NAME) || too_long(ck->name, STATE_CAT_MAX_STRING) ||
        too_long(ck->service_id, STATE_CAT_MAX_NAME) || too_long(ck->status, STATE_CAT_MAX_NAME) ||
        too_long(ck->notes, STATE_CAT_MAX_STRING) || too_long(ck->type, STATE_CAT_MAX_NAME) ||
        too_long(ck->interval, STATE_CAT_MAX_NAME) || too_long(ck->timeout, STATE_CAT_MAX_NAME) ||
        too_long(ck->output, STATE_CAT_MAX_OUTPUT) || too_long(ck->definition, STATE_CAT_MAX_JSON))
      return fail(err, errlen, CC_EINVAL, "Check %s has an over-long field", cid);
    if (ck->service_id && *ck->service_id) {
      bool in_req = req->service && strcasecmp(svc_id(req->service), ck->service_id) == 0;
      if (!in_req && !find_svc(c, req->node, ck->service_id))
        return fail(err, errlen, CC_ENOTFOUND,
                    "failed inserting check on node \"%s\": Missing service registration", cnode);
    }
  }
  struct node_row *rename;
  if (changes_node(req, find_node(c, req->node)) && (rc = plan_node(c, req, &rename, err, errlen)))
    return rc;
  return 0;
}

int state_catalog_register_validate(struct state_store *s, const struct state_register *req,
                                    char *err, size_t errlen)
{
  if (err && errlen) err[0] = '\0';
  return validate(s->cat, req, err, errlen);
}

/* ---- node rows ---- */

struct node_fill {
  const struct state_register *req;
  uint64_t create, modify;
};

static void fill_node(struct pk *p, void *row, const void *arg)
{
  const struct node_fill *f = arg;
  const struct state_register *req = f->req;
  struct node_row *r = row;
  const char *lname = pk_lower(p, req->node);
  const char *id = pk_str(p, req->id);
  const char *lid = req->id && *req->id ? pk_lower(p, req->id) : NULL;
  const char *name = pk_str(p, req->node);
  const char *address = pk_str(p, req->address);
  const char *dc = pk_str(p, req->datacenter);
  struct state_map tagged = pk_map(p, &req->tagged_addresses);
  struct state_map meta = pk_map(p, &req->node_meta);
  const char *locality = pk_opt(p, req->locality);
  if (!r) return;
  r->tn.key = lname;
  r->tn.key_len = (uint32_t)strlen(lname);
  r->tn.height = 1;
  r->lid = lid;
  r->pub = (struct state_node){.id = id, .name = name, .address = address, .datacenter = dc,
                               .tagged_addresses = tagged, .meta = meta, .locality = locality,
                               .create_index = f->create, .modify_index = f->modify};
  parse_addr(address, &r->pub.addr_family, r->pub.addr_ip);
}

static struct node_row *node_build(const struct state_register *req, uint64_t create,
                                   uint64_t modify)
{
  struct node_fill f = {req, create, modify};
  return pk_build(sizeof(struct node_row), fill_node, &f);
}

/* Puts fresh in old's place (same lowercased name) and moves old's links to it. */
static void node_replace(struct state__catalog *c, struct node_row *old, struct node_row *fresh)
{
  fresh->checks = old->checks;
  fresh->n_checks = old->n_checks;
  fresh->cap_checks = old->cap_checks;
  fresh->health = old->health;
  fresh->n_services = old->n_services;
  fresh->node_index = old->node_index;
  FOR_NODE_RANGE(c->services, old->tn.key, t)
  {
    svc_of(t)->owner = fresh;
    svc_of(t)->pub.node = &fresh->pub;
  }
  FOR_NODE_RANGE(c->checks, old->tn.key, t) chk_of(t)->owner = fresh;
  if (old->lid) map_del(&c->node_ids, old->lid, strlen(old->lid));
  if (fresh->lid) map_put(&c->node_ids, fresh->lid, strlen(fresh->lid), fresh);
  state__tree_replace(&c->nodes, &old->tn, &fresh->tn);
  free(old);
}

static void node_insert(struct state__catalog *c, struct node_row *r)
{
  state__tree_insert(&c->nodes, &r->tn);
  c->n_nodes++;
  if (r->lid) map_put(&c->node_ids, r->lid, strlen(r->lid), r);
}

static void delete_node(struct wctx *x, uint64_t idx, struct node_row *n);

static bool node_same(const struct node_row *n, const struct state_register *req)
{
  return !changes_node(&(struct state_register){.id = req->id,
                                                .node = req->node,
                                                .address = req->address,
                                                .datacenter = req->datacenter,
                                                .tagged_addresses = req->tagged_addresses,
                                                .node_meta = req->node_meta,
                                                .locality = req->locality},
                       n);
}

/* ensureNodeTxn + catalogInsertNode (validation already ran). Returns the node's row. */
static struct node_row *ensure_node(struct wctx *x, uint64_t idx, const struct state_register *req)
{
  struct state__catalog *c = x->c;
  struct node_row *rename = NULL;
  (void)plan_node(c, req, &rename, NULL, 0);
  uint64_t create = idx;
  if (rename) {
    create = rename->pub.create_index; /* Consul keeps the renamed node's CreateIndex */
    delete_node(x, idx, rename);
  }
  struct node_row *old = find_node(c, req->node);
  if (old && !rename) {
    if (node_same(old, req)) return old;
    create = old->pub.create_index;
  }
  struct node_row *fresh = node_build(req, create, idx);
  if (old) node_replace(c, old, fresh);
  else node_insert(c, fresh);
  bump_nodes(x, idx);
  bump_node_index(x, fresh, idx);
  bump_node_services(x, fresh, idx);
  return fresh;
}

/* ---- service rows ---- */

struct svc_fill {
  const char *lnode;
  const struct state_register_service *svc;
  uint64_t create, modify;
};

static void fill_svc(struct pk *p, void *row, const void *arg)
{
  const struct svc_fill *f = arg;
  const struct state_register_service *s = f->svc;
  struct svc_row *r = row;
  size_t nl = strlen(f->lnode);
  const char *id = svc_id(s);
  size_t il = strlen(id);
  char *key = pk_alloc(p, nl + 1 + il + 1, 1);
  if (key) {
    memcpy(key, f->lnode, nl + 1);
    lower_into(key + nl + 1, id, il);
    key[nl + 1 + il] = '\0';
  }
  const char *lname = pk_lower(p, s->name);
  struct state_service pub = {0};
  pub.kind = pk_str(p, s->kind);
  pub.id = pk_str(p, id);
  pub.name = pk_str(p, s->name);
  pub.tags = pk_strs(p, s->tags, s->n_tags);
  pub.n_tags = s->n_tags;
  pub.tags_null = s->tags_null && s->n_tags == 0;
  pub.address = pk_str(p, s->address);
  struct state_svc_addr *ta =
      s->n_tagged ? pk_alloc(p, s->n_tagged * sizeof *ta, _Alignof(struct state_svc_addr)) : NULL;
  for (size_t i = 0; i < s->n_tagged; i++) {
    const char *k = pk_str(p, s->tagged_addresses[i].key);
    const char *a = pk_str(p, s->tagged_addresses[i].address);
    if (ta) ta[i] = (struct state_svc_addr){k, a, s->tagged_addresses[i].port};
  }
  if (ta) qsort(ta, s->n_tagged, sizeof *ta, addr_cmp);
  pub.tagged_addresses = ta;
  pub.n_tagged = s->n_tagged;
  pub.meta = pk_map(p, &s->meta);
  pub.port = s->port;
  pub.socket_path = pk_str(p, s->socket_path);
  /* ToServiceNode: absent or invalid weights become the default {1, 1}. */
  bool ok = s->has_weights && s->weight_passing >= 1 && s->weight_warning >= 0 &&
            s->weight_passing <= 65535 && s->weight_warning <= 65535;
  pub.weight_passing = ok ? s->weight_passing : 1;
  pub.weight_warning = ok ? s->weight_warning : 1;
  pub.enable_tag_override = s->enable_tag_override;
  pub.proxy = pk_opt(p, s->proxy);
  pub.connect = pk_opt(p, s->connect);
  pub.locality = pk_opt(p, s->locality);
  pub.create_index = f->create;
  pub.modify_index = f->modify;
  if (!r) return;
  r->tn.key = key;
  r->tn.key_len = (uint32_t)(nl + 1 + il);
  r->tn.height = 1;
  r->lname = lname;
  r->pub = pub;
  parse_addr(pub.address, &r->pub.addr_family, r->pub.addr_ip);
}

static bool svc_same(const struct svc_row *r, const struct state_register_service *s)
{
  const struct state_service *p = &r->pub;
  if (!str_eq(p->kind, s->kind) || strcmp(p->id, svc_id(s)) != 0 || !str_eq(p->name, s->name) ||
      !strs_eq(p->tags, p->n_tags, p->tags_null, s->tags, s->n_tags, s->tags_null) ||
      !str_eq(p->address, s->address) || p->port != s->port ||
      !str_eq(p->socket_path, s->socket_path) || !map_eq(&p->meta, &s->meta) ||
      p->enable_tag_override != s->enable_tag_override || !opt_eq(p->proxy, s->proxy) ||
      !opt_eq(p->connect, s->connect) || !opt_eq(p->locality, s->locality))
    return false;
  bool ok = s->has_weights && s->weight_passing >= 1 && s->weight_warning >= 0 &&
            s->weight_passing <= 65535 && s->weight_warning <= 65535;
  if (p->weight_passing != (ok ? s->weight_passing : 1) ||
      p->weight_warning != (ok ? s->weight_warning : 1))
    return false;
  if (p->n_tagged != s->n_tagged) return false;
  for (size_t i = 0; i < s->n_tagged; i++) {
    const struct state_svc_addr *a = &s->tagged_addresses[i], *hit = NULL;
    for (size_t j = 0; j < p->n_tagged && !hit; j++)
      if (strcmp(p->tagged_addresses[j].key, a->key) == 0) hit = &p->tagged_addresses[j];
    if (!hit || !str_eq(hit->address, a->address) || hit->port != a->port) return false;
  }
  return true;
}

/* ensureServiceTxn + catalogInsertService. */
static void ensure_service(struct wctx *x, uint64_t idx, struct node_row *n,
                           const struct state_register_service *s)
{
  struct state__catalog *c = x->c;
  struct svc_row *old = find_svc(c, n->pub.name, svc_id(s));
  if (old && svc_same(old, s)) return;
  struct svc_fill f = {n->tn.key, s, old ? old->pub.create_index : idx, idx};
  struct svc_row *r = pk_build(sizeof(struct svc_row), fill_svc, &f);
  r->owner = n;
  r->pub.node = &n->pub;
  if (old) {
    r->checks = old->checks;
    r->n_checks = old->n_checks;
    r->cap_checks = old->cap_checks;
    r->health = old->health;
    for (size_t i = 0; i < r->n_checks; i++) r->checks[i]->svc = r;
    if (strcmp(old->lname, r->lname) != 0) {
      group_leave(x, old, idx); /* renamed: the old name loses an instance */
    } else {
      r->group = old->group;
      group_put(r->group, r);
    }
    state__tree_replace(&c->services, &old->tn, &r->tn);
    free(old);
  } else {
    state__tree_insert(&c->services, &r->tn);
    c->n_services++;
    n->n_services++;
  }
  if (!r->group) {
    r->group = group_get_or_add(c, r->lname);
    group_put(r->group, r);
  }
  bump_services(x, idx);
  bump_group(x, r->group, idx);
  bump_nodes(x, idx);
  bump_node_index(x, n, idx);
}

/* ---- check rows ---- */

struct chk_fill {
  const char *lnode;
  const char *node;
  const struct state_register_check *ck;
  const char *service_name;
  const char *const *tags;
  size_t n_tags;
  bool tags_null;
  const char *type;
  uint64_t create, modify;
};

static void fill_chk(struct pk *p, void *row, const void *arg)
{
  const struct chk_fill *f = arg;
  const struct state_register_check *ck = f->ck;
  struct chk_row *r = row;
  const char *cid = ck->check_id && *ck->check_id ? ck->check_id : nz(ck->name);
  size_t nl = strlen(f->lnode), il = strlen(cid);
  char *key = pk_alloc(p, nl + 1 + il + 1, 1);
  if (key) {
    memcpy(key, f->lnode, nl + 1);
    lower_into(key + nl + 1, cid, il);
    key[nl + 1 + il] = '\0';
  }
  struct state_check pub = {0};
  pub.node = pk_str(p, f->node);
  pub.check_id = pk_str(p, cid);
  pub.name = pk_str(p, ck->name);
  pub.status = pk_str(p, ck->status && *ck->status ? ck->status : "critical");
  pub.notes = pk_str(p, ck->notes);
  pub.output = pk_str(p, ck->output);
  pub.service_id = pk_str(p, ck->service_id);
  pub.service_name = pk_str(p, f->service_name);
  pub.service_tags = pk_strs(p, f->tags, f->n_tags);
  pub.n_service_tags = f->n_tags;
  pub.service_tags_null = f->tags_null && f->n_tags == 0;
  pub.type = pk_str(p, f->type);
  pub.interval = pk_str(p, ck->interval);
  pub.timeout = pk_str(p, ck->timeout);
  pub.exposed_port = ck->exposed_port;
  pub.definition = pk_opt(p, ck->definition);
  pub.create_index = f->create;
  pub.modify_index = f->modify;
  if (!r) return;
  r->tn.key = key;
  r->tn.key_len = (uint32_t)(nl + 1 + il);
  r->tn.height = 1;
  r->pub = pub;
  r->health = (uint8_t)status_health(pub.status);
}

/* HealthCheck.IsSame: Type, Interval, Timeout and ExposedPort are not compared. */
static bool chk_same(const struct chk_row *r, const struct chk_fill *f)
{
  const struct state_check *p = &r->pub;
  const struct state_register_check *ck = f->ck;
  const char *cid = ck->check_id && *ck->check_id ? ck->check_id : nz(ck->name);
  const char *status = ck->status && *ck->status ? ck->status : "critical";
  return strcasecmp(p->node, f->node) == 0 && strcmp(p->check_id, cid) == 0 &&
         str_eq(p->name, ck->name) && strcmp(p->status, status) == 0 &&
         str_eq(p->notes, ck->notes) && str_eq(p->output, ck->output) &&
         str_eq(p->service_id, ck->service_id) && str_eq(p->service_name, f->service_name) &&
         strs_eq(p->service_tags, p->n_service_tags, p->service_tags_null, f->tags, f->n_tags,
                 f->tags_null) &&
         opt_eq(p->definition, ck->definition);
}

/* The worst health in a check list (passing when empty): the aggregate that node and service
 * rows keep, recomputed on every link and unlink, O(that list), so reads are O(1). */
static uint8_t worst_health(struct chk_row *const *checks, size_t n)
{
  uint8_t worst = STATE_HEALTH_PASSING;
  for (size_t i = 0; i < n; i++)
    if (checks[i]->health > worst) worst = checks[i]->health;
  return worst;
}

static void chk_unlink(struct chk_row *r)
{
  if (r->svc) {
    ptrs_del((void **)r->svc->checks, &r->svc->n_checks, &r->tn);
    r->svc->health = worst_health(r->svc->checks, r->svc->n_checks);
  } else {
    ptrs_del((void **)r->owner->checks, &r->owner->n_checks, &r->tn);
    r->owner->health = worst_health(r->owner->checks, r->owner->n_checks);
  }
}

static void chk_link(struct chk_row *r)
{
  if (r->svc) {
    ptrs_put((void ***)&r->svc->checks, &r->svc->n_checks, &r->svc->cap_checks, &r->tn, r);
    r->svc->health = worst_health(r->svc->checks, r->svc->n_checks);
  } else {
    ptrs_put((void ***)&r->owner->checks, &r->owner->n_checks, &r->owner->cap_checks, &r->tn, r);
    r->owner->health = worst_health(r->owner->checks, r->owner->n_checks);
  }
}

/* Consul's CheckType.Type(), for checks registered without a Type: from the definition,
 * which the HTTP layer also summarised in the JSON text. */
static const char *json_str(json_t *o, const char *k)
{
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : "";
}

static bool json_dur_set(json_t *o, const char *k)
{
  json_t *v = json_object_get(o, k);
  if (json_is_string(v)) return json_string_value(v)[0] && strcmp(json_string_value(v), "0s");
  if (json_is_integer(v)) return json_integer_value(v) > 0;
  return false;
}

static void check_type_from(const char *definition, char *out, size_t outlen)
{
  out[0] = '\0';
  if (!definition) return;
  json_t *d = json_loads(definition, 0, NULL);
  if (!json_is_object(d)) {
    json_decref(d);
    return;
  }
  bool iv = json_dur_set(d, "Interval");
  json_t *args = json_object_get(d, "ScriptArgs");
  bool has_args = json_is_array(args) && json_array_size(args) > 0;
  const char *t = "";
  if (*json_str(d, "GRPC") && iv) t = "grpc";
  else if (*json_str(d, "HTTP") && iv) t = "http";
  else if (json_dur_set(d, "TTL")) t = "ttl";
  else if (*json_str(d, "TCP") && iv) t = "tcp";
  else if (*json_str(d, "UDP") && iv) t = "udp";
  else if (*json_str(d, "AliasNode") || *json_str(d, "AliasService")) t = "alias";
  else if (*json_str(d, "DockerContainerID") && has_args && iv) t = "docker";
  else if (has_args && iv) t = "script";
  else if (*json_str(d, "H2PING") && iv) t = "h2ping";
  else if (*json_str(d, "OSService") && iv) t = "os_service";
  snprintf(out, outlen, "%s", t);
  json_decref(d);
}

/* ensureCheckTxn + catalogInsertCheck. */
static void ensure_check(struct wctx *x, uint64_t idx, struct node_row *n, const char *node,
                         const struct state_register_check *ck)
{
  struct state__catalog *c = x->c;
  const char *cid = ck->check_id && *ck->check_id ? ck->check_id : nz(ck->name);
  struct chk_row *old = find_chk(c, n->pub.name, cid);
  struct svc_row *svc = ck->service_id && *ck->service_id ? find_svc(c, n->pub.name, ck->service_id)
                                                          : NULL;
  char type[32];
  if (ck->type && *ck->type) snprintf(type, sizeof type, "%s", ck->type);
  else check_type_from(ck->definition, type, sizeof type);
  struct chk_fill f = {n->tn.key, node, ck, "", NULL, 0, true, type, 0, idx};
  if (svc) { /* copy the service's name and tags into the check */
    f.service_name = svc->pub.name;
    f.tags = svc->pub.tags;
    f.n_tags = svc->pub.n_tags;
    f.tags_null = svc->pub.tags_null;
  }
  /* ensureCheckTxn: a check written as critical invalidates the sessions tied to it, even
   * when the row itself does not change. */
  if (x->s && strcmp(ck->status && *ck->status ? ck->status : "critical", "critical") == 0)
    state__session_invalidate_check(x->s, idx, n->pub.name, cid);
  if (old && chk_same(old, &f)) return;
  if (svc) bump_group(x, svc->group, idx);
  else bump_node_services(x, n, idx);
  f.create = old ? old->pub.create_index : idx;
  struct chk_row *r = pk_build(sizeof(struct chk_row), fill_chk, &f);
  r->owner = n;
  r->svc = svc;
  if (old) {
    chk_unlink(old);
    state__tree_replace(&c->checks, &old->tn, &r->tn);
    free(old);
  } else {
    state__tree_insert(&c->checks, &r->tn);
    c->n_checks++;
  }
  chk_link(r);
  bump_checks(x, idx);
}

/* ---- deletes ---- */

/* deleteCheckTxn. */
static void delete_check(struct wctx *x, uint64_t idx, struct chk_row *r)
{
  struct state__catalog *c = x->c;
  /* deleteCheckTxn: sessions tied to the check go with it. */
  if (x->s) state__session_invalidate_check(x->s, idx, r->owner->pub.name, r->pub.check_id);
  if (r->svc) {
    bump_group(x, r->svc->group, idx);
  } else {
    bump_node_services(x, r->owner, idx);
    bump_services(x, idx);
  }
  chk_unlink(r);
  state__tree_remove(&c->checks, r->tn.key, r->tn.key_len);
  c->n_checks--;
  free(r);
  bump_checks(x, idx);
}

/* deleteServiceTxn. */
static void delete_service(struct wctx *x, uint64_t idx, struct svc_row *r)
{
  struct state__catalog *c = x->c;
  while (r->n_checks) delete_check(x, idx, r->checks[r->n_checks - 1]);
  bump_checks(x, idx);
  state__tree_remove(&c->services, r->tn.key, r->tn.key_len);
  c->n_services--;
  r->owner->n_services--;
  bump_services(x, idx);
  bump_nodes(x, idx);
  bump_node_index(x, r->owner, idx);
  group_leave(x, r, idx);
  free(r->checks);
  free(r);
}

/* deleteNodeTxn. */
static void delete_node(struct wctx *x, uint64_t idx, struct node_row *n)
{
  struct state__catalog *c = x->c;
  bump_node_services(x, n, idx);
  size_t count;
  struct state__tnode **v = collect_range(c->services, n->tn.key, &count);
  for (size_t i = 0; i < count; i++) delete_service(x, idx, svc_of(v[i]));
  free(v);
  while (n->n_checks) delete_check(x, idx, n->checks[n->n_checks - 1]);
  /* deleteNodeTxn: the node's sessions are invalidated (their keys released or deleted). */
  if (x->s) state__session_invalidate_node(x->s, idx, n->pub.name);
  state__tree_remove(&c->nodes, n->tn.key, n->tn.key_len);
  c->n_nodes--;
  if (n->lid) map_del(&c->node_ids, n->lid, strlen(n->lid));
  bump_nodes(x, idx);
  fire2(x, "node.", n->tn.key);
  c->node_extinction = max_u64(c->node_extinction, idx);
  free(n->checks);
  free(n);
}

/* ---- the write entry points ---- */

static int check_index(const struct state_store *s, uint64_t index, char *err, size_t errlen)
{
  if (index == 0 || index < s->applied)
    return fail(err, errlen, CC_EINVAL, "index %llu is below one applied before",
                (unsigned long long)index);
  return 0;
}

int state_catalog_register(struct state_store *s, uint64_t index, const struct state_register *req,
                           char *err, size_t errlen)
{
  if (err && errlen) err[0] = '\0';
  int rc = check_index(s, index, err, errlen);
  if (!rc) rc = validate(s->cat, req, err, errlen);
  if (rc) return rc;
  s->applied = index;
  struct wctx x = {s->cat, &s->w, s};
  struct node_row *n = find_node(s->cat, req->node);
  if (changes_node(req, n)) n = ensure_node(&x, index, req);
  if (req->service) ensure_service(&x, index, n, req->service);
  for (size_t i = 0; i < req->n_checks; i++) {
    const struct state_register_check *ck = &req->checks[i];
    ensure_check(&x, index, n, ck->node && *ck->node ? ck->node : req->node, ck);
  }
  state__watch_flush(&s->w);
  return 0;
}

int state_catalog_deregister(struct state_store *s, uint64_t index,
                             const struct state_deregister *req, char *err, size_t errlen)
{
  if (err && errlen) err[0] = '\0';
  int rc = check_index(s, index, err, errlen);
  if (rc) return rc;
  if (!req || !req->node || !*req->node) return fail(err, errlen, CC_EINVAL, "Must provide node");
  s->applied = index;
  struct wctx x = {s->cat, &s->w, s};
  if (req->service_id && *req->service_id) {
    struct svc_row *r = find_svc(s->cat, req->node, req->service_id);
    if (r) delete_service(&x, index, r);
  } else if (req->check_id && *req->check_id) {
    struct chk_row *r = find_chk(s->cat, req->node, req->check_id);
    if (r) delete_check(&x, index, r);
  } else {
    struct node_row *n = find_node(s->cat, req->node);
    if (n) delete_node(&x, index, n);
  }
  state__watch_flush(&s->w);
  return 0;
}

/* ---- restore: rows with their stored indexes, into a catalog built aside ---- */

int state__catalog_restore_node(struct state__catalog *c, const struct state_register *req,
                                uint64_t create, uint64_t modify, uint64_t node_index)
{
  if (!req->node || !*req->node || too_long(req->node, STATE_CAT_MAX_NAME) || find_node(c, req->node))
    return CC_ECORRUPT;
  if (req->id && *req->id && find_node_id(c, req->id)) return CC_ECORRUPT;
  struct node_row *r = node_build(req, create, modify);
  r->node_index = node_index;
  node_insert(c, r);
  return 0;
}

int state__catalog_restore_service(struct state__catalog *c, const char *node,
                                   const struct state_register_service *s, uint64_t create,
                                   uint64_t modify)
{
  struct node_row *n = find_node(c, node);
  if (!n || !s->name || !*s->name || find_svc(c, node, svc_id(s))) return CC_ECORRUPT;
  struct svc_fill f = {n->tn.key, s, create, modify};
  struct svc_row *r = pk_build(sizeof(struct svc_row), fill_svc, &f);
  r->owner = n;
  r->pub.node = &n->pub;
  state__tree_insert(&c->services, &r->tn);
  c->n_services++;
  n->n_services++;
  r->group = group_get_or_add(c, r->lname);
  group_put(r->group, r);
  return 0;
}

int state__catalog_restore_check(struct state__catalog *c, const struct state_register_check *ck,
                                 uint64_t create, uint64_t modify)
{
  const char *cid = ck->check_id && *ck->check_id ? ck->check_id : nz(ck->name);
  struct node_row *n = find_node(c, ck->node);
  if (!n || !*cid || find_chk(c, ck->node, cid)) return CC_ECORRUPT;
  struct svc_row *svc = NULL;
  if (ck->service_id && *ck->service_id) {
    svc = find_svc(c, ck->node, ck->service_id);
    if (!svc) return CC_ECORRUPT;
  }
  struct chk_fill f = {n->tn.key,          ck->node, ck, nz(ck->service_name), ck->service_tags,
                       ck->n_service_tags, ck->service_tags_null, nz(ck->type), create, modify};
  struct chk_row *r = pk_build(sizeof(struct chk_row), fill_chk, &f);
  r->owner = n;
  r->svc = svc;
  state__tree_insert(&c->checks, &r->tn);
  c->n_checks++;
  chk_link(r);
  return 0;
}

int state__catalog_restore_indexes(struct state__catalog *c, const struct state__catalog_indexes *ix)
{
  c->nodes_index = ix->nodes;
  c->services_index = ix->services;
  c->checks_index = ix->checks;
  c->svc_extinction = ix->svc_extinction;
  c->node_extinction = ix->node_extinction;
  return 0;
}

int state__catalog_restore_service_index(struct state__catalog *c, const char *name,
                                         uint64_t index)
{
  struct svc_group *g = find_group(c, name);
  if (!g) return CC_ECORRUPT;
  g->index = index;
  return 0;
}

void state__catalog_indexes(const struct state__catalog *c, struct state__catalog_indexes *ix)
{
  ix->nodes = c->nodes_index;
  ix->services = c->services_index;
  ix->checks = c->checks_index;
  ix->svc_extinction = c->svc_extinction;
  ix->node_extinction = c->node_extinction;
}

/* Snapshot iteration: every node with its "node.<name>" index, every service, every check,
 * every service name with its index. */
void state__catalog_walk(const struct state__catalog *c, const struct state__catalog_walker *w)
{
  struct state__titer it;
  state__tree_seek(&it, c->nodes, NULL, 0);
  for (struct state__tnode *t; (t = state__tree_next(&it));)
    w->node(w->arg, &node_of(t)->pub, node_of(t)->node_index);
  state__tree_seek(&it, c->services, NULL, 0);
  for (struct state__tnode *t; (t = state__tree_next(&it));) w->service(w->arg, &svc_of(t)->pub);
  state__tree_seek(&it, c->checks, NULL, 0);
  for (struct state__tnode *t; (t = state__tree_next(&it));) w->check(w->arg, &chk_of(t)->pub);
}

size_t state__catalog_group_count(const struct state__catalog *c) { return map_count(&c->groups); }

void state__catalog_counts(const struct state__catalog *c, size_t *nodes, size_t *services,
                           size_t *checks)
{
  *nodes = c->n_nodes;
  *services = c->n_services;
  *checks = c->n_checks;
}

void state__catalog_groups(const struct state__catalog *c,
                           void (*fn)(void *arg, const char *lname, uint64_t index), void *arg)
{
  struct map *m = (struct map *)&c->groups;
  for (struct map_iter it = map_iter_start(m); map_iter_next(&it);) {
    const struct svc_group *g = it.entry->value;
    fn(arg, g->lname, g->index);
  }
}

/* ---- reads ---- */

size_t state_node_count(const struct state_store *s) { return s->cat->n_nodes; }
size_t state_service_count(const struct state_store *s) { return s->cat->n_services; }
size_t state_check_count(const struct state_store *s) { return s->cat->n_checks; }

const struct state_node *state_node_get(struct state_store *s, const char *name)
{
  struct node_row *n = find_node(s->cat, name);
  return n ? &n->pub : NULL;
}

const struct state_node *state_node_get_by_id(struct state_store *s, const char *id)
{
  struct node_row *n = find_node_id(s->cat, id);
  return n ? &n->pub : NULL;
}

const struct state_service *state_service_get(struct state_store *s, const char *node,
                                              const char *service_id)
{
  struct svc_row *r = find_svc(s->cat, node, service_id);
  return r ? &r->pub : NULL;
}

const struct state_check *state_check_get(struct state_store *s, const char *node,
                                          const char *check_id)
{
  struct chk_row *r = find_chk(s->cat, node, check_id);
  return r ? &r->pub : NULL;
}

void state_node_list(struct state_store *s, state_node_fn fn, void *arg)
{
  struct state__titer it;
  state__tree_seek(&it, s->cat->nodes, NULL, 0);
  for (struct state__tnode *t; (t = state__tree_next(&it));)
    if (fn(&node_of(t)->pub, arg)) break;
}

void state_service_list(struct state_store *s, state_service_fn fn, void *arg)
{
  struct state__titer it;
  state__tree_seek(&it, s->cat->services, NULL, 0);
  for (struct state__tnode *t; (t = state__tree_next(&it));)
    if (fn(&svc_of(t)->pub, arg)) break;
}

void state_node_services(struct state_store *s, const char *node, state_service_fn fn, void *arg)
{
  struct node_row *n = find_node(s->cat, node);
  if (!n) return;
  FOR_NODE_RANGE(s->cat->services, n->tn.key, t)
  {
    if (fn(&svc_of(t)->pub, arg)) break;
  }
}

size_t state_service_instances(struct state_store *s, const char *name,
                               const struct state_service *const **out)
{
  struct svc_group *g = find_group(s->cat, name);
  *out = g ? g->inst : NULL;
  return g ? g->n : 0;
}

void state_check_list(struct state_store *s, state_check_fn fn, void *arg)
{
  struct state__titer it;
  state__tree_seek(&it, s->cat->checks, NULL, 0);
  for (struct state__tnode *t; (t = state__tree_next(&it));)
    if (fn(&chk_of(t)->pub, arg)) break;
}

void state_node_checks(struct state_store *s, const char *node, state_check_fn fn, void *arg)
{
  struct node_row *n = find_node(s->cat, node);
  if (!n) return;
  FOR_NODE_RANGE(s->cat->checks, n->tn.key, t)
  {
    if (fn(&chk_of(t)->pub, arg)) break;
  }
}

void state_instance_checks(const struct state_service *svc, state_check_fn fn, void *arg)
{
  const struct svc_row *r = svc_row_of(svc);
  for (size_t i = 0; i < r->owner->n_checks; i++)
    if (fn(&r->owner->checks[i]->pub, arg)) return;
  for (size_t i = 0; i < r->n_checks; i++)
    if (fn(&r->checks[i]->pub, arg)) return;
}

enum state_health state_instance_health(const struct state_service *svc)
{
  const struct svc_row *r = svc_row_of(svc);
  return (enum state_health)(r->owner->health > r->health ? r->owner->health : r->health);
}

/* Every cache line of [p, end). */
static void prefetch_span(const void *p, const void *end)
{
  for (const char *c = p; c < (const char *)end; c += 64) __builtin_prefetch(c);
  __builtin_prefetch((const char *)end - 1);
}

void state_instance_prefetch(const struct state_service *svc, int stage)
{
  const struct svc_row *r = svc_row_of(svc);
  if (stage == 0) {
    prefetch_span(&r->pub, &r->health + 1);
  } else if (stage == 1) {
    prefetch_span(&r->owner->pub, &r->owner->health + 1);
    if (r->pub.address) __builtin_prefetch(r->pub.address);
  } else {
    if (r->owner->pub.name) __builtin_prefetch(r->owner->pub.name);
    if (r->owner->pub.address) __builtin_prefetch(r->owner->pub.address);
  }
}

bool state_node_meta_match(const struct state_node *n, const struct state_pair *filters,
                           size_t n_filters)
{
  for (size_t i = 0; i < n_filters; i++) {
    const struct state_pair key = {filters[i].key, NULL};
    const struct state_pair *hit =
        n->meta.n ? bsearch(&key, n->meta.items, n->meta.n, sizeof key, pair_cmp) : NULL;
    if (!hit || strcmp(hit->value, nz(filters[i].value)) != 0) return false;
  }
  return true;
}
