/* cli.h -- every `concord` subcommand except `agent`: HTTP API clients with Consul's flags,
 * output formats and exit codes. */
#ifndef CONCORD_CLI_CLI_H
#define CONCORD_CLI_CLI_H

/* argv[0] is the subcommand name ("kv", "members", ...). Returns the process exit code;
 * 127 when the command is unknown (after printing the usage). */
int cli_main(int argc, char **argv);
/* Prints `concord --help`. */
void cli_usage(void);

#endif
