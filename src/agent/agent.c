/* agent.c -- the life of `concord agent`: configuration, data directory and node ID, the state
 * store and Raft on servers, the HTTP API, signals, and an orderly shutdown in which every
 * handle is closed before the loop is (so a leak shows up as a failing uv_loop_close).
 *
 * Shutdown order matters: the HTTP server closes first (cancelling parked blocking queries and
 * dropping clients), then the API's blocking engine, then Raft (whose pending applies complete
 * with CC_ESHUTDOWN), then the loop. */
#define _XOPEN_SOURCE 700
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "agent/dns_catalog.h"
#include "agent/events.h"
#include "agent/exec.h"
#include "agent/dns_remote.h"
#include "agent/dns_rpc.h"
#include "agent/forward.h"
#include "agent/query_remote.h"
#include "agent/wan.h"
#include "agent/servers.h"
#include "agent/session_ttl.h"
#include "agent/watches.h"
#include "agent/tombstone_gc.h"
#include "api/api.h"
#include "archive/archive.h"
#include "config/config.h"
#include "consensus/consensus.h"
#include "dns/dns.h"
#include "gossip/gossip.h"
#include "dns/server.h"
#include "http/server.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/duration.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/rand.h"
#include "local/local.h"
#include "rpc/rpc.h"
#include "state/catalog.h"
#include "state/cmd.h"
#include "state/store.h"
#include "version.h"

struct agent {
  uv_loop_t loop;
  struct config cfg;
  char *dev_dir; /* -dev: a temporary data dir, removed at exit */
  char node_id[37];
  char advertise[64];
  struct state_store *store;
  struct consensus *consensus;
  struct http_server *http;
  struct api_ctx api;
  struct local_agent *local; /* this agent's services and checks */
  struct dns_catalog dns_catalog;
  struct dns_engine *dns_engine;
  struct dns_server *dns;
  struct dns_remote_client *dns_remote; /* questions a server answers: a client's, or a
                                         * server's for other datacenters */
  struct dns_rpc *dns_rpc;              /* their transport, and servers' DNS.Query */
  struct gossip *gossip;
  struct wan *wan;          /* servers: the WAN pool and its datacenters (agent/wan.c) */
  struct query_remote *query_remote; /* prepared query failover between datacenters */
  struct rpc *rpc;          /* the server port (servers) and the client pool (everyone) */
  struct servers *servers;  /* the servers gossip knows; bootstrap and Raft membership */
  struct forward *forward;  /* requests that a server or the leader must serve */
  uv_timer_t retry_join_timer;
  unsigned retry_join_attempts;
  uv_signal_t sig_int, sig_term, sig_hup;
  uv_timer_t leader_timer; /* leader duties: tombstone reaping */
  struct tombstone_gc tombstone_gc;
  struct session_ttl session_ttl; /* leader: destroys sessions not renewed in TTL*2 */
  bool session_ttl_started;
  struct agent_events events; /* user events kept for /v1/event/list (agent/events.c) */
  struct agent_exec *exec;    /* `consul exec` jobs run here (agent/exec.c) */
  struct agent_watches *watches; /* "watches" from the config (agent/watches.c) */
  bool stopping;
  int exit_code;
};

static int agent_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void agent_rm_tree(const char *dir)
{
  nftw(dir, agent_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Creates dir and its parents with mode 0700 (Consul keeps its data dir private). */
static int agent_mkdir_p(const char *dir)
{
  char *path = xstrdup(dir);
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
      free(path);
      return -1;
    }
    *p = '/';
  }
  int rv = mkdir(path, 0700) != 0 && errno != EEXIST ? -1 : 0;
  free(path);
  return rv;
}

/* The node ID persists in <data_dir>/node-id so a restarted agent is the same node. */
static int agent_load_node_id(struct agent *a, const char *data_dir)
{
  if (a->cfg.node_id[0]) {
    memcpy(a->node_id, a->cfg.node_id, 37); /* config validated it as a UUID */
    return 0;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/node-id", data_dir);
  FILE *f = fopen(path, "r");
  if (f) {
    char id[64] = "";
    if (fgets(id, sizeof id, f)) id[strcspn(id, "\r\n \t")] = '\0';
    fclose(f);
    if (!uuid_is_valid(id)) {
      log_error("agent", "node ID in %s is not a UUID: \"%s\"", path, id);
      return -1;
    }
    memcpy(a->node_id, id, 37); /* validated: exactly 36 characters and the NUL */
    return 0;
  }
  rand_uuid(a->node_id);
  f = fopen(path, "w");
  if (!f || fprintf(f, "%s", a->node_id) < 0 || fclose(f) != 0) {
    log_error("agent", "cannot write %s: %s", path, strerror(errno));
    return -1;
  }
  return 0;
}

/* The address other agents reach this one on: the bind address, or for 0.0.0.0 the first
 * non-loopback IPv4 address of the host (what Consul's default advertise picks). */
static void agent_pick_advertise(struct agent *a)
{
  if (strcmp(a->cfg.bind_addr, "0.0.0.0") != 0) {
    snprintf(a->advertise, sizeof a->advertise, "%s", a->cfg.bind_addr);
    return;
  }
  snprintf(a->advertise, sizeof a->advertise, "127.0.0.1");
  uv_interface_address_t *ifs;
  int n;
  if (uv_interface_addresses(&ifs, &n) != 0) return;
  for (int i = 0; i < n; i++) {
    if (ifs[i].is_internal || ifs[i].address.address4.sin_family != AF_INET) continue;
    uv_ip4_name(&ifs[i].address.address4, a->advertise, sizeof a->advertise);
    break;
  }
  uv_free_interface_addresses(ifs, n);
}

static void agent_banner(struct agent *a)
{
  struct config *c = &a->cfg;
  struct buf clients = BUF_INIT;
  for (char **p = c->client_addrs; *p; p++) buf_printf(&clients, "%s%s", p == c->client_addrs ? "" : " ", *p);
  fprintf(stderr,
          "==> Starting Concord agent...\n"
          "           Version: '%s' (Consul API %s)\n"
          "           Node ID: '%s'\n"
          "         Node name: '%s'\n"
          "        Datacenter: '%s' (Segment: '%s')\n"
          "            Server: %s (Bootstrap: %s)\n"
          "       Client Addr: [%s] (HTTP: %d, HTTPS: -1, gRPC: -1, DNS: %d)\n"
          "      Cluster Addr: %s (LAN: %d, WAN: %d)\n"
          "           Encrypt: Gossip: %s, TLS-Outgoing: false, TLS-Incoming: false\n\n"
          "==> Log data will now stream in as it occurs:\n\n",
          CONCORD_VERSION, CONCORD_CONSUL_VERSION, a->node_id, c->node_name, c->datacenter,
          c->server ? "<all>" : "", c->server ? "true" : "false",
          c->bootstrap_expect == 1 ? "true" : "false", clients.data, c->port_http, c->port_dns,
          a->advertise, c->port_serf_lan, c->port_serf_wan,
          c->encrypt_key && c->encrypt_key[0] ? "true" : "false");
  buf_free(&clients);
}

/* ---- shutdown ---- */

static void agent_close_walk(uv_handle_t *h, void *arg)
{
  (void)arg;
  if (!uv_is_closing(h)) {
    log_warn("agent", "closing a handle left open at shutdown (type %s)", uv_handle_type_name(h->type));
    uv_close(h, NULL);
  }
}

static void agent_rpc_stopped(void *arg)
{
  (void)arg;
  log_info("agent", "shutdown complete");
}

/* RPC goes last: Raft's transport runs over it. */
static void agent_stop_rpc(struct agent *a)
{
  if (a->forward) forward_free(a->forward);
  a->forward = NULL;
  if (a->servers) servers_free(a->servers);
  a->servers = NULL;
  if (a->rpc) {
    struct rpc *r = a->rpc;
    a->rpc = NULL;
    rpc_stop(r, agent_rpc_stopped, a);
  } else {
    agent_rpc_stopped(a);
  }
}

static void agent_consensus_stopped(void *arg)
{
  struct agent *a = arg;
  a->consensus = NULL;
  agent_stop_rpc(a);
}

static void agent_stop_consensus(struct agent *a)
{
  if (a->consensus) {
    consensus_set_leader_cb(a->consensus, NULL, NULL);
    consensus_stop(a->consensus, agent_consensus_stopped, a);
  } else {
    agent_stop_rpc(a);
  }
}

static void agent_gossip_stopped(void *arg)
{
  agent_stop_consensus(arg);
}

/* The WAN pool first (it feeds forwarding), then the LAN, then Raft and RPC. */
static void agent_stop_gossip(void *arg)
{
  struct agent *a = arg;
  if (a->wan) {
    struct wan *w = a->wan;
    a->wan = NULL;
    if (a->forward) forward_set_datacenters(a->forward, NULL);
    query_remote_free(a->query_remote); /* it picks from the WAN map */
    a->query_remote = NULL;
    wan_stop(w, agent_stop_gossip, a);
    return;
  }
  if (a->gossip) {
    struct gossip *g = a->gossip;
    a->gossip = NULL;
    gossip_stop(g, agent_gossip_stopped, a);
    return;
  }
  agent_stop_consensus(a);
}

static void agent_dns_closed(void *arg)
{
  struct agent *a = arg;
  a->dns = NULL;
  if (a->dns_remote) dns_remote_client_free(a->dns_remote);
  a->dns_remote = NULL;
  dns_rpc_free(a->dns_rpc); /* before the engine its DNS.Query handler answers with */
  a->dns_rpc = NULL;
  if (a->dns_engine) dns_engine_free(a->dns_engine);
  a->dns_engine = NULL;
  agent_stop_gossip(a);
}

static void agent_http_closed(void *arg)
{
  struct agent *a = arg;
  if (a->http) api_shutdown(&a->api);
  a->http = NULL;
  if (a->local) {
    local_agent_close(a->local, NULL, NULL); /* stops checks and syncs before Raft goes */
    a->local = NULL;
  }
  uv_close((uv_handle_t *)&a->sig_int, NULL);
  uv_close((uv_handle_t *)&a->sig_term, NULL);
  uv_close((uv_handle_t *)&a->sig_hup, NULL);
  uv_close((uv_handle_t *)&a->leader_timer, NULL);
  uv_close((uv_handle_t *)&a->retry_join_timer, NULL);
  if (a->exec) agent_exec_close(a->exec); /* kills jobs; before Raft stops */
  a->exec = NULL;
  if (a->session_ttl_started) session_ttl_stop(&a->session_ttl); /* before Raft stops */
  a->session_ttl_started = false;
  if (a->dns) dns_server_close(a->dns, agent_dns_closed, a);
  else agent_dns_closed(a);
}

static void agent_stop(struct agent *a)
{
  if (a->stopping) return;
  a->stopping = true;
  log_info("agent", "caught signal, shutting down");
  /* watches: stop before the HTTP API they query goes away */
  agent_watches_stop(a->watches);
  a->watches = NULL;
  if (a->http) http_server_close(a->http, agent_http_closed, a);
  else agent_http_closed(a);
}

/* Collects the services and checks of every config document config_load kept. */
static struct local_defs *agent_local_defs(const struct config *cfg, char *err, size_t errlen)
{
  struct local_defs *defs = local_defs_new();
  size_t i;
  json_t *entry;
  json_array_foreach(cfg->local_docs, i, entry) {
    const char *source = json_string_value(json_object_get(entry, "source"));
    if (local_defs_add_config(defs, json_object_get(entry, "doc"), source, err, errlen) != 0) {
      local_defs_free(defs);
      return NULL;
    }
  }
  return defs;
}

static void agent_reload(void *arg)
{
  struct agent *a = arg;
  /* What can change without a restart today is the log level; services and checks join this
   * with the service-discovery work. Anything invalid keeps the running configuration. */
  struct config fresh;
  char err[512];
  if (config_reload(&a->cfg, &fresh, err, sizeof err) != 0) {
    log_error("agent", "reload failed, keeping the running configuration: %s", err);
    config_free(&fresh);
    return;
  }
  enum log_level lvl;
  if (log_parse_level(fresh.log_level, &lvl) == 0 && lvl != log_get_level()) {
    log_set_level(lvl);
    free(a->cfg.log_level);
    a->cfg.log_level = xstrdup(fresh.log_level);
  }
  if (a->local) {
    /* Services and checks from the files as they are now; a bad definition keeps the
     * running set, as any invalid reload does. */
    struct local_defs *defs = agent_local_defs(&fresh, err, sizeof err);
    if (!defs || local_agent_load(a->local, defs, err, sizeof err) != 0)
      log_error("agent", "reload of services and checks failed, keeping the running set: %s", err);
    if (defs) local_defs_free(defs);
  }
  /* watches: a reload replaces the whole set, as Consul's reloadWatches does */
  if (a->watches && !a->stopping) agent_watches_reload(a->watches, fresh.watches);
  log_info("agent", "reloaded configuration (log level %s)", a->cfg.log_level);
  config_free(&fresh);
}

static void agent_on_signal(uv_signal_t *h, int signum)
{
  struct agent *a = h->data;
  if (signum == SIGHUP) {
    log_info("agent", "caught SIGHUP, reloading");
    agent_reload(a);
    return;
  }
  agent_stop(a);
}

/* ---- start ---- */

static int agent_start_server(struct agent *a, const char *data_dir)
{
  a->store = state_store_new();
  struct consensus_config cc;
  consensus_config_defaults(&cc);
  char addr[96];
  snprintf(addr, sizeof addr, "%s:%d", a->advertise, a->cfg.port_server);
  cc.data_dir = data_dir;
  cc.node_id = a->node_id;
  cc.address = addr;
  cc.bootstrap_expect = a->cfg.bootstrap_expect;
  cc.snapshot_threshold = a->cfg.raft_snapshot_threshold;
  cc.snapshot_trailing = a->cfg.raft_trailing_logs;
  /* Consul scales its Raft timers by raft_multiplier (1 = production, 5 = default). Our base
   * values are tuned for fast failover; the multiplier still applies. */
  cc.election_timeout_ms = cc.election_timeout_ms * a->cfg.raft_multiplier;
  cc.heartbeat_timeout_ms = cc.heartbeat_timeout_ms * a->cfg.raft_multiplier;
  if (a->rpc) {
    cc.transport_init = rpc_raft_transport_init;
    cc.transport_close = rpc_raft_transport_close;
    cc.transport_arg = a->rpc;
  }
  char err[512] = "";
  int rv = consensus_start(&a->loop, &cc, a->store, &a->consensus, err, sizeof err);
  if (rv != 0) {
    log_error("agent", "cannot start Raft: %s", err[0] ? err : "unknown error");
    return -1;
  }
  return 0;
}

static void agent_leave(void *arg);

/* The server port (Raft and RPC share it, as Consul's 8300) on servers; on clients only the
 * pool that dials servers. */
static int agent_start_rpc(struct agent *a)
{
  struct rpc_config rc;
  rpc_config_defaults(&rc);
  rc.bind_ip = a->cfg.bind_addr;
  rc.port = a->cfg.server ? a->cfg.port_server : -1;
  char err[256] = "";
  if (rpc_start(&a->loop, &rc, &a->rpc, err, sizeof err) != 0) {
    log_error("agent", "cannot listen on the server port %s:%d: %s", a->cfg.bind_addr,
              a->cfg.port_server, err);
    return -1;
  }
  if (rc.port >= 0)
    log_info("agent", "server RPC and Raft listening on %s:%d", a->cfg.bind_addr, rc.port);
  return 0;
}

/* The servers gossip shows us, and forwarding to them (a -dev server too: clients may join
 * it, as they may join Consul's). */
static void agent_start_cluster(struct agent *a)
{
  struct servers_config sc = {
      .datacenter = a->cfg.datacenter,
      .node_name = a->cfg.node_name,
      .bootstrap_expect = a->cfg.bootstrap_expect,
      .dead_server_cleanup_ms = 30000,
  };
  a->servers = servers_new(&a->loop, &sc, a->rpc, a->consensus);
  struct forward_config fc = {
      .rpc = a->rpc,
      .servers = a->servers,
      .consensus = a->consensus,
      .store = a->store,
      .node_name = a->cfg.node_name,
  };
  a->forward = forward_new(&a->loop, &fc);
}

/* The agent's own services and checks (src/local): from config files and persisted API
 * registrations, run here and synced into the catalog. */
/* How many agents gossip knows (for anti-entropy's interval scaling). */
static size_t agent_cluster_size(void *arg)
{
  struct agent *a = arg;
  size_t n = a->gossip ? gossip_member_count(a->gossip) : 1;
  return n ? n : 1;
}

static int agent_start_local(struct agent *a, const char *data_dir)
{
  char err[1024] = "";
  struct local_defs *defs = agent_local_defs(&a->cfg, err, sizeof err);
  if (!defs) {
    log_error("agent", "%s", err);
    return -1;
  }
  struct local_config lc;
  local_config_defaults(&lc);
  lc.node_name = a->cfg.node_name;
  lc.node_id = a->node_id;
  lc.datacenter = a->cfg.datacenter;
  lc.advertise_addr = a->advertise;
  lc.data_dir = a->cfg.dev ? NULL : data_dir;
  lc.enable_script_checks = a->cfg.enable_script_checks;
  lc.enable_local_script_checks = a->cfg.enable_local_script_checks;
  lc.check_update_interval_ms = (uint64_t)(a->cfg.check_update_interval_ns / 1000000LL);
  lc.cluster_size = agent_cluster_size;
  lc.cluster_size_arg = a;
  a->local = local_agent_new(&a->loop, &lc, a->store, a->consensus, err, sizeof err);
  if (a->local && a->forward) {
    struct local_remote remote;
    forward_local_remote(a->forward, &remote);
    local_agent_set_remote(a->local, &remote);
  }
  int rv = a->local && local_agent_load(a->local, defs, err, sizeof err) == 0 ? 0 : -1;
  if (rv != 0) log_error("agent", "cannot load services and checks: %s", err);
  local_defs_free(defs);
  return rv;
}

static int agent_start_http(struct agent *a)
{
  if (a->cfg.port_http < 0) return 0;
  struct http_server_config hc;
  http_server_config_defaults(&hc);
  uint64_t max_body = a->cfg.kv_max_value_size > a->cfg.txn_max_req_len ? a->cfg.kv_max_value_size
                                                                        : a->cfg.txn_max_req_len;
  hc.max_body_bytes = (size_t)max_body;
  hc.big_body_path = API_SNAPSHOT_PATH; /* a restore's archive */
  hc.big_body_bytes = API_SNAPSHOT_MAX_STATE + ARCHIVE_SLACK;
  hc.max_connections = a->cfg.http_max_conns;
  a->http = http_server_new(&a->loop, &hc);
  if (a->wan) /* servers answer other datacenters' prepared query failovers */
    a->query_remote = query_remote_new(a->rpc, wan_datacenters(a->wan), &a->api);
  a->api = (struct api_ctx){
      .loop = &a->loop,
      .cfg = &a->cfg,
      .store = a->store,
      .consensus = a->consensus,
      .http = a->http,
      .start_time_ms = uv_now(&a->loop),
      .node_id = a->node_id,
      .advertise_addr = a->advertise,
      .gossip = a->gossip,
      .reload = agent_reload,
      .reload_arg = a,
      .leave = agent_leave,
      .leave_arg = a,
      .local = a->local,
      .events = &a->events.ring,
      .forward = a->forward ? forward_http : NULL,
      .forward_arg = a->forward,
      /* WAN federation: ?dc= forwarding, datacenters, members/join ?wan */
      .forward_dc = a->wan && a->forward ? forward_http_dc : NULL,
      .gossip_wan = a->wan ? wan_gossip(a->wan) : NULL,
      .datacenters = a->wan ? wan_datacenters_json : NULL,
      .datacenters_arg = a->wan,
      .query_remote = a->query_remote ? query_remote_send : NULL,
      .query_remote_arg = a->query_remote,
  };
  if (a->forward) forward_serve_http(a->forward, a->http);
  api_register(&a->api);
  for (char **p = a->cfg.client_addrs; *p; p++) {
    char err[256] = "";
    if (http_server_listen(a->http, *p, a->cfg.port_http, err, sizeof err) != 0) {
      log_error("agent", "cannot listen for HTTP on %s:%d: %s", *p, a->cfg.port_http, err);
      return -1;
    }
    log_info("agent", "HTTP API listening on %s:%d", *p, a->cfg.port_http);
  }
  return 0;
}

/* The DNS interface, answered from this server's store (stale, as Consul's DNS is by
 * default: dns_config.allow_stale); on a client agent, by a server over RPC; names of other
 * datacenters by a server there (agent/dns_rpc.h). A server whose DNS port is disabled still
 * answers DNS.Query, as a Consul server answers other agents' catalog reads for DNS. */
static int agent_start_dns(struct agent *a)
{
  if (a->cfg.port_dns < 0 && !(a->store && a->rpc)) return 0;
  const struct config *c = &a->cfg;
  struct dns_config dc;
  dns_config_defaults(&dc);
  snprintf(dc.domain, sizeof dc.domain, "%s", c->domain);
  if (c->alt_domain) snprintf(dc.alt_domain, sizeof dc.alt_domain, "%s", c->alt_domain);
  dc.node_ttl = (uint32_t)(c->dns_node_ttl_ns / 1000000000LL);
  const char *svc;
  json_t *ttl;
  json_object_foreach(c->dns_service_ttl, svc, ttl) {
    if (dc.n_service_ttl >= DNS_MAX_SERVICE_TTLS) break;
    int64_t ns = 0;
    duration_parse(json_string_value(ttl), json_string_length(ttl), &ns); /* validated by config */
    snprintf(dc.service_ttl[dc.n_service_ttl].name, sizeof dc.service_ttl[0].name, "%s", svc);
    dc.service_ttl[dc.n_service_ttl++].ttl = (uint32_t)(ns / 1000000000LL);
  }
  dc.only_passing = c->dns_only_passing;
  dc.enable_truncate = c->dns_enable_truncate;
  dc.node_meta_txt = c->dns_node_meta_txt;
  dc.udp_answer_limit = c->dns_udp_answer_limit;
  dc.a_record_limit = c->dns_a_record_limit;
  dc.translate_wan_addrs = c->translate_wan_addrs;
  dc.soa_refresh = c->dns_soa_refresh;
  dc.soa_retry = c->dns_soa_retry;
  dc.soa_expire = c->dns_soa_expire;
  dc.soa_minttl = c->dns_soa_min_ttl;
  dc.recursor_timeout_ms = (unsigned)(c->dns_recursor_timeout_ns / 1000000LL);
  for (char **r = c->recursors; *r && dc.n_recursors < DNS_MAX_RECURSORS; r++)
    snprintf(dc.recursors[dc.n_recursors++], sizeof dc.recursors[0], "%s", *r);
  struct wan_dcs *dcs = a->wan ? wan_datacenters(a->wan) : NULL;
  a->dns_catalog = (struct dns_catalog){a->store, c->datacenter, dcs};
  struct dns_backend backend;
  dns_catalog_backend(&a->dns_catalog, &backend);
  char err[256] = "";
  a->dns_engine = dns_engine_new(&dc, &backend, err, sizeof err);
  if (!a->dns_engine) {
    log_error("agent", "bad DNS configuration: %s", err);
    return -1;
  }
  if (a->rpc) {
    struct dns_rpc_config rc = {.rpc = a->rpc, .servers = a->servers, .dcs = dcs,
                                .engine = a->store ? a->dns_engine : NULL};
    a->dns_rpc = dns_rpc_new(&rc);
  }
  if (c->port_dns < 0) return 0; /* DNS.Query only */
  struct dns_server_config sc;
  dns_server_config_defaults(&sc);
  a->dns = dns_server_new(&a->loop, a->dns_engine, &sc, err, sizeof err);
  if (!a->dns) {
    log_error("agent", "cannot start DNS: %s", err);
    return -1;
  }
  if (a->dns_rpc && (!a->store || dcs)) {
    struct dns_remote_transport t;
    dns_rpc_transport(a->dns_rpc, &t);
    a->dns_remote = dns_remote_client_new(&t);
    dns_remote_client_set_wan_addrs(a->dns_remote, dc.translate_wan_addrs);
    struct dns_upstream up;
    dns_remote_client_upstream(a->dns_remote, &up);
    if (!a->store) dns_server_set_upstream(a->dns, &up); /* every catalog question */
    else dns_server_set_dc_upstream(a->dns, &up);        /* other datacenters' names */
  }
  for (char **p = c->client_addrs; *p; p++) {
    if (dns_server_listen(a->dns, *p, c->port_dns, err, sizeof err) != 0) {
      log_error("agent", "cannot listen for DNS on %s:%d: %s", *p, c->port_dns, err);
      return -1;
    }
    log_info("agent", "DNS listening on %s:%d (udp/tcp)", *p, c->port_dns);
  }
  return 0;
}

static void agent_reaped(void *arg, int status, const struct state_cmd_result *res,
                         uint64_t index)
{
  (void)arg;
  (void)res;
  if (status == 0) log_debug("agent", "reaped tombstones at index %llu", (unsigned long long)index);
}

/* Leader duties on a timer. Tombstones: a deleted key's tombstone keeps prefix indexes from
 * going backwards for blocking queries; after 15 minutes none can still need it and the
 * leader reaps it through Raft (Consul's TombstoneTTL). */
static void agent_leader_tick(uv_timer_t *t)
{
  struct agent *a = t->data;
  if (!a->consensus || a->stopping) return;
  if (!consensus_is_leader(a->consensus)) {
    tombstone_gc_reset(&a->tombstone_gc);
    return;
  }
  uint64_t now = uv_now(&a->loop);
  tombstone_gc_hint(&a->tombstone_gc, now, state_table_index(a->store, "tombstones"));
  uint64_t upto = tombstone_gc_expired(&a->tombstone_gc, now);
  if (upto == 0 || state_tombstone_count(a->store) == 0) return;
  struct buf cmd = BUF_INIT;
  state_cmd_encode_tombstone_reap(&cmd, upto);
  if (consensus_apply(a->consensus, &cmd, agent_reaped, a) != 0)
    log_debug("agent", "tombstone reap not proposed (not leader)");
  buf_free(&cmd);
}

static int agent_pair_cmp(const void *x, const void *y)
{
  return strcmp(((const struct state_pair *)x)->key, ((const struct state_pair *)y)->key);
}

static void agent_registered(void *arg, int status, const struct state_cmd_result *res,
                             uint64_t index)
{
  (void)arg;
  (void)index;
  if (status != 0 || res->err != 0)
    log_warn("agent", "could not register this node in the catalog: %s",
             cc_strerror(status ? status : res->err));
}

/* Registers (or deregisters) one member's node in the catalog, as Consul's leader does in
 * reconcileMember (agent/consul/leader.go): alive -> serfHealth passing, failed -> critical,
 * left or reaped -> the node is deregistered; servers also carry the "consul" service. Only
 * the leader does this; it redoes every member when it becomes leader. */
static void agent_reconcile_member(struct agent *a, const char *name, const char *addr,
                                   const char *id, const char *role, const char *port,
                                   enum gossip_status status)
{
  const struct config *c = &a->cfg;
  bool self = strcmp(name, c->node_name) == 0;
  struct buf cmd = BUF_INIT;
  if (status == GOSSIP_STATUS_LEFT || status == GOSSIP_STATUS_NONE) {
    if (self) return; /* our own node goes when a new leader sees us leave */
    struct state_deregister dereg = {.node = name};
    state_cmd_encode_deregister(&cmd, &dereg);
  } else if (status == GOSSIP_STATUS_LEAVING) {
    return;
  } else {
    bool alive = status == GOSSIP_STATUS_ALIVE;
    struct state_pair tagged[4] = {{"lan", addr}, {"lan_ipv4", addr}, {"wan", addr}, {"wan_ipv4", addr}};
    size_t nmeta = self ? json_object_size(c->node_meta) : 0;
    struct state_pair *meta = xcalloc(nmeta + 1, sizeof *meta);
    const char *k;
    json_t *v;
    size_t i = 0;
    if (self) json_object_foreach(c->node_meta, k, v) meta[i++] = (struct state_pair){k, json_string_value(v)};
    qsort(meta, nmeta, sizeof *meta, agent_pair_cmp); /* the store keeps maps sorted, as Go */
    struct state_register_check check = {
        .check_id = "serfHealth",
        .name = "Serf Health Status",
        .status = alive ? "passing" : "critical",
        .output = alive ? "Agent alive and reachable" : "Agent not live or unreachable",
    };
    struct state_register_service consul_svc = {
        .id = "consul",
        .name = "consul",
        .port = port ? atoi(port) : c->port_server,
    };
    bool server = role && strcmp(role, "consul") == 0;
    struct state_register reg = {
        .service = server ? &consul_svc : NULL,
        .id = id && uuid_is_valid(id) ? id : NULL,
        .node = name,
        .address = addr,
        .datacenter = c->datacenter,
        .tagged_addresses = {tagged, 4, false},
        .node_meta = {meta, nmeta, !self},
        /* Other agents own their node's meta (they sync it); we only vouch for health. */
        .skip_node_update = !self,
        .checks = &check,
        .n_checks = 1,
    };
    state_cmd_encode_register(&cmd, &reg);
    free(meta);
  }
  int rv = consensus_apply(a->consensus, &cmd, agent_registered, a);
  if (rv != 0) log_debug("agent", "member %s not reconciled: %s", name, cc_strerror(rv));
  buf_free(&cmd);
}

static void agent_reconcile_gossip_member(struct agent *a, const struct gossip_member *m)
{
  agent_reconcile_member(a, m->name, m->addr, gossip_member_tag(m, "id"),
                         gossip_member_tag(m, "role"), gossip_member_tag(m, "port"), m->status);
}

static void agent_leader_changed(void *arg, bool leader)
{
  struct agent *a = arg;
  if (!leader || a->stopping) return;
  struct gossip_member *members;
  size_t n;
  if (a->gossip && gossip_members(a->gossip, &members, &n) == 0) {
    for (size_t i = 0; i < n; i++) agent_reconcile_gossip_member(a, &members[i]);
    gossip_members_free(members, n);
    return;
  }
  /* Gossip is off: this agent is the only member it knows. */
  char port[16];
  snprintf(port, sizeof port, "%d", a->cfg.port_server);
  agent_reconcile_member(a, a->cfg.node_name, a->advertise, a->node_id,
                         a->cfg.server ? "consul" : "node", port, GOSSIP_STATUS_ALIVE);
}

static void agent_on_member(void *ctx, enum gossip_event ev, const struct gossip_member *m)
{
  struct agent *a = ctx;
  static const char *const names[] = {"joined", "left", "failed", "updated", "reaped"};
  log_info("agent.serf", "member %s %s (%s:%u)", m->name, names[ev], m->addr, m->port);
  if (a->servers) servers_on_member(a->servers, ev, m);
  const char *role = gossip_member_tag(m, "role");
  if (a->wan && (ev == GOSSIP_EVENT_JOIN || ev == GOSSIP_EVENT_UPDATE) && role &&
      strcmp(role, "consul") == 0)
    wan_flood_notify(a->wan);
  if (!a->consensus || a->stopping || !consensus_is_leader(a->consensus)) return;
  if (ev == GOSSIP_EVENT_REAP) {
    agent_reconcile_member(a, m->name, m->addr, NULL, NULL, NULL, GOSSIP_STATUS_NONE);
    return;
  }
  agent_reconcile_gossip_member(a, m);
}

static void agent_on_user_event(void *ctx, const struct gossip_user_event *ev)
{
  struct agent *a = ctx;
  if (!a->stopping) agent_events_on_serf(&a->events, ev);
}

/* -join: once at start; a failure is fatal, as in Consul. -retry-join: every retry_interval
 * until one address answers (or retry_max attempts). */
static void agent_retry_join_tick(uv_timer_t *t);

static void agent_retry_join_done(void *arg, int nsuccess, int err)
{
  struct agent *a = arg;
  if (a->stopping) return;
  if (nsuccess > 0) {
    log_info("agent", "retry-join: joined %d agent(s)", nsuccess);
    return;
  }
  a->retry_join_attempts++;
  if (a->cfg.retry_max && a->retry_join_attempts >= a->cfg.retry_max) {
    log_error("agent", "retry-join: giving up after %u attempts", a->retry_join_attempts);
    return;
  }
  log_warn("agent", "retry-join: no agent answered (%s), retrying in %llds",
           err ? cc_strerror(err) : "all failed", (long long)(a->cfg.retry_interval_ns / 1000000000LL));
  uv_timer_start(&a->retry_join_timer, agent_retry_join_tick,
                 (uint64_t)(a->cfg.retry_interval_ns / 1000000LL), 0);
}

static void agent_retry_join_tick(uv_timer_t *t)
{
  struct agent *a = t->data;
  size_t n = 0;
  while (a->cfg.retry_join[n]) n++;
  if (!a->gossip || n == 0 || a->stopping) return;
  if (gossip_join(a->gossip, (const char *const *)a->cfg.retry_join, n, agent_retry_join_done, a) != 0)
    agent_retry_join_done(a, 0, CC_EINVAL);
}

static void agent_start_join_done(void *arg, int nsuccess, int err)
{
  struct agent *a = arg;
  if (nsuccess > 0) {
    log_info("agent", "joined %d agent(s)", nsuccess);
    return;
  }
  log_error("agent", "-join failed (%s): shutting down", err ? cc_strerror(err) : "no agent answered");
  a->exit_code = 1;
  agent_stop(a);
}

static int agent_start_gossip(struct agent *a)
{
  if (a->cfg.port_serf_lan < 0) return 0;
  json_t *tags_json = api_agent_tags(&a->cfg, a->node_id);
  size_t ntags = json_object_size(tags_json), i = 0;
  struct gossip_tag *tags = xcalloc(ntags + 1, sizeof *tags);
  const char *k;
  json_t *v;
  json_object_foreach(tags_json, k, v) {
    tags[i].key = (char *)k;
    tags[i].value = (char *)json_string_value(v);
    i++;
  }
  struct gossip_config gc;
  gossip_config_default(&gc);
  gc.node_name = a->cfg.node_name;
  gc.bind_addr = a->cfg.bind_addr;
  gc.bind_port = (uint16_t)a->cfg.port_serf_lan;
  gc.advertise_addr = a->advertise;
  gc.tags = tags;
  gc.ntags = ntags;
  gc.on_member = agent_on_member;
  gc.on_user_event = agent_on_user_event;
  gc.cb_ctx = a;
  /* Gossip encryption: -encrypt, encrypt_verify_*, <data_dir>/serf/local.keyring. */
  const char *enc = a->cfg.encrypt_key && a->cfg.encrypt_key[0] ? a->cfg.encrypt_key : NULL;
  char keyring_path[4096];
  gc.encrypt_keys = enc ? &enc : NULL;
  gc.nencrypt_keys = enc ? 1 : 0;
  gc.encrypt_verify_incoming = a->cfg.encrypt_verify_incoming;
  gc.encrypt_verify_outgoing = a->cfg.encrypt_verify_outgoing;
  if (a->cfg.data_dir && !a->cfg.disable_keyring_file &&
      (size_t)snprintf(keyring_path, sizeof keyring_path, "%s/serf/local.keyring",
                       a->cfg.data_dir) < sizeof keyring_path)
    gc.keyring_file = keyring_path;
  char err[256] = "";
  int rv = gossip_start(&a->loop, &gc, &a->gossip, err, sizeof err);
  free(tags);
  json_decref(tags_json);
  if (rv != 0) {
    log_error("agent", "cannot start gossip on %s:%d: %s", a->cfg.bind_addr, a->cfg.port_serf_lan, err);
    return -1;
  }
  log_info("agent", "serf LAN listening on %s:%d", a->cfg.bind_addr, a->cfg.port_serf_lan);
  struct gossip_member self;
  if (a->servers && gossip_local_member(a->gossip, &self) == 0) {
    servers_on_member(a->servers, GOSSIP_EVENT_JOIN, &self);
    gossip_member_free(&self);
  }
  size_t n = 0;
  while (a->cfg.start_join[n]) n++;
  if (n > 0 && gossip_join(a->gossip, (const char *const *)a->cfg.start_join, n, agent_start_join_done, a) != 0) {
    log_error("agent", "-join: bad address");
    return -1;
  }
  if (a->cfg.retry_join[0]) uv_timer_start(&a->retry_join_timer, agent_retry_join_tick, 0, 0);
  return 0;
}

/* Servers: the WAN pool (agent/wan.c) on -serf-wan-port, and ?dc= forwarding through it. */
static void agent_wan_fatal(void *arg) { agent_stop(arg); }

static int agent_start_wan(struct agent *a)
{
  if (!a->cfg.server) {
    /* Consul: -join-wan on a client fails the start, -retry-join-wan only warns */
    if (a->cfg.start_join_wan[0]) {
      log_error("agent", "-join-wan failed: Must be a server to join WAN cluster");
      return -1;
    }
    if (a->cfg.retry_join_wan[0])
      log_warn("agent", "(WAN) couldn't join: Err: Must be a server to join WAN cluster");
    return 0;
  }
  if (a->cfg.port_serf_wan < 0) return 0;
  json_t *tags = api_agent_tags(&a->cfg, a->node_id);
  char keyring_path[4096];
  struct wan_config wc = {
      .node_name = a->cfg.node_name,
      .datacenter = a->cfg.datacenter,
      .bind_addr = a->cfg.bind_addr,
      .advertise_addr = a->advertise,
      .port = (uint16_t)a->cfg.port_serf_wan,
      .tags = tags,
      .start_join = (const char *const *)a->cfg.start_join_wan,
      .retry_join = (const char *const *)a->cfg.retry_join_wan,
      .retry_interval_ms = (uint64_t)(a->cfg.retry_interval_wan_ns / 1000000LL),
      .encrypt_key = a->cfg.encrypt_key && a->cfg.encrypt_key[0] ? a->cfg.encrypt_key : NULL,
      .encrypt_verify_incoming = a->cfg.encrypt_verify_incoming,
      .encrypt_verify_outgoing = a->cfg.encrypt_verify_outgoing,
      .on_fatal = agent_wan_fatal,
      .arg = a,
  };
  /* Consul keeps the WAN keyring in <data_dir>/serf/remote.keyring */
  if (a->cfg.data_dir && !a->cfg.disable_keyring_file &&
      (size_t)snprintf(keyring_path, sizeof keyring_path, "%s/serf/remote.keyring",
                       a->cfg.data_dir) < sizeof keyring_path)
    wc.keyring_file = keyring_path;
  int rv = wan_start(&a->loop, &wc, &a->wan);
  json_decref(tags);
  if (rv == 0 && a->forward) forward_set_datacenters(a->forward, wan_datacenters(a->wan));
  if (rv == 0 && a->gossip) wan_flood_attach(a->wan, a->gossip);
  return rv;
}

/* PUT /v1/agent/leave: leave the pool gracefully, then shut down. */
static void agent_left(void *arg, int err)
{
  struct agent *a = arg;
  if (err) log_warn("agent", "graceful leave did not finish: %s", cc_strerror(err));
  agent_stop(a);
}

static void agent_leave_lan(void *arg)
{
  struct agent *a = arg;
  if (!a->gossip || gossip_leave(a->gossip, agent_left, a) != 0) agent_stop(a);
}

static void agent_leave(void *arg)
{
  struct agent *a = arg;
  log_info("agent", "gracefully leaving the cluster");
  if (a->wan) wan_leave(a->wan, agent_leave_lan, a); /* servers leave the WAN first */
  else agent_leave_lan(a);
}

int agent_main(int argc, char **argv)
{
  struct agent *a = xcalloc(1, sizeof *a);
  char err[1024] = "";
  int rv = config_load(argc, argv, &a->cfg, err, sizeof err);
  if (rv != 0) {
    if (rv < 0) fprintf(stderr, "==> %s\n", err);
    config_free(&a->cfg);
    free(a);
    return rv < 0 ? 1 : 0;
  }
  enum log_level lvl = LOG_INFO;
  log_parse_level(a->cfg.log_level, &lvl);
  log_set_level(lvl);

  const char *data_dir = a->cfg.data_dir;
  if (a->cfg.dev) {
    /* Consul's -dev keeps Raft in memory; libraft always has an on-disk log, so ours is a
     * temporary directory removed at exit. (Not /dev/shm: libraft 0.15's tmpfs write path
     * crashes at close.) */
    char tmpl[] = "/tmp/concord-dev-XXXXXX";
    if (!mkdtemp(tmpl)) {
      fprintf(stderr, "==> cannot create a temporary data dir: %s\n", strerror(errno));
      return 1;
    }
    a->dev_dir = xstrdup(tmpl);
    data_dir = a->dev_dir;
  } else if (agent_mkdir_p(data_dir) != 0) {
    fprintf(stderr, "==> cannot create data dir %s: %s\n", data_dir, strerror(errno));
    config_free(&a->cfg);
    free(a);
    return 1;
  }
  agent_pick_advertise(a);
  uv_loop_init(&a->loop);
  a->exit_code = 1;
  if (agent_load_node_id(a, data_dir) != 0) goto out;
  agent_banner(a);

  uv_signal_init(&a->loop, &a->sig_int);
  uv_signal_init(&a->loop, &a->sig_term);
  uv_signal_init(&a->loop, &a->sig_hup);
  a->sig_int.data = a->sig_term.data = a->sig_hup.data = a;
  uv_signal_start(&a->sig_int, agent_on_signal, SIGINT);
  uv_signal_start(&a->sig_term, agent_on_signal, SIGTERM);
  uv_signal_start(&a->sig_hup, agent_on_signal, SIGHUP);
  uv_timer_init(&a->loop, &a->leader_timer);
  uv_timer_init(&a->loop, &a->retry_join_timer);
  a->retry_join_timer.data = a;
  a->leader_timer.data = a;
  tombstone_gc_init(&a->tombstone_gc, TOMBSTONE_GC_TTL_MS, TOMBSTONE_GC_GRANULARITY_MS);

  bool started = agent_start_rpc(a) == 0;
  if (started && a->cfg.server && agent_start_server(a, data_dir) != 0) started = false;
  if (started) agent_start_cluster(a);
  if (started && agent_start_local(a, data_dir) != 0) started = false;
  a->exec = agent_exec_new(&a->loop, a->cfg.node_name, a->store, a->consensus);
  agent_events_init(&a->events, a->cfg.node_name, a->local, a->cfg.disable_remote_exec, a->exec);
  if (started && agent_start_gossip(a) != 0) started = false;
  if (started && agent_start_wan(a) != 0) started = false;
  a->api.gossip = a->gossip;
  if (started && agent_start_http(a) != 0) started = false;
  if (started && a->http) agent_exec_use_http(a->exec, a->http); /* forwarded like any request */
  if (started && agent_start_dns(a) != 0) started = false;
  /* watches: blocking queries against our own HTTP API (checked at load: it is enabled) */
  if (started && a->cfg.port_http >= 0)
    a->watches = agent_watches_start(&a->loop, a->cfg.watches, a->cfg.client_addrs[0],
                                     a->cfg.port_http);
  if (started && a->consensus) {
    consensus_set_leader_cb(a->consensus, agent_leader_changed, a);
    uv_timer_start(&a->leader_timer, agent_leader_tick, 5000, 5000);
    if (session_ttl_start(&a->session_ttl, &a->loop, a->store, a->consensus) == 0)
      a->session_ttl_started = true;
    else
      log_error("agent", "cannot start session TTL timers");
  }
  if (!started) {
    a->stopping = false;
    agent_stop(a);
  } else {
    a->exit_code = 0;
  }
  uv_run(&a->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&a->loop) != 0) {
    uv_walk(&a->loop, agent_close_walk, NULL);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&a->loop) != 0) log_error("agent", "handles still open at exit");
  }
  agent_events_free(&a->events); /* after the HTTP server: parked lists wait on the ring */
out:
  if (a->store) state_store_free(a->store);
  if (a->dev_dir) {
    agent_rm_tree(a->dev_dir);
    free(a->dev_dir);
  }
  int code = a->exit_code;
  config_free(&a->cfg);
  free(a);
  return code;
}
