/* local.h -- the agent's own services and health checks (Consul's agent/local, agent/checks
 * and the service/check half of agent/agent.go).
 *
 * A Consul agent owns the services and checks of its machine. They come from config files
 * ("service", "services", "check", "checks") or from the HTTP API (/v1/agent/service/register,
 * /v1/agent/check/register); API registrations are persisted in the data dir and restored at
 * start. Checks run here, asynchronously on the loop (HTTP, TCP, UDP, TTL, script, alias), and
 * the agent keeps the catalog's entries for its node in step with its own state
 * (anti-entropy): a prompt partial sync after every change and a periodic full sync that also
 * removes what the catalog has for this node and the agent does not.
 *
 * Everything runs on the loop given to local_agent_new; nothing here is thread-safe. */
#ifndef CONCORD_LOCAL_LOCAL_H
#define CONCORD_LOCAL_LOCAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lib/buf.h"
#include "state/cmd.h"

struct consensus;
struct state_store;
struct local_agent;
struct local_defs;

/* What the agent's configuration decides (the lead maps Consul's config keys onto it). */
struct local_config {
  const char *node_name;      /* required */
  const char *node_id;        /* UUID or "" */
  const char *datacenter;     /* required */
  const char *advertise_addr; /* the node's Address in the catalog */
  const char *data_dir;       /* NULL: nothing is persisted (Consul's -dev) */
  /* enable_script_checks: script checks from config files and the API;
   * enable_local_script_checks: from config files only. Both off by default: script checks
   * plus an open HTTP API are remote code execution. */
  bool enable_script_checks;
  bool enable_local_script_checks;
  bool discard_check_output;               /* discard_check_output */
  uint64_t check_update_interval_ms;       /* check_update_interval: 5 min; 0 syncs every output */
  uint64_t sync_interval_ms;               /* full anti-entropy sync: 60 s */
  uint64_t sync_retry_ms;                  /* a failed or refused sync is retried after: 5 s */
  uint64_t check_reap_interval_ms;         /* check_reap_interval: 30 s */
  uint64_t check_deregister_interval_min_ms; /* check_deregister_interval_min: 1 min */
  uint64_t check_min_interval_ms;          /* checks.MinInterval: 1 s */
  size_t check_output_max_size;            /* check_output_max_size: 4 KiB */
  /* How many agents the cluster has (NULL: one), asked before each full sync: Consul scales
   * the full-sync interval with it so that 10,000 agents do not all sync every minute. */
  size_t (*cluster_size)(void *arg);
  void *cluster_size_arg;
};

/* Consul's ae scaleFactor: the full-sync interval for a cluster of n agents: the interval
 * itself up to 128 agents, then one more interval per doubling (n = 256: x2, 512: x3, ...). */
uint64_t local_sync_interval_scaled(uint64_t interval_ms, size_t n);

/* Consul's defaults; the node fields are left NULL. */
void local_config_defaults(struct local_config *cfg);

/* ---- The catalog side of anti-entropy ----
 *
 * Sync writes go through this interface so that a client agent (or a follower server) sends
 * them to the leader over RPC (agent/forward.c). The default one, used when none is set,
 * proposes through consensus when this server is the leader and reads the local store. */
typedef void (*local_remote_done_fn)(void *arg, int status, const struct state_cmd_result *res);
struct local_remote {
  /* Sends one encoded catalog command (state_cmd_encode_register / _deregister; the bytes are
   * only read during the call). Returns 0 and later calls done exactly once (status 0 with res,
   * or a CC_E* code), or returns a CC_E* code without calling done (CC_ENOTLEADER: retry
   * later). */
  int (*write)(void *ctx, const struct buf *cmd, local_remote_done_fn done, void *arg);
  /* A store holding the catalog (a server's replica), or NULL when none can be read here:
   * the full sync then pushes everything instead of comparing. */
  struct state_store *(*store)(void *ctx);
  /* When store gives NULL (a client agent): fetches what the catalog holds for `node` into a
   * store of its own and calls cb with it (NULL on failure), later, exactly once unless
   * fetch_cancel ran first; the store is the callee's to free after cb returns. Returns 0,
   * or non-zero without calling cb. NULL: the full sync pushes everything, comparing nothing. */
  int (*fetch)(void *ctx, const char *node, void (*cb)(void *arg, struct state_store *st),
               void *arg, void **handle);
  void (*fetch_cancel)(void *ctx, void *handle);
  void *ctx;
};

/* ---- Life ---- */

/* Creates the local state on loop. cfg's strings are copied. store and consensus (either may
 * be NULL on a client agent) are borrowed and must outlive local_agent_close's callback.
 * Nothing runs until local_agent_load. Returns NULL with a sentence in err on a bad config. */
struct local_agent *local_agent_new(uv_loop_t *loop, const struct local_config *cfg,
                                    struct state_store *store, struct consensus *consensus,
                                    char *err, size_t errlen);
/* Replaces the default catalog interface (the struct is copied). */
void local_agent_set_remote(struct local_agent *la, const struct local_remote *remote);

/* Loads the services and checks of the config files (defs, may be NULL) and, the first time,
 * restores the API registrations persisted in the data dir; starts the check runners and
 * anti-entropy. On a later call (reload) the config-file services and checks are replaced by
 * defs' (check statuses carry over, as Consul's reload snapshot does) and the API ones stay.
 * Returns 0, or -1 with Consul's message in err (what was loaded before the failing entry
 * stays loaded). defs is only read. */
int local_agent_load(struct local_agent *la, const struct local_defs *defs, char *err,
                     size_t errlen);

/* Stops every check (killing running scripts), timers and syncs; cb runs once every handle is
 * closed, after which la is freed. Call once. */
void local_agent_close(struct local_agent *la, void (*cb)(void *arg), void *arg);

/* ---- Config files ---- */

/* Service and check definitions collected from config documents. */
struct local_defs *local_defs_new(void);
void local_defs_free(struct local_defs *d);
/* Reads "service", "services", "check" and "checks" from one parsed config document (doc is
 * only read; other keys are ignored). Keys are Consul's, snake_case or CamelCase. Returns 0,
 * or -1 with a sentence naming source in err (nothing of this document is kept then). */
int local_defs_add_config(struct local_defs *d, const json_t *doc, const char *source,
                          char *err, size_t errlen);
size_t local_defs_count(const struct local_defs *d); /* services + checks */

/* ---- The agent HTTP API (api/agent_services.c) ----
 *
 * Each returns 0, or the HTTP status Consul answers with (400, 404, 500) and its message in
 * err. Bodies are only read. token is the request's ACL token ("" when none). */
int local_service_register(struct local_agent *la, const void *body, size_t len,
                           bool replace_existing_checks, const char *token, char *err,
                           size_t errlen);
int local_service_deregister(struct local_agent *la, const char *id, char *err, size_t errlen);
int local_service_maintenance(struct local_agent *la, const char *id, bool enable,
                              const char *reason, char *err, size_t errlen);
int local_node_maintenance(struct local_agent *la, bool enable, const char *reason, char *err,
                           size_t errlen);
int local_check_register(struct local_agent *la, const void *body, size_t len,
                         const char *token, char *err, size_t errlen);
int local_check_deregister(struct local_agent *la, const char *id, char *err, size_t errlen);
/* pass/warn/fail (output is the note) and update: only TTL checks. */
int local_check_update(struct local_agent *la, const char *id, const char *status,
                       const char *output, char *err, size_t errlen);

/* New JSON trees the caller owns, in Consul's shapes: the map ID -> api.AgentService
 * (/v1/agent/services), one AgentService with its ContentHash (/v1/agent/service/<id>; NULL
 * when unknown), and the map ID -> structs.HealthCheck (/v1/agent/checks). Keys are sorted, as
 * Go prints maps. */
json_t *local_services_json(struct local_agent *la);
json_t *local_service_json(struct local_agent *la, const char *id);
json_t *local_checks_json(struct local_agent *la);

/* api.AgentServiceChecksInfo {AggregatedStatus, Service, Checks} for one service
 * (/v1/agent/health/service/id/<id>; NULL when unknown), or an array of them for every service
 * of a name (/v1/agent/health/service/name/<name>; [] when none). New trees the caller owns.
 * AggregatedStatus is "maintenance" when a maintenance check applies, else the worst status
 * of the service's and the node's checks (HealthChecks.AggregatedStatus). */
json_t *local_service_health_json(struct local_agent *la, const char *id);
json_t *local_service_health_by_name_json(struct local_agent *la, const char *name);

/* One-shot notification of any change to the local services or checks (hash-based blocking
 * of /v1/agent/service/<id>). fn runs once, from the loop, after a change; a watch that has
 * not fired is cancelled with local_watch_cancel (which frees it). */
struct local_watch;
struct local_watch *local_watch_add(struct local_agent *la, void (*fn)(void *arg), void *arg);
void local_watch_cancel(struct local_watch *w);

/* Counters for /v1/agent/self ("agent" stats). */
struct local_stats {
  size_t services, checks, check_monitors, check_ttls;
};
void local_agent_stats(const struct local_agent *la, struct local_stats *out);

#endif
