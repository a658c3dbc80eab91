/* server.c -- accepted connections: the first-byte sniff, the Raft handshake, and the
 * server side of RPC (method table, calls, cancels).
 *
 * Every accepted handle is allocated with raft_malloc, because a Raft connection's handle is
 * handed to libraft, which frees it with raft_free after closing it. Until the first byte and
 * the handshake are in, the alloc callback offers exactly the bytes still missing (libuv never
 * reads more than the buffer offered), and reading stops inside the read callback once the
 * handshake is complete: the bytes after it are libraft's.
 *
 * A call is owned by the connection's `calls` table until it is answered or cancelled. When
 * the connection goes away first, the call is detached (in = NULL): its cancel callback runs
 * and frees it, or, with none set, the eventual reply is dropped and frees it. */
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "rpc/internal.h"

struct rpc_handler {
  rpc_handler_fn fn;
  void *arg;
};

/* ---- method table ---- */

void rpc_handle(struct rpc *r, const char *method, rpc_handler_fn fn, void *arg)
{
  size_t n = strlen(method);
  struct rpc_handler *old;
  if (fn == NULL) {
    old = map_del(&r->handlers, method, n);
  } else {
    struct rpc_handler *h = xmalloc(sizeof *h);
    h->fn = fn;
    h->arg = arg;
    old = map_put(&r->handlers, method, n, h);
  }
  free(old);
}

void rpc__handlers_free(struct rpc *r)
{
  for (struct map_iter it = map_iter_start(&r->handlers); map_iter_next(&it);)
    free(it.entry->value);
  map_free(&r->handlers);
}

/* ---- closing ---- */

static void in_close_cb(uv_handle_t *h)
{
  struct rpc_in *in = h->data;
  struct rpc *r = in->r;
  raft_free(h);
  rpc__stream_free(&in->s); /* zeroed (nothing to free) if it never became an RPC stream */
  map_free(&in->calls);
  free(in);
  rpc__handle_closed(r);
}

/* Takes a call out of its connection: from here its reply (if any) is dropped. */
static void call_detach(struct rpc_call *call)
{
  map_del(&call->in->calls, &call->seq, sizeof call->seq);
  rpc_list_remove(&call->link);
  call->in = NULL;
}

/* The caller went away or cancelled: tell the handler (then free the call), or, with no
 * cancel function set, leave the call to be freed by its reply. */
static void call_cancel(struct rpc_call *call)
{
  call_detach(call);
  if (call->cancel_fn != NULL) {
    call->cancel_fn(call, call->cancel_arg);
    free(call);
  }
}

/* One at a time from the head: a cancel callback may answer or cancel other calls. */
static void cancel_calls(struct rpc_in *in)
{
  while (!rpc_list_empty(&in->call_list))
    call_cancel(RPC_CONTAINER(in->call_list.next, struct rpc_call, link));
}

void rpc__in_close(struct rpc_in *in)
{
  if (in->state == RPC_IN_CLOSING) return;
  in->state = RPC_IN_CLOSING;
  rpc_list_remove(&in->link);
  in->r->n_inbound--;
  uv_read_stop((uv_stream_t *)in->tcp);
  in->s.dead = true;
  in->tcp->data = in;
  uv_close((uv_handle_t *)in->tcp, in_close_cb);
  cancel_calls(in);
}

void rpc__in_sweep(struct rpc *r, uint64_t now)
{
  /* Connections still sniffing have no calls, so closing one runs no callbacks. */
  struct rpc_list *e = r->inbound.next;
  while (e != &r->inbound) {
    struct rpc_in *in = RPC_CONTAINER(e, struct rpc_in, link);
    e = e->next;
    if ((in->state == RPC_IN_SNIFF || in->state == RPC_IN_RAFT_HS) && now >= in->deadline) {
      log_debug("agent.rpc", "closing connection from %s: no handshake in time", in->peer);
      rpc__in_close(in);
    }
  }
}

/* ---- RPC frames ---- */

static void send_response(struct rpc_in *in, uint64_t seq, const char *error, const void *body,
                          size_t len)
{
  char tmp[96];
  if (rpc_codec_response_size(error, len) > in->s.max_frame) {
    snprintf(tmp, sizeof tmp, "rpc: response too large (%zu bytes)", len);
    error = tmp;
    body = NULL;
    len = 0;
  }
  rpc_codec_put_response(&in->s.out, seq, error, body, len);
  if (rpc__stream_flush(&in->s) != 0) rpc__stream_fail(&in->s, UV_EIO);
}

static int in_frame(struct rpc_stream *s, const uint8_t *p, size_t len)
{
  struct rpc_in *in = s->owner;
  struct rpc_frame f;
  if (rpc_codec_decode(p, len, &f) != 0) return CC_EINVAL;
  if (f.kind == RPC_FRAME_RESPONSE) return CC_EINVAL;
  if (f.kind == RPC_FRAME_CANCEL) {
    struct rpc_call *call = map_get(&in->calls, &f.seq, sizeof f.seq);
    if (call != NULL) call_cancel(call); /* else already answered */
    return 0;
  }
  if (map_get(&in->calls, &f.seq, sizeof f.seq) != NULL) return CC_EINVAL; /* seq reused */
  if (map_count(&in->calls) >= RPC_MAX_INFLIGHT) {
    send_response(in, f.seq, "rpc: too many requests in flight", NULL, 0);
    return 0;
  }
  metrics_g.rpc_requests++;
  struct rpc_handler *h = map_get(&in->r->handlers, f.method, f.method_len);
  if (h == NULL) {
    char err[64 + RPC_MAX_METHOD];
    snprintf(err, sizeof err, "rpc: can't find method %.*s", (int)f.method_len, f.method);
    send_response(in, f.seq, err, NULL, 0);
    return 0;
  }
  struct rpc_call *call = xcalloc(1, sizeof *call);
  call->in = in;
  call->seq = f.seq;
  memcpy(call->peer, in->peer, sizeof call->peer);
  map_put(&in->calls, &call->seq, sizeof call->seq, call);
  rpc_list_push(&in->call_list, &call->link);
  /* copies: the handler may replace or remove itself */
  rpc_handler_fn fn = h->fn;
  void *arg = h->arg;
  static const uint8_t empty[1];
  fn(call, f.body != NULL ? f.body : empty, f.body_len, arg);
  return 0;
}

static void in_fail(struct rpc_stream *s, int status)
{
  struct rpc_in *in = s->owner;
  if (status != UV_EOF)
    log_debug("agent.rpc", "closing connection from %s: %s", in->peer,
              rpc__stream_strerror(status));
  rpc__in_close(in);
}

void rpc_call_reply(struct rpc_call *call, const char *error, const void *body, size_t len)
{
  struct rpc_in *in = call->in;
  if (in != NULL) {
    call_detach(call);
    send_response(in, call->seq, error, body, len);
  }
  free(call);
}

const char *rpc_call_peer(const struct rpc_call *call) { return call->peer; }

void rpc_call_on_cancel(struct rpc_call *call, rpc_cancel_fn fn, void *arg)
{
  if (call->in == NULL) return; /* already cancelled: the reply will be dropped */
  call->cancel_fn = fn;
  call->cancel_arg = arg;
}

/* ---- first byte and Raft handshake ---- */

static void sniff_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
  struct rpc_in *in = h->data;
  if (in->state == RPC_IN_SNIFF) {
    b->base = (char *)&in->first;
    b->len = 1;
  } else {
    b->base = (char *)in->hs + in->hs_got;
    b->len = in->hs_need - in->hs_got;
  }
}

static void start_rpc(struct rpc_in *in)
{
  struct rpc *r = in->r;
  in->state = RPC_IN_RPC;
  rpc__stream_init(&in->s, in, in->tcp, r->cfg.max_frame, in_frame, in_fail);
  in->s.connected = true;
  in->s.may_pause = true;
  uv_read_stop((uv_stream_t *)in->tcp);
  if (rpc__stream_read_start(&in->s) != 0) rpc__in_close(in);
}

static void raft_handshake_done(struct rpc_in *in)
{
  uint64_t id;
  size_t alen;
  rpc_codec_raft_hs_fixed(in->hs, &id, &alen);
  char address[RPC_RAFT_MAX_ADDRESS + 1];
  memcpy(address, in->hs + RPC_RAFT_HS_FIXED, alen);
  address[alen] = '\0';
  /* The bytes after the handshake are libraft's: stop before libuv reads any of them. */
  uv_read_stop((uv_stream_t *)in->tcp);
  struct rpc *r = in->r;
  uv_tcp_t *tcp = in->tcp;
  rpc_list_remove(&in->link);
  r->n_inbound--;
  map_free(&in->calls);
  free(in);
  rpc__raft_accept(r, tcp, id, address);
}

static void sniff_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *b)
{
  struct rpc_in *in = h->data;
  if (nread < 0) {
    rpc__in_close(in);
    return;
  }
  if (nread == 0) return;
  if (in->state == RPC_IN_SNIFF) {
    if (in->first == RPC_BYTE_RPC) {
      start_rpc(in);
    } else if (in->first == RPC_BYTE_RAFT) {
      in->state = RPC_IN_RAFT_HS;
      in->hs_got = 0;
      in->hs_need = RPC_RAFT_HS_FIXED;
    } else {
      log_debug("agent.rpc", "closing connection from %s: unknown protocol byte 0x%02x",
                in->peer, in->first);
      rpc__in_close(in);
    }
    return;
  }
  in->hs_got += (size_t)nread;
  if (in->hs_got < in->hs_need) return;
  if (in->hs_need == RPC_RAFT_HS_FIXED) {
    uint64_t id;
    size_t alen;
    if (rpc_codec_raft_hs_fixed(in->hs, &id, &alen) != 0) {
      log_debug("agent.rpc", "closing connection from %s: bad raft handshake", in->peer);
      rpc__in_close(in);
      return;
    }
    in->hs_need += alen;
    return;
  }
  raft_handshake_done(in);
}

void rpc__in_accept(struct rpc *r)
{
  uv_tcp_t *tcp = raft_malloc(sizeof *tcp);
  if (tcp == NULL) abort(); /* as xmalloc: OOM is not recoverable */
  uv_tcp_init(r->loop, tcp);
  r->open_handles++;
  struct rpc_in *in = xcalloc(1, sizeof *in);
  in->r = r;
  in->tcp = tcp;
  tcp->data = in;
  map_init(&in->calls);
  rpc_list_init(&in->call_list);
  in->state = RPC_IN_SNIFF;
  in->deadline = uv_now(r->loop) + RPC_SNIFF_TIMEOUT_MS;
  rpc_list_push(&r->inbound, &in->link);
  r->n_inbound++;
  snprintf(in->peer, sizeof in->peer, "?");
  if (uv_accept((uv_stream_t *)&r->listener, (uv_stream_t *)tcp) != 0) {
    rpc__in_close(in);
    return;
  }
  if (r->n_inbound > RPC_MAX_INBOUND) {
    log_warn("agent.rpc", "refusing connection: %d connections open", RPC_MAX_INBOUND);
    rpc__in_close(in);
    return;
  }
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&ss, in->peer, sizeof in->peer);
    else
      uv_ip4_name((struct sockaddr_in *)&ss, in->peer, sizeof in->peer);
  }
  rpc__tune_socket(tcp);
  if (uv_read_start((uv_stream_t *)tcp, sniff_alloc, sniff_read) != 0) rpc__in_close(in);
}
