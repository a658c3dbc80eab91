/* api.h -- Consul's HTTP API (/v1/...): one file per endpoint family, all registered on the
 * agent's HTTP server by api_register. Handlers read the state store directly on servers and
 * send writes through Raft (consensus). */
#ifndef CONCORD_API_API_H
#define CONCORD_API_API_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "consensus/consensus.h"
#include "http/server.h"
#include "state/store.h"

/* Everything a handler may reach; owned by the agent, which outlives the HTTP server. */
struct api_ctx {
  uv_loop_t *loop;
  const struct config *cfg;
  struct state_store *store;     /* NULL on client agents */
  struct consensus *consensus;   /* NULL on client agents */
  struct http_server *http;
  uint64_t start_time_ms;        /* uv_now at agent start */
  const char *node_id;
  const char *advertise_addr;    /* the address other agents reach this one on */
  struct gossip *gossip;         /* the LAN pool; NULL when serf_lan is disabled */
  void (*reload)(void *arg);     /* the agent's reload hook */
  void (*leave)(void *arg);      /* graceful leave, then shutdown (PUT /v1/agent/leave) */
  void *leave_arg;
  void *reload_arg;
  struct api_blocking *blocking; /* private to api/blocking.c */
  struct api_metrics *metrics;   /* private to api/metrics.c */
  struct local_agent *local;     /* the agent's services and checks (src/local); NULL: none */
  struct event_ring *events;     /* user events this agent kept (agent/events.c); NULL: none */
  /* Forwarding (agent/forward.c): sends req to a server (to_leader: to the Raft leader) and
   * answers it with that server's answer. NULL: every request is served here (-dev, or a
   * single server). api/forward.c decides which requests go where. */
  void (*forward)(void *arg, struct http_request *req, bool to_leader, unsigned hops);
  void *forward_arg;
  /* WAN federation (servers): sends req to a server of datacenter dc (?dc= naming another
   * one) and answers it, or answers 500 "No path to datacenter". NULL: no WAN pool. */
  void (*forward_dc)(void *arg, struct http_request *req, const char *dc, unsigned hops);
  struct gossip *gossip_wan;     /* the WAN pool; NULL on clients or with serf_wan -1 */
  /* Every known datacenter as a JSON array of strings (new reference); NULL: ours alone. */
  json_t *(*datacenters)(void *arg);
  void *datacenters_arg;
  /* Prepared query failover (servers with a WAN pool): sends body (JSON {"Query": ...,
   * "Limit": n}) to a server of dc (PreparedQuery.ExecuteRemote) and calls done with its
   * answer (a new reference) or NULL when it failed. done runs once, possibly inside the
   * call when nothing could be sent. NULL: no failover. */
  void (*query_remote)(void *arg, const char *dc, const char *body, size_t len,
                       void (*done)(void *cbarg, json_t *answer), void *cbarg);
  void *query_remote_arg;
};

/* The header a forwarded request carries: how many agents have forwarded it so far. */
/* /v1/snapshot (snapshot.c): a restore is one Raft entry, so state.bin may be at most a
 * command's size (consensus.h) less room for framing; the request body is capped at that
 * plus the archive's own overhead (archive.h). */
#define API_SNAPSHOT_PATH "/v1/snapshot"
#define API_SNAPSHOT_MAX_STATE ((size_t)7 << 20)

#define API_FORWARD_HEADER "X-Concord-Forwarded"
/* ... and the name of the agent it came to first: what "this agent's node" means for it
 * (a session created through a client agent belongs to the client's node, as in Consul). */
#define API_ORIGIN_NODE_HEADER "X-Concord-Origin-Node"

/* The node a request speaks for: the agent it first reached (forwarded requests carry it),
 * else this one. */
const char *api_origin_node(const struct api_ctx *ctx, const struct http_request *req);

/* The serf tags Consul's agents carry (role, dc, id, port, vsn, build, bootstrap/expect...):
 * a new object the caller owns. The agent gossips them; /v1/agent/members shows them. */
json_t *api_agent_tags(const struct config *cfg, const char *node_id);

/* Server side of PreparedQuery.ExecuteRemote: executes the query in body ({"Query": ...,
 * "Limit": n}) here, without failover, and returns the execute answer (caller owns it), or
 * NULL with a sentence in err. */
json_t *api_query_execute_remote(struct api_ctx *ctx, const void *body, size_t len, char *err,
                                 size_t errlen);

/* Registers every endpoint. */
void api_register(struct api_ctx *ctx);
/* Cancels parked blocking queries and frees api state (before the HTTP server closes). */
void api_shutdown(struct api_ctx *ctx);

#endif
