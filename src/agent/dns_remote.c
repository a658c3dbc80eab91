/* dns_remote.c -- DNS over a request/response transport: the shared request format, a
 * server answering requests with its engine or relaying them to another datacenter, and the
 * asking side's dns_upstream (see the header).
 *
 * Memory: dns_remote_answer writes into the caller's buffer; dns_remote_serve allocates a
 * reply buffer for the call, and one struct relay per question relayed (freed on its answer
 * or its cancel) with a copy of the body for the duration of send. The asking side allocates
 * one struct remote_call per query in flight (freed on its answer or its cancel) and a
 * request body for the duration of send. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/dns_remote.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

#define REMOTE_VERSION 1
#define FLAG_TCP 0x01
#define FLAG_FORWARDED 0x02 /* sent by a server of another datacenter: never sent on */
#define FLAG_WAN 0x04       /* the asker's agent translates WAN addresses (translate_wan_addrs) */
#define FLAGS_ALL (FLAG_TCP | FLAG_FORWARDED | FLAG_WAN)
/* Relays in flight on one server; beyond, an error at once (each asker already caps its own
 * at server.h's max_forwards, but a server has many askers). */
#define MAX_RELAYS 4096

size_t dns_remote_encode(const uint8_t *query, size_t qlen, bool tcp, size_t max_size,
                         const struct sockaddr *client, uint8_t *out)
{
  if (qlen == 0 || qlen > 65535)
    return 0;
  if (max_size > DNS_TCP_MAX)
    max_size = DNS_TCP_MAX;
  size_t n = 0;
  out[n++] = REMOTE_VERSION;
  out[n++] = tcp ? FLAG_TCP : 0;
  out[n++] = (uint8_t)(max_size >> 8);
  out[n++] = (uint8_t)max_size;
  if (client && client->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)client;
    out[n++] = 4;
    memcpy(out + n, &a->sin_addr, 4);
    n += 4;
    memcpy(out + n, &a->sin_port, 2); /* already network order */
    n += 2;
  } else if (client && client->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)client;
    out[n++] = 6;
    memcpy(out + n, &a->sin6_addr, 16);
    n += 16;
    memcpy(out + n, &a->sin6_port, 2);
    n += 2;
  } else {
    out[n++] = 0;
  }
  memcpy(out + n, query, qlen);
  return n + qlen;
}

void dns_remote_mark_forwarded(uint8_t *body, size_t len, bool wan_addrs)
{
  if (len < 2)
    return;
  body[1] = (uint8_t)(body[1] | FLAG_FORWARDED | (wan_addrs ? FLAG_WAN : 0));
}

/* ---- Server side ---- */

int dns_remote_answer(struct dns_engine *e, const uint8_t *body, size_t len, uint8_t *out,
                      size_t *outlen)
{
  if (len < 5 || body[0] != REMOTE_VERSION || (body[1] & ~FLAGS_ALL) != 0)
    return CC_EINVAL;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  const struct sockaddr *client = NULL;
  size_t off = 5;
  if (body[4] == 4 && len >= off + 6) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    memcpy(&a->sin_addr, body + off, 4);
    memcpy(&a->sin_port, body + off + 4, 2);
    client = (const struct sockaddr *)a;
    off += 6;
  } else if (body[4] == 6 && len >= off + 18) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    memcpy(&a->sin6_addr, body + off, 16);
    memcpy(&a->sin6_port, body + off + 16, 2);
    client = (const struct sockaddr *)a;
    off += 18;
  } else if (body[4] != 0) {
    return CC_EINVAL;
  }
  const uint8_t *q = body + off;
  size_t qlen = len - off;
  size_t max_size = (size_t)body[2] << 8 | body[3];
  if (qlen == 0 || qlen > 65535 || max_size < DNS_UDP_MIN)
    return CC_EINVAL;
  /* WAN addresses for a question from another datacenter whose asker translates them; a
   * question of our own datacenter needs none (its names are ours, or relayed onwards). */
  bool forwarded = body[1] & FLAG_FORWARDED;
  struct dns_request req = {.tcp = body[1] & FLAG_TCP, .max_size = max_size, .client = client,
                            .wan_addrs = forwarded && (body[1] & FLAG_WAN)};
  switch (dns_engine_answer(e, q, qlen, &req, out, outlen)) {
  case DNS_REPLY:
    return 0;
  case DNS_REMOTE_DC:
    /* Relayed once at most: a forwarded question was sent here as this datacenter's. */
    if (forwarded) {
      log_debug("dns", "forwarded DNS question names yet another datacenter (%s)",
                dns_engine_remote_dc(e));
      return CC_EINVAL;
    }
    return DNS_REMOTE_OTHER_DC;
  case DNS_FORWARD: {
    /* The server would ask its recursors; the client decides that with its own. */
    int rcode = dns_engine_scope(e, q, qlen, NULL) == DNS_SCOPE_ARPA ? 3 /* NXDOMAIN */
                                                                     : 5 /* REFUSED */;
    *outlen = dns_engine_error_reply(e, q, qlen, rcode, out, DNS_TCP_MAX);
    return *outlen ? 0 : CC_EINVAL;
  }
  case DNS_DROP:
    break;
  }
  return CC_EINVAL;
}

/* ---- Server side, with relaying ---- */

struct relay;

struct dns_remote_server {
  struct dns_engine *e;
  struct dns_remote_transport t;
  struct relay *relays; /* in flight, for free */
  unsigned pending;
};

/* A question on its way to another datacenter for an asker who waits. `sending` while inside
 * t.send, as remote_call's below. */
struct relay {
  struct dns_remote_server *s;
  struct relay *prev, *next;
  dns_remote_done_fn done;
  void *arg;
  void *handle;
  char dc[DNS_DC_MAX];
  bool sending, answered;
};

struct dns_remote_server *dns_remote_server_new(struct dns_engine *e,
                                                const struct dns_remote_transport *t)
{
  struct dns_remote_server *s = xcalloc(1, sizeof *s);
  s->e = e;
  if (t)
    s->t = *t;
  return s;
}

static void relay_unlink(struct relay *r)
{
  struct dns_remote_server *s = r->s;
  if (r->prev)
    r->prev->next = r->next;
  else
    s->relays = r->next;
  if (r->next)
    r->next->prev = r->prev;
  s->pending--;
}

static void relay_done(void *arg, int status, const char *error, const uint8_t *body,
                       size_t len)
{
  struct relay *r = arg;
  r->answered = true;
  if (status != 0 || error)
    log_debug("dns", "DNS question for datacenter %s: %s", r->dc,
              error ? error : cc_strerror(status));
  if (!r->sending)
    relay_unlink(r); /* before done, which may free what r->arg points to */
  r->done(r->arg, status, error, body, len);
  if (!r->sending)
    free(r);
}

void dns_remote_serve(struct dns_remote_server *s, const uint8_t *body, size_t len,
                      dns_remote_done_fn done, void *arg, void **handle)
{
  *handle = NULL;
  uint8_t *out = xmalloc(DNS_TCP_MAX);
  size_t outlen = 0;
  int rc = dns_remote_answer(s->e, body, len, out, &outlen);
  if (rc == 0)
    done(arg, 0, NULL, out, outlen);
  else if (rc != DNS_REMOTE_OTHER_DC)
    done(arg, 0, "malformed DNS request", NULL, 0);
  free(out);
  if (rc != DNS_REMOTE_OTHER_DC)
    return;
  if (!s->t.send) {
    done(arg, 0, "No path to datacenter", NULL, 0);
    return;
  }
  if (s->pending >= MAX_RELAYS) {
    done(arg, 0, "too many DNS questions for other datacenters in flight", NULL, 0);
    return;
  }
  struct relay *r = xcalloc(1, sizeof *r);
  r->s = s;
  r->done = done;
  r->arg = arg;
  snprintf(r->dc, sizeof r->dc, "%s", dns_engine_remote_dc(s->e));
  r->next = s->relays;
  if (s->relays)
    s->relays->prev = r;
  s->relays = r;
  s->pending++;
  uint8_t *copy = xmemdup(body, len);
  dns_remote_mark_forwarded(copy, len, false); /* the asker's WAN flag goes on as it came */
  r->sending = true;
  int err = s->t.send(s->t.ctx, r->dc, copy, len, relay_done, r, &r->handle);
  r->sending = false;
  free(copy);
  if (r->answered) { /* answered inside send: done has run */
    relay_unlink(r);
    free(r);
    return;
  }
  if (err != 0) {
    relay_unlink(r);
    free(r);
    /* Consul's ErrDCNotAvailable, or the transport's reason */
    done(arg, 0, err == CC_ENOTFOUND ? "Remote DC has no server currently reachable"
                                     : cc_strerror(err), NULL, 0);
    return;
  }
  *handle = r;
}

void dns_remote_server_cancel(struct dns_remote_server *s, void *handle)
{
  struct relay *r = handle;
  if (!r)
    return;
  if (s->t.cancel)
    s->t.cancel(s->t.ctx, r->handle);
  relay_unlink(r);
  free(r);
}

unsigned dns_remote_server_pending(const struct dns_remote_server *s)
{
  return s->pending;
}

void dns_remote_server_free(struct dns_remote_server *s)
{
  if (!s)
    return;
  while (s->relays) {
    struct relay *r = s->relays;
    if (s->t.cancel)
      s->t.cancel(s->t.ctx, r->handle);
    relay_unlink(r);
    r->done(r->arg, CC_ESHUTDOWN, NULL, NULL, 0);
    free(r);
  }
  free(s);
}

/* ---- Asking side ---- */

struct dns_remote_client {
  struct dns_remote_transport t;
  unsigned pending;
  bool wan_addrs;
};

/* One query in flight. `sending` while inside t.send: an answer arriving then must not free
 * the call under send's feet (`answered` tells start to free it afterwards). */
struct remote_call {
  struct dns_remote_client *c;
  struct dns_upstream_query *q;
  void *handle;
  bool sending, answered;
};

static void remote_done(void *arg, int status, const char *error, const uint8_t *body,
                        size_t len)
{
  struct remote_call *rc = arg;
  rc->answered = true;
  if (status != 0 || error) {
    log_debug("dns", "remote DNS query failed: %s", error ? error : cc_strerror(status));
    body = NULL;
  }
  dns_server_upstream_reply(rc->q, body, body ? len : 0);
  if (!rc->sending) {
    rc->c->pending--;
    free(rc);
  }
}

static int remote_start(void *ctx, struct dns_upstream_query *q, const uint8_t *query,
                        size_t qlen, bool tcp, size_t max_size, const struct sockaddr *client,
                        const char *dc, void **qdata)
{
  struct dns_remote_client *c = ctx;
  uint8_t *body = xmalloc(DNS_REMOTE_MAX_BODY);
  size_t blen = dns_remote_encode(query, qlen, tcp, max_size, client, body);
  if (blen == 0) {
    free(body);
    return CC_EINVAL;
  }
  if (c->wan_addrs)
    body[1] |= FLAG_WAN; /* this agent's translate_wan_addrs, for whoever answers */
  if (dc)
    dns_remote_mark_forwarded(body, blen, false);
  struct remote_call *rc = xcalloc(1, sizeof *rc);
  rc->c = c;
  rc->q = q;
  rc->sending = true;
  c->pending++;
  int err = c->t.send(c->t.ctx, dc, body, blen, remote_done, rc, &rc->handle);
  free(body);
  rc->sending = false;
  bool answered = rc->answered;
  if (err != 0 || answered) {
    /* Answered already, or not sent (the server answers SERVFAIL): nothing to cancel. */
    c->pending--;
    free(rc);
    *qdata = NULL;
    return answered ? 0 : err;
  }
  *qdata = rc;
  return 0;
}

static void remote_cancel(void *ctx, void *qdata)
{
  struct dns_remote_client *c = ctx;
  struct remote_call *rc = qdata;
  if (!rc)
    return;
  if (c->t.cancel)
    c->t.cancel(c->t.ctx, rc->handle);
  c->pending--;
  free(rc);
}

struct dns_remote_client *dns_remote_client_new(const struct dns_remote_transport *t)
{
  struct dns_remote_client *c = xcalloc(1, sizeof *c);
  c->t = *t;
  return c;
}

void dns_remote_client_set_wan_addrs(struct dns_remote_client *c, bool on)
{
  c->wan_addrs = on;
}

void dns_remote_client_upstream(struct dns_remote_client *c, struct dns_upstream *out)
{
  memset(out, 0, sizeof *out);
  out->ctx = c;
  out->start = remote_start;
  out->cancel = remote_cancel;
}

unsigned dns_remote_client_pending(const struct dns_remote_client *c)
{
  return c->pending;
}

void dns_remote_client_free(struct dns_remote_client *c)
{
  if (c && c->pending)
    log_warn("dns", "remote DNS client freed with %u queries in flight", c->pending);
  free(c);
}
