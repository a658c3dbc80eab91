/* cmd_catalog.c -- `concord catalog`, the parent of the catalog subcommands. Run alone it only
 * shows its help (on stderr, exit 1), as `consul catalog` does; `concord catalog -h` adds the
 * subcommand list. */
#include "cli/internal.h"

static const char usage[] =
    "Usage: concord catalog <subcommand> [options] [args]\n"
    "\n"
    "  Reads the catalog: the datacenters, nodes and services the servers know about.\n"
    "  The catalog is the cluster's view; \"concord services\" works on one agent's own\n"
    "  services instead. A few examples follow; each subcommand's help has more.\n"
    "\n"
    "  List the datacenters:\n"
    "\n"
    "      $ concord catalog datacenters\n"
    "\n"
    "  List the nodes:\n"
    "\n"
    "      $ concord catalog nodes\n"
    "\n"
    "  List the services:\n"
    "\n"
    "      $ concord catalog services\n";

static void help(struct buf *out) { cli__flags_usage(usage, NULL, out); }

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  (void)ctx;
  (void)argc;
  (void)argv;
  return CLI__RUN_HELP;
}

const struct cli__command cli__cmd_catalog = {
    .name = "catalog",
    .synopsis = "Interact with the catalog",
    .run = run,
    .help = help,
};
