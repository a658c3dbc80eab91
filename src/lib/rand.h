/* rand.h -- non-cryptographic randomness (jitter, shuffles) seeded from the kernel, and
 * random identifiers from the kernel's CSPRNG. */
#ifndef CONCORD_LIB_RAND_H
#define CONCORD_LIB_RAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A uniformly distributed value (xoshiro256**, seeded once from getrandom). */
uint64_t rand_u64(void);
/* A value in [0, n); 0 when n is 0. */
uint64_t rand_below(uint64_t n);
/* Fills out with bytes from getrandom(2) (session IDs, node IDs). */
void rand_bytes(void *out, size_t n);
/* A random version-4 UUID in its 36-character text form, NUL-terminated. */
void rand_uuid(char out[37]);
/* True if s is a UUID in 8-4-4-4-12 hex form (what Consul accepts as an ID). */
bool uuid_is_valid(const char *s);

#endif
