/* router.c -- the route table: longest-pattern matching with Go ServeMux's redirects.
 *
 * Consul registers about a hundred patterns; a linear scan over them sorted longest first
 * costs a few hundred nanoseconds per request and keeps "the longest match wins" obvious. */
#include "http/router.h"

#include <stdlib.h>
#include <string.h>

#include "http/query.h"
#include "lib/alloc.h"

void http__router_init(struct http_router *r)
{
  r->routes = NULL;
  r->n = r->cap = 0;
}

void http__router_free(struct http_router *r)
{
  for (size_t i = 0; i < r->n; i++) free(r->routes[i].path);
  free(r->routes);
  http__router_init(r);
}

void http__router_add(struct http_router *r, unsigned methods, const char *path,
                      http_handler_fn fn, void *arg)
{
  size_t len = strlen(path);
  for (size_t i = 0; i < r->n; i++) {
    if (strcmp(r->routes[i].path, path) == 0) {
      r->routes[i].methods = methods;
      r->routes[i].fn = fn;
      r->routes[i].arg = arg;
      return;
    }
  }
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 32;
    r->routes = xrealloc(r->routes, r->cap * sizeof *r->routes);
  }
  size_t at = 0;
  while (at < r->n && r->routes[at].len >= len) at++;
  memmove(&r->routes[at + 1], &r->routes[at], (r->n - at) * sizeof *r->routes);
  r->routes[at] = (struct http_route){
    .path = xstrdup(path),
    .len = len,
    .prefix = len > 0 && path[len - 1] == '/',
    .methods = methods,
    .fn = fn,
    .arg = arg,
  };
  r->n++;
}

static const struct http_route *lookup(const struct http_router *r, const char *path, size_t len)
{
  for (size_t i = 0; i < r->n; i++) {
    const struct http_route *rt = &r->routes[i];
    if (rt->len > len) continue;
    if (rt->prefix ? memcmp(rt->path, path, rt->len) == 0
                   : rt->len == len && memcmp(rt->path, path, len) == 0)
      return rt;
  }
  return NULL;
}

static const struct http_route *lookup_exact(const struct http_router *r, const char *path,
                                             size_t len)
{
  for (size_t i = 0; i < r->n; i++)
    if (r->routes[i].len == len && memcmp(r->routes[i].path, path, len) == 0)
      return &r->routes[i];
  return NULL;
}

enum http_match http__router_match(const struct http_router *r, const char *path,
                                   const struct http_route **route, size_t *tail_off,
                                   struct buf *redirect)
{
  *route = NULL;
  *tail_off = 0;
  http__path_clean(path, redirect);
  size_t len = redirect->len;
  /* "/v1/kv" when only "/v1/kv/" exists: ServeMux redirects to the slash form. */
  if (!lookup_exact(r, redirect->data, len)) {
    buf_putc(redirect, '/');
    if (lookup_exact(r, redirect->data, len + 1)) return HTTP_MATCH_REDIRECT;
    redirect->len = len;
    redirect->data[len] = '\0';
  }
  if (strcmp(redirect->data, path) != 0) return HTTP_MATCH_REDIRECT;
  const struct http_route *rt = lookup(r, path, strlen(path));
  if (!rt) return HTTP_MATCH_NONE;
  *route = rt;
  *tail_off = rt->prefix ? rt->len : strlen(path);
  return HTTP_MATCH_FOUND;
}

void http__router_allow(unsigned methods, struct buf *out)
{
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {
    {HTTP_M_GET, "GET"},       {HTTP_M_HEAD, "HEAD"},   {HTTP_M_PUT, "PUT"},
    {HTTP_M_POST, "POST"},     {HTTP_M_DELETE, "DELETE"}, {HTTP_M_PATCH, "PATCH"},
  };
  /* Consul puts OPTIONS first: it answers OPTIONS itself for every endpoint. */
  buf_puts(out, "OPTIONS");
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (methods & names[i].bit) {
      buf_putc(out, ',');
      buf_puts(out, names[i].name);
    }
  }
}
