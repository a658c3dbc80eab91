/* placeholder until the CLI lands */
#include <stdio.h>
#include "cli/cli.h"
void cli_usage(void) { puts("usage: concord <command> [args]"); }
int cli_main(int argc, char **argv) { (void)argc; fprintf(stderr, "unknown command %s\n", argv[0]); return 127; }
