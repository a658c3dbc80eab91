/* query.c -- percent-decoding, query-string splitting and path cleaning with Go's rules.
 *
 * Consul is a Go program, so what its clients see is whatever net/url and net/http's ServeMux
 * do: a path is unescaped with PathUnescape ('+' stays '+'), a query with QueryUnescape ('+'
 * is a space), url.ParseQuery skips pairs it cannot decode, and ServeMux answers a path that
 * is not clean ("/v1//kv", "/a/./b") with a redirect to the cleaned form. Matching those
 * details keeps KV keys and parameters byte-for-byte what a Consul client expects. */
#include "http/query.h"

#include <string.h>

static int hexval(char c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int http__pct_decode(const char *s, size_t n, bool plus_is_space, struct buf *out)
{
  buf_reserve(out, n);
  size_t start = 0; /* first byte not yet copied: runs of plain bytes are copied at once */
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '%') {
      int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
      int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) return -1;
      buf_append(out, s + start, i - start);
      buf_putc(out, (char)(hi << 4 | lo));
      i += 2;
      start = i + 1;
    } else if (c == '+' && plus_is_space) {
      buf_append(out, s + start, i - start);
      buf_putc(out, ' ');
      start = i + 1;
    }
  }
  buf_append(out, s + start, n - start);
  return 0;
}

int http__query_parse(const char *q, size_t n,
                      void (*fn)(void *arg, const char *name, size_t name_len,
                                 const char *value, size_t value_len),
                      void *arg)
{
  int rv = 0;
  struct buf name = BUF_INIT, value = BUF_INIT;
  size_t pos = 0;
  while (pos < n) {
    const char *amp = memchr(q + pos, '&', n - pos);
    size_t end = amp ? (size_t)(amp - q) : n;
    const char *pair = q + pos;
    size_t plen = end - pos;
    pos = end + 1;
    if (plen == 0) continue;
    /* Go 1.17 stopped accepting ';' as a separator and reports it as an error instead. */
    if (memchr(pair, ';', plen)) {
      rv = -1;
      continue;
    }
    const char *eq = memchr(pair, '=', plen);
    size_t nlen = eq ? (size_t)(eq - pair) : plen;
    buf_reset(&name);
    buf_reset(&value);
    if (http__pct_decode(pair, nlen, true, &name) < 0 ||
        (eq && http__pct_decode(eq + 1, plen - nlen - 1, true, &value) < 0)) {
      rv = -1;
      continue;
    }
    fn(arg, name.data ? name.data : "", name.len, value.data ? value.data : "", value.len);
  }
  buf_free(&name);
  buf_free(&value);
  return rv;
}

void http__path_clean(const char *path, struct buf *out)
{
  buf_reset(out);
  size_t n = strlen(path);
  /* Segments are appended to out as "/seg"; ".." pops back to the previous '/'. */
  size_t i = 0;
  while (i < n) {
    while (i < n && path[i] == '/') i++;
    size_t j = i;
    while (j < n && path[j] != '/') j++;
    size_t len = j - i;
    if (len == 0 || (len == 1 && path[i] == '.')) {
      /* empty or "." segment: dropped */
    } else if (len == 2 && path[i] == '.' && path[i + 1] == '.') {
      while (out->len > 0 && out->data[out->len - 1] != '/') out->len--;
      if (out->len > 0) out->len--; /* the '/' before the popped segment */
      if (out->data) out->data[out->len] = '\0';
    } else {
      buf_putc(out, '/');
      buf_append(out, path + i, len);
    }
    i = j;
  }
  if (out->len == 0) {
    buf_putc(out, '/');
  } else if (n > 0 && path[n - 1] == '/') {
    buf_putc(out, '/');
  }
}
