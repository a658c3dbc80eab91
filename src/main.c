/* main.c -- the single `concord` binary: `concord agent ...` runs an agent, every other
 * subcommand is a client of the HTTP API (cli/). */
#include <signal.h>
#include <string.h>

#include "agent/agent.h"
#include "cli/cli.h"

int main(int argc, char **argv)
{
  /* A peer that hangs up must surface as EPIPE on the write, not kill the process (libraft's
   * transport and our HTTP server both write to sockets that can close under them). */
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && strcmp(argv[1], "agent") == 0) return agent_main(argc - 1, argv + 1);
  /* Everything else, including no arguments, -h and -v, is the CLI's to answer as Consul's
   * mitchellh/cli does (help on stderr and 127 for no command). */
  return cli_main(argc - 1, argv + 1);
}
