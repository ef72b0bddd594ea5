/* The pipeline commands: plan (what a run would do, touching nothing). */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "pipeline/cli_impl.h"
#include "pipeline/config.h"
#include "stages/apply.h"
#include "stages/lint.h"
#include "stages/migration.h"
#include "stages/registry.h"

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
