#include "pipeline/run.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/interrupt.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "common/workers.h"
#include "stages/apply.h"

#define NOT_RUN 1

static const char *const stage_state_names[] = {"pending", "running", "soaking",
                                                "done",    "failed",  "rolled-back"};

const char *sg_stage_state_name(sg_stage_state state)
{
    return stage_state_names[state];
}

typedef struct run {
    const sg_run_options *opts;
    sg_run_result *res;
    sg_error *errors;      /* per fleet index */
    size_t *applied_order; /* fleet indexes in the order their apply finished */
    size_t napplied;
    const sg_pipeline_stage *stage; /* the stage running */
    pthread_mutex_t lock;           /* hooks are called one at a time */
} run;

/* ---- one shard ---- */

/* The settings of one shard, from the pipeline file; index is the shard's
 * fleet index, carried to the hooks through the observer's context. */
typedef struct shard_call {
    run *r;
    size_t index;
    sg_shard_settings settings;
} shard_call;

static void observe(void *arg, const sg_shard_settings *s, sg_gate gate,
                    const sg_gate_record *record)
{
    shard_call *call = arg;
    run *r = call->r;
    (void)s;
    if (gate == SG_GATE_APPLY && record->ran && record->rc == 0) {
        pthread_mutex_lock(&r->lock);
        r->applied_order[r->napplied++] = call->index;
        pthread_mutex_unlock(&r->lock);
    }
    if (!r->opts->hooks.gate)
        return;
    pthread_mutex_lock(&r->lock);
    r->opts->hooks.gate(r->opts->hooks.ctx, call->index, gate, record,
                        &r->res->outcomes[call->index]);
    pthread_mutex_unlock(&r->lock);
}

static void observe_bluegreen(void *arg, const sg_migration *m, sg_bluegreen_step step,
                              double lock_ms)
{
    shard_call *call = arg;
    run *r = call->r;
    if (!r->opts->hooks.bluegreen)
        return;
    pthread_mutex_lock(&r->lock);
    r->opts->hooks.bluegreen(r->opts->hooks.ctx, call->index, m->version, step, lock_ms);
    pthread_mutex_unlock(&r->lock);
}

static void settings_of(sg_shard_settings *s, const run *r, size_t index)
{
    const sg_pipeline_config *cfg = r->opts->cfg;
    const sg_pipeline_shard *shard = &cfg->fleet[index];
    *s = (sg_shard_settings){.name = shard->name,
                             .dsn = shard->dsn,
                             .store = cfg->store,
                             .key_path = cfg->key_path,
                             .recipients = cfg->recipients,
                             .trust = cfg->trust,
                             .sandbox = cfg->sandbox,
                             .set = r->opts->set,
                             .target = cfg->target,
                             .lock_timeout_ms = cfg->policy.lock_timeout_ms,
                             .statement_timeout_ms = cfg->policy.statement_timeout_ms,
                             .retries = cfg->policy.retries,
                             .rehearsal_budget_ms = cfg->policy.rehearsal_budget_ms,
                             .quiesced = cfg->verify_quiesced,
                             .bluegreen = cfg->bluegreen,
                             .run_id = r->opts->run_id,
                             .pg_bindir = r->opts->pg_bindir,
                             .jobs = r->opts->jobs};
    s->sandbox.run_id = r->opts->run_id;
}

/* ---- a stage ---- */

static bool selected(const run *r, size_t index)
{
    return !r->opts->selected || r->opts->selected[index];
}

static int shard_task(void *arg, size_t worker, size_t task, sg_error *err)
{
    run *r = arg;
    size_t index = r->stage->shards[task];
    sg_shard_outcome *out = &r->res->outcomes[index];
    sg_error *shard_err = &r->errors[index];
    shard_call call = {r, index, {0}};
    sg_gate first = SG_GATE_SNAPSHOT;
    (void)worker;
    if (!selected(r, index) || (r->opts->done && r->opts->done[index]))
        return 0;
    if (sg_interrupted())
        return sg_interrupt_check(err);
    settings_of(&call.settings, r, index);
    call.settings.on_bluegreen_step = observe_bluegreen;
    call.settings.on_bluegreen_ctx = &call;
    if (r->opts->first_gate) {
        first = r->opts->first_gate[index];
        if (first > SG_GATE_SNAPSHOT && r->opts->snapshot_ids)
            memcpy(out->snapshot_id, r->opts->snapshot_ids[index], sizeof(out->snapshot_id));
    }
    int rc = sg_shard_run(out, &call.settings, first, observe, &call, shard_err);
    pthread_mutex_lock(&r->lock);
    r->res->rcs[index] = rc;
    if (rc < 0)
        r->res->failed++;
    else
        r->res->done++;
    if (r->opts->hooks.shard)
        r->opts->hooks.shard(r->opts->hooks.ctx, index, out, rc, shard_err);
    pthread_mutex_unlock(&r->lock);
    if (rc < 0)
        sg_log_error(shard_err);
    /* a failed shard is a result; only an interrupt stops the others */
    return rc == SG_E_INTERRUPTED ? sg_interrupt_check(err) : 0;
}

static void stage_hook(run *r, size_t stage, sg_stage_state state)
{
    if (!r->opts->hooks.stage)
        return;
    pthread_mutex_lock(&r->lock);
    r->opts->hooks.stage(r->opts->hooks.ctx, stage, state);
    pthread_mutex_unlock(&r->lock);
}

/* Waits out a stage's soak, waking for interrupts. */
static int soak(uint64_t ms, sg_error *err)
{
    return sg_interrupt_sleep_ms(ms) ? 0 : sg_interrupt_check(err);
}

/* ---- rollback ---- */

/* Reverts what this run applied to one shard: back to the version it had
 * before its apply gate. */
int sg_run_revert_shard(const sg_pipeline_config *cfg, const sg_migration_set *set, size_t index,
                        int64_t to_version, const char *run_id, sg_error *err)
{
    const sg_pipeline_shard *shard = &cfg->fleet[index];
    sg_apply_options o;
    sg_apply_result res = {0};
    PGconn *conn = NULL;
    sg_apply_options_init(&o, shard->dsn);
    o.target = to_version;
    o.lock_timeout_ms = cfg->policy.lock_timeout_ms;
    o.retries = cfg->policy.retries;
    o.bluegreen = cfg->bluegreen;
    o.actor.run_id = run_id;
    int rc = sg_pg_connect(&conn, shard->dsn, "shard", err);
    if (rc == 0)
        rc = sg_revert(&res, conn, set, &o, err);
    if (rc < 0)
        sg_error_prefix(err, "%s: rollback", shard->name);
    else
        sg_log(SG_LOG_INFO, "%s: rolled back to version %" PRId64, shard->name, to_version);
    sg_apply_result_clear(&res);
    PQfinish(conn);
    return rc;
}

/* Reverts what this run applied to one shard: back to the version it had
 * before its apply gate. */
static int revert_shard(run *r, size_t index)
{
    sg_error err = {0};
    int rc = sg_run_revert_shard(r->opts->cfg, r->opts->set, index,
                                 r->res->outcomes[index].from_version, r->opts->run_id, &err);
    if (rc == 0)
        r->res->rolled_back++;
    if (r->opts->hooks.rollback) {
        pthread_mutex_lock(&r->lock);
        r->opts->hooks.rollback(r->opts->hooks.ctx, index, rc, &err);
        pthread_mutex_unlock(&r->lock);
    }
    if (rc < 0)
        sg_log_error(&err);
    return rc;
}

/* Reverts, newest application first, the shards of the given stage (or of
 * every stage when stage is SIZE_MAX) that this run applied migrations to. */
static void roll_back(run *r, size_t stage)
{
    for (size_t i = r->napplied; i-- > 0;) {
        size_t index = r->applied_order[i];
        const sg_shard_outcome *out = &r->res->outcomes[index];
        if (stage != SIZE_MAX && r->opts->cfg->fleet[index].stage != stage)
            continue;
        if (out->applied == 0 || out->to_version == out->from_version)
            continue;
        revert_shard(r, index);
    }
}

/* ---- the run ---- */

int sg_run_pipeline(sg_run_result *out, const sg_run_options *opts, sg_error *err)
{
    const sg_pipeline_config *cfg = opts->cfg;
    run r = {.opts = opts, .res = out};
    int rc = 0;
    memset(out, 0, sizeof(*out));
    if (!(out->outcomes = sg_calloc(cfg->nfleet, sizeof(*out->outcomes))) ||
        !(out->rcs = sg_calloc(cfg->nfleet, sizeof(*out->rcs))) ||
        !(r.errors = sg_calloc(cfg->nfleet, sizeof(*r.errors))) ||
        !(r.applied_order = sg_calloc(cfg->nfleet, sizeof(*r.applied_order)))) {
        free(r.errors);
        free(r.applied_order);
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < cfg->nfleet; i++)
        out->rcs[i] = NOT_RUN;
    pthread_mutex_init(&r.lock, NULL);
    for (size_t st = 0; st < cfg->nstages && rc == 0; st++) {
        const sg_pipeline_stage *stage = &cfg->stages[st];
        size_t before = out->failed, mine = 0;
        for (size_t i = 0; i < stage->nshards; i++)
            mine += selected(&r, stage->shards[i]);
        if (mine == 0)
            continue; /* another partition's stage */
        r.stage = stage;
        stage_hook(&r, st, SG_STAGE_RUNNING);
        sg_log(SG_LOG_INFO, "stage %s: %zu shard%s, %u at once", stage->name, mine,
               mine == 1 ? "" : "s", stage->parallel);
        rc = sg_workers_run(stage->parallel < mine ? stage->parallel : mine, stage->nshards,
                            shard_task, &r, err);
        if (rc < 0)
            break;
        size_t failures = out->failed - before;
        if (failures > stage->max_failures) {
            out->halted = true;
            stage_hook(&r, st, SG_STAGE_FAILED);
            sg_log(SG_LOG_ERROR, "stage %s: %zu failed, over its budget of %u: %s", stage->name,
                   failures, stage->max_failures,
                   sg_pipeline_on_failure_name(cfg->policy.on_failure));
            if (cfg->policy.on_failure != SG_ON_FAILURE_HALT) {
                roll_back(&r,
                          cfg->policy.on_failure == SG_ON_FAILURE_ROLLBACK_STAGE ? st : SIZE_MAX);
                stage_hook(&r, st, SG_STAGE_ROLLED_BACK);
            }
            break;
        }
        if (st + 1 < cfg->nstages && stage->soak_ms) {
            stage_hook(&r, st, SG_STAGE_SOAKING);
            if ((rc = soak(stage->soak_ms, err)) < 0)
                break;
        }
        stage_hook(&r, st, SG_STAGE_DONE);
    }
    pthread_mutex_destroy(&r.lock);
    free(r.errors);
    free(r.applied_order);
    if (rc == 0 && out->failed) {
        rc = sg_error_set(err, SG_E_SHARDS_FAILED, "%zu of %zu shards failed%s", out->failed,
                          out->failed + out->done, out->halted ? "; the run stopped" : "");
    }
    return rc;
}

void sg_run_result_clear(sg_run_result *res, size_t nfleet)
{
    for (size_t i = 0; res->outcomes && i < nfleet; i++)
        sg_shard_outcome_clear(&res->outcomes[i]);
    free(res->outcomes);
    free(res->rcs);
    memset(res, 0, sizeof(*res));
}
