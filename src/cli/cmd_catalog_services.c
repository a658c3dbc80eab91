/* cmd_catalog_services.c -- `concord catalog services`: the names of the services in the
 * catalog, sorted, from GET /v1/catalog/services, or those of one node (-node) from GET
 * /v1/catalog/node/<node>. -tags adds each service's tags, sorted and comma-joined, in a
 * second column laid out as Go's text/tabwriter does (padding 6). -node-meta and -filter pass
 * to the server; -filter is a Concord extension (Consul's command lacks it, its endpoint has
 * it) and takes @file or "-" as -filter of `catalog nodes` does.
 *
 * As in Consul, finding nothing is not an error: the sentence goes to stderr, the exit is 0. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/internal.h"
#include "lib/alloc.h"

struct opts {
  const char *node, *filter;
  bool tags;
  struct cli__mapflag node_meta;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_string(fs, "node", &o->node, "",
                   "Node `id or name` whose services to list instead of the whole catalog's.");
  cli__flag_map(fs, "node-meta", &o->node_meta,
                "Node metadata to filter on, as `key=value`: only services on nodes with this "
                "metadata are listed. Give the flag several times to require several pairs.");
  cli__flag_bool(fs, "tags", &o->tags,
                 "Shows each service's tags, comma-separated, beside its name.");
  cli__flag_string(fs, "filter", &o->filter, "",
                   "Filter expression (Consul's ?filter syntax) applied by the server to the "
                   "service instances before they are listed. @file reads it from a file and "
                   "- from stdin. A Concord extension.");
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
  cli__http_tenancy_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord catalog services [options]\n"
    "\n"
    "  Lists the services registered in a datacenter (by default the one of the agent\n"
    "  that answers).\n"
    "\n"
    "  List the services:\n"
    "\n"
    "      $ concord catalog services\n"
    "\n"
    "  With their tags:\n"
    "\n"
    "      $ concord catalog services -tags\n"
    "\n"
    "  Those that run on the node \"web\":\n"
    "\n"
    "      $ concord catalog services -node=web\n"
    "\n"
    "  Those on nodes with the metadata foo=bar:\n"
    "\n"
    "      $ concord catalog services -node-meta=\"foo=bar\"\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
  cli__mapflag_free(&o.node_meta);
}

/* One output row: a service name and its tags (borrowed from the decoded answer). */
struct svc {
  const char *name;
  const char **tags;
  size_t ntags;
};

static int str_cmp(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int svc_cmp(const void *a, const void *b)
{
  return strcmp(((const struct svc *)a)->name, ((const struct svc *)b)->name);
}

/* Appends the string members of a JSON array of tags to s. */
static void add_tags(struct svc *s, json_t *tags)
{
  size_t n = json_array_size(tags);
  if (!n) return;
  s->tags = xrealloc(s->tags, (s->ntags + n) * sizeof(*s->tags));
  size_t i;
  json_t *t;
  json_array_foreach(tags, i, t) s->tags[s->ntags++] = json_string_value(t) ? json_string_value(t) : "";
}

/* The row for name, added when missing. */
static struct svc *svc_get(struct svc **list, size_t *n, size_t *cap, const char *name)
{
  for (size_t i = 0; i < *n; i++)
    if (strcmp((*list)[i].name, name) == 0) return &(*list)[i];
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 16;
    *list = xrealloc(*list, *cap * sizeof(**list));
  }
  struct svc *s = &(*list)[(*n)++];
  memset(s, 0, sizeof(*s));
  s->name = name;
  return s;
}

static size_t runes(const char *s)
{
  size_t n = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xc0) != 0x80) n++;
  return n;
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  int rest = 0, code = 1;
  char err[CLI__ERRLEN];
  struct cli__client c;
  struct cli__query q;
  struct buf filter = BUF_INIT;
  json_t *root = NULL;
  struct svc *list = NULL;
  size_t n = 0, cap = 0;
  memset(&c, 0, sizeof(c));
  cli__query_init(&q);
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) goto out;
  if (argc - rest > 0) {
    cli__error(ctx, "Too many arguments (expected 0, got %d)", argc - rest);
    goto out;
  }
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    goto out;
  }
  if (o.filter[0] && cli__load_data(ctx, o.filter, &filter, err, sizeof(err)) != 0) {
    cli__error(ctx, "Could not process filter argument: %s", err);
    goto out;
  }
  cli__query_node_meta(&q, &o.node_meta);
  if (filter.len) cli__query_set(&q, "filter", filter.data);

  if (o.node[0]) {
    struct buf path = BUF_INIT;
    buf_printf(&path, "/v1/catalog/node/%s", o.node);
    int rc = cli__client_json(ctx, &c, "GET", path.data, &q, NULL, 0, false, &root, err,
                              sizeof(err));
    buf_free(&path);
    if (rc != 0) {
      cli__error(ctx, "Error listing services for node: %s", err);
      goto out;
    }
    /* null: no such node, which lists nothing. Services maps instance IDs to instances. */
    const char *k;
    json_t *inst;
    json_object_foreach(json_object_get(root, "Services"), k, inst) {
      const char *name = json_string_value(json_object_get(inst, "Service"));
      add_tags(svc_get(&list, &n, &cap, name ? name : ""), json_object_get(inst, "Tags"));
    }
  } else {
    if (cli__client_json(ctx, &c, "GET", "/v1/catalog/services", &q, NULL, 0, false, &root,
                         err, sizeof(err)) != 0) {
      cli__error(ctx, "Error listing services: %s", err);
      goto out;
    }
    const char *k;
    json_t *tags;
    json_object_foreach(root, k, tags) add_tags(svc_get(&list, &n, &cap, k), tags);
  }

  if (n == 0) {
    cli__error(ctx, "No services match the given query - try expanding your search.");
    code = 0;
    goto out;
  }
  qsort(list, n, sizeof(*list), svc_cmp);
  struct buf b = BUF_INIT;
  if (o.tags) {
    /* tabwriter.NewWriter(w, 0, 2, 6, ' ', 0): one column as wide as the longest name plus
     * six, then the tags; strings.TrimSpace of the whole drops the last line's padding. */
    size_t width = 0;
    for (size_t i = 0; i < n; i++)
      if (runes(list[i].name) > width) width = runes(list[i].name);
    width += 6;
    for (size_t i = 0; i < n; i++) {
      if (i) buf_putc(&b, '\n');
      buf_puts(&b, list[i].name);
      for (size_t k = runes(list[i].name); k < width; k++) buf_putc(&b, ' ');
      if (list[i].ntags) qsort(list[i].tags, list[i].ntags, sizeof(*list[i].tags), str_cmp);
      for (size_t t = 0; t < list[i].ntags; t++) {
        if (t) buf_putc(&b, ',');
        buf_puts(&b, list[i].tags[t]);
      }
    }
    while (b.len && (b.data[b.len - 1] == ' ' || b.data[b.len - 1] == '\n'))
      b.data[--b.len] = '\0';
    size_t lead = 0;
    while (lead < b.len && (b.data[lead] == ' ' || b.data[lead] == '\n')) lead++;
    buf_consume(&b, lead);
    buf_putc(&b, '\n');
  } else {
    for (size_t i = 0; i < n; i++) buf_printf(&b, "%s\n", list[i].name);
  }
  if (b.len) fwrite(b.data, 1, b.len, ctx->out);
  buf_free(&b);
  code = 0;
out:
  for (size_t i = 0; i < n; i++) free(list[i].tags);
  free(list);
  json_decref(root);
  buf_free(&filter);
  cli__query_free(&q);
  cli__client_free(&c);
  cli__mapflag_free(&o.node_meta);
  return code;
}

const struct cli__command cli__cmd_catalog_services = {
    .name = "catalog services",
    .synopsis = "Lists all registered services in a datacenter",
    .run = run,
    .help = help,
};
