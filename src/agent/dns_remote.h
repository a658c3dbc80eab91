/* dns_remote.h -- DNS answered by a server: the request format both sides share, the
 * server's side (answer a request with the local engine, or relay a name of another
 * datacenter to a server there) and the asking side (a dns_upstream for server.h over any
 * request/response transport, RPC in the agent: agent/dns_rpc.h).
 *
 * Consul's client agents answer every DNS question by asking a server over RPC; here the
 * client sends the query bytes and its transport facts (TCP or UDP, the size ceiling, the
 * asker's address for prepared queries' Near "_ip") and the server answers with its own
 * engine, so the reply is exactly what a server's DNS interface would say. The server's
 * dns_config (domain, TTLs, answer limits) therefore applies: clients and servers should use
 * the same domain and alt_domain (a name the server's domain does not cover is REFUSED).
 *
 * Other datacenters: a server's engine hands back names of another datacenter it knows
 * (DNS_REMOTE_DC); the question then goes, marked "forwarded", to a server of that
 * datacenter, whose engine answers it as its own. A server's own DNS interface does that
 * through its dc upstream (a dns_remote_client); a client agent's question arrives at its
 * server over RPC and is relayed from there (dns_remote_serve). A forwarded question is
 * never sent on again, so nothing loops.
 *
 * Request body: version (1), flags (bit 0: TCP; bit 1: forwarded from another datacenter;
 * bit 2: the asking agent translates WAN addresses, so a forwarded question is answered with
 * them, as that agent would answer for a datacenter not its own), max_size (u16 BE), address family (0, 4 or 6), then for
 * 4/6 the address (4/16 bytes) and port (u16 BE), then the query. Response body: the DNS
 * reply itself. */
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
/* Marks a body (from dns_remote_encode, len bytes) as sent to another datacenter: answered
 * there, never sent on. wan_addrs: the asking agent translates WAN addresses
 * (translate_wan_addrs), so the answer should carry them. */
void dns_remote_mark_forwarded(uint8_t *body, size_t len, bool wan_addrs);

/* ---- Server side ---- */

#define DNS_REMOTE_OTHER_DC 1 /* dns_remote_answer: the question is another datacenter's */

/* Answers one request body with the engine into out (DNS_TCP_MAX bytes). Returns 0 with the
 * reply's length in *outlen; DNS_REMOTE_OTHER_DC when it names another datacenter the
 * engine's backend knows (dns_engine_remote_dc(e) says which; dns_remote_serve relays it);
 * or CC_EINVAL when the body is not a request, the engine drops the query, or a forwarded
 * question names yet another datacenter (the RPC handler then answers an error; the asker
 * gets SERVFAIL). Names outside the server's domain are REFUSED and reverse names it cannot
 * answer NXDOMAIN: it is the client's recursors, not the server's, that are tried next. */
int dns_remote_answer(struct dns_engine *e, const uint8_t *body, size_t len, uint8_t *out,
                      size_t *outlen);

/* ---- Client side ---- */

/* Exactly rpc_done_fn's shape (src/rpc/rpc.h), so an RPC transport passes it straight on:
 * status 0 and error NULL with the reply in body, else a failure (the asker gets SERVFAIL). */
typedef void (*dns_remote_done_fn)(void *arg, int status, const char *error,
                                   const uint8_t *body, size_t len);

/* How an agent reaches a server. send: delivers `body` (borrowed for the call) to the
 * DNS_REMOTE_METHOD of a server of datacenter dc (NULL: of this agent's datacenter) and later
 * -- or even before returning -- calls done(arg, ...) exactly once, unless cancel(ctx,
 * *handle) ran first; returns 0, or a negative CC_E* code when nothing was sent (done must
 * then not run; CC_ENOTFOUND: no server of dc can be reached). cancel: done must never run
 * after it. */
struct dns_remote_transport {
  void *ctx;
  int (*send)(void *ctx, const char *dc, const uint8_t *body, size_t len,
              dns_remote_done_fn done, void *arg, void **handle);
  void (*cancel)(void *ctx, void *handle);
};

/* ---- Server side, with relaying ---- */

/* What answers DNS_REMOTE_METHOD on a server: the engine for its own datacenter, the
 * transport (send with a dc) for other datacenters' names. */
struct dns_remote_server;

/* e and t->ctx are borrowed and must outlive the result; t is copied (NULL or without send:
 * no other datacenter can be reached, such names get an error). A relayed question keeps the
 * asker's WAN flag: the agent that was asked decides translation, as in Consul. */
struct dns_remote_server *dns_remote_server_new(struct dns_engine *e,
                                                const struct dns_remote_transport *t);
/* Answers one request body (borrowed for the call): done(arg, ...) runs exactly once -- before
 * this returns, or later for a question relayed to another datacenter -- unless
 * dns_remote_server_cancel(s, *handle) runs first. *handle is NULL once done has run. done
 * gets status 0 with the reply in body, status 0 with an error sentence (also when 4096
 * relays are already in flight), or a transport or CC_ESHUTDOWN status. */
void dns_remote_serve(struct dns_remote_server *s, const uint8_t *body, size_t len,
                      dns_remote_done_fn done, void *arg, void **handle);
/* The asker went away: the relay's request is cancelled and done never runs. */
void dns_remote_server_cancel(struct dns_remote_server *s, void *handle);
/* Relays in flight. */
unsigned dns_remote_server_pending(const struct dns_remote_server *s);
/* Cancels every relay in flight (each done gets CC_ESHUTDOWN) and frees s. */
void dns_remote_server_free(struct dns_remote_server *s);

/* ---- Asking side ---- */

struct dns_remote_client;

/* Copies the transport; ctx is borrowed and must outlive the client. */
struct dns_remote_client *dns_remote_client_new(const struct dns_remote_transport *t);
/* Questions say this agent translates WAN addresses (its translate_wan_addrs), so that names
 * of other datacenters are answered with them. */
void dns_remote_client_set_wan_addrs(struct dns_remote_client *c, bool on);
/* Fills an upstream for dns_server_set_upstream or, since its start passes the datacenter on
 * to send, for dns_server_set_dc_upstream (timeout_ms 0: server.h's 5 s). */
void dns_remote_client_upstream(struct dns_remote_client *c, struct dns_upstream *out);
/* Queries in flight (started, neither answered nor cancelled). */
unsigned dns_remote_client_pending(const struct dns_remote_client *c);
/* Frees the client once the DNS server using it is closed (closing cancels every query). */
void dns_remote_client_free(struct dns_remote_client *c);

#endif
