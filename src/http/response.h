/* response.h -- HTTP/1.1 response heads (internal to src/http/): status line with the
 * standard reason phrase, framing headers and a cached Date, in the form Go's net/http
 * writes them. */
#ifndef CONCORD_HTTP_RESPONSE_H
#define CONCORD_HTTP_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

/* The reason phrase for a status ("Not Found"), or "" for codes without one. */
const char *http__reason(int status);
/* True for statuses that never carry a body or a Content-Length (1xx, 204, 304). */
bool http__status_bodiless(int status);

struct http__head {
  int status;
  const char *content_type; /* NULL: none */
  const char *extra;        /* handler headers, each "Name: value\r\n" (may be NULL) */
  size_t extra_len;
  size_t body_len;
  bool has_date;            /* the handler set Date itself */
  bool chunked;             /* Transfer-Encoding: chunked instead of Content-Length */
  bool close;               /* add "Connection: close" */
  bool keep_alive_10;       /* HTTP/1.0 client asked for keep-alive: confirm it */
};

/* Appends the status line, headers and the blank line to out. */
void http__head_write(const struct http__head *h, struct buf *out);

#endif
