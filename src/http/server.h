/* server.h -- the HTTP/1.1 server under Consul's API: llhttp parsing, keep-alive, pipelining
 * (one request in flight per connection, answered in order), chunked request bodies, size
 * limits, idle and slow-client timeouts, a connection limit, and asynchronous handlers.
 *
 * A handler gets a struct http_request and must eventually answer it exactly once with one of
 * the http_respond* calls, either before returning or later (after a Raft commit, or when a
 * blocking query wakes). If the client hangs up first (or the server closes), the request's
 * cancel callback runs and the request is freed: the handler must then forget it and never
 * answer it. A request without a cancel callback is instead kept until the handler answers
 * it, and that answer is dropped; so a handler that parks a request should set one.
 *
 * Everything runs on the one libuv loop given to http_server_new; nothing here is thread-safe. */
#ifndef CONCORD_HTTP_SERVER_H
#define CONCORD_HTTP_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lib/buf.h"

struct http_server;
struct http_request;

enum http_method {
  HTTP_M_GET = 1 << 0,
  HTTP_M_HEAD = 1 << 1,
  HTTP_M_PUT = 1 << 2,
  HTTP_M_POST = 1 << 3,
  HTTP_M_DELETE = 1 << 4,
  HTTP_M_OPTIONS = 1 << 5,
  HTTP_M_PATCH = 1 << 6,
  HTTP_M_OTHER = 1 << 7,
};
#define HTTP_M_ANY 0xff

typedef void (*http_handler_fn)(struct http_request *req, void *arg);

struct http_server_config {
  size_t max_header_bytes;    /* request line + headers; over it: 431 (Go: 1 MiB) */
  size_t max_body_bytes;      /* over it: 413 */
  const char *big_body_path;  /* requests for this path may carry big_body_bytes (NULL: none) */
  size_t big_body_bytes;
  unsigned max_connections;   /* over it: new connections are closed at once */
  unsigned idle_timeout_ms;   /* keep-alive connection with no request in progress */
  unsigned read_timeout_ms;   /* a request's headers and body must arrive within this */
};
/* Go's and Consul's values: 1 MiB of headers, 1 MiB of body (the agent raises it to fit its
 * own limits), 10000 connections, 90 s idle, 30 s to receive a request. A zero timeout is off. */
void http_server_config_defaults(struct http_server_config *cfg);

struct http_server *http_server_new(uv_loop_t *loop, const struct http_server_config *cfg);
/* Listens on ip:port (IPv4 or IPv6 text). May be called for several addresses. Returns 0 or a
 * negative libuv error code, with a sentence in errbuf. Also raises the soft open-file limit
 * to the hard one and ignores SIGPIPE (if it has no handler), both process-wide. */
int http_server_listen(struct http_server *s, const char *ip, int port, char *errbuf,
                       size_t errlen);
/* Closes listeners and connections (cancelling parked requests); cb runs when all handles
 * are closed and the server is freed. */
void http_server_close(struct http_server *s, void (*cb)(void *arg), void *arg);
/* The local port of the first listener (useful after listening on port 0), or -1. */
int http_server_port(const struct http_server *s);

/* ---- Routing ---- */

/* Adds a route (path copied; the same path again replaces the route). A path ending in '/'
 * matches as a prefix and the rest of the path is the request's `tail` (for "/v1/kv/" and
 * "/v1/kv/a/b", tail "a/b"); otherwise it must match exactly. The longest matching path wins.
 * As in Consul (Go's ServeMux plus its endpoint wrapper):
 *  - a path that matches nothing gets 404 with an empty body;
 *  - a method not in `methods` gets 405 "method PATCH not allowed" with an Allow header
 *    ("OPTIONS,GET,PUT"), except OPTIONS, which gets 200 with that Allow header, unless the
 *    route lists HTTP_M_OPTIONS itself (HEAD is not implied by GET: Consul answers it 405);
 *  - a path that is not clean ("/v1//kv", "/a/../b") gets 301 to the clean path, and a path
 *    naming only a prefix route without its slash ("/v1/kv") gets 301 to "/v1/kv/". */
void http_server_route(struct http_server *s, unsigned methods, const char *path,
                       http_handler_fn fn, void *arg);

/* ---- The request ---- */

struct http_request {
  enum http_method method;
  const char *method_name; /* "GET", ... */
  const char *path;        /* percent-decoded, NUL-terminated, without the query string */
  const char *tail;        /* the part of path after a prefix route ("" for exact routes) */
  const char *raw_query;   /* the undecoded query string without '?', "" if none */
  const uint8_t *body;     /* the complete (de-chunked) body, NUL-terminated; "" when none */
  size_t body_len;
  void *data;              /* free for the handler's use */
};

/* A query parameter's percent-decoded value: "" if present without a value (?recurse), NULL
 * if absent. When repeated, the first. The string lives as long as the request. Parameters
 * are split as Go's url.ParseQuery does ('+' is a space; a pair with a bad escape is left
 * out; a request with such a pair never reaches a handler: Consul answers it with 500). */
const char *http_query(const struct http_request *req, const char *name);
bool http_query_has(const struct http_request *req, const char *name);
/* Every value of a repeated parameter (?tag=a&tag=b); returns how many, fills up to max. */
size_t http_query_all(const struct http_request *req, const char *name, const char **out,
                      size_t max);
/* A request header's value (case-insensitive name), or NULL. */
const char *http_header(const struct http_request *req, const char *name);
/* The peer's address as text ("127.0.0.1"). */
const char *http_remote_addr(const struct http_request *req);

/* Called if the client goes away before the request is answered. */
typedef void (*http_cancel_fn)(struct http_request *req, void *arg);
void http_request_on_cancel(struct http_request *req, http_cancel_fn fn, void *arg);

/* ---- Answering ---- */

/* Adds a response header (both strings copied; CR and LF in the value become spaces). Call
 * before http_respond*. Content-Type set here overrides the one given to http_respond;
 * Content-Length, Transfer-Encoding and Connection are the server's and are ignored. */
void http_set_header(struct http_request *req, const char *name, const char *value);
/* Answers with the given status, Content-Type (NULL: none) and body (copied). Frees the
 * request; the handler must not touch it again. A HEAD request gets the headers only. */
void http_respond(struct http_request *req, int status, const char *content_type,
                  const void *body, size_t len);
/* Answers with a buffer's contents, taking ownership of the buffer's memory (no copy). */
void http_respond_buf(struct http_request *req, int status, const char *content_type,
                      struct buf *body);
/* Answers with JSON (Content-Type application/json), indented as Go's json.MarshalIndent with
 * 4 spaces plus a newline when the request has ?pretty, compact without a newline otherwise,
 * with Go's escaping and number forms (see http/json.h). Takes the reference to j. */
void http_respond_json(struct http_request *req, int status, json_t *j);
/* Answers with a plain-text error message as Consul does: Content-Type "text/plain;
 * charset=utf-8" and the message without a trailing newline (Consul's fmt.Fprint(resp, err)). */
void http_respond_error(struct http_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- Streaming (chunked) answers ---- */

/* Starts a streamed answer (GET /v1/agent/monitor): sends the status line and headers with
 * Transfer-Encoding: chunked now; the body follows in http_stream_write calls until
 * http_stream_end. The request stays in flight (its cancel callback runs if the client hangs
 * up, and the stream must then be forgotten), and the connection ends after the stream.
 * Returns 0; CC_EINVAL for an in-process (injected) request, which cannot stream (the
 * request is then still to be answered normally); or CC_EIO when the connection failed at
 * once (the cancel callback has then run inside this call and req is freed). */
int http_stream_start(struct http_request *req, int status, const char *content_type);
/* Sends one chunk (copied; len 0 does nothing). Never refuses: the caller keeps the queue
 * short with http_stream_queued. Returns 0, or CC_EIO when the connection failed, in
 * which case the cancel callback has already run (inside this call) and req is freed. */
int http_stream_write(struct http_request *req, const void *data, size_t len);
/* Bytes handed to http_stream_write that the socket has not taken yet. */
size_t http_stream_queued(const struct http_request *req);
/* Ends the stream (the last chunk) and frees the request; the connection then closes. */
void http_stream_end(struct http_request *req);

/* Called when a routed request is answered (or starts streaming): its method, the route's
 * path ("/v1/kv/"; NULL when no route matched), the status, and the time since it was
 * parsed. For metrics; must be cheap. One observer per server (NULL removes it). */
typedef void (*http_observer_fn)(void *arg, enum http_method method, const char *route,
                                 int status, uint64_t elapsed_ns);
void http_server_set_observer(struct http_server *s, http_observer_fn fn, void *arg);

/* ---- In-process requests and forwarding ---- */

/* Every header of a request, in arrival order (names as sent). */
size_t http_header_count(const struct http_request *req);
void http_header_at(const struct http_request *req, size_t i, const char **name,
                    const char **value);

/* Runs before a routed request's handler (after the 404/405/redirect checks). Returning true
 * means the hook took the request and will answer it (the agent forwards requests that a
 * server, or the Raft leader, must serve); false lets the route's handler run. */
typedef bool (*http_dispatch_hook_fn)(struct http_request *req, void *arg);
void http_server_set_dispatch_hook(struct http_server *s, http_dispatch_hook_fn fn, void *arg);

/* The answer to an injected request. status 0: no answer (the server closed). Otherwise
 * content_type (NULL when the handler set Content-Type among the headers), the handler's
 * headers as "Name: value\r\n" lines (lent), and the body, whose ownership passes to the
 * callee (malloc'd; NULL when body_len is 0). */
typedef void (*http_inject_done_fn)(void *arg, int status, const char *content_type,
                                    const char *headers, size_t headers_len, char *body,
                                    size_t body_len);
struct http_injected;
/* Serves a complete HTTP/1.1 request given as bytes exactly as if it had arrived on a
 * connection from `peer` (an IP text): same routes, limits and handlers (RPC forwarding from
 * other agents). Returns 0 and *out (may be NULL), with done called exactly once later (or
 * before returning), unless cancelled; or CC_EINVAL (malformed), CC_ETOOBIG (incomplete or
 * over the limits), CC_ESHUTDOWN, without calling done. */
int http_server_inject(struct http_server *s, const char *raw, size_t len, const char *peer,
                       http_inject_done_fn done, void *arg, struct http_injected **out);
/* The caller no longer wants the answer: the handler's cancel callback runs; done is not
 * called. Only before done has run (the request is freed after done). */
void http_injected_cancel(struct http_injected *h);

/* Counters for /v1/agent/self Stats and tests. */
struct http_server_stats {
  uint64_t connections_open;
  uint64_t connections_total;
  uint64_t requests_total;
  uint64_t requests_in_flight;
};
void http_server_stats(const struct http_server *s, struct http_server_stats *out);

#endif
