/* test_config_watches.c -- config/: the "watches" key is checked at load (each watch parsed
 * as the agent will run it), watches of several files add up, and watches need the HTTP API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

static char dir[] = "/tmp/concord-test-watches-XXXXXX";

static const char *write_file(const char *name, const char *text)
{
  static char path[4][256];
  static int k;
  char *p = path[k++ % 4];
  snprintf(p, 256, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return p;
}

static int load_one(const char *text, struct config *c, char *err, size_t errlen)
{
  const char *f = write_file("w.json", text);
  char *argv[] = {"agent", "-dev", "-config-file", (char *)f};
  return config_load(4, argv, c, err, errlen);
}

static void expect_err(const char *text, const char *want)
{
  struct config c;
  char err[1024] = "";
  int rv = load_one(text, &c, err, sizeof err);
  config_free(&c);
  if (rv == 0 || !strstr(err, want)) fail_msg("%s: got %d \"%s\", want \"%s\"", text, rv, err, want);
}

static void test_bad_watches(void **state)
{
  (void)state;
  expect_err("{\"watches\": {}}", "watches must be a list of objects");
  expect_err("{\"watches\": [{\"type\":\"nope\",\"args\":[\"x\"]}]}",
             "w.json: watches[0]: Failed to parse watch: Unsupported watch type: nope");
  expect_err("{\"watches\": [{\"type\":\"key\",\"key\":\"a\",\"args\":[\"x\"]},"
             "{\"type\":\"key\",\"args\":[\"x\"]}]}",
             "watches[1]: Failed to parse watch: Must specify a single key to watch");
  expect_err("{\"watches\": [{\"type\":\"key\",\"key\":\"a\"}]}", "Must define a watch handler");
  expect_err("{\"watches\": [{\"type\":\"key\",\"key\":\"a\",\"handler_type\":\"http\"}]}",
             "requires 'http_handler_config' to be set");
  expect_err("{\"ports\": {\"http\": -1}, \"watches\": [{\"type\":\"nodes\",\"args\":[\"x\"]}]}",
             "watch plans require an HTTP or HTTPS endpoint");
}

static void test_watches_add_up(void **state)
{
  (void)state;
  const char *a = write_file("a.json", "{\"watches\": [{\"type\":\"nodes\",\"handler\":\"true\"}]}");
  const char *b = write_file("b.json", "{\"watches\": [{\"type\":\"key\",\"key\":\"k\","
                                       "\"handler_type\":\"http\",\"http_handler_config\":"
                                       "{\"path\":\"http://127.0.0.1:1/\"}}]}");
  char *argv[] = {"agent", "-dev", "-config-file", (char *)a, "-config-file", (char *)b};
  struct config c;
  char err[512];
  assert_int_equal(config_load(6, argv, &c, err, sizeof err), 0);
  assert_int_equal(json_array_size(c.watches), 2);
  json_t *w1 = json_array_get(c.watches, 1);
  assert_string_equal(json_string_value(json_object_get(w1, "source")), b);
  assert_string_equal(json_string_value(json_object_get(json_object_get(w1, "watch"), "key")), "k");
  config_free(&c);
}

int main(void)
{
  assert_non_null(mkdtemp(dir));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_watches),
      cmocka_unit_test(test_watches_add_up),
  };
  int rv = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) rv = rv ? rv : 1;
  return rv;
}
