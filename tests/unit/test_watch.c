/* test_watch.c -- watch/: spec parsing with Consul's sentences, the request each type makes,
 * the plan's rules (first answer fires, same index or same result does nothing, an index
 * that went backwards restarts at 0, errors back off 5 s * n^2 up to 180 s and re-fire on
 * recovery), event pruning, and Go's JSON encoding. Driven by hand-made answers: the plan
 * is transport-free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "watch/watch.h"

static int parse(const char *json, bool agent, struct watch_spec *s, char *err, size_t errlen)
{
  json_error_t je;
  json_t *p = json_loads(json, 0, &je);
  assert_non_null(p);
  int rv = watch_spec_parse(p, agent, s, err, errlen);
  json_decref(p);
  return rv;
}

static void expect_err(const char *json, bool agent, const char *msg)
{
  struct watch_spec s;
  char err[512] = "";
  int rv = parse(json, agent, &s, err, sizeof err);
  watch_spec_free(&s);
  if (rv == 0 || strcmp(err, msg) != 0) fail_msg("%s: got %d \"%s\", want \"%s\"", json, rv, err, msg);
}

static void test_spec_errors(void **state)
{
  (void)state;
  expect_err("{}", false, "Watch type must be specified");
  expect_err("{\"type\":\"\"}", false, "Watch type must be specified");
  expect_err("{\"type\":3}", false, "Expecting type to be a string");
  expect_err("{\"type\":\"bogus\"}", false, "Unsupported watch type: bogus");
  expect_err("{\"type\":\"key\"}", false, "Must specify a single key to watch");
  expect_err("{\"type\":\"keyprefix\"}", false, "Must specify a single prefix to watch");
  expect_err("{\"type\":\"service\"}", false, "Must specify a single service to watch");
  expect_err("{\"type\":\"checks\",\"service\":\"a\",\"state\":\"any\"}", false,
             "Cannot specify service and state");
  expect_err("{\"type\":\"key\",\"key\":\"a\",\"stale\":\"yes\"}", false,
             "Expecting stale to be a boolean");
  expect_err("{\"type\":\"service\",\"service\":\"a\",\"tag\":[\"x\",1]}", false,
             "Index 1 of tag expected to be string");
  expect_err("{\"type\":\"service\",\"service\":\"a\",\"tag\":{}}", false,
             "Expecting tag to be a string or []string");
  expect_err("{\"type\":\"event\",\"stale\":true}", false, "Invalid parameters: [stale]");
  expect_err("{\"type\":\"key\",\"key\":\"a\",\"prefx\":\"b\"}", false, "Invalid parameters: [prefx]");
  /* The CLI form has no handler keys. */
  expect_err("{\"type\":\"key\",\"key\":\"a\",\"args\":[\"x\"]}", false, "Invalid parameters: [args]");
  /* The agent's handler rules. */
  expect_err("{\"type\":\"key\",\"key\":\"a\"}", true, "Must define a watch handler");
  expect_err("{\"type\":\"key\",\"key\":\"a\",\"handler\":\"x\",\"args\":[\"y\"]}", true,
             "Only one watch handler allowed");
  expect_err("{\"type\":\"key\",\"key\":\"a\",\"handler\":3}", true, "Watch handler must be a string");
  expect_err("{\"type\":\"key\",\"key\":\"a\",\"args\":\"x\"}", true, "Watch args must be a list of strings");
  expect_err("{\"type\":\"key\",\"key\":\"a\",\"handler_type\":\"ftp\",\"args\":[\"x\"]}", true,
             "Handler type 'ftp' not recognized");
  expect_err("{\"type\":\"key\",\"key\":\"a\",\"handler_type\":\"http\"}", true,
             "Handler type 'http' requires 'http_handler_config' to be set");
  expect_err("{\"type\":\"key\",\"key\":\"a\",\"handler_type\":\"http\",\"http_handler_config\":{}}",
             true, "Failed to parse 'http_handler_config': Requires 'path' to be set");
  expect_err("{\"type\":\"key\",\"key\":\"a\",\"handler_type\":\"http\",\"http_handler_config\":"
             "{\"path\":\"http://x/\",\"timeout\":\"soon\"}}",
             true, "Failed to parse 'http_handler_config': Failed to parse timeout: time: invalid duration \"soon\"");
  expect_err("{\"type\":\"connect_roots\",\"args\":[\"x\"]}", true,
             "Watch type connect_roots is not allowed in agent config");
  expect_err("[1]", true, "A watch must be a JSON object");
}

static void test_spec_ok(void **state)
{
  (void)state;
  struct watch_spec s;
  char err[512];
  assert_int_equal(parse("{\"type\":\"checks\"}", false, &s, err, sizeof err), 0);
  assert_string_equal(s.state, "any");
  watch_spec_free(&s);
  assert_int_equal(parse("{\"type\":\"service\",\"service\":\"web\",\"tag\":\"a\","
                         "\"passingonly\":true,\"stale\":true,\"datacenter\":\"dc1\"}",
                         false, &s, err, sizeof err), 0);
  assert_string_equal(s.tags[0], "a");
  assert_null(s.tags[1]);
  assert_true(s.passingonly && s.stale);
  watch_spec_free(&s);
  assert_int_equal(parse("{\"type\":\"key\",\"key\":\"a\",\"handler_type\":\"http\","
                         "\"http_handler_config\":{\"path\":\"http://h/x\","
                         "\"header\":{\"A\":[\"1\",\"2\"]},\"tls_skip_verify\":true}}",
                         true, &s, err, sizeof err), 0);
  assert_int_equal(s.handler_type, WATCH_HANDLER_HTTP);
  assert_string_equal(s.http.method, "POST");
  assert_true(s.http.timeout_ns == 10000000000LL);
  assert_int_equal(json_array_size(json_object_get(s.http.header, "A")), 2);
  watch_spec_free(&s);
  assert_int_equal(parse("{\"type\":\"event\",\"name\":\"deploy\",\"handler\":\"echo hi\"}",
                         true, &s, err, sizeof err), 0);
  assert_int_equal(s.handler_type, WATCH_HANDLER_SCRIPT);
  assert_string_equal(s.handler, "echo hi");
  watch_spec_free(&s);
}

static void expect_target(const char *json, const char *want)
{
  struct watch_spec s;
  char err[512];
  assert_int_equal(parse(json, false, &s, err, sizeof err), 0);
  struct watch_plan p;
  watch_plan_init(&p, &s);
  struct buf b = BUF_INIT;
  watch_plan_target(&p, &b);
  if (strcmp(b.data, want) != 0) fail_msg("%s: got %s, want %s", json, b.data, want);
  buf_free(&b);
  watch_plan_free(&p);
  watch_spec_free(&s);
}

static void test_targets(void **state)
{
  (void)state;
  expect_target("{\"type\":\"key\",\"key\":\"a b/c\"}", "/v1/kv/a%20b/c");
  expect_target("{\"type\":\"keyprefix\",\"prefix\":\"app/\",\"stale\":true}",
                "/v1/kv/app/?recurse=&stale=");
  expect_target("{\"type\":\"services\",\"datacenter\":\"dc1\"}", "/v1/catalog/services?dc=dc1");
  expect_target("{\"type\":\"nodes\"}", "/v1/catalog/nodes");
  expect_target("{\"type\":\"service\",\"service\":\"web\",\"tag\":[\"a\",\"b c\"],\"passingonly\":true}",
                "/v1/health/service/web?passing=1&tag=a&tag=b%20c");
  expect_target("{\"type\":\"checks\",\"service\":\"web\"}", "/v1/health/checks/web");
  expect_target("{\"type\":\"checks\",\"state\":\"critical\",\"tag\":\"x\"}",
                "/v1/health/state/critical?tag=x");
  expect_target("{\"type\":\"event\",\"name\":\"deploy\"}", "/v1/event/list?name=deploy");
}

struct fixture {
  struct watch_spec s;
  struct watch_plan p;
};

static void setup_key(struct fixture *f, const char *json)
{
  char err[256];
  assert_int_equal(parse(json, false, &f->s, err, sizeof err), 0);
  watch_plan_init(&f->p, &f->s);
}

static void teardown(struct fixture *f)
{
  watch_plan_free(&f->p);
  watch_spec_free(&f->s);
}

static enum watch_step feed(struct fixture *f, int status, uint64_t index, const char *body,
                            const json_t **res, uint64_t *retry_ms)
{
  uint64_t idx;
  char msg[256];
  return watch_plan_feed(&f->p, status, "connection refused", true, index, body,
                         body ? strlen(body) : 0, res, &idx, retry_ms, msg, sizeof msg);
}

static char *target(struct fixture *f)
{
  struct buf b = BUF_INIT;
  watch_plan_target(&f->p, &b);
  return buf_steal(&b, NULL);
}

static void test_plan_rules(void **state)
{
  (void)state;
  struct fixture f;
  setup_key(&f, "{\"type\":\"key\",\"key\":\"a\"}");
  const json_t *res;
  uint64_t retry;
  char *t;
  /* The first answer fires, even for a missing key (null). */
  assert_int_equal(feed(&f, 404, 3, "", &res, &retry), WATCH_STEP_FIRE);
  assert_true(json_is_null(res));
  t = target(&f);
  assert_string_equal(t, "/v1/kv/a?index=3");
  free(t);
  /* Same index: nothing. */
  assert_int_equal(feed(&f, 404, 3, "", &res, &retry), WATCH_STEP_NONE);
  const char *v1 = "[{\"LockIndex\":0,\"Key\":\"a\",\"Flags\":0,\"Value\":\"MQ==\","
                   "\"CreateIndex\":5,\"ModifyIndex\":5}]";
  assert_int_equal(feed(&f, 200, 5, v1, &res, &retry), WATCH_STEP_FIRE);
  assert_string_equal(json_string_value(json_object_get(res, "Value")), "MQ==");
  /* A new index with the same result (a write to another key): nothing, but the index moves. */
  assert_int_equal(feed(&f, 200, 9, v1, &res, &retry), WATCH_STEP_NONE);
  t = target(&f);
  assert_string_equal(t, "/v1/kv/a?index=9");
  free(t);
  /* Backwards: the next query starts over at 0 (no index sent). */
  assert_int_equal(feed(&f, 200, 4, v1, &res, &retry), WATCH_STEP_NONE);
  t = target(&f);
  assert_string_equal(t, "/v1/kv/a");
  free(t);
  /* Errors back off 5 s * n^2 to 180 s and forget the index. */
  assert_int_equal(feed(&f, 0, 0, NULL, &res, &retry), WATCH_STEP_RETRY);
  assert_int_equal(retry, 5000);
  assert_int_equal(feed(&f, 500, 0, "No cluster leader", &res, &retry), WATCH_STEP_RETRY);
  assert_int_equal(retry, 20000);
  assert_int_equal(feed(&f, 0, 0, NULL, &res, &retry), WATCH_STEP_RETRY);
  assert_int_equal(retry, 45000);
  for (int i = 0; i < 10; i++) feed(&f, 0, 0, NULL, &res, &retry);
  assert_int_equal(retry, 180000);
  t = target(&f);
  assert_string_equal(t, "/v1/kv/a");
  free(t);
  /* Recovery fires again with the same data, as Consul's plan does after an error. */
  assert_int_equal(feed(&f, 200, 9, v1, &res, &retry), WATCH_STEP_FIRE);
  assert_int_equal(f.p.failures, 0);
  /* Bad JSON is an error, not a crash. */
  assert_int_equal(feed(&f, 200, 10, "[{", &res, &retry), WATCH_STEP_RETRY);
  teardown(&f);
}

static void test_key_order(void **state)
{
  (void)state;
  struct fixture f;
  setup_key(&f, "{\"type\":\"keyprefix\",\"prefix\":\"a\"}");
  const json_t *res;
  uint64_t retry;
  assert_int_equal(feed(&f, 200, 5,
                        "[{\"LockIndex\":0,\"Key\":\"a<b\",\"Flags\":0,\"Value\":null,"
                        "\"Session\":\"\",\"CreateIndex\":5,\"ModifyIndex\":5}]",
                        &res, &retry), WATCH_STEP_FIRE);
  struct buf b = BUF_INIT;
  watch_encode(res, false, &b);
  assert_string_equal(b.data, "[{\"Key\":\"a\\u003cb\",\"CreateIndex\":5,\"ModifyIndex\":5,"
                              "\"LockIndex\":0,\"Flags\":0,\"Value\":null}]\n");
  buf_reset(&b);
  watch_encode(res, true, &b);
  assert_string_equal(b.data, "[\n    {\n        \"Key\": \"a\\u003cb\",\n        \"CreateIndex\": 5,\n"
                              "        \"ModifyIndex\": 5,\n        \"LockIndex\": 0,\n"
                              "        \"Flags\": 0,\n        \"Value\": null\n    }\n]");
  buf_free(&b);
  teardown(&f);
}

static void test_big_flags(void **state)
{
  (void)state;
  struct fixture f;
  setup_key(&f, "{\"type\":\"keyprefix\",\"prefix\":\"s\"}");
  const json_t *res;
  uint64_t retry;
  /* Consul's semaphore flag is above INT64_MAX; "1e30" and strings must pass untouched. */
  const char *body = "[{\"LockIndex\":0,\"Key\":\"s/.lock 18446744073709551615\","
                     "\"Flags\":16210313421097356768,\"Value\":null,\"X\":1e30,"
                     "\"CreateIndex\":9223372036854775807,\"ModifyIndex\":18446744073709551615}]";
  assert_int_equal(feed(&f, 200, 5, body, &res, &retry), WATCH_STEP_FIRE);
  struct buf b = BUF_INIT;
  watch_encode(res, false, &b);
  assert_string_equal(b.data, "[{\"Key\":\"s/.lock 18446744073709551615\","
                              "\"CreateIndex\":9223372036854775807,"
                              "\"ModifyIndex\":18446744073709551615,\"LockIndex\":0,"
                              "\"Flags\":16210313421097356768,\"Value\":null}]\n");
  buf_free(&b);
  /* The same answer at a new index is no change. */
  assert_int_equal(feed(&f, 200, 6, body, &res, &retry), WATCH_STEP_NONE);
  teardown(&f);
}

static void test_events(void **state)
{
  (void)state;
  assert_true(watch_event_index("00000000-0000-0001-0000-000000000003") == (1ull ^ 3ull));
  assert_true(watch_event_index("bogus") == 0);
  struct fixture f;
  setup_key(&f, "{\"type\":\"event\",\"name\":\"x\"}");
  const char *id1 = "00000000-0000-0000-0000-000000000001";
  const char *id2 = "00000000-0000-0000-0000-000000000002";
  char body[512];
  snprintf(body, sizeof body, "[{\"ID\":\"%s\",\"Name\":\"x\"}]", id1);
  const json_t *res;
  uint64_t retry;
  assert_int_equal(feed(&f, 200, watch_event_index(id1), body, &res, &retry), WATCH_STEP_FIRE);
  assert_int_equal(json_array_size(res), 1);
  /* The next answer holds both: only the new one is handed on. */
  snprintf(body, sizeof body, "[{\"ID\":\"%s\",\"Name\":\"x\"},{\"ID\":\"%s\",\"Name\":\"x\"}]",
           id1, id2);
  assert_int_equal(feed(&f, 200, watch_event_index(id2), body, &res, &retry), WATCH_STEP_FIRE);
  assert_int_equal(json_array_size(res), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "ID")), id2);
  teardown(&f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spec_errors), cmocka_unit_test(test_spec_ok),
      cmocka_unit_test(test_targets),     cmocka_unit_test(test_plan_rules),
      cmocka_unit_test(test_key_order),   cmocka_unit_test(test_events),
      cmocka_unit_test(test_big_flags),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
