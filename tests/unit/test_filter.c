/* test_filter.c -- Consul's ?filter language: the grammar (go-bexpr grammar.peg), validation
 * against Consul's struct shapes, and bexpr's evaluation semantics (lists of structs, missing
 * map keys, substring "in", coercion), with the examples of Consul's filtering docs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "filter/filter.h"

/* A CheckServiceNode as /v1/health/service returns it. */
static const char *csn_json =
    "{\"Node\":{\"ID\":\"\",\"Node\":\"node-1\",\"Address\":\"10.0.0.1\",\"Datacenter\":\"dc1\","
    "\"TaggedAddresses\":{\"lan\":\"10.0.0.1\"},\"Meta\":{\"rack\":\"r12\",\"env\":\"prod\"}},"
    "\"Service\":{\"ID\":\"web-1\",\"Service\":\"web\",\"Tags\":[\"v1\",\"primary\"],"
    "\"Address\":\"\",\"Meta\":{\"version\":\"1.2.3\"},\"Port\":8080,"
    "\"Weights\":{\"Passing\":3,\"Warning\":1},\"EnableTagOverride\":false,"
    "\"Proxy\":{\"Mode\":\"\",\"MeshGateway\":{},\"Expose\":{}},\"Connect\":{}},"
    "\"Checks\":[{\"Node\":\"node-1\",\"CheckID\":\"serfHealth\",\"Status\":\"passing\","
    "\"ServiceTags\":[]},{\"Node\":\"node-1\",\"CheckID\":\"web-http\",\"Status\":\"critical\","
    "\"ServiceID\":\"web-1\",\"ServiceTags\":[\"v1\"],\"Output\":\"HTTP GET: 500\"}]}";

static json_t *row;

static int setup(void **st)
{
  (void)st;
  row = json_loads(csn_json, 0, NULL);
  return row ? 0 : -1;
}

static int teardown(void **st)
{
  (void)st;
  json_decref(row);
  return 0;
}

/* 1 matches, 0 does not, -1 does not compile. */
static int run(const char *expr, const struct filter_type *t, const json_t *r, char *err,
               size_t errlen)
{
  struct filter *f = filter_new(expr, t, err, errlen);
  if (!f) return -1;
  int m = filter_match(f, r);
  filter_free(f);
  return m;
}

static int csn(const char *expr)
{
  char err[256];
  int r = run(expr, &filter_type_check_service_node, row, err, sizeof err);
  if (r < 0) print_message("%s -> %s\n", expr, err);
  return r;
}

static void test_operators(void **st)
{
  (void)st;
  assert_int_equal(csn("Service.Service == web"), 1);
  assert_int_equal(csn("Service.Service == \"web\""), 1);
  assert_int_equal(csn("Service.Service == `web`"), 1);
  assert_int_equal(csn("Service.Service != web"), 0);
  assert_int_equal(csn("Service.Service==web"), 1); /* no spaces needed around == */
  assert_int_equal(csn("Service.Port == 8080"), 1);
  assert_int_equal(csn("Service.Port == \"8080\""), 1); /* coerced to the field's type */
  assert_int_equal(csn("Service.Port != 80"), 1);
  assert_int_equal(csn("Service.Port == \"0x1f90\""), 1); /* ParseInt(s, 0, 64) */
  assert_int_equal(csn("Service.Port == 0x1f90"), -1);     /* not a number literal */
  assert_int_equal(csn("Service.EnableTagOverride == false"), 1);
  assert_int_equal(csn("Service.EnableTagOverride == true"), 0);
  assert_int_equal(csn("Service.Weights.Passing == 3"), 1);
  assert_int_equal(csn("v1 in Service.Tags"), 1);
  assert_int_equal(csn("\"canary\" in Service.Tags"), 0);
  assert_int_equal(csn("\"canary\" not in Service.Tags"), 1);
  assert_int_equal(csn("Service.Tags contains primary"), 1);
  assert_int_equal(csn("Service.Tags not contains primary"), 0);
  assert_int_equal(csn("Service.Tags is not empty"), 1);
  assert_int_equal(csn("Service.Tags is empty"), 0);
  assert_int_equal(csn("Service.TaggedAddresses is empty"), 1); /* absent: empty */
  assert_int_equal(csn("\"eb\" in Service.Service"), 1);       /* substring of a string */
  assert_int_equal(csn("Node.Node matches \"^node-[0-9]+$\""), 1);
  assert_int_equal(csn("Node.Node matches \"^node-\\\\d+$\""), 1); /* \d from Go's syntax */
  assert_int_equal(csn("Node.Node not matches \"^db\""), 1);
  assert_int_equal(csn("Node.Node matches \"(?i)^NODE\""), 1);
}

static void test_maps(void **st)
{
  (void)st;
  assert_int_equal(csn("Node.Meta.rack == r12"), 1);
  assert_int_equal(csn("Node.Meta[\"rack\"] == \"r12\""), 1);
  assert_int_equal(csn("Service.Meta.version == \"1.2.3\""), 1);
  assert_int_equal(csn("\"/Service/Meta/version\" == \"1.2.3\""), 1); /* JSON pointer */
  assert_int_equal(csn("rack in Node.Meta"), 1);                      /* key present */
  assert_int_equal(csn("zone in Node.Meta"), 0);
  assert_int_equal(csn("Node.Meta is not empty"), 1);
  /* A missing key: == is false, != true. */
  assert_int_equal(csn("Node.Meta.zone == a"), 0);
  assert_int_equal(csn("Node.Meta.zone != a"), 1);
  assert_int_equal(csn("Node.Meta.zone is empty"), 1);
  assert_int_equal(csn("Node.Meta.zone is not empty"), 0);
}

static void test_lists_of_structs(void **st)
{
  (void)st;
  /* Any element matching is enough. */
  assert_int_equal(csn("Checks.Status == critical"), 1);
  assert_int_equal(csn("Checks.Status == passing"), 1);
  assert_int_equal(csn("Checks.Status == warning"), 0);
  assert_int_equal(csn("Checks.Status != passing"), 1);
  assert_int_equal(csn("Checks.Output contains \"500\""), 1);
  assert_int_equal(csn("v1 in Checks.ServiceTags"), 1);
  assert_int_equal(csn("Checks is not empty"), 1);
  assert_int_equal(csn("not (Checks.Status == critical)"), 0);
}

static void test_boolean_logic(void **st)
{
  (void)st;
  assert_int_equal(csn("Service.Service == web and Service.Port == 8080"), 1);
  assert_int_equal(csn("Service.Service == web and Service.Port == 80"), 0);
  assert_int_equal(csn("Service.Service == db or Service.Port == 8080"), 1);
  assert_int_equal(csn("not Service.Service == db"), 1);
  assert_int_equal(csn("not not Service.Service == web"), 1);
  assert_int_equal(csn("(Service.Service == db or Service.Service == web) and v1 in Service.Tags"), 1);
  assert_int_equal(csn("Service.Service == db or Service.Service == api and Service.Port == 8080"), 0);
  assert_int_equal(csn("  ( Service.Service == web )  "), 1);
  /* and binds tighter than or. */
  assert_int_equal(csn("Service.Service == web or Service.Service == x and Service.Port == 1"), 1);
}

static void test_errors(void **st)
{
  (void)st;
  char err[256];
  const struct filter_type *t = &filter_type_check_service_node;
  assert_int_equal(run("Service.Foo == 1", t, row, err, sizeof err), -1);
  assert_string_equal(err, "Selector \"Service.Foo\" is not valid");
  assert_int_equal(run("service.Service == web", t, row, err, sizeof err), -1); /* exact case */
  assert_string_equal(err, "Selector \"service\" is not valid");
  assert_int_equal(run("Service.Tags == x", t, row, err, sizeof err), -1);
  assert_string_equal(err, "Invalid match operator \"==\" for selector \"Service.Tags\"");
  assert_int_equal(run("Service.Port == abc", t, row, err, sizeof err), -1);
  assert_non_null(strstr(err, "Failed to coerce value abc for selector \"Service.Port\""));
  assert_int_equal(run("Service.EnableTagOverride == maybe", t, row, err, sizeof err), -1);
  assert_int_equal(run("Service.Port matches x", t, row, err, sizeof err), -1);
  assert_int_equal(run("Node.Node matches \"(\"", t, row, err, sizeof err), -1);
  assert_non_null(strstr(err, "Failed to compile regular expression"));
  /* RE2's limits keep glibc's regcomp from exploding (found by fuzz_filter). */
  assert_int_equal(run("Node.Node matches \"a++++++++++++++++\"", t, row, err, sizeof err), -1);
  assert_non_null(strstr(err, "invalid nested repetition operator"));
  assert_int_equal(run("Node.Node matches \"(a{100}){100}\"", t, row, err, sizeof err), -1);
  assert_non_null(strstr(err, "expression too large"));
  assert_int_equal(run("Node.Node matches \"a{1001}\"", t, row, err, sizeof err), -1);
  assert_int_equal(run("Node.Node matches \"(a)\\\\1\"", t, row, err, sizeof err), -1);
  assert_non_null(strstr(err, "invalid escape sequence"));
  assert_int_equal(run("Node.Node matches \"^no+?de-[0-9]{1,3}$\"", t, row, err, sizeof err), 1);
  assert_int_equal(run("Node.Node matches \"(?:node)-1\"", t, row, err, sizeof err), 1);
  assert_int_equal(run("Service.Service ==", t, row, err, sizeof err), -1);
  assert_int_equal(run("Service.Service == web and", t, row, err, sizeof err), -1);
  assert_int_equal(run("(Service.Service == web", t, row, err, sizeof err), -1);
  assert_non_null(strstr(err, "Unmatched parentheses"));
  assert_int_equal(run("Service.Service == \"web", t, row, err, sizeof err), -1);
  assert_non_null(strstr(err, "Unterminated string literal"));
  assert_int_equal(run("Service.Port == 12abc", t, row, err, sizeof err), -1);
  assert_non_null(strstr(err, "Invalid number literal"));
  assert_int_equal(run("", t, row, err, sizeof err), -1);
  assert_int_equal(run("Service.Service = web", t, row, err, sizeof err), -1);
  assert_string_equal(err, "1:17 (16): no match found, expected: ==");
  assert_int_equal(run("Node.Meta[rack] == x", t, row, err, sizeof err), -1);
  assert_int_equal(run("Service.Service == web)", t, row, err, sizeof err), -1);
  assert_int_equal(run("Checks == x", t, row, err, sizeof err), -1);
  /* Nesting is capped, deep input is refused without exhausting the stack. */
  char deep[4096];
  size_t n = 0;
  for (int i = 0; i < 1000; i++) deep[n++] = '(';
  deep[n] = '\0';
  assert_int_equal(run(deep, t, row, err, sizeof err), -1);
  n = 0;
  for (int i = 0; i < 500; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "not ");
  snprintf(deep + n, sizeof deep - n, "Service.Port == 1");
  assert_int_equal(run(deep, t, row, err, sizeof err), -1);
}

/* Other Consul types and words that look like keywords. */
static void test_types_and_keywords(void **st)
{
  (void)st;
  json_t *chk = json_loads("{\"Node\":\"n\",\"CheckID\":\"c\",\"Status\":\"passing\","
                           "\"Notes\":\"x\",\"ServiceTags\":[]}",
                           0, NULL);
  char err[256];
  assert_int_equal(run("Notes == x", &filter_type_health_check, chk, err, sizeof err), 1);
  assert_int_equal(run("Status == not", &filter_type_health_check, chk, err, sizeof err), 0);
  assert_int_equal(run("Status == passing", &filter_type_health_check, chk, err, sizeof err), 1);
  assert_int_equal(run("Node.Node == n", &filter_type_health_check, chk, err, sizeof err), -1);
  json_decref(chk);
  json_t *sn = json_loads("{\"ServiceName\":\"web\",\"ServiceTags\":[],\"NodeMeta\":null,"
                          "\"ServicePort\":80,\"ServiceWeights\":{\"Passing\":1,\"Warning\":1}}",
                          0, NULL);
  assert_int_equal(run("NodeMeta.env == prod", &filter_type_service_node, sn, err, sizeof err), 0);
  assert_int_equal(run("NodeMeta is empty", &filter_type_service_node, sn, err, sizeof err), 1);
  assert_int_equal(run("ServiceTags is empty and ServicePort == 80", &filter_type_service_node, sn,
                       err, sizeof err),
                   1);
  assert_int_equal(
      run("ServiceProxy.DestinationServiceName == \"\"", &filter_type_service_node, sn, err,
          sizeof err),
      1);
  json_decref(sn);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_operators),     cmocka_unit_test(test_maps),
      cmocka_unit_test(test_lists_of_structs), cmocka_unit_test(test_boolean_logic),
      cmocka_unit_test(test_errors),        cmocka_unit_test(test_types_and_keywords),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
