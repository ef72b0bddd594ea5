/* The run journal: where every shard of a run stands, rewritten at every
 * transition, in the store (runs/<run-id>/journal.json) and in a local
 * file, so that `shardgate resume RUN_ID` continues a killed run and
 * `shardgate status` shows a running one. One JSON document:
 *
 *   {"format": 1, "run_id": "20240501T020000Z-1a2b3c4d", "pipeline": "nightly",
 *    "config_sha256": "<64 hex>", "target": "latest" or a version,
 *    "partition": null (the whole fleet) or {"k": 2, "n": 4},
 *    "status": "running", "started_at": "2024-05-01T02:00:00Z", "updated_at": ...,
 *    "stages": [{"name", "state", "started_at", "finished_at"}],
 *    "shards": [{"name", "stage", "state", "snapshot_id", "snapshot_bytes",
 *                "from_version", "to_version", "applied", "rehearsal_fingerprint",
 *                "live_fingerprint", "tables_verified",
 *                "gates": {"snapshot": {"started_at", "ran", "error", "ms",
 *                                       "message"}, ...},
 *                "bluegreen": [{"version": 7, "step": "cut-over", "at",
 *                               "lock_ms": 12.5}, ...],
 *                "failure": null or {"gate", "error", "message"}}]}
 *
 * Times are UTC, to the second; a time, snapshot id or fingerprint not yet
 * known is null; a gate that has not started is left out; "error" is the
 * class of an error code (sg_error_class), null for none. Every field is
 * required and no other is allowed, but for two: a shard's "bluegreen" is
 * left out while it has no steps (journals written before blue-green
 * changes have none), and a step's "lock_ms" is there only for a cut-over
 * or a swap back. */
#ifndef SG_PIPELINE_JOURNAL_H
#define SG_PIPELINE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/layout.h"
#include "common/manifest.h"
#include "common/sha256.h"
#include "common/store.h"
#include "pipeline/config.h"
#include "pipeline/run.h"
#include "stages/shard.h"

#define SG_JOURNAL_FORMAT 1
/* A run id and its NUL: "YYYYMMDDTHHMMSSZ-" and 8 hex digits, with room. */
/* "YYYY-MM-DDTHH:MM:SSZ" and its NUL, with room. */
#define SG_JOURNAL_TIME_MAX 32
#define SG_JOURNAL_MESSAGE_MAX 512
/* Larger journals are refused rather than read: far above any fleet (a
 * shard takes a few KiB at most). */
#define SG_JOURNAL_MAX_BYTES ((size_t)256 << 20)

typedef enum {
    SG_RUN_RUNNING,     /* or killed: a run that stops records how it ended */
    SG_RUN_DONE,        /* every shard through */
    SG_RUN_FAILED,      /* over, with failed shards */
    SG_RUN_HALTED,      /* stopped before the end, by the policy or a signal */
    SG_RUN_ROLLED_BACK, /* the policy reverted what the run applied */
} sg_run_status;

typedef enum {
    SG_SHARD_PENDING,
    SG_SHARD_LOCKED,
    SG_SHARD_SNAPSHOTTED,
    SG_SHARD_RESTORED,
    SG_SHARD_REHEARSED,
    SG_SHARD_APPLIED,
    SG_SHARD_VERIFIED,
    SG_SHARD_DONE,
    SG_SHARD_FAILED,
    SG_SHARD_ROLLED_BACK,
} sg_shard_state;

/* "running", "done", "failed", "halted", "rolled-back". */
const char *sg_run_status_name(sg_run_status status);

/* "pending", "locked", "snapshotted", "restored", "rehearsed", "applied",
 * "verified", "done", "failed", "rolled-back". */
const char *sg_shard_state_name(sg_shard_state state);

/* One gate of one shard, in its latest attempt. */
typedef struct sg_journal_gate_entry {
    char started_at[SG_JOURNAL_TIME_MAX]; /* "" until it starts */
    bool ran;                             /* it finished, passed or failed */
    int rc;                               /* 0, or the failure's code */
    uint64_t ms;                          /* how long it ran */
    char message[SG_JOURNAL_MESSAGE_MAX]; /* the failure's message, "" on success */
} sg_journal_gate_entry;

typedef struct sg_journal_failure {
    sg_gate gate;
    int code;
    char message[SG_JOURNAL_MESSAGE_MAX];
} sg_journal_failure;

/* One step of a blue-green change on a shard's live database, as it happened. */
typedef struct sg_journal_bluegreen {
    int64_t version;
    char step[16];                /* sg_bluegreen_step_name() */
    char at[SG_JOURNAL_TIME_MAX]; /* when it was recorded, UTC like the journal's other times */
    double lock_ms;               /* the table's lock at a cut-over or swap back; -1 otherwise */
} sg_journal_bluegreen;

typedef struct sg_journal_shard {
    char *name;
    size_t stage; /* index into the journal's stages */
    sg_shard_state state;
    sg_journal_gate_entry gates[SG_GATE_COUNT];
    char snapshot_id[SG_SNAPSHOT_ID_MAX]; /* "" until the snapshot gate passes */
    uint64_t snapshot_bytes;              /* stored for that snapshot; 0 without one */
    int64_t from_version, to_version;
    size_t applied;
    char rehearsal_fingerprint[SG_SHA256_HEX_LEN]; /* "" until known */
    char live_fingerprint[SG_SHA256_HEX_LEN];
    size_t tables_verified;
    bool has_failure; /* the shard failed at failure.gate (kept once rolled back) */
    sg_journal_failure failure;
    sg_journal_bluegreen *bluegreen; /* the steps of its blue-green changes, owned */
    size_t nbluegreen;
} sg_journal_shard;

typedef struct sg_journal_stage {
    char *name;
    sg_stage_state state;
    char started_at[SG_JOURNAL_TIME_MAX]; /* "" until it runs */
    char finished_at[SG_JOURNAL_TIME_MAX];
} sg_journal_stage;

typedef struct sg_journal {
    char run_id[SG_RUN_ID_MAX];
    char *pipeline;                        /* the pipeline's name */
    char config_sha256[SG_SHA256_HEX_LEN]; /* of the pipeline file's bytes */
    int64_t target;                        /* SG_PIPELINE_TARGET_LATEST or a version */
    unsigned part_k, part_n;               /* partition k of n; 0/0: the whole fleet */
    sg_run_status status;
    char started_at[SG_JOURNAL_TIME_MAX];
    char updated_at[SG_JOURNAL_TIME_MAX];
    sg_journal_stage *stages; /* every stage of the pipeline, in order */
    size_t nstages;
    sg_journal_shard *shards; /* this partition's shards, stage by stage */
    size_t nshards;

    /* private: shard indexes sorted by name, for sg_journal_shard_find */
    size_t *by_name;
} sg_journal;

/* Makes a run id: the UTC time then 8 random hex digits
 * ("20240501T020000Z-1a2b3c4d"), so that ids sort by when runs started. */
void sg_journal_new_run_id(char out[SG_RUN_ID_MAX]);

/* Run ids are path components in the store: letters, digits, '.', '_' and
 * '-', not starting with '.', shorter than SG_RUN_ID_MAX. SG_E_USAGE
 * naming the id otherwise. */
int sg_journal_run_id_check(const char *run_id, sg_error *err);

/* A journal for a new run of cfg: every stage pending, and the shards that
 * `selected` marks (per fleet index; NULL: all) pending, stage by stage in
 * each stage's order. config_sha256 is the hex SHA-256 of the pipeline
 * file; part_k/part_n the partition (0/0: the whole fleet). SG_E_USAGE for
 * a bad run id or partition. */
int sg_journal_new(sg_journal **out, const char *run_id, const sg_pipeline_config *cfg,
                   const char *config_sha256, unsigned part_k, unsigned part_n,
                   const bool *selected, sg_error *err);

void sg_journal_free(sg_journal *j);

/* The index of the shard of that name, or -1. */
long sg_journal_shard_find(const sg_journal *j, const char *name);

/* Transitions. Each stamps updated_at; indexes must be in range. */

/* Sets a shard's state as it is (the runner's steps between gates: locked,
 * restored, done, rolled-back). */
void sg_journal_shard_state(sg_journal *j, size_t shard, sg_shard_state state);

/* Records a gate of a shard, as the gate observer of sg_shard_run reports
 * it. Starting (rec->ran false), the gate and those after it are cleared
 * (they belong to an earlier attempt), a failure is forgotten, and the shard
 * is in the state the gates before leave it: snapshot locked, test-restore
 * snapshotted, apply rehearsed, verify applied. Finishing, the shard is
 * snapshotted, rehearsed, applied or verified, or failed at that gate with
 * the record's code and message. */
void sg_journal_gate(sg_journal *j, size_t shard, sg_gate gate, const sg_gate_record *rec);

/* Copies what a shard's gates found: snapshot id and stored bytes,
 * versions, migrations applied, fingerprints, tables verified. Call it at
 * the end of each gate too, so that the snapshot id is in the journal before
 * the next gate starts. A resumed shard's outcome names the snapshot of the
 * run it resumes without its size, so the size recorded for that snapshot is
 * kept. */
void sg_journal_shard_outcome(sg_journal *j, size_t shard, const sg_shard_outcome *outcome);

/* Appends a blue-green step of version to shard's list, as the engine
 * commits it (a step recorded again for the same version, as a resumed run
 * does, replaces the earlier entry: the list has each version's steps once,
 * in the order first reached). lock_ms is kept to the microsecond; a
 * negative one means none. SG_E_INTERNAL for a version below 1 or a step
 * that sg_bluegreen_step_name does not name; SG_E_NOMEM leaves the list as
 * it was. */
int sg_journal_bluegreen_step(sg_journal *j, size_t shard, int64_t version, const char *step,
                              double lock_ms, sg_error *err);

/* Sets a stage's state; running stamps started_at (the first time), done,
 * failed and rolled-back stamp finished_at. */
void sg_journal_stage_state(sg_journal *j, size_t stage, sg_stage_state state);

void sg_journal_run_status(sg_journal *j, sg_run_status status);

/* Where a shard starts again when its run is resumed, and *done whether it
 * is through (verified or done; the gate returned is then meaningless). A
 * pending, locked or rolled-back shard starts from the snapshot, as does
 * one that failed the snapshot or has no snapshot id. Any other starts
 * from the test restore: the rehearsal holds nothing across processes, and
 * the apply resumes through the shard's registry. */
sg_gate sg_journal_resume_gate(const sg_journal *j, size_t shard, bool *done);

/* The journal as JSON (one line and a newline), in *out to free(). */
int sg_journal_to_json(char **out, const sg_journal *j, sg_error *err);

/* Reads a journal. SG_E_FORMAT for anything but what sg_journal_to_json
 * writes, naming the field: "journal: shards[2].state: unknown state
 * \"sideways\"". */
int sg_journal_parse(sg_journal **out, const char *text, size_t len, sg_error *err);

/* Writes the journal to the local file (atomically, with sg_file_replace)
 * and then to the store, either of which may be NULL. The local copy comes
 * first: it is cheap and survives a store outage. Both are attempted; the
 * first failure is returned (SG_E_IO for the file, the store's error for
 * the store), and the caller decides whether it is fatal. */
int sg_journal_save(const sg_journal *j, sg_store *store, const char *local_path, sg_error *err);

/* Reads the journal of a run from the store: runs/RUN_ID/journal.json, or,
 * for a run split into partitions (which share the run id), every
 * partition's runs/RUN_ID/journal-K-of-N.json merged (sg_journal_merge).
 * SG_E_NOT_FOUND naming the run when it has none; SG_E_USAGE for an invalid
 * run id; as sg_journal_parse for a bad one, with its key in the detail. */
int sg_journal_load(sg_journal **out, sg_store *store, const char *run_id, sg_error *err);

/* Reads the journal of partition K of N of a run. */
int sg_journal_load_part(sg_journal **out, sg_store *store, const char *run_id, unsigned k,
                         unsigned n, sg_error *err);

/* Reads a journal from a local file: SG_E_NOT_FOUND when there is none,
 * SG_E_IO naming the file when it cannot be read. */
int sg_journal_load_file(sg_journal **out, const char *path, sg_error *err);

/* The ids of the runs that have a journal in the store (each once, however
 * many partitions it has), newest first, in an array to free with
 * sg_journal_list_free. */
int sg_journal_list(char ***run_ids, size_t *count, sg_store *store, sg_error *err);
void sg_journal_list_free(char **run_ids, size_t count);

/* Merges the journals of the partitions of one run into one journal of
 * them all (partition 0/0): shards stage by stage, by name within a stage,
 * each with its blue-green steps;
 * a stage in the state that tells most (failed, rolled-back, running,
 * soaking over the others; done or pending only when every part agrees);
 * the run failed, rolled back or halted if any part is (in that order),
 * else running if any part is, else done. SG_E_MISMATCH naming the part
 * when it is of another run, another pipeline file or other stages, or when
 * a shard is in two parts; SG_E_USAGE when there are no parts. */
int sg_journal_merge(sg_journal **out, sg_journal *const *parts, size_t nparts, sg_error *err);

#endif
