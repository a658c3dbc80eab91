/* events.c -- serf user events in, Consul user events kept (see events.h). */
#include "agent/events.h"

#include <jansson.h>
#include <string.h>

#include "agent/exec.h"
#include "lib/alloc.h"
#include "lib/log.h"
#include "local/local.h"

#define MOD "agent"

void agent_events_init(struct agent_events *e, const char *node_name, struct local_agent *local,
                       bool disable_remote_exec, struct agent_exec *exec)
{
  event_ring_init(&e->ring);
  e->node_name = node_name;
  e->local = local;
  e->disable_remote_exec = disable_remote_exec;
  e->exec = exec;
}

void agent_events_free(struct agent_events *e)
{
  event_ring_free(&e->ring);
}

/* The local services as the filters see them (Consul's a.State.Services(): ID -> tags). */
static bool agent_events_match(struct agent_events *e, const struct event_user *ev)
{
  if (!ev->service_filter[0] || !e->local)
    return event_filter_match(ev, e->node_name, NULL, 0);
  json_t *svcs = local_services_json(e->local);
  size_t n = json_object_size(svcs), i = 0;
  struct event_service *list = xcalloc(n + 1, sizeof *list);
  const char **tags = NULL;
  size_t ntags_total = 0;
  const char *id;
  json_t *svc;
  json_object_foreach(svcs, id, svc) ntags_total += json_array_size(json_object_get(svc, "Tags"));
  tags = xcalloc(ntags_total + 1, sizeof *tags);
  size_t t = 0;
  json_object_foreach(svcs, id, svc) {
    json_t *jt = json_object_get(svc, "Tags");
    list[i].id = id;
    list[i].tags = &tags[t];
    size_t k;
    json_t *tag;
    json_array_foreach(jt, k, tag) {
      if (json_is_string(tag)) tags[t + list[i].ntags++] = json_string_value(tag);
    }
    t += list[i].ntags;
    i++;
  }
  bool ok = event_filter_match(ev, e->node_name, list, n);
  free(tags);
  free(list);
  json_decref(svcs);
  return ok;
}

void agent_events_on_serf(struct agent_events *e, const struct gossip_user_event *sev)
{
  size_t plen = strlen(EVENT_SERF_PREFIX);
  if (strncmp(sev->name, EVENT_SERF_PREFIX, plen) != 0) return; /* not a Consul event */
  struct event_user *ev = event_decode(sev->payload, sev->payload_len);
  if (!ev) {
    log_error(MOD, "Failed to decode event: %s", sev->name);
    return;
  }
  ev->ltime = sev->ltime;
  if (ev->version > EVENT_VERSION)
    log_warn(MOD, "Event version %lld may have unsupported features (%s)",
             (long long)ev->version, ev->name);
  if (!agent_events_match(e, ev)) {
    event_user_free(ev);
    return;
  }
  if (strcmp(ev->name, EVENT_REXEC_NAME) == 0) {
    if (e->disable_remote_exec || !e->exec) {
      log_info(MOD, "ignoring remote exec event (%s), disabled.", ev->id);
    } else {
      agent_exec_handle(e->exec, ev->payload, ev->payload_len);
    }
    event_user_free(ev);
    return;
  }
  log_debug(MOD, "new event: %s (%s)", ev->name, ev->id);
  event_ring_add(&e->ring, ev);
}
