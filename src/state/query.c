/* query.c -- the prepared-queries table, templates and execution (rules in query.h).
 *
 * Rows live in one array sorted by ID (Consul lists them in ID order); lookups by name and
 * prefix scan it, which is fine for the few hundred queries a datacenter keeps and is capped
 * by STATE_QUERY_MAX. A template's regexp is compiled once, when its row is written. */
#include <ctype.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/gojson.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "state/internal.h"
#include "state/query.h"

struct qrow {
  char *id;
  json_t *q; /* normalized, without indexes (owned) */
  bool is_template;
  bool has_re;
  regex_t re;
  uint64_t create_index, modify_index;
};

struct state__queries {
  struct qrow **rows; /* sorted by ID (case-insensitive) */
  size_t n, cap;
  uint64_t index; /* table index "prepared-queries" */
};

static int errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return CC_EINVAL;
}

/* ---- normalizing (Go's decoder into structs.PreparedQuery) ---- */

struct norm {
  char *err;
  size_t errlen;
  bool failed;
};

static void type_err(struct norm *n, const json_t *v, const char *path, const char *gotype)
{
  if (n->failed) return;
  n->failed = true;
  snprintf(n->err, n->errlen, "json: cannot unmarshal %s into Go struct field %s of type %s",
           json_go_kind(v), path, gotype);
}

/* Go matches keys case-insensitively; the last match wins. NULL for absent or null. */
static json_t *fld(const json_t *o, const char *name)
{
  json_t *hit = NULL, *v;
  const char *k;
  if (!o || !json_is_object(o)) return NULL;
  json_object_foreach((json_t *)o, k, v)
  {
    if (strcasecmp(k, name) == 0) hit = v;
  }
  return hit && !json_is_null(hit) ? hit : NULL;
}

static json_t *n_str(struct norm *n, const json_t *o, const char *name, const char *path)
{
  json_t *v = fld(o, name);
  if (!v) return json_string("");
  if (!json_is_string(v)) {
    type_err(n, v, path, "string");
    return json_string("");
  }
  return json_incref(v);
}

static json_t *n_bool(struct norm *n, const json_t *o, const char *name, const char *path)
{
  json_t *v = fld(o, name);
  if (!v) return json_false();
  if (!json_is_boolean(v)) {
    type_err(n, v, path, "bool");
    return json_false();
  }
  return json_incref(v);
}

static json_t *n_strs(struct norm *n, const json_t *o, const char *name, const char *path,
                      const char *gotype)
{
  json_t *v = fld(o, name);
  if (!v) return json_null();
  if (!json_is_array(v)) {
    type_err(n, v, path, gotype);
    return json_null();
  }
  json_t *a = json_array();
  size_t i;
  json_t *e;
  json_array_foreach(v, i, e)
  {
    if (json_is_null(e)) json_array_append_new(a, json_string(""));
    else if (!json_is_string(e)) type_err(n, e, path, "string");
    else json_array_append(a, e);
  }
  return a;
}

static int cmp_cstr(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* map[string]string, keys sorted as Go prints them. */
static json_t *n_map(struct norm *n, const json_t *o, const char *name, const char *path)
{
  json_t *v = fld(o, name);
  if (!v) return json_null();
  if (!json_is_object(v)) {
    type_err(n, v, path, "map[string]string");
    return json_null();
  }
  size_t cnt = json_object_size(v), i = 0;
  const char **keys = xmalloc((cnt ? cnt : 1) * sizeof *keys);
  const char *k;
  json_t *e;
  json_object_foreach(v, k, e) keys[i++] = k;
  qsort(keys, cnt, sizeof *keys, cmp_cstr);
  json_t *m = json_object();
  for (i = 0; i < cnt; i++) {
    e = json_object_get(v, keys[i]);
    if (json_is_null(e)) json_object_set_new(m, keys[i], json_string(""));
    else if (!json_is_string(e)) type_err(n, e, path, "string");
    else json_object_set(m, keys[i], e);
  }
  free(keys);
  return m;
}

static json_t *n_int(struct norm *n, const json_t *o, const char *name, const char *path)
{
  json_t *v = fld(o, name);
  if (!v) return json_integer(0);
  if (!json_is_integer(v)) {
    type_err(n, v, path, "int");
    return json_integer(0);
  }
  return json_incref(v);
}

static json_t *n_obj(struct norm *n, const json_t *o, const char *name, const char *path,
                     const char *gotype)
{
  json_t *v = fld(o, name);
  if (v && !json_is_object(v)) {
    type_err(n, v, path, gotype);
    return NULL;
  }
  return v;
}

json_t *state_query_normalize(const json_t *in, char *err, size_t errlen)
{
  struct norm n = {err, errlen, false};
  if (!in || !json_is_object(in)) {
    if (in && !json_is_null(in)) {
      snprintf(err, errlen, "json: cannot unmarshal %s into Go value of type structs.PreparedQuery",
               json_go_kind(in));
      return NULL;
    }
  }
  json_t *q = json_object();
  json_object_set_new(q, "ID", n_str(&n, in, "ID", "PreparedQuery.ID"));
  json_object_set_new(q, "Name", n_str(&n, in, "Name", "PreparedQuery.Name"));
  json_object_set_new(q, "Session", n_str(&n, in, "Session", "PreparedQuery.Session"));
  json_object_set_new(q, "Token", n_str(&n, in, "Token", "PreparedQuery.Token"));

  json_t *t = n_obj(&n, in, "Template", "PreparedQuery.Template", "structs.QueryTemplateOptions");
  json_t *to = json_object();
  json_object_set_new(to, "Type", n_str(&n, t, "Type", "PreparedQuery.Template.Type"));
  json_object_set_new(to, "Regexp", n_str(&n, t, "Regexp", "PreparedQuery.Template.Regexp"));
  json_object_set_new(to, "RemoveEmptyTags",
                      n_bool(&n, t, "RemoveEmptyTags", "PreparedQuery.Template.RemoveEmptyTags"));
  json_object_set_new(q, "Template", to);

  json_t *s = n_obj(&n, in, "Service", "PreparedQuery.Service", "structs.ServiceQuery");
  json_t *so = json_object();
  json_object_set_new(so, "Service", n_str(&n, s, "Service", "PreparedQuery.Service.Service"));
  json_object_set_new(so, "SamenessGroup",
                      n_str(&n, s, "SamenessGroup", "PreparedQuery.Service.SamenessGroup"));
  json_t *f = n_obj(&n, s, "Failover", "PreparedQuery.Service.Failover",
                    "structs.QueryFailoverOptions");
  json_t *fo = json_object();
  json_object_set_new(fo, "NearestN",
                      n_int(&n, f, "NearestN", "PreparedQuery.Service.Failover.NearestN"));
  json_object_set_new(fo, "Datacenters", n_strs(&n, f, "Datacenters",
                                                "PreparedQuery.Service.Failover.Datacenters",
                                                "[]string"));
  json_t *tg = fld(f, "Targets");
  if (tg && !json_is_array(tg)) {
    type_err(&n, tg, "PreparedQuery.Service.Failover.Targets", "[]structs.QueryFailoverTarget");
    tg = NULL;
  }
  if (tg) {
    json_t *arr = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(tg, i, e)
    {
      if (!json_is_object(e) && !json_is_null(e)) {
        type_err(&n, e, "PreparedQuery.Service.Failover.Targets", "structs.QueryFailoverTarget");
        continue;
      }
      json_t *x = json_object();
      json_object_set_new(x, "Peer", n_str(&n, e, "Peer", "QueryFailoverTarget.Peer"));
      json_object_set_new(x, "Datacenter",
                          n_str(&n, e, "Datacenter", "QueryFailoverTarget.Datacenter"));
      json_array_append_new(arr, x);
    }
    json_object_set_new(fo, "Targets", arr);
  } else {
    json_object_set_new(fo, "Targets", json_null());
  }
  json_object_set_new(so, "Failover", fo);
  json_object_set_new(so, "OnlyPassing",
                      n_bool(&n, s, "OnlyPassing", "PreparedQuery.Service.OnlyPassing"));
  json_object_set_new(so, "IgnoreCheckIDs", n_strs(&n, s, "IgnoreCheckIDs",
                                                   "PreparedQuery.Service.IgnoreCheckIDs",
                                                   "[]types.CheckID"));
  json_object_set_new(so, "Near", n_str(&n, s, "Near", "PreparedQuery.Service.Near"));
  json_object_set_new(so, "Tags", n_strs(&n, s, "Tags", "PreparedQuery.Service.Tags", "[]string"));
  json_object_set_new(so, "NodeMeta", n_map(&n, s, "NodeMeta", "PreparedQuery.Service.NodeMeta"));
  json_object_set_new(so, "ServiceMeta",
                      n_map(&n, s, "ServiceMeta", "PreparedQuery.Service.ServiceMeta"));
  json_object_set_new(so, "Connect", n_bool(&n, s, "Connect", "PreparedQuery.Service.Connect"));
  json_object_set_new(so, "Peer", n_str(&n, s, "Peer", "PreparedQuery.Service.Peer"));
  json_object_set_new(q, "Service", so);

  json_t *d = n_obj(&n, in, "DNS", "PreparedQuery.DNS", "structs.QueryDNSOptions");
  json_t *dob = json_object();
  json_object_set_new(dob, "TTL", n_str(&n, d, "TTL", "PreparedQuery.DNS.TTL"));
  json_object_set_new(q, "DNS", dob);
  if (n.failed) {
    json_decref(q);
    return NULL;
  }
  char *text = json_dumps(q, JSON_COMPACT);
  size_t len = text ? strlen(text) : 0;
  free(text);
  if (len > STATE_QUERY_MAX_JSON) {
    snprintf(err, errlen, "prepared query is larger than %d bytes", STATE_QUERY_MAX_JSON);
    json_decref(q);
    return NULL;
  }
  return q;
}

/* ---- small accessors over a normalized query ---- */

static const char *qs(const json_t *o, const char *a, const char *b)
{
  const json_t *v = json_object_get(o, a);
  if (b) v = json_object_get(v, b);
  const char *s = json_string_value(v);
  return s ? s : "";
}

static bool is_template(const json_t *q) { return *qs(q, "Template", "Type") != '\0'; }

static bool is_uuid(const char *s)
{
  if (strlen(s) != 36) return false;
  for (size_t i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!isxdigit((unsigned char)s[i])) {
      return false;
    }
  }
  return true;
}

/* ---- templates: HIL's ${...} as Consul's templates use it ---- */

struct render {
  const char *full, *prefix; /* the name asked, the template's name */
  regmatch_t m[10];
  bool matched;
  char *err;
  size_t errlen;
};

/* Renders s into out; false with the sentence in r->err. path names the field. */
static bool render_str(struct render *r, const char *s, const char *path, struct buf *out)
{
  for (const char *p = s; *p;) {
    if (p[0] == '$' && p[1] == '$' && p[2] == '{') { /* escaped */
      buf_puts(out, "${");
      p += 3;
      continue;
    }
    if (!(p[0] == '$' && p[1] == '{')) {
      buf_putc(out, *p++);
      continue;
    }
    const char *end = strchr(p + 2, '}');
    if (!end) {
      errf(r->err, r->errlen, "Bad format '%s' in Service%s: expected expression end", s, path);
      return false;
    }
    const char *a = p + 2, *b = end;
    while (a < b && isspace((unsigned char)*a)) a++;
    while (b > a && isspace((unsigned char)b[-1])) b--;
    size_t len = (size_t)(b - a);
    char expr[128];
    if (len >= sizeof expr) len = sizeof expr - 1;
    memcpy(expr, a, len);
    expr[len] = '\0';
    if (strcmp(expr, "name.full") == 0) {
      buf_puts(out, r->full);
    } else if (strcmp(expr, "name.prefix") == 0) {
      buf_puts(out, r->prefix);
    } else if (strcmp(expr, "name.suffix") == 0) {
      size_t pl = strlen(r->prefix);
      buf_puts(out, strncmp(r->full, r->prefix, pl) == 0 ? r->full + pl : r->full);
    } else if (strcmp(expr, "agent.segment") == 0) {
      /* no network segments: "" */
    } else if (strncmp(expr, "match(", 6) == 0 && expr[len - 1] == ')') {
      char *e;
      long i = strtol(expr + 6, &e, 10);
      while (isspace((unsigned char)*e)) e++;
      if (e == expr + 6 || *e != ')') {
        errf(r->err, r->errlen, "Bad evaluation for '%s' in Service%s: match: bad argument", s,
             path);
        return false;
      }
      if (r->matched && i >= 0 && i < 10 && r->m[i].rm_so >= 0)
        buf_append(out, r->full + r->m[i].rm_so, (size_t)(r->m[i].rm_eo - r->m[i].rm_so));
    } else {
      errf(r->err, r->errlen, "Bad evaluation for '%s' in Service%s: unknown variable accessed: %s",
           s, path, expr);
      return false;
    }
    p = end + 1;
  }
  return true;
}

static bool render_value(struct render *r, json_t *parent, const char *key, size_t idx,
                         const char *path)
{
  json_t *v = key ? json_object_get(parent, key) : json_array_get(parent, idx);
  if (!json_is_string(v)) return true;
  struct buf out = BUF_INIT;
  bool ok = render_str(r, json_string_value(v), path, &out);
  if (ok) {
    json_t *nv = json_stringn(out.data ? out.data : "", out.len);
    if (!nv) nv = json_string(""); /* invalid UTF-8 from a match: nothing */
    if (key) json_object_set_new(parent, key, nv);
    else json_array_set_new(parent, idx, nv);
  }
  buf_free(&out);
  return ok;
}

static bool render_array(struct render *r, json_t *arr, const char *path)
{
  char p[128];
  for (size_t i = 0; json_is_array(arr) && i < json_array_size(arr); i++) {
    snprintf(p, sizeof p, "%s[%zu]", path, i);
    if (!render_value(r, arr, NULL, i, p)) return false;
  }
  return true;
}

/* Renders the Service part of q (a copy the caller owns) for `name`. */
static bool render(const struct qrow *row, json_t *q, const char *name, char *err, size_t errlen)
{
  struct render r = {.full = name, .prefix = qs(q, "Name", NULL), .err = err, .errlen = errlen};
  if (row && row->has_re) r.matched = regexec(&row->re, name, 10, r.m, 0) == 0;
  json_t *s = json_object_get(q, "Service");
  json_t *f = json_object_get(s, "Failover");
  static const char *const strs[] = {"Service", "SamenessGroup", "Near", "Peer"};
  for (size_t i = 0; i < 4; i++) {
    char p[32];
    snprintf(p, sizeof p, ".%s", strs[i]);
    if (!render_value(&r, s, strs[i], 0, p)) return false;
  }
  if (!render_array(&r, json_object_get(f, "Datacenters"), ".Failover.Datacenters") ||
      !render_array(&r, json_object_get(s, "IgnoreCheckIDs"), ".IgnoreCheckIDs") ||
      !render_array(&r, json_object_get(s, "Tags"), ".Tags"))
    return false;
  json_t *tg = json_object_get(f, "Targets");
  for (size_t i = 0; json_is_array(tg) && i < json_array_size(tg); i++) {
    char p[64];
    snprintf(p, sizeof p, ".Failover.Targets[%zu].Peer", i);
    if (!render_value(&r, json_array_get(tg, i), "Peer", 0, p)) return false;
    snprintf(p, sizeof p, ".Failover.Targets[%zu].Datacenter", i);
    if (!render_value(&r, json_array_get(tg, i), "Datacenter", 0, p)) return false;
  }
  static const char *const maps[] = {"NodeMeta", "ServiceMeta"};
  for (size_t i = 0; i < 2; i++) {
    json_t *m = json_object_get(s, maps[i]);
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(m, tmp, k, v)
    {
      char p[256];
      snprintf(p, sizeof p, ".%s[%.200s]", maps[i], k);
      if (!render_value(&r, m, k, 0, p)) return false;
    }
  }
  if (json_is_true(json_object_get(json_object_get(q, "Template"), "RemoveEmptyTags"))) {
    json_t *tags = json_object_get(s, "Tags");
    for (size_t i = json_is_array(tags) ? json_array_size(tags) : 0; i-- > 0;)
      if (!*json_string_value(json_array_get(tags, i))) json_array_remove(tags, i);
  }
  return true;
}

/* Compiles a template row's regexp and test-renders it with its own name (Consul's Compile).
 * row->q must be set. */
static int compile(struct qrow *row, char *err, size_t errlen)
{
  const json_t *q = row->q;
  row->is_template = is_template(q);
  row->has_re = false;
  if (!row->is_template) return 0;
  const char *type = qs(q, "Template", "Type");
  if (strcmp(type, "name_prefix_match") != 0)
    return errf(err, errlen, "failed compiling template: Bad Template.Type '%s'", type);
  const char *re = qs(q, "Template", "Regexp");
  if (*re) {
    int rc = regcomp(&row->re, re, REG_EXTENDED);
    if (rc) {
      char msg[128];
      regerror(rc, &row->re, msg, sizeof msg);
      return errf(err, errlen, "failed compiling template: Bad Regexp: %s", msg);
    }
    row->has_re = true;
  }
  json_t *dup = json_deep_copy(q);
  char why[256];
  bool ok = render(row, dup, qs(q, "Name", NULL), why, sizeof why);
  json_decref(dup);
  if (!ok) {
    if (row->has_re) regfree(&row->re);
    row->has_re = false;
    return errf(err, errlen, "failed compiling template: %s", why);
  }
  return 0;
}

/* ---- the table ---- */

struct state__queries *state__queries_new(void)
{
  return xcalloc(1, sizeof(struct state__queries));
}

static void row_free(struct qrow *r)
{
  if (!r) return;
  if (r->has_re) regfree(&r->re);
  json_decref(r->q);
  free(r->id);
  free(r);
}

void state__queries_free(struct state__queries *t)
{
  if (!t) return;
  for (size_t i = 0; i < t->n; i++) row_free(t->rows[i]);
  free(t->rows);
  free(t);
}

uint64_t state__queries_index(const struct state__queries *t) { return t->index; }

/* Index of id in the sorted array, or where it would go (*found tells). */
static size_t find_pos(const struct state__queries *t, const char *id, bool *found)
{
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcasecmp(t->rows[mid]->id, id);
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

static struct qrow *find_id(const struct state__queries *t, const char *id)
{
  bool found;
  size_t i = find_pos(t, id, &found);
  return found ? t->rows[i] : NULL;
}

static struct qrow *find_name(const struct state__queries *t, const char *name)
{
  if (!*name) return NULL;
  for (size_t i = 0; i < t->n; i++)
    if (strcasecmp(qs(t->rows[i]->q, "Name", NULL), name) == 0) return t->rows[i];
  return NULL;
}

static void insert_row(struct state__queries *t, struct qrow *r)
{
  bool found;
  size_t i = find_pos(t, r->id, &found);
  if (found) {
    row_free(t->rows[i]);
    t->rows[i] = r;
    return;
  }
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 16;
    t->rows = xrealloc(t->rows, t->cap * sizeof *t->rows);
  }
  memmove(t->rows + i + 1, t->rows + i, (t->n - i) * sizeof *t->rows);
  t->rows[i] = r;
  t->n++;
}

static int check_rules(struct state_store *s, const struct state__queries *t, const char *id,
                       const json_t *q, char *err, size_t errlen)
{
  if (!id || !*id) return errf(err, errlen, "Missing query ID");
  if (!is_uuid(id)) return errf(err, errlen, "query ID '%s' is not a UUID", id);
  const struct qrow *existing = find_id(t, id);
  if (!existing && t->n >= STATE_QUERY_MAX)
    return errf(err, errlen, "more than %d prepared queries", STATE_QUERY_MAX);
  const char *name = qs(q, "Name", NULL);
  if (*name) {
    const struct qrow *other = find_name(t, name);
    if (other && (!existing || existing != other))
      return errf(err, errlen, "name '%s' aliases an existing query name", name);
  } else if (is_template(q)) {
    for (size_t i = 0; i < t->n; i++) {
      const struct qrow *o = t->rows[i];
      if (o->is_template && !*qs(o->q, "Name", NULL) && o != existing)
        return errf(err, errlen, "a query template with an empty name already exists");
    }
  }
  if (is_uuid(name) && find_id(t, name))
    return errf(err, errlen, "name '%s' aliases an existing query ID", name);
  const char *sess = qs(q, "Session", NULL);
  if (*sess && !state__session_exists(s, sess))
    return errf(err, errlen, "invalid session \"%s\"", sess);
  struct qrow tmp = {.q = (json_t *)q};
  int rc = compile(&tmp, err, errlen);
  if (tmp.has_re) regfree(&tmp.re);
  return rc;
}

int state_query_check(struct state_store *s, const char *id, const json_t *q, char *err,
                      size_t errlen)
{
  return check_rules(s, s->queries, id, q, err, errlen);
}

int state_query_set(struct state_store *s, uint64_t index, const char *id, const char *q_json,
                    size_t len, char *err, size_t errlen)
{
  if (err && errlen) err[0] = '\0';
  if (index == 0 || index < s->applied)
    return errf(err, errlen, "index %llu is below one applied before", (unsigned long long)index);
  if (len > STATE_QUERY_MAX_JSON) return errf(err, errlen, "prepared query is too large");
  json_error_t je;
  json_t *in = json_loadb(q_json, len, 0, &je);
  if (!in) return errf(err, errlen, "bad prepared query JSON: %s", je.text);
  json_t *q = state_query_normalize(in, err, errlen);
  json_decref(in);
  if (!q) return CC_EINVAL;
  json_object_set_new(q, "ID", json_string(id ? id : ""));
  int rc = check_rules(s, s->queries, id, q, err, errlen);
  if (rc) {
    json_decref(q);
    return rc;
  }
  s->applied = index;
  struct qrow *r = xcalloc(1, sizeof *r);
  r->id = xstrdup(id);
  r->q = q;
  compile(r, NULL, 0); /* passed above */
  const struct qrow *old = find_id(s->queries, id);
  r->create_index = old ? old->create_index : index;
  r->modify_index = index;
  insert_row(s->queries, r);
  s->queries->index = index;
  state__watch_table_changed(&s->w, STATE_QUERY_TABLE);
  state__watch_flush(&s->w);
  return 0;
}

int state_query_delete(struct state_store *s, uint64_t index, const char *id, char *err,
                       size_t errlen)
{
  if (err && errlen) err[0] = '\0';
  if (index == 0 || index < s->applied)
    return errf(err, errlen, "index %llu is below one applied before", (unsigned long long)index);
  s->applied = index;
  bool found;
  struct state__queries *t = s->queries;
  size_t i = id ? find_pos(t, id, &found) : (found = false, 0);
  if (!found) return 0;
  row_free(t->rows[i]);
  memmove(t->rows + i, t->rows + i + 1, (t->n - i - 1) * sizeof *t->rows);
  t->n--;
  t->index = index;
  state__watch_table_changed(&s->w, STATE_QUERY_TABLE);
  state__watch_flush(&s->w);
  return 0;
}

void state__queries_session_deleted(struct state_store *s, uint64_t idx, const char *session)
{
  struct state__queries *t = s->queries;
  size_t k = 0;
  for (size_t i = 0; i < t->n; i++) {
    if (strcasecmp(qs(t->rows[i]->q, "Session", NULL), session) == 0) row_free(t->rows[i]);
    else t->rows[k++] = t->rows[i];
  }
  if (k == t->n) return;
  t->n = k;
  t->index = idx;
  state__watch_table_changed(&s->w, STATE_QUERY_TABLE);
}

/* ---- reads ---- */

static json_t *with_indexes(const struct qrow *r)
{
  json_t *q = json_deep_copy(r->q);
  json_object_set_new(q, "CreateIndex", json_integer((json_int_t)r->create_index));
  json_object_set_new(q, "ModifyIndex", json_integer((json_int_t)r->modify_index));
  return q;
}

json_t *state_query_get(struct state_store *s, const char *id)
{
  const struct qrow *r = id ? find_id(s->queries, id) : NULL;
  return r ? with_indexes(r) : NULL;
}

json_t *state_query_list(struct state_store *s)
{
  json_t *a = json_array();
  for (size_t i = 0; i < s->queries->n; i++)
    json_array_append_new(a, with_indexes(s->queries->rows[i]));
  return a;
}

size_t state_query_count(const struct state_store *s) { return s->queries->n; }

int state_query_resolve(struct state_store *s, const char *id_or_name, json_t **out, char *err,
                        size_t errlen)
{
  *out = NULL;
  const struct state__queries *t = s->queries;
  if (!id_or_name || !*id_or_name) return errf(err, errlen, "Missing query ID");
  const struct qrow *r = NULL;
  if (is_uuid(id_or_name) && (r = find_id(t, id_or_name))) {
    if (r->is_template)
      return errf(err, errlen,
                  "prepared query templates can only be resolved up by name, not by ID");
    *out = with_indexes(r);
    return 0;
  }
  r = find_name(t, id_or_name);
  if (!r) { /* the longest template name that prefixes it, case-insensitively */
    size_t best = 0;
    for (size_t i = 0; i < t->n; i++) {
      const struct qrow *c = t->rows[i];
      const char *nm = qs(c->q, "Name", NULL);
      size_t l = strlen(nm);
      if (c->is_template && strncasecmp(nm, id_or_name, l) == 0 && (!r || l > best)) {
        r = c;
        best = l;
      }
    }
  }
  if (!r) return CC_ENOTFOUND;
  json_t *q = with_indexes(r);
  if (r->is_template && !render(r, q, id_or_name, err, errlen)) {
    json_decref(q);
    return CC_EINVAL;
  }
  *out = q;
  return 0;
}

/* ---- execute ---- */

struct health_ctx {
  const json_t *ignore;
  bool only_passing, drop;
};

static int health_each(const struct state_check *c, void *arg)
{
  struct health_ctx *h = arg;
  for (size_t i = 0; i < json_array_size(h->ignore); i++)
    if (strcmp(json_string_value(json_array_get(h->ignore, i)), c->check_id) == 0) return 0;
  if (strcmp(c->status, "critical") == 0 ||
      (h->only_passing && strcmp(c->status, "passing") != 0)) {
    h->drop = true;
    return 1;
  }
  return 0;
}

static bool meta_ok(const struct state_map *m, const json_t *filters)
{
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)filters, k, v)
  {
    bool hit = false;
    for (size_t i = 0; i < m->n && !hit; i++)
      hit = strcmp(m->items[i].key, k) == 0 && strcmp(m->items[i].value, json_string_value(v)) == 0;
    if (!hit) return false;
  }
  return true;
}

static bool has_tag(const struct state_service *svc, const char *tag)
{
  for (size_t i = 0; i < svc->n_tags; i++)
    if (strcasecmp(svc->tags[i], tag) == 0) return true;
  return false;
}

size_t state_query_execute(struct state_store *s, const json_t *query,
                           const struct state_service ***out)
{
  *out = NULL;
  const json_t *sq = json_object_get(query, "Service");
  const struct state_service *const *all;
  size_t n = state_service_instances(s, qs(query, "Service", "Service"), &all);
  if (!n) return 0;
  const struct state_service **keep = xmalloc(n * sizeof *keep);
  size_t k = 0;
  const json_t *tags = json_object_get(sq, "Tags");
  const json_t *nmeta = json_object_get(sq, "NodeMeta");
  const json_t *smeta = json_object_get(sq, "ServiceMeta");
  for (size_t i = 0; i < n; i++) {
    const struct state_service *svc = all[i];
    struct health_ctx h = {json_object_get(sq, "IgnoreCheckIDs"),
                           json_is_true(json_object_get(sq, "OnlyPassing")), false};
    state_instance_checks(svc, health_each, &h);
    if (h.drop) continue;
    if (json_object_size(nmeta) && !meta_ok(&svc->node->meta, nmeta)) continue;
    if (json_object_size(smeta) && !meta_ok(&svc->meta, smeta)) continue;
    bool ok = true;
    for (size_t j = 0; ok && j < json_array_size(tags); j++) {
      const char *t = json_string_value(json_array_get(tags, j));
      if (t[0] == '!') ok = !has_tag(svc, t + 1);
      else ok = has_tag(svc, t);
    }
    if (ok) keep[k++] = svc;
  }
  if (!k) {
    free(keep);
    return 0;
  }
  *out = keep;
  return k;
}

/* ---- snapshot rows ---- */

void state__queries_snapshot(const struct state__queries *t, msgpack_packer *pk)
{
  msgpack_pack_array(pk, t->n);
  for (size_t i = 0; i < t->n; i++) {
    const struct qrow *r = t->rows[i];
    char *text = json_dumps(r->q, JSON_COMPACT | JSON_PRESERVE_ORDER);
    msgpack_pack_map(pk, 4);
    state__mp_pack_cstr(pk, "ID");
    state__mp_pack_cstr(pk, r->id);
    state__mp_pack_cstr(pk, "Query");
    state__mp_pack_cstr(pk, text);
    state__mp_pack_cstr(pk, "CreateIndex");
    msgpack_pack_uint64(pk, r->create_index);
    state__mp_pack_cstr(pk, "ModifyIndex");
    msgpack_pack_uint64(pk, r->modify_index);
    free(text);
  }
}

int state__queries_restore(struct state__queries *t, const msgpack_object *rows, uint64_t index)
{
  t->index = index;
  if (!rows) return 0;
  if (rows->type != MSGPACK_OBJECT_ARRAY || rows->via.array.size > STATE_QUERY_MAX)
    return CC_ECORRUPT;
  for (uint32_t i = 0; i < rows->via.array.size; i++) {
    struct state__mp_field f[] = {{"ID", NULL}, {"Query", NULL}, {"CreateIndex", NULL},
                                  {"ModifyIndex", NULL}};
    if (state__mp_fields(&rows->via.array.ptr[i], f, 4)) return CC_ECORRUPT;
    const char *id, *js;
    size_t id_len, js_len;
    uint64_t create, modify;
    if (!f[0].val || state__mp_bytes(f[0].val, false, &id, &id_len) || id_len != 36)
      return CC_ECORRUPT;
    if (!f[1].val || state__mp_bytes(f[1].val, false, &js, &js_len) ||
        js_len > STATE_QUERY_MAX_JSON)
      return CC_ECORRUPT;
    if (!f[2].val || !f[3].val || state__mp_uint(f[2].val, &create) ||
        state__mp_uint(f[3].val, &modify) || !create || create > modify || modify > index)
      return CC_ECORRUPT;
    char idbuf[37];
    memcpy(idbuf, id, 36);
    idbuf[36] = '\0';
    if (!is_uuid(idbuf)) return CC_ECORRUPT;
    if (t->n && strcasecmp(t->rows[t->n - 1]->id, idbuf) >= 0) return CC_ECORRUPT; /* order */
    json_t *in = json_loadb(js, js_len, 0, NULL);
    char err[256];
    json_t *q = in ? state_query_normalize(in, err, sizeof err) : NULL;
    json_decref(in);
    if (!q) return CC_ECORRUPT;
    json_object_set_new(q, "ID", json_string(idbuf));
    struct qrow *r = xcalloc(1, sizeof *r);
    r->id = xstrdup(idbuf);
    r->q = q;
    r->create_index = create;
    r->modify_index = modify;
    if (compile(r, err, sizeof err)) {
      row_free(r);
      return CC_ECORRUPT;
    }
    insert_row(t, r);
  }
  return 0;
}
