/* wan_dcs.h -- the datacenters a server knows through the WAN pool, and their servers.
 *
 * Consul's router keeps, per datacenter, the servers the WAN pool shows (members tagged
 * role=consul, named "<node>.<dc>"); a request for another datacenter goes to one of them.
 * This is that map, fed with WAN member events: a server is added when it joins, marked
 * failed or alive as gossip says, and dropped when it leaves or is reaped; a datacenter
 * lasts while it has any server. Pure bookkeeping, no I/O, so unit tests drive it. */
#ifndef CONCORD_AGENT_WAN_DCS_H
#define CONCORD_AGENT_WAN_DCS_H

#include <stdbool.h>
#include <stddef.h>

#include "gossip/gossip.h"

struct wan_dcs;

/* local_dc is copied: it sorts first in wan_dcs_names. */
struct wan_dcs *wan_dcs_new(const char *local_dc);
void wan_dcs_free(struct wan_dcs *d);

/* Feed every WAN member event. Members that are not servers (no role=consul, dc and port
 * tags) are ignored. */
void wan_dcs_on_member(struct wan_dcs *d, enum gossip_event ev, const struct gossip_member *m);

/* Every known datacenter (the local one always), the local one first, then by name
 * (Consul sorts by round-trip time; we have no coordinates). *out is an array of n strings,
 * all owned by the caller: free with wan_dcs_names_free. */
size_t wan_dcs_names(const struct wan_dcs *d, char ***out);
void wan_dcs_names_free(char **names, size_t n);

/* Whether dc has any server (alive or failed). */
bool wan_dcs_known(const struct wan_dcs *d, const char *dc);
/* The RPC address ("ip:port") of an alive server of dc, taken in turn, or NULL when none is
 * alive. Lent until the next call into d. */
const char *wan_dcs_pick(struct wan_dcs *d, const char *dc);
/* A request to the server at addr failed: the next pick starts after it. */
void wan_dcs_failed(struct wan_dcs *d, const char *dc, const char *addr);

#endif
