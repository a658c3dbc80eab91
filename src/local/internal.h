/* internal.h -- what the files of src/local/ share: the service and check records, the
 * definitions they are made from, and the hooks between state, runners, sync and disk.
 * Not used outside src/local/ (except by its unit tests). */
#ifndef CONCORD_LOCAL_INTERNAL_H
#define CONCORD_LOCAL_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lib/map.h"
#include "local/local.h"
#include "state/catalog.h"

/* Caps on what one definition may carry (every input size is capped). */
#define LOCAL_MAX_ID STATE_CAT_MAX_NAME
#define LOCAL_MAX_STRING STATE_CAT_MAX_STRING
#define LOCAL_MAX_LIST 256   /* tags, args, checks per service, header values */
#define LOCAL_MAX_META 64    /* Consul's metaMaxKeyPairs */
#define LOCAL_MAX_BODY (1u << 20)

/* Consul's check statuses (api.Health*). */
#define LOCAL_PASSING "passing"
#define LOCAL_WARNING "warning"
#define LOCAL_CRITICAL "critical"
#define LOCAL_MAINT "maintenance"

/* Maintenance checks (structs.NodeMaint, ServiceMaintPrefix and the default reasons). */
#define LOCAL_NODE_MAINT "_node_maintenance"
#define LOCAL_SERVICE_MAINT_PREFIX "_service_maintenance:"
#define LOCAL_NODE_MAINT_REASON \
  "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
#define LOCAL_SERVICE_MAINT_REASON \
  "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."

enum local_source { LOCAL_SRC_CONFIG, LOCAL_SRC_API };

/* ---- Definitions (what a registration says) ---- */

/* Consul's CheckType plus the CheckDefinition fields (ID, ServiceID, Token). Strings are owned
 * and never NULL ("" when absent); durations in nanoseconds. */
struct local_check_def {
  char *id, *name, *status, *notes, *service_id, *token;
  char **args;
  size_t n_args;
  char *http, *method, *body, *tcp, *udp, *h2ping, *grpc, *os_service, *docker_id, *shell;
  char *tls_server_name, *alias_node, *alias_service;
  json_t *header; /* object: name -> [values]; NULL when none */
  bool tls_skip_verify, disable_redirects, grpc_use_tls, h2ping_use_tls;
  int64_t interval, timeout, ttl, dcsa;
  int64_t success_before_passing, failures_before_warning, failures_before_critical;
  int64_t output_max_size;
};

/* Consul's ServiceDefinition (the NodeService half plus Token); strings owned, never NULL. */
struct local_service_def {
  char *kind, *id, *name, *address, *socket_path, *token;
  char **tags;
  size_t n_tags;
  bool tags_null;
  struct state_svc_addr *tagged; /* key/address owned */
  size_t n_tagged;
  struct state_pair *meta; /* sorted by key, owned */
  size_t n_meta;
  bool meta_null;
  int64_t port;
  bool has_weights;
  int64_t weight_passing, weight_warning;
  bool enable_tag_override;
  char *proxy, *connect; /* canonical JSON texts or NULL */
  struct local_check_def **checks;
  size_t n_checks;
};

struct local_defs {
  struct local_service_def **services;
  size_t n_services;
  struct local_check_def **checks;
  size_t n_checks;
};

/* Decoders (defs.c). Each takes a JSON value, returns a new definition the caller frees, or
 * NULL with Go's decode message in err ("json: cannot unmarshal ..."). `what` names the Go
 * type in messages. */
struct local_service_def *local__service_def_decode(const json_t *v, char *err, size_t errlen);
struct local_check_def *local__check_def_decode(const json_t *v, const char *what, char *err,
                                                size_t errlen);
void local__service_def_free(struct local_service_def *d);
void local__check_def_free(struct local_check_def *d);
struct local_check_def *local__check_def_copy(const struct local_check_def *d);
/* CheckType.Validate: 0, or -1 with Consul's sentence. */
int local__check_def_validate(const struct local_check_def *d, char *err, size_t errlen);
bool local__check_def_empty(const struct local_check_def *d);
/* CheckType.Type(): "http", "ttl", ... or "". */
const char *local__check_def_type(const struct local_check_def *d);
bool local__check_def_is_script(const struct local_check_def *d);
/* The definition as the JSON a registration takes (for the data dir): a new object. */
json_t *local__check_def_json(const struct local_check_def *d);
json_t *local__service_def_json(const struct local_service_def *d);
/* structs.HealthCheckDefinition as canonical compact JSON (what the catalog keeps): a new
 * string the caller frees, or NULL when empty. */
char *local__definition_text(const struct local_check_def *d);
/* ValidateServiceMetadata / ValidateWeights / ipaddr.IsAny with Consul's messages. */
int local__meta_validate(const struct state_pair *meta, size_t n, char *err, size_t errlen);
bool local__status_valid(const char *s);

/* ---- Records (what the agent has) ---- */

struct local_svc {
  struct local_service_def *def; /* NULL for a catalog-only entry awaiting deletion */
  char *id;
  enum local_source source;
  bool in_sync, deleted;
  bool inflight; /* a sync of it is under way */
  uint64_t gen; /* bumped by every change; a sync marks in_sync only for the gen it sent */
};

struct local_runner;

struct local_chk {
  char *id;
  /* structs.HealthCheck fields (owned, never NULL unless `deleted` stub) */
  char *name, *status, *notes, *output, *service_id, *service_name, *type;
  char *interval, *timeout; /* Go duration strings as Consul stores them */
  char **service_tags;
  size_t n_service_tags;
  bool service_tags_null;
  char *definition; /* HealthCheckDefinition JSON text or NULL */
  struct local_check_def *def; /* NULL: a maintenance check (or a stub), nothing runs */
  char *token;
  enum local_source source;
  bool in_sync, deleted;
  bool inflight;
  uint64_t gen;
  uint64_t critical_since; /* uv_now when it went critical; 0 when not critical */
  uint64_t reap_after_ms;  /* DeregisterCriticalServiceAfter, 0: never */
  uint64_t defer_until;    /* output-only change waiting to be synced (0: none) */
  struct local_runner *runner;
};

struct local_watch {
  struct local_watch *next, **pprev;
  void (*fn)(void *arg);
  void *arg;
};

struct local_agent {
  uv_loop_t *loop;
  struct local_config cfg; /* strings owned (the copies below) */
  char *node_name, *node_id, *datacenter, *advertise, *data_dir;
  struct state_store *store;
  struct consensus *consensus;
  struct local_remote remote;
  struct map services; /* id -> struct local_svc */
  struct map checks;   /* id -> struct local_chk */
  bool loaded, closing;
  uv_timer_t tick;       /* 1 s: reaping, deferred outputs, full sync, retries, leadership */
  uv_timer_t sync_soon;  /* a partial sync on the next loop turn */
  uv_timer_t alias_soon; /* local alias checks re-evaluated on the next loop turn */
  uv_timer_t notify_soon;/* local watches fired on the next loop turn */
  int open_handles;
  void (*close_cb)(void *arg);
  void *close_arg;
  uint64_t next_full_sync, next_reap, retry_at;
  bool was_leader;
  size_t sync_inflight;
  size_t n_defer;  /* checks with defer_until set */
  size_t n_alias;  /* alias runners */
  struct local_watch *watches;
  bool watches_dirty;
  struct local_sync_op *sync_ops; /* in flight; detached at close */
  void *fetching;                 /* remote.fetch in flight (its handle) */
};

/* ---- state.c: changes the runners and the sync report ---- */

/* State.UpdateCheck: a runner's result (status/output already thresholded). */
void local__update_check(struct local_agent *la, struct local_chk *c, const char *status,
                         const char *output);
/* Something changed: partial sync soon, local watches and alias checks notified. */
void local__changed(struct local_agent *la, bool statuses);
struct local_chk *local__chk(struct local_agent *la, const char *id);
struct local_svc *local__svc(struct local_agent *la, const char *id);
/* Frees a record that is no longer in the tables (stops its runner). */
void local__chk_free(struct local_agent *la, struct local_chk *c);
void local__svc_free(struct local_svc *s);
void local__handle_closed(uv_handle_t *h);

/* ---- runner.c: running checks ---- */

/* Consul's StatusHandler: successive results must reach the thresholds before the status
 * changes. Pure, so unit tests drive it directly. */
struct local_status_handler {
  int64_t success_before_passing, success_counter;
  int64_t failures_before_warning, failures_before_critical, failures_counter;
};
void local__status_handler_init(struct local_status_handler *h, int64_t success_before_passing,
                                int64_t failures_before_warning,
                                int64_t failures_before_critical);
/* Feeds one raw result; returns the status to report ("passing", "warning", "critical") or
 * NULL when nothing is reported yet. */
const char *local__status_handler_update(struct local_status_handler *h, const char *status);

/* Starts the runner of c (c->def set). Returns 0 or -1 with a message (unknown type). */
int local__runner_start(struct local_agent *la, struct local_chk *c, char *err, size_t errlen);
/* Stops and detaches the runner: a script in flight is killed, nothing reports after this. */
void local__runner_stop(struct local_agent *la, struct local_chk *c);
/* A TTL check's SetStatus: resets the TTL; returns the (possibly truncated) output, owned by
 * the caller. */
char *local__runner_ttl_set(struct local_agent *la, struct local_chk *c, const char *status,
                            const char *output);
/* Re-evaluates every alias check that reads the local state. */
void local__runner_alias_all(struct local_agent *la);
bool local__runner_is_ttl(const struct local_chk *c);
bool local__runner_is_script(const struct local_chk *c);

/* ---- sync.c: anti-entropy ---- */

void local__sync_soon(struct local_agent *la);
void local__sync_full(struct local_agent *la);
/* At close: in-flight syncs forget la (their callbacks may come after it is freed). */
void local__sync_detach_all(struct local_agent *la);
/* The default catalog interface (consensus + local store). */
void local__remote_default(struct local_agent *la, struct local_remote *out);

/* ---- persist.c: the data dir ---- */

/* All return 0 or -1 with a sentence; a NULL data_dir makes them no-ops returning 0. */
int local__persist_service(struct local_agent *la, const struct local_service_def *d,
                           enum local_source src, char *err, size_t errlen);
int local__persist_check(struct local_agent *la, const struct local_check_def *d,
                         const struct local_chk *c, enum local_source src, char *err,
                         size_t errlen);
void local__purge_service(struct local_agent *la, const char *id);
void local__purge_check(struct local_agent *la, const char *id);
/* TTL checks: status/output with an expiry (now + TTL), restored at start if not expired. */
void local__persist_check_state(struct local_agent *la, const struct local_chk *c, int64_t ttl_ns);
int local__load_check_state(struct local_agent *la, const char *id, char **status, char **output);
/* Calls fn for every persisted service / check (decoded definition, source). */
typedef void (*local_restore_svc_fn)(struct local_agent *la, struct local_service_def *d,
                                     enum local_source src, const char *file);
/* interval/timeout: the strings the check showed when it was persisted ("" or "0s"). */
typedef void (*local_restore_chk_fn)(struct local_agent *la, struct local_check_def *d,
                                     enum local_source src, const char *file,
                                     const char *interval, const char *timeout);
void local__restore(struct local_agent *la, local_restore_svc_fn svc_fn,
                    local_restore_chk_fn chk_fn);

/* Small helpers shared by the files. */
char *local__strdup0(const char *s); /* xstrdup(s ? s : "") */
void local__set(char **dst, const char *s);

#endif
