/* Test harness: concurrent writers, with real pgbench, against a database
 * of the test server.
 *
 * pgbench prints no count when a signal stops it, and counts script runs
 * rather than commits, so the load counts commits itself: each transaction
 * of the script bumps its client's row of the table sgt_load_commits with
 * SGT_LOAD_COUNT before its COMMIT, and sgt_load_commits() sums them. One
 * load at a time per database: starting one resets the counter. Failures
 * end the test with pgbench's output. */
#ifndef SG_TESTS_HARNESS_LOAD_H
#define SG_TESTS_HARNESS_LOAD_H

typedef struct sgt_load sgt_load;

/* The statement a script puts in each of its transactions, before COMMIT.
 * One row per client, so clients never wait for each other on it. */
#define SGT_LOAD_COUNT "UPDATE sgt_load_commits SET n = n + 1 WHERE client = :client_id;\n"

/* Starts `pgbench -n -M simple -c clients -j clients -T 600 -f SCRIPT` (from
 * sgt_pg_bindir()) against conninfo, its host, port, user and dbname passed
 * as -h, -p, -U and the database name, with script written to a temporary
 * file. Creates or resets sgt_load_commits first; returns once all clients
 * are connected. -T 600 is only an upper bound: stop it with
 * sgt_load_stop(). pgbench dies with the process that started it. */
sgt_load *sgt_load_start(const char *conninfo, const char *script, int clients);

/* Transactions the load committed so far, by its counter. */
long sgt_load_commits(const sgt_load *load);

/* Polls until the load has committed more than `than` transactions, so a
 * test knows writes went through at a given point; fails the test if
 * pgbench ends or reports an error first, or after a minute without one. */
void sgt_load_wait_beyond(sgt_load *load, long than);

/* Stops pgbench (SIGINT; SIGKILL if it has not ended 10 s later), waits
 * until its sessions are gone from the server, asserts that no client ended
 * with an error, and returns how many transactions the load committed.
 * Frees load; NULL is a no-op that returns 0. */
long sgt_load_stop(sgt_load *load);

#endif
