/* The pipeline file: a YAML document that says where snapshots go, which
 * keys sign and open them, which migrations to apply to which shards, ring
 * by ring, and what to do when a shard fails. A complete, commented example
 * is examples/pipeline.yaml.
 *
 *   version: 1                        required; the only format there is
 *   name: nightly                     required; letters, digits, '.', '_', '-'
 *   store: s3://bucket/prefix         required; file://DIR or s3://BUCKET[/PREFIX]
 *   s3: {endpoint, region, path_style, insecure, ca_file, parallel, part_size,
 *        timeout, retry_time}         s3:// stores only; as the --s3-* options
 *   keys:                             required
 *     key: keys/runner.key            required; signs snapshots, opens them
 *     recipients: [keys/dr.pub]       more public keys to encrypt to (default none)
 *     trust: [keys/runner.pub]        signers accepted on restore (default none)
 *   sandbox: {driver, image, memory, cpus}
 *                                     driver local (default) or docker; image,
 *                                     memory (a size) and cpus (a positive
 *                                     number) are docker's and default to the
 *                                     sandbox's defaults (image postgres:<major
 *                                     of the shard's server>, no limits)
 *   migrations: migrations/           required; the migration directory
 *   target: latest                    latest (default) or a version number >= 0
 *   fleet:                            required, at least one shard
 *     - {name: a, dsn: "...", ring: canary}     all three required
 *   stages:                           required, at least one stage
 *     - {name: s, ring: canary}       either ring: RING or shards: [a, b]
 *       parallel: 1                   shards at a time (default 1, at least 1)
 *       soak: 10m                     wait after the stage (default 0)
 *       max_failures: 0               failed shards the stage tolerates (default 0)
 *   policy:
 *     on_failure: halt                halt (default), rollback-stage, rollback-all
 *     lock_timeout: 2s                per statement (default 2s, more than 0)
 *     statement_timeout: 0            per statement (default 0: none)
 *     retries: 10                     after a lock timeout (default 10)
 *     rehearsal_budget: 0             the live apply is refused when a file took
 *                                     longer than this in the rehearsal (default
 *                                     0: no budget)
 *   verify: {quiesced: false}         true when nothing else writes to the shards
 *                                     during the run, so the verify gate may also
 *                                     compare every table before and after
 *   objectives: {rto: 15m}            recovery-time objective of the test restore
 *                                     (default 0: none)
 *   bluegreen:                        how mode=bluegreen files run (stages/bluegreen.h)
 *     chunk_rows: 5000                rows of the first copy chunk
 *     chunk_time: 50ms                the chunk size adapts to this time per chunk
 *     chunk_pause: 0                  pause between chunks
 *     max_lag: 1s                     pause the copy while a standby lags more (0: never)
 *     keep_old: 24h                   the rollback window: the old table is dropped
 *                                     by the first run after it (0: at the end of
 *                                     the shard's verify gate)
 *
 * Durations are as sg_parse_duration reads them (500ms, 90s, 15m, 1h30m; a
 * bare number is seconds), sizes as sg_parse_size (512m, 2GiB). Numbers and
 * booleans are written without quotes.
 *
 * Every shard is in exactly one stage; a ring no shard is in, a listed shard
 * not in the fleet, and a shard in no stage are errors. Relative paths (key
 * files, migrations, s3.ca_file, and the directory of a file:// store) resolve
 * against the directory of the pipeline file. Secrets never live in the file:
 * a DSN with a password, or a key named like a credential (password,
 * secret_access_key, ...), is refused; passwords come from libpq (~/.pgpass,
 * PGPASSFILE, PGPASSWORD), S3 credentials from the AWS environment variables.
 *
 * Every error is SG_E_FORMAT with the message "FILE:LINE:COLUMN: what is
 * wrong" (1-based, at the offending node; YAML syntax errors too), and a hint
 * where one helps, such as the keys allowed where an unknown key is. */
#ifndef SG_PIPELINE_CONFIG_H
#define SG_PIPELINE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/options.h"
#include "common/store.h"
#include "restore/sandbox.h"
#include "stages/bluegreen.h"

#define SG_PIPELINE_FORMAT 1
/* The target "latest": every migration in the directory (as SG_APPLY_LATEST). */
#define SG_PIPELINE_TARGET_LATEST INT64_MAX
/* Larger pipeline files are refused rather than read. */
#define SG_PIPELINE_MAX_FILE (16u << 20)

typedef enum {
    SG_ON_FAILURE_HALT,           /* stop; shards already done stay done */
    SG_ON_FAILURE_ROLLBACK_STAGE, /* revert the failed stage's shards, then stop */
    SG_ON_FAILURE_ROLLBACK_ALL,   /* revert every shard this run changed, then stop */
} sg_pipeline_on_failure;

typedef struct sg_pipeline_shard {
    char *name;
    char *dsn; /* libpq connection string or URI, without a password */
    char *ring;
    size_t stage; /* index of the one stage that takes it */
} sg_pipeline_shard;

typedef struct sg_pipeline_stage {
    char *name;
    char *ring;     /* the ring it takes, or NULL when it lists its shards */
    size_t *shards; /* fleet indexes: the ring's in fleet order, or the list's order */
    size_t nshards; /* at least 1 */
    unsigned parallel;
    uint64_t soak_ms;
    unsigned max_failures;
} sg_pipeline_stage;

typedef struct sg_pipeline_policy {
    sg_pipeline_on_failure on_failure;
    uint64_t lock_timeout_ms;
    uint64_t statement_timeout_ms; /* 0: none */
    unsigned retries;
    uint64_t rehearsal_budget_ms; /* 0: none */
} sg_pipeline_policy;

typedef struct sg_pipeline_config {
    char *file; /* the pipeline file as named, for messages */
    char *name;
    sg_store_config store;      /* url absolute for file:// stores; owned strings */
    char *key_path;             /* absolute, as every path below */
    sg_strlist recipients;      /* public key files (owned strings) */
    sg_strlist trust;           /* public key files of accepted signers */
    sg_sandbox_options sandbox; /* driver, image, memory (in bytes), cpus; owned */
    char *migrations;
    int64_t target; /* SG_PIPELINE_TARGET_LATEST or a version */
    sg_pipeline_shard *fleet;
    size_t nfleet;
    sg_pipeline_stage *stages;
    size_t nstages;
    sg_pipeline_policy policy;
    bool verify_quiesced;
    uint64_t rto_ms;                /* 0: none */
    sg_bluegreen_options bluegreen; /* for mode=bluegreen files */

    /* private: fleet indexes sorted by shard name, for lookups */
    size_t *by_name;
} sg_pipeline_config;

/* Reads and checks a pipeline file. Relative paths resolve against the
 * file's directory, made absolute. SG_E_IO naming the file when it cannot be
 * read; SG_E_FORMAT as described above. *out is zeroed on failure. */
int sg_pipeline_config_load(sg_pipeline_config *out, const char *path, sg_error *err);

/* As sg_pipeline_config_load, for a file already in memory: `file` names it
 * in messages, and relative paths resolve against base_dir. */
int sg_pipeline_config_parse(sg_pipeline_config *out, const char *text, size_t len,
                             const char *file, const char *base_dir, sg_error *err);

/* Frees what a config holds and zeroes it; a zeroed config is a no-op. */
void sg_pipeline_config_clear(sg_pipeline_config *cfg);

/* The shard of that name, or NULL. */
const sg_pipeline_shard *sg_pipeline_config_shard(const sg_pipeline_config *cfg, const char *name);

/* "halt", "rollback-stage", "rollback-all". */
const char *sg_pipeline_on_failure_name(sg_pipeline_on_failure value);

/* Selects the shards of partition k of n (1 <= k <= n) into selected[i], one
 * per fleet index, so that N jobs reading the same file split the fleet
 * between them without talking to each other. Stage by stage, each stage's
 * shards sorted by name are dealt round robin, continuing the count from one
 * stage to the next: the partitions of every stage, and of the whole fleet,
 * differ in size by at most one, and the split depends on the names and the
 * stages, not on the order of the fleet list. SG_E_USAGE when k is out of
 * range. */
int sg_pipeline_partition(bool *selected, const sg_pipeline_config *cfg, unsigned k, unsigned n,
                          sg_error *err);

#endif
