/* dns_remote.h -- DNS on client agents, answered by a server: the request format both sides
 * share, the server's side (answer a request with the local engine) and the client's side
 * (a dns_upstream for server.h over any request/response transport, RPC in the agent).
 *
 * Consul's client agents answer every DNS question by asking a server over RPC; here the
 * client sends the query bytes and its transport facts (TCP or UDP, the size ceiling, the
 * asker's address for prepared queries' Near "_ip") and the server answers with its own
 * engine, so the reply is exactly what a server's DNS interface would say. The server's
 * dns_config (domain, TTLs, answer limits) therefore applies: clients and servers should use
 * the same domain and alt_domain (a name the server's domain does not cover is REFUSED).
 *
 * Request body: version (1), flags (bit 0: TCP), max_size (u16 BE), address family (0, 4 or
 * 6), then for 4/6 the address (4/16 bytes) and port (u16 BE), then the query. Response body:
 * the DNS reply itself. */
#ifndef CONCORD_AGENT_DNS_REMOTE_H
#define CONCORD_AGENT_DNS_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "dns/dns.h"
#include "dns/server.h"

#define DNS_REMOTE_METHOD "DNS.Query" /* the RPC method name the lead registers */
#define DNS_REMOTE_MAX_BODY (5 + 16 + 2 + 65535)

/* Writes a request body for the query into out (DNS_REMOTE_MAX_BODY bytes). Returns its length,
 * or 0 if the query is empty or longer than 65535 bytes. */
size_t dns_remote_encode(const uint8_t *query, size_t qlen, bool tcp, size_t max_size,
                         const struct sockaddr *client, uint8_t *out);

/* ---- Server side ---- */

/* Answers one request body with the engine into out (DNS_TCP_MAX bytes). Returns 0 with the
 * reply's length in *outlen, or CC_EINVAL when the body is not a request or the engine drops
 * the query (the RPC handler then answers an error; the client's asker gets SERVFAIL). Names
 * outside the server's domain are REFUSED and reverse names it cannot answer NXDOMAIN: it is
 * the client's recursors, not the server's, that are tried next. */
int dns_remote_answer(struct dns_engine *e, const uint8_t *body, size_t len, uint8_t *out,
                      size_t *outlen);

/* ---- Client side ---- */

/* Exactly rpc_done_fn's shape (src/rpc/rpc.h), so an RPC transport passes it straight on:
 * status 0 and error NULL with the reply in body, else a failure (the asker gets SERVFAIL). */
typedef void (*dns_remote_done_fn)(void *arg, int status, const char *error,
                                   const uint8_t *body, size_t len);

/* How the client reaches a server. send: delivers `body` (borrowed for the call) to a server's
 * DNS_REMOTE_METHOD and later -- or even before returning -- calls done(arg, ...) exactly once,
 * unless cancel(ctx, *handle) ran first; returns 0, or a negative CC_E* code when nothing
 * was sent (done must then not run). cancel: done must never run after it. */
struct dns_remote_transport {
  void *ctx;
  int (*send)(void *ctx, const uint8_t *body, size_t len, dns_remote_done_fn done, void *arg,
              void **handle);
  void (*cancel)(void *ctx, void *handle);
};

struct dns_remote_client;

/* Copies the transport; ctx is borrowed and must outlive the client. */
struct dns_remote_client *dns_remote_client_new(const struct dns_remote_transport *t);
/* Fills an upstream for dns_server_set_upstream (timeout_ms 0: server.h's 5 s). */
void dns_remote_client_upstream(struct dns_remote_client *c, struct dns_upstream *out);
/* Queries in flight (started, neither answered nor cancelled). */
unsigned dns_remote_client_pending(const struct dns_remote_client *c);
/* Frees the client once the DNS server using it is closed (closing cancels every query). */
void dns_remote_client_free(struct dns_remote_client *c);

#endif
