/* events.h -- the agent's side of Consul's user events (agent/user_event.go handleEvents,
 * shouldProcessUserEvent, ingestUserEvent): serf user events named "consul:event:<name>" are
 * decoded, checked against this agent's node name and services, and kept in the ring that
 * /v1/event/list reads; the "_rexec" event goes to the remote-exec runner instead (or is
 * ignored when remote exec is disabled, Consul's default). */
#ifndef CONCORD_AGENT_EVENTS_H
#define CONCORD_AGENT_EVENTS_H

#include <stdbool.h>

#include "event/event.h"
#include "gossip/gossip.h"

struct local_agent;
struct agent_exec;

struct agent_events {
  struct event_ring ring;
  const char *node_name;     /* borrowed: the agent's config */
  struct local_agent *local; /* borrowed; NULL: no services */
  bool disable_remote_exec;
  struct agent_exec *exec;   /* borrowed; NULL: remote exec events are dropped */
};

/* node_name and local are borrowed and must outlive e. */
void agent_events_init(struct agent_events *e, const char *node_name, struct local_agent *local,
                       bool disable_remote_exec, struct agent_exec *exec);
/* Frees the ring (after the HTTP server has closed: parked lists wait on it). */
void agent_events_free(struct agent_events *e);
/* gossip's on_user_event: takes what is ours, ignores the rest. ev is only read. */
void agent_events_on_serf(struct agent_events *e, const struct gossip_user_event *ev);

#endif
