/* raft.c -- libraft's transport (struct raft_uv_transport) over the shared server port.
 *
 * The contract, as libraft 0.15's own TCP transport (src/uv_tcp*.c) keeps it:
 *  - listen only records the accept callback: rpc's listener already listens, and server.c
 *    hands over each connection whose first byte is 0x01 once its handshake is read;
 *  - connect dials, writes 0x01 and the handshake, and then gives the stream to libraft
 *    (allocated with raft_malloc: libraft closes it and frees it with raft_free); a failure
 *    reaches the callback as RAFT_NOCONNECTION, always from a handle close callback, never
 *    from inside connect;
 *  - close stops accepts, cancels pending connects (their callbacks get RAFT_CANCELED once
 *    their handles are closed) and calls the close callback when nothing is pending.
 * The transport may outlive the rpc (rpc_stop before consensus_stop): it then refuses new
 * connects and still completes the ones under way, which need only the loop. */
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "rpc/internal.h"

struct rpc_raft {
  struct rpc *r; /* NULL once the rpc is gone */
  uv_loop_t *loop;
  struct raft_uv_transport *t;
  uint64_t id;
  char address[RPC_RAFT_MAX_ADDRESS + 1];
  unsigned connect_timeout_ms;
  raft_uv_accept_cb accept_cb;
  struct rpc_list dials;   /* connects under way */
  unsigned aborting;       /* connects whose handle is closing (callback still to come) */
  bool closing;
  bool close_fired;
  bool close_deferred;     /* the close callback waits for the next loop turn */
  raft_uv_transport_close_cb close_cb;
};

struct rpc_dial {
  struct rpc_list link;
  struct rpc_raft *rt;
  struct raft_uv_connect *req;
  uv_tcp_t *tcp; /* raft_malloc'd */
  uv_connect_t creq;
  uv_write_t wreq;
  struct buf hs; /* 0x01 + handshake */
  uint64_t deadline;
  int status;    /* 0 while under way, else the status the callback will get */
};

static void maybe_fire_close(struct rpc_raft *rt)
{
  if (!rt->closing || rt->close_fired || rt->close_deferred || !rpc_list_empty(&rt->dials) ||
      rt->aborting > 0)
    return;
  rt->close_fired = true;
  if (rt->close_cb != NULL) rt->close_cb(rt->t);
}

static void dial_close_cb(uv_handle_t *h)
{
  struct rpc_dial *d = h->data;
  struct rpc_raft *rt = d->rt;
  raft_free(h);
  buf_free(&d->hs);
  struct raft_uv_connect *req = d->req;
  int status = d->status;
  free(d);
  rt->aborting--;
  req->cb(req, NULL, status);
  maybe_fire_close(rt);
}

static void dial_abort(struct rpc_dial *d, int status)
{
  d->status = status;
  rpc_list_remove(&d->link);
  d->rt->aborting++;
  uv_close((uv_handle_t *)d->tcp, dial_close_cb);
}

static void dial_write_cb(uv_write_t *w, int status)
{
  struct rpc_dial *d = w->data;
  if (d->status != 0) return; /* aborted: the close callback reports it */
  if (status < 0) {
    dial_abort(d, RAFT_NOCONNECTION);
    return;
  }
  rpc_list_remove(&d->link);
  uv_tcp_t *tcp = d->tcp;
  struct raft_uv_connect *req = d->req;
  buf_free(&d->hs);
  free(d);
  tcp->data = NULL;
  req->cb(req, (uv_stream_t *)tcp, 0); /* libraft owns the handle from here */
}

static void dial_connect_cb(uv_connect_t *c, int status)
{
  struct rpc_dial *d = c->data;
  if (d->status != 0) return;
  if (status < 0) {
    dial_abort(d, RAFT_NOCONNECTION);
    return;
  }
  rpc__tune_socket(d->tcp);
  uv_buf_t b = uv_buf_init(d->hs.data, (unsigned)d->hs.len);
  d->wreq.data = d;
  if (uv_write(&d->wreq, (uv_stream_t *)d->tcp, &b, 1, dial_write_cb) != 0)
    dial_abort(d, RAFT_NOCONNECTION);
}

/* ---- the transport's methods ---- */

static int tr_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
  struct rpc_raft *rt = t->impl;
  if (id == 0 || strlen(address) > RPC_RAFT_MAX_ADDRESS) {
    snprintf(t->errmsg, sizeof t->errmsg, "invalid raft id or address");
    return RAFT_INVALID;
  }
  rt->id = id;
  snprintf(rt->address, sizeof rt->address, "%s", address);
  return 0;
}

static int tr_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
  struct rpc_raft *rt = t->impl;
  if (rt->r == NULL || !rt->r->listening) {
    snprintf(t->errmsg, sizeof t->errmsg, "the rpc port is not listening");
    return RAFT_INVALID;
  }
  rt->accept_cb = cb;
  return 0;
}

static int tr_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                      const char *address, raft_uv_connect_cb cb)
{
  struct rpc_raft *rt = t->impl;
  struct sockaddr_storage ss;
  if (rt->closing || rt->r == NULL || rt->r->stopping) return RAFT_NOCONNECTION;
  if (rpc__parse_addr(address, &ss) != 0) return RAFT_NOCONNECTION;
  struct rpc_dial *d = xcalloc(1, sizeof *d);
  d->rt = rt;
  d->req = req;
  req->cb = cb;
  uint8_t first = RPC_BYTE_RAFT;
  buf_append(&d->hs, &first, 1);
  if (rpc_codec_raft_hs_put(&d->hs, rt->id, rt->address) != 0) {
    buf_free(&d->hs);
    free(d);
    return RAFT_INVALID;
  }
  d->tcp = raft_malloc(sizeof *d->tcp);
  if (d->tcp == NULL) abort(); /* as xmalloc: OOM is not recoverable */
  uv_tcp_init(rt->loop, d->tcp);
  d->tcp->data = d;
  d->creq.data = d;
  if (uv_tcp_connect(&d->creq, d->tcp, (const struct sockaddr *)&ss, dial_connect_cb) != 0) {
    uv_close((uv_handle_t *)d->tcp, (uv_close_cb)raft_free);
    buf_free(&d->hs);
    free(d);
    return RAFT_NOCONNECTION;
  }
  d->deadline = uv_now(rt->loop) + rt->connect_timeout_ms;
  rpc_list_push(&rt->dials, &d->link);
  (void)id;
  return 0;
}

static void close_deferred_cb(uv_handle_t *h)
{
  struct rpc_raft *rt = h->data;
  free(h);
  rt->close_deferred = false;
  maybe_fire_close(rt);
}

static void tr_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
  struct rpc_raft *rt = t->impl;
  rt->closing = true;
  rt->close_cb = cb;
  rt->accept_cb = NULL;
  while (!rpc_list_empty(&rt->dials))
    dial_abort(RPC_CONTAINER(rt->dials.next, struct rpc_dial, link), RAFT_CANCELED);
  /* Never call back from inside close: libraft's uvClose goes on using its io after
   * transport->close returns, and a callback that completed the io's close from in here
   * could let the io be freed under it (an intermittent SEGV at shutdown). Its own TCP
   * transport calls back from a handle's close callback; so does this one, via a handle
   * closed at once. */
  uv_idle_t *tick = xmalloc(sizeof *tick);
  uv_idle_init(rt->loop, tick);
  tick->data = rt;
  rt->close_deferred = true;
  uv_close((uv_handle_t *)tick, close_deferred_cb);
}

int rpc_raft_transport_init(void *arg, struct raft_uv_transport *t)
{
  struct rpc *r = arg;
  if (r->raft != NULL || r->stopping) {
    snprintf(t->errmsg, sizeof t->errmsg, "the rpc port already carries a raft transport");
    return RAFT_INVALID;
  }
  struct rpc_raft *rt = xcalloc(1, sizeof *rt);
  rt->r = r;
  rt->loop = r->loop;
  rt->t = t;
  rt->connect_timeout_ms = r->cfg.connect_timeout_ms;
  rpc_list_init(&rt->dials);
  t->impl = rt;
  t->init = tr_init;
  t->listen = tr_listen;
  t->connect = tr_connect;
  t->close = tr_close;
  r->raft = rt;
  return 0;
}

void rpc_raft_transport_close(void *arg, struct raft_uv_transport *t)
{
  struct rpc_raft *rt = t->impl;
  (void)arg; /* the rpc may be gone already: rt->r says */
  if (rt == NULL) return;
  if (!rpc_list_empty(&rt->dials) || rt->aborting > 0)
    log_error("agent.rpc", "raft transport released with connects pending");
  if (rt->r != NULL && rt->r->raft == rt) rt->r->raft = NULL;
  free(rt);
  t->impl = NULL;
}

/* ---- what rpc's other files call ---- */

static void raw_close_cb(uv_handle_t *h)
{
  struct rpc *r = h->data;
  raft_free(h);
  rpc__handle_closed(r);
}

void rpc__raft_accept(struct rpc *r, uv_tcp_t *tcp, uint64_t id, const char *address)
{
  struct rpc_raft *rt = r->raft;
  if (rt == NULL || rt->accept_cb == NULL || rt->closing || r->stopping) {
    log_debug("agent.rpc", "closing raft connection from %s: raft is not running", address);
    tcp->data = r;
    uv_close((uv_handle_t *)tcp, raw_close_cb);
    return;
  }
  r->open_handles--; /* libraft's from here (not stopping, so nothing waits on the count) */
  tcp->data = NULL;
  rt->accept_cb(rt->t, id, address, (uv_stream_t *)tcp);
}

void rpc__raft_sweep(struct rpc *r, uint64_t now)
{
  struct rpc_raft *rt = r->raft;
  if (rt == NULL) return;
  struct rpc_list *e = rt->dials.next;
  while (e != &rt->dials) {
    struct rpc_dial *d = RPC_CONTAINER(e, struct rpc_dial, link);
    e = e->next;
    if (now >= d->deadline) dial_abort(d, RAFT_NOCONNECTION); /* callback comes later */
  }
}

void rpc__raft_detach(struct rpc *r)
{
  if (r->raft != NULL) r->raft->r = NULL;
  r->raft = NULL;
}
