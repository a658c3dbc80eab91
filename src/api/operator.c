/* operator.c -- the Raft operator endpoints (Consul's agent/operator_endpoint.go and
 * agent/consul/operator_raft_endpoint.go):
 *
 *   GET    /v1/operator/raft/configuration   the servers of the Raft configuration
 *   DELETE /v1/operator/raft/peer?address=ip:port | ?id=ID   removes one of them
 *
 * Consul's Raft server IDs are the servers' node IDs (UUIDs); ours are 64-bit numbers derived
 * from them (consensus_raft_id: the UUID's first 16 hex digits). So an ID is shown as the
 * node ID it came from: our own for this server, and for the others the "id" gossip tag of
 * the server member whose ID maps to the peer's. A peer no gossip member accounts for is
 * shown as its raft ID in 16 hex digits (which is also the start of its node ID). Node
 * names and raft protocol versions come, as in Consul, from the server member (role
 * "consul") whose address and "port" tag give the peer's Raft address; "(unknown)" and
 * "unknown" when there is none.
 *
 * LastIndex (Consul 1.17's per-server log index, from autopilot) is known here only for
 * this server: consensus.h does not expose the leader's view of each follower's log, so
 * other servers report 0. Index is this server's last log index (Consul gives the index of
 * the configuration entry, which libraft does not expose either).
 *
 * Both need the leader, as Consul forwards them there; the configuration may be read from
 * any server with ?stale. Without forwarding (no RPC layer yet), a follower or a client
 * agent answers 500 "No cluster leader". */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "gossip/gossip.h"
#include "lib/alloc.h"
#include "lib/err.h"

/* Most servers a configuration answer lists: Consul recommends 3 or 5, raft allows more. */
#define OPERATOR_MAX_PEERS 256

/* What the gossip pool tells about one raft peer. Strings borrowed from the member list. */
struct operator_peer_info {
  const char *id;       /* node ID (UUID), or NULL */
  const char *node;     /* node name, or NULL */
  const char *protocol; /* raft_vsn tag (may be ""), or NULL when no member matched */
};

/* net.TCPAddr{IP, Port}.String() of a member with a numeric port tag: "ip:port" or
 * "[v6]:port". Returns false when the member is not a server with a usable port. */
static bool operator_member_raft_addr(const struct gossip_member *m, char *out, size_t len)
{
  const char *role = gossip_member_tag(m, "role");
  const char *port = gossip_member_tag(m, "port");
  if (!role || strcmp(role, "consul") != 0 || !port || !*port) return false;
  char *end;
  unsigned long p = strtoul(port, &end, 10);
  if (*end || p > 65535) return false;
  if (strchr(m->addr, ':')) snprintf(out, len, "[%s]:%lu", m->addr, p);
  else snprintf(out, len, "%s:%lu", m->addr, p);
  return true;
}

/* Fills info for one peer from the member list (NULL when gossip is off). */
static void operator_peer_lookup(const struct gossip_member *ms, size_t n,
                                 const struct consensus_peer *peer,
                                 struct operator_peer_info *info)
{
  memset(info, 0, sizeof *info);
  const struct gossip_member *by_addr = NULL, *by_id = NULL;
  char addr[80];
  for (size_t i = 0; i < n; i++) {
    if (!by_addr && operator_member_raft_addr(&ms[i], addr, sizeof addr) &&
        strcmp(addr, peer->address) == 0)
      by_addr = &ms[i];
    const char *id = gossip_member_tag(&ms[i], "id");
    const char *role = gossip_member_tag(&ms[i], "role");
    if (!by_id && id && *id && role && strcmp(role, "consul") == 0 &&
        consensus_raft_id(id) == peer->id)
      by_id = &ms[i];
  }
  if (by_id) info->id = gossip_member_tag(by_id, "id");
  const struct gossip_member *m = by_addr ? by_addr : by_id;
  if (m) {
    info->node = m->name;
    const char *vsn = gossip_member_tag(m, "raft_vsn");
    info->protocol = vsn ? vsn : "";
  }
}

/* The ID a peer is shown with (see the file comment). Writes into out. */
static void operator_peer_id(struct api_ctx *ctx, const struct consensus_peer *peer,
                             const struct operator_peer_info *info, char *out, size_t len)
{
  if (peer->id == consensus_id(ctx->consensus) && ctx->node_id)
    snprintf(out, len, "%s", ctx->node_id);
  else if (info->id)
    snprintf(out, len, "%s", info->id);
  else
    snprintf(out, len, "%016" PRIx64, peer->id);
}

/* The current configuration. Returns how many peers; *out is malloc'd (caller frees). */
static size_t operator_peers(struct api_ctx *ctx, struct consensus_peer **out)
{
  size_t n = consensus_peers(ctx->consensus, NULL, 0);
  if (n > OPERATOR_MAX_PEERS) n = OPERATOR_MAX_PEERS;
  *out = xcalloc(n ? n : 1, sizeof **out);
  size_t got = consensus_peers(ctx->consensus, *out, n);
  return got < n ? got : n;
}

static void operator_raft_configuration(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  struct api_query_opts opts;
  if (api_parse_query_opts(ctx, req, &opts) != 0) return;
  if (!ctx->consensus || opts.mode != API_CONSISTENCY_STALE) {
    if (api_require_leader(ctx, req)) return;
  }

  struct consensus_peer *peers;
  size_t n = operator_peers(ctx, &peers);
  struct gossip_member *ms = NULL;
  size_t nms = 0;
  if (ctx->gossip && gossip_members(ctx->gossip, &ms, &nms) != 0) {
    ms = NULL;
    nms = 0;
  }
  const char *leader = consensus_leader_address(ctx->consensus);
  uint64_t self = consensus_id(ctx->consensus);

  json_t *servers = json_array();
  for (size_t i = 0; i < n; i++) {
    struct operator_peer_info info;
    operator_peer_lookup(ms, nms, &peers[i], &info);
    if (!info.node && peers[i].id == self) {
      /* Gossip off (serf_lan -1), or our member not found: we know ourselves anyway. */
      info.node = ctx->cfg->node_name;
      info.protocol = "3";
    }
    char id[80];
    operator_peer_id(ctx, &peers[i], &info, id, sizeof id);
    json_t *s = json_object();
    json_object_set_new(s, "ID", json_string(id));
    json_object_set_new(s, "Node", json_string(info.node ? info.node : "(unknown)"));
    json_object_set_new(s, "Address", json_string(peers[i].address));
    json_object_set_new(s, "Leader", json_boolean(leader && strcmp(leader, peers[i].address) == 0));
    json_object_set_new(s, "ProtocolVersion", json_string(info.protocol ? info.protocol : "unknown"));
    json_object_set_new(s, "Voter", json_boolean(peers[i].voter));
    json_object_set_new(s, "LastIndex", json_integer(peers[i].id == self
                                                         ? (json_int_t)consensus_last_index(ctx->consensus)
                                                         : 0));
    json_array_append_new(servers, s);
  }
  if (ms) gossip_members_free(ms, nms);
  free(peers);

  json_t *out = json_object();
  json_object_set_new(out, "Servers", servers);
  json_object_set_new(out, "Index", json_integer((json_int_t)consensus_last_index(ctx->consensus)));
  http_respond_json(req, 200, out);
}

/* Go's strconv.Quote, for the not-found message: printable ASCII and UTF-8 pass through,
 * quotes and backslashes are escaped, control bytes become \n, \t, \r or \xNN. */
static void operator_go_quote(struct buf *out, const char *s)
{
  buf_putc(out, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"': buf_puts(out, "\\\""); break;
    case '\\': buf_puts(out, "\\\\"); break;
    case '\n': buf_puts(out, "\\n"); break;
    case '\t': buf_puts(out, "\\t"); break;
    case '\r': buf_puts(out, "\\r"); break;
    default:
      if (*p < 0x20 || *p == 0x7f) buf_printf(out, "\\x%02x", *p);
      else buf_putc(out, (char)*p);
    }
  }
  buf_putc(out, '"');
}

/* One removal in flight: lives until consensus calls back, even if the client leaves. */
struct operator_remove_op {
  struct http_request *req; /* NULL once the client has gone */
};

static void operator_remove_cancel(struct http_request *req, void *arg)
{
  (void)req;
  ((struct operator_remove_op *)arg)->req = NULL;
}

static void operator_remove_done(void *arg, int status)
{
  struct operator_remove_op *op = arg;
  if (op->req) {
    http_request_on_cancel(op->req, NULL, NULL);
    if (status == 0) http_respond(op->req, 200, "application/json", "", 0);
    else http_respond_error(op->req, 500, "%s", cc_strerror(status));
  }
  free(op);
}

static void operator_raft_peer(struct http_request *req, void *arg)
{
  struct api_ctx *ctx = arg;
  const char *dc = http_query(req, "dc");
  if (dc && *dc && strcasecmp(dc, ctx->cfg->datacenter) != 0) {
    http_respond_error(req, 500, "No path to datacenter");
    return;
  }
  /* Consul tests presence, so ?id= with no value is an (empty) ID. */
  bool has_id = http_query_has(req, "id"), has_addr = http_query_has(req, "address");
  if (!has_id && !has_addr) {
    http_respond_error(req, 400, "Must specify either ?id with the server's ID or ?address "
                                 "with IP:port of peer to remove");
    return;
  }
  if (has_id && has_addr) {
    http_respond_error(req, 400, "Must specify only one of ?id or ?address");
    return;
  }
  if (api_require_leader(ctx, req)) return;

  const char *want = has_id ? http_query(req, "id") : http_query(req, "address");
  struct consensus_peer *peers;
  size_t n = operator_peers(ctx, &peers);
  struct gossip_member *ms = NULL;
  size_t nms = 0;
  if (has_id && ctx->gossip && gossip_members(ctx->gossip, &ms, &nms) != 0) {
    ms = NULL;
    nms = 0;
  }
  bool found = false;
  uint64_t victim = 0;
  for (size_t i = 0; i < n && !found; i++) {
    if (has_addr) {
      found = strcmp(peers[i].address, want) == 0;
    } else {
      /* The ID list-peers shows, or any node ID that maps to the peer's raft ID. */
      struct operator_peer_info info;
      char id[80];
      operator_peer_lookup(ms, nms, &peers[i], &info);
      operator_peer_id(ctx, &peers[i], &info, id, sizeof id);
      found = strcmp(id, want) == 0 || (*want && consensus_raft_id(want) == peers[i].id);
    }
    if (found) victim = peers[i].id;
  }
  if (ms) gossip_members_free(ms, nms);
  free(peers);
  if (!found) {
    struct buf q = BUF_INIT;
    operator_go_quote(&q, want);
    http_respond_error(req, 500, "%s %s was not found in the Raft configuration",
                       has_id ? "id" : "address", q.data);
    buf_free(&q);
    return;
  }

  struct operator_remove_op *op = xcalloc(1, sizeof *op);
  op->req = req;
  int rv = consensus_remove_peer(ctx->consensus, victim, operator_remove_done, op);
  if (rv != 0) {
    free(op);
    /* CC_ENOTLEADER reads "No cluster leader", as Consul's answer when leadership is lost. */
    http_respond_error(req, 500, "%s", cc_strerror(rv));
    return;
  }
  http_request_on_cancel(req, operator_remove_cancel, op);
}

void api_operator_register(struct api_ctx *ctx)
{
  http_server_route(ctx->http, HTTP_M_GET, "/v1/operator/raft/configuration",
                    operator_raft_configuration, ctx);
  http_server_route(ctx->http, HTTP_M_DELETE, "/v1/operator/raft/peer", operator_raft_peer, ctx);
}
