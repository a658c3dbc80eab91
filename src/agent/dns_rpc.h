/* dns_rpc.h -- DNS between agents over the server port (RPC method DNS_REMOTE_METHOD).
 *
 * The transport agent/dns_remote.h's asking side sends with: a question for this datacenter
 * goes to a server from the server list (client agents), one for another datacenter to a
 * server of it from the WAN map (servers). And, on servers, the DNS.Query handler: the
 * engine answers, and names of other datacenters are relayed to a server there while the
 * caller waits (dns_remote_serve). A server that cannot be reached is marked so the next
 * question goes elsewhere; one that refuses the connection is skipped at once (nothing was
 * sent), up to three servers a question. */
#ifndef CONCORD_AGENT_DNS_RPC_H
#define CONCORD_AGENT_DNS_RPC_H

#include <stdbool.h>

#include "agent/dns_remote.h"

struct rpc;
struct servers;
struct wan_dcs;
struct dns_rpc;

struct dns_rpc_config {
  struct rpc *rpc;           /* required */
  struct servers *servers;   /* this datacenter's servers; NULL: none to ask */
  struct wan_dcs *dcs;       /* servers with a WAN pool: other datacenters; NULL: none */
  struct dns_engine *engine; /* servers: answers DNS_REMOTE_METHOD; NULL on client agents */
};

/* Borrowed pointers must outlive dns_rpc_free. With an engine, registers the RPC handler. */
struct dns_rpc *dns_rpc_new(const struct dns_rpc_config *cfg);
/* The transport for a dns_remote_client (ctx is d). */
void dns_rpc_transport(struct dns_rpc *d, struct dns_remote_transport *out);
/* Unregisters the handler, answers the relays in flight with an error, and frees d. Call
 * after the DNS server using the transport has closed and before rpc_stop. */
void dns_rpc_free(struct dns_rpc *d);

#endif
