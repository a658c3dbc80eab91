/* rpc.h -- the server port: Raft and RPC on one TCP listener, and the client pool that calls
 * servers over it (Consul's port 8300, agent/pool/conn.go).
 *
 * Every accepted connection says what it is with its first byte: 0x00 for multiplexed RPC
 * frames, 0x01 for a Raft stream that is handed to libraft after a short handshake. RPC
 * frames are a 4-byte big-endian length and one msgpack map (codec.h). Everything runs on
 * the caller's uv loop; nothing blocks it. */
#ifndef CONCORD_RPC_RPC_H
#define CONCORD_RPC_RPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct raft_uv_transport;

struct rpc; /* the server-port listener (optional) + the client pool */

struct rpc_config {
  const char *bind_ip;          /* IPv4/IPv6 literal (copied) */
  int port;                     /* < 0: no listener (client agents only dial out) */
  size_t max_frame;             /* largest frame accepted/sent; default 64 MiB */
  unsigned connect_timeout_ms;  /* default 5000 */
  unsigned idle_timeout_ms;     /* pooled connection with nothing in flight is closed; 120000 */
};
void rpc_config_defaults(struct rpc_config *cfg);

/* Binds and listens now (unless port < 0): errors such as "address in use" come back here
 * as a CC_E* code with a sentence in errbuf. On success *out is the caller's until rpc_stop. */
int rpc_start(uv_loop_t *loop, const struct rpc_config *cfg, struct rpc **out, char *errbuf,
              size_t errlen);
/* Closes the listener and every connection; outstanding client requests complete with
 * CC_ESHUTDOWN, server calls get their cancel callback; cb when every handle is closed (then
 * the rpc is freed). Stop the consensus using the Raft transport first: a transport that
 * outlives its rpc refuses new connections. Call once. */
void rpc_stop(struct rpc *r, void (*cb)(void *arg), void *arg);

/* Raft over the shared port: matches consensus_config's transport_init/transport_close hooks
 * (see src/consensus/consensus.h). arg is the struct rpc. One transport per rpc at a time
 * (a second init before the first is closed fails with RAFT_INVALID). */
int rpc_raft_transport_init(void *arg, struct raft_uv_transport *t);
void rpc_raft_transport_close(void *arg, struct raft_uv_transport *t);

/* ---- server side ---- */
struct rpc_call;
/* body is lent for the handler's duration. */
typedef void (*rpc_handler_fn)(struct rpc_call *call, const uint8_t *body, size_t len,
                               void *arg);
/* Registers (or replaces; fn NULL removes) the handler for a method name (copied). */
void rpc_handle(struct rpc *r, const char *method, rpc_handler_fn fn, void *arg);
/* Answers exactly once (error NULL for success; error and body copied); frees the call. A
 * reply to a caller that went away is dropped. */
void rpc_call_reply(struct rpc_call *call, const char *error, const void *body, size_t len);
const char *rpc_call_peer(const struct rpc_call *call); /* "ip" of the caller */
typedef void (*rpc_cancel_fn)(struct rpc_call *call, void *arg);
/* Runs if the caller cancels or its connection goes away before the reply; the call is then
 * freed after the callback and must not be replied to. Register it from the handler: a call
 * cancelled before any cancel function was set just waits for its reply, which is dropped. */
void rpc_call_on_cancel(struct rpc_call *call, rpc_cancel_fn fn, void *arg);

/* ---- client side: pooled (one connection per address), multiplexed ---- */
struct rpc_req;
/* status 0 with the remote's error string (NULL if none) and body; or CC_ETIMEOUT,
 * CC_ENOCONN (could not connect, or the connection was lost before this request was written:
 * nothing was sent, so any request may be retried elsewhere), CC_EIO (connection lost after
 * the request was written: it may or may not have run; the caller may retry reads),
 * CC_ESHUTDOWN. body/error lent for the callback. Exactly once, never before rpc_request
 * returns. */
typedef void (*rpc_done_fn)(void *arg, int status, const char *error, const uint8_t *body,
                            size_t len);
/* addr is "ip:port" ("[v6]:port" for IPv6); method and body are copied. timeout_ms 0: no
 * deadline. Returns 0, or (cb never called) CC_EINVAL for a bad address or method,
 * CC_ETOOBIG when the frame would exceed max_frame, CC_ENOCONN when the dial fails at once
 * or the connection already has RPC_MAX_INFLIGHT (10,000) requests in flight,
 * CC_ESHUTDOWN after rpc_stop. *handle (if not NULL) is valid until cb runs. */
int rpc_request(struct rpc *r, const char *addr, const char *method, const void *body,
                size_t len, unsigned timeout_ms, rpc_done_fn cb, void *arg,
                struct rpc_req **handle);
/* The callback will not run; the server is told (a cancel frame) so it can drop the work. */
void rpc_request_cancel(struct rpc_req *h);

#endif
