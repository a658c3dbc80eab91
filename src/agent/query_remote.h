/* query_remote.h -- prepared query failover between datacenters: PreparedQuery.ExecuteRemote
 * over the server port. The asking side (api_ctx.query_remote) sends a query definition to a
 * server of another datacenter, picked from the WAN map; the answering side executes it in
 * its own datacenter (api_query_execute_remote) and replies with the execute answer. */
#ifndef CONCORD_AGENT_QUERY_REMOTE_H
#define CONCORD_AGENT_QUERY_REMOTE_H

#include <jansson.h>
#include <stddef.h>

#include "agent/wan_dcs.h"
#include "api/api.h"

struct rpc;
struct query_remote;

/* Borrowed: rpc, dcs and api outlive the result (free it before rpc_stop). Registers the
 * RPC handler. */
struct query_remote *query_remote_new(struct rpc *rpc, struct wan_dcs *dcs, struct api_ctx *api);
void query_remote_free(struct query_remote *qr);

/* api_ctx.query_remote (arg: a struct query_remote). */
void query_remote_send(void *arg, const char *dc, const char *body, size_t len,
                       void (*done)(void *cbarg, json_t *answer), void *cbarg);

#endif
