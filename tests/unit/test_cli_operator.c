/* test_cli_operator.c -- unit tests of the membership and Raft operator commands: join,
 * leave, force-leave, operator raft list-peers and remove-peer, and the operator parents.
 * Each command runs end to end against a scripted HTTP server on 127.0.0.1 (a thread in this
 * process), checking the exact request sent and the exact stdout, stderr and exit code. (The real
 * endpoints behind list-peers and remove-peer are tested in test_operator_raft.c.) */
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
#include "lib/log.h"

#include "../lib/cli_harness.h"

static bool starts(const char *s, const char *prefix)
{
  return strncmp(s, prefix, strlen(prefix)) == 0;
}


/* The first line of a captured request. */
static bool request_is(const char *req, const char *line)
{
  size_t n = strlen(line);
  return req && strncmp(req, line, n) == 0 && strncmp(req + n, " HTTP/1.1\r\n", 11) == 0;
}

/* ---- join ---- */

static void test_join(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 5, reply(500, "1 error occurred:\n\t* Failed to join a: timeout\n\n"),
             reply(200, ""), reply(200, ""), reply(500, "no"), reply(500, "no"));
  set_addr(f.port);

  /* One failure among several is reported, the command still succeeds. */
  struct run r = RUN(NULL, "join", "a", "127.0.0.1:8301");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Successfully joined cluster by contacting 1 nodes.\n");
  assert_string_equal(r.err, "Error joining address 'a': Unexpected response code: 500 "
                             "(1 error occurred:\n\t* Failed to join a: timeout)\n");
  assert_true(request_is(f.requests[0], "PUT /v1/agent/join/a"));
  assert_true(request_is(f.requests[1], "PUT /v1/agent/join/127.0.0.1:8301"));
  run_free(&r);

  r = RUN(NULL, "join", "-wan", "10.0.0.1");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Successfully joined cluster by contacting 1 nodes.\n");
  assert_string_equal(r.err, "");
  assert_true(request_is(f.requests[2], "PUT /v1/agent/join/10.0.0.1?wan=1"));
  run_free(&r);

  /* Go's flag parsing stops at the first address: "-wan" after it is an address. */
  r = RUN(NULL, "join", "b", "-wan");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "Error joining address 'b': Unexpected response code: 500 (no)\n"
                             "Error joining address '-wan': Unexpected response code: 500 (no)\n"
                             "Failed to join any nodes.\n");
  assert_true(request_is(f.requests[3], "PUT /v1/agent/join/b"));
  assert_true(request_is(f.requests[4], "PUT /v1/agent/join/-wan"));
  run_free(&r);
  assert_int_equal(f.served, 5);
  fake_stop(&f);

  r = RUN(NULL, "join");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_true(starts(r.err, "At least one address to join must be specified.\n\n"
                            "Usage: concord join [options] address ...\n"));
  assert_non_null(strstr(r.err, "\nCommand Options\n\n  -partition=<default>\n"));
  assert_non_null(strstr(r.err, "\n  -wan\n"));
  run_free(&r);

  int port = dead_port();
  set_addr(port);
  char want[512];
  r = RUN(NULL, "join", "x");
  assert_int_equal(r.code, 1);
  snprintf(want, sizeof(want), "Error joining address 'x': Put \"http://127.0.0.1:%d/v1/agent/join/x\": "
           "dial tcp 127.0.0.1:%d: connect: connection refused\nFailed to join any nodes.\n",
           port, port);
  assert_string_equal(r.err, want);
  run_free(&r);

  r = RUN(NULL, "join", "-nope", "x");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "flag provided but not defined: -nope\nUsage:\n"));
  run_free(&r);
}

/* ---- leave ---- */

static void test_leave(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 2, reply(200, ""), reply(403, "Permission denied"));
  set_addr(f.port);

  struct run r = RUN(NULL, "leave");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Graceful leave complete\n");
  assert_string_equal(r.err, "");
  assert_true(request_is(f.requests[0], "PUT /v1/agent/leave"));
  run_free(&r);

  r = RUN(NULL, "leave", "-token=t");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "Error leaving: Unexpected response code: 403 (Permission denied)\n");
  assert_non_null(strstr(f.requests[1], "\r\nX-Consul-Token: t\r\n"));
  run_free(&r);
  fake_stop(&f);

  /* Arguments are refused before any request; Consul prints the help on stdout. */
  r = RUN(NULL, "leave", "now", "please");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error found unexpected args: [now please]\n");
  assert_true(starts(r.out, "Usage: concord leave [options]\n"));
  assert_non_null(strstr(r.out, "-http-addr=<address>"));
  assert_null(strstr(r.out, "Command Options"));
  run_free(&r);
}

/* ---- force-leave ---- */

static void test_force_leave(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 3, reply(200, ""), reply(200, ""),
             reply(500, "agent: No node found with name 'ghost'"));
  set_addr(f.port);

  struct run r = RUN(NULL, "force-leave", "node1");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "");
  assert_true(request_is(f.requests[0], "PUT /v1/agent/force-leave/node1"));
  run_free(&r);

  r = RUN(NULL, "force-leave", "-prune", "-wan", "node1.dc2");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "");
  assert_true(request_is(f.requests[1], "PUT /v1/agent/force-leave/node1.dc2?prune=1&wan=1"));
  run_free(&r);

  r = RUN(NULL, "force-leave", "ghost");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error force leaving: Unexpected response code: 500 "
                             "(agent: No node found with name 'ghost')\n");
  run_free(&r);
  assert_int_equal(f.served, 3);
  fake_stop(&f);

  r = RUN(NULL, "force-leave");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "A single node name must be specified to force leave.\n\n"
                            "Usage: concord force-leave [options] name\n"));
  assert_non_null(strstr(r.err, "\n  -prune\n"));
  run_free(&r);
  r = RUN(NULL, "force-leave", "a", "b");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "A single node name must be specified to force leave.\n"));
  run_free(&r);
}

/* ---- operator raft list-peers ---- */

static void test_list_peers(void **state)
{
  (void)state;
  /* A leader, a follower one entry behind, one far behind, one with no protocol tag, and
   * one reporting more than the leader (Consul's uint64 subtraction wraps). */
  const char *conf =
      "{\"Servers\":["
      "{\"ID\":\"aaaa\",\"Node\":\"s1\",\"Address\":\"10.0.0.1:8300\",\"Leader\":true,"
      "\"ProtocolVersion\":\"3\",\"Voter\":true,\"LastIndex\":120},"
      "{\"ID\":\"bbbb\",\"Node\":\"s2\",\"Address\":\"10.0.0.2:8300\",\"Leader\":false,"
      "\"ProtocolVersion\":\"3\",\"Voter\":true,\"LastIndex\":119},"
      "{\"ID\":\"cc\",\"Node\":\"(unknown)\",\"Address\":\"10.0.0.3:8300\",\"Leader\":false,"
      "\"ProtocolVersion\":\"unknown\",\"Voter\":false,\"LastIndex\":20},"
      "{\"id\":\"dd\",\"node\":\"s4\",\"address\":\"10.0.0.4:8300\",\"voter\":true},"
      "{\"ID\":\"ee\",\"Node\":\"s5\",\"Address\":\"10.0.0.5:8300\",\"Voter\":true,"
      "\"ProtocolVersion\":\"3\",\"LastIndex\":121}"
      "],\"Index\":130}";
  struct fake f;
  fake_start(&f, 6, reply(200, conf), reply(200, conf), reply(500, "No cluster leader"),
             reply(200, "null"), reply(200, "[1]"),
             reply(200, "{\"Servers\":[{\"ID\":5}]}"));
  set_addr(f.port);

  struct run r = RUN(NULL, "operator", "raft", "list-peers");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.err, "");
  assert_string_equal(
      r.out,
      "Node       ID    Address        State     Voter  RaftProtocol  Commit Index  "
      "Trails Leader By\n"
      "s1         aaaa  10.0.0.1:8300  leader    true   3             120           -\n"
      "s2         bbbb  10.0.0.2:8300  follower  true   3             119           1 commit\n"
      "(unknown)  cc    10.0.0.3:8300  follower  false  unknown       20            100 commits\n"
      "s4         dd    10.0.0.4:8300  follower  true   <=1           0             120 commits\n"
      "s5         ee    10.0.0.5:8300  follower  true   3             121           "
      "18446744073709551615 commits\n");
  assert_true(request_is(f.requests[0], "GET /v1/operator/raft/configuration"));
  run_free(&r);

  r = RUN(NULL, "operator", "raft", "list-peers", "-stale", "-datacenter=dc1");
  assert_int_equal(r.code, 0);
  assert_true(request_is(f.requests[1], "GET /v1/operator/raft/configuration?dc=dc1&stale="));
  run_free(&r);

  r = RUN(NULL, "operator", "raft", "list-peers");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "Error getting peers: Failed to retrieve raft configuration: "
                             "Unexpected response code: 500 (No cluster leader)\n");
  run_free(&r);

  /* null decodes to an empty configuration: the header alone. */
  r = RUN(NULL, "operator", "raft", "list-peers");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Node  ID  Address  State  Voter  RaftProtocol  Commit Index  "
                             "Trails Leader By\n");
  run_free(&r);

  r = RUN(NULL, "operator", "raft", "list-peers");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error getting peers: Failed to retrieve raft configuration: json: "
                             "cannot unmarshal array into Go value of type "
                             "api.RaftConfiguration\n");
  run_free(&r);
  r = RUN(NULL, "operator", "raft", "list-peers");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error getting peers: Failed to retrieve raft configuration: json: "
                             "cannot unmarshal number into Go struct field "
                             "RaftServer.Servers.ID of type string\n");
  run_free(&r);
  assert_int_equal(f.served, 6);
  fake_stop(&f);

  /* Flag errors: Go's message and defaults, then Consul's own line. */
  r = RUN(NULL, "operator", "raft", "list-peers", "-bogus");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "flag provided but not defined: -bogus\nUsage:\n"));
  assert_non_null(strstr(r.err, "\nFailed to parse args: flag provided but not defined: -bogus\n"));
  run_free(&r);

  env_table[0] = "CONSUL_HTTP_ADDR=ftp://x";
  env_table[1] = NULL;
  r = RUN(NULL, "operator", "raft", "list-peers");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Error initializing client: "));
  run_free(&r);

  int port = dead_port();
  set_addr(port);
  char want[512];
  r = RUN(NULL, "operator", "raft", "list-peers");
  assert_int_equal(r.code, 1);
  snprintf(want, sizeof(want), "Error getting peers: Failed to retrieve raft configuration: Get "
           "\"http://127.0.0.1:%d/v1/operator/raft/configuration\": dial tcp 127.0.0.1:%d: "
           "connect: connection refused\n", port, port);
  assert_string_equal(r.err, want);
  run_free(&r);
}

/* ---- operator raft remove-peer ---- */

static void test_remove_peer(void **state)
{
  (void)state;
  struct fake f;
  fake_start(&f, 3, reply(200, ""), reply(200, ""),
             reply(500, "address \"10.9.9.9:8300\" was not found in the Raft configuration"));
  set_addr(f.port);

  struct run r = RUN(NULL, "operator", "raft", "remove-peer", "-address=10.0.0.3:8300");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Removed peer with address \"10.0.0.3:8300\"\n");
  assert_string_equal(r.err, "");
  assert_true(request_is(f.requests[0], "DELETE /v1/operator/raft/peer?address=10.0.0.3%3A8300"));
  run_free(&r);

  r = RUN(NULL, "operator", "raft", "remove-peer", "-id", "d9f1\"x", "-token", "tok");
  assert_int_equal(r.code, 0);
  assert_string_equal(r.out, "Removed peer with id \"d9f1\\\"x\"\n");
  assert_true(request_is(f.requests[1], "DELETE /v1/operator/raft/peer?id=d9f1%22x"));
  assert_non_null(strstr(f.requests[1], "\r\nX-Consul-Token: tok\r\n"));
  run_free(&r);

  r = RUN(NULL, "operator", "raft", "remove-peer", "-address=10.9.9.9:8300");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "Error removing peer: Unexpected response code: 500 (address "
                             "\"10.9.9.9:8300\" was not found in the Raft configuration)\n");
  run_free(&r);
  assert_int_equal(f.served, 3);
  fake_stop(&f);

  /* Checked before any request is made. */
  set_addr(dead_port());
  r = RUN(NULL, "operator", "raft", "remove-peer");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error removing peer: an address or id is required for the peer "
                             "to remove\n");
  run_free(&r);
  r = RUN(NULL, "operator", "raft", "remove-peer", "-id=a", "-address=b:1");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.err, "Error removing peer: cannot give both an address and id\n");
  run_free(&r);
  r = RUN(NULL, "operator", "raft", "remove-peer", "-adress=b:1");
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "\nFailed to parse args: flag provided but not defined: -adress\n"));
  run_free(&r);
}

/* ---- help and the parents ---- */

static void test_help_and_parents(void **state)
{
  (void)state;
  struct run r = RUN(NULL, "operator");
  assert_int_equal(r.code, 1);
  assert_string_equal(r.out, "");
  assert_true(starts(r.err, "Usage: concord operator <subcommand> [options]\n"));
  assert_non_null(strstr(r.err, "\n\nSubcommands:\n"
                                "    raft    Provides cluster-level tools for Concord "
                                "operators\n"));
  run_free(&r);

  r = RUN(NULL, "operator", "raft");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Usage: concord operator raft <subcommand> [options]\n"));
  assert_non_null(strstr(r.err, "\n\nSubcommands:\n"
                                "    list-peers     Display the current Raft peer "
                                "configuration\n"
                                "    remove-peer    Remove a Concord server from the Raft "
                                "configuration\n"));
  run_free(&r);

  r = RUN(NULL, "operator", "raft", "-h");
  assert_int_equal(r.code, 0);
  assert_true(starts(r.out, "Usage: concord operator raft <subcommand>"));
  run_free(&r);

  r = RUN(NULL, "operator", "raft", "nope");
  assert_int_equal(r.code, 1);
  assert_true(starts(r.err, "Usage: concord operator raft <subcommand>"));
  run_free(&r);

  /* Each command's help: usage line, then its flags in the right sections. */
  static const struct {
    const char *argv[4];
    const char *usage, *http_flag, *cmd_flag;
  } helps[] = {
      {{"join", "-h"}, "Usage: concord join [options] address ...\n", "-http-addr=<address>", "-wan"},
      {{"leave", "-help"}, "Usage: concord leave [options]\n", "-token=<value>", NULL},
      {{"force-leave", "--help"}, "Usage: concord force-leave [options] name\n",
       "-token-file=<value>", "-prune"},
      {{"operator", "raft", "list-peers", "-h"},
       "Usage: concord operator raft list-peers [options]\n", "-stale", NULL},
      {{"operator", "raft", "remove-peer", "-h"},
       "Usage: concord operator raft remove-peer [options]\n", "-datacenter=<value>",
       "-address=<string>"},
  };
  for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
    const char *const *a = helps[i].argv;
    r = a[3] ? RUN(NULL, a[0], a[1], a[2], a[3]) : RUN(NULL, a[0], a[1]);
    assert_int_equal(r.code, 0);
    assert_true(starts(r.out, helps[i].usage));
    const char *http = strstr(r.out, "HTTP API Options\n");
    assert_non_null(http);
    const char *cmd = strstr(r.out, "Command Options\n");
    char want[64];
    snprintf(want, sizeof(want), "\n  %s", helps[i].http_flag);
    const char *hf = strstr(r.out, want);
    assert_true(hf && hf > http && (!cmd || hf < cmd));
    if (helps[i].cmd_flag) {
      snprintf(want, sizeof(want), "\n  %s", helps[i].cmd_flag);
      const char *cf = strstr(r.out, want);
      assert_true(cmd && cf && cf > cmd);
    } else {
      assert_null(cmd);
    }
    run_free(&r);
  }

  /* The top-level list names the new commands, padded to the longest ("force-leave"). */
  struct buf b = BUF_INIT;
  cli__top_help(&b);
  assert_non_null(strstr(b.data, "\n    agent          Runs a Concord agent\n"));
  assert_non_null(strstr(b.data, "\n    force-leave    Forces a member of the cluster to enter "
                                 "the \"left\" state\n"));
  assert_non_null(strstr(b.data, "\n    join           Tell Concord agent to join cluster\n"));
  assert_non_null(strstr(b.data, "\n    leave          Gracefully leaves the Concord cluster "
                                 "and shuts down\n"));
  assert_non_null(strstr(b.data, "\n    operator       Provides cluster-level tools for Concord "
                                 "operators\n"));
  assert_null(strstr(b.data, "list-peers"));
  buf_free(&b);
}

int main(void)
{
  log_set_level(LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_join),
      cmocka_unit_test(test_leave),
      cmocka_unit_test(test_force_leave),
      cmocka_unit_test(test_list_peers),
      cmocka_unit_test(test_remove_peer),
      cmocka_unit_test(test_help_and_parents),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
