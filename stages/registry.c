#include "stages/registry.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/pg.h"

/* The advisory lock's two keys: "shar" and the migration lock's number.
 * pg_locks shows a two-key lock with objsubid 2. */
#define LOCK_CLASS "1936220530"
#define LOCK_OBJECT "1"

static const char *const status_names[] = {"applying", "applied", "failed", "reverting",
                                           "revert-failed"};

const char *sg_registry_status_name(sg_registry_status status)
{
    return status_names[status];
}

static int parse_status(sg_registry_status *out, const char *text)
{
    for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++) {
        if (strcmp(status_names[i], text) == 0) {
            *out = (sg_registry_status)i;
            return 0;
        }
    }
    return -1;
}

/* Layout, format 1. Statuses are checked by the server too, so that a hand
 * edit cannot leave a row the runner misreads. */
static const char create_sql[] =
    "CREATE SCHEMA IF NOT EXISTS shardgate;"
    "CREATE TABLE IF NOT EXISTS shardgate.meta ("
    "  key text PRIMARY KEY,"
    "  value text NOT NULL);"
    "CREATE TABLE IF NOT EXISTS shardgate.migrations ("
    "  version bigint PRIMARY KEY,"
    "  name text NOT NULL,"
    "  checksum text NOT NULL,"
    "  mode text NOT NULL,"
    "  status text NOT NULL CHECK (status IN"
    "    ('applying', 'applied', 'failed', 'reverting', 'revert-failed')),"
    "  statements_done integer NOT NULL DEFAULT 0,"
    "  done_checksum text,"
    "  statement_started integer NOT NULL DEFAULT 0,"
    "  started_at timestamptz NOT NULL,"
    "  finished_at timestamptz,"
    "  duration_ms bigint,"
    "  applied_by_host text,"
    "  run_id text,"
    "  snapshot_id text,"
    "  schema_fingerprint text,"
    "  schema_description text);"
    "CREATE TABLE IF NOT EXISTS shardgate.events ("
    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    "  version bigint,"
    "  action text NOT NULL,"
    "  host text,"
    "  run_id text,"
    "  detail jsonb);"
    "INSERT INTO shardgate.meta VALUES ('format', '1') ON CONFLICT (key) DO NOTHING";

/* The blue-green engine's state, one row per change (stages/bluegreen.h),
 * and what its sync triggers could not copy. Added to format 1 without a
 * new format: an older runner never reads them. The triggers run as the
 * table's writers, through SECURITY DEFINER functions, so only the runner's
 * role writes here. */
static const char bluegreen_sql[] =
    "CREATE TABLE IF NOT EXISTS shardgate.bluegreen ("
    "  version bigint PRIMARY KEY,"
    "  direction text NOT NULL CHECK (direction IN ('up', 'down')),"
    "  table_schema text NOT NULL,"
    "  table_name text NOT NULL,"
    "  step text NOT NULL CHECK (step IN ('prepared', 'synced', 'backfilled', 'indexed',"
    "    'verified', 'cut-over', 'swapped-back', 'finalized')),"
    "  index_definitions text[],"
    "  foreign_keys text[],"
    "  last_key text[],"
    "  rows_copied bigint NOT NULL DEFAULT 0,"
    "  lock_ms double precision,"
    "  started_at timestamptz NOT NULL DEFAULT now(),"
    "  cutover_at timestamptz,"
    "  keep_until timestamptz,"
    "  finalized_at timestamptz,"
    "  updated_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE IF NOT EXISTS shardgate.bluegreen_errors ("
    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  version bigint NOT NULL,"
    "  direction text NOT NULL CHECK (direction IN ('forward', 'back')),"
    "  at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    "  sqlstate text,"
    "  error text NOT NULL)";

int sg_registry_lock(PGconn *conn, sg_error *err)
{
    PGresult *res = NULL;
    int rc = sg_pg_query(
        &res, conn, "SELECT pg_catalog.pg_try_advisory_lock(" LOCK_CLASS ", " LOCK_OBJECT ")", err);
    if (rc < 0)
        return rc;
    bool got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (got)
        return 0;
    /* Who holds it: the lock may be released between the two queries, in
     * which case the message says so rather than naming nobody. */
    rc = sg_pg_query(
        &res, conn,
        "SELECT a.pid, coalesce(a.application_name, ''),"
        " coalesce(host(a.client_addr), 'local socket'),"
        " to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
        " coalesce(a.state, '')"
        " FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a USING (pid)"
        " WHERE l.locktype = 'advisory' AND l.classid = " LOCK_CLASS " AND l.objid = " LOCK_OBJECT
        " AND l.objsubid = 2 AND l.granted",
        err);
    if (rc < 0)
        return rc;
    if (PQntuples(res) == 0) {
        sg_error_set(err, SG_E_BUSY, "the migration lock is held by another session");
    } else {
        sg_error_set(err, SG_E_BUSY,
                     "the migration lock is held by another session: pid %s, application_name "
                     "\"%s\"",
                     PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
        sg_error_detail(err, "client %s, connected since %s, state %s", PQgetvalue(res, 0, 2),
                        PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4));
    }
    sg_error_hint(err, "another shardgate run is migrating this database; wait for it to finish, "
                       "or end that session if it is stuck (a killed run's last statement may "
                       "still be running there)");
    PQclear(res);
    return SG_E_BUSY;
}

int sg_registry_unlock(PGconn *conn, sg_error *err)
{
    return sg_pg_exec(conn, "SELECT pg_catalog.pg_advisory_unlock(" LOCK_CLASS ", " LOCK_OBJECT ")",
                      err);
}

static int check_format(PGconn *conn, sg_error *err)
{
    PGresult *res = NULL;
    int rc = sg_pg_query(&res, conn, "SELECT value FROM shardgate.meta WHERE key = 'format'", err);
    if (rc < 0)
        return rc;
    long format = PQntuples(res) ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    if (format != SG_REGISTRY_FORMAT) {
        sg_error_set(err, SG_E_FORMAT, "the registry (schema shardgate) has format %s, not %d",
                     PQntuples(res) ? PQgetvalue(res, 0, 0) : "(none)", SG_REGISTRY_FORMAT);
        sg_error_hint(err, format > SG_REGISTRY_FORMAT
                               ? "a newer shardgate has migrated this database: use that version"
                               : "the schema shardgate belongs to something else, or was edited");
        rc = SG_E_FORMAT;
    }
    PQclear(res);
    return rc;
}

int sg_registry_ensure(PGconn *conn, sg_error *err)
{
    PGresult *res = NULL;
    int rc = sg_pg_query(&res, conn,
                         "SELECT pg_catalog.to_regclass('shardgate.events') IS NOT NULL", err);
    if (rc < 0)
        return rc;
    bool exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!exists && (rc = sg_pg_exec(conn, create_sql, err)) < 0) {
        sg_error_prefix(err, "cannot create the registry (schema shardgate)");
        return rc;
    }
    if ((rc = check_format(conn, err)) < 0 ||
        (rc = sg_pg_query(&res, conn,
                          "SELECT pg_catalog.to_regclass('shardgate.bluegreen_errors') IS NOT NULL",
                          err)) < 0)
        return rc;
    exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!exists && (rc = sg_pg_exec(conn, bluegreen_sql, err)) < 0)
        sg_error_prefix(err, "cannot add the blue-green tables to the registry");
    return rc;
}

static char *dup_value(const PGresult *res, int row, int col, bool *failed)
{
    if (PQgetisnull(res, row, col))
        return NULL;
    char *s = sg_strdup(PQgetvalue(res, row, col));
    if (!s)
        *failed = true;
    return s;
}

static void row_clear(sg_registry_row *row)
{
    free(row->name);
    free(row->mode);
    free(row->started_at);
    free(row->finished_at);
    free(row->host);
    free(row->run_id);
    free(row->snapshot_id);
    free(row->fingerprint);
    free(row->description);
}

int sg_registry_read(sg_registry_rows *out, PGconn *conn, bool with_description, sg_error *err)
{
    PGresult *res = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = sg_pg_query(&res, conn,
                          "SELECT pg_catalog.to_regclass('shardgate.migrations') IS NOT NULL",
                          err)) < 0)
        return rc;
    out->exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!out->exists)
        return 0;
    if ((rc = check_format(conn, err)) < 0)
        return rc;
    rc = sg_pg_query(
        &res, conn,
        with_description
            ? "SELECT version, name, checksum, mode, status, statements_done,"
              " to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
              " to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
              " duration_ms, applied_by_host, run_id, snapshot_id,"
              " schema_fingerprint, schema_description, done_checksum, statement_started"
              " FROM shardgate.migrations ORDER BY version"
            : "SELECT version, name, checksum, mode, status, statements_done,"
              " to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
              " to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
              " duration_ms, applied_by_host, run_id, snapshot_id,"
              " schema_fingerprint, NULL, done_checksum, statement_started"
              " FROM shardgate.migrations ORDER BY version",
        err);
    if (rc < 0)
        return rc;
    int n = PQntuples(res);
    bool failed = false;
    if (n && !(out->items = sg_calloc((size_t)n, sizeof(*out->items)))) {
        PQclear(res);
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        sg_registry_row *row = &out->items[i];
        out->count++;
        row->version = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        row->name = dup_value(res, i, 1, &failed);
        snprintf(row->checksum, sizeof(row->checksum), "%s", PQgetvalue(res, i, 2));
        row->mode = dup_value(res, i, 3, &failed);
        if (parse_status(&row->status, PQgetvalue(res, i, 4)) < 0) {
            sg_error_set(err, SG_E_FORMAT,
                         "the registry has an unknown status \"%s\" for "
                         "version %" PRId64,
                         PQgetvalue(res, i, 4), row->version);
            PQclear(res);
            sg_registry_rows_clear(out);
            return SG_E_FORMAT;
        }
        row->statements_done = atoi(PQgetvalue(res, i, 5));
        row->started_at = dup_value(res, i, 6, &failed);
        row->finished_at = dup_value(res, i, 7, &failed);
        row->duration_ms = PQgetisnull(res, i, 8) ? -1 : strtoll(PQgetvalue(res, i, 8), NULL, 10);
        row->host = dup_value(res, i, 9, &failed);
        row->run_id = dup_value(res, i, 10, &failed);
        row->snapshot_id = dup_value(res, i, 11, &failed);
        row->fingerprint = dup_value(res, i, 12, &failed);
        row->description = dup_value(res, i, 13, &failed);
        if (!PQgetisnull(res, i, 14))
            snprintf(row->done_checksum, sizeof(row->done_checksum), "%s", PQgetvalue(res, i, 14));
        row->statement_started = atoi(PQgetvalue(res, i, 15));
    }
    PQclear(res);
    if (failed) {
        sg_registry_rows_clear(out);
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    }
    out->exists = true;
    return 0;
}

const sg_registry_row *sg_registry_rows_find(const sg_registry_rows *rows, int64_t version)
{
    for (size_t i = 0; i < rows->count; i++)
        if (rows->items[i].version == version)
            return &rows->items[i];
    return NULL;
}

void sg_registry_rows_clear(sg_registry_rows *rows)
{
    for (size_t i = 0; i < rows->count; i++)
        row_clear(&rows->items[i]);
    free(rows->items);
    memset(rows, 0, sizeof(*rows));
}

static int exec_params(PGconn *conn, const char *sql, int n, const char *const *params,
                       sg_error *err)
{
    PGresult *res = NULL;
    int rc = sg_pg_query_params(&res, conn, sql, n, params, err);
    PQclear(res);
    return rc;
}

int sg_registry_event(PGconn *conn, const sg_registry_actor *actor, int64_t version,
                      const char *action, const char *detail_json, sg_error *err)
{
    char v[32];
    snprintf(v, sizeof(v), "%" PRId64, version);
    const char *params[] = {version >= 0 ? v : NULL, action, actor->host, actor->run_id,
                            detail_json};
    return exec_params(conn,
                       "INSERT INTO shardgate.events (version, action, host, run_id, detail)"
                       " VALUES ($1, $2, $3, $4, $5::jsonb)",
                       5, params, err);
}

int sg_registry_begin(PGconn *conn, const sg_registry_actor *actor, const sg_migration *m,
                      sg_registry_status status, sg_error *err)
{
    char v[32];
    snprintf(v, sizeof(v), "%" PRId64, m->version);
    const char *params[] = {v,
                            m->name,
                            m->sha256,
                            sg_migration_mode_name(m->mode),
                            sg_registry_status_name(status),
                            actor->host,
                            actor->run_id,
                            actor->snapshot_id};
    return exec_params(
        conn,
        "INSERT INTO shardgate.migrations (version, name, checksum, mode, status,"
        " statements_done, started_at, applied_by_host, run_id, snapshot_id)"
        " VALUES ($1, $2, $3, $4, $5, 0, now(), $6, $7, $8)"
        " ON CONFLICT (version) DO UPDATE SET name = $2, checksum = $3, mode = $4, status = $5,"
        " statements_done = 0, done_checksum = NULL, statement_started = 0,"
        " started_at = now(), finished_at = NULL, duration_ms = NULL,"
        " applied_by_host = $6, run_id = $7, snapshot_id = coalesce($8, migrations.snapshot_id)",
        8, params, err);
}

int sg_registry_mark(PGconn *conn, int64_t version, sg_registry_status status, const char *checksum,
                     sg_error *err)
{
    char v[32];
    snprintf(v, sizeof(v), "%" PRId64, version);
    const char *params[] = {v, sg_registry_status_name(status), checksum};
    return exec_params(conn,
                       "UPDATE shardgate.migrations SET status = $2,"
                       " checksum = coalesce($3, checksum) WHERE version = $1",
                       3, params, err);
}

int sg_registry_progress(PGconn *conn, int64_t version, int done, const char *done_checksum,
                         sg_error *err)
{
    char v[32], d[16];
    snprintf(v, sizeof(v), "%" PRId64, version);
    snprintf(d, sizeof(d), "%d", done);
    const char *params[] = {v, d, done_checksum};
    return exec_params(conn,
                       "UPDATE shardgate.migrations SET statements_done = $2, done_checksum = $3,"
                       " statement_started = 0 WHERE version = $1",
                       3, params, err);
}

int sg_registry_started(PGconn *conn, int64_t version, int statement, sg_error *err)
{
    char v[32], n[16];
    snprintf(v, sizeof(v), "%" PRId64, version);
    snprintf(n, sizeof(n), "%d", statement);
    const char *params[] = {v, n};
    return exec_params(conn,
                       "UPDATE shardgate.migrations SET statement_started = $2 WHERE version = $1",
                       2, params, err);
}

int sg_registry_finish(PGconn *conn, int64_t version, sg_registry_status status,
                       const char *fingerprint, const char *description, sg_error *err)
{
    char v[32];
    snprintf(v, sizeof(v), "%" PRId64, version);
    const char *params[] = {v, sg_registry_status_name(status), fingerprint, description};
    return exec_params(
        conn,
        "UPDATE shardgate.migrations SET status = $2, finished_at = clock_timestamp(),"
        " duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint,"
        " schema_fingerprint = coalesce($3, schema_fingerprint),"
        " schema_description = coalesce($4, schema_description)"
        " WHERE version = $1",
        4, params, err);
}

int sg_registry_delete(PGconn *conn, int64_t version, sg_error *err)
{
    char v[32];
    snprintf(v, sizeof(v), "%" PRId64, version);
    const char *params[] = {v};
    return exec_params(conn, "DELETE FROM shardgate.migrations WHERE version = $1", 1, params, err);
}
