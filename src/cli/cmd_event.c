/* cmd_event.c -- `concord event [-name -node -service -tag] [payload]`: fires a user event
 * through the agent (PUT /v1/event/fire/<name>) and prints "Event ID: <id>", as Consul's
 * command/event does. The filters are regular expressions checked here first, then by every
 * agent that receives the event. */
#include <jansson.h>
#include <regex.h>
#include <string.h>

#include "cli/internal.h"

struct opts {
  const char *name, *node, *service, *tag;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_string(fs, "name", &o->name, "", "Name of the event.");
  cli__flag_string(fs, "node", &o->node, "", "Regular expression to filter on node names.");
  cli__flag_string(fs, "service", &o->service, "",
                   "Regular expression to filter on service instances.");
  cli__flag_string(fs, "tag", &o->tag, "",
                   "Regular expression to filter on service tags. Must be used with -service.");
  cli__http_client_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord event [options] [payload]\n"
    "\n"
    "  Dispatches a custom user event across a datacenter. An event must provide\n"
    "  a name, but a payload is optional. Events support filtering using\n"
    "  regular expressions on node name, service, and tag definitions.\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
}

/* Go's regexp.Compile, approximated by POSIX extended syntax (as the agents check it). */
static int check_regexp(struct cli__ctx *ctx, const char *what, const char *expr)
{
  if (!expr[0]) return 0;
  regex_t re;
  int rc = regcomp(&re, expr, REG_EXTENDED | REG_NOSUB);
  if (rc != 0) {
    char e[256];
    regerror(rc, &re, e, sizeof(e));
    cli__error(ctx, "Failed to compile %s filter regexp: error parsing regexp: %s: `%s`", what,
               e, expr);
    return -1;
  }
  regfree(&re);
  return 0;
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  int rest = 0;
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;
  if (!o.name[0]) {
    cli__usage_error(ctx, "Event name must be specified", usage, &fs);
    return 1;
  }
  if (check_regexp(ctx, "node", o.node) != 0 || check_regexp(ctx, "service", o.service) != 0 ||
      check_regexp(ctx, "tag", o.tag) != 0)
    return 1;
  if (o.tag[0] && !o.service[0]) {
    cli__error(ctx, "Cannot provide tag filter without service filter.");
    return 1;
  }
  const char *payload = NULL;
  if (argc - rest == 1) {
    payload = argv[rest];
  } else if (argc - rest > 1) {
    cli__usage_error(ctx, "Too many command line arguments.", usage, &fs);
    return 1;
  }
  char err[CLI__ERRLEN];
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    return 1;
  }
  int code = 1;
  struct cli__query q;
  cli__query_init(&q);
  struct buf path = BUF_INIT;
  json_t *self = NULL, *ev = NULL;
  /* Consul checks the agent answers first (Agent().NodeName()). */
  if (cli__client_json(ctx, &c, "GET", "/v1/agent/self", &q, NULL, 0, false, &self, err,
                       sizeof(err)) != 0) {
    cli__error(ctx, "Error querying Consul agent: %s", err);
    goto out;
  }
  if (o.node[0]) cli__query_set(&q, "node", o.node);
  if (o.service[0]) cli__query_set(&q, "service", o.service);
  if (o.tag[0]) cli__query_set(&q, "tag", o.tag);
  buf_printf(&path, "/v1/event/fire/%s", o.name);
  size_t plen = payload ? strlen(payload) : 0;
  if (cli__client_json(ctx, &c, "PUT", path.data, &q, payload, plen, plen > 0, &ev, err,
                       sizeof(err)) != 0) {
    cli__error(ctx, "Error firing event: %s", err);
    goto out;
  }
  const char *id = json_string_value(json_object_get(ev, "ID"));
  cli__info(ctx, "Event ID: %s", id ? id : "");
  code = 0;
out:
  json_decref(self);
  json_decref(ev);
  buf_free(&path);
  cli__query_free(&q);
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_event = {
    .name = "event",
    .synopsis = "Fire a new event",
    .run = run,
    .help = help,
};
