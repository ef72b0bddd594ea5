/* The test restore: proof that a stored snapshot can be recovered, and how
 * fast. Read back and verify the snapshot (every object's size and SHA-256
 * against the signed manifest), create a sandbox running the snapshot's
 * PostgreSQL major version, restore into it (every table's row count and
 * digest compared with the manifest), check every B-tree index with amcheck
 * where the extension is available, and destroy the sandbox. The pipeline's
 * test-restore gate and `shardgate drill` both call this. */
#ifndef SG_RESTORE_TEST_RESTORE_H
#define SG_RESTORE_TEST_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/layout.h"
#include "common/manifest.h"
#include "common/options.h"
#include "common/store.h"
#include "restore/sandbox.h"

typedef struct sg_test_restore_options {
    sg_store_config store;
    const char *key_path; /* opens the snapshot */
    sg_strlist trust;     /* signers accepted */
    const char *snapshot; /* SHARD/ID or SHARD/latest */
    int jobs;             /* connections for loading and index builds */
    uint64_t maintenance_work_mem;
    const char *pg_bindir; /* client tools (pg_restore) */
    /* amcheck also proves every heap tuple is in its index (heapallindexed):
     * a second pass over every table, which a fresh index build from those
     * very tuples rarely fails. Off, amcheck checks each index's structure
     * and order, which is what a changed collation breaks. */
    bool amcheck_heap;
    sg_sandbox_options sandbox; /* pg_major is taken from the snapshot */
    /* Runs on the restored copy, verified and checked, before the sandbox
     * goes: the pipeline rehearses its migrations there. server is a libpq
     * conninfo for the sandbox's server, dbname the restored database's
     * name. NULL for none; its failure is the test's. */
    int (*on_restored)(void *ctx, const char *server, const char *dbname, sg_error *err);
    void *on_restored_ctx;
} sg_test_restore_options;

/* What was proven and measured. Filled as far as the test got, so a failed
 * test still says which snapshot it was and how long it ran. */
typedef struct sg_test_restore_result {
    char shard[SG_SHARD_NAME_MAX + 1];
    char id[SG_SNAPSHOT_ID_MAX];
    char finished_at[32];   /* when the snapshot was taken (ISO 8601 UTC) */
    double snapshot_age;    /* seconds from finished_at to the start: the recovery point */
    double seconds;         /* start to verified: the measured recovery time */
    double verify_seconds;  /* reading back and checking the stored objects */
    double sandbox_seconds; /* creating the sandbox */
    double restore_seconds; /* restoring and comparing with the manifest */
    uint64_t stored_bytes, tables, rows;
    bool amcheck; /* amcheck was available and ran */
    uint64_t indexes_checked;
    double hook_seconds; /* in on_restored */
} sg_test_restore_result;

/* Runs the test. Errors as restore and verify give them, SG_E_MISMATCH for
 * an index amcheck finds corrupt (naming it). SIGINT/SIGTERM stop it with
 * the sandbox destroyed. */
int sg_test_restore(sg_test_restore_result *res, const sg_test_restore_options *opts,
                    sg_error *err);

#endif
