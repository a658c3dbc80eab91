/* dns_remote.c -- DNS over a request/response transport: the shared request format, a
 * server answering requests with its engine, and the client's dns_upstream (see the header).
 *
 * Memory: the server side writes into the caller's buffer. The client side allocates one
 * struct remote_call per query in flight (freed on its answer or its cancel) and a request
 * body for the duration of send. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "agent/dns_remote.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

#define REMOTE_VERSION 1
#define FLAG_TCP 0x01

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

/* ---- Server side ---- */

int dns_remote_answer(struct dns_engine *e, const uint8_t *body, size_t len, uint8_t *out,
                      size_t *outlen)
{
  if (len < 5 || body[0] != REMOTE_VERSION || (body[1] & ~FLAG_TCP) != 0)
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
  struct dns_request req = {.tcp = body[1] & FLAG_TCP, .max_size = max_size, .client = client};
  switch (dns_engine_answer(e, q, qlen, &req, out, outlen)) {
  case DNS_REPLY:
    return 0;
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

/* ---- Client side ---- */

struct dns_remote_client {
  struct dns_remote_transport t;
  unsigned pending;
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
                        void **qdata)
{
  struct dns_remote_client *c = ctx;
  uint8_t *body = xmalloc(DNS_REMOTE_MAX_BODY);
  size_t blen = dns_remote_encode(query, qlen, tcp, max_size, client, body);
  if (blen == 0) {
    free(body);
    return CC_EINVAL;
  }
  struct remote_call *rc = xcalloc(1, sizeof *rc);
  rc->c = c;
  rc->q = q;
  rc->sending = true;
  c->pending++;
  int err = c->t.send(c->t.ctx, body, blen, remote_done, rc, &rc->handle);
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
