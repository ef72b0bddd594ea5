#include "stages/apply.h"
#include "stages/apply_impl.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/interrupt.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "stages/exec.h"
#include "stages/fingerprint.h"
#include "stages/lint.h"

void sg_apply_options_init(sg_apply_options *opts, const char *dsn)
{
    *opts = (sg_apply_options){
        .dsn = dsn,
        .target = SG_APPLY_LATEST,
        .lock_timeout_ms = 0, /* the statement's default, or the cut-over's */
        .retries = 10,
        /* a lock is usually held by a transaction that ends within seconds;
         * ten retries spread over about a minute ride out most of them */
        .backoff = {200, 10000, UINT64_MAX, UINT32_MAX},
    };
    sg_bluegreen_options_init(&opts->bluegreen);
}

typedef sg_apply_engine engine;

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
        sg_run_id_new(e->run_id);
        e->actor.run_id = e->run_id;
    }
}

/* ---- events ---- */

void sg_apply_event(sg_apply_engine *e, const sg_migration *m, const char *action, json_t *detail)
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

json_t *sg_apply_error_detail(const sg_error *failure)
{
    sg_json_init();
    json_t *d =
        json_pack("{s:s, s:s}", "error", failure->message, "class", sg_error_class(failure->code));
    if (d && failure->sqlstate[0])
        json_object_set_new(d, "sqlstate", json_string(failure->sqlstate));
    return d;
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
        (sg_apply_step){.migration = m, .kind = kind, .resume_from = resume_from, .lock_ms = -1};
    return 0;
}

/* A file applied with other content than it has now. */
static int changed_file(engine *e, const sg_migration *m, const sg_registry_row *row, bool dry_run,
                        sg_error *err)
{
    if (e->opts->allow_changed) {
        sg_log(SG_LOG_WARNING, "%s changed since it was applied (--allow-changed)", m->file);
        if (!dry_run)
            sg_apply_event(e, m, "changed-allowed",
                           json_pack("{s:s, s:s}", "applied_checksum", row->checksum,
                                     "file_checksum", m->sha256));
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

/* A transaction=off file that a run left part way: some statements done, or
 * one started outside a transaction. Decided from the row, not the file,
 * which may have been edited since. */
static bool is_partial(const sg_registry_row *row)
{
    return row->status != SG_REGISTRY_APPLIED && strcmp(row->mode, "statements") == 0 &&
           (row->statements_done > 0 || row->statement_started > 0);
}

/* How a step resumes a partial row: after its done statements, provided the
 * file still starts with them. Only the statements not run yet may have been
 * edited (the usual fix of a failed statement); then the file's new checksum
 * is recorded. */
static int plan_resume(engine *e, sg_apply_step *step, const sg_registry_row *row,
                       const sg_sql_script *section, sg_error *err)
{
    const sg_migration *m = step->migration;
    char digest[SG_SHA256_HEX_LEN];
    if (m->mode != SG_MIGRATION_STATEMENTS) {
        sg_error_set(err, SG_E_TARGET,
                     "%s was started statement by statement (%d done), but it no longer says "
                     "transaction=off",
                     m->file, row->statements_done);
        sg_error_hint(err, "put the directive back to finish it");
        return SG_E_TARGET;
    }
    step->resume_from = row->statements_done;
    step->may_have_run = row->statement_started == row->statements_done + 1;
    if (strcmp(row->checksum, m->sha256) == 0)
        return 0;
    sg_sql_script_digest(section, (size_t)row->statements_done, digest);
    if (row->done_checksum[0] && strcmp(digest, row->done_checksum) == 0 &&
        (!section || sg_sql_script_count(section) >= (size_t)row->statements_done)) {
        sg_log(SG_LOG_WARNING,
               "%s changed after %d of its statements ran; those are unchanged, "
               "so it resumes with the edited rest",
               m->file, row->statements_done);
        if (!e->opts->dry_run)
            sg_apply_event(e, m, "changed-resumed",
                           json_pack("{s:s, s:s, s:i}", "checksum_then", row->checksum,
                                     "checksum_now", m->sha256, "statements_done",
                                     row->statements_done));
        step->edited = true;
        return 0;
    }
    sg_error_set(err, SG_E_MISMATCH,
                 "%s changed in the %d statements already run: cannot resume it", m->file,
                 row->statements_done);
    sg_error_detail(err, "checksum then: %s, now: %s", row->checksum, m->sha256);
    sg_error_hint(err, "restore those statements as they were (edit only the ones after them) "
                       "and run again");
    return SG_E_MISMATCH;
}

static bool planned(const sg_apply_result *res, int64_t version, sg_step_kind kind)
{
    for (size_t i = 0; i < res->count; i++)
        if (res->steps[i].migration->version == version && res->steps[i].kind == kind)
            return true;
    return false;
}

/* A blue-green change to a table whose earlier change still keeps its old
 * table (applied before, or earlier in this plan): that window ends first,
 * one change per table at a time. A revert past both still works: the
 * earlier one then runs its down section as a change of its own. */
static int plan_same_table(engine *e, sg_apply_result *res, const sg_migration_set *set,
                           const sg_migration *m, sg_error *err)
{
    size_t planned_count = res->count;
    for (size_t i = 0; i < e->bluegreen.count + planned_count; i++) {
        const sg_migration *earlier = NULL;
        if (i < e->bluegreen.count) {
            const sg_bluegreen_state *st = &e->bluegreen.items[i];
            char *table = sg_asprintf("%s.%s", st->schema, st->table);
            if (sg_bluegreen_window_open(st) && table && strcmp(table, m->bluegreen_table) == 0)
                earlier = sg_migration_set_find(set, st->version);
            free(table);
        } else {
            const sg_apply_step *st = &res->steps[i - e->bluegreen.count];
            if (st->kind == SG_STEP_APPLY && st->migration->mode == SG_MIGRATION_BLUEGREEN &&
                strcmp(st->migration->bluegreen_table, m->bluegreen_table) == 0)
                earlier = st->migration;
        }
        if (!earlier || earlier->version == m->version ||
            planned(res, earlier->version, SG_STEP_FINALIZE))
            continue;
        sg_log(SG_LOG_INFO, "%s changes %s too: %s will be finalized first", m->file,
               m->bluegreen_table, earlier->file);
        int rc = add_step(res, earlier, SG_STEP_FINALIZE, 0, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Blue-green changes whose rollback window has ended are finalized before
 * anything else runs: their old tables have been kept long enough. */
/* Whether a blue-green change's migration is applied: one still finishing
 * (its verify section, its row) keeps its old table until it is. */
static bool finished(const sg_registry_rows *rows, int64_t version)
{
    const sg_registry_row *row = sg_registry_rows_find(rows, version);
    return row && row->status == SG_REGISTRY_APPLIED;
}

static int plan_closed_windows(engine *e, sg_apply_result *res, const sg_migration_set *set,
                               const sg_registry_rows *rows, sg_error *err)
{
    for (size_t i = 0; i < e->bluegreen.count; i++) {
        const sg_bluegreen_state *st = &e->bluegreen.items[i];
        const sg_migration *m = sg_migration_set_find(set, st->version);
        if (st->step != SG_BLUEGREEN_CUT_OVER || !st->window_closed || !finished(rows, st->version))
            continue;
        if (!m) {
            sg_log(SG_LOG_WARNING,
                   "the rollback window of version %" PRId64 " has ended, but its file is not in "
                   "%s: its old table stays until it is finalized",
                   st->version, set->dir);
            continue;
        }
        int rc = add_step(res, m, SG_STEP_FINALIZE, 0, err);
        if (rc < 0)
            return rc;
    }
    return 0;
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
            sg_error_hint(err, "finish it with shardgate revert --to %" PRId64, row->version - 1);
            return SG_E_TARGET;
        }
        if (!m && row->status == SG_REGISTRY_APPLIED) {
            sg_log(SG_LOG_WARNING, "version %" PRId64 " (%s) is applied, but its file is not in %s",
                   row->version, row->name, set->dir);
        } else if (!m && !is_partial(row)) {
            /* a failed attempt that left nothing: its file may go */
            sg_log(SG_LOG_WARNING, "version %" PRId64 " (%s) failed before and its file is gone",
                   row->version, row->name);
        } else if (!m) {
            sg_error_set(err, SG_E_NOT_FOUND,
                         "version %" PRId64 " (%s) is partly applied (%d statements), but its file "
                         "is not in %s",
                         row->version, row->name, row->statements_done, set->dir);
            sg_error_hint(err, "put the file back to finish it");
            return SG_E_NOT_FOUND;
        } else if (row->status == SG_REGISTRY_APPLIED && strcmp(row->checksum, m->sha256) != 0 &&
                   (rc = changed_file(e, m, row, e->opts->dry_run, err)) < 0) {
            return rc;
        }
    }
    if ((rc = plan_closed_windows(e, res, set, rows, err)) < 0)
        return rc;
    if (e->opts->target != SG_APPLY_LATEST && e->opts->target > 0 &&
        !sg_migration_set_find(set, e->opts->target))
        sg_log(SG_LOG_WARNING, "no migration has version %" PRId64 "; going up to it",
               e->opts->target);
    if (e->opts->target < applied_max)
        sg_log(SG_LOG_WARNING,
               "--to %" PRId64 " is below the schema version %" PRId64
               ": migrate only goes up (shardgate revert goes down)",
               e->opts->target, applied_max);
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
        if (m->mode == SG_MIGRATION_BLUEGREEN && (rc = plan_same_table(e, res, set, m, err)) < 0)
            return rc;
        if ((rc = add_step(res, m, SG_STEP_APPLY, 0, err)) < 0)
            return rc;
        if (row && is_partial(row) &&
            (rc = plan_resume(e, &res->steps[res->count - 1], row, m->up.script, err)) < 0)
            return rc;
    }
    return 0;
}

static int plan_finalize(engine *e, sg_apply_result *res, const sg_migration_set *set,
                         const sg_registry_rows *rows, sg_error *err)
{
    for (size_t i = 0; i < e->bluegreen.count; i++) {
        const sg_bluegreen_state *st = &e->bluegreen.items[i];
        if (st->step != SG_BLUEGREEN_CUT_OVER || !finished(rows, st->version) ||
            (e->opts->target != SG_APPLY_LATEST && st->version != e->opts->target))
            continue;
        const sg_migration *m = sg_migration_set_find(set, st->version);
        if (!m) {
            sg_error_set(err, SG_E_NOT_FOUND,
                         "cannot finalize version %" PRId64 ": its file is not in %s", st->version,
                         set->dir);
            return SG_E_NOT_FOUND;
        }
        int rc = add_step(res, m, SG_STEP_FINALIZE, 0, err);
        if (rc < 0)
            return rc;
    }
    if (res->count == 0 && e->opts->target != SG_APPLY_LATEST) {
        sg_error_set(err, SG_E_NOT_FOUND,
                     "version %" PRId64 " has no blue-green change waiting to be finalized",
                     e->opts->target);
        return SG_E_NOT_FOUND;
    }
    return 0;
}

static int plan_revert(engine *e, sg_apply_result *res, const sg_migration_set *set,
                       const sg_registry_rows *rows, sg_error *err)
{
    int rc;
    for (size_t i = rows->count; i-- > 0;) {
        const sg_registry_row *row = &rows->items[i];
        bool reverting =
            row->status == SG_REGISTRY_REVERTING || row->status == SG_REGISTRY_REVERT_FAILED;
        if (row->version <= e->opts->target)
            break;
        const sg_bluegreen_state *bg = sg_bluegreen_states_find(&e->bluegreen, row->version);
        bool bluegreen = strcmp(row->mode, "bluegreen") == 0;
        if (bluegreen && (row->status == SG_REGISTRY_FAILED ||
                          row->status == SG_REGISTRY_APPLYING || reverting)) {
            const sg_migration *m = sg_migration_set_find(set, row->version);
            if (!bg && !reverting)
                continue; /* nothing of it is on the database */
            if (!m) {
                sg_error_set(err, SG_E_NOT_FOUND,
                             "cannot roll back version %" PRId64 " (%s): its file is not in %s",
                             row->version, row->name, set->dir);
                return SG_E_NOT_FOUND;
            }
            if ((rc = add_step(res, m, SG_STEP_REVERT, 0, err)) < 0)
                return rc;
            continue;
        }
        if (row->status == SG_REGISTRY_FAILED || row->status == SG_REGISTRY_APPLYING) {
            if (!is_partial(row))
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
        /* in its rollback window, a blue-green change swaps back: no down
         * section needed */
        bool window = bluegreen && bg && sg_bluegreen_window_open(bg);
        if (!window && (!m->down.script || m->irreversible)) {
            sg_error_set(err, SG_E_TARGET, "cannot revert %s: it is irreversible", m->file);
            sg_error_hint(err, "nothing was reverted; restore a snapshot to go back further");
            return SG_E_TARGET;
        }
        if ((rc = add_step(res, m, SG_STEP_REVERT, 0, err)) < 0)
            return rc;
        if (reverting && is_partial(row)) {
            if ((rc = plan_resume(e, &res->steps[res->count - 1], row, m->down.script, err)) < 0)
                return rc;
        } else if (strcmp(row->checksum, m->sha256) != 0 &&
                   (rc = changed_file(e, m, row, e->opts->dry_run, err)) < 0) {
            return rc;
        }
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

static const char *step_verb(sg_step_kind kind, bool done)
{
    switch (kind) {
    case SG_STEP_APPLY:
        return done ? "applied" : "applying";
    case SG_STEP_REVERT:
        return done ? "reverted" : "reverting";
    case SG_STEP_FINALIZE:
        break;
    }
    return done ? "finalized" : "finalizing";
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
        (rc = sg_bluegreen_states_read(&e.bluegreen, conn, err)) < 0 ||
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
        sg_log(SG_LOG_INFO, "%s %s (%s)", step_verb(step->kind, false), m->file,
               sg_migration_mode_name(m->mode));
        if ((rc = sg_apply_prepare_session(&e, err)) == 0)
            rc = sg_apply_run_file(&e, step, err);
        step->duration_ms = (int64_t)(sg_monotonic_ms() - start);
        if (rc < 0)
            goto done;
        step->done = true;
        out->to_version = version_after(out, &rows);
        sg_log(SG_LOG_INFO, "%s %s in %" PRId64 " ms", step_verb(step->kind, true), m->file,
               step->duration_ms);
    }
done:
    if (locked && PQstatus(conn) == CONNECTION_OK) {
        /* the session may be the caller's, which goes on using it */
        sg_error ignored = {0};
        if (PQtransactionStatus(conn) != PQTRANS_IDLE)
            sg_pg_exec(conn, "ROLLBACK", &ignored);
        sg_pg_exec(conn, "RESET ALL", &ignored);
        sg_registry_unlock(conn, &ignored);
    }
    sg_exec_watch_clear(&e.watch);
    sg_bluegreen_states_clear(&e.bluegreen);
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

int sg_finalize(sg_apply_result *out, PGconn *conn, const sg_migration_set *set,
                const sg_apply_options *opts, sg_error *err)
{
    return run(out, conn, set, opts, plan_finalize, err);
}

void sg_apply_result_clear(sg_apply_result *res)
{
    free(res->steps);
    memset(res, 0, sizeof(*res));
}
