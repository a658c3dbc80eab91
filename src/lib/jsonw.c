/* jsonw.c -- Go-compatible streaming JSON writer (see jsonw.h). */
#include "lib/jsonw.h"

#include <stdio.h>
#include <string.h>

#include "lib/b64.h"

void jsonw_init(struct jsonw *w, struct buf *out, bool pretty)
{
  memset(w, 0, sizeof *w);
  w->out = out;
  w->pretty = pretty;
  w->first[0] = true;
}

static void jsonw_newline(struct jsonw *w)
{
  buf_putc(w->out, '\n');
  for (int i = 0; i < w->depth; i++) buf_append(w->out, "    ", 4);
}

/* Called before every value and key: writes the separator and indentation it needs. */
static void jsonw_sep(struct jsonw *w)
{
  if (w->after_key) {
    w->after_key = false;
    return;
  }
  if (w->depth == 0) return;
  if (!w->first[w->depth]) buf_putc(w->out, ',');
  w->first[w->depth] = false;
  if (w->pretty) jsonw_newline(w);
}

static void jsonw_open(struct jsonw *w, char c)
{
  jsonw_sep(w);
  buf_putc(w->out, c);
  if (w->depth + 1 < JSONW_MAX_DEPTH) w->depth++;
  w->first[w->depth] = true;
}

static void jsonw_close(struct jsonw *w, char c)
{
  bool empty = w->first[w->depth];
  if (w->depth > 0) w->depth--;
  if (w->pretty && !empty) jsonw_newline(w);
  buf_putc(w->out, c);
}

void jsonw_object_begin(struct jsonw *w) { jsonw_open(w, '{'); }
void jsonw_object_end(struct jsonw *w) { jsonw_close(w, '}'); }
void jsonw_array_begin(struct jsonw *w) { jsonw_open(w, '['); }
void jsonw_array_end(struct jsonw *w) { jsonw_close(w, ']'); }

void jsonw_key(struct jsonw *w, const char *key)
{
  jsonw_sep(w);
  buf_putc(w->out, '"');
  jsonw_escape(w->out, key, strlen(key));
  buf_append(w->out, w->pretty ? "\": " : "\":", w->pretty ? 3 : 2);
  w->after_key = true;
}

/* Length of a valid UTF-8 sequence at s (1-4), or 0 if invalid (Go's utf8.DecodeRune rules:
 * no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t jsonw_utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
  unsigned char c = s[0];
  size_t len;
  uint32_t v;
  if (c < 0xc2) return 0;
  if (c < 0xe0) len = 2, v = c & 0x1f;
  else if (c < 0xf0) len = 3, v = c & 0x0f;
  else if (c < 0xf5) len = 4, v = c & 0x07;
  else return 0;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    v = v << 6 | (s[i] & 0x3f);
  }
  if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10ffff)) ||
      (v >= 0xd800 && v <= 0xdfff))
    return 0;
  *cp = v;
  return len;
}

void jsonw_escape(struct buf *out, const char *str, size_t len)
{
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str;
  size_t run = 0; /* start of the pending run of bytes that need no escaping */
  buf_reserve(out, len + 2);
  for (size_t i = 0; i < len;) {
    unsigned char c = s[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
      i++;
      continue;
    }
    uint32_t cp = 0;
    size_t ulen = c >= 0x80 ? jsonw_utf8_len(s + i, len - i, &cp) : 1;
    if (c >= 0x80 && ulen > 0 && cp != 0x2028 && cp != 0x2029) {
      i += ulen;
      continue;
    }
    buf_append(out, s + run, i - run);
    if (c >= 0x80) {
      if (ulen == 0) {
        buf_append(out, "\\ufffd", 6);
        i += 1;
      } else {
        buf_printf(out, "\\u%04x", cp);
        i += ulen;
      }
    } else {
      i++;
      switch (c) {
        case '"': buf_append(out, "\\\"", 2); break;
        case '\\': buf_append(out, "\\\\", 2); break;
        case '\n': buf_append(out, "\\n", 2); break;
        case '\r': buf_append(out, "\\r", 2); break;
        case '\t': buf_append(out, "\\t", 2); break;
        default: {
          char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
          buf_append(out, u, 6);
        }
      }
    }
    run = i;
  }
  buf_append(out, s + run, len - run);
}

void jsonw_stringn(struct jsonw *w, const char *s, size_t len)
{
  jsonw_sep(w);
  buf_putc(w->out, '"');
  jsonw_escape(w->out, s, len);
  buf_putc(w->out, '"');
}

void jsonw_string(struct jsonw *w, const char *s) { jsonw_stringn(w, s, strlen(s)); }

void jsonw_u64(struct jsonw *w, uint64_t v)
{
  jsonw_sep(w);
  buf_printf(w->out, "%llu", (unsigned long long)v);
}

void jsonw_i64(struct jsonw *w, int64_t v)
{
  jsonw_sep(w);
  buf_printf(w->out, "%lld", (long long)v);
}

void jsonw_bool(struct jsonw *w, bool v)
{
  jsonw_sep(w);
  buf_puts(w->out, v ? "true" : "false");
}

void jsonw_null(struct jsonw *w)
{
  jsonw_sep(w);
  buf_puts(w->out, "null");
}

void jsonw_base64(struct jsonw *w, const void *data, size_t len)
{
  if (!data) {
    jsonw_null(w);
    return;
  }
  jsonw_sep(w);
  buf_reserve(w->out, b64_encoded_len(len) + 2);
  buf_putc(w->out, '"');
  size_t n = b64_encode(data, len, w->out->data + w->out->len);
  w->out->len += n;
  buf_putc(w->out, '"');
}

void jsonw_raw(struct jsonw *w, const char *json, size_t len)
{
  jsonw_sep(w);
  buf_append(w->out, json, len);
}
