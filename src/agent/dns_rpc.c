/* dns_rpc.c -- DNS questions between agents over RPC: the transport and the servers' handler.
 * See dns_rpc.h.
 *
 * Memory: one struct call per question sent (with a copy of its body, to try another server)
 * until its answer or its cancel; one struct served per DNS_REMOTE_METHOD call being
 * relayed to another datacenter, until it is answered or its caller cancels. */
#include "agent/dns_rpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/servers.h"
#include "agent/wan_dcs.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "rpc/rpc.h"

/* A question for this datacenter: under server.h's 5 s upstream timeout, so that a slow
 * server is noticed here and the next question moves on. One for another datacenter: under
 * that 4 s, so that a server relaying a client's question answers before the client gives
 * up on it. */
#define OWN_DC_TIMEOUT_MS 4000
#define OTHER_DC_TIMEOUT_MS 3000
#define MAX_TRIES 3 /* servers asked per question, when they refuse the connection */

struct dns_rpc {
  struct dns_rpc_config cfg;
  struct dns_remote_server *server; /* servers: DNS_REMOTE_METHOD; NULL on client agents */
};

/* ---- The transport ---- */

struct call {
  struct dns_rpc *d;
  dns_remote_done_fn done;
  void *arg;
  struct rpc_req *req; /* in flight; NULL between tries */
  char addr[80];       /* the server asked last */
  char dc[DNS_DC_MAX]; /* "" for this datacenter */
  uint8_t *body;       /* owned */
  size_t len;
  unsigned tries;
};

static void call_free(struct call *c)
{
  free(c->body);
  free(c);
}

static const char *call_pick(const struct call *c)
{
  const struct dns_rpc_config *cfg = &c->d->cfg;
  if (c->dc[0])
    return cfg->dcs ? wan_dcs_pick(cfg->dcs, c->dc) : NULL;
  return cfg->servers ? servers_pick(cfg->servers) : NULL;
}

/* The server at c->addr could not be reached: the next pick starts after it. */
static void call_failed(const struct call *c)
{
  const struct dns_rpc_config *cfg = &c->d->cfg;
  if (c->dc[0]) {
    if (cfg->dcs)
      wan_dcs_failed(cfg->dcs, c->dc, c->addr);
  } else if (cfg->servers) {
    servers_failed(cfg->servers, c->addr);
  }
}

static void call_answered(void *arg, int status, const char *error, const uint8_t *body,
                          size_t len);

/* Sends c to the next server that takes the connection. Returns 0, CC_ENOTFOUND when there
 * is no (other) server to ask, or rpc_request's error. */
static int call_send(struct call *c)
{
  for (;;) {
    const char *addr = call_pick(c);
    if (!addr || (c->tries > 0 && strcmp(addr, c->addr) == 0))
      return CC_ENOTFOUND;
    c->tries++;
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    int rv = rpc_request(c->d->cfg.rpc, c->addr, DNS_REMOTE_METHOD, c->body, c->len,
                         c->dc[0] ? OTHER_DC_TIMEOUT_MS : OWN_DC_TIMEOUT_MS, call_answered, c,
                         &c->req);
    if (rv != CC_ENOCONN)
      return rv;
    call_failed(c);
    if (c->tries >= MAX_TRIES)
      return rv;
  }
}

static void call_answered(void *arg, int status, const char *error, const uint8_t *body,
                          size_t len)
{
  struct call *c = arg;
  c->req = NULL;
  if (status == CC_ENOCONN || status == CC_EIO || status == CC_ETIMEOUT)
    call_failed(c);
  /* Not connecting means nothing was sent: another server may take it. */
  if (status == CC_ENOCONN && c->tries < MAX_TRIES && call_send(c) == 0)
    return;
  c->done(c->arg, status, error, body, len);
  call_free(c);
}

static int transport_send(void *ctx, const char *dc, const uint8_t *body, size_t len,
                          dns_remote_done_fn done, void *arg, void **handle)
{
  struct dns_rpc *d = ctx;
  if (dc && strlen(dc) >= DNS_DC_MAX)
    return CC_EINVAL;
  struct call *c = xcalloc(1, sizeof *c);
  c->d = d;
  c->done = done;
  c->arg = arg;
  snprintf(c->dc, sizeof c->dc, "%s", dc ? dc : "");
  c->body = xmemdup(body, len);
  c->len = len;
  int rv = call_send(c);
  if (rv != 0) {
    call_free(c);
    return rv;
  }
  *handle = c;
  return 0;
}

static void transport_cancel(void *ctx, void *handle)
{
  struct call *c = handle;
  (void)ctx;
  if (!c)
    return;
  if (c->req)
    rpc_request_cancel(c->req);
  call_free(c);
}

void dns_rpc_transport(struct dns_rpc *d, struct dns_remote_transport *out)
{
  memset(out, 0, sizeof *out);
  out->ctx = d;
  out->send = transport_send;
  out->cancel = transport_cancel;
}

/* ---- The handler (servers) ---- */

/* One call being answered. in_serve: inside dns_remote_serve, whose done must not free. */
struct served {
  struct dns_rpc *d;
  struct rpc_call *call;
  void *handle;
  bool in_serve, answered;
};

static void served_done(void *arg, int status, const char *error, const uint8_t *body,
                        size_t len)
{
  struct served *sv = arg;
  sv->answered = true;
  if (status != 0)
    rpc_call_reply(sv->call, status == CC_ESHUTDOWN ? "agent is shutting down"
                                                    : cc_strerror(status), NULL, 0);
  else if (error)
    rpc_call_reply(sv->call, error, NULL, 0);
  else
    rpc_call_reply(sv->call, NULL, body, len);
  if (!sv->in_serve)
    free(sv);
}

static void served_cancel(struct rpc_call *call, void *arg)
{
  struct served *sv = arg;
  (void)call;
  dns_remote_server_cancel(sv->d->server, sv->handle);
  free(sv);
}

static void handle_query(struct rpc_call *call, const uint8_t *body, size_t len, void *arg)
{
  struct dns_rpc *d = arg;
  if (len > DNS_REMOTE_MAX_BODY) {
    rpc_call_reply(call, "malformed DNS request", NULL, 0);
    return;
  }
  struct served *sv = xcalloc(1, sizeof *sv);
  sv->d = d;
  sv->call = call;
  sv->in_serve = true;
  dns_remote_serve(d->server, body, len, served_done, sv, &sv->handle);
  sv->in_serve = false;
  if (sv->answered) {
    free(sv);
    return;
  }
  rpc_call_on_cancel(call, served_cancel, sv); /* relayed: the answer comes later */
}

struct dns_rpc *dns_rpc_new(const struct dns_rpc_config *cfg)
{
  struct dns_rpc *d = xcalloc(1, sizeof *d);
  d->cfg = *cfg;
  if (cfg->engine) {
    struct dns_remote_transport t;
    dns_rpc_transport(d, &t);
    d->server = dns_remote_server_new(cfg->engine, cfg->dcs ? &t : NULL);
    rpc_handle(cfg->rpc, DNS_REMOTE_METHOD, handle_query, d);
  }
  return d;
}

void dns_rpc_free(struct dns_rpc *d)
{
  if (!d)
    return;
  if (d->server) {
    rpc_handle(d->cfg.rpc, DNS_REMOTE_METHOD, NULL, NULL);
    if (dns_remote_server_pending(d->server))
      log_debug("dns", "%u relayed DNS questions cut short by shutdown",
                dns_remote_server_pending(d->server));
    dns_remote_server_free(d->server);
  }
  free(d);
}
