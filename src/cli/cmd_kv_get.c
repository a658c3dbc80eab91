/* cmd_kv_get.c -- `concord kv get`: one value, a prefix's pairs (-recurse), or its keys
 * (-keys, folded at -separator), raw or in base64, optionally with metadata (-detailed).
 *
 * Output is Consul's to the byte: the value alone and a newline; "key:value" lines for
 * -recurse; the -detailed table with an empty line between pairs. A missing key is
 * "Error! No key exists at: <key>" and exit 1; an empty prefix lists nothing and exits 0. */
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "lib/alloc.h"
#include "lib/b64.h"

#include <jansson.h>

struct opts {
  bool base64, detailed, keys, recurse;
  const char *separator;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_bool(fs, "base64", &o->base64, "Prints the value base64-encoded. The default is "
                                           "false.");
  cli__flag_bool(fs, "detailed", &o->detailed,
                 "Prints the key's metadata along with its value: its create and modify "
                 "indexes, lock index, flags and session. The default is false.");
  cli__flag_bool(fs, "keys", &o->keys,
                 "Lists the keys that start with the given prefix, without their values. "
                 "Usually combined with -separator. The default is false.");
  cli__flag_bool(fs, "recurse", &o->recurse,
                 "Reads every key that starts with the given prefix. The default is false.");
  cli__flag_string(fs, "separator", &o->separator, "/",
                   "Character at which -keys folds the listing, so each level shows once. "
                   "The default is \"/\"; it only matters with -keys.");
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
  cli__http_tenancy_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord kv get [options] [KEY_OR_PREFIX]\n"
    "\n"
    "  Reads the value stored at the given key. It is an error if the key does not\n"
    "  exist; a key that exists with no data prints nothing. Without a name the root\n"
    "  of the store (\"\") is used, which only makes sense with -recurse or -keys.\n"
    "\n"
    "  Read the value of the key \"foo\":\n"
    "\n"
    "      $ concord kv get foo\n"
    "\n"
    "  This prints the raw value. Add -detailed to see the key's metadata too, such\n"
    "  as its ModifyIndex and flags:\n"
    "\n"
    "      $ concord kv get -detailed foo\n"
    "\n"
    "  Treat the name as a prefix and print every pair below it with -recurse:\n"
    "\n"
    "      $ concord kv get -recurse foo\n"
    "\n"
    "  Or only the key names with -keys:\n"
    "\n"
    "      $ concord kv get -keys foo\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
}

static void put_value(struct buf *b, const struct cli__kvpair *p, bool base64)
{
  if (!base64) {
    buf_append(b, p->value.data, p->value.len);
    return;
  }
  char *enc = xmalloc(b64_encoded_len(p->value.len) + 1);
  b64_encode(p->value.data, p->value.len, enc);
  buf_puts(b, enc);
  free(enc);
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
  /* Keys never start with '/'; people type "/foo" anyway. */
  if (key[0] == '/') key++;
  if (!key[0] && !(o.recurse || o.keys)) {
    cli__error(ctx, "Error! Missing KEY argument");
    return 1;
  }

  char err[CLI__ERRLEN];
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    return 1;
  }
  struct cli__query q;
  cli__query_init(&q);
  if (c.stale) cli__query_set(&q, "stale", "");
  if (o.recurse) cli__query_set(&q, "recurse", "");
  else if (o.keys) {
    cli__query_set(&q, "keys", "");
    if (o.separator[0]) cli__query_set(&q, "separator", o.separator);
  }
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
  if (r.status == 404) {
    /* No key, or nothing under the prefix: only a plain get is an error. */
    if (!o.keys && !o.recurse) cli__error(ctx, "Error! No key exists at: %s", key);
    else code = 0;
    goto out;
  }
  if (r.status != 200) {
    cli__status_error(&r, err, sizeof(err));
    cli__error(ctx, "Error querying Consul agent: %s", err);
    goto out;
  }

  if (o.keys && !o.recurse) {
    json_error_t je;
    json_t *arr = json_loadb(r.body.data, r.body.len, JSON_DECODE_ANY, &je);
    if (!arr || !(json_is_array(arr) || json_is_null(arr))) {
      cli__error(ctx, "Error querying Consul agent: %s",
                 arr ? "json: cannot unmarshal into Go value of type []string" : je.text);
      json_decref(arr);
      goto out;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
      if (!json_is_string(v)) continue;
      buf_append(&out, json_string_value(v), json_string_length(v));
      buf_putc(&out, '\n');
    }
    json_decref(arr);
    code = 0;
    goto out;
  }

  if (cli__kv_decode(r.body.data, r.body.len, &pairs, &n, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error querying Consul agent: %s", err);
    goto out;
  }
  if (o.recurse) {
    for (size_t i = 0; i < n; i++) {
      if (o.detailed) {
        cli__kv_pretty(&out, &pairs[i], o.base64, o.keys);
        buf_putc(&out, '\n');
        if (i + 1 < n) buf_putc(&out, '\n');
      } else if (o.keys) {
        buf_printf(&out, "%s\n", pairs[i].key);
      } else {
        buf_printf(&out, "%s:", pairs[i].key);
        put_value(&out, &pairs[i], o.base64);
        buf_putc(&out, '\n');
      }
    }
    code = 0;
    goto out;
  }
  if (n == 0) {
    cli__error(ctx, "Error! No key exists at: %s", key);
    goto out;
  }
  if (o.detailed) cli__kv_pretty(&out, &pairs[0], o.base64, false);
  else put_value(&out, &pairs[0], o.base64);
  buf_putc(&out, '\n');
  code = 0;
out:
  if (out.len) fwrite(out.data, 1, out.len, ctx->out);
  cli__kv_free(pairs, n);
  cli__http_resp_free(&r);
out_noresp:
  buf_free(&out);
  buf_free(&path);
  cli__query_free(&q);
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_kv_get = {
    .name = "kv get",
    .synopsis = "Retrieves or lists data from the KV store",
    .run = run,
    .help = help,
};
