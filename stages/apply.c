#include "stages/apply.h"

#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/interrupt.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "stages/exec.h"
#include "stages/fingerprint.h"
#include "stages/lint.h"

#define DEFAULT_LOCK_TIMEOUT_MS 2000

/* SQLSTATE lock_not_available: lock_timeout fired (or NOWAIT failed). */
#define SQLSTATE_LOCK_TIMEOUT "55P03"

void sg_apply_options_init(sg_apply_options *opts, const char *dsn)
{
    *opts = (sg_apply_options){
        .dsn = dsn,
        .target = SG_APPLY_LATEST,
        .lock_timeout_ms = DEFAULT_LOCK_TIMEOUT_MS,
        .retries = 10,
        /* a lock is usually held by a transaction that ends within seconds;
         * ten retries spread over about a minute ride out most of them */
        .backoff = {200, 10000, UINT64_MAX, UINT32_MAX},
    };
}

/* What one sg_migrate or sg_revert works with. */
typedef struct engine {
    PGconn *conn;
    const sg_apply_options *opts;
    sg_registry_actor actor;
    sg_exec_watch watch;
    char host[256];
    char run_id[40];
} engine;

static void engine_init(engine *e, PGconn *conn, const sg_apply_options *opts)
{
    memset(e, 0, sizeof(*e));
    e->conn = conn;
    e->opts = opts;
    e->actor = opts->actor;
    e->watch.dsn = opts->dsn;
    if (!e->actor.host) {
        if (gethostname(e->host, sizeof(e->host) - 1) < 0)
            snprintf(e->host, sizeof(e->host), "unknown");
        e->actor.host = e->host;
    }
    if (!e->actor.run_id) {
        /* time first, so run ids sort by when they started */
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        size_t n = strftime(e->run_id, sizeof(e->run_id), "%Y%m%dT%H%M%SZ-", &tm);
        snprintf(e->run_id + n, sizeof(e->run_id) - n, "%08" PRIx32, randombytes_random());
        e->actor.run_id = e->run_id;
    }
}

/* ---- events ---- */

/* Appends an event whose detail is built from a json_pack format; logging
 * must not fail the migration, so a failed event is only logged. */
static void event(engine *e, const sg_migration *m, const char *action, json_t *detail)
{
    sg_error err = {0};
    char *text = NULL;
    if (detail && m)
        json_object_set_new(detail, "file", json_string(m->file));
    if (detail)
        text = json_dumps(detail, JSON_COMPACT);
    if (sg_registry_event(e->conn, &e->actor, m ? m->version : -1, action, text, &err) < 0)
        sg_log(SG_LOG_WARNING, "cannot record the %s event of %s: %s", action,
               m ? m->file : "the run", err.message);
    free(text);
    json_decref(detail);
}

static json_t *error_detail(const sg_error *failure)
{
    sg_json_init();
    json_t *d =
        json_pack("{s:s, s:s}", "error", failure->message, "class", sg_error_class(failure->code));
    if (d && failure->sqlstate[0])
        json_object_set_new(d, "sqlstate", json_string(failure->sqlstate));
    return d;
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

/* Whether a statement cannot run inside a transaction block, so that its
 * progress is recorded after it rather than with it. */
static bool needs_autocommit(const PgQuery__Node *n)
{
    switch (n->node_case) {
    case PG_QUERY__NODE__NODE_INDEX_STMT:
        return n->index_stmt->concurrent;
    case PG_QUERY__NODE__NODE_DROP_STMT:
        return n->drop_stmt->concurrent;
    case PG_QUERY__NODE__NODE_REINDEX_STMT:
        return has_concurrently_option(n->reindex_stmt->params, n->reindex_stmt->n_params);
    case PG_QUERY__NODE__NODE_VACUUM_STMT:
        return n->vacuum_stmt->is_vacuumcmd;
    case PG_QUERY__NODE__NODE_ALTER_TABLE_STMT:
        for (size_t i = 0; i < n->alter_table_stmt->n_cmds; i++) {
            const PgQuery__Node *c = n->alter_table_stmt->cmds[i];
            if (c->node_case == PG_QUERY__NODE__NODE_ALTER_TABLE_CMD && c->alter_table_cmd->def &&
                c->alter_table_cmd->def->node_case == PG_QUERY__NODE__NODE_PARTITION_CMD &&
                c->alter_table_cmd->def->partition_cmd->concurrent)
                return true;
        }
        return false;
    case PG_QUERY__NODE__NODE_CREATEDB_STMT:
    case PG_QUERY__NODE__NODE_DROPDB_STMT:
    case PG_QUERY__NODE__NODE_ALTER_SYSTEM_STMT:
    case PG_QUERY__NODE__NODE_CREATE_TABLE_SPACE_STMT:
    case PG_QUERY__NODE__NODE_DROP_TABLE_SPACE_STMT:
        return true;
    default:
        return false;
    }
}

static char *statement_sql(const sg_sql_stmt *stmt)
{
    return sg_strndup(stmt->text, stmt->len);
}

/* A failed CREATE INDEX CONCURRENTLY leaves its index behind, INVALID; run
 * again, the statement would fail on the name (or, with IF NOT EXISTS, keep
 * the broken index). So before every run, an INVALID index of that name on
 * that table is dropped. */
static int drop_invalid_index(engine *e, const sg_migration *m, const sg_sql_stmt *stmt,
                              sg_error *err)
{
    const PgQuery__IndexStmt *idx = stmt->tree->index_stmt;
    PGresult *res = NULL;
    char *table = NULL, *sql = NULL, *index = NULL;
    int rc = 0;
    if (!idx->idxname || !idx->relation)
        return 0;
    table =
        idx->relation->schemaname && *idx->relation->schemaname
            ? sg_pg_qualified_name(e->conn, idx->relation->schemaname, idx->relation->relname)
            : PQescapeIdentifier(e->conn, idx->relation->relname, strlen(idx->relation->relname));
    if (!table)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    const char *params[] = {idx->idxname, table};
    if ((rc = sg_pg_query_params(&res, e->conn,
                                 "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)"
                                 " FROM pg_catalog.pg_index i"
                                 " JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
                                 " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                                 " WHERE c.relname = $1 AND i.indrelid = $2::regclass"
                                 " AND NOT i.indisvalid",
                                 2, params, err)) < 0) {
        /* the table may not exist yet: then there is no index to drop */
        if (strcmp(err->sqlstate, "42P01") == 0)
            rc = 0;
        goto done;
    }
    if (PQntuples(res) == 0)
        goto done;
    if (!(index = sg_strdup(PQgetvalue(res, 0, 0))) ||
        !(sql = sg_asprintf("DROP INDEX CONCURRENTLY IF EXISTS %s", index))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    sg_log(SG_LOG_WARNING, "dropping the invalid index %s left by a failed build", index);
    if ((rc = sg_exec_run(NULL, e->conn, sql, &e->watch, err)) < 0)
        goto done;
    event(e, m, "drop-invalid-index", json_pack("{s:s}", "index", index));
done:
    PQclear(res);
    free(sql);
    free(index);
    PQfreemem(table);
    return rc;
}

static int set_timeouts(engine *e, const sg_migration *m, bool local, sg_error *err)
{
    uint64_t lock = m->lock_timeout_ms >= 0    ? (uint64_t)m->lock_timeout_ms
                    : e->opts->lock_timeout_ms ? e->opts->lock_timeout_ms
                                               : DEFAULT_LOCK_TIMEOUT_MS;
    uint64_t statement = m->statement_timeout_ms >= 0 ? (uint64_t)m->statement_timeout_ms
                                                      : e->opts->statement_timeout_ms;
    char sql[160];
    snprintf(sql, sizeof(sql),
             "SET %s lock_timeout = %" PRIu64 "; SET %s statement_timeout = %" PRIu64,
             local ? "LOCAL" : "SESSION", lock, local ? "LOCAL" : "SESSION", statement);
    return sg_pg_exec(e->conn, sql, err);
}

static void rollback(engine *e)
{
    if (PQtransactionStatus(e->conn) != PQTRANS_IDLE) {
        PGresult *res = PQexec(e->conn, "ROLLBACK");
        PQclear(res);
    }
}

/* Sleeps before retry number `retry`; false when interrupted. */
static bool back_off(engine *e, unsigned retry)
{
    uint64_t delay = sg_retry_delay_ms(&e->opts->backoff, retry, randombytes_random());
    uint64_t until = sg_monotonic_ms() + delay;
    while (sg_monotonic_ms() < until) {
        if (sg_interrupted())
            return false;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return !sg_interrupted();
}

/* Whether a failed attempt may be tried again: a lock timeout, within the
 * retries. Logs the blockers the watch saw, and records them. */
static bool retry_after(engine *e, const sg_migration *m, const sg_error *failure, unsigned attempt)
{
    if (strcmp(failure->sqlstate, SQLSTATE_LOCK_TIMEOUT) != 0)
        return false;
    sg_log(SG_LOG_WARNING, "%s: lock not granted within lock_timeout (attempt %u of %u)%s%s",
           m->file, attempt + 1, e->opts->retries + 1,
           e->watch.blockers_text ? "; blocked by: " : "",
           e->watch.blockers_text ? e->watch.blockers_text : "");
    json_t *d = error_detail(failure);
    if (d) {
        json_object_set_new(d, "attempt", json_integer(attempt + 1));
        json_t *blockers = e->watch.blockers ? json_loads(e->watch.blockers, 0, NULL) : NULL;
        json_object_set_new(d, "blockers", blockers ? blockers : json_array());
    }
    event(e, m, "lock-wait", d);
    if (attempt >= e->opts->retries)
        return false;
    event(e, m, "retry", json_pack("{s:i}", "attempt", attempt + 2));
    return back_off(e, attempt);
}

/* The message when lock retries ran out. */
static int gave_up(engine *e, const sg_migration *m, unsigned attempts, sg_error *err)
{
    sg_error_set(err, SG_E_BUSY,
                 "%s: gave up after %u attempts: a lock was not granted within "
                 "lock_timeout",
                 m->file, attempts);
    if (e->watch.blockers_text)
        sg_error_detail(err, "blocked by: %s", e->watch.blockers_text);
    sg_error_hint(err, "end or wait out the blocking sessions, then run again (it resumes); "
                       "--lock-timeout and --retries set how long to try");
    snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", SQLSTATE_LOCK_TIMEOUT);
    return SG_E_BUSY;
}

/* Runs a verify section: every statement must succeed, and one whose first
 * row's first column is a boolean false fails. */
static int run_verify(engine *e, const sg_migration *m, sg_error *err)
{
    const sg_sql_script *script = m->verify.script;
    for (size_t i = 0; script && i < sg_sql_script_count(script); i++) {
        const sg_sql_stmt *stmt = sg_sql_script_stmt(script, i);
        PGresult *res = NULL;
        char *sql = statement_sql(stmt);
        if (!sql)
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        int rc = sg_exec_run(&res, e->conn, sql, NULL, err);
        free(sql);
        if (rc < 0) {
            if (rc == SG_E_INTERRUPTED || rc == SG_E_NOMEM)
                return rc;
            sg_error_prefix(err, "%s:%u: verify statement failed", m->file, stmt->line);
            err->code = SG_E_MISMATCH;
            return SG_E_MISMATCH;
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
static int finish_row(engine *e, const sg_migration *m, sg_error *err)
{
    sg_schema_desc *desc = NULL;
    int rc = sg_schema_describe(&desc, e->conn, err);
    if (rc == 0)
        rc = sg_registry_finish(e->conn, m->version, SG_REGISTRY_APPLIED,
                                sg_schema_desc_fingerprint(desc), sg_schema_desc_text(desc), err);
    sg_schema_desc_free(desc);
    return rc;
}

/* ---- one file in one transaction ---- */

/* Applies or reverts m in one transaction with its registry row, retrying on
 * lock timeouts. A failure leaves nothing but its events and, for an apply,
 * a row marked failed. */
static int run_transactional(engine *e, sg_apply_step *step, sg_error *err)
{
    const sg_migration *m = step->migration;
    const sg_sql_script *script = step->kind == SG_STEP_APPLY ? m->up.script : m->down.script;
    int rc = 0;
    for (unsigned attempt = 0;; attempt++) {
        step->attempts = attempt + 1;
        sg_exec_watch_reset(&e->watch);
        if ((rc = sg_pg_exec(e->conn, "BEGIN", err)) < 0 ||
            (rc = set_timeouts(e, m, true, err)) < 0)
            goto failed;
        rc = step->kind == SG_STEP_APPLY
                 ? sg_registry_begin(e->conn, &e->actor, m, SG_REGISTRY_APPLYING, err)
                 : sg_registry_mark(e->conn, m->version, SG_REGISTRY_REVERTING, err);
        for (size_t i = 0; rc == 0 && script && i < sg_sql_script_count(script); i++) {
            const sg_sql_stmt *stmt = sg_sql_script_stmt(script, i);
            char *sql = statement_sql(stmt);
            rc = sql ? sg_exec_run(NULL, e->conn, sql, &e->watch, err)
                     : sg_error_set(err, SG_E_NOMEM, "out of memory");
            free(sql);
            if (rc < 0 && rc != SG_E_NOMEM)
                sg_error_prefix(err, "%s:%u", m->file, stmt->line);
        }
        if (rc == 0 && step->kind == SG_STEP_APPLY && (rc = run_verify(e, m, err)) == 0) {
            if ((rc = finish_row(e, m, err)) == 0)
                event(e, m, "apply",
                      json_pack("{s:s, s:s, s:i}", "checksum", m->sha256, "mode",
                                sg_migration_mode_name(m->mode), "attempts", attempt + 1));
        } else if (rc == 0 && step->kind == SG_STEP_REVERT) {
            if ((rc = sg_registry_delete(e->conn, m->version, err)) == 0)
                event(e, m, "revert", json_pack("{s:i}", "attempts", attempt + 1));
        }
        if (rc == 0 && (rc = sg_pg_exec(e->conn, "COMMIT", err)) == 0)
            return 0;
        rollback(e);
        if (retry_after(e, m, err, attempt))
            continue;
        if (strcmp(err->sqlstate, SQLSTATE_LOCK_TIMEOUT) == 0 && !sg_interrupted())
            rc = gave_up(e, m, attempt + 1, err);
        goto failed;
    }
failed:
    rollback(e);
    if (step->kind == SG_STEP_APPLY) {
        sg_error ignored = {0};
        /* nothing of the file stayed: the row only says that it failed */
        if (sg_registry_begin(e->conn, &e->actor, m, SG_REGISTRY_FAILED, &ignored) < 0)
            sg_log(SG_LOG_WARNING, "cannot record that %s failed: %s", m->file, ignored.message);
    }
    event(e, m, step->kind == SG_STEP_APPLY ? "fail" : "revert-fail", error_detail(err));
    return rc;
}

/* ---- one file statement by statement ---- */

/* Runs statement i of a transaction=off section and records progress i + 1:
 * in the same transaction when the statement allows one. */
static int run_one(engine *e, const sg_migration *m, const sg_sql_stmt *stmt, int done,
                   sg_error *err)
{
    char *sql = statement_sql(stmt);
    int rc;
    if (!sql)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    if (needs_autocommit(stmt->tree)) {
        if (stmt->tree->node_case == PG_QUERY__NODE__NODE_INDEX_STMT &&
            (rc = drop_invalid_index(e, m, stmt, err)) < 0)
            goto done;
        if ((rc = sg_exec_run(NULL, e->conn, sql, &e->watch, err)) == 0)
            rc = sg_registry_progress(e->conn, m->version, done, err);
    } else if ((rc = sg_pg_exec(e->conn, "BEGIN", err)) == 0) {
        if ((rc = sg_exec_run(NULL, e->conn, sql, &e->watch, err)) == 0 &&
            (rc = sg_registry_progress(e->conn, m->version, done, err)) == 0)
            rc = sg_pg_exec(e->conn, "COMMIT", err);
        if (rc < 0)
            rollback(e);
    }
done:
    if (rc < 0 && rc != SG_E_NOMEM && rc != SG_E_INTERRUPTED)
        sg_error_prefix(err, "%s:%u", m->file, stmt->line);
    free(sql);
    return rc;
}

/* Runs a section statement by statement from `from`, each with its lock
 * retries. */
static int run_section(engine *e, sg_apply_step *step, const sg_sql_script *script, int from,
                       sg_error *err)
{
    const sg_migration *m = step->migration;
    int rc;
    if ((rc = set_timeouts(e, m, false, err)) < 0)
        return rc;
    for (size_t i = (size_t)from; script && i < sg_sql_script_count(script); i++) {
        const sg_sql_stmt *stmt = sg_sql_script_stmt(script, i);
        for (unsigned attempt = 0;; attempt++) {
            step->attempts++;
            sg_exec_watch_reset(&e->watch);
            if ((rc = sg_interrupt_check(err)) < 0)
                return rc;
            if ((rc = run_one(e, m, stmt, (int)i + 1, err)) == 0)
                break;
            if (retry_after(e, m, err, attempt))
                continue;
            if (strcmp(err->sqlstate, SQLSTATE_LOCK_TIMEOUT) == 0 && !sg_interrupted())
                rc = gave_up(e, m, attempt + 1, err);
            return rc;
        }
    }
    return 0;
}

static int run_statements(engine *e, sg_apply_step *step, sg_error *err)
{
    const sg_migration *m = step->migration;
    bool apply = step->kind == SG_STEP_APPLY;
    sg_registry_status running = apply ? SG_REGISTRY_APPLYING : SG_REGISTRY_REVERTING;
    int rc;
    if (step->resume_from > 0) {
        sg_log(SG_LOG_INFO, "%s: resuming after statement %d", m->file, step->resume_from);
        rc = sg_registry_mark(e->conn, m->version, running, err);
    } else if (apply) {
        rc = sg_registry_begin(e->conn, &e->actor, m, running, err);
    } else {
        if ((rc = sg_registry_mark(e->conn, m->version, running, err)) == 0)
            rc = sg_registry_progress(e->conn, m->version, 0, err);
    }
    if (rc < 0)
        return rc;
    rc = run_section(e, step, apply ? m->up.script : m->down.script, step->resume_from, err);
    if (rc == 0 && apply && (rc = run_verify(e, m, err)) < 0 && !m->irreversible &&
        rc != SG_E_INTERRUPTED) {
        /* the statements are committed: undo them with the down section */
        sg_error failure = *err;
        sg_log(SG_LOG_WARNING, "%s: verify failed; reverting it with its down section", m->file);
        event(e, m, "verify-fail", error_detail(&failure));
        sg_apply_step undo = {.migration = m, .kind = SG_STEP_REVERT};
        if ((rc = sg_registry_mark(e->conn, m->version, SG_REGISTRY_REVERTING, err)) == 0 &&
            (rc = sg_registry_progress(e->conn, m->version, 0, err)) == 0 &&
            (rc = run_section(e, &undo, m->down.script, 0, err)) == 0 &&
            (rc = sg_registry_delete(e->conn, m->version, err)) == 0) {
            event(e, m, "revert", json_pack("{s:s}", "reason", "verify failed"));
            *err = failure;
            sg_error_hint(err, "the file was reverted with its down section");
            return failure.code;
        }
        sg_error_prefix(err, "%s, and reverting it failed", failure.message);
        sg_registry_mark(e->conn, m->version, SG_REGISTRY_REVERT_FAILED, &failure);
        event(e, m, "revert-fail", error_detail(err));
        return rc;
    }
    if (rc == 0 && apply && (rc = finish_row(e, m, err)) == 0) {
        event(e, m, "apply",
              json_pack("{s:s, s:s, s:i}", "checksum", m->sha256, "mode",
                        sg_migration_mode_name(m->mode), "attempts", step->attempts));
        return 0;
    }
    if (rc == 0 && !apply && (rc = sg_registry_delete(e->conn, m->version, err)) == 0) {
        event(e, m, "revert", json_pack("{s:i}", "attempts", step->attempts));
        return 0;
    }
    sg_error ignored = {0};
    if (rc != SG_E_INTERRUPTED)
        sg_registry_mark(e->conn, m->version,
                         apply ? SG_REGISTRY_FAILED : SG_REGISTRY_REVERT_FAILED, &ignored);
    event(e, m, apply ? "fail" : "revert-fail", error_detail(err));
    return rc;
}

/* ---- plans ---- */

static int add_step(sg_apply_result *res, const sg_migration *m, sg_step_kind kind, int resume_from,
                    sg_error *err)
{
    sg_apply_step *grown = sg_array_grow(res->steps, res->count, sizeof(*res->steps));
    if (!grown)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    res->steps = grown;
    res->steps[res->count++] =
        (sg_apply_step){.migration = m, .kind = kind, .resume_from = resume_from};
    return 0;
}

/* A file applied with other content than it has now. */
static int changed_file(engine *e, const sg_migration *m, const sg_registry_row *row, bool dry_run,
                        sg_error *err)
{
    if (e->opts->allow_changed) {
        sg_log(SG_LOG_WARNING, "%s changed since it was applied (--allow-changed)", m->file);
        if (!dry_run)
            event(e, m, "changed-allowed",
                  json_pack("{s:s, s:s}", "applied_checksum", row->checksum, "file_checksum",
                            m->sha256));
        return 0;
    }
    sg_error_set(err, SG_E_MISMATCH, "%s changed since it was applied", m->file);
    sg_error_detail(err, "checksum when applied: %s", row->checksum);
    sg_error_detail(err, "checksum now:          %s", m->sha256);
    sg_error_hint(err, "restore the file as it was, and put the change in a new migration; "
                       "--allow-changed goes on anyway");
    return SG_E_MISMATCH;
}

static int64_t schema_version(const sg_registry_rows *rows)
{
    int64_t v = 0;
    for (size_t i = 0; i < rows->count; i++)
        if (rows->items[i].status == SG_REGISTRY_APPLIED && rows->items[i].version > v)
            v = rows->items[i].version;
    return v;
}

static int plan_migrate(engine *e, sg_apply_result *res, const sg_migration_set *set,
                        const sg_registry_rows *rows, sg_error *err)
{
    int64_t applied_max = schema_version(rows);
    int rc;
    for (size_t i = 0; i < rows->count; i++) {
        const sg_registry_row *row = &rows->items[i];
        const sg_migration *m = sg_migration_set_find(set, row->version);
        if (row->status == SG_REGISTRY_REVERTING || row->status == SG_REGISTRY_REVERT_FAILED) {
            sg_error_set(err, SG_E_TARGET, "the revert of version %" PRId64 " (%s) did not finish",
                         row->version, row->name);
            sg_error_hint(err, "run shardgate revert again to finish it");
            return SG_E_TARGET;
        }
        if (!m) {
            if (row->status != SG_REGISTRY_APPLIED) {
                sg_error_set(err, SG_E_NOT_FOUND,
                             "version %" PRId64 " (%s) is %s on the database, but its file is "
                             "not in %s",
                             row->version, row->name, sg_registry_status_name(row->status),
                             set->dir);
                return SG_E_NOT_FOUND;
            }
            sg_log(SG_LOG_WARNING, "version %" PRId64 " (%s) is applied, but its file is not in %s",
                   row->version, row->name, set->dir);
            continue;
        }
        bool partial = row->status != SG_REGISTRY_APPLIED && row->statements_done > 0 &&
                       m->mode == SG_MIGRATION_STATEMENTS;
        if (strcmp(row->checksum, m->sha256) != 0) {
            if (partial) {
                sg_error_set(err, SG_E_MISMATCH,
                             "%s changed after %d of its statements ran: cannot resume it", m->file,
                             row->statements_done);
                sg_error_detail(err, "checksum then: %s, now: %s", row->checksum, m->sha256);
                sg_error_hint(err, "restore the file as it was and run again");
                return SG_E_MISMATCH;
            }
            if (row->status == SG_REGISTRY_APPLIED &&
                (rc = changed_file(e, m, row, e->opts->dry_run, err)) < 0)
                return rc;
        }
    }
    for (size_t i = 0; i < set->count; i++) {
        const sg_migration *m = &set->items[i];
        const sg_registry_row *row = sg_registry_rows_find(rows, m->version);
        if (m->version > e->opts->target || (row && row->status == SG_REGISTRY_APPLIED))
            continue;
        if (m->version < applied_max) {
            sg_error_set(err, SG_E_TARGET,
                         "%s is pending, but version %" PRId64 " is already applied", m->file,
                         applied_max);
            sg_error_hint(err,
                          "migrations run in order of version: give it a number above %" PRId64,
                          applied_max);
            return SG_E_TARGET;
        }
        if (m->mode == SG_MIGRATION_BLUEGREEN) {
            sg_error_set(err, SG_E_USAGE, "%s: mode=bluegreen is not supported by this version",
                         m->file);
            sg_error_hint(err, "the blue-green engine is not built yet; use a transactional file");
            return SG_E_USAGE;
        }
        int resume = row && m->mode == SG_MIGRATION_STATEMENTS ? row->statements_done : 0;
        if ((rc = add_step(res, m, SG_STEP_APPLY, resume, err)) < 0)
            return rc;
    }
    return 0;
}

static int plan_revert(engine *e, sg_apply_result *res, const sg_migration_set *set,
                       const sg_registry_rows *rows, sg_error *err)
{
    int rc;
    for (size_t i = rows->count; i-- > 0;) {
        const sg_registry_row *row = &rows->items[i];
        if (row->version <= e->opts->target)
            break;
        if (row->status == SG_REGISTRY_FAILED || row->status == SG_REGISTRY_APPLYING) {
            if (row->statements_done == 0)
                continue; /* nothing of it is on the database */
            sg_error_set(err, SG_E_TARGET,
                         "version %" PRId64 " (%s) is partly applied (%d statements)", row->version,
                         row->name, row->statements_done);
            sg_error_hint(err, "finish it with shardgate migrate first, or repair by hand");
            return SG_E_TARGET;
        }
        const sg_migration *m = sg_migration_set_find(set, row->version);
        if (!m) {
            sg_error_set(err, SG_E_NOT_FOUND,
                         "cannot revert version %" PRId64 " (%s): its file is not in %s",
                         row->version, row->name, set->dir);
            return SG_E_NOT_FOUND;
        }
        if (!m->down.script || m->irreversible) {
            sg_error_set(err, SG_E_TARGET, "cannot revert %s: it is irreversible", m->file);
            sg_error_hint(err, "nothing was reverted; restore a snapshot to go back further");
            return SG_E_TARGET;
        }
        if (strcmp(row->checksum, m->sha256) != 0 &&
            (rc = changed_file(e, m, row, e->opts->dry_run, err)) < 0)
            return rc;
        int resume = row->status != SG_REGISTRY_APPLIED && m->mode == SG_MIGRATION_STATEMENTS
                         ? row->statements_done
                         : 0;
        if ((rc = add_step(res, m, SG_STEP_REVERT, resume, err)) < 0)
            return rc;
    }
    return 0;
}

/* Lints the files the plan runs; findings in files already applied are not
 * this run's business. */
static int lint_plan(const sg_apply_result *res, const sg_migration_set *set, sg_error *err)
{
    sg_lint_result lint = {0};
    int rc = sg_lint_set(&lint, set, err);
    size_t errors = 0;
    const sg_lint_finding *first = NULL;
    for (size_t i = 0; rc == 0 && i < lint.count; i++) {
        const sg_lint_finding *f = &lint.items[i];
        bool planned = false;
        for (size_t j = 0; j < res->count; j++)
            planned |= res->steps[j].migration->version == f->version;
        if (!planned || f->severity != SG_LINT_ERROR)
            continue;
        if (!first)
            first = f;
        errors++;
    }
    if (rc == 0 && errors) {
        sg_error_set(err, SG_E_LINT, "lint found %zu error%s in the migrations to apply", errors,
                     errors == 1 ? "" : "s");
        sg_error_detail(err, "%s:%u:%u: %s [%s]", first->file, first->line, first->column,
                        first->message, first->rule->id);
        sg_error_hint(err, "run shardgate lint on the directory for all findings");
        rc = SG_E_LINT;
    }
    sg_lint_result_clear(&lint);
    return rc;
}

/* The schema version once the done steps have run: the highest version
 * applied before, or by them, and not reverted by them. */
static int64_t version_after(const sg_apply_result *res, const sg_registry_rows *rows)
{
    int64_t v = 0;
    for (size_t i = 0; i < rows->count; i++) {
        const sg_registry_row *row = &rows->items[i];
        bool reverted = false;
        for (size_t j = 0; j < res->count; j++)
            reverted |= res->steps[j].done && res->steps[j].kind == SG_STEP_REVERT &&
                        res->steps[j].migration->version == row->version;
        if (row->status == SG_REGISTRY_APPLIED && !reverted && row->version > v)
            v = row->version;
    }
    for (size_t j = 0; j < res->count; j++)
        if (res->steps[j].done && res->steps[j].kind == SG_STEP_APPLY &&
            res->steps[j].migration->version > v)
            v = res->steps[j].migration->version;
    return v;
}

typedef int (*plan_fn)(engine *e, sg_apply_result *res, const sg_migration_set *set,
                       const sg_registry_rows *rows, sg_error *err);

static int run(sg_apply_result *out, PGconn *conn, const sg_migration_set *set,
               const sg_apply_options *opts, plan_fn plan, sg_error *err)
{
    sg_registry_rows rows = {0};
    engine e;
    bool locked = false;
    int rc;
    memset(out, 0, sizeof(*out));
    engine_init(&e, conn, opts);
    if (!opts->dry_run) {
        if ((rc = sg_registry_lock(conn, err)) < 0)
            goto done;
        locked = true;
        if ((rc = sg_registry_ensure(conn, err)) < 0)
            goto done;
    }
    /* read under the lock: what another runner did before is all there */
    if ((rc = sg_registry_read(&rows, conn, false, err)) < 0 ||
        (rc = plan(&e, out, set, &rows, err)) < 0)
        goto done;
    out->from_version = out->to_version = schema_version(&rows);
    if (plan == plan_migrate && !opts->skip_lint && (rc = lint_plan(out, set, err)) < 0)
        goto done;
    if (opts->dry_run)
        goto done;
    for (size_t i = 0; i < out->count; i++) {
        sg_apply_step *step = &out->steps[i];
        const sg_migration *m = step->migration;
        uint64_t start = sg_monotonic_ms();
        if ((rc = sg_interrupt_check(err)) < 0)
            goto done;
        sg_log(SG_LOG_INFO, "%s %s (%s)", step->kind == SG_STEP_APPLY ? "applying" : "reverting",
               m->file, sg_migration_mode_name(m->mode));
        rc = m->mode == SG_MIGRATION_STATEMENTS ? run_statements(&e, step, err)
                                                : run_transactional(&e, step, err);
        step->duration_ms = (int64_t)(sg_monotonic_ms() - start);
        if (rc < 0)
            goto done;
        step->done = true;
        out->to_version = version_after(out, &rows);
        sg_log(SG_LOG_INFO, "%s %s in %" PRId64 " ms",
               step->kind == SG_STEP_APPLY ? "applied" : "reverted", m->file, step->duration_ms);
    }
done:
    if (locked) {
        /* the session may be the caller's, which goes on using it */
        sg_error ignored = {0};
        rollback(&e);
        sg_pg_exec(conn, "RESET lock_timeout; RESET statement_timeout", &ignored);
        sg_registry_unlock(conn, &ignored);
    }
    sg_exec_watch_clear(&e.watch);
    sg_registry_rows_clear(&rows);
    return rc;
}

int sg_migrate(sg_apply_result *out, PGconn *conn, const sg_migration_set *set,
               const sg_apply_options *opts, sg_error *err)
{
    return run(out, conn, set, opts, plan_migrate, err);
}

int sg_revert(sg_apply_result *out, PGconn *conn, const sg_migration_set *set,
              const sg_apply_options *opts, sg_error *err)
{
    return run(out, conn, set, opts, plan_revert, err);
}

void sg_apply_result_clear(sg_apply_result *res)
{
    free(res->steps);
    memset(res, 0, sizeof(*res));
}
