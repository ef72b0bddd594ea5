/* Runs one migration statement while watching who blocks it. A DDL statement
 * waiting for its lock queues every later query on the table behind it, so
 * migrations run under lock_timeout; when the timeout fires, the user needs
 * to know which sessions were in the way. While a statement waits, a second
 * connection (opened only then) asks pg_blocking_pids() and remembers the
 * blockers and their queries. An interrupt cancels the statement. */
#ifndef SG_STAGES_EXEC_H
#define SG_STAGES_EXEC_H

#include <libpq-fe.h>

#include "common/error.h"

typedef struct sg_exec_watch {
    const char *dsn;     /* where the watching connection goes (the same database) */
    PGconn *monitor;     /* opened when first needed, closed by sg_exec_watch_clear */
    char *blockers;      /* JSON array of the last blocking sessions seen, or NULL */
    char *blockers_text; /* the same for people, one line per session, or NULL */
} sg_exec_watch;

/* Runs sql (one statement) on conn. *out (may be NULL when the caller wants
 * no rows) gets the result to PQclear. A failure fills err, with its SQLSTATE
 * in err->sqlstate; the watch keeps what it saw. watch may be NULL. */
int sg_exec_run(PGresult **out, PGconn *conn, const char *sql, sg_exec_watch *watch, sg_error *err);

/* Forgets the blockers seen so far (before a new attempt). */
void sg_exec_watch_reset(sg_exec_watch *watch);

/* Closes the watching connection and frees what it saw. */
void sg_exec_watch_clear(sg_exec_watch *watch);

#endif
