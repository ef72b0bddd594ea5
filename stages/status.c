#include "stages/status.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

static const char *const state_names[] = {"applied", "pending", "changed",  "missing",
                                          "failed",  "partial", "reverting"};

const char *sg_migration_state_name(sg_migration_state state)
{
    return state_names[state];
}

static sg_migration_state state_of(const sg_migration *m, const sg_registry_row *row)
{
    if (!row)
        return SG_STATE_PENDING;
    switch (row->status) {
    case SG_REGISTRY_APPLIED:
        return !m                                      ? SG_STATE_MISSING
               : strcmp(m->sha256, row->checksum) != 0 ? SG_STATE_CHANGED
                                                       : SG_STATE_APPLIED;
    case SG_REGISTRY_APPLYING:
        return SG_STATE_PARTIAL;
    case SG_REGISTRY_FAILED:
        /* a failed transactional file left nothing: it is pending again */
        return row->statements_done > 0 ? SG_STATE_PARTIAL : SG_STATE_FAILED;
    default:
        return row->status == SG_REGISTRY_REVERT_FAILED ? SG_STATE_FAILED : SG_STATE_REVERTING;
    }
}

static int add_entry(sg_status *st, const sg_migration *m, const sg_registry_row *row,
                     sg_error *err)
{
    sg_status_entry *grown = sg_array_grow(st->entries, st->count, sizeof(*st->entries));
    if (!grown)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    st->entries = grown;
    sg_status_entry *e = &st->entries[st->count++];
    *e = (sg_status_entry){.version = m ? m->version : row->version,
                           .name = m ? m->name : row->name,
                           .file = m,
                           .row = row,
                           .state = state_of(m, row)};
    switch (e->state) {
    case SG_STATE_APPLIED:
        st->applied++;
        break;
    case SG_STATE_CHANGED:
        st->applied++;
        st->changed++;
        break;
    case SG_STATE_MISSING:
        st->applied++;
        st->missing++;
        break;
    case SG_STATE_PENDING:
        st->pending++;
        break;
    default:
        st->failed++;
        break;
    }
    if (row && row->status == SG_REGISTRY_APPLIED && row->version > st->schema_version)
        st->schema_version = row->version;
    return 0;
}

/* Compares the live schema with the description recorded after the last
 * applied migration that has one. */
static int check_drift(sg_status *st, PGconn *conn, sg_error *err)
{
    sg_schema_desc *live = NULL, *baseline = NULL;
    const sg_registry_row *last = NULL;
    int rc;
    for (size_t i = 0; i < st->rows.count; i++)
        if (st->rows.items[i].status == SG_REGISTRY_APPLIED && st->rows.items[i].description)
            last = &st->rows.items[i];
    if ((rc = sg_schema_describe(&live, conn, err)) < 0)
        goto done;
    memcpy(st->live_fingerprint, sg_schema_desc_fingerprint(live), 64);
    if (!last)
        goto done;
    if ((rc = sg_schema_desc_parse(&baseline, last->description, strlen(last->description), err)) <
        0) {
        sg_error_prefix(err, "the schema description recorded for version %lld",
                        (long long)last->version);
        goto done;
    }
    st->has_baseline = true;
    st->baseline_version = last->version;
    memcpy(st->baseline_fingerprint, sg_schema_desc_fingerprint(baseline), 64);
    st->drifted = strcmp(st->live_fingerprint, st->baseline_fingerprint) != 0;
    if (st->drifted)
        rc = sg_schema_diff(&st->changes, &st->change_count, baseline, live, err);
done:
    sg_schema_desc_free(live);
    sg_schema_desc_free(baseline);
    return rc;
}

int sg_status_read(sg_status *out, PGconn *conn, const sg_migration_set *set, sg_error *err)
{
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = sg_registry_read(&out->rows, conn, true, err)) < 0)
        goto fail;
    out->registry_exists = out->rows.exists;
    /* files and rows are both sorted by version: merge them */
    size_t f = 0, r = 0;
    while (f < set->count || r < out->rows.count) {
        const sg_migration *m = f < set->count ? &set->items[f] : NULL;
        const sg_registry_row *row = r < out->rows.count ? &out->rows.items[r] : NULL;
        if (m && row && m->version == row->version)
            f++, r++;
        else if (m && (!row || m->version < row->version))
            f++, row = NULL;
        else
            r++, m = NULL;
        if ((rc = add_entry(out, m, row, err)) < 0)
            goto fail;
    }
    if ((rc = check_drift(out, conn, err)) < 0 ||
        (rc = sg_bluegreen_states_read(&out->bluegreen, conn, err)) < 0)
        goto fail;
    return 0;
fail:
    sg_status_clear(out);
    return rc;
}

void sg_status_clear(sg_status *status)
{
    free(status->entries);
    sg_schema_changes_free(status->changes, status->change_count);
    sg_registry_rows_clear(&status->rows);
    sg_bluegreen_states_clear(&status->bluegreen);
    memset(status, 0, sizeof(*status));
}
