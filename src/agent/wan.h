/* wan.h -- a server's WAN pool: the second gossip pool, among the servers of every
 * datacenter (Consul's serf WAN, port 8302, memberlist's WAN timings), where a server is
 * "<node>.<dc>" with Consul's server tags. Its member events keep the datacenter map
 * (wan_dcs.h) that /v1/catalog/datacenters lists and ?dc= forwarding picks servers from.
 * -join-wan is joined once at start (failure is fatal, as in Consul); -retry-join-wan every
 * retry_interval_wan until it works. Client agents have no WAN pool. */
#ifndef CONCORD_AGENT_WAN_H
#define CONCORD_AGENT_WAN_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "agent/wan_dcs.h"
#include "gossip/gossip.h"

struct wan;

struct wan_config {
  const char *node_name;      /* the agent's; the member is "<node_name>.<datacenter>" */
  const char *datacenter;
  const char *bind_addr;
  const char *advertise_addr;
  uint16_t port;              /* -serf-wan-port */
  json_t *tags;               /* the agent's LAN tags (borrowed); WAN drops the LAN-only ones */
  const char *const *start_join;  /* NULL-terminated */
  const char *const *retry_join;  /* NULL-terminated */
  uint64_t retry_interval_ms;
  const char *encrypt_key;    /* NULL: no encryption */
  bool encrypt_verify_incoming, encrypt_verify_outgoing;
  const char *keyring_file;   /* <data_dir>/serf/remote.keyring, or NULL */
  /* -join-wan failed: the agent shuts down. */
  void (*on_fatal)(void *arg);
  void *arg;
};

/* Starts the pool. Returns 0 and *out, or -1 (logged). cfg is copied. */
int wan_start(uv_loop_t *loop, const struct wan_config *cfg, struct wan **out);
/* Leaves the pool gracefully; cb runs when done (or at once with an error). */
void wan_leave(struct wan *w, void (*cb)(void *arg), void *arg);
/* Stops gossip and frees w; done runs once the sockets are closed. */
void wan_stop(struct wan *w, void (*done)(void *arg), void *arg);

/* Consul's FloodJoins: every alive server of our datacenter that the LAN pool knows and the WAN
 * pool does not is joined into the WAN pool at its address and "wan_join_port" tag, so one
 * server's -join-wan brings its whole datacenter. wan_flood_attach gives the LAN pool (borrowed;
 * it outlives w) and floods every 60 s (Consul's SerfFloodInterval); wan_flood_notify floods now
 * (the agent calls it when a LAN server joins). At most one flood join is in flight. */
void wan_flood_attach(struct wan *w, struct gossip *lan);
void wan_flood_notify(struct wan *w);

struct gossip *wan_gossip(struct wan *w);
struct wan_dcs *wan_datacenters(struct wan *w);
/* api_ctx.datacenters: every known datacenter as a JSON array of strings (new reference). */
json_t *wan_datacenters_json(void *w);

#endif
