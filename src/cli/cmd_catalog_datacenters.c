/* cmd_catalog_datacenters.c -- `concord catalog datacenters`: the datacenters the servers
 * know, one per line, from GET /v1/catalog/datacenters (nearest first, as the servers sort
 * them). */
#include <string.h>

#include <jansson.h>

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
  cli__http_server_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord catalog datacenters [options]\n"
    "\n"
    "  Lists every datacenter the servers know about, nearest first (by the estimated\n"
    "  median round-trip time from this datacenter's servers).\n"
    "\n"
    "      $ concord catalog datacenters\n";

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
  if (argc - rest > 0) {
    cli__error(ctx, "Too many arguments (expected 0, got %d)", argc - rest);
    return 1;
  }
  char err[CLI__ERRLEN];
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    return 1;
  }
  json_t *dcs = NULL;
  int code = 1;
  if (cli__client_json(ctx, &c, "GET", "/v1/catalog/datacenters", NULL, NULL, 0, false, &dcs,
                       err, sizeof(err)) != 0) {
    cli__error(ctx, "Error listing datacenters: %s", err);
  } else if (!json_is_array(dcs) && !json_is_null(dcs)) {
    cli__error(ctx, "Error listing datacenters: json: cannot unmarshal into Go value of type "
                    "[]string");
  } else {
    size_t i;
    json_t *dc;
    json_array_foreach(dcs, i, dc) {
      const char *s = json_string_value(dc);
      cli__info(ctx, "%s", s ? s : "");
    }
    code = 0;
  }
  json_decref(dcs);
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_catalog_datacenters = {
    .name = "catalog datacenters",
    .synopsis = "Lists all known datacenters",
    .run = run,
    .help = help,
};
