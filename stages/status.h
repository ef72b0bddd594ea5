/* Where one database stands against a migration set: each migration applied,
 * pending, changed, missing, failed or half done, the schema version, and
 * whether the live schema still matches the fingerprint recorded after the
 * last applied migration (drift), with the objects that differ. */
#ifndef SG_STAGES_STATUS_H
#define SG_STAGES_STATUS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "stages/bluegreen.h"
#include "stages/fingerprint.h"
#include "stages/migration.h"
#include "stages/registry.h"

typedef enum {
    SG_STATE_APPLIED,
    SG_STATE_PENDING,
    SG_STATE_CHANGED,   /* applied, and the file has changed since */
    SG_STATE_MISSING,   /* applied, and the file is gone */
    SG_STATE_FAILED,    /* an apply or revert failed */
    SG_STATE_PARTIAL,   /* transaction=off, stopped part way (killed or failed) */
    SG_STATE_REVERTING, /* a revert stopped part way */
} sg_migration_state;

/* "applied", "pending", ... */
const char *sg_migration_state_name(sg_migration_state state);

typedef struct sg_status_entry {
    int64_t version;
    const char *name;           /* the file's, or the registry's when missing */
    const sg_migration *file;   /* NULL when missing */
    const sg_registry_row *row; /* NULL when pending and never tried */
    sg_migration_state state;
} sg_status_entry;

typedef struct sg_status {
    sg_status_entry *entries; /* by version */
    size_t count;
    size_t applied, pending, changed, missing, failed;
    int64_t schema_version; /* highest applied version, 0 for none */
    bool registry_exists;
    /* drift: the live schema against the fingerprint recorded after the last
     * applied migration (has_baseline false when none was recorded) */
    bool has_baseline, drifted;
    int64_t baseline_version;
    char live_fingerprint[65], baseline_fingerprint[65];
    sg_schema_change *changes; /* baseline to live */
    size_t change_count;
    sg_registry_rows rows;
    sg_bluegreen_states bluegreen; /* blue-green changes under way or in their window */
} sg_status;

/* Reads the registry and describes the live schema; changes nothing. */
int sg_status_read(sg_status *out, PGconn *conn, const sg_migration_set *set, sg_error *err);
void sg_status_clear(sg_status *status);

#endif
