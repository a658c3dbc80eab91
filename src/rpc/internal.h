/* internal.h -- what the rpc/ files share: the rpc object, its connections, and the framed
 * stream both sides of an RPC connection use. Not for use outside src/rpc/. */
#ifndef CONCORD_RPC_INTERNAL_H
#define CONCORD_RPC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lib/buf.h"
#include "lib/map.h"
#include "rpc/codec.h"
#include "rpc/rpc.h"

/* Caps (see rpc_config for the tunable ones). */
#define RPC_MAX_INBOUND 4096         /* accepted connections, any kind */
#define RPC_MAX_INFLIGHT 10000       /* calls in flight per connection, each direction */
#define RPC_SNIFF_TIMEOUT_MS 10000   /* first byte and Raft handshake must arrive in this */
#define RPC_READ_CHUNK 65536

/* A circular doubly linked list with a sentinel head (libuv's queue, in miniature). */
struct rpc_list {
  struct rpc_list *prev, *next;
};
static inline void rpc_list_init(struct rpc_list *h) { h->prev = h->next = h; }
static inline bool rpc_list_empty(const struct rpc_list *h) { return h->next == h; }
static inline void rpc_list_insert_after(struct rpc_list *at, struct rpc_list *e)
{
  e->prev = at;
  e->next = at->next;
  at->next->prev = e;
  at->next = e;
}
static inline void rpc_list_push(struct rpc_list *h, struct rpc_list *e)
{
  rpc_list_insert_after(h->prev, e);
}
static inline void rpc_list_remove(struct rpc_list *e)
{
  e->prev->next = e->next;
  e->next->prev = e->prev;
  e->prev = e->next = e;
}
#define RPC_CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- a framed stream: reads frames, queues writes (stream.c) ---- */
struct rpc_stream;
/* Called per complete frame with the payload (lent). Returns 0, or non-zero to stop reading
 * (the owner closes the connection). */
typedef int (*rpc_frame_fn)(struct rpc_stream *s, const uint8_t *p, size_t len);
/* Called once when the stream fails (read error, EOF, bad frame, write error). */
typedef void (*rpc_fail_fn)(struct rpc_stream *s, int uv_status);

struct rpc_stream {
  uv_tcp_t *tcp;        /* owned by the connection that embeds this stream */
  size_t max_frame;
  struct buf rbuf;      /* bytes read, not yet a complete frame */
  struct buf out;       /* frames waiting for the current write to finish */
  struct buf writing;   /* the bytes of the write in flight */
  uv_write_t wreq;
  bool write_busy;
  bool connected;       /* writes are held in `out` until the socket is connected */
  bool dead;            /* failed or closing: no more frames or writes */
  bool may_pause;       /* server side: stop reading while output backs up */
  uint64_t batches;     /* writes started (each takes all of `out`) */
  bool paused;          /* reading stopped while output backs up */
  rpc_frame_fn on_frame;
  rpc_fail_fn on_fail;
  void *owner;          /* the struct rpc_in or rpc_out */
};

void rpc__stream_init(struct rpc_stream *s, void *owner, uv_tcp_t *tcp, size_t max_frame,
                      rpc_frame_fn on_frame, rpc_fail_fn on_fail);
/* Starts reading: points tcp->data at the stream. */
int rpc__stream_read_start(struct rpc_stream *s);
/* Frame bytes were appended to s->out: write them if no write is in flight. Returns 0, or
 * CC_EIO when the stream is dead or the write could not start (the caller then fails the
 * stream with rpc__stream_fail: flush never calls back itself). */
int rpc__stream_flush(struct rpc_stream *s);
/* Marks the stream dead, stops reading and calls on_fail (once). */
void rpc__stream_fail(struct rpc_stream *s, int uv_status);
/* The on_fail status in words ("frame above the size limit", "malformed frame", libuv's). */
const char *rpc__stream_strerror(int status);
void rpc__stream_free(struct rpc_stream *s);

/* ---- server side: an accepted connection (server.c) ---- */
enum rpc_in_state { RPC_IN_SNIFF, RPC_IN_RAFT_HS, RPC_IN_RPC, RPC_IN_CLOSING };

struct rpc_in {
  struct rpc_list link;    /* in rpc->inbound */
  struct rpc *r;
  uv_tcp_t *tcp;           /* raft_malloc'd: a Raft connection's handle goes to libraft */
  enum rpc_in_state state;
  uint64_t deadline;       /* uv_now by which the first byte / handshake must be in */
  char peer[64];           /* "ip" */
  /* Raft handshake being read */
  uint8_t hs[RPC_RAFT_HS_FIXED + RPC_RAFT_MAX_ADDRESS + 1];
  size_t hs_got, hs_need;
  uint8_t first;           /* the first byte */
  /* RPC */
  struct rpc_stream s;
  struct map calls;        /* seq (8 bytes) -> struct rpc_call */
  struct rpc_list call_list; /* the same calls, for cancelling them all */
};

struct rpc_call {
  struct rpc_list link;    /* in in->call_list while attached */
  struct rpc_in *in;       /* NULL once detached (connection gone, or cancelled) */
  uint64_t seq;
  char peer[64];
  rpc_cancel_fn cancel_fn;
  void *cancel_arg;
};

/* ---- client side: one pooled connection per address (client.c) ---- */
enum rpc_out_state { RPC_OUT_CONNECTING, RPC_OUT_OPEN, RPC_OUT_CLOSING };

struct rpc_out {
  struct rpc_list link;    /* in rpc->outbound */
  struct rpc *r;
  char *addr;              /* owned; also the key in rpc->pool */
  uv_tcp_t tcp;
  uv_connect_t creq;
  enum rpc_out_state state;
  uint64_t connect_deadline;
  uint64_t idle_since;     /* uv_now when the last request finished */
  uint64_t next_seq;
  struct map reqs;         /* seq (8 bytes) -> struct rpc_req */
  struct rpc_list req_list;/* the same requests, for failing them all */
  struct rpc_stream s;
};

struct rpc_req {
  struct rpc_list deadline_link; /* in rpc->deadlines, sorted by deadline (if any) */
  struct rpc_list conn_link;     /* in out->req_list */
  struct rpc_out *out;
  uint64_t seq;
  uint64_t deadline;       /* uv_now ms; 0 = none */
  uint64_t batch;          /* the stream write that carries its frame (stream.batches) */
  rpc_done_fn cb;
  void *arg;
};

/* ---- Raft transport (raft.c) ---- */
struct rpc_raft;

struct rpc {
  uv_loop_t *loop;
  struct rpc_config cfg;
  char bind_ip[64];
  uv_tcp_t listener;
  bool listening;
  uv_timer_t sweep;        /* handshake deadlines, connect timeouts, idle closes */
  uv_timer_t req_timer;    /* the earliest request deadline */
  struct map handlers;     /* method -> struct rpc_handler */
  struct rpc_list inbound; /* struct rpc_in */
  size_t n_inbound;
  struct map pool;         /* addr -> struct rpc_out (open or connecting) */
  struct rpc_list outbound;/* every struct rpc_out, including closing ones */
  struct rpc_list deadlines;
  struct rpc_raft *raft;   /* the attached transport, or NULL */
  bool stopping;
  unsigned open_handles;   /* handles whose close callback is still to come */
  void (*stop_cb)(void *arg);
  void *stop_arg;
};

/* Handle accounting for rpc_stop: every handle the rpc opens counts until its close cb. */
void rpc__handle_closed(struct rpc *r);

/* server.c */
void rpc__in_accept(struct rpc *r);
void rpc__in_close(struct rpc_in *in);
void rpc__in_sweep(struct rpc *r, uint64_t now);
void rpc__handlers_free(struct rpc *r);

/* client.c */
void rpc__out_sweep(struct rpc *r, uint64_t now);
void rpc__out_shutdown(struct rpc *r);
void rpc__req_timer_cb(uv_timer_t *t);

/* raft.c: a completed Raft handshake; takes the handle (hands it to libraft or closes it). */
void rpc__raft_accept(struct rpc *r, uv_tcp_t *tcp, uint64_t id, const char *address);
void rpc__raft_sweep(struct rpc *r, uint64_t now);
void rpc__raft_detach(struct rpc *r);

/* TCP_NODELAY, keepalive and a user timeout on a connected socket (best effort). */
void rpc__tune_socket(uv_tcp_t *tcp);

/* Parses "ip:port" / "[ip]:port". Returns 0 or CC_EINVAL. */
int rpc__parse_addr(const char *addr, struct sockaddr_storage *ss);

#endif
