/* test_cli_catalog.c -- unit tests of the service-discovery CLI commands: catalog
 * datacenters/nodes/services, services register/deregister (flags and config files), maint,
 * reload and validate, plus the repeatable and integer flags they brought. Each command runs
 * end to end against a scripted HTTP server on 127.0.0.1 (a thread in this process), checking
 * the exact request sent and the exact stdout, stderr and exit code. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/internal.h"
#include "lib/alloc.h"
#include "lib/log.h"

#include "../lib/cli_harness.h"

/* The body of a captured request (after the blank line). */
static const char *body_of(const char *req)
{
  const char *p = strstr(req, "\r\n\r\n");
  return p ? p + 4 : "";
}

static bool starts(const char *s, const char *prefix)
{
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A scratch directory for config files; removed by rm_tree. */
static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
  char path[256];
  snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static const char *tmp_path(const char *name)
{
  static char paths[8][256];
  static int next;
  char *p = paths[next++ % 8];
  snprintf(p, 256, "%s/%s", tmpdir, name);
  return p;
}

static int setup_tmp(void **state)
{
  (void)state;
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/concord-cli2-XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  return 0;
}

static int teardown_tmp(void **state)
{
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

/* ---- Flags ---- */

static void test_repeatable_and_int_flags(void **state)
{
  (void)state;
  struct cli__flagset fs;
  struct cli__mapflag m;
  struct cli__listflag l;
  int64_t port;
  cli__flags_init(&fs);
  cli__flag_map(&fs, "meta", &m, "Metadata as `key=value`.");
  cli__flag_list(&fs, "tag", &l, "A tag.");
  cli__flag_int(&fs, "port", &port, "A port.");
  char *argv[] = {"-meta", "a=1", "-tag=x", "-meta=b=2=3", "--tag", "y", "-meta", "a=9",
                  "-port", "-0x10", "rest"};
  int rest = 0;
  assert_int_equal(cli__flags_parse(&fs, 11, argv, &rest, stderr), 0);
  assert_int_equal(rest, 10);
  assert_int_equal(m.n, 2);
  assert_string_equal(m.key[0], "a");
  assert_string_equal(m.val[0], "9"); /* a map: the last value wins */
  assert_string_equal(m.key[1], "b");
  assert_string_equal(m.val[1], "2=3");
  assert_int_equal(l.n, 2);
  assert_string_equal(l.v[0], "x");
  assert_string_equal(l.v[1], "y");
  assert_int_equal(port, -16);
  cli__mapflag_free(&m);

  /* Go's messages for bad values, and the usage line names. */
  char *bad1[] = {"-meta", "novalue"};
  char *out = NULL;
  size_t outlen = 0;
  FILE *ef = open_memstream(&out, &outlen);
  assert_int_equal(cli__flags_parse(&fs, 2, bad1, &rest, ef), -1);
  fclose(ef);
  assert_true(starts(out, "invalid value \"novalue\" for flag -meta: Missing \"=\" value in "
                          "argument: novalue\nUsage:\n  -meta key=value\n"));
  assert_non_null(strstr(out, "\n  -port int\n"));
  assert_non_null(strstr(out, "\n  -tag value\n"));
  free(out);
  cli__mapflag_free(&m);

  char *bad2[] = {"-port=80x"};
  ef = open_memstream(&out, &outlen);
  assert_int_equal(cli__flags_parse(&fs, 1, bad2, &rest, ef), -1);
  fclose(ef);
  assert_true(starts(out, "invalid value \"80x\" for flag -port: parse error\n"));
  free(out);
  char *bad3[] = {"-port=9223372036854775808"};
  ef = open_memstream(&out, &outlen);
  assert_int_equal(cli__flags_parse(&fs, 1, bad3, &rest, ef), -1);
  fclose(ef);
  assert_true(starts(out, "invalid value \"9223372036854775808\" for flag -port: value out of "
                          "range\n"));
  free(out);
  char *ok[] = {"-port=-9223372036854775808"};
  assert_int_equal(cli__flags_parse(&fs, 1, ok, &rest, stderr), 0);
  assert_true(port == INT64_MIN);

  /* Caps: the 65th value is refused, not stored. */
  char *many[2 * (CLI__MAX_REPEAT + 1)];
  char vals[CLI__MAX_REPEAT + 1][16];
  for (int i = 0; i <= CLI__MAX_REPEAT; i++) {
    snprintf(vals[i], sizeof(vals[i]), "k%d=v", i);
    many[2 * i] = "-meta";
    many[2 * i + 1] = vals[i];
  }
  ef = open_memstream(&out, &outlen);
  assert_int_equal(cli__flags_parse(&fs, 2 * (CLI__MAX_REPEAT + 1), many, &rest, ef), -1);
  fclose(ef);
  assert_non_null(strstr(out, "too many values (at most 64)"));
  assert_int_equal(m.n, CLI__MAX_REPEAT);
  free(out);
  cli__mapflag_free(&m);

  /* The message is handed back for commands that print it twice. */
  char msg[128];
  char *unk[] = {"-nope"};
  ef = open_memstream(&out, &outlen);
  assert_int_equal(cli__flags_parse_msg(&fs, 1, unk, &rest, ef, msg, sizeof(msg)), -1);
  fclose(ef);
  free(out);
  assert_string_equal(msg, "flag provided but not defined: -nope");
}

/* ---- catalog ---- */

static void test_catalog_datacenters(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 3, reply(200, "[\"dc1\",\"dc2\"]"), reply(500, "boom\n"), reply(200, "{}"));
  set_addr(f.port);
  struct run r = RUN(NULL, "catalog", "datacenters");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "dc1\ndc2\n");
  assert_string_equal(r.err, "");
  assert_true(starts(f.requests[0], "GET /v1/catalog/datacenters HTTP/1.1\r\n"));
  run_free(&r);
  r = RUN(NULL, "catalog", "datacenters", "-datacenter=dc9");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error listing datacenters: Unexpected response code: 500 (boom)\n");
  assert_true(starts(f.requests[1], "GET /v1/catalog/datacenters?dc=dc9 HTTP/1.1\r\n"));
  run_free(&r);
  r = RUN(NULL, "catalog", "datacenters");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Error listing datacenters: json: cannot unmarshal"));
  run_free(&r);
  fake_stop(&f);

  r = RUN(NULL, "catalog", "datacenters", "extra");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Too many arguments (expected 0, got 1)\n");
  run_free(&r);
}

static const char nodes_json[] =
    "[{\"ID\":\"8214da15-689f-4a70-8580-08d5c00850d8\",\"Node\":\"alpha\",\"Address\":"
    "\"10.0.0.1\",\"Datacenter\":\"dc1\",\"TaggedAddresses\":{\"wan\":\"1.2.3.4\",\"lan\":"
    "\"10.0.0.1\"},\"Meta\":{\"rack\":\"r1\",\"env\":\"prod\"}},"
    "{\"ID\":\"\",\"Node\":\"b\",\"Address\":\"10.0.0.22\",\"Datacenter\":\"dc1\","
    "\"TaggedAddresses\":null,\"Meta\":null}]";

static void test_catalog_nodes(void **state)
{
  (void)state;
  const char *svc =
      "[{\"ID\":\"abc-def\",\"Node\":\"web1\",\"Address\":\"10.0.0.5\",\"Datacenter\":\"dc1\","
      "\"TaggedAddresses\":{\"lan\":\"10.0.0.5\"},\"NodeMeta\":{\"k\":\"v\"},\"ServiceName\":"
      "\"web\"}]";
  struct fake f;
  fake_start(&f, 6, reply(200, nodes_json), reply(200, nodes_json), reply(200, svc),
             reply(200, "[]"), reply(200, "null"), reply(400, "Bad filter"));
  set_addr(f.port);
  struct run r = RUN(NULL, "catalog", "nodes");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Node   ID        Address    DC\n"
                             "alpha  8214da15  10.0.0.1   dc1\n"
                             "b                10.0.0.22  dc1\n");
  assert_true(starts(f.requests[0], "GET /v1/catalog/nodes HTTP/1.1\r\n"));
  run_free(&r);

  r = RUN(NULL, "catalog", "nodes", "-detailed", "-near=_agent", "-node-meta=rack=r1",
          "-node-meta", "env=prod", "-filter=Meta.env == \"prod\"");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out,
                      "Node   ID                                    Address    DC   "
                      "TaggedAddresses            Meta\n"
                      "alpha  8214da15-689f-4a70-8580-08d5c00850d8  10.0.0.1   dc1  "
                      "lan=10.0.0.1, wan=1.2.3.4  env=prod, rack=r1\n"
                      /* empty middle fields are padded, the last one is not */
                      "b                                            10.0.0.22  dc1  "
                      "                           \n");
  /* node-meta sorted by key, every parameter sorted by name, as url.Values.Encode does */
  assert_true(starts(f.requests[1], "GET /v1/catalog/nodes?filter=Meta.env%20%3D%3D%20%22prod%22"
                                    "&near=_agent&node-meta=env%3Aprod&node-meta=rack%3Ar1 "
                                    "HTTP/1.1\r\n"));
  run_free(&r);

  r = RUN(NULL, "catalog", "nodes", "-service=web", "-detailed");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Node  ID       Address   DC   TaggedAddresses  Meta\n"
                             "web1  abc-def  10.0.0.5  dc1  lan=10.0.0.5     k=v\n");
  assert_true(starts(f.requests[2], "GET /v1/catalog/service/web HTTP/1.1\r\n"));
  run_free(&r);

  /* Nothing found is exit 0 with a sentence on stderr; null (no such service) too. */
  r = RUN(NULL, "catalog", "nodes");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "No nodes match the given query - try expanding your search.\n");
  run_free(&r);
  r = RUN(NULL, "catalog", "nodes", "-service", "a b");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.err, "No nodes match the given query - try expanding your search.\n");
  assert_true(starts(f.requests[4], "GET /v1/catalog/service/a%20b HTTP/1.1\r\n"));
  run_free(&r);
  r = RUN(NULL, "catalog", "nodes", "-filter=x", "-service=web");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error listing nodes for service: Unexpected response code: 400 "
                             "(Bad filter)\n");
  run_free(&r);
  fake_stop(&f);

  /* -filter from a file and from stdin. */
  write_file("filter.txt", "Node == \"b\"");
  char arg[300];
  snprintf(arg, sizeof(arg), "-filter=@%s", tmp_path("filter.txt"));
  fake_start(&f, 2, reply(200, "[]"), reply(200, "[]"));
  set_addr(f.port);
  r = RUN(NULL, "catalog", "nodes", arg);
  assert_int_equal(r.code, 0);
  assert_true(starts(f.requests[0], "GET /v1/catalog/nodes?filter=Node%20%3D%3D%20%22b%22 "));
  run_free(&r);
  r = RUN("Node != x", "catalog", "nodes", "-filter=-");
  assert_int_equal(r.code, 0);
  assert_true(starts(f.requests[1], "GET /v1/catalog/nodes?filter=Node%20%21%3D%20x "));
  run_free(&r);
  fake_stop(&f);
  r = RUN(NULL, "catalog", "nodes", "-filter=@/nonexistent/f");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Could not process filter argument: Failed to read file: open "
                             "/nonexistent/f: no such file or directory\n");
  run_free(&r);
  r = RUN(NULL, "catalog", "nodes", "-node-meta=x");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "invalid value \"x\" for flag -node-meta: Missing \"=\" value in "
                            "argument: x\nUsage:\n"));
  run_free(&r);

  int port = dead_port();
  set_addr(port);
  r = RUN(NULL, "catalog", "nodes");
  assert_int_equal(r.code, 1);
  char want[256];
  snprintf(want, sizeof(want), "Error listing nodes: Get \"http://127.0.0.1:%d/v1/catalog/nodes\""
           ": dial tcp 127.0.0.1:%d: connect: connection refused\n", port, port);
  assert_string_equal(r.err, want);
  run_free(&r);
}

static void test_catalog_services(void **state)
{
  (void)state;
  const char *all = "{\"consul\":[],\"web\":[\"v2\",\"a\"],\"db\":[\"primary\"],"
                    "\"long-service-name\":null}";
  const char *node = "{\"Node\":{\"Node\":\"n3\"},\"Services\":{\"web1\":{\"ID\":\"web1\","
                     "\"Service\":\"web\",\"Tags\":[\"z\",\"b\"]},\"web2\":{\"ID\":\"web2\","
                     "\"Service\":\"web\",\"Tags\":[\"b\"]},\"db\":{\"ID\":\"db\",\"Service\":"
                     "\"db\",\"Tags\":null}}}";
  struct fake f;
  fake_start(&f, 7, reply(200, all), reply(200, all), reply(200, node), reply(200, node),
             reply(200, "null"), reply(200, "{}"), reply(403, "Permission denied"));
  set_addr(f.port);
  struct run r = RUN(NULL, "catalog", "services");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "consul\ndb\nlong-service-name\nweb\n");
  assert_true(starts(f.requests[0], "GET /v1/catalog/services HTTP/1.1\r\n"));
  run_free(&r);

  /* Go's tabwriter (padding 6), then TrimSpace of the whole: inner lines keep their padding. */
  r = RUN(NULL, "catalog", "services", "-tags", "-node-meta=a=b", "-namespace=ns1");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "consul                 \n"
                             "db                     primary\n"
                             "long-service-name      \n"
                             "web                    a,v2\n");
  assert_true(starts(f.requests[1], "GET /v1/catalog/services?node-meta=a%3Ab&ns=ns1 "));
  run_free(&r);

  r = RUN(NULL, "catalog", "services", "-node=n3");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "db\nweb\n");
  assert_true(starts(f.requests[2], "GET /v1/catalog/node/n3 HTTP/1.1\r\n"));
  run_free(&r);
  r = RUN(NULL, "catalog", "services", "-node=n3", "-tags");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "db       \nweb      b,b,z\n");
  run_free(&r);

  r = RUN(NULL, "catalog", "services", "-node=nope");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "No services match the given query - try expanding your search.\n");
  run_free(&r);
  r = RUN(NULL, "catalog", "services", "-filter=ServiceName == web");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.err, "No services match the given query - try expanding your search.\n");
  assert_true(starts(f.requests[5], "GET /v1/catalog/services?filter=ServiceName%20%3D%3D%20web "));
  run_free(&r);
  r = RUN(NULL, "catalog", "services", "-node=n1");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error listing services for node: Unexpected response code: 403 "
                             "(Permission denied)\n");
  run_free(&r);
  fake_stop(&f);

  fake_start(&f, 1, reply(500, "x"));
  set_addr(f.port);
  r = RUN(NULL, "catalog", "services");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error listing services: Unexpected response code: 500 (x)\n");
  run_free(&r);
  fake_stop(&f);
}

/* ---- services ---- */

static void test_services_register_flags(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 3, reply(200, ""), reply(200, ""), reply(400, "Invalid Service Meta"));
  set_addr(f.port);
  struct run r = RUN(NULL, "services", "register", "-name=web");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Registered service: web\n");
  assert_true(starts(f.requests[0], "PUT /v1/agent/service/register HTTP/1.1\r\n"));
  assert_string_equal(body_of(f.requests[0]), "{\"Name\":\"web\",\"Check\":null,\"Checks\":null}\n");
  run_free(&r);

  r = RUN(NULL, "services", "register", "-name=web", "-id=web-1", "-address=10.0.0.1",
          "-port=8080", "-tag=v1", "-tag=v2", "-meta=a=1", "-meta=b=2", "-kind=connect-proxy",
          "-tagged-address=lan=10.0.0.1:80", "-tagged-address=v6=[::1]:81", "-token=t",
          "-partition=p1");
  assert_int_equal(r.code, 0);
  assert_string_equal(body_of(f.requests[1]),
                      "{\"Kind\":\"connect-proxy\",\"ID\":\"web-1\",\"Name\":\"web\",\"Tags\":"
                      "[\"v1\",\"v2\"],\"Port\":8080,\"Address\":\"10.0.0.1\",\"TaggedAddresses\":"
                      "{\"lan\":{\"Address\":\"10.0.0.1\",\"Port\":80},\"v6\":{\"Address\":\"::1\","
                      "\"Port\":81}},\"Meta\":{\"a\":\"1\",\"b\":\"2\"},\"Check\":null,\"Checks\":"
                      "null}\n");
  assert_true(starts(f.requests[1], "PUT /v1/agent/service/register?partition=p1 HTTP/1.1\r\n"));
  assert_non_null(strstr(f.requests[1], "\r\nX-Consul-Token: t\r\n"));
  run_free(&r);

  r = RUN(NULL, "services", "register", "-name=we\"b", "-meta=consul-x=1");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "Error registering service \"we\\\"b\": Unexpected response code: 400 "
                             "(Invalid Service Meta)\n");
  run_free(&r);
  fake_stop(&f);

  /* Argument errors, before any request. */
  r = RUN(NULL, "services", "register");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Service registration requires at least one argument or flags.\n");
  run_free(&r);
  r = RUN(NULL, "services", "register", "-name=x", "file.json");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Service registration requires arguments or -id, not both.\n");
  run_free(&r);
  static const char *const bad[][2] = {
      {"-tagged-address=lan=10.0.0.1", "address 10.0.0.1: missing port in address"},
      {"-tagged-address=lan=a:b:1", "address a:b:1: too many colons in address"},
      {"-tagged-address=lan=[::1", "address [::1: missing ']' in address"},
      {"-tagged-address=lan=[::1]", "address [::1]: missing port in address"},
      {"-tagged-address=lan=[::1]x:1", "address [::1]x:1: missing port in address"},
      {"-tagged-address=lan=a]:1", "address a]:1: unexpected ']' in address"},
      {"-tagged-address=lan=h:x", "strconv.Atoi: parsing \"x\": invalid syntax"},
      {"-tagged-address=lan=h:", "strconv.Atoi: parsing \"\": invalid syntax"},
      {"-tagged-address=lan=h:99999999999999999999", "strconv.Atoi: parsing "
                                                     "\"99999999999999999999\": value out of "
                                                     "range"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    r = RUN(NULL, "services", "register", "-name=x", bad[i][0]);
    assert_int_equal(r.code, 1);
    char want[256];
    snprintf(want, sizeof(want), "Invalid Tagged Address: %s\n", bad[i][1]);
    assert_string_equal(r.err, want);
    run_free(&r);
  }
  r = RUN(NULL, "services", "register", "-name=x", "-port=http");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "invalid value \"http\" for flag -port: parse error\nUsage:\n"));
  run_free(&r);
}

static void test_services_register_files(void **state)
{
  (void)state;
  write_file("web.json",
             "{\"service\": {\"name\": \"web\", \"id\": \"web1\", \"port\": 8080, \"tags\": [\"v1\"],"
             " \"EnableTagOverride\": true, \"meta\": {\"a\": \"b\"}, \"token\": \"secret\","
             " \"tagged_addresses\": {\"lan\": {\"address\": \"10.0.0.1\", \"port\": 80}},"
             " \"check\": {\"id\": \"web-http\", \"http\": \"http://127.0.0.1:8080/h\","
             "   \"interval\": \"90s\", \"timeout\": \"1s\", \"header\": {\"X\": [\"1\"]}},"
             " \"checks\": [{\"name\": \"ttl\", \"ttl\": \"30s\", \"failures_before_critical\": 3,"
             "   \"DeregisterCriticalServiceAfter\": \"0s\", \"args\": [\"/bin/true\"]}]},"
             " \"services\": [{\"name\": \"db\", \"port\": 5432, \"kind\": \"odd\","
             "   \"weights\": {\"passing\": 3}, \"connect\": {\"sidecar_service\": {}}}],"
             " \"data_dir\": \"/tmp\", \"log_level\": \"warn\"}");
  mkdir(tmp_path("dir"), 0755);
  write_file("dir/b.json", "{\"service\": {\"name\": \"second\"}}");
  write_file("dir/a.json", "{\"service\": {\"name\": \"first\", \"address\": \"h\"}}");
  write_file("dir/ignored.txt", "not json");

  struct fake f;
  fake_start(&f, 6, reply(200, ""), reply(200, ""), reply(200, ""), reply(200, ""),
             reply(200, ""), reply(500, "no"));
  set_addr(f.port);
  struct run r = RUN(NULL, "services", "register", tmp_path("web.json"));
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Registered service: db\nRegistered service: web\n");
  assert_string_equal(body_of(f.requests[0]),
                      "{\"Name\":\"db\",\"Port\":5432,\"Weights\":{\"Passing\":3,\"Warning\":1},"
                      "\"Check\":null,\"Checks\":null,\"Connect\":{\"SidecarService\":{}}}\n");
  assert_string_equal(body_of(f.requests[1]),
                      "{\"ID\":\"web1\",\"Name\":\"web\",\"Tags\":[\"v1\"],\"Port\":8080,"
                      "\"TaggedAddresses\":{\"lan\":{\"Address\":\"10.0.0.1\",\"Port\":80}},"
                      "\"EnableTagOverride\":true,\"Meta\":{\"a\":\"b\"},\"Weights\":{\"Passing\":"
                      "1,\"Warning\":1},\"Check\":null,\"Checks\":[{\"Name\":\"ttl\",\"ScriptArgs\":"
                      "[\"/bin/true\"],\"TTL\":\"30s\",\"FailuresBeforeWarning\":3,"
                      "\"FailuresBeforeCritical\":3},{\"CheckID\":\"web-http\",\"Interval\":"
                      "\"1m30s\",\"Timeout\":\"1s\",\"HTTP\":\"http://127.0.0.1:8080/h\","
                      "\"Header\":{\"X\":[\"1\"]}}]}\n");
  run_free(&r);

  /* Flags fill the gaps and add tags/meta (CombineArgs); a directory is read in order. */
  r = RUN(NULL, "services", "register", "-id=flag-id", "-port=1", "-tag=extra", "-meta=a=z",
          "-address=ignored", tmp_path("dir"));
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Registered service: first\nRegistered service: second\n");
  assert_string_equal(body_of(f.requests[2]),
                      "{\"ID\":\"flag-id\",\"Name\":\"first\",\"Tags\":[\"extra\"],\"Port\":1,"
                      "\"Address\":\"h\",\"Meta\":{\"a\":\"z\"},\"Weights\":{\"Passing\":1,"
                      "\"Warning\":1},\"Check\":null,\"Checks\":null}\n");
  assert_string_equal(body_of(f.requests[3]),
                      "{\"ID\":\"flag-id\",\"Name\":\"second\",\"Tags\":[\"extra\"],\"Port\":1,"
                      "\"Address\":\"ignored\",\"Meta\":{\"a\":\"z\"},\"Weights\":{\"Passing\":1,"
                      "\"Warning\":1},\"Check\":null,\"Checks\":null}\n");
  run_free(&r);

  /* A file with no services registers what the flags say (nothing: Consul's behaviour). */
  write_file("none.json", "{\"node_name\": \"n\"}");
  r = RUN(NULL, "services", "register", tmp_path("none.json"));
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Registered service: \n");
  assert_string_equal(body_of(f.requests[4]), "{\"Check\":null,\"Checks\":null}\n");
  run_free(&r);

  /* The first failure stops the run. */
  r = RUN(NULL, "services", "register", tmp_path("web.json"));
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "Error registering service \"db\": Unexpected response code: 500 (no)\n");
  run_free(&r);
  fake_stop(&f);

  /* Bad files fail before any request, with the file and key in the message. */
  static const char *const bad[][2] = {
      {"{\"service\": {\"name\": \"w\", \"bogus\": 1}}", "invalid config key service.bogus"},
      {"{\"services\": [{\"name\": \"w\"}, {\"check\": {\"interval\": \"10x\"}}]}",
       "services[1].check.interval: invalid duration \"10x\""},
      {"{\"service\": {\"name\": \"w\", \"checks\": [{}, {\"ttl\": 5}]}}",
       "service.checks[1].ttl has the wrong type"},
      {"{\"service\": {\"name\": \"w\", \"check\": {\"scrip\": \"x\"}}}",
       "invalid config key service.check.scrip"},
      {"{\"service\": {\"name\": \"w\", \"port\": \"80\"}}", "service.port has the wrong type"},
      {"{\"service\": {\"name\": \"w\", \"tags\": [1]}}", "service.tags has the wrong type"},
      {"{\"service\": {\"name\": \"w\", \"meta\": {\"a\": 1}}}", "service.meta has the wrong type"},
      {"{\"services\": {\"name\": \"w\"}}", "services has the wrong type"},
      {"{\"service\": [1]}", "service has the wrong type"},
      {"{\"service\": {\"tagged_addresses\": {\"lan\": \"x\"}}}",
       "service.tagged_addresses[\"lan\"] has the wrong type"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    write_file("bad.json", bad[i][0]);
    r = RUN(NULL, "services", "register", tmp_path("bad.json"));
    assert_int_equal(r.code, 1);
    char want[512];
    snprintf(want, sizeof(want), "Error: %s: %s\n", tmp_path("bad.json"), bad[i][1]);
    assert_string_equal(r.err, want);
    run_free(&r);
  }
  write_file("bad.json", "{\"service\": {\"name\": \"w\", \"socket_path\": \"/s\", \"port\": 1}}");
  r = RUN(NULL, "services", "register", tmp_path("bad.json"));
  assert_string_equal(r.err, "Error: service w cannot have both socket path /s and address/port\n");
  run_free(&r);
  write_file("bad.json", "{\"service\": {\"name\": \"w\", \"weights\": {\"passing\": 0}}}");
  r = RUN(NULL, "services", "register", tmp_path("bad.json"));
  assert_string_equal(r.err, "Error: Invalid weight definition for service w: Passing must be "
                             "greater than 0\n");
  run_free(&r);
  /* The agent's own config checks apply first (a -dev load, so no data_dir is needed). */
  write_file("bad.json", "{\"servic\": {}}");
  r = RUN(NULL, "services", "register", tmp_path("bad.json"));
  char want[512];
  snprintf(want, sizeof(want), "Error: %s: invalid config key servic\n", tmp_path("bad.json"));
  assert_string_equal(r.err, want);
  run_free(&r);
  r = RUN(NULL, "services", "register", tmp_path("missing.json"));
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Error: cannot read config file "));
  run_free(&r);
}

static void test_services_deregister(void **state)
{
  (void)state;
  write_file("two.json", "{\"services\": [{\"name\": \"web\", \"id\": \"web-1\"},"
                         " {\"name\": \"db\"}, {\"port\": 1}]}");
  struct fake f;
  fake_start(&f, 4, reply(200, ""), reply(200, ""), reply(200, ""),
             reply(404, "Unknown service ID \"x\""));
  set_addr(f.port);
  struct run r = RUN(NULL, "services", "deregister", "-id=a/b");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Deregistered service: a/b\n");
  assert_true(starts(f.requests[0], "PUT /v1/agent/service/deregister/a/b HTTP/1.1\r\n"));
  run_free(&r);
  /* From a file: by ID, else by name; a definition with neither is skipped. */
  r = RUN(NULL, "services", "deregister", tmp_path("two.json"));
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Deregistered service: web-1\nDeregistered service: db\n");
  assert_true(starts(f.requests[1], "PUT /v1/agent/service/deregister/web-1 HTTP/1.1\r\n"));
  assert_true(starts(f.requests[2], "PUT /v1/agent/service/deregister/db HTTP/1.1\r\n"));
  run_free(&r);
  r = RUN(NULL, "services", "deregister", "-id", "x");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error deregistering service \"\": Unexpected response code: 404 "
                             "(Unknown service ID \"x\")\n");
  run_free(&r);
  fake_stop(&f);

  r = RUN(NULL, "services", "deregister");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Service deregistration requires at least one argument or -id.\n");
  run_free(&r);
  r = RUN(NULL, "services", "deregister", "-id=x", "f.json");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Service deregistration requires arguments or -id, not both.\n");
  run_free(&r);
}

/* ---- maint, reload ---- */

static void test_maint(void **state)
{
  (void)state;
  const char *self = "{\"Config\":{\"NodeName\":\"node-1\"},\"Member\":{}}";
  const char *checks =
      "{\"_service_maintenance:web\":{\"CheckID\":\"_service_maintenance:web\",\"ServiceID\":"
      "\"web\",\"Notes\":\"deploy\"},\"serfHealth\":{\"CheckID\":\"serfHealth\",\"Notes\":\"\"},"
      "\"_node_maintenance\":{\"CheckID\":\"_node_maintenance\",\"Notes\":\"Maintenance mode is "
      "enabled for this node, but no reason was provided. This is a default message.\"}}";
  struct fake f;
  fake_start(&f, 8, reply(200, self), reply(200, checks), reply(200, ""), reply(200, ""),
             reply(200, ""), reply(200, ""), reply(200, self), reply(200, "{}"));
  set_addr(f.port);
  struct run r = RUN(NULL, "maint");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Node:\n"
                             "  Name:   node-1\n"
                             "  Reason: Maintenance mode is enabled for this node, but no reason "
                             "was provided. This is a default message.\n"
                             "\n"
                             "Service:\n"
                             "  ID:     web\n"
                             "  Reason: deploy\n"
                             "\n");
  assert_true(starts(f.requests[0], "GET /v1/agent/self HTTP/1.1\r\n"));
  assert_true(starts(f.requests[1], "GET /v1/agent/checks HTTP/1.1\r\n"));
  run_free(&r);

  r = RUN(NULL, "maint", "-enable");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Node maintenance is now enabled\n");
  assert_true(starts(f.requests[2], "PUT /v1/agent/maintenance?enable=true&reason= HTTP/1.1\r\n"));
  run_free(&r);
  r = RUN(NULL, "maint", "-enable", "-reason=new build", "-service=web");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Service maintenance is now enabled for \"web\"\n");
  assert_true(starts(f.requests[3], "PUT /v1/agent/service/maintenance/web?enable=true&"
                                    "reason=new%20build HTTP/1.1\r\n"));
  run_free(&r);
  r = RUN(NULL, "maint", "-disable");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Node maintenance is now disabled\n");
  assert_true(starts(f.requests[4], "PUT /v1/agent/maintenance?enable=false HTTP/1.1\r\n"));
  run_free(&r);
  r = RUN(NULL, "maint", "-disable", "-service", "web");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Service maintenance is now disabled for \"web\"\n");
  assert_true(starts(f.requests[5], "PUT /v1/agent/service/maintenance/web?enable=false "));
  run_free(&r);
  /* Nothing in maintenance: no output. */
  r = RUN(NULL, "maint");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "");
  run_free(&r);
  fake_stop(&f);

  fake_start(&f, 4, reply(500, "self broke"), reply(200, self), reply(404, ""),
             reply(404, "Unknown service ID \"nope\""));
  set_addr(f.port);
  r = RUN(NULL, "maint");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error querying Consul agent: Unexpected response code: 500 "
                             "(self broke)\n");
  run_free(&r);
  r = RUN(NULL, "maint");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error getting checks: Unexpected response code: 404 ()\n");
  run_free(&r);
  r = RUN(NULL, "maint", "-enable", "-service=nope");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error enabling service maintenance: Unexpected response code: 404 "
                             "(Unknown service ID \"nope\")\n");
  run_free(&r);
  fake_stop(&f);

  static const char *const conflicts[][3] = {
      {"-enable", "-disable", "Only one of -enable or -disable may be provided\n"},
      {"-reason=x", NULL, "Reason may only be provided with -enable\n"},
      {"-disable", "-reason=x", "Reason may only be provided with -enable\n"},
      {"-service=web", NULL, "Service requires either -enable or -disable\n"},
  };
  for (size_t i = 0; i < sizeof(conflicts) / sizeof(conflicts[0]); i++) {
    r = conflicts[i][1] ? RUN(NULL, "maint", conflicts[i][0], conflicts[i][1])
                        : RUN(NULL, "maint", conflicts[i][0]);
    assert_int_equal(r.code, 1);
    assert_string_equal(r.err, conflicts[i][2]);
    run_free(&r);
  }
}

static void test_reload(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 2, reply(200, ""), reply(500, "Failed to reload configs: bad"));
  set_addr(f.port);
  struct run r = RUN(NULL, "reload");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Configuration reload triggered\n");
  assert_true(starts(f.requests[0], "PUT /v1/agent/reload HTTP/1.1\r\n"));
  run_free(&r);
  r = RUN(NULL, "reload");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "Error reloading: Unexpected response code: 500 (Failed to reload "
                             "configs: bad)\n");
  run_free(&r);
  fake_stop(&f);
}

/* ---- validate ---- */

static void test_validate(void **state)
{
  (void)state;
  env_table[0] = NULL;
  write_file("ok.json", "{\"data_dir\": \"/tmp\", \"datacenter\": \"east\"}");
  write_file("nodd.json", "{\"datacenter\": \"east\"}");
  write_file("baddc.json", "{\"data_dir\": \"/tmp\", \"datacenter\": \"a b\"}");
  write_file("file-dd.json", "{\"data_dir\": \"/etc/hostname\"}");
  write_file("svc.json", "{\"data_dir\": \"/tmp\", \"service\": {\"name\": \"x\", \"check\": "
                         "{\"ttl\": \"5q\"}}}");
  write_file("empty.json", "");
  mkdir(tmp_path("conf.d"), 0755);
  write_file("conf.d/1.json", "{\"data_dir\": \"/tmp\"}");
  write_file("conf.d/2.json", "{\"node_name\": \"x\"}");

  struct run r = RUN(NULL, "validate", tmp_path("ok.json"));
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Configuration is valid!\n");
  assert_string_equal(r.err, "");
  run_free(&r);
  r = RUN(NULL, "validate", "-quiet", tmp_path("conf.d"));
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "");
  run_free(&r);
  /* Files are merged in order: the directory supplies data_dir for the other file. */
  r = RUN(NULL, "validate", tmp_path("nodd.json"), tmp_path("conf.d"));
  assert_int_equal(r.code, 0);
  run_free(&r);

  r = RUN(NULL, "validate", tmp_path("nodd.json"));
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "Config validation failed: data_dir cannot be empty (use -data-dir, "
                             "or -dev)\n");
  run_free(&r);
  r = RUN(NULL, "validate", tmp_path("baddc.json"));
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Config validation failed: datacenter \"a b\" must be alphanumeric "
                             "with - and _ only\n");
  run_free(&r);
  r = RUN(NULL, "validate", tmp_path("file-dd.json"));
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Config validation failed: data_dir \"/etc/hostname\" is not a "
                             "directory\n");
  run_free(&r);
  r = RUN(NULL, "validate", tmp_path("svc.json"));
  assert_int_equal(r.code, 1);
  char want[512];
  snprintf(want, sizeof(want), "Config validation failed: %s: service.check.ttl: invalid "
           "duration \"5q\"\n", tmp_path("svc.json"));
  assert_string_equal(r.err, want);
  run_free(&r);
  r = RUN(NULL, "validate", tmp_path("empty.json"));
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Config validation failed: "));
  run_free(&r);
  r = RUN(NULL, "validate", tmp_path("ok.json"), "/nonexistent/x.json");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Config validation failed: cannot read config file "
                            "/nonexistent/x.json"));
  run_free(&r);

  r = RUN(NULL, "validate");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Must specify at least one config file or directory\n");
  run_free(&r);
  r = RUN(NULL, "validate", "-config-format=yaml", tmp_path("ok.json"));
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "-config-format must be either 'hcl' or 'json\n");
  run_free(&r);
  /* JSON is HCL too; anything else is beyond a JSON-only reader, which the message says. */
  write_file("conf.hclish", "{\"data_dir\": \"/tmp\"}");
  r = RUN(NULL, "validate", "-config-format", "hcl", tmp_path("conf.hclish"));
  assert_int_equal(r.code, 0);
  run_free(&r);
  write_file("real.hclish", "data_dir = \"/tmp\"");
  r = RUN(NULL, "validate", "-config-format=hcl", tmp_path("real.hclish"));
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "(Concord reads config files as JSON only)\n"));
  run_free(&r);
  /* A bad flag: Go's usage, then Consul prints the error once more. */
  r = RUN(NULL, "validate", "-x", tmp_path("ok.json"));
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "flag provided but not defined: -x\nUsage:\n  -config-format string\n"));
  const char *tail = "\nflag provided but not defined: -x\n";
  assert_string_equal(r.err + r.errlen - strlen(tail), tail);
  run_free(&r);
}

/* ---- help and dispatch ---- */

static void test_help_and_parents(void **state)
{
  (void)state;
  env_table[0] = NULL;
  static const char *const cmds[][2] = {
      {"catalog", "datacenters"}, {"catalog", "nodes"}, {"catalog", "services"},
      {"services", "register"},   {"services", "deregister"}, {"maint", NULL},
      {"reload", NULL},           {"validate", NULL},
  };
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    struct run r = cmds[i][1] ? RUN(NULL, cmds[i][0], cmds[i][1], "-h") : RUN(NULL, cmds[i][0], "-h");
    assert_int_equal(r.code, 0);
    char want[64];
    snprintf(want, sizeof(want), "Usage: concord %s%s%s", cmds[i][0], cmds[i][1] ? " " : "",
             cmds[i][1] ? cmds[i][1] : "");
    assert_true(starts(r.out, want));
    if (strcmp(cmds[i][0], "validate") != 0)
      assert_non_null(strstr(r.out, "\n  -http-addr=<address>\n"));
    run_free(&r);
  }
  struct run r = RUN(NULL, "catalog", "nodes", "-h");
  assert_non_null(strstr(r.out, "\n  -node-meta=<key=value>\n"));
  assert_non_null(strstr(r.out, "\n  -service=<id or name>\n"));
  assert_non_null(strstr(r.out, "\n  -partition=<default>\n"));
  run_free(&r);
  r = RUN(NULL, "services", "register", "-h");
  assert_non_null(strstr(r.out, "\n  -port=<int>\n"));
  assert_non_null(strstr(r.out, "\n  -tag=<value>\n"));
  run_free(&r);

  r = RUN(NULL, "catalog");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_true(starts(r.err, "Usage: concord catalog <subcommand>"));
  assert_non_null(strstr(r.err, "\n\nSubcommands:\n"
                                "    datacenters    Lists all known datacenters\n"
                                "    nodes          Lists all nodes in the given datacenter\n"
                                "    services       Lists all registered services in a "
                                "datacenter\n"));
  run_free(&r);
  r = RUN(NULL, "services", "-h");
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.out, "\n\nSubcommands:\n"
                                "    deregister    Deregister services with the local agent\n"
                                "    register      Register services with the local agent\n"));
  run_free(&r);
  r = RUN(NULL, "services");
  assert_int_equal(r.code, 1);
  run_free(&r);
}

int main(void)
{
  /* validate and services register load config files; keep config warnings out of the log. */
  log_set_level(LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_repeatable_and_int_flags),
      cmocka_unit_test(test_catalog_datacenters),
      cmocka_unit_test(test_catalog_nodes),
      cmocka_unit_test(test_catalog_services),
      cmocka_unit_test(test_services_register_flags),
      cmocka_unit_test(test_services_register_files),
      cmocka_unit_test(test_services_deregister),
      cmocka_unit_test(test_maint),
      cmocka_unit_test(test_reload),
      cmocka_unit_test(test_validate),
      cmocka_unit_test(test_help_and_parents),
  };
  return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
