/* cmd_kv.c -- `concord kv`, the parent of the kv subcommands. Run alone it only shows its
 * help (on stderr, exit 1), as `consul kv` does; `concord kv -h` adds the subcommand list. */
#include "cli/internal.h"

static const char usage[] =
    "Usage: concord kv <subcommand> [options] [args]\n"
    "\n"
    "  Reads and writes the key-value store. A few examples follow; each subcommand's\n"
    "  help has more.\n"
    "\n"
    "  Create or update the key \"redis/config/connections\" with the value \"5\":\n"
    "\n"
    "      $ concord kv put redis/config/connections 5\n"
    "\n"
    "  Read it back:\n"
    "\n"
    "      $ concord kv get redis/config/connections\n"
    "\n"
    "  Show it with its metadata:\n"
    "\n"
    "      $ concord kv get -detailed redis/config/connections\n"
    "\n"
    "  Delete it:\n"
    "\n"
    "      $ concord kv delete redis/config/connections\n";

static void help(struct buf *out) { cli__flags_usage(usage, NULL, out); }

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  (void)ctx;
  (void)argc;
  (void)argv;
  return CLI__RUN_HELP;
}

const struct cli__command cli__cmd_kv = {
    .name = "kv",
    .synopsis = "Interact with the key-value store",
    .run = run,
    .help = help,
};
