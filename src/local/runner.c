/* runner.c -- running health checks on the loop (Consul's agent/checks: CheckTTL, CheckHTTP,
 * CheckTCP, CheckUDP, CheckGRPC, CheckH2PING, CheckMonitor for scripts, CheckAlias, and the
 * StatusHandler thresholds).
 *
 * Every check has one runner with one timer. Interval checks first run after a random part of
 * their interval (lib.RandomStagger, so a thousand checks registered together do not fire
 * together), then `interval` after each run completes; at most one run of a check is in flight
 * (Consul never starts a script while the last one is alive). A run is an "op" object of its
 * own: stopping a check detaches its op (op->r = NULL), kills a running script's process
 * group, and the op frees itself when its handles are closed, so nothing waits on a slow peer.
 *
 * Results go through the StatusHandler (SuccessBeforePassing, FailuresBeforeWarning,
 * FailuresBeforeCritical) and then to State.UpdateCheck (state.c). TTL and alias checks
 * report directly, as in Consul. Outputs are Consul's words: "HTTP GET <url>: 200 OK Output:
 * ...", "TCP connect <addr>: Success", Go's error texts ("dial tcp 127.0.0.1:1: connect:
 * connection refused"), "TTL expired", "Timed out (30s) running check", and
 * "Captured N of M bytes\n...\n" when a script said more than the output cap. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/duration.h"
#include "lib/log.h"
#include "lib/rand.h"
#include "local/h2c.h"
#include "local/httpc.h"
#include "local/internal.h"
#include "state/watch.h"

#define DEFAULT_TIMEOUT_MS 10000        /* HTTP, TCP and UDP checks (Consul's dialer/client) */
#define DEFAULT_SCRIPT_TIMEOUT_MS 30000 /* CheckMonitor */

enum runner_kind { RK_TTL, RK_HTTP, RK_TCP, RK_UDP, RK_SCRIPT, RK_ALIAS, RK_GRPC, RK_H2PING };

struct local_runner {
  struct local_agent *la;
  struct local_chk *chk; /* NULL once stopped */
  enum runner_kind kind;
  uv_timer_t timer;
  void *op; /* the run in flight */
  struct local_status_handler sh;
  uint64_t interval_ms, timeout_ms;
  size_t max_output;
  char *ttl_last_output;
  bool alias_remote;
  struct state_watch *watch_checks, *watch_services;
};

/* ---- StatusHandler ---- */

void local__status_handler_init(struct local_status_handler *h, int64_t success_before_passing,
                                int64_t failures_before_warning,
                                int64_t failures_before_critical)
{
  /* Counters start at the thresholds, so the very first result is reported at once. */
  h->success_before_passing = h->success_counter = success_before_passing;
  h->failures_before_warning = failures_before_warning;
  h->failures_before_critical = h->failures_counter = failures_before_critical;
}

const char *local__status_handler_update(struct local_status_handler *h, const char *status)
{
  if (strcmp(status, LOCAL_PASSING) == 0 || strcmp(status, LOCAL_WARNING) == 0) {
    h->success_counter++;
    h->failures_counter = 0;
    if (h->success_counter >= h->success_before_passing) return status;
    return NULL;
  }
  h->failures_counter++;
  h->success_counter = 0;
  if (h->failures_counter >= h->failures_before_critical) return LOCAL_CRITICAL;
  if (h->failures_counter >= h->failures_before_warning) return LOCAL_WARNING;
  return NULL;
}

/* ---- common ---- */

static void report(struct local_runner *r, const char *status, const char *output)
{
  if (!r || !r->chk) return;
  const char *st = local__status_handler_update(&r->sh, status);
  if (!st) {
    log_debug("agent", "check %s: %s result not reported yet (thresholds)", r->chk->id, status);
    return;
  }
  local__update_check(r->la, r->chk, st, output);
}

static void run_cb(uv_timer_t *t);

static void schedule(struct local_runner *r, uint64_t delay_ms)
{
  if (!r->chk) return;
  uv_timer_start(&r->timer, run_cb, delay_ms, 0);
}

/* A run finished: the next one after the interval. */
static void op_finished(struct local_runner *r)
{
  if (!r) return;
  r->op = NULL;
  schedule(r, r->interval_ms);
}

/* Go's net.SplitHostPort, enough for "host:port" and "[v6]:port". */
static int split_host_port(const char *s, char *host, size_t hlen, char *port, size_t plen,
                           char *err, size_t errlen)
{
  const char *colon = strrchr(s, ':');
  if (!colon) {
    snprintf(err, errlen, "address %s: missing port in address", s);
    return -1;
  }
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close + 1 != colon) {
      snprintf(err, errlen, "address %s: missing ']' in address", s);
      return -1;
    }
    snprintf(host, hlen, "%.*s", (int)(close - s - 1), s + 1);
  } else {
    if (memchr(s, ':', (size_t)(colon - s))) {
      snprintf(err, errlen, "address %s: too many colons in address", s);
      return -1;
    }
    snprintf(host, hlen, "%.*s", (int)(colon - s), s);
  }
  snprintf(port, plen, "%s", colon + 1);
  if (!*port) {
    snprintf(err, errlen, "address %s: missing port in address", s);
    return -1;
  }
  return 0;
}

static void addr_name(const struct sockaddr *sa, char *out, size_t outlen)
{
  char ip[64] = "";
  if (sa->sa_family == AF_INET6) {
    uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof ip);
    snprintf(out, outlen, "[%s]:%d", ip, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
  } else {
    uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof ip);
    snprintf(out, outlen, "%s:%d", ip, ntohs(((const struct sockaddr_in *)sa)->sin_port));
  }
}

/* ---- TCP and UDP ---- */

struct net_op {
  struct local_runner *r;
  bool udp, done;
  int pending;
  uv_timer_t timer;
  union {
    uv_tcp_t tcp;
    uv_udp_t udp;
  } sock;
  bool sock_open;
  uv_connect_t conn;
  uv_udp_send_t send;
  uv_getaddrinfo_t gai;
  char target[512];
  char raddr[128];
};

static void net_closed(uv_handle_t *h)
{
  struct net_op *op = h->data;
  if (--op->pending == 0) free(op);
}

static void net_done(struct net_op *op, const char *status, const char *output)
{
  if (op->done) return;
  op->done = true;
  struct local_runner *r = op->r;
  if (r && r->chk) report(r, status, output);
  uv_timer_stop(&op->timer);
  uv_close((uv_handle_t *)&op->timer, net_closed);
  if (op->sock_open) uv_close((uv_handle_t *)&op->sock, net_closed);
  op->sock_open = false;
  if (r) op_finished(r);
}

static void net_success(struct net_op *op)
{
  char out[700];
  snprintf(out, sizeof out, "%s connect %s: Success", op->udp ? "UDP" : "TCP", op->target);
  net_done(op, LOCAL_PASSING, out);
}

static void net_timeout(uv_timer_t *t)
{
  struct net_op *op = t->data;
  if (op->udp) {
    /* No answer and no ICMP error within the timeout: Consul's UDP check passes. */
    net_success(op);
    return;
  }
  char out[700];
  snprintf(out, sizeof out, "dial tcp %s: i/o timeout", op->raddr[0] ? op->raddr : op->target);
  net_done(op, LOCAL_CRITICAL, out);
}

static void tcp_connected(uv_connect_t *c, int status)
{
  struct net_op *op = c->data;
  if (op->done) return;
  if (status == 0) {
    net_success(op);
    return;
  }
  char out[700];
  snprintf(out, sizeof out, "dial tcp %s: connect: %s", op->raddr, uv_strerror(status));
  net_done(op, LOCAL_CRITICAL, out);
}

static void udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
  (void)h;
  (void)suggested;
  static char scratch[2048]; /* the answer's content is not looked at */
  *b = uv_buf_init(scratch, sizeof scratch);
}

static void udp_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *b, const struct sockaddr *addr,
                     unsigned flags)
{
  (void)b;
  (void)flags;
  struct net_op *op = u->data;
  if (op->done) return;
  if (nread < 0) {
    struct sockaddr_storage local;
    int len = sizeof local;
    char laddr[128] = "";
    if (uv_udp_getsockname(u, (struct sockaddr *)&local, &len) == 0)
      addr_name((struct sockaddr *)&local, laddr, sizeof laddr);
    char out[800];
    snprintf(out, sizeof out, "read udp %s->%s: read: %s", laddr, op->raddr,
             uv_strerror((int)nread));
    net_done(op, LOCAL_CRITICAL, out);
    return;
  }
  if (nread > 0 || addr) net_success(op); /* any answer */
}

static void udp_sent(uv_udp_send_t *s, int status)
{
  struct net_op *op = s->data;
  if (op->done || status == 0 || status == UV_ECANCELED) return;
  char out[700];
  snprintf(out, sizeof out, "write udp %s: %s", op->raddr, uv_strerror(status));
  net_done(op, LOCAL_CRITICAL, out);
}

static void net_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
  struct net_op *op = req->data;
  op->pending--;
  if (op->done) {
    if (ai) uv_freeaddrinfo(ai);
    if (op->pending == 0) free(op);
    return;
  }
  if (status < 0 || !ai) {
    char host[300], port[32], e[256];
    split_host_port(op->target, host, sizeof host, port, sizeof port, e, sizeof e);
    char out[800];
    snprintf(out, sizeof out, "dial %s: lookup %s: %s", op->udp ? "udp" : "tcp", host,
             status == UV_EAI_NONAME || status == UV_EAI_NODATA ? "no such host" : uv_strerror(status));
    if (ai) uv_freeaddrinfo(ai);
    net_done(op, LOCAL_CRITICAL, out);
    return;
  }
  addr_name(ai->ai_addr, op->raddr, sizeof op->raddr);
  uv_loop_t *loop = op->timer.loop;
  int rv;
  if (op->udp) {
    uv_udp_init(loop, &op->sock.udp);
    op->sock.udp.data = op;
    op->sock_open = true;
    op->pending++;
    rv = uv_udp_connect(&op->sock.udp, ai->ai_addr);
    if (rv == 0) {
      uv_buf_t b = uv_buf_init((char *)"", 0);
      op->send.data = op;
      rv = uv_udp_send(&op->send, &op->sock.udp, &b, 1, NULL, udp_sent);
    }
    if (rv == 0) rv = uv_udp_recv_start(&op->sock.udp, udp_alloc, udp_recv);
  } else {
    uv_tcp_init(loop, &op->sock.tcp);
    op->sock.tcp.data = op;
    op->sock_open = true;
    op->pending++;
    op->conn.data = op;
    rv = uv_tcp_connect(&op->conn, &op->sock.tcp, ai->ai_addr, tcp_connected);
  }
  uv_freeaddrinfo(ai);
  if (rv != 0) {
    char out[700];
    snprintf(out, sizeof out, "dial %s %s: %s", op->udp ? "udp" : "tcp", op->raddr, uv_strerror(rv));
    net_done(op, LOCAL_CRITICAL, out);
  }
}

static void net_start(struct local_runner *r, const char *target, bool udp)
{
  struct net_op *op = xcalloc(1, sizeof *op);
  op->r = r;
  op->udp = udp;
  snprintf(op->target, sizeof op->target, "%s", target);
  r->op = op;
  uv_timer_init(r->la->loop, &op->timer);
  op->timer.data = op;
  op->pending = 1;
  uv_timer_start(&op->timer, net_timeout, r->timeout_ms, 0);
  char host[300], port[32], err[600];
  if (split_host_port(target, host, sizeof host, port, sizeof port, err, sizeof err) != 0) {
    char out[700];
    snprintf(out, sizeof out, "dial %s: %s", udp ? "udp" : "tcp", err);
    net_done(op, LOCAL_CRITICAL, out);
    return;
  }
  struct addrinfo hints = {0};
  hints.ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM;
  op->gai.data = op;
  op->pending++;
  int rv = uv_getaddrinfo(r->la->loop, &op->gai, net_resolved, host, port, &hints);
  if (rv != 0) {
    op->pending--;
    char out[700];
    snprintf(out, sizeof out, "dial %s: lookup %s: %s", udp ? "udp" : "tcp", host, uv_strerror(rv));
    net_done(op, LOCAL_CRITICAL, out);
  }
}

/* The check went: end the run now, without a report. */
static void net_detach(struct net_op *op)
{
  op->r = NULL;
  net_done(op, NULL, NULL);
}

/* ---- HTTP ---- */

struct http_op {
  struct local_runner *r;
  struct local_httpc *client;
  char *method, *url;
};

static void http_done(void *arg, const struct local_httpc_result *res)
{
  struct http_op *op = arg;
  struct local_runner *r = op->r;
  if (r && r->chk) {
    if (res->status_code == 0) {
      report(r, LOCAL_CRITICAL, res->error);
    } else {
      struct buf out = BUF_INIT;
      buf_printf(&out, "HTTP %s %s: %s Output: ", op->method, op->url, res->status);
      buf_append(&out, res->body, res->body_len);
      const char *st = res->status_code >= 200 && res->status_code <= 299 ? LOCAL_PASSING
                       : res->status_code == 429 ? LOCAL_WARNING : LOCAL_CRITICAL;
      report(r, st, out.data);
      buf_free(&out);
    }
  }
  free(op->method);
  free(op->url);
  free(op);
  if (r) op_finished(r);
}

static void http_start(struct local_runner *r)
{
  const struct local_check_def *d = r->chk->def;
  struct http_op *op = xcalloc(1, sizeof *op);
  op->r = r;
  op->method = xstrdup(*d->method ? d->method : "GET");
  op->url = xstrdup(d->http);
  r->op = op;
  struct local_httpc_req req = {
      .method = op->method,
      .url = d->http,
      .header = d->header,
      .body = d->body,
      .timeout_ms = r->timeout_ms,
      .max_body = r->max_output,
      .no_redirects = d->disable_redirects,
      .tls_skip_verify = d->tls_skip_verify,
      .tls_server_name = d->tls_server_name,
  };
  op->client = local__httpc_start(r->la->loop, &req, http_done, op);
}

/* ---- gRPC and H2PING (h2c.c does the talking) ---- */

struct h2_op {
  struct local_runner *r;
  struct local_h2c *client;
};

static void h2_done(void *arg, bool passing, const char *output)
{
  struct h2_op *op = arg;
  struct local_runner *r = op->r;
  if (r && r->chk) report(r, passing ? LOCAL_PASSING : LOCAL_CRITICAL, output);
  free(op);
  if (r) op_finished(r);
}

static void h2_start(struct local_runner *r)
{
  const struct local_check_def *d = r->chk->def;
  bool ping = r->kind == RK_H2PING;
  const char *target = ping ? d->h2ping : d->grpc;
  /* GRPC is "host:port[/service]" (NewGrpcHealthProbe splits at the first '/'). */
  const char *slash = ping ? NULL : strchr(target, '/');
  char *addr = slash ? xstrndup(target, (size_t)(slash - target)) : xstrdup(target);
  char host[300], port[32], err[600];
  if (split_host_port(addr, host, sizeof host, port, sizeof port, err, sizeof err) != 0) {
    struct buf out = BUF_INIT;
    if (ping)
      buf_printf(&out, "Failed to dial to %s: dial tcp: %s", target, err);
    else
      buf_printf(&out, "rpc error: code = Unavailable desc = connection error: desc = "
                       "\"transport: Error while dialing: dial tcp: %s\"", err);
    report(r, LOCAL_CRITICAL, out.data);
    buf_free(&out);
    free(addr);
    schedule(r, r->interval_ms);
    return;
  }
  free(addr);
  struct h2_op *op = xcalloc(1, sizeof *op);
  op->r = r;
  r->op = op;
  struct local_h2c_req req = {
      .host = host,
      .port = port,
      .label = target,
      .service = slash ? slash + 1 : "",
      .ping = ping,
      .timeout_ms = r->timeout_ms,
      .tls = ping ? d->h2ping_use_tls : d->grpc_use_tls,
      .tls_skip_verify = d->tls_skip_verify,
      .tls_server_name = d->tls_server_name,
  };
  op->client = local__h2c_start(r->la->loop, &req, h2_done, op);
}

/* ---- scripts (CheckMonitor) ---- */

struct script_op {
  struct local_runner *r;
  uv_process_t proc;
  uv_pipe_t pipe;
  uv_timer_t timer;
  int pending;
  bool exited, eof, reported, spawned;
  int64_t exit_status;
  int term_signal;
  struct buf out; /* the last max bytes (Consul's circbuf) */
  size_t total, max;
  uint64_t timeout_ms;
};

static void script_closed(uv_handle_t *h)
{
  struct script_op *op = h->data;
  if (--op->pending == 0) {
    buf_free(&op->out);
    free(op);
  }
}

/* The captured output, with Consul's note when it was cut. Caller frees. */
static char *script_output(struct script_op *op)
{
  size_t keep = op->out.len > op->max ? op->max : op->out.len;
  const char *tail = op->out.data ? op->out.data + op->out.len - keep : "";
  struct buf b = BUF_INIT;
  if (op->total > keep) buf_printf(&b, "Captured %zu of %zu bytes\n...\n", keep, op->total);
  buf_append(&b, tail, keep);
  buf_putc(&b, '\0');
  b.len--;
  return buf_steal(&b, NULL);
}

static void script_maybe_finish(struct script_op *op)
{
  if (!op->exited || !op->eof) return;
  struct local_runner *r = op->r;
  if (!op->reported && r && r->chk) {
    char *out = script_output(op);
    const char *st = op->term_signal == 0 && op->exit_status == 0 ? LOCAL_PASSING
                     : op->term_signal == 0 && op->exit_status == 1 ? LOCAL_WARNING
                                                                    : LOCAL_CRITICAL;
    report(r, st, out);
    free(out);
  }
  op->reported = true;
  uv_timer_stop(&op->timer);
  uv_close((uv_handle_t *)&op->timer, script_closed);
  uv_close((uv_handle_t *)&op->pipe, script_closed);
  op->r = NULL;
  if (r) op_finished(r);
}

static void script_exit(uv_process_t *p, int64_t status, int sig)
{
  struct script_op *op = p->data;
  op->exited = true;
  op->exit_status = status;
  op->term_signal = sig;
  uv_close((uv_handle_t *)p, script_closed);
  script_maybe_finish(op);
}

static void script_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
  (void)h;
  b->base = xmalloc(suggested);
  b->len = suggested;
}

static void script_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
  struct script_op *op = s->data;
  if (nread > 0) {
    op->total += (size_t)nread;
    buf_append(&op->out, b->base, (size_t)nread);
    if (op->out.len > 2 * op->max + 4096) buf_consume(&op->out, op->out.len - op->max);
  }
  free(b->base);
  if (nread < 0) {
    uv_read_stop(s);
    op->eof = true;
    script_maybe_finish(op);
  }
}

static void script_timeout(uv_timer_t *t)
{
  struct script_op *op = t->data;
  /* KillCommandSubtree: the whole process group, so children go too. */
  if (!op->exited) kill(-op->proc.pid, SIGKILL);
  else if (op->proc.pid > 0) kill(-op->proc.pid, SIGKILL);
  if (!op->reported && op->r && op->r->chk) {
    char dur[32];
    struct buf msg = BUF_INIT;
    buf_printf(&msg, "Timed out (%s) running check",
               duration_format((int64_t)op->timeout_ms * 1000000, dur, sizeof dur));
    char *out = script_output(op);
    if (*out) buf_printf(&msg, "\n\n%s", out);
    free(out);
    local__update_check(op->r->la, op->r->chk, LOCAL_CRITICAL, msg.data);
    log_warn("agent", "Timed out running check: check=%s timeout=%s", op->r->chk->id, dur);
    buf_free(&msg);
  }
  op->reported = true;
  /* The next run waits for the process to be reaped (script_exit). */
}

static void script_start(struct local_runner *r)
{
  const struct local_check_def *d = r->chk->def;
  uv_loop_t *loop = r->la->loop;
  struct script_op *op = xcalloc(1, sizeof *op);
  op->r = r;
  op->max = r->max_output;
  op->timeout_ms = r->timeout_ms;
  r->op = op;
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    char msg[256];
    snprintf(msg, sizeof msg, "socketpair: %s", strerror(errno));
    report(r, LOCAL_CRITICAL, msg);
    free(op);
    r->op = NULL;
    schedule(r, r->interval_ms);
    return;
  }
  uv_pipe_init(loop, &op->pipe, 0);
  op->pipe.data = op;
  op->pending++;
  uv_pipe_open(&op->pipe, fds[0]);
  uv_timer_init(loop, &op->timer);
  op->timer.data = op;
  op->pending++;
  char **args = xcalloc(d->n_args + 1, sizeof *args);
  for (size_t i = 0; i < d->n_args; i++) args[i] = d->args[i];
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = fds[1];
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = fds[1];
  uv_process_options_t opts = {0};
  opts.exit_cb = script_exit;
  opts.file = args[0];
  opts.args = args;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.flags = UV_PROCESS_DETACHED; /* its own process group, killed as a whole */
  op->proc.data = op;
  int rv = uv_spawn(loop, &op->proc, &opts);
  close(fds[1]);
  free(args);
  if (rv != 0) {
    char msg[600];
    if (rv == UV_ENOENT)
      snprintf(msg, sizeof msg, "exec: \"%s\": executable file not found in $PATH", d->args[0]);
    else
      snprintf(msg, sizeof msg, "fork/exec %s: %s", d->args[0], uv_strerror(rv));
    log_error("agent", "Check failed to invoke: check=%s error=%s", r->chk->id, msg);
    report(r, LOCAL_CRITICAL, msg);
    op->reported = op->exited = op->eof = true;
    /* libuv initialises the process handle even when uv_spawn fails, so it is in the loop's
     * handle queue and must be closed like the others before op is freed. */
    op->pending++;
    uv_close((uv_handle_t *)&op->proc, script_closed);
    uv_close((uv_handle_t *)&op->timer, script_closed);
    uv_close((uv_handle_t *)&op->pipe, script_closed);
    op->r = NULL;
    op_finished(r);
    return;
  }
  op->pending++; /* the process handle */
  op->spawned = true;
  uv_read_start((uv_stream_t *)&op->pipe, script_alloc, script_read);
  uv_timer_start(&op->timer, script_timeout, op->timeout_ms, 0);
}

/* ---- alias ---- */

struct alias_eval {
  const char *self, *service;
  const char *status, *msg_check, *msg_output;
  bool any, service_found;
};

/* CheckAlias.processChecks for one check: node-level checks always count, service checks only
 * of the aliased service (of none, for a node alias). */
static void alias_consider(struct alias_eval *e, const char *id, const char *sid,
                           const char *status, const char *name, const char *output)
{
  if (e->self && strcmp(id, e->self) == 0) return;
  bool match = strcmp(sid ? sid : "", e->service) == 0;
  if (sid && *sid && !match) return;
  if (match) e->service_found = true;
  e->any = true;
  if (strcmp(e->status, LOCAL_CRITICAL) == 0) return;
  if (strcmp(status, LOCAL_CRITICAL) == 0 ||
      (strcmp(status, LOCAL_WARNING) == 0 && strcmp(e->status, LOCAL_WARNING) != 0)) {
    e->status = strcmp(status, LOCAL_CRITICAL) == 0 ? LOCAL_CRITICAL : LOCAL_WARNING;
    e->msg_check = name;
    e->msg_output = output;
  }
}

struct remote_alias_ctx {
  struct alias_eval *e;
};

static int alias_remote_each(const struct state_check *c, void *arg)
{
  struct alias_eval *e = arg;
  alias_consider(e, c->check_id, c->service_id, c->status, c->name, c->output);
  return 0;
}

static void alias_checks_fired(void *arg);
static void alias_services_fired(void *arg);

static void alias_eval(struct local_runner *r)
{
  if (!r->chk) return;
  struct local_agent *la = r->la;
  const struct local_check_def *d = r->chk->def;
  struct alias_eval e = {r->chk->id, d->alias_service, LOCAL_PASSING, NULL, NULL, false, false};
  const char *node = *d->alias_node ? d->alias_node : la->node_name;
  bool exists = false;
  if (!r->alias_remote) {
    for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
      struct local_chk *c = it.entry->value;
      if (c->deleted) continue;
      alias_consider(&e, c->id, c->service_id, c->status, c->name, c->output);
    }
    exists = !*d->alias_service || local__svc(la, d->alias_service) != NULL;
  } else {
    struct state_store *store = la->remote.store ? la->remote.store(la->remote.ctx) : NULL;
    if (!store) {
      local__update_check(la, r->chk, LOCAL_CRITICAL,
                          "Alias checks of other nodes need a server's catalog, which this agent "
                          "cannot read yet");
      return;
    }
    state_node_checks(store, d->alias_node, alias_remote_each, &e);
    exists = !*d->alias_service || state_service_get(store, d->alias_node, d->alias_service);
    if (!r->watch_checks)
      r->watch_checks = state_watch_add(store, STATE_WATCH_TABLE, "checks", 6, alias_checks_fired, r);
    if (!r->watch_services)
      r->watch_services =
          state_watch_add(store, STATE_WATCH_TABLE, "services", 8, alias_services_fired, r);
  }
  char msg[2048];
  const char *status = e.status;
  if (e.msg_check) {
    snprintf(msg, sizeof msg, "Aliased check \"%s\" failing: %s", e.msg_check,
             e.msg_output ? e.msg_output : "");
  } else {
    snprintf(msg, sizeof msg, "%s", e.any ? "All checks passing." : "No checks found.");
  }
  if (*d->alias_service && !e.service_found && !exists) {
    status = LOCAL_CRITICAL;
    snprintf(msg, sizeof msg, "Service %s could not be found on node %s", d->alias_service, node);
  }
  local__update_check(la, r->chk, status, msg);
}

static void alias_timer_cb(uv_timer_t *t)
{
  struct local_runner *r = t->data;
  alias_eval(r);
}

/* From inside a store write: only note it (watch callbacks must not do work). The other
 * watch is cancelled, so a runner has no watch left once one fired. */
static void alias_checks_fired(void *arg)
{
  struct local_runner *r = arg;
  r->watch_checks = NULL;
  state_watch_cancel(r->watch_services);
  r->watch_services = NULL;
  if (r->chk) uv_timer_start(&r->timer, alias_timer_cb, 0, 0);
}

static void alias_services_fired(void *arg)
{
  struct local_runner *r = arg;
  r->watch_services = NULL;
  state_watch_cancel(r->watch_checks);
  r->watch_checks = NULL;
  if (r->chk) uv_timer_start(&r->timer, alias_timer_cb, 0, 0);
}

void local__runner_alias_all(struct local_agent *la)
{
  for (struct map_iter it = map_iter_start(&la->checks); map_iter_next(&it);) {
    struct local_chk *c = it.entry->value;
    if (c->deleted || !c->runner || c->runner->kind != RK_ALIAS || c->runner->alias_remote) continue;
    alias_eval(c->runner);
  }
}

/* ---- TTL ---- */

static void ttl_expired(uv_timer_t *t)
{
  struct local_runner *r = t->data;
  if (!r->chk) return;
  log_warn("agent", "Check missed TTL, is now critical: check=%s", r->chk->id);
  struct buf out = BUF_INIT;
  if (r->ttl_last_output && *r->ttl_last_output)
    buf_printf(&out, "TTL expired (last output before timeout follows): %s", r->ttl_last_output);
  else
    buf_puts(&out, "TTL expired");
  local__update_check(r->la, r->chk, LOCAL_CRITICAL, out.data);
  buf_free(&out);
}

char *local__runner_ttl_set(struct local_agent *la, struct local_chk *c, const char *status,
                            const char *output)
{
  struct local_runner *r = c->runner;
  size_t total = strlen(output);
  struct buf out = BUF_INIT;
  if (r && total > r->max_output)
    buf_printf(&out, "%.*s ... (captured %zu of %zu bytes)", (int)r->max_output, output,
               r->max_output, total);
  else
    buf_puts(&out, output);
  if (!out.data) buf_puts(&out, "");
  local__update_check(la, c, status, out.data);
  if (r) {
    free(r->ttl_last_output);
    r->ttl_last_output = xstrdup(out.data);
    uv_timer_start(&r->timer, ttl_expired, (uint64_t)(c->def->ttl / 1000000), 0);
  }
  return buf_steal(&out, NULL);
}

/* ---- life ---- */

static void run_cb(uv_timer_t *t)
{
  struct local_runner *r = t->data;
  if (!r->chk || r->op) return;
  const struct local_check_def *d = r->chk->def;
  switch (r->kind) {
  case RK_HTTP: http_start(r); break;
  case RK_TCP: net_start(r, d->tcp, false); break;
  case RK_UDP: net_start(r, d->udp, true); break;
  case RK_SCRIPT: script_start(r); break;
  case RK_ALIAS: alias_eval(r); break;
  case RK_GRPC:
  case RK_H2PING: h2_start(r); break;
  case RK_TTL: break;
  }
}

int local__runner_start(struct local_agent *la, struct local_chk *c, char *err, size_t errlen)
{
  const struct local_check_def *d = c->def;
  const char *type = local__check_def_type(d);
  enum runner_kind kind;
  if (strcmp(type, "ttl") == 0) kind = RK_TTL;
  else if (strcmp(type, "http") == 0) kind = RK_HTTP;
  else if (strcmp(type, "tcp") == 0) kind = RK_TCP;
  else if (strcmp(type, "udp") == 0) kind = RK_UDP;
  else if (strcmp(type, "script") == 0) kind = RK_SCRIPT;
  else if (strcmp(type, "alias") == 0) kind = RK_ALIAS;
  else if (strcmp(type, "grpc") == 0) kind = RK_GRPC;
  else if (strcmp(type, "h2ping") == 0) kind = RK_H2PING;
  else {
    snprintf(err, errlen, "%s checks are not supported by this agent",
             *type ? type : "This kind of");
    return -1;
  }
  struct local_runner *r = xcalloc(1, sizeof *r);
  r->la = la;
  r->chk = c;
  r->kind = kind;
  c->runner = r;
  size_t max = la->cfg.check_output_max_size;
  if (d->output_max_size > 0 && (size_t)d->output_max_size < max) max = (size_t)d->output_max_size;
  r->max_output = max;
  local__status_handler_init(&r->sh, d->success_before_passing, d->failures_before_warning,
                             d->failures_before_critical);
  uv_timer_init(la->loop, &r->timer);
  r->timer.data = r;
  uint64_t interval = (uint64_t)(d->interval / 1000000);
  if (kind != RK_TTL && kind != RK_ALIAS && interval < la->cfg.check_min_interval_ms) {
    log_warn("agent", "check has interval below minimum: check=%s minimum_interval=%llums", c->id,
             (unsigned long long)la->cfg.check_min_interval_ms);
    interval = la->cfg.check_min_interval_ms;
  }
  r->interval_ms = interval;
  r->timeout_ms = d->timeout > 0 ? (uint64_t)(d->timeout / 1000000)
                                 : kind == RK_SCRIPT ? DEFAULT_SCRIPT_TIMEOUT_MS : DEFAULT_TIMEOUT_MS;
  if (r->timeout_ms == 0) r->timeout_ms = 1;
  switch (kind) {
  case RK_TTL:
    uv_timer_start(&r->timer, ttl_expired, (uint64_t)(d->ttl / 1000000), 0);
    break;
  case RK_ALIAS:
    la->n_alias++;
    r->alias_remote = *d->alias_node && strcmp(d->alias_node, la->node_name) != 0;
    uv_timer_start(&r->timer, alias_timer_cb, 0, 0);
    break;
  default:
    /* lib.RandomStagger: the first run somewhere in the first interval. */
    uv_timer_start(&r->timer, run_cb, rand_below(interval ? interval : 1), 0);
    break;
  }
  return 0;
}

static void runner_timer_closed(uv_handle_t *h)
{
  struct local_runner *r = h->data;
  free(r->ttl_last_output);
  free(r);
}

void local__runner_stop(struct local_agent *la, struct local_chk *c)
{
  struct local_runner *r = c ? c->runner : NULL;
  if (!r) return;
  c->runner = NULL;
  r->chk = NULL;
  if (r->kind == RK_ALIAS) {
    la->n_alias--;
    state_watch_cancel(r->watch_checks);
    state_watch_cancel(r->watch_services);
    r->watch_checks = r->watch_services = NULL;
  }
  if (r->op) {
    switch (r->kind) {
    case RK_HTTP: {
      struct http_op *op = r->op;
      local__httpc_cancel(op->client);
      free(op->method);
      free(op->url);
      free(op);
      break;
    }
    case RK_TCP:
    case RK_UDP: net_detach(r->op); break;
    case RK_GRPC:
    case RK_H2PING: {
      struct h2_op *op = r->op;
      local__h2c_cancel(op->client);
      free(op);
      break;
    }
    case RK_SCRIPT: {
      struct script_op *op = r->op;
      op->r = NULL;
      op->reported = true;
      if (op->spawned && !op->exited) kill(-op->proc.pid, SIGKILL);
      break;
    }
    default: break;
    }
    r->op = NULL;
  }
  uv_timer_stop(&r->timer);
  uv_close((uv_handle_t *)&r->timer, runner_timer_closed);
}

bool local__runner_is_ttl(const struct local_chk *c)
{
  return c->runner && c->runner->kind == RK_TTL;
}

bool local__runner_is_script(const struct local_chk *c)
{
  return c->runner && c->runner->kind == RK_SCRIPT;
}
