/* cmd_version.c -- `concord version`: Concord's own version first, then the lines Consul's
 * `consul version` prints that tools read (the protocol range), and the Consul version whose
 * API this build implements (version.h). -format=json gives the same facts as JSON, in the
 * field names and three-space indent of Consul's VersionInfo. */
#include <string.h>

#include "cli/internal.h"
#include "version.h"

struct opts {
  const char *format;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_string(fs, "format", &o->format, "pretty", "Output format {pretty|json}");
}

static const char usage[] =
    "Usage: concord version [options]\n"
    "\n"
    "  Prints the version of Concord, the agent protocol versions it speaks, and the\n"
    "  version of Consul whose HTTP API, CLI and DNS interface it implements.\n";

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
  if (argc > 0 && cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;
  struct buf b = BUF_INIT;
  if (strcmp(o.format, "pretty") == 0) {
    buf_printf(&b, "Concord v%s\n", CONCORD_VERSION);
    buf_printf(&b, "Protocol %d spoken by default, understands %d to %d", CONCORD_PROTOCOL_DEFAULT,
               CONCORD_PROTOCOL_MIN, CONCORD_PROTOCOL_MAX);
    if (CONCORD_PROTOCOL_DEFAULT < CONCORD_PROTOCOL_MAX)
      buf_printf(&b, " (agent will automatically use protocol >%d when speaking to compatible "
                 "agents)", CONCORD_PROTOCOL_DEFAULT);
    buf_printf(&b, "\nImplements the Consul v%s API\n", CONCORD_CONSUL_VERSION);
  } else if (strcmp(o.format, "json") == 0) {
    buf_printf(&b,
               "{\n"
               "   \"Version\": \"%s\",\n"
               "   \"Revision\": \"\",\n"
               "   \"Prerelease\": \"\",\n"
               "   \"RPC\": {\n"
               "      \"Default\": %d,\n"
               "      \"Min\": %d,\n"
               "      \"Max\": %d\n"
               "   },\n"
               "   \"ConsulVersion\": \"%s\"\n"
               "}",
               CONCORD_VERSION, CONCORD_PROTOCOL_DEFAULT, CONCORD_PROTOCOL_MIN,
               CONCORD_PROTOCOL_MAX, CONCORD_CONSUL_VERSION);
  } else {
    cli__error(ctx, "Unknown format: %s", o.format);
    return 1;
  }
  /* UI.Output adds a newline, so the pretty form ends with an empty line, as Consul's. */
  buf_putc(&b, '\n');
  fwrite(b.data, 1, b.len, ctx->out);
  buf_free(&b);
  return 0;
}

const struct cli__command cli__cmd_version = {
    .name = "version",
    .synopsis = "Prints the Concord version",
    .run = run,
    .help = help,
};
