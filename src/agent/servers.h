/* servers.h -- the servers this agent knows through gossip, and the server-side duties that
 * follow from them: bootstrapping Raft once bootstrap_expect servers have met (Consul's
 * maybeBootstrap), and, on the leader, keeping the Raft configuration in step with the
 * servers gossip sees (Consul's joinConsulServer / removeConsulServer and autopilot's dead
 * server cleanup).
 *
 * Clients use it to pick a server for RPC: a sticky choice (Consul's client keeps using one
 * server until it fails, then moves on) among the alive servers of its datacenter. */
#ifndef CONCORD_AGENT_SERVERS_H
#define CONCORD_AGENT_SERVERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "consensus/consensus.h"
#include "gossip/gossip.h"

struct rpc;
struct servers;

struct servers_config {
  const char *datacenter;
  const char *node_name;        /* this agent */
  unsigned bootstrap_expect;    /* > 1: bootstrap once this many servers are seen */
  /* Autopilot's CleanupDeadServers: a server failed in gossip for this long is removed from
   * the Raft configuration by the leader (never below a quorum of the voters). 0: off. */
  uint64_t dead_server_cleanup_ms;
};

/* Borrowed: rpc, consensus (NULL on clients) and the loop outlive servers_free. */
struct servers *servers_new(uv_loop_t *loop, const struct servers_config *cfg, struct rpc *rpc,
                            struct consensus *consensus);
/* Stops the timer and outstanding bootstrap probes; frees once the timer is closed. */
void servers_free(struct servers *s);

/* Feed every gossip member event (and, at start, every member as GOSSIP_EVENT_JOIN). */
void servers_on_member(struct servers *s, enum gossip_event ev, const struct gossip_member *m);

/* The RPC address ("ip:port") of a server to send a request to, or NULL when no alive server
 * is known. Lent until the next call into servers. */
const char *servers_pick(struct servers *s);
/* The server at addr failed a request: move to another one next time. */
void servers_failed(struct servers *s, const char *addr);
/* How many alive servers are known. */
size_t servers_count(const struct servers *s);

#endif
