/* test_dns_server.c -- dns/server.c over real loopback sockets: UDP, TCP framing (pipelined
 * and byte-by-byte), 64 KiB TCP answers, forwarding to recursors (a second server as the
 * upstream, a dead one, one that refuses), the connection limit, the idle timeout, and a
 * clean close with work in flight. The loop runs in a thread; the test is the client. */
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

static void srv_start(struct world *w, struct srv *sv, const char *domain,
                      const char *const *recursors, size_t n, const struct dns_server_config *sc)
{
  char err[256];
  sv->m = dns_memcat_new("dc1");
  assert_int_equal(dns_memcat_load_json(sv->m, catalog, strlen(catalog), err, sizeof err), 0);
  for (int i = 0; i < 5000; i++) {
    char name[16], addr[32];
    snprintf(name, sizeof name, "h%d", i);
    snprintf(addr, sizeof addr, "10.3.%d.%d", i / 250, i % 250 + 1);
    struct dns_node node = {.name = name, .address = addr};
    dns_memcat_add_node(sv->m, &node);
    struct dns_memcat_service svc = {.node = name, .name = "huge", .port = 1};
    dns_memcat_add_service(sv->m, &svc);
  }
  struct dns_config cfg;
  dns_config_defaults(&cfg);
  strcpy(cfg.domain, domain);
  for (size_t i = 0; i < n; i++)
    strcpy(cfg.recursors[i], recursors[i]);
  cfg.n_recursors = n;
  cfg.recursor_timeout_ms = 300;
  struct dns_backend be;
  dns_memcat_backend(sv->m, &be);
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

static void on_stop(uv_async_t *a)
{
  struct world *w = a->data;
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

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_udp_and_tcp),
      cmocka_unit_test(test_forwarding),
      cmocka_unit_test(test_all_recursors_dead),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_parse_recursor),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
