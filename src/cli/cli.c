/* cli.c -- `concord <command>`: finds the command and runs it under the rules of
 * mitchellh/cli, the library behind `consul`, so that exit codes and help behave the same:
 *
 *   - "-h", "-help" or "--help" anywhere before "--" prints the command's help on stdout and
 *     exits 0, whatever else is on the line;
 *   - nested commands ("kv get") are found by the longest prefix of the arguments;
 *   - an unknown command prints the command list on stderr and exits 127;
 *   - a parent command run without a known subcommand ("concord kv") prints its help on
 *     stderr and exits 1;
 *   - flags before the command name are refused with exit 1;
 *   - "-v", "-version" or "--version" before the command runs `version`.
 *
 * `concord agent` is dispatched by main.c before we get here; it is listed in the help so the
 * list names every command that exists. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/internal.h"

/* Sorted by name: the help lists them in this order. */
static const struct cli__command *const commands[] = {
    &cli__cmd_catalog,          &cli__cmd_catalog_datacenters, &cli__cmd_catalog_nodes,
    &cli__cmd_catalog_services, &cli__cmd_event,               &cli__cmd_exec,
    &cli__cmd_force_leave,      &cli__cmd_info,                &cli__cmd_join,
    &cli__cmd_keygen,           &cli__cmd_keyring,             &cli__cmd_kv,
    &cli__cmd_kv_delete,        &cli__cmd_kv_export,           &cli__cmd_kv_get,
    &cli__cmd_kv_import,        &cli__cmd_kv_put,              &cli__cmd_leave,
    &cli__cmd_lock,
    &cli__cmd_maint,            &cli__cmd_members,             &cli__cmd_monitor,             &cli__cmd_operator,
    &cli__cmd_operator_raft,    &cli__cmd_operator_raft_list_peers,
    &cli__cmd_operator_raft_remove_peer, &cli__cmd_reload,     &cli__cmd_services,
    &cli__cmd_services_deregister, &cli__cmd_services_register, &cli__cmd_snapshot,
    &cli__cmd_snapshot_inspect, &cli__cmd_snapshot_restore,    &cli__cmd_snapshot_save,
    &cli__cmd_validate,
    &cli__cmd_version,          &cli__cmd_watch,
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Top-level entries for the command list that are run elsewhere. */
static const struct {
  const char *name, *synopsis;
} external[] = {
    {"agent", "Runs a Concord agent"},
};

static const struct cli__command *find(const char *name)
{
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i]->name, name) == 0) return commands[i];
  return NULL;
}

void cli__top_help(struct buf *out)
{
  /* mitchellh/cli's BasicHelpFunc over the top-level (space-free) names. */
  const char *names[NCOMMANDS + sizeof(external) / sizeof(external[0])];
  const char *syn[sizeof(names) / sizeof(names[0])];
  size_t n = 0, longest = 0;
  for (size_t i = 0; i < sizeof(external) / sizeof(external[0]); i++) {
    names[n] = external[i].name;
    syn[n++] = external[i].synopsis;
  }
  for (size_t i = 0; i < NCOMMANDS; i++) {
    if (strchr(commands[i]->name, ' ')) continue;
    names[n] = commands[i]->name;
    syn[n++] = commands[i]->synopsis;
  }
  for (size_t i = 1; i < n; i++) { /* insertion sort by name */
    const char *a = names[i], *b = syn[i];
    size_t j = i;
    for (; j > 0 && strcmp(names[j - 1], a) > 0; j--) {
      names[j] = names[j - 1];
      syn[j] = syn[j - 1];
    }
    names[j] = a;
    syn[j] = b;
  }
  for (size_t i = 0; i < n; i++)
    if (strlen(names[i]) > longest) longest = strlen(names[i]);
  buf_puts(out, "Usage: concord [--version] [--help] <command> [<args>]\n\n");
  buf_puts(out, "Available commands are:\n");
  for (size_t i = 0; i < n; i++)
    buf_printf(out, "    %-*s    %s\n", (int)longest, names[i], syn[i]);
}

/* mitchellh/cli's help template: the command's help, then its immediate subcommands. */
static void command_help(const struct cli__command *c, struct buf *out)
{
  c->help(out);
  size_t plen = strlen(c->name), longest = 0;
  const struct cli__command *subs[NCOMMANDS];
  size_t n = 0;
  for (size_t i = 0; i < NCOMMANDS; i++) {
    const char *k = commands[i]->name;
    if (strncmp(k, c->name, plen) == 0 && k[plen] == ' ' && !strchr(k + plen + 1, ' ')) {
      subs[n++] = commands[i];
      if (strlen(k) > longest) longest = strlen(k);
    }
  }
  if (n) {
    buf_puts(out, "\n\nSubcommands:");
    for (size_t i = 0; i < n; i++) {
      const char *name = subs[i]->name + plen + 1;
      /* Go pads by the full key's length but prints only the last word. */
      buf_printf(out, "\n    %s%*s    %s", name, (int)(longest - strlen(subs[i]->name)), "",
                 subs[i]->synopsis);
    }
  }
  buf_putc(out, '\n');
}

static void write_buf(FILE *f, struct buf *b)
{
  if (b->len) fwrite(b->data, 1, b->len, f);
  buf_free(b);
}

int cli__dispatch(struct cli__ctx *ctx, int argc, char **argv)
{
  bool help = false, version = false;
  int sub = -1, nflags = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) break;
    if (strcmp(a, "-h") == 0 || strcmp(a, "-help") == 0 || strcmp(a, "--help") == 0) {
      help = true;
      continue;
    }
    if (sub < 0) {
      if (strcmp(a, "-v") == 0 || strcmp(a, "-version") == 0 || strcmp(a, "--version") == 0) {
        version = true;
        continue;
      }
      if (a[0] == '-') nflags++;
      else if (a[0]) sub = i;
    }
  }
  if (version) return cli__cmd_version.run(ctx, 0, NULL);

  struct buf b = BUF_INIT;
  if (sub < 0) {
    cli__top_help(&b);
    buf_putc(&b, '\n');
    if (help) {
      write_buf(ctx->out, &b);
      return 0;
    }
    write_buf(ctx->err, &b);
    return 127;
  }

  /* Longest prefix over the words that follow: "kv get x" finds "kv get". */
  const struct cli__command *c = NULL;
  int used = 0;
  struct buf key = BUF_INIT;
  for (int i = sub; i < argc; i++) {
    if (i > sub) buf_putc(&key, ' ');
    buf_puts(&key, argv[i]);
    const struct cli__command *f = find(key.data);
    if (f) {
      c = f;
      used = i - sub + 1;
    }
  }
  buf_free(&key);
  if (!c) {
    cli__top_help(&b);
    buf_putc(&b, '\n');
    write_buf(ctx->err, &b);
    return 127;
  }
  if (help) {
    command_help(c, &b);
    write_buf(ctx->out, &b);
    return 0;
  }
  if (nflags > 0) {
    buf_puts(&b, "Invalid flags before the subcommand. If these flags are for\n"
                 "the subcommand, please put them after the subcommand.\n\n");
    command_help(c, &b);
    write_buf(ctx->err, &b);
    return 1;
  }
  int code = c->run(ctx, argc - sub - used, argv + sub + used);
  if (code == CLI__RUN_HELP) {
    command_help(c, &b);
    write_buf(ctx->err, &b);
    return 1;
  }
  return code;
}

static const char *real_getenv(void *arg, const char *name)
{
  (void)arg;
  return getenv(name);
}

static void ctx_default(struct cli__ctx *ctx)
{
  ctx->out = stdout;
  ctx->err = stderr;
  ctx->in = stdin;
  ctx->getenv = real_getenv;
  ctx->getenv_arg = NULL;
  ctx->connect_timeout_ms = 30 * 1000;
  /* Longer than the longest blocking query (10 min plus jitter) a command may make. */
  ctx->io_timeout_ms = 11 * 60 * 1000;
}

int cli_main(int argc, char **argv)
{
  struct cli__ctx ctx;
  ctx_default(&ctx);
  int code = cli__dispatch(&ctx, argc, argv);
  if (fflush(stdout) != 0 && code == 0) code = 1;
  return code;
}

void cli_usage(void)
{
  struct buf b = BUF_INIT;
  cli__top_help(&b);
  buf_putc(&b, '\n');
  write_buf(stdout, &b);
}
