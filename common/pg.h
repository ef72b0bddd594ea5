/* PostgreSQL helpers over libpq: connections that name what failed, checked
 * statements, the pinned settings that make COPY text canonical, and a COPY
 * reader that digests a table or a column projection. */
#ifndef SG_COMMON_PG_H
#define SG_COMMON_PG_H

#include <libpq-fe.h>
#include <stddef.h>

#include "common/digest.h"
#include "common/error.h"

/* The settings under which COPY text is canonical (DESIGN.md, row digests).
 * Snapshot, restore and every digest run under exactly these. */
typedef struct sg_pg_setting {
    const char *name;
    const char *value;
} sg_pg_setting;
extern const sg_pg_setting sg_pg_pinned_settings[];
extern const size_t sg_pg_pinned_settings_count;

/* Connects with a libpq connection string or URI (environment variables and
 * the password file work as usual), with sg_pg_session_options. `what` names the connection in
 * errors, e.g. "source database". The DSN in messages never shows a password. */
int sg_pg_connect(PGconn **out, const char *dsn, const char *what, sg_error *err);

/* The server options every shardgate session starts with (no statement or
 * idle-in-transaction timeout, row security off, so a table it would filter
 * is an error rather than a partial copy), after the dsn's own options or
 * PGOPTIONS: for sg_pg_connect, and for pg_dump and pg_restore as their
 * PGOPTIONS. NULL when out of memory. */
char *sg_pg_session_options(const char *dsn);

/* What pg_dump or pg_restore needs to reach the same database as dsn: a
 * --dbname argument without the password, and an environment that carries
 * the password (PGPASSWORD) and the session options plus extra_options
 * (PGOPTIONS). */
typedef struct sg_pg_child {
    char *dbname_arg;
    char **env;
    char *options_var;
    char *password_var;
} sg_pg_child;

int sg_pg_child_prepare(sg_pg_child *out, const char *dsn, const char *extra_options,
                        sg_error *err);
void sg_pg_child_free(sg_pg_child *child);

/* A copy of dsn with any password replaced by *****, for messages; NULL
 * when out of memory. */
char *sg_pg_redact_dsn(const char *dsn);

/* Fills err from a failed result (message, SQLSTATE, detail, statement,
 * hint); returns SG_E_DB. res may be NULL (then the connection's message). */
int sg_pg_result_error(PGresult *res, PGconn *conn, const char *sql, sg_error *err);

/* Runs SQL that returns no rows (or whose rows are ignored). */
int sg_pg_exec(PGconn *conn, const char *sql, sg_error *err);

/* Runs a query; *out must be PQclear'ed by the caller. */
int sg_pg_query(PGresult **out, PGconn *conn, const char *sql, sg_error *err);

/* Runs a parameterised query (text parameters). */
int sg_pg_query_params(PGresult **out, PGconn *conn, const char *sql, int nparams,
                       const char *const *params, sg_error *err);

/* The same, for a statement whose rows (if any) are not wanted. */
int sg_pg_exec_params(PGconn *conn, const char *sql, int nparams, const char *const *params,
                      sg_error *err);

/* SETs every pinned setting on the session. */
int sg_pg_pin_settings(PGconn *conn, sg_error *err);

/* "schema"."name" quoted with libpq ("name" alone when schema is NULL);
 * NULL on allocation failure; free(). */
char *sg_pg_qualified_name(PGconn *conn, const char *schema, const char *name);

/* Comma-separated quoted column names ("" for none); NULL on failure. */
char *sg_pg_column_list(PGconn *conn, const char *const *names, size_t count);

/* Called for each block of COPY output (whole rows, possibly several). */
typedef int (*sg_pg_copy_fn)(void *ctx, const char *data, size_t len, sg_error *err);

/* Runs a COPY ... TO STDOUT statement and feeds every row to fn. */
int sg_pg_copy_out(PGconn *conn, const char *copy_sql, sg_pg_copy_fn fn, void *ctx, sg_error *err);

/* Digests the listed columns of a table (its own rows, not its children's) as
 * COPY text: the same code for a live table, a restored table or any column
 * projection. */
int sg_pg_digest_table(PGconn *conn, const char *qualified_table, const char *column_list,
                       sg_digest *out, sg_error *err);

/* Digests the rows of a query (a SELECT), as COPY text. */
int sg_pg_digest_query(PGconn *conn, const char *select_sql, sg_digest *out, sg_error *err);

#endif
