/* cmd_maint.c -- `concord maint`: puts the agent's node (PUT /v1/agent/maintenance) or one of
 * its services (PUT /v1/agent/service/maintenance/<id>) into maintenance mode or out of it.
 * Without -enable or -disable it lists what is in maintenance: the agent's node name from GET
 * /v1/agent/self, then the _node_maintenance and _service_maintenance:<id> checks of GET
 * /v1/agent/checks with their notes (the reason).
 *
 * Consul walks the checks map in Go's random order; we list them sorted by check ID (the node
 * first, since "_node" sorts before "_service"), so the output is stable. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/internal.h"
#include "lib/alloc.h"

struct opts {
  bool enable, disable;
  const char *reason, *service;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_bool(fs, "enable", &o->enable, "Turns maintenance mode on.");
  cli__flag_bool(fs, "disable", &o->disable, "Turns maintenance mode off.");
  cli__flag_string(fs, "reason", &o->reason, "",
                   "Why the node or service is in maintenance; shown in the notes of the "
                   "maintenance check.");
  cli__flag_string(fs, "service", &o->service, "",
                   "ID of the service to put into or out of maintenance, instead of the whole "
                   "node.");
  cli__http_client_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord maint [options]\n"
    "\n"
    "  Puts a node or a service into maintenance mode, or takes it out. While in\n"
    "  maintenance, the node or service is left out of DNS and API queries for\n"
    "  healthy instances: the agent registers an extra critical health check for it.\n"
    "\n"
    "  -reason gives the text shown in that check's notes; without it a default text\n"
    "  is used.\n"
    "\n"
    "  Maintenance mode survives agent restarts, so it must be turned off before the\n"
    "  node or service takes traffic again.\n"
    "\n"
    "  The whole node is affected unless -service names one of its services.\n"
    "\n"
    "  Without -enable or -disable, lists what is in maintenance on this agent (nothing\n"
    "  when nothing is).\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
}

static int key_cmp(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *str(json_t *obj, const char *key)
{
  const char *s = json_string_value(json_object_get(obj, key));
  return s ? s : "";
}

/* List mode. Returns the exit code. */
static int list(struct cli__ctx *ctx, struct cli__client *c)
{
  char err[CLI__ERRLEN];
  json_t *self = NULL, *checks = NULL;
  int code = 1;
  if (cli__client_json(ctx, c, "GET", "/v1/agent/self", NULL, NULL, 0, false, &self, err,
                       sizeof(err)) != 0) {
    cli__error(ctx, "Error querying Consul agent: %s", err);
    goto out;
  }
  const char *node = str(json_object_get(self, "Config"), "NodeName");
  if (cli__client_json(ctx, c, "GET", "/v1/agent/checks", NULL, NULL, 0, false, &checks, err,
                       sizeof(err)) != 0) {
    cli__error(ctx, "Error getting checks: %s", err);
    goto out;
  }
  size_t n = json_object_size(checks), i = 0;
  const char **ids = xcalloc(n ? n : 1, sizeof(*ids));
  const char *k;
  json_t *v;
  json_object_foreach(checks, k, v) ids[i++] = k;
  qsort(ids, n, sizeof(*ids), key_cmp);
  struct buf b = BUF_INIT;
  for (i = 0; i < n; i++) {
    json_t *chk = json_object_get(checks, ids[i]);
    const char *id = str(chk, "CheckID");
    if (strcmp(id, "_node_maintenance") == 0)
      buf_printf(&b, "Node:\n  Name:   %s\n  Reason: %s\n\n", node, str(chk, "Notes"));
    else if (strncmp(id, "_service_maintenance:", 21) == 0)
      buf_printf(&b, "Service:\n  ID:     %s\n  Reason: %s\n\n", str(chk, "ServiceID"),
                 str(chk, "Notes"));
  }
  if (b.len) fwrite(b.data, 1, b.len, ctx->out);
  buf_free(&b);
  free(ids);
  code = 0;
out:
  json_decref(self);
  json_decref(checks);
  return code;
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  int rest = 0;
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;
  if (o.enable && o.disable) {
    cli__error(ctx, "Only one of -enable or -disable may be provided");
    return 1;
  }
  if (!o.enable && o.reason[0]) {
    cli__error(ctx, "Reason may only be provided with -enable");
    return 1;
  }
  if (!o.enable && !o.disable && o.service[0]) {
    cli__error(ctx, "Service requires either -enable or -disable");
    return 1;
  }
  char err[CLI__ERRLEN];
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    return 1;
  }
  if (!o.enable && !o.disable) {
    int code = list(ctx, &c);
    cli__client_free(&c);
    return code;
  }

  struct cli__query q;
  cli__query_init(&q);
  cli__query_set(&q, "enable", o.enable ? "true" : "false");
  /* The api package sends reason only when enabling, and then even when empty. */
  if (o.enable) cli__query_set(&q, "reason", o.reason);
  struct buf path = BUF_INIT;
  if (o.service[0]) buf_printf(&path, "/v1/agent/service/maintenance/%s", o.service);
  else buf_puts(&path, "/v1/agent/maintenance");
  int code = 0;
  if (cli__client_json(ctx, &c, "PUT", path.data, &q, NULL, 0, false, NULL, err,
                       sizeof(err)) != 0) {
    cli__error(ctx, "Error %s %s maintenance: %s", o.enable ? "enabling" : "disabling",
               o.service[0] ? "service" : "node", err);
    code = 1;
  } else if (o.service[0]) {
    struct buf quoted = BUF_INIT;
    cli__go_quote(&quoted, o.service);
    cli__info(ctx, "Service maintenance is now %s for %s", o.enable ? "enabled" : "disabled",
              quoted.data);
    buf_free(&quoted);
  } else {
    cli__info(ctx, "Node maintenance is now %s", o.enable ? "enabled" : "disabled");
  }
  buf_free(&path);
  cli__query_free(&q);
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_maint = {
    .name = "maint",
    .synopsis = "Controls node or service maintenance mode",
    .run = run,
    .help = help,
};
