/* test_catalog.c -- the catalog tables: Consul's register/deregister rules and index rules
 * (ported from agent/consul/state/catalog_test.go where one exists), watches per service
 * name, delete cascades, the register/deregister commands and snapshots with a catalog. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "state/catalog.h"
#include "state/cmd.h"
#include "state/internal.h"
#include "state/store.h"
#include "state/watch.h"

/* ---- helpers ---- */

static struct state_register node_req(const char *node, const char *addr)
{
  return (struct state_register){.node = node, .address = addr, .datacenter = "dc1"};
}

static struct state_register_service svc(const char *id, const char *name, int port)
{
  return (struct state_register_service){.id = id, .name = name, .port = port, .tags_null = true,
                                         .meta = {NULL, 0, true}};
}

static struct state_register_check chk(const char *id, const char *status, const char *service_id)
{
  return (struct state_register_check){.check_id = id, .name = id, .status = status,
                                       .service_id = service_id};
}

static void reg(struct state_store *s, uint64_t idx, const struct state_register *r)
{
  char err[256];
  int rc = state_catalog_register(s, idx, r, err, sizeof err);
  if (rc) fail_msg("register failed: %s (%d)", err, rc);
}

static void reg_svc(struct state_store *s, uint64_t idx, const char *node, const char *id,
                    const char *name)
{
  struct state_register_service sv = svc(id, name, 80);
  struct state_register r = node_req(node, "10.0.0.1");
  r.service = &sv;
  reg(s, idx, &r);
}

static void reg_chk(struct state_store *s, uint64_t idx, const char *node, const char *id,
                    const char *status, const char *service_id)
{
  struct state_register_check c = chk(id, status, service_id);
  struct state_register r = node_req(node, "10.0.0.1");
  r.skip_node_update = true; /* keep what the node has (e.g. its ID) */
  r.checks = &c;
  r.n_checks = 1;
  reg(s, idx, &r);
}

static uint64_t tix(struct state_store *s, const char *table) { return state_table_index(s, table); }

static void dereg(struct state_store *s, uint64_t idx, const char *node, const char *sid,
                  const char *cid)
{
  struct state_deregister d = {node, sid, cid};
  assert_int_equal(state_catalog_deregister(s, idx, &d, NULL, 0), 0);
}

static void bump(void *arg) { (*(int *)arg)++; }

/* ---- tests ---- */

/* TestStateStore_EnsureRegistration: node, service and check in one request. */
static void test_register_all(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct state_register_service sv = svc("redis1", "redis", 8080);
  const char *tags[] = {"primary"};
  sv.tags = tags;
  sv.n_tags = 1;
  sv.tags_null = false;
  struct state_register_check checks[] = {chk("check1", "", NULL), chk("check2", "passing", "redis1")};
  struct state_register r = node_req("node1", "1.2.3.4");
  r.service = &sv;
  r.checks = checks;
  r.n_checks = 2;
  reg(s, 1, &r);

  const struct state_node *n = state_node_get(s, "node1");
  assert_non_null(n);
  assert_string_equal(n->address, "1.2.3.4");
  assert_int_equal(n->create_index, 1);
  assert_int_equal(n->modify_index, 1);
  const struct state_service *v = state_service_get(s, "node1", "redis1");
  assert_non_null(v);
  assert_string_equal(v->name, "redis");
  assert_int_equal(v->port, 8080);
  assert_int_equal(v->weight_passing, 1); /* default weights */
  assert_int_equal(v->weight_warning, 1);
  const struct state_check *c1 = state_check_get(s, "node1", "check1");
  assert_string_equal(c1->status, "critical"); /* the default status */
  const struct state_check *c2 = state_check_get(s, "node1", "check2");
  assert_string_equal(c2->service_name, "redis"); /* copied from the service */
  assert_int_equal(c2->n_service_tags, 1);
  assert_string_equal(c2->service_tags[0], "primary");

  assert_int_equal(tix(s, "nodes"), 1);
  assert_int_equal(tix(s, "services"), 1);
  assert_int_equal(tix(s, "checks"), 1);
  assert_int_equal(tix(s, "service.redis"), 1);
  assert_int_equal(tix(s, "service.REDIS"), 1); /* names are case-insensitive */
  assert_int_equal(tix(s, "node.node1"), 1);
  assert_int_equal(state_store_index(s), 1);

  /* Re-registering the same thing changes nothing: no index moves. */
  reg(s, 2, &r);
  assert_int_equal(state_node_get(s, "node1")->modify_index, 1);
  assert_int_equal(state_service_get(s, "node1", "redis1")->modify_index, 1);
  assert_int_equal(state_check_get(s, "node1", "check2")->modify_index, 1);
  assert_int_equal(tix(s, "nodes"), 1);
  assert_int_equal(tix(s, "services"), 1);
  assert_int_equal(tix(s, "checks"), 1);
  assert_int_equal(tix(s, "service.redis"), 1);

  /* Case-insensitive lookups, case kept. */
  assert_ptr_equal(state_node_get(s, "NODE1"), state_node_get(s, "node1"));
  assert_non_null(state_service_get(s, "Node1", "REDIS1"));
  assert_string_equal(state_service_get(s, "Node1", "REDIS1")->id, "redis1");
  state_store_free(s);
}

static void test_register_validation(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  char err[256];
  struct state_register r = node_req("", "1.2.3.4");
  assert_int_equal(state_catalog_register(s, 1, &r, err, sizeof err), CC_EINVAL);
  assert_string_equal(err, "Must provide node");
  r = node_req("n1", "");
  assert_int_equal(state_catalog_register(s, 1, &r, err, sizeof err), CC_EINVAL);
  assert_string_equal(err, "Must provide address if SkipNodeUpdate is not set");
  r.id = "not-a-uuid";
  r.address = "1.2.3.4";
  assert_int_equal(state_catalog_register(s, 1, &r, err, sizeof err), CC_EINVAL);
  r.id = NULL;

  struct state_register_service sv = svc("x", "", 1);
  r.service = &sv;
  assert_int_equal(state_catalog_register(s, 1, &r, err, sizeof err), CC_EINVAL);
  assert_string_equal(err, "Must provide service name with ID");
  sv = svc("web", "web", 1);
  sv.address = "0.0.0.0";
  assert_int_equal(state_catalog_register(s, 1, &r, err, sizeof err), CC_EINVAL);
  assert_string_equal(err, "Invalid service address");
  sv.address = "";
  struct state_pair meta[] = {{"consul-x", "y"}};
  sv.meta = (struct state_map){meta, 1, false};
  assert_int_equal(state_catalog_register(s, 1, &r, err, sizeof err), CC_EINVAL);
  assert_non_null(strstr(err, "Key prefix 'consul-' is reserved for internal use"));
  struct state_pair dup[] = {{"a", "1"}, {"a", "2"}};
  sv.meta = (struct state_map){dup, 2, false};
  assert_int_equal(state_catalog_register(s, 1, &r, err, sizeof err), CC_EINVAL);
  sv.meta = (struct state_map){NULL, 0, true};

  /* A check for a service that exists nowhere: refused, nothing written. */
  struct state_register_check c = chk("c1", "passing", "nope");
  r.checks = &c;
  r.n_checks = 1;
  assert_int_equal(state_catalog_register(s, 1, &r, err, sizeof err), CC_ENOTFOUND);
  assert_string_equal(err, "failed inserting check on node \"n1\": Missing service registration");
  assert_int_equal(state_node_count(s), 0);
  assert_int_equal(state_service_count(s), 0);
  assert_int_equal(state_store_index(s), 0);

  /* A check naming another node. */
  c = chk("c1", "passing", NULL);
  c.node = "other";
  assert_int_equal(state_catalog_register(s, 1, &r, err, sizeof err), CC_EINVAL);
  assert_string_equal(err, "check node \"other\" does not match node \"n1\"");
  /* The service in the same request satisfies its check. */
  c = chk("c1", "passing", "WEB");
  reg(s, 1, &r);
  assert_string_equal(state_check_get(s, "n1", "c1")->service_name, "web");

  /* Index below one applied before. */
  assert_int_equal(state_catalog_register(s, 0, &r, err, sizeof err), CC_EINVAL);
  state_store_free(s);
}

/* Registering a service (or a check) for an unknown node creates the node; SkipNodeUpdate
 * leaves an existing node alone. */
static void test_skip_node_update(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct state_register r = node_req("n1", "1.1.1.1");
  reg(s, 1, &r);
  r.address = "2.2.2.2";
  r.skip_node_update = true;
  struct state_register_service sv = svc("web", "web", 80);
  r.service = &sv;
  reg(s, 2, &r);
  assert_string_equal(state_node_get(s, "n1")->address, "1.1.1.1");
  assert_int_equal(state_node_get(s, "n1")->modify_index, 1);
  /* The service write moves nodes and node.n1 (catalogInsertService), not the row. */
  assert_int_equal(tix(s, "nodes"), 2);
  assert_int_equal(tix(s, "node.n1"), 2);
  /* SkipNodeUpdate on an unknown node still creates it. */
  r.node = "n2";
  r.address = "";
  reg(s, 3, &r);
  assert_non_null(state_node_get(s, "n2"));
  assert_string_equal(state_node_get(s, "n2")->address, "");
  state_store_free(s);
}

/* The per-service index: a change to db does not move service.web, and a watch on
 * "service.web" fires for web only. */
static void test_service_index_and_watch(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  reg_svc(s, 1, "n1", "web1", "web");
  reg_svc(s, 2, "n1", "db1", "db");
  assert_int_equal(tix(s, "service.web"), 1);
  assert_int_equal(tix(s, "service.db"), 2);
  assert_int_equal(tix(s, "services"), 2);

  int web = 0, db = 0, nodes = 0, checks = 0;
  state_watch_add(s, STATE_WATCH_TABLE, "service.web", 11, bump, &web);
  state_watch_add(s, STATE_WATCH_TABLE, "service.db", 10, bump, &db);
  state_watch_add(s, STATE_WATCH_TABLE, "nodes", 5, bump, &nodes);
  state_watch_add(s, STATE_WATCH_TABLE, "checks", 6, bump, &checks);

  /* A check on db: db's index and watch only. */
  reg_chk(s, 3, "n1", "dbcheck", "passing", "db1");
  assert_int_equal(tix(s, "service.db"), 3);
  assert_int_equal(tix(s, "service.web"), 1);
  assert_int_equal(db, 1);
  assert_int_equal(web, 0);
  assert_int_equal(checks, 1);
  assert_int_equal(nodes, 0);
  /* An identical check write is no change at all. */
  state_watch_add(s, STATE_WATCH_TABLE, "service.db", 10, bump, &db);
  reg_chk(s, 4, "n1", "dbcheck", "passing", "db1");
  assert_int_equal(db, 1);
  assert_int_equal(tix(s, "service.db"), 3);
  assert_int_equal(tix(s, "checks"), 3);
  /* Its status changing moves it. */
  reg_chk(s, 5, "n1", "dbcheck", "critical", "db1");
  assert_int_equal(db, 2);
  assert_int_equal(web, 0);
  assert_int_equal(tix(s, "service.db"), 5);
  assert_int_equal(state_check_get(s, "n1", "dbcheck")->create_index, 3);
  assert_int_equal(state_check_get(s, "n1", "dbcheck")->modify_index, 5);

  /* A node-level check concerns every service on the node. */
  state_watch_add(s, STATE_WATCH_TABLE, "service.db", 10, bump, &db);
  reg_chk(s, 6, "n1", "serfHealth", "passing", NULL);
  assert_int_equal(web, 1);
  assert_int_equal(db, 3);
  assert_int_equal(tix(s, "service.web"), 6);
  assert_int_equal(tix(s, "service.db"), 6);
  state_store_free(s);
}

static int count_svc(const struct state_service *v, void *arg)
{
  (void)v;
  (*(int *)arg)++;
  return 0;
}

static int count_chk(const struct state_check *c, void *arg)
{
  (void)c;
  (*(int *)arg)++;
  return 0;
}

/* TestStateStore_DeleteNode: services and checks go with the node. */
static void test_delete_node_cascade(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  reg_svc(s, 1, "n1", "web1", "web");
  reg_svc(s, 2, "n1", "web2", "web");
  reg_svc(s, 3, "n2", "web1", "web");
  reg_chk(s, 4, "n1", "c1", "passing", "web1");
  reg_chk(s, 5, "n1", "serfHealth", "passing", NULL);
  assert_int_equal(state_service_count(s), 3);
  assert_int_equal(state_check_count(s), 2);

  dereg(s, 6, "N1", NULL, NULL); /* case-insensitive */
  assert_null(state_node_get(s, "n1"));
  assert_int_equal(state_node_count(s), 1);
  assert_int_equal(state_service_count(s), 1);
  assert_int_equal(state_check_count(s), 0);
  int n = 0;
  state_node_services(s, "n1", count_svc, &n);
  assert_int_equal(n, 0);
  const struct state_service *const *inst;
  assert_int_equal(state_service_instances(s, "web", &inst), 1);
  assert_string_equal(inst[0]->node->name, "n2");
  assert_int_equal(tix(s, "nodes"), 6);
  assert_int_equal(tix(s, "services"), 6);
  assert_int_equal(tix(s, "checks"), 6);
  assert_int_equal(tix(s, "service.web"), 6);
  assert_int_equal(tix(s, "node_last_extinction"), 6);
  assert_int_equal(tix(s, "node.n1"), 0);
  assert_int_equal(tix(s, "service_last_extinction"), 0); /* web still has an instance */

  /* Deleting what is not there: no change. */
  dereg(s, 7, "n1", NULL, NULL);
  assert_int_equal(tix(s, "nodes"), 6);
  state_store_free(s);
}

/* TestStateStore_DeleteService: its checks go, the last instance drops service.<name>. */
static void test_delete_service(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  reg_svc(s, 1, "n1", "web1", "web");
  reg_chk(s, 2, "n1", "c1", "passing", "web1");
  reg_chk(s, 3, "n1", "c2", "passing", NULL);
  int web = 0;
  state_watch_add(s, STATE_WATCH_TABLE, "service.web", 11, bump, &web);
  dereg(s, 4, "n1", "WEB1", NULL);
  assert_int_equal(web, 1);
  assert_null(state_service_get(s, "n1", "web1"));
  assert_null(state_check_get(s, "n1", "c1"));
  assert_non_null(state_check_get(s, "n1", "c2")); /* node-level check stays */
  assert_int_equal(tix(s, "service.web"), 0);
  assert_int_equal(tix(s, "service_last_extinction"), 4);
  assert_int_equal(tix(s, "services"), 4);
  assert_int_equal(tix(s, "checks"), 4);
  assert_int_equal(tix(s, "node.n1"), 4);
  const struct state_service *const *inst;
  assert_int_equal(state_service_instances(s, "web", &inst), 0);

  /* Deleting a check by ID; ServiceID wins over CheckID when both are given. */
  reg_svc(s, 5, "n1", "web1", "web");
  reg_chk(s, 6, "n1", "c1", "passing", "web1");
  dereg(s, 7, "n1", NULL, "c2");
  assert_null(state_check_get(s, "n1", "c2"));
  assert_int_equal(tix(s, "checks"), 7);
  assert_int_equal(tix(s, "service.web"), 7); /* a node check went: all services move */
  dereg(s, 8, "n1", "web1", "c1");
  assert_null(state_service_get(s, "n1", "web1"));
  assert_null(state_check_get(s, "n1", "c1"));
  assert_non_null(state_node_get(s, "n1"));
  state_store_free(s);
}

static void test_instances_and_health(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  reg_svc(s, 1, "b", "web", "web");
  reg_svc(s, 2, "a", "web-2", "Web");
  reg_svc(s, 3, "a", "web-1", "web");
  const struct state_service *const *inst;
  assert_int_equal(state_service_instances(s, "WEB", &inst), 3);
  /* Sorted by (node, service ID). */
  assert_string_equal(inst[0]->id, "web-1");
  assert_string_equal(inst[1]->id, "web-2");
  assert_string_equal(inst[2]->node->name, "b");
  assert_int_equal(state_instance_health(inst[0]), STATE_HEALTH_PASSING);
  reg_chk(s, 4, "a", "n", "warning", NULL);
  assert_int_equal(state_instance_health(inst[0]), STATE_HEALTH_WARNING);
  assert_int_equal(state_instance_health(inst[2]), STATE_HEALTH_PASSING);
  reg_chk(s, 5, "a", "s", "critical", "web-2");
  assert_int_equal(state_service_instances(s, "web", &inst), 3);
  assert_int_equal(state_instance_health(inst[0]), STATE_HEALTH_WARNING);
  assert_int_equal(state_instance_health(inst[1]), STATE_HEALTH_CRITICAL);
  int n = 0;
  state_instance_checks(inst[1], count_chk, &n);
  assert_int_equal(n, 2);

  /* Re-registering an instance under another name moves it between groups. */
  reg_svc(s, 6, "b", "web", "api");
  assert_int_equal(state_service_instances(s, "web", &inst), 2);
  assert_int_equal(state_service_instances(s, "api", &inst), 1);
  assert_int_equal(tix(s, "service.web"), 6);
  assert_int_equal(tix(s, "service.api"), 6);
  /* The replaced row keeps its checks and its node link. */
  assert_int_equal(state_service_instances(s, "web", &inst), 2);
  n = 0;
  state_instance_checks(inst[1], count_chk, &n);
  assert_int_equal(n, 2);
  state_store_free(s);
}

/* The aggregate health kept per node and per instance follows every kind of check write:
 * status changes both ways, deletes, and the rows being replaced by node and service updates
 * (catalog.c recomputes it on link and unlink instead of comparing strings on each read). */
static void test_health_cache(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  reg_svc(s, 1, "n1", "web", "web");
  const struct state_service *v = state_service_get(s, "n1", "web");
  assert_int_equal(state_instance_health(v), STATE_HEALTH_PASSING);
  reg_chk(s, 2, "n1", "sc", "critical", "web");
  assert_int_equal(state_instance_health(state_service_get(s, "n1", "web")), STATE_HEALTH_CRITICAL);
  reg_chk(s, 3, "n1", "sc", "passing", "web");
  assert_int_equal(state_instance_health(state_service_get(s, "n1", "web")), STATE_HEALTH_PASSING);
  reg_chk(s, 4, "n1", "nc", "bogus", NULL); /* an unknown status reads as warning */
  assert_int_equal(state_instance_health(state_service_get(s, "n1", "web")), STATE_HEALTH_WARNING);
  reg_chk(s, 5, "n1", "sc", "critical", "web");
  /* The node row is replaced: its aggregate goes with its checks. */
  reg(s, 6, &(struct state_register){.node = "n1", .address = "10.0.0.9", .datacenter = "dc1"});
  assert_int_equal(state_instance_health(state_service_get(s, "n1", "web")), STATE_HEALTH_CRITICAL);
  /* The service row is replaced (another port): same. */
  struct state_register_service sv = svc("web", "web", 81);
  struct state_register r = node_req("n1", "10.0.0.9");
  r.service = &sv;
  reg(s, 7, &r);
  assert_int_equal(state_service_get(s, "n1", "web")->port, 81);
  assert_int_equal(state_instance_health(state_service_get(s, "n1", "web")), STATE_HEALTH_CRITICAL);
  dereg(s, 8, "n1", NULL, "sc");
  assert_int_equal(state_instance_health(state_service_get(s, "n1", "web")), STATE_HEALTH_WARNING);
  dereg(s, 9, "n1", NULL, "nc");
  assert_int_equal(state_instance_health(state_service_get(s, "n1", "web")), STATE_HEALTH_PASSING);
  /* A second instance on the node sees the node's checks, not the first one's. */
  reg_svc(s, 10, "n1", "api", "api");
  reg_chk(s, 11, "n1", "ac", "critical", "api");
  reg_chk(s, 12, "n1", "nc", "warning", NULL);
  assert_int_equal(state_instance_health(state_service_get(s, "n1", "web")), STATE_HEALTH_WARNING);
  assert_int_equal(state_instance_health(state_service_get(s, "n1", "api")), STATE_HEALTH_CRITICAL);
  /* Deleting the service drops its checks; the other instance is unaffected. */
  dereg(s, 13, "n1", "api", NULL);
  assert_int_equal(state_instance_health(state_service_get(s, "n1", "web")), STATE_HEALTH_WARNING);
  state_store_free(s);
}

/* Addresses are parsed once when written (addr_family/addr_ip, for the DNS path). */
static void test_parsed_addresses(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  static const struct {
    const char *addr;
    uint8_t family;
    uint8_t ip[16];
  } cases[] = {
      {"10.1.2.3", 4, {10, 1, 2, 3}},
      {"2001:db8::1", 16, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
      {"::ffff:1.2.3.4", 16, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4}},
      {"web.example.com", 0, {0}},
      {"010.1.2.3", 0, {0}}, /* inet_pton takes no leading zeros: a host name, as before */
      {"", 0, {0}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct state_register_service sv = svc("web", "web", 80);
    sv.address = cases[i].addr;
    /* A node must have an address: "" is tried on the service only. */
    struct state_register r = node_req("n1", cases[i].addr[0] ? cases[i].addr : "host");
    r.service = &sv;
    reg(s, 1 + i, &r);
    const struct state_node *n = state_node_get(s, "n1");
    const struct state_service *v = state_service_get(s, "n1", "web");
    assert_int_equal(n->addr_family, cases[i].family);
    assert_int_equal(v->addr_family, cases[i].family);
    assert_memory_equal(n->addr_ip, cases[i].ip, cases[i].family ? cases[i].family : 1);
    assert_memory_equal(v->addr_ip, cases[i].ip, cases[i].family ? cases[i].family : 1);
  }
  state_store_free(s);
}

/* A node update moves every service on the node (the node is part of health answers). */
static void test_node_update(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  reg_svc(s, 1, "n1", "web", "web");
  reg_chk(s, 2, "n1", "c", "passing", "web");
  struct state_register r = node_req("N1", "9.9.9.9"); /* other case: same node */
  struct state_pair meta[] = {{"rack", "r1"}, {"env", "prod"}};
  r.node_meta = (struct state_map){meta, 2, false};
  reg(s, 3, &r);
  const struct state_node *n = state_node_get(s, "n1");
  assert_string_equal(n->address, "9.9.9.9");
  assert_string_equal(n->name, "N1");
  assert_int_equal(n->create_index, 1);
  assert_int_equal(n->modify_index, 3);
  assert_string_equal(n->meta.items[0].key, "env"); /* sorted */
  assert_int_equal(tix(s, "service.web"), 3);
  /* The services and checks now point at the new node row. */
  const struct state_service *v = state_service_get(s, "n1", "web");
  assert_ptr_equal(v->node, n);
  assert_int_equal(state_instance_health(v), STATE_HEALTH_PASSING);
  /* The same metadata in another order is no change. */
  struct state_pair meta2[] = {{"env", "prod"}, {"rack", "r1"}};
  r.node_meta = (struct state_map){meta2, 2, false};
  reg(s, 4, &r);
  assert_int_equal(state_node_get(s, "n1")->modify_index, 3);
  /* null meta is not the same as {} (Go's DeepEqual). */
  r.node_meta = (struct state_map){NULL, 0, false};
  reg(s, 5, &r);
  assert_int_equal(state_node_get(s, "n1")->modify_index, 5);
  assert_false(state_node_get(s, "n1")->meta.null);
  state_store_free(s);
}

/* ensureNodeTxn's ID rules: a node may get an ID; a node ID moving to another name renames
 * the node; a live node's name cannot be taken by another ID. */
static void test_node_ids(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  const char *id1 = "11111111-2222-3333-4444-555555555555";
  const char *id2 = "aaaaaaaa-2222-3333-4444-555555555555";
  reg_svc(s, 1, "n1", "web", "web");
  struct state_register r = node_req("n1", "1.1.1.1");
  r.id = id1;
  reg(s, 2, &r); /* an ID is added to a node without one */
  assert_string_equal(state_node_get(s, "n1")->id, id1);
  assert_ptr_equal(state_node_get_by_id(s, "11111111-2222-3333-4444-555555555555"),
                   state_node_get(s, "n1"));
  reg_chk(s, 3, "n1", "serfHealth", "passing", NULL);

  /* Another ID may not take the live node's name. */
  char err[256];
  r.id = id2;
  assert_int_equal(state_catalog_register(s, 4, &r, err, sizeof err), CC_ECONFLICT);
  assert_non_null(strstr(err, "is reserved by node"));
  /* Once serfHealth is critical, it may. */
  reg_chk(s, 4, "n1", "serfHealth", "critical", NULL);
  reg(s, 5, &r);
  assert_string_equal(state_node_get(s, "n1")->id, id2);
  assert_null(state_node_get_by_id(s, id1));

  /* Renaming: the ID comes with a new name; the old node and its services go. */
  r.node = "renamed";
  reg(s, 6, &r);
  assert_null(state_node_get(s, "n1"));
  assert_null(state_service_get(s, "n1", "web"));
  assert_string_equal(state_node_get_by_id(s, id2)->name, "renamed");
  state_store_free(s);
}

static void test_weights_and_fields(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct state_register_service sv = svc("web", "web", 80);
  sv.has_weights = true;
  sv.weight_passing = 10;
  sv.weight_warning = 0;
  struct state_svc_addr ta[] = {{"wan", "5.5.5.5", 443}, {"lan", "10.1.1.1", 80}};
  sv.tagged_addresses = ta;
  sv.n_tagged = 2;
  sv.proxy = "{\"Mode\":\"transparent\",\"MeshGateway\":{},\"Expose\":{}}";
  struct state_register r = node_req("n1", "1.1.1.1");
  r.service = &sv;
  reg(s, 1, &r);
  const struct state_service *v = state_service_get(s, "n1", "web");
  assert_int_equal(v->weight_passing, 10);
  assert_int_equal(v->weight_warning, 0);
  assert_string_equal(v->tagged_addresses[0].key, "lan"); /* sorted */
  /* Invalid weights fall back to {1, 1} (ToServiceNode). */
  sv.weight_passing = 0;
  reg(s, 2, &r);
  v = state_service_get(s, "n1", "web");
  assert_int_equal(v->weight_passing, 1);
  assert_int_equal(v->weight_warning, 1);
  assert_int_equal(v->create_index, 1);
  assert_int_equal(v->modify_index, 2);

  /* JSON shapes: field order as Consul prints them. */
  json_t *j = state_node_service_json(v);
  char *txt = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  assert_string_equal(txt,
                      "{\"ID\":\"web\",\"Service\":\"web\",\"Tags\":[],\"Address\":\"\","
                      "\"TaggedAddresses\":{\"lan\":{\"Address\":\"10.1.1.1\",\"Port\":80},"
                      "\"wan\":{\"Address\":\"5.5.5.5\",\"Port\":443}},\"Meta\":null,\"Port\":80,"
                      "\"Weights\":{\"Passing\":1,\"Warning\":1},\"EnableTagOverride\":false,"
                      "\"Proxy\":{\"Mode\":\"transparent\",\"MeshGateway\":{},\"Expose\":{}},"
                      "\"Connect\":{},\"PeerName\":\"\",\"CreateIndex\":1,\"ModifyIndex\":2}");
  free(txt);
  json_decref(j);
  reg_chk(s, 3, "n1", "c", "", NULL);
  j = state_check_json(state_check_get(s, "n1", "c"));
  txt = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  assert_string_equal(txt, "{\"Node\":\"n1\",\"CheckID\":\"c\",\"Name\":\"c\",\"Status\":\"critical\","
                           "\"Notes\":\"\",\"Output\":\"\",\"ServiceID\":\"\",\"ServiceName\":\"\","
                           "\"ServiceTags\":[],\"Type\":\"\",\"Interval\":\"\",\"Timeout\":\"\","
                           "\"ExposedPort\":0,\"Definition\":{},\"CreateIndex\":3,\"ModifyIndex\":3}");
  free(txt);
  json_decref(j);
  j = state_service_node_json(v);
  txt = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  assert_non_null(strstr(txt, "\"ServiceMeta\":{},\"ServicePort\":80,\"ServiceSocketPath\":\"\","
                              "\"ServiceEnableTagOverride\":false"));
  assert_non_null(strstr(txt, "\"ServiceLocality\":null,\"CreateIndex\":1"));
  free(txt);
  json_decref(j);
  state_store_free(s);
}

/* Check types from their definitions (CheckType.Type()). */
static void test_check_type(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct state_register_check c = chk("h", "passing", NULL);
  c.definition = "{\"Interval\":\"10s\",\"HTTP\":\"http://x\"}";
  struct state_register r = node_req("n1", "1.1.1.1");
  r.checks = &c;
  r.n_checks = 1;
  reg(s, 1, &r);
  assert_string_equal(state_check_get(s, "n1", "h")->type, "http");
  c.check_id = "t";
  c.definition = "{\"TCP\":\"1.2.3.4:80\"}"; /* no interval: no type */
  reg(s, 2, &r);
  assert_string_equal(state_check_get(s, "n1", "t")->type, "");
  c.check_id = "u";
  c.type = "ttl";
  reg(s, 3, &r);
  assert_string_equal(state_check_get(s, "n1", "u")->type, "ttl");
  state_store_free(s);
}

/* ---- commands ---- */

/* With CONCORD_CMD_CORPUS=dir, each command the tests encode is also written there as a
 * seed for fuzz/fuzz_cmd.c (fuzz/corpus/cmd/). */
static void seed(const struct buf *b, const char *name)
{
  const char *dir = getenv("CONCORD_CMD_CORPUS");
  if (!dir) return;
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fwrite(b->data, 1, b->len, f);
  fclose(f);
}

static void apply_ok(struct state_store *s, uint64_t idx, const struct buf *b)
{
  struct state_cmd_result res;
  assert_int_equal(state_cmd_apply(s, idx, b->data, b->len, &res), 0);
  assert_int_equal(res.err, 0);
  assert_true(res.ok);
}

static void test_commands(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  struct state_register_service sv = svc("web1", "web", 80);
  const char *tags[] = {"a", "b"};
  sv.tags = tags;
  sv.n_tags = 2;
  sv.tags_null = false;
  struct state_pair meta[] = {{"version", "1.2"}};
  sv.meta = (struct state_map){meta, 1, false};
  sv.connect = "{\"Native\":true}";
  struct state_register_check c = chk("c1", "warning", "web1");
  c.output = "out";
  c.definition = "{\"HTTP\":\"http://x\"}";
  struct state_register r = node_req("n1", "1.2.3.4");
  r.service = &sv;
  r.checks = &c;
  r.n_checks = 1;
  struct state_pair tagged[] = {{"lan", "1.2.3.4"}};
  r.tagged_addresses = (struct state_map){tagged, 1, false};

  struct buf b = BUF_INIT;
  state_cmd_encode_register(&b, &r);
  assert_int_equal(state_cmd_validate(b.data, b.len), 0);
  seed(&b, "catalog-register-full");
  apply_ok(s, 5, &b);
  const struct state_service *v = state_service_get(s, "n1", "web1");
  assert_non_null(v);
  assert_int_equal(v->n_tags, 2);
  assert_string_equal(v->meta.items[0].value, "1.2");
  assert_string_equal(v->connect, "{\"Native\":true}");
  assert_string_equal(state_check_get(s, "n1", "c1")->output, "out");
  assert_string_equal(state_node_get(s, "n1")->tagged_addresses.items[0].value, "1.2.3.4");

  /* Every truncation of a valid command is corrupt, never a crash. */
  for (size_t cut = 1; cut < b.len; cut++) assert_int_equal(state_cmd_validate(b.data, cut), CC_ECORRUPT);

  /* A refused register (check's service missing) applies as ok = false. */
  struct state_register_check c2 = chk("c2", "passing", "nosuch");
  struct state_register r2 = node_req("n1", "1.2.3.4");
  r2.checks = &c2;
  r2.n_checks = 1;
  buf_reset(&b);
  state_cmd_encode_register(&b, &r2);
  seed(&b, "catalog-register-check");
  struct state_cmd_result res;
  assert_int_equal(state_cmd_apply(s, 6, b.data, b.len, &res), 0);
  assert_int_equal(res.err, 0);
  assert_false(res.ok);
  /* A malformed one (no node) applies as EINVAL. */
  r2.node = "";
  buf_reset(&b);
  state_cmd_encode_register(&b, &r2);
  assert_int_equal(state_cmd_apply(s, 7, b.data, b.len, &res), 0);
  assert_int_equal(res.err, CC_EINVAL);

  struct state_deregister d = {"n1", "web1", NULL};
  buf_reset(&b);
  state_cmd_encode_deregister(&b, &d);
  seed(&b, "catalog-deregister-service");
  apply_ok(s, 8, &b);
  d = (struct state_deregister){"n1", NULL, NULL};
  buf_reset(&b);
  state_cmd_encode_deregister(&b, &d);
  seed(&b, "catalog-deregister-node");
  assert_null(state_service_get(s, "n1", "web1"));
  assert_null(state_check_get(s, "n1", "c1"));

  /* Wrong types are corrupt. */
  static const uint8_t bad[] = {STATE_CMD_REGISTER, 0x81, 0xa4, 'N', 'o', 'd', 'e', 0x05};
  assert_int_equal(state_cmd_validate(bad, sizeof bad), CC_ECORRUPT);
  static const uint8_t nul[] = {STATE_CMD_DEREGISTER, 0x81, 0xa4, 'N', 'o', 'd', 'e', 0xa2, 'a', 0};
  assert_int_equal(state_cmd_validate(nul, sizeof nul), CC_ECORRUPT);
  buf_free(&b);
  state_store_free(s);
}

/* ---- snapshots ---- */

static void fill_store(struct state_store *s)
{
  struct state_kv_op op = {.verb = STATE_KV_SET, .key = "k", .key_len = 1,
                           .value = (const uint8_t *)"v", .value_len = 1};
  assert_int_equal(state_kv_apply(s, 1, &op, NULL), 0);
  reg_svc(s, 2, "n1", "web1", "web");
  reg_svc(s, 3, "n2", "web1", "web");
  reg_svc(s, 4, "n2", "db", "db");
  reg_chk(s, 5, "n2", "serfHealth", "passing", NULL);
  reg_chk(s, 6, "n1", "c", "warning", "web1");
  dereg(s, 7, "n2", "db", NULL);
}

static char *dump_all(struct state_store *s)
{
  struct buf b = BUF_INIT;
  struct state__titer it;
  (void)it;
  const struct state_service *const *inst;
  size_t n = state_service_instances(s, "web", &inst);
  for (size_t i = 0; i < n; i++) {
    json_t *j = state_check_service_node_json(inst[i]);
    char *t = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    buf_puts(&b, t);
    free(t);
    json_decref(j);
  }
  buf_printf(&b, "|%llu %llu %llu %llu %llu %llu %llu", (unsigned long long)tix(s, "nodes"),
             (unsigned long long)tix(s, "services"), (unsigned long long)tix(s, "checks"),
             (unsigned long long)tix(s, "service.web"), (unsigned long long)tix(s, "node.n2"),
             (unsigned long long)tix(s, "service_last_extinction"),
             (unsigned long long)state_store_index(s));
  size_t len;
  return buf_steal(&b, &len);
}

static void test_snapshot_roundtrip(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  fill_store(s);
  struct buf b = BUF_INIT;
  state_store_snapshot(s, &b);
  struct state_store *t = state_store_new();
  int fired = 0;
  state_watch_add(t, STATE_WATCH_TABLE, "service.web", 11, bump, &fired);
  assert_int_equal(state_store_restore(t, b.data, b.len), 0);
  assert_int_equal(fired, 1);
  char *a = dump_all(s), *c = dump_all(t);
  assert_string_equal(a, c);
  assert_non_null(strstr(a, "|7 7 7 6 7 7 7"));
  free(a);
  free(c);
  assert_int_equal(state_node_count(t), 2);
  assert_int_equal(state_service_count(t), 2);
  assert_int_equal(state_check_count(t), 2);
  assert_int_equal(state_kv_count(t), 1);
  /* The restored store keeps working: deregister cascades through restored links. */
  dereg(t, 8, "n1", NULL, NULL);
  assert_int_equal(state_check_count(t), 1);
  const struct state_service *const *inst;
  assert_int_equal(state_service_instances(t, "web", &inst), 1);

  /* Every truncation is refused and leaves the store as it was. */
  for (size_t cut = 1; cut < b.len; cut += 7) {
    assert_int_equal(state_store_restore(t, b.data, cut), CC_ECORRUPT);
    assert_int_equal(state_node_count(t), 1);
  }
  buf_free(&b);
  state_store_free(s);
  state_store_free(t);
}

/* A version 1 document (KV only, as written before the catalog existed) still restores. */
static void test_snapshot_v1(void **st)
{
  (void)st;
  struct buf b = BUF_INIT;
  msgpack_packer pk;
  state__mp_packer_init(&pk, &b);
  msgpack_pack_map(&pk, 5);
  state__mp_pack_cstr(&pk, "Version");
  msgpack_pack_uint64(&pk, 1);
  state__mp_pack_cstr(&pk, "Index");
  msgpack_pack_uint64(&pk, 9);
  state__mp_pack_cstr(&pk, "Tables");
  msgpack_pack_map(&pk, 2);
  state__mp_pack_cstr(&pk, "kvs");
  msgpack_pack_uint64(&pk, 9);
  state__mp_pack_cstr(&pk, "tombstones");
  msgpack_pack_uint64(&pk, 0);
  state__mp_pack_cstr(&pk, "KVs");
  msgpack_pack_array(&pk, 1);
  msgpack_pack_map(&pk, 7);
  state__mp_pack_cstr(&pk, "Key");
  state__mp_pack_cstr(&pk, "a");
  state__mp_pack_cstr(&pk, "Value");
  state__mp_pack_bin(&pk, "x", 1);
  state__mp_pack_cstr(&pk, "Flags");
  msgpack_pack_uint64(&pk, 0);
  state__mp_pack_cstr(&pk, "CreateIndex");
  msgpack_pack_uint64(&pk, 9);
  state__mp_pack_cstr(&pk, "ModifyIndex");
  msgpack_pack_uint64(&pk, 9);
  state__mp_pack_cstr(&pk, "LockIndex");
  msgpack_pack_uint64(&pk, 0);
  state__mp_pack_cstr(&pk, "Session");
  msgpack_pack_nil(&pk);
  state__mp_pack_cstr(&pk, "Tombstones");
  msgpack_pack_array(&pk, 0);

  struct state_store *s = state_store_new();
  reg_svc(s, 1, "n1", "web", "web");
  assert_int_equal(state_store_restore(s, b.data, b.len), 0);
  assert_int_equal(state_kv_count(s), 1);
  assert_int_equal(state_node_count(s), 0); /* the catalog is replaced by the empty one */
  assert_int_equal(state_store_index(s), 9);
  buf_free(&b);
  state_store_free(s);
}

/* Dangling rows are corrupt: a service whose node is missing. */
static void test_snapshot_dangling(void **st)
{
  (void)st;
  struct state_store *s = state_store_new();
  reg_svc(s, 1, "n1", "web", "web");
  struct buf b = BUF_INIT;
  state_store_snapshot(s, &b);
  /* Rename the node row's "n1" to "n9" so the service dangles. */
  char *p = memmem(b.data, b.len, "\xa2n1", 3);
  assert_non_null(p);
  p[2] = '9';
  struct state_store *t = state_store_new();
  assert_int_equal(state_store_restore(t, b.data, b.len), CC_ECORRUPT);
  buf_free(&b);
  state_store_free(s);
  state_store_free(t);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_register_all),
      cmocka_unit_test(test_register_validation),
      cmocka_unit_test(test_skip_node_update),
      cmocka_unit_test(test_service_index_and_watch),
      cmocka_unit_test(test_delete_node_cascade),
      cmocka_unit_test(test_delete_service),
      cmocka_unit_test(test_instances_and_health),
      cmocka_unit_test(test_node_update),
      cmocka_unit_test(test_node_ids),
      cmocka_unit_test(test_weights_and_fields),
      cmocka_unit_test(test_check_type),
      cmocka_unit_test(test_commands),
      cmocka_unit_test(test_health_cache),
      cmocka_unit_test(test_parsed_addresses),
      cmocka_unit_test(test_snapshot_roundtrip),
      cmocka_unit_test(test_snapshot_v1),
      cmocka_unit_test(test_snapshot_dangling),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
