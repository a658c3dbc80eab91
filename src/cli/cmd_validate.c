/* cmd_validate.c -- `concord validate FILE_OR_DIRECTORY...`: loads the files exactly as
 * `concord agent -config-file F -config-dir D ...` would (config_load, the agent's own loader)
 * and says "Configuration is valid!" or "Config validation failed: <why>" with exit 1.
 *
 * Like Consul's validate (which builds with no dev mode), this is a check of the complete set
 * of files the agent will be given, not of fragments: a set without data_dir fails as the agent
 * would, and a data_dir that exists but is not a directory fails as Consul's builder makes it
 * fail. Warnings about keys Concord does not act on yet are logged to stderr. Service
 * definitions ("service", "services") are checked too, as `services register` reads them. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cli/internal.h"
#include "config/config.h"
#include "lib/log.h"

struct opts {
  const char *format;
  bool quiet;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_string(fs, "config-format", &o->format, "",
                   "Reads every file in this format whatever its extension: 'hcl' or 'json'. "
                   "Concord reads JSON only, so 'hcl' accepts only files that are also "
                   "JSON.");
  cli__flag_bool(fs, "quiet", &o->quiet, "Prints nothing when the configuration is valid.");
}

static const char usage[] =
    "Usage: concord validate [options] FILE_OR_DIRECTORY...\n"
    "\n"
    "  Checks configuration files the way \"concord agent\" reads them, without\n"
    "  starting an agent: each file, and each directory's *.json files, is parsed and\n"
    "  the result validated as the agent would validate it. Give it the complete set of\n"
    "  files the agent will load, since fragments miss settings the agent requires.\n"
    "\n"
    "  Exits 0 when the configuration is valid and 1 when it is not.\n";

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
  char err[CLI__ERRLEN];
  /* Consul prints the flag package's error a second time. */
  if (cli__flags_parse_msg(&fs, argc, argv, &rest, ctx->err, err, sizeof(err)) != 0) {
    cli__error(ctx, "%s", err);
    return 1;
  }
  if (argc - rest < 1) {
    cli__error(ctx, "Must specify at least one config file or directory");
    return 1;
  }
  if (o.format[0] && strcmp(o.format, "json") != 0 && strcmp(o.format, "hcl") != 0) {
    cli__error(ctx, "-config-format must be either 'hcl' or 'json");
    return 1;
  }
  struct config cfg;
  /* -quiet means no output at all on success, warnings included. */
  enum log_level lvl = log_get_level();
  if (o.quiet) log_set_level(LOG_ERROR);
  int rc = cli__config_check(argv + rest, argc - rest, false, &cfg, err, sizeof(err));
  log_set_level(lvl);
  if (rc == 0 && cfg.data_dir) {
    struct stat st;
    if (stat(cfg.data_dir, &st) != 0 && errno != ENOENT) {
      char path[CLI__ERRLEN / 2];
      snprintf(path, sizeof(path), "%s", cfg.data_dir);
      snprintf(err, sizeof(err), "Error getting info on data_dir: stat %s: %s", path,
               strerror(errno));
      rc = -1;
    } else if (stat(cfg.data_dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
      struct buf q = BUF_INIT;
      cli__go_quote(&q, cfg.data_dir);
      snprintf(err, sizeof(err), "data_dir %s is not a directory", q.data);
      buf_free(&q);
      rc = -1;
    }
  }
  config_free(&cfg);
  if (rc == 0) {
    /* The agent does not read service definitions itself yet; check them as `services
     * register` reads them, so a bad one is caught before it is deployed. */
    json_t *defs = NULL;
    rc = cli__svcdefs_load(argv + rest, argc - rest, &defs, err, sizeof(err));
    json_decref(defs);
  }
  if (rc != 0) {
    if (strcmp(o.format, "hcl") == 0 && strstr(err, "invalid JSON"))
      cli__error(ctx, "Config validation failed: %s (Concord reads config files as JSON only)",
                 err);
    else
      cli__error(ctx, "Config validation failed: %s", err);
    return 1;
  }
  if (!o.quiet) cli__info(ctx, "Configuration is valid!");
  return 0;
}

const struct cli__command cli__cmd_validate = {
    .name = "validate",
    .synopsis = "Validate config files/directories",
    .run = run,
    .help = help,
};
