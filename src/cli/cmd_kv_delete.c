/* cmd_kv_delete.c -- `concord kv delete`: removes a key, every key under a prefix
 * (-recurse), or a key only if its ModifyIndex still matches (-cas -modify-index). Deleting
 * a key that does not exist succeeds, as in Consul. */
#include <string.h>

#include "cli/internal.h"

struct opts {
  bool cas, recurse;
  uint64_t modify_index;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_bool(fs, "cas", &o->cas,
                 "Performs a check-and-set: the key is deleted only if its ModifyIndex is "
                 "still the one given with -modify-index. The default is false.");
  cli__flag_uint64(fs, "modify-index", &o->modify_index,
                   "Unsigned integer holding the ModifyIndex the key must still have; used "
                   "with -cas.");
  cli__flag_bool(fs, "recurse", &o->recurse,
                 "Deletes every key that starts with the given prefix. The default is "
                 "false.");
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
  cli__http_tenancy_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord kv delete [options] KEY_OR_PREFIX\n"
    "\n"
    "  Removes the key at the given path from the key-value store. Nothing happens\n"
    "  if there is no such key.\n"
    "\n"
    "  Delete the key \"foo\":\n"
    "\n"
    "      $ concord kv delete foo\n"
    "\n"
    "  Delete every key that starts with \"foo\":\n"
    "\n"
    "      $ concord kv delete -recurse foo\n"
    "\n"
    "  which removes \"foo\", \"food\" and \"foo/bar/zip\" if they exist.\n";

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
  if (!key[0] && !o.recurse) {
    cli__error(ctx, "Error! Missing KEY argument");
    return 1;
  }
  if (o.cas && o.modify_index == 0) {
    cli__error(ctx, "Cannot delete a key that does not exist. Provide a -modify-index greater "
               "than than 0.");
    return 1;
  }
  if (o.modify_index != 0 && !o.cas) {
    cli__error(ctx, "Cannot specify -modify-index without -cas!");
    return 1;
  }
  if (o.recurse && o.cas) {
    cli__error(ctx, "Cannot specify both -cas and -recurse!");
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
  if (o.recurse) cli__query_set(&q, "recurse", "");
  if (o.cas) {
    char n[24];
    snprintf(n, sizeof(n), "%llu", (unsigned long long)o.modify_index);
    cli__query_set(&q, "cas", n);
  }
  struct buf path = BUF_INIT;
  buf_printf(&path, "/v1/kv/%s", key);
  struct cli__http_resp r;
  memset(&r, 0, sizeof(r));
  bool sent = false, ok = false;
  if (cli__client_call(ctx, &c, "DELETE", path.data, &q, NULL, 0, false, &r, err,
                       sizeof(err)) == 0) {
    if (r.status == 200) {
      sent = true;
      ok = r.body.data && strstr(r.body.data, "true") != NULL;
    } else {
      cli__status_error(&r, err, sizeof(err));
    }
  }
  int code = 1;
  if (o.recurse) {
    if (!sent) cli__error(ctx, "Error! Did not delete prefix %s: %s", key, err);
    else {
      cli__info(ctx, "Success! Deleted keys with prefix: %s", key);
      code = 0;
    }
  } else if (o.cas) {
    if (!sent) cli__error(ctx, "Error! Did not delete key %s: %s", key, err);
    else if (!ok) cli__error(ctx, "Error! Did not delete key %s: CAS failed", key);
    else {
      cli__info(ctx, "Success! Deleted key: %s", key);
      code = 0;
    }
  } else {
    if (!sent) cli__error(ctx, "Error deleting key %s: %s", key, err);
    else {
      cli__info(ctx, "Success! Deleted key: %s", key);
      code = 0;
    }
  }
  cli__http_resp_free(&r);
  buf_free(&path);
  cli__query_free(&q);
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_kv_delete = {
    .name = "kv delete",
    .synopsis = "Removes data from the KV store",
    .run = run,
    .help = help,
};
