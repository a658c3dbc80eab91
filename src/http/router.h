/* router.h -- the route table behind http_server_route (internal to src/http/).
 *
 * Matching follows Go's ServeMux, which Consul registers its endpoints on: a pattern ending
 * in '/' matches every path below it, other patterns match exactly, the longest pattern wins,
 * a path that is not clean is redirected to its clean form, and a path that lacks only the
 * trailing slash of a prefix pattern ("/v1/kv") is redirected to it ("/v1/kv/"). */
#ifndef CONCORD_HTTP_ROUTER_H
#define CONCORD_HTTP_ROUTER_H

#include <stddef.h>

#include "http/server.h"
#include "lib/buf.h"

struct http_route {
  char *path;
  size_t len;
  bool prefix;
  unsigned methods;
  http_handler_fn fn;
  void *arg;
};

struct http_router {
  struct http_route *routes; /* sorted by path length, longest first */
  size_t n, cap;
};

enum http_match {
  HTTP_MATCH_FOUND,    /* *route set, *tail_off is where the tail starts in the path */
  HTTP_MATCH_NONE,     /* 404 */
  HTTP_MATCH_REDIRECT, /* 301 to the path left in redirect */
};

void http__router_init(struct http_router *r);
void http__router_free(struct http_router *r);
/* Copies path. A later route with the same path replaces the earlier one. */
void http__router_add(struct http_router *r, unsigned methods, const char *path,
                      http_handler_fn fn, void *arg);
/* Looks a decoded path up. For HTTP_MATCH_REDIRECT, writes the target path into redirect. */
enum http_match http__router_match(const struct http_router *r, const char *path,
                                   const struct http_route **route, size_t *tail_off,
                                   struct buf *redirect);
/* "OPTIONS,GET,PUT" for a route's methods, as Consul's Allow header lists them. */
void http__router_allow(unsigned methods, struct buf *out);

#endif
