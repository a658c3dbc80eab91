/* main.c -- the single `concord` binary: `concord agent ...` runs an agent, every other
 * subcommand is a client of the HTTP API (cli/). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "cli/cli.h"

int main(int argc, char **argv)
{
  /* A peer that hangs up must surface as EPIPE on the write, not kill the process (libraft's
   * transport and our HTTP server both write to sockets that can close under them). */
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "-help") == 0 || strcmp(argv[1], "help") == 0) {
    cli_usage();
    return argc < 2 ? 1 : 0;
  }
  if (strcmp(argv[1], "agent") == 0) return agent_main(argc - 1, argv + 1);
  return cli_main(argc - 1, argv + 1);
}
