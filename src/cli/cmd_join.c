/* cmd_join.c -- `concord join [-wan] address...`: asks the agent to join a cluster through
 * one or more of its members (PUT /v1/agent/join/<address> for each, in order).
 *
 * As Consul does, a failure on one address is reported and the others are still tried; the
 * command fails (exit 1) only when no address could be joined, and otherwise prints how many
 * were. */
#include <string.h>

#include "cli/internal.h"

struct opts {
  bool wan;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_bool(fs, "wan", &o->wan,
                 "Joins the WAN pool, which links the servers of several datacenters, "
                 "instead of the LAN pool. Only servers take part in the WAN pool.");
  cli__http_client_flags(fs, &o->http);
  cli__http_partition_flag(fs, &o->http);
}

static const char usage[] =
    "Usage: concord join [options] address ...\n"
    "\n"
    "  Asks a running agent to join a cluster through at least one of its members,\n"
    "  named by gossip address (ip or ip:port). Every address is tried; the command\n"
    "  fails only if none of them could be joined.\n";

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
  if (rest >= argc) {
    cli__usage_error(ctx, "At least one address to join must be specified.", usage, &fs);
    return 1;
  }
  char err[CLI__ERRLEN];
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    return 1;
  }
  int joins = 0;
  for (int i = rest; i < argc; i++) {
    struct cli__query q;
    cli__query_init(&q);
    if (o.wan) cli__query_set(&q, "wan", "1");
    struct buf path = BUF_INIT;
    buf_printf(&path, "/v1/agent/join/%s", argv[i]);
    if (cli__client_json(ctx, &c, "PUT", path.data, &q, NULL, 0, false, NULL, err,
                         sizeof(err)) != 0)
      cli__error(ctx, "Error joining address '%s': %s", argv[i], err);
    else
      joins++;
    buf_free(&path);
    cli__query_free(&q);
  }
  cli__client_free(&c);
  if (joins == 0) {
    cli__error(ctx, "Failed to join any nodes.");
    return 1;
  }
  cli__info(ctx, "Successfully joined cluster by contacting %d nodes.", joins);
  return 0;
}

const struct cli__command cli__cmd_join = {
    .name = "join",
    .synopsis = "Tell Concord agent to join cluster",
    .run = run,
    .help = help,
};
