/* test_lib_observe.c -- lib/log.c's subscribers and lib/metrics.c's JSON and Prometheus
 * rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/metrics.h"

/* ---- log subscribers ---- */

struct seen {
  int n;
  enum log_level last_level;
  char last_msg[256], last_line[512], last_module[64];
  int self_handle;    /* >= 0: unsubscribe itself on the first line */
  bool log_inside;    /* logs from inside the callback (must not recurse) */
};

static void on_line(const struct log_record *rec, void *arg)
{
  struct seen *s = arg;
  s->n++;
  s->last_level = rec->level;
  snprintf(s->last_msg, sizeof s->last_msg, "%s", rec->message);
  snprintf(s->last_line, sizeof s->last_line, "%s", rec->line);
  snprintf(s->last_module, sizeof s->last_module, "%s", rec->module);
  if (s->log_inside) log_error("test", "from inside %d", s->n);
  if (s->self_handle >= 0) {
    log_unsubscribe(s->self_handle);
    s->self_handle = -1;
  }
}

static void test_log_subscribe_levels(void **state)
{
  (void)state;
  log_set_level(LOG_OFF); /* keep stderr quiet: subscribers see lines regardless */
  assert_false(log_enabled(LOG_DEBUG));
  struct seen s = {.self_handle = -1};
  int h = log_subscribe(LOG_DEBUG, on_line, &s);
  assert_true(h >= 0);
  assert_true(log_enabled(LOG_DEBUG));
  assert_false(log_enabled(LOG_TRACE));
  log_trace("agent", "not wanted");
  assert_int_equal(s.n, 0);
  log_debug("agent.http", "Request %s %d", "GET", 7);
  assert_int_equal(s.n, 1);
  assert_int_equal(s.last_level, LOG_DEBUG);
  assert_string_equal(s.last_msg, "Request GET 7");
  assert_string_equal(s.last_module, "agent.http");
  /* hclog's text line: timestamp, [DEBUG], module, message */
  assert_non_null(strstr(s.last_line, "Z [DEBUG] agent.http: Request GET 7"));
  log_info("agent", "hello");
  assert_int_equal(s.n, 2);
  assert_non_null(strstr(s.last_line, "[INFO]  agent: hello"));
  log_unsubscribe(h);
  log_info("agent", "gone");
  assert_int_equal(s.n, 2);
  assert_false(log_enabled(LOG_DEBUG)); /* no subscriber: back to the stderr level alone */
  log_set_level(LOG_INFO);
}

static void test_log_subscribe_reentry(void **state)
{
  (void)state;
  log_set_level(LOG_OFF);
  struct seen a = {.self_handle = -1, .log_inside = true};
  struct seen b = {.self_handle = -1};
  int ha = log_subscribe(LOG_INFO, on_line, &a);
  int hb = log_subscribe(LOG_INFO, on_line, &b);
  assert_true(ha >= 0 && hb >= 0 && ha != hb);
  log_warn("x", "one");
  /* a's own line from inside the callback was not dispatched again, to a or to b */
  assert_int_equal(a.n, 1);
  assert_int_equal(b.n, 1);
  assert_string_equal(b.last_msg, "one");
  log_unsubscribe(ha);
  log_unsubscribe(hb);

  /* unsubscribing itself from inside the callback */
  struct seen c = {.self_handle = -1};
  c.self_handle = log_subscribe(LOG_INFO, on_line, &c);
  log_info("x", "first");
  log_info("x", "second");
  assert_int_equal(c.n, 1);

  /* the table is bounded */
  int hs[LOG_MAX_SUBSCRIBERS];
  struct seen d = {.self_handle = -1};
  for (int i = 0; i < LOG_MAX_SUBSCRIBERS; i++) {
    hs[i] = log_subscribe(LOG_ERROR, on_line, &d);
    assert_true(hs[i] >= 0);
  }
  assert_int_equal(log_subscribe(LOG_ERROR, on_line, &d), -1);
  log_error("x", "all");
  assert_int_equal(d.n, LOG_MAX_SUBSCRIBERS);
  for (int i = 0; i < LOG_MAX_SUBSCRIBERS; i++) log_unsubscribe(hs[i]);
  assert_int_equal(log_subscribe(LOG_OFF, on_line, &d), -1);
  log_set_level(LOG_INFO);
}

/* ---- metrics ---- */

static void test_metrics_prometheus(void **state)
{
  (void)state;
  struct metrics_set m = METRICS_SET_INIT;
  metrics_gauge(&m, "consul.runtime.alloc_bytes", NULL, 0, 123456789);
  struct metrics_label st = {"status", "alive"};
  metrics_gauge(&m, "consul.serf.members", &st, 1, 3);
  struct metrics_label st2 = {"status", "fa\"il\\ed\n"};
  metrics_gauge(&m, "consul.serf.members", &st2, 1, 0.5);
  metrics_counter(&m, "consul.dns.queries", NULL, 0, 42);
  struct metrics_summary s = {0};
  metrics_summary_add(&s, 2);
  metrics_summary_add(&s, 4);
  struct metrics_label l[2] = {{"method", "GET"}, {"path", "v1_kv_"}};
  metrics_sample(&m, "consul.api.http", l, 2, &s);
  metrics_gauge(&m, "1bad-name", NULL, 0, -1);

  struct buf out = BUF_INIT;
  metrics_prometheus(&m, &out);
  const char *want =
      "# HELP _bad_name _bad_name\n# TYPE _bad_name gauge\n_bad_name -1\n"
      "# HELP consul_api_http consul_api_http\n# TYPE consul_api_http summary\n"
      "consul_api_http_sum{method=\"GET\",path=\"v1_kv_\"} 6\n"
      "consul_api_http_count{method=\"GET\",path=\"v1_kv_\"} 2\n"
      "# HELP consul_dns_queries consul_dns_queries\n# TYPE consul_dns_queries counter\n"
      "consul_dns_queries 42\n"
      "# HELP consul_runtime_alloc_bytes consul_runtime_alloc_bytes\n"
      "# TYPE consul_runtime_alloc_bytes gauge\nconsul_runtime_alloc_bytes 123456789\n"
      "# HELP consul_serf_members consul_serf_members\n# TYPE consul_serf_members gauge\n"
      "consul_serf_members{status=\"alive\"} 3\n"
      "consul_serf_members{status=\"fa\\\"il\\\\ed\\n\"} 0.5\n";
  assert_string_equal(out.data, want);
  buf_free(&out);

  /* Consul's JSON shape */
  json_t *j = metrics_json(&m, 1795449287, 10);
  assert_string_equal(json_string_value(json_object_get(j, "Timestamp")),
                      "2026-11-23 15:54:40 +0000 UTC");
  assert_int_equal(json_array_size(json_object_get(j, "Gauges")), 4);
  assert_int_equal(json_array_size(json_object_get(j, "Points")), 0);
  json_t *c = json_array_get(json_object_get(j, "Counters"), 0);
  assert_string_equal(json_string_value(json_object_get(c, "Name")), "consul.dns.queries");
  assert_int_equal(json_integer_value(json_object_get(c, "Count")), 42);
  assert_true(json_real_value(json_object_get(c, "Rate")) == 4.2);
  json_t *sm = json_array_get(json_object_get(j, "Samples"), 0);
  assert_true(json_real_value(json_object_get(sm, "Mean")) == 3);
  assert_true(json_real_value(json_object_get(sm, "Min")) == 2);
  assert_true(json_real_value(json_object_get(sm, "Max")) == 4);
  double sd = json_real_value(json_object_get(sm, "Stddev"));
  assert_true(sd > 1.414 && sd < 1.415); /* sample stddev of {2, 4} */
  assert_string_equal(json_string_value(json_object_get(json_object_get(sm, "Labels"), "path")),
                      "v1_kv_");
  json_t *g = json_array_get(json_object_get(j, "Gauges"), 1);
  assert_string_equal(json_string_value(json_object_get(json_object_get(g, "Labels"), "status")),
                      "alive");
  json_decref(j);
  metrics_set_free(&m);

  struct buf empty = BUF_INIT;
  metrics_prometheus(&m, &empty);
  assert_int_equal(empty.len, 0);
  buf_free(&empty);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_subscribe_levels),
      cmocka_unit_test(test_log_subscribe_reentry),
      cmocka_unit_test(test_metrics_prometheus),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
