/* Where things live in a store:
 *   shards/<shard>/snapshots/<id>/packs/<n>.pack
 *   shards/<shard>/snapshots/<id>/manifest      (written last: the commit point)
 */
#ifndef SG_COMMON_LAYOUT_H
#define SG_COMMON_LAYOUT_H

#include "common/error.h"

#define SG_SHARD_NAME_MAX 100

/* Shard names are path components in the store: letters, digits, '.', '_'
 * and '-', not starting with '.', at most SG_SHARD_NAME_MAX characters. */
int sg_shard_name_check(const char *shard, sg_error *err);

/* "shards/<shard>/snapshots/<id>/<path>" (path may be "" for the prefix);
 * NULL when out of memory. */
char *sg_layout_key(const char *shard, const char *id, const char *path);

/* "shards/<shard>/snapshots/" */
char *sg_layout_shard_prefix(const char *shard);

/* Splits "SHARD/ID" or "SHARD/latest" into its parts (copied into the given
 * buffers). A malformed spec is SG_E_USAGE. */
int sg_layout_parse_spec(char shard[SG_SHARD_NAME_MAX + 1], char id[64], const char *spec,
                         sg_error *err);

/* Run ids: the UTC time then 8 random hex digits ("20240501T020000Z-1a2b3c4d"),
 * so that ids sort by when runs started. They name runs in the store, in the
 * journal and in each shard's registry. */
#define SG_RUN_ID_MAX 40
void sg_run_id_new(char out[SG_RUN_ID_MAX]);

/* "shards/<shard>/last-drill.json": the newest drill's result for the shard,
 * which `status --config` shows; free(). */
char *sg_layout_drill_key(const char *shard);

#endif
