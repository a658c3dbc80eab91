/* duration.h -- Go's time.Duration text form, which Consul uses everywhere (?wait=5m, TTL
 * "30s", check intervals "10s", LockDelay "15s").
 *
 * duration_parse accepts what Go's time.ParseDuration accepts ("300ms", "1.5h", "2h45m", "-1s",
 * units ns us µs ms s m h); a bare number without a unit is accepted only when it is "0", as in
 * Go. duration_format prints what Go's Duration.String() prints ("30s", "1m0s", "1.5s",
 * "100ms", "0s"). */
#ifndef CONCORD_LIB_DURATION_H
#define CONCORD_LIB_DURATION_H

#include <stddef.h>
#include <stdint.h>

#define DURATION_NS ((int64_t)1)
#define DURATION_US ((int64_t)1000)
#define DURATION_MS ((int64_t)1000000)
#define DURATION_S ((int64_t)1000000000)
#define DURATION_MIN (60 * DURATION_S)
#define DURATION_H (60 * DURATION_MIN)

/* Returns 0 and sets *ns, or -1 on a malformed or overflowing string. */
int duration_parse(const char *s, size_t len, int64_t *ns);
/* Writes the Go form into out (32 bytes always suffice). Returns out. */
char *duration_format(int64_t ns, char *out, size_t outlen);

#endif
