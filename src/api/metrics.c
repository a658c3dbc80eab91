/* metrics.c -- GET /v1/agent/metrics: the agent's telemetry in Consul's JSON shape, or as
 * Prometheus text with ?format=prometheus (Consul's AgentMetrics).
 *
 * Values are gathered when asked: gauges straight from their owners (process, Raft, gossip,
 * state store), counters from plain integers the modules bump (lib/metrics.h), and HTTP
 * request timings from the server's observer hook into a small table kept here. Counters
 * and samples are cumulative since the agent started (Consul's in-memory sink shows the
 * current 10 s interval only; Prometheus wants cumulative values anyway). */
#include <dirent.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api/internal.h"
#include "gossip/gossip.h"
#include "lib/alloc.h"
#include "lib/metrics.h"
#include "local/local.h"
#include "state/catalog.h"
#include "state/session.h"

/* Distinct (method, route) pairs timed; requests beyond it share one "other" row. */
#define METRICS_HTTP_MAX 256

struct metrics_http_row {
  enum http_method method;
  const char *route; /* the server's route path (lives as long as the server), NULL: none */
  struct metrics_summary ms;
};

struct api_metrics {
  struct metrics_http_row rows[METRICS_HTTP_MAX];
  size_t n;
  time_t started; /* wall clock at registration, for process_start_time_seconds */
};

static struct api_metrics *api_metrics_of(struct api_ctx *ctx) { return ctx->metrics; }

static void metrics_observe(void *arg, enum http_method method, const char *route, int status,
                            uint64_t elapsed_ns)
{
  (void)status;
  struct api_metrics *am = arg;
  size_t i = 0;
  while (i < am->n && !(am->rows[i].method == method && am->rows[i].route == route)) i++;
  if (i == am->n) {
    if (am->n == METRICS_HTTP_MAX) i = METRICS_HTTP_MAX - 1; /* the last row takes the rest */
    else {
      am->rows[i].method = method;
      am->rows[i].route = route;
      am->n++;
    }
  }
  metrics_summary_add(&am->rows[i].ms, (double)elapsed_ns / 1e6); /* milliseconds, as Consul */
}

static const char *metrics_method_name(enum http_method m)
{
  switch (m) {
  case HTTP_M_GET: return "GET";
  case HTTP_M_HEAD: return "HEAD";
  case HTTP_M_PUT: return "PUT";
  case HTTP_M_POST: return "POST";
  case HTTP_M_DELETE: return "DELETE";
  case HTTP_M_OPTIONS: return "OPTIONS";
  case HTTP_M_PATCH: return "PATCH";
  default: return "OTHER";
  }
}

/* Resident set and open descriptors from /proc (Linux). Returns -1 when unknown. */
static double metrics_rss_bytes(void)
{
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  unsigned long size = 0, rss = 0;
  int n = fscanf(f, "%lu %lu", &size, &rss);
  fclose(f);
  return n == 2 ? (double)rss * (double)sysconf(_SC_PAGESIZE) : -1;
}

static double metrics_open_fds(void)
{
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  double n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory stream's own descriptor */
}

static void metrics_gather(struct api_ctx *ctx, struct metrics_set *m)
{
  struct api_metrics *am = api_metrics_of(ctx);
  /* ---- runtime ---- */
  struct mallinfo2 mi = mallinfo2();
  metrics_gauge(m, "consul.runtime.alloc_bytes", NULL, 0, (double)(mi.uordblks + mi.hblkhd));
  metrics_gauge(m, "consul.runtime.sys_bytes", NULL, 0, (double)(mi.arena + mi.hblkhd));
  metrics_gauge(m, "consul.runtime.heap_objects", NULL, 0, (double)mi.ordblks);
  double uptime = (double)(uv_now(ctx->loop) - ctx->start_time_ms) / 1000.0;
  metrics_gauge(m, "consul.runtime.uptime_seconds", NULL, 0, uptime);
  double rss = metrics_rss_bytes(), fds = metrics_open_fds();
  if (rss >= 0) metrics_gauge(m, "process.resident_memory_bytes", NULL, 0, rss);
  if (fds >= 0) metrics_gauge(m, "process.open_fds", NULL, 0, fds);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    metrics_gauge(m, "process.max_fds", NULL, 0, (double)rl.rlim_cur);
  metrics_gauge(m, "process.start_time_seconds", NULL, 0, (double)am->started);

  /* ---- Raft (servers) ---- */
  struct consensus *c = ctx->consensus;
  if (c) {
    bool leader = consensus_is_leader(c);
    metrics_gauge(m, "consul.server.isLeader", NULL, 0, leader ? 1 : 0);
    struct metrics_label st = {"state", consensus_state_name(c)};
    metrics_gauge(m, "consul.raft.state", &st, 1, 1);
    metrics_gauge(m, "consul.raft.applied_index", NULL, 0, (double)consensus_applied_index(c));
    metrics_gauge(m, "consul.raft.commit_index", NULL, 0, (double)consensus_applied_index(c));
    metrics_gauge(m, "consul.raft.last_index", NULL, 0, (double)consensus_last_index(c));
    metrics_gauge(m, "consul.raft.term", NULL, 0, (double)consensus_term(c));
    metrics_gauge(m, "consul.raft.peers", NULL, 0, (double)consensus_peers(c, NULL, 0));
    double contact = leader ? 0
                     : consensus_leader_address(c) ? (double)consensus_last_contact_ms(c)
                                                    : -1;
    metrics_gauge(m, "consul.raft.leader.lastContact", NULL, 0, contact);
  }

  /* ---- serf / memberlist (LAN) ---- */
  if (ctx->gossip) {
    struct gossip_member *mem = NULL;
    size_t n = 0;
    double by_status[5] = {0}, servers = 0, clients = 0;
    if (gossip_members(ctx->gossip, &mem, &n) == 0) {
      for (size_t i = 0; i < n; i++) {
        if (mem[i].status <= GOSSIP_STATUS_FAILED) by_status[mem[i].status]++;
        if (mem[i].status != GOSSIP_STATUS_ALIVE) continue;
        const char *role = gossip_member_tag(&mem[i], "role");
        if (role && strcmp(role, "consul") == 0) servers++;
        else clients++;
      }
      gossip_members_free(mem, n);
    }
    static const char *const names[] = {"none", "alive", "leaving", "left", "failed"};
    for (int s = 1; s <= 4; s++) {
      struct metrics_label l = {"status", names[s]};
      metrics_gauge(m, "consul.serf.members", &l, 1, by_status[s]);
    }
    metrics_gauge(m, "consul.consul.members.servers", NULL, 0, servers);
    metrics_gauge(m, "consul.consul.members.clients", NULL, 0, clients);
    metrics_gauge(m, "consul.memberlist.health.score", NULL, 0,
                  (double)gossip_health_score(ctx->gossip));
  }

  /* ---- state store (servers) ---- */
  if (ctx->store) {
    metrics_gauge(m, "consul.state.nodes", NULL, 0, (double)state_node_count(ctx->store));
    metrics_gauge(m, "consul.state.service_instances", NULL, 0,
                  (double)state_service_count(ctx->store));
    metrics_gauge(m, "consul.state.checks", NULL, 0, (double)state_check_count(ctx->store));
    metrics_gauge(m, "consul.state.kv_entries", NULL, 0, (double)state_kv_count(ctx->store));
    metrics_gauge(m, "consul.state.sessions", NULL, 0, (double)state_session_count(ctx->store));
  }
  if (ctx->local) {
    struct local_stats ls = {0};
    local_agent_stats(ctx->local, &ls);
    metrics_gauge(m, "consul.agent.services", NULL, 0, (double)ls.services);
    metrics_gauge(m, "consul.agent.checks", NULL, 0, (double)ls.checks);
  }

  /* ---- counters ---- */
  metrics_counter(m, "consul.dns.queries", NULL, 0, metrics_g.dns_queries);
  metrics_counter(m, "consul.rpc.request", NULL, 0, metrics_g.rpc_requests);
  metrics_counter(m, "consul.client.rpc", NULL, 0, metrics_g.rpc_client_requests);
  struct http_server_stats hs;
  http_server_stats(ctx->http, &hs);
  metrics_counter(m, "consul.http.requests", NULL, 0, hs.requests_total);
  metrics_gauge(m, "consul.http.connections", NULL, 0, (double)hs.connections_open);

  /* ---- HTTP timings, labelled as Consul's: path "v1_kv_" for the route /v1/kv/ ---- */
  for (size_t i = 0; i < am->n; i++) {
    char path[128];
    const char *r = am->rows[i].route ? am->rows[i].route : "/unknown";
    if (*r == '/') r++;
    snprintf(path, sizeof path, "%s", r);
    for (char *p = path; *p; p++)
      if (*p == '/') *p = '_';
    struct metrics_label l[2] = {{"method", metrics_method_name(am->rows[i].method)},
                                 {"path", path}};
    metrics_sample(m, "consul.api.http", l, 2, &am->rows[i].ms);
  }
}

static void agent_metrics(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  struct metrics_set m = METRICS_SET_INIT;
  metrics_gather(ctx, &m);
  const char *format = http_query(req, "format");
  if (format && strcmp(format, "prometheus") == 0) {
    struct buf out = BUF_INIT;
    metrics_prometheus(&m, &out);
    metrics_set_free(&m);
    http_respond_buf(req, 200, METRICS_PROMETHEUS_CONTENT_TYPE, &out);
    return;
  }
  double elapsed = (double)(uv_now(ctx->loop) - ctx->start_time_ms) / 1000.0;
  json_t *j = metrics_json(&m, time(NULL), elapsed > 0 ? elapsed : 1);
  metrics_set_free(&m);
  http_respond_json(req, 200, j);
}

void api_metrics_register(struct api_ctx *ctx)
{
  struct api_metrics *am = xcalloc(1, sizeof *am);
  am->started = time(NULL) - (time_t)((uv_now(ctx->loop) - ctx->start_time_ms) / 1000);
  ctx->metrics = am;
  http_server_set_observer(ctx->http, metrics_observe, am);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/agent/metrics", agent_metrics, ctx);
}

void api_metrics_shutdown(struct api_ctx *ctx)
{
  /* runs once the HTTP server is gone (agent.c), so its observer can no longer fire */
  if (!ctx->metrics) return;
  free(ctx->metrics);
  ctx->metrics = NULL;
}
