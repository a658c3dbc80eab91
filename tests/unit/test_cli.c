/* test_cli.c -- unit tests of the CLI: Go-compatible flag parsing and help layout, address
 * parsing, the HTTP response parser, the output formatters, the KV JSON formats, and every
 * command run end to end against a scripted HTTP server on 127.0.0.1 (a thread in this
 * process), checking the exact request sent and the exact stdout, stderr and exit code. */
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/internal.h"
#include "lib/alloc.h"

#include "../lib/cli_harness.h"

/* ---- Flags ---- */

static void test_flags_parse_go_rules(void **state)
{
  (void)state;
  struct cli__flagset fs;
  bool b1, b2;
  const char *s;
  uint64_t u;
  struct cli__optstr os;
  struct cli__optbool ob;
  cli__flags_init(&fs);
  cli__flag_bool(&fs, "recurse", &b1, "r");
  cli__flag_bool(&fs, "x", &b2, "x");
  cli__flag_string(&fs, "separator", &s, "/", "s");
  cli__flag_uint64(&fs, "flags", &u, "u");
  cli__flag_optstr(&fs, "token", &os, true, "t");
  cli__flag_optbool(&fs, "stale", &ob, true, "st");
  assert_string_equal(s, "/");

  char *a1[] = {"--recurse", "-separator", ":", "-flags=0x10", "-token=", "-stale=false",
                "key", "-x"};
  int rest;
  char *buf = NULL;
  size_t len = 0;
  FILE *e = open_memstream(&buf, &len);
  assert_int_equal(cli__flags_parse(&fs, 8, a1, &rest, e), 0);
  assert_true(b1);
  assert_false(b2); /* after the first positional, nothing is a flag */
  assert_string_equal(s, ":");
  assert_int_equal(u, 16);
  assert_true(os.set);
  assert_string_equal(os.v, "");
  assert_true(ob.set);
  assert_false(ob.v);
  assert_int_equal(rest, 6);

  /* "--" is consumed; "-" is a positional. */
  char *a2[] = {"--", "-x"};
  assert_int_equal(cli__flags_parse(&fs, 2, a2, &rest, e), 0);
  assert_int_equal(rest, 1);
  char *a3[] = {"-", "-x"};
  assert_int_equal(cli__flags_parse(&fs, 2, a3, &rest, e), 0);
  assert_int_equal(rest, 0);

  /* ParseUint(s, 0, 64) */
  struct {
    const char *in;
    int ok;
    uint64_t v;
  } nums[] = {{"0", 1, 0},           {"010", 1, 8},      {"0o17", 1, 15},
              {"0b101", 1, 5},       {"1_000", 1, 1000}, {"0x_ff", 1, 255},
              {"18446744073709551615", 1, UINT64_MAX},   {"18446744073709551616", 0, 0},
              {"_1", 0, 0},          {"1__0", 0, 0},     {"1_", 0, 0},
              {"08", 0, 0},          {"0x", 0, 0},       {"-1", 0, 0},
              {"", 0, 0},            {"12a", 0, 0}};
  for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
    char arg[64];
    snprintf(arg, sizeof(arg), "-flags=%s", nums[i].in);
    char *a[] = {arg};
    u = 12345;
    int rc = cli__flags_parse(&fs, 1, a, &rest, e);
    if (nums[i].ok) {
      assert_int_equal(rc, 0);
      assert_true(u == nums[i].v);
    } else {
      assert_int_equal(rc, -1);
    }
  }
  fclose(e);
  assert_non_null(strstr(buf, "invalid value \"18446744073709551616\" for flag -flags: value "
                              "out of range\nUsage:\n"));
  assert_non_null(strstr(buf, "invalid value \"12a\" for flag -flags: parse error\n"));
  free(buf);
}

static void test_flags_errors_print_go_usage(void **state)
{
  (void)state;
  struct cli__flagset fs;
  bool b;
  const char *s;
  struct cli__optstr addr;
  cli__flags_init(&fs);
  cli__flag_string(&fs, "separator", &s, "/", "Separator.");
  cli__flag_bool(&fs, "base64", &b, "Base64 it.");
  cli__flag_optstr(&fs, "http-addr", &addr, true, "The `address` to use.");
  const char *cases[][2] = {
      {"-nope", "flag provided but not defined: -nope\n"},
      {"---x", "bad flag syntax: ---x\n"},
      {"-separator", "flag needs an argument: -separator\n"},
      {"-base64=maybe", "invalid boolean value \"maybe\" for -base64: parse error\n"},
      {"-help=1", ""},
  };
  const char *defaults = "Usage:\n"
                         "  -base64\n"
                         "    \tBase64 it.\n"
                         "  -http-addr address\n"
                         "    \tThe address to use.\n"
                         "  -separator string\n"
                         "    \tSeparator. (default \"/\")\n";
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *buf = NULL;
    size_t len = 0;
    FILE *e = open_memstream(&buf, &len);
    char *a[] = {(char *)cases[i][0]};
    int rest;
    assert_int_equal(cli__flags_parse(&fs, 1, a, &rest, e), -1);
    fclose(e);
    char want[1024];
    snprintf(want, sizeof(want), "%s%s", cases[i][1], defaults);
    assert_string_equal(buf, want);
    free(buf);
  }
}

/* Consul 1.17's own help for -http-addr, wrapped by kr/text: the wrap must reproduce it. */
static void test_wrap_matches_kr_text(void **state)
{
  (void)state;
  const char *consul_usage =
      "The `address` and port of the Consul HTTP agent. The value can be an IP address or "
      "DNS address, but it must also include the port. This can also be specified via the "
      "CONSUL_HTTP_ADDR environment variable. The default value is http://127.0.0.1:8500. "
      "The scheme can also be set to HTTPS by setting the environment variable "
      "CONSUL_HTTP_SSL=true.";
  const char *want = "     The `address` and port of the Consul HTTP agent. The value can be\n"
                     "     an IP address or DNS address, but it must also include the port.\n"
                     "     This can also be specified via the CONSUL_HTTP_ADDR environment\n"
                     "     variable. The default value is http://127.0.0.1:8500. The scheme\n"
                     "     can also be set to HTTPS by setting the environment variable\n"
                     "     CONSUL_HTTP_SSL=true.";
  struct buf b = BUF_INIT;
  cli__wrap(consul_usage, 67, 5, &b);
  assert_string_equal(b.data, want);
  buf_reset(&b);
  /* A word longer than the line stands alone; short text stays on one line. */
  cli__wrap("short text", 67, 2, &b);
  assert_string_equal(b.data, "  short text");
  buf_reset(&b);
  cli__wrap("aaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb c", 10, 0, &b);
  assert_string_equal(b.data, "aaaaaaaaaa\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\nc");
  buf_free(&b);
}

static void test_flags_usage_layout(void **state)
{
  (void)state;
  struct cli__flagset fs;
  bool b;
  const char *s;
  uint64_t u;
  struct cli__optstr t, ns;
  cli__flags_init(&fs);
  cli__flag_uint64(&fs, "flags", &u, "Flags.");
  cli__flag_bool(&fs, "base64", &b, "B.");
  cli__flag_string(&fs, "separator", &s, "/", "S.");
  cli__flag_optstr(&fs, "token", &t, true, "T.");
  cli__flag_optstr(&fs, "namespace", &ns, false, "the `default` one.");
  struct buf out = BUF_INIT;
  cli__flags_usage("\nUsage: x\n\n  Does x.\n", &fs, &out);
  assert_string_equal(out.data, "Usage: x\n\n  Does x.\n\n"
                                "HTTP API Options\n\n"
                                "  -token=<value>\n     T.\n\n"
                                "Command Options\n\n"
                                "  -base64\n     B.\n\n"
                                "  -flags=<uint>\n     Flags.\n\n"
                                "  -namespace=<default>\n     the `default` one.\n\n"
                                "  -separator=<string>\n     S.");
  buf_reset(&out);
  cli__flags_usage("Usage: y\n", NULL, &out);
  assert_string_equal(out.data, "Usage: y");
  buf_free(&out);
}

/* ---- Addresses, escaping, formatting ---- */

static void test_addr_parse(void **state)
{
  (void)state;
  struct cli__addr a;
  char err[256];
  assert_int_equal(cli__addr_parse("127.0.0.1:8500", false, &a, err, sizeof(err)), 0);
  assert_int_equal(a.scheme, CLI__HTTP);
  assert_string_equal(a.host, "127.0.0.1");
  assert_string_equal(a.port, "8500");
  assert_string_equal(a.authority, "127.0.0.1:8500");
  assert_string_equal(a.path_prefix, "");
  cli__addr_free(&a);

  assert_int_equal(cli__addr_parse("http://localhost:1234/consul/", false, &a, err, 256), 0);
  assert_string_equal(a.host, "localhost");
  assert_string_equal(a.port, "1234");
  assert_string_equal(a.path_prefix, "/consul");
  cli__addr_free(&a);

  assert_int_equal(cli__addr_parse("http://[::1]:8500", false, &a, err, 256), 0);
  assert_string_equal(a.host, "::1");
  assert_string_equal(a.authority, "[::1]:8500");
  cli__addr_free(&a);

  assert_int_equal(cli__addr_parse("http://127.0.0.1", false, &a, err, 256), 0);
  assert_string_equal(a.port, "80");
  cli__addr_free(&a);

  assert_int_equal(cli__addr_parse("https://127.0.0.1:8501", false, &a, err, 256), 0);
  assert_true(a.tls);
  assert_int_equal(a.scheme, CLI__HTTPS);
  cli__addr_free(&a);

  /* CONSUL_HTTP_SSL=true is not undone by an http:// address (as in Consul). */
  assert_int_equal(cli__addr_parse("http://127.0.0.1:8500", true, &a, err, 256), 0);
  assert_true(a.tls);
  cli__addr_free(&a);

  assert_int_equal(cli__addr_parse("unix:///tmp/consul.sock", false, &a, err, 256), 0);
  assert_int_equal(a.scheme, CLI__UNIX);
  assert_string_equal(a.unix_path, "/tmp/consul.sock");
  cli__addr_free(&a);

  assert_int_equal(cli__addr_parse("ftp://x:1", false, &a, err, 256), -1);
  assert_string_equal(err, "Unknown protocol scheme: ftp");
  assert_int_equal(cli__addr_parse("::1", false, &a, err, 256), -1);
  assert_string_equal(err, "address ::1: too many colons in address");
  assert_int_equal(cli__addr_parse("h:99999", false, &a, err, 256), -1);
  assert_int_equal(cli__addr_parse("h:8x", false, &a, err, 256), -1);
}

static void test_escaping_and_quote(void **state)
{
  (void)state;
  struct buf b = BUF_INIT;
  cli__escape_path(&b, "/v1/kv/a b/c?d#e%f:@&=+$,;~");
  assert_string_equal(b.data, "/v1/kv/a%20b/c%3Fd%23e%25f:@&=+$,;~");
  buf_reset(&b);
  cli__escape_query(&b, "a/b c&d");
  assert_string_equal(b.data, "a%2Fb%20c%26d");
  buf_reset(&b);
  cli__go_quote(&b, "a\"b\\c\n\x01\xff\xc3\xa9");
  assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\x01\\xff\xc3\xa9\"");
  buf_free(&b);
}

static void test_columnize(void **state)
{
  (void)state;
  char *lines[] = {"Node\x1f" "Address\x1fStatus", "a-long-name\x1f 1.2.3.4:1 \x1f" "alive",
                   "b\x1f\x1f" "failed", "\xe4\xb8\xad\x1fx\x1fy"};
  struct buf b = BUF_INIT;
  cli__columnize(&b, lines, 4);
  assert_string_equal(b.data, "Node         Address    Status\n"
                              "a-long-name  1.2.3.4:1  alive\n"
                              "b                       failed\n"
                              "\xe4\xb8\xad           x          y");
  buf_free(&b);
}

static void test_path_clean_join(void **state)
{
  (void)state;
  /* Go's path package test vectors. */
  const char *clean[][2] = {{"", "."},         {"abc", "abc"},     {"abc/def", "abc/def"},
                            {"a/b/c", "a/b/c"}, {".", "."},         {"..", ".."},
                            {"../..", "../.."}, {"../../abc", "../../abc"},
                            {"/abc", "/abc"},   {"/", "/"},         {"abc/", "abc"},
                            {"abc/def/", "abc/def"}, {"//abc", "/abc"}, {"abc//def//ghi", "abc/def/ghi"},
                            {"abc/./def", "abc/def"}, {"/./abc/def", "/abc/def"},
                            {"abc/def/ghi/../jkl", "abc/def/jkl"}, {"abc/def/..", "abc"},
                            {"abc/def/../..", "."}, {"/abc/def/../..", "/"},
                            {"abc/def/../../..", ".."}, {"/abc/def/../../..", "/"},
                            {"abc/def/../../../ghi/jkl/../../../mno", "../../mno"}};
  for (size_t i = 0; i < sizeof(clean) / sizeof(clean[0]); i++) {
    char *c = cli__path_clean(clean[i][0]);
    assert_string_equal(c, clean[i][1]);
    free(c);
  }
  const char *join[][3] = {{"", "", ""},       {"a", "", "a"},     {"", "a", "a"},
                           {"a", "b", "a/b"},  {"a/", "b", "a/b"}, {"a", "/b", "a/b"},
                           {"p", "dir/", "p/dir"}, {"p", "../x", "x"}, {"", "a//b", "a/b"}};
  for (size_t i = 0; i < sizeof(join) / sizeof(join[0]); i++) {
    char *j = cli__path_join(join[i][0], join[i][1]);
    assert_string_equal(j, join[i][2]);
    free(j);
  }
}

static void test_b64_strict(void **state)
{
  (void)state;
  struct buf b = BUF_INIT;
  char err[128];
  assert_int_equal(cli__b64_decode_std("aGVsbG8=", 8, &b, err, sizeof(err)), 0);
  assert_string_equal(b.data, "hello");
  buf_reset(&b);
  assert_int_equal(cli__b64_decode_std("aGVs\nbG8=\n", 10, &b, err, sizeof(err)), 0);
  assert_string_equal(b.data, "hello");
  buf_reset(&b);
  assert_int_equal(cli__b64_decode_std("", 0, &b, err, sizeof(err)), 0);
  assert_int_equal(b.len, 0);
  buf_reset(&b);
  assert_int_equal(cli__b64_decode_std("aGVsbG8", 7, &b, err, sizeof(err)), -1);
  assert_string_equal(err, "illegal base64 data at input byte 4");
  buf_reset(&b);
  assert_int_equal(cli__b64_decode_std("aG!s", 4, &b, err, sizeof(err)), -1);
  assert_string_equal(err, "illegal base64 data at input byte 2");
  buf_reset(&b);
  assert_int_equal(cli__b64_decode_std("aGk=aGk=", 8, &b, err, sizeof(err)), -1);
  assert_string_equal(err, "illegal base64 data at input byte 4");
  buf_free(&b);
}

/* ---- HTTP response parser ---- */

static int feed_all(const char *raw, size_t step, bool eof, struct cli__http_resp *resp,
                    char *err)
{
  struct cli__http_parser p;
  cli__http_parser_init(&p, 1024);
  memset(resp, 0, sizeof(*resp));
  size_t n = strlen(raw);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i += step) {
    size_t l = n - i < step ? n - i : step;
    rc = cli__http_parser_feed(&p, raw + i, l, false, resp, err, 256);
  }
  if (rc == 0 && eof) rc = cli__http_parser_feed(&p, NULL, 0, true, resp, err, 256);
  cli__http_parser_free(&p);
  return rc;
}

static void test_http_parser(void **state)
{
  (void)state;
  struct cli__http_resp r;
  char err[256];
  for (size_t step = 1; step <= 64; step *= 4) {
    assert_int_equal(feed_all("HTTP/1.1 200 OK\r\nX-Consul-Index: 42\r\nContent-Length: 5\r\n\r\n"
                              "hello", step, false, &r, err), 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.index, 42);
    assert_string_equal(r.body.data, "hello");
    cli__http_resp_free(&r);

    assert_int_equal(feed_all("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: x\r\n\r\n",
                              step, false, &r, err), 1);
    assert_string_equal(r.body.data, "hello!");
    cli__http_resp_free(&r);

    /* Interim 100, then a body delimited by close, LF-only lines. */
    assert_int_equal(feed_all("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 404 Not Found\n\nnope",
                              step, true, &r, err), 1);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body.data, "nope");
    cli__http_resp_free(&r);
  }
  assert_int_equal(feed_all("", 1, true, &r, err), -1);
  assert_string_equal(err, "EOF");
  cli__http_resp_free(&r);
  assert_int_equal(feed_all("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 1, true, &r,
                            err), -1);
  assert_string_equal(err, "unexpected EOF");
  cli__http_resp_free(&r);
  assert_int_equal(feed_all("SSH-2.0-OpenSSH\r\n", 1, false, &r, err), -1);
  cli__http_resp_free(&r);
  assert_int_equal(feed_all("HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", 1, false, &r,
                            err), -1);
  assert_string_equal(err, "response body larger than 1024 bytes");
  cli__http_resp_free(&r);
  assert_int_equal(feed_all("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 1,
                            false, &r, err), -1);
  cli__http_resp_free(&r);
  assert_int_equal(feed_all("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 1, false, &r,
                            err), -1);
  cli__http_resp_free(&r);
  /* Endless headers are cut at the cap. */
  struct cli__http_parser p;
  cli__http_parser_init(&p, 1024);
  memset(&r, 0, sizeof(r));
  char line[1024];
  memset(line, 'a', sizeof(line));
  line[0] = 'X';
  line[1] = ':';
  int rc = cli__http_parser_feed(&p, "HTTP/1.1 200 OK\r\n", 17, false, &r, err, 256);
  for (int i = 0; i < 100 && rc == 0; i++) rc = cli__http_parser_feed(&p, line, 1024, false,
                                                                       &r, err, 256);
  assert_int_equal(rc, -1);
  cli__http_parser_free(&p);
  cli__http_resp_free(&r);
}

/* ---- KV JSON ---- */

static void test_kv_decode_pretty_export(void **state)
{
  (void)state;
  const char *json =
      "[{\"LockIndex\":1,\"Key\":\"a/<b>\",\"Flags\":18446744073709551615,\"Value\":\"aGk=\","
      "\"Session\":\"s1\",\"CreateIndex\":5,\"ModifyIndex\":6},"
      "{\"key\":\"c\",\"Flags\":0,\"Value\":null,\"CreateIndex\":7,\"ModifyIndex\":7}]";
  struct cli__kvpair *ps;
  size_t n;
  char err[256];
  assert_int_equal(cli__kv_decode(json, strlen(json), &ps, &n, err, sizeof(err)), 0);
  assert_int_equal(n, 2);
  assert_string_equal(ps[0].key, "a/<b>");
  assert_true(ps[0].flags == UINT64_MAX);
  assert_string_equal(ps[0].value.data, "hi");
  assert_string_equal(ps[1].key, "c");
  assert_int_equal(ps[1].value.len, 0);

  struct buf b = BUF_INIT;
  cli__kv_pretty(&b, &ps[0], false, false);
  assert_string_equal(b.data, "CreateIndex      5\n"
                              "Flags            18446744073709551615\n"
                              "Key              a/<b>\n"
                              "LockIndex        1\n"
                              "ModifyIndex      6\n"
                              "Session          s1\n"
                              "Value            hi");
  buf_reset(&b);
  cli__kv_pretty(&b, &ps[1], true, true);
  assert_string_equal(b.data, "CreateIndex      7\nFlags            0\nKey              c\n"
                              "LockIndex        0\nModifyIndex      7\nSession          -\n");
  buf_reset(&b);
  cli__kv_export_json(&b, ps, n);
  assert_string_equal(b.data, "[\n"
                              "\t{\n"
                              "\t\t\"key\": \"a/\\u003cb\\u003e\",\n"
                              "\t\t\"flags\": 18446744073709551615,\n"
                              "\t\t\"value\": \"aGk=\"\n"
                              "\t},\n"
                              "\t{\n"
                              "\t\t\"key\": \"c\",\n"
                              "\t\t\"flags\": 0,\n"
                              "\t\t\"value\": \"\"\n"
                              "\t}\n"
                              "]");
  buf_reset(&b);
  cli__kv_export_json(&b, NULL, 0);
  assert_string_equal(b.data, "[]");
  buf_free(&b);
  cli__kv_free(ps, n);

  assert_int_equal(cli__kv_decode("{}", 2, &ps, &n, err, sizeof(err)), -1);
  assert_int_equal(cli__kv_decode("[{\"Key\":1}]", 11, &ps, &n, err, sizeof(err)), -1);
  assert_int_equal(cli__kv_decode("[", 1, &ps, &n, err, sizeof(err)), -1);
  assert_int_equal(cli__kv_decode("[]", 2, &ps, &n, err, sizeof(err)), 0);
  assert_int_equal(n, 0);
  assert_null(ps);
}

static void test_kv_import_parse(void **state)
{
  (void)state;
  const char *json = "[{\"KEY\":\"x\",\"Flags\":42,\"value\":\"YQ==\",\"extra\":[1]},"
                     "{\"key\":\"d/\",\"flags\":18446744073709551615,\"value\":\"\","
                     "\"namespace\":\"ns1\"}]";
  struct cli__kv_entry *es;
  size_t n;
  char err[256];
  assert_int_equal(cli__kv_import_parse(json, strlen(json), &es, &n, err, sizeof(err)), 0);
  assert_int_equal(n, 2);
  assert_string_equal(es[0].key, "x");
  assert_int_equal(es[0].flags, 42);
  assert_string_equal(es[0].value, "YQ==");
  assert_null(es[0].ns);
  assert_true(es[1].flags == UINT64_MAX);
  assert_string_equal(es[1].ns, "ns1");
  cli__kv_entries_free(es, n);

  assert_int_equal(cli__kv_import_parse("null", 4, &es, &n, err, sizeof(err)), 0);
  assert_int_equal(n, 0);
  assert_int_equal(cli__kv_import_parse("{\"a\":1}", 7, &es, &n, err, sizeof(err)), -1);
  assert_string_equal(err, "json: cannot unmarshal object into Go value of type "
                           "[]*impexp.Entry");
  assert_int_equal(cli__kv_import_parse("[{\"flags\":-1}]", 14, &es, &n, err, 256), -1);
  assert_int_equal(cli__kv_import_parse("[{\"flags\":99999999999999999999}]", 32, &es, &n,
                                        err, 256), -1);
  assert_int_equal(cli__kv_import_parse("[null]", 6, &es, &n, err, 256), -1);
  const char *marked = "[{\"key\":\"\\u0001123\"}]";
  assert_int_equal(cli__kv_import_parse(marked, strlen(marked), &es, &n, err, 256), 0);
  assert_int_equal(es[0].key[0], 1);
  cli__kv_entries_free(es, n);
  assert_int_equal(cli__kv_import_parse("nope", 4, &es, &n, err, 256), -1);
}

/* ---- Dispatch and help ---- */

static void test_dispatch_help_and_codes(void **state)
{
  (void)state;
  env_table[0] = NULL;
  struct run r = RUN(NULL, "kv", "get", "-h");
  assert_int_equal(r.code, 0);
  assert_true(strncmp(r.out, "Usage: concord kv get [options] [KEY_OR_PREFIX]\n", 48) == 0);
  assert_non_null(strstr(r.out, "\n\nHTTP API Options\n\n  -ca-file=<value>\n"));
  assert_non_null(strstr(r.out, "\n\nCommand Options\n\n  -base64\n"));
  assert_non_null(strstr(r.out, "  -separator=<string>\n"));
  assert_string_equal(r.err, "");
  assert_int_equal(r.out[r.outlen - 1], '\n');
  assert_true(r.out[r.outlen - 2] != '\n');
  run_free(&r);

  /* -help anywhere, even after positionals; but not after "--". */
  r = RUN(NULL, "kv", "put", "key", "-help");
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "Usage: concord kv put [options] KEY [DATA]"));
  run_free(&r);

  r = RUN(NULL, "kv", "-h");
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "\n\nSubcommands:\n"
                                "    delete    Removes data from the KV store\n"
                                "    export    Exports a tree from the KV store as JSON\n"
                                "    get       Retrieves or lists data from the KV store\n"
                                "    import    Imports a tree stored as JSON to the KV store\n"
                                "    put       Sets or updates data in the KV store\n"));
  run_free(&r);

  r = RUN(NULL, "kv");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_non_null(strstr(r.err, "Usage: concord kv <subcommand>"));
  run_free(&r);

  r = RUN(NULL, "kv", "frobnicate");
  assert_int_equal(r.code, 1);
  run_free(&r);

  r = RUN(NULL, "bogus");
  assert_int_equal(r.code, 127);
  assert_non_null(strstr(r.err, "Available commands are:\n    agent  "));
  assert_non_null(strstr(r.err, "    version"));
  assert_non_null(strstr(r.err, "Prints the Concord version\n"));
  run_free(&r);

  r = RUN(NULL, "-x", "members");
  assert_int_equal(r.code, 1);
  assert_true(strncmp(r.err, "Invalid flags before the subcommand.", 36) == 0);
  run_free(&r);

  r = RUN(NULL, "--version");
  assert_int_equal(r.code, 0);
  assert_true(strncmp(r.out, "Concord v", 9) == 0);
  run_free(&r);

  r = RUN(NULL, "version");
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "\nProtocol 2 spoken by default, understands 2 to 3 (agent "
                                "will automatically use protocol >2 when speaking to "
                                "compatible agents)\n"));
  assert_non_null(strstr(r.out, "Consul v1.17.0"));
  assert_string_equal(r.out + r.outlen - 2, "\n\n");
  run_free(&r);

  r = RUN(NULL, "version", "-format=json");
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "   \"Version\": \"0.1.0\",\n"));
  run_free(&r);

  r = RUN(NULL, "version", "-format=xml");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Unknown format: xml\n");
  run_free(&r);

  r = RUN(NULL, "members", "-wat");
  assert_int_equal(r.code, 1);
  assert_true(strncmp(r.err, "flag provided but not defined: -wat\nUsage:\n", 43) == 0);
  run_free(&r);

  /* Every command's help is complete and has its flags in the right sections. */
  const char *cmds[][3] = {{"version", NULL, NULL}, {"info", NULL, NULL},
                           {"members", NULL, NULL}, {"kv", "get", NULL},
                           {"kv", "put", NULL},     {"kv", "delete", NULL},
                           {"kv", "export", NULL},  {"kv", "import", NULL}};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    r = cmds[i][1] ? RUN(NULL, cmds[i][0], cmds[i][1], "-h") : RUN(NULL, cmds[i][0], "-h");
    assert_int_equal(r.code, 0);
    assert_true(strncmp(r.out, "Usage: concord ", 15) == 0);
    if (strcmp(cmds[i][0], "version") != 0) assert_non_null(strstr(r.out, "-http-addr=<address>"));
    run_free(&r);
  }
}

/* The command list's layout, as mitchellh/cli prints it: a usage line, then one line per
 * command, sorted, names padded so that every description starts in the same column (the
 * longest name plus four spaces). Checked as properties so that adding a command needs no
 * edit here; the commands that must be there are named. */
static void test_cli_usage_to_stdout(void **state)
{
  (void)state;
  struct buf b = BUF_INIT;
  cli__top_help(&b);
  const char *head = "Usage: concord [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n";
  assert_true(strncmp(b.data, head, strlen(head)) == 0);
  char prev[64] = "";
  size_t desc_col = 0, longest = 0, lines = 0;
  for (const char *line = b.data + strlen(head); *line;) {
    const char *nl = strchr(line, '\n');
    assert_non_null(nl);
    assert_true(strncmp(line, "    ", 4) == 0);
    const char *name = line + 4;
    size_t nlen = strcspn(name, " ");
    char cur[64];
    assert_true(nlen > 0 && nlen < sizeof cur);
    memcpy(cur, name, nlen);
    cur[nlen] = '\0';
    assert_true(strcmp(prev, cur) < 0); /* sorted */
    memcpy(prev, cur, nlen + 1);
    size_t col = 4 + nlen + strspn(name + nlen, " ");
    if (!desc_col) desc_col = col;
    assert_int_equal(col, desc_col); /* descriptions aligned */
    assert_true(line + col < nl);    /* and present */
    if (nlen > longest) longest = nlen;
    lines++;
    line = nl + 1;
  }
  assert_int_equal(desc_col, 4 + longest + 4);
  assert_true(lines >= 10);
  const char *required[] = {"    agent ", "    catalog ", "    info ", "    kv ", "    members ",
                            "    reload ", "    services ", "    validate ", "    version "};
  for (size_t i = 0; i < sizeof required / sizeof *required; i++)
    assert_non_null(strstr(b.data, required[i]));
  assert_non_null(strstr(b.data, "Prints the Concord version\n"));
  buf_free(&b);
}

/* ---- Commands against the scripted server ---- */

static void test_kv_get_variants(void **state)
{
  (void)state;
  struct fake f;
  const char *pair = "[{\"LockIndex\":0,\"Key\":\"foo\",\"Flags\":3,\"Value\":\"YmFy\","
                     "\"CreateIndex\":4,\"ModifyIndex\":9}]";
  const char *pairs = "[{\"Key\":\"p/a\",\"Value\":\"MQ==\",\"CreateIndex\":1,\"ModifyIndex\":1},"
                      "{\"Key\":\"p/b\",\"Value\":null,\"CreateIndex\":2,\"ModifyIndex\":2}]";
  fake_start(&f, 7, reply(200, pair), reply(200, pair), reply(404, ""),
             reply(200, "[\"p/\",\"q\"]"), reply(200, pairs), reply(200, pairs),
             reply(200, pairs));
  set_addr(f.port);

  struct run r = RUN(NULL, "kv", "get", "/foo");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "bar\n");
  assert_true(strncmp(f.requests[0], "GET /v1/kv/foo HTTP/1.1\r\n", 25) == 0);
  assert_null(strstr(f.requests[0], "X-Consul-Token"));
  run_free(&r);

  r = RUN(NULL, "kv", "get", "-detailed", "-base64", "-stale", "foo");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "CreateIndex      4\nFlags            3\nKey              foo\n"
                             "LockIndex        0\nModifyIndex      9\nSession          -\n"
                             "Value            YmFy\n");
  assert_true(strncmp(f.requests[1], "GET /v1/kv/foo?stale= HTTP/1.1\r\n", 32) == 0);
  run_free(&r);

  r = RUN(NULL, "kv", "get", "missing/key");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "Error! No key exists at: missing/key\n");
  run_free(&r);

  r = RUN(NULL, "kv", "get", "-keys", "-separator=/", "p");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "p/\nq\n");
  assert_true(strncmp(f.requests[3], "GET /v1/kv/p?keys=&separator=%2F HTTP/1.1\r\n", 43) == 0);
  run_free(&r);

  r = RUN(NULL, "kv", "get", "-recurse", "p");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "p/a:1\np/b:\n");
  assert_true(strncmp(f.requests[4], "GET /v1/kv/p?recurse= HTTP/1.1\r\n", 32) == 0);
  run_free(&r);

  r = RUN(NULL, "kv", "get", "-recurse", "-detailed", "p");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "CreateIndex      1\nFlags            0\nKey              p/a\n"
                             "LockIndex        0\nModifyIndex      1\nSession          -\n"
                             "Value            1\n\n"
                             "CreateIndex      2\nFlags            0\nKey              p/b\n"
                             "LockIndex        0\nModifyIndex      2\nSession          -\n"
                             "Value            \n");
  run_free(&r);

  r = RUN(NULL, "kv", "get", "-recurse", "-keys", "p");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "p/a\np/b\n");
  run_free(&r);
  fake_stop(&f);

  /* Argument errors never reach the network. */
  r = RUN(NULL, "kv", "get");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error! Missing KEY argument\n");
  run_free(&r);
  r = RUN(NULL, "kv", "get", "a", "b");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Too many arguments (expected 1, got 2)\n");
  run_free(&r);
}

static void test_kv_put_variants(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 7, reply(200, "true"), reply(200, "false"), reply(200, "false"),
             reply(200, "true"), reply(200, "false"), reply(500, "rpc error: boom\n"),
             reply(200, "true"));
  set_addr(f.port);
  const char *tok = "CONSUL_HTTP_TOKEN=secret-token";
  env_table[1] = tok;
  env_table[2] = NULL;

  struct run r = RUN(NULL, "kv", "put", "-flags=7", "a b/c", "hello world");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Success! Data written to: a b/c\n");
  assert_true(strncmp(f.requests[0], "PUT /v1/kv/a%20b/c?flags=7 HTTP/1.1\r\n", 37) == 0);
  assert_non_null(strstr(f.requests[0], "\r\nX-Consul-Token: secret-token\r\n"));
  assert_non_null(strstr(f.requests[0], "\r\nContent-Length: 11\r\n\r\nhello world"));
  run_free(&r);
  env_table[1] = NULL;

  r = RUN(NULL, "kv", "put", "-cas", "-modify-index=5", "k", "v");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error! Did not write to k: CAS failed\n");
  assert_true(strncmp(f.requests[1], "PUT /v1/kv/k?cas=5 HTTP/1.1\r\n", 29) == 0);
  run_free(&r);

  r = RUN(NULL, "kv", "put", "-cas", "k", "v");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error! Did not write to k: CAS performed with index=0 and key "
                             "already exists.\n");
  assert_true(strncmp(f.requests[2], "PUT /v1/kv/k?cas=0 HTTP/1.1\r\n", 29) == 0);
  run_free(&r);

  r = RUN("from stdin\n", "kv", "put", "-acquire", "-session=abc", "lock", "-");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Success! Lock acquired on: lock\n");
  assert_true(strncmp(f.requests[3], "PUT /v1/kv/lock?acquire=abc HTTP/1.1\r\n", 38) == 0);
  assert_non_null(strstr(f.requests[3], "\r\n\r\nfrom stdin\n"));
  run_free(&r);

  r = RUN(NULL, "kv", "put", "-release", "-session=abc", "lock");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error! Did not release lock\n");
  run_free(&r);

  r = RUN(NULL, "kv", "put", "k", "v");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error! Failed writing data: Unexpected response code: 500 (rpc "
                             "error: boom)\n");
  run_free(&r);

  r = RUN(NULL, "kv", "put", "-base64", "bin", "AAEC/w==");
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(f.requests[6], "\r\nContent-Length: 4\r\n"));
  assert_memory_equal(strstr(f.requests[6], "\r\n\r\n") + 4, "\x00\x01\x02\xff", 4);
  run_free(&r);
  fake_stop(&f);

  /* Local errors. */
  r = RUN(NULL, "kv", "put");
  assert_string_equal(r.err, "Error! Missing KEY argument\n");
  assert_int_equal(r.code, 1);
  run_free(&r);
  r = RUN(NULL, "kv", "put", "a", "b", "c");
  assert_string_equal(r.err, "Error! Too many arguments (expected 1 or 2, got 3)\n");
  run_free(&r);
  r = RUN(NULL, "kv", "put", "-acquire", "a");
  assert_string_equal(r.err, "Error! Missing -session (required with -acquire and -release)\n");
  run_free(&r);
  r = RUN(NULL, "kv", "put", "a", "@/nonexistent/file");
  assert_string_equal(r.err, "Error! Failed to read file: open /nonexistent/file: no such file "
                             "or directory\n");
  assert_int_equal(r.code, 1);
  run_free(&r);
  r = RUN(NULL, "kv", "put", "-base64", "a", "!!!!");
  assert_string_equal(r.err, "Error! Cannot base 64 decode data: illegal base64 data at input "
                             "byte 0\n");
  assert_int_equal(r.code, 1);
  run_free(&r);
  r = RUN(NULL, "kv", "put", "/abs", "v");
  assert_string_equal(r.err, "Error! Failed writing data: Invalid key. Key must not begin with a "
                             "'/': /abs\n");
  run_free(&r);
  r = RUN(NULL, "kv", "put", "-flags=abc", "a");
  assert_int_equal(r.code, 1);
  assert_true(strncmp(r.err, "invalid value \"abc\" for flag -flags: parse error\nUsage:\n", 55) ==
              0);
  run_free(&r);
}

static void test_kv_delete_variants(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 4, reply(200, "true"), reply(200, "true"), reply(200, "false"),
             reply(403, "Permission denied"));
  set_addr(f.port);
  struct run r = RUN(NULL, "kv", "delete", "/k");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Success! Deleted key: k\n");
  assert_true(strncmp(f.requests[0], "DELETE /v1/kv/k HTTP/1.1\r\n", 26) == 0);
  run_free(&r);
  r = RUN(NULL, "kv", "delete", "-recurse", "");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Success! Deleted keys with prefix: \n");
  assert_true(strncmp(f.requests[1], "DELETE /v1/kv/?recurse= HTTP/1.1\r\n", 34) == 0);
  run_free(&r);
  r = RUN(NULL, "kv", "delete", "-cas", "-modify-index=3", "k");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error! Did not delete key k: CAS failed\n");
  run_free(&r);
  r = RUN(NULL, "kv", "delete", "k");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error deleting key k: Unexpected response code: 403 (Permission "
                             "denied)\n");
  run_free(&r);
  fake_stop(&f);

  const char *errs[][4] = {
      {"-cas", "k", NULL, "Cannot delete a key that does not exist. Provide a -modify-index "
                          "greater than than 0.\n"},
      {"-modify-index=2", "k", NULL, "Cannot specify -modify-index without -cas!\n"},
      {"-cas", "-modify-index=2", "-recurse", "Cannot specify both -cas and -recurse!\n"},
  };
  for (size_t i = 0; i < 3; i++) {
    r = errs[i][2] ? RUN(NULL, "kv", "delete", errs[i][0], errs[i][1], errs[i][2], "k")
                   : RUN(NULL, "kv", "delete", errs[i][0], errs[i][1]);
    assert_int_equal(r.code, 1);
    assert_string_equal(r.err, errs[i][3]);
    run_free(&r);
  }
  r = RUN(NULL, "kv", "delete");
  assert_string_equal(r.err, "Error! Missing KEY argument\n");
  run_free(&r);
}

static void test_kv_export_import(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 5, reply(200, "[{\"Key\":\"x/1\",\"Flags\":2,\"Value\":\"YQ==\"}]"), reply(404, ""),
             reply(200, "true"), reply(200, "true"), reply(500, "nope"));
  set_addr(f.port);
  struct run r = RUN(NULL, "kv", "export", "/x");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "[\n\t{\n\t\t\"key\": \"x/1\",\n\t\t\"flags\": 2,\n\t\t\"value\": "
                             "\"YQ==\"\n\t}\n]\n");
  assert_true(strncmp(f.requests[0], "GET /v1/kv/x?recurse= HTTP/1.1\r\n", 32) == 0);
  run_free(&r);
  r = RUN(NULL, "kv", "export", "nothing");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "[]\n");
  run_free(&r);

  const char *doc = "[{\"key\":\"a//b\",\"flags\":5,\"value\":\"aGk=\"},"
                    "{\"key\":\"dir/\",\"flags\":0,\"value\":\"\"},"
                    "{\"key\":\"c\",\"flags\":0,\"value\":\"\"}]";
  r = RUN(doc, "kv", "import", "-prefix=pre", "-");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "Imported: pre/a/b\nImported: pre/dir/\n");
  assert_string_equal(r.err, "Error! Failed writing data for key pre/c: Unexpected response "
                             "code: 500 (nope)\n");
  assert_true(strncmp(f.requests[2], "PUT /v1/kv/pre/a/b?flags=5 HTTP/1.1\r\n", 37) == 0);
  assert_non_null(strstr(f.requests[2], "\r\n\r\nhi"));
  assert_true(strncmp(f.requests[3], "PUT /v1/kv/pre/dir/ HTTP/1.1\r\n", 30) == 0);
  run_free(&r);
  fake_stop(&f);

  r = RUN(NULL, "kv", "import");
  assert_string_equal(r.err, "Error! Missing DATA argument\n");
  run_free(&r);
  r = RUN(NULL, "kv", "import", "");
  assert_string_equal(r.err, "Error! Empty DATA argument\n");
  run_free(&r);
  r = RUN(NULL, "kv", "import", "{\"a\":1}");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Cannot unmarshal data: json: cannot unmarshal object into Go value "
                             "of type []*impexp.Entry\n");
  run_free(&r);
  r = RUN(NULL, "kv", "import", "[{\"key\":\"k\",\"value\":\"***\"}]");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error base 64 decoding value for key k: illegal base64 data at "
                             "input byte 0\n");
  run_free(&r);
  r = RUN(NULL, "kv", "import", "@/nonexistent.json");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error! Failed to read file: open /nonexistent.json: no such file "
                             "or directory\n");
  run_free(&r);
}

static void test_members_and_info(void **state)
{
  (void)state;
  const char *members =
      "[{\"Name\":\"zeta\",\"Addr\":\"10.0.0.2\",\"Port\":8301,\"Tags\":{\"role\":\"node\","
      "\"dc\":\"dc1\",\"build\":\"1.17.0:abc\",\"vsn\":\"2\"},\"Status\":1},"
      "{\"Name\":\"alpha\",\"Addr\":\"::ffff:10.0.0.1\",\"Port\":8301,\"Tags\":{\"role\":"
      "\"consul\",\"dc\":\"dc1\",\"vsn\":\"2\",\"build\":\"1.17.0\"},\"Status\":4},"
      "{\"Name\":\"beta\",\"Addr\":\"fe80::1\",\"Port\":1,\"Tags\":{},\"Status\":3}]";
  struct fake f;
  fake_start(&f, 4, reply(200, members), reply(200, members), reply(200, members),
             reply(200, "{\"Config\":{},\"Stats\":{\"raft\":{\"term\":\"2\",\"applied_index\":"
                        "\"9\"},\"agent\":{\"checks\":\"0\"}}}"));
  set_addr(f.port);
  struct run r = RUN(NULL, "members");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out,
                      "Node   Address        Status  Type     Build   Protocol  DC   Partition  Segment\n"
                      "alpha  10.0.0.1:8301  failed  server   1.17.0  2         dc1  default    <all>\n"
                      /* columnize pads empty fields too, leaving trailing blanks */
                      "beta   [fe80::1]:1    left    unknown                                    \n"
                      "zeta   10.0.0.2:8301  alive   client   1.17.0  2         dc1  default    <default>\n");
  assert_true(strncmp(f.requests[0], "GET /v1/agent/members?segment=_all HTTP/1.1\r\n", 45) == 0);
  run_free(&r);

  r = RUN(NULL, "members", "-detailed", "-status=alive|failed", "-wan");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out,
                      "Node   Address        Status  Tags\n"
                      "alpha  10.0.0.1:8301  failed  ap=default,build=1.17.0,dc=dc1,role=consul,segment=<all>,vsn=2\n"
                      "zeta   10.0.0.2:8301  alive   ap=default,build=1.17.0:abc,dc=dc1,role=node,segment=<default>,vsn=2\n");
  assert_true(strncmp(f.requests[1], "GET /v1/agent/members?segment=_all&wan=1 HTTP/1.1\r\n",
                      51) == 0);
  run_free(&r);

  r = RUN(NULL, "members", "-status=leaving");
  assert_int_equal(r.code, 2);
  assert_string_equal(r.out, "");
  run_free(&r);

  r = RUN(NULL, "info");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "agent:\n\tchecks = 0\nraft:\n\tapplied_index = 9\n\tterm = 2\n");
  run_free(&r);
  fake_stop(&f);

  r = RUN(NULL, "members", "-status=(");
  assert_int_equal(r.code, 1);
  assert_true(strncmp(r.err, "Failed to compile status regexp: ", 33) == 0);
  run_free(&r);
}

static void test_transport_errors(void **state)
{
  (void)state;
  int port = dead_port();
  set_addr(port);
  char want[256];
  struct run r = RUN(NULL, "kv", "get", "k");
  assert_int_equal(r.code, 1);
  snprintf(want, sizeof(want), "Error querying Consul agent: Get \"http://127.0.0.1:%d/v1/kv/k\": "
           "dial tcp 127.0.0.1:%d: connect: connection refused\n", port, port);
  assert_string_equal(r.err, want);
  run_free(&r);

  r = RUN(NULL, "members");
  assert_int_equal(r.code, 1);
  assert_true(strncmp(r.err, "Error retrieving members: Get ", 30) == 0);
  run_free(&r);

  r = RUN(NULL, "info");
  assert_true(strncmp(r.err, "Error querying agent: Get ", 26) == 0);
  run_free(&r);

  /* -http-addr beats the environment. */
  struct fake f;
  fake_start(&f, 1, reply(200, "true"));
  char flag[64];
  snprintf(flag, sizeof(flag), "-http-addr=http://127.0.0.1:%d", f.port);
  r = RUN(NULL, "kv", "delete", flag, "k");
  assert_int_equal(r.code, 0);
  run_free(&r);
  fake_stop(&f);

  /* The server hangs up without answering. */
  fake_start(&f, 1, "");
  set_addr(f.port);
  r = RUN(NULL, "kv", "get", "k");
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "/v1/kv/k\": EOF\n"));
  run_free(&r);
  fake_stop(&f);

  env_table[0] = "CONSUL_HTTP_ADDR=https://127.0.0.1:8501";
  env_table[1] = NULL;
  r = RUN(NULL, "kv", "get", "k");
  assert_int_equal(r.code, 1);
  assert_true(strncmp(r.err, "Error connecting to Consul agent: HTTPS", 39) == 0);
  run_free(&r);
  env_table[0] = "CONSUL_HTTP_SSL=true";
  r = RUN(NULL, "members");
  assert_int_equal(r.code, 1);
  assert_true(strncmp(r.err, "Error connecting to Consul agent: HTTPS", 39) == 0);
  run_free(&r);
  env_table[0] = "CONSUL_HTTP_ADDR=gopher://x:1";
  r = RUN(NULL, "info");
  assert_string_equal(r.err, "Error connecting to Consul agent: Unknown protocol scheme: "
                             "gopher\n");
  run_free(&r);
  env_table[0] = "CONSUL_HTTP_TOKEN_FILE=/nonexistent/token";
  r = RUN(NULL, "info");
  assert_string_equal(r.err, "Error connecting to Consul agent: Error loading token file: open "
                             "/nonexistent/token: no such file or directory\n");
  run_free(&r);
  env_table[0] = NULL;
}

static void test_token_file_wins(void **state)
{
  (void)state;
  char path[] = "/tmp/concord-cli-token-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "  file-token\n", 13), 13);
  close(fd);
  struct fake f;
  fake_start(&f, 2, reply(200, "true"), reply(200, "true"));
  set_addr(f.port);
  char tf[128];
  snprintf(tf, sizeof(tf), "-token-file=%s", path);
  env_table[1] = "CONSUL_HTTP_AUTH=user:pw";
  env_table[2] = NULL;
  struct run r = RUN(NULL, "kv", "delete", "-token=flag-token", tf, "k");
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(f.requests[0], "\r\nX-Consul-Token: file-token\r\n"));
  assert_non_null(strstr(f.requests[0], "\r\nAuthorization: Basic dXNlcjpwdw==\r\n"));
  run_free(&r);
  env_table[1] = "CONSUL_HTTP_TOKEN=env-token";
  r = RUN(NULL, "kv", "delete", "-token=flag-token", "-datacenter=dc2", "k");
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(f.requests[1], "\r\nX-Consul-Token: flag-token\r\n"));
  assert_true(strncmp(f.requests[1], "DELETE /v1/kv/k?dc=dc2 HTTP/1.1\r\n", 33) == 0);
  run_free(&r);
  fake_stop(&f);
  unlink(path);
  env_table[1] = NULL;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flags_parse_go_rules),
      cmocka_unit_test(test_flags_errors_print_go_usage),
      cmocka_unit_test(test_wrap_matches_kr_text),
      cmocka_unit_test(test_flags_usage_layout),
      cmocka_unit_test(test_addr_parse),
      cmocka_unit_test(test_escaping_and_quote),
      cmocka_unit_test(test_columnize),
      cmocka_unit_test(test_path_clean_join),
      cmocka_unit_test(test_b64_strict),
      cmocka_unit_test(test_http_parser),
      cmocka_unit_test(test_kv_decode_pretty_export),
      cmocka_unit_test(test_kv_import_parse),
      cmocka_unit_test(test_dispatch_help_and_codes),
      cmocka_unit_test(test_cli_usage_to_stdout),
      cmocka_unit_test(test_kv_get_variants),
      cmocka_unit_test(test_kv_put_variants),
      cmocka_unit_test(test_kv_delete_variants),
      cmocka_unit_test(test_kv_export_import),
      cmocka_unit_test(test_members_and_info),
      cmocka_unit_test(test_transport_errors),
      cmocka_unit_test(test_token_file_wins),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
