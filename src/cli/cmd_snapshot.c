/* cmd_snapshot.c -- `concord snapshot` and its subcommands (Consul's command/snapshot/):
 *
 *   snapshot save [-stale] FILE   GET /v1/snapshot into FILE.unverified, read it back and
 *                                 check it (archive/archive.h), then rename it to FILE
 *   snapshot restore FILE         PUT /v1/snapshot with the file's bytes
 *   snapshot inspect FILE         the archive's metadata, as Consul's table (no agent needed)
 *
 * Exit codes and messages are Consul's: 1 for a missing or extra FILE argument, a failed
 * request or a bad file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "archive/archive.h"
#include "cli/internal.h"
#include "lib/file.h"

/* Archives we read from disk or from the agent: far above what a restore takes, so that an
 * oversized one is still inspected and its size reported by the agent. */
#define SNAPSHOT_FILE_MAX ((size_t)256 << 20)

/* ---- the parent ---- */

static const char parent_usage[] =
    "Usage: concord snapshot <subcommand> [options] [args]\n"
    "\n"
    "  Saves, restores and inspects snapshots of the servers' state: key/value entries,\n"
    "  the service catalog, sessions and prepared queries. A snapshot is a gzipped tar\n"
    "  as Consul's (meta.json, state.bin, SHA256SUMS); state.bin is Concord's own store\n"
    "  encoding, so snapshots move between Concord clusters, not to or from Consul.\n"
    "\n"
    "  Create a snapshot:\n"
    "\n"
    "      $ concord snapshot save backup.snap\n"
    "\n"
    "  Restore a snapshot:\n"
    "\n"
    "      $ concord snapshot restore backup.snap\n"
    "\n"
    "  Inspect a snapshot:\n"
    "\n"
    "      $ concord snapshot inspect backup.snap\n"
    "\n"
    "  For more examples, ask for subcommand help or view the documentation.\n";

static void parent_help(struct buf *out) { cli__flags_usage(parent_usage, NULL, out); }

static int parent_run(struct cli__ctx *ctx, int argc, char **argv)
{
  (void)ctx;
  (void)argc;
  (void)argv;
  return CLI__RUN_HELP;
}

const struct cli__command cli__cmd_snapshot = {
    .name = "snapshot",
    .synopsis = "Saves, restores and inspects snapshots of Concord server state",
    .run = parent_run,
    .help = parent_help,
};

/* ---- shared ---- */

struct opts {
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o, bool client, bool server)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  if (client) cli__http_client_flags(fs, &o->http);
  if (server) cli__http_server_flags(fs, &o->http);
}

/* Parses the flags and the one FILE argument. Returns the file, or NULL after printing
 * Consul's message (*code set to the exit code). */
static const char *parse(struct cli__ctx *ctx, struct cli__flagset *fs, int argc, char **argv,
                         int *code)
{
  int rest = 0;
  *code = 1;
  if (cli__flags_parse(fs, argc, argv, &rest, ctx->err) != 0) return NULL;
  if (rest == argc) {
    cli__error(ctx, "Missing FILE argument");
    return NULL;
  }
  if (argc - rest > 1) {
    cli__error(ctx, "Too many arguments (expected 1, got %d)", argc - rest);
    return NULL;
  }
  *code = 0;
  return argv[rest];
}

/* ---- save ---- */

static const char save_usage[] =
    "Usage: concord snapshot save [options] FILE\n"
    "\n"
    "  Retrieves an atomic, point-in-time snapshot of the state of the Concord servers,\n"
    "  which includes key/value entries, the service catalog, prepared queries and\n"
    "  sessions. The file is written next to FILE first, read back and verified, and\n"
    "  only then renamed to FILE.\n"
    "\n"
    "  To create a snapshot from the leader server and save it to \"backup.snap\":\n"
    "\n"
    "    $ concord snapshot save backup.snap\n"
    "\n"
    "  To create a potentially stale snapshot from any available server (useful if no\n"
    "  leader is available):\n"
    "\n"
    "    $ concord snapshot save -stale backup.snap\n";

static void save_help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o, true, true);
  cli__flags_usage(save_usage, &fs, out);
}

static int save_run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o, true, true);
  int code;
  const char *file = parse(ctx, &fs, argc, argv, &code);
  if (!file) return code;

  char err[CLI__ERRLEN];
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    return 1;
  }
  c.max_body = SNAPSHOT_FILE_MAX;
  struct cli__query q;
  cli__query_init(&q);
  if (c.stale) cli__query_set(&q, "stale", "");
  struct cli__http_resp r = {0};
  struct buf tmp = BUF_INIT, back = BUF_INIT, state = BUF_INIT;
  buf_printf(&tmp, "%s.unverified", file);
  code = 1;
  if (cli__client_call(ctx, &c, "GET", "/v1/snapshot", &q, NULL, 0, false, &r, err,
                       sizeof(err)) != 0) {
    cli__error(ctx, "Error saving snapshot: %s", err);
  } else if (r.status != 200) {
    cli__status_error(&r, err, sizeof(err));
    cli__error(ctx, "Error saving snapshot: %s", err);
  } else {
    int e = file_write_all(tmp.data, r.body.data, r.body.len, true);
    struct archive_meta meta;
    if (e) {
      cli__error(ctx, "Error writing unverified snapshot file: open %s: %s", tmp.data,
                 strerror(e));
    } else if (cli__read_file(tmp.data, SNAPSHOT_FILE_MAX, &back, err, sizeof(err)) != 0) {
      cli__error(ctx, "Error opening snapshot file for verify: %s", err);
    } else if (archive_read(back.data, back.len, SNAPSHOT_FILE_MAX, &meta, &state, err,
                            sizeof(err)) != 0) {
      cli__error(ctx, "Error verifying snapshot file: %s", err);
    } else if (rename(tmp.data, file) != 0) {
      cli__error(ctx, "Error renaming \"%s\" to \"%s\": %s", tmp.data, file, strerror(errno));
    } else {
      cli__info(ctx, "Saved and verified snapshot to index %llu", (unsigned long long)r.index);
      code = 0;
    }
    if (code != 0) unlink(tmp.data);
  }
  buf_free(&tmp);
  buf_free(&back);
  buf_free(&state);
  cli__http_resp_free(&r);
  cli__query_free(&q);
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_snapshot_save = {
    .name = "snapshot save",
    .synopsis = "Saves snapshot of Concord server state",
    .run = save_run,
    .help = save_help,
};

/* ---- restore ---- */

static const char restore_usage[] =
    "Usage: concord snapshot restore [options] FILE\n"
    "\n"
    "  Restores an atomic, point-in-time snapshot of the state of the Concord servers,\n"
    "  which includes key/value entries, the service catalog, prepared queries and\n"
    "  sessions. Everything in the servers' state is replaced by the snapshot's, on\n"
    "  every server, through Raft. The archive is checked first: a damaged or foreign\n"
    "  file changes nothing.\n"
    "\n"
    "  Lock-delays are not part of a snapshot, and the session TTL timers restart.\n"
    "\n"
    "  To restore a snapshot from the file \"backup.snap\":\n"
    "\n"
    "    $ concord snapshot restore backup.snap\n";

static void restore_help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o, true, false);
  cli__flags_usage(restore_usage, &fs, out);
}

static int restore_run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o, true, false);
  int code;
  const char *file = parse(ctx, &fs, argc, argv, &code);
  if (!file) return code;

  char err[CLI__ERRLEN];
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    return 1;
  }
  struct buf data = BUF_INIT;
  struct cli__http_resp r = {0};
  code = 1;
  if (cli__read_file(file, SNAPSHOT_FILE_MAX, &data, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error opening snapshot file: %s", err);
  } else if (cli__client_call(ctx, &c, "PUT", "/v1/snapshot", NULL, data.data, data.len, true,
                              &r, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error restoring snapshot: %s", err);
  } else if (r.status != 200) {
    cli__status_error(&r, err, sizeof(err));
    cli__error(ctx, "Error restoring snapshot: %s", err);
  } else {
    cli__info(ctx, "Restored snapshot");
    code = 0;
  }
  buf_free(&data);
  cli__http_resp_free(&r);
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_snapshot_restore = {
    .name = "snapshot restore",
    .synopsis = "Restores snapshot of Concord server state",
    .run = restore_run,
    .help = restore_help,
};

/* ---- inspect ---- */

static const char inspect_usage[] =
    "Usage: concord snapshot inspect [options] FILE\n"
    "\n"
    "  Displays information about a snapshot file on disk: its ID, size, index, term\n"
    "  and format version. The archive is verified as a restore would.\n"
    "\n"
    "  To inspect the file \"backup.snap\":\n"
    "\n"
    "    $ concord snapshot inspect backup.snap\n";

static void inspect_help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o, false, false);
  cli__flags_usage(inspect_usage, &fs, out);
}

static int inspect_run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o, false, false);
  int code;
  const char *file = parse(ctx, &fs, argc, argv, &code);
  if (!file) return code;

  char err[CLI__ERRLEN];
  struct buf data = BUF_INIT, state = BUF_INIT;
  struct archive_meta meta;
  code = 1;
  if (cli__read_file(file, SNAPSHOT_FILE_MAX, &data, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error opening snapshot file: %s", err);
  } else if (archive_read(data.data, data.len, SNAPSHOT_FILE_MAX, &meta, &state, err,
                          sizeof(err)) != 0) {
    cli__error(ctx, "Error extracting snapshot data: %s", err);
  } else {
    /* Consul's tabwriter layout: a leading space, labels padded to 13 columns */
    cli__info(ctx,
              " %-13s%s\n %-13s%llu\n %-13s%llu\n %-13s%llu\n %-13s%llu", "ID", meta.id,
              "Size", (unsigned long long)meta.size, "Index", (unsigned long long)meta.index,
              "Term", (unsigned long long)meta.term, "Version",
              (unsigned long long)meta.version);
    code = 0;
  }
  buf_free(&data);
  buf_free(&state);
  return code;
}

const struct cli__command cli__cmd_snapshot_inspect = {
    .name = "snapshot inspect",
    .synopsis = "Displays information about a Concord snapshot file",
    .run = inspect_run,
    .help = inspect_help,
};
