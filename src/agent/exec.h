/* exec.h -- the agent's half of `consul exec` (Consul's agent/remote_exec.go).
 *
 * `concord exec` stores a job spec at <prefix>/<session>/job (JSON: Command, Args, Script,
 * Wait) and fires the "_rexec" user event whose payload is {"Prefix", "Session"}. An agent
 * that has remote exec enabled (disable_remote_exec false; Consul's default is true) and
 * passes the event's filters reads the spec, acknowledges at <prefix>/<session>/<node>/ack,
 * runs the command (/bin/sh -c Command, Args directly, or Script spilled to a temp file),
 * uploads its combined stdout and stderr in chunks of at most 4 KiB at .../<node>/out/<%05x>
 * (an idle half-second flushes a partial chunk; an empty chunk after Wait without output is a
 * heartbeat), and finally writes the exit code at .../<node>/exit. Every write is a KV lock
 * acquire with the job's session, so nothing lands once the session is gone.
 *
 * KV access goes through struct agent_exec_kv. The agent uses its own HTTP API in-process
 * (agent_exec_use_http), which forwards to a server or the leader as every API request does;
 * without an HTTP server the default reads this server's store and writes through Raft when it
 * is the leader. Runs on the loop; nothing blocks. */
#ifndef CONCORD_AGENT_EXEC_H
#define CONCORD_AGENT_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct state_store;
struct consensus;
struct agent_exec;

/* Consul's constants (remote_exec.go). */
#define AGENT_EXEC_OUTPUT_CHUNK 4096
#define AGENT_EXEC_OUTPUT_IDLE_MS 500
/* A job spec is small; anything larger is refused before parsing. */
#define AGENT_EXEC_MAX_SPEC (1u << 20)

/* A key read: status 0 with found and the value (lent for the call), or a CC_E* code. */
typedef void (*agent_exec_get_done)(void *arg, int status, bool found, const uint8_t *val,
                                    size_t len);
/* A lock write: status 0 with Consul's true/false, or a CC_E* code. */
typedef void (*agent_exec_write_done)(void *arg, int status, bool ok);

/* How the runner reaches KV. Each call returns 0 and calls done exactly once (get may call it
 * before returning), or returns a CC_E* code and never calls it. Keys and values are only
 * read during the call. */
struct agent_exec_kv {
  int (*get)(void *ctx, const char *key, agent_exec_get_done done, void *arg);
  /* A KV "lock" (acquire) of key with value for session, as Consul's KVS.Apply with
   * Op=lock. */
  int (*lock)(void *ctx, const char *key, const void *val, size_t len, const char *session,
              agent_exec_write_done done, void *arg);
  void *ctx;
};

/* store and consensus (NULL on client agents) are borrowed for the default KV access;
 * node_name is copied. */
struct agent_exec *agent_exec_new(uv_loop_t *loop, const char *node_name,
                                  struct state_store *store, struct consensus *consensus);
/* Replaces the KV access (copied). */
void agent_exec_set_kv(struct agent_exec *x, const struct agent_exec_kv *kv);
/* KV access through the agent's own HTTP API, in-process (http_server_inject): the requests
 * are forwarded exactly as clients' API requests are (client agent -> a server, follower ->
 * the leader), so client agents run jobs too. http is borrowed: call agent_exec_close when
 * the HTTP server has closed (its in-flight requests then end with CC_ESHUTDOWN). */
struct http_server;
void agent_exec_use_http(struct agent_exec *x, struct http_server *http);
/* Starts a job from a "_rexec" event's payload (only read). Bad payloads are logged. */
void agent_exec_handle(struct agent_exec *x, const uint8_t *payload, size_t len);
/* Kills running jobs (SIGKILL to their process groups), closes every handle and frees x once
 * they are closed. Writes still in flight complete without effect. Call once. */
void agent_exec_close(struct agent_exec *x);
/* Jobs running now (for tests and stats). */
size_t agent_exec_jobs(const struct agent_exec *x);

#endif
