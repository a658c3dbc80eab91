/* httpc.h -- a small asynchronous HTTP/1.1 client on libuv, for HTTP health checks.
 *
 * One request per connection (Consul's check client disables keep-alive), llhttp in response
 * mode, redirects followed as Go's http.Client does (up to 10), a deadline over the whole
 * exchange, and the response body kept to its last `max_body` bytes (Consul reads it into a
 * circular buffer). Errors are worded as Go's net/http words them, since they become the
 * check's output: `Get "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: connection
 * refused`. https URLs run over TLS (local/tls.c): the system trust store, TLSSkipVerify and
 * TLSServerName, with Go's crypto/tls error texts. */
#ifndef CONCORD_LOCAL_HTTPC_H
#define CONCORD_LOCAL_HTTPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct local_httpc;

struct local_httpc_req {
  const char *method;   /* "" or NULL: GET */
  const char *url;
  const json_t *header; /* object: name -> [values]; "Host" sets the Host header; may be NULL */
  const char *body;     /* may be NULL */
  uint64_t timeout_ms;  /* the whole exchange, redirects included */
  size_t max_body;      /* bytes of the body kept (the last ones) */
  bool no_redirects;
  /* A response header to hand back (e.g. "X-Consul-Index" for agent/watches.c), or NULL. */
  const char *capture_header;
  /* https: don't check the certificate (TLSSkipVerify); the name to send as SNI and to verify
   * instead of the URL's host (TLSServerName; NULL or "": the host). */
  bool tls_skip_verify;
  const char *tls_server_name;
};

struct local_httpc_result {
  int status_code;    /* 0 when the request failed */
  const char *status; /* "200 OK" */
  const char *body;   /* NUL-terminated */
  size_t body_len;
  const char *error;  /* Go's error text when status_code is 0 */
  size_t body_total;  /* bytes the body had; more than body_len when it was cut */
  const char *captured_header; /* the value of req.capture_header, NULL when absent */
};

/* Lent for the callback's duration. */
typedef void (*local_httpc_cb)(void *arg, const struct local_httpc_result *res);

/* Starts a request (req is only read during the call). cb runs exactly once, from the loop,
 * unless the request is cancelled first. Never NULL. */
struct local_httpc *local__httpc_start(uv_loop_t *loop, const struct local_httpc_req *req,
                                       local_httpc_cb cb, void *arg);
/* cb will not run; the client frees itself once its handles are closed. */
void local__httpc_cancel(struct local_httpc *h);

#endif
