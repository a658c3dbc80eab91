/* format.c -- the small pieces of Go's standard library whose exact output Consul's CLI shows
 * or depends on: URL escaping, strconv.Quote, encoding/json string escaping, path.Join and
 * path.Clean (kv import), strict base64 (kv put -base64, kv import), ryanuber/columnize
 * (members), and os.ReadFile's error texts. Each is written from the documented behaviour of
 * the Go function it stands for, so output matches byte for byte where users can see it. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/internal.h"
#include "lib/alloc.h"

const char *cli__env(const struct cli__ctx *ctx, const char *name)
{
  const char *v = ctx->getenv ? ctx->getenv(ctx->getenv_arg, name) : NULL;
  return v && v[0] ? v : NULL;
}

static void vline(FILE *f, const char *fmt, va_list ap)
{
  vfprintf(f, fmt, ap);
  fputc('\n', f);
}

void cli__info(struct cli__ctx *ctx, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vline(ctx->out, fmt, ap);
  va_end(ap);
}

void cli__error(struct cli__ctx *ctx, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vline(ctx->err, fmt, ap);
  va_end(ap);
}

/* ---- URL escaping (net/url shouldEscape) ---- */

static bool unreserved(unsigned char c)
{
  return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

void cli__escape_path(struct buf *out, const char *s)
{
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    /* In a path Go leaves the reserved characters except '?' alone. */
    if (unreserved(*p) || strchr("$&+,/:;=@", *p)) {
      buf_putc(out, (char)*p);
    } else {
      buf_putc(out, '%');
      buf_putc(out, hex[*p >> 4]);
      buf_putc(out, hex[*p & 15]);
    }
  }
}

void cli__escape_query(struct buf *out, const char *s)
{
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (unreserved(*p)) {
      buf_putc(out, (char)*p);
    } else {
      buf_putc(out, '%');
      buf_putc(out, hex[*p >> 4]);
      buf_putc(out, hex[*p & 15]);
    }
  }
}

/* ---- UTF-8 ---- */

/* Decodes one rune at p (n bytes available). Returns its length, or 0 if the bytes are not
 * valid UTF-8 (overlong forms, surrogates and values past U+10FFFF included). */
static size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *r)
{
  if (p[0] < 0x80) {
    *r = p[0];
    return 1;
  }
  size_t len;
  uint32_t min, v;
  if ((p[0] & 0xe0) == 0xc0) len = 2, min = 0x80, v = p[0] & 0x1f;
  else if ((p[0] & 0xf0) == 0xe0) len = 3, min = 0x800, v = p[0] & 0x0f;
  else if ((p[0] & 0xf8) == 0xf0) len = 4, min = 0x10000, v = p[0] & 0x07;
  else return 0;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    v = v << 6 | (p[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  *r = v;
  return len;
}

void cli__go_quote(struct buf *out, const char *s)
{
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  buf_putc(out, '"');
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    uint32_t r;
    size_t l;
    if (c >= 0x80) {
      l = utf8_decode(p + i, n - i, &r);
      if (l) { /* printable enough: Go keeps graphic runes as they are */
        buf_append(out, p + i, l);
        i += l;
      } else {
        buf_printf(out, "\\x%c%c", hex[c >> 4], hex[c & 15]);
        i++;
      }
      continue;
    }
    switch (c) {
    case '"': buf_puts(out, "\\\""); break;
    case '\\': buf_puts(out, "\\\\"); break;
    case '\a': buf_puts(out, "\\a"); break;
    case '\b': buf_puts(out, "\\b"); break;
    case '\f': buf_puts(out, "\\f"); break;
    case '\n': buf_puts(out, "\\n"); break;
    case '\r': buf_puts(out, "\\r"); break;
    case '\t': buf_puts(out, "\\t"); break;
    case '\v': buf_puts(out, "\\v"); break;
    default:
      if (c < 0x20 || c == 0x7f) buf_printf(out, "\\x%c%c", hex[c >> 4], hex[c & 15]);
      else buf_putc(out, (char)c);
    }
    i++;
  }
  buf_putc(out, '"');
}

/* ---- columnize ---- */

/* columnize's runeLen: runes, with Han characters counted twice and ANSI colour sequences
 * not at all. */
static size_t rune_width(const char *s, size_t n)
{
  size_t w = 0;
  bool esc = false;
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    uint32_t r;
    size_t l = utf8_decode(p + i, n - i, &r);
    if (!l) r = 0xfffd, l = 1;
    i += l;
    if (r == 0x1b) {
      esc = true;
      continue;
    }
    if (esc) {
      if (r == 'm') esc = false;
      continue;
    }
    w++;
    if ((r >= 0x2e80 && r <= 0x2fdf) || r == 0x3005 || r == 0x3007 ||
        (r >= 0x3021 && r <= 0x3029) || (r >= 0x3038 && r <= 0x303b) ||
        (r >= 0x3400 && r <= 0x4dbf) || (r >= 0x4e00 && r <= 0x9fff) ||
        (r >= 0xf900 && r <= 0xfaff) || (r >= 0x20000 && r <= 0x3134f))
      w++;
  }
  return w;
}

struct field {
  const char *s;
  size_t len;
};

/* Splits on 0x1f and trims white space from each field. Returns the count; *f is malloc'd. */
static size_t split_fields(const char *line, struct field **f)
{
  size_t n = 1;
  for (const char *p = line; *p; p++)
    if (*p == 0x1f) n++;
  *f = xcalloc(n, sizeof(**f));
  const char *start = line;
  size_t i = 0;
  for (const char *p = line;; p++) {
    if (*p == 0x1f || *p == '\0') {
      const char *a = start, *b = p;
      while (a < b && isspace((unsigned char)*a)) a++;
      while (b > a && isspace((unsigned char)b[-1])) b--;
      (*f)[i].s = a;
      (*f)[i].len = (size_t)(b - a);
      i++;
      if (*p == '\0') break;
      start = p + 1;
    }
  }
  return n;
}

void cli__columnize(struct buf *out, char **lines, size_t n)
{
  size_t *widths = NULL, nw = 0;
  for (size_t i = 0; i < n; i++) {
    struct field *f;
    size_t nf = split_fields(lines[i], &f);
    if (nf > nw) {
      widths = xrealloc(widths, nf * sizeof(*widths));
      for (size_t j = nw; j < nf; j++) widths[j] = 0;
      nw = nf;
    }
    for (size_t j = 0; j < nf; j++) {
      size_t w = rune_width(f[j].s, f[j].len);
      if (w > widths[j]) widths[j] = w;
    }
    free(f);
  }
  size_t start = out->len;
  for (size_t i = 0; i < n; i++) {
    struct field *f;
    size_t nf = split_fields(lines[i], &f);
    for (size_t j = 0; j < nf; j++) {
      buf_append(out, f[j].s, f[j].len);
      if (j == nf - 1) {
        buf_putc(out, '\n');
      } else {
        for (size_t k = rune_width(f[j].s, f[j].len); k < widths[j]; k++) buf_putc(out, ' ');
        buf_puts(out, "  ");
      }
    }
    free(f);
  }
  if (out->len > start && out->data[out->len - 1] == '\n') out->data[--out->len] = '\0';
  free(widths);
}

/* ---- path.Clean / path.Join ---- */

char *cli__path_clean(const char *p)
{
  size_t n = strlen(p);
  if (n == 0) return xstrdup(".");
  bool rooted = p[0] == '/';
  char *out = xmalloc(n + 2);
  size_t w = 0, r = 0, dotdot = 0;
  if (rooted) {
    out[w++] = '/';
    r = 1;
    dotdot = 1;
  }
  while (r < n) {
    if (p[r] == '/') {
      r++;
    } else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/')) {
      r++;
    } else if (p[r] == '.' && p[r + 1] == '.' && (r + 2 == n || p[r + 2] == '/')) {
      r += 2;
      if (w > dotdot) {
        w--;
        while (w > dotdot && out[w] != '/') w--;
      } else if (!rooted) {
        if (w > 0) out[w++] = '/';
        out[w++] = '.';
        out[w++] = '.';
        dotdot = w;
      }
    } else {
      if ((rooted && w != 1) || (!rooted && w != 0)) out[w++] = '/';
      for (; r < n && p[r] != '/'; r++) out[w++] = p[r];
    }
  }
  if (w == 0) out[w++] = '.';
  out[w] = '\0';
  return out;
}

char *cli__path_join(const char *prefix, const char *key)
{
  if (!prefix[0] && !key[0]) return xstrdup("");
  struct buf b = BUF_INIT;
  if (prefix[0]) buf_puts(&b, prefix);
  if (prefix[0] && key[0]) buf_putc(&b, '/');
  if (key[0]) buf_puts(&b, key);
  char *c = cli__path_clean(b.data);
  buf_free(&b);
  return c;
}

/* ---- base64 (encoding/base64 StdEncoding) ---- */

static int b64v(unsigned char c)
{
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int cli__b64_decode_std(const char *s, size_t len, struct buf *out, char *err, size_t errlen)
{
  /* Go skips CR and LF anywhere, then needs whole quanta of four with '=' padding only at
   * the end. The offset it reports counts the original input. */
  size_t *pos = xmalloc((len + 1) * sizeof(*pos));
  char *c = xmalloc(len + 1);
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    if (s[i] != '\r' && s[i] != '\n') pos[n] = i, c[n++] = s[i];
  pos[n] = len;
  buf_reserve(out, n / 4 * 3 + 3);
  int rc = 0;
  size_t bad = 0;
  for (size_t q = 0; q < n && rc == 0; q += 4) {
    int v[4], pad = 0;
    for (size_t k = 0; k < 4; k++) {
      if (q + k >= n) { /* a short final quantum: Go blames its first byte */
        bad = q;
        rc = -1;
        break;
      }
      unsigned char ch = (unsigned char)c[q + k];
      if (ch == '=' && k >= 2) {
        /* "xx==" or "xxx=", and nothing after. */
        if (k == 2 && (q + 3 >= n || c[q + 3] != '=')) {
          bad = q + 3 < n ? q + 2 : n;
          rc = -1;
          break;
        }
        pad = 4 - (int)k;
        if (q + 4 < n) {
          bad = q + 4;
          rc = -1;
        }
        break;
      }
      v[k] = b64v(ch);
      if (v[k] < 0) {
        bad = q + k;
        rc = -1;
        break;
      }
    }
    if (rc) break;
    uint32_t acc = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12;
    if (pad < 2) acc |= (uint32_t)v[2] << 6;
    if (pad < 1) acc |= (uint32_t)v[3];
    buf_putc(out, (char)(acc >> 16));
    if (pad < 2) buf_putc(out, (char)(acc >> 8 & 0xff));
    if (pad < 1) buf_putc(out, (char)(acc & 0xff));
  }
  if (rc) snprintf(err, errlen, "illegal base64 data at input byte %zu", pos[bad]);
  if (!out->data) buf_reserve(out, 0), out->data[0] = '\0';
  free(pos);
  free(c);
  return rc;
}

/* ---- Reading input ---- */

/* Go's syscall error strings are strerror's, lower-cased at the start. */
static void go_errno(char *dst, size_t len, int e)
{
  snprintf(dst, len, "%s", strerror(e));
  if (dst[0]) dst[0] = (char)tolower((unsigned char)dst[0]);
}

int cli__read_file(const char *path, size_t max, struct buf *out, char *err, size_t errlen)
{
  char es[256];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    go_errno(es, sizeof(es), errno);
    snprintf(err, errlen, "open %s: %s", path, es);
    return -1;
  }
  int rc = 0;
  for (;;) {
    buf_reserve(out, 65536);
    ssize_t r = read(fd, out->data + out->len, 65536);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      go_errno(es, sizeof(es), errno);
      snprintf(err, errlen, "read %s: %s", path, es);
      rc = -1;
      break;
    }
    if (r == 0) break;
    out->len += (size_t)r;
    out->data[out->len] = '\0';
    if (out->len > max) {
      snprintf(err, errlen, "read %s: file is larger than %zu bytes", path, max);
      rc = -1;
      break;
    }
  }
  close(fd);
  if (rc == 0 && !out->data) buf_reserve(out, 0), out->data[0] = '\0';
  return rc;
}

int cli__read_stream(FILE *f, size_t max, struct buf *out, char *err, size_t errlen)
{
  for (;;) {
    buf_reserve(out, 65536);
    size_t r = fread(out->data + out->len, 1, 65536, f);
    out->len += r;
    out->data[out->len] = '\0';
    if (out->len > max) {
      snprintf(err, errlen, "input is larger than %zu bytes", max);
      return -1;
    }
    if (r == 0) {
      if (ferror(f)) {
        char es[256];
        go_errno(es, sizeof(es), errno ? errno : EIO);
        snprintf(err, errlen, "read /dev/stdin: %s", es);
        return -1;
      }
      return 0;
    }
  }
}

int cli__load_data(struct cli__ctx *ctx, const char *arg, struct buf *out, char *err,
                   size_t errlen)
{
  char e[CLI__ERRLEN];
  if (arg[0] == '@') {
    if (cli__read_file(arg + 1, CLI__MAX_INPUT, out, e, sizeof(e)) != 0) {
      snprintf(err, errlen, "Failed to read file: %s", e);
      return -1;
    }
    return 0;
  }
  if (arg[0] == '-' && arg[1] == '\0') {
    if (cli__read_stream(ctx->in, CLI__MAX_INPUT, out, e, sizeof(e)) != 0) {
      snprintf(err, errlen, "Failed to read stdin: %s", e);
      return -1;
    }
    return 0;
  }
  buf_puts(out, arg);
  if (!out->data) buf_reserve(out, 0), out->data[0] = '\0';
  return 0;
}
