/* What the command-line modules share: the options every command takes,
 * argument parsing and the JSON result printer. Each cli_*.c file holds
 * the commands of one area; cli.c holds the command table. */
#ifndef SG_PIPELINE_CLI_IMPL_H
#define SG_PIPELINE_CLI_IMPL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "common/options.h"

/* Options every command takes. */
typedef struct common_settings {
    bool json;
    const char *log_format;
    bool verbose;
    bool quiet;
} common_settings;

#define COMMON_OPTIONS(type)                                                                       \
    {"json",                                                                                       \
     SG_OPT_FLAG,                                                                                  \
     offsetof(type, common.json),                                                                  \
     NULL,                                                                                         \
     "print the result as one JSON document",                                                      \
     0,                                                                                            \
     0},                                                                                           \
        {"log-format",                                                                             \
         SG_OPT_STRING,                                                                            \
         offsetof(type, common.log_format),                                                        \
         "text|json",                                                                              \
         "format of log lines on stderr",                                                          \
         0,                                                                                        \
         0},                                                                                       \
        {"verbose", SG_OPT_FLAG, offsetof(type, common.verbose), NULL, "log debug detail", 0, 0},  \
    {                                                                                              \
        "quiet", SG_OPT_FLAG, offsetof(type, common.quiet), NULL, "log warnings and errors only",  \
            0, 0                                                                                   \
    }

/* Parses argv for a command; returns 1 when --help was printed. */
int sg_cli_parse(void *settings, const sg_option *table, int argc, char **argv, const char *usage,
                 sg_strlist *positional, const common_settings *common, sg_error *err);

/* SG_E_USAGE unless there are exactly n positional arguments. */
int sg_cli_expect_positionals(const sg_strlist *positional, size_t n, const char *what,
                              sg_error *err);

/* Prints a JSON result on stdout; the caller's reference is consumed. */
int sg_cli_print_json(json_t *doc, sg_error *err);

/* The migration commands (cli_migrate.c). */
int sg_cli_lint(int argc, char **argv, sg_error *err);
int sg_cli_migrate(int argc, char **argv, sg_error *err);
int sg_cli_revert(int argc, char **argv, sg_error *err);
int sg_cli_finalize(int argc, char **argv, sg_error *err);
int sg_cli_status(int argc, char **argv, sg_error *err);

/* The pipeline commands (cli_run.c). */
int sg_cli_plan(int argc, char **argv, sg_error *err);
int sg_cli_run(int argc, char **argv, sg_error *err);
int sg_cli_resume(int argc, char **argv, sg_error *err);
int sg_cli_rollback(int argc, char **argv, sg_error *err);

/* `status --config`: every shard of a pipeline's fleet, from its registry,
 * the store and the newest run's journal. */
int sg_cli_fleet_status(const char *config, bool json, bool check, sg_error *err);

#endif
