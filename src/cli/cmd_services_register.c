/* cmd_services_register.c -- `concord services register`: registers services with the local
 * agent (PUT /v1/agent/service/register), either the ones defined in config files (JSON, the
 * agent's "service"/"services" format; see svcdef.c) or one described by flags. When both
 * are given, the flags fill what a file's definition leaves empty (ID, Name, Address, Port,
 * Kind, SocketPath), their -meta and -tagged-address entries override the file's, and their
 * -tag values are added to its tags, as Consul's CombineArgs does. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/internal.h"
#include "lib/alloc.h"

struct opts {
  const char *id, *name, *address, *socket, *kind;
  int64_t port;
  struct cli__mapflag meta, tagged;
  struct cli__listflag tags;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_string(fs, "id", &o->id, "",
                   "ID of the service to register from flags. The default is the -name "
                   "value.");
  cli__flag_string(fs, "name", &o->name, "", "Name of the service to register from flags.");
  cli__flag_string(fs, "address", &o->address, "",
                   "Address of the service to register from flags.");
  cli__flag_int(fs, "port", &o->port, "Port of the service to register from flags.");
  cli__flag_string(fs, "socket", &o->socket, "",
                   "Path of the Unix domain socket of the service to register from flags "
                   "(instead of -address and -port).");
  cli__flag_map(fs, "meta", &o->meta,
                "Metadata of the service, as key=value. Give the flag several times to set "
                "several keys.");
  cli__flag_list(fs, "tag", &o->tags,
                 "Tag of the service. Give the flag several times to set several tags.");
  cli__flag_map(fs, "tagged-address", &o->tagged,
                "Tagged address of the service, as key=host:port. Give the flag several times "
                "to set several addresses.");
  cli__flag_string(fs, "kind", &o->kind, "", "The service's kind.");
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
  cli__http_tenancy_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord services register [options] [FILE...]\n"
    "\n"
    "  Registers one or more services with the local agent, from config files (JSON,\n"
    "  in the agent's config format) or from flags, and returns. The services stay\n"
    "  until \"concord services deregister\" (or the API) removes them.\n"
    "\n"
    "      $ concord services register web.json\n"
    "\n"
    "      $ concord services register -name=web -port=8080 -tag=v1\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
  cli__mapflag_free(&o.meta);
  cli__mapflag_free(&o.tagged);
}

/* Go's net.SplitHostPort then strconv.Atoi, as api.ParseServiceAddr does. Returns 0 with the
 * host and port, or -1 with Go's error text. host is malloc'd. */
static int parse_service_addr(const char *hp, char **host, long long *port, char *err,
                              size_t errlen)
{
  const char *why = NULL;
  const char *colon = strrchr(hp, ':');
  size_t j = 0, k = 0;
  const char *h = NULL;
  size_t hlen = 0;
  if (!colon) {
    why = "missing port in address";
  } else if (hp[0] == '[') {
    const char *end = strchr(hp, ']');
    if (!end) why = "missing ']' in address";
    else if (end[1] == '\0') why = "missing port in address";
    else if (end + 1 != colon) why = end[1] == ':' ? "too many colons in address"
                                                   : "missing port in address";
    else {
      h = hp + 1;
      hlen = (size_t)(end - hp - 1);
      j = 1;
      k = (size_t)(end - hp) + 1;
    }
  } else {
    h = hp;
    hlen = (size_t)(colon - hp);
    if (memchr(h, ':', hlen)) why = "too many colons in address";
  }
  if (!why && strchr(hp + j, '[')) why = "unexpected '[' in address";
  if (!why && strchr(hp + k, ']')) why = "unexpected ']' in address";
  if (why) {
    snprintf(err, errlen, "address %s: %s", hp, why);
    return -1;
  }
  const char *ps = colon + 1;
  const char *digits = ps + (*ps == '+' || *ps == '-');
  char *endp = NULL;
  errno = 0;
  long long v = *digits >= '0' && *digits <= '9' ? strtoll(ps, &endp, 10) : 0;
  if (!endp || *endp || errno == ERANGE) {
    struct buf q = BUF_INIT;
    cli__go_quote(&q, ps);
    snprintf(err, errlen, "strconv.Atoi: parsing %s: %s", q.data,
             endp && !*endp && errno == ERANGE ? "value out of range" : "invalid syntax");
    buf_free(&q);
    return -1;
  }
  *host = xstrndup(h, hlen);
  *port = v;
  return 0;
}

/* A string field set when the definition has none (or an empty one). */
static void fill(json_t *def, const char *name, const char *v)
{
  const char *cur = json_string_value(json_object_get(def, name));
  if (v[0] && (!cur || !cur[0])) json_object_set_new(def, name, json_string(v));
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  int rest = 0, code = 1;
  char err[CLI__ERRLEN];
  json_t *tagged = NULL, *flagdef = NULL, *defs = NULL;
  struct cli__client c;
  memset(&c, 0, sizeof(c));
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) goto out;

  if (o.tagged.n) {
    tagged = json_object();
    for (size_t i = 0; i < o.tagged.n; i++) {
      char *host = NULL;
      long long port = 0;
      if (parse_service_addr(o.tagged.val[i], &host, &port, err, sizeof(err)) != 0) {
        cli__error(ctx, "Invalid Tagged Address: %s", err);
        goto out;
      }
      json_t *sa = json_object();
      json_object_set_new(sa, "Address", json_string(host));
      json_object_set_new(sa, "Port", json_integer(port));
      json_object_set_new(tagged, o.tagged.key[i], sa);
      free(host);
    }
  }
  /* The registration the flags describe (api.AgentServiceRegistration). */
  flagdef = json_object();
  json_object_set_new(flagdef, "Kind", json_string(o.kind));
  json_object_set_new(flagdef, "ID", json_string(o.id));
  json_object_set_new(flagdef, "Name", json_string(o.name));
  json_object_set_new(flagdef, "Address", json_string(o.address));
  json_object_set_new(flagdef, "Port", json_integer(o.port));
  json_object_set_new(flagdef, "SocketPath", json_string(o.socket));
  json_t *tags = json_array();
  for (size_t i = 0; i < o.tags.n; i++) json_array_append_new(tags, json_string(o.tags.v[i]));
  json_object_set_new(flagdef, "Tags", tags);
  json_t *meta = json_object();
  for (size_t i = 0; i < o.meta.n; i++)
    json_object_set_new(meta, o.meta.key[i], json_string(o.meta.val[i]));
  json_object_set_new(flagdef, "Meta", meta);
  if (tagged) json_object_set(flagdef, "TaggedAddresses", tagged);

  int nargs = argc - rest;
  if (nargs == 0 && !o.name[0]) {
    cli__error(ctx, "Service registration requires at least one argument or flags.");
    goto out;
  }
  if (nargs > 0 && o.name[0]) {
    cli__error(ctx, "Service registration requires arguments or -id, not both.");
    goto out;
  }
  if (nargs > 0) {
    if (cli__svcdefs_load(argv + rest, nargs, &defs, err, sizeof(err)) != 0) {
      cli__error(ctx, "Error: %s", err);
      goto out;
    }
    size_t i;
    json_t *d;
    json_array_foreach(defs, i, d) {
      fill(d, "ID", o.id);
      fill(d, "Name", o.name);
      fill(d, "Address", o.address);
      fill(d, "Kind", o.kind);
      fill(d, "SocketPath", o.socket);
      if (o.port && !json_integer_value(json_object_get(d, "Port")))
        json_object_set_new(d, "Port", json_integer(o.port));
      json_t *m = json_object_get(d, "Meta");
      if (!m) json_object_set_new(d, "Meta", m = json_object());
      json_object_update(m, meta);
      json_t *ta = json_object_get(d, "TaggedAddresses");
      if (!ta) json_object_set_new(d, "TaggedAddresses", ta = json_object());
      if (tagged) json_object_update(ta, tagged);
      json_t *t = json_object_get(d, "Tags");
      if (!t) json_object_set_new(d, "Tags", t = json_array());
      json_array_extend(t, tags);
    }
  }
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    goto out;
  }
  if (!defs || !json_array_size(defs)) {
    json_decref(defs);
    defs = json_array();
    json_array_append(defs, flagdef);
  }
  size_t i;
  json_t *d;
  code = 0;
  json_array_foreach(defs, i, d) {
    char *body = cli__svcdef_encode(d);
    struct buf b = BUF_INIT;
    buf_printf(&b, "%s\n", body); /* json.Encoder ends the document with a newline */
    free(body);
    int rc = cli__client_json(ctx, &c, "PUT", "/v1/agent/service/register", NULL, b.data, b.len,
                              true, NULL, err, sizeof(err));
    buf_free(&b);
    const char *name = json_string_value(json_object_get(d, "Name"));
    if (rc != 0) {
      struct buf q = BUF_INIT;
      cli__go_quote(&q, name ? name : "");
      cli__error(ctx, "Error registering service %s: %s", q.data, err);
      buf_free(&q);
      code = 1;
      break;
    }
    cli__info(ctx, "Registered service: %s", name ? name : "");
  }
out:
  json_decref(defs);
  json_decref(flagdef);
  json_decref(tagged);
  cli__client_free(&c);
  cli__mapflag_free(&o.meta);
  cli__mapflag_free(&o.tagged);
  return code;
}

const struct cli__command cli__cmd_services_register = {
    .name = "services register",
    .synopsis = "Register services with the local agent",
    .run = run,
    .help = help,
};
