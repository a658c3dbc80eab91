/* alloc.h -- allocation wrappers with one out-of-memory policy.
 *
 * Concord caps every input size before it allocates, so running out of memory is not a
 * condition the code can recover from in a useful way: these wrappers print a message and
 * abort (as Redis' zmalloc does). Callers therefore never check for NULL. */
#ifndef CONCORD_LIB_ALLOC_H
#define CONCORD_LIB_ALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
/* Copies of strings and byte ranges; the caller frees. xstrndup stops at n bytes or a NUL. */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Copies len bytes and appends a NUL (so binary values can also be read as C strings). */
void *xmemdup(const void *p, size_t len);

#endif
