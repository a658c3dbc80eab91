/* cmd_services.c -- `concord services`, the parent of `services register` and `services
 * deregister`. Run alone it only shows its help (on stderr, exit 1), as `consul services`
 * does; `concord services -h` adds the subcommand list. */
#include "cli/internal.h"

static const char usage[] =
    "Usage: concord services <subcommand> [options] [args]\n"
    "\n"
    "  Registers and deregisters services with the local agent, which keeps them in\n"
    "  the catalog and runs their checks. \"concord catalog\" reads the whole cluster's\n"
    "  services instead. Each subcommand's help has examples.\n";

static void help(struct buf *out) { cli__flags_usage(usage, NULL, out); }

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  (void)ctx;
  (void)argc;
  (void)argv;
  return CLI__RUN_HELP;
}

const struct cli__command cli__cmd_services = {
    .name = "services",
    .synopsis = "Interact with services",
    .run = run,
    .help = help,
};
