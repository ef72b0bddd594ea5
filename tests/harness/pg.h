/* Test harness: a private PostgreSQL 15 server for one test process, on
 * 127.0.0.1 and a free port, with trust authentication and fsync off.
 *
 * Start it once per process, in main() or an unchecked fixture, and give each
 * test its own database with sgt_pg_create_db(): Check forks a process per
 * test, and a server started inside a test lives only as long as that test.
 * The server is stopped and its directory removed at exit, and it dies with
 * the process that started it. Failures end the test (or the process) with
 * the server's message; these helpers never return an error. */
#ifndef SG_TESTS_HARNESS_PG_H
#define SG_TESTS_HARNESS_PG_H

typedef struct sgt_pg_server sgt_pg_server;

/* Runs initdb in a new temporary directory and starts a server on it; returns
 * once it accepts connections. Binaries come from $SG_TEST_PG_BINDIR, else
 * `pg_config --bindir` if that is version 15, else /usr/lib/postgresql/15/bin.
 * As root, the server runs as the `postgres` system user. Call it from the
 * main thread: the server is tied to the calling thread's life. */
sgt_pg_server *sgt_pg_start(void);

/* A streaming standby of primary (pg_basebackup -R), with settings (lines
 * of postgresql.conf, e.g. "recovery_min_apply_delay = '2s'") added, started
 * and stopped like any server of the harness. */
sgt_pg_server *sgt_pg_start_standby(const sgt_pg_server *primary, const char *settings);

/* Where the server binaries are taken from, as described above; free() it. */
char *sgt_pg_bindir(void);

/* Fast shutdown, then removes the server's directory. Only the process that
 * started the server stops it; in a forked test process this does nothing.
 * NULL is a no-op. */
void sgt_pg_stop(sgt_pg_server *server);

const char *sgt_pg_host(const sgt_pg_server *server);
int sgt_pg_port(const sgt_pg_server *server);

/* The server's temporary directory (data/ and server.log are in it). */
const char *sgt_pg_dir(const sgt_pg_server *server);

/* libpq conninfo for an existing database on the server; free() it. */
char *sgt_pg_conninfo(const sgt_pg_server *server, const char *dbname);

/* Creates an empty database (from template0) named after prefix and unique
 * on the server; returns its conninfo "host=... port=... user=postgres
 * dbname=...", to free(). */
char *sgt_pg_create_db(sgt_pg_server *server, const char *prefix);

/* Runs one or more SQL statements; a failure aborts the test with the
 * server's message. */
void sgt_pg_exec(const char *conninfo, const char *sql);

/* First column of the first row as a string to free(); NULL when there is no
 * row or the value is NULL. */
char *sgt_pg_value(const char *conninfo, const char *sql);

#endif
