/* cmd_kv_put.c -- `concord kv put`: writes a value (from the argument, "@file", or "-" for
 * stdin), optionally as a check-and-set (-cas with -modify-index; index 0 means "only if the
 * key does not exist"), a lock acquisition or release (-acquire/-release with -session).
 *
 * Messages and exit codes are Consul's, since scripts test them: "Success! Data written to:
 * <key>", "Error! Did not write to <key>: CAS failed" (exit 1), and so on. Two deliberate
 * differences: a -base64 value that does not decode is an error (Consul prints the error but
 * goes on to write the partly decoded bytes), and a failed -release reports the agent's
 * error rather than repeating the key. */
#include <string.h>

#include "cli/internal.h"

struct opts {
  bool cas, base64, acquire, release;
  uint64_t flags, modify_index;
  const char *session;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_bool(fs, "cas", &o->cas,
                 "Performs a check-and-set: the write happens only if the key's ModifyIndex "
                 "is still the one given with -modify-index (0: only if the key does not "
                 "exist yet). The default is false.");
  cli__flag_uint64(fs, "flags", &o->flags,
                   "Unsigned integer to store with the pair. Concord does not interpret it; "
                   "clients may use it however they like. The default is 0 (no flags).");
  cli__flag_bool(fs, "base64", &o->base64,
                 "Treats the data as base64-encoded and stores the decoded bytes. The "
                 "default is false.");
  cli__flag_uint64(fs, "modify-index", &o->modify_index,
                   "Unsigned integer holding the ModifyIndex the key must still have; used "
                   "with -cas.");
  cli__flag_string(fs, "session", &o->session, "",
                   "Session ID to associate with the key. Usually used with -acquire and "
                   "-release to build locks, but any key may name one. The default is empty "
                   "(no session).");
  cli__flag_bool(fs, "acquire", &o->acquire,
                 "Takes the lock on the key for the session given with -session, creating "
                 "the key if it does not exist. The session must already exist. The default "
                 "is false.");
  cli__flag_bool(fs, "release", &o->release,
                 "Gives up the lock on the key held by the session given with -session. The "
                 "default is false.");
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
  cli__http_tenancy_flags(fs, &o->http);
}

static const char usage[] =
    "Usage: concord kv put [options] KEY [DATA]\n"
    "\n"
    "  Writes the data at the given key in the key-value store. The data may be\n"
    "  anything.\n"
    "\n"
    "      $ concord kv put config/redis/maxconns 5\n"
    "\n"
    "  Prefix a file name with \"@\" to store the file's contents:\n"
    "\n"
    "      $ concord kv put config/program/license @license.lic\n"
    "\n"
    "  Use \"-\" to read the data from stdin:\n"
    "\n"
    "      $ echo \"abcd1234\" | concord kv put config/program/license -\n"
    "\n"
    "  Without DATA an empty value is stored at the key:\n"
    "\n"
    "      $ concord kv put webapp/beta/active\n"
    "\n"
    "  With -base64 the data is decoded from base64 first.\n"
    "\n"
    "  For a check-and-set, give -cas and the ModifyIndex the key must still have:\n"
    "\n"
    "      $ concord kv put -cas -modify-index=844 config/redis/maxconns 5\n"
    "\n"
    "  The options below cover the other cases.\n";

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
    cli__error(ctx, "Error! Missing KEY argument");
    return 1;
  }
  if (nargs > 2) {
    cli__error(ctx, "Error! Too many arguments (expected 1 or 2, got %d)", nargs);
    return 1;
  }
  const char *key = argv[rest];
  char err[CLI__ERRLEN];
  struct buf data = BUF_INIT, value = BUF_INIT;
  int code = 1;
  if (nargs == 2 && cli__load_data(ctx, argv[rest + 1], &data, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error! %s", err);
    goto out_data;
  }
  if (o.base64) {
    if (cli__b64_decode_std(data.data ? data.data : "", data.len, &value, err,
                            sizeof(err)) != 0) {
      cli__error(ctx, "Error! Cannot base 64 decode data: %s", err);
      goto out_data;
    }
  } else {
    buf_append(&value, data.data ? data.data : "", data.len);
  }
  if ((o.release || o.acquire) && !o.session[0]) {
    cli__error(ctx, "Error! Missing -session (required with -acquire and -release)");
    goto out_data;
  }

  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    goto out_data;
  }
  struct cli__query q;
  cli__query_init(&q);
  if (o.flags) {
    char n[24];
    snprintf(n, sizeof(n), "%llu", (unsigned long long)o.flags);
    cli__query_set(&q, "flags", n);
  }
  if (o.cas) {
    char n[24];
    snprintf(n, sizeof(n), "%llu", (unsigned long long)o.modify_index);
    cli__query_set(&q, "cas", n);
  } else if (o.acquire) {
    cli__query_set(&q, "acquire", o.session);
  } else if (o.release) {
    cli__query_set(&q, "release", o.session);
  }

  /* The api client refuses such keys before sending anything. */
  bool ok = false, sent = false;
  struct cli__http_resp r;
  memset(&r, 0, sizeof(r));
  if (key[0] == '/') {
    snprintf(err, sizeof(err), "Invalid key. Key must not begin with a '/': %s", key);
  } else {
    struct buf path = BUF_INIT;
    buf_printf(&path, "/v1/kv/%s", key);
    if (cli__client_call(ctx, &c, "PUT", path.data, &q, value.data, value.len, true, &r, err,
                         sizeof(err)) == 0) {
      if (r.status == 200) {
        sent = true;
        /* The api package looks for "true" anywhere in the answer. */
        ok = r.body.data && strstr(r.body.data, "true") != NULL;
      } else {
        cli__status_error(&r, err, sizeof(err));
      }
    }
    buf_free(&path);
  }

  if (o.cas) {
    if (!sent) cli__error(ctx, "Error! Did not write to %s: %s", key, err);
    else if (!ok && o.modify_index == 0)
      cli__error(ctx, "Error! Did not write to %s: CAS performed with index=0 and key already "
                 "exists.", key);
    else if (!ok) cli__error(ctx, "Error! Did not write to %s: CAS failed", key);
    else {
      cli__info(ctx, "Success! Data written to: %s", key);
      code = 0;
    }
  } else if (o.acquire) {
    if (!sent) cli__error(ctx, "Error! Failed writing data: %s", err);
    else if (!ok) cli__error(ctx, "Error! Did not acquire lock");
    else {
      cli__info(ctx, "Success! Lock acquired on: %s", key);
      code = 0;
    }
  } else if (o.release) {
    if (!sent) cli__error(ctx, "Error! Failed writing data: %s", err);
    else if (!ok) cli__error(ctx, "Error! Did not release lock");
    else {
      cli__info(ctx, "Success! Lock released on: %s", key);
      code = 0;
    }
  } else {
    /* A plain put succeeds on any 200, whatever the body says (as Consul's CLI). */
    if (!sent) cli__error(ctx, "Error! Failed writing data: %s", err);
    else {
      cli__info(ctx, "Success! Data written to: %s", key);
      code = 0;
    }
  }
  cli__http_resp_free(&r);
  cli__query_free(&q);
  cli__client_free(&c);
out_data:
  buf_free(&data);
  buf_free(&value);
  return code;
}

const struct cli__command cli__cmd_kv_put = {
    .name = "kv put",
    .synopsis = "Sets or updates data in the KV store",
    .run = run,
    .help = help,
};
