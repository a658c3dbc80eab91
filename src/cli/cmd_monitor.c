/* cmd_monitor.c -- `concord monitor`: streams the agent's log lines (GET /v1/agent/monitor)
 * to stdout until Ctrl-C or SIGTERM (exit 0) or until the agent ends the stream (Consul's
 * "Remote side ended the monitor!" and exit 1), as Consul's command/monitor does. */
#include <signal.h>
#include <string.h>

#include "cli/internal.h"

struct opts {
  struct cli__http_opts http;
  const char *log_level;
  bool log_json;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__http_client_flags(fs, &o->http);
  cli__flag_string(fs, "log-level", &o->log_level, "INFO", "Log level of the agent.");
  cli__flag_bool(fs, "log-json", &o->log_json, "Output logs in JSON format.");
}

static const char usage[] =
    "Usage: concord monitor [options]\n"
    "\n"
    "  Attaches to a Concord agent and outputs its log messages as they occur\n"
    "  in real time (earlier messages are not replayed). The monitor lets you\n"
    "  listen for log levels that may be filtered out of the agent. For\n"
    "  example your agent may only be logging at INFO level, but with the monitor\n"
    "  you can see the DEBUG level logs.\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
}

/* Consul's shutdownCh: SIGINT or SIGTERM ends the monitor cleanly. */
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
  (void)sig;
  stop = 1;
}

static void on_body(void *arg, const char *data, size_t len)
{
  struct cli__ctx *ctx = arg;
  fwrite(data, 1, len, ctx->out);
  fflush(ctx->out);
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  int rest = 0;
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;
  char err[CLI__ERRLEN];
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    return 1;
  }
  struct cli__query q;
  cli__query_init(&q);
  cli__query_set(&q, "loglevel", o.log_level);
  if (o.log_json) cli__query_set(&q, "logjson", "");

  stop = 0;
  struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  struct cli__http_resp resp;
  int rc = cli__client_stream(ctx, &c, "/v1/agent/monitor", &q, on_body, ctx, &stop, &resp,
                              err, sizeof(err));
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  int code;
  if (rc != 0) {
    cli__error(ctx, "Error starting monitor: %s", err);
    code = 1;
  } else if (resp.status != 200) {
    cli__status_error(&resp, err, sizeof(err));
    cli__error(ctx, "Error starting monitor: %s", err);
    code = 1;
  } else if (stop) {
    code = 0;
  } else {
    cli__info(ctx, "%s", "");
    cli__info(ctx, "Remote side ended the monitor! This usually means that the\n"
                   "remote side has exited or crashed.");
    code = 1;
  }
  cli__http_resp_free(&resp);
  cli__query_free(&q);
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_monitor = {
    .name = "monitor",
    .synopsis = "Stream logs from a Concord agent",
    .run = run,
    .help = help,
};
