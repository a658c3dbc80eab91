/* suspicion.c -- Lifeguard suspicion timeouts and memberlist's timing formulas. */
#include "gossip/suspicion.h"

#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"

/* The module links no libm (the build gives us none), so the few logarithms memberlist's
 * formulas need are computed here: x = m * 2^e with m in [1, 2), ln m by the atanh series
 * (|z| <= 1/3, so 30 terms are far past double precision). Powers of ten and two, where the
 * formulas sit on integer boundaries, are made exact by the callers. */
static double ln(double x) {
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  int e = (int)((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & ~(0x7ffull << 52)) | (1023ull << 52);
  double m;
  memcpy(&m, &bits, sizeof m);
  double z = (m - 1) / (m + 1), z2 = z * z, term = z, sum = 0;
  for (int i = 1; i < 60; i += 2) {
    sum += term / i;
    term *= z2;
  }
  return 2 * sum + e * 0.69314718055994530942;
}

static double log10_exact(double x) {
  double p = 1;
  for (int d = 0; d < 19; d++, p *= 10)
    if (x == p) return d;
  return ln(x) / 2.30258509299404568402;
}

static double floor_(double x) {
  double t = (double)(int64_t)x;
  return t > x ? t - 1 : t;
}

int64_t suspicion_remaining(uint32_t n, uint32_t k, uint64_t elapsed, uint64_t min, uint64_t max) {
  double frac = ln((double)n + 1.0) / ln((double)k + 1.0);
  double raw = (double)max / 1000.0 - frac * ((double)max / 1000.0 - (double)min / 1000.0);
  int64_t timeout = (int64_t)floor_(1000.0 * raw);
  if (timeout < (int64_t)min) timeout = (int64_t)min;
  return timeout - (int64_t)elapsed;
}

uint64_t suspicion_timeout(int mult, int n, uint64_t interval) {
  double node_scale = n > 1 ? log10_exact((double)n) : 1.0;
  if (node_scale < 1.0) node_scale = 1.0;
  /* Go: time.Duration(mult) * time.Duration(nodeScale*1000) * interval / 1000 */
  return (uint64_t)mult * (uint64_t)(node_scale * 1000.0) * interval / 1000;
}

uint64_t push_pull_scale(uint64_t interval, int n) {
  /* ceil(log2(n) - log2(32)) + 1: the smallest d with 32 * 2^d >= n, plus one. */
  const int threshold = 32;
  if (n <= threshold) return interval;
  uint64_t d = 0;
  for (uint64_t p = threshold; p < (uint64_t)n; p *= 2) d++;
  return (d + 1) * interval;
}

uint64_t suspicion_start(struct suspicion *s, const char *from, uint32_t k, uint64_t min,
                         uint64_t max, uint64_t now) {
  s->n = 0;
  s->k = k < SUSPICION_MAX_CONFIRM - 1 ? k : SUSPICION_MAX_CONFIRM - 1;
  s->min = min;
  s->max = max;
  s->start = now;
  s->confirmations[0] = xstrdup(from);
  s->nconfirm = 1;
  return now + (k < 1 ? min : max);
}

bool suspicion_confirm(struct suspicion *s, const char *from, uint64_t now, uint64_t *new_due) {
  if (s->n >= s->k) return false;
  for (uint32_t i = 0; i < s->nconfirm; i++)
    if (strcmp(s->confirmations[i], from) == 0) return false;
  s->confirmations[s->nconfirm++] = xstrdup(from);
  s->n++;
  int64_t rem = suspicion_remaining(s->n, s->k, now - s->start, s->min, s->max);
  *new_due = rem > 0 ? now + (uint64_t)rem : now;
  return true;
}

void suspicion_free(struct suspicion *s) {
  for (uint32_t i = 0; i < s->nconfirm; i++) free(s->confirmations[i]);
  s->nconfirm = 0;
}
