/* query.h -- URL text helpers for the HTTP server (internal to src/http/): percent-decoding of
 * paths and query components with Go's net/url rules, splitting a raw query into name/value
 * pairs as url.ParseQuery does, and Go's ServeMux path cleaning. */
#ifndef CONCORD_HTTP_QUERY_H
#define CONCORD_HTTP_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

/* Appends the percent-decoded form of s[0..n) to out, without a NUL of its own (buf keeps one
 * after the data). With plus_is_space, '+' decodes to ' ' (query components, Go's
 * QueryUnescape); otherwise '+' stays (paths, Go's PathUnescape). Returns 0, or -1 on a '%'
 * not followed by two hex digits, in which case out may hold a partial result. */
int http__pct_decode(const char *s, size_t n, bool plus_is_space, struct buf *out);

/* Walks a raw query string as Go's url.ParseQuery does: pairs split on '&', empty pairs
 * skipped, the name and value split on the first '=', both decoded with '+' as space. A pair
 * that contains ';' or a bad escape is skipped and makes the return value -1 (Go returns
 * the first such error but still keeps the good pairs); otherwise 0. For each good pair, fn
 * gets the decoded name and value (lent, valid only during the call). */
int http__query_parse(const char *q, size_t n,
                      void (*fn)(void *arg, const char *name, size_t name_len,
                                 const char *value, size_t value_len),
                      void *arg);

/* Go's ServeMux cleanPath: the shortest equivalent path (path.Clean), rooted, keeping a
 * trailing slash. Writes into out (reset first). */
void http__path_clean(const char *path, struct buf *out);

#endif
