/* cmd_kv_import.c -- `concord kv import`: writes back the pairs of a `kv export` document
 * (given as the argument, "@file", or "-" for stdin), each key joined to -prefix the way
 * Go's path.Join does (so "a//b" becomes "a/b", but a trailing "/" of a "directory" key is
 * kept). It stops at the first failure, having printed "Imported: <key>" for each key
 * written before it. */
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "lib/alloc.h"

struct opts {
  const char *prefix;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_string(fs, "prefix", &o->prefix, "", "Key prefix for imported data");
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
  cli__http_tenancy_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord kv import [DATA]\n"
    "\n"
    "  Writes key-value pairs into the store from the JSON that \"concord kv export\"\n"
    "  produces.\n"
    "\n"
    "  Prefix a file name with \"@\" to read the data from that file:\n"
    "\n"
    "      $ concord kv import @filename.json\n"
    "\n"
    "  Use \"-\" to read it from stdin:\n"
    "\n"
    "      $ cat filename.json | concord kv import -\n"
    "\n"
    "  The JSON may also be given as the argument itself, quoted for the shell.\n";

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
  if (nargs == 0) {
    cli__error(ctx, "Error! Missing DATA argument");
    return 1;
  }
  if (nargs > 1) {
    cli__error(ctx, "Error! Too many arguments (expected 1, got %d)", nargs);
    return 1;
  }
  if (!argv[rest][0]) {
    cli__error(ctx, "Error! Empty DATA argument");
    return 1;
  }
  char err[CLI__ERRLEN];
  struct buf data = BUF_INIT;
  if (cli__load_data(ctx, argv[rest], &data, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error! %s", err);
    buf_free(&data);
    return 1;
  }
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    buf_free(&data);
    return 1;
  }
  struct cli__kv_entry *es = NULL;
  size_t n = 0;
  int code = 1;
  if (cli__kv_import_parse(data.data, data.len, &es, &n, err, sizeof(err)) != 0) {
    cli__error(ctx, "Cannot unmarshal data: %s", err);
    goto out;
  }
  code = 0;
  for (size_t i = 0; i < n && code == 0; i++) {
    struct buf value = BUF_INIT;
    if (cli__b64_decode_std(es[i].value, strlen(es[i].value), &value, err, sizeof(err)) != 0) {
      cli__error(ctx, "Error base 64 decoding value for key %s: %s", es[i].key, err);
      buf_free(&value);
      code = 1;
      break;
    }
    char *key = cli__path_join(o.prefix, es[i].key);
    size_t kl = strlen(es[i].key);
    if (kl > 0 && es[i].key[kl - 1] == '/') {
      char *k2 = xmalloc(strlen(key) + 2);
      strcpy(k2, key);
      strcat(k2, "/");
      free(key);
      key = k2;
    }
    struct cli__query q;
    cli__query_init(&q);
    if (es[i].flags) {
      char f[24];
      snprintf(f, sizeof(f), "%llu", (unsigned long long)es[i].flags);
      cli__query_set(&q, "flags", f);
    }
    if (es[i].ns && es[i].ns[0]) cli__query_set(&q, "ns", es[i].ns);
    struct cli__http_resp r;
    memset(&r, 0, sizeof(r));
    bool ok = false;
    if (key[0] == '/') {
      snprintf(err, sizeof(err), "Invalid key. Key must not begin with a '/': %s", key);
    } else {
      struct buf path = BUF_INIT;
      buf_printf(&path, "/v1/kv/%s", key);
      if (cli__client_call(ctx, &c, "PUT", path.data, &q, value.data, value.len, true, &r, err,
                           sizeof(err)) == 0) {
        if (r.status == 200) ok = true;
        else cli__status_error(&r, err, sizeof(err));
      }
      buf_free(&path);
    }
    if (ok) {
      cli__info(ctx, "Imported: %s", key);
    } else {
      cli__error(ctx, "Error! Failed writing data for key %s: %s", key, err);
      code = 1;
    }
    cli__http_resp_free(&r);
    cli__query_free(&q);
    free(key);
    buf_free(&value);
  }
out:
  cli__kv_entries_free(es, n);
  cli__client_free(&c);
  buf_free(&data);
  return code;
}

const struct cli__command cli__cmd_kv_import = {
    .name = "kv import",
    .synopsis = "Imports a tree stored as JSON to the KV store",
    .run = run,
    .help = help,
};
