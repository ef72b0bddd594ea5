/* Retention: deleting old snapshots from a store. For each shard the
 * keep_last newest complete snapshots stay, and with keep_days also every
 * complete snapshot taken in the last keep_days days. Incomplete snapshots
 * (no manifest: killed runs) go once a newer complete snapshot exists; a
 * newer incomplete one may still be running and stays.
 *
 * A snapshot is deleted manifest first, then its packs, so an interrupted
 * prune leaves at worst an incomplete snapshot, which no restore will pick
 * and the next prune removes, never a manifest whose packs are gone. */
#ifndef SG_RESTORE_PRUNE_H
#define SG_RESTORE_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/layout.h"
#include "common/manifest.h"
#include "common/store.h"

typedef struct sg_prune_options {
    sg_store_config store;
    const char *shard; /* NULL: every shard */
    int keep_last;     /* at least 1 */
    int keep_days;     /* 0: not used */
    bool dry_run;      /* decide and report, delete nothing */
} sg_prune_options;

typedef struct sg_pruned {
    char shard[SG_SHARD_NAME_MAX + 1];
    char id[SG_SNAPSHOT_ID_MAX];
    bool complete;
    uint64_t pack_bytes;
} sg_pruned;

typedef struct sg_prune_result {
    sg_pruned *removed; /* what was (or, dry run, would be) removed, newest first */
    size_t nremoved;
    size_t kept;
    uint64_t freed_bytes;
} sg_prune_result;

/* Applies the retention rules; the result lists what went. On failure the
 * snapshots already removed are in the result too, and err names the
 * snapshot and object that could not be deleted. */
int sg_prune(sg_prune_result *res, const sg_prune_options *opts, sg_error *err);
void sg_prune_result_clear(sg_prune_result *res);

/* The time a snapshot id encodes (UTC seconds), or -1 if it has none. */
int64_t sg_snapshot_id_time(const char *id);

#endif
