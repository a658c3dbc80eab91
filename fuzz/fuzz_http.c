/* fuzz_http.c -- libFuzzer target for the HTTP request parser (src/http/parser.c).
 *
 * The first input byte seeds how the rest is cut into pieces, so the same request is also
 * tried split at every kind of boundary (inside a header name, a chunk size, a CRLF), the way
 * TCP delivers it. Every completed request is read back whole (headers, parameters, body,
 * the cleaned path) so ASan sees any pointer that leaves its allocation. Small limits make
 * the 413/431 paths reachable. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http/parser.h"
#include "http/query.h"

static size_t sink;

static void touch(const char *s)
{
  sink += strlen(s);
}

static void check_msg(const struct http_msg *m)
{
  touch(m->method_name);
  touch(m->path);
  touch(m->raw_query);
  for (size_t i = 0; i < m->nheaders; i++) {
    touch(m->headers[i].name);
    touch(m->headers[i].value);
  }
  for (size_t i = 0; i < m->nparams; i++) {
    touch(m->params[i].name);
    touch(m->params[i].value);
  }
  if (m->body_len) sink += m->body[0] + m->body[m->body_len - 1] + m->body[m->body_len];
  if (http_msg_header(m, "host")) sink++;
  struct buf clean = BUF_INIT;
  http__path_clean(m->path, &clean);
  sink += clean.len;
  buf_free(&clean);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1) return 0;
  uint32_t seed = data[0] * 2654435761u + 1;
  const char *in = (const char *)data + 1;
  size_t len = size - 1;

  struct http_parser p;
  http_parser_init(&p, 4096, 65536);
  size_t pos = 0;
  while (pos < len) {
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    size_t piece = (seed & 3) == 0 ? len - pos : 1 + seed % 64;
    if (piece > len - pos) piece = len - pos;
    size_t off = 0;
    while (off < piece) {
      size_t used;
      enum http_parse_result r = http_parser_feed(&p, in + pos + off, piece - off, &used);
      off += used;
      (void)http_parser_take_continue(&p);
      if (r == HTTP_PARSE_ERROR) {
        const char *msg;
        int status = http_parser_error(&p, &msg);
        if (status < 400 || status > 505 || !msg) __builtin_trap();
        goto done;
      }
      if (r == HTTP_PARSE_DONE) {
        struct http_msg *m = http_parser_take(&p);
        if (!m) __builtin_trap();
        check_msg(m);
        http_msg_free(m);
      } else if (off != piece) {
        __builtin_trap(); /* AGAIN must consume everything */
      }
    }
    pos += piece;
  }
done:
  http_parser_free(&p);
  return 0;
}
