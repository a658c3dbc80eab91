/* agent.c -- /v1/agent/self, /v1/agent/members and /v1/agent/reload: the agent describing
 * itself (Consul's agent_endpoint.go AgentSelf, AgentMembers), and joining or force-leaving
 * members of the LAN pool or (?wan, servers) the WAN pool. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "api/internal.h"
#include "gossip/gossip.h"
#include "lib/alloc.h"
#include "local/local.h"
#include "lib/err.h"
#include "version.h"

/* Member status codes (serf's MemberStatus). */
enum { MEMBER_NONE, MEMBER_ALIVE, MEMBER_LEAVING, MEMBER_LEFT, MEMBER_FAILED };

json_t *api_agent_tags(const struct config *cfg, const char *node_id)
{
  char buf[64];
  json_t *tags = json_object();
  json_object_set_new(tags, "acls", json_string("0"));
  json_object_set_new(tags, "build", json_string(CONCORD_CONSUL_VERSION ":concord-" CONCORD_VERSION));
  json_object_set_new(tags, "dc", json_string(cfg->datacenter));
  json_object_set_new(tags, "id", json_string(node_id));
  if (cfg->server) {
    snprintf(buf, sizeof buf, "%d", cfg->port_server);
    json_object_set_new(tags, "port", json_string(buf));
    json_object_set_new(tags, "raft_vsn", json_string("3"));
    json_object_set_new(tags, "role", json_string("consul"));
    if (cfg->bootstrap_expect == 1) json_object_set_new(tags, "bootstrap", json_string("1"));
    else if (cfg->bootstrap_expect > 1) {
      snprintf(buf, sizeof buf, "%u", cfg->bootstrap_expect);
      json_object_set_new(tags, "expect", json_string(buf));
    }
    snprintf(buf, sizeof buf, "%d", cfg->port_serf_wan);
    json_object_set_new(tags, "wan_join_port", json_string(buf));
  } else {
    json_object_set_new(tags, "role", json_string("node"));
  }
  json_object_set_new(tags, "segment", json_string(""));
  snprintf(buf, sizeof buf, "%d", CONCORD_PROTOCOL_DEFAULT);
  json_object_set_new(tags, "vsn", json_string(buf));
  snprintf(buf, sizeof buf, "%d", CONCORD_PROTOCOL_MIN);
  json_object_set_new(tags, "vsn_min", json_string(buf));
  snprintf(buf, sizeof buf, "%d", CONCORD_PROTOCOL_MAX);
  json_object_set_new(tags, "vsn_max", json_string(buf));
  return tags;
}

/* This agent as a member when gossip is off (serf_lan -1): built from the configuration. */
static json_t *agent_member_json(struct api_ctx *ctx)
{
  const struct config *cfg = ctx->cfg;
  json_t *tags = api_agent_tags(cfg, ctx->node_id);
  json_t *m = json_object();
  json_object_set_new(m, "Name", json_string(cfg->node_name));
  json_object_set_new(m, "Addr", json_string(ctx->advertise_addr));
  json_object_set_new(m, "Port", json_integer(cfg->port_serf_lan));
  json_object_set_new(m, "Tags", tags);
  json_object_set_new(m, "Status", json_integer(MEMBER_ALIVE));
  /* memberlist protocol 1..5 and serf delegate protocol 2..5, as Consul reports. */
  json_object_set_new(m, "ProtocolMin", json_integer(1));
  json_object_set_new(m, "ProtocolMax", json_integer(5));
  json_object_set_new(m, "ProtocolCur", json_integer(2));
  json_object_set_new(m, "DelegateMin", json_integer(2));
  json_object_set_new(m, "DelegateMax", json_integer(5));
  json_object_set_new(m, "DelegateCur", json_integer(4));
  return m;
}

/* AgentMember from a gossip member: what serf reports, tags as a sorted map. */
static json_t *agent_gossip_member_json(const struct gossip_member *gm)
{
  json_t *tags = json_object();
  for (size_t i = 0; i < gm->ntags; i++)
    json_object_set_new(tags, gm->tags[i].key, json_string(gm->tags[i].value));
  json_t *m = json_object();
  json_object_set_new(m, "Name", json_string(gm->name));
  json_object_set_new(m, "Addr", json_string(gm->addr));
  json_object_set_new(m, "Port", json_integer(gm->port));
  json_object_set_new(m, "Tags", tags);
  json_object_set_new(m, "Status", json_integer(gm->status));
  json_object_set_new(m, "ProtocolMin", json_integer(gm->protocol_min));
  json_object_set_new(m, "ProtocolMax", json_integer(gm->protocol_max));
  json_object_set_new(m, "ProtocolCur", json_integer(gm->protocol_cur));
  json_object_set_new(m, "DelegateMin", json_integer(gm->delegate_min));
  json_object_set_new(m, "DelegateMax", json_integer(gm->delegate_max));
  json_object_set_new(m, "DelegateCur", json_integer(gm->delegate_cur));
  return m;
}

/* This agent as a member: from gossip when it runs, else built from the configuration. */
static json_t *agent_self_member_json(struct api_ctx *ctx)
{
  struct gossip_member gm;
  if (ctx->gossip && gossip_local_member(ctx->gossip, &gm) == 0) {
    json_t *m = agent_gossip_member_json(&gm);
    gossip_member_free(&gm);
    return m;
  }
  return agent_member_json(ctx);
}

static json_t *agent_str_map(const char *const *kv)
{
  json_t *o = json_object();
  for (; kv[0]; kv += 2) json_object_set_new(o, kv[0], json_string(kv[1]));
  return o;
}

static json_t *agent_stats(struct api_ctx *ctx)
{
  const struct config *cfg = ctx->cfg;
  char applied[24] = "0", last_index[24] = "0", term[24] = "0", contact[32] = "never",
       peers[16] = "0", kv_keys[24], uptime[32], cpus[16];
  struct consensus *c = ctx->consensus;
  const char *leader_addr = c ? consensus_leader_address(c) : NULL;
  if (c) {
    snprintf(applied, sizeof applied, "%llu", (unsigned long long)consensus_applied_index(c));
    snprintf(last_index, sizeof last_index, "%llu", (unsigned long long)consensus_last_index(c));
    snprintf(term, sizeof term, "%llu", (unsigned long long)consensus_term(c));
    if (consensus_is_leader(c)) snprintf(contact, sizeof contact, "0");
    else if (leader_addr)
      snprintf(contact, sizeof contact, "%llums", (unsigned long long)consensus_last_contact_ms(c));
    snprintf(peers, sizeof peers, "%zu", consensus_peers(c, NULL, 0) - 1);
  }
  snprintf(kv_keys, sizeof kv_keys, "%zu", ctx->store ? state_kv_count(ctx->store) : 0);
  snprintf(uptime, sizeof uptime, "%llus",
           (unsigned long long)((uv_now(ctx->loop) - ctx->start_time_ms) / 1000));
  snprintf(cpus, sizeof cpus, "%ld", sysconf(_SC_NPROCESSORS_ONLN));
  struct utsname u;
  uname(&u);

  json_t *stats = json_object();
  struct local_stats ls = {0};
  if (ctx->local) local_agent_stats(ctx->local, &ls);
  char monitors[24], ttls[24], checks[24], services[24];
  snprintf(monitors, sizeof monitors, "%zu", ls.check_monitors);
  snprintf(ttls, sizeof ttls, "%zu", ls.check_ttls);
  snprintf(checks, sizeof checks, "%zu", ls.checks);
  snprintf(services, sizeof services, "%zu", ls.services);
  json_object_set_new(stats, "agent",
                      agent_str_map((const char *const[]){"check_monitors", monitors, "check_ttls",
                                                          ttls, "checks", checks, "services",
                                                          services, NULL}));
  json_object_set_new(stats, "build",
                      agent_str_map((const char *const[]){"prerelease", "", "revision",
                                                          "concord-" CONCORD_VERSION, "version",
                                                          CONCORD_CONSUL_VERSION, "version_metadata",
                                                          "", NULL}));
  json_object_set_new(
      stats, "consul",
      agent_str_map((const char *const[]){"acl", "disabled", "bootstrap",
                                          cfg->bootstrap_expect == 1 ? "true" : "false",
                                          "known_datacenters", "1", "leader",
                                          c && consensus_is_leader(c) ? "true" : "false",
                                          "leader_addr", leader_addr ? leader_addr : "", "server",
                                          cfg->server ? "true" : "false", NULL}));
  if (c) {
    json_object_set_new(
        stats, "raft",
        agent_str_map((const char *const[]){"applied_index", applied, "commit_index", applied,
                                            "last_contact", contact, "last_log_index", last_index,
                                            "num_peers", peers, "protocol_version", "3", "state",
                                            consensus_state_name(c), "term", term, NULL}));
  }
  json_object_set_new(stats, "runtime",
                      agent_str_map((const char *const[]){"arch", u.machine, "cpu_count", cpus,
                                                          "os", "linux", "version",
                                                          "concord-" CONCORD_VERSION, NULL}));
  json_object_set_new(stats, "kv", agent_str_map((const char *const[]){"keys", kv_keys, NULL}));
  json_object_set_new(stats, "agent_uptime", agent_str_map((const char *const[]){"uptime", uptime, NULL}));
  return stats;
}

static void agent_self(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  const struct config *cfg = ctx->cfg;
  json_t *config = json_object();
  json_object_set_new(config, "Datacenter", json_string(cfg->datacenter));
  json_object_set_new(config, "PrimaryDatacenter", json_string(cfg->datacenter));
  json_object_set_new(config, "NodeName", json_string(cfg->node_name));
  json_object_set_new(config, "NodeID", json_string(ctx->node_id));
  json_object_set_new(config, "Revision", json_string("concord-" CONCORD_VERSION));
  json_object_set_new(config, "Server", json_boolean(cfg->server));
  json_object_set_new(config, "Version", json_string(CONCORD_CONSUL_VERSION));
  json_object_set_new(config, "BuildDate", json_string("1970-01-01T00:00:01Z"));

  json_t *debug = json_object();
  json_object_set_new(debug, "Datacenter", json_string(cfg->datacenter));
  json_object_set_new(debug, "NodeName", json_string(cfg->node_name));
  json_object_set_new(debug, "DevMode", json_boolean(cfg->dev));
  json_object_set_new(debug, "ServerMode", json_boolean(cfg->server));
  json_object_set_new(debug, "BootstrapExpect", json_integer(cfg->bootstrap_expect));
  json_object_set_new(debug, "DataDir", cfg->data_dir ? json_string(cfg->data_dir) : json_string(""));
  json_object_set_new(debug, "KVMaxValueSize", json_integer((json_int_t)cfg->kv_max_value_size));
  json_object_set_new(debug, "HTTPPort", json_integer(cfg->port_http));
  json_object_set_new(debug, "DNSPort", json_integer(cfg->port_dns));
  json_object_set_new(debug, "ServerPort", json_integer(cfg->port_server));
  json_object_set_new(debug, "RaftSnapshotThreshold", json_integer(cfg->raft_snapshot_threshold));
  json_object_set_new(debug, "RaftTrailingLogs", json_integer(cfg->raft_trailing_logs));

  json_t *coord = json_object();
  json_t *vec = json_array();
  for (int i = 0; i < 8; i++) json_array_append_new(vec, json_real(0));
  json_object_set_new(coord, "Vec", vec);
  json_object_set_new(coord, "Error", json_real(1.5));
  json_object_set_new(coord, "Adjustment", json_real(0));
  json_object_set_new(coord, "Height", json_real(1e-05));

  json_t *self = json_object();
  json_object_set_new(self, "Config", config);
  json_object_set_new(self, "DebugConfig", debug);
  json_object_set_new(self, "Coord", coord);
  json_object_set_new(self, "Member", agent_self_member_json(ctx));
  json_object_set_new(self, "Stats", agent_stats(ctx));
  json_object_set(self, "Meta", (json_t *)cfg->node_meta);
  http_respond_json(req, 200, self);
}

static void agent_members(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  bool wan = http_query_has(req, "wan");
  /* WAN members are the servers' "<node>.<dc>" in the WAN pool; a client agent has none
   * (Consul answers an empty list there). */
  struct gossip *g = wan ? ctx->gossip_wan : ctx->gossip;
  json_t *list = json_array();
  struct gossip_member *members;
  size_t n;
  if (g && gossip_members(g, &members, &n) == 0) {
    for (size_t i = 0; i < n; i++) json_array_append_new(list, agent_gossip_member_json(&members[i]));
    gossip_members_free(members, n);
  } else if (!wan) {
    json_array_append_new(list, agent_member_json(ctx));
  }
  http_respond_json(req, 200, list);
}

/* PUT /v1/agent/join/<addr>: answered when serf's join has finished. */
struct agent_join_op {
  struct http_request *req; /* NULL once the client has gone */
  char addr[256];
};

static void agent_join_cancel(struct http_request *req, void *arg)
{
  (void)req;
  ((struct agent_join_op *)arg)->req = NULL;
}

static void agent_join_done(void *arg, int nsuccess, int err)
{
  struct agent_join_op *op = arg;
  if (op->req) {
    http_request_on_cancel(op->req, NULL, NULL);
    if (nsuccess > 0) http_respond(op->req, 200, "application/json", "", 0);
    else
      http_respond_error(op->req, 500, "1 error occurred:\n\t* Failed to join %s: %s\n\n", op->addr,
                         err ? cc_strerror(err) : "no agent answered");
  }
  free(op);
}

static void agent_join(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing address to join");
    return;
  }
  bool wan = http_query_has(req, "wan");
  if (wan && !ctx->cfg->server) {
    http_respond_error(req, 500, "Must be a server to join WAN cluster");
    return;
  }
  struct gossip *g = wan ? ctx->gossip_wan : ctx->gossip;
  if (!g) {
    http_respond_error(req, 500, "gossip is disabled on this agent (serf_%s port -1)",
                       wan ? "wan" : "lan");
    return;
  }
  struct agent_join_op *op = xcalloc(1, sizeof *op);
  op->req = req;
  snprintf(op->addr, sizeof op->addr, "%s", req->tail);
  const char *addrs[1] = {op->addr};
  int rv = gossip_join(g, addrs, 1, agent_join_done, op);
  if (rv != 0) {
    http_respond_error(req, 500, "1 error occurred:\n\t* Failed to join %s: %s\n\n", op->addr,
                       cc_strerror(rv));
    free(op);
    return;
  }
  http_request_on_cancel(req, agent_join_cancel, op);
}

static void agent_leave(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  /* Answer first: the leave ends with this agent shutting down, HTTP server included. */
  http_respond(req, 200, "application/json", "", 0);
  if (ctx->leave) ctx->leave(ctx->leave_arg ? ctx->leave_arg : ctx->reload_arg);
}

static void agent_force_leave(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (!*req->tail) {
    http_respond_error(req, 400, "Missing node name");
    return;
  }
  /* ?wan: the WAN pool alone (members named "<node>.<dc>"), servers only */
  bool wan = http_query_has(req, "wan");
  struct gossip *g = wan ? ctx->gossip_wan : ctx->gossip;
  if (wan && !ctx->cfg->server) {
    http_respond_error(req, 500, "Must be a server to force-leave a node from the WAN cluster");
    return;
  }
  if (!g) {
    http_respond_error(req, 500, "gossip is disabled on this agent (serf_%s port -1)",
                       wan ? "wan" : "lan");
    return;
  }
  /* Consul checks membership first (agent.ForceLeave); gossip would accept any name. */
  bool known = false;
  struct gossip_member *members;
  size_t n;
  if (gossip_members(g, &members, &n) == 0) {
    for (size_t i = 0; i < n && !known; i++) known = strcmp(members[i].name, req->tail) == 0;
    gossip_members_free(members, n);
  }
  int rv = known ? gossip_force_leave(g, req->tail, http_query_has(req, "prune"))
                 : CC_ENOTFOUND;
  if (rv == CC_ENOTFOUND) {
    http_respond_error(req, 500, "agent: No node found with name '%s'", req->tail);
    return;
  }
  if (rv != 0) {
    http_respond_error(req, 500, "%s", cc_strerror(rv));
    return;
  }
  http_respond(req, 200, "application/json", "", 0);
}

static void agent_reload(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  if (ctx->reload) ctx->reload(ctx->reload_arg);
  http_respond(req, 200, "application/json", "", 0);
}

void api_agent_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_GET, "/v1/agent/self", agent_self, ctx);
  http_server_route(ctx->http, HTTP_M_GET, "/v1/agent/members", agent_members, ctx);
  http_server_route(ctx->http, HTTP_M_PUT, "/v1/agent/reload", agent_reload, ctx);
  http_server_route(ctx->http, HTTP_M_PUT, "/v1/agent/join/", agent_join, ctx);
  http_server_route(ctx->http, HTTP_M_PUT, "/v1/agent/leave", agent_leave, ctx);
  http_server_route(ctx->http, HTTP_M_PUT, "/v1/agent/force-leave/", agent_force_leave, ctx);
}
