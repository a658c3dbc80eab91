/* cmd_reload.c -- `concord reload`: asks the agent to reload its configuration files
 * (PUT /v1/agent/reload), the same as sending it SIGHUP. */
#include <string.h>

#include "cli/internal.h"

struct opts {
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__http_client_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord reload\n"
    "\n"
    "  Makes the agent reload its configuration files, as sending it SIGHUP does.\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  int rest = 0;
  /* Like Consul, extra arguments are ignored. */
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;
  return cli__put_once(ctx, &o.http, "/v1/agent/reload", NULL, "Error reloading",
                       "Configuration reload triggered");
}

const struct cli__command cli__cmd_reload = {
    .name = "reload",
    .synopsis = "Triggers the agent to reload configuration files",
    .run = run,
    .help = help,
};
