/* test_cli_event.c -- `concord event` and `concord exec` against a scripted HTTP server: the
 * exact requests (paths, query parameters, bodies: Consul's job spec and _rexec payload),
 * Consul's output and messages, exit codes, and exec's clean-up after a failure. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../lib/cli_harness.h"

static bool starts(const char *s, const char *prefix)
{
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool request_is(const char *req, const char *line)
{
  size_t n = strlen(line);
  return req && strncmp(req, line, n) == 0 && strncmp(req + n, " HTTP/1.1\r\n", 11) == 0;
}

static const char *body_of(const char *req)
{
  const char *b = req ? strstr(req, "\r\n\r\n") : NULL;
  return b ? b + 4 : "";
}

#define SELF "{\"Config\":{\"Datacenter\":\"dc1\",\"NodeName\":\"n1\"}}"
#define EVENT_ANSWER                                                                          \
  "{\"ID\":\"b54fe110-7af5-cafc-d1fb-afc8ba432b1c\",\"Name\":\"deploy\",\"Payload\":null,"   \
  "\"NodeFilter\":\"\",\"ServiceFilter\":\"\",\"TagFilter\":\"\",\"Version\":1,\"LTime\":0}"

static void test_event(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 6, reply(200, SELF), reply(200, EVENT_ANSWER), reply(200, SELF),
             reply(200, EVENT_ANSWER), reply(200, SELF),
             reply(500, "user event exceeds configured limit of 512 bytes before encoding"));
  set_addr(f.port);
  struct run r = RUN(NULL, "event", "-name", "deploy", "-node", "^web", "-service", "api",
                     "-tag", "v1", "the payload");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Event ID: b54fe110-7af5-cafc-d1fb-afc8ba432b1c\n");
  assert_string_equal(r.err, "");
  assert_true(request_is(f.requests[0], "GET /v1/agent/self"));
  assert_true(request_is(f.requests[1],
                         "PUT /v1/event/fire/deploy?node=%5Eweb&service=api&tag=v1"));
  assert_string_equal(body_of(f.requests[1]), "the payload");
  run_free(&r);
  /* No payload: no body at all. */
  r = RUN(NULL, "event", "-name", "deploy");
  assert_int_equal(r.code, 0);
  assert_true(request_is(f.requests[3], "PUT /v1/event/fire/deploy"));
  assert_null(strcasestr(f.requests[3], "Content-Length: 1"));
  assert_string_equal(body_of(f.requests[3]), "");
  run_free(&r);
  r = RUN(NULL, "event", "-name", "big", "x");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error firing event: Unexpected response code: 500 (user event "
                             "exceeds configured limit of 512 bytes before encoding)\n");
  run_free(&r);
  fake_stop(&f); /* joins the server thread: every exchange counted */
  assert_int_equal(f.served, 6);

  /* Refused before any request. */
  r = RUN(NULL, "event");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Event name must be specified\n\nUsage: concord event [options] "
                            "[payload]\n"));
  run_free(&r);
  r = RUN(NULL, "event", "-name", "x", "-tag", "v1");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Cannot provide tag filter without service filter.\n");
  run_free(&r);
  r = RUN(NULL, "event", "-name", "x", "-node", "(");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Failed to compile node filter regexp: error parsing regexp: "));
  run_free(&r);
  r = RUN(NULL, "event", "-name", "x", "a", "b");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Too many command line arguments.\n\nUsage:"));
  run_free(&r);
  int port = dead_port();
  set_addr(port);
  r = RUN(NULL, "event", "-name", "x");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Error querying Consul agent: Get \"http://127.0.0.1:"));
  run_free(&r);
}

#define SESSION "{\"ID\":\"adf4238a-882b-9ddc-4a9d-5b6758e4159e\"}"

static void test_exec_requests_and_cleanup(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 7, reply(200, SELF), reply(200, SESSION), reply(200, "true"),
             reply(200, EVENT_ANSWER), reply(500, "boom"), reply(200, "true"), reply(200, "true"));
  set_addr(f.port);
  struct run r = RUN(NULL, "exec", "-wait-repl", "0s", "-wait", "3s", "-node", "web",
                     "uptime", "-p");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "Failed to read results: Unexpected response code: 500 (boom)\n");
  assert_true(request_is(f.requests[0], "GET /v1/agent/self"));
  assert_true(request_is(f.requests[1], "PUT /v1/session/create"));
  assert_string_equal(body_of(f.requests[1]),
                      "{\"Name\":\"Remote Exec\",\"Behavior\":\"delete\",\"TTL\":\"15s\"}");
  /* The job spec, held by the session: Consul's rExecSpec JSON, Wait in nanoseconds. */
  assert_true(request_is(f.requests[2], "PUT /v1/kv/_rexec/adf4238a-882b-9ddc-4a9d-5b6758e4159e/"
                                        "job?acquire=adf4238a-882b-9ddc-4a9d-5b6758e4159e"));
  assert_string_equal(body_of(f.requests[2]), "{\"Command\":\"uptime -p\",\"Wait\":3000000000}");
  assert_true(request_is(f.requests[3], "PUT /v1/event/fire/_rexec?node=web"));
  assert_string_equal(body_of(f.requests[3]), "{\"Prefix\":\"_rexec\",\"Session\":"
                                              "\"adf4238a-882b-9ddc-4a9d-5b6758e4159e\"}");
  /* the quiet period left, in ms: 3000 less the time spent since the event was fired */
  const char *poll = "GET /v1/kv/_rexec/adf4238a-882b-9ddc-4a9d-5b6758e4159e/?keys=&wait=";
  assert_true(starts(f.requests[4], poll));
  long left = strtol(f.requests[4] + strlen(poll), NULL, 10);
  assert_true(left > 2000 && left <= 3000);
  /* Clean-up even after the failure: the session first, then the data. */
  assert_true(request_is(f.requests[5],
                         "PUT /v1/session/destroy/adf4238a-882b-9ddc-4a9d-5b6758e4159e"));
  assert_true(request_is(f.requests[6], "DELETE /v1/kv/_rexec/adf4238a-882b-9ddc-4a9d-5b6758e4159e"
                                        "?recurse="));
  run_free(&r);
  fake_stop(&f); /* joins the server thread: every exchange counted */
  assert_int_equal(f.served, 7);

  /* -shell=false sends Args; a script from stdin is sent as base64 Script. */
  fake_start(&f, 10, reply(200, SELF), reply(200, SESSION), reply(200, "false"),
             reply(200, "true"), reply(200, "true"), reply(200, SELF), reply(200, SESSION),
             reply(200, "false"), reply(200, "true"), reply(200, "true"));
  set_addr(f.port);
  r = RUN(NULL, "exec", "-shell=false", "-prefix", "jobs/", "printf", "%s", "a b");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Failed to create job file: failed to acquire key "
                             "jobs/adf4238a-882b-9ddc-4a9d-5b6758e4159e/job\n");
  assert_string_equal(body_of(f.requests[2]),
                      "{\"Args\":[\"printf\",\"%s\",\"a b\"],\"Wait\":2000000000}");
  run_free(&r);
  r = RUN("echo hi\n", "exec", "-");
  assert_int_equal(r.code, 1);
  assert_string_equal(body_of(f.requests[7]), "{\"Script\":\"ZWNobyBoaQo=\",\"Wait\":2000000000}");
  run_free(&r);
  fake_stop(&f); /* joins the server thread: every exchange counted */
  assert_int_equal(f.served, 10);

  /* Refused before any request. */
  r = RUN(NULL, "exec");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Must specify a command to execute\n\nUsage: concord exec"));
  run_free(&r);
  r = RUN(NULL, "exec", "-shell=false", "-");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Cannot configure -shell=false when reading from stdin\n");
  run_free(&r);
  r = RUN(NULL, "exec", "-service", "(", "x");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Failed to compile service filter regexp: "));
  run_free(&r);
  r = RUN(NULL, "exec", "-wait", "x", "uptime");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "invalid value \"x\" for flag -wait: parse error"));
  run_free(&r);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_event),
      cmocka_unit_test(test_exec_requests_and_cleanup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
