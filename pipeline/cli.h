/* The command line: a table of subcommands, each with its option table. */
#ifndef SG_PIPELINE_CLI_H
#define SG_PIPELINE_CLI_H

/* Runs `shardgate ARGS...` and returns the process exit status. */
int sg_cli_main(int argc, char **argv);

#endif
