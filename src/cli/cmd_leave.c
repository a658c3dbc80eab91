/* cmd_leave.c -- `concord leave`: makes the agent leave the cluster gracefully and shut down
 * (PUT /v1/agent/leave), so that the other members see it as "left" rather than "failed". */
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
    "Usage: concord leave [options]\n"
    "\n"
    "  Makes the agent leave the cluster gracefully, so that the others mark it \"left\"\n"
    "  instead of \"failed\", and then shut down.\n";

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
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;
  if (rest < argc) {
    /* Go's %v of a []string: "[a b]". Consul then prints the help on stdout. */
    struct buf b = BUF_INIT, h = BUF_INIT;
    buf_putc(&b, '[');
    for (int i = rest; i < argc; i++) buf_printf(&b, "%s%s", i > rest ? " " : "", argv[i]);
    buf_putc(&b, ']');
    cli__error(ctx, "Error found unexpected args: %s", b.data);
    help(&h);
    cli__info(ctx, "%s", h.data);
    buf_free(&b);
    buf_free(&h);
    return 1;
  }
  return cli__put_once(ctx, &o.http, "/v1/agent/leave", NULL, "Error leaving",
                       "Graceful leave complete");
}

const struct cli__command cli__cmd_leave = {
    .name = "leave",
    .synopsis = "Gracefully leaves the Concord cluster and shuts down",
    .run = run,
    .help = help,
};
