/* forward.h -- requests that another agent must serve, over RPC (src/rpc).
 *
 * A client agent holds no state, so its API requests for the catalog, KV, sessions... go to a
 * server; a follower sends writes and leader reads on to the Raft leader (api/forward.c
 * decides which). The request travels whole: its HTTP/1.1 bytes in an "HTTP.Forward" RPC,
 * which the server runs through its own HTTP routes (http_server_inject) and answers with
 * status, headers and body. So every endpoint forwards the same way, blocking queries
 * included, and the answer is byte for byte the one the server gives.
 *
 * While no leader is known, a request waits up to the hold timeout for one to be elected
 * (Consul's rpc_hold_timeout, 7 s), so a failover is a delay rather than an error.
 *
 * Anti-entropy's catalog writes (src/local) travel as encoded Raft commands in a
 * "Catalog.Apply" RPC, proposed by the leader. */
#ifndef CONCORD_AGENT_FORWARD_H
#define CONCORD_AGENT_FORWARD_H

#include <stdbool.h>
#include <uv.h>

#include "agent/servers.h"
#include "consensus/consensus.h"
#include "http/server.h"
#include "local/local.h"
#include "state/store.h"

struct rpc;
struct forward;

struct forward_config {
  struct rpc *rpc;
  struct servers *servers;
  struct consensus *consensus;  /* NULL on client agents */
  struct state_store *store;    /* NULL on client agents */
  unsigned hold_timeout_ms;     /* 0: 7000 */
  const char *node_name;        /* this agent's (copied): sent with forwarded requests */
};

/* Borrowed pointers must outlive forward_free. On servers, registers the RPC handlers. */
struct forward *forward_new(uv_loop_t *loop, const struct forward_config *cfg);
/* Servers: answer other agents' forwarded HTTP requests with this HTTP server's routes. */
void forward_serve_http(struct forward *f, struct http_server *http);
/* Call after the HTTP server has closed (its requests are cancelled) and before rpc_stop;
 * anti-entropy writes still in flight complete with CC_ESHUTDOWN through rpc_stop. */
void forward_free(struct forward *f);

/* api_ctx.forward: serves req on a server (to_leader: on the Raft leader) and answers it. */
void forward_http(void *arg, struct http_request *req, bool to_leader, unsigned hops);

/* api_ctx.forward_dc (servers): serves req in datacenter dc, on one of its servers from the
 * WAN map; 500 "No path to datacenter" when dc has no server we know or none answers within
 * the hold time. */
void forward_http_dc(void *arg, struct http_request *req, const char *dc, unsigned hops);
/* The WAN pool's datacenter map (borrowed; NULL: none) that forward_http_dc picks from. */
struct wan_dcs;
void forward_set_datacenters(struct forward *f, struct wan_dcs *dcs);

/* The catalog interface anti-entropy writes through (local_agent_set_remote). */
void forward_local_remote(struct forward *f, struct local_remote *out);

#endif
