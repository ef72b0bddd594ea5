/* What the parts of the migration engine share: apply.c plans a run and
 * drives it, apply_file.c runs one file of the plan. */
#ifndef SG_STAGES_APPLY_IMPL_H
#define SG_STAGES_APPLY_IMPL_H

#include <jansson.h>

#include "common/layout.h"
#include "stages/apply.h"
#include "stages/exec.h"

typedef struct sg_apply_engine {
    PGconn *conn;
    const sg_apply_options *opts;
    sg_registry_actor actor;
    sg_exec_watch watch;
    sg_bluegreen_states bluegreen; /* the registry's blue-green changes, read with the plan */
    char host[256];
    char run_id[SG_RUN_ID_MAX];
} sg_apply_engine;

/* Appends an event to the registry; the detail (may be NULL) is consumed.
 * Recording must not fail a migration, so a failure is only logged. */
void sg_apply_event(sg_apply_engine *e, const sg_migration *m, const char *action, json_t *detail);

/* {"error", "class", "sqlstate"} of a failure, for an event. */
json_t *sg_apply_error_detail(const sg_error *failure);

/* Resets the session for the next file: settings a file made (search_path,
 * role) must not leak into the next one or into the registry's writes. */
int sg_apply_prepare_session(sg_apply_engine *e, sg_error *err);

/* Records an applied file: its row's status, duration and the schema's
 * fingerprint after it, and the "apply" event. */
int sg_apply_finish_row(sg_apply_engine *e, const sg_apply_step *step, sg_error *err);
void sg_apply_applied_event(sg_apply_engine *e, const sg_apply_step *step);

/* Runs fn inside a transaction under m's lock_timeout (the run's, else
 * default_lock_ms), retrying a lock timeout, deadlock or serialization
 * failure with backoff and reporting the blockers, as statements are. fn
 * runs its statements with sg_exec_run(..., &e->watch, ...) so that the
 * blockers are seen. */
typedef int (*sg_apply_txn_fn)(sg_apply_engine *e, void *ctx, sg_error *err);
int sg_apply_transaction(sg_apply_engine *e, const sg_migration *m, uint64_t default_lock_ms,
                         sg_apply_txn_fn fn, void *ctx, sg_error *err);

/* Runs one step of a plan (a file's up or down section). */
int sg_apply_run_file(sg_apply_engine *e, sg_apply_step *step, sg_error *err);

#endif
