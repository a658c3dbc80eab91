/* cmd_info.c -- `concord info`: the agent's Stats from GET /v1/agent/self, one section per
 * subsystem, sections and keys sorted, in Consul's layout ("agent:" then "\tkey = value"),
 * for operators and for scripts written against `consul info`. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/internal.h"
#include "lib/alloc.h"

struct opts {
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__http_client_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord info [options]\n"
    "\n"
    "  Provides debugging information for operators: the statistics the agent keeps\n"
    "  about each of its subsystems.\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
}

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of obj, sorted bytewise (Go's sort.Strings). Caller frees the array only. */
static const char **sorted_keys(json_t *obj, size_t *n)
{
  *n = json_object_size(obj);
  const char **keys = xcalloc(*n ? *n : 1, sizeof(*keys));
  const char *k;
  json_t *v;
  size_t i = 0;
  json_object_foreach(obj, k, v) keys[i++] = k;
  qsort(keys, *n, sizeof(*keys), cmp_str);
  return keys;
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  int rest = 0;
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;
  char err[CLI__ERRLEN];
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    return 1;
  }
  struct cli__http_resp r;
  int code = 1;
  json_t *root = NULL;
  if (cli__client_call(ctx, &c, "GET", "/v1/agent/self", NULL, NULL, 0, false, &r, err,
                       sizeof(err)) != 0) {
    cli__error(ctx, "Error querying agent: %s", err);
    goto out_client;
  }
  if (r.status != 200) {
    cli__status_error(&r, err, sizeof(err));
    cli__error(ctx, "Error querying agent: %s", err);
    goto out;
  }
  json_error_t je;
  root = json_loadb(r.body.data, r.body.len, 0, &je);
  if (!root || !json_is_object(root)) {
    cli__error(ctx, "Error querying agent: %s", root ? "answer is not a JSON object" : je.text);
    goto out;
  }
  json_t *stats = json_object_get(root, "Stats");
  if (!json_is_object(stats)) {
    cli__error(ctx, "Agent response did not contain 'Stats' key: %s", r.body.data);
    goto out;
  }
  struct buf b = BUF_INIT;
  size_t n;
  const char **keys = sorted_keys(stats, &n);
  code = 0;
  for (size_t i = 0; i < n && code == 0; i++) {
    json_t *sub = json_object_get(stats, keys[i]);
    buf_printf(&b, "%s:\n", keys[i]);
    if (!json_is_object(sub)) {
      fwrite(b.data, 1, b.len, ctx->out);
      buf_reset(&b);
      cli__error(ctx, "Got invalid subkey in stats: map[]");
      code = 1;
      break;
    }
    size_t m;
    const char **sk = sorted_keys(sub, &m);
    for (size_t j = 0; j < m; j++) {
      json_t *v = json_object_get(sub, sk[j]);
      buf_printf(&b, "\t%s = ", sk[j]);
      if (json_is_string(v)) {
        buf_append(&b, json_string_value(v), json_string_length(v));
      } else {
        /* Consul's agents only report strings; print anything else as JSON. */
        char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        buf_puts(&b, t ? t : "");
        free(t);
      }
      buf_putc(&b, '\n');
    }
    free(sk);
  }
  free(keys);
  if (b.len) fwrite(b.data, 1, b.len, ctx->out);
  buf_free(&b);
out:
  json_decref(root);
  cli__http_resp_free(&r);
out_client:
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_info = {
    .name = "info",
    .synopsis = "Provides debugging information for operators.",
    .run = run,
    .help = help,
};
