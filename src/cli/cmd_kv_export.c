/* cmd_kv_export.c -- `concord kv export`: every pair under a prefix as the JSON that
 * `kv import` (Concord's or Consul's) reads back: [{"key","flags","value"}], values in
 * base64, tab-indented. An empty prefix exports the whole store; nothing found is "[]". */
#include <string.h>

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
  cli__http_tenancy_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord kv export [KEY_OR_PREFIX]\n"
    "\n"
    "  Writes the key-value pairs under the given prefix to stdout as JSON. Together\n"
    "  with \"concord kv import\" this moves whole trees between clusters.\n"
    "\n"
    "      $ concord kv export vault\n";

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
  if (nargs > 1) {
    cli__error(ctx, "Too many arguments (expected 1, got %d)", nargs);
    return 1;
  }
  const char *key = nargs == 1 ? argv[rest] : "";
  if (key[0] == '/') key++;

  char err[CLI__ERRLEN];
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    return 1;
  }
  struct cli__query q;
  cli__query_init(&q);
  cli__query_set(&q, "recurse", "");
  if (c.stale) cli__query_set(&q, "stale", "");
  struct buf path = BUF_INIT, out = BUF_INIT;
  buf_printf(&path, "/v1/kv/%s", key);
  struct cli__http_resp r;
  struct cli__kvpair *pairs = NULL;
  size_t n = 0;
  int code = 1;
  if (cli__client_call(ctx, &c, "GET", path.data, &q, NULL, 0, false, &r, err,
                       sizeof(err)) != 0) {
    cli__error(ctx, "Error querying Consul agent: %s", err);
    goto out_noresp;
  }
  if (r.status != 200 && r.status != 404) {
    cli__status_error(&r, err, sizeof(err));
    cli__error(ctx, "Error querying Consul agent: %s", err);
    goto out;
  }
  if (r.status == 200 &&
      cli__kv_decode(r.body.data, r.body.len, &pairs, &n, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error querying Consul agent: %s", err);
    goto out;
  }
  cli__kv_export_json(&out, pairs, n);
  buf_putc(&out, '\n');
  fwrite(out.data, 1, out.len, ctx->out);
  code = 0;
out:
  cli__kv_free(pairs, n);
  cli__http_resp_free(&r);
out_noresp:
  buf_free(&out);
  buf_free(&path);
  cli__query_free(&q);
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_kv_export = {
    .name = "kv export",
    .synopsis = "Exports a tree from the KV store as JSON",
    .run = run,
    .help = help,
};
