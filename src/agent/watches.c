/* watches.c -- runs the agent's configured watches (see watches.h), as Consul's agent does
 * (agent.go reloadWatches, watch_handler.go):
 *
 *   - each watch is a loop of blocking queries against this agent's own HTTP API, so it
 *     works the same on servers and clients and rides out leader changes: an error is only
 *     a retry (5 s * failures^2, at most 180 s; src/watch/plan.c has the rules);
 *   - a change runs the handler, and the next query waits until the handler is done, as
 *     Consul's plan calls its handler inline: changes that happen while a handler runs are
 *     folded into the next query's answer instead of queueing one run per change;
 *   - script handlers ("args", or the old "handler" string through $SHELL -c) get the JSON
 *     on stdin and CONSUL_INDEX in the environment; the last 4 KiB of their output is
 *     logged. They run whether or not script checks are enabled: Consul gates only checks;
 *   - HTTP handlers POST (or the configured method) the JSON with Content-Type and
 *     X-Consul-Index and the configured headers, with the configured timeout.
 *
 * Everything is on the loop: queries and HTTP handlers use src/local/httpc.c, scripts
 * uv_spawn. A handler run is its own object (struct run) so that stopping a watch on reload
 * does not cut short a handler already running; it finishes and logs on its own. */
#include "agent/watches.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/duration.h"
#include "lib/log.h"
#include "local/httpc.h"
#include "watch/watch.h"

#define WATCHES_LOG "agent.watch"
/* Consul's WatchBufSize: the handler output kept for the log. */
#define WATCHES_OUTPUT_MAX 4096
/* Longer than the longest blocking query (10 min + wait/16 jitter). */
#define WATCHES_QUERY_TIMEOUT_MS (11u * 60 * 1000)

extern char **environ;

struct watch;

/* One handler run. Lives until its process and pipes are closed (or its HTTP request done);
 * `w` is NULL once the watch has been stopped, and the run then sits on its set's `detached`
 * list so that shutdown can still let it go. */
struct run {
  struct agent_watches *set;
  struct watch *w;
  struct run *next, *prev; /* on set->detached */
  char *name;          /* for the log: the handler's command or URL */
  uv_process_t proc;
  uv_pipe_t in, out, err;
  uv_write_t wr;
  struct buf input;    /* the JSON written to stdin */
  struct buf output;   /* stdout and stderr, the last WATCHES_OUTPUT_MAX bytes */
  size_t output_total;
  int open;            /* handles not closed yet */
  int64_t exit_status;
  int term_signal;
  bool exited;
  struct local_httpc *http;
};

struct watch {
  struct agent_watches *set;
  char *label;         /* "<file> watches[i] (type key)" */
  struct watch_spec spec;
  struct watch_plan plan;
  uv_timer_t timer;    /* retry backoff */
  struct local_httpc *query;
  struct run *run;     /* the handler running now, or NULL */
  bool stopped;
};

struct agent_watches {
  uv_loop_t *loop;
  char *base_url;      /* "http://127.0.0.1:8500" */
  struct watch **w;
  size_t n;
  struct run *detached; /* runs of stopped watches, still going */
  int open;             /* timers not closed yet and detached runs, plus one until stop */
};

static void set_maybe_free(struct agent_watches *s)
{
  if (s->open > 0) return;
  free(s->base_url);
  free(s->w);
  free(s);
}

static void watch_query(struct watch *w);

/* ---- handler runs ---- */

static void run_append_output(struct run *r, const char *data, size_t len)
{
  r->output_total += len;
  buf_append(&r->output, data, len);
  if (r->output.len > 2 * WATCHES_OUTPUT_MAX)
    buf_consume(&r->output, r->output.len - WATCHES_OUTPUT_MAX);
}

/* The handler is done: log what it said, and let its watch query again. */
static void run_finish(struct run *r)
{
  size_t keep = r->output.len > WATCHES_OUTPUT_MAX ? WATCHES_OUTPUT_MAX : r->output.len;
  const char *tail = r->output.data ? r->output.data + r->output.len - keep : "";
  if (r->http == NULL && r->exited) {
    if (r->exit_status != 0 || r->term_signal != 0) {
      if (r->term_signal)
        log_error(WATCHES_LOG, "Failed to run watch handler '%s': signal: %s", r->name,
                  strsignal(r->term_signal));
      else
        log_error(WATCHES_LOG, "Failed to run watch handler '%s': exit status %lld", r->name,
                  (long long)r->exit_status);
    }
    if (r->output_total > keep)
      log_debug(WATCHES_LOG, "watch handler '%s' output: Captured %zu of %zu bytes\n...\n%.*s",
                r->name, keep, r->output_total, (int)keep, tail);
    else
      log_debug(WATCHES_LOG, "watch handler '%s' output: %.*s", r->name, (int)keep, tail);
  }
  struct watch *w = r->w;
  struct agent_watches *s = r->set;
  buf_free(&r->input);
  buf_free(&r->output);
  free(r->name);
  if (w) {
    free(r);
    w->run = NULL;
    if (!w->stopped) watch_query(w);
    return;
  }
  if (r->prev) r->prev->next = r->next;
  else s->detached = r->next;
  if (r->next) r->next->prev = r->prev;
  free(r);
  s->open--;
  set_maybe_free(s);
}

static void run_handle_closed(uv_handle_t *h)
{
  struct run *r = h->data;
  if (--r->open == 0) run_finish(r);
}

static void run_close(struct run *r, uv_handle_t *h)
{
  if (!uv_is_closing(h)) uv_close(h, run_handle_closed);
}

static void run_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
  (void)h;
  b->base = xmalloc(suggested);
  b->len = suggested;
}

static void run_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
  struct run *r = s->data;
  if (n > 0) run_append_output(r, b->base, (size_t)n);
  free(b->base);
  if (n < 0) run_close(r, (uv_handle_t *)s);
}

static void run_written(uv_write_t *wr, int status)
{
  /* A handler that does not read its input (EPIPE) is not an error of ours. */
  (void)status;
  struct run *r = wr->data;
  run_close(r, (uv_handle_t *)&r->in);
}

static void run_exited(uv_process_t *p, int64_t status, int sig)
{
  struct run *r = p->data;
  r->exited = true;
  r->exit_status = status;
  r->term_signal = sig;
  run_close(r, (uv_handle_t *)p);
}

/* $SHELL -c "<handler>" (Consul's exec.Script), or the args as they are (exec.Subprocess). */
static void run_script(struct watch *w, const char *json, size_t len, uint64_t index)
{
  struct agent_watches *s = w->set;
  struct run *r = xcalloc(1, sizeof *r);
  r->set = s;
  r->w = w;
  w->run = r;
  const char *shell = getenv("SHELL");
  if (!shell || !shell[0]) shell = "/bin/sh";
  char *sh_args[4] = {(char *)shell, "-c", w->spec.handler, NULL};
  char **args = w->spec.args ? w->spec.args : sh_args;
  struct buf name = BUF_INIT;
  if (w->spec.args)
    for (char **a = w->spec.args; *a; a++) buf_printf(&name, "%s%s", a == w->spec.args ? "" : " ", *a);
  else
    buf_puts(&name, w->spec.handler);
  r->name = buf_steal(&name, NULL);
  /* The agent's environment plus CONSUL_INDEX. */
  size_t nenv = 0;
  while (environ && environ[nenv]) nenv++;
  char **env = xcalloc(nenv + 2, sizeof *env);
  size_t k = 0;
  for (size_t i = 0; i < nenv; i++)
    if (strncmp(environ[i], "CONSUL_INDEX=", 13) != 0) env[k++] = environ[i];
  char idx[64];
  snprintf(idx, sizeof idx, "CONSUL_INDEX=%llu", (unsigned long long)index);
  env[k++] = idx;
  env[k] = NULL;

  uv_pipe_init(s->loop, &r->in, 0);
  uv_pipe_init(s->loop, &r->out, 0);
  uv_pipe_init(s->loop, &r->err, 0);
  r->in.data = r->out.data = r->err.data = r->proc.data = r;
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t *)&r->in;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&r->out;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&r->err;
  uv_process_options_t opt;
  memset(&opt, 0, sizeof opt);
  opt.exit_cb = run_exited;
  opt.file = args[0];
  opt.args = args;
  opt.env = env;
  opt.stdio = stdio;
  opt.stdio_count = 3;
  int rc = uv_spawn(s->loop, &r->proc, &opt);
  free(env);
  r->open = 4;
  if (rc != 0) {
    log_error(WATCHES_LOG, "Failed to run watch handler '%s': %s", r->name, uv_strerror(rc));
    run_close(r, (uv_handle_t *)&r->proc);
    run_close(r, (uv_handle_t *)&r->in);
    run_close(r, (uv_handle_t *)&r->out);
    run_close(r, (uv_handle_t *)&r->err);
    return;
  }
  buf_append(&r->input, json, len);
  uv_buf_t b = uv_buf_init(r->input.data, (unsigned)r->input.len);
  r->wr.data = r;
  if (uv_write(&r->wr, (uv_stream_t *)&r->in, &b, 1, run_written) != 0)
    run_close(r, (uv_handle_t *)&r->in);
  uv_read_start((uv_stream_t *)&r->out, run_alloc, run_read);
  uv_read_start((uv_stream_t *)&r->err, run_alloc, run_read);
}

static void run_http_done(void *arg, const struct local_httpc_result *res)
{
  struct run *r = arg;
  r->http = NULL;
  if (res->status_code == 0) {
    log_error(WATCHES_LOG, "Failed to invoke http watch handler '%s': %s", r->name, res->error);
  } else {
    bool cut = res->body_total > res->body_len;
    char head[96] = "";
    if (cut) snprintf(head, sizeof head, "Captured %zu of %zu bytes\n...\n", res->body_len, res->body_total);
    if (res->status_code >= 200 && res->status_code <= 299)
      log_trace(WATCHES_LOG, "http watch handler '%s' output: %s%s", r->name, head, res->body);
    else
      log_error(WATCHES_LOG, "http watch handler '%s' got '%s' with output: %s%s", r->name,
                res->status, head, res->body);
  }
  run_finish(r);
}

static void run_http(struct watch *w, const char *json, size_t len, uint64_t index)
{
  (void)len;
  struct run *r = xcalloc(1, sizeof *r);
  r->set = w->set;
  r->w = w;
  w->run = r;
  r->name = xstrdup(w->spec.http.path);
  json_t *hdr = w->spec.http.header ? json_deep_copy(w->spec.http.header) : json_object();
  char idx[32];
  snprintf(idx, sizeof idx, "%llu", (unsigned long long)index);
  /* Consul adds these before the configured ones (Header.Add: values accumulate). */
  json_t *ct = json_pack("[s]", "application/json");
  json_t *old = json_object_get(hdr, "Content-Type");
  if (old) json_array_extend(ct, old);
  json_object_set_new(hdr, "Content-Type", ct);
  json_t *xi = json_pack("[s]", idx);
  old = json_object_get(hdr, "X-Consul-Index");
  if (old) json_array_extend(xi, old);
  json_object_set_new(hdr, "X-Consul-Index", xi);
  if (!json_object_get(hdr, "User-Agent"))
    json_object_set_new(hdr, "User-Agent", json_pack("[s]", "Go-http-client/1.1"));
  if (!json_object_get(hdr, "Accept")) json_object_set_new(hdr, "Accept", json_pack("[s]", "*/*"));
  struct local_httpc_req req = {
      .method = w->spec.http.method,
      .url = w->spec.http.path,
      .header = hdr,
      .body = json,
      .timeout_ms = (uint64_t)(w->spec.http.timeout_ns / DURATION_MS),
      .max_body = WATCHES_OUTPUT_MAX,
      .tls_skip_verify = w->spec.http.tls_skip_verify,
  };
  if (req.timeout_ms == 0) req.timeout_ms = 1;
  r->http = local__httpc_start(w->set->loop, &req, run_http_done, r);
  json_decref(hdr);
}

/* ---- the query loop ---- */

static void watch_retry_tick(uv_timer_t *t)
{
  struct watch *w = t->data;
  if (!w->stopped) watch_query(w);
}

static void watch_answer(void *arg, const struct local_httpc_result *res)
{
  struct watch *w = arg;
  w->query = NULL;
  if (w->stopped) return;
  const json_t *result;
  uint64_t index = 0, retry_ms;
  char msg[1024];
  bool has_index = res->captured_header != NULL;
  if (has_index) index = strtoull(res->captured_header, NULL, 10);
  int status = res->status_code;
  const char *error = res->error;
  if (status && res->body_total > res->body_len) {
    /* An answer over WATCH_MAX_BODY cannot be handed on whole. */
    status = 0;
    error = "the answer is larger than the watch limit (64 MiB)";
  }
  enum watch_step step = watch_plan_feed(&w->plan, status, error, has_index, index,
                                         res->body, res->body_len, &result, &index, &retry_ms,
                                         msg, sizeof msg);
  if (step == WATCH_STEP_RETRY) {
    char d[32];
    duration_format((int64_t)retry_ms * DURATION_MS, d, sizeof d);
    log_error(WATCHES_LOG, "Watch errored: type=%s error=\"%s\" retry=%s",
              watch_type_name(w->spec.type), msg, d);
    uv_timer_start(&w->timer, watch_retry_tick, retry_ms, 0);
    return;
  }
  if (step == WATCH_STEP_NONE) {
    /* An answer without an index cannot block: pace the re-query instead of spinning. */
    if (w->plan.last_index == 0) uv_timer_start(&w->timer, watch_retry_tick, 1000, 0);
    else watch_query(w);
    return;
  }
  struct buf js = BUF_INIT;
  watch_encode(result, false, &js);
  log_debug(WATCHES_LOG, "%s changed at index %llu, running its handler", w->label,
            (unsigned long long)index);
  if (w->spec.handler_type == WATCH_HANDLER_HTTP)
    run_http(w, js.data, js.len, index);
  else
    run_script(w, js.data, js.len, index);
  buf_free(&js);
}

static void watch_query(struct watch *w)
{
  struct buf url = BUF_INIT;
  buf_puts(&url, w->set->base_url);
  watch_plan_target(&w->plan, &url);
  json_t *hdr = json_pack("{s:[s], s:[s]}", "User-Agent", "Go-http-client/1.1", "Accept", "*/*");
  if (w->spec.token && w->spec.token[0])
    json_object_set_new(hdr, "X-Consul-Token", json_pack("[s]", w->spec.token));
  struct local_httpc_req req = {
      .method = "GET",
      .url = url.data,
      .header = hdr,
      .timeout_ms = WATCHES_QUERY_TIMEOUT_MS,
      .max_body = WATCH_MAX_BODY,
      .capture_header = "X-Consul-Index",
  };
  w->query = local__httpc_start(w->set->loop, &req, watch_answer, w);
  json_decref(hdr);
  buf_free(&url);
}

static void watch_timer_closed(uv_handle_t *h)
{
  struct watch *w = h->data;
  struct agent_watches *s = w->set;
  watch_plan_free(&w->plan);
  watch_spec_free(&w->spec);
  free(w->label);
  free(w);
  s->open--;
  set_maybe_free(s);
}

/* Starts the watches of a config's list into s. */
static void set_add_watches(struct agent_watches *s, const json_t *watches)
{
  size_t n = json_array_size(watches);
  free(s->w);
  s->w = xcalloc(n ? n : 1, sizeof *s->w);
  s->n = 0;
  size_t i;
  json_t *e;
  json_array_foreach(watches, i, e) {
    struct watch *w = xcalloc(1, sizeof *w);
    char err[512];
    if (watch_spec_parse(json_object_get(e, "watch"), true, &w->spec, err, sizeof err) != 0) {
      log_error(WATCHES_LOG, "skipping a watch that does not parse: %s", err);
      watch_spec_free(&w->spec);
      free(w);
      continue;
    }
    struct buf l = BUF_INIT;
    buf_printf(&l, "%s watches[%lld] (type %s)",
               json_string_value(json_object_get(e, "source")),
               (long long)json_integer_value(json_object_get(e, "index")),
               watch_type_name(w->spec.type));
    w->label = buf_steal(&l, NULL);
    if (w->spec.handler)
      log_warn(WATCHES_LOG, "%s: the 'handler' field in watches is deprecated and replaced "
                            "by the 'args' field", w->label);
    w->set = s;
    watch_plan_init(&w->plan, &w->spec);
    uv_timer_init(s->loop, &w->timer);
    w->timer.data = w;
    s->open++;
    s->w[s->n++] = w;
    log_debug(WATCHES_LOG, "starting %s", w->label);
    watch_query(w);
  }
  if (s->n) log_info(WATCHES_LOG, "running %zu watch%s", s->n, s->n == 1 ? "" : "es");
}

static void run_let_go(struct run *r)
{
  if (r->http) {
    local__httpc_cancel(r->http);
    r->http = NULL;
    run_finish(r);
    return;
  }
  run_close(r, (uv_handle_t *)&r->proc);
  run_close(r, (uv_handle_t *)&r->in);
  run_close(r, (uv_handle_t *)&r->out);
  run_close(r, (uv_handle_t *)&r->err);
}

/* Stops every watch of s; their running handlers are detached (and with shutdown let go). */
static void set_stop_watches(struct agent_watches *s, bool shutdown)
{
  for (size_t i = 0; i < s->n; i++) {
    struct watch *w = s->w[i];
    w->stopped = true;
    if (w->query) local__httpc_cancel(w->query);
    w->query = NULL;
    if (w->run) {
      struct run *r = w->run;
      r->w = NULL; /* the run outlives its watch */
      w->run = NULL;
      r->prev = NULL;
      r->next = s->detached;
      if (s->detached) s->detached->prev = r;
      s->detached = r;
      s->open++;
    }
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, watch_timer_closed);
  }
  s->n = 0;
  if (shutdown) {
    /* run_let_go may free a run at once (HTTP), or later from close callbacks. */
    struct run *r = s->detached;
    while (r) {
      struct run *next = r->next;
      run_let_go(r);
      r = next;
    }
  }
}

struct agent_watches *agent_watches_start(uv_loop_t *loop, const json_t *watches,
                                          const char *http_host, int http_port)
{
  struct agent_watches *s = xcalloc(1, sizeof *s);
  s->loop = loop;
  s->open = 1;
  struct buf u = BUF_INIT;
  /* A wildcard client address is reached on loopback; IPv6 needs brackets. */
  const char *host = http_host;
  if (strcmp(host, "0.0.0.0") == 0) host = "127.0.0.1";
  else if (strcmp(host, "::") == 0) host = "::1";
  if (strchr(host, ':')) buf_printf(&u, "http://[%s]:%d", host, http_port);
  else buf_printf(&u, "http://%s:%d", host, http_port);
  s->base_url = buf_steal(&u, NULL);
  set_add_watches(s, watches);
  return s;
}

void agent_watches_reload(struct agent_watches *s, const json_t *watches)
{
  set_stop_watches(s, false);
  set_add_watches(s, watches);
}

void agent_watches_stop(struct agent_watches *s)
{
  if (!s) return;
  set_stop_watches(s, true);
  s->open--;
  set_maybe_free(s);
}
