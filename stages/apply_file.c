/* Runs one file of a migration plan: in one transaction, or statement by
 * statement (transaction=off), with lock retries, its verify section and its
 * registry row. */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/interrupt.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "stages/apply_impl.h"
#include "stages/bluegreen_impl.h"
#include "stages/fingerprint.h"

#define DEFAULT_LOCK_TIMEOUT_MS 2000

/* ---- failures ---- */

/* Failures that say nothing about the migration, only about the moment:
 * trying again is safe, since a failed attempt leaves nothing behind. A
 * deadlock with the application shows up as 40P01 rather than 55P03 when
 * deadlock_timeout (1 s) is shorter than lock_timeout. NULL for the rest. */
static const char *retry_reason(const char *sqlstate)
{
    if (strcmp(sqlstate, "55P03") == 0)
        return "a lock was not granted within lock_timeout";
    if (strcmp(sqlstate, "40P01") == 0)
        return "a deadlock with another session";
    if (strcmp(sqlstate, "40001") == 0)
        return "a serialization failure";
    return NULL;
}

/* Failures of the moment that retrying within this run does not cure: a
 * statement_timeout, a lost connection, a server shutting down or out of
 * resources. A verify statement failing this way proves nothing about the
 * migration, so it is not undone. */
static bool is_transient(const char *sqlstate)
{
    return retry_reason(sqlstate) || strcmp(sqlstate, "57014") == 0 ||
           strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "57P", 3) == 0 ||
           strncmp(sqlstate, "53", 2) == 0;
}

static bool connection_lost(const sg_apply_engine *e)
{
    return PQstatus(e->conn) != CONNECTION_OK;
}

/* ---- statements ---- */

static bool has_concurrently_option(PgQuery__Node **params, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const PgQuery__Node *p = params[i];
        if (p->node_case == PG_QUERY__NODE__NODE_DEF_ELEM && p->def_elem->defname &&
            strcmp(p->def_elem->defname, "concurrently") == 0)
            return true;
    }
    return false;
}

/* Whether a statement cannot run inside a transaction block (PostgreSQL
 * refuses it there), so that its progress is recorded after it rather than
 * with it. DO and CALL are among them: a procedure or a DO block may COMMIT,
 * as batched backfills do, which only works outside a transaction block. */
static bool needs_autocommit(const PgQuery__Node *n)
{
    switch (n->node_case) {
    case PG_QUERY__NODE__NODE_INDEX_STMT:
        return n->index_stmt->concurrent;
    case PG_QUERY__NODE__NODE_DROP_STMT:
        return n->drop_stmt->concurrent;
    case PG_QUERY__NODE__NODE_REINDEX_STMT:
        return has_concurrently_option(n->reindex_stmt->params, n->reindex_stmt->n_params) ||
               n->reindex_stmt->kind == PG_QUERY__REINDEX_OBJECT_TYPE__REINDEX_OBJECT_SCHEMA ||
               n->reindex_stmt->kind == PG_QUERY__REINDEX_OBJECT_TYPE__REINDEX_OBJECT_SYSTEM ||
               n->reindex_stmt->kind == PG_QUERY__REINDEX_OBJECT_TYPE__REINDEX_OBJECT_DATABASE;
    case PG_QUERY__NODE__NODE_VACUUM_STMT:
        return n->vacuum_stmt->is_vacuumcmd;
    case PG_QUERY__NODE__NODE_CLUSTER_STMT:
        return !n->cluster_stmt->relation;
    case PG_QUERY__NODE__NODE_ALTER_TABLE_STMT:
        for (size_t i = 0; i < n->alter_table_stmt->n_cmds; i++) {
            const PgQuery__Node *c = n->alter_table_stmt->cmds[i];
            if (c->node_case == PG_QUERY__NODE__NODE_ALTER_TABLE_CMD && c->alter_table_cmd->def &&
                c->alter_table_cmd->def->node_case == PG_QUERY__NODE__NODE_PARTITION_CMD &&
                c->alter_table_cmd->def->partition_cmd->concurrent)
                return true;
        }
        return false;
    case PG_QUERY__NODE__NODE_DO_STMT:
    case PG_QUERY__NODE__NODE_CALL_STMT:
    case PG_QUERY__NODE__NODE_CREATEDB_STMT:
    case PG_QUERY__NODE__NODE_DROPDB_STMT:
    case PG_QUERY__NODE__NODE_ALTER_SYSTEM_STMT:
    case PG_QUERY__NODE__NODE_CREATE_TABLE_SPACE_STMT:
    case PG_QUERY__NODE__NODE_DROP_TABLE_SPACE_STMT:
    case PG_QUERY__NODE__NODE_CREATE_SUBSCRIPTION_STMT:
    case PG_QUERY__NODE__NODE_DROP_SUBSCRIPTION_STMT:
        return true;
    default:
        return false;
    }
}

static char *statement_sql(const sg_sql_stmt *stmt)
{
    return sg_strndup(stmt->text, stmt->len);
}

/* The index a CREATE INDEX CONCURRENTLY builds: "schema"."name" when it
 * exists on the statement's table, with whether it is valid. */
typedef struct built_index {
    char *name; /* NULL when there is none */
    bool valid;
} built_index;

static int find_built_index(built_index *out, sg_apply_engine *e, const PgQuery__IndexStmt *idx,
                            sg_error *err)
{
    PGresult *res = NULL;
    char *table = NULL;
    int rc = 0;
    memset(out, 0, sizeof(*out));
    if (!idx->idxname || !idx->relation)
        return 0;
    table = sg_pg_qualified_name(
        e->conn,
        idx->relation->schemaname && *idx->relation->schemaname ? idx->relation->schemaname : NULL,
        idx->relation->relname);
    if (!table)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    const char *params[] = {idx->idxname, table};
    rc = sg_pg_query_params(&res, e->conn,
                            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname),"
                            " i.indisvalid"
                            " FROM pg_catalog.pg_index i"
                            " JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
                            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                            " WHERE c.relname = $1"
                            " AND i.indrelid = pg_catalog.to_regclass($2)",
                            2, params, err);
    if (rc == 0 && PQntuples(res) > 0) {
        out->valid = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
        if (!(out->name = sg_strdup(PQgetvalue(res, 0, 0))))
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
    }
    PQclear(res);
    free(table);
    return rc;
}

/* A failed CREATE INDEX CONCURRENTLY leaves its index behind, INVALID; run
 * again, the statement would fail on the name (or, with IF NOT EXISTS, keep
 * the broken index). So before every run an INVALID index of that name on
 * that table is dropped. */
static int drop_invalid_index(sg_apply_engine *e, const sg_migration *m, const built_index *index,
                              sg_error *err)
{
    char *sql = sg_asprintf("DROP INDEX CONCURRENTLY IF EXISTS %s", index->name);
    int rc;
    if (!sql)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    sg_log(SG_LOG_WARNING, "dropping the invalid index %s left by a failed build", index->name);
    if ((rc = sg_exec_run(NULL, e->conn, sql, &e->watch, err)) == 0)
        sg_apply_event(e, m, "drop-invalid-index", json_pack("{s:s}", "index", index->name));
    free(sql);
    return rc;
}

/* Whether a statement that a killed run had started outside a transaction
 * completed before the run died: its progress was never recorded. Only index
 * builds and drops can be told apart; other statements run again, so they
 * must be safe to repeat (the README says so). */
static int completed_before(bool *done, sg_apply_engine *e, const sg_sql_stmt *stmt, sg_error *err)
{
    const PgQuery__Node *n = stmt->tree;
    built_index index;
    int rc = 0;
    *done = false;
    if (n->node_case == PG_QUERY__NODE__NODE_INDEX_STMT) {
        if ((rc = find_built_index(&index, e, n->index_stmt, err)) == 0)
            *done = index.name && index.valid;
        free(index.name);
    } else if (n->node_case == PG_QUERY__NODE__NODE_DROP_STMT &&
               n->drop_stmt->remove_type == PG_QUERY__OBJECT_TYPE__OBJECT_INDEX &&
               n->drop_stmt->n_objects == 1) {
        /* DROP INDEX CONCURRENTLY name: done when the name is gone */
        const PgQuery__Node *obj = n->drop_stmt->objects[0];
        const char *parts[2] = {NULL, NULL};
        size_t count = obj->node_case == PG_QUERY__NODE__NODE_LIST ? obj->list->n_items : 0;
        for (size_t i = 0; i < count && i < 2; i++)
            if (obj->list->items[i]->node_case == PG_QUERY__NODE__NODE_STRING)
                parts[i] = obj->list->items[i]->string->sval;
        if (count < 1 || count > 2 || !parts[0] || (count == 2 && !parts[1]))
            return 0;
        char *name = count == 2 ? sg_pg_qualified_name(e->conn, parts[0], parts[1])
                                : sg_pg_qualified_name(e->conn, NULL, parts[0]);
        PGresult *res = NULL;
        if (!name)
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        const char *params[] = {name};
        if ((rc = sg_pg_query_params(&res, e->conn, "SELECT pg_catalog.to_regclass($1) IS NULL", 1,
                                     params, err)) == 0)
            *done = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        free(name);
    }
    return rc;
}

/* ---- the session ---- */

int sg_apply_prepare_session(sg_apply_engine *e, sg_error *err)
{
    int rc = sg_pg_exec(e->conn, "RESET ALL; RESET ROLE", err);
    /* A killed runner's statement would otherwise run on, holding the
     * migration lock, until it ends on its own: with this the server looks
     * for the client every few seconds while a statement runs (14+). */
    if (rc == 0 && PQserverVersion(e->conn) >= 140000)
        rc = sg_pg_exec(e->conn, "SET client_connection_check_interval = '5s'", err);
    return rc;
}

static int set_lock_timeouts(sg_apply_engine *e, const sg_migration *m, uint64_t default_lock_ms,
                             bool local, sg_error *err)
{
    uint64_t lock = m->lock_timeout_ms >= 0    ? (uint64_t)m->lock_timeout_ms
                    : e->opts->lock_timeout_ms ? e->opts->lock_timeout_ms
                                               : default_lock_ms;
    uint64_t statement = m->statement_timeout_ms >= 0 ? (uint64_t)m->statement_timeout_ms
                                                      : e->opts->statement_timeout_ms;
    char sql[160];
    snprintf(sql, sizeof(sql),
             "SET %s lock_timeout = %" PRIu64 "; SET %s statement_timeout = %" PRIu64,
             local ? "LOCAL" : "SESSION", lock, local ? "LOCAL" : "SESSION", statement);
    return sg_pg_exec(e->conn, sql, err);
}

static int set_timeouts(sg_apply_engine *e, const sg_migration *m, bool local, sg_error *err)
{
    return set_lock_timeouts(e, m, DEFAULT_LOCK_TIMEOUT_MS, local, err);
}

/* The registry's own writes and the schema description are not the file's
 * statements: a short statement_timeout meant for them must not fail a
 * migration that succeeded. */
static int lift_statement_timeout(sg_apply_engine *e, bool local, sg_error *err)
{
    return sg_pg_exec(e->conn,
                      local ? "SET LOCAL statement_timeout = 0" : "SET statement_timeout = 0", err);
}

static void rollback(sg_apply_engine *e)
{
    if (!connection_lost(e) && PQtransactionStatus(e->conn) != PQTRANS_IDLE) {
        PGresult *res = PQexec(e->conn, "ROLLBACK");
        PQclear(res);
    }
}

/* COMMIT of a transaction that failed on the way (a statement whose error
 * went unnoticed) answers ROLLBACK, not an error: check which it was. */
static int commit(sg_apply_engine *e, sg_error *err)
{
    PGresult *res = NULL;
    int rc = sg_pg_query(&res, e->conn, "COMMIT", err);
    if (rc == 0 && strcmp(PQcmdStatus(res), "COMMIT") != 0)
        rc = sg_error_set(err, SG_E_DB, "the transaction was rolled back at COMMIT");
    PQclear(res);
    return rc;
}

/* ---- retries ---- */

/* Sleeps before retry number `retry`; false when interrupted. */
static bool back_off(sg_apply_engine *e, unsigned retry)
{
    return sg_interrupt_sleep_ms(sg_retry_delay_ms(&e->opts->backoff, retry, randombytes_random()));
}

/* Whether a failed attempt may be tried again: a lock timeout, a deadlock or
 * a serialization failure, within the retries. Logs and records the blocking
 * sessions the watch saw. */
static bool retry_after(sg_apply_engine *e, const sg_migration *m, const sg_error *failure,
                        unsigned attempt)
{
    const char *reason = retry_reason(failure->sqlstate);
    if (!reason || connection_lost(e))
        return false;
    sg_log(SG_LOG_WARNING, "%s: %s (attempt %u of %u)%s%s", m->file, reason, attempt + 1,
           e->opts->retries + 1, e->watch.blockers_text ? "; blocked by: " : "",
           e->watch.blockers_text ? e->watch.blockers_text : "");
    json_t *d = sg_apply_error_detail(failure);
    if (d) {
        json_object_set_new(d, "attempt", json_integer(attempt + 1));
        json_t *blockers = e->watch.blockers ? json_loads(e->watch.blockers, 0, NULL) : NULL;
        json_object_set_new(d, "blockers", blockers ? blockers : json_array());
    }
    sg_apply_event(e, m, "lock-wait", d);
    if (attempt >= e->opts->retries)
        return false;
    sg_apply_event(e, m, "retry", json_pack("{s:i}", "attempt", attempt + 2));
    return back_off(e, attempt);
}

/* The error once an attempt will not be retried: an interrupt, retries that
 * ran out, or the failure as it was. */
static int final_error(sg_apply_engine *e, const sg_migration *m, unsigned attempts, int rc,
                       sg_error *err)
{
    const char *reason = retry_reason(err->sqlstate);
    if (sg_interrupted())
        return sg_interrupt_check(err);
    if (connection_lost(e)) {
        sg_error_hint(err, "the connection was lost: whether the last statement committed is "
                           "unknown; run shardgate status, then migrate again (it resumes)");
        return rc;
    }
    if (!reason)
        return rc;
    char sqlstate[sizeof(err->sqlstate)];
    memcpy(sqlstate, err->sqlstate, sizeof(sqlstate));
    sg_error_set(err, SG_E_BUSY, "%s: gave up after %u attempts: %s", m->file, attempts, reason);
    if (e->watch.blockers_text)
        sg_error_detail(err, "blocked by: %s", e->watch.blockers_text);
    sg_error_hint(err, "end or wait out the blocking sessions, then run again (it resumes); "
                       "--lock-timeout and --retries set how long to try");
    memcpy(err->sqlstate, sqlstate, sizeof(sqlstate));
    return SG_E_BUSY;
}

/* ---- verify and finish ---- */

int sg_migration_verify(PGconn *conn, const sg_migration *m, sg_error *err)
{
    const sg_sql_script *script = m->verify.script;
    for (size_t i = 0; script && i < sg_sql_script_count(script); i++) {
        const sg_sql_stmt *stmt = sg_sql_script_stmt(script, i);
        PGresult *res = NULL;
        char *sql = statement_sql(stmt);
        if (!sql)
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        int rc = sg_exec_run(&res, conn, sql, NULL, err);
        free(sql);
        if (rc < 0) {
            if (rc == SG_E_INTERRUPTED || rc == SG_E_NOMEM)
                return rc;
            sg_error_prefix(err, "%s:%u: verify statement failed", m->file, stmt->line);
            if (!is_transient(err->sqlstate))
                err->code = rc = SG_E_MISMATCH;
            return rc;
        }
        /* 16 is bool's type OID, fixed in the catalog */
        bool is_false = PQntuples(res) > 0 && PQnfields(res) > 0 && PQftype(res, 0) == 16 &&
                        !PQgetisnull(res, 0, 0) && strcmp(PQgetvalue(res, 0, 0), "f") == 0;
        PQclear(res);
        if (is_false) {
            sg_error_set(err, SG_E_MISMATCH, "%s:%u: verify statement returned false", m->file,
                         stmt->line);
            sg_error_detail(err, "statement: %.*s", (int)(stmt->len > 300 ? 300 : stmt->len),
                            stmt->text);
            return SG_E_MISMATCH;
        }
    }
    return 0;
}

/* Describes the schema as the migration left it, and records it in its row. */
int sg_apply_finish_row(sg_apply_engine *e, const sg_apply_step *step, sg_error *err)
{
    sg_schema_desc *desc = NULL;
    int rc = sg_schema_describe(&desc, e->conn, err);
    if (rc == 0)
        rc = sg_registry_finish(e->conn, step->migration->version, SG_REGISTRY_APPLIED,
                                sg_schema_desc_fingerprint(desc), sg_schema_desc_text(desc), err);
    sg_schema_desc_free(desc);
    return rc;
}

void sg_apply_applied_event(sg_apply_engine *e, const sg_apply_step *step)
{
    const sg_migration *m = step->migration;
    sg_apply_event(e, m, "apply",
                   json_pack("{s:s, s:s, s:i, s:i}", "checksum", m->sha256, "mode",
                             sg_migration_mode_name(m->mode), "attempts", step->attempts,
                             "resumed_after", step->resume_from));
}

int sg_apply_transaction(sg_apply_engine *e, const sg_migration *m, uint64_t default_lock_ms,
                         sg_apply_txn_fn fn, void *ctx, sg_error *err)
{
    int rc = 0;
    for (unsigned attempt = 0;; attempt++) {
        sg_exec_watch_reset(&e->watch);
        if ((rc = sg_interrupt_check(err)) < 0)
            return rc;
        if ((rc = sg_pg_exec(e->conn, "BEGIN", err)) == 0 &&
            (rc = set_lock_timeouts(e, m, default_lock_ms, true, err)) == 0 &&
            (rc = fn(e, ctx, err)) == 0 && (rc = commit(e, err)) == 0)
            return 0;
        rollback(e);
        if (!retry_after(e, m, err, attempt))
            return final_error(e, m, attempt + 1, rc, err);
    }
}

/* ---- one file in one transaction ---- */

/* Applies or reverts m in one transaction with its registry row, retrying on
 * lock timeouts. A failure leaves nothing but its events and, for an apply,
 * a row marked failed. */
static int run_transactional(sg_apply_engine *e, sg_apply_step *step, sg_error *err)
{
    const sg_migration *m = step->migration;
    bool apply = step->kind == SG_STEP_APPLY;
    const sg_sql_script *script = apply ? m->up.script : m->down.script;
    int rc = 0;
    for (unsigned attempt = 0;; attempt++) {
        step->attempts = attempt + 1;
        sg_exec_watch_reset(&e->watch);
        if ((rc = sg_pg_exec(e->conn, "BEGIN", err)) == 0 &&
            (rc = set_timeouts(e, m, true, err)) == 0)
            rc = apply ? sg_registry_begin(e->conn, &e->actor, m, SG_REGISTRY_APPLYING, err)
                       : sg_registry_mark(e->conn, m->version, SG_REGISTRY_REVERTING, NULL, err);
        for (size_t i = 0; rc == 0 && script && i < sg_sql_script_count(script); i++) {
            const sg_sql_stmt *stmt = sg_sql_script_stmt(script, i);
            char *sql = statement_sql(stmt);
            rc = sql ? sg_exec_run(NULL, e->conn, sql, &e->watch, err)
                     : sg_error_set(err, SG_E_NOMEM, "out of memory");
            free(sql);
            if (rc < 0 && rc != SG_E_NOMEM && rc != SG_E_INTERRUPTED)
                sg_error_prefix(err, "%s:%u", m->file, stmt->line);
        }
        if (rc == 0 && apply)
            rc = sg_migration_verify(e->conn, m, err);
        if (rc == 0)
            rc = lift_statement_timeout(e, true, err);
        if (rc == 0 && apply && (rc = sg_apply_finish_row(e, step, err)) == 0)
            sg_apply_applied_event(e, step);
        if (rc == 0 && !apply && (rc = sg_registry_delete(e->conn, m->version, err)) == 0)
            sg_apply_event(e, m, "revert", json_pack("{s:i}", "attempts", attempt + 1));
        if (rc == 0 && (rc = commit(e, err)) == 0)
            return 0;
        rollback(e);
        if (!retry_after(e, m, err, attempt))
            break;
    }
    rc = final_error(e, m, step->attempts, rc, err);
    if (connection_lost(e))
        return rc;
    if (apply) {
        sg_error ignored = {0};
        /* nothing of the file stayed: the row only says that it failed */
        if (sg_registry_begin(e->conn, &e->actor, m, SG_REGISTRY_FAILED, &ignored) < 0)
            sg_log(SG_LOG_WARNING, "cannot record that %s failed: %s", m->file, ignored.message);
    }
    sg_apply_event(e, m, apply ? "fail" : "revert-fail", sg_apply_error_detail(err));
    return rc;
}

/* ---- one file statement by statement ---- */

static int record_progress(sg_apply_engine *e, const sg_migration *m, const sg_sql_script *script,
                           int done, sg_error *err)
{
    char digest[SG_SHA256_HEX_LEN];
    sg_sql_script_digest(script, (size_t)done, digest);
    return sg_registry_progress(e->conn, m->version, done, digest, err);
}

/* Runs statement number i + 1 of a transaction=off section and records the
 * progress: in the same transaction when the statement allows one, else
 * after it, with a mark before it that tells a resumed run it may have
 * completed. */
static int run_one(sg_apply_engine *e, const sg_migration *m, const sg_sql_script *script, size_t i,
                   sg_error *err)
{
    const sg_sql_stmt *stmt = sg_sql_script_stmt(script, i);
    char *sql = statement_sql(stmt);
    built_index index = {0};
    int rc;
    if (!sql)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    if (needs_autocommit(stmt->tree)) {
        if (stmt->tree->node_case == PG_QUERY__NODE__NODE_INDEX_STMT &&
            ((rc = find_built_index(&index, e, stmt->tree->index_stmt, err)) < 0 ||
             (index.name && !index.valid && (rc = drop_invalid_index(e, m, &index, err)) < 0)))
            goto done;
        if ((rc = sg_registry_started(e->conn, m->version, (int)i + 1, err)) == 0 &&
            (rc = sg_exec_run(NULL, e->conn, sql, &e->watch, err)) == 0)
            rc = record_progress(e, m, script, (int)i + 1, err);
    } else if ((rc = sg_pg_exec(e->conn, "BEGIN", err)) == 0) {
        if ((rc = sg_exec_run(NULL, e->conn, sql, &e->watch, err)) == 0 &&
            (rc = record_progress(e, m, script, (int)i + 1, err)) == 0)
            rc = commit(e, err);
        if (rc < 0)
            rollback(e);
    }
done:
    if (rc < 0 && rc != SG_E_NOMEM && rc != SG_E_INTERRUPTED)
        sg_error_prefix(err, "%s:%u", m->file, stmt->line);
    free(index.name);
    free(sql);
    return rc;
}

/* Runs a section statement by statement from statement `from`, each with
 * its retries. */
static int run_section(sg_apply_engine *e, sg_apply_step *step, const sg_sql_script *script,
                       sg_error *err)
{
    const sg_migration *m = step->migration;
    size_t from = (size_t)step->resume_from;
    int rc;
    if ((rc = set_timeouts(e, m, false, err)) < 0)
        return rc;
    if (step->may_have_run && script && from < sg_sql_script_count(script)) {
        bool done = false;
        const sg_sql_stmt *stmt = sg_sql_script_stmt(script, from);
        if ((rc = completed_before(&done, e, stmt, err)) < 0)
            return rc;
        if (done) {
            sg_log(SG_LOG_INFO, "%s:%u: completed before the last run stopped", m->file,
                   stmt->line);
            if ((rc = record_progress(e, m, script, (int)from + 1, err)) < 0)
                return rc;
            from++;
        } else {
            sg_log(SG_LOG_WARNING,
                   "%s:%u: the last run stopped during this statement; running "
                   "it again",
                   m->file, stmt->line);
        }
    }
    for (size_t i = from; script && i < sg_sql_script_count(script); i++) {
        for (unsigned attempt = 0;; attempt++) {
            if (attempt + 1 > step->attempts)
                step->attempts = attempt + 1;
            sg_exec_watch_reset(&e->watch);
            if ((rc = sg_interrupt_check(err)) < 0)
                return rc;
            if ((rc = run_one(e, m, script, i, err)) == 0)
                break;
            if (!retry_after(e, m, err, attempt))
                return final_error(e, m, attempt + 1, rc, err);
        }
    }
    return 0;
}

/* After a verify failure, the committed statements are undone with the down
 * section, when there is one. */
static int undo_after_verify(sg_apply_engine *e, sg_apply_step *step, sg_error *err)
{
    const sg_migration *m = step->migration;
    sg_error failure = *err;
    int rc;
    sg_apply_event(e, m, "verify-fail", sg_apply_error_detail(&failure));
    if (!m->down.script || m->irreversible) {
        sg_error ignored = {0};
        sg_registry_mark(e->conn, m->version, SG_REGISTRY_FAILED, NULL, &ignored);
        sg_error_hint(err,
                      "%s has no down section: its statements stay; fix the cause and run "
                      "again (it verifies again), or repair by hand",
                      m->file);
        return err->code;
    }
    sg_log(SG_LOG_WARNING, "%s: verify failed; reverting it with its down section", m->file);
    sg_apply_step undo = {.migration = m, .kind = SG_STEP_REVERT};
    if ((rc = sg_registry_mark(e->conn, m->version, SG_REGISTRY_REVERTING, NULL, err)) == 0 &&
        (rc = record_progress(e, m, m->down.script, 0, err)) == 0 &&
        (rc = run_section(e, &undo, m->down.script, err)) == 0 &&
        (rc = sg_registry_delete(e->conn, m->version, err)) == 0) {
        sg_apply_event(e, m, "revert", json_pack("{s:s}", "reason", "verify failed"));
        *err = failure;
        sg_error_hint(err, "the file was reverted with its down section");
        return failure.code;
    }
    sg_error_prefix(err, "%s, and reverting it failed", failure.message);
    sg_error_hint(err, "finish with shardgate revert --to %" PRId64 ", or repair by hand",
                  m->version - 1);
    if (!connection_lost(e)) {
        sg_error ignored = {0};
        sg_registry_mark(e->conn, m->version, SG_REGISTRY_REVERT_FAILED, NULL, &ignored);
        sg_apply_event(e, m, "revert-fail", sg_apply_error_detail(err));
    }
    return rc;
}

static int run_statements(sg_apply_engine *e, sg_apply_step *step, sg_error *err)
{
    const sg_migration *m = step->migration;
    bool apply = step->kind == SG_STEP_APPLY;
    const sg_sql_script *script = apply ? m->up.script : m->down.script;
    sg_registry_status running = apply ? SG_REGISTRY_APPLYING : SG_REGISTRY_REVERTING;
    int rc;
    if (step->resume_from > 0 || step->may_have_run) {
        sg_log(SG_LOG_INFO, "%s: resuming after statement %d", m->file, step->resume_from);
        rc = sg_registry_mark(e->conn, m->version, running, step->edited ? m->sha256 : NULL, err);
    } else if (apply) {
        rc = sg_registry_begin(e->conn, &e->actor, m, running, err);
    } else if ((rc = sg_registry_mark(e->conn, m->version, running, NULL, err)) == 0) {
        rc = record_progress(e, m, script, 0, err);
    }
    if (rc < 0)
        return rc;
    if ((rc = run_section(e, step, script, err)) == 0 && apply &&
        (rc = sg_migration_verify(e->conn, m, err)) == SG_E_MISMATCH)
        return undo_after_verify(e, step, err);
    if (rc == 0 && (rc = lift_statement_timeout(e, false, err)) == 0) {
        if (apply && (rc = sg_apply_finish_row(e, step, err)) == 0) {
            sg_apply_applied_event(e, step);
            return 0;
        }
        if (!apply && (rc = sg_registry_delete(e->conn, m->version, err)) == 0) {
            sg_apply_event(e, m, "revert", json_pack("{s:i}", "attempts", step->attempts));
            return 0;
        }
    }
    /* the row keeps its progress: the next run resumes after it; an
     * interrupted run leaves it as it was, in progress */
    if (connection_lost(e))
        return rc;
    sg_error ignored = {0};
    if (rc != SG_E_INTERRUPTED)
        sg_registry_mark(e->conn, m->version,
                         apply ? SG_REGISTRY_FAILED : SG_REGISTRY_REVERT_FAILED, NULL, &ignored);
    sg_apply_event(e, m, apply ? "fail" : "revert-fail", sg_apply_error_detail(err));
    return rc;
}

int sg_apply_run_file(sg_apply_engine *e, sg_apply_step *step, sg_error *err)
{
    if (step->kind == SG_STEP_FINALIZE)
        return sg_bluegreen_finalize(e, step, err);
    switch (step->migration->mode) {
    case SG_MIGRATION_BLUEGREEN:
        return step->kind == SG_STEP_APPLY ? sg_bluegreen_apply(e, step, err)
                                           : sg_bluegreen_revert(e, step, err);
    case SG_MIGRATION_STATEMENTS:
        return run_statements(e, step, err);
    case SG_MIGRATION_TRANSACTIONAL:
        break;
    }
    return run_transactional(e, step, err);
}
