/* cmd_keygen.c -- `concord keygen`: prints a new gossip encryption key, 32 bytes from the
 * kernel's CSPRNG in standard base64, as `consul keygen` does (AES-256 for memberlist). */
#include <string.h>

#include "cli/internal.h"
#include "lib/b64.h"
#include "lib/rand.h"

static const char usage[] =
    "Usage: concord keygen\n"
    "\n"
    "  Generates a new encryption key that can be used to configure the\n"
    "  agent to encrypt traffic. The output of this command is already\n"
    "  in the proper format that the agent expects.\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  cli__flags_init(&fs);
  cli__flags_usage(usage, &fs, out);
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  cli__flags_init(&fs);
  int rest = 0;
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;
  uint8_t key[32];
  rand_bytes(key, sizeof key);
  char out[48];
  b64_encode(key, sizeof key, out);
  cli__info(ctx, "%s", out);
  return 0;
}

const struct cli__command cli__cmd_keygen = {
    .name = "keygen",
    .synopsis = "Generates a new encryption key",
    .run = run,
    .help = help,
};
