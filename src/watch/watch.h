/* watch.h -- Consul's watches (api/watch): a watch spec names a view of the data (a key, a
 * key prefix, the service list, the node list, one service's health, checks, or events), and
 * a plan turns it into a loop of blocking queries that reports each *change* of that view.
 *
 * The plan is transport-free: it says which request to make next (watch_plan_target) and is
 * fed each answer (watch_plan_feed), which returns whether to run the handler, do nothing, or
 * retry after a delay. `concord watch` drives it with the CLI's blocking client and the agent
 * (agent/watches.c) with the loop's asynchronous client, so the rules live here once:
 *   - the first successful answer always fires the handler;
 *   - an answer at the same index as the last one does nothing;
 *   - an index that went backwards resets the next query to index 0 (a server restore or a
 *     leader with a shorter log), as Consul's WaitIndexVal.Next does;
 *   - a new index whose result equals the last result does nothing (Consul's DeepEqual), so a
 *     watch on key a ignores writes to key b;
 *   - an error retries after 5 s * failures^2, at most 180 s, keeping the last index. */
#ifndef CONCORD_WATCH_WATCH_H
#define CONCORD_WATCH_WATCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum watch_type {
  WATCH_KEY,
  WATCH_KEYPREFIX,
  WATCH_SERVICES,
  WATCH_NODES,
  WATCH_SERVICE,
  WATCH_CHECKS,
  WATCH_EVENT,
};

enum watch_handler { WATCH_HANDLER_NONE, WATCH_HANDLER_SCRIPT, WATCH_HANDLER_HTTP };

/* Consul's HttpHandlerConfig. */
struct watch_http_handler {
  char *path;           /* the URL */
  char *method;         /* default POST */
  json_t *header;       /* object: name -> [values], or NULL */
  int64_t timeout_ns;   /* default 10 s */
  bool tls_skip_verify;
};

/* A parsed watch. Every string is owned (NULL when not given). */
struct watch_spec {
  enum watch_type type;
  char *datacenter, *token;
  char *key;      /* key */
  char *prefix;   /* keyprefix */
  char *service;  /* service (required), checks (optional) */
  char *state;    /* checks: "any" when neither service nor state is given */
  char *name;     /* event */
  char **tags;    /* service, checks (with state); NULL-terminated or NULL */
  bool passingonly, stale;
  /* Handlers: only the agent's "watches" config has these. */
  enum watch_handler handler_type;
  char *handler;  /* the deprecated "handler": one shell command line */
  char **args;    /* "args": argv, NULL-terminated, or NULL */
  struct watch_http_handler http;
};

/* Parses a watch's parameters as Consul's watch.Parse does (keys "type", "datacenter",
 * "token", "key", "prefix", "service", "tag", "passingonly", "state", "name", "stale"; wrong
 * types, a missing type/key/prefix/service, service with state, and leftover keys are
 * errors with Consul's sentences). With `agent`, the agent config's handler keys are taken
 * too ("handler_type" script|http, "args", "handler", "http_handler_config") and exactly one
 * handler is required, as Consul's makeWatchPlan requires. Returns 0, or -1 with a sentence in
 * err; s is safe to watch_spec_free either way. */
int watch_spec_parse(const json_t *params, bool agent, struct watch_spec *s, char *err,
                     size_t errlen);
void watch_spec_free(struct watch_spec *s);
/* The type's name ("keyprefix"). */
const char *watch_type_name(enum watch_type t);

/* Retry rule: 5 s * failures^2, at most 180 s (Consul's retryInterval, maxBackoffTime). */
#define WATCH_RETRY_BASE_MS 5000u
#define WATCH_RETRY_MAX_MS 180000u
/* Answers bigger than this are errors (a whole KV tree is the biggest). */
#define WATCH_MAX_BODY ((size_t)64 << 20)

struct watch_plan {
  const struct watch_spec *spec; /* borrowed for the plan's life */
  bool have_last;                /* an answer has been seen */
  uint64_t last_index;           /* the index the next query blocks on */
  json_t *last_result;           /* owned; the result last handed out */
  unsigned failures;
};

enum watch_step {
  WATCH_STEP_NONE,  /* no change: query again (drivers wait 1 s when the index is 0: it cannot block) */
  WATCH_STEP_FIRE,  /* a change: run the handler, then query again */
  WATCH_STEP_RETRY, /* an error: query again after *retry_ms */
};

void watch_plan_init(struct watch_plan *p, const struct watch_spec *spec);
void watch_plan_free(struct watch_plan *p);
/* The escaped path and query of the next blocking query ("/v1/kv/a%20b?index=7"), with the
 * spec's datacenter and stale flag; wait is left at the server's default (5 m) as Consul's
 * plans leave it. */
void watch_plan_target(const struct watch_plan *p, struct buf *out);
/* Feeds the answer to the last target. status 0 means the request failed (err_in says why);
 * has_index says the answer carried X-Consul-Index. On FIRE, *result is the JSON to hand to
 * the handler (owned by the plan, valid until the next feed) and *index its index. On RETRY,
 * *retry_ms is the delay and msg says why. Never fails otherwise. */
enum watch_step watch_plan_feed(struct watch_plan *p, int status, const char *err_in,
                                bool has_index, uint64_t index, const char *body, size_t len,
                                const json_t **result, uint64_t *out_index, uint64_t *retry_ms,
                                char *msg, size_t msglen);

/* Encodes a result as Go's encoding/json does: compact with a newline (json.Encoder, what
 * handlers get on stdin or as a POST body) or pretty (json.MarshalIndent with four spaces,
 * what `concord watch` prints). */
void watch_encode(const json_t *v, bool pretty, struct buf *out);

/* Consul's event.IDToIndex: the event UUID's two 64-bit halves XORed. 0 for a malformed ID. */
uint64_t watch_event_index(const char *uuid);

#endif
