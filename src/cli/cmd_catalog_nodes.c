/* cmd_catalog_nodes.c -- `concord catalog nodes`: the nodes of the catalog from GET
 * /v1/catalog/nodes, or the nodes providing one service (-service) from GET
 * /v1/catalog/service/<name>, in Consul's columns: Node, ID (up to its first '-'), Address,
 * DC; with -detailed the full ID, TaggedAddresses and Meta ("k=v, k2=v2", sorted by key).
 * -near, -node-meta and -filter pass to the server; -filter also takes @file or "-" (stdin).
 *
 * As in Consul, finding nothing is not an error: the sentence goes to stderr, the exit is 0. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/internal.h"
#include "lib/alloc.h"

struct opts {
  bool detailed;
  const char *near, *service, *filter;
  struct cli__mapflag node_meta;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_string(fs, "filter", &o->filter, "",
                   "Filter expression (Consul's ?filter syntax) the server applies to the "
                   "nodes. @file reads it from a file and - from stdin.");
  cli__flag_bool(fs, "detailed", &o->detailed,
                 "Shows the full node IDs, the tagged addresses and the metadata of each "
                 "node.");
  cli__flag_string(fs, "near", &o->near, "",
                   "Node name to sort the list by estimated round-trip time from, nearest "
                   "first. \"_agent\" means the node of the agent that answers.");
  cli__flag_map(fs, "node-meta", &o->node_meta,
                "Node metadata to filter on, as `key=value`. Give the flag several times to "
                "require several pairs.");
  cli__flag_string(fs, "service", &o->service, "",
                   "Service `id or name`: lists only the nodes that provide it.");
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
  cli__http_partition_flag(fs, &o->http);
}

static const char usage[] =
    "Usage: concord catalog nodes [options]\n"
    "\n"
    "  Lists the nodes registered in a datacenter (by default the one of the agent\n"
    "  that answers).\n"
    "\n"
    "  List the nodes:\n"
    "\n"
    "      $ concord catalog nodes\n"
    "\n"
    "  With full IDs, tagged addresses and metadata:\n"
    "\n"
    "      $ concord catalog nodes -detailed\n"
    "\n"
    "  Only those that provide the service \"web\":\n"
    "\n"
    "      $ concord catalog nodes -service=web\n"
    "\n"
    "  Only those with the metadata foo=bar:\n"
    "\n"
    "      $ concord catalog nodes -node-meta=\"foo=bar\"\n"
    "\n"
    "  Sorted by estimated round-trip time from the node \"node-web\":\n"
    "\n"
    "      $ concord catalog nodes -near=node-web\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
  cli__mapflag_free(&o.node_meta);
}

static const char *str(json_t *obj, const char *key)
{
  const char *s = json_string_value(json_object_get(obj, key));
  return s ? s : "";
}

static int key_cmp(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Consul's mapToKV(m, ", "): "k=v" pairs sorted by key. */
static void map_to_kv(struct buf *out, json_t *m)
{
  size_t n = json_object_size(m), i = 0;
  if (!n) return;
  const char **keys = xcalloc(n, sizeof(*keys));
  const char *k;
  json_t *v;
  json_object_foreach(m, k, v) keys[i++] = k;
  qsort(keys, n, sizeof(*keys), key_cmp);
  for (i = 0; i < n; i++)
    buf_printf(out, "%s%s=%s", i ? ", " : "", keys[i], str(m, keys[i]));
  free(keys);
}

/* One row, fields joined by 0x1f. meta_key is "Meta" for a node and "NodeMeta" for a
 * service instance. Caller frees. */
static char *row(json_t *node, bool detailed, const char *meta_key)
{
  struct buf b = BUF_INIT;
  const char *id = str(node, "ID");
  buf_printf(&b, "%s\x1f", str(node, "Node"));
  if (detailed) {
    buf_printf(&b, "%s\x1f%s\x1f%s\x1f", id, str(node, "Address"), str(node, "Datacenter"));
    map_to_kv(&b, json_object_get(node, "TaggedAddresses"));
    buf_putc(&b, '\x1f');
    map_to_kv(&b, json_object_get(node, meta_key));
  } else {
    /* Only the first group of the UUID, as Consul shortens it. */
    const char *dash = strchr(id, '-');
    size_t idlen = dash && dash > id ? (size_t)(dash - id) : strlen(id);
    buf_append(&b, id, idlen);
    buf_printf(&b, "\x1f%s\x1f%s", str(node, "Address"), str(node, "Datacenter"));
  }
  if (!b.data) buf_puts(&b, "");
  return buf_steal(&b, NULL);
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
  if (o.near[0]) cli__query_set(&q, "near", o.near);
  cli__query_node_meta(&q, &o.node_meta);
  if (filter.len) cli__query_set(&q, "filter", filter.data);

  const char *meta_key = "Meta";
  if (o.service[0]) {
    struct buf path = BUF_INIT;
    buf_printf(&path, "/v1/catalog/service/%s", o.service);
    int rc = cli__client_json(ctx, &c, "GET", path.data, &q, NULL, 0, false, &root, err,
                              sizeof(err));
    buf_free(&path);
    if (rc != 0) {
      cli__error(ctx, "Error listing nodes for service: %s", err);
      goto out;
    }
    meta_key = "NodeMeta";
  } else if (cli__client_json(ctx, &c, "GET", "/v1/catalog/nodes", &q, NULL, 0, false, &root,
                              err, sizeof(err)) != 0) {
    cli__error(ctx, "Error listing nodes: %s", err);
    goto out;
  }

  size_t n = json_array_size(root);
  if (n == 0) {
    cli__error(ctx, "No nodes match the given query - try expanding your search.");
    code = 0;
    goto out;
  }
  char **lines = xcalloc(n + 1, sizeof(*lines));
  lines[0] = xstrdup(o.detailed ? "Node\x1fID\x1f" "Address\x1f" "DC\x1fTaggedAddresses\x1fMeta"
                                : "Node\x1fID\x1f" "Address\x1f" "DC");
  for (size_t i = 0; i < n; i++) lines[i + 1] = row(json_array_get(root, i), o.detailed, meta_key);
  struct buf b = BUF_INIT;
  cli__columnize(&b, lines, n + 1);
  buf_putc(&b, '\n');
  fwrite(b.data, 1, b.len, ctx->out);
  buf_free(&b);
  for (size_t i = 0; i <= n; i++) free(lines[i]);
  free(lines);
  code = 0;
out:
  json_decref(root);
  buf_free(&filter);
  cli__query_free(&q);
  cli__client_free(&c);
  cli__mapflag_free(&o.node_meta);
  return code;
}

const struct cli__command cli__cmd_catalog_nodes = {
    .name = "catalog nodes",
    .synopsis = "Lists all nodes in the given datacenter",
    .run = run,
    .help = help,
};
