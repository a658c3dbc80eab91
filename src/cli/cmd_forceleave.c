/* cmd_forceleave.c -- `concord force-leave [-prune] [-wan] node`: moves a failed member to
 * the "left" state (PUT /v1/agent/force-leave/<node>), so the cluster stops trying to reach
 * it; with -prune it is also forgotten at once. Prints nothing on success, as Consul does. */
#include <string.h>

#include "cli/internal.h"

struct opts {
  bool prune, wan;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_bool(fs, "prune", &o->prune,
                 "Also removes the member from the member list at once, instead of "
                 "keeping it there as \"left\" until it is reaped.");
  cli__flag_bool(fs, "wan", &o->wan,
                 "Acts on the WAN pool only (the servers of every datacenter, named "
                 "node.datacenter there).");
  cli__http_client_flags(fs, &o->http);
  cli__http_partition_flag(fs, &o->http);
}

static const char usage[] =
    "Usage: concord force-leave [options] name\n"
    "\n"
    "  Moves a member of the cluster to the \"left\" state. This is meant for failed\n"
    "  members that will not come back: without it the cluster keeps trying to\n"
    "  reconnect to them until they are reaped. A member that is in fact still alive\n"
    "  will rejoin the cluster on its own.\n";

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
  if (argc - rest != 1) {
    cli__usage_error(ctx, "A single node name must be specified to force leave.", usage, &fs);
    return 1;
  }
  struct cli__query q;
  cli__query_init(&q);
  if (o.prune) cli__query_set(&q, "prune", "1");
  if (o.wan) cli__query_set(&q, "wan", "1");
  struct buf path = BUF_INIT;
  buf_printf(&path, "/v1/agent/force-leave/%s", argv[rest]);
  int code = cli__put_once(ctx, &o.http, path.data, &q, "Error force leaving", NULL);
  buf_free(&path);
  cli__query_free(&q);
  return code;
}

const struct cli__command cli__cmd_force_leave = {
    .name = "force-leave",
    .synopsis = "Forces a member of the cluster to enter the \"left\" state",
    .run = run,
    .help = help,
};
