/* Applies and reverts migrations on one database, safely: under the shard's
 * migration lock, with lock_timeout on every statement, retrying with
 * backoff when a lock is not granted in time, and recording every step in the
 * registry so that a killed run resumes where it stopped.
 *
 * Transactional files run in one transaction each, with their registry row
 * and their verify section: a failure leaves nothing behind. Files with
 * transaction=off run statement by statement; each statement that may run in
 * a transaction block commits together with its progress, so a resumed run
 * neither repeats nor skips it; the others (CREATE INDEX CONCURRENTLY and
 * the like) record progress after they succeed, and an INVALID index left by
 * a failed build is dropped before the statement runs again. */
#ifndef SG_STAGES_APPLY_H
#define SG_STAGES_APPLY_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/retry.h"
#include "stages/bluegreen.h"
#include "stages/migration.h"
#include "stages/registry.h"

#define SG_APPLY_LATEST INT64_MAX

typedef struct sg_apply_options {
    const char *dsn;                /* the database (the lock watch connects to it too) */
    int64_t target;                 /* apply up to this version; revert down to it */
    uint64_t lock_timeout_ms;       /* unless the file sets one; 0 means 2 s */
    uint64_t statement_timeout_ms;  /* unless the file sets one; 0: none */
    unsigned retries;               /* after a lock timeout */
    sg_retry_policy backoff;        /* between those retries */
    bool allow_changed;             /* applied files that changed are logged, not refused */
    bool dry_run;                   /* plan only: nothing is written */
    bool skip_lint;                 /* the caller linted the set already */
    sg_bluegreen_options bluegreen; /* for mode=bluegreen files */
    /* told each step of a blue-green change once it is committed (lock_ms:
     * the cut-over's or swap back's lock, else -1); may be NULL */
    void (*on_bluegreen_step)(void *ctx, const sg_migration *m, sg_bluegreen_step step,
                              double lock_ms);
    void *on_bluegreen_ctx;
    sg_registry_actor actor;
} sg_apply_options;

/* Defaults: latest, 2 s lock timeout (1 s for a blue-green cut-over), 10
 * retries, backoff from 200 ms doubling up to 10 s, blue-green defaults. An actor without host or
 * run id gets this host's name and a new run id. */
void sg_apply_options_init(sg_apply_options *opts, const char *dsn);

typedef enum {
    SG_STEP_APPLY,
    SG_STEP_REVERT,
    SG_STEP_FINALIZE /* drop a blue-green change's old table */
} sg_step_kind;

typedef struct sg_apply_step {
    const sg_migration *migration;
    sg_step_kind kind;
    int resume_from;   /* statements already done by a killed or failed run */
    bool may_have_run; /* that run had started the next one, outside a transaction */
    bool edited;       /* the file changed after its done statements: record its new checksum */
    unsigned attempts; /* of the file, or of its most retried statement */
    int64_t duration_ms;
    double lock_ms; /* a blue-green cut-over's (or swap back's) lock; -1 for none */
    bool done;
} sg_apply_step;

typedef struct sg_apply_result {
    sg_apply_step *steps; /* the plan, in order; `done` marks what ran */
    size_t count;
    int64_t from_version, to_version; /* schema version before and after (0: none) */
} sg_apply_result;

/* Applies the set's pending migrations up to opts->target. With dry_run, fills
 * the plan and changes nothing (not even creating the registry). */
int sg_migrate(sg_apply_result *out, PGconn *conn, const sg_migration_set *set,
               const sg_apply_options *opts, sg_error *err);

/* Reverts applied migrations above opts->target, newest first, with their
 * down sections. Every one must be reversible and unchanged, or nothing runs. */
int sg_revert(sg_apply_result *out, PGconn *conn, const sg_migration_set *set,
              const sg_apply_options *opts, sg_error *err);

/* Compares a blue-green change's kept old table with the live new one, in
 * one snapshot, while its rollback window is open (writers may go on):
 * SG_E_MISMATCH names rows that differ. *compared is false when m has no
 * open window (nothing to compare). */
int sg_bluegreen_verify_window(bool *compared, PGconn *conn, const sg_migration *m, sg_error *err);

/* Ends the rollback window of blue-green changes: drops the old table kept
 * since the cut-over, of version opts->target, or of every open window
 * when the target is SG_APPLY_LATEST. */
int sg_finalize(sg_apply_result *out, PGconn *conn, const sg_migration_set *set,
                const sg_apply_options *opts, sg_error *err);

void sg_apply_result_clear(sg_apply_result *res);

/* Runs m's verify section on conn: every statement must succeed, and one
 * whose first row's first column is a boolean false fails (SG_E_MISMATCH,
 * naming the file and line). A transient failure (a timeout, a lost
 * connection) keeps its own code: it proves nothing either way. */
int sg_migration_verify(PGconn *conn, const sg_migration *m, sg_error *err);

#endif
