/* json.c -- a JSON writer over jansson values that produces Go's encoding/json bytes.
 *
 * Consul's responses come from json.Marshal (or json.MarshalIndent with four spaces for
 * ?pretty), and some clients and tests compare them byte for byte. jansson's own dumper
 * differs in string escaping (Go is HTML-safe) and float formatting (Go prints the shortest
 * decimal that round-trips, switching to exponent form below 1e-6 and from 1e21), so the
 * tree is walked here instead. The rules below follow encoding/json's encode.go (Go 1.22:
 * appendString, floatEncoder) and MarshalIndent's layout. */
#include "http/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deeper trees are written as null: Concord builds these trees itself, the cap only keeps a
 * runaway structure from overflowing the stack. */
#define MAX_DEPTH 512

static const char hexdigits[] = "0123456789abcdef";

/* Decodes one UTF-8 sequence as Go's utf8.DecodeRune does: returns the code point and sets
 * *size, or returns -1 with *size 1 for an invalid or overlong sequence or a surrogate. */
static long utf8_decode(const unsigned char *s, size_t n, size_t *size)
{
  *size = 1;
  unsigned char c = s[0];
  long cp;
  size_t need;
  if (c >= 0xc2 && c <= 0xdf) {
    cp = c & 0x1f;
    need = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    cp = c & 0x0f;
    need = 3;
  } else if (c >= 0xf0 && c <= 0xf4) {
    cp = c & 0x07;
    need = 4;
  } else {
    return -1;
  }
  if (n < need) return -1;
  for (size_t i = 1; i < need; i++) {
    if ((s[i] & 0xc0) != 0x80) return -1;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return -1;
  *size = need;
  return cp;
}

static void put_string(struct buf *out, const char *str, size_t n)
{
  const unsigned char *s = (const unsigned char *)str;
  buf_putc(out, '"');
  size_t start = 0, i = 0;
  while (i < n) {
    unsigned char b = s[i];
    if (b < 0x80) {
      if (b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&') {
        i++;
        continue;
      }
      buf_append(out, s + start, i - start);
      char esc[6] = {'\\', 0, 0, 0, 0, 0};
      size_t elen = 2;
      switch (b) {
      case '"': esc[1] = '"'; break;
      case '\\': esc[1] = '\\'; break;
      case '\b': esc[1] = 'b'; break;
      case '\f': esc[1] = 'f'; break;
      case '\n': esc[1] = 'n'; break;
      case '\r': esc[1] = 'r'; break;
      case '\t': esc[1] = 't'; break;
      default:
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hexdigits[b >> 4];
        esc[5] = hexdigits[b & 0xf];
        elen = 6;
      }
      buf_append(out, esc, elen);
      i++;
      start = i;
      continue;
    }
    size_t size;
    long cp = utf8_decode(s + i, n - i, &size);
    if (cp < 0 || cp == 0x2028 || cp == 0x2029) {
      buf_append(out, s + start, i - start);
      buf_puts(out, cp < 0 ? "\\ufffd" : cp == 0x2028 ? "\\u2028" : "\\u2029");
      i += size;
      start = i;
      continue;
    }
    i += size;
  }
  buf_append(out, s + start, n - start);
  buf_putc(out, '"');
}

/* Go's strconv.FormatFloat(f, 'f' or 'e', -1, 64) as encoding/json uses it. */
static void put_real(struct buf *out, double f)
{
  if (!isfinite(f)) {
    buf_puts(out, "null"); /* Go refuses to marshal these; jansson cannot hold them anyway */
    return;
  }
  if (f == 0) {
    buf_puts(out, signbit(f) ? "-0" : "0");
    return;
  }
  /* The shortest %e form that reads back as the same double. */
  char tmp[40];
  for (int prec = 0; prec <= 16; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec, f);
    if (strtod(tmp, NULL) == f) break;
  }
  /* tmp is "[-]d[.ddd]e[+-]XX": pull out the digits and the decimal exponent. */
  const char *p = tmp;
  bool neg = *p == '-';
  if (neg) p++;
  char digits[24];
  size_t nd = 0;
  for (; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9') digits[nd++] = *p;
  int exp10 = atoi(p + 1); /* value = d.ddd x 10^exp10 */
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  digits[nd] = '\0';
  if (neg) buf_putc(out, '-');
  double a = fabs(f);
  if (a < 1e-6 || a >= 1e21) {
    /* 'e' form: d[.ddd]e-7 (Go trims "e-07" to "e-7" but keeps "e+21") */
    buf_putc(out, digits[0]);
    if (nd > 1) {
      buf_putc(out, '.');
      buf_append(out, digits + 1, nd - 1);
    }
    if (exp10 < 0 && exp10 > -10)
      buf_printf(out, "e-%d", -exp10);
    else
      buf_printf(out, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    return;
  }
  int point = exp10 + 1; /* digits before the decimal point */
  if (point <= 0) {
    buf_puts(out, "0.");
    for (int i = 0; i < -point; i++) buf_putc(out, '0');
    buf_append(out, digits, nd);
  } else if ((size_t)point >= nd) {
    buf_append(out, digits, nd);
    for (size_t i = nd; i < (size_t)point; i++) buf_putc(out, '0');
  } else {
    buf_append(out, digits, (size_t)point);
    buf_putc(out, '.');
    buf_append(out, digits + point, nd - (size_t)point);
  }
}

static void newline(struct buf *out, bool pretty, int depth)
{
  if (!pretty) return;
  buf_putc(out, '\n');
  for (int i = 0; i < depth; i++) buf_puts(out, "    ");
}

static void encode(const json_t *j, bool pretty, int depth, struct buf *out)
{
  if (!j || depth > MAX_DEPTH) {
    buf_puts(out, "null");
    return;
  }
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    if (json_object_size(j) == 0) {
      buf_puts(out, "{}");
      return;
    }
    buf_putc(out, '{');
    bool first = true;
    const char *key;
    json_t *v;
    /* json_object_foreach wants a non-const object; iteration does not modify it. */
    json_t *obj = (json_t *)j;
    json_object_foreach(obj, key, v)
    {
      if (!first) buf_putc(out, ',');
      first = false;
      newline(out, pretty, depth + 1);
      put_string(out, key, strlen(key));
      buf_puts(out, pretty ? ": " : ":");
      encode(v, pretty, depth + 1, out);
    }
    newline(out, pretty, depth);
    buf_putc(out, '}');
    return;
  }
  case JSON_ARRAY: {
    size_t n = json_array_size(j);
    if (n == 0) {
      buf_puts(out, "[]");
      return;
    }
    buf_putc(out, '[');
    for (size_t i = 0; i < n; i++) {
      if (i) buf_putc(out, ',');
      newline(out, pretty, depth + 1);
      encode(json_array_get(j, i), pretty, depth + 1, out);
    }
    newline(out, pretty, depth);
    buf_putc(out, ']');
    return;
  }
  case JSON_STRING:
    put_string(out, json_string_value(j), json_string_length(j));
    return;
  case JSON_INTEGER:
    buf_printf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
    return;
  case JSON_REAL:
    put_real(out, json_real_value(j));
    return;
  case JSON_TRUE:
    buf_puts(out, "true");
    return;
  case JSON_FALSE:
    buf_puts(out, "false");
    return;
  case JSON_NULL:
    buf_puts(out, "null");
    return;
  }
}

void http_json_encode(const json_t *j, bool pretty, struct buf *out)
{
  encode(j, pretty, 0, out);
}
