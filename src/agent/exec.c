/* exec.c -- runs `consul exec` jobs on this agent (see exec.h for the KV layout).
 *
 * A job walks: read spec -> write ack -> spawn -> stream output chunks -> write exit code.
 * Writes go one at a time, in order, through a small queue (Consul's runner also uploads
 * sequentially). If a write fails (the session is gone: the operator's exec has finished or
 * was interrupted), the job stops uploading and writes exit code 255 as Consul does; the
 * command itself is left to finish, as in Consul, and only its reaping remains.
 *
 * Lifetime: a job is freed when its process has exited, its output pipe and timers are
 * closed and no write is in flight. A write in flight at shutdown is detached from its job
 * (the KV callback then only frees the write). */
#define _GNU_SOURCE
#include "agent/exec.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "consensus/consensus.h"
#include "http/server.h"
#include "lib/alloc.h"
#include "lib/b64.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/log.h"
#include "state/cmd.h"
#include "state/store.h"

#define MOD "agent"

struct exec_write;

struct exec_job {
  struct agent_exec *x;
  char *session;
  char *job_key;  /* <prefix>/<session>/job */
  char *node_key; /* <prefix>/<session>/<node> */
  /* the spec */
  char *command;
  char **args; /* NULL-terminated, or NULL */
  uint8_t *script;
  size_t script_len;
  uint64_t wait_ms;
  char script_path[64]; /* "" when no temp file */
  /* the process */
  uv_process_t proc;
  uv_pipe_t pipe;
  uv_timer_t flush_timer, heart_timer;
  int handles;  /* open handles; the job is freed when this and everything else is done */
  bool started, exited, eof, failed, exit_queued, closing;
  bool acking;  /* the ack write is in flight: its callback holds the job */
  bool getting; /* the spec read is in flight: likewise */
  int64_t exit_code;
  struct buf chunk; /* output not uploaded yet (< one chunk) */
  unsigned out_num;
  /* the write queue */
  struct exec_write *queue, **queue_tail;
  struct exec_write *inflight;
  struct exec_job *next, *prev;
};

struct exec_write {
  struct exec_job *job; /* NULL once detached at shutdown */
  char *key;
  uint8_t *val;
  size_t len;
  bool is_exit;
  struct exec_write *next;
};

struct agent_exec {
  uv_loop_t *loop;
  char *node_name;
  struct state_store *store;
  struct consensus *consensus;
  struct http_server *http; /* agent_exec_use_http: KV through the agent's own API */
  struct agent_exec_kv kv;
  struct exec_job *jobs;
  size_t njobs;
  bool closing;
};

/* ---- default KV access: this server's store and Raft ---- */

static int default_get(void *ctx, const char *key, agent_exec_get_done done, void *arg)
{
  struct agent_exec *x = ctx;
  if (!x->store) return CC_ENOTLEADER; /* a client agent: needs RPC to a server */
  const struct state_kv *e = state_kv_get(x->store, key, strlen(key), NULL);
  done(arg, 0, e != NULL, e ? e->value : NULL, e ? e->value_len : 0);
  return 0;
}

struct default_write {
  agent_exec_write_done done;
  void *arg;
};

static void default_write_applied(void *arg, int status, const struct state_cmd_result *res,
                                  uint64_t index)
{
  struct default_write *w = arg;
  (void)index;
  if (status != 0) w->done(w->arg, status, false);
  else if (res->err != 0) w->done(w->arg, res->err, false);
  else w->done(w->arg, 0, res->ok);
  free(w);
}

static int default_lock(void *ctx, const char *key, const void *val, size_t len,
                        const char *session, agent_exec_write_done done, void *arg)
{
  struct agent_exec *x = ctx;
  if (!x->consensus) return CC_ENOTLEADER;
  struct state_kv_op op = {
      .verb = STATE_KV_LOCK,
      .key = key,
      .key_len = strlen(key),
      .value = val,
      .value_len = len,
      .session = session,
  };
  struct buf cmd = BUF_INIT;
  state_cmd_encode_kv(&cmd, &op);
  struct default_write *w = xcalloc(1, sizeof *w);
  w->done = done;
  w->arg = arg;
  int rv = consensus_apply(x->consensus, &cmd, default_write_applied, w);
  buf_free(&cmd);
  if (rv != 0) free(w);
  return rv;
}

/* ---- KV through the agent's own HTTP API ----
 *
 * Requests run in-process through the agent's routes (http_server_inject), so they take the
 * path any API request takes: served here on the leader, forwarded to a server by a client
 * agent and to the leader by a follower. The spec is read ?stale first and, if missing,
 * again consistently (Consul's remoteExecGetSpec); writes are PUT ?acquire=<session>. Answers
 * are delivered from the loop, never inside the call that asked. */

struct http_kv_op {
  uv_timer_t timer; /* first: closing it frees the op */
  struct agent_exec *x;
  bool is_get, stale;
  char *key;
  agent_exec_get_done get_done;
  agent_exec_write_done write_done;
  void *arg;
  /* the answer, kept until the timer delivers it */
  int status;
  bool found, ok;
  struct buf value;
};

static void http_kv_closed(uv_handle_t *h)
{
  struct http_kv_op *op = h->data;
  free(op->key);
  buf_free(&op->value);
  free(op);
}

static void http_kv_deliver(uv_timer_t *t)
{
  struct http_kv_op *op = t->data;
  if (op->is_get) op->get_done(op->arg, op->status, op->found, (const uint8_t *)op->value.data,
                               op->value.len);
  else op->write_done(op->arg, op->status, op->ok);
  uv_close((uv_handle_t *)&op->timer, http_kv_closed);
}

/* Percent-escapes a key for a request path ('/' kept). */
static void http_kv_escape(struct buf *out, const char *key)
{
  for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
        *p == '-' || *p == '_' || *p == '.' || *p == '~' || *p == '/')
      buf_append(out, p, 1);
    else
      buf_printf(out, "%%%02X", *p);
  }
}

static int http_kv_send(struct http_kv_op *op, const void *val, size_t len, const char *session);

static void http_kv_answered(void *arg, int status, const char *content_type, const char *headers,
                             size_t headers_len, char *body, size_t body_len)
{
  struct http_kv_op *op = arg;
  (void)content_type;
  (void)headers;
  (void)headers_len;
  if (status == 0) {
    op->status = CC_ESHUTDOWN;
  } else if (op->is_get && status == 404 && op->stale && !op->x->closing) {
    /* Not replicated here yet: ask again consistently, as Consul does. */
    free(body);
    op->stale = false;
    if (http_kv_send(op, NULL, 0, NULL) == 0) return;
    op->status = CC_ESHUTDOWN;
    body = NULL;
  } else if (op->is_get && status == 404) {
    op->found = false;
  } else if (status != 200) {
    log_debug(MOD, "remote exec KV request for %s: %d %.*s", op->key, status,
              (int)(body_len > 200 ? 200 : body_len), body ? body : "");
    op->status = status == 500 && body && strstr(body, "leader") ? CC_ENOTLEADER : CC_EIO;
  } else if (op->is_get) {
    json_t *arr = json_loadb(body ? body : "", body_len, 0, NULL);
    const char *v = json_string_value(json_object_get(json_array_get(arr, 0), "Value"));
    op->found = json_is_array(arr) && json_array_size(arr) > 0;
    if (v) {
      size_t vlen = strlen(v), n = 0;
      uint8_t *dec = xmalloc(vlen / 4 * 3 + 4);
      if (b64_decode(v, vlen, dec, &n) == 0) buf_append(&op->value, dec, n);
      else op->status = CC_ECORRUPT;
      free(dec);
    }
    json_decref(arr);
  } else {
    op->ok = body_len == 4 && memcmp(body, "true", 4) == 0;
  }
  free(body);
  uv_timer_start(&op->timer, http_kv_deliver, 0, 0);
}

static int http_kv_send(struct http_kv_op *op, const void *val, size_t len, const char *session)
{
  struct buf req = BUF_INIT;
  buf_printf(&req, "%s /v1/kv/", op->is_get ? "GET" : "PUT");
  http_kv_escape(&req, op->key);
  if (op->is_get) {
    buf_printf(&req, "%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", op->stale ? "?stale" : "");
  } else {
    buf_printf(&req, "?acquire=");
    http_kv_escape(&req, session);
    buf_printf(&req, " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n\r\n", len);
    if (len) buf_append(&req, val, len);
  }
  int rv = http_server_inject(op->x->http, req.data, req.len, "127.0.0.1", http_kv_answered, op,
                              NULL);
  buf_free(&req);
  return rv;
}

static struct http_kv_op *http_kv_op_new(struct agent_exec *x, const char *key)
{
  struct http_kv_op *op = xcalloc(1, sizeof *op);
  op->x = x;
  op->key = xstrdup(key);
  uv_timer_init(x->loop, &op->timer);
  op->timer.data = op;
  return op;
}

static int http_get(void *ctx, const char *key, agent_exec_get_done done, void *arg)
{
  struct agent_exec *x = ctx;
  struct http_kv_op *op = http_kv_op_new(x, key);
  op->is_get = op->stale = true;
  op->get_done = done;
  op->arg = arg;
  int rv = http_kv_send(op, NULL, 0, NULL);
  if (rv != 0) uv_close((uv_handle_t *)&op->timer, http_kv_closed);
  return rv;
}

static int http_lock(void *ctx, const char *key, const void *val, size_t len, const char *session,
                     agent_exec_write_done done, void *arg)
{
  struct agent_exec *x = ctx;
  struct http_kv_op *op = http_kv_op_new(x, key);
  op->write_done = done;
  op->arg = arg;
  int rv = http_kv_send(op, val, len, session);
  if (rv != 0) uv_close((uv_handle_t *)&op->timer, http_kv_closed);
  return rv;
}

void agent_exec_use_http(struct agent_exec *x, struct http_server *http)
{
  x->http = http;
  x->kv = (struct agent_exec_kv){http_get, http_lock, x};
}

struct agent_exec *agent_exec_new(uv_loop_t *loop, const char *node_name,
                                  struct state_store *store, struct consensus *consensus)
{
  struct agent_exec *x = xcalloc(1, sizeof *x);
  x->loop = loop;
  x->node_name = xstrdup(node_name);
  x->store = store;
  x->consensus = consensus;
  x->kv = (struct agent_exec_kv){default_get, default_lock, x};
  return x;
}

void agent_exec_set_kv(struct agent_exec *x, const struct agent_exec_kv *kv)
{
  x->kv = *kv;
}

size_t agent_exec_jobs(const struct agent_exec *x)
{
  return x->njobs;
}

/* Go's path.Join for the parts we join: non-empty parts with "/", duplicate and trailing
 * slashes removed, "." segments dropped. Caller frees. */
static char *exec_path_join(const char *a, const char *b, const char *c, const char *d)
{
  struct buf raw = BUF_INIT, out = BUF_INIT;
  const char *parts[] = {a, b, c, d};
  for (int i = 0; i < 4; i++) {
    if (!parts[i] || !parts[i][0]) continue;
    if (raw.len) buf_append(&raw, "/", 1);
    buf_append(&raw, parts[i], strlen(parts[i]));
  }
  buf_append(&raw, "", 1);
  const char *p = raw.data;
  if (*p == '/') buf_append(&out, "/", 1);
  while (*p) {
    while (*p == '/') p++;
    const char *s = p;
    while (*p && *p != '/') p++;
    size_t n = (size_t)(p - s);
    if (n == 0 || (n == 1 && s[0] == '.')) continue;
    if (out.len && out.data[out.len - 1] != '/') buf_append(&out, "/", 1);
    buf_append(&out, s, n);
  }
  buf_append(&out, "", 1);
  buf_free(&raw);
  size_t len;
  return buf_steal(&out, &len);
}

/* ---- job life ---- */

static void job_maybe_free(struct exec_job *j);
static void job_pump(struct exec_job *j);

static void job_closed(uv_handle_t *h)
{
  struct exec_job *j = h->data;
  j->handles--;
  job_maybe_free(j);
}

static void job_unlink(struct exec_job *j)
{
  struct agent_exec *x = j->x;
  if (j->prev) j->prev->next = j->next;
  else if (x->jobs == j) x->jobs = j->next;
  if (j->next) j->next->prev = j->prev;
  j->next = j->prev = NULL;
  x->njobs--;
}

static void job_free(struct exec_job *j)
{
  struct agent_exec *x = j->x;
  job_unlink(j);
  while (j->queue) {
    struct exec_write *w = j->queue;
    j->queue = w->next;
    free(w->key);
    free(w->val);
    free(w);
  }
  if (j->script_path[0]) unlink(j->script_path);
  free(j->session);
  free(j->job_key);
  free(j->node_key);
  free(j->command);
  if (j->args)
    for (char **a = j->args; *a; a++) free(*a);
  free(j->args);
  free(j->script);
  buf_free(&j->chunk);
  free(j);
  if (x->closing && x->njobs == 0) {
    free(x->node_name);
    free(x);
  }
}

/* Closes the timers and pipe once the process is reaped and the output drained. */
static void job_close_handles(struct exec_job *j)
{
  if (j->closing) return;
  j->closing = true;
  if (!j->started) return;
  uv_close((uv_handle_t *)&j->flush_timer, job_closed);
  uv_close((uv_handle_t *)&j->heart_timer, job_closed);
  if (!uv_is_closing((uv_handle_t *)&j->pipe)) uv_close((uv_handle_t *)&j->pipe, job_closed);
  uv_close((uv_handle_t *)&j->proc, job_closed);
}

static void job_maybe_free(struct exec_job *j)
{
  bool done_writing = !j->acking && !j->getting && !j->inflight && (!j->queue || j->x->closing);
  bool process_done = !j->started || (j->exited && j->eof);
  if (!done_writing || !process_done) return;
  if (j->started && !j->closing) job_close_handles(j);
  if (j->handles > 0) return;
  job_free(j);
}

static void job_enqueue(struct exec_job *j, const char *suffix, const void *val, size_t len,
                        bool is_exit)
{
  struct exec_write *w = xcalloc(1, sizeof *w);
  w->job = j;
  w->key = exec_path_join(j->node_key, suffix, NULL, NULL);
  if (len) w->val = xmemdup(val, len);
  w->len = len;
  w->is_exit = is_exit;
  *j->queue_tail = w;
  j->queue_tail = &w->next;
  job_pump(j);
}

/* The exit code, once (Consul's deferred remoteExecWriteExitCode). */
static void job_queue_exit(struct exec_job *j, int64_t code)
{
  if (j->exit_queued) return;
  j->exit_queued = true;
  char v[24];
  int n = snprintf(v, sizeof v, "%lld", (long long)code);
  job_enqueue(j, "exit", v, (size_t)n, true);
}

static void job_queue_output(struct exec_job *j, const void *data, size_t len)
{
  if (j->failed || j->exit_queued) return;
  char suffix[32];
  snprintf(suffix, sizeof suffix, "out/%05x", j->out_num++);
  job_enqueue(j, suffix, data, len, false);
}

/* A write's outcome (w is freed). A failed output write makes Consul's runner give up
 * uploading and record 255. Never frees the job: callers end with job_maybe_free. */
static void job_write_result(struct exec_job *j, struct exec_write *w, int status, bool ok)
{
  if (status != 0 || !ok) {
    log_error(MOD, "failed to write %s for remote exec job: %s", w->key,
              status ? cc_strerror(status) : "write failed");
    if (!w->is_exit && !j->failed) {
      j->failed = true;
      while (j->queue) {
        struct exec_write *q = j->queue;
        j->queue = q->next;
        free(q->key);
        free(q->val);
        free(q);
      }
      j->queue_tail = &j->queue;
      j->exit_queued = false; /* an exit code queued before the failure was just dropped */
      job_queue_exit(j, 255);
    }
  }
  free(w->key);
  free(w->val);
  free(w);
}

static void job_write_done(void *arg, int status, bool ok)
{
  struct exec_write *w = arg;
  struct exec_job *j = w->job;
  if (!j) { /* detached at shutdown */
    free(w->key);
    free(w->val);
    free(w);
    return;
  }
  j->inflight = NULL;
  job_write_result(j, w, status, ok);
  job_pump(j);
  job_maybe_free(j);
}

/* Starts the next queued write if none is in flight. A write refused at once is handled
 * here, in a loop rather than by recursion, so that nothing below a caller frees the job. */
static void job_pump(struct exec_job *j)
{
  while (!j->inflight && j->queue && !j->x->closing) {
    struct exec_write *w = j->queue;
    j->queue = w->next;
    if (!j->queue) j->queue_tail = &j->queue;
    w->next = NULL;
    j->inflight = w;
    int rv = j->x->kv.lock(j->x->kv.ctx, w->key, w->val, w->len, j->session, job_write_done, w);
    if (rv == 0) return;
    j->inflight = NULL;
    job_write_result(j, w, rv, false);
  }
}

/* ---- output ---- */

static void job_heart_restart(struct exec_job *j);

static void job_flush(struct exec_job *j)
{
  uv_timer_stop(&j->flush_timer);
  if (j->chunk.len == 0) return;
  job_queue_output(j, j->chunk.data, j->chunk.len);
  j->chunk.len = 0;
  job_heart_restart(j);
}

static void job_flush_timer(uv_timer_t *t)
{
  job_flush(t->data);
}

static void job_heartbeat(uv_timer_t *t)
{
  struct exec_job *j = t->data;
  job_queue_output(j, NULL, 0); /* an empty chunk: "still running" */
  job_heart_restart(j);
}

static void job_heart_restart(struct exec_job *j)
{
  if (j->exited && j->eof) return;
  uv_timer_start(&j->heart_timer, job_heartbeat, j->wait_ms, 0);
}

static void job_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
  static char slab[AGENT_EXEC_OUTPUT_CHUNK];
  (void)h;
  (void)suggested;
  *b = uv_buf_init(slab, sizeof slab);
}

static void job_finish_if_done(struct exec_job *j)
{
  if (!j->exited || !j->eof) return;
  job_flush(j);
  uv_timer_stop(&j->heart_timer);
  job_queue_exit(j, j->failed ? 255 : j->exit_code);
  job_maybe_free(j);
}

static void job_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
  struct exec_job *j = s->data;
  if (n < 0) {
    uv_read_stop(s);
    uv_close((uv_handle_t *)s, job_closed);
    j->eof = true;
    job_finish_if_done(j);
    return;
  }
  const char *p = b->base;
  size_t left = (size_t)n;
  while (left) {
    size_t room = AGENT_EXEC_OUTPUT_CHUNK - j->chunk.len;
    size_t take = left < room ? left : room;
    buf_append(&j->chunk, p, take);
    p += take;
    left -= take;
    if (j->chunk.len == AGENT_EXEC_OUTPUT_CHUNK) job_flush(j);
  }
  if (j->chunk.len) uv_timer_start(&j->flush_timer, job_flush_timer, AGENT_EXEC_OUTPUT_IDLE_MS, 0);
}

static void job_exit(uv_process_t *p, int64_t status, int term_signal)
{
  struct exec_job *j = p->data;
  j->exited = true;
  /* Go's WaitStatus.ExitStatus(): -1 for a process killed by a signal. */
  j->exit_code = term_signal ? -1 : status;
  log_info(MOD, "remote exec finished with exit code %lld", (long long)j->exit_code);
  job_finish_if_done(j);
}

/* Spawns the command. On failure the exit code is 255, as in Consul. */
static void job_spawn(struct exec_job *j)
{
  struct agent_exec *x = j->x;
  char *sh_args[4] = {"/bin/sh", "-c", NULL, NULL};
  char **argv = sh_args;
  if (j->script_len) {
    snprintf(j->script_path, sizeof j->script_path, "/tmp/rexecXXXXXX");
    int fd = mkstemp(j->script_path);
    bool ok = fd >= 0;
    if (ok) {
      ok = fchmod(fd, 0750) == 0;
      size_t off = 0;
      while (ok && off < j->script_len) {
        ssize_t w = write(fd, j->script + off, j->script_len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) ok = false;
        else off += (size_t)w;
      }
      if (close(fd) != 0) ok = false;
    }
    if (!ok) {
      log_debug(MOD, "failed to make tmp file: %s", strerror(errno));
      if (fd < 0) j->script_path[0] = 0;
      job_queue_exit(j, 255);
      return;
    }
    sh_args[2] = j->script_path;
  } else if (j->args && j->args[0]) {
    argv = j->args;
  } else {
    sh_args[2] = j->command;
  }
  log_info(MOD, "remote exec '%s'", j->script_len ? j->script_path : argv == j->args ? argv[0] : j->command);
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    log_debug(MOD, "failed to start remote exec: %s", strerror(errno));
    job_queue_exit(j, 255);
    return;
  }
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = fds[1];
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = fds[1];
  uv_process_options_t opts = {0};
  opts.exit_cb = job_exit;
  opts.file = argv[0];
  opts.args = argv;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.flags = UV_PROCESS_DETACHED; /* its own process group, killed as a whole at shutdown */
  j->proc.data = j;
  int rv = uv_spawn(x->loop, &j->proc, &opts);
  close(fds[1]);
  j->started = true;
  uv_pipe_init(x->loop, &j->pipe, 0);
  uv_pipe_open(&j->pipe, fds[0]);
  uv_timer_init(x->loop, &j->flush_timer);
  uv_timer_init(x->loop, &j->heart_timer);
  j->pipe.data = j->flush_timer.data = j->heart_timer.data = j;
  j->handles = 4;
  if (rv != 0) {
    /* libuv initialises the process handle even when uv_spawn fails: close it with the rest. */
    log_debug(MOD, "failed to start remote exec: %s", uv_strerror(rv));
    j->exited = j->eof = true;
    uv_close((uv_handle_t *)&j->pipe, job_closed);
    job_queue_exit(j, 255); /* the caller (job_ack_done) ends with job_maybe_free */
    return;
  }
  uv_read_start((uv_stream_t *)&j->pipe, job_alloc, job_read);
  job_heart_restart(j);
}

static void job_ack_done(void *arg, int status, bool ok)
{
  struct exec_job *j = arg;
  j->acking = false;
  if (status != 0 || !ok) {
    log_error(MOD, "failed to ack remote exec job: %s", status ? cc_strerror(status) : "write failed");
    job_maybe_free(j);
    return;
  }
  if (j->x->closing) {
    job_maybe_free(j);
    return;
  }
  job_spawn(j);
  job_maybe_free(j);
}

/* Parses Consul's remoteExecSpec JSON: Command, Args, Script ([]byte: base64), Wait (ns). */
static int job_parse_spec(struct exec_job *j, const uint8_t *val, size_t len)
{
  json_error_t jerr;
  json_t *spec = json_loadb((const char *)val, len, 0, &jerr);
  if (!json_is_object(spec)) {
    log_error(MOD, "failed to decode remote exec spec: %s", spec ? "not an object" : jerr.text);
    json_decref(spec);
    return -1;
  }
  int rv = 0;
  json_t *v;
  if ((v = json_object_get(spec, "Command")) && json_is_string(v))
    j->command = xstrdup(json_string_value(v));
  if ((v = json_object_get(spec, "Args")) && json_is_array(v) && json_array_size(v) > 0) {
    size_t n = json_array_size(v);
    j->args = xcalloc(n + 1, sizeof *j->args);
    for (size_t i = 0; i < n; i++) {
      json_t *a = json_array_get(v, i);
      j->args[i] = xstrdup(json_is_string(a) ? json_string_value(a) : "");
    }
  }
  if ((v = json_object_get(spec, "Script")) && json_is_string(v) && json_string_length(v)) {
    size_t slen = json_string_length(v);
    j->script = xmalloc(slen / 4 * 3 + 4);
    if (b64_decode(json_string_value(v), slen, j->script, &j->script_len) != 0) {
      log_error(MOD, "failed to decode remote exec spec: bad Script");
      rv = -1;
    }
  }
  j->wait_ms = 2000; /* the CLI's default; a zero Wait would make Consul's heartbeat spin */
  if ((v = json_object_get(spec, "Wait")) && json_is_integer(v) && json_integer_value(v) > 0) {
    uint64_t ms = (uint64_t)json_integer_value(v) / 1000000;
    j->wait_ms = ms ? ms : 1;
  }
  if (!j->command) j->command = xstrdup("");
  if (rv == 0 && !j->command[0] && !j->args && !j->script_len) {
    log_error(MOD, "remote exec spec has nothing to run");
    rv = -1;
  }
  json_decref(spec);
  return rv;
}

static void job_spec_got(void *arg, int status, bool found, const uint8_t *val, size_t len)
{
  struct exec_job *j = arg;
  j->getting = false;
  if (j->x->closing) {
    job_maybe_free(j);
    return;
  }
  if (status != 0) {
    log_error(MOD, "failed to get remote exec job: %s", cc_strerror(status));
    job_maybe_free(j);
    return;
  }
  if (!found) {
    log_debug(MOD, "remote exec aborted, job spec missing");
    job_maybe_free(j);
    return;
  }
  if (len > AGENT_EXEC_MAX_SPEC || job_parse_spec(j, val, len) != 0) {
    job_maybe_free(j);
    return;
  }
  /* The ack: an empty value at .../<node>/ack. */
  char *key = exec_path_join(j->node_key, "ack", NULL, NULL);
  j->acking = true;
  int rv = j->x->kv.lock(j->x->kv.ctx, key, NULL, 0, j->session, job_ack_done, j);
  free(key);
  if (rv != 0) job_ack_done(j, rv, false);
}

void agent_exec_handle(struct agent_exec *x, const uint8_t *payload, size_t len)
{
  if (x->closing) return;
  json_error_t jerr;
  json_t *ev = len <= 4096 ? json_loadb((const char *)payload, len, 0, &jerr) : NULL;
  const char *prefix = json_string_value(json_object_get(ev, "Prefix"));
  const char *session = json_string_value(json_object_get(ev, "Session"));
  if (!prefix || !session || !session[0]) {
    log_error(MOD, "failed to decode remote exec event");
    json_decref(ev);
    return;
  }
  struct exec_job *j = xcalloc(1, sizeof *j);
  j->x = x;
  j->session = xstrdup(session);
  j->job_key = exec_path_join(prefix, session, "job", NULL);
  j->node_key = exec_path_join(prefix, session, x->node_name, NULL);
  j->queue_tail = &j->queue;
  json_decref(ev);
  j->next = x->jobs;
  if (x->jobs) x->jobs->prev = j;
  x->jobs = j;
  x->njobs++;
  log_debug(MOD, "received remote exec event (session %s)", j->session);
  j->getting = true;
  int rv = x->kv.get(x->kv.ctx, j->job_key, job_spec_got, j);
  if (rv != 0) job_spec_got(j, rv, false, NULL, 0);
}

void agent_exec_close(struct agent_exec *x)
{
  x->closing = true;
  if (x->njobs == 0) {
    free(x->node_name);
    free(x);
    return;
  }
  struct exec_job *j = x->jobs;
  while (j) {
    struct exec_job *next = j->next;
    if (j->inflight) {
      j->inflight->job = NULL; /* its callback only frees it now */
      j->inflight = NULL;
    }
    if (j->started && !j->exited) {
      log_info(MOD, "shutdown: killing remote exec job (session %s, pid %d)", j->session,
               j->proc.pid);
      kill(-j->proc.pid, SIGKILL); /* its whole process group */
    }
    if (j->started) {
      uv_timer_stop(&j->flush_timer);
      uv_timer_stop(&j->heart_timer);
      j->exited = j->eof = true; /* nothing more is waited for */
    }
    job_maybe_free(j); /* may free x with the last job */
    j = next;
  }
}
