/* catalog.h -- the catalog tables of the state store: nodes, the services they run and the
 * health checks on both, with Consul's rules (agent/consul/state/catalog.go, catalog_ce.go).
 *
 * Names are case-insensitive as in Consul's memdb indexes (node names, service names and IDs,
 * check IDs are looked up lowercased); rows keep the case they were registered with.
 *
 * Indexes. Besides the table indexes "nodes", "services" and "checks", Consul keeps an index
 * per service name ("service.<name>") and per node ("node.<name>"), and the index of the last
 * time any service or node disappeared ("service_last_extinction", "node_last_extinction").
 * state_table_index() answers all of them (names lowercased). They move as catalog_ce.go
 * moves them:
 *   - a node write:     nodes, node.<n>, and service.<s> of every service on the node;
 *   - a service write:  services, service.<s>, nodes, node.<n>;
 *   - a check write:    checks; plus service.<s> of its service, or of every service on the
 *                       node for a node-level check;
 *   - deletes the same, and the last instance of a service going drops service.<s> and sets
 *     service_last_extinction (node_last_extinction for a node).
 * A write that leaves a row as it is (Consul's IsSame) moves nothing and fires nothing, and
 * SkipNodeUpdate leaves an existing node alone.
 *
 * Watches. Every index above is also a STATE_WATCH_TABLE name: moving an index fires the
 * table watches of that name. So a blocking /v1/health/service/web watches "service.web"
 * and is not woken by a change to "db" (Consul gets the same effect by watching the index
 * table entry, catalog.go maxIndexAndWatchChForService).
 *
 * Pointers returned by reads borrow the store: valid until the next write. */
#ifndef CONCORD_STATE_CATALOG_H
#define CONCORD_STATE_CATALOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct state_store;

/* Caps on what one registration may carry (every input size is capped). Consul itself caps
 * only service metadata (64 pairs, keys 128 bytes, values 512 bytes: structs.go). */
#define STATE_CAT_MAX_NAME 1024            /* node name, service name/ID, check ID, kind */
#define STATE_CAT_MAX_STRING (64 * 1024)   /* addresses, notes, meta values, other strings */
#define STATE_CAT_MAX_OUTPUT (1024 * 1024) /* a check's Output */
#define STATE_CAT_MAX_JSON (64 * 1024)     /* Definition, Proxy, Connect, Locality as JSON */
#define STATE_CAT_MAX_LIST 1024            /* tags, map entries, checks in one request */

/* One entry of a string map (Meta, TaggedAddresses); maps are kept sorted by key, as Go
 * prints them. */
struct state_pair {
  const char *key;
  const char *value;
};

/* One entry of a service's TaggedAddresses (map[string]ServiceAddress). */
struct state_svc_addr {
  const char *key;
  const char *address;
  int64_t port;
};

/* A string map that remembers whether it was null (a Go nil map prints null and is not
 * DeepEqual to an empty one). */
struct state_map {
  const struct state_pair *items;
  size_t n;
  bool null;
};

struct state_node {
  const char *id; /* node UUID or "" */
  const char *name;
  const char *address;
  const char *datacenter;
  struct state_map tagged_addresses;
  struct state_map meta;
  const char *locality; /* JSON object text, or NULL */
  uint64_t create_index, modify_index;
  /* Address parsed once when the row is written, for the DNS path: addr_family is 4 or 16
   * (addr_ip holds the bytes, network order, IPv4-mapped IPv6 kept as 16) or 0 when Address
   * is empty or not an IP (a host name). */
  uint8_t addr_family;
  uint8_t addr_ip[16];
};

struct state_service {
  const struct state_node *node; /* the node it runs on */
  const char *kind;              /* "" for a typical service */
  const char *id;
  const char *name;
  const char *const *tags;
  size_t n_tags;
  bool tags_null;
  const char *address;
  const struct state_svc_addr *tagged_addresses;
  size_t n_tagged;
  struct state_map meta;
  int64_t port;
  const char *socket_path;
  int64_t weight_passing, weight_warning;
  bool enable_tag_override;
  const char *proxy;    /* ConnectProxyConfig as JSON text; NULL: the empty one */
  const char *connect;  /* ServiceConnect as JSON text; NULL: {} */
  const char *locality; /* JSON object text, or NULL */
  uint64_t create_index, modify_index;
  uint8_t addr_family;  /* ServiceAddress parsed once, as state_node's */
  uint8_t addr_ip[16];
};

struct state_check {
  const char *node; /* as registered */
  const char *check_id;
  const char *name;
  const char *status; /* "passing", "warning", "critical" (or what was registered) */
  const char *notes;
  const char *output;
  const char *service_id;   /* "" for a node-level check */
  const char *service_name; /* copied from the service when the check was written */
  const char *const *service_tags;
  size_t n_service_tags;
  bool service_tags_null;
  const char *type;
  const char *interval;
  const char *timeout;
  int64_t exposed_port;
  const char *definition; /* HealthCheckDefinition as JSON text; NULL: {} */
  uint64_t create_index, modify_index;
};

/* ---- Registration requests (Consul's structs.RegisterRequest / DeregisterRequest) ---- */

struct state_register_service {
  const char *kind, *id, *name; /* id "" takes the name (Consul's Catalog.Register) */
  const char *const *tags;
  size_t n_tags;
  bool tags_null;
  const char *address;
  const struct state_svc_addr *tagged_addresses;
  size_t n_tagged;
  struct state_map meta;
  int64_t port;
  const char *socket_path;
  bool has_weights; /* absent or invalid weights become {Passing: 1, Warning: 1} */
  int64_t weight_passing, weight_warning;
  bool enable_tag_override;
  const char *proxy, *connect, *locality; /* JSON texts or NULL */
};

struct state_register_check {
  const char *node;     /* "" or NULL: the request's node */
  const char *check_id; /* "" or NULL: the name */
  const char *name;
  const char *status; /* "" or NULL: critical */
  const char *notes;
  const char *output;
  const char *service_id;
  const char *type;
  const char *interval;
  const char *timeout;
  int64_t exposed_port;
  const char *definition; /* JSON text or NULL */
  /* Only read by snapshot restore: a check keeps the service name and tags it was written
   * with; a registration copies them from the service. */
  const char *service_name;
  const char *const *service_tags;
  size_t n_service_tags;
  bool service_tags_null;
};

struct state_register {
  const char *id; /* node UUID or "" / NULL */
  const char *node;
  const char *address;
  const char *datacenter;
  struct state_map tagged_addresses;
  struct state_map node_meta;
  const char *locality;
  bool skip_node_update;
  const struct state_register_service *service; /* NULL: none */
  const struct state_register_check *checks;
  size_t n_checks;
};

struct state_deregister {
  const char *node;
  const char *service_id; /* non-empty: delete this service (and its checks) */
  const char *check_id;   /* else non-empty: delete this check; else the whole node */
};

/* ---- Writes (the FSM calls these with the entry's Raft index) ---- */

/* Consul's ensureRegistrationTxn: creates or updates the node (unless SkipNodeUpdate and it
 * exists), the service and the checks, all or nothing. Defaults as Consul's Catalog.Register:
 * service ID from its name, check Node from the request, CheckID from the check name, Status
 * critical, Type from the definition. Returns 0, or with a sentence in err (may be NULL):
 * CC_EINVAL for a malformed request (no node, a service without a name, a check of another
 * node, an over-cap field, bad service metadata), CC_ENOTFOUND for a check whose service is
 * neither registered nor in the request ("Missing service registration"), CC_ECONFLICT when
 * the node ID or name belongs to another live node. Nothing changes on error. The request is
 * only read during the call. */
int state_catalog_register(struct state_store *s, uint64_t index, const struct state_register *req,
                           char *err, size_t errlen);

/* The checks state_catalog_register would make, without writing: the HTTP layer answers
 * with Consul's message before proposing the command. */
int state_catalog_register_validate(struct state_store *s, const struct state_register *req,
                                    char *err, size_t errlen);

/* Consul's FSM applyDeregister: a service (with its checks), else a check, else the whole
 * node (with its services and checks). Deleting what does not exist succeeds and changes
 * nothing. Returns 0, or CC_EINVAL (no node, index below one applied before). */
int state_catalog_deregister(struct state_store *s, uint64_t index,
                             const struct state_deregister *req, char *err, size_t errlen);

/* ---- Reads ---- */

size_t state_node_count(const struct state_store *s);
size_t state_service_count(const struct state_store *s); /* instances */
size_t state_check_count(const struct state_store *s);

/* Case-insensitive lookups; NULL when absent. */
const struct state_node *state_node_get(struct state_store *s, const char *name);
const struct state_node *state_node_get_by_id(struct state_store *s, const char *id);
const struct state_service *state_service_get(struct state_store *s, const char *node,
                                              const char *service_id);
const struct state_check *state_check_get(struct state_store *s, const char *node,
                                          const char *check_id);

/* Iterations call fn until it returns non-zero; fn must not write to the store. */
typedef int (*state_node_fn)(const struct state_node *n, void *arg);
typedef int (*state_service_fn)(const struct state_service *svc, void *arg);
typedef int (*state_check_fn)(const struct state_check *c, void *arg);

/* Every node, by lowercased name. */
void state_node_list(struct state_store *s, state_node_fn fn, void *arg);
/* Every service instance, by (node, service ID) lowercased. */
void state_service_list(struct state_store *s, state_service_fn fn, void *arg);
/* The services of one node (name, case-insensitive), by service ID. */
void state_node_services(struct state_store *s, const char *node, state_service_fn fn,
                         void *arg);
/* The instances of a service name (case-insensitive), by (node, service ID): fills *out
 * with a borrowed array and returns its length (0 and NULL when none). Arrays, so that the
 * DNS path can visit them in random order. */
size_t state_service_instances(struct state_store *s, const char *name,
                               const struct state_service *const **out);
/* Every check, by (node, check ID). */
void state_check_list(struct state_store *s, state_check_fn fn, void *arg);
/* The checks of one node, by check ID. */
void state_node_checks(struct state_store *s, const char *node, state_check_fn fn, void *arg);
/* The checks that apply to one instance: the node's node-level checks, then the service's
 * own, each by check ID (Consul's parseCheckServiceNodes). */
void state_instance_checks(const struct state_service *svc, state_check_fn fn, void *arg);

/* As Consul's CheckServiceNodes.Filter reads statuses: "critical" is critical, "passing"
 * passing, and anything else (warning, or a status Consul does not know) counts as warning:
 * not served when only passing instances are wanted, served otherwise. */
enum state_health {
  STATE_HEALTH_PASSING,
  STATE_HEALTH_WARNING,
  STATE_HEALTH_CRITICAL,
};
/* The worst status among state_instance_checks(svc); passing when it has none. O(1): the
 * node and the instance each keep the aggregate of their own checks, recomputed whenever a
 * check is linked to or unlinked from them (every check write). */
enum state_health state_instance_health(const struct state_service *svc);

/* Asks the CPU to start loading what a DNS answer reads of an instance, ahead of the read
 * (the DNS path visits instances in random order, so the hardware cannot guess): stage 0 the
 * instance's row, 1 its node's row and its own address (reads the instance row: issue stage 0
 * well before), 2 the node's name and address (reads the node row). Never faults, changes
 * nothing. */
void state_instance_prefetch(const struct state_service *svc, int stage);

/* structs.SatisfiesMetaFilters: true when the node's Meta has every key with exactly the
 * filter's value (?node-meta=key:value). */
bool state_node_meta_match(const struct state_node *n, const struct state_pair *filters,
                           size_t n_filters);

/* ---- Consul's JSON shapes (agent/structs, field order as Go prints them) ---- */

/* New references the caller owns. Maps are inserted sorted (Go sorts map keys). These trees
 * are what ?filter evaluates and what the HTTP API prints. */
json_t *state_node_json(const struct state_node *n);         /* structs.Node */
json_t *state_service_node_json(const struct state_service *svc); /* structs.ServiceNode */
json_t *state_node_service_json(const struct state_service *svc); /* structs.NodeService */
json_t *state_check_json(const struct state_check *c);       /* structs.HealthCheck */
/* structs.CheckServiceNode: {"Node", "Service", "Checks"}. */
json_t *state_check_service_node_json(const struct state_service *svc);

#endif
