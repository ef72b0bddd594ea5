/* The pipeline commands: plan (what a run would do, touching nothing), run,
 * resume and rollback. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/layout.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "common/retry.h"
#include "pipeline/cli_impl.h"
#include "pipeline/config.h"
#include "pipeline/journal.h"
#include "pipeline/report.h"
#include "pipeline/run.h"
#include "stages/apply.h"
#include "stages/lint.h"
#include "stages/migration.h"
#include "restore/access.h"
#include "stages/registry.h"
#include "stages/status.h"

/* "K/N" into k and n, 1 <= k <= n. */
static int parse_partition(unsigned *k, unsigned *n, const char *text, sg_error *err)
{
    char *end = NULL;
    unsigned long a = strtoul(text, &end, 10), b;
    if (end == text || *end != '/')
        goto bad;
    const char *second = end + 1;
    b = strtoul(second, &end, 10);
    if (end == second || *end || a < 1 || b < 1 || a > b || b > 10000)
        goto bad;
    *k = (unsigned)a;
    *n = (unsigned)b;
    return 0;
bad:
    return sg_error_set(err, SG_E_USAGE, "--partition must be K/N with 1 <= K <= N, not \"%s\"",
                        text);
}

/* The pipeline file, its migration set (linted) and the partition's shards:
 * what every pipeline command starts from. */
typedef struct pipeline {
    sg_pipeline_config cfg;
    sg_migration_set *set;
    sg_lint_result lint;
    bool *selected;
} pipeline;

static int pipeline_load(pipeline *p, const char *file, const char *partition, sg_error *err)
{
    unsigned k = 1, n = 1;
    int rc;
    memset(p, 0, sizeof(*p));
    if ((partition && (rc = parse_partition(&k, &n, partition, err)) < 0) ||
        (rc = sg_pipeline_config_load(&p->cfg, file, err)) < 0 ||
        (rc = sg_migration_set_load(&p->set, p->cfg.migrations, err)) < 0 ||
        (rc = sg_lint_set(&p->lint, p->set, err)) < 0)
        return rc;
    if (!(p->selected = sg_calloc(p->cfg.nfleet, sizeof(*p->selected))))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    return sg_pipeline_partition(p->selected, &p->cfg, k, n, err);
}

static void pipeline_clear(pipeline *p)
{
    free(p->selected);
    sg_lint_result_clear(&p->lint);
    sg_migration_set_free(p->set);
    sg_pipeline_config_clear(&p->cfg);
}

/* ---- plan ---- */

typedef struct plan_settings {
    common_settings common;
    const char *partition;
} plan_settings;

static const sg_option plan_options[] = {{"partition", SG_OPT_STRING,
                                          offsetof(plan_settings, partition), "K/N",
                                          "only the shards of partition K of N", 0, 0},
                                         COMMON_OPTIONS(plan_settings),
                                         {0}};

/* Where one shard stands: its schema version and what would be applied,
 * read from its registry without taking any lock or writing anything. */
typedef struct shard_plan {
    int64_t version;
    size_t pending;
    char error[256]; /* the shard could not be read */
} shard_plan;

static void read_shard(shard_plan *sp, const sg_pipeline_shard *shard, const pipeline *p)
{
    PGconn *conn = NULL;
    sg_registry_rows rows = {0};
    sg_error err = {0};
    memset(sp, 0, sizeof(*sp));
    if (sg_pg_connect(&conn, shard->dsn, "shard", &err) == 0 &&
        sg_registry_read(&rows, conn, false, &err) == 0) {
        for (size_t i = 0; i < rows.count; i++)
            if (rows.items[i].status == SG_REGISTRY_APPLIED && rows.items[i].version > sp->version)
                sp->version = rows.items[i].version;
        for (size_t i = 0; i < p->set->count; i++) {
            const sg_migration *m = &p->set->items[i];
            const sg_registry_row *row = sg_registry_rows_find(&rows, m->version);
            if (m->version <= p->cfg.target && (!row || row->status != SG_REGISTRY_APPLIED))
                sp->pending++;
        }
    }
    if (err.code)
        snprintf(sp->error, sizeof(sp->error), "%s", err.message);
    sg_registry_rows_clear(&rows);
    PQfinish(conn);
}

static int64_t target_version(const pipeline *p)
{
    int64_t v = 0;
    for (size_t i = 0; i < p->set->count; i++)
        if (p->set->items[i].version <= p->cfg.target && p->set->items[i].version > v)
            v = p->set->items[i].version;
    return v;
}

int sg_cli_plan(int argc, char **argv, sg_error *err)
{
    plan_settings s = {0};
    sg_strlist pos = {0};
    pipeline p;
    shard_plan *plans = NULL;
    json_t *doc = NULL, *stages = NULL;
    int rc = sg_cli_parse(&s, plan_options, argc, argv, "plan PIPELINE.yaml [--partition K/N]",
                          &pos, &s.common, err);
    memset(&p, 0, sizeof(p));
    if (rc != 0 || (rc = sg_cli_expect_positionals(&pos, 1, "pipeline file", err)) < 0 ||
        (rc = pipeline_load(&p, pos.items[0], s.partition, err)) < 0)
        goto done;
    if (!(plans = sg_calloc(p.cfg.nfleet, sizeof(*plans)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < p.cfg.nfleet; i++)
        if (p.selected[i])
            read_shard(&plans[i], &p.cfg.fleet[i], &p);
    int64_t target = target_version(&p);
    if (s.common.json) {
        doc = json_pack("{s:s, s:s, s:s, s:I, s:i, s:{s:i, s:i, s:i}}", "pipeline", p.cfg.name,
                        "store", p.cfg.store.url, "migrations", p.cfg.migrations, "target",
                        (json_int_t)target, "files", (int)p.set->count, "lint", "errors",
                        (int)p.lint.errors, "warnings", (int)p.lint.warnings, "findings",
                        (int)p.lint.count);
        stages = json_array();
        json_object_set_new(doc, "stages", stages);
    } else {
        printf("pipeline %s: %zu shards in %zu stages, store %s, sandbox %s\n", p.cfg.name,
               p.cfg.nfleet, p.cfg.nstages, p.cfg.store.url,
               p.cfg.sandbox.driver ? p.cfg.sandbox.driver : "local");
        printf("migrations %s: %zu files up to version %" PRId64 "; lint: %zu errors, %zu "
               "warnings\n",
               p.cfg.migrations, p.set->count, target, p.lint.errors, p.lint.warnings);
    }
    for (size_t st = 0; st < p.cfg.nstages; st++) {
        const sg_pipeline_stage *stage = &p.cfg.stages[st];
        json_t *shards = json_array();
        if (!s.common.json)
            printf("\nstage %s: %zu shard%s, %u at once, soak %" PRIu64 " s, at most %u "
                   "failure%s\n",
                   stage->name, stage->nshards, stage->nshards == 1 ? "" : "s", stage->parallel,
                   stage->soak_ms / 1000, stage->max_failures, stage->max_failures == 1 ? "" : "s");
        for (size_t j = 0; j < stage->nshards; j++) {
            size_t i = stage->shards[j];
            const shard_plan *sp = &plans[i];
            if (!p.selected[i])
                continue;
            if (s.common.json)
                json_array_append_new(shards, json_pack("{s:s, s:I, s:I, s:s?}", "shard",
                                                        p.cfg.fleet[i].name, "version",
                                                        (json_int_t)sp->version, "pending",
                                                        (json_int_t)sp->pending, "error",
                                                        sp->error[0] ? sp->error : NULL));
            else if (sp->error[0])
                printf("  %-24s cannot be read: %s\n", p.cfg.fleet[i].name, sp->error);
            else
                printf("  %-24s version %" PRId64 ", %zu to apply\n", p.cfg.fleet[i].name,
                       sp->version, sp->pending);
        }
        if (s.common.json)
            json_array_append_new(stages,
                                  json_pack("{s:s, s:o}", "stage", stage->name, "shards", shards));
        else
            json_decref(shards);
    }
    if (s.common.json) {
        rc = sg_cli_print_json(doc, err);
        doc = NULL;
    } else if (p.lint.errors) {
        printf("\n");
        rc = sg_lint_print(stdout, &p.lint, SG_LINT_GCC, err);
    }
    if (rc == 0 && p.lint.errors)
        rc = sg_error_set(err, SG_E_LINT,
                          "lint found %zu error%s: a run would stop before any "
                          "shard",
                          p.lint.errors, p.lint.errors == 1 ? "" : "s");
done:
    json_decref(doc);
    free(plans);
    pipeline_clear(&p);
    free(pos.items);
    return rc;
}

/* ---- run, resume, rollback ---- */

typedef struct run_settings {
    common_settings common;
    const char *partition;
    const char *journal;
    const char *config; /* resume and rollback */
    const char *shard;  /* rollback */
    int jobs;
    const char *pg_bindir;
    const char *metrics_file; /* run and resume */
    const char *junit_file;
    const char *report_file;
    const char *run_id; /* run */
    bool progress;      /* run and resume: progress lines even when stderr is no terminal */
} run_settings;

#define RUN(field) offsetof(run_settings, field)
#define RUN_COMMON_OPTIONS                                                                         \
    {"journal",                                                                                    \
     SG_OPT_STRING,                                                                                \
     RUN(journal),                                                                                 \
     "FILE",                                                                                       \
     "the local copy of the journal (default: shardgate-RUN_ID.journal.json)",                     \
     0,                                                                                            \
     0},                                                                                           \
        {"jobs", SG_OPT_INT, RUN(jobs), "N", "connections per snapshot and restore (default 2)",   \
         1,      64},                                                                              \
        {"pg-bindir",                                                                              \
         SG_OPT_STRING,                                                                            \
         RUN(pg_bindir),                                                                           \
         "DIR",                                                                                    \
         "where pg_dump and pg_restore are",                                                       \
         0,                                                                                        \
         0},                                                                                       \
        COMMON_OPTIONS(run_settings)

/* Not rollback's: it writes no report, and an option it ignored would
 * mislead. */
#define RUN_REPORT_OPTIONS                                                                         \
    {"metrics-file",                                                                               \
     SG_OPT_STRING,                                                                                \
     RUN(metrics_file),                                                                            \
     "FILE",                                                                                       \
     "write Prometheus metrics of the run to FILE (textfile collector)",                           \
     0,                                                                                            \
     0},                                                                                           \
        {"junit",                                                                                  \
         SG_OPT_STRING,                                                                            \
         RUN(junit_file),                                                                          \
         "FILE",                                                                                   \
         "write a JUnit XML report to FILE, a test case per shard and gate",                       \
         0,                                                                                        \
         0},                                                                                       \
        {"report",                                                                                 \
         SG_OPT_STRING,                                                                            \
         RUN(report_file),                                                                         \
         "FILE",                                                                                   \
         "write an HTML report to FILE, with a timeline of the shards' gates",                     \
         0,                                                                                        \
         0},                                                                                       \
    {                                                                                              \
        "progress", SG_OPT_FLAG, RUN(progress), NULL,                                              \
            "print a progress line at every gate (the default on a terminal)", 0, 0                \
    }

static const sg_option run_options[] = {{"partition", SG_OPT_STRING, RUN(partition), "K/N",
                                         "only the shards of partition K of N", 0, 0},
                                        {"run-id", SG_OPT_STRING, RUN(run_id), "ID",
                                         "the run's id (default: a new one); the partitions of "
                                         "one run share it",
                                         0, 0},
                                        RUN_REPORT_OPTIONS,
                                        RUN_COMMON_OPTIONS,
                                        {0}};

static const sg_option resume_options[] = {
    {"config", SG_OPT_STRING, RUN(config), "PIPELINE.yaml", "the run's pipeline file", 0, 0},
    {"partition", SG_OPT_STRING, RUN(partition), "K/N",
     "only this partition of a partitioned run (default: all of them)", 0, 0},
    RUN_REPORT_OPTIONS,
    RUN_COMMON_OPTIONS,
    {0}};

static const sg_option rollback_options[] = {
    {"config", SG_OPT_STRING, RUN(config), "PIPELINE.yaml", "the run's pipeline file", 0, 0},
    {"shard", SG_OPT_STRING, RUN(shard), "NAME", "only this shard", 0, 0},
    RUN_COMMON_OPTIONS,
    {0}};

/* A run in progress: the pipeline, its journal and where the journal goes. */
typedef struct runner {
    pipeline p;
    sg_journal *journal;
    sg_store *store;
    char *journal_path;
    char config_sha256[SG_SHA256_HEX_LEN];
    bool progress;
    uint64_t started_ms; /* when this process started the run, for rates */
    /* the recovery-time objective: shards whose test restore took longer */
    size_t slow;
    char slowest[SG_SHARD_NAME_MAX + 1];
    double slowest_seconds;
} runner;

static void runner_clear(runner *r)
{
    sg_log_set_run(NULL); /* the id lives in the journal, freed below */
    sg_journal_free(r->journal);
    sg_store_free(r->store);
    free(r->journal_path);
    pipeline_clear(&r->p);
}

static int hash_file(char out[SG_SHA256_HEX_LEN], const char *path, sg_error *err)
{
    char *text = NULL;
    size_t len = 0;
    uint8_t digest[32];
    int rc = sg_file_read(&text, &len, path, SG_PIPELINE_MAX_FILE, err);
    if (rc == 0) {
        sg_sha256(digest, text, len);
        sg_hex_encode(out, digest, sizeof(digest));
    }
    free(text);
    return rc;
}

/* Saves the journal at a transition. A journal that cannot be written is
 * logged, not fatal: the shards' registries still know what was applied. */
static void save(runner *r)
{
    sg_error err = {0};
    if (sg_journal_save(r->journal, r->store, r->journal_path, &err) < 0)
        sg_log(SG_LOG_WARNING, "cannot save the journal of run %s: %s", r->journal->run_id,
               err.message);
}

static long journal_index(runner *r, size_t fleet_index)
{
    return sg_journal_shard_find(r->journal, r->p.cfg.fleet[fleet_index].name);
}

/* One line of where the run is: shards done, running (with their gate),
 * failed, and the bytes stored so far. A line rather than a redrawn status
 * bar: log lines from the shards' threads go to the same terminal. */
static void print_progress(const runner *r)
{
    const sg_journal *j = r->journal;
    size_t done = 0, failed = 0, running = 0, pending = 0;
    uint64_t bytes = 0;
    char doing[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < j->nshards; i++) {
        const sg_journal_shard *s = &j->shards[i];
        bytes += s->snapshot_bytes;
        switch (s->state) {
        case SG_SHARD_DONE:
        case SG_SHARD_VERIFIED:
            done++;
            break;
        case SG_SHARD_FAILED:
        case SG_SHARD_ROLLED_BACK:
            failed++;
            break;
        case SG_SHARD_PENDING:
            pending++;
            break;
        default: {
            /* the gate it is in: the first that started and has not ended */
            const char *gate = "";
            for (int g = 0; g < SG_GATE_COUNT; g++)
                if (s->gates[g].started_at[0] && !s->gates[g].ran) {
                    gate = sg_gate_name((sg_gate)g);
                    break;
                }
            running++;
            if (used < sizeof(doing))
                used += (size_t)snprintf(doing + used, sizeof(doing) - used, "%s%s %s",
                                         used ? ", " : "", s->name, gate);
        }
        }
    }
    char size[32], rate[32];
    double seconds = (double)(sg_monotonic_ms() - r->started_ms) / 1000.0;
    sg_format_size(size, sizeof(size), bytes);
    sg_format_size(rate, sizeof(rate), seconds > 0 ? (uint64_t)((double)bytes / seconds) : 0);
    fprintf(stderr,
            "progress: %zu/%zu done, %zu running%s%s%s, %zu failed, %zu waiting; %s stored "
            "(%s/s) in %.0f s\n",
            done, j->nshards, running, running ? " (" : "", doing, running ? ")" : "", failed,
            pending, size, rate, seconds);
}

static void on_gate(void *ctx, size_t shard, sg_gate gate, const sg_gate_record *record,
                    const sg_shard_outcome *outcome)
{
    runner *r = ctx;
    long j = journal_index(r, shard);
    if (j < 0)
        return;
    sg_journal_gate(r->journal, (size_t)j, gate, record);
    if (record->ran)
        sg_journal_shard_outcome(r->journal, (size_t)j, outcome);
    save(r);
    if (r->progress)
        print_progress(r);
}

static void on_shard(void *ctx, size_t shard, const sg_shard_outcome *outcome, int rc,
                     const sg_error *err)
{
    runner *r = ctx;
    long j = journal_index(r, shard);
    if (j < 0)
        return;
    sg_journal_shard_outcome(r->journal, (size_t)j, outcome);
    /* the test restore measured how long the shard takes to recover from
     * its snapshot (before the rehearsal): the objective is about that */
    if (r->p.cfg.rto_ms && outcome->restore.seconds * 1000.0 > (double)r->p.cfg.rto_ms) {
        r->slow++;
        if (outcome->restore.seconds > r->slowest_seconds) {
            r->slowest_seconds = outcome->restore.seconds;
            snprintf(r->slowest, sizeof(r->slowest), "%s", r->p.cfg.fleet[shard].name);
        }
    }
    if (rc == 0) {
        sg_journal_shard_state(r->journal, (size_t)j, SG_SHARD_DONE);
    } else if (r->journal->shards[j].state != SG_SHARD_FAILED) {
        /* it failed before its first gate (unreachable, or held by another
         * runner): the journal says so at the snapshot gate, where a
         * resumed run starts it again */
        sg_gate_record rec = {.ran = true, .rc = rc};
        snprintf(rec.message, sizeof(rec.message), "%s", err->message);
        sg_journal_gate(r->journal, (size_t)j, SG_GATE_SNAPSHOT, &rec);
    }
    save(r);
}

static void on_bluegreen(void *ctx, size_t shard, int64_t version, sg_bluegreen_step step,
                         double lock_ms)
{
    runner *r = ctx;
    sg_error err = {0};
    long j = journal_index(r, shard);
    if (j < 0)
        return;
    if (sg_journal_bluegreen_step(r->journal, (size_t)j, version, sg_bluegreen_step_name(step),
                                  lock_ms, &err) < 0)
        sg_log(SG_LOG_WARNING, "cannot record blue-green step %s of version %" PRId64 ": %s",
               sg_bluegreen_step_name(step), version, err.message);
    save(r);
}

static void on_stage(void *ctx, size_t stage, sg_stage_state state)
{
    runner *r = ctx;
    sg_journal_stage_state(r->journal, stage, state);
    save(r);
}

static void on_rollback(void *ctx, size_t shard, int rc, const sg_error *err)
{
    runner *r = ctx;
    long j = journal_index(r, shard);
    (void)err;
    if (j >= 0 && rc == 0) {
        sg_journal_shard_state(r->journal, (size_t)j, SG_SHARD_ROLLED_BACK);
        save(r);
    }
}

/* Opens the store and names the local copy of the journal: one per
 * partition, since the partitions of a run share its id. */
static int open_journal_target(runner *r, const char *journal_file, const char *run_id,
                               const char *partition, sg_error *err)
{
    unsigned k = 0, n = 0;
    int rc = sg_store_open_config(&r->store, &r->p.cfg.store, err);
    if (rc < 0 || (partition && (rc = parse_partition(&k, &n, partition, err)) < 0))
        return rc;
    r->journal_path = journal_file ? sg_strdup(journal_file)
                      : n          ? sg_asprintf("shardgate-%s-%u-of-%u.journal.json", run_id, k, n)
                                   : sg_asprintf("shardgate-%s.journal.json", run_id);
    return r->journal_path ? 0 : sg_error_set(err, SG_E_NOMEM, "out of memory");
}

static void print_summary(const runner *r, const sg_run_result *res)
{
    const sg_journal *j = r->journal;
    printf("run %s of %s: %s\n\n", j->run_id, j->pipeline, sg_run_status_name(j->status));
    printf("%-20s %-12s %-12s %-9s %-27s %s\n", "SHARD", "STAGE", "STATE", "VERSION", "SNAPSHOT",
           "FAILURE");
    for (size_t i = 0; i < j->nshards; i++) {
        const sg_journal_shard *s = &j->shards[i];
        char version[40];
        snprintf(version, sizeof(version), "%" PRId64 "->%" PRId64, s->from_version, s->to_version);
        printf("%-20s %-12s %-12s %-9s %-27s %s\n", s->name, j->stages[s->stage].name,
               sg_shard_state_name(s->state), version, s->snapshot_id[0] ? s->snapshot_id : "-",
               s->has_failure ? s->failure.message : "");
    }
    (void)res;
}

/* The report files are written whatever the outcome: a failed run is what
 * monitoring and CI most need to see. One that cannot be written fails a
 * run that succeeded; after a failed run it is logged, the run's own error
 * being the one to exit with. */
static int write_reports(const runner *r, const run_settings *s, int rc, sg_error *err)
{
    /* The HTML page names the migration files too, hence the set. */
    const struct {
        const char *path;
        int (*write)(const sg_journal *j, const char *path, sg_error *err);
        int (*write_set)(const sg_journal *j, const sg_migration_set *set, const char *path,
                         sg_error *err);
    } reports[] = {{s->metrics_file, sg_run_write_metrics, NULL},
                   {s->junit_file, sg_run_write_junit, NULL},
                   {s->report_file, NULL, sg_run_write_html}};
    for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]); i++) {
        sg_error report_err = {0};
        int report_rc;
        if (!reports[i].path)
            continue;
        report_rc = reports[i].write
                        ? reports[i].write(r->journal, reports[i].path, &report_err)
                        : reports[i].write_set(r->journal, r->p.set, reports[i].path, &report_err);
        if (report_rc == 0)
            continue;
        if (rc == 0) {
            *err = report_err;
            rc = report_err.code;
        } else {
            sg_log_error(&report_err);
        }
    }
    return rc;
}

static int finish_run(runner *r, sg_run_result *res, int rc, const run_settings *s, sg_error *err)
{
    sg_run_status status = rc == 0 ? SG_RUN_DONE
                           : rc == SG_E_SHARDS_FAILED && res->halted &&
                                   r->p.cfg.policy.on_failure != SG_ON_FAILURE_HALT
                               ? SG_RUN_ROLLED_BACK
                           : rc == SG_E_SHARDS_FAILED && !res->halted ? SG_RUN_FAILED
                                                                      : SG_RUN_HALTED;
    sg_journal_run_status(r->journal, status);
    save(r);
    rc = write_reports(r, s, rc, err);
    if (s->common.json) {
        char *text = NULL;
        sg_error ignored = {0};
        if (sg_journal_to_json(&text, r->journal, &ignored) == 0)
            printf("%s", text);
        free(text);
    } else {
        print_summary(r, res);
    }
    sg_log_info("journal: %s and %s/runs/%s/", r->journal_path, r->p.cfg.store.url,
                r->journal->run_id);
    if (rc == 0 && r->slow) {
        rc = sg_error_set(err, SG_E_OBJECTIVE,
                          "%zu shard%s recovered from %s snapshot slower than the recovery-time "
                          "objective",
                          r->slow, r->slow == 1 ? "" : "s", r->slow == 1 ? "its" : "their");
        sg_error_detail(err, "slowest: %s, %.1f s against objectives.rto %.1f s", r->slowest,
                        r->slowest_seconds, (double)r->p.cfg.rto_ms / 1000.0);
        sg_error_hint(err, "every shard was migrated; the objective says a restore would take too "
                           "long should one be needed");
    }
    return rc;
}

/* Progress lines on a terminal, in the text log format, unless --quiet;
 * anywhere with --progress. */
static bool progress_wanted(const run_settings *s)
{
    bool json_log = s->common.log_format && strcmp(s->common.log_format, "json") == 0;
    return s->progress || (isatty(STDERR_FILENO) && !json_log && !s->common.quiet);
}

static void run_options_fill(sg_run_options *o, runner *r, const run_settings *s)
{
    r->progress = progress_wanted(s);
    r->started_ms = sg_monotonic_ms();
    *o = (sg_run_options){.cfg = &r->p.cfg,
                          .set = r->p.set,
                          .run_id = r->journal->run_id,
                          .selected = r->p.selected,
                          .jobs = s->jobs,
                          .pg_bindir = s->pg_bindir,
                          .hooks = {r, on_gate, on_shard, on_stage, on_rollback, on_bluegreen}};
}

static int refuse_lint(const pipeline *p, sg_error *err)
{
    if (!p->lint.errors)
        return 0;
    sg_lint_print(stderr, &p->lint, SG_LINT_GCC, err);
    sg_error_set(err, SG_E_LINT, "lint found %zu error%s in %s: nothing was run", p->lint.errors,
                 p->lint.errors == 1 ? "" : "s", p->cfg.migrations);
    return SG_E_LINT;
}

int sg_cli_run(int argc, char **argv, sg_error *err)
{
    run_settings s = {0};
    sg_strlist pos = {0};
    runner r;
    sg_run_result res = {0};
    sg_run_options o;
    char run_id[SG_RUN_ID_MAX];
    unsigned k = 0, n = 0;
    memset(&r, 0, sizeof(r));
    int rc = sg_cli_parse(&s, run_options, argc, argv, "run PIPELINE.yaml [--partition K/N]", &pos,
                          &s.common, err);
    if (rc != 0 || (rc = sg_cli_expect_positionals(&pos, 1, "pipeline file", err)) < 0 ||
        (rc = pipeline_load(&r.p, pos.items[0], s.partition, err)) < 0 ||
        (rc = refuse_lint(&r.p, err)) < 0 ||
        (rc = hash_file(r.config_sha256, pos.items[0], err)) < 0)
        goto done;
    if (s.partition)
        parse_partition(&k, &n, s.partition, err);
    if (s.run_id) {
        if ((rc = sg_journal_run_id_check(s.run_id, err)) < 0)
            goto done;
        snprintf(run_id, sizeof(run_id), "%s", s.run_id);
    } else {
        sg_journal_new_run_id(run_id);
    }
    if ((rc = open_journal_target(&r, s.journal, run_id, s.partition, err)) < 0 ||
        (rc = sg_journal_new(&r.journal, run_id, &r.p.cfg, r.config_sha256, k, n, r.p.selected,
                             err)) < 0)
        goto done;
    sg_log_set_run(r.journal->run_id);
    sg_log_info("run %s of pipeline %s", run_id, r.p.cfg.name);
    save(&r);
    run_options_fill(&o, &r, &s);
    rc = sg_run_pipeline(&res, &o, err);
    rc = finish_run(&r, &res, rc, &s, err);
done:
    sg_run_result_clear(&res, r.p.cfg.nfleet);
    runner_clear(&r);
    free(pos.items);
    return rc;
}

/* Loads the run's journal (the local copy when named, else the store's)
 * and checks it belongs to this pipeline file. */
static int load_run(runner *r, const run_settings *s, const char *run_id, sg_error *err)
{
    int rc;
    if (!s->config)
        return sg_error_set(err, SG_E_USAGE, "--config PIPELINE.yaml is required");
    if ((rc = pipeline_load(&r->p, s->config, NULL, err)) < 0 ||
        (rc = hash_file(r->config_sha256, s->config, err)) < 0 ||
        (rc = open_journal_target(r, s->journal, run_id, s->partition, err)) < 0)
        return rc;
    unsigned k = 0, n = 0;
    if (s->partition && (rc = parse_partition(&k, &n, s->partition, err)) < 0)
        return rc;
    rc = s->journal ? sg_journal_load_file(&r->journal, s->journal, err)
         : n        ? sg_journal_load_part(&r->journal, r->store, run_id, k, n, err)
                    : sg_journal_load(&r->journal, r->store, run_id, err);
    if (rc < 0)
        return rc;
    if (strcmp(r->journal->run_id, run_id) != 0)
        return sg_error_set(err, SG_E_MISMATCH, "the journal %s is of run %s, not %s",
                            r->journal_path, r->journal->run_id, run_id);
    if (strcmp(r->journal->config_sha256, r->config_sha256) != 0) {
        sg_error_set(err, SG_E_MISMATCH, "%s changed since run %s started", s->config, run_id);
        sg_error_hint(err, "resume with the pipeline file the run started with, or start a new "
                           "run");
        return SG_E_MISMATCH;
    }
    /* the run's partition, as the journal says */
    if (r->journal->part_n)
        rc = sg_pipeline_partition(r->p.selected, &r->p.cfg, r->journal->part_k, r->journal->part_n,
                                   err);
    return rc;
}

int sg_cli_resume(int argc, char **argv, sg_error *err)
{
    run_settings s = {0};
    sg_strlist pos = {0};
    runner r;
    sg_run_result res = {0};
    sg_run_options o;
    bool *done = NULL;
    sg_gate *first = NULL;
    char(*snapshots)[SG_SNAPSHOT_ID_MAX] = NULL;
    memset(&r, 0, sizeof(r));
    int rc = sg_cli_parse(&s, resume_options, argc, argv, "resume RUN_ID --config PIPELINE.yaml",
                          &pos, &s.common, err);
    if (rc != 0 || (rc = sg_cli_expect_positionals(&pos, 1, "run id", err)) < 0 ||
        (rc = load_run(&r, &s, pos.items[0], err)) < 0 || (rc = refuse_lint(&r.p, err)) < 0)
        goto done;
    size_t n = r.p.cfg.nfleet;
    if (!(done = sg_calloc(n, sizeof(*done))) || !(first = sg_calloc(n, sizeof(*first))) ||
        !(snapshots = sg_calloc(n, sizeof(*snapshots)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    size_t todo = 0;
    for (size_t i = 0; i < n; i++) {
        long j = journal_index(&r, i);
        if (j < 0) {
            r.p.selected[i] = false;
            continue;
        }
        first[i] = sg_journal_resume_gate(r.journal, (size_t)j, &done[i]);
        memcpy(snapshots[i], r.journal->shards[j].snapshot_id, sizeof(snapshots[i]));
        todo += !done[i];
    }
    sg_log_set_run(r.journal->run_id);
    sg_log_info("resuming run %s: %zu shard%s to go", r.journal->run_id, todo,
                todo == 1 ? "" : "s");
    sg_journal_run_status(r.journal, SG_RUN_RUNNING);
    save(&r);
    run_options_fill(&o, &r, &s);
    o.done = done;
    o.first_gate = first;
    o.snapshot_ids = (const char(*)[SG_SNAPSHOT_ID_MAX])snapshots;
    rc = sg_run_pipeline(&res, &o, err);
    rc = finish_run(&r, &res, rc, &s, err);
done:
    free(done);
    free(first);
    free(snapshots);
    sg_run_result_clear(&res, r.p.cfg.nfleet);
    runner_clear(&r);
    free(pos.items);
    return rc;
}

int sg_cli_rollback(int argc, char **argv, sg_error *err)
{
    run_settings s = {0};
    sg_strlist pos = {0};
    runner r;
    size_t reverted = 0, failed = 0;
    memset(&r, 0, sizeof(r));
    int rc =
        sg_cli_parse(&s, rollback_options, argc, argv,
                     "rollback RUN_ID --config PIPELINE.yaml [--shard NAME]", &pos, &s.common, err);
    if (rc != 0 || (rc = sg_cli_expect_positionals(&pos, 1, "run id", err)) < 0 ||
        (rc = load_run(&r, &s, pos.items[0], err)) < 0)
        goto done;
    if (s.shard && sg_journal_shard_find(r.journal, s.shard) < 0) {
        rc =
            sg_error_set(err, SG_E_NOT_FOUND, "run %s has no shard %s", r.journal->run_id, s.shard);
        goto done;
    }
    /* newest stage first, each stage's shards in reverse order */
    for (size_t i = r.journal->nshards; i-- > 0;) {
        sg_journal_shard *js = &r.journal->shards[i];
        const sg_pipeline_shard *shard = sg_pipeline_config_shard(&r.p.cfg, js->name);
        if ((s.shard && strcmp(s.shard, js->name) != 0) || !shard ||
            js->state == SG_SHARD_ROLLED_BACK || js->to_version <= js->from_version)
            continue;
        sg_error shard_err = {0};
        if (sg_run_revert_shard(&r.p.cfg, r.p.set, (size_t)(shard - r.p.cfg.fleet),
                                js->from_version, r.journal->run_id, &shard_err) == 0) {
            sg_journal_shard_state(r.journal, i, SG_SHARD_ROLLED_BACK);
            save(&r);
            reverted++;
            printf("%-20s rolled back to version %" PRId64 "\n", js->name, js->from_version);
        } else {
            failed++;
            sg_log_error(&shard_err);
        }
    }
    if (!failed && reverted && !s.shard) {
        sg_journal_run_status(r.journal, SG_RUN_ROLLED_BACK);
        save(&r);
    }
    if (failed)
        rc = sg_error_set(err, SG_E_SHARDS_FAILED, "%zu shard%s could not be rolled back", failed,
                          failed == 1 ? "" : "s");
    else if (!reverted)
        printf("nothing to roll back in run %s\n", r.journal->run_id);
done:
    runner_clear(&r);
    free(pos.items);
    return rc;
}

/* ---- status of a whole fleet ---- */

/* One shard as the fleet status shows it. */
typedef struct fleet_row {
    bool reachable;
    char error[256];
    int64_t version;
    size_t pending, unfinished;
    bool drifted;
    char snapshot[SG_SNAPSHOT_ID_MAX]; /* newest complete one, "" for none */
    const char *run_state;             /* in the newest run, NULL when not in it */
    char drill[64];                    /* "ok 2024-05-01T02:00:00Z", "" for none */
} fleet_row;

/* The newest drill's record (shards/<shard>/last-drill.json), as "ok TIME",
 * "FAILED TIME" or "slow TIME"; nothing when there is none or it is not
 * readable (a drill record is information, not a check). */
static void read_drill(char *out, size_t size, sg_store *store, const char *shard)
{
    char *key = sg_layout_drill_key(shard);
    sg_buf buf = {0};
    sg_error err = {0};
    json_t *doc = NULL;
    out[0] = '\0';
    if (key && sg_store_get(store, key, 0, UINT64_MAX, &buf, &err) == 0 &&
        (doc = json_loadb(buf.data ? (const char *)buf.data : "", buf.len, 0, NULL))) {
        const char *at = json_string_value(json_object_get(doc, "started_at"));
        bool ok = json_is_true(json_object_get(doc, "ok"));
        bool slow = json_is_true(json_object_get(doc, "objective_missed"));
        snprintf(out, size, "%s %s", !ok ? "FAILED" : slow ? "slow" : "ok", at ? at : "?");
    }
    json_decref(doc);
    sg_buf_free(&buf);
    free(key);
}

static void read_fleet_row(fleet_row *row, const sg_pipeline_shard *shard, const pipeline *p,
                           sg_store *store, const sg_journal *last)
{
    PGconn *conn = NULL;
    sg_status st = {0};
    sg_snapshot_entry *snaps = NULL;
    size_t nsnaps = 0;
    sg_error err = {0};
    memset(row, 0, sizeof(*row));
    if (sg_pg_connect(&conn, shard->dsn, "shard", &err) == 0 &&
        sg_status_read(&st, conn, p->set, &err) == 0) {
        row->reachable = true;
        row->version = st.schema_version;
        row->pending = st.pending;
        row->unfinished = st.failed + st.changed + st.missing;
        row->drifted = st.drifted;
    } else {
        snprintf(row->error, sizeof(row->error), "%s", err.message);
    }
    sg_error_clear(&err);
    if (sg_snapshot_list(&snaps, &nsnaps, store, shard->name, &err) == 0) {
        for (size_t i = 0; i < nsnaps && !row->snapshot[0]; i++)
            if (snaps[i].complete)
                snprintf(row->snapshot, sizeof(row->snapshot), "%s", snaps[i].id);
    }
    read_drill(row->drill, sizeof(row->drill), store, shard->name);
    long j = last ? sg_journal_shard_find(last, shard->name) : -1;
    if (j >= 0)
        row->run_state = sg_shard_state_name(last->shards[j].state);
    free(snaps);
    sg_status_clear(&st);
    PQfinish(conn);
}

int sg_cli_fleet_status(const char *config, bool json, bool check, sg_error *err)
{
    pipeline p;
    sg_store *store = NULL;
    sg_journal *last = NULL;
    char **runs = NULL;
    size_t nruns = 0, troubled = 0;
    fleet_row *rows = NULL;
    json_t *doc = NULL, *shards = NULL, *versions = NULL;
    int rc;
    memset(&p, 0, sizeof(p));
    if ((rc = pipeline_load(&p, config, NULL, err)) < 0 ||
        (rc = sg_store_open_config(&store, &p.cfg.store, err)) < 0 ||
        (rc = sg_journal_list(&runs, &nruns, store, err)) < 0)
        goto done;
    if (nruns && sg_journal_load(&last, store, runs[0], err) < 0) {
        sg_log(SG_LOG_WARNING, "cannot read the journal of run %s: %s", runs[0], err->message);
        sg_error_clear(err);
    }
    if (!(rows = sg_calloc(p.cfg.nfleet, sizeof(*rows)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < p.cfg.nfleet; i++) {
        read_fleet_row(&rows[i], &p.cfg.fleet[i], &p, store, last);
        troubled += !rows[i].reachable || rows[i].drifted || rows[i].unfinished;
    }
    /* the distribution of schema versions over the reachable shards */
    versions = json_object();
    for (size_t i = 0; i < p.cfg.nfleet; i++) {
        char key[32];
        if (!rows[i].reachable)
            continue;
        snprintf(key, sizeof(key), "%" PRId64, rows[i].version);
        json_int_t n = json_integer_value(json_object_get(versions, key));
        json_object_set_new(versions, key, json_integer(n + 1));
    }
    if (json) {
        shards = json_array();
        for (size_t i = 0; i < p.cfg.nfleet; i++) {
            const fleet_row *r = &rows[i];
            json_array_append_new(
                shards,
                json_pack("{s:s?, s:s, s:s, s:b, s:I, s:I, s:I, s:b, s:s?, s:s?, s:s?}",
                          "last_drill", r->drill[0] ? r->drill : NULL, "shard", p.cfg.fleet[i].name,
                          "stage", p.cfg.stages[p.cfg.fleet[i].stage].name, "reachable",
                          r->reachable, "version", (json_int_t)r->version, "pending",
                          (json_int_t)r->pending, "unfinished", (json_int_t)r->unfinished,
                          "drifted", r->drifted, "last_snapshot",
                          r->snapshot[0] ? r->snapshot : NULL, "last_run_state", r->run_state,
                          "error", r->error[0] ? r->error : NULL));
        }
        doc = json_pack("{s:s, s:s?, s:o, s:O}", "pipeline", p.cfg.name, "last_run",
                        nruns ? runs[0] : NULL, "shards", shards, "versions", versions);
        rc = sg_cli_print_json(doc, err);
        doc = NULL;
    } else {
        printf("fleet %s: %zu shards; last run %s\n\n", p.cfg.name, p.cfg.nfleet,
               nruns ? runs[0] : "(none)");
        printf("%-20s %-12s %-8s %-8s %-7s %-27s %-12s %s\n", "SHARD", "STAGE", "VERSION",
               "PENDING", "DRIFT", "LAST SNAPSHOT", "LAST RUN", "LAST DRILL");
        for (size_t i = 0; i < p.cfg.nfleet; i++) {
            const fleet_row *r = &rows[i];
            if (!r->reachable) {
                printf("%-20s %-12s unreachable: %s\n", p.cfg.fleet[i].name,
                       p.cfg.stages[p.cfg.fleet[i].stage].name, r->error);
                continue;
            }
            printf("%-20s %-12s %-8" PRId64 " %-8zu %-7s %-27s %-12s %s\n", p.cfg.fleet[i].name,
                   p.cfg.stages[p.cfg.fleet[i].stage].name, r->version, r->pending,
                   r->drifted      ? "DRIFTED"
                   : r->unfinished ? "unclean"
                                   : "no",
                   r->snapshot[0] ? r->snapshot : "-", r->run_state ? r->run_state : "-",
                   r->drill[0] ? r->drill : "-");
        }
        const char *key;
        json_t *value;
        const char *sep = "";
        printf("\nschema versions:");
        json_object_foreach(versions, key, value)
        {
            printf("%s %s on %" JSON_INTEGER_FORMAT " shard%s", sep, key, json_integer_value(value),
                   json_integer_value(value) == 1 ? "" : "s");
            sep = ",";
        }
        printf("%s\n", *sep ? "" : " none readable");
    }
    if (rc == 0 && check && troubled)
        rc = sg_error_set(err, SG_E_MISMATCH,
                          "%zu shard%s unreachable, drifted or with unfinished migrations",
                          troubled, troubled == 1 ? " is" : "s are");
done:
    json_decref(doc);
    json_decref(versions);
    free(rows);
    sg_journal_free(last);
    sg_journal_list_free(runs, nruns);
    sg_store_free(store);
    pipeline_clear(&p);
    return rc;
}
