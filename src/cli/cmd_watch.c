/* cmd_watch.c -- `concord watch`: Consul's watch command. Builds a watch spec from the flags,
 * checks the agent answers (GET /v1/agent/self), then runs the shared plan (src/watch) with
 * the CLI's blocking client:
 *   - without a handler, the first result is printed as Go's MarshalIndent prints it and the
 *     command exits 0 (Consul stops the plan after dumping the data once);
 *   - with a handler (the arguments after the flags), it runs once per change, through
 *     $SHELL -c (default /bin/sh) unless -shell=false, with the result's JSON on stdin and
 *     CONSUL_INDEX in its environment; a handler that cannot start or exits non-zero ends the
 *     watch with exit 1, as Consul's does.
 * Errors while watching are logged and retried with the plan's backoff (5 s * failures^2, at
 * most 180 s), so the watch survives an agent restart. SIGINT/SIGTERM end it with exit 0
 * (Consul's shutdown path calls os.Exit(0)), passing the signal to a running handler first. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/internal.h"
#include "lib/alloc.h"
#include "lib/duration.h"
#include "watch/watch.h"

struct opts {
  const char *type, *key, *prefix, *service, *passingonly, *state, *name;
  struct cli__listflag tag;
  bool shell;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_string(fs, "type", &o->type, "",
                   "The kind of data to watch: key, keyprefix, services, nodes, service, "
                   "checks or event. Required.");
  cli__flag_string(fs, "key", &o->key, "", "The key to watch (type key).");
  cli__flag_string(fs, "prefix", &o->prefix, "", "The key prefix to watch (type keyprefix).");
  cli__flag_string(fs, "service", &o->service, "",
                   "The service to watch: required for type service, optional for checks.");
  cli__flag_list(fs, "tag", &o->tag,
                 "Only instances with this tag (type service; repeat for several tags).");
  cli__flag_string(fs, "passingonly", &o->passingonly, "",
                   "Whether only instances whose checks all pass are shown (type service), "
                   "one of `[true|false]`. The default is false.");
  cli__flag_bool(fs, "shell", &o->shell,
                 "Runs the handler through a shell ($SHELL, or /bin/sh) instead of executing "
                 "its arguments directly.");
  o->shell = true;
  fs->flags[fs->n - 1].defval = "true";
  cli__flag_string(fs, "state", &o->state, "",
                   "The check state to watch (type checks): any, passing, warning or critical.");
  cli__flag_string(fs, "name", &o->name, "", "The event name to watch (type event).");
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord watch [options] [child...]\n"
    "\n"
    "  Watches one view of the data held by the cluster. When a handler command\n"
    "  follows the options, it runs each time the view changes, with the new data\n"
    "  as JSON on its standard input and the index in CONSUL_INDEX. Without one,\n"
    "  the current data is printed as JSON and the command exits.\n"
    "\n"
    "  -type is required; which other options apply depends on the type.\n"
    "\n"
    "      $ concord watch -type key -key app/config ./reconfigure.sh\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
}

/* Go's strconv.ParseBool. */
static int parse_bool(const char *s, bool *out)
{
  static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (size_t i = 0; i < 6; i++) {
    if (strcmp(s, t[i]) == 0) return *out = true, 0;
    if (strcmp(s, f[i]) == 0) return *out = false, 0;
  }
  return -1;
}

/* The running handler, for the signal handler to pass SIGINT/SIGTERM on to. */
static volatile sig_atomic_t watch_child;

static void on_signal(int sig)
{
  pid_t c = (pid_t)watch_child;
  if (c > 0) kill(c, sig);
  _exit(0);
}

/* Runs the handler once. Returns 0, or -1 with Consul's message in err. */
static int run_handler(char **args, int nargs, bool shell, const char *json, size_t len,
                       uint64_t index, const struct cli__ctx *ctx, char *err, size_t errlen)
{
  int in[2];
  if (pipe(in) != 0) {
    snprintf(err, errlen, "Error executing handler: pipe: %s", strerror(errno));
    return -1;
  }
  /* Built before fork: the child only calls async-signal-safe functions. */
  struct buf cmdline = BUF_INIT;
  for (int i = 0; i < nargs; i++) buf_printf(&cmdline, "%s%s", i ? " " : "", args[i]);
  const char *sh = cli__env(ctx, "SHELL");
  if (!sh) sh = "/bin/sh";
  char idx[48];
  snprintf(idx, sizeof idx, "%llu", (unsigned long long)index);
  fflush(ctx->out);
  fflush(ctx->err);
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errlen, "Error starting handler: fork: %s", strerror(errno));
    close(in[0]);
    close(in[1]);
    buf_free(&cmdline);
    return -1;
  }
  if (pid == 0) {
    dup2(in[0], 0);
    close(in[0]);
    close(in[1]);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    setenv("CONSUL_INDEX", idx, 1);
    if (shell) {
      execl(sh, sh, "-c", cmdline.data ? cmdline.data : "", (char *)NULL);
    } else {
      execvp(args[0], args);
    }
    /* Go's exec reports this before starting; the nearest we can do is exit 127. */
    _exit(127);
  }
  watch_child = pid;
  close(in[0]);
  buf_free(&cmdline);
  /* The handler may not read its input: a broken pipe is not our error. */
  void (*old)(int) = signal(SIGPIPE, SIG_IGN);
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(in[1], json + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  close(in[1]);
  signal(SIGPIPE, old);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  watch_child = 0;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
  if (WIFEXITED(st))
    snprintf(err, errlen, "Error executing handler: exit status %d", WEXITSTATUS(st));
  else
    snprintf(err, errlen, "Error executing handler: signal: %s", strsignal(WTERMSIG(st)));
  return -1;
}

/* hclog's line, as Consul's plan logs a failed query. */
static void log_retry(struct cli__ctx *ctx, const struct watch_spec *s, const char *why,
                      uint64_t ms)
{
  char ts[40], dur[32];
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  struct tm tm;
  gmtime_r(&now.tv_sec, &tm);
  size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, sizeof ts - n, ".%03ldZ", now.tv_nsec / 1000000);
  duration_format((int64_t)ms * DURATION_MS, dur, sizeof dur);
  fprintf(ctx->err, "%s [ERROR] watch: Watch errored: type=%s error=\"%s\" retry=%s\n", ts,
          watch_type_name(s->type), why, dur);
  fflush(ctx->err);
}

static void sleep_ms(uint64_t ms)
{
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  int rest = 0;
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;
  if (!o.type[0]) {
    cli__usage_error(ctx, "Watch type must be specified", usage, &fs);
    return 1;
  }
  /* The parameters as Consul's command gathers them, then the shared parser. */
  json_t *params = json_object();
  json_object_set_new(params, "type", json_string(o.type));
  if (o.http.datacenter.set && o.http.datacenter.v[0])
    json_object_set_new(params, "datacenter", json_string(o.http.datacenter.v));
  if (o.key[0]) json_object_set_new(params, "key", json_string(o.key));
  if (o.prefix[0]) json_object_set_new(params, "prefix", json_string(o.prefix));
  if (o.service[0]) json_object_set_new(params, "service", json_string(o.service));
  if (o.tag.n) {
    json_t *t = json_array();
    for (size_t i = 0; i < o.tag.n; i++) json_array_append_new(t, json_string(o.tag.v[i]));
    json_object_set_new(params, "tag", t);
  }
  if (o.http.stale.set && o.http.stale.v) json_object_set_new(params, "stale", json_true());
  if (o.state[0]) json_object_set_new(params, "state", json_string(o.state));
  if (o.name[0]) json_object_set_new(params, "name", json_string(o.name));
  if (o.passingonly[0]) {
    bool b;
    if (parse_bool(o.passingonly, &b) != 0) {
      cli__error(ctx, "Failed to parse passingonly flag: strconv.ParseBool: parsing \"%s\": "
                      "invalid syntax", o.passingonly);
      json_decref(params);
      return 1;
    }
    json_object_set_new(params, "passingonly", json_boolean(b));
  }
  char err[CLI__ERRLEN];
  struct watch_spec spec;
  int prc = watch_spec_parse(params, false, &spec, err, sizeof err);
  json_decref(params);
  if (prc != 0) {
    cli__error(ctx, "%s", err);
    watch_spec_free(&spec);
    return 1;
  }
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    watch_spec_free(&spec);
    return 1;
  }
  c.max_body = WATCH_MAX_BODY;
  int code = 0;
  if (cli__client_json(ctx, &c, "GET", "/v1/agent/self", NULL, NULL, 0, false, NULL, err,
                       sizeof err) != 0) {
    cli__error(ctx, "Error querying Consul agent: %s", err);
    code = 1;
    goto out;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  struct watch_plan plan;
  watch_plan_init(&plan, &spec);
  int nargs = argc - rest;
  for (;;) {
    struct buf target = BUF_INIT;
    watch_plan_target(&plan, &target);
    struct cli__http_req req = {.method = "GET", .target = target.data, .token = c.token,
                                .authorization = c.authorization};
    struct cli__http_resp resp;
    memset(&resp, 0, sizeof resp);
    char terr[CLI__ERRLEN] = "";
    int hrc = cli__http_do(ctx, &c.addr, &req, c.max_body, &resp, terr, sizeof terr);
    buf_free(&target);
    const json_t *result;
    uint64_t index, retry_ms;
    enum watch_step step = watch_plan_feed(
        &plan, hrc == 0 ? resp.status : 0, terr, resp.index != 0, resp.index, resp.body.data,
        resp.body.len, &result, &index, &retry_ms, err, sizeof err);
    cli__http_resp_free(&resp);
    if (step == WATCH_STEP_RETRY) {
      log_retry(ctx, &spec, err, retry_ms);
      sleep_ms(retry_ms);
      continue;
    }
    if (step == WATCH_STEP_NONE) {
      /* An answer without an index cannot block: pace the re-query instead of spinning. */
      if (plan.last_index == 0) sleep_ms(1000);
      continue;
    }
    struct buf js = BUF_INIT;
    if (nargs == 0) {
      watch_encode(result, true, &js);
      cli__info(ctx, "%s", js.data ? js.data : "null");
      buf_free(&js);
      break;
    }
    watch_encode(result, false, &js);
    int rrc = run_handler(argv + rest, nargs, o.shell, js.data, js.len, index, ctx, err,
                          sizeof err);
    buf_free(&js);
    if (rrc != 0) {
      cli__error(ctx, "%s", err);
      code = 1;
      break;
    }
  }
  watch_plan_free(&plan);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
out:
  cli__client_free(&c);
  watch_spec_free(&spec);
  return code;
}

const struct cli__command cli__cmd_watch = {
    .name = "watch",
    .synopsis = "Watch for changes in the cluster's data",
    .run = run,
    .help = help,
};
