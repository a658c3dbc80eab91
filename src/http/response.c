/* response.c -- status lines, framing headers and the Date header.
 *
 * Go's server always answers "HTTP/1.1" (also to HTTP/1.0 clients), sends Content-Length
 * for bodies it has whole, a Date on every response, "Connection: close" when it will close,
 * and "Connection: keep-alive" to an HTTP/1.0 client that asked to keep the connection. */
#include "http/response.h"

#include <stdio.h>
#include <time.h>

const char *http__reason(int status)
{
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Request Entity Too Large";
  case 415: return "Unsupported Media Type";
  case 417: return "Expectation Failed";
  case 422: return "Unprocessable Entity";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "";
  }
}

bool http__status_bodiless(int status)
{
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/* The IMF-fixdate of the current second, formatted once per second (the loop is single
 * threaded, so a static cache is enough). */
static const char *date_now(void)
{
  static time_t cached_sec = -1;
  static char cached[40];
  time_t now = time(NULL);
  if (now != cached_sec) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(cached, sizeof cached, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached_sec = now;
  }
  return cached;
}

void http__head_write(const struct http__head *h, struct buf *out)
{
  const char *reason = http__reason(h->status);
  if (*reason)
    buf_printf(out, "HTTP/1.1 %03d %s\r\n", h->status, reason);
  else
    buf_printf(out, "HTTP/1.1 %03d status code %d\r\n", h->status, h->status);
  if (h->extra_len) buf_append(out, h->extra, h->extra_len);
  bool bodiless = http__status_bodiless(h->status);
  if (h->content_type && !bodiless) buf_printf(out, "Content-Type: %s\r\n", h->content_type);
  if (!bodiless && h->chunked)
    buf_puts(out, "Transfer-Encoding: chunked\r\n");
  else if (!bodiless)
    buf_printf(out, "Content-Length: %zu\r\n", h->body_len);
  if (!h->has_date) buf_printf(out, "Date: %s\r\n", date_now());
  if (h->close)
    buf_puts(out, "Connection: close\r\n");
  else if (h->keep_alive_10)
    buf_puts(out, "Connection: keep-alive\r\n");
  buf_puts(out, "\r\n");
}
