/* perm.c -- a random permutation of [0, n) without an array, for backends that answer
 * "give me the instances in random order" but are asked for only the first few.
 *
 * A Fisher-Yates shuffle would cost O(n) per query for a service with n instances, of which
 * a UDP answer uses three. Instead, the permutation is a random bijection on [0, 2^k) with
 * 2^k >= n (two rounds of multiply-by-odd, add, xor-shift: each step is invertible modulo
 * 2^k), walked in order and skipping values >= n ("cycle walking"). Since 2^k < 2n, each
 * element costs fewer than two steps on average. It is not a uniformly chosen permutation,
 * but every element is equally likely to come first, which is what round-robin needs. */
#include "dns/dns.h"
#include "lib/rand.h"

void dns_perm_init(struct dns_perm *p, uint64_t n)
{
  uint64_t m = 1;
  unsigned bits = 0;
  while (m < n) {
    m <<= 1;
    bits++;
  }
  p->n = n;
  p->mask = m - 1;
  p->i = 0;
  p->mul = rand_u64() | 1;
  p->add = rand_u64();
  p->shift = bits / 2 + 1;
}

static uint64_t scramble(const struct dns_perm *p, uint64_t x)
{
  for (int round = 0; round < 2; round++) {
    x = (x * p->mul + p->add) & p->mask;
    x ^= x >> p->shift;
  }
  return x;
}

bool dns_perm_next(struct dns_perm *p, uint64_t *out)
{
  while (p->i <= p->mask && p->n > 0) {
    uint64_t x = scramble(p, p->i++);
    if (x < p->n) {
      *out = x;
      return true;
    }
  }
  return false;
}
