/* rand.c -- xoshiro256** for jitter; getrandom(2) for identifiers. */
#include "lib/rand.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static uint64_t rand_state[4];
static bool rand_seeded;

void rand_bytes(void *out, size_t n)
{
  uint8_t *p = out;
  while (n > 0) {
    ssize_t r = getrandom(p, n, 0);
    if (r <= 0) {
      /* getrandom on Linux >= 3.17 does not fail for small requests once the pool is ready;
       * there is nothing safe to fall back to for identifiers. */
      perror("concord: getrandom");
      abort();
    }
    p += r;
    n -= (size_t)r;
  }
}

static uint64_t rand_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rand_u64(void)
{
  if (!rand_seeded) {
    do rand_bytes(rand_state, sizeof rand_state);
    while (!(rand_state[0] | rand_state[1] | rand_state[2] | rand_state[3]));
    rand_seeded = true;
  }
  uint64_t *s = rand_state;
  uint64_t result = rand_rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rand_rotl(s[3], 45);
  return result;
}

uint64_t rand_below(uint64_t n)
{
  if (n == 0) return 0;
  /* Rejection sampling so small ranges are not biased. */
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do v = rand_u64();
  while (v >= limit);
  return v % n;
}

void rand_uuid(char out[37])
{
  uint8_t b[16];
  rand_bytes(b, sizeof b);
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
}

bool uuid_is_valid(const char *s)
{
  if (strlen(s) != 36) return false;
  for (int i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!isxdigit((unsigned char)s[i])) {
      return false;
    }
  }
  return true;
}
