/* flags.c -- command-line flags with the rules of Go's `flag` package, which every `consul`
 * command uses, and the two help layouts users see: Go's PrintDefaults after a bad flag, and
 * Consul's flags.Usage for `-h`.
 *
 * Go's rules, kept exactly because scripts depend on them: one or two dashes are the same;
 * "-x=v" or "-x v" give a value, but a bool flag takes a value only as "-x=false"; parsing
 * stops at the first argument that is not a flag (so flags must come before KEY), at a bare
 * "-", or after "--"; numbers go through ParseUint(s, 0, 64), so 0x10, 0o17, 0b1 and 1_000
 * are accepted. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "lib/alloc.h"

void cli__flags_init(struct cli__flagset *fs) { memset(fs, 0, sizeof(*fs)); }

static struct cli__flag *flag_add(struct cli__flagset *fs, const char *name,
                                  enum cli__flag_type type, void *ptr, const char *usage)
{
  /* The table is fixed and filled from code, so overflowing it is a programming error. */
  if (fs->n >= CLI__MAX_FLAGS) abort();
  struct cli__flag *f = &fs->flags[fs->n++];
  f->name = name;
  f->type = type;
  f->ptr = ptr;
  f->usage = usage;
  f->defval = "";
  f->http = false;
  return f;
}

void cli__flag_bool(struct cli__flagset *fs, const char *name, bool *p, const char *usage)
{
  struct cli__flag *f = flag_add(fs, name, CLI__FLAG_BOOL, p, usage);
  f->defval = "false";
  *p = false;
}

void cli__flag_string(struct cli__flagset *fs, const char *name, const char **p,
                      const char *def, const char *usage)
{
  struct cli__flag *f = flag_add(fs, name, CLI__FLAG_STRING, p, usage);
  f->defval = def;
  *p = def;
}

void cli__flag_uint64(struct cli__flagset *fs, const char *name, uint64_t *p,
                      const char *usage)
{
  struct cli__flag *f = flag_add(fs, name, CLI__FLAG_UINT64, p, usage);
  f->defval = "0";
  *p = 0;
}

void cli__flag_optstr(struct cli__flagset *fs, const char *name, struct cli__optstr *p,
                      bool http, const char *usage)
{
  struct cli__flag *f = flag_add(fs, name, CLI__FLAG_OPTSTR, p, usage);
  f->http = http;
  p->v = NULL;
  p->set = false;
}

void cli__flag_optbool(struct cli__flagset *fs, const char *name, struct cli__optbool *p,
                       bool http, const char *usage)
{
  struct cli__flag *f = flag_add(fs, name, CLI__FLAG_OPTBOOL, p, usage);
  f->http = http;
  p->v = false;
  p->set = false;
}

void cli__flag_int(struct cli__flagset *fs, const char *name, int64_t *p, const char *usage)
{
  struct cli__flag *f = flag_add(fs, name, CLI__FLAG_INT, p, usage);
  f->defval = "0";
  *p = 0;
}

void cli__flag_map(struct cli__flagset *fs, const char *name, struct cli__mapflag *p,
                   const char *usage)
{
  flag_add(fs, name, CLI__FLAG_MAP, p, usage);
  memset(p, 0, sizeof(*p));
}

void cli__flag_list(struct cli__flagset *fs, const char *name, struct cli__listflag *p,
                    const char *usage)
{
  flag_add(fs, name, CLI__FLAG_LIST, p, usage);
  memset(p, 0, sizeof(*p));
}

void cli__mapflag_free(struct cli__mapflag *m)
{
  for (size_t i = 0; i < m->n; i++) free(m->key[i]);
  memset(m, 0, sizeof(*m));
}

/* strconv.ParseBool. */
static int parse_bool(const char *s, bool *out)
{
  static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (size_t i = 0; i < 6; i++) {
    if (strcmp(s, yes[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcmp(s, no[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  return -1;
}

/* Go's underscoreOK: an underscore must sit between digits (a base prefix counts as a
 * digit), so "1_000" and "0x_ff" pass but "_1", "1__0" and "1_" do not. */
static bool underscore_ok(const char *s)
{
  char saw = '^';
  size_t i = 0, n = strlen(s);
  bool hex = false;
  if (n >= 2 && s[0] == '0' && strchr("bBoOxX", s[1])) {
    i = 2;
    saw = '0';
    hex = s[1] == 'x' || s[1] == 'X';
  }
  for (; i < n; i++) {
    char c = s[i];
    if (isdigit((unsigned char)c) || (hex && isxdigit((unsigned char)c))) {
      saw = '0';
      continue;
    }
    if (c == '_') {
      if (saw != '0') return false;
      saw = '_';
      continue;
    }
    if (saw == '_') return false;
    saw = '!';
  }
  return saw != '_';
}

/* strconv.ParseUint(s, 0, 64): the base comes from a 0b/0o/0x/0 prefix. Returns 0, -1 for a
 * syntax error ("parse error") or -2 when the value overflows ("value out of range"). */
static int parse_uint64(const char *s0, uint64_t *out)
{
  if (*s0 == '\0') return -1;
  const char *s = s0;
  unsigned base = 10;
  size_t n = strlen(s);
  if (s[0] == '0') {
    char c = n >= 3 ? (char)tolower((unsigned char)s[1]) : '\0';
    if (c == 'b') base = 2, s += 2;
    else if (c == 'o') base = 8, s += 2;
    else if (c == 'x') base = 16, s += 2;
    else base = 8, s += 1;
  }
  uint64_t v = 0;
  bool underscores = false;
  for (; *s; s++) {
    char c = (char)tolower((unsigned char)*s);
    unsigned d;
    if (c == '_') {
      underscores = true;
      continue;
    }
    if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'z') d = (unsigned)(c - 'a' + 10);
    else return -1;
    if (d >= base) return -1;
    if (v > (UINT64_MAX - d) / base) return -2;
    v = v * base + d;
  }
  if (underscores && !underscore_ok(s0)) return -1;
  *out = v;
  return 0;
}

/* strconv.ParseInt(s, 0, 64): an optional sign, then ParseUint's syntax. */
static int parse_int64(const char *s, int64_t *out)
{
  bool neg = false;
  if (*s == '+' || *s == '-') {
    neg = *s == '-';
    s++;
  }
  uint64_t u;
  int rc = parse_uint64(s, &u);
  if (rc != 0) return rc;
  if (!neg && u > (uint64_t)INT64_MAX) return -2;
  if (neg && u > (uint64_t)INT64_MAX + 1) return -2;
  *out = neg ? (int64_t)(0 - u) : (int64_t)u;
  return 0;
}

static struct cli__flag *flag_find(struct cli__flagset *fs, const char *name, size_t len)
{
  for (size_t i = 0; i < fs->n; i++)
    if (strlen(fs->flags[i].name) == len && memcmp(fs->flags[i].name, name, len) == 0)
      return &fs->flags[i];
  return NULL;
}

static int flag_cmp(const void *a, const void *b)
{
  const struct cli__flag *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

/* Pointers to the flags sorted by name, as Go's VisitAll walks them. */
static size_t flags_sorted(const struct cli__flagset *fs, const struct cli__flag **out)
{
  for (size_t i = 0; i < fs->n; i++) out[i] = &fs->flags[i];
  qsort(out, fs->n, sizeof(*out), flag_cmp);
  return fs->n;
}

/* flag.UnquoteUsage: the name of the value (from `backquotes`, else by type; "" for bools)
 * and the usage with the backquotes removed. */
static void unquote_usage(const struct cli__flag *f, struct buf *name, struct buf *usage)
{
  const char *u = f->usage;
  const char *a = strchr(u, '`');
  const char *b = a ? strchr(a + 1, '`') : NULL;
  if (a && b) {
    buf_append(name, a + 1, (size_t)(b - a - 1));
    buf_append(usage, u, (size_t)(a - u));
    buf_append(usage, a + 1, (size_t)(b - a - 1));
    buf_puts(usage, b + 1);
    return;
  }
  buf_puts(usage, u);
  switch (f->type) {
  case CLI__FLAG_BOOL:
  case CLI__FLAG_OPTBOOL: break;
  case CLI__FLAG_STRING: buf_puts(name, "string"); break;
  case CLI__FLAG_UINT64: buf_puts(name, "uint"); break;
  case CLI__FLAG_INT: buf_puts(name, "int"); break;
  case CLI__FLAG_OPTSTR:
  case CLI__FLAG_MAP:
  case CLI__FLAG_LIST: buf_puts(name, "value"); break;
  }
}

void cli__flags_print_defaults(const struct cli__flagset *fs, struct buf *out)
{
  const struct cli__flag *sorted[CLI__MAX_FLAGS];
  size_t n = flags_sorted(fs, sorted);
  for (size_t i = 0; i < n; i++) {
    const struct cli__flag *f = sorted[i];
    struct buf name = BUF_INIT, usage = BUF_INIT;
    unquote_usage(f, &name, &usage);
    size_t start = out->len;
    buf_printf(out, "  -%s", f->name);
    if (name.len) buf_printf(out, " %s", name.data);
    /* Go keeps a one-letter bool's usage on the same line. */
    if (out->len - start <= 4) buf_putc(out, '\t');
    else buf_puts(out, "\n    \t");
    for (const char *p = usage.data ? usage.data : ""; *p; p++) {
      if (*p == '\n') buf_puts(out, "\n    \t");
      else buf_putc(out, *p);
    }
    /* Only non-zero defaults are shown; strings quoted. */
    if (f->type == CLI__FLAG_STRING && f->defval && f->defval[0]) {
      buf_puts(out, " (default ");
      cli__go_quote(out, f->defval);
      buf_putc(out, ')');
    }
    buf_putc(out, '\n');
    buf_free(&name);
    buf_free(&usage);
  }
}

/* Go's failf: the message, then "Usage:" and the defaults, all on the error stream. The
 * message is also left in out (Go's returned error), when out is not NULL. */
static int fail(struct cli__flagset *fs, FILE *errf, const char *msg, char *out,
                size_t outlen)
{
  if (out && outlen) snprintf(out, outlen, "%s", msg ? msg : "flag: help requested");
  struct buf b = BUF_INIT;
  if (msg) buf_printf(&b, "%s\n", msg);
  buf_puts(&b, "Usage:\n");
  cli__flags_print_defaults(fs, &b);
  fwrite(b.data, 1, b.len, errf);
  buf_free(&b);
  return -1;
}

static int set_value(struct cli__flag *f, const char *value, char *msg, size_t msglen)
{
  switch (f->type) {
  case CLI__FLAG_STRING: *(const char **)f->ptr = value; return 0;
  case CLI__FLAG_OPTSTR: {
    struct cli__optstr *o = f->ptr;
    o->v = value;
    o->set = true;
    return 0;
  }
  case CLI__FLAG_INT: {
    int64_t v;
    int rc = parse_int64(value, &v);
    if (rc == 0) {
      *(int64_t *)f->ptr = v;
      return 0;
    }
    struct buf q = BUF_INIT;
    cli__go_quote(&q, value);
    snprintf(msg, msglen, "invalid value %s for flag -%s: %s", q.data, f->name,
             rc == -2 ? "value out of range" : "parse error");
    buf_free(&q);
    return -1;
  }
  case CLI__FLAG_MAP:
  case CLI__FLAG_LIST: {
    /* flag.Var: the Value's own error, quoted into Go's sentence. */
    char why[CLI__ERRLEN];
    why[0] = '\0';
    if (f->type == CLI__FLAG_MAP) {
      struct cli__mapflag *m = f->ptr;
      const char *eq = strchr(value, '=');
      if (!eq) {
        snprintf(why, sizeof(why), "Missing \"=\" value in argument: %s", value);
      } else {
        size_t klen = (size_t)(eq - value), i = 0;
        for (; i < m->n; i++)
          if (strlen(m->key[i]) == klen && memcmp(m->key[i], value, klen) == 0) break;
        if (i < m->n) {
          m->val[i] = eq + 1;
        } else if (m->n >= CLI__MAX_REPEAT) {
          snprintf(why, sizeof(why), "too many values (at most %d)", CLI__MAX_REPEAT);
        } else {
          m->key[m->n] = xstrndup(value, klen);
          m->val[m->n++] = eq + 1;
        }
      }
    } else {
      struct cli__listflag *l = f->ptr;
      if (l->n >= CLI__MAX_REPEAT) snprintf(why, sizeof(why), "too many values (at most %d)",
                                            CLI__MAX_REPEAT);
      else l->v[l->n++] = value;
    }
    if (!why[0]) return 0;
    struct buf q = BUF_INIT;
    cli__go_quote(&q, value);
    snprintf(msg, msglen, "invalid value %s for flag -%s: %s", q.data, f->name, why);
    buf_free(&q);
    return -1;
  }
  case CLI__FLAG_UINT64: {
    uint64_t v;
    int rc = parse_uint64(value, &v);
    if (rc == 0) {
      *(uint64_t *)f->ptr = v;
      return 0;
    }
    struct buf q = BUF_INIT;
    cli__go_quote(&q, value);
    snprintf(msg, msglen, "invalid value %s for flag -%s: %s", q.data, f->name,
             rc == -2 ? "value out of range" : "parse error");
    buf_free(&q);
    return -1;
  }
  case CLI__FLAG_BOOL:
  case CLI__FLAG_OPTBOOL: {
    bool v;
    if (parse_bool(value, &v) != 0) {
      struct buf q = BUF_INIT;
      cli__go_quote(&q, value);
      snprintf(msg, msglen, "invalid boolean value %s for -%s: parse error", q.data, f->name);
      buf_free(&q);
      return -1;
    }
    if (f->type == CLI__FLAG_BOOL) {
      *(bool *)f->ptr = v;
    } else {
      struct cli__optbool *o = f->ptr;
      o->v = v;
      o->set = true;
    }
    return 0;
  }
  }
  return -1;
}

static int flags_parse(struct cli__flagset *fs, int argc, char **argv, int *rest, FILE *errf,
                       char *out, size_t outlen)
{
  char msg[CLI__ERRLEN];
  int i = 0;
  while (i < argc) {
    const char *s = argv[i];
    size_t slen = strlen(s);
    if (slen < 2 || s[0] != '-') break;
    size_t minuses = 1;
    if (s[1] == '-') {
      minuses = 2;
      if (slen == 2) { /* "--" ends the flags and is consumed */
        i++;
        break;
      }
    }
    const char *name = s + minuses;
    if (name[0] == '\0' || name[0] == '-' || name[0] == '=') {
      snprintf(msg, sizeof(msg), "bad flag syntax: %s", s);
      return fail(fs, errf, msg, out, outlen);
    }
    i++;
    const char *eq = strchr(name + 1, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    const char *value = eq ? eq + 1 : NULL;
    struct cli__flag *f = flag_find(fs, name, nlen);
    if (!f) {
      if ((nlen == 4 && memcmp(name, "help", 4) == 0) || (nlen == 1 && name[0] == 'h'))
        return fail(fs, errf, NULL, out, outlen); /* Go's ErrHelp: usage only */
      snprintf(msg, sizeof(msg), "flag provided but not defined: -%.*s", (int)nlen, name);
      return fail(fs, errf, msg, out, outlen);
    }
    if (f->type == CLI__FLAG_BOOL || f->type == CLI__FLAG_OPTBOOL) {
      if (set_value(f, value ? value : "true", msg, sizeof(msg)) != 0)
        return fail(fs, errf, msg, out, outlen);
      continue;
    }
    if (!value) {
      if (i >= argc) {
        snprintf(msg, sizeof(msg), "flag needs an argument: -%s", f->name);
        return fail(fs, errf, msg, out, outlen);
      }
      value = argv[i++];
    }
    if (set_value(f, value, msg, sizeof(msg)) != 0) return fail(fs, errf, msg, out, outlen);
  }
  *rest = i;
  return 0;
}

int cli__flags_parse(struct cli__flagset *fs, int argc, char **argv, int *rest, FILE *errf)
{
  return flags_parse(fs, argc, argv, rest, errf, NULL, 0);
}

int cli__flags_parse_msg(struct cli__flagset *fs, int argc, char **argv, int *rest, FILE *errf,
                         char *msg, size_t msglen)
{
  if (msglen) msg[0] = '\0';
  return flags_parse(fs, argc, argv, rest, errf, msg, msglen);
}

/* ---- Help text ---- */

/* kr/text.Wrap: the words (split on single spaces, newlines first turned into spaces) are
 * broken into lines minimizing the sum of squared shortfalls from lim, with a heavy penalty
 * for a line over lim; the last line costs nothing. Widths count UTF-8 runes. */
void cli__wrap(const char *text, int lim, int pad, struct buf *out)
{
  /* TrimSpace, then newline -> space, then split on ' '. */
  const char *s = text, *e = text + strlen(text);
  while (s < e && isspace((unsigned char)*s)) s++;
  while (e > s && isspace((unsigned char)e[-1])) e--;
  size_t cap = 1;
  for (const char *p = s; p < e; p++)
    if (*p == ' ' || *p == '\n') cap++;
  const char **ws = xcalloc(cap, sizeof(*ws));
  size_t *wl = xcalloc(cap, sizeof(*wl));
  long *wid = xcalloc(cap, sizeof(*wid));
  size_t n = 0;
  const char *w = s;
  for (const char *p = s;; p++) {
    if (p == e || *p == ' ' || *p == '\n') {
      ws[n] = w;
      wl[n] = (size_t)(p - w);
      long runes = 0;
      for (const char *q = w; q < p; q++)
        if (((unsigned char)*q & 0xc0) != 0x80) runes++;
      wid[n] = runes;
      n++;
      if (p == e) break;
      w = p + 1;
    }
  }
  const long spc = 1, pen = 100000;
  long *cost = xcalloc(n, sizeof(*cost));
  size_t *brk = xcalloc(n, sizeof(*brk));
  for (size_t ii = n; ii-- > 0;) {
    long len_all = wid[ii];
    for (size_t j = ii + 1; j < n; j++) len_all += spc + wid[j];
    if (len_all <= lim || ii == n - 1) {
      cost[ii] = 0;
      brk[ii] = n;
      continue;
    }
    cost[ii] = 2147483647L;
    long len = wid[ii]; /* length of words ii..j-1 */
    for (size_t j = ii + 1; j < n; j++) {
      if (j > ii + 1) len += spc + wid[j - 1];
      long d = lim - len;
      long c = d * d + cost[j];
      if (len > lim) c += pen;
      if (c < cost[ii]) {
        cost[ii] = c;
        brk[ii] = j;
      }
    }
  }
  for (size_t ii = 0; ii < n;) {
    if (ii) buf_putc(out, '\n');
    for (int k = 0; k < pad; k++) buf_putc(out, ' ');
    for (size_t j = ii; j < brk[ii]; j++) {
      if (j > ii) buf_putc(out, ' ');
      buf_append(out, ws[j], wl[j]);
    }
    ii = brk[ii];
  }
  if (n == 0)
    for (int k = 0; k < pad; k++) buf_putc(out, ' ');
  free(ws);
  free(wl);
  free(wid);
  free(cost);
  free(brk);
}

static void print_flag(const struct cli__flag *f, struct buf *out)
{
  struct buf name = BUF_INIT, usage = BUF_INIT;
  unquote_usage(f, &name, &usage);
  if (name.len) buf_printf(out, "  -%s=<%s>\n", f->name, name.data);
  else buf_printf(out, "  -%s\n", f->name);
  /* Consul wraps the raw usage, backquotes and all. */
  cli__wrap(f->usage, 72 - 5, 5, out);
  buf_puts(out, "\n\n");
  buf_free(&name);
  buf_free(&usage);
}

void cli__usage_error(struct cli__ctx *ctx, const char *msg, const char *text,
                      const struct cli__flagset *fs)
{
  struct buf h = BUF_INIT;
  cli__flags_usage(text, fs, &h);
  cli__error(ctx, "%s", msg);
  cli__error(ctx, "%s", "");
  cli__error(ctx, "%s", h.data);
  buf_free(&h);
}

void cli__flags_usage(const char *text, const struct cli__flagset *fs, struct buf *out)
{
  const char *s = text, *e = text + strlen(text);
  while (s < e && isspace((unsigned char)*s)) s++;
  while (e > s && isspace((unsigned char)e[-1])) e--;
  size_t start = out->len;
  buf_append(out, s, (size_t)(e - s));
  buf_puts(out, "\n\n");
  if (fs) {
    const struct cli__flag *sorted[CLI__MAX_FLAGS];
    size_t n = flags_sorted(fs, sorted);
    for (int pass = 0; pass < 2; pass++) {
      bool want_http = pass == 0, titled = false;
      for (size_t i = 0; i < n; i++) {
        if (sorted[i]->http != want_http) continue;
        if (!titled) {
          buf_puts(out, want_http ? "HTTP API Options\n\n" : "Command Options\n\n");
          titled = true;
        }
        print_flag(sorted[i], out);
      }
    }
  }
  while (out->len > start && out->data[out->len - 1] == '\n') out->data[--out->len] = '\0';
}
