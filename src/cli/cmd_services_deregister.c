/* cmd_services_deregister.c -- `concord services deregister`: removes services from the local
 * agent (PUT /v1/agent/service/deregister/<id>), either the one named by -id or every service
 * defined in the given config files (by ID, or by name when a definition has no ID). */
#include <string.h>

#include <jansson.h>

#include "cli/internal.h"

struct opts {
  const char *id;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_string(fs, "id", &o->id, "",
                   "ID of the service to deregister. Not allowed together with FILE "
                   "arguments.");
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
  cli__http_tenancy_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord services deregister [options] [FILE...]\n"
    "\n"
    "  Deregisters services that were registered with the local agent: every service\n"
    "  defined in the given config files (JSON, in the agent's config format):\n"
    "\n"
    "      $ concord services deregister web.json db.json\n"
    "\n"
    "  or the one service whose ID -id gives:\n"
    "\n"
    "      $ concord services deregister -id=web\n"
    "\n"
    "  Services are removed from the agent they were registered with, so run this\n"
    "  against that agent.\n";

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
  int nargs = argc - rest;
  if (nargs == 0 && !o.id[0]) {
    cli__error(ctx, "Service deregistration requires at least one argument or -id.");
    return 1;
  }
  if (nargs > 0 && o.id[0]) {
    cli__error(ctx, "Service deregistration requires arguments or -id, not both.");
    return 1;
  }
  char err[CLI__ERRLEN];
  json_t *defs = NULL;
  if (nargs > 0) {
    if (cli__svcdefs_load(argv + rest, nargs, &defs, err, sizeof(err)) != 0) {
      cli__error(ctx, "Error: %s", err);
      return 1;
    }
  } else {
    defs = json_array();
    json_t *d = json_object();
    json_object_set_new(d, "ID", json_string(o.id));
    json_array_append_new(defs, d);
  }
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    json_decref(defs);
    return 1;
  }
  int code = 0;
  size_t i;
  json_t *d;
  json_array_foreach(defs, i, d) {
    const char *id = json_string_value(json_object_get(d, "ID"));
    const char *name = json_string_value(json_object_get(d, "Name"));
    if (!name) name = "";
    if (!id || !id[0]) id = name;
    if (!id[0]) continue;
    struct buf path = BUF_INIT;
    buf_printf(&path, "/v1/agent/service/deregister/%s", id);
    int rc = cli__client_json(ctx, &c, "PUT", path.data, NULL, NULL, 0, false, NULL, err,
                              sizeof(err));
    buf_free(&path);
    if (rc != 0) {
      struct buf q = BUF_INIT;
      cli__go_quote(&q, name);
      cli__error(ctx, "Error deregistering service %s: %s", q.data, err);
      buf_free(&q);
      code = 1;
      break;
    }
    cli__info(ctx, "Deregistered service: %s", id);
  }
  json_decref(defs);
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_services_deregister = {
    .name = "services deregister",
    .synopsis = "Deregister services with the local agent",
    .run = run,
    .help = help,
};
