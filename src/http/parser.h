/* parser.h -- a transport-free HTTP/1.1 request assembler over llhttp.
 *
 * Bytes go in (in any split); complete requests come out one at a time, each in a single
 * allocation holding the method, the percent-decoded path, the raw query, the decoded query
 * parameters, the headers and the de-chunked body. Malformed input yields the HTTP status the
 * server should answer with (400, 408, 413, 417, 431, 501) and a short message; the parser is
 * then dead and the connection must close. No sockets, no clocks: the fuzzer drives it. */
#ifndef CONCORD_HTTP_PARSER_H
#define CONCORD_HTTP_PARSER_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/server.h"
#include "lib/buf.h"

/* A name/value pair; both NUL-terminated and owned by the message. */
struct http_kv {
  const char *name;
  const char *value;
};

/* One complete request. Everything except `body` lives in the same allocation as the struct;
 * free it with http_msg_free. */
struct http_msg {
  enum http_method method;
  const char *method_name; /* static string from llhttp ("GET", "PROPFIND", ...) */
  const char *path;        /* percent-decoded, without the query string */
  const char *raw_query;   /* undecoded, without '?'; "" if none */
  uint8_t *body;           /* NUL-terminated; "" (static) when body_len is 0 */
  size_t body_len;
  size_t nheaders;
  const struct http_kv *headers; /* in arrival order, names as sent */
  size_t nparams;
  const struct http_kv *params;  /* decoded query parameters, in order */
  uint8_t http_major, http_minor;
  bool keep_alive;     /* another request may follow on this connection */
  bool query_invalid;  /* the query had a bad escape or a ';' (Go's ParseQuery error) */
  bool options_star;   /* "OPTIONS * HTTP/1.1" */
};

void http_msg_free(struct http_msg *m);
/* The first header with this name (case-insensitive), or NULL. */
const char *http_msg_header(const struct http_msg *m, const char *name);

struct http_parser {
  llhttp_t ll;
  size_t max_header_bytes;
  size_t max_body_bytes; /* for the request being parsed */
  size_t base_body_bytes; /* what http_parser_init was given */
  const char *big_path;  /* a path whose requests may carry big_body_bytes instead */
  size_t big_body_bytes;
  /* Scratch for the message being assembled: `head` holds NUL-terminated strings (the URL,
   * then header names and values), `kv` their offsets. Freed after each message so an idle
   * connection holds nothing here. */
  struct buf head;
  struct buf kv; /* array of struct { uint32_t name, value; } offsets into head */
  struct buf body;
  size_t header_bytes; /* counted against max_header_bytes */
  uint32_t path_off, query_off; /* offsets of the decoded path and raw query in head */
  uint8_t state;       /* where the assembler is; see parser.c */
  bool started;        /* bytes of a request have arrived and it is not complete */
  bool paused;         /* llhttp stopped after a complete message; resume before feeding */
  bool want_continue;  /* the client waits for "100 Continue" (Expect: 100-continue) */
  bool query_invalid, options_star;
  int err_status;      /* set once the parser has failed */
  const char *err_msg;
  struct http_msg *done; /* a complete message waiting for http_parser_take */
};

enum http_parse_result {
  HTTP_PARSE_AGAIN = 0, /* all bytes consumed; the request is not complete yet */
  HTTP_PARSE_DONE = 1,  /* a request is complete: take it; bytes after it were not consumed */
  HTTP_PARSE_ERROR = 2, /* see http_parser_error; the connection must be closed */
};

void http_parser_init(struct http_parser *p, size_t max_header_bytes, size_t max_body_bytes);
/* Requests for exactly `path` (decoded, without the query) may carry up to max bytes of body
 * (a snapshot archive is far above the KV limit). path must outlive the parser. */
void http_parser_set_big_body(struct http_parser *p, const char *path, size_t max);
/* Frees the scratch memory and any message not yet taken. */
void http_parser_free(struct http_parser *p);
/* Feeds len bytes; sets *consumed to how many were used (all of them unless a request
 * completed or an error occurred). After HTTP_PARSE_DONE, call http_parser_take before
 * feeding the rest. */
enum http_parse_result http_parser_feed(struct http_parser *p, const char *data, size_t len,
                                        size_t *consumed);
/* The completed request; the caller owns it (http_msg_free). NULL if none. */
struct http_msg *http_parser_take(struct http_parser *p);
/* The status to answer after HTTP_PARSE_ERROR, and a short message (static). */
int http_parser_error(const struct http_parser *p, const char **msg);
/* True once per request whose headers asked for "Expect: 100-continue" and whose body has
 * yet to arrive: the server should write "HTTP/1.1 100 Continue" now. */
bool http_parser_take_continue(struct http_parser *p);
/* True while a request is partially received (for the read timeout). */
static inline bool http_parser_started(const struct http_parser *p) { return p->started; }

#endif
