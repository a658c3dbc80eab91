/* test_http.c -- unit tests of src/http/: the request parser on tricky input, query and path
 * helpers, the router, the Go-compatible JSON writer, and the server over real sockets on
 * 127.0.0.1 (keep-alive, pipelining, 404/405/301, hang-up cancels a parked request,
 * 100-continue, timeouts, the connection limit), ending with uv_loop_close() == 0. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <malloc.h>
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifdef HAVE_ASAN
/* from <sanitizer/allocator_interface.h>, which gcc does not install */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#include "http/json.h"
#include "http/parser.h"
#include "http/query.h"
#include "http/router.h"
#include "http/server.h"
#include "lib/buf.h"

/* ---- parser helpers ---- */

#define MB (1024 * 1024)

struct feed_result {
  struct http_msg *msgs[8];
  int n;
  int status; /* error status, 0 if none */
  const char *errmsg;
  bool saw_continue;
};

/* Feeds input in pieces of `step` bytes (0: all at once), collecting complete messages. */
static void feed(struct http_parser *p, const char *in, size_t len, size_t step,
                 struct feed_result *fr)
{
  memset(fr, 0, sizeof *fr);
  size_t pos = 0;
  while (pos < len) {
    size_t chunk = step ? (len - pos < step ? len - pos : step) : len - pos;
    size_t off = 0;
    while (off < chunk) {
      size_t used;
      enum http_parse_result r = http_parser_feed(p, in + pos + off, chunk - off, &used);
      off += used;
      if (http_parser_take_continue(p)) fr->saw_continue = true;
      if (r == HTTP_PARSE_ERROR) {
        fr->status = http_parser_error(p, &fr->errmsg);
        return;
      }
      if (r == HTTP_PARSE_DONE) {
        assert_true(fr->n < 8);
        fr->msgs[fr->n++] = http_parser_take(p);
      } else {
        assert_int_equal(off, chunk);
      }
    }
    pos += chunk;
  }
}

static void fr_free(struct feed_result *fr)
{
  for (int i = 0; i < fr->n; i++) http_msg_free(fr->msgs[i]);
  fr->n = 0;
}

static const char *param(const struct http_msg *m, const char *name, int nth)
{
  for (size_t i = 0; i < m->nparams; i++)
    if (strcmp(m->params[i].name, name) == 0 && nth-- == 0) return m->params[i].value;
  return NULL;
}

/* ---- parser tests ---- */

static void test_parse_simple(void **state)
{
  struct http_parser p;
  http_parser_init(&p, MB, MB);
  const char *req = "GET /v1/kv/a%20b%2Fc?recurse&index=42&dc=dc%31 HTTP/1.1\r\n"
                    "Host: localhost\r\nX-Consul-Token:   secret  \r\nX-Empty:\r\n"
                    "User-Agent: t\r\nX-Last:\r\n\r\n";
  struct feed_result fr;
  feed(&p, req, strlen(req), 0, &fr);
  assert_int_equal(fr.status, 0);
  assert_int_equal(fr.n, 1);
  struct http_msg *m = fr.msgs[0];
  assert_int_equal(m->method, HTTP_M_GET);
  assert_string_equal(m->method_name, "GET");
  assert_string_equal(m->path, "/v1/kv/a b/c");
  assert_string_equal(m->raw_query, "recurse&index=42&dc=dc%31");
  assert_string_equal(param(m, "recurse", 0), "");
  assert_string_equal(param(m, "index", 0), "42");
  assert_string_equal(param(m, "dc", 0), "dc1");
  assert_null(param(m, "nope", 0));
  assert_int_equal(m->nheaders, 5);
  assert_string_equal(http_msg_header(m, "x-last"), "");
  assert_string_equal(http_msg_header(m, "x-consul-token"), "secret");
  assert_string_equal(http_msg_header(m, "X-EMPTY"), "");
  assert_string_equal(http_msg_header(m, "user-agent"), "t");
  assert_int_equal(m->body_len, 0);
  assert_string_equal((const char *)m->body, "");
  assert_true(m->keep_alive);
  assert_false(m->query_invalid);
  assert_false(http_parser_started(&p));
  fr_free(&fr);
  http_parser_free(&p);
}

static void test_parse_pipelined(void **state)
{
  struct http_parser p;
  http_parser_init(&p, MB, MB);
  const char *req = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                    "PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                    "DELETE /c?cas=3 HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /d HTT"; /* a fourth, incomplete */
  struct feed_result fr;
  feed(&p, req, strlen(req), 0, &fr);
  assert_int_equal(fr.status, 0);
  assert_int_equal(fr.n, 3);
  assert_string_equal(fr.msgs[0]->path, "/a");
  assert_int_equal(fr.msgs[1]->method, HTTP_M_PUT);
  assert_string_equal(fr.msgs[1]->path, "/b");
  assert_int_equal(fr.msgs[1]->body_len, 5);
  assert_memory_equal(fr.msgs[1]->body, "hello", 6); /* NUL-terminated */
  assert_int_equal(fr.msgs[2]->method, HTTP_M_DELETE);
  assert_string_equal(param(fr.msgs[2], "cas", 0), "3");
  assert_true(http_parser_started(&p));
  fr_free(&fr);
  /* the rest of the fourth */
  feed(&p, "P/1.1\r\nHost: x\r\n\r\n", 18, 0, &fr);
  assert_int_equal(fr.n, 1);
  assert_string_equal(fr.msgs[0]->path, "/d");
  fr_free(&fr);
  http_parser_free(&p);
}

static void test_parse_byte_by_byte_chunked(void **state)
{
  const char *req = "POST /v1/txn?x=1 HTTP/1.1\r\n"
                    "Host: x\r\n"
                    "Transfer-Encoding: chunked\r\n"
                    "\r\n"
                    "5;name=value\r\nhello\r\n"
                    "7;flag\r\n, world\r\n"
                    "0\r\n"
                    "X-Trailer: t\r\n"
                    "\r\n"
                    "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
  for (size_t step = 1; step <= 7; step += 3) {
    struct http_parser p;
    http_parser_init(&p, MB, MB);
    struct feed_result fr;
    feed(&p, req, strlen(req), step, &fr);
    if (fr.status) fprintf(stderr, "step %zu: %d %s (%s)\n", step, fr.status, fr.errmsg,
                           llhttp_get_error_reason(&p.ll));
    assert_int_equal(fr.status, 0);
    assert_int_equal(fr.n, 2);
    assert_int_equal(fr.msgs[0]->method, HTTP_M_POST);
    assert_int_equal(fr.msgs[0]->body_len, 12);
    assert_string_equal((const char *)fr.msgs[0]->body, "hello, world");
    assert_null(http_msg_header(fr.msgs[0], "X-Trailer")); /* trailers are not headers */
    assert_string_equal(http_msg_header(fr.msgs[0], "transfer-encoding"), "chunked");
    assert_string_equal(fr.msgs[1]->path, "/next");
    fr_free(&fr);
    http_parser_free(&p);
  }
}

static void expect_error(const char *req, size_t max_header, size_t max_body, int status)
{
  struct http_parser p;
  http_parser_init(&p, max_header, max_body);
  struct feed_result fr;
  feed(&p, req, strlen(req), 0, &fr);
  if (fr.status != status) fprintf(stderr, "request %.40s: status %d (%s)\n", req, fr.status,
                                   fr.errmsg ? fr.errmsg : "");
  assert_int_equal(fr.status, status);
  assert_non_null(fr.errmsg);
  fr_free(&fr);
  /* a dead parser stays dead */
  size_t used;
  assert_int_equal(http_parser_feed(&p, "GET / HTTP/1.1\r\n\r\n", 18, &used), HTTP_PARSE_ERROR);
  http_parser_free(&p);
}

static void test_parse_limits(void **state)
{
  /* headers over the limit: 431, whether in the URL or in the headers */
  struct buf big = BUF_INIT;
  buf_puts(&big, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
  for (int i = 0; i < 2000; i++) buf_putc(&big, 'a');
  buf_puts(&big, "\r\n\r\n");
  expect_error(big.data, 1024, MB, 431);
  buf_reset(&big);
  buf_puts(&big, "GET /");
  for (int i = 0; i < 2000; i++) buf_putc(&big, 'a');
  buf_puts(&big, " HTTP/1.1\r\nHost: x\r\n\r\n");
  expect_error(big.data, 1024, MB, 431);
  /* many tiny headers */
  buf_reset(&big);
  buf_puts(&big, "GET / HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 3000; i++) buf_puts(&big, "a:\r\n");
  buf_puts(&big, "\r\n");
  expect_error(big.data, MB, MB, 431);
  buf_free(&big);

  /* a declared body over the limit is refused before any of it arrives */
  expect_error("PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", MB, 100, 413);
  /* a chunked body over the limit */
  expect_error("PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               "40\r\n" "0123456789012345678901234567890123456789012345678901234567890123\r\n"
               "40\r\n" "0123456789012345678901234567890123456789012345678901234567890123\r\n",
               MB, 100, 413);
  /* exactly at the limit is fine */
  struct http_parser p;
  http_parser_init(&p, MB, 5);
  struct feed_result fr;
  const char *ok = "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n12345";
  feed(&p, ok, strlen(ok), 0, &fr);
  assert_int_equal(fr.status, 0);
  assert_int_equal(fr.n, 1);
  fr_free(&fr);
  http_parser_free(&p);

  /* one path may take a bigger body (a snapshot archive); the next request on the same
   * connection is back to the normal cap, and a query string does not change the path */
  http_parser_init(&p, MB, 5);
  http_parser_set_big_body(&p, "/v1/snapshot", 10);
  const char *two = "PUT /v1/snapshot?dc=x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
                    "PUT /v1/snapshot/x HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n012345";
  feed(&p, two, strlen(two), 0, &fr);
  assert_int_equal(fr.n, 1);
  assert_int_equal(fr.status, 413);
  fr_free(&fr);
  http_parser_free(&p);
  expect_error("PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n012345", MB, 5, 413);
}

static void test_parse_malformed(void **state)
{
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", MB, MB,
               400);
  expect_error("GET /a%zzb HTTP/1.1\r\nHost: x\r\n\r\n", MB, MB, 400);
  expect_error("GET /a%2 HTTP/1.1\r\nHost: x\r\n\r\n", MB, MB, 400);
  expect_error("GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", MB, MB, 400);
  expect_error("GET / HTTP/1.1\r\n\r\n", MB, MB, 400); /* no Host */
  expect_error("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", MB, MB, 400);
  expect_error("GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", MB, MB, 400);
  expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
               MB, MB, 400);
  expect_error("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", MB, MB, 400);
  expect_error("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", MB, MB, 501);
  expect_error("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", MB, MB,
               501);
  expect_error("PUT / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", MB, MB, 417);
  expect_error("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", MB, MB, 501);
  expect_error("GET / HTTP/2.0\r\nHost: a\r\n\r\n", MB, MB, 505);
  expect_error("GET nohost HTTP/1.1\r\nHost: a\r\n\r\n", MB, MB, 400);
}

static void test_parse_versions(void **state)
{
  struct http_parser p;
  struct feed_result fr;
  http_parser_init(&p, MB, MB);
  const char *r10 = "GET /a HTTP/1.0\r\n\r\n"; /* HTTP/1.0 needs no Host */
  feed(&p, r10, strlen(r10), 0, &fr);
  assert_int_equal(fr.n, 1);
  assert_int_equal(fr.msgs[0]->http_minor, 0);
  assert_false(fr.msgs[0]->keep_alive);
  fr_free(&fr);
  http_parser_free(&p);

  http_parser_init(&p, MB, MB);
  const char *r10ka = "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                      "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  feed(&p, r10ka, strlen(r10ka), 0, &fr);
  assert_int_equal(fr.n, 2);
  assert_true(fr.msgs[0]->keep_alive);
  assert_false(fr.msgs[1]->keep_alive);
  fr_free(&fr);
  http_parser_free(&p);
}

static void test_parse_misc(void **state)
{
  struct http_parser p;
  struct feed_result fr;
  /* Expect: 100-continue is reported once the headers are in, before the body */
  http_parser_init(&p, MB, MB);
  const char *head = "PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                     "Expect: 100-continue\r\n\r\n";
  feed(&p, head, strlen(head), 0, &fr);
  assert_true(fr.saw_continue);
  assert_int_equal(fr.n, 0);
  assert_true(http_parser_started(&p));
  feed(&p, "abc", 3, 0, &fr);
  assert_false(fr.saw_continue);
  assert_int_equal(fr.n, 1);
  assert_string_equal((const char *)fr.msgs[0]->body, "abc");
  fr_free(&fr);
  http_parser_free(&p);

  /* an Upgrade request is answered as a plain one and parsing goes on after it */
  http_parser_init(&p, MB, MB);
  const char *up = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                   "GET /after HTTP/1.1\r\nHost: x\r\n\r\n";
  feed(&p, up, strlen(up), 0, &fr);
  assert_int_equal(fr.status, 0);
  assert_int_equal(fr.n, 2);
  assert_string_equal(fr.msgs[1]->path, "/after");
  fr_free(&fr);
  http_parser_free(&p);

  /* absolute-form targets, OPTIONS *, other methods, a bad query escape */
  http_parser_init(&p, MB, MB);
  const char *abs = "GET http://127.0.0.1:8500/v1/kv/x?raw HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET http://host?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                    "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
                    "PROPFIND /x HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /q?a=%zz&b=2&c;d=3&e=+x%20y+ HTTP/1.1\r\nHost: x\r\n\r\n";
  feed(&p, abs, strlen(abs), 0, &fr);
  assert_int_equal(fr.status, 0);
  assert_int_equal(fr.n, 5);
  assert_string_equal(fr.msgs[0]->path, "/v1/kv/x");
  assert_string_equal(fr.msgs[0]->raw_query, "raw");
  assert_string_equal(fr.msgs[1]->path, "/");
  assert_string_equal(param(fr.msgs[1], "a", 0), "1");
  assert_true(fr.msgs[2]->options_star);
  assert_int_equal(fr.msgs[3]->method, HTTP_M_OTHER);
  assert_string_equal(fr.msgs[3]->method_name, "PROPFIND");
  assert_true(fr.msgs[4]->query_invalid);
  assert_null(param(fr.msgs[4], "a", 0));
  assert_string_equal(param(fr.msgs[4], "b", 0), "2");
  assert_string_equal(param(fr.msgs[4], "e", 0), " x y ");
  fr_free(&fr);
  http_parser_free(&p);
}

/* ---- query, path, router ---- */

struct pairs {
  char names[8][16], values[8][16];
  int n;
};

static void collect(void *arg, const char *name, size_t nl, const char *value, size_t vl)
{
  struct pairs *ps = arg;
  assert_true(ps->n < 8 && nl < 16 && vl < 16);
  memcpy(ps->names[ps->n], name, nl);
  ps->names[ps->n][nl] = 0;
  memcpy(ps->values[ps->n], value, vl);
  ps->values[ps->n][vl] = 0;
  ps->n++;
}

static void test_query(void **state)
{
  struct pairs ps = {0};
  const char *q = "tag=a&tag=b+c&&tag=d%20e&flag&=v&x=1=2";
  assert_int_equal(http__query_parse(q, strlen(q), collect, &ps), 0);
  assert_int_equal(ps.n, 6);
  assert_string_equal(ps.names[0], "tag");
  assert_string_equal(ps.values[0], "a");
  assert_string_equal(ps.values[1], "b c");
  assert_string_equal(ps.values[2], "d e");
  assert_string_equal(ps.names[3], "flag");
  assert_string_equal(ps.values[3], "");
  assert_string_equal(ps.names[4], "");
  assert_string_equal(ps.values[4], "v");
  assert_string_equal(ps.names[5], "x");
  assert_string_equal(ps.values[5], "1=2");

  memset(&ps, 0, sizeof ps);
  q = "a=%4&b=%41&c=1;2";
  assert_int_equal(http__query_parse(q, strlen(q), collect, &ps), -1);
  assert_int_equal(ps.n, 1);
  assert_string_equal(ps.values[0], "A");

  struct buf b = BUF_INIT;
  assert_int_equal(http__pct_decode("a+b%2B", 6, false, &b), 0);
  assert_string_equal(b.data, "a+b+");
  buf_reset(&b);
  assert_int_equal(http__pct_decode("a+b%2b", 6, true, &b), 0);
  assert_string_equal(b.data, "a b+");
  buf_reset(&b);
  assert_int_equal(http__pct_decode("%", 1, true, &b), -1);

  static const char *clean[][2] = {
    {"/", "/"},           {"", "/"},           {"/a/b", "/a/b"},     {"/a//b", "/a/b"},
    {"/a/./b/", "/a/b/"}, {"/a/../b", "/b"},   {"/../a", "/a"},      {"/a/b/..", "/a"},
    {"/a/b/../", "/a/"},  {"a/b", "/a/b"},     {"/v1/kv//", "/v1/kv/"}, {"/..", "/"},
  };
  for (size_t i = 0; i < sizeof clean / sizeof clean[0]; i++) {
    http__path_clean(clean[i][0], &b);
    assert_string_equal(b.data, clean[i][1]);
  }
  buf_free(&b);
}

static void dummy_handler(struct http_request *req, void *arg) {}

static void test_router(void **state)
{
  struct http_router r;
  http__router_init(&r);
  http__router_add(&r, HTTP_M_GET, "/v1/kv/", dummy_handler, (void *)1);
  http__router_add(&r, HTTP_M_GET, "/v1/kv/special", dummy_handler, (void *)2);
  http__router_add(&r, HTTP_M_GET, "/v1/query", dummy_handler, (void *)3);
  http__router_add(&r, HTTP_M_GET, "/v1/query/", dummy_handler, (void *)4);
  http__router_add(&r, HTTP_M_GET, "/v1/status/leader", dummy_handler, (void *)5);
  const struct http_route *rt;
  size_t tail;
  struct buf red = BUF_INIT;
  assert_int_equal(http__router_match(&r, "/v1/kv/a/b", &rt, &tail, &red), HTTP_MATCH_FOUND);
  assert_ptr_equal(rt->arg, (void *)1);
  assert_string_equal(&"/v1/kv/a/b"[tail], "a/b");
  assert_int_equal(http__router_match(&r, "/v1/kv/", &rt, &tail, &red), HTTP_MATCH_FOUND);
  assert_int_equal(tail, 7);
  assert_int_equal(http__router_match(&r, "/v1/kv/special", &rt, &tail, &red), HTTP_MATCH_FOUND);
  assert_ptr_equal(rt->arg, (void *)2);
  assert_int_equal(http__router_match(&r, "/v1/kv/specialx", &rt, &tail, &red), HTTP_MATCH_FOUND);
  assert_ptr_equal(rt->arg, (void *)1);
  assert_int_equal(http__router_match(&r, "/v1/query", &rt, &tail, &red), HTTP_MATCH_FOUND);
  assert_ptr_equal(rt->arg, (void *)3);
  assert_int_equal(http__router_match(&r, "/v1/query/abc", &rt, &tail, &red), HTTP_MATCH_FOUND);
  assert_ptr_equal(rt->arg, (void *)4);
  assert_int_equal(http__router_match(&r, "/v1/status/leaderx", &rt, &tail, &red),
                   HTTP_MATCH_NONE);
  assert_int_equal(http__router_match(&r, "/v1/status", &rt, &tail, &red), HTTP_MATCH_NONE);
  assert_int_equal(http__router_match(&r, "/v1/kv", &rt, &tail, &red), HTTP_MATCH_REDIRECT);
  assert_string_equal(red.data, "/v1/kv/");
  assert_int_equal(http__router_match(&r, "/v1//kv/x", &rt, &tail, &red), HTTP_MATCH_REDIRECT);
  assert_string_equal(red.data, "/v1/kv/x");
  /* a later route with the same path replaces the earlier one */
  http__router_add(&r, HTTP_M_PUT, "/v1/status/leader", dummy_handler, (void *)6);
  assert_int_equal(http__router_match(&r, "/v1/status/leader", &rt, &tail, &red),
                   HTTP_MATCH_FOUND);
  assert_ptr_equal(rt->arg, (void *)6);
  assert_int_equal(rt->methods, HTTP_M_PUT);
  buf_reset(&red);
  http__router_allow(HTTP_M_GET | HTTP_M_PUT | HTTP_M_DELETE, &red);
  assert_string_equal(red.data, "OPTIONS,GET,PUT,DELETE");
  buf_free(&red);
  http__router_free(&r);
}

/* ---- JSON ---- */

static void expect_json(json_t *j, bool pretty, const char *want)
{
  struct buf b = BUF_INIT;
  http_json_encode(j, pretty, &b);
  assert_string_equal(b.data, want);
  buf_free(&b);
  json_decref(j);
}

static void test_json(void **state)
{
  expect_json(json_pack("{s:i,s:s,s:[],s:{},s:n,s:b}", "b", 1, "a", "x", "arr", "obj", "nil",
                        "t", 1),
              false, "{\"b\":1,\"a\":\"x\",\"arr\":[],\"obj\":{},\"nil\":null,\"t\":true}");
  expect_json(json_pack("{s:[i,i],s:{},s:{s:s}}", "A", 1, 2, "E", "O", "k", "v"), true,
              "{\n    \"A\": [\n        1,\n        2\n    ],\n    \"E\": {},\n"
              "    \"O\": {\n        \"k\": \"v\"\n    }\n}");
  expect_json(json_string("<a&b>\"\\\n\t\x01\x7f\xe2\x80\xa8\b\f"), false,
              "\"\\u003ca\\u0026b\\u003e\\\"\\\\\\n\\t\\u0001\x7f\\u2028\\b\\f\"");
  expect_json(json_stringn_nocheck("a\xff" "b\xc3\xa9", 5), false, "\"a\\ufffdb\xc3\xa9\"");
  expect_json(json_integer(-9223372036854775807LL - 1), false, "-9223372036854775808");
  expect_json(json_real(0.1), false, "0.1");
  expect_json(json_real(1.5), false, "1.5");
  expect_json(json_real(100), false, "100");
  expect_json(json_real(-2.5e-7), false, "-2.5e-7");
  expect_json(json_real(1e21), false, "1e+21");
  expect_json(json_real(1e20), false, "100000000000000000000");
  expect_json(json_real(0.000001), false, "0.000001");
  expect_json(json_real(123456.789), false, "123456.789");
  expect_json(json_real(1.2e-10), false, "1.2e-10");
  expect_json(json_real(0.0), false, "0");
  expect_json(json_array(), true, "[]");
}

/* ---- the server over real sockets ---- */

struct srv_test {
  uv_loop_t loop;
  struct http_server *s, *s_short, *s_one;
  int port, port_short, port_one;
  uv_async_t done;
  uv_timer_t answer_timer;
  struct http_request *delayed;  /* answered by answer_timer */
  struct http_request *parked;   /* never answered; cancelled on hang-up */
  atomic_int cancels;
  atomic_int parked_now;
  bool closed;
  char failure[256];
};

static struct srv_test T;

static void h_sync(struct http_request *req, void *arg)
{
  json_t *j = json_pack("{s:s,s:s}", "Path", req->path, "Tail", req->tail);
  http_set_header(req, "X-Consul-Index", "7");
  http_respond_json(req, 200, j);
}

static void h_echo(struct http_request *req, void *arg)
{
  struct buf b = BUF_INIT;
  buf_printf(&b, "%s %s tail=%s body=%.*s dc=%s remote=%s", req->method_name, req->path,
             req->tail, (int)req->body_len, (const char *)req->body,
             http_query(req, "dc") ? http_query(req, "dc") : "-", http_remote_addr(req));
  http_respond_buf(req, 200, "text/plain", &b);
}

static void h_tags(struct http_request *req, void *arg)
{
  const char *tags[2];
  size_t n = http_query_all(req, "tag", tags, 2);
  struct buf b = BUF_INIT;
  buf_printf(&b, "%zu", n);
  for (size_t i = 0; i < n && i < 2; i++) buf_printf(&b, " [%s]", tags[i]);
  if (http_query_has(req, "flag")) buf_printf(&b, " flag=[%s]", http_query(req, "flag"));
  http_set_header(req, "X-Evil", "a\r\nSet-Cookie: x");
  http_set_header(req, "Content-Length", "999");
  http_respond_buf(req, 200, "text/plain", &b);
}

static void answer_delayed(uv_timer_t *t)
{
  struct http_request *req = T.delayed;
  T.delayed = NULL;
  http_respond(req, 200, "text/plain", "late", 4);
}

static void cancel_delayed(struct http_request *req, void *arg)
{
  T.delayed = NULL;
  uv_timer_stop(&T.answer_timer);
}

static void h_delayed(struct http_request *req, void *arg)
{
  T.delayed = req;
  http_request_on_cancel(req, cancel_delayed, NULL);
  uv_timer_start(&T.answer_timer, answer_delayed, 30, 0);
}

static void cancel_parked(struct http_request *req, void *arg)
{
  assert_ptr_equal(req, T.parked);
  T.parked = NULL;
  atomic_store(&T.parked_now, 0);
  atomic_fetch_add(&T.cancels, 1);
}

static void h_park(struct http_request *req, void *arg)
{
  T.parked = req;
  http_request_on_cancel(req, cancel_parked, NULL);
  atomic_store(&T.parked_now, 1);
}

static void on_server_closed(void *arg) { *(bool *)arg = true; }

static bool s1_closed, s2_closed, s3_closed;

static void on_done(uv_async_t *a)
{
  http_server_close(T.s, on_server_closed, &s1_closed);
  http_server_close(T.s_short, on_server_closed, &s2_closed);
  http_server_close(T.s_one, on_server_closed, &s3_closed);
  uv_close((uv_handle_t *)&T.done, NULL);
  uv_close((uv_handle_t *)&T.answer_timer, NULL);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(T.failure, sizeof T.failure, fmt, ap);
  va_end(ap);
}

/* -- the client side (runs in its own thread; records the first failure) -- */

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      if (!T.failure[0])                                                              \
        note("line %d: %s", __LINE__, #cond);        \
      return false;                                                                   \
    }                                                                                 \
  } while (0)

struct client {
  int fd;
  char buf[1 << 16];
  size_t len;
};

struct resp {
  int status;
  char head[4096];
  char body[8192];
  size_t body_len;
};

static bool cl_connect(struct client *c, int port)
{
  c->len = 0;
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(c->fd >= 0);
  struct timeval tv = {5, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(connect(c->fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  return true;
}

static bool cl_send(struct client *c, const char *s)
{
  size_t n = strlen(s);
  while (n) {
    ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
    CHECK(w > 0);
    s += w;
    n -= (size_t)w;
  }
  return true;
}

/* Reads more bytes into c->buf; returns the count, 0 on EOF, -1 on error/timeout. */
static ssize_t cl_fill(struct client *c)
{
  if (c->len == sizeof c->buf) return -1;
  ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
  if (n > 0) c->len += (size_t)n;
  return n;
}

static bool cl_read_x(struct client *c, struct resp *r, bool head_only)
{
  memset(r, 0, sizeof *r);
  char *end;
  while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4))) CHECK(cl_fill(c) > 0);
  size_t hlen = (size_t)(end - c->buf) + 4;
  CHECK(hlen < sizeof r->head);
  memcpy(r->head, c->buf, hlen);
  CHECK(sscanf(r->head, "HTTP/1.1 %d", &r->status) == 1);
  const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
  size_t blen = cl ? strtoul(cl + 18, NULL, 10) : 0;
  if (head_only || r->status == 100) blen = 0;
  CHECK(blen < sizeof r->body);
  while (c->len < hlen + blen) CHECK(cl_fill(c) > 0);
  memcpy(r->body, c->buf + hlen, blen);
  r->body_len = blen;
  memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
  c->len -= hlen + blen;
  return true;
}

static bool cl_read(struct client *c, struct resp *r) { return cl_read_x(c, r, false); }

static bool cl_eof(struct client *c)
{
  ssize_t n;
  while ((n = cl_fill(c)) > 0) c->len = 0;
  CHECK(n == 0 || errno == ECONNRESET);
  return true;
}

static void cl_close(struct client *c) { close(c->fd); }

static bool wait_for(atomic_int *v, int want)
{
  for (int i = 0; i < 500 && atomic_load(v) != want; i++) usleep(10000);
  CHECK(atomic_load(v) == want);
  return true;
}

static bool client_script(void)
{
  struct client *c = calloc(1, sizeof *c);
  struct client *c2 = calloc(1, sizeof *c2);
  struct resp r;
  bool ok = false;
#define STEP(x) if (!(x)) goto out
#define EXPECT(cond)                                                                  \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      if (!T.failure[0])                                                              \
        note("line %d: %s", __LINE__, #cond);        \
      goto out;                                                                       \
    }                                                                                 \
  } while (0)
  /* keep-alive: two requests, one connection */
  STEP(cl_connect(c, T.port));
  STEP(cl_send(c, "GET /v1/sync HTTP/1.1\r\nHost: x\r\n\r\n"));
  STEP(cl_read(c, &r));
  if (r.status != 200 || strcmp(r.body, "{\"Path\":\"/v1/sync\",\"Tail\":\"\"}") != 0 ||
      !strstr(r.head, "Content-Type: application/json\r\n") ||
      !strstr(r.head, "X-Consul-Index: 7\r\n") || !strstr(r.head, "Date: ") ||
      strstr(r.head, "Connection: close")) {
    note("keep-alive response: %s%s", r.head, r.body);
    goto out;
  }
  STEP(cl_send(c, "GET /v1/sync?pretty HTTP/1.1\r\nHost: x\r\n\r\n"));
  STEP(cl_read(c, &r));
  if (strcmp(r.body, "{\n    \"Path\": \"/v1/sync\",\n    \"Tail\": \"\"\n}\n") != 0) {
    note("pretty: %s", r.body);
    goto out;
  }
  /* pipelining: sync, delayed (async), sync, in one write: answers in order */
  STEP(cl_send(c, "GET /v1/kv/a/b?dc=dc2 HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /v1/delayed HTTP/1.1\r\nHost: x\r\n\r\n"
                  "PUT /v1/kv/c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
                  "HEAD /v1/kv/h HTTP/1.1\r\nHost: x\r\n\r\n"));
  STEP(cl_read(c, &r));
  if (r.status != 200 || strcmp(r.body, "GET /v1/kv/a/b tail=a/b body= dc=dc2 remote=127.0.0.1")) {
    note("pipelined 1: %d %s", r.status, r.body);
    goto out;
  }
  STEP(cl_read(c, &r));
  if (r.status != 200 || strcmp(r.body, "late") != 0) {
    note("pipelined 2: %d %s", r.status, r.body);
    goto out;
  }
  STEP(cl_read(c, &r));
  if (r.status != 200 || strncmp(r.body, "PUT /v1/kv/c tail=c body=xyz", 28) != 0) {
    note("pipelined 3: %d %s", r.status, r.body);
    goto out;
  }
  /* HEAD: headers with the would-be length, no body (the next read proves none was sent) */
  STEP(cl_read_x(c, &r, true));
  EXPECT(r.status == 200);
  EXPECT(strstr(r.head, "Content-Length: ") && !strstr(r.head, "Content-Length: 0\r\n"));
  /* 405 and 404 and OPTIONS and a redirect, still on the same connection */
  STEP(cl_send(c, "POST /v1/sync HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
  STEP(cl_read(c, &r));
  if (r.status != 405 || strcmp(r.body, "method POST not allowed") != 0 ||
      !strstr(r.head, "Allow: OPTIONS,GET\r\n")) {
    note("405: %s%s", r.head, r.body);
    goto out;
  }
  STEP(cl_send(c, "OPTIONS /v1/sync HTTP/1.1\r\nHost: x\r\n\r\n"));
  STEP(cl_read(c, &r));
  if (r.status != 200 || r.body_len != 0 || !strstr(r.head, "Allow: OPTIONS,GET\r\n")) {
    note("OPTIONS: %s", r.head);
    goto out;
  }
  STEP(cl_send(c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"));
  STEP(cl_read(c, &r));
  if (r.status != 404 || r.body_len != 0) {
    note("404: %s", r.head);
    goto out;
  }
  STEP(cl_send(c, "GET /v1/kv?recurse HTTP/1.1\r\nHost: x\r\n\r\n"));
  STEP(cl_read(c, &r));
  if (r.status != 301 || !strstr(r.head, "Location: /v1/kv/?recurse\r\n")) {
    note("301: %s", r.head);
    goto out;
  }
  STEP(cl_send(c, "GET /v1/sync?a=%zz HTTP/1.1\r\nHost: x\r\n\r\n"));
  STEP(cl_read(c, &r));
  EXPECT(r.status == 500);
  /* Expect: 100-continue: the 100 comes before the body is sent */
  STEP(cl_send(c, "PUT /v1/kv/e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                  "Expect: 100-continue\r\n\r\n"));
  STEP(cl_read(c, &r));
  EXPECT(r.status == 100);
  STEP(cl_send(c, "body"));
  STEP(cl_read(c, &r));
  if (r.status != 200 || strncmp(r.body, "PUT /v1/kv/e tail=e body=body", 29) != 0) {
    note("100-continue: %d %s", r.status, r.body);
    goto out;
  }
  /* Connection: close is honoured: the answer, then EOF */
  STEP(cl_send(c, "GET /v1/sync HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  STEP(cl_read(c, &r));
  EXPECT(strstr(r.head, "Connection: close\r\n"));
  STEP(cl_eof(c));
  cl_close(c);

  /* HTTP/1.0 with keep-alive stays open; repeated parameters; header values sanitized */
  STEP(cl_connect(c, T.port));
  STEP(cl_send(c, "GET /v1/tags?tag=a+b&tag=c%2Fd&tag=e&flag HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  STEP(cl_read(c, &r));
  if (r.status != 200 || strcmp(r.body, "3 [a b] [c/d] flag=[]") != 0 ||
      !strstr(r.head, "Connection: keep-alive\r\n") || !strstr(r.head, "X-Evil: a  Set-Cookie: x\r\n") ||
      strstr(r.head, "999")) {
    note("1.0 keep-alive: %s%s", r.head, r.body);
    goto out;
  }
  STEP(cl_send(c, "GET /v1/tags HTTP/1.0\r\n\r\n"));
  STEP(cl_read(c, &r));
  EXPECT(r.status == 200 && strcmp(r.body, "0") == 0);
  STEP(cl_eof(c));
  cl_close(c);

  /* HTTP/1.0 without keep-alive closes after the answer */
  STEP(cl_connect(c, T.port));
  STEP(cl_send(c, "GET /v1/sync HTTP/1.0\r\n\r\n"));
  STEP(cl_read(c, &r));
  EXPECT(r.status == 200);
  STEP(cl_eof(c));
  cl_close(c);

  /* a malformed request: 400 and close */
  STEP(cl_connect(c, T.port));
  STEP(cl_send(c, "GET /x%zz HTTP/1.1\r\nHost: x\r\n\r\n"));
  STEP(cl_read(c, &r));
  if (r.status != 400 || !strstr(r.body, "400 Bad Request")) {
    note("400: %s%s", r.head, r.body);
    goto out;
  }
  STEP(cl_eof(c));
  cl_close(c);

  /* hang-up while a request is parked: its cancel callback runs */
  STEP(cl_connect(c, T.port));
  STEP(cl_send(c, "GET /v1/park HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /v1/sync HTTP/1.1\r\nHost: x\r\n\r\n")); /* held behind the parked one */
  STEP(wait_for(&T.parked_now, 1));
  cl_close(c);
  STEP(wait_for(&T.cancels, 1));

  /* timeouts on the short server: a partial request gets 408, an idle connection EOF */
  STEP(cl_connect(c, T.port_short));
  STEP(cl_send(c, "GET /v1/sync HTTP/1.1\r\nHo"));
  STEP(cl_read(c, &r));
  EXPECT(r.status == 408);
  STEP(cl_eof(c));
  cl_close(c);
  STEP(cl_connect(c, T.port_short));
  STEP(cl_send(c, "GET /v1/sync HTTP/1.1\r\nHost: x\r\n\r\n"));
  STEP(cl_read(c, &r));
  EXPECT(r.status == 200);
  STEP(cl_eof(c)); /* idle timeout */
  cl_close(c);

  /* the connection limit: the second connection is closed at once */
  STEP(cl_connect(c, T.port_one));
  STEP(cl_send(c, "GET /v1/sync HTTP/1.1\r\nHost: x\r\n\r\n"));
  STEP(cl_read(c, &r));
  STEP(cl_connect(c2, T.port_one));
  STEP(cl_eof(c2));
  cl_close(c2);
  cl_close(c);
  ok = true;
out:
  free(c);
  free(c2);
  return ok;
}

static void *client_main(void *arg)
{
  client_script();
  uv_async_send(&T.done);
  return NULL;
}

static void test_server(void **state)
{
  memset(&T, 0, sizeof T);
  assert_int_equal(uv_loop_init(&T.loop), 0);
  struct http_server_config cfg;
  http_server_config_defaults(&cfg);
  T.s = http_server_new(&T.loop, &cfg);
  char err[256];
  assert_int_equal(http_server_listen(T.s, "127.0.0.1", 0, err, sizeof err), 0);
  T.port = http_server_port(T.s);
  assert_true(T.port > 0);
  http_server_route(T.s, HTTP_M_GET, "/v1/sync", h_sync, NULL);
  http_server_route(T.s, HTTP_M_GET | HTTP_M_PUT | HTTP_M_HEAD, "/v1/kv/", h_echo, NULL);
  http_server_route(T.s, HTTP_M_GET, "/v1/delayed", h_delayed, NULL);
  http_server_route(T.s, HTTP_M_GET, "/v1/park", h_park, NULL);
  http_server_route(T.s, HTTP_M_GET, "/v1/tags", h_tags, NULL);
  /* a bad address is an error with a sentence */
  assert_true(http_server_listen(T.s, "not-an-ip", 1, err, sizeof err) < 0);
  assert_true(strlen(err) > 0);

  struct http_server_config short_cfg = cfg;
  short_cfg.read_timeout_ms = 150;
  short_cfg.idle_timeout_ms = 150;
  T.s_short = http_server_new(&T.loop, &short_cfg);
  assert_int_equal(http_server_listen(T.s_short, "127.0.0.1", 0, err, sizeof err), 0);
  T.port_short = http_server_port(T.s_short);
  http_server_route(T.s_short, HTTP_M_GET, "/v1/sync", h_sync, NULL);

  struct http_server_config one_cfg = cfg;
  one_cfg.max_connections = 1;
  T.s_one = http_server_new(&T.loop, &one_cfg);
  assert_int_equal(http_server_listen(T.s_one, "127.0.0.1", 0, err, sizeof err), 0);
  T.port_one = http_server_port(T.s_one);
  http_server_route(T.s_one, HTTP_M_GET, "/v1/sync", h_sync, NULL);

  uv_async_init(&T.loop, &T.done, on_done);
  uv_timer_init(&T.loop, &T.answer_timer);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, client_main, NULL), 0);
  /* stats are read on the loop thread, before the servers close */
  uv_run(&T.loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  if (T.failure[0]) fail_msg("%s", T.failure);
  assert_true(s1_closed && s2_closed && s3_closed);
  assert_int_equal(atomic_load(&T.cancels), 1);
  assert_null(T.parked);
  assert_int_equal(uv_loop_close(&T.loop), 0);
}

/* Stats and a parked request cancelled by closing the server, all on the loop thread. */
static int closed_cancels;
static void cancel_count(struct http_request *req, void *arg) { closed_cancels++; }
static void h_park2(struct http_request *req, void *arg)
{
  http_request_on_cancel(req, cancel_count, NULL);
  struct http_server_stats st;
  http_server_stats(arg, &st);
  assert_int_equal(st.requests_in_flight, 1);
  assert_int_equal(st.connections_open, 1);
  http_server_close(arg, on_server_closed, &s1_closed);
}

static void *client_park(void *arg)
{
  struct client *c = calloc(1, sizeof *c);
  if (cl_connect(c, T.port) && cl_send(c, "GET /p HTTP/1.1\r\nHost: x\r\n\r\n")) cl_eof(c);
  cl_close(c);
  free(c);
  return NULL;
}

static void test_server_close_cancels(void **state)
{
  memset(&T, 0, sizeof T);
  s1_closed = false;
  assert_int_equal(uv_loop_init(&T.loop), 0);
  struct http_server *s = http_server_new(&T.loop, NULL);
  char err[128];
  assert_int_equal(http_server_listen(s, "127.0.0.1", 0, err, sizeof err), 0);
  T.port = http_server_port(s);
  http_server_route(s, HTTP_M_GET, "/p", h_park2, s);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, client_park, NULL), 0);
  uv_run(&T.loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  if (T.failure[0]) fail_msg("%s", T.failure);
  assert_true(s1_closed);
  assert_int_equal(closed_cancels, 1);
  assert_int_equal(uv_loop_close(&T.loop), 0);
}

/* Memory of parked connections: N clients each park a typical blocking query; the bytes
 * the process allocated for them, divided by N, must stay within the 2 KB budget. */
#define NPARK 400
static size_t allocated_bytes(void)
{
#ifdef HAVE_ASAN
  return __sanitizer_get_current_allocated_bytes();
#else
  return mallinfo2().uordblks;
#endif
}
static size_t mem_before, mem_parked;
static int nparked, ncancelled;
static struct http_server *mem_server;
static void mem_cancel(struct http_request *req, void *arg) { ncancelled++; }
static void mem_check(uv_timer_t *t)
{
  if (nparked == NPARK && !mem_parked) {
    mem_parked = allocated_bytes();
    atomic_store(&T.parked_now, 1);
  }
  if (ncancelled == NPARK) {
    uv_close((uv_handle_t *)t, NULL);
    http_server_close(mem_server, on_server_closed, &s1_closed);
  }
}
static void h_mem_park(struct http_request *req, void *arg)
{
  http_request_on_cancel(req, mem_cancel, NULL);
  nparked++;
}
static void *client_many(void *arg)
{
  static int fds[NPARK];
  static const char q[] = "GET /v1/health/service/web?index=42&wait=5m HTTP/1.1\r\n"
                          "Host: 127.0.0.1:8500\r\nUser-Agent: python-requests/2.28.1\r\n"
                          "Accept-Encoding: gzip, deflate\r\nAccept: */*\r\n"
                          "Connection: keep-alive\r\n\r\n";
  for (int i = 0; i < NPARK; i++) {
    struct client c;
    if (!cl_connect(&c, T.port)) return NULL;
    fds[i] = c.fd;
    if (send(c.fd, q, sizeof q - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof q - 1)) {
      note("send failed");
      return NULL;
    }
  }
  wait_for(&T.parked_now, 1);
  for (int i = 0; i < NPARK; i++) close(fds[i]);
  return NULL;
}

static void test_server_parked_memory(void **state)
{
  memset(&T, 0, sizeof T);
  s1_closed = false;
  assert_int_equal(uv_loop_init(&T.loop), 0);
  mem_server = http_server_new(&T.loop, NULL);
  char err[128];
  assert_int_equal(http_server_listen(mem_server, "127.0.0.1", 0, err, sizeof err), 0);
  T.port = http_server_port(mem_server);
  http_server_route(mem_server, HTTP_M_GET, "/v1/health/service/", h_mem_park, NULL);
  uv_timer_t check;
  uv_timer_init(&T.loop, &check);
  uv_timer_start(&check, mem_check, 10, 10);
  mem_before = allocated_bytes();
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, client_many, NULL), 0);
  uv_run(&T.loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  if (T.failure[0]) fail_msg("%s", T.failure);
  assert_int_equal(ncancelled, NPARK);
  size_t per_conn = (mem_parked - mem_before) / NPARK;
  fprintf(stderr, "parked connection: %zu bytes allocated each\n", per_conn);
  assert_true(per_conn <= 2048);
  assert_true(s1_closed);
  assert_int_equal(uv_loop_close(&T.loop), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parse_simple),
    cmocka_unit_test(test_parse_pipelined),
    cmocka_unit_test(test_parse_byte_by_byte_chunked),
    cmocka_unit_test(test_parse_limits),
    cmocka_unit_test(test_parse_malformed),
    cmocka_unit_test(test_parse_versions),
    cmocka_unit_test(test_parse_misc),
    cmocka_unit_test(test_query),
    cmocka_unit_test(test_router),
    cmocka_unit_test(test_json),
    cmocka_unit_test(test_server),
    cmocka_unit_test(test_server_close_cancels),
    cmocka_unit_test(test_server_parked_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
