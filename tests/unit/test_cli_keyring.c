/* test_cli_keyring.c -- `concord keygen` and `concord keyring` end to end against a scripted
 * HTTP server (tests/lib/cli_harness.h): the requests sent, stdout, stderr and exit codes as
 * Consul's command/keygen and command/keyring produce them. The endpoint itself is tested
 * against real agents in tests/integration/test_gossip_encrypt.py. */
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
#include "lib/b64.h"
#include "lib/log.h"

#include "../lib/cli_harness.h"

static bool request_is(const char *req, const char *line)
{
  size_t n = strlen(line);
  return req && strncmp(req, line, n) == 0 && strncmp(req + n, " HTTP/1.1\r\n", 11) == 0;
}

static void test_keygen(void **state)
{
  (void)state;
  struct run r = RUN(NULL, "keygen");
  assert_int_equal(r.code, 0);
  assert_int_equal(strlen(r.out), 45); /* 44 base64 characters and a newline */
  uint8_t key[64];
  size_t n;
  assert_int_equal(b64_decode(r.out, 44, key, &n), 0);
  assert_int_equal(n, 32);
  struct run r2 = RUN(NULL, "keygen");
  assert_string_not_equal(r.out, r2.out);
  run_free(&r);
  run_free(&r2);
}

static const char k1[] = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";

static void test_keyring(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 5,
             reply(200, "[{\"WAN\":false,\"Datacenter\":\"dc1\",\"Segment\":\"\",\"Keys\":"
                        "{\"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\":2},\"PrimaryKeys\":"
                        "{\"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\":2},\"NumNodes\":3}]"),
             reply(200, ""), reply(200, ""), reply(200, ""),
             reply(500, "1 error occurred:\n\t* dc1 (LAN) error: 1/3 nodes reported failure\n\n"));
  set_addr(f.port);
  struct run r = RUN(NULL, "keyring", "-list");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "==> Gathering installed encryption keys...\n\ndc1 (LAN):\n"
                             "  pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s= [2/3]\n");
  assert_true(request_is(f.requests[0], "GET /v1/operator/keyring"));
  run_free(&r);

  r = RUN(NULL, "keyring", "-install", k1);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "==> Installing new gossip encryption key...\n");
  assert_true(request_is(f.requests[1], "POST /v1/operator/keyring"));
  assert_non_null(
      strstr(f.requests[1], "{\"Key\":\"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\"}"));
  run_free(&r);

  r = RUN(NULL, "keyring", "-use", k1, "-relay-factor", "2");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "==> Changing primary gossip encryption key...\n");
  assert_true(request_is(f.requests[2], "PUT /v1/operator/keyring?relay-factor=2"));
  run_free(&r);

  r = RUN(NULL, "keyring", "-remove", k1);
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "==> Removing gossip encryption key...\n");
  assert_true(request_is(f.requests[3], "DELETE /v1/operator/keyring"));
  run_free(&r);

  r = RUN(NULL, "keyring", "-remove", k1);
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "error: Unexpected response code: 500 (1 error occurred:\n\t* dc1 "
                             "(LAN) error: 1/3 nodes reported failure)\n");
  run_free(&r);
  fake_stop(&f);

  /* Checked before any request. */
  r = RUN(NULL, "keyring", "-list", "-use", k1);
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Only a single action is allowed\n");
  run_free(&r);
  r = RUN(NULL, "keyring", "-list", "-relay-factor", "6");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error parsing relay factor: Relay factor must be in range: [0, 5]\n");
  run_free(&r);
  r = RUN(NULL, "keyring");
  assert_int_equal(r.code, 1);
  assert_true(strncmp(r.err, "Usage: concord keyring [options]", 32) == 0);
  run_free(&r);
}

int main(void)
{
  log_set_level(LOG_OFF);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keygen),
      cmocka_unit_test(test_keyring),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
