/* test_agent_wan.c -- the WAN datacenter map (agent/wan_dcs.c): which members count as
 * servers, datacenters appearing and going with their servers, the listing order, and
 * picking a server (alive ones only, moving on after a failure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/wan_dcs.h"

/* A WAN member as gossip reports it; tags must be sorted by key. */
static struct gossip_member member(const char *name, const char *addr, const char *dc,
                                   const char *port, const char *role, struct gossip_tag *tags)
{
  struct gossip_member m;
  memset(&m, 0, sizeof m);
  m.name = (char *)name;
  strcpy(m.addr, addr);
  m.port = 8302;
  m.status = GOSSIP_STATUS_ALIVE;
  size_t n = 0;
  if (dc) tags[n++] = (struct gossip_tag){(char *)"dc", (char *)dc};
  if (port) tags[n++] = (struct gossip_tag){(char *)"port", (char *)port};
  if (role) tags[n++] = (struct gossip_tag){(char *)"role", (char *)role};
  m.tags = tags;
  m.ntags = n;
  return m;
}

static void expect_names(struct wan_dcs *d, const char *const *want, size_t nwant)
{
  char **names;
  size_t n = wan_dcs_names(d, &names);
  assert_int_equal(n, nwant);
  for (size_t i = 0; i < n; i++) assert_string_equal(names[i], want[i]);
  wan_dcs_names_free(names, n);
}

static void test_local_alone(void **state)
{
  (void)state;
  struct wan_dcs *d = wan_dcs_new("dc1");
  const char *want[] = {"dc1"};
  expect_names(d, want, 1);
  assert_false(wan_dcs_known(d, "dc2"));
  assert_null(wan_dcs_pick(d, "dc2"));
  wan_dcs_free(d);
}

static void test_order_local_first_then_name(void **state)
{
  (void)state;
  struct wan_dcs *d = wan_dcs_new("m-dc");
  struct gossip_tag t[3];
  const char *dcs[] = {"z-dc", "a-dc", "m-dc", "b-dc"};
  char name[64];
  for (size_t i = 0; i < 4; i++) {
    snprintf(name, sizeof name, "s%zu.%s", i, dcs[i]);
    struct gossip_member m = member(name, "10.0.0.1", dcs[i], "8300", "consul", t);
    wan_dcs_on_member(d, GOSSIP_EVENT_JOIN, &m);
  }
  const char *want[] = {"m-dc", "a-dc", "b-dc", "z-dc"};
  expect_names(d, want, 4);
  wan_dcs_free(d);
}

static void test_non_servers_ignored(void **state)
{
  (void)state;
  struct wan_dcs *d = wan_dcs_new("dc1");
  struct gossip_tag t[3];
  struct gossip_member m = member("c.dc2", "10.0.0.2", "dc2", "8300", "node", t);
  wan_dcs_on_member(d, GOSSIP_EVENT_JOIN, &m);
  m = member("x.dc3", "10.0.0.3", "dc3", NULL, "consul", t); /* no RPC port */
  wan_dcs_on_member(d, GOSSIP_EVENT_JOIN, &m);
  m = member("y.dc4", "10.0.0.4", "dc4", "99999", "consul", t); /* bad port */
  wan_dcs_on_member(d, GOSSIP_EVENT_JOIN, &m);
  m = member("y.dc5", "10.0.0.5", "dc5", "8300x", "consul", t);
  wan_dcs_on_member(d, GOSSIP_EVENT_JOIN, &m);
  m = member("y.nodc", "10.0.0.6", NULL, "8300", "consul", t);
  wan_dcs_on_member(d, GOSSIP_EVENT_JOIN, &m);
  const char *want[] = {"dc1"};
  expect_names(d, want, 1);
  wan_dcs_free(d);
}

static void test_pick_fail_and_leave(void **state)
{
  (void)state;
  struct wan_dcs *d = wan_dcs_new("dc1");
  struct gossip_tag ta[3], tb[3];
  struct gossip_member a = member("a.dc2", "10.0.0.1", "dc2", "8300", "consul", ta);
  struct gossip_member b = member("b.dc2", "10.0.0.2", "dc2", "8301", "consul", tb);
  wan_dcs_on_member(d, GOSSIP_EVENT_JOIN, &a);
  wan_dcs_on_member(d, GOSSIP_EVENT_JOIN, &b);
  assert_true(wan_dcs_known(d, "dc2"));
  /* sticky on one server until it fails */
  assert_string_equal(wan_dcs_pick(d, "dc2"), "10.0.0.1:8300");
  assert_string_equal(wan_dcs_pick(d, "dc2"), "10.0.0.1:8300");
  wan_dcs_failed(d, "dc2", "10.0.0.1:8300");
  assert_string_equal(wan_dcs_pick(d, "dc2"), "10.0.0.2:8301");
  /* a failure reported for a server we no longer use changes nothing */
  wan_dcs_failed(d, "dc2", "10.0.0.1:8300");
  assert_string_equal(wan_dcs_pick(d, "dc2"), "10.0.0.2:8301");
  /* gossip says b failed: a again */
  b.status = GOSSIP_STATUS_FAILED;
  wan_dcs_on_member(d, GOSSIP_EVENT_FAILED, &b);
  assert_string_equal(wan_dcs_pick(d, "dc2"), "10.0.0.1:8300");
  /* both failed: known, but nothing to pick */
  a.status = GOSSIP_STATUS_FAILED;
  wan_dcs_on_member(d, GOSSIP_EVENT_FAILED, &a);
  assert_true(wan_dcs_known(d, "dc2"));
  assert_null(wan_dcs_pick(d, "dc2"));
  const char *want2[] = {"dc1", "dc2"};
  expect_names(d, want2, 2);
  /* a comes back (and moved) */
  a.status = GOSSIP_STATUS_ALIVE;
  strcpy(a.addr, "10.0.0.9");
  wan_dcs_on_member(d, GOSSIP_EVENT_JOIN, &a);
  assert_string_equal(wan_dcs_pick(d, "dc2"), "10.0.0.9:8300");
  /* leaving and reaping drop servers; the datacenter goes with its last one */
  a.status = GOSSIP_STATUS_LEFT;
  wan_dcs_on_member(d, GOSSIP_EVENT_LEAVE, &a);
  assert_true(wan_dcs_known(d, "dc2"));
  assert_null(wan_dcs_pick(d, "dc2"));
  wan_dcs_on_member(d, GOSSIP_EVENT_REAP, &b);
  assert_false(wan_dcs_known(d, "dc2"));
  const char *want1[] = {"dc1"};
  expect_names(d, want1, 1);
  /* an unknown member leaving is harmless */
  wan_dcs_on_member(d, GOSSIP_EVENT_LEAVE, &b);
  wan_dcs_free(d);
}

static void test_ipv6_and_cap(void **state)
{
  (void)state;
  struct wan_dcs *d = wan_dcs_new("dc1");
  struct gossip_tag t[3];
  struct gossip_member m = member("v6.dc2", "::1", "dc2", "8300", "consul", t);
  wan_dcs_on_member(d, GOSSIP_EVENT_JOIN, &m);
  assert_string_equal(wan_dcs_pick(d, "dc2"), "[::1]:8300");
  /* no more than 64 servers a datacenter */
  char name[64];
  for (int i = 0; i < 100; i++) {
    snprintf(name, sizeof name, "s%d.dc3", i);
    m = member(name, "10.0.0.1", "dc3", "8300", "consul", t);
    wan_dcs_on_member(d, GOSSIP_EVENT_JOIN, &m);
  }
  for (int i = 0; i < 64; i++) {
    assert_non_null(wan_dcs_pick(d, "dc3"));
    wan_dcs_failed(d, "dc3", "10.0.0.1:8300");
  }
  /* the local datacenter's own servers do not repeat it in the list */
  m = member("me.dc1", "10.0.0.1", "dc1", "8300", "consul", t);
  wan_dcs_on_member(d, GOSSIP_EVENT_JOIN, &m);
  const char *want[] = {"dc1", "dc2", "dc3"};
  expect_names(d, want, 3);
  wan_dcs_free(d);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_local_alone),
      cmocka_unit_test(test_order_local_first_then_name),
      cmocka_unit_test(test_non_servers_ignored),
      cmocka_unit_test(test_pick_fail_and_leave),
      cmocka_unit_test(test_ipv6_and_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
