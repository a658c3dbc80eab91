/* h2c.h -- a small HTTP/2 client (cleartext with prior knowledge, or TLS) on libuv, for gRPC
 * health checks (one grpc.health.v1.Health/Check call) and H2PING checks (one PING answered
 * by an ACK).
 *
 * The HTTP/2 framing and HPACK come from libnghttp2; this file adds the one request, the gRPC
 * message framing, the HealthCheckResponse decoding, caps on what is read, a deadline over the
 * whole exchange, and outputs worded as Consul's (which come from grpc-go and Go's http2):
 * "gRPC check 127.0.0.1:9090/svc: success", "gRPC 127.0.0.1:9090 serving status: NOT_SERVING",
 * "rpc error: code = ... desc = ...", "HTTP2 ping was successful", "Failed to dial to ...".
 * With `tls`, the exchange runs over TLS (OpenSSL through memory BIOs, ALPN "h2"), verifying
 * the server against the system's CAs unless `tls_skip_verify`, as Go's crypto/tls does. */
#ifndef CONCORD_LOCAL_H2C_H
#define CONCORD_LOCAL_H2C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lib/buf.h"

/* Caps: bytes read from one connection, and the gRPC response message kept. */
#define LOCAL_H2C_MAX_READ (1u << 20)
#define LOCAL_H2C_MAX_MESSAGE (64u * 1024)

struct local_h2c_req {
  const char *host, *port; /* where to connect (already split) */
  const char *label;   /* the check's target as written, for outputs: "127.0.0.1:9090/svc" */
  const char *service; /* gRPC: HealthCheckRequest.service ("" for the whole server) */
  bool ping;           /* H2PING instead of a gRPC call */
  uint64_t timeout_ms; /* the whole exchange, dial included */
  bool tls;             /* GRPCUseTLS / H2PingUseTLS */
  bool tls_skip_verify; /* TLSSkipVerify */
  const char *tls_server_name; /* TLSServerName; NULL or "": the host */
};

/* passing: the check's raw result (true: passing, false: critical); output lent for the call. */
typedef void (*local_h2c_cb)(void *arg, bool passing, const char *output);

/* Starts the exchange (req only read during the call); cb runs exactly once, from the loop,
 * unless cancelled first. Never NULL. */
struct local_h2c *local__h2c_start(uv_loop_t *loop, const struct local_h2c_req *req,
                                   local_h2c_cb cb, void *arg);
/* cb will not run; the client frees itself once its handles are closed. */
void local__h2c_cancel(struct local_h2c *h);

/* ---- The protocol half, without I/O (the transport above, unit tests and the fuzz target
 * drive it). ---- */
struct local_h2c_sess;

/* authority: "host:port" for the :authority header; label as in the request. Never NULL. */
struct local_h2c_sess *local__h2c_sess_new(const char *authority, const char *label,
                                           const char *service, bool ping);
void local__h2c_sess_free(struct local_h2c_sess *s);
/* Bytes from the server. Returns 0, or -1 once the session cannot go on (the result is then
 * set). At most LOCAL_H2C_MAX_READ bytes are accepted over the session's life. */
int local__h2c_sess_recv(struct local_h2c_sess *s, const uint8_t *data, size_t len);
/* Appends what is to be sent to out. */
void local__h2c_sess_send(struct local_h2c_sess *s, struct buf *out);
/* The peer closed the connection: a result if none yet. */
void local__h2c_sess_eof(struct local_h2c_sess *s);
/* true once the exchange has a result; *output lent until the session is freed. */
bool local__h2c_sess_result(const struct local_h2c_sess *s, bool *passing, const char **output);

/* HealthCheckResponse.status from a protobuf message: 0 and *status set (0 when absent), or
 * -1 when the message is malformed. */
int local__h2c_health_status(const uint8_t *msg, size_t len, int64_t *status);

#endif
