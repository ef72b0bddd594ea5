/* The snapshot command's engine: a consistent, encrypted, checksummed, signed
 * copy of one database into a store.
 *
 * A coordinator connection opens a REPEATABLE READ, READ ONLY transaction,
 * locks the tables (ACCESS SHARE, short lock_timeout), reads the catalog and
 * sequence values and exports its snapshot. `jobs` reader connections adopt
 * that snapshot and COPY tables (large ones split into TID ranges) into
 * row-aligned chunks, digesting every row; `jobs` sealer threads compress and
 * seal chunks and append them to packs. pg_dump writes the schema from the
 * same snapshot meanwhile. The manifest is written last: until it exists the
 * snapshot is incomplete and never restorable. */
#ifndef SG_SNAPSHOT_SNAPSHOT_H
#define SG_SNAPSHOT_SNAPSHOT_H

#include <stdint.h>

#include "common/error.h"
#include "common/store.h"
#include "common/manifest.h"
#include "common/options.h"

typedef struct sg_snapshot_options {
    const char *dsn;
    sg_store_config store; /* --store URL and the backend's settings */
    const char *key_path;
    sg_strlist recipients; /* paths of .pub files */
    const char *shard;     /* default: the database name */
    int jobs;
    uint64_t chunk_size;
    uint64_t pack_size;
    int compress_level;
    int lock_timeout_ms;
    const char *pg_bindir;
    const char *run_id;     /* a pipeline run's: recorded in the manifest; NULL for none */
    int64_t target_version; /* the version that run migrates to */
} sg_snapshot_options;

/* Defaults: 2 jobs, 32 MiB chunks, 1 GiB packs, zstd level 1, 5 s lock
 * timeout. */
void sg_snapshot_options_init(sg_snapshot_options *opts);

typedef struct sg_snapshot_result {
    char id[SG_SNAPSHOT_ID_MAX];
    char shard[128];
    uint64_t tables, rows, plain_bytes, stored_bytes;
    double seconds;
} sg_snapshot_result;

/* Takes a snapshot. On failure nothing restorable is left: the manifest is
 * never written and packs already stored are removed where possible. */
int sg_snapshot_run(sg_snapshot_result *out, const sg_snapshot_options *opts, sg_error *err);

#endif
