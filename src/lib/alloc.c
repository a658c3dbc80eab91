/* alloc.c -- abort-on-OOM allocation wrappers (see alloc.h for the policy). */
#include "lib/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void alloc_fail(size_t size)
{
  fprintf(stderr, "concord: out of memory allocating %zu bytes\n", size);
  abort();
}

void *xmalloc(size_t size)
{
  void *p = malloc(size ? size : 1);
  if (!p) alloc_fail(size);
  return p;
}

void *xcalloc(size_t count, size_t size)
{
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) alloc_fail(count * size);
  return p;
}

void *xrealloc(void *ptr, size_t size)
{
  void *p = realloc(ptr, size ? size : 1);
  if (!p) alloc_fail(size);
  return p;
}

char *xstrdup(const char *s)
{
  return xmemdup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
  return xmemdup(s, strnlen(s, n));
}

void *xmemdup(const void *p, size_t len)
{
  char *d = xmalloc(len + 1);
  if (len) memcpy(d, p, len);
  d[len] = '\0';
  return d;
}
