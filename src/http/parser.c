/* parser.c -- assembles complete HTTP/1.1 requests from llhttp's callbacks.
 *
 * llhttp hands over spans of the input as it scans (a header name may arrive in several
 * pieces when the input is split), so the pieces are copied into one scratch buffer (`head`)
 * as NUL-terminated strings with their offsets kept aside (`kv`). When the message is complete
 * the scratch is copied into a single exact-size allocation with the struct and the pointer
 * arrays, and the scratch is freed: a connection parked on a blocking query then holds one
 * small block for its request and nothing for the parser.
 *
 * The parser stops (llhttp's pause) after every complete request, so the server can answer
 * pipelined requests one at a time and keep the rest of the bytes for later.
 *
 * The checks Go's net/http server makes before a handler runs are made here too, with the
 * same statuses: a missing or repeated Host on HTTP/1.1 (400), a Transfer-Encoding other than
 * "chunked" (501), an Expect other than 100-continue (417), a major version other than 1
 * (505), headers over the limit (431). A body over the limit gets 413, and a declared
 * Content-Length over it is refused before any of the body is read. */
#include "http/parser.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/query.h"
#include "lib/alloc.h"

/* Where the assembler is within a message. */
enum {
  ST_IDLE,       /* between messages */
  ST_URL,        /* collecting the request target */
  ST_FIELD,      /* inside a header name */
  ST_VALUE,      /* inside a header value (possibly empty so far) */
  ST_BODY,       /* headers done; trailers after a chunked body are counted, not kept */
};

/* Go has no header-count limit besides the byte limit; this cap bounds the offset array for
 * inputs made of very many tiny headers and is far above what any client sends. */
#define MAX_HEADERS 1024
/* Bytes counted per header line on top of its name and value (": " and CRLF), so many empty
 * headers still use up the byte limit. */
#define HEADER_LINE_OVERHEAD 4
/* Offsets into `head` are 32-bit; the header limit is capped well below that. */
#define MAX_HEADER_LIMIT ((size_t)64 << 20)

struct off {
  uint32_t name, value;
};

static struct http_parser *P(llhttp_t *ll) { return (struct http_parser *)ll->data; }

static int fail(struct http_parser *p, int status, const char *msg)
{
  if (!p->err_status) {
    p->err_status = status;
    p->err_msg = msg;
  }
  return -1;
}

static int count_header_bytes(struct http_parser *p, size_t n)
{
  p->header_bytes += n;
  if (p->header_bytes > p->max_header_bytes)
    return fail(p, 431, "Request Header Fields Too Large");
  return 0;
}

static void scratch_free(struct http_parser *p)
{
  buf_free(&p->head);
  buf_free(&p->kv);
  buf_free(&p->body);
}

static size_t kv_count(const struct http_parser *p) { return p->kv.len / sizeof(struct off); }

static struct off *kv_last(struct http_parser *p)
{
  return (struct off *)(p->kv.data + p->kv.len - sizeof(struct off));
}

static void kv_push(struct http_parser *p, uint32_t name, uint32_t value)
{
  struct off o = {name, value};
  buf_append(&p->kv, &o, sizeof o);
}

static int on_message_begin(llhttp_t *ll)
{
  struct http_parser *p = P(ll);
  scratch_free(p);
  p->header_bytes = 0;
  p->state = ST_URL;
  p->started = true;
  p->want_continue = false;
  p->query_invalid = false;
  p->options_star = false;
  return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
  struct http_parser *p = P(ll);
  if (count_header_bytes(p, len) < 0) return -1;
  buf_append(&p->head, at, len);
  return 0;
}

static int on_url_complete(llhttp_t *ll)
{
  struct http_parser *p = P(ll);
  buf_putc(&p->head, '\0'); /* the URL is the string at offset 0 */
  return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
  struct http_parser *p = P(ll);
  size_t extra = p->state == ST_FIELD ? 0 : HEADER_LINE_OVERHEAD;
  if (count_header_bytes(p, len + extra) < 0) return -1;
  if (p->state == ST_BODY) return 0; /* a trailer: Go keeps them apart; no handler reads them */
  if (p->state != ST_FIELD) {
    if (kv_count(p) >= MAX_HEADERS) return fail(p, 431, "Request Header Fields Too Large");
    kv_push(p, (uint32_t)p->head.len, 0);
    p->state = ST_FIELD;
  }
  buf_append(&p->head, at, len);
  return 0;
}

static bool is_token_char(unsigned char c)
{
  return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

static int on_header_field_complete(llhttp_t *ll)
{
  struct http_parser *p = P(ll);
  if (p->state == ST_BODY) return 0;
  /* llhttp's loose mode lets "Bad Header" through; Go refuses names that are not tokens. */
  for (size_t i = kv_last(p)->name; i < p->head.len; i++)
    if (!is_token_char((unsigned char)p->head.data[i]))
      return fail(p, 400, "Bad Request: invalid header name");
  buf_putc(&p->head, '\0');
  kv_last(p)->value = (uint32_t)p->head.len;
  p->state = ST_VALUE;
  return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
  struct http_parser *p = P(ll);
  if (count_header_bytes(p, len) < 0) return -1;
  if (p->state == ST_BODY) return 0;
  buf_append(&p->head, at, len);
  return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
  struct http_parser *p = P(ll);
  if (p->state == ST_BODY) return 0;
  /* llhttp drops leading whitespace but keeps trailing; Go trims both. */
  size_t start = kv_last(p)->value;
  while (p->head.len > start &&
         (p->head.data[p->head.len - 1] == ' ' || p->head.data[p->head.len - 1] == '\t'))
    p->head.len--;
  buf_putc(&p->head, '\0');
  p->state = ST_IDLE; /* the next field starts a new header */
  return 0;
}

/* The first header with this name in the scratch, or NULL; *count gets how many there are. */
static const char *scratch_header(const struct http_parser *p, const char *name, int *count)
{
  const struct off *o = (const struct off *)p->kv.data;
  const char *found = NULL;
  int n = 0;
  for (size_t i = 0; i < kv_count(p); i++) {
    if (strcasecmp(p->head.data + o[i].name, name) == 0) {
      if (!found) found = p->head.data + o[i].value;
      n++;
    }
  }
  if (count) *count = n;
  return found;
}

static bool is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

/* Splits the request target (the string at offset 0 of head) into a decoded path and a raw
 * query, both appended to head. Returns 0 or fails with 400. */
static int split_url(struct http_parser *p)
{
  if (!p->head.data) return fail(p, 400, "Bad Request: missing request URI");
  size_t url_len = strlen(p->head.data);
  const char *url = p->head.data;
  size_t start = 0;
  if (url_len == 1 && url[0] == '*') {
    p->options_star = true;
  } else if (url[0] != '/') {
    /* absolute-form (proxies send it; RFC 7230 5.3.2 says servers must accept it) */
    const char *sep = strstr(url, "://");
    if (!sep || (size_t)(sep - url) > 16) return fail(p, 400, "Bad Request: invalid request URI");
    const char *slash = strchr(sep + 3, '/');
    const char *q = strchr(sep + 3, '?');
    if (slash && q && q < slash) slash = NULL;
    start = slash ? (size_t)(slash - url) : (q ? (size_t)(q - url) : url_len);
  }
  const char *qmark = memchr(url + start, '?', url_len - start);
  size_t path_end = qmark ? (size_t)(qmark - url) : url_len;

  /* The appends below may move head, so work with offsets from here on. */
  struct buf path = BUF_INIT;
  if (p->options_star) {
    buf_putc(&path, '*');
  } else if (path_end == start) {
    buf_putc(&path, '/'); /* "http://host" and "http://host?x" mean "/" */
  } else if (http__pct_decode(p->head.data + start, path_end - start, false, &path) < 0) {
    buf_free(&path);
    return fail(p, 400, "Bad Request: invalid URL escape");
  }
  /* Consul wraps its mux in cleanhttp's PrintablePathCheckHandler, which refuses paths with
   * unprintable characters with a 400; a NUL would also cut our C string short. */
  for (size_t i = 0; i < path.len; i++) {
    if (is_ctl((unsigned char)path.data[i])) {
      buf_free(&path);
      return fail(p, 400, "Bad Request: unprintable characters in path");
    }
  }
  size_t qstart = qmark ? path_end + 1 : url_len;
  p->path_off = (uint32_t)p->head.len;
  buf_append(&p->head, path.data, path.len);
  buf_putc(&p->head, '\0');
  buf_free(&path);
  p->query_off = (uint32_t)p->head.len;
  buf_reserve(&p->head, url_len - qstart); /* so the source below stays where it is */
  buf_append(&p->head, p->head.data + qstart, url_len - qstart);
  buf_putc(&p->head, '\0');
  return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
  struct http_parser *p = P(ll);
  p->state = ST_BODY;
  /* Concord speaks plain HTTP/1.1 only: an Upgrade request is answered as an ordinary one
   * (as Go does), so the bytes after it are parsed as HTTP again. */
  ll->upgrade = 0;

  if (ll->http_major != 1) return fail(p, 505, "HTTP Version Not Supported");
  int nhost = 0;
  scratch_header(p, "Host", &nhost);
  if (nhost > 1) return fail(p, 400, "Bad Request: too many Host headers");
  if (nhost == 0 && ll->http_minor >= 1 && ll->method != HTTP_CONNECT)
    return fail(p, 400, "Bad Request: missing required Host header");

  const char *te = scratch_header(p, "Transfer-Encoding", NULL);
  if (te && strcasecmp(te, "chunked") != 0)
    return fail(p, 501, "Not Implemented: unsupported transfer encoding");

  if (split_url(p) < 0) return -1;
  p->max_body_bytes = p->base_body_bytes;
  if (p->big_path && strcmp(p->head.data + p->path_off, p->big_path) == 0)
    p->max_body_bytes = p->big_body_bytes;

  bool has_body = (ll->flags & F_CHUNKED) || ll->content_length > 0;
  if ((ll->flags & F_CONTENT_LENGTH) && !(ll->flags & F_CHUNKED) &&
      ll->content_length > p->max_body_bytes)
    return fail(p, 413, "Request Entity Too Large");

  const char *expect = scratch_header(p, "Expect", NULL);
  if (expect) {
    if (strcasecmp(expect, "100-continue") != 0) return fail(p, 417, "Expectation Failed");
    /* HTTP/1.0 clients don't know 1xx responses (RFC 7231 5.1.1). */
    if (has_body && ll->http_minor >= 1) p->want_continue = true;
  }
  if ((ll->flags & F_CONTENT_LENGTH) && !(ll->flags & F_CHUNKED) && ll->content_length > 0)
    buf_reserve(&p->body, (size_t)ll->content_length);
  return 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
  struct http_parser *p = P(ll);
  p->want_continue = false; /* the client did not wait for us */
  if (len > p->max_body_bytes - p->body.len) return fail(p, 413, "Request Entity Too Large");
  buf_append(&p->body, at, len);
  return 0;
}

static void add_param(void *arg, const char *name, size_t name_len, const char *value,
                      size_t value_len)
{
  struct http_parser *p = arg;
  uint32_t n = (uint32_t)p->head.len;
  buf_append(&p->head, name, name_len);
  buf_putc(&p->head, '\0');
  uint32_t v = (uint32_t)p->head.len;
  buf_append(&p->head, value, value_len);
  buf_putc(&p->head, '\0');
  kv_push(p, n, v);
}

static enum http_method method_bit(uint8_t m)
{
  switch (m) {
  case HTTP_GET: return HTTP_M_GET;
  case HTTP_HEAD: return HTTP_M_HEAD;
  case HTTP_PUT: return HTTP_M_PUT;
  case HTTP_POST: return HTTP_M_POST;
  case HTTP_DELETE: return HTTP_M_DELETE;
  case HTTP_OPTIONS: return HTTP_M_OPTIONS;
  case HTTP_PATCH: return HTTP_M_PATCH;
  default: return HTTP_M_OTHER;
  }
}

/* Copies the scratch into one allocation: the struct, the pair array, then the strings. */
static struct http_msg *build_msg(struct http_parser *p, size_t nheaders)
{
  size_t npairs = kv_count(p);
  size_t size = sizeof(struct http_msg) + npairs * sizeof(struct http_kv) + p->head.len;
  struct http_msg *m = xmalloc(size);
  struct http_kv *kv = (struct http_kv *)(m + 1);
  char *strings = (char *)(kv + npairs);
  memcpy(strings, p->head.data, p->head.len);
  const struct off *o = (const struct off *)p->kv.data;
  for (size_t i = 0; i < npairs; i++) {
    kv[i].name = strings + o[i].name;
    kv[i].value = strings + o[i].value;
  }
  m->method = method_bit(p->ll.method);
  m->method_name = llhttp_method_name((llhttp_method_t)p->ll.method);
  m->path = strings + p->path_off;
  m->raw_query = strings + p->query_off;
  m->nheaders = nheaders;
  m->headers = kv;
  m->nparams = npairs - nheaders;
  m->params = kv + nheaders;
  m->http_major = p->ll.http_major;
  m->http_minor = p->ll.http_minor;
  m->keep_alive = llhttp_should_keep_alive(&p->ll) != 0;
  m->query_invalid = p->query_invalid;
  m->options_star = p->options_star;
  if (p->body.len) {
    m->body = (uint8_t *)buf_steal(&p->body, &m->body_len);
  } else {
    m->body = (uint8_t *)"";
    m->body_len = 0;
  }
  return m;
}

static int on_message_complete(llhttp_t *ll)
{
  struct http_parser *p = P(ll);
  size_t nheaders = kv_count(p);
  /* add_param appends to head, which may move it: parse a copy of the query. */
  size_t qlen = strlen(p->head.data + p->query_off);
  if (qlen) {
    char *q = xmemdup(p->head.data + p->query_off, qlen);
    if (http__query_parse(q, qlen, add_param, p) < 0) p->query_invalid = true;
    free(q);
  }
  p->done = build_msg(p, nheaders);
  scratch_free(p);
  p->state = ST_IDLE;
  p->started = false;
  p->want_continue = false;
  return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_url_complete = on_url_complete,
  .on_header_field = on_header_field,
  .on_header_field_complete = on_header_field_complete,
  .on_header_value = on_header_value,
  .on_header_value_complete = on_header_value_complete,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
};

void http_parser_init(struct http_parser *p, size_t max_header_bytes, size_t max_body_bytes)
{
  memset(p, 0, sizeof *p);
  llhttp_init(&p->ll, HTTP_REQUEST, &settings);
  p->ll.data = p;
  p->max_header_bytes = max_header_bytes < MAX_HEADER_LIMIT ? max_header_bytes : MAX_HEADER_LIMIT;
  p->max_body_bytes = max_body_bytes;
  p->base_body_bytes = max_body_bytes;
}

void http_parser_set_big_body(struct http_parser *p, const char *path, size_t max)
{
  p->big_path = path;
  p->big_body_bytes = max;
}

void http_parser_free(struct http_parser *p)
{
  scratch_free(p);
  if (p->done) http_msg_free(p->done);
  p->done = NULL;
}

static int status_for(llhttp_errno_t err, const char **msg)
{
  switch (err) {
  case HPE_INVALID_METHOD:
    *msg = "Not Implemented: unknown method";
    return 501;
  case HPE_INVALID_TRANSFER_ENCODING:
    *msg = "Not Implemented: unsupported transfer encoding";
    return 501;
  case HPE_INVALID_CHUNK_SIZE:
    *msg = "Bad Request: invalid chunk size";
    return 400;
  case HPE_INVALID_CONTENT_LENGTH:
  case HPE_UNEXPECTED_CONTENT_LENGTH:
    *msg = "Bad Request: invalid Content-Length";
    return 400;
  case HPE_INVALID_URL:
    *msg = "Bad Request: invalid request URI";
    return 400;
  case HPE_INVALID_VERSION:
    *msg = "Bad Request: malformed HTTP version";
    return 400;
  case HPE_INVALID_HEADER_TOKEN:
    *msg = "Bad Request: invalid header";
    return 400;
  case HPE_CLOSED_CONNECTION:
    *msg = "Bad Request: data after Connection: close";
    return 400;
  default:
    *msg = "Bad Request: malformed request";
    return 400;
  }
}

enum http_parse_result http_parser_feed(struct http_parser *p, const char *data, size_t len,
                                        size_t *consumed)
{
  *consumed = 0;
  if (p->err_status) return HTTP_PARSE_ERROR;
  if (p->done) return HTTP_PARSE_DONE;
  if (p->paused) {
    llhttp_resume(&p->ll);
    p->paused = false;
  }
  if (len == 0) return HTTP_PARSE_AGAIN;
  llhttp_errno_t err = llhttp_execute(&p->ll, data, len);
  if (err == HPE_OK) {
    *consumed = len;
    return HTTP_PARSE_AGAIN;
  }
  if (err == HPE_PAUSED && p->done) {
    const char *pos = llhttp_get_error_pos(&p->ll);
    *consumed = pos ? (size_t)(pos - data) : len;
    p->paused = true;
    return HTTP_PARSE_DONE;
  }
  if (!p->err_status) p->err_status = status_for(err, &p->err_msg);
  *consumed = len;
  scratch_free(p);
  p->started = false;
  p->want_continue = false;
  return HTTP_PARSE_ERROR;
}

struct http_msg *http_parser_take(struct http_parser *p)
{
  struct http_msg *m = p->done;
  p->done = NULL;
  return m;
}

int http_parser_error(const struct http_parser *p, const char **msg)
{
  if (msg) *msg = p->err_msg;
  return p->err_status;
}

bool http_parser_take_continue(struct http_parser *p)
{
  bool w = p->want_continue;
  p->want_continue = false;
  return w;
}

void http_msg_free(struct http_msg *m)
{
  if (!m) return;
  if (m->body_len) free(m->body);
  free(m);
}

const char *http_msg_header(const struct http_msg *m, const char *name)
{
  for (size_t i = 0; i < m->nheaders; i++)
    if (strcasecmp(m->headers[i].name, name) == 0) return m->headers[i].value;
  return NULL;
}
