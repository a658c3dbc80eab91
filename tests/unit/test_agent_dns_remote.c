/* test_agent_dns_remote.c -- agent/dns_remote.c: the request format, the server's side
 * (dns_remote_answer over an in-memory catalog: answers, refusals, malformed bodies, names of
 * other datacenters), the relay of those (dns_remote_serve through a fake transport that
 * plays dc2's server: at once, later, failing, cancelled, cut short by free) and the client's
 * side driving a real dns/server.c through fake transports that answer with the server's
 * side inside send, later from a timer, fail to send, fail remotely, or never answer
 * (timeout: the transport is told to cancel). One thread: the test spins the loop itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "agent/dns_remote.h"
#include "dns/dns.h"
#include "dns/memcat.h"
#include "dns/server.h"
#include "lib/err.h"

/* node1 and web, plus 300 instances of "huge" (one per node h<i>), as Consul's JSON. */
static char *make_catalog(void)
{
  size_t cap = 64 * 1024, n = 0;
  char *j = malloc(cap);
  n += (size_t)snprintf(j + n, cap - n, "{\"Nodes\": [{\"Node\": \"node1\", \"Address\": "
                                        "\"10.7.7.7\"}");
  for (int i = 0; i < 300; i++)
    n += (size_t)snprintf(j + n, cap - n, ", {\"Node\": \"h%d\", \"Address\": \"10.4.%d.%d\"}",
                          i, i / 250, i % 250 + 1);
  n += (size_t)snprintf(j + n, cap - n, "], \"Services\": [{\"Node\": \"node1\", "
                                        "\"Service\": \"web\", \"Port\": 80}");
  for (int i = 0; i < 300; i++)
    n += (size_t)snprintf(j + n, cap - n, ", {\"Node\": \"h%d\", \"Service\": \"huge\"}", i);
  snprintf(j + n, cap - n, "]}");
  return j;
}

static struct dns_memcat *cat, *cat2;
static struct dns_engine *server_engine; /* the server's, with a recursor configured */
static struct dns_engine *wan_engine;    /* dc1's again, knowing dc2 through the WAN */
static struct dns_engine *dc2_engine;    /* dc2's server's: the same catalog, as dc2's */
static uint8_t out[DNS_TCP_MAX];

static bool knows_dc2(void *ctx, const char *dc)
{
  (void)ctx;
  return strcmp(dc, "dc2") == 0;
}

static int setup(void **state)
{
  char err[256];
  (void)state;
  char *catalog = make_catalog();
  cat = dns_memcat_new("dc1");
  assert_int_equal(dns_memcat_load_json(cat, catalog, strlen(catalog), err, sizeof err), 0);
  free(catalog);
  struct dns_config cfg;
  dns_config_defaults(&cfg);
  strcpy(cfg.recursors[0], "192.0.2.53");
  cfg.n_recursors = 1;
  struct dns_backend be;
  dns_memcat_backend(cat, &be);
  server_engine = dns_engine_new(&cfg, &be, err, sizeof err);
  assert_non_null(server_engine);
  be.datacenter_known = knows_dc2;
  wan_engine = dns_engine_new(&cfg, &be, err, sizeof err);
  assert_non_null(wan_engine);
  catalog = make_catalog();
  cat2 = dns_memcat_new("dc2");
  assert_int_equal(dns_memcat_load_json(cat2, catalog, strlen(catalog), err, sizeof err), 0);
  free(catalog);
  dns_memcat_backend(cat2, &be);
  dc2_engine = dns_engine_new(&cfg, &be, err, sizeof err);
  assert_non_null(dc2_engine);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  dns_engine_free(server_engine);
  dns_engine_free(wan_engine);
  dns_engine_free(dc2_engine);
  dns_memcat_free(cat);
  dns_memcat_free(cat2);
  return 0;
}

static size_t mkq(uint8_t *b, uint16_t id, const char *name, uint16_t type)
{
  ldns_pkt *p = NULL;
  assert_int_equal(ldns_pkt_query_new_frm_str(&p, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
                   LDNS_STATUS_OK);
  ldns_pkt_set_id(p, id);
  uint8_t *wire = NULL;
  size_t n = 0;
  assert_int_equal(ldns_pkt2wire(&wire, p, &n), LDNS_STATUS_OK);
  memcpy(b, wire, n);
  free(wire);
  ldns_pkt_free(p);
  return n;
}

static ldns_pkt *parse(const uint8_t *b, size_t n)
{
  ldns_pkt *p = NULL;
  assert_int_equal(ldns_wire2pkt(&p, b, n), LDNS_STATUS_OK);
  return p;
}

/* Encodes and answers one query on the server's side. */
static int answer(uint16_t id, const char *name, uint16_t type, bool tcp, ldns_pkt **pkt)
{
  uint8_t q[512], body[DNS_REMOTE_MAX_BODY];
  size_t qn = mkq(q, id, name, type), len = 0;
  struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(5353)};
  inet_pton(AF_INET, "127.0.0.9", &from.sin_addr);
  size_t bn = dns_remote_encode(q, qn, tcp, tcp ? DNS_TCP_MAX : DNS_UDP_MAX,
                                (struct sockaddr *)&from, body);
  assert_int_equal(bn, 5 + 6 + qn);
  int rc = dns_remote_answer(server_engine, body, bn, out, &len);
  if (rc == 0) {
    *pkt = parse(out, len);
    assert_int_equal(ldns_pkt_id(*pkt), id);
  }
  return rc;
}

static bool has_answer(ldns_pkt *p, const char *needle)
{
  char *s = ldns_rr_list2str(ldns_pkt_answer(p));
  bool ok = s && strstr(s, needle);
  free(s);
  return ok;
}

static void test_server_side(void **state)
{
  (void)state;
  ldns_pkt *p;
  assert_int_equal(answer(1, "web.service.consul", LDNS_RR_TYPE_A, false, &p), 0);
  assert_true(has_answer(p, "10.7.7.7"));
  ldns_pkt_free(p);
  /* The transport decides the size: 3 answers over classic UDP, all of them over TCP. */
  assert_int_equal(answer(2, "huge.service.consul", LDNS_RR_TYPE_A, false, &p), 0);
  assert_int_equal(ldns_pkt_ancount(p), 3);
  ldns_pkt_free(p);
  assert_int_equal(answer(3, "huge.service.consul", LDNS_RR_TYPE_A, true, &p), 0);
  assert_int_equal(ldns_pkt_ancount(p), 300);
  ldns_pkt_free(p);
  assert_int_equal(answer(4, "7.7.7.10.in-addr.arpa", LDNS_RR_TYPE_PTR, false, &p), 0);
  assert_true(has_answer(p, "node1.node.dc1.consul."));
  ldns_pkt_free(p);
  /* The server's recursors are not the client's business: NXDOMAIN, REFUSED. */
  assert_int_equal(answer(5, "9.9.9.10.in-addr.arpa", LDNS_RR_TYPE_PTR, false, &p), 0);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
  ldns_pkt_free(p);
  assert_int_equal(answer(6, "www.example.com", LDNS_RR_TYPE_A, false, &p), 0);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
  ldns_pkt_free(p);
  /* IPv6 and no address encode too. */
  uint8_t q[512], body[DNS_REMOTE_MAX_BODY];
  size_t qn = mkq(q, 7, "web.service.consul", LDNS_RR_TYPE_A), len = 0;
  struct sockaddr_in6 six = {.sin6_family = AF_INET6};
  assert_int_equal(dns_remote_encode(q, qn, false, DNS_UDP_MAX, (struct sockaddr *)&six, body),
                   5 + 18 + qn);
  assert_int_equal(dns_remote_answer(server_engine, body, 5 + 18 + qn, out, &len), 0);
  assert_int_equal(dns_remote_encode(q, qn, false, DNS_UDP_MAX, NULL, body), 5 + qn);
  assert_int_equal(dns_remote_answer(server_engine, body, 5 + qn, out, &len), 0);
  assert_int_equal(dns_remote_encode(q, 0, false, DNS_UDP_MAX, NULL, body), 0);
}

static void test_server_side_rejects(void **state)
{
  (void)state;
  uint8_t q[512], body[DNS_REMOTE_MAX_BODY];
  size_t qn = mkq(q, 1, "web.service.consul", LDNS_RR_TYPE_A), len = 0;
  size_t bn = dns_remote_encode(q, qn, false, DNS_UDP_MAX, NULL, body);
  uint8_t bad[DNS_REMOTE_MAX_BODY];
  struct {
    size_t at;
    uint8_t value;
  } edits[] = {{0, 2}, {1, 0x80}, {1, 0x08}, {2, 0}, {4, 5}, {4, 4}, {4, 6}};
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    memcpy(bad, body, bn);
    bad[edits[i].at] = edits[i].value;
    if (edits[i].at == 2)
      bad[3] = 0x10; /* max_size 16: below 512 */
    size_t n = edits[i].value == 4 || edits[i].value == 6 ? 8 : bn; /* address cut short */
    assert_int_equal(dns_remote_answer(server_engine, bad, n, out, &len), CC_EINVAL);
  }
  assert_int_equal(dns_remote_answer(server_engine, body, 4, out, &len), CC_EINVAL);
  assert_int_equal(dns_remote_answer(server_engine, body, 5, out, &len), CC_EINVAL);
  /* A query too short for a header is dropped by the engine: an error, not a reply. */
  assert_int_equal(dns_remote_answer(server_engine, body, 5 + 3, out, &len), CC_EINVAL);
}

/* ---- Other datacenters ---- */

static size_t body_for(uint16_t id, const char *name, uint16_t type, uint8_t *body)
{
  uint8_t q[512];
  size_t qn = mkq(q, id, name, type);
  return dns_remote_encode(q, qn, false, DNS_UDP_MAX, NULL, body);
}

static void test_answer_other_dc(void **state)
{
  (void)state;
  uint8_t body[DNS_REMOTE_MAX_BODY];
  size_t len = 0, bn = body_for(1, "web.service.dc2.consul", LDNS_RR_TYPE_A, body);
  /* dc1's server knowing dc2: not its to answer. */
  assert_int_equal(dns_remote_answer(wan_engine, body, bn, out, &len), DNS_REMOTE_OTHER_DC);
  assert_string_equal(dns_engine_remote_dc(wan_engine), "dc2");
  /* dc2's server answers the same body as its own. */
  assert_int_equal(dns_remote_answer(dc2_engine, body, bn, out, &len), 0);
  ldns_pkt *p = parse(out, len);
  assert_true(has_answer(p, "10.7.7.7"));
  ldns_pkt_free(p);
  /* Forwarded once already: never relayed again (no loops), an error instead. */
  dns_remote_mark_forwarded(body, bn, false);
  assert_int_equal(body[1], 0x02);
  assert_int_equal(dns_remote_answer(wan_engine, body, bn, out, &len), CC_EINVAL);
  assert_int_equal(dns_remote_answer(dc2_engine, body, bn, out, &len), 0);
  /* Unknown datacenters are NXDOMAIN right there. */
  bn = body_for(2, "web.service.dc9.consul", LDNS_RR_TYPE_A, body);
  assert_int_equal(dns_remote_answer(wan_engine, body, bn, out, &len), 0);
  p = parse(out, len);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
  ldns_pkt_free(p);
  /* The WAN flag counts on a forwarded question only: the asker in another datacenter
   * translates; one of our own datacenter needs no translation. */
  struct dns_node wn = {.name = "wn", .address = "10.2.2.2", .wan = "198.51.100.5"};
  assert_true(dns_memcat_add_node(cat2, &wn) >= 0);
  struct {
    uint8_t flags;
    const char *want;
  } cases[] = {{0x06, "198.51.100.5"}, {0x02, "10.2.2.2"}, {0x04, "10.2.2.2"}, {0, "10.2.2.2"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    bn = body_for(3, "wn.node.dc2.consul", LDNS_RR_TYPE_A, body);
    body[1] = cases[i].flags;
    assert_int_equal(dns_remote_answer(dc2_engine, body, bn, out, &len), 0);
    p = parse(out, len);
    assert_true(has_answer(p, cases[i].want));
    ldns_pkt_free(p);
  }
  bn = body_for(3, "wn.node.dc2.consul", LDNS_RR_TYPE_A, body);
  dns_remote_mark_forwarded(body, bn, true);
  assert_int_equal(body[1], 0x06);
}

/* A fake transport playing dc2's server for the relay. */
enum relay_mode { R_NOW, R_HOLD, R_FAIL };

static struct {
  enum relay_mode mode;
  int sent, cancelled;
  char dc[DNS_DC_MAX];
  uint8_t flags;
  dns_remote_done_fn done[4];
  void *arg[4];
  uint8_t body[4][DNS_REMOTE_MAX_BODY];
  size_t len[4];
  int held;
} rt;

static void rt_answer(dns_remote_done_fn done, void *arg, const uint8_t *body, size_t len)
{
  static uint8_t reply[DNS_TCP_MAX];
  size_t rlen = 0;
  int rc = dns_remote_answer(dc2_engine, body, len, reply, &rlen);
  done(arg, rc == 0 ? 0 : CC_EIO, NULL, reply, rlen);
}

static int rt_send(void *ctx, const char *dc, const uint8_t *body, size_t len,
                   dns_remote_done_fn done, void *arg, void **handle)
{
  (void)ctx;
  rt.sent++;
  snprintf(rt.dc, sizeof rt.dc, "%s", dc ? dc : "-");
  rt.flags = body[1];
  if (rt.mode == R_FAIL)
    return CC_ENOTFOUND;
  if (rt.mode == R_NOW) {
    rt_answer(done, arg, body, len);
    *handle = NULL;
    return 0;
  }
  int i = rt.held++;
  *handle = (void *)(intptr_t)(i + 1);
  if (i >= 4)
    return 0; /* held, but only the first four can be answered by the test */
  rt.done[i] = done;
  rt.arg[i] = arg;
  memcpy(rt.body[i], body, len);
  rt.len[i] = len;
  return 0;
}

static void rt_cancel(void *ctx, void *handle)
{
  (void)ctx;
  assert_non_null(handle);
  rt.cancelled++;
  if ((intptr_t)handle <= 4)
    rt.done[(intptr_t)handle - 1] = NULL;
}

/* What the asker of dns_remote_serve got. */
static struct {
  int calls, status;
  char error[128];
  uint8_t reply[DNS_TCP_MAX];
  size_t len;
} asked;

static void got_done(void *arg, int status, const char *error, const uint8_t *body, size_t len)
{
  assert_ptr_equal(arg, &asked);
  asked.calls++;
  asked.status = status;
  snprintf(asked.error, sizeof asked.error, "%s", error ? error : "");
  asked.len = body ? len : 0;
  if (body)
    memcpy(asked.reply, body, len);
}

static void test_relay(void **state)
{
  (void)state;
  struct dns_remote_transport t = {.send = rt_send, .cancel = rt_cancel};
  struct dns_remote_server *srv = dns_remote_server_new(wan_engine, &t);
  uint8_t body[DNS_REMOTE_MAX_BODY];
  void *h;
  memset(&rt, 0, sizeof rt);

  /* Ours: answered before serve returns, nothing sent. */
  memset(&asked, 0, sizeof asked);
  size_t bn = body_for(1, "web.service.consul", LDNS_RR_TYPE_A, body);
  dns_remote_serve(srv, body, bn, got_done, &asked, &h);
  assert_null(h);
  assert_int_equal(asked.calls, 1);
  assert_int_equal(asked.status, 0);
  ldns_pkt *p = parse(asked.reply, asked.len);
  assert_true(has_answer(p, "10.7.7.7"));
  ldns_pkt_free(p);
  assert_int_equal(rt.sent, 0);

  /* dc2's, answered inside send: relayed marked forwarded, the reply passed back; the asker's
   * WAN flag goes along as it came. */
  memset(&asked, 0, sizeof asked);
  bn = body_for(2, "web.service.dc2.consul", LDNS_RR_TYPE_A, body);
  body[1] = 0x04;
  dns_remote_serve(srv, body, bn, got_done, &asked, &h);
  assert_int_equal(rt.flags, 0x06);
  assert_int_equal(body[1], 0x04); /* the caller's body is left alone */
  assert_int_equal(asked.calls, 1);
  body[1] = 0;
  memset(&asked, 0, sizeof asked);
  dns_remote_serve(srv, body, bn, got_done, &asked, &h);
  assert_null(h);
  assert_int_equal(rt.sent, 2);
  assert_string_equal(rt.dc, "dc2");
  assert_int_equal(rt.flags, 0x02);
  assert_int_equal(asked.calls, 1);
  p = parse(asked.reply, asked.len);
  assert_int_equal(ldns_pkt_id(p), 2);
  assert_true(has_answer(p, "10.7.7.7"));
  ldns_pkt_free(p);
  assert_int_equal(dns_remote_server_pending(srv), 0);

  /* Answered later; another one cancelled by its asker; a third cut short by free. */
  rt.mode = R_HOLD;
  memset(&asked, 0, sizeof asked);
  void *h1, *h2, *h3;
  dns_remote_serve(srv, body, bn, got_done, &asked, &h1);
  dns_remote_serve(srv, body, bn, got_done, &asked, &h2);
  dns_remote_serve(srv, body, bn, got_done, &asked, &h3);
  assert_non_null(h1);
  assert_non_null(h2);
  assert_int_equal(asked.calls, 0);
  assert_int_equal(dns_remote_server_pending(srv), 3);
  rt_answer(rt.done[0], rt.arg[0], rt.body[0], rt.len[0]);
  assert_int_equal(asked.calls, 1);
  assert_int_equal(asked.status, 0);
  assert_true(asked.len > 12);
  assert_int_equal(dns_remote_server_pending(srv), 2);
  dns_remote_server_cancel(srv, h2);
  assert_int_equal(rt.cancelled, 1);
  assert_int_equal(asked.calls, 1);
  assert_int_equal(dns_remote_server_pending(srv), 1);

  /* No server of dc2 reachable: an error for the asker (it answers SERVFAIL). */
  rt.mode = R_FAIL;
  dns_remote_serve(srv, body, bn, got_done, &asked, &h);
  assert_null(h);
  assert_int_equal(asked.calls, 2);
  assert_string_equal(asked.error, "Remote DC has no server currently reachable");

  /* Forwarded already and naming dc2 again: an error, not sent. */
  int sent = rt.sent;
  dns_remote_mark_forwarded(body, bn, false);
  dns_remote_serve(srv, body, bn, got_done, &asked, &h);
  assert_int_equal(asked.calls, 3);
  assert_string_equal(asked.error, "malformed DNS request");
  assert_int_equal(rt.sent, sent);

  dns_remote_server_free(srv); /* the held third: cancelled, its asker told */
  assert_int_equal(rt.cancelled, 2);
  assert_int_equal(asked.calls, 4);
  assert_int_equal(asked.status, CC_ESHUTDOWN);

  /* Without a transport, dc2's names cannot go anywhere. */
  srv = dns_remote_server_new(wan_engine, NULL);
  bn = body_for(4, "web.service.dc2.consul", LDNS_RR_TYPE_A, body);
  dns_remote_serve(srv, body, bn, got_done, &asked, &h);
  assert_int_equal(asked.calls, 5);
  assert_string_equal(asked.error, "No path to datacenter");
  dns_remote_server_free(srv);
}

/* At most 4096 relays in flight: the next asker gets an error at once. */
static void test_relay_cap(void **state)
{
  (void)state;
  struct dns_remote_transport t = {.send = rt_send, .cancel = rt_cancel};
  struct dns_remote_server *srv = dns_remote_server_new(wan_engine, &t);
  uint8_t body[DNS_REMOTE_MAX_BODY];
  size_t bn = body_for(1, "web.service.dc2.consul", LDNS_RR_TYPE_A, body);
  void *h;
  memset(&rt, 0, sizeof rt);
  memset(&asked, 0, sizeof asked);
  rt.mode = R_HOLD;
  for (int i = 0; i < 4096; i++)
    dns_remote_serve(srv, body, bn, got_done, &asked, &h);
  assert_int_equal(dns_remote_server_pending(srv), 4096);
  assert_int_equal(asked.calls, 0);
  dns_remote_serve(srv, body, bn, got_done, &asked, &h);
  assert_null(h);
  assert_int_equal(asked.calls, 1);
  assert_string_equal(asked.error, "too many DNS questions for other datacenters in flight");
  assert_int_equal(rt.sent, 4096);
  dns_remote_server_free(srv);
  assert_int_equal(asked.calls, 1 + 4096);
  assert_int_equal(rt.cancelled, 4096);
}

/* The asking side's dc upstream marks what it sends for another datacenter. */
static struct dns_upstream_query *seen_q;
static int client_send(void *ctx, const char *dc, const uint8_t *body, size_t len,
                       dns_remote_done_fn done, void *arg, void **handle)
{
  (void)ctx, (void)len, (void)done, (void)arg;
  snprintf(rt.dc, sizeof rt.dc, "%s", dc ? dc : "-");
  rt.flags = body[1];
  *handle = NULL;
  return CC_EIO; /* nothing sent: start fails, nothing to cancel */
}

static void test_client_marks_forwarded(void **state)
{
  (void)state;
  struct dns_remote_transport t = {.send = client_send};
  struct dns_remote_client *c = dns_remote_client_new(&t);
  struct dns_upstream up;
  dns_remote_client_upstream(c, &up);
  uint8_t q[512];
  size_t qn = mkq(q, 1, "web.service.dc2.consul", LDNS_RR_TYPE_A);
  void *qdata = NULL;
  for (int wan = 0; wan < 2; wan++) {
    dns_remote_client_set_wan_addrs(c, wan);
    assert_int_equal(up.start(up.ctx, seen_q, q, qn, true, DNS_TCP_MAX, NULL, "dc2", &qdata),
                     CC_EIO);
    assert_string_equal(rt.dc, "dc2");
    assert_int_equal(rt.flags, wan ? 0x07 : 0x03);
    /* The catalog upstream's questions (no dc) are not marked forwarded, but say whether
     * this agent translates (its server relays that with names of other datacenters). */
    assert_int_equal(up.start(up.ctx, seen_q, q, qn, false, DNS_UDP_MAX, NULL, NULL, &qdata),
                     CC_EIO);
    assert_string_equal(rt.dc, "-");
    assert_int_equal(rt.flags, wan ? 0x04 : 0);
  }
  assert_int_equal(dns_remote_client_pending(c), 0);
  dns_remote_client_free(c);
}

/* ---- The client's side through a real server ---- */

enum transport_mode { T_NOW, T_LATER, T_SEND_FAILS, T_REMOTE_ERROR, T_NEVER };

struct later {
  uv_timer_t t;
  dns_remote_done_fn done;
  void *arg;
  uint8_t body[DNS_REMOTE_MAX_BODY];
  size_t len;
};

static struct {
  uv_loop_t *loop;
  enum transport_mode mode;
  int sent, cancelled;
  struct later *pending[8];
} tr;

static void reply_to(dns_remote_done_fn done, void *arg, const uint8_t *body, size_t len)
{
  static uint8_t reply[DNS_TCP_MAX];
  size_t rlen = 0;
  if (tr.mode == T_REMOTE_ERROR) {
    done(arg, 0, "rpc: can't find method DNS.Query", NULL, 0);
    return;
  }
  int rc = dns_remote_answer(server_engine, body, len, reply, &rlen);
  done(arg, rc == 0 ? 0 : CC_EIO, NULL, reply, rlen);
}

static void on_later_closed(uv_handle_t *h)
{
  free(h->data);
}

static void on_later(uv_timer_t *t)
{
  struct later *l = t->data;
  for (int i = 0; i < 8; i++)
    if (tr.pending[i] == l)
      tr.pending[i] = NULL;
  reply_to(l->done, l->arg, l->body, l->len);
  uv_close((uv_handle_t *)&l->t, on_later_closed);
}

static int t_send(void *ctx, const char *dc, const uint8_t *body, size_t len,
                  dns_remote_done_fn done, void *arg, void **handle)
{
  (void)ctx;
  assert_null(dc); /* the client's catalog upstream */
  tr.sent++;
  switch (tr.mode) {
  case T_SEND_FAILS:
    return CC_EIO;
  case T_NOW:
  case T_REMOTE_ERROR:
    reply_to(done, arg, body, len);
    *handle = NULL;
    return 0;
  case T_LATER:
  case T_NEVER:
    break;
  }
  struct later *l = calloc(1, sizeof *l);
  l->done = done;
  l->arg = arg;
  memcpy(l->body, body, len);
  l->len = len;
  uv_timer_init(tr.loop, &l->t);
  l->t.data = l;
  uv_timer_start(&l->t, on_later, tr.mode == T_LATER ? 20 : 100000, 0);
  for (int i = 0; i < 8; i++)
    if (!tr.pending[i]) {
      tr.pending[i] = l;
      break;
    }
  *handle = l;
  return 0;
}

static void t_cancel(void *ctx, void *handle)
{
  struct later *l = handle;
  (void)ctx;
  tr.cancelled++;
  for (int i = 0; i < 8; i++)
    if (tr.pending[i] == l)
      tr.pending[i] = NULL;
  uv_timer_stop(&l->t);
  uv_close((uv_handle_t *)&l->t, on_later_closed);
}

/* Sends a UDP query to port and spins the loop until the reply comes (3 s at most). */
static ldns_pkt *ask(uv_loop_t *loop, int port, uint16_t id, const char *name, uint16_t type)
{
  uint8_t q[512], r[65536];
  size_t n = mkq(q, id, name, type);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(sendto(fd, q, n, 0, (struct sockaddr *)&a, sizeof a), (ssize_t)n);
  ssize_t got = -1;
  for (int i = 0; i < 3000 && got < 0; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    got = recv(fd, r, sizeof r, MSG_DONTWAIT);
    if (got < 0)
      usleep(1000);
  }
  close(fd);
  assert_true(got > 0);
  ldns_pkt *p = parse(r, (size_t)got);
  assert_int_equal(ldns_pkt_id(p), id);
  return p;
}

static int closed;
static void on_closed(void *arg)
{
  (void)arg;
  closed++;
}

static void test_client_side(void **state)
{
  (void)state;
  enum transport_mode modes[] = {T_NOW, T_LATER, T_SEND_FAILS, T_REMOTE_ERROR, T_NEVER};
  for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
    char err[256];
    uv_loop_t loop;
    uv_loop_init(&loop);
    memset(&tr, 0, sizeof tr);
    tr.loop = &loop;
    tr.mode = modes[m];
    /* The client: an engine with an empty catalog, as a client agent has. */
    struct dns_config cfg;
    dns_config_defaults(&cfg);
    struct dns_backend be = {0};
    struct dns_engine *e = dns_engine_new(&cfg, &be, err, sizeof err);
    struct dns_server *s = dns_server_new(&loop, e, NULL, err, sizeof err);
    assert_int_equal(dns_server_listen(s, "127.0.0.1", 0, err, sizeof err), 0);
    struct dns_remote_transport t = {.send = t_send, .cancel = t_cancel};
    struct dns_remote_client *rc = dns_remote_client_new(&t);
    struct dns_upstream up;
    dns_remote_client_upstream(rc, &up);
    up.timeout_ms = 200;
    dns_server_set_upstream(s, &up);

    ldns_pkt *p = ask(&loop, dns_server_port(s), 42, "web.service.consul", LDNS_RR_TYPE_A);
    if (tr.mode == T_NOW || tr.mode == T_LATER) {
      assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
      assert_true(has_answer(p, "10.7.7.7"));
      assert_false(ldns_pkt_ra(p)); /* the server has recursors, this agent has none */
    } else {
      assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
    }
    ldns_pkt_free(p);
    assert_int_equal(tr.sent, 1);
    assert_int_equal(tr.cancelled, tr.mode == T_NEVER ? 1 : 0); /* the timeout cancels */
    assert_int_equal(dns_remote_client_pending(rc), 0);

    if (tr.mode == T_NEVER) { /* one in flight when the server closes: cancelled too */
      int fd = socket(AF_INET, SOCK_DGRAM, 0);
      uint8_t q[512];
      size_t n = mkq(q, 43, "web.service.consul", LDNS_RR_TYPE_A);
      struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)dns_server_port(s))};
      inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
      sendto(fd, q, n, 0, (struct sockaddr *)&a, sizeof a);
      for (int i = 0; i < 1000 && tr.sent < 2; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
      }
      close(fd);
      assert_int_equal(dns_remote_client_pending(rc), 1);
    }
    closed = 0;
    dns_server_close(s, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(dns_remote_client_pending(rc), 0);
    assert_int_equal(tr.cancelled, tr.mode == T_NEVER ? 2 : 0);
    dns_remote_client_free(rc);
    dns_engine_free(e);
    assert_int_equal(uv_loop_close(&loop), 0);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server_side),
      cmocka_unit_test(test_server_side_rejects),
      cmocka_unit_test(test_answer_other_dc),
      cmocka_unit_test(test_relay),
      cmocka_unit_test(test_relay_cap),
      cmocka_unit_test(test_client_marks_forwarded),
      cmocka_unit_test(test_client_side),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
