/* The restore command's engine: a snapshot into an empty database.
 *
 * Order: check the manifest (signature, then body), check the target is
 * empty, pre-data DDL (pg_restore --section=pre-data), data chunks in
 * parallel (each chunk opened, checked against its manifest digest and
 * loaded by COPY FROM in one transaction), sequence values, post-data
 * (indexes, constraints, triggers: pg_restore --section=post-data -j N),
 * materialized views refreshed, then every table's count and digest
 * recomputed from the database and compared with the manifest. */
#ifndef SG_RESTORE_RESTORE_H
#define SG_RESTORE_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/store.h"
#include "common/options.h"

typedef struct sg_restore_options {
    sg_store_config store; /* --store URL and the backend's settings */
    const char *key_path;
    sg_strlist trust;
    const char *target;
    const char *snapshot; /* SHARD/ID or SHARD/latest */
    int jobs;
    bool no_owner;
    bool no_privileges;            /* skip GRANT/REVOKE: the roles may not exist in the target */
    uint64_t maintenance_work_mem; /* for index builds, per connection */
    const char *pg_bindir;
} sg_restore_options;

void sg_restore_options_init(sg_restore_options *opts);

typedef struct sg_restore_result {
    char shard[128];
    char id[64];
    uint64_t tables, rows, plain_bytes;
    double seconds;
} sg_restore_result;

int sg_restore_run(sg_restore_result *out, const sg_restore_options *opts, sg_error *err);

#endif
