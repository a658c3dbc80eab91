/* cmd_exec.c -- `concord exec [options] [-|command...]`: runs a command on the agents that
 * match the filters and have remote exec enabled, as Consul's command/exec does:
 *
 *   1. create a session ("Remote Exec", behavior delete, TTL 15s, renewed every 5 s);
 *   2. store the job spec at <prefix>/<session>/job with the session as lock holder;
 *   3. wait -wait-repl (so agents can read the spec with a stale read), then fire the
 *      "_rexec" event carrying {"Prefix", "Session"} with the node/service/tag filters;
 *   4. follow <prefix>/<session>/ with blocking key listings: <node>/ack (acknowledged),
 *      <node>/out/<n> (output; empty is a heartbeat) and <node>/exit (exit code), until
 *      -wait passes with nothing new (twice -wait while some node has acked but not exited);
 *   5. print "N / M node(s) completed / acknowledged", destroy the session and delete the
 *      prefix.
 * Exit status: 0, 2 when a node exited non-zero or never finished, 1 on errors. An agent with
 * remote exec disabled never acknowledges, so such a node does not appear at all. */
#include <jansson.h>
#include <regex.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/internal.h"
#include "lib/alloc.h"
#include "lib/b64.h"
#include "lib/duration.h"

#define EXEC_TTL "15s"
#define EXEC_RENEW_MS 5000
#define EXEC_MAX_SEEN 100000

struct opts {
  const char *node, *service, *tag, *prefix, *wait, *wait_repl;
  struct cli__optbool shell;
  bool verbose;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_string(fs, "node", &o->node, "", "Regular expression to filter on node names.");
  cli__flag_string(fs, "service", &o->service, "",
                   "Regular expression to filter on service instances.");
  cli__flag_string(fs, "tag", &o->tag, "",
                   "Regular expression to filter on service tags. Must be used with -service.");
  cli__flag_string(fs, "prefix", &o->prefix, "_rexec",
                   "Prefix in the KV store to use for request data.");
  cli__flag_optbool(fs, "shell", &o->shell, false, "Use a shell to run the command.");
  cli__flag_string(fs, "wait", &o->wait, "2s",
                   "Period to wait with no responses before terminating execution.");
  cli__flag_string(fs, "wait-repl", &o->wait_repl, "200ms",
                   "Period to wait for replication before firing event. This is an "
                   "optimization to allow stale reads to be performed.");
  cli__flag_bool(fs, "verbose", &o->verbose, "Enables verbose output.");
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord exec [options] [-|command...]\n"
    "\n"
    "  Evaluates a command on remote Concord nodes. The nodes responding can\n"
    "  be filtered using regular expressions on node name, service, and tag\n"
    "  definitions. If a command is '-', stdin will be read until EOF\n"
    "  and used as a script input.\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
}

/* Consul's shutdownCh: Ctrl-C or SIGTERM stops waiting (exit 1) but still destroys the
 * session and the data. Noticed between requests: within one poll (at most 5 s). */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
  (void)sig;
  interrupted = 1;
}

static long long now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long long ms)
{
  if (ms <= 0) return;
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && !interrupted) {
  }
}

static int check_regexp(const char *what, const char *expr, char *err, size_t errlen)
{
  if (!expr[0]) return 0;
  regex_t re;
  int rc = regcomp(&re, expr, REG_EXTENDED | REG_NOSUB);
  if (rc != 0) {
    char e[256];
    regerror(rc, &re, e, sizeof(e));
    snprintf(err, errlen, "Failed to compile %s filter regexp: error parsing regexp: %s: `%s`",
             what, e, expr);
    return -1;
  }
  regfree(&re);
  return 0;
}

/* TargetedUI.prefixLines: each line of msg as "<arrow> <node>: <line>", trailing space of the
 * whole text trimmed. */
static void print_targeted(struct cli__ctx *ctx, bool arrow, const char *node, const char *msg,
                           size_t len)
{
  struct buf out = BUF_INIT;
  const char *p = msg, *end = msg + len;
  for (;;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    buf_printf(&out, "%s %s: ", arrow ? "==>" : "   ", node);
    buf_append(&out, p, n);
    buf_append(&out, "\n", 1);
    if (!nl) break;
    p = nl + 1;
  }
  while (out.len && (out.data[out.len - 1] == ' ' || out.data[out.len - 1] == '\n' ||
                     out.data[out.len - 1] == '\t' || out.data[out.len - 1] == '\r'))
    out.len--;
  fprintf(ctx->out, "%.*s\n", (int)out.len, out.data);
  fflush(ctx->out);
  buf_free(&out);
}

struct exec_state {
  struct cli__ctx *ctx;
  struct cli__client *c;
  struct opts *o;
  char *session;
  char *dir; /* "<prefix>/<session>/" */
  int64_t wait_ms;
  long long last_renew;
};

/* PUT /v1/session/renew/<id>; best effort (Consul prints the failure and stops renewing). */
static void renew_if_due(struct exec_state *st)
{
  if (now_ms() - st->last_renew < EXEC_RENEW_MS) return;
  st->last_renew = now_ms();
  char err[CLI__ERRLEN];
  struct buf path = BUF_INIT;
  buf_printf(&path, "/v1/session/renew/%s", st->session);
  struct cli__query q;
  cli__query_init(&q);
  if (cli__client_json(st->ctx, st->c, "PUT", path.data, &q, NULL, 0, false, NULL, err,
                       sizeof(err)) != 0)
    cli__error(st->ctx, "Session renew failed: %s", err);
  cli__query_free(&q);
  buf_free(&path);
}

/* GET of one key's value (kv.Get); -1 when it cannot be read. */
static int read_value(struct exec_state *st, const char *key, struct buf *val, char *err,
                      size_t errlen)
{
  struct buf path = BUF_INIT;
  buf_printf(&path, "/v1/kv/%s", key);
  struct cli__query q;
  cli__query_init(&q);
  struct cli__http_resp r = {0};
  int rv = cli__client_call(st->ctx, st->c, "GET", path.data, &q, NULL, 0, false, &r, err, errlen);
  cli__query_free(&q);
  buf_free(&path);
  if (rv != 0) return -1;
  if (r.status != 200) {
    if (r.status == 404) snprintf(err, errlen, "%s", "<nil>");
    else cli__status_error(&r, err, errlen);
    cli__http_resp_free(&r);
    return -1;
  }
  struct cli__kvpair *pairs = NULL;
  size_t n = 0;
  rv = cli__kv_decode(r.body.data ? r.body.data : "", r.body.len, &pairs, &n, err, errlen);
  cli__http_resp_free(&r);
  if (rv != 0) return -1;
  if (n > 0) buf_append(val, pairs[0].value.data ? pairs[0].value.data : "", pairs[0].value.len);
  cli__kv_free(pairs, n);
  return 0;
}

static bool has_suffix(const char *s, const char *suf)
{
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Consul's waitForJob and streamResults, on one thread: blocking key listings bounded by
 * the time left before the quiet period ends. Returns the exit status. */
static int wait_for_job(struct exec_state *st)
{
  struct cli__ctx *ctx = st->ctx;
  long long start = now_ms(), last = start;
  uint64_t index = 0;
  unsigned acks = 0, exits = 0, bad = 0;
  json_t *seen = json_object();
  int code = -1;
  while (code < 0) {
    if (interrupted) {
      code = 1;
      break;
    }
    int64_t interval = st->wait_ms * (acks > exits ? 2 : 1);
    long long left = last + interval - now_ms();
    if (left <= 0) {
      cli__info(ctx, "%u / %u node(s) completed / acknowledged", exits, acks);
      if (st->o->verbose)
        cli__info(ctx, "Completed in %0.2f seconds", (double)(now_ms() - start) / 1000.0);
      if (exits < acks) bad++;
      code = bad ? 2 : 0;
      break;
    }
    renew_if_due(st);
    if (left > EXEC_RENEW_MS) left = EXEC_RENEW_MS;
    char err[CLI__ERRLEN], w[32], idx[32];
    struct cli__query q;
    cli__query_init(&q);
    cli__query_set(&q, "keys", "");
    snprintf(idx, sizeof(idx), "%llu", (unsigned long long)index);
    snprintf(w, sizeof(w), "%lldms", left);
    if (index) cli__query_set(&q, "index", idx);
    cli__query_set(&q, "wait", w);
    struct buf path = BUF_INIT;
    buf_printf(&path, "/v1/kv/%s", st->dir);
    struct cli__http_resp r = {0};
    int rv = cli__client_call(ctx, st->c, "GET", path.data, &q, NULL, 0, false, &r, err,
                              sizeof(err));
    buf_free(&path);
    cli__query_free(&q);
    if (rv == 0 && r.status != 200 && r.status != 404) {
      cli__status_error(&r, err, sizeof(err));
      rv = -1;
    }
    json_t *keys = NULL;
    if (rv == 0 && r.status == 200) {
      keys = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
      if (!json_is_array(keys)) {
        snprintf(err, sizeof(err), "bad key listing");
        rv = -1;
      }
    }
    uint64_t new_index = r.index;
    cli__http_resp_free(&r);
    if (rv != 0) {
      cli__error(ctx, "Failed to read results: %s", err);
      json_decref(keys);
      code = 1;
      break;
    }
    if (new_index == index) {
      json_decref(keys);
      continue;
    }
    index = new_index;
    size_t i;
    json_t *k;
    size_t dlen = strlen(st->dir);
    json_array_foreach(keys, i, k) {
      const char *full = json_string_value(k);
      if (!full || json_object_get(seen, full)) continue;
      if (json_object_size(seen) < EXEC_MAX_SEEN) json_object_set_new(seen, full, json_true());
      const char *key = strncmp(full, st->dir, dlen) == 0 ? full + dlen : full;
      if (strcmp(key, "job") == 0) continue;
      if (has_suffix(key, "/ack")) {
        char *node = xstrndup(key, strlen(key) - 4);
        acks++;
        last = now_ms();
        if (st->o->verbose) print_targeted(ctx, true, node, "acknowledged", 12);
        free(node);
      } else if (has_suffix(key, "/exit")) {
        struct buf v = BUF_INIT;
        if (read_value(st, full, &v, err, sizeof(err)) != 0) {
          cli__error(ctx, "Failed to read key '%s': %s", full, err);
          buf_free(&v);
          continue;
        }
        buf_append(&v, "", 1);
        char *endp;
        long ec = strtol(v.data, &endp, 10);
        if (!v.data[0] || *endp) {
          cli__error(ctx, "Failed to parse exit code '%s': strconv.ParseInt: parsing \"%s\": "
                          "invalid syntax", v.data, v.data);
          buf_free(&v);
          continue;
        }
        buf_free(&v);
        char *node = xstrndup(key, strlen(key) - 5);
        char msg[64];
        int n = snprintf(msg, sizeof(msg), "finished with exit code %ld", ec);
        exits++;
        last = now_ms();
        print_targeted(ctx, true, node, msg, (size_t)n);
        if (ec != 0) bad++;
        free(node);
      } else if (strstr(key, "/out/")) {
        const char *div = NULL;
        for (const char *p = strstr(key, "/out/"); p; p = strstr(p + 1, "/out/")) div = p;
        struct buf v = BUF_INIT;
        if (read_value(st, full, &v, err, sizeof(err)) != 0) {
          cli__error(ctx, "Failed to read key '%s': %s", full, err);
          buf_free(&v);
          continue;
        }
        char *node = xstrndup(key, (size_t)(div - key));
        last = now_ms();
        if (v.len == 0) {
          if (st->o->verbose) print_targeted(ctx, true, node, "heartbeat received", 18);
        } else {
          print_targeted(ctx, false, node, v.data, v.len);
        }
        free(node);
        buf_free(&v);
      } else {
        cli__error(ctx, "Unknown key '%s', ignoring.", key);
      }
    }
    json_decref(keys);
  }
  json_decref(seen);
  return code;
}

static int parse_dur(struct cli__ctx *ctx, const char *flag, const char *v, int64_t *ms)
{
  int64_t ns;
  if (duration_parse(v, strlen(v), &ns) != 0) {
    cli__error(ctx, "invalid value \"%s\" for flag -%s: parse error", v, flag);
    return -1;
  }
  *ms = ns / 1000000;
  return 0;
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  int rest = 0;
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;
  bool shell = o.shell.set ? o.shell.v : true;
  int64_t wait_ms, repl_ms;
  if (parse_dur(ctx, "wait", o.wait, &wait_ms) != 0 ||
      parse_dur(ctx, "wait-repl", o.wait_repl, &repl_ms) != 0)
    return 1;
  struct buf cmd = BUF_INIT, script = BUF_INIT;
  for (int i = rest; i < argc; i++) buf_printf(&cmd, "%s%s", i > rest ? " " : "", argv[i]);
  buf_append(&cmd, "", 1);
  cmd.len--;
  char err[CLI__ERRLEN];
  json_t *spec = json_object();
  int code = 1;
  struct cli__client c;
  bool client = false;
  char *session = NULL, *dir = NULL;
  bool handlers = false;
  if (strcmp(cmd.data, "-") == 0) {
    if (!shell) {
      cli__error(ctx, "Cannot configure -shell=false when reading from stdin");
      goto out;
    }
    if (cli__read_stream(ctx->in, CLI__MAX_INPUT, &script, err, sizeof(err)) != 0) {
      cli__usage_error(ctx, "Failed to read stdin", usage, &fs);
      goto out;
    }
    cmd.len = 0;
    cmd.data[0] = 0;
  }
  /* Go's rExecSpec: Command, Args, Script omitted when empty; Wait in nanoseconds. */
  if (!shell && cmd.len) {
    json_t *args = json_array();
    for (int i = rest; i < argc; i++) json_array_append_new(args, json_string(argv[i]));
    json_object_set_new(spec, "Args", args);
  } else if (cmd.len) {
    json_object_set_new(spec, "Command", json_string(cmd.data));
  }
  if (script.len) {
    char *b = xmalloc(b64_encoded_len(script.len) + 1);
    b64_encode(script.data, script.len, b);
    json_object_set_new(spec, "Script", json_string(b));
    free(b);
  }
  if (json_object_size(spec) == 0) {
    cli__usage_error(ctx, "Must specify a command to execute", usage, &fs);
    goto out;
  }
  json_object_set_new(spec, "Wait", json_integer(wait_ms * 1000000));
  if (check_regexp("node", o.node, err, sizeof(err)) != 0 ||
      check_regexp("service", o.service, err, sizeof(err)) != 0 ||
      check_regexp("tag", o.tag, err, sizeof(err)) != 0) {
    cli__error(ctx, "%s", err);
    goto out;
  }
  if (o.tag[0] && !o.service[0]) {
    cli__error(ctx, "Cannot provide tag filter without service filter.");
    goto out;
  }
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    goto out;
  }
  client = true;
  struct cli__query q;
  cli__query_init(&q);
  json_t *self = NULL;
  int rv = cli__client_json(ctx, &c, "GET", "/v1/agent/self", &q, NULL, 0, false, &self, err,
                            sizeof(err));
  cli__query_free(&q);
  json_decref(self);
  if (rv != 0) {
    cli__error(ctx, "Error querying Consul agent: %s", err);
    goto out;
  }
  /* The session the agents' writes are tied to: deleting it ends every upload. */
  const char *sess_body = "{\"Name\":\"Remote Exec\",\"Behavior\":\"delete\",\"TTL\":\"" EXEC_TTL "\"}";
  json_t *sess = NULL;
  cli__query_init(&q);
  rv = cli__client_json(ctx, &c, "PUT", "/v1/session/create", &q, sess_body, strlen(sess_body),
                        true, &sess, err, sizeof(err));
  cli__query_free(&q);
  const char *sid = json_string_value(json_object_get(sess, "ID"));
  if (rv != 0 || !sid) {
    cli__error(ctx, "Failed to create session: %s", rv ? err : "no ID in the answer");
    json_decref(sess);
    goto out;
  }
  session = xstrdup(sid);
  json_decref(sess);
  interrupted = 0;
  struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  handlers = true;
  if (o.verbose) cli__info(ctx, "Created remote execution session: %s", session);
  char *joined = cli__path_join(o.prefix, session);
  struct buf d = BUF_INIT;
  buf_printf(&d, "%s/", joined);
  free(joined);
  size_t dl;
  dir = buf_steal(&d, &dl);
  struct exec_state st = {ctx, &c, &o, session, dir, wait_ms, now_ms()};
  /* Upload the spec, held by the session. */
  {
    char *spec_json = json_dumps(spec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    struct buf path = BUF_INIT;
    buf_printf(&path, "/v1/kv/%sjob", dir);
    json_t *ok = NULL;
    cli__query_init(&q);
    cli__query_set(&q, "acquire", session);
    rv = cli__client_json(ctx, &c, "PUT", path.data, &q, spec_json, strlen(spec_json), true, &ok,
                          err, sizeof(err));
    cli__query_free(&q);
    free(spec_json);
    if (rv != 0 || !json_is_true(ok)) {
      if (rv == 0) snprintf(err, sizeof(err), "failed to acquire key %sjob", dir);
      cli__error(ctx, "Failed to create job file: %s", err);
      json_decref(ok);
      buf_free(&path);
      goto cleanup;
    }
    json_decref(ok);
    buf_free(&path);
  }
  if (o.verbose) cli__info(ctx, "Uploaded remote execution spec");
  sleep_ms(repl_ms);
  if (interrupted) goto cleanup;
  /* Fire the event. */
  {
    json_t *payload = json_object();
    json_object_set_new(payload, "Prefix", json_string(o.prefix));
    json_object_set_new(payload, "Session", json_string(session));
    char *pj = json_dumps(payload, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(payload);
    cli__query_init(&q);
    if (o.node[0]) cli__query_set(&q, "node", o.node);
    if (o.service[0]) cli__query_set(&q, "service", o.service);
    if (o.tag[0]) cli__query_set(&q, "tag", o.tag);
    json_t *ev = NULL;
    rv = cli__client_json(ctx, &c, "PUT", "/v1/event/fire/_rexec", &q, pj, strlen(pj), true, &ev,
                          err, sizeof(err));
    cli__query_free(&q);
    free(pj);
    if (rv != 0) {
      cli__error(ctx, "Failed to fire event: %s", err);
      json_decref(ev);
      goto cleanup;
    }
    if (o.verbose)
      cli__info(ctx, "Fired remote execution event: %s",
                json_string_value(json_object_get(ev, "ID")) ? json_string_value(json_object_get(ev, "ID")) : "");
    json_decref(ev);
  }
  code = wait_for_job(&st);
cleanup:
  /* Destroy the session first, so no agent can upload after the delete (its acquire fails),
   * then the data. */
  {
    struct buf path = BUF_INIT;
    buf_printf(&path, "/v1/session/destroy/%s", session);
    cli__query_init(&q);
    cli__client_json(ctx, &c, "PUT", path.data, &q, NULL, 0, false, NULL, err, sizeof(err));
    cli__query_free(&q);
    buf_free(&path);
    buf_printf(&path, "/v1/kv/%s", dir);
    path.len--; /* kv.DeleteTree(path.Join(prefix, session)): no trailing slash */
    path.data[path.len] = 0;
    cli__query_init(&q);
    cli__query_set(&q, "recurse", "");
    cli__client_json(ctx, &c, "DELETE", path.data, &q, NULL, 0, false, NULL, err, sizeof(err));
    cli__query_free(&q);
    buf_free(&path);
  }
  if (handlers) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
  }
out:
  if (client) cli__client_free(&c);
  free(session);
  free(dir);
  json_decref(spec);
  buf_free(&cmd);
  buf_free(&script);
  return code;
}

const struct cli__command cli__cmd_exec = {
    .name = "exec",
    .synopsis = "Executes a command on Concord nodes",
    .run = run,
    .help = help,
};
