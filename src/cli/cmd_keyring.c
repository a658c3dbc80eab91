/* cmd_keyring.c -- `concord keyring -list|-install|-use|-remove`: gossip key rotation through
 * /v1/operator/keyring, as `consul keyring` (command/keyring/keyring.go): exactly one action,
 * "==> " progress lines, the list as "<dc> (LAN):" and "  <key> [<holders>/<members>]", and
 * exit 1 when any member failed or did not answer. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "lib/buf.h"

struct opts {
  struct cli__http_opts http;
  const char *install, *use, *remove;
  bool list;
  int64_t relay;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_string(fs, "install", &o->install, "",
                   "Install a new encryption key. This will broadcast the new key to all "
                   "members in the cluster.");
  cli__flag_bool(fs, "list", &o->list, "List all keys currently in use within the cluster.");
  cli__flag_int(fs, "relay-factor", &o->relay,
                "Setting this to a non-zero value will cause nodes to relay their response to "
                "the operation through this many randomly-chosen other nodes in the cluster. "
                "The maximum allowed value is 5.");
  cli__flag_string(fs, "remove", &o->remove, "",
                   "Remove the given key from the cluster. This operation may only be performed "
                   "on keys which are not currently the primary key.");
  cli__flag_string(fs, "use", &o->use, "",
                   "Change the primary encryption key, which is used to encrypt messages. The "
                   "key must already be installed before this operation can succeed.");
  cli__http_client_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord keyring [options]\n"
    "\n"
    "  Manages encryption keys used for gossip messages. Gossip encryption is\n"
    "  optional. When enabled, this command may be used to examine active encryption\n"
    "  keys in the cluster, add new keys, and remove old ones. When combined, this\n"
    "  functionality provides the ability to perform key rotation cluster-wide,\n"
    "  without disrupting the cluster.\n"
    "\n"
    "  All operations performed by this command can only be run against server nodes,\n"
    "  and affect the LAN keyring (Concord has no WAN pool).\n"
    "\n"
    "  All variations of the keyring command return 0 if all nodes reply and there\n"
    "  are no errors. If any node fails to reply or reports failure, the exit code\n"
    "  will be 1.\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
}

static void print_list(struct cli__ctx *ctx, json_t *arr)
{
  size_t i;
  json_t *r;
  json_array_foreach(arr, i, r) {
    const char *dc = json_string_value(json_object_get(r, "Datacenter"));
    const char *seg = json_string_value(json_object_get(r, "Segment"));
    struct buf pool = BUF_INIT;
    if (json_is_true(json_object_get(r, "WAN"))) {
      buf_puts(&pool, "WAN");
    } else {
      buf_printf(&pool, "%s (LAN)", dc ? dc : "");
      if (seg && *seg) buf_printf(&pool, " [%s]", seg);
    }
    cli__info(ctx, "%s", "");
    cli__info(ctx, "%s:", pool.data);
    buf_free(&pool);
    json_int_t total = json_integer_value(json_object_get(r, "NumNodes"));
    const char *key;
    json_t *n;
    json_object_foreach(json_object_get(r, "Keys"), key, n)
      cli__info(ctx, "  %s [%lld/%lld]", key, (long long)json_integer_value(n), (long long)total);
  }
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  int rest = 0;
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;
  /* Only one action (keyring.go's check), and at least one. */
  bool found = o.list;
  const char *actions[] = {o.install, o.use, o.remove};
  for (size_t i = 0; i < 3; i++) {
    if (found && actions[i][0]) {
      cli__error(ctx, "Only a single action is allowed");
      return 1;
    }
    found = found || actions[i][0];
  }
  if (!found) return CLI__RUN_HELP;
  if (o.relay < 0 || o.relay > 5) {
    cli__error(ctx, "Error parsing relay factor: Relay factor must be in range: [0, 5]");
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
  if (o.relay) {
    char rf[8];
    snprintf(rf, sizeof rf, "%d", (int)o.relay);
    cli__query_set(&q, "relay-factor", rf);
  }
  int code = 0;
  if (o.list) {
    cli__info(ctx, "==> Gathering installed encryption keys...");
    json_t *arr = NULL;
    if (cli__client_json(ctx, &c, "GET", "/v1/operator/keyring", &q, NULL, 0, false, &arr, err,
                         sizeof(err)) != 0) {
      cli__error(ctx, "error: %s", err);
      code = 1;
    } else {
      print_list(ctx, arr);
    }
    json_decref(arr);
  } else {
    const char *method = "POST", *key = o.install, *what = "Installing new gossip encryption key";
    if (o.use[0]) method = "PUT", key = o.use, what = "Changing primary gossip encryption key";
    if (o.remove[0]) method = "DELETE", key = o.remove, what = "Removing gossip encryption key";
    cli__info(ctx, "==> %s...", what);
    json_t *body = json_pack("{s:s}", "Key", key);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (cli__client_json(ctx, &c, method, "/v1/operator/keyring", &q, text, strlen(text), true,
                         NULL, err, sizeof(err)) != 0) {
      cli__error(ctx, "error: %s", err);
      code = 1;
    }
    free(text);
  }
  cli__query_free(&q);
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_keyring = {
    .name = "keyring",
    .synopsis = "Manages gossip layer encryption keys",
    .run = run,
    .help = help,
};
