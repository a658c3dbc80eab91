/* server.h -- the DNS engine on a libuv loop: UDP and TCP listeners on one port (Consul's
 * 8600), and forwarding of names outside the domain to the configured recursors.
 *
 * UDP: one datagram in, one out; a reply the socket cannot take right away is dropped (the
 * client retries, as it would after a lost packet). TCP (RFC 7766): 2-byte length framing,
 * several queries per connection answered in order, an idle timeout and a connection limit.
 * Forwarding: the query goes to each recursor in turn over UDP with a fresh socket and a
 * random ID, each with recursor_timeout; the first answer that is not SERVFAIL/REFUSED/...
 * (NOERROR or NXDOMAIN, as Consul) is relayed, else the client gets SERVFAIL.
 *
 * Upstream (optional, dns_server_set_upstream): an agent without a catalog (a client) sends
 * the questions the catalog answers -- names under domain/alt_domain, and reverse names under
 * arpa. -- to a server asynchronously; the rest is handled as above. The dc upstream
 * (optional, dns_server_set_dc_upstream; servers) gets the names the engine hands back as
 * DNS_REMOTE_DC, for a server of that datacenter to answer; without one they get SERVFAIL.
 * Upstream queries share the max_forwards cap and, on TCP, the one-query-at-a-time ordering
 * with forwards.
 *
 * Everything runs on the loop given to dns_server_new; nothing here is thread-safe. */
#ifndef CONCORD_DNS_SERVER_H
#define CONCORD_DNS_SERVER_H

#include <stddef.h>
#include <uv.h>

#include "dns/dns.h"

struct dns_server_config {
  unsigned max_tcp_connections; /* more are closed at once */
  unsigned tcp_idle_timeout_ms; /* a connection with no query for this long is closed */
  unsigned max_forwards;        /* queries being forwarded at once; more get SERVFAIL */
};
/* 512 connections, miekg/dns's 8 s idle timeout (what Consul runs), 1024 forwards. */
void dns_server_config_defaults(struct dns_server_config *cfg);

struct dns_server;

/* The engine is borrowed and must outlive the server. Reads the recursors from the engine's
 * config; returns NULL with a sentence in errbuf if one is not an address. */
struct dns_server *dns_server_new(uv_loop_t *loop, struct dns_engine *engine,
                                  const struct dns_server_config *cfg, char *errbuf,
                                  size_t errlen);
/* Listens on ip:port for UDP and TCP. Port 0 picks a port free for both. Returns 0 or a
 * negative libuv error code, with a sentence in errbuf. May be called once per server. */
int dns_server_listen(struct dns_server *s, const char *ip, int port, char *errbuf,
                      size_t errlen);
/* The port listened on, or -1. */
int dns_server_port(const struct dns_server *s);
/* Closes everything (listeners, connections, forwards in flight); cb runs when all handles
 * are closed and the server is freed. */
void dns_server_close(struct dns_server *s, void (*cb)(void *arg), void *arg);

/* ---- Upstream ---- */

/* One outstanding upstream query (owned by the server; a handle for the upstream). */
struct dns_upstream_query;

struct dns_upstream {
  void *ctx;
  /* Starts answering `query` (qlen bytes with the client's ID; borrowed for the call) for a
   * client on this transport: the reply must fit `tcp`/`max_size` as dns_engine_answer's
   * struct dns_request says (client: the asker's address, may be NULL). dc: NULL for the
   * upstream, the datacenter the question names for the dc upstream (borrowed for the call).
   * Returns 0, then must call dns_server_upstream_reply(q, ...) exactly once -- now or later
   * -- unless cancel runs first; or a negative CC_E* code (the client gets SERVFAIL, reply
   * must not be called). *qdata is handed to cancel. */
  int (*start)(void *ctx, struct dns_upstream_query *q, const uint8_t *query, size_t qlen,
               bool tcp, size_t max_size, const struct sockaddr *client, const char *dc,
               void **qdata);
  /* The query ended without a reply (timeout, the TCP client left, the server is closing):
   * q is gone; free what qdata holds and never reply to it. Runs on the loop, never from
   * inside start or dns_server_upstream_reply. */
  void (*cancel)(void *ctx, void *qdata);
  unsigned timeout_ms; /* then SERVFAIL and cancel; 0 means 5000 */
};

/* Sets (copies) or, with NULL, clears the upstream. Clear it only with nothing outstanding
 * (before listening, or in the close callback's stead: dns_server_close cancels them). */
void dns_server_set_upstream(struct dns_server *s, const struct dns_upstream *up);
/* The same for the dc upstream (names of other datacenters; servers). */
void dns_server_set_dc_upstream(struct dns_server *s, const struct dns_upstream *up);

/* The answer to q: `reply` (len bytes, borrowed for the call) a complete DNS message, or NULL
 * for SERVFAIL. The server puts the client's ID back, sets RA as this agent's recursors say,
 * checks that the reply is a response that fits the client's transport (a UDP reply that
 * does not is replaced by an empty one with TC, so the client retries over TCP), and for a
 * reverse name that came back NXDOMAIN tries this agent's recursors, as Consul does. */
void dns_server_upstream_reply(struct dns_upstream_query *q, const uint8_t *reply, size_t len);

/* Parses a recursor as Consul's recursorAddr does: "ip", "ip:port", "[v6]:port" or a bare
 * IPv6 address; the port defaults to 53. Returns 0 or -1. */
int dns_parse_recursor(const char *text, struct sockaddr_storage *out);

#endif
