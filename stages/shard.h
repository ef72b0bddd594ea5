/* One shard through the four gates, as the pipeline runs it:
 *
 *   snapshot      a fresh snapshot of the shard, stored in the store;
 *   test-restore  the snapshot read back and verified, restored into a
 *                 sandbox and compared with its manifest, and the pending
 *                 migrations rehearsed there (stages/rehearse.h);
 *   apply         the migrations the rehearsal ran, applied to the shard;
 *   verify        their verify sections pass again, the shard's schema
 *                 fingerprint equals the rehearsal's, and, when nothing else
 *                 writes to the shard (quiesced), every table the rehearsal
 *                 compared has the snapshot's rows over its surviving columns.
 *
 * The shard's migration lock (a session advisory lock) is held from the
 * first gate to the last, so no other runner touches the shard meanwhile;
 * a gate runs only when the ones before it passed in this call, or, on
 * resume, in the run that is being resumed (the snapshot id says which). */
#ifndef SG_STAGES_SHARD_H
#define SG_STAGES_SHARD_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/layout.h"
#include "common/options.h"
#include "common/store.h"
#include "restore/sandbox.h"
#include "restore/test_restore.h"
#include "stages/migration.h"
#include "stages/rehearse.h"

typedef enum { SG_GATE_SNAPSHOT, SG_GATE_TEST_RESTORE, SG_GATE_APPLY, SG_GATE_VERIFY } sg_gate;
#define SG_GATE_COUNT 4

/* "snapshot", "test-restore", "apply", "verify". */
const char *sg_gate_name(sg_gate gate);

typedef struct sg_shard_settings {
    const char *name; /* the shard's name in the store */
    const char *dsn;
    sg_store_config store;
    const char *key_path;  /* signs snapshots, opens them for the test restore */
    sg_strlist recipients; /* more keys the snapshots are encrypted to */
    sg_strlist trust;      /* signers accepted by the test restore */
    sg_sandbox_options sandbox;
    const sg_migration_set *set;
    int64_t target; /* SG_APPLY_LATEST or a version */
    uint64_t lock_timeout_ms, statement_timeout_ms;
    unsigned retries;
    uint64_t rehearsal_budget_ms; /* per file; 0: none */
    bool quiesced;                /* nothing else writes to the shard during the run */
    sg_bluegreen_options bluegreen;
    /* told each step of a blue-green change on the live shard; may be NULL */
    void (*on_bluegreen_step)(void *ctx, const sg_migration *m, sg_bluegreen_step step,
                              double lock_ms);
    void *on_bluegreen_ctx;
    const char *run_id;
    const char *pg_bindir;
    int jobs; /* connections for the snapshot and the restore */
} sg_shard_settings;

/* What one gate did: filled as far as it got. */
typedef struct sg_gate_record {
    bool ran;
    int rc; /* 0, or the failure's code */
    double seconds;
    char message[512]; /* the failure's message, "" on success */
} sg_gate_record;

typedef struct sg_shard_outcome {
    sg_gate_record gates[SG_GATE_COUNT];
    char snapshot_id[SG_SNAPSHOT_ID_MAX];
    uint64_t snapshot_bytes, snapshot_rows;
    sg_test_restore_result restore;
    sg_rehearsal_result rehearsal;
    int64_t from_version, to_version; /* the live shard's, before and after apply */
    size_t applied;                   /* migrations applied to the live shard */
    char live_fingerprint[SG_SHA256_HEX_LEN];
    size_t tables_verified;    /* compared with the snapshot (quiesced only) */
    size_t bluegreen_verified; /* blue-green changes whose old and new tables agreed */
} sg_shard_outcome;

/* Told when a gate starts (record->ran false) and when it ends. */
typedef void (*sg_gate_observer)(void *ctx, const sg_shard_settings *shard, sg_gate gate,
                                 const sg_gate_record *record);

/* Runs the gates from `first` to the last. Starting later than the
 * snapshot (a resumed run), out->snapshot_id must name the snapshot of this
 * run, and the test restore, which holds nothing across runs, runs again.
 * Errors are the failing gate's, with the shard and gate in front. */
int sg_shard_run(sg_shard_outcome *out, const sg_shard_settings *s, sg_gate first,
                 sg_gate_observer observer, void *ctx, sg_error *err);

void sg_shard_outcome_clear(sg_shard_outcome *out);

#endif
