/* The migration commands: lint, migrate, revert and status, on one database
 * and one directory of migration files. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/pg.h"
#include "pipeline/cli_impl.h"
#include "stages/apply.h"
#include "stages/lint.h"
#include "stages/migration.h"
#include "stages/status.h"

/* ---- lint ---- */

typedef struct lint_settings {
    common_settings common;
    const char *format;
} lint_settings;

static const sg_option lint_options[] = {
    {"format", SG_OPT_STRING, offsetof(lint_settings, format), "text|gcc",
     "text (with hints) or gcc (one line per finding, for editors and CI annotations)", 0, 0},
    COMMON_OPTIONS(lint_settings),
    {0}};

int sg_cli_lint(int argc, char **argv, sg_error *err)
{
    lint_settings s = {0};
    sg_strlist pos = {0};
    sg_migration_set *set = NULL;
    sg_lint_result res = {0};
    sg_lint_format format = SG_LINT_TEXT;
    int rc = sg_cli_parse(&s, lint_options, argc, argv, "lint DIR [--format text|gcc] [--json]",
                          &pos, &s.common, err);
    if (rc != 0 || (rc = sg_cli_expect_positionals(&pos, 1, "migrations directory", err)) < 0)
        goto done;
    if (s.format && strcmp(s.format, "gcc") == 0) {
        format = SG_LINT_GCC;
    } else if (s.format && strcmp(s.format, "text") != 0) {
        rc = sg_error_set(err, SG_E_USAGE, "--format must be text or gcc");
        goto done;
    }
    if ((rc = sg_migration_set_load(&set, pos.items[0], err)) < 0 ||
        (rc = sg_lint_set(&res, set, err)) < 0)
        goto done;
    if (s.common.json) {
        json_t *doc = sg_lint_to_json(&res);
        if (!doc) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            goto done;
        }
        rc = sg_cli_print_json(doc, err);
    } else {
        rc = sg_lint_print(stdout, &res, format, err);
    }
    if (rc == 0 && res.errors) {
        rc = sg_error_set(err, SG_E_LINT, "%zu error%s and %zu warning%s in %zu files", res.errors,
                          res.errors == 1 ? "" : "s", res.warnings, res.warnings == 1 ? "" : "s",
                          set->count);
        sg_error_hint(err, "fix them, or silence one with \"-- shardgate:allow RULE\" above its "
                           "statement when you know it is safe");
    } else if (rc == 0) {
        sg_log_info("%zu files: no errors, %zu warning%s", set->count, res.warnings,
                    res.warnings == 1 ? "" : "s");
    }
done:
    sg_lint_result_clear(&res);
    sg_migration_set_free(set);
    free(pos.items);
    return rc;
}

/* ---- migrate and revert ---- */

typedef struct apply_settings {
    common_settings common;
    const char *dsn;
    const char *migrations;
    const char *to;
    uint64_t lock_timeout_ms, statement_timeout_ms;
    int retries;
    bool dry_run, allow_changed;
    const char *run_id, *snapshot_id;
    const char *version; /* finalize */
    int chunk_rows;
    uint64_t chunk_time_ms, chunk_pause_ms, max_lag_ms, keep_old_ms; /* UNSET: the default */
} apply_settings;

#define UNSET UINT64_MAX

#define APPLY(field) offsetof(apply_settings, field)
static const sg_option apply_options[] = {
    {"dsn", SG_OPT_STRING, APPLY(dsn), "DSN", "database (libpq connection string or URI)", 0, 0},
    {"migrations", SG_OPT_STRING, APPLY(migrations), "DIR", "directory of NNNN_name.sql files", 0,
     0},
    {"to", SG_OPT_STRING, APPLY(to), "VERSION",
     "migrate: up to this version (default: latest); revert: down to it (0: all)", 0, 0},
    {"dry-run", SG_OPT_FLAG, APPLY(dry_run), NULL, "print the plan, change nothing", 0, 0},
    {"lock-timeout", SG_OPT_DURATION, APPLY(lock_timeout_ms), "DURATION",
     "wait at most this long for each lock (default 2s; a file's lock_timeout= wins)", 0, 0},
    {"statement-timeout", SG_OPT_DURATION, APPLY(statement_timeout_ms), "DURATION",
     "cancel a statement after this long (default: none)", 0, 0},
    {"retries", SG_OPT_INT, APPLY(retries), "N",
     "retries after a lock timeout, with backoff (default 10)", 0, 1000},
    {"allow-changed", SG_OPT_FLAG, APPLY(allow_changed), NULL,
     "go on when an applied file has changed (logged as an event)", 0, 0},
    {"run-id", SG_OPT_STRING, APPLY(run_id), "ID", "run id recorded in the registry", 0, 0},
    {"snapshot-id", SG_OPT_STRING, APPLY(snapshot_id), "ID",
     "snapshot taken before this run, recorded in the registry", 0, 0},
    {"chunk-rows", SG_OPT_INT, APPLY(chunk_rows), "N",
     "blue-green: rows of the first copy chunk, adapted to --chunk-time (default 5000)", 1,
     10000000},
    {"chunk-time", SG_OPT_DURATION, APPLY(chunk_time_ms), "DURATION",
     "blue-green: the time a copy chunk should take (default 50ms; 0: fixed size)", 0, 0},
    {"chunk-pause", SG_OPT_DURATION, APPLY(chunk_pause_ms), "DURATION",
     "blue-green: pause between copy chunks (default 0)", 0, 0},
    {"max-lag", SG_OPT_DURATION, APPLY(max_lag_ms), "DURATION",
     "blue-green: pause the copy while a standby replays further behind (default 1s; 0: never)", 0,
     0},
    {"keep-old", SG_OPT_DURATION, APPLY(keep_old_ms), "DURATION",
     "blue-green: keep the old table in sync this long after the cut-over (default 24h)", 0, 0},
    COMMON_OPTIONS(apply_settings),
    {0}};

static const sg_option finalize_options[] = {
    {"dsn", SG_OPT_STRING, APPLY(dsn), "DSN", "database (libpq connection string or URI)", 0, 0},
    {"migrations", SG_OPT_STRING, APPLY(migrations), "DIR", "directory of NNNN_name.sql files", 0,
     0},
    {"version", SG_OPT_STRING, APPLY(version), "VERSION",
     "the blue-green change to finalize (default: every one whose old table is kept)", 0, 0},
    {"dry-run", SG_OPT_FLAG, APPLY(dry_run), NULL, "print the plan, change nothing", 0, 0},
    {"lock-timeout", SG_OPT_DURATION, APPLY(lock_timeout_ms), "DURATION",
     "wait at most this long for each lock (default 2s)", 0, 0},
    {"retries", SG_OPT_INT, APPLY(retries), "N",
     "retries after a lock timeout, with backoff (default 10)", 0, 1000},
    COMMON_OPTIONS(apply_settings),
    {0}};

typedef enum { ACTION_MIGRATE, ACTION_REVERT, ACTION_FINALIZE } apply_action;

static const char *const action_names[] = {"migrate", "revert", "finalize"};

static const char *step_action(sg_step_kind kind, bool done)
{
    switch (kind) {
    case SG_STEP_APPLY:
        return done ? "applied" : "apply";
    case SG_STEP_REVERT:
        return done ? "reverted" : "revert";
    case SG_STEP_FINALIZE:
        break;
    }
    return done ? "finalized" : "finalize";
}

static int parse_version(int64_t *out, const char *text, sg_error *err)
{
    char *end = NULL;
    long long v;
    if (strcmp(text, "latest") == 0) {
        *out = SG_APPLY_LATEST;
        return 0;
    }
    v = strtoll(text, &end, 10);
    if (!*text || *end || v < 0)
        return sg_error_set(err, SG_E_USAGE, "--to must be a version number or latest, not \"%s\"",
                            text);
    *out = v;
    return 0;
}

static json_t *steps_json(const sg_apply_result *res, bool dry_run)
{
    json_t *steps = json_array();
    for (size_t i = 0; steps && i < res->count; i++) {
        const sg_apply_step *st = &res->steps[i];
        const sg_migration *m = st->migration;
        const sg_migration_section *sec = st->kind == SG_STEP_APPLY ? &m->up : &m->down;
        json_t *o = json_pack(
            "{s:I, s:s, s:s, s:s, s:I, s:i, s:i, s:I, s:b}", "version", (json_int_t)m->version,
            "file", m->file, "action", step_action(st->kind, false), "mode",
            sg_migration_mode_name(m->mode), "statements",
            (json_int_t)(sec->script && st->kind != SG_STEP_FINALIZE
                             ? sg_sql_script_count(sec->script)
                             : 0),
            "resume_from", st->resume_from, "attempts", st->attempts, "duration_ms",
            (json_int_t)st->duration_ms, "done", !dry_run && st->done);
        if (o && st->lock_ms >= 0)
            json_object_set_new(o, "lock_ms", json_real(st->lock_ms));
        json_array_append_new(steps, o);
    }
    return steps;
}

static void print_steps(const sg_apply_result *res, bool dry_run)
{
    for (size_t i = 0; i < res->count; i++) {
        const sg_apply_step *st = &res->steps[i];
        const sg_migration *m = st->migration;
        const sg_migration_section *sec = st->kind == SG_STEP_APPLY ? &m->up : &m->down;
        const char *verb = step_action(st->kind, false);
        size_t n =
            sec->script && st->kind != SG_STEP_FINALIZE ? sg_sql_script_count(sec->script) : 0;
        if (dry_run || !st->done) {
            char what[32];
            snprintf(what, sizeof(what), "%s %s", dry_run ? "would" : "did not", verb);
            printf("%-14s %s (%s, %zu statement%s%s)\n", what, m->file,
                   sg_migration_mode_name(m->mode), n, n == 1 ? "" : "s",
                   st->resume_from ? ", resuming" : "");
        } else {
            printf("%-8s %s  %" PRId64 " ms%s", step_action(st->kind, true), m->file,
                   st->duration_ms, st->attempts > 1 ? "  (after lock retries)" : "");
            if (st->lock_ms >= 0)
                printf("  (table locked %.1f ms)", st->lock_ms);
            printf("\n");
        }
    }
}

static void set_if(uint64_t *out, uint64_t value)
{
    if (value != UNSET)
        *out = value;
}

static const char *const usages[] = {
    "migrate --dsn DSN --migrations DIR [--to VERSION] [--dry-run]",
    "revert --dsn DSN --migrations DIR --to VERSION [--dry-run]",
    "finalize --dsn DSN --migrations DIR [--version VERSION] [--dry-run]",
};

static int run_apply(int argc, char **argv, apply_action action, sg_error *err)
{
    bool revert = action == ACTION_REVERT;
    apply_settings s = {.retries = -1,
                        .chunk_time_ms = UNSET,
                        .chunk_pause_ms = UNSET,
                        .max_lag_ms = UNSET,
                        .keep_old_ms = UNSET};
    sg_strlist pos = {0};
    sg_migration_set *set = NULL;
    sg_apply_result res = {0};
    sg_apply_options opts;
    PGconn *conn = NULL;
    int rc = sg_cli_parse(&s, action == ACTION_FINALIZE ? finalize_options : apply_options, argc,
                          argv, usages[action], &pos, &s.common, err);
    if (rc != 0 || (rc = sg_cli_expect_positionals(&pos, 0, "", err)) < 0)
        goto done;
    if (!s.dsn || !s.migrations) {
        rc = sg_error_set(err, SG_E_USAGE, "--dsn and --migrations are required");
        goto done;
    }
    if (revert && !s.to) {
        rc = sg_error_set(err, SG_E_USAGE, "--to VERSION is required (0 reverts everything)");
        goto done;
    }
    sg_apply_options_init(&opts, s.dsn);
    if (s.to && (rc = parse_version(&opts.target, s.to, err)) < 0)
        goto done;
    if (s.version && (rc = parse_version(&opts.target, s.version, err)) < 0)
        goto done;
    if (s.chunk_rows > 0)
        opts.bluegreen.chunk_rows = (uint64_t)s.chunk_rows;
    set_if(&opts.bluegreen.chunk_time_ms, s.chunk_time_ms);
    set_if(&opts.bluegreen.chunk_pause_ms, s.chunk_pause_ms);
    set_if(&opts.bluegreen.max_lag_ms, s.max_lag_ms);
    set_if(&opts.bluegreen.keep_old_ms, s.keep_old_ms);
    if (s.lock_timeout_ms)
        opts.lock_timeout_ms = s.lock_timeout_ms;
    opts.statement_timeout_ms = s.statement_timeout_ms;
    if (s.retries >= 0)
        opts.retries = (unsigned)s.retries;
    opts.dry_run = s.dry_run;
    opts.allow_changed = s.allow_changed;
    opts.actor.run_id = s.run_id;
    opts.actor.snapshot_id = s.snapshot_id;
    if ((rc = sg_migration_set_load(&set, s.migrations, err)) < 0 ||
        (rc = sg_pg_connect(&conn, s.dsn, "database", err)) < 0)
        goto done;
    rc = action == ACTION_REVERT     ? sg_revert(&res, conn, set, &opts, err)
         : action == ACTION_FINALIZE ? sg_finalize(&res, conn, set, &opts, err)
                                     : sg_migrate(&res, conn, set, &opts, err);
    /* what ran before a failure is part of the result too */
    if (s.common.json) {
        json_t *doc = json_pack("{s:s, s:b, s:I, s:I, s:o, s:b}", "action", action_names[action],
                                "dry_run", s.dry_run, "from_version", (json_int_t)res.from_version,
                                "to_version", (json_int_t)res.to_version, "steps",
                                steps_json(&res, s.dry_run), "ok", rc == 0);
        sg_error print_err = {0};
        if (sg_cli_print_json(doc, &print_err) < 0 && rc == 0)
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
    } else {
        print_steps(&res, s.dry_run);
        if (rc == 0 && res.count == 0 && action == ACTION_FINALIZE)
            printf("nothing to finalize: no blue-green change keeps an old table\n");
        else if (rc == 0 && res.count == 0)
            printf("nothing to %s: schema version %" PRId64 "\n", revert ? "revert" : "apply",
                   res.from_version);
        else if (rc == 0 && !s.dry_run && action != ACTION_FINALIZE)
            printf("schema version %" PRId64 " -> %" PRId64 "\n", res.from_version, res.to_version);
    }
done:
    PQfinish(conn);
    sg_apply_result_clear(&res);
    sg_migration_set_free(set);
    free(pos.items);
    return rc;
}

int sg_cli_migrate(int argc, char **argv, sg_error *err)
{
    return run_apply(argc, argv, ACTION_MIGRATE, err);
}

int sg_cli_revert(int argc, char **argv, sg_error *err)
{
    return run_apply(argc, argv, ACTION_REVERT, err);
}

int sg_cli_finalize(int argc, char **argv, sg_error *err)
{
    return run_apply(argc, argv, ACTION_FINALIZE, err);
}

/* ---- status ---- */

typedef struct status_settings {
    common_settings common;
    const char *dsn;
    const char *migrations;
    const char *config;
    bool check;
} status_settings;

static const sg_option status_options[] = {
    {"dsn", SG_OPT_STRING, offsetof(status_settings, dsn), "DSN", "database", 0, 0},
    {"migrations", SG_OPT_STRING, offsetof(status_settings, migrations), "DIR",
     "directory of NNNN_name.sql files", 0, 0},
    {"config", SG_OPT_STRING, offsetof(status_settings, config), "PIPELINE.yaml",
     "every shard of this pipeline's fleet, instead of one database", 0, 0},
    {"check", SG_OPT_FLAG, offsetof(status_settings, check), NULL,
     "exit with status 14 on drift, or a changed, missing, failed or partial migration", 0, 0},
    COMMON_OPTIONS(status_settings),
    {0}};

static const char change_marks[] = {'+', '-', '~'};

static json_t *status_json(const sg_status *st)
{
    json_t *entries = json_array(), *changes = json_array();
    for (size_t i = 0; entries && i < st->count; i++) {
        const sg_status_entry *e = &st->entries[i];
        json_t *o = json_pack("{s:I, s:s, s:s}", "version", (json_int_t)e->version, "name", e->name,
                              "state", sg_migration_state_name(e->state));
        if (o && e->file)
            json_object_set_new(o, "file", json_string(e->file->file));
        if (o && e->row) {
            json_object_set_new(o, "applied_checksum", json_string(e->row->checksum));
            json_object_set_new(o, "started_at", json_string(e->row->started_at));
            if (e->row->finished_at)
                json_object_set_new(o, "finished_at", json_string(e->row->finished_at));
            if (e->row->duration_ms >= 0)
                json_object_set_new(o, "duration_ms", json_integer(e->row->duration_ms));
            json_object_set_new(o, "statements_done", json_integer(e->row->statements_done));
            json_object_set_new(o, "run_id",
                                e->row->run_id ? json_string(e->row->run_id) : json_null());
        }
        if (o && e->file && e->state == SG_STATE_CHANGED)
            json_object_set_new(o, "file_checksum", json_string(e->file->sha256));
        json_array_append_new(entries, o);
    }
    for (size_t i = 0; changes && i < st->change_count; i++) {
        const sg_schema_change *c = &st->changes[i];
        json_array_append_new(changes,
                              json_pack("{s:s, s:s, s:s?, s:s?}", "change",
                                        sg_schema_change_kind_name(c->kind), "object", c->object,
                                        "before", c->before, "after", c->after));
    }
    json_t *bluegreen = json_array();
    for (size_t i = 0; bluegreen && i < st->bluegreen.count; i++) {
        const sg_bluegreen_state *b = &st->bluegreen.items[i];
        json_t *o = json_pack(
            "{s:I, s:s, s:s, s:s, s:I, s:b}", "version", (json_int_t)b->version, "schema",
            b->schema, "table", b->table, "step", sg_bluegreen_step_name(b->step), "rows_copied",
            (json_int_t)b->rows_copied, "window_open", sg_bluegreen_window_open(b));
        if (o && b->lock_ms >= 0)
            json_object_set_new(o, "lock_ms", json_real(b->lock_ms));
        if (o && b->keep_until)
            json_object_set_new(o, "keep_until", json_string(b->keep_until));
        json_array_append_new(bluegreen, o);
    }
    return json_pack("{s:b, s:I, s:o, s:{s:I, s:I, s:I, s:I, s:I}, s:{s:s, s:s?, s:I, s:b, s:o}, "
                     "s:o}",
                     "registry", st->registry_exists, "schema_version",
                     (json_int_t)st->schema_version, "migrations", entries, "counts", "applied",
                     (json_int_t)st->applied, "pending", (json_int_t)st->pending, "changed",
                     (json_int_t)st->changed, "missing", (json_int_t)st->missing, "failed",
                     (json_int_t)st->failed, "schema", "fingerprint", st->live_fingerprint,
                     "recorded_fingerprint", st->has_baseline ? st->baseline_fingerprint : NULL,
                     "recorded_after_version", (json_int_t)st->baseline_version, "drifted",
                     st->drifted, "changes", changes, "bluegreen",
                     bluegreen ? bluegreen : json_array());
}

/* Blue-green changes that are not finalized: under way, or keeping their
 * old table for a rollback. */
static void print_bluegreen(const sg_status *st)
{
    for (size_t i = 0; i < st->bluegreen.count; i++) {
        const sg_bluegreen_state *b = &st->bluegreen.items[i];
        if (b->step == SG_BLUEGREEN_FINALIZED)
            continue;
        printf("blue-green %" PRId64 " %s.%s: ", b->version, b->schema, b->table);
        if (sg_bluegreen_window_open(b))
            printf("cut over (table locked %.1f ms); the old table is kept%s%s%s: revert swaps "
                   "it back, finalize drops it\n",
                   b->lock_ms, b->window_closed ? " (its window ended at " : " until ",
                   b->keep_until ? b->keep_until : "", b->window_closed ? ")" : "");
        else
            printf("%s, %" PRId64 " rows copied: migrate goes on, revert abandons it\n",
                   sg_bluegreen_step_name(b->step), b->rows_copied);
    }
}

static void print_status(const sg_status *st)
{
    printf("schema version %" PRId64 ": %zu applied, %zu pending", st->schema_version, st->applied,
           st->pending);
    if (st->changed)
        printf(", %zu changed", st->changed);
    if (st->missing)
        printf(", %zu missing", st->missing);
    if (st->failed)
        printf(", %zu failed or unfinished", st->failed);
    printf("\n\n%-8s %-10s %-32s %-21s %s\n", "VERSION", "STATE", "NAME", "APPLIED", "DURATION");
    for (size_t i = 0; i < st->count; i++) {
        const sg_status_entry *e = &st->entries[i];
        char duration[32] = "";
        if (e->row && e->row->duration_ms >= 0)
            snprintf(duration, sizeof(duration), "%" PRId64 " ms", e->row->duration_ms);
        else if (e->row && e->state != SG_STATE_FAILED)
            snprintf(duration, sizeof(duration), "%d statements done", e->row->statements_done);
        printf("%-8" PRId64 " %-10s %-32s %-21s %s\n", e->version,
               sg_migration_state_name(e->state), e->name,
               e->row && e->row->finished_at ? e->row->finished_at : "", duration);
    }
    printf("\n");
    if (!st->has_baseline) {
        printf("schema: fingerprint %.16s (no fingerprint recorded yet to compare with)\n",
               st->live_fingerprint);
        return;
    }
    if (!st->drifted) {
        printf("schema: no drift (fingerprint %.16s, as recorded after version %" PRId64 ")\n",
               st->live_fingerprint, st->baseline_version);
        return;
    }
    printf("schema: DRIFTED since version %" PRId64 " (recorded %.16s, live %.16s); %zu object%s "
           "differ:\n",
           st->baseline_version, st->baseline_fingerprint, st->live_fingerprint, st->change_count,
           st->change_count == 1 ? "" : "s");
    for (size_t i = 0; i < st->change_count; i++) {
        const sg_schema_change *c = &st->changes[i];
        if (c->kind == SG_SCHEMA_CHANGED)
            printf("  ~ %s\n      was: %s\n      now: %s\n", c->object, c->before ? c->before : "",
                   c->after ? c->after : "");
        else
            printf("  %c %s%s%s\n", change_marks[c->kind], c->object,
                   (c->kind == SG_SCHEMA_ADDED ? c->after : c->before) ? "  " : "",
                   (c->kind == SG_SCHEMA_ADDED ? c->after : c->before)
                       ? (c->kind == SG_SCHEMA_ADDED ? c->after : c->before)
                       : "");
    }
}

int sg_cli_status(int argc, char **argv, sg_error *err)
{
    status_settings s = {0};
    sg_strlist pos = {0};
    sg_migration_set *set = NULL;
    sg_status st = {0};
    PGconn *conn = NULL;
    int rc = sg_cli_parse(
        &s, status_options, argc, argv,
        "status --dsn DSN --migrations DIR | --config PIPELINE.yaml [--check] [--json]", &pos,
        &s.common, err);
    if (rc != 0 || (rc = sg_cli_expect_positionals(&pos, 0, "", err)) < 0)
        goto done;
    if (s.config) {
        rc = s.dsn || s.migrations
                 ? sg_error_set(err, SG_E_USAGE,
                                "--config and --dsn/--migrations exclude each other")
                 : sg_cli_fleet_status(s.config, s.common.json, s.check, err);
        goto done;
    }
    if (!s.dsn || !s.migrations) {
        rc = sg_error_set(err, SG_E_USAGE, "--dsn and --migrations are required");
        goto done;
    }
    if ((rc = sg_migration_set_load(&set, s.migrations, err)) < 0 ||
        (rc = sg_pg_connect(&conn, s.dsn, "database", err)) < 0 ||
        (rc = sg_status_read(&st, conn, set, err)) < 0)
        goto done;
    if (s.common.json)
        rc = sg_cli_print_json(status_json(&st), err);
    else {
        print_status(&st);
        print_bluegreen(&st);
    }
    if (rc == 0 && s.check && (st.drifted || st.changed || st.missing || st.failed)) {
        rc = sg_error_set(err, SG_E_MISMATCH, "the database does not match its migrations");
        if (st.drifted)
            sg_error_detail(err, "the schema drifted since version %" PRId64, st.baseline_version);
        if (st.changed || st.missing || st.failed)
            sg_error_detail(err, "%zu changed, %zu missing, %zu failed or unfinished migrations",
                            st.changed, st.missing, st.failed);
    }
done:
    sg_status_clear(&st);
    PQfinish(conn);
    sg_migration_set_free(set);
    free(pos.items);
    return rc;
}
