/* Disaster-recovery drills: a test restore (test_restore.h) of the latest
 * complete snapshot of each chosen shard, several shards at once, measured
 * against a recovery-time objective, and reported for people (the CLI's
 * table or JSON), for monitoring (a Prometheus textfile) and for CI (a JUnit
 * file with a test case per shard). */
#ifndef SG_RESTORE_DRILL_H
#define SG_RESTORE_DRILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "restore/test_restore.h"

typedef struct sg_drill_options {
    sg_test_restore_options test; /* snapshot is set per shard */
    sg_strlist shards;            /* the shards to drill */
    bool all;                     /* or every shard found in the store */
    int parallel;                 /* shards at once (default 1) */
    uint64_t rto_ms;              /* recovery-time objective; 0: none */
} sg_drill_options;

typedef struct sg_drill_shard {
    char shard[SG_SHARD_NAME_MAX + 1];
    sg_test_restore_result result;
    int rc; /* 0, or the error that failed the shard */
    sg_error error;
    bool rto_exceeded; /* verified, but slower than the objective */
} sg_drill_shard;

typedef struct sg_drill_result {
    char started_at[32]; /* ISO 8601 UTC */
    char run_id[64];     /* labels the drill's sandboxes: "drill-<time>-<pid>" */
    double seconds;
    sg_drill_shard *shards;
    size_t count;
    size_t failed;   /* shards whose test restore failed */
    size_t too_slow; /* shards that passed but missed the objective */
} sg_drill_result;

/* Drills every chosen shard, even after one fails. Returns 0 when every
 * shard was recovered within the objective, SG_E_SHARDS_FAILED when any
 * failed, SG_E_OBJECTIVE when all recovered but one missed the objective
 * (err says which), SG_E_INTERRUPTED after SIGINT/SIGTERM, or the error
 * that kept the drill from starting (no store, no shards). The result is
 * filled in every case but the last. */
int sg_drill_run(sg_drill_result *res, const sg_drill_options *opts, sg_error *err);
void sg_drill_result_clear(sg_drill_result *res);

/* "ok", "failed" or "rto_exceeded". */
const char *sg_drill_shard_status(const sg_drill_shard *shard);

/* Writes the Prometheus textfile (node_exporter's textfile collector reads
 * *.prom files) atomically: a temporary file in the same directory renamed
 * over path, so a scrape never sees half a file. */
int sg_drill_write_metrics(const sg_drill_result *res, const char *path, sg_error *err);

/* Writes a JUnit XML report, one test case per shard, atomically. */
int sg_drill_write_junit(const sg_drill_result *res, const char *path, sg_error *err);

#endif
