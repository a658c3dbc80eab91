/* catalog_json.c -- catalog rows as Consul's JSON structs (agent/structs/structs.go of
 * Consul 1.17), as jansson trees: the HTTP API prints them (http_respond_json prints Go's
 * bytes) and ?filter evaluates against them, so both see the same field names.
 *
 * Field order is Go's struct order; `json:",omitempty"` fields are left out when empty, as
 * Go does (NodeService.Kind, TaggedAddresses, Port, SocketPath, Locality; Node.Locality;
 * ServiceNode.ServiceTaggedAddresses). Map keys go in sorted, as Go prints maps. Tags print
 * as [] even when registered as null: every Consul endpoint that returns them replaces nil
 * with an empty list (agent/catalog_endpoint.go, agent/health_endpoint.go). The JSON texts
 * rows keep for Proxy, Connect, Locality and Definition are parsed back here; they were
 * produced by the HTTP layer, so a parse failure only happens for hand-made commands and
 * prints the empty value. */
#include <string.h>

#include "state/catalog.h"

static json_t *str(const char *s) { return json_string(s ? s : ""); }

static json_t *map_json(const struct state_map *m)
{
  if (m->null && m->n == 0) return json_null();
  json_t *o = json_object();
  for (size_t i = 0; i < m->n; i++) json_object_set_new(o, m->items[i].key, str(m->items[i].value));
  return o;
}

static json_t *strs_json(const char *const *v, size_t n)
{
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(a, str(v[i]));
  return a;
}

static json_t *addrs_json(const struct state_svc_addr *v, size_t n)
{
  json_t *o = json_object();
  for (size_t i = 0; i < n; i++) {
    json_t *a = json_object();
    json_object_set_new(a, "Address", str(v[i].address));
    json_object_set_new(a, "Port", json_integer(v[i].port));
    json_object_set_new(o, v[i].key, a);
  }
  return o;
}

/* A stored JSON text, or fallback() when there is none (or it does not parse). */
static json_t *blob(const char *text, json_t *(*fallback)(void))
{
  if (text) {
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    if (j) return j;
  }
  return fallback();
}

/* structs.ConnectProxyConfig with nothing set: Mode, MeshGateway and Expose have no
 * omitempty. */
static json_t *empty_proxy(void)
{
  json_t *o = json_object();
  json_object_set_new(o, "Mode", json_string(""));
  json_object_set_new(o, "MeshGateway", json_object());
  json_object_set_new(o, "Expose", json_object());
  return o;
}

static json_t *empty_object(void) { return json_object(); }
static json_t *null_value(void) { return json_null(); }

static void set_indexes(json_t *o, uint64_t create, uint64_t modify)
{
  json_object_set_new(o, "CreateIndex", json_integer((json_int_t)create));
  json_object_set_new(o, "ModifyIndex", json_integer((json_int_t)modify));
}

json_t *state_node_json(const struct state_node *n)
{
  json_t *o = json_object();
  json_object_set_new(o, "ID", str(n->id));
  json_object_set_new(o, "Node", str(n->name));
  json_object_set_new(o, "Address", str(n->address));
  json_object_set_new(o, "Datacenter", str(n->datacenter));
  json_object_set_new(o, "TaggedAddresses", map_json(&n->tagged_addresses));
  json_object_set_new(o, "Meta", map_json(&n->meta));
  if (n->locality) json_object_set_new(o, "Locality", blob(n->locality, null_value));
  set_indexes(o, n->create_index, n->modify_index);
  return o;
}

json_t *state_service_node_json(const struct state_service *s)
{
  const struct state_node *n = s->node;
  json_t *o = json_object();
  json_object_set_new(o, "ID", str(n->id));
  json_object_set_new(o, "Node", str(n->name));
  json_object_set_new(o, "Address", str(n->address));
  json_object_set_new(o, "Datacenter", str(n->datacenter));
  json_object_set_new(o, "TaggedAddresses", map_json(&n->tagged_addresses));
  json_object_set_new(o, "NodeMeta", map_json(&n->meta));
  json_object_set_new(o, "ServiceKind", str(s->kind));
  json_object_set_new(o, "ServiceID", str(s->id));
  json_object_set_new(o, "ServiceName", str(s->name));
  json_object_set_new(o, "ServiceTags", strs_json(s->tags, s->n_tags));
  json_object_set_new(o, "ServiceAddress", str(s->address));
  if (s->n_tagged)
    json_object_set_new(o, "ServiceTaggedAddresses", addrs_json(s->tagged_addresses, s->n_tagged));
  json_t *w = json_object();
  json_object_set_new(w, "Passing", json_integer(s->weight_passing));
  json_object_set_new(w, "Warning", json_integer(s->weight_warning));
  json_object_set_new(o, "ServiceWeights", w);
  /* ServiceNode.PartialClone makes a fresh map: never null here. */
  struct state_map meta = s->meta;
  meta.null = false;
  json_object_set_new(o, "ServiceMeta", map_json(&meta));
  json_object_set_new(o, "ServicePort", json_integer(s->port));
  json_object_set_new(o, "ServiceSocketPath", str(s->socket_path));
  json_object_set_new(o, "ServiceEnableTagOverride", json_boolean(s->enable_tag_override));
  json_object_set_new(o, "ServiceProxy", blob(s->proxy, empty_proxy));
  json_object_set_new(o, "ServiceConnect", blob(s->connect, empty_object));
  json_object_set_new(o, "ServiceLocality", blob(s->locality, null_value));
  set_indexes(o, s->create_index, s->modify_index);
  return o;
}

json_t *state_node_service_json(const struct state_service *s)
{
  json_t *o = json_object();
  if (s->kind && *s->kind) json_object_set_new(o, "Kind", str(s->kind));
  json_object_set_new(o, "ID", str(s->id));
  json_object_set_new(o, "Service", str(s->name));
  json_object_set_new(o, "Tags", strs_json(s->tags, s->n_tags));
  json_object_set_new(o, "Address", str(s->address));
  if (s->n_tagged)
    json_object_set_new(o, "TaggedAddresses", addrs_json(s->tagged_addresses, s->n_tagged));
  json_object_set_new(o, "Meta", map_json(&s->meta));
  if (s->port) json_object_set_new(o, "Port", json_integer(s->port));
  if (s->socket_path && *s->socket_path) json_object_set_new(o, "SocketPath", str(s->socket_path));
  json_t *w = json_object();
  json_object_set_new(w, "Passing", json_integer(s->weight_passing));
  json_object_set_new(w, "Warning", json_integer(s->weight_warning));
  json_object_set_new(o, "Weights", w);
  json_object_set_new(o, "EnableTagOverride", json_boolean(s->enable_tag_override));
  if (s->locality) json_object_set_new(o, "Locality", blob(s->locality, null_value));
  json_object_set_new(o, "Proxy", blob(s->proxy, empty_proxy));
  json_object_set_new(o, "Connect", blob(s->connect, empty_object));
  json_object_set_new(o, "PeerName", json_string(""));
  set_indexes(o, s->create_index, s->modify_index);
  return o;
}

json_t *state_check_json(const struct state_check *c)
{
  json_t *o = json_object();
  json_object_set_new(o, "Node", str(c->node));
  json_object_set_new(o, "CheckID", str(c->check_id));
  json_object_set_new(o, "Name", str(c->name));
  json_object_set_new(o, "Status", str(c->status));
  json_object_set_new(o, "Notes", str(c->notes));
  json_object_set_new(o, "Output", str(c->output));
  json_object_set_new(o, "ServiceID", str(c->service_id));
  json_object_set_new(o, "ServiceName", str(c->service_name));
  json_object_set_new(o, "ServiceTags", strs_json(c->service_tags, c->n_service_tags));
  json_object_set_new(o, "Type", str(c->type));
  json_object_set_new(o, "Interval", str(c->interval));
  json_object_set_new(o, "Timeout", str(c->timeout));
  json_object_set_new(o, "ExposedPort", json_integer(c->exposed_port));
  json_object_set_new(o, "Definition", blob(c->definition, empty_object));
  set_indexes(o, c->create_index, c->modify_index);
  return o;
}

static int add_check(const struct state_check *c, void *arg)
{
  json_array_append_new(arg, state_check_json(c));
  return 0;
}

json_t *state_check_service_node_json(const struct state_service *s)
{
  json_t *o = json_object();
  json_object_set_new(o, "Node", state_node_json(s->node));
  json_object_set_new(o, "Service", state_node_service_json(s));
  json_t *checks = json_array();
  state_instance_checks(s, add_check, checks);
  json_object_set_new(o, "Checks", checks);
  return o;
}
