/* test_query.c -- prepared queries in the state store (state/query.h): the table's rules and
 * error sentences (agent/consul/state/prepared_query_test.go), template compile and render
 * (prepared_query/template_test.go), resolve order, the execute filters over a real catalog,
 * the Raft command and the snapshot (version 4 round trip). Seeds for fuzz/fuzz_cmd.c and
 * fuzz/fuzz_snapshot.c with CONCORD_CMD_CORPUS=<dir> / CONCORD_SNAPSHOT_CORPUS=<dir>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "state/catalog.h"
#include "state/cmd.h"
#include "state/query.h"
#include "state/session.h"
#include "state/store.h"
#include "state/watch.h"

#define Q1 "aaaaaaaa-1111-2222-3333-444444444444"
#define Q2 "bbbbbbbb-1111-2222-3333-444444444444"
#define Q3 "cccccccc-1111-2222-3333-444444444444"
#define S1 "11111111-1111-1111-1111-111111111111"

static void save(const char *env, const char *name, const struct buf *b)
{
  const char *dir = getenv(env);
  if (!dir) return;
  char path[512];
  snprintf(path, sizeof path, "%s/query-%s", dir, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b->data, 1, b->len, f), b->len);
  fclose(f);
}

static int set(struct state_store *s, uint64_t idx, const char *id, const char *json, char *err)
{
  return state_query_set(s, idx, id, json, strlen(json), err, 256);
}

static const char *str_at(json_t *o, const char *a, const char *b)
{
  json_t *v = json_object_get(o, a);
  if (b) v = json_object_get(v, b);
  return json_string_value(v);
}

static void test_normalize(void **st)
{
  (void)st;
  char err[256];
  json_t *in = json_loads("{\"name\":\"x\",\"service\":{\"service\":\"db\",\"tags\":[\"a\"],"
                          "\"NodeMeta\":{\"z\":\"1\",\"a\":\"2\"}},\"CreateIndex\":9}", 0, NULL);
  json_t *q = state_query_normalize(in, err, sizeof err);
  assert_non_null(q);
  char *text = json_dumps(q, JSON_COMPACT | JSON_PRESERVE_ORDER);
  assert_string_equal(text,
                      "{\"ID\":\"\",\"Name\":\"x\",\"Session\":\"\",\"Token\":\"\","
                      "\"Template\":{\"Type\":\"\",\"Regexp\":\"\",\"RemoveEmptyTags\":false},"
                      "\"Service\":{\"Service\":\"db\",\"SamenessGroup\":\"\",\"Failover\":"
                      "{\"NearestN\":0,\"Datacenters\":null,\"Targets\":null},\"OnlyPassing\":false,"
                      "\"IgnoreCheckIDs\":null,\"Near\":\"\",\"Tags\":[\"a\"],\"NodeMeta\":"
                      "{\"a\":\"2\",\"z\":\"1\"},\"ServiceMeta\":null,\"Connect\":false,\"Peer\":\"\"},"
                      "\"DNS\":{\"TTL\":\"\"}}");
  free(text);
  json_decref(q);
  json_decref(in);
  in = json_loads("{\"Service\":{\"OnlyPassing\":\"yes\"}}", 0, NULL);
  assert_null(state_query_normalize(in, err, sizeof err));
  assert_string_equal(err, "json: cannot unmarshal string into Go struct field "
                           "PreparedQuery.Service.OnlyPassing of type bool");
  json_decref(in);
}

static int fired;
static void on_fire(void *arg)
{
  (void)arg;
  fired++;
}

static void test_table_rules(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  char err[256];
  fired = 0;
  state_watch_add(s, STATE_WATCH_TABLE, STATE_QUERY_TABLE, strlen(STATE_QUERY_TABLE), on_fire,
                  NULL);
  assert_int_equal(set(s, 5, Q1, "{\"Name\":\"Web\",\"Service\":{\"Service\":\"web\"}}", err), 0);
  assert_int_equal(fired, 1);
  assert_int_equal(state_table_index(s, STATE_QUERY_TABLE), 5);
  json_t *q = state_query_get(s, Q1);
  assert_int_equal(json_integer_value(json_object_get(q, "CreateIndex")), 5);
  assert_string_equal(str_at(q, "ID", NULL), Q1);
  json_decref(q);
  /* update keeps CreateIndex */
  assert_int_equal(set(s, 6, Q1, "{\"Name\":\"web\",\"Service\":{\"Service\":\"web2\"}}", err), 0);
  q = state_query_get(s, Q1);
  assert_int_equal(json_integer_value(json_object_get(q, "CreateIndex")), 5);
  assert_int_equal(json_integer_value(json_object_get(q, "ModifyIndex")), 6);
  json_decref(q);
  /* rules */
  assert_int_equal(set(s, 7, Q2, "{\"Name\":\"WEB\",\"Service\":{\"Service\":\"x\"}}", err), CC_EINVAL);
  assert_string_equal(err, "name 'WEB' aliases an existing query name");
  assert_int_equal(set(s, 7, Q2, "{\"Name\":\"" Q1 "\",\"Service\":{\"Service\":\"x\"}}", err),
                   CC_EINVAL);
  assert_string_equal(err, "name '" Q1 "' aliases an existing query ID");
  assert_int_equal(set(s, 7, Q2, "{\"Session\":\"" S1 "\",\"Service\":{\"Service\":\"x\"}}", err),
                   CC_EINVAL);
  assert_string_equal(err, "invalid session \"" S1 "\"");
  assert_int_equal(set(s, 7, Q2, "{\"Template\":{\"Type\":\"x\"},\"Service\":{\"Service\":\"x\"}}",
                       err),
                   CC_EINVAL);
  assert_string_equal(err, "failed compiling template: Bad Template.Type 'x'");
  assert_int_equal(set(s, 7, Q2,
                       "{\"Template\":{\"Type\":\"name_prefix_match\",\"Regexp\":\"(\"},"
                       "\"Service\":{\"Service\":\"x\"}}",
                       err),
                   CC_EINVAL);
  assert_non_null(strstr(err, "failed compiling template: Bad Regexp: "));
  assert_int_equal(set(s, 7, Q2,
                       "{\"Template\":{\"Type\":\"name_prefix_match\"},"
                       "\"Service\":{\"Service\":\"${name.full\"}}",
                       err),
                   CC_EINVAL);
  assert_non_null(strstr(err, "Bad format '${name.full' in Service.Service"));
  assert_int_equal(set(s, 7, "not-a-uuid", "{\"Service\":{\"Service\":\"x\"}}", err), CC_EINVAL);
  assert_int_equal(set(s, 3, Q2, "{\"Name\":\"a\",\"Service\":{\"Service\":\"x\"}}", err), CC_EINVAL);
  assert_int_equal(state_query_count(s), 1);
  assert_int_equal(state_table_index(s, STATE_QUERY_TABLE), 6); /* refusals move nothing */
  /* one empty-named template */
  const char *tmpl = "{\"Template\":{\"Type\":\"name_prefix_match\"},\"Service\":{\"Service\":\"x\"}}";
  assert_int_equal(set(s, 8, Q2, tmpl, err), 0);
  assert_int_equal(set(s, 9, Q3, tmpl, err), CC_EINVAL);
  assert_string_equal(err, "a query template with an empty name already exists");
  assert_int_equal(set(s, 9, Q2, tmpl, err), 0); /* itself: fine */
  /* delete */
  assert_int_equal(state_query_delete(s, 10, Q2, err, 256), 0);
  assert_int_equal(state_query_delete(s, 11, Q2, err, 256), 0); /* absent: nothing */
  assert_int_equal(state_table_index(s, STATE_QUERY_TABLE), 10);
  json_t *l = state_query_list(s);
  assert_int_equal(json_array_size(l), 1);
  json_decref(l);
  state_store_free(s);
}

static void test_resolve_and_render(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  char err[256];
  assert_int_equal(set(s, 1, Q1, "{\"Name\":\"geo-db\",\"Service\":{\"Service\":\"static\"}}", err), 0);
  assert_int_equal(set(s, 2, Q2,
                       "{\"Name\":\"geo-\",\"Template\":{\"Type\":\"name_prefix_match\","
                       "\"Regexp\":\"^geo-([a-z]+)-(.*)$\",\"RemoveEmptyTags\":true},"
                       "\"Service\":{\"Service\":\"${match(1)}-svc\",\"Tags\":[\"${match(2)}\","
                       "\"${match(7)}\",\"$${lit}\"],\"NodeMeta\":{\"k\":\"${name.suffix}\"},"
                       "\"Near\":\"${ name.prefix }|${name.full}|${agent.segment}\"}}",
                       err),
                   0);
  assert_int_equal(set(s, 3, Q3,
                       "{\"Name\":\"\",\"Template\":{\"Type\":\"name_prefix_match\"},"
                       "\"Service\":{\"Service\":\"${name.full}\"}}",
                       err),
                   0);
  json_t *q;
  /* exact name beats the template prefix */
  assert_int_equal(state_query_resolve(s, "GEO-DB", &q, err, sizeof err), 0);
  assert_string_equal(str_at(q, "Service", "Service"), "static");
  json_decref(q);
  assert_int_equal(state_query_resolve(s, "geo-web-east", &q, err, sizeof err), 0);
  json_t *svc = json_object_get(q, "Service");
  assert_string_equal(str_at(q, "Service", "Service"), "web-svc");
  json_t *tags = json_object_get(svc, "Tags");
  assert_int_equal(json_array_size(tags), 2); /* the empty match(7) removed */
  assert_string_equal(json_string_value(json_array_get(tags, 0)), "east");
  assert_string_equal(json_string_value(json_array_get(tags, 1)), "${lit}");
  assert_string_equal(str_at(svc, "NodeMeta", "k"), "web-east");
  assert_string_equal(str_at(svc, "Near", NULL), "geo-|geo-web-east|");
  json_decref(q);
  /* the catch-all */
  assert_int_equal(state_query_resolve(s, "other", &q, err, sizeof err), 0);
  assert_string_equal(str_at(q, "Service", "Service"), "other");
  json_decref(q);
  /* by ID: a plain query yes, a template no */
  assert_int_equal(state_query_resolve(s, Q1, &q, err, sizeof err), 0);
  json_decref(q);
  assert_int_equal(state_query_resolve(s, Q2, &q, err, sizeof err), CC_EINVAL);
  assert_string_equal(err, "prepared query templates can only be resolved up by name, not by ID");
  assert_int_equal(state_query_delete(s, 4, Q3, err, 256), 0);
  assert_int_equal(state_query_resolve(s, "other", &q, err, sizeof err), CC_ENOTFOUND);
  assert_null(q);
  state_store_free(s);
}

static void reg(struct state_store *s, uint64_t idx, const char *node, const char *id,
                const char *const *tags, size_t n_tags, const char *status, const char *zone)
{
  struct state_pair meta[] = {{"zone", zone}};
  struct state_register_service svc = {.id = id, .name = "db", .port = 1, .tags = tags,
                                       .n_tags = n_tags};
  struct state_register_check ck = {.check_id = id, .name = id, .status = status,
                                    .service_id = id};
  struct state_register r = {.node = node, .address = "10.0.0.1", .node_meta = {meta, 1, false},
                             .service = &svc, .checks = &ck, .n_checks = 1};
  char err[256];
  assert_int_equal(state_catalog_register(s, idx, &r, err, sizeof err), 0);
}

static size_t run(struct state_store *s, const char *json, const char **names)
{
  json_t *q = json_loads(json, 0, NULL);
  char err[256];
  json_t *n = state_query_normalize(q, err, sizeof err);
  json_decref(q);
  assert_non_null(n);
  const struct state_service **out;
  size_t k = state_query_execute(s, n, &out);
  for (size_t i = 0; i < k; i++) names[i] = out[i]->node->name;
  free(out);
  json_decref(n);
  return k;
}

static void test_execute(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  const char *t1[] = {"primary", "v1"}, *t2[] = {"Replica", "v1"}, *t3[] = {"replica", "v2"};
  reg(s, 1, "n1", "a", t1, 2, "passing", "a");
  reg(s, 2, "n2", "b", t2, 2, "passing", "b");
  reg(s, 3, "n3", "c", t3, 2, "warning", "b");
  reg(s, 4, "n4", "d", NULL, 0, "critical", "b");
  const char *names[8];
  assert_int_equal(run(s, "{\"Service\":{\"Service\":\"DB\"}}", names), 3);
  assert_int_equal(run(s, "{\"Service\":{\"Service\":\"db\",\"OnlyPassing\":true}}", names), 2);
  assert_int_equal(run(s, "{\"Service\":{\"Service\":\"db\",\"IgnoreCheckIDs\":[\"d\"]}}", names), 4);
  assert_int_equal(run(s, "{\"Service\":{\"Service\":\"db\",\"Tags\":[\"replica\",\"!V2\"]}}", names), 1);
  assert_string_equal(names[0], "n2");
  assert_int_equal(run(s, "{\"Service\":{\"Service\":\"db\",\"NodeMeta\":{\"zone\":\"b\"}}}", names), 2);
  assert_int_equal(run(s, "{\"Service\":{\"Service\":\"db\",\"ServiceMeta\":{\"x\":\"y\"}}}", names), 0);
  assert_int_equal(run(s, "{\"Service\":{\"Service\":\"nope\"}}", names), 0);
  state_store_free(s);
}

static void test_command_and_snapshot(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct buf b = BUF_INIT;
  state_cmd_encode_query(&b, "create", Q1,
                         "{\"Name\":\"web\",\"Service\":{\"Service\":\"web\",\"Tags\":[\"a\"]},"
                         "\"DNS\":{\"TTL\":\"5s\"}}");
  save("CONCORD_CMD_CORPUS", "create", &b);
  assert_int_equal(state_cmd_validate(b.data, b.len), 0);
  struct state_cmd_result res;
  assert_int_equal(state_cmd_apply(s, 3, b.data, b.len, &res), 0);
  assert_true(res.ok);
  assert_int_equal(res.body_len, 36);
  for (size_t n = 0; n < b.len; n++) assert_int_equal(state_cmd_validate(b.data, n), CC_ECORRUPT);
  /* a refusal is an answer, not a malformed command */
  buf_reset(&b);
  state_cmd_encode_query(&b, "update", Q2, "{\"Name\":\"WEB\",\"Service\":{\"Service\":\"x\"}}");
  assert_int_equal(state_cmd_apply(s, 4, b.data, b.len, &res), 0);
  assert_false(res.ok);
  assert_int_equal(res.err, 0);
  assert_string_equal(res.msg, "name 'WEB' aliases an existing query name");
  buf_reset(&b);
  state_cmd_encode_query(&b, "create", Q2,
                         "{\"Name\":\"t-\",\"Template\":{\"Type\":\"name_prefix_match\","
                         "\"Regexp\":\"^t-(.*)$\"},\"Service\":{\"Service\":\"${match(1)}\"}}");
  save("CONCORD_CMD_CORPUS", "template", &b);
  assert_int_equal(state_cmd_apply(s, 5, b.data, b.len, &res), 0);
  assert_true(res.ok);

  /* snapshot round trip, byte for byte, and the template still renders */
  struct buf snap = BUF_INIT, again = BUF_INIT;
  state_store_snapshot(s, &snap);
  save("CONCORD_SNAPSHOT_CORPUS", "v4", &snap);
  struct state_store *t = state_store_new();
  assert_int_equal(state_store_restore(t, snap.data, snap.len), 0);
  state_store_snapshot(t, &again);
  assert_int_equal(snap.len, again.len);
  assert_memory_equal(snap.data, again.data, snap.len);
  assert_int_equal(state_table_index(t, STATE_QUERY_TABLE), 5);
  json_t *q;
  char err[256];
  assert_int_equal(state_query_resolve(t, "t-web", &q, err, sizeof err), 0);
  assert_string_equal(str_at(q, "Service", "Service"), "web");
  json_decref(q);
  /* truncations of the snapshot are refused and leave t as it was */
  for (size_t n = 0; n < snap.len; n += 7)
    assert_int_equal(state_store_restore(t, snap.data, n), CC_ECORRUPT);
  assert_int_equal(state_query_count(t), 2);

  buf_reset(&b);
  state_cmd_encode_query(&b, "delete", Q1, NULL);
  save("CONCORD_CMD_CORPUS", "delete", &b);
  assert_int_equal(state_cmd_apply(s, 6, b.data, b.len, &res), 0);
  assert_true(res.ok);
  assert_int_equal(state_query_count(s), 1);
  buf_free(&b);
  buf_free(&snap);
  buf_free(&again);
  state_store_free(t);
  state_store_free(s);
}

static void test_session_destroy_deletes(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct state_register r = {.node = "n1", .address = "10.0.0.1"};
  assert_int_equal(state_catalog_register(s, 1, &r, NULL, 0), 0);
  struct state_session se = {.id = S1, .node = "n1"};
  assert_int_equal(state_session_create(s, 2, &se, NULL, 0), 0);
  char err[256];
  assert_int_equal(set(s, 3, Q1, "{\"Session\":\"" S1 "\",\"Service\":{\"Service\":\"x\"}}", err), 0);
  assert_int_equal(set(s, 4, Q2, "{\"Name\":\"keep\",\"Service\":{\"Service\":\"x\"}}", err), 0);
  fired = 0;
  state_watch_add(s, STATE_WATCH_TABLE, STATE_QUERY_TABLE, strlen(STATE_QUERY_TABLE), on_fire,
                  NULL);
  assert_int_equal(state_session_destroy(s, 5, S1), 0);
  assert_int_equal(fired, 1);
  assert_int_equal(state_query_count(s), 1);
  assert_null(state_query_get(s, Q1));
  assert_int_equal(state_table_index(s, STATE_QUERY_TABLE), 5);
  state_store_free(s);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_normalize),
      cmocka_unit_test(test_table_rules),
      cmocka_unit_test(test_resolve_and_render),
      cmocka_unit_test(test_execute),
      cmocka_unit_test(test_command_and_snapshot),
      cmocka_unit_test(test_session_destroy_deletes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
