/* watches.h -- the agent's configured watches ("watches" in its config files): each is a
 * watch plan (src/watch) driven by blocking queries against this agent's own HTTP API, with a
 * script or HTTP handler run on the loop once per change. */
#ifndef CONCORD_AGENT_WATCHES_H
#define CONCORD_AGENT_WATCHES_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

struct agent_watches;

/* Starts every watch of `watches` (config's cfg->watches: [{source, index, watch}]) against
 * the agent's HTTP API at http_host:http_port. Returns the set (never NULL; empty when there
 * are none). Watches that fail to parse (they were checked at load) are logged and skipped. */
struct agent_watches *agent_watches_start(uv_loop_t *loop, const json_t *watches,
                                          const char *http_host, int http_port);
/* Replaces the set's watches (SIGHUP): the old ones stop at once (queries and retry timers
 * dropped); a handler already running is left to finish and log, as Consul's Stop leaves it. */
void agent_watches_reload(struct agent_watches *w, const json_t *watches);
/* Stops every watch for shutdown: running handlers are let go too (their handles closed; the
 * processes live on, as Consul's do when the agent exits). The set frees itself. */
void agent_watches_stop(struct agent_watches *w);

#endif
