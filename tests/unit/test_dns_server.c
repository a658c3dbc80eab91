/* test_dns_server.c -- dns/server.c over real loopback sockets: UDP, TCP framing (pipelined
 * and byte-by-byte), 64 KiB TCP answers, forwarding to recursors (a second server as the
 * upstream, a dead one, one that refuses), the connection limit, the idle timeout, a clean
 * close with work in flight, the asynchronous upstream of client agents (a fake one on the
 * loop answering from a "server" engine: now, later, out of order, never, wrongly), and the
 * dc upstream of servers (names of other datacenters, answered by the fake as that
 * datacenter's server). The loop runs in a thread; the test is the client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "dns/dns.h"
#include "dns/memcat.h"
#include "dns/server.h"

static const char *catalog =
    "{\"Nodes\": [{\"Node\": \"node1\", \"Address\": \"10.0.0.1\"}],"
    " \"Services\": [{\"Node\": \"node1\", \"Service\": \"web\", \"Port\": 80}]}";

struct srv {
  struct dns_memcat *m;
  struct dns_engine *e;
  struct dns_server *s;
  int port;
};

struct world {
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t stop;
  struct srv a, b; /* a forwards to b (and others) */
};

/* n instances of service "huge", one per node h<i> at 10.<net>.x.y. */
static void add_huge(struct dns_memcat *m, int net, int n)
{
  for (int i = 0; i < n; i++) {
    char name[16], addr[32];
    snprintf(name, sizeof name, "h%d", i);
    snprintf(addr, sizeof addr, "10.%d.%d.%d", net, i / 250, i % 250 + 1);
    struct dns_node node = {.name = name, .address = addr};
    dns_memcat_add_node(m, &node);
    struct dns_memcat_service svc = {.node = name, .name = "huge", .port = 1};
    dns_memcat_add_service(m, &svc);
  }
}

/* The other datacenters the next srv_start's backend knows (NULL: it knows none). */
static bool (*srv_dc_known)(void *ctx, const char *dc);

static void srv_start(struct world *w, struct srv *sv, const char *domain,
                      const char *const *recursors, size_t n, const struct dns_server_config *sc)
{
  char err[256];
  sv->m = dns_memcat_new("dc1");
  assert_int_equal(dns_memcat_load_json(sv->m, catalog, strlen(catalog), err, sizeof err), 0);
  add_huge(sv->m, 3, 5000);
  struct dns_config cfg;
  dns_config_defaults(&cfg);
  strcpy(cfg.domain, domain);
  for (size_t i = 0; i < n; i++)
    strcpy(cfg.recursors[i], recursors[i]);
  cfg.n_recursors = n;
  cfg.recursor_timeout_ms = 300;
  struct dns_backend be;
  dns_memcat_backend(sv->m, &be);
  be.datacenter_known = srv_dc_known;
  sv->e = dns_engine_new(&cfg, &be, err, sizeof err);
  assert_non_null(sv->e);
  sv->s = dns_server_new(&w->loop, sv->e, sc, err, sizeof err);
  assert_non_null(sv->s);
  assert_int_equal(dns_server_listen(sv->s, "127.0.0.1", 0, err, sizeof err), 0);
  sv->port = dns_server_port(sv->s);
  assert_true(sv->port > 0);
}

static int closed;
static void on_closed(void *arg)
{
  (void)arg;
  closed++;
}

static uv_async_t *fake_async; /* the fake upstream's, closed with the world */

static void on_stop(uv_async_t *a)
{
  struct world *w = a->data;
  if (fake_async)
    uv_close((uv_handle_t *)fake_async, NULL);
  fake_async = NULL;
  if (w->a.s)
    dns_server_close(w->a.s, on_closed, NULL);
  if (w->b.s)
    dns_server_close(w->b.s, on_closed, NULL);
  uv_close((uv_handle_t *)a, NULL);
}

static void run_loop(void *arg)
{
  struct world *w = arg;
  uv_run(&w->loop, UV_RUN_DEFAULT);
}

static void world_go(struct world *w)
{
  uv_async_init(&w->loop, &w->stop, on_stop);
  w->stop.data = w;
  assert_int_equal(uv_thread_create(&w->thread, run_loop, w), 0);
}

static void world_end(struct world *w)
{
  closed = 0;
  uv_async_send(&w->stop);
  uv_thread_join(&w->thread);
  assert_int_equal(closed, (w->a.s ? 1 : 0) + (w->b.s ? 1 : 0));
  assert_int_equal(uv_loop_close(&w->loop), 0); /* every handle closed */
  struct srv *all[2] = {&w->a, &w->b};
  for (int i = 0; i < 2; i++) {
    if (all[i]->e)
      dns_engine_free(all[i]->e);
    dns_memcat_free(all[i]->m);
  }
  free(w);
}

static struct world *world_new(void)
{
  struct world *w = calloc(1, sizeof *w);
  uv_loop_init(&w->loop);
  return w;
}

/* ---- Clients ---- */

static size_t mkq(uint8_t *b, uint16_t id, const char *name, uint16_t type)
{
  size_t n = 12;
  memset(b, 0, 12);
  b[0] = (uint8_t)(id >> 8), b[1] = (uint8_t)id, b[2] = 0x01, b[5] = 1;
  for (const char *s = name; *s;) {
    const char *dot = strchr(s, '.');
    size_t len = dot ? (size_t)(dot - s) : strlen(s);
    b[n++] = (uint8_t)len;
    memcpy(b + n, s, len);
    n += len;
    s += len + (dot ? 1 : 0);
  }
  b[n++] = 0;
  b[n++] = (uint8_t)(type >> 8), b[n++] = (uint8_t)type, b[n++] = 0, b[n++] = 1;
  return n;
}

static struct sockaddr_in loopback(int port)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  return a;
}

static void set_timeout(int fd, int ms)
{
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* One UDP exchange; returns the parsed reply (NULL on timeout). */
static ldns_pkt *udp_ask(int port, uint16_t id, const char *name, uint16_t type)
{
  uint8_t q[512], r[65536];
  size_t n = mkq(q, id, name, type);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = loopback(port);
  set_timeout(fd, 3000);
  assert_int_equal(sendto(fd, q, n, 0, (struct sockaddr *)&a, sizeof a), (ssize_t)n);
  ssize_t got = recv(fd, r, sizeof r, 0);
  close(fd);
  if (got <= 0)
    return NULL;
  ldns_pkt *p = NULL;
  assert_int_equal(ldns_wire2pkt(&p, r, (size_t)got), LDNS_STATUS_OK);
  assert_int_equal(ldns_pkt_id(p), id);
  return p;
}

static int tcp_connect(int port)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = loopback(port);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  set_timeout(fd, 3000);
  return fd;
}

static bool read_full(int fd, uint8_t *p, size_t n)
{
  for (size_t got = 0; got < n;) {
    ssize_t r = recv(fd, p + got, n - got, 0);
    if (r <= 0)
      return false;
    got += (size_t)r;
  }
  return true;
}

/* Reads one framed reply; NULL on EOF. */
static ldns_pkt *tcp_read(int fd, size_t *len_out)
{
  static uint8_t buf[65536];
  uint8_t hdr[2];
  if (!read_full(fd, hdr, 2))
    return NULL;
  size_t len = (size_t)hdr[0] << 8 | hdr[1];
  assert_true(read_full(fd, buf, len));
  ldns_pkt *p = NULL;
  assert_int_equal(ldns_wire2pkt(&p, buf, len), LDNS_STATUS_OK);
  if (len_out)
    *len_out = len;
  return p;
}

static size_t frame(uint8_t *out, uint16_t id, const char *name, uint16_t type)
{
  size_t n = mkq(out + 2, id, name, type);
  out[0] = (uint8_t)(n >> 8), out[1] = (uint8_t)n;
  return n + 2;
}

static bool has_answer(ldns_pkt *p, const char *needle)
{
  char *s = ldns_rr_list2str(ldns_pkt_answer(p));
  bool ok = s && strstr(s, needle);
  free(s);
  return ok;
}

/* ---- Tests ---- */

static void test_udp_and_tcp(void **state)
{
  (void)state;
  struct world *w = world_new();
  srv_start(w, &w->a, "consul.", NULL, 0, NULL);
  world_go(w);

  ldns_pkt *p = udp_ask(w->a.port, 7, "web.service.consul", LDNS_RR_TYPE_A);
  assert_non_null(p);
  assert_true(has_answer(p, "10.0.0.1"));
  ldns_pkt_free(p);

  /* Two queries in one write, answered in order. */
  int fd = tcp_connect(w->a.port);
  uint8_t buf[1024];
  size_t n = frame(buf, 1, "web.service.consul", LDNS_RR_TYPE_A);
  n += frame(buf + n, 2, "node1.node.consul", LDNS_RR_TYPE_A);
  assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
  p = tcp_read(fd, NULL);
  assert_int_equal(ldns_pkt_id(p), 1);
  ldns_pkt_free(p);
  p = tcp_read(fd, NULL);
  assert_int_equal(ldns_pkt_id(p), 2);
  assert_true(has_answer(p, "node1.node.consul."));
  ldns_pkt_free(p);

  /* A frame sent one byte at a time. */
  n = frame(buf, 3, "web.service.consul", LDNS_RR_TYPE_SRV);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(send(fd, buf + i, 1, 0), 1);
    usleep(1000);
  }
  p = tcp_read(fd, NULL);
  assert_int_equal(ldns_pkt_id(p), 3);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  ldns_pkt_free(p);

  /* A 64 KiB answer. */
  size_t len = 0;
  n = frame(buf, 4, "huge.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
  p = tcp_read(fd, &len);
  assert_true(len > 60000 && len <= 65535);
  assert_true(ldns_pkt_ancount(p) > 3000);
  ldns_pkt_free(p);

  /* An empty frame and garbage are skipped; the connection still answers. */
  uint8_t junk[] = {0, 0, 0, 3, 1, 2, 3};
  assert_int_equal(send(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
  n = frame(buf, 5, "web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
  p = tcp_read(fd, NULL);
  assert_int_equal(ldns_pkt_id(p), 5);
  ldns_pkt_free(p);
  close(fd);

  /* A UDP datagram shorter than a header gets nothing; the server keeps working. */
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = loopback(w->a.port);
  sendto(u, "x", 1, 0, (struct sockaddr *)&a, sizeof a);
  close(u);
  p = udp_ask(w->a.port, 8, "web.service.consul", LDNS_RR_TYPE_A);
  assert_non_null(p);
  ldns_pkt_free(p);

  fd = tcp_connect(w->a.port); /* left open: close must still finish */
  world_end(w);
  close(fd);
}

static int dead_udp_port(void)
{
  /* A port with nobody listening (bound, noted, released). */
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = loopback(0);
  socklen_t l = sizeof a;
  bind(fd, (struct sockaddr *)&a, sizeof a);
  getsockname(fd, (struct sockaddr *)&a, &l);
  close(fd);
  return ntohs(a.sin_port);
}

static void test_forwarding(void **state)
{
  (void)state;
  struct world *w = world_new();
  /* b is the upstream: it serves "example." and refuses everything else. */
  srv_start(w, &w->b, "example.", NULL, 0, NULL);
  char dead[64], up[64];
  snprintf(dead, sizeof dead, "127.0.0.1:%d", dead_udp_port());
  snprintf(up, sizeof up, "127.0.0.1:%d", w->b.port);
  const char *recs[] = {dead, up};
  srv_start(w, &w->a, "consul.", recs, 2, NULL);
  world_go(w);

  /* The dead recursor times out (300 ms), the next one answers; our ID comes back. */
  ldns_pkt *p = udp_ask(w->a.port, 0x4242, "web.service.example", LDNS_RR_TYPE_A);
  assert_non_null(p);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
  assert_true(has_answer(p, "web.service.example.\t0\tIN\tA\t10.0.0.1"));
  ldns_pkt_free(p);
  /* NXDOMAIN is an answer too. */
  p = udp_ask(w->a.port, 9, "nope.service.example", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
  ldns_pkt_free(p);
  /* REFUSED from every recursor: SERVFAIL. */
  p = udp_ask(w->a.port, 10, "www.elsewhere.test", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
  assert_true(ldns_pkt_ra(p));
  ldns_pkt_free(p);
  /* Our own names are not forwarded. */
  p = udp_ask(w->a.port, 11, "web.service.consul", LDNS_RR_TYPE_A);
  assert_true(has_answer(p, "10.0.0.1"));
  ldns_pkt_free(p);

  /* Over TCP: a forwarded query and a local one behind it, answered in order. */
  int fd = tcp_connect(w->a.port);
  uint8_t buf[512];
  size_t n = frame(buf, 21, "web.service.example", LDNS_RR_TYPE_A);
  n += frame(buf + n, 22, "web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
  p = tcp_read(fd, NULL);
  assert_int_equal(ldns_pkt_id(p), 21);
  assert_true(has_answer(p, "web.service.example."));
  ldns_pkt_free(p);
  p = tcp_read(fd, NULL);
  assert_int_equal(ldns_pkt_id(p), 22);
  ldns_pkt_free(p);

  /* A forward in flight when the server closes (it would wait on the dead recursor). */
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = loopback(w->a.port);
  n = mkq(buf, 30, "slow.example", LDNS_RR_TYPE_A);
  sendto(u, buf, n, 0, (struct sockaddr *)&a, sizeof a);
  usleep(50000);
  world_end(w);
  close(u);
  close(fd);
}

static void test_all_recursors_dead(void **state)
{
  (void)state;
  struct world *w = world_new();
  char dead[64];
  snprintf(dead, sizeof dead, "127.0.0.1:%d", dead_udp_port());
  const char *recs[] = {dead};
  srv_start(w, &w->a, "consul.", recs, 1, NULL);
  world_go(w);
  ldns_pkt *p = udp_ask(w->a.port, 5, "www.example.com", LDNS_RR_TYPE_A);
  assert_non_null(p);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
  ldns_pkt_free(p);
  world_end(w);
}

static void test_limits(void **state)
{
  (void)state;
  struct world *w = world_new();
  struct dns_server_config sc;
  dns_server_config_defaults(&sc);
  sc.max_tcp_connections = 2;
  sc.tcp_idle_timeout_ms = 300;
  srv_start(w, &w->a, "consul.", NULL, 0, &sc);
  world_go(w);

  int c1 = tcp_connect(w->a.port), c2 = tcp_connect(w->a.port), c3 = tcp_connect(w->a.port);
  uint8_t b[8];
  assert_int_equal(recv(c3, b, sizeof b, 0), 0); /* over the limit: closed at once */
  /* The first two work, then go idle and are closed. */
  uint8_t buf[512];
  size_t n = frame(buf, 1, "web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(send(c1, buf, n, 0), (ssize_t)n);
  ldns_pkt *p = tcp_read(c1, NULL);
  assert_non_null(p);
  ldns_pkt_free(p);
  struct pollfd pf = {.fd = c2, .events = POLLIN};
  assert_int_equal(poll(&pf, 1, 2000), 1);
  assert_int_equal(recv(c2, b, sizeof b, 0), 0);
  assert_null(tcp_read(c1, NULL));
  close(c1);
  close(c2);
  close(c3);
  /* Room again. */
  c1 = tcp_connect(w->a.port);
  assert_int_equal(send(c1, buf, n, 0), (ssize_t)n);
  p = tcp_read(c1, NULL);
  assert_non_null(p);
  ldns_pkt_free(p);
  close(c1);
  world_end(w);
}

static void test_parse_recursor(void **state)
{
  (void)state;
  struct sockaddr_storage a;
  assert_int_equal(dns_parse_recursor("8.8.8.8", &a), 0);
  assert_int_equal(ntohs(((struct sockaddr_in *)&a)->sin_port), 53);
  assert_int_equal(dns_parse_recursor("127.0.0.1:5353", &a), 0);
  assert_int_equal(ntohs(((struct sockaddr_in *)&a)->sin_port), 5353);
  assert_int_equal(dns_parse_recursor("::1", &a), 0);
  assert_int_equal(a.ss_family, AF_INET6);
  assert_int_equal(ntohs(((struct sockaddr_in6 *)&a)->sin6_port), 53);
  assert_int_equal(dns_parse_recursor("[::1]:54", &a), 0);
  assert_int_equal(ntohs(((struct sockaddr_in6 *)&a)->sin6_port), 54);
  const char *bad[] = {"", "dns.example.com", "1.2.3.4:0", "1.2.3.4:70000", "[::1", "1.2.3"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    assert_int_equal(dns_parse_recursor(bad[i], &a), -1);

  struct dns_config cfg;
  struct dns_backend be = {0};
  char err[128];
  dns_config_defaults(&cfg);
  strcpy(cfg.recursors[0], "not-an-ip");
  cfg.n_recursors = 1;
  struct dns_engine *e = dns_engine_new(&cfg, &be, err, sizeof err);
  uv_loop_t loop;
  uv_loop_init(&loop);
  assert_null(dns_server_new(&loop, e, NULL, err, sizeof err));
  assert_non_null(strstr(err, "Invalid recursor address"));
  dns_engine_free(e);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- The upstream (client agents asking a server) ---- */

/* What the server knows: node1 elsewhere than the client's own catalog says, so an answer
 * with 10.7.7.7 came from upstream. */
static const char *server_catalog =
    "{\"Nodes\": [{\"Node\": \"node1\", \"Address\": \"10.7.7.7\"}],"
    " \"Services\": [{\"Node\": \"node1\", \"Service\": \"web\", \"Port\": 80}]}";

enum fake_mode {
  FAKE_NOW,      /* answers inside start */
  FAKE_LATER,    /* answers from a timer, 30 ms later */
  FAKE_HOLD,     /* answers when the test releases the query */
  FAKE_WRONG_ID, /* answers now with another ID and RA set */
  FAKE_HUGE,     /* answers now as if over TCP, whatever the transport */
  FAKE_FAIL,     /* start fails */
  FAKE_GARBAGE,  /* answers with bytes that are not a response */
};

#define FAKE_MAX 16

struct held {
  struct dns_upstream_query *q;
  uint8_t query[512];
  size_t qlen;
  bool tcp, live, release;
};

/* Shared with the test thread under mu; everything else runs on the loop. */
static struct {
  uv_mutex_t mu;
  enum fake_mode mode;
  struct dns_engine *engine; /* the "server" */
  struct dns_memcat *cat;
  struct held h[FAKE_MAX];
  int started, cancelled, answered;
  char dc[DNS_DC_MAX]; /* what the last start was given ("-" for NULL) */
  uv_async_t async;
} fake;

static uint8_t fake_out[DNS_TCP_MAX];

/* On the loop thread cmocka's asserts cannot unwind: abort instead. */
#define LOOP_CHECK(x) \
  do {                \
    if (!(x))         \
      abort();        \
  } while (0)

/* Answers h (the mutex not held: the reply may start the next query of a TCP client). */
static void fake_answer(struct held *h)
{
  uv_mutex_lock(&fake.mu);
  h->live = false;
  fake.answered++;
  uv_mutex_unlock(&fake.mu);
  struct dns_request req = {.tcp = h->tcp || fake.mode == FAKE_HUGE,
                            .max_size = h->tcp || fake.mode == FAKE_HUGE ? DNS_TCP_MAX
                                                                         : DNS_UDP_MAX};
  size_t len = 0;
  if (fake.mode == FAKE_GARBAGE) {
    memcpy(fake_out, h->query, h->qlen); /* QR clear: a query, not a response */
    dns_server_upstream_reply(h->q, fake_out, h->qlen);
    return;
  }
  enum dns_action act = dns_engine_answer(fake.engine, h->query, h->qlen, &req, fake_out, &len);
  if (act == DNS_FORWARD) /* a reverse name the server does not know */
    len = dns_engine_error_reply(fake.engine, h->query, h->qlen, 3, fake_out, sizeof fake_out);
  if (fake.mode == FAKE_WRONG_ID) {
    fake_out[0] ^= 0x5a;
    fake_out[3] |= 0x80;
  }
  dns_server_upstream_reply(h->q, act == DNS_DROP ? NULL : fake_out, len);
}

static void on_fake_timer_closed(uv_handle_t *t)
{
  free(t);
}

static void on_fake_timer(uv_timer_t *t)
{
  struct held *h = t->data;
  uv_mutex_lock(&fake.mu);
  bool live = h->live;
  uv_mutex_unlock(&fake.mu);
  if (live)
    fake_answer(h);
  uv_close((uv_handle_t *)t, on_fake_timer_closed);
}

static void on_fake_release(uv_async_t *a)
{
  (void)a;
  for (int i = 0; i < FAKE_MAX; i++) {
    uv_mutex_lock(&fake.mu);
    bool go = fake.h[i].live && fake.h[i].release;
    uv_mutex_unlock(&fake.mu);
    if (go)
      fake_answer(&fake.h[i]);
  }
}

static int fake_start(void *ctx, struct dns_upstream_query *q, const uint8_t *query, size_t qlen,
                      bool tcp, size_t max_size, const struct sockaddr *client, const char *dc,
                      void **qdata)
{
  uv_loop_t *loop = ctx;
  LOOP_CHECK(max_size == (tcp ? DNS_TCP_MAX : DNS_UDP_MAX) && client);
  uv_mutex_lock(&fake.mu);
  snprintf(fake.dc, sizeof fake.dc, "%s", dc ? dc : "-");
  if (fake.mode == FAKE_FAIL) {
    uv_mutex_unlock(&fake.mu);
    return -5;
  }
  int i = 0;
  while (i < FAKE_MAX && (fake.h[i].live || fake.h[i].q))
    i++;
  LOOP_CHECK(i < FAKE_MAX && qlen <= sizeof fake.h[i].query);
  struct held *h = &fake.h[i];
  h->q = q;
  memcpy(h->query, query, qlen);
  h->qlen = qlen;
  h->tcp = tcp;
  h->live = true;
  fake.started++;
  *qdata = h;
  if (fake.mode == FAKE_LATER) {
    uv_timer_t *t = malloc(sizeof *t);
    uv_timer_init(loop, t);
    t->data = h;
    uv_timer_start(t, on_fake_timer, 30, 0);
  }
  bool now = fake.mode != FAKE_LATER && fake.mode != FAKE_HOLD;
  uv_mutex_unlock(&fake.mu);
  if (now)
    fake_answer(h);
  return 0;
}

static void fake_cancel(void *ctx, void *qdata)
{
  struct held *h = qdata;
  (void)ctx;
  uv_mutex_lock(&fake.mu);
  LOOP_CHECK(h->live);
  h->live = false;
  fake.cancelled++;
  uv_mutex_unlock(&fake.mu);
}

enum up_kind {
  UP_CATALOG, /* the fake is a's upstream, as a client agent's server */
  UP_DC,      /* a is a server of dc1 knowing dc2 and dc3; the fake is its dc upstream, as
               * dc2's server (its catalog is dc2's) */
  UP_NONE_DC, /* a knows dc2 and dc3 but has no dc upstream */
};
static enum up_kind up_kind = UP_CATALOG;

static bool knows_dc2_dc3(void *ctx, const char *dc)
{
  (void)ctx;
  return strcmp(dc, "dc2") == 0 || strcmp(dc, "dc3") == 0;
}

/* A world whose server a asks the fake upstream (timeout in ms, 0 for the default; up_kind
 * says which upstream) and, when with_recursor, uses server b -- which knows 10.9.9.9 as
 * "other" -- as its recursor. */
static struct world *up_world(enum fake_mode mode, unsigned timeout_ms, unsigned max_forwards,
                              bool with_recursor)
{
  char err[256];
  struct world *w = world_new();
  memset(&fake, 0, sizeof fake);
  uv_mutex_init(&fake.mu);
  fake.mode = mode;
  fake.cat = dns_memcat_new(up_kind == UP_CATALOG ? "dc1" : "dc2");
  assert_int_equal(dns_memcat_load_json(fake.cat, server_catalog, strlen(server_catalog), err,
                                        sizeof err), 0);
  add_huge(fake.cat, 4, 500);
  struct dns_config cfg;
  dns_config_defaults(&cfg);
  struct dns_backend be;
  dns_memcat_backend(fake.cat, &be);
  fake.engine = dns_engine_new(&cfg, &be, err, sizeof err);
  assert_non_null(fake.engine);
  uv_async_init(&w->loop, &fake.async, on_fake_release);
  fake_async = &fake.async;

  struct dns_server_config sc;
  dns_server_config_defaults(&sc);
  if (max_forwards)
    sc.max_forwards = max_forwards;
  char rec[64];
  const char *recs[] = {rec};
  if (with_recursor) {
    srv_start(w, &w->b, "consul.", NULL, 0, NULL);
    struct dns_node other = {.name = "other", .address = "10.9.9.9"};
    dns_memcat_add_node(w->b.m, &other);
    snprintf(rec, sizeof rec, "127.0.0.1:%d", w->b.port);
  }
  srv_dc_known = up_kind == UP_CATALOG ? NULL : knows_dc2_dc3;
  srv_start(w, &w->a, "consul.", recs, with_recursor ? 1 : 0, &sc);
  srv_dc_known = NULL;
  struct dns_upstream up = {.ctx = &w->loop, .start = fake_start, .cancel = fake_cancel,
                            .timeout_ms = timeout_ms};
  if (up_kind == UP_CATALOG)
    dns_server_set_upstream(w->a.s, &up);
  else if (up_kind == UP_DC)
    dns_server_set_dc_upstream(w->a.s, &up);
  world_go(w);
  return w;
}

static void up_world_end(struct world *w)
{
  world_end(w);
  dns_engine_free(fake.engine);
  dns_memcat_free(fake.cat);
  uv_mutex_destroy(&fake.mu);
  for (int i = 0; i < FAKE_MAX; i++)
    assert_false(fake.h[i].live); /* every query answered or cancelled */
}

static int fake_count(const int *counter)
{
  uv_mutex_lock(&fake.mu);
  int v = *counter;
  uv_mutex_unlock(&fake.mu);
  return v;
}

/* The dc the fake's last start was given, read under its mutex. */
static const char *fake_dc(void)
{
  static char copy[DNS_DC_MAX];
  uv_mutex_lock(&fake.mu);
  snprintf(copy, sizeof copy, "%s", fake.dc);
  uv_mutex_unlock(&fake.mu);
  return copy;
}

/* Waits up to 3 s for *counter to reach want. */
static void fake_wait(const int *counter, int want)
{
  for (int i = 0; i < 300 && fake_count(counter) < want; i++)
    usleep(10000);
  assert_int_equal(fake_count(counter), want);
}

/* Releases the held query that started as number `nth` (0-based, in start order). */
static void fake_release(int nth)
{
  uv_mutex_lock(&fake.mu);
  fake.h[nth].release = true;
  uv_mutex_unlock(&fake.mu);
  uv_async_send(&fake.async);
}

static bool readable(int fd, int ms)
{
  struct pollfd pf = {.fd = fd, .events = POLLIN};
  return poll(&pf, 1, ms) == 1;
}

static void test_upstream_answers(void **state)
{
  (void)state;
  enum fake_mode modes[] = {FAKE_NOW, FAKE_LATER};
  for (size_t m = 0; m < 2; m++) {
    struct world *w = up_world(modes[m], 0, 0, false);
    ldns_pkt *p = udp_ask(w->a.port, 7, "web.service.consul", LDNS_RR_TYPE_A);
    assert_non_null(p);
    assert_true(has_answer(p, "10.7.7.7"));
    assert_false(ldns_pkt_ra(p));
    ldns_pkt_free(p);
    assert_string_equal(fake_dc(), "-"); /* the catalog upstream gets no datacenter */
    /* Reverse names go upstream too. */
    p = udp_ask(w->a.port, 8, "7.7.7.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
    assert_true(has_answer(p, "node1.node.dc1.consul."));
    ldns_pkt_free(p);
    /* Names outside the domain do not: no recursors, REFUSED here. */
    p = udp_ask(w->a.port, 9, "www.example.com", LDNS_RR_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
    ldns_pkt_free(p);
    assert_int_equal(fake_count(&fake.started), 2);

    /* TCP, pipelined: upstream, local, upstream -- answered in order. */
    int fd = tcp_connect(w->a.port);
    uint8_t buf[1024];
    size_t n = frame(buf, 1, "web.service.consul", LDNS_RR_TYPE_A);
    n += frame(buf + n, 2, "www.example.com", LDNS_RR_TYPE_A);
    n += frame(buf + n, 3, "node1.node.consul", LDNS_RR_TYPE_A);
    assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
    for (int id = 1; id <= 3; id++) {
      p = tcp_read(fd, NULL);
      assert_non_null(p);
      assert_int_equal(ldns_pkt_id(p), id);
      if (id != 2)
        assert_true(has_answer(p, "10.7.7.7"));
      ldns_pkt_free(p);
    }
    /* The full 500-instance answer over TCP; over UDP the server engine truncated it. */
    size_t len = 0;
    n = frame(buf, 4, "huge.service.consul", LDNS_RR_TYPE_A);
    assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
    p = tcp_read(fd, &len);
    assert_int_equal(ldns_pkt_ancount(p), 500);
    ldns_pkt_free(p);
    close(fd);
    p = udp_ask(w->a.port, 10, "huge.service.consul", LDNS_RR_TYPE_A);
    assert_int_equal(ldns_pkt_ancount(p), 3);
    ldns_pkt_free(p);
    up_world_end(w);
  }
}

static void test_upstream_tcp_order(void **state)
{
  (void)state;
  struct world *w = up_world(FAKE_HOLD, 0, 0, false);
  int c1 = tcp_connect(w->a.port), c2 = tcp_connect(w->a.port);
  uint8_t buf[1024];
  size_t n = frame(buf, 1, "web.service.consul", LDNS_RR_TYPE_A);
  n += frame(buf + n, 2, "node1.node.consul", LDNS_RR_TYPE_A);
  n += frame(buf + n, 3, "www.example.com", LDNS_RR_TYPE_A);
  assert_int_equal(send(c1, buf, n, 0), (ssize_t)n);
  fake_wait(&fake.started, 1); /* only the first: the connection waits for it */
  n = frame(buf, 4, "web.service.consul", LDNS_RR_TYPE_SRV);
  assert_int_equal(send(c2, buf, n, 0), (ssize_t)n);
  fake_wait(&fake.started, 2);

  /* The later query (c2's) completes first: c2 hears, c1 does not. */
  fake_release(1);
  ldns_pkt *p = tcp_read(c2, NULL);
  assert_int_equal(ldns_pkt_id(p), 4);
  assert_int_equal(ldns_pkt_ancount(p), 1);
  ldns_pkt_free(p);
  assert_false(readable(c1, 100));
  assert_int_equal(fake_count(&fake.started), 2);

  fake_release(0);
  p = tcp_read(c1, NULL);
  assert_int_equal(ldns_pkt_id(p), 1);
  ldns_pkt_free(p);
  fake_wait(&fake.started, 3); /* now the second */
  assert_false(readable(c1, 50));
  fake_release(2);
  p = tcp_read(c1, NULL);
  assert_int_equal(ldns_pkt_id(p), 2);
  assert_true(has_answer(p, "10.7.7.7"));
  ldns_pkt_free(p);
  p = tcp_read(c1, NULL); /* and the local one behind it */
  assert_int_equal(ldns_pkt_id(p), 3);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
  ldns_pkt_free(p);
  close(c1);
  close(c2);
  assert_int_equal(fake_count(&fake.cancelled), 0);
  up_world_end(w);
}

static void test_upstream_cancel(void **state)
{
  (void)state;
  struct world *w = up_world(FAKE_HOLD, 0, 0, false);
  /* The TCP client leaves (a reset) while its query is upstream: cancel. */
  int fd = tcp_connect(w->a.port);
  uint8_t buf[512];
  size_t n = frame(buf, 1, "web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
  fake_wait(&fake.started, 1);
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
  fake_wait(&fake.cancelled, 1);
  /* One that only half-closes still gets both its answers, then the connection closes. */
  fd = tcp_connect(w->a.port);
  n = frame(buf, 7, "web.service.consul", LDNS_RR_TYPE_A);
  n += frame(buf + n, 8, "www.example.com", LDNS_RR_TYPE_A);
  assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
  shutdown(fd, SHUT_WR);
  fake_wait(&fake.started, 2);
  usleep(50000);
  fake_release(1);
  ldns_pkt *p = tcp_read(fd, NULL);
  assert_int_equal(ldns_pkt_id(p), 7);
  assert_true(has_answer(p, "10.7.7.7"));
  ldns_pkt_free(p);
  p = tcp_read(fd, NULL);
  assert_int_equal(ldns_pkt_id(p), 8);
  ldns_pkt_free(p);
  assert_null(tcp_read(fd, NULL));
  close(fd);
  assert_int_equal(fake_count(&fake.cancelled), 1);
  /* A UDP query and a TCP one outstanding when the server closes: both cancelled. */
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = loopback(w->a.port);
  n = mkq(buf, 2, "web.service.consul", LDNS_RR_TYPE_A);
  sendto(u, buf, n, 0, (struct sockaddr *)&a, sizeof a);
  fd = tcp_connect(w->a.port);
  n = frame(buf, 3, "web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
  fake_wait(&fake.started, 4);
  world_end(w);
  assert_int_equal(fake.cancelled, 3);
  assert_int_equal(fake.answered, 1);
  dns_engine_free(fake.engine);
  dns_memcat_free(fake.cat);
  uv_mutex_destroy(&fake.mu);
  close(u);
  close(fd);
}

static void test_upstream_timeout_and_cap(void **state)
{
  (void)state;
  struct world *w = up_world(FAKE_HOLD, 200, 2, false);
  /* Two held queries fill the cap; a third gets SERVFAIL at once. */
  int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = loopback(w->a.port);
  uint8_t buf[512];
  size_t n = mkq(buf, 1, "web.service.consul", LDNS_RR_TYPE_A);
  sendto(u1, buf, n, 0, (struct sockaddr *)&a, sizeof a);
  n = mkq(buf, 2, "web.service.consul", LDNS_RR_TYPE_A);
  sendto(u2, buf, n, 0, (struct sockaddr *)&a, sizeof a);
  fake_wait(&fake.started, 2);
  ldns_pkt *p = udp_ask(w->a.port, 3, "web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
  ldns_pkt_free(p);
  assert_int_equal(fake_count(&fake.started), 2);
  /* The held ones time out after 200 ms: SERVFAIL, and the upstream is told. */
  set_timeout(u1, 3000);
  ssize_t got = recv(u1, buf, sizeof buf, 0);
  assert_true(got >= 12);
  assert_int_equal(buf[0] << 8 | buf[1], 1);
  assert_int_equal(buf[3] & 0x0F, LDNS_RCODE_SERVFAIL);
  fake_wait(&fake.cancelled, 2);
  /* Room again: a query answered in time. */
  n = mkq(buf, 4, "web.service.consul", LDNS_RR_TYPE_A);
  sendto(u1, buf, n, 0, (struct sockaddr *)&a, sizeof a);
  fake_wait(&fake.started, 3);
  fake_release(2);
  got = recv(u1, buf, sizeof buf, 0);
  assert_true(got >= 12);
  assert_int_equal(buf[0] << 8 | buf[1], 4);
  assert_int_equal(buf[3] & 0x0F, LDNS_RCODE_NOERROR);
  assert_int_equal(buf[7], 1); /* one answer */
  close(u1);
  close(u2);
  up_world_end(w);
}

static void test_upstream_bad_replies(void **state)
{
  (void)state;
  /* Another ID and RA from upstream: the client's ID, and RA as this agent (no recursors). */
  struct world *w = up_world(FAKE_WRONG_ID, 0, 0, false);
  ldns_pkt *p = udp_ask(w->a.port, 0x1234, "web.service.consul", LDNS_RR_TYPE_A);
  assert_non_null(p); /* udp_ask checks the ID */
  assert_true(has_answer(p, "10.7.7.7"));
  assert_false(ldns_pkt_ra(p));
  ldns_pkt_free(p);
  int fd = tcp_connect(w->a.port);
  uint8_t buf[512];
  size_t n = frame(buf, 0x4321, "web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
  p = tcp_read(fd, NULL);
  assert_int_equal(ldns_pkt_id(p), 0x4321);
  ldns_pkt_free(p);
  close(fd);
  up_world_end(w);

  /* A reply too big for this UDP client: empty with TC, so it retries over TCP. */
  w = up_world(FAKE_HUGE, 0, 0, false);
  p = udp_ask(w->a.port, 5, "huge.service.consul", LDNS_RR_TYPE_A);
  assert_true(ldns_pkt_tc(p));
  assert_int_equal(ldns_pkt_ancount(p), 0);
  assert_int_equal(ldns_pkt_qdcount(p), 1);
  ldns_pkt_free(p);
  up_world_end(w);

  /* Not a response, or start failing: SERVFAIL. */
  enum fake_mode modes[] = {FAKE_GARBAGE, FAKE_FAIL};
  for (size_t m = 0; m < 2; m++) {
    w = up_world(modes[m], 0, 0, false);
    p = udp_ask(w->a.port, 6, "web.service.consul", LDNS_RR_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
    ldns_pkt_free(p);
    up_world_end(w);
  }
}

static void test_upstream_reverse_recursors(void **state)
{
  (void)state;
  /* The server does not know 10.9.9.9: NXDOMAIN upstream, so the recursor (b) is asked. */
  struct world *w = up_world(FAKE_LATER, 0, 0, true);
  ldns_pkt *p = udp_ask(w->a.port, 1, "9.9.9.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
  assert_true(has_answer(p, "other.node.dc1.consul.")); /* relayed as the recursor said */
  ldns_pkt_free(p);
  /* What the server knows is answered by it. */
  int fd = tcp_connect(w->a.port);
  uint8_t buf[512];
  size_t n = frame(buf, 2, "7.7.7.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
  assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
  p = tcp_read(fd, NULL);
  assert_int_equal(ldns_pkt_id(p), 2);
  assert_true(has_answer(p, "node1.node.dc1.consul."));
  assert_true(ldns_pkt_ra(p));
  ldns_pkt_free(p);
  close(fd);
  assert_int_equal(fake_count(&fake.started), 2);
  up_world_end(w);
}

/* ---- The dc upstream (servers: names of other datacenters) ---- */


static void test_dc_upstream_routing(void **state)
{
  (void)state;
  enum fake_mode modes[] = {FAKE_NOW, FAKE_LATER};
  up_kind = UP_DC;
  for (size_t m = 0; m < 2; m++) {
    struct world *w = up_world(modes[m], 0, 0, false);
    /* Another datacenter a knows: its server answers (10.7.7.7 is dc2's node1), told which. */
    ldns_pkt *p = udp_ask(w->a.port, 1, "web.service.dc2.consul", LDNS_RR_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_true(has_answer(p, "10.7.7.7"));
    ldns_pkt_free(p);
    assert_int_equal(fake_count(&fake.started), 1);
    assert_string_equal(fake_dc(), "dc2");
    /* Every form that needs a catalog, the <dc>.dc spelling and any case. */
    const char *remote[] = {"node1.node.dc2.consul", "_web._tcp.service.dc2.consul",
                            "web.service.DC2.dc.consul", "myq.query.dc2.consul",
                            "v1.web.service.dc3.consul"};
    for (size_t i = 0; i < sizeof remote / sizeof *remote; i++) {
      p = udp_ask(w->a.port, (uint16_t)(10 + i), remote[i], LDNS_RR_TYPE_SRV);
      assert_non_null(p);
      ldns_pkt_free(p);
      assert_int_equal(fake_count(&fake.started), (int)(2 + i));
      assert_string_equal(fake_dc(), i == 4 ? "dc3" : "dc2");
    }
    /* Local: no datacenter, our own, .addr of another one, SOA/NS, reverse names. */
    int before = fake_count(&fake.started);
    p = udp_ask(w->a.port, 20, "web.service.consul", LDNS_RR_TYPE_A);
    assert_true(has_answer(p, "10.0.0.1"));
    ldns_pkt_free(p);
    p = udp_ask(w->a.port, 21, "web.service.dc1.consul", LDNS_RR_TYPE_A);
    assert_true(has_answer(p, "10.0.0.1"));
    ldns_pkt_free(p);
    p = udp_ask(w->a.port, 22, "0a000009.addr.dc2.consul", LDNS_RR_TYPE_A);
    assert_true(has_answer(p, "10.0.0.9"));
    ldns_pkt_free(p);
    p = udp_ask(w->a.port, 23, "web.service.dc2.consul", LDNS_RR_TYPE_SOA);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);
    p = udp_ask(w->a.port, 24, "1.0.0.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
    assert_true(has_answer(p, "node1.node.dc1.consul."));
    ldns_pkt_free(p);
    /* A datacenter nobody knows: NXDOMAIN with the SOA, here. */
    p = udp_ask(w->a.port, 25, "web.service.nowhere.consul", LDNS_RR_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    assert_int_equal(ldns_pkt_nscount(p), 1);
    ldns_pkt_free(p);
    assert_int_equal(fake_count(&fake.started), before);

    /* TCP, pipelined: remote, local, remote -- in order. */
    int fd = tcp_connect(w->a.port);
    uint8_t buf[1024];
    size_t n = frame(buf, 1, "web.service.dc2.consul", LDNS_RR_TYPE_A);
    n += frame(buf + n, 2, "web.service.consul", LDNS_RR_TYPE_A);
    n += frame(buf + n, 3, "huge.service.dc2.consul", LDNS_RR_TYPE_A);
    assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
    for (int id = 1; id <= 3; id++) {
      p = tcp_read(fd, NULL);
      assert_non_null(p);
      assert_int_equal(ldns_pkt_id(p), id);
      if (id == 1)
        assert_true(has_answer(p, "10.7.7.7"));
      else if (id == 2)
        assert_true(has_answer(p, "10.0.0.1"));
      else
        assert_int_equal(ldns_pkt_ancount(p), 500); /* the fake's 500 over TCP */
      ldns_pkt_free(p);
    }
    close(fd);
    assert_int_equal(fake_count(&fake.started), before + 2);
    assert_int_equal(fake_count(&fake.cancelled), 0);
    up_world_end(w);
  }
  up_kind = UP_CATALOG;
}

static void test_dc_upstream_failures(void **state)
{
  (void)state;
  /* The dc upstream failing to start, or never answering (timeout): SERVFAIL. */
  up_kind = UP_DC;
  struct world *w = up_world(FAKE_FAIL, 0, 0, false);
  ldns_pkt *p = udp_ask(w->a.port, 1, "web.service.dc2.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
  ldns_pkt_free(p);
  up_world_end(w);
  w = up_world(FAKE_HOLD, 150, 0, false);
  p = udp_ask(w->a.port, 2, "node1.node.dc2.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
  ldns_pkt_free(p);
  fake_wait(&fake.cancelled, 1);
  up_world_end(w);
  /* Datacenters known but no dc upstream: SERVFAIL over UDP and TCP, the rest still works. */
  up_kind = UP_NONE_DC;
  w = up_world(FAKE_NOW, 0, 0, false);
  p = udp_ask(w->a.port, 3, "web.service.dc2.consul", LDNS_RR_TYPE_A);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
  ldns_pkt_free(p);
  int fd = tcp_connect(w->a.port);
  uint8_t buf[512];
  size_t n = frame(buf, 4, "web.service.dc2.consul", LDNS_RR_TYPE_A);
  n += frame(buf + n, 5, "web.service.consul", LDNS_RR_TYPE_A);
  assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
  p = tcp_read(fd, NULL);
  assert_int_equal(ldns_pkt_id(p), 4);
  assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
  ldns_pkt_free(p);
  p = tcp_read(fd, NULL);
  assert_int_equal(ldns_pkt_id(p), 5);
  assert_true(has_answer(p, "10.0.0.1"));
  ldns_pkt_free(p);
  close(fd);
  assert_int_equal(fake_count(&fake.started), 0);
  up_world_end(w);
  up_kind = UP_CATALOG;
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_udp_and_tcp),
      cmocka_unit_test(test_forwarding),
      cmocka_unit_test(test_all_recursors_dead),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_parse_recursor),
      cmocka_unit_test(test_upstream_answers),
      cmocka_unit_test(test_upstream_tcp_order),
      cmocka_unit_test(test_upstream_cancel),
      cmocka_unit_test(test_upstream_timeout_and_cap),
      cmocka_unit_test(test_upstream_bad_replies),
      cmocka_unit_test(test_upstream_reverse_recursors),
      cmocka_unit_test(test_dc_upstream_routing),
      cmocka_unit_test(test_dc_upstream_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
