/* internal.h -- what the endpoint files of api/ share: query options, Consul's response
 * headers, writes through Raft, and blocking reads. Not used outside api/. */
#ifndef CONCORD_API_INTERNAL_H
#define CONCORD_API_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "api/api.h"
#include "lib/buf.h"
#include "state/cmd.h"
#include "state/watch.h"

/* Consul's blocking-query bounds (api-docs/features/blocking.mdx). */
#define API_DEFAULT_WAIT_NS (5 * 60 * 1000000000LL)
#define API_MAX_WAIT_NS (10 * 60 * 1000000000LL)

enum api_consistency { API_CONSISTENCY_DEFAULT, API_CONSISTENCY_STALE, API_CONSISTENCY_CONSISTENT };

struct api_query_opts {
  uint64_t min_index; /* ?index=, 0 when absent */
  int64_t wait_ns;    /* ?wait=, clamped to API_MAX_WAIT_NS */
  enum api_consistency mode;
};

/* Parses ?dc ?index ?wait ?stale ?consistent as Consul's parse() does. On bad input answers
 * the request (400 with Consul's message, or 500 "No path to datacenter") and returns -1. */
int api_parse_query_opts(struct api_ctx *ctx, struct http_request *req,
                         struct api_query_opts *opts);

/* Sets X-Consul-Index, X-Consul-KnownLeader, X-Consul-LastContact and
 * X-Consul-Effective-Consistency. */
void api_set_meta_headers(struct api_ctx *ctx, struct http_request *req, uint64_t index,
                          enum api_consistency mode);

/* Answers 500 "No cluster leader" (with X-Consul-KnownLeader false) when this server cannot
 * serve a leader read or a write; returns true if it answered. */
bool api_require_leader(struct api_ctx *ctx, struct http_request *req);

/* Answers 500 "No cluster leader" unconditionally: for barriers that failed because
 * leadership was lost (CC_ENOTLEADER from a callback), where the Raft state may still read
 * "leader" while libraft fails them. */
void api_respond_no_leader(struct http_request *req);

/* Parses a whole unsigned decimal ("?flags=", "?cas="). Returns 0, or -1. */
int api_parse_u64(const char *s, uint64_t *out);

/* Proposes an encoded command. When it has been applied, done() runs with the result (the
 * request is still alive); a failure is answered with 500 by api_write itself. If the client
 * hangs up meanwhile, done() is not called (the command still applies). */
typedef void (*api_write_done_fn)(struct api_ctx *ctx, struct http_request *req,
                                  const struct state_cmd_result *res, uint64_t index);
void api_write(struct api_ctx *ctx, struct http_request *req, const struct buf *cmd,
               api_write_done_fn done);

/* ---- Blocking reads ---- */

#define API_READ_MAX_WATCHES 8
#define API_READ_MAX_HEADERS 4

/* What a read produced. The body is owned by the result; watches name what the read looked
 * at, so that a parked query wakes when any of it changes. */
struct api_read_result {
  int status;               /* 200 or 404 (or an error status with body as message) */
  uint64_t index;           /* Consul's index for this answer; 0 is raised to 1 */
  const char *content_type; /* a static string; NULL for application/json */
  struct buf body;
  struct { const char *name, *value; } headers[API_READ_MAX_HEADERS]; /* static strings */
  int nheaders;
  struct {
    enum state_watch_kind kind;
    char *key; /* owned */
    size_t key_len;
  } watches[API_READ_MAX_WATCHES];
  int nwatches;
  /* The table a read watches instead when it names more than API_READ_MAX_WATCHES things
   * (always correct, just wakes more often); NULL means "kvs". Set before api_read_watch. */
  const char *fallback_table;
};

void api_read_watch(struct api_read_result *res, enum state_watch_kind kind, const char *key,
                    size_t key_len);
void api_read_header(struct api_read_result *res, const char *name, const char *value);

/* Runs a read against the state store. It must depend only on the store and the request's
 * path and query string, because identical parked requests share one re-run. */
typedef void (*api_read_fn)(struct api_ctx *ctx, struct http_request *req,
                            struct api_read_result *res);

/* Serves a read with Consul's consistency modes and blocking semantics: answers at once when
 * there is no ?index or the result's index is past it; otherwise parks the request until what
 * it read changes or ?wait (plus up to wait/16 jitter) passes, and then answers with the
 * current result. */
void api_read(struct api_ctx *ctx, struct http_request *req, api_read_fn fn);

/* The blocking engine's state, created by api_register. */
void api__blocking_init(struct api_ctx *ctx);
void api__blocking_shutdown(struct api_ctx *ctx);
size_t api_blocking_parked(struct api_ctx *ctx);

/* Installs the forwarding decision (forward.c) on the HTTP server. */
void api__forward_init(struct api_ctx *ctx);

/* Endpoint families. */
void api_kv_register(struct api_ctx *ctx);
void api_status_register(struct api_ctx *ctx);
void api_agent_register(struct api_ctx *ctx);
void api_catalog_register(struct api_ctx *ctx);
void api_health_register(struct api_ctx *ctx);
void api_agent_services_register(struct api_ctx *ctx);
void api_operator_register(struct api_ctx *ctx);
void api_session_register(struct api_ctx *ctx);
void api_txn_register(struct api_ctx *ctx);
void api_keyring_register(struct api_ctx *ctx); /* keyring.c: /v1/operator/keyring */
void api_query_register(struct api_ctx *ctx);
void api_event_register(struct api_ctx *ctx);
void api_snapshot_register(struct api_ctx *ctx); /* snapshot.c: /v1/snapshot */
void api_monitor_register(struct api_ctx *ctx);  /* monitor.c: /v1/agent/monitor */
void api_metrics_register(struct api_ctx *ctx);  /* metrics.c: /v1/agent/metrics */
void api_metrics_shutdown(struct api_ctx *ctx);

#endif
