/* filter.c -- parser, validator and evaluator of Consul's ?filter= language (see filter.h).
 *
 * The parser is a recursive-descent transcription of go-bexpr's grammar.peg, keeping PEG's
 * ordered choice: each rule saves the position and restores it when an alternative fails,
 * so `notes == x` is a selector "notes" (the `not` rule needs whitespace after the word) and
 * `Name == not` a bare-word value. Errors report where parsing got furthest, in the
 * "line:col (offset): ..." form pigeon's parsers print. Nesting is capped at
 * FILTER_MAX_DEPTH, so hostile input cannot exhaust the stack (the fuzzer checks).
 *
 * Validation walks each selector through the type the filter was created for, exactly as
 * bexpr's field configurations do (exact field names, any key below a map, a list of structs
 * exposes the struct's fields), and coerces each value to the field's type once. */
#include "filter/filter.h"

#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/buf.h"

enum op { OP_EQ, OP_NE, OP_IN, OP_NOT_IN, OP_MATCHES, OP_NOT_MATCHES, OP_EMPTY, OP_NOT_EMPTY };

static const char *const op_names[] = {"==",      "!=",          "in",       "not in",
                                       "matches", "not matches", "is empty", "is not empty"};

enum kind { N_OR, N_AND, N_NOT, N_MATCH };

struct node {
  enum kind kind;
  struct node *l, *r; /* OR, AND: both; NOT: l */
  /* N_MATCH */
  enum op op;
  char **parts; /* selector path */
  size_t n_parts;
  char *raw; /* the value as written (NULL for is empty) */
  const struct filter_type *leaf;
  union {
    int64_t i;
    double f;
    bool b;
  } v;
  regex_t re;
  bool has_re;
};

struct filter {
  struct node *root;
  const struct filter_type *type;
};

/* ---- the AST ---- */

static void node_free(struct node *n)
{
  if (!n) return;
  node_free(n->l);
  node_free(n->r);
  for (size_t i = 0; i < n->n_parts; i++) free(n->parts[i]);
  free(n->parts);
  free(n->raw);
  if (n->has_re) regfree(&n->re);
  free(n);
}

static struct node *node_new(enum kind k, struct node *l, struct node *r)
{
  struct node *n = xcalloc(1, sizeof *n);
  n->kind = k;
  n->l = l;
  n->r = r;
  return n;
}

struct sel {
  char **parts;
  size_t n, cap;
};

static void sel_push(struct sel *s, char *part)
{
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 4;
    s->parts = xrealloc(s->parts, s->cap * sizeof *s->parts);
  }
  s->parts[s->n++] = part;
}

static void sel_free(struct sel *s)
{
  for (size_t i = 0; i < s->n; i++) free(s->parts[i]);
  free(s->parts);
  memset(s, 0, sizeof *s);
}

/* "a.b.c": bexpr's Selector.String(). Caller frees. */
static char *sel_string(char *const *parts, size_t n)
{
  struct buf b = BUF_INIT;
  for (size_t i = 0; i < n; i++) {
    if (i) buf_putc(&b, '.');
    buf_puts(&b, parts[i]);
  }
  size_t len;
  return buf_steal(&b, &len);
}

/* ---- the parser ---- */

struct parser {
  const char *s;
  size_t len, pos;
  int depth;
  size_t far;          /* furthest position where something failed */
  const char *expect;  /* what was expected there */
  char custom[160];    /* a rule's own error (bexpr's &{ return false, err }) */
  size_t custom_pos;
};

static void expected(struct parser *p, const char *what)
{
  if (p->pos > p->far || !p->expect) {
    p->far = p->pos;
    p->expect = what;
  }
}

static void custom(struct parser *p, const char *msg)
{
  if (!p->custom[0]) {
    snprintf(p->custom, sizeof p->custom, "%s", msg);
    p->custom_pos = p->pos;
  }
}

static int peek(const struct parser *p) { return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1; }

static bool is_ws(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* `_`: one or more whitespace characters. */
static bool ws1(struct parser *p)
{
  if (!is_ws(peek(p))) {
    expected(p, "[ \\t\\r\\n]");
    return false;
  }
  while (is_ws(peek(p))) p->pos++;
  return true;
}

static void ws0(struct parser *p)
{
  while (is_ws(peek(p))) p->pos++;
}

static bool lit(struct parser *p, const char *word)
{
  size_t n = strlen(word);
  if (p->len - p->pos >= n && memcmp(p->s + p->pos, word, n) == 0) {
    p->pos += n;
    return true;
  }
  expected(p, word);
  return false;
}

static bool ident_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool ident_char(int c)
{
  return ident_start(c) || (c >= '0' && c <= '9') || c == '_' || c == '/';
}

static char *identifier(struct parser *p)
{
  if (!ident_start(peek(p))) {
    expected(p, "[a-zA-Z]");
    return NULL;
  }
  size_t start = p->pos;
  while (ident_char(peek(p))) p->pos++;
  return xstrndup(p->s + start, p->pos - start);
}

static int hexval(int c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static void put_utf8(struct buf *b, unsigned long cp)
{
  if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) cp = 0xfffd;
  if (cp < 0x80) {
    buf_putc(b, (char)cp);
  } else if (cp < 0x800) {
    buf_putc(b, (char)(0xc0 | cp >> 6));
    buf_putc(b, (char)(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    buf_putc(b, (char)(0xe0 | cp >> 12));
    buf_putc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
    buf_putc(b, (char)(0x80 | (cp & 0x3f)));
  } else {
    buf_putc(b, (char)(0xf0 | cp >> 18));
    buf_putc(b, (char)(0x80 | ((cp >> 12) & 0x3f)));
    buf_putc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
    buf_putc(b, (char)(0x80 | (cp & 0x3f)));
  }
}

/* Go's strconv.Unquote of a "..." body [start, end). Returns false on a bad escape or a
 * raw newline. */
static bool unquote(const char *s, size_t start, size_t end, struct buf *out)
{
  for (size_t i = start; i < end; i++) {
    char c = s[i];
    if (c == '\n') return false;
    if (c != '\\') {
      buf_putc(out, c);
      continue;
    }
    if (++i >= end) return false;
    c = s[i];
    int digits = 0;
    switch (c) {
    case 'a': buf_putc(out, '\a'); break;
    case 'b': buf_putc(out, '\b'); break;
    case 'f': buf_putc(out, '\f'); break;
    case 'n': buf_putc(out, '\n'); break;
    case 'r': buf_putc(out, '\r'); break;
    case 't': buf_putc(out, '\t'); break;
    case 'v': buf_putc(out, '\v'); break;
    case '\\': buf_putc(out, '\\'); break;
    case '"': buf_putc(out, '"'); break;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    default:
      if (c >= '0' && c <= '7') { /* \ooo: exactly three octal digits, at most 255 */
        if (i + 2 >= end) return false;
        int v = 0;
        for (int k = 0; k < 3; k++) {
          char d = s[i + (size_t)k];
          if (d < '0' || d > '7') return false;
          v = v * 8 + (d - '0');
        }
        if (v > 255) return false;
        buf_putc(out, (char)v);
        i += 2;
        break;
      }
      return false;
    }
    if (digits) {
      if (i + (size_t)digits >= end) return false;
      unsigned long v = 0;
      for (int k = 1; k <= digits; k++) {
        int h = hexval((unsigned char)s[i + (size_t)k]);
        if (h < 0) return false;
        v = v * 16 + (unsigned long)h;
      }
      i += (size_t)digits;
      if (digits == 2) buf_putc(out, (char)v);
      else put_utf8(out, v);
    }
  }
  return true;
}

/* StringLiteral: `raw` or "quoted". Caller frees. */
static char *string_literal(struct parser *p)
{
  int q = peek(p);
  if (q != '"' && q != '`') {
    expected(p, "\"\\\"\"");
    return NULL;
  }
  size_t start = p->pos + 1, i = start;
  while (i < p->len && p->s[i] != q) {
    if (q == '"' && p->s[i] == '\\' && i + 1 < p->len) i++;
    i++;
  }
  if (i >= p->len) {
    p->pos = p->len;
    custom(p, "Unterminated string literal");
    return NULL;
  }
  struct buf b = BUF_INIT;
  if (q == '`') {
    buf_append(&b, p->s + start, i - start);
  } else if (!unquote(p->s, start, i, &b)) {
    buf_free(&b);
    custom(p, "invalid syntax");
    return NULL;
  }
  p->pos = i + 1;
  size_t len;
  return buf_steal(&b, &len);
}

/* JSON pointer selector: "/a/b~1c" (pointerstructure's ~0 ~1 escapes). */
static bool pointer_char(int c)
{
  return c >= 0x80 || ident_char(c) || c == '-' || c == '.' || c == '~' || c == ':' || c == '|';
}

static bool json_pointer(struct parser *p, struct sel *out)
{
  size_t save = p->pos;
  if (peek(p) != '"') return false;
  p->pos++;
  while (peek(p) == '/') {
    p->pos++;
    size_t start = p->pos;
    while (pointer_char(peek(p)) && peek(p) != '/') p->pos++;
    if (p->pos == start) break;
    struct buf b = BUF_INIT;
    for (size_t i = start; i < p->pos; i++) {
      if (p->s[i] == '~' && i + 1 < p->pos && (p->s[i + 1] == '0' || p->s[i + 1] == '1')) {
        buf_putc(&b, p->s[i + 1] == '0' ? '~' : '/');
        i++;
      } else {
        buf_putc(&b, p->s[i]);
      }
    }
    size_t len;
    sel_push(out, buf_steal(&b, &len));
  }
  if (peek(p) == '"' && out->n) {
    p->pos++;
    return true;
  }
  sel_free(out);
  p->pos = save;
  return false;
}

static bool selector(struct parser *p, struct sel *out)
{
  memset(out, 0, sizeof *out);
  if (json_pointer(p, out)) return true;
  char *first = identifier(p);
  if (!first) return false;
  sel_push(out, first);
  for (;;) {
    size_t save = p->pos;
    if (peek(p) == '.') {
      p->pos++;
      if (ident_start(peek(p))) {
        sel_push(out, identifier(p));
        continue;
      }
      size_t start = p->pos;
      while (peek(p) >= '0' && peek(p) <= '9') p->pos++;
      if (p->pos > start) {
        sel_push(out, xstrndup(p->s + start, p->pos - start));
        continue;
      }
      p->pos = save;
      break;
    }
    if (peek(p) == '[') {
      p->pos++;
      ws0(p);
      char *key = string_literal(p);
      if (!key) {
        custom(p, "Invalid index");
        p->pos = save;
        break;
      }
      ws0(p);
      if (peek(p) != ']') {
        free(key);
        custom(p, "Unclosed index expression");
        p->pos = save;
        break;
      }
      p->pos++;
      sel_push(out, key);
      continue;
    }
    break;
  }
  return true;
}

/* Value: a selector (as its dotted text), a number or a string. Caller frees. */
static char *value(struct parser *p)
{
  struct sel s;
  size_t save = p->pos;
  if (selector(p, &s)) {
    char *raw = sel_string(s.parts, s.n);
    sel_free(&s);
    return raw;
  }
  p->pos = save;
  int c = peek(p);
  if (c == '-' || (c >= '0' && c <= '9')) {
    size_t start = p->pos;
    if (c == '-') p->pos++;
    if (peek(p) == '0') {
      p->pos++;
    } else if (peek(p) >= '1' && peek(p) <= '9') {
      while (peek(p) >= '0' && peek(p) <= '9') p->pos++;
    } else {
      p->pos = save;
      expected(p, "[0-9]");
      return NULL;
    }
    if (peek(p) == '.' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0' &&
        p->s[p->pos + 1] <= '9') {
      p->pos++;
      while (peek(p) >= '0' && peek(p) <= '9') p->pos++;
    }
    int after = peek(p);
    if (after == -1 || is_ws(after) || after == ')') return xstrndup(p->s + start, p->pos - start);
    custom(p, "Invalid number literal");
    p->pos = save;
    return NULL;
  }
  return string_literal(p);
}

/* Tries each operator rule in grammar order; returns true with *op set. */
static bool op_after_selector(struct parser *p, enum op *op)
{
  size_t save = p->pos;
  ws0(p);
  if (lit(p, "==")) { ws0(p); *op = OP_EQ; return true; }
  if (lit(p, "!=")) { ws0(p); *op = OP_NE; return true; }
  p->pos = save;
  static const struct { const char *words[3]; enum op op; } ops[] = {
      {{"contains", NULL, NULL}, OP_IN},   {{"not", "contains", NULL}, OP_NOT_IN},
      {{"matches", NULL, NULL}, OP_MATCHES}, {{"not", "matches", NULL}, OP_NOT_MATCHES},
  };
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    p->pos = save;
    bool ok = ws1(p);
    for (int w = 0; ok && w < 3 && ops[i].words[w]; w++) ok = lit(p, ops[i].words[w]) && ws1(p);
    if (ok) {
      *op = ops[i].op;
      return true;
    }
  }
  p->pos = save;
  return false;
}

static bool op_empty(struct parser *p, enum op *op)
{
  size_t save = p->pos;
  if (ws1(p) && lit(p, "is") && ws1(p)) {
    size_t mid = p->pos;
    if (lit(p, "empty")) {
      *op = OP_EMPTY;
      return true;
    }
    p->pos = mid;
    if (lit(p, "not") && ws1(p) && lit(p, "empty")) {
      *op = OP_NOT_EMPTY;
      return true;
    }
  }
  p->pos = save;
  return false;
}

static bool op_in(struct parser *p, enum op *op)
{
  size_t save = p->pos;
  if (ws1(p)) {
    size_t mid = p->pos;
    if (lit(p, "in") && ws1(p)) {
      *op = OP_IN;
      return true;
    }
    p->pos = mid;
    if (lit(p, "not") && ws1(p) && lit(p, "in") && ws1(p)) {
      *op = OP_NOT_IN;
      return true;
    }
  }
  p->pos = save;
  return false;
}

static struct node *match_node(struct sel *s, enum op op, char *raw)
{
  struct node *n = node_new(N_MATCH, NULL, NULL);
  n->op = op;
  n->parts = s->parts;
  n->n_parts = s->n;
  n->raw = raw;
  memset(s, 0, sizeof *s);
  return n;
}

static struct node *match_expr(struct parser *p)
{
  size_t save = p->pos;
  struct sel s;
  enum op op;
  if (selector(p, &s)) {
    size_t after = p->pos;
    if (op_after_selector(p, &op)) {
      char *v = value(p);
      if (v) return match_node(&s, op, v);
    }
    p->pos = after;
    if (op_empty(p, &op)) return match_node(&s, op, NULL);
    sel_free(&s);
  }
  p->pos = save;
  char *v = value(p);
  if (v) {
    if (op_in(p, &op)) {
      if (selector(p, &s)) return match_node(&s, op, v);
      custom(p, "Invalid selector");
    }
    free(v);
  }
  p->pos = save;
  return NULL;
}

static struct node *or_expr(struct parser *p);

static struct node *paren_expr(struct parser *p)
{
  size_t save = p->pos;
  if (peek(p) == '(') {
    if (++p->depth > FILTER_MAX_DEPTH) {
      custom(p, "expression nested too deeply");
      return NULL;
    }
    p->pos++;
    ws0(p);
    struct node *e = or_expr(p);
    p->depth--;
    if (e) {
      ws0(p);
      if (peek(p) == ')') {
        p->pos++;
        return e;
      }
      expected(p, "\")\"");
      node_free(e);
      custom(p, "Unmatched parentheses");
    }
    p->pos = save;
    return NULL;
  }
  return match_expr(p);
}

static struct node *not_expr(struct parser *p)
{
  size_t save = p->pos;
  if (lit(p, "not") && ws1(p)) {
    if (++p->depth > FILTER_MAX_DEPTH) {
      custom(p, "expression nested too deeply");
      return NULL;
    }
    struct node *e = not_expr(p);
    p->depth--;
    if (e) {
      if (e->kind == N_NOT) { /* not not x == x, as bexpr simplifies */
        struct node *inner = e->l;
        e->l = NULL;
        node_free(e);
        return inner;
      }
      return node_new(N_NOT, e, NULL);
    }
  }
  p->pos = save;
  return paren_expr(p);
}

static struct node *and_expr(struct parser *p)
{
  struct node *l = not_expr(p);
  if (!l) return NULL;
  size_t save = p->pos;
  if (ws1(p) && lit(p, "and") && ws1(p)) {
    if (++p->depth > FILTER_MAX_DEPTH) {
      custom(p, "expression nested too deeply");
      node_free(l);
      return NULL;
    }
    struct node *r = and_expr(p);
    p->depth--;
    if (r) return node_new(N_AND, l, r);
  }
  p->pos = save;
  return l;
}

static struct node *or_expr(struct parser *p)
{
  struct node *l = and_expr(p);
  if (!l) return NULL;
  size_t save = p->pos;
  if (ws1(p) && lit(p, "or") && ws1(p)) {
    if (++p->depth > FILTER_MAX_DEPTH) {
      custom(p, "expression nested too deeply");
      node_free(l);
      return NULL;
    }
    struct node *r = or_expr(p);
    p->depth--;
    if (r) return node_new(N_OR, l, r);
  }
  p->pos = save;
  return l;
}

static void position_error(const struct parser *p, size_t pos, const char *msg, char *err,
                           size_t errlen)
{
  /* pigeon counts lines and columns (1-based) in characters of the input. */
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos && i < p->len; i++) {
    if (p->s[i] == '\n') {
      line++;
      col = 1;
    } else if (((unsigned char)p->s[i] & 0xc0) != 0x80) {
      col++;
    }
  }
  snprintf(err, errlen, "%zu:%zu (%zu): %s", line, col, pos, msg);
}

static struct node *parse(const char *s, size_t len, char *err, size_t errlen)
{
  struct parser p = {.s = s, .len = len};
  ws0(&p);
  struct node *n = or_expr(&p);
  if (n) {
    ws0(&p);
    if (p.pos == p.len) return n;
    expected(&p, "EOF");
    node_free(n);
  }
  if (p.custom[0]) {
    position_error(&p, p.custom_pos, p.custom, err, errlen);
  } else {
    char msg[96];
    snprintf(msg, sizeof msg, "no match found, expected: %s", p.expect ? p.expect : "expression");
    position_error(&p, p.far, msg, err, errlen);
  }
  return NULL;
}

/* ---- validation ---- */

static const struct filter_field *field_of(const struct filter_type *t, const char *name)
{
  for (size_t i = 0; i < t->n_fields; i++)
    if (strcmp(t->fields[i].name, name) == 0) return &t->fields[i];
  return NULL;
}

static bool is_primitive(const struct filter_type *t)
{
  return t->kind == FILTER_STRING || t->kind == FILTER_INT || t->kind == FILTER_FLOAT ||
         t->kind == FILTER_BOOL;
}

static bool op_supported(const struct filter_type *t, enum op op)
{
  switch (t->kind) {
  case FILTER_STRING: return true;
  case FILTER_INT:
  case FILTER_FLOAT:
  case FILTER_BOOL: return op == OP_EQ || op == OP_NE;
  case FILTER_MAP: return op == OP_EMPTY || op == OP_NOT_EMPTY || op == OP_IN || op == OP_NOT_IN;
  case FILTER_SLICE:
    if (op == OP_EMPTY || op == OP_NOT_EMPTY) return true;
    return is_primitive(t->elem) && (op == OP_IN || op == OP_NOT_IN);
  default: return false;
  }
}

static int verr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int verr(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* strconv.ParseBool. */
static int parse_bool(const char *s, bool *out)
{
  static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (size_t i = 0; i < 6; i++) {
    if (strcmp(s, t[i]) == 0) return *out = true, 0;
    if (strcmp(s, f[i]) == 0) return *out = false, 0;
  }
  return -1;
}

/* Go's RE2 syntax mapped onto POSIX ERE, with RE2's limits. glibc's regcomp expands
 * counted repetitions and stacks quantifiers, so hostile patterns ("a+++++...", "(a{999}){999}")
 * would take gigabytes; RE2 refuses exactly those, so they are refused here with RE2's
 * messages: a quantifier on a quantifier is a nested repetition (a lazy "?" after one is
 * dropped: it does not change whether a match exists), repeat counts are at most 1000 and
 * their product across nested groups too, backreferences do not exist. \d \D become classes,
 * \n \t \r \f \v literal characters, and a leading (?i) becomes REG_ICASE. */
#define RE_MAX_LEN 1024
#define RE_MAX_REPEAT 1000

static int re_translate(const char *src, struct buf *out, char *msg, size_t msglen)
{
  size_t n = strlen(src);
  if (n > RE_MAX_LEN) return snprintf(msg, msglen, "expression too large"), -1;
  /* Per open group: the largest repeat product inside it. */
  unsigned long group_max[FILTER_MAX_DEPTH + 1];
  int depth = 0;
  group_max[0] = 1;
  unsigned long last_atom = 1; /* repeat product of the atom a quantifier would apply to */
  bool after_quant = false, can_quant = false, in_class = false;
  for (size_t i = 0; i < n; i++) {
    char c = src[i];
    if (in_class) {
      if (c == '\\' && i + 1 < n) {
        char e = src[++i];
        if (e == 'd') buf_puts(out, "0-9");
        else if (e == 'n') buf_putc(out, '\n');
        else if (e == 't') buf_putc(out, '\t');
        else if (e == ']' || e == '\\' || e == '-' || e == '^') {
          /* POSIX has no escapes inside brackets: keep the character literal. */
          if (e == ']') buf_puts(out, "]"); else buf_putc(out, e);
        } else buf_putc(out, e);
        continue;
      }
      if (c == ']') in_class = false;
      buf_putc(out, c);
      continue;
    }
    bool quant = c == '*' || c == '+' || c == '?' || c == '{';
    if (quant) {
      if (c == '?' && after_quant) continue; /* lazy: same match/no-match answer */
      if (after_quant || !can_quant) {
        snprintf(msg, msglen, "invalid nested repetition operator: `%.2s`", src + (i ? i - 1 : i));
        return -1;
      }
      unsigned long count = c == '?' ? 1 : 2;
      if (c == '{') {
        size_t j = i + 1;
        unsigned long lo = 0, hi = 0;
        bool digits = false;
        while (j < n && src[j] >= '0' && src[j] <= '9') lo = lo * 10 + (unsigned long)(src[j++] - '0'), digits = true;
        hi = lo;
        if (j < n && src[j] == ',') {
          j++;
          hi = 0;
          while (j < n && src[j] >= '0' && src[j] <= '9') hi = hi * 10 + (unsigned long)(src[j++] - '0');
          if (!hi) hi = lo;
        }
        if (!digits || j >= n || src[j] != '}') {
          buf_puts(out, "\\{"); /* RE2 takes a malformed {...} literally */
          can_quant = true;
          after_quant = false;
          last_atom = 1;
          continue;
        }
        if (lo > RE_MAX_REPEAT || hi > RE_MAX_REPEAT || hi < lo) {
          snprintf(msg, msglen, "invalid repeat count: `%.*s`", (int)(j - i + 1), src + i);
          return -1;
        }
        count = hi ? hi : 1;
        buf_append(out, src + i, j - i + 1);
        i = j;
      } else {
        buf_putc(out, c);
      }
      unsigned long product = last_atom * count;
      if (product > RE_MAX_REPEAT) return snprintf(msg, msglen, "expression too large"), -1;
      if (product > group_max[depth]) group_max[depth] = product;
      after_quant = true;
      continue;
    }
    after_quant = false;
    last_atom = 1;
    can_quant = true;
    switch (c) {
    case '(':
      if (depth >= FILTER_MAX_DEPTH) return snprintf(msg, msglen, "expression too large"), -1;
      group_max[++depth] = 1;
      can_quant = false;
      buf_putc(out, c);
      if (i + 2 < n && src[i + 1] == '?' && src[i + 2] == ':') i += 2; /* (?:...) */
      break;
    case ')':
      if (depth == 0) return snprintf(msg, msglen, "unexpected )"), -1;
      last_atom = group_max[depth--];
      if (last_atom > group_max[depth]) group_max[depth] = last_atom;
      buf_putc(out, c);
      break;
    case '|':
    case '^':
      can_quant = false;
      buf_putc(out, c);
      break;
    case '[':
      in_class = true;
      buf_putc(out, c);
      if (i + 1 < n && src[i + 1] == '^') buf_putc(out, src[++i]);
      if (i + 1 < n && src[i + 1] == ']') buf_putc(out, src[++i]);
      break;
    case '\\': {
      if (i + 1 >= n) return snprintf(msg, msglen, "trailing backslash at end of expression"), -1;
      char e = src[++i];
      switch (e) {
      case 'd': buf_puts(out, "[0-9]"); break;
      case 'D': buf_puts(out, "[^0-9]"); break;
      case 'n': buf_putc(out, '\n'); break;
      case 't': buf_putc(out, '\t'); break;
      case 'r': buf_putc(out, '\r'); break;
      case 'f': buf_putc(out, '\f'); break;
      case 'v': buf_putc(out, '\v'); break;
      case 'w': case 'W': case 's': case 'S': case 'b': case 'B':
        buf_putc(out, '\\');
        buf_putc(out, e);
        if (e == 'b' || e == 'B') can_quant = false;
        break;
      default:
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) {
          snprintf(msg, msglen, "invalid escape sequence: `\\%c`", e);
          return -1;
        }
        buf_putc(out, '\\');
        buf_putc(out, e);
      }
      break;
    }
    default:
      buf_putc(out, c);
    }
  }
  if (in_class) return snprintf(msg, msglen, "missing closing ]"), -1;
  if (depth) return snprintf(msg, msglen, "missing closing )"), -1;
  return 0;
}

static int compile_regex(const char *src, regex_t *re, char *msg, size_t msglen)
{
  int flags = REG_EXTENDED | REG_NOSUB;
  if (strncmp(src, "(?i)", 4) == 0) {
    flags |= REG_ICASE;
    src += 4;
  }
  struct buf b = BUF_INIT;
  if (re_translate(src, &b, msg, msglen)) {
    buf_free(&b);
    return -1;
  }
  int rc = regcomp(re, b.data ? b.data : "", flags);
  buf_free(&b);
  if (rc) {
    regerror(rc, re, msg, msglen);
    regfree(re);
    return -1;
  }
  return 0;
}

static int coerce(struct node *n, const struct filter_type *t, const char *selname, char *err,
                  size_t errlen)
{
  const char *raw = n->raw;
  char *end;
  errno = 0;
  switch (t->kind) {
  case FILTER_INT: {
    long long v = strtoll(raw, &end, 0);
    if (!*raw || *end || errno)
      return verr(err, errlen,
                  "Failed to coerce value %s for selector \"%s\": strconv.ParseInt: parsing "
                  "\"%s\": %s",
                  raw, selname, raw, errno ? "value out of range" : "invalid syntax");
    n->v.i = v;
    return 0;
  }
  case FILTER_FLOAT: {
    double v = strtod(raw, &end);
    if (!*raw || *end)
      return verr(err, errlen,
                  "Failed to coerce value %s for selector \"%s\": strconv.ParseFloat: parsing "
                  "\"%s\": invalid syntax",
                  raw, selname, raw);
    n->v.f = v;
    return 0;
  }
  case FILTER_BOOL:
    if (parse_bool(raw, &n->v.b))
      return verr(err, errlen,
                  "Failed to coerce value %s for selector \"%s\": strconv.ParseBool: parsing "
                  "\"%s\": invalid syntax",
                  raw, selname, raw);
    return 0;
  default:
    return 0;
  }
}

static int validate_match(struct node *n, const struct filter_type *top, char *err, size_t errlen)
{
  const struct filter_type *t = top;
  char *full = sel_string(n->parts, n->n_parts);
  int rc = 0;
  for (size_t i = 0; i < n->n_parts && !rc; i++) {
    if (t->kind == FILTER_SLICE && t->elem->kind == FILTER_STRUCT) t = t->elem;
    if (t->kind == FILTER_STRUCT) {
      const struct filter_field *f = field_of(t, n->parts[i]);
      if (f) {
        t = f->type;
        continue;
      }
    } else if (t->kind == FILTER_MAP) {
      t = t->elem;
      continue;
    }
    char *upto = sel_string(n->parts, i + 1);
    rc = verr(err, errlen, "Selector \"%s\" is not valid", upto);
    free(upto);
  }
  if (!rc && !op_supported(t, n->op))
    rc = verr(err, errlen, "Invalid match operator \"%s\" for selector \"%s\"", op_names[n->op],
              full);
  n->leaf = t;
  if (!rc && n->raw) {
    const struct filter_type *vt = t->kind == FILTER_SLICE ? t->elem : t;
    if (n->op == OP_MATCHES || n->op == OP_NOT_MATCHES) {
      char msg[128];
      if (compile_regex(n->raw, &n->re, msg, sizeof msg))
        rc = verr(err, errlen, "Failed to compile regular expression \"%s\": %s", n->raw, msg);
      else
        n->has_re = true;
    } else if (t->kind != FILTER_MAP && !(t->kind == FILTER_STRING)) {
      rc = coerce(n, vt, full, err, errlen);
    }
  }
  free(full);
  return rc;
}

static int validate(struct node *n, const struct filter_type *top, char *err, size_t errlen)
{
  if (!n) return 0;
  if (n->kind == N_MATCH) return validate_match(n, top, err, errlen);
  if (validate(n->l, top, err, errlen)) return -1;
  return validate(n->r, top, err, errlen);
}

struct filter *filter_new(const char *expr, const struct filter_type *type, char *err,
                          size_t errlen)
{
  char dummy[8];
  if (!err || !errlen) {
    err = dummy;
    errlen = sizeof dummy;
  }
  err[0] = '\0';
  size_t len = expr ? strlen(expr) : 0;
  if (len > FILTER_MAX_EXPR) {
    snprintf(err, errlen, "filter expression is longer than %d bytes", FILTER_MAX_EXPR);
    return NULL;
  }
  struct node *root = parse(expr ? expr : "", len, err, errlen);
  if (!root) return NULL;
  if (validate(root, type, err, errlen)) {
    node_free(root);
    return NULL;
  }
  struct filter *f = xcalloc(1, sizeof *f);
  f->root = root;
  f->type = type;
  return f;
}

void filter_free(struct filter *f)
{
  if (!f) return;
  node_free(f->root);
  free(f);
}

/* ---- evaluation ---- */

/* bexpr on a missing map key: the thing looked for cannot be equal to, in, or match
 * something that does not exist; the negations hold. */
static bool missing(enum op op)
{
  return op == OP_NE || op == OP_NOT_IN || op == OP_EMPTY || op == OP_NOT_MATCHES;
}

static bool prim_equal(const struct node *n, const json_t *v, const struct filter_type *t,
                       const char *raw)
{
  switch (t->kind) {
  case FILTER_STRING: return strcmp(json_is_string(v) ? json_string_value(v) : "", raw) == 0;
  case FILTER_INT: {
    int64_t x = json_is_integer(v) ? json_integer_value(v) : json_is_real(v) ? (int64_t)json_real_value(v) : 0;
    return x == n->v.i;
  }
  case FILTER_FLOAT: return json_number_value(v) == n->v.f;
  case FILTER_BOOL: return json_is_true(v) == n->v.b;
  default: return false;
  }
}

static bool leaf(const struct node *n, const json_t *v)
{
  const struct filter_type *t = n->leaf;
  bool r;
  switch (t->kind) {
  case FILTER_STRING: {
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    switch (n->op) {
    case OP_EQ: return strcmp(s, n->raw) == 0;
    case OP_NE: return strcmp(s, n->raw) != 0;
    case OP_IN: return strstr(s, n->raw) != NULL;
    case OP_NOT_IN: return strstr(s, n->raw) == NULL;
    case OP_MATCHES: return regexec(&n->re, s, 0, NULL, 0) == 0;
    case OP_NOT_MATCHES: return regexec(&n->re, s, 0, NULL, 0) != 0;
    case OP_EMPTY: return !*s;
    case OP_NOT_EMPTY: return *s;
    }
    return false;
  }
  case FILTER_INT:
  case FILTER_FLOAT:
  case FILTER_BOOL:
    r = prim_equal(n, v, t, n->raw);
    return n->op == OP_EQ ? r : !r;
  case FILTER_MAP: {
    size_t size = json_is_object(v) ? json_object_size(v) : 0;
    if (n->op == OP_EMPTY) return size == 0;
    if (n->op == OP_NOT_EMPTY) return size != 0;
    r = json_is_object(v) && json_object_get(v, n->raw) != NULL;
    return n->op == OP_IN ? r : !r;
  }
  case FILTER_SLICE: {
    size_t size = json_is_array(v) ? json_array_size(v) : 0;
    if (n->op == OP_EMPTY) return size == 0;
    if (n->op == OP_NOT_EMPTY) return size != 0;
    r = false;
    for (size_t i = 0; i < size && !r; i++) r = prim_equal(n, json_array_get(v, i), t->elem, n->raw);
    return n->op == OP_IN ? r : !r;
  }
  default:
    return false;
  }
}

static bool eval_path(const struct node *n, size_t i, const json_t *v, const struct filter_type *t)
{
  if (i == n->n_parts) return leaf(n, v);
  switch (t->kind) {
  case FILTER_STRUCT: {
    const struct filter_field *f = field_of(t, n->parts[i]);
    const json_t *child = json_is_object(v) ? json_object_get(v, n->parts[i]) : NULL;
    return f && eval_path(n, i + 1, child, f->type);
  }
  case FILTER_MAP: {
    const json_t *child = json_is_object(v) ? json_object_get(v, n->parts[i]) : NULL;
    if (!child) return missing(n->op);
    return eval_path(n, i + 1, child, t->elem);
  }
  case FILTER_SLICE: /* of structs: any element */
    for (size_t k = 0; json_is_array(v) && k < json_array_size(v); k++)
      if (eval_path(n, i, json_array_get(v, k), t->elem)) return true;
    return false;
  default:
    return false;
  }
}

static bool eval(const struct node *n, const json_t *row, const struct filter_type *t)
{
  switch (n->kind) {
  case N_OR: return eval(n->l, row, t) || eval(n->r, row, t);
  case N_AND: return eval(n->l, row, t) && eval(n->r, row, t);
  case N_NOT: return !eval(n->l, row, t);
  case N_MATCH: return eval_path(n, 0, row, t);
  }
  return false;
}

bool filter_match(const struct filter *f, const json_t *row)
{
  return eval(f->root, row, f->type);
}
