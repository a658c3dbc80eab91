/* agent.h -- `concord agent`: parses the agent's flags and config files, then runs the agent
 * (HTTP API, Raft-backed state on servers) on one libuv loop until SIGINT/SIGTERM. */
#ifndef CONCORD_AGENT_AGENT_H
#define CONCORD_AGENT_AGENT_H

/* argv[0] is "agent". Returns the process exit code. */
int agent_main(int argc, char **argv);

#endif
