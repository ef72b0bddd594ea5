/* The run: stage after stage, the stage's shards through the four gates
 * (stages/shard.h), up to `parallel` at once; a failed shard is a result, not
 * the end of the stage. After a stage, its failures are weighed against
 * `max_failures`: within the budget the run soaks and goes on; over it the
 * policy acts (halt, roll back the stage, roll back everything the run
 * applied) and the run stops. What happens is told to hooks, one call at a
 * time, so the journal and the progress display need no locks of their own. */
#ifndef SG_PIPELINE_RUN_H
#define SG_PIPELINE_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "pipeline/config.h"
#include "stages/migration.h"
#include "stages/shard.h"

typedef enum {
    SG_STAGE_PENDING,
    SG_STAGE_RUNNING,
    SG_STAGE_SOAKING,
    SG_STAGE_DONE,
    SG_STAGE_FAILED, /* over its failure budget */
    SG_STAGE_ROLLED_BACK,
} sg_stage_state;

const char *sg_stage_state_name(sg_stage_state state);

typedef struct sg_run_hooks {
    void *ctx;
    /* a gate starts (record->ran false) or ends; outcome is what the shard's
     * gates found so far */
    void (*gate)(void *ctx, size_t shard, sg_gate gate, const sg_gate_record *record,
                 const sg_shard_outcome *outcome);
    /* a shard is through (rc 0) or failed */
    void (*shard)(void *ctx, size_t shard, const sg_shard_outcome *outcome, int rc,
                  const sg_error *err);
    void (*stage)(void *ctx, size_t stage, sg_stage_state state);
    /* a shard's migrations of this run were reverted (rc 0), or not */
    void (*rollback)(void *ctx, size_t shard, int rc, const sg_error *err);
    /* a step of a blue-green change on a shard was committed */
    void (*bluegreen)(void *ctx, size_t shard, int64_t version, sg_bluegreen_step step,
                      double lock_ms);
} sg_run_hooks;

typedef struct sg_run_options {
    const sg_pipeline_config *cfg;
    const sg_migration_set *set;
    const char *run_id;
    const bool *selected; /* per fleet index: this partition's shards; NULL: all */
    /* resume: per fleet index, a shard already through (done), or the gate
     * it starts at with the snapshot it has; NULL: every shard from the start */
    const bool *done;
    const sg_gate *first_gate;
    const char (*snapshot_ids)[SG_SNAPSHOT_ID_MAX];
    int jobs;              /* connections per snapshot and restore */
    const char *pg_bindir; /* client tools */
    sg_run_hooks hooks;
} sg_run_options;

typedef struct sg_run_result {
    sg_shard_outcome *outcomes; /* per fleet index */
    int *rcs;                   /* per fleet index: 0, a failure, or 1 when not run */
    size_t done, failed, rolled_back;
    bool halted; /* a stage went over its failure budget */
} sg_run_result;

/* Runs the pipeline. SG_E_SHARDS_FAILED when any shard failed (the policy
 * has acted by then); SG_E_INTERRUPTED on a signal, the journal being as far
 * as the run got. */
int sg_run_pipeline(sg_run_result *out, const sg_run_options *opts, sg_error *err);

void sg_run_result_clear(sg_run_result *res, size_t nfleet);

/* Reverts a run's migrations on one shard of cfg's fleet, back to version
 * to_version, under the pipeline's lock timeout and retries: what the
 * rollback policies and `shardgate rollback` do. Errors name the shard. */
int sg_run_revert_shard(const sg_pipeline_config *cfg, const sg_migration_set *set, size_t index,
                        int64_t to_version, const char *run_id, sg_error *err);

#endif
