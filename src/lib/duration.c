/* duration.c -- Go duration parsing and printing (see duration.h). The rules mirror Go's
 * time/format.go so that values round-trip with Consul's tools. */
#include "lib/duration.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const struct { const char *name; int64_t mult; } duration_units[] = {
    {"ns", 1}, {"us", 1000}, {"\xc2\xb5s", 1000}, {"\xce\xbcs", 1000},
    {"ms", 1000000}, {"s", 1000000000}, {"m", 60000000000LL}, {"h", 3600000000000LL},
};

int duration_parse(const char *s, size_t len, int64_t *ns)
{
  size_t i = 0;
  bool neg = false;
  if (i < len && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
  if (len - i == 1 && s[i] == '0') {
    *ns = 0;
    return 0;
  }
  if (i == len) return -1;
  /* Accumulate in unsigned 64-bit; Go rejects anything above 1<<63. */
  unsigned __int128 total = 0;
  while (i < len) {
    uint64_t whole = 0, frac = 0, scale = 1;
    bool digits = false;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
      if (whole > (UINT64_MAX - 9) / 10) return -1;
      whole = whole * 10 + (uint64_t)(s[i++] - '0');
      digits = true;
    }
    if (i < len && s[i] == '.') {
      i++;
      while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (scale < 1000000000000000000ULL) {
          frac = frac * 10 + (uint64_t)(s[i] - '0');
          scale *= 10;
        }
        i++;
        digits = true;
      }
    }
    if (!digits) return -1;
    size_t u = i;
    while (u < len && !(s[u] == '.' || (s[u] >= '0' && s[u] <= '9'))) u++;
    if (u == i) return -1; /* missing unit */
    int64_t mult = 0;
    for (size_t k = 0; k < sizeof duration_units / sizeof duration_units[0]; k++) {
      size_t n = strlen(duration_units[k].name);
      if (n == u - i && memcmp(s + i, duration_units[k].name, n) == 0) mult = duration_units[k].mult;
    }
    if (!mult) return -1;
    i = u;
    unsigned __int128 v = (unsigned __int128)whole * (uint64_t)mult;
    v += (unsigned __int128)frac * (uint64_t)mult / scale;
    total += v;
    if (total > ((unsigned __int128)1 << 63)) return -1;
  }
  if (!neg && total > (unsigned __int128)INT64_MAX) return -1;
  *ns = neg ? -(int64_t)(total - 1) - 1 : (int64_t)total;
  return 0;
}

/* Formats v/10^prec with trailing zeros of the fraction dropped, as Go's fmtFrac does. */
static void duration_frac(char *out, size_t outlen, uint64_t v, int prec, const char *unit)
{
  uint64_t pow = 1;
  for (int i = 0; i < prec; i++) pow *= 10;
  uint64_t whole = v / pow, frac = v % pow;
  char fracs[24] = "";
  if (frac) {
    int width = prec;
    while (frac % 10 == 0) {
      frac /= 10;
      width--;
    }
    snprintf(fracs, sizeof fracs, ".%0*llu", width, (unsigned long long)frac);
  }
  snprintf(out, outlen, "%llu%s%s", (unsigned long long)whole, fracs, unit);
}

char *duration_format(int64_t ns, char *out, size_t outlen)
{
  bool neg = ns < 0;
  uint64_t u = neg ? (uint64_t)(-(ns + 1)) + 1 : (uint64_t)ns;
  char body[80];
  if (u == 0) {
    snprintf(out, outlen, "0s");
    return out;
  }
  if (u < 1000) {
    snprintf(body, sizeof body, "%lluns", (unsigned long long)u);
  } else if (u < 1000000) {
    duration_frac(body, sizeof body, u, 3, "\xc2\xb5s");
  } else if (u < 1000000000) {
    duration_frac(body, sizeof body, u, 6, "ms");
  } else {
    uint64_t secs_ns = u % 60000000000ULL;
    uint64_t mins = u / 60000000000ULL;
    char secs[40];
    duration_frac(secs, sizeof secs, secs_ns, 9, "s");
    if (mins == 0) {
      snprintf(body, sizeof body, "%s", secs);
    } else if (mins < 60) {
      snprintf(body, sizeof body, "%llum%s", (unsigned long long)mins, secs);
    } else {
      snprintf(body, sizeof body, "%lluh%llum%s", (unsigned long long)(mins / 60),
               (unsigned long long)(mins % 60), secs);
    }
  }
  snprintf(out, outlen, "%s%.40s", neg ? "-" : "", body);
  return out;
}
