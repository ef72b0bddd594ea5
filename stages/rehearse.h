/* The rehearsal: the pending migrations run on a restored copy of a shard
 * before they touch the shard. On a copy of the restored database (which the
 * test restore has compared with the snapshot's manifest, table by table),
 * the migrations go up (with their verify sections), down, and up again,
 * each file timed; then every table that survives is compared with the
 * untouched restored database: its row count, and a digest over the columns
 * that exist on both sides with the same type, unless a data-change file
 * writes to it. The schema fingerprint the rehearsal ends with is what the
 * live shard must end with. */
#ifndef SG_STAGES_REHEARSE_H
#define SG_STAGES_REHEARSE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/digest.h"
#include "common/error.h"
#include "common/sha256.h"
#include "stages/apply.h"
#include "stages/migration.h"

typedef struct sg_rehearsal_options {
    const sg_migration_set *set;
    int64_t target;                /* SG_APPLY_LATEST or a version */
    uint64_t lock_timeout_ms;      /* as for the live apply (0: the default) */
    uint64_t statement_timeout_ms; /* 0: none */
    uint64_t budget_ms;            /* the longest a file may take to go up; 0: no limit */
    const char *run_id;            /* recorded in the copy's registry; may be NULL */
} sg_rehearsal_options;

/* How long each file took, in ms (-1: not run, e.g. the down of an
 * irreversible file). */
typedef struct sg_rehearsal_file {
    const sg_migration *migration;
    int64_t up_ms, down_ms, up_again_ms;
} sg_rehearsal_file;

typedef enum {
    SG_TABLE_EQUAL,       /* rows and digest equal over the surviving columns */
    SG_TABLE_DATA_CHANGE, /* not compared: a data-change file writes to it */
    SG_TABLE_DROPPED,     /* not compared: the migrations dropped it */
} sg_table_comparison;

typedef struct sg_rehearsal_table {
    char *schema, *name;
    sg_table_comparison result;
    uint64_t rows;                    /* in the restored database */
    size_t columns_compared, columns; /* surviving columns compared, of all it had */
    /* For an equal table: the surviving columns (a quoted list, "" for none)
     * and their digest in the snapshot's data, which the live shard's must
     * match after the migrations when it had no writes meanwhile. */
    char *column_list;
    sg_digest digest;
} sg_rehearsal_table;

typedef struct sg_rehearsal_result {
    sg_rehearsal_file *files; /* the files that went up, in order */
    size_t nfiles;
    sg_rehearsal_table *tables;
    size_t ntables;
    int64_t from_version, to_version;
    bool reverted; /* the down and second up ran (not if a file is irreversible) */
    char fingerprint[SG_SHA256_HEX_LEN]; /* of the schema the rehearsal ends with */
    char *description;                   /* that schema's description (fingerprint.h) */
    double seconds;
} sg_rehearsal_result;

/* Rehearses on the server named by the libpq conninfo `server`, whose
 * database `dbname` holds the restored copy (left untouched: the rehearsal
 * works on a copy of it, which is dropped at the end). SG_E_MISMATCH names a table whose rows
 * changed, SG_E_OBJECTIVE a file over the budget; the migrations' own failures are as sg_migrate
 * gives them, prefixed with the step (up, down, up again). */
int sg_rehearse(sg_rehearsal_result *out, const char *server, const char *dbname,
                const sg_rehearsal_options *opts, sg_error *err);

void sg_rehearsal_result_clear(sg_rehearsal_result *res);

#endif
