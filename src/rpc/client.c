/* client.c -- the client pool: one connection per server address, dialed on first use,
 * requests multiplexed over it by sequence number.
 *
 * A connection is in the pool (rpc->pool) from the dial until it fails or idles out; then it
 * leaves the pool at once, so the next request to that address dials afresh while the old
 * handle finishes closing. A failed dial completes its requests with CC_ENOCONN; a lost
 * connection fails what it had written with CC_EIO (may have run) and what was still queued
 * with CC_ENOCONN (cannot have run), so callers know which requests are safe to send to
 * another server, as Consul's RPC retry does for reads and for writes that never left.
 *
 * Timeouts: one uv timer for all requests, armed for the earliest deadline of a list kept in
 * deadline order. Requests of one caller mostly share a timeout, so the new deadline is
 * nearly always the latest and insertion (scanning from the tail) is O(1). Connect and idle
 * timeouts are kept by rpc.c's coarse housekeeping timer. */
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "rpc/internal.h"

/* ---- deadlines ---- */

static void arm_timer(struct rpc *r)
{
  if (r->stopping) return;
  if (rpc_list_empty(&r->deadlines)) {
    uv_timer_stop(&r->req_timer);
    return;
  }
  struct rpc_req *first = RPC_CONTAINER(r->deadlines.next, struct rpc_req, deadline_link);
  uint64_t now = uv_now(r->loop);
  uv_timer_start(&r->req_timer, rpc__req_timer_cb,
                 first->deadline > now ? first->deadline - now : 0, 0);
}

static void deadline_insert(struct rpc *r, struct rpc_req *q)
{
  struct rpc_list *at = r->deadlines.prev;
  while (at != &r->deadlines &&
         RPC_CONTAINER(at, struct rpc_req, deadline_link)->deadline > q->deadline)
    at = at->prev;
  rpc_list_insert_after(at, &q->deadline_link);
  if (r->deadlines.next == &q->deadline_link) arm_timer(r);
}

/* Takes a request out of its connection and the deadline list (it stays allocated). */
static void req_unlink(struct rpc_req *q)
{
  struct rpc_out *out = q->out;
  map_del(&out->reqs, &q->seq, sizeof q->seq);
  rpc_list_remove(&q->conn_link);
  rpc_list_remove(&q->deadline_link); /* a no-op for one never inserted (self-linked) */
  if (map_count(&out->reqs) == 0) out->idle_since = uv_now(out->r->loop);
}

/* ---- connections ---- */

static void out_close_cb(uv_handle_t *h)
{
  struct rpc_out *out = RPC_CONTAINER(h, struct rpc_out, tcp);
  struct rpc *r = out->r;
  rpc__stream_free(&out->s);
  map_free(&out->reqs);
  free(out->addr);
  free(out);
  rpc__handle_closed(r);
}

/* Closes the connection and completes every request on it with `status`; with CC_EIO, a
 * request whose frame never reached a write (still queued behind the write in flight) gets
 * CC_ENOCONN instead: it cannot have run, so the caller may send it elsewhere. */
static void out_fail(struct rpc_out *out, int status)
{
  if (out->state == RPC_OUT_CLOSING) return;
  struct rpc *r = out->r;
  out->state = RPC_OUT_CLOSING;
  out->s.dead = true;
  if (map_get(&r->pool, out->addr, strlen(out->addr)) == out)
    map_del(&r->pool, out->addr, strlen(out->addr));
  rpc_list_remove(&out->link);
  uv_close((uv_handle_t *)&out->tcp, out_close_cb);
  /* One at a time from the head: a callback may cancel another request of this list. */
  while (!rpc_list_empty(&out->req_list)) {
    struct rpc_req *q = RPC_CONTAINER(out->req_list.next, struct rpc_req, conn_link);
    req_unlink(q);
    int st = status == CC_EIO && q->batch > out->s.batches ? CC_ENOCONN : status;
    q->cb(q->arg, st, NULL, NULL, 0);
    free(q);
  }
}

static void out_stream_fail(struct rpc_stream *s, int status)
{
  struct rpc_out *out = s->owner;
  if (status != UV_EOF)
    log_debug("agent.rpc", "connection to %s lost: %s", out->addr,
              rpc__stream_strerror(status));
  out_fail(out, CC_EIO);
}

static int out_frame(struct rpc_stream *s, const uint8_t *p, size_t len)
{
  struct rpc_out *out = s->owner;
  struct rpc_frame f;
  if (rpc_codec_decode(p, len, &f) != 0 || f.kind != RPC_FRAME_RESPONSE) return CC_EINVAL;
  struct rpc_req *q = map_get(&out->reqs, &f.seq, sizeof f.seq);
  if (q == NULL) return 0; /* timed out or cancelled: the answer is dropped */
  req_unlink(q);
  char *error = f.error != NULL ? xstrndup(f.error, f.error_len) : NULL;
  static const uint8_t empty[1];
  q->cb(q->arg, 0, error, f.body != NULL ? f.body : empty, f.body_len);
  free(error);
  free(q);
  return 0;
}

static void connect_cb(uv_connect_t *c, int status)
{
  struct rpc_out *out = c->data;
  if (out->state != RPC_OUT_CONNECTING) return; /* closed meanwhile (ECANCELED) */
  if (status < 0) {
    log_debug("agent.rpc", "connect to %s: %s", out->addr, uv_strerror(status));
    out_fail(out, CC_ENOCONN); /* nothing was sent: safe to try elsewhere */
    return;
  }
  out->state = RPC_OUT_OPEN;
  out->s.connected = true;
  out->idle_since = uv_now(out->r->loop);
  if (rpc__stream_read_start(&out->s) != 0 || rpc__stream_flush(&out->s) != 0)
    out_fail(out, CC_EIO);
}

static int dial(struct rpc *r, const char *addr, struct rpc_out **res)
{
  struct sockaddr_storage ss;
  if (rpc__parse_addr(addr, &ss) != 0) return CC_EINVAL;
  struct rpc_out *out = xcalloc(1, sizeof *out);
  out->r = r;
  out->addr = xstrdup(addr);
  out->next_seq = 1;
  map_init(&out->reqs);
  rpc_list_init(&out->req_list);
  rpc_list_init(&out->link);
  uv_tcp_init(r->loop, &out->tcp);
  r->open_handles++;
  rpc__stream_init(&out->s, out, &out->tcp, r->cfg.max_frame, out_frame, out_stream_fail);
  uint8_t first = RPC_BYTE_RPC;
  buf_append(&out->s.out, &first, 1);
  out->creq.data = out;
  int rv = uv_tcp_connect(&out->creq, &out->tcp, (const struct sockaddr *)&ss, connect_cb);
  if (rv != 0) {
    log_debug("agent.rpc", "connect to %s: %s", addr, uv_strerror(rv));
    out->state = RPC_OUT_CLOSING;
    uv_close((uv_handle_t *)&out->tcp, out_close_cb);
    return CC_ENOCONN;
  }
  rpc__tune_socket(&out->tcp);
  out->state = RPC_OUT_CONNECTING;
  out->connect_deadline = uv_now(r->loop) + r->cfg.connect_timeout_ms;
  map_put(&r->pool, addr, strlen(addr), out);
  rpc_list_push(&r->outbound, &out->link);
  *res = out;
  return 0;
}

/* ---- requests ---- */

int rpc_request(struct rpc *r, const char *addr, const char *method, const void *body,
                size_t len, unsigned timeout_ms, rpc_done_fn cb, void *arg,
                struct rpc_req **handle)
{
  if (r->stopping) return CC_ESHUTDOWN;
  metrics_g.rpc_client_requests++;
  size_t mlen = strlen(method);
  if (mlen == 0 || mlen > RPC_MAX_METHOD) return CC_EINVAL;
  if (rpc_codec_request_size(method, len) > r->cfg.max_frame) return CC_ETOOBIG;
  struct rpc_out *out = map_get(&r->pool, addr, strlen(addr));
  if (out == NULL) {
    int rv = dial(r, addr, &out);
    if (rv != 0) return rv;
  }
  if (map_count(&out->reqs) >= RPC_MAX_INFLIGHT) return CC_ENOCONN;

  struct rpc_req *q = xcalloc(1, sizeof *q);
  q->out = out;
  q->seq = out->next_seq++;
  q->cb = cb;
  q->arg = arg;
  rpc_list_init(&q->deadline_link);
  map_put(&out->reqs, &q->seq, sizeof q->seq, q);
  rpc_list_push(&out->req_list, &q->conn_link);
  rpc_codec_put_request(&out->s.out, q->seq, method, body, len);
  q->batch = out->s.batches + 1; /* `out` goes whole into the next write */
  if (rpc__stream_flush(&out->s) != 0) {
    /* This request is refused here (no callback); the others on the connection fail. */
    req_unlink(q);
    free(q);
    rpc__stream_fail(&out->s, UV_EIO);
    return CC_ENOCONN;
  }
  if (timeout_ms > 0) {
    q->deadline = uv_now(r->loop) + timeout_ms;
    deadline_insert(r, q);
  }
  if (handle != NULL) *handle = q;
  return 0;
}

/* Tells the server to drop the work; a failure shows up on the connection later. */
static void send_cancel(struct rpc_out *out, uint64_t seq)
{
  if (out->state == RPC_OUT_CLOSING) return;
  rpc_codec_put_cancel(&out->s.out, seq);
  if (rpc__stream_flush(&out->s) != 0) rpc__stream_fail(&out->s, UV_EIO);
}

void rpc_request_cancel(struct rpc_req *h)
{
  struct rpc_out *out = h->out;
  uint64_t seq = h->seq;
  req_unlink(h);
  free(h);
  send_cancel(out, seq);
}

void rpc__req_timer_cb(uv_timer_t *t)
{
  struct rpc *r = t->data;
  uint64_t now = uv_now(r->loop);
  while (!rpc_list_empty(&r->deadlines)) {
    struct rpc_req *q = RPC_CONTAINER(r->deadlines.next, struct rpc_req, deadline_link);
    if (q->deadline > now) break;
    struct rpc_out *out = q->out;
    req_unlink(q);
    send_cancel(out, q->seq);
    q->cb(q->arg, CC_ETIMEOUT, NULL, NULL, 0);
    free(q);
  }
  arm_timer(r);
}

void rpc__out_sweep(struct rpc *r, uint64_t now)
{
  /* A failure runs callbacks that may close other connections: start over after each (every
   * failure removes one connection from the list, so this ends). */
  struct rpc_list *e = r->outbound.next;
  while (e != &r->outbound && !r->stopping) {
    struct rpc_out *out = RPC_CONTAINER(e, struct rpc_out, link);
    e = e->next;
    if (out->state == RPC_OUT_CONNECTING && now >= out->connect_deadline) {
      log_debug("agent.rpc", "connect to %s: timed out", out->addr);
      out_fail(out, CC_ENOCONN);
      e = r->outbound.next;
    } else if (out->state == RPC_OUT_OPEN && map_count(&out->reqs) == 0 &&
               now - out->idle_since >= out->r->cfg.idle_timeout_ms) {
      out_fail(out, CC_EIO); /* nothing in flight: just closes */
      e = r->outbound.next;
    }
  }
}

void rpc__out_shutdown(struct rpc *r)
{
  while (!rpc_list_empty(&r->outbound))
    out_fail(RPC_CONTAINER(r->outbound.next, struct rpc_out, link), CC_ESHUTDOWN);
}
