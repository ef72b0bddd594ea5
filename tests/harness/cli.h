/* Test harness: run the shardgate binary under test and check how it ends. */
#ifndef SG_TESTS_HARNESS_CLI_H
#define SG_TESTS_HARNESS_CLI_H

/* Inside a test: runs shardgate argv (argv[0] "shardgate"), asserts its exit
 * status, returns its stdout (to free). */
char *sgt_shardgate(int want_status, const char *const argv[]);

/* Inside a test: runs shardgate, asserts it exits with want_status and that
 * stderr contains every string of the NULL-terminated `want` list; returns
 * stderr (to free). */
char *sgt_shardgate_fails(int want_status, const char *const argv[], const char *const want[]);

/* Outside a test (main, fixtures), where Check cannot report: runs shardgate
 * and exits the process with its stderr if it fails; returns stdout. */
char *sgt_shardgate_or_exit(const char *const argv[]);

/* Outside a test: runs `shardgate keygen --out DIR/NAME` (exiting on
 * failure) and fills in the paths of DIR/NAME.key and DIR/NAME.pub. */
void sgt_keygen_or_exit(const char *dir, const char *name, char key[512], char pub[512]);

/* Runs a shell command line (setup steps: cp, truncate); exits the process
 * on failure. */
void sgt_sh(const char *command_line);

/* Outside a test: runs SQL (several statements allowed) or exits the process
 * with the server's message. */
void sgt_sql_or_exit(const char *conninfo, const char *sql);

#endif
