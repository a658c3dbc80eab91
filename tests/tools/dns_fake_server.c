/* dns_fake_server.c -- Concord's DNS server over a fixed catalog read from a JSON file, so
 * that tests can use dig against the real engine and listeners before the agent serves DNS
 * from its state store. tests/integration/test_dns_tool.py drives it; docs/dns.md describes
 * the catalog format.
 *
 *   dns_fake_server -catalog FILE [-addr 127.0.0.1] [-port 0] [-domain consul.]
 *       [-alt-domain D] [-recursor ADDR]... [-recursor-timeout MS] [-udp-answer-limit N]
 *       [-a-record-limit N] [-node-ttl S] [-service-ttl NAME=S]... [-only-passing]
 *       [-enable-truncate] [-no-node-meta-txt] [-translate-wan-addrs]
 *       [-tcp-idle-timeout MS] [-max-tcp-connections N]
 *
 * Prints "listening on ADDR:PORT" on stdout once it serves (port 0 picks a free one) and runs
 * until SIGINT or SIGTERM, then closes everything and exits 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "dns/dns.h"
#include "dns/memcat.h"
#include "dns/server.h"
#include "lib/log.h"

static struct dns_server *server;
static uv_signal_t sigint, sigterm;

static void usage(const char *msg)
{
  fprintf(stderr, "dns_fake_server: %s\n", msg);
  exit(2);
}

static char *read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  for (size_t r; (r = fread(buf + n, 1, cap - n, f)) > 0;) {
    n += r;
    if (n == cap && cap < (64u << 20))
      buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  *len = n;
  return buf;
}

static void on_closed(void *arg)
{
  (void)arg;
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
  (void)h;
  (void)signum;
  if (server) {
    dns_server_close(server, on_closed, NULL);
    server = NULL;
  }
}

int main(int argc, char **argv)
{
  const char *catalog = NULL, *addr = "127.0.0.1";
  int port = 0;
  struct dns_config cfg;
  struct dns_server_config sc;
  dns_config_defaults(&cfg);
  dns_server_config_defaults(&sc);
  signal(SIGPIPE, SIG_IGN);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && (v || (usage("missing value"), 0)) && ++i)
    if (ARG("-catalog"))
      catalog = v;
    else if (ARG("-addr"))
      addr = v;
    else if (ARG("-port"))
      port = atoi(v);
    else if (ARG("-domain"))
      snprintf(cfg.domain, sizeof cfg.domain, "%s", v);
    else if (ARG("-alt-domain"))
      snprintf(cfg.alt_domain, sizeof cfg.alt_domain, "%s", v);
    else if (ARG("-recursor")) {
      if (cfg.n_recursors == DNS_MAX_RECURSORS)
        usage("too many recursors");
      snprintf(cfg.recursors[cfg.n_recursors++], sizeof cfg.recursors[0], "%s", v);
    } else if (ARG("-recursor-timeout"))
      cfg.recursor_timeout_ms = (unsigned)atoi(v);
    else if (ARG("-udp-answer-limit"))
      cfg.udp_answer_limit = (unsigned)atoi(v);
    else if (ARG("-a-record-limit"))
      cfg.a_record_limit = (unsigned)atoi(v);
    else if (ARG("-node-ttl"))
      cfg.node_ttl = (uint32_t)atoi(v);
    else if (ARG("-service-ttl")) {
      const char *eq = strchr(v, '=');
      if (!eq || cfg.n_service_ttl == DNS_MAX_SERVICE_TTLS)
        usage("-service-ttl takes NAME=SECONDS");
      struct dns_service_ttl *t = &cfg.service_ttl[cfg.n_service_ttl++];
      snprintf(t->name, sizeof t->name, "%.*s", (int)(eq - v), v);
      t->ttl = (uint32_t)atoi(eq + 1);
    } else if (ARG("-tcp-idle-timeout"))
      sc.tcp_idle_timeout_ms = (unsigned)atoi(v);
    else if (ARG("-max-tcp-connections"))
      sc.max_tcp_connections = (unsigned)atoi(v);
    else if (strcmp(a, "-only-passing") == 0)
      cfg.only_passing = true;
    else if (strcmp(a, "-enable-truncate") == 0)
      cfg.enable_truncate = true;
    else if (strcmp(a, "-no-node-meta-txt") == 0)
      cfg.node_meta_txt = false;
    else if (strcmp(a, "-translate-wan-addrs") == 0)
      cfg.translate_wan_addrs = true;
    else
      usage("unknown flag (see the comment at the top of dns_fake_server.c)");
#undef ARG
  }
  if (!catalog)
    usage("-catalog FILE is required");

  char err[512];
  size_t len;
  char *text = read_file(catalog, &len);
  if (!text)
    usage("cannot read the catalog file");
  struct dns_memcat *m = dns_memcat_new("dc1");
  if (dns_memcat_load_json(m, text, len, err, sizeof err) != 0)
    usage(err);
  free(text);

  uv_loop_t loop;
  uv_loop_init(&loop);
  struct dns_backend be;
  dns_memcat_backend(m, &be);
  struct dns_engine *e = dns_engine_new(&cfg, &be, err, sizeof err);
  if (!e)
    usage(err);
  server = dns_server_new(&loop, e, &sc, err, sizeof err);
  if (!server)
    usage(err);
  if (dns_server_listen(server, addr, port, err, sizeof err) != 0)
    usage(err);
  uv_signal_init(&loop, &sigint);
  uv_signal_init(&loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  printf("listening on %s:%d\n", addr, dns_server_port(server));
  fflush(stdout);

  uv_run(&loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&loop) == 0 ? 0 : 1;
  dns_engine_free(e);
  dns_memcat_free(m);
  return rc;
}
