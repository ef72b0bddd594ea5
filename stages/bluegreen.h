/* Blue-green apply of a `mode=bluegreen table=SCHEMA.TABLE` file: the live
 * table (blue) keeps serving while a copy with the new shape (green) is
 * built, kept in sync, verified row for row and swapped in within one short
 * lock; the old table is then kept in sync from the new one until the change
 * is finalized, so that a revert loses nothing.
 *
 *   prepared    green = blue's definition + the file's statements, in schema
 *               shardgate_new_V under the table's own name (so every index
 *               and constraint keeps its name)
 *   synced      statement triggers on blue copy every write to green, in the
 *               writer's transaction
 *   backfilled  rows copied in key order, chunk by chunk, each chunk locking
 *               its source rows (FOR SHARE) so that a racing delete waits
 *   indexed     green's other indexes built CONCURRENTLY
 *   verified    rows and digests of blue and green equal in one snapshot
 *   cut-over    one transaction under lock_timeout: blue moves to
 *               shardgate_old_V, green to the table's schema, sequences,
 *               foreign keys and triggers follow
 *   finalized   the old table dropped
 *
 * Every step is recorded in shardgate.bluegreen and is idempotent, so a run
 * killed anywhere resumes, or is rolled back by a revert. */
#ifndef SG_STAGES_BLUEGREEN_H
#define SG_STAGES_BLUEGREEN_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct sg_bluegreen_options {
    uint64_t chunk_rows;     /* rows of the first chunk (default 5,000) */
    uint64_t chunk_time_ms;  /* the chunk size adapts to this time per chunk (default 50 ms) */
    uint64_t chunk_pause_ms; /* sleep between chunks (default 0) */
    uint64_t max_lag_ms;     /* pause while a standby replays further behind (default 1 s) */
    uint64_t keep_old_ms;    /* rollback window after the cut-over (default 24 h) */
} sg_bluegreen_options;

void sg_bluegreen_options_init(sg_bluegreen_options *opts);

typedef enum {
    SG_BLUEGREEN_NONE, /* not started (or rolled back before the cut-over) */
    SG_BLUEGREEN_PREPARED,
    SG_BLUEGREEN_SYNCED,
    SG_BLUEGREEN_BACKFILLED,
    SG_BLUEGREEN_INDEXED,
    SG_BLUEGREEN_VERIFIED,
    SG_BLUEGREEN_CUT_OVER,
    SG_BLUEGREEN_SWAPPED_BACK, /* a revert swapped the old table back; cleanup pending */
    SG_BLUEGREEN_FINALIZED,
} sg_bluegreen_step;

/* "prepared", "synced", ... as stored. */
const char *sg_bluegreen_step_name(sg_bluegreen_step step);

/* One change's row of shardgate.bluegreen. */
typedef struct sg_bluegreen_state {
    int64_t version;
    bool down; /* the change runs a down section (a revert after finalize) */
    char *schema, *table;
    sg_bluegreen_step step;
    char **last_key; /* the backfill's last copied key, as text; NULL before the first chunk */
    size_t last_key_count;
    int64_t rows_copied;
    double lock_ms;     /* the cut-over's lock, -1 before it */
    bool window_closed; /* the rollback window (--keep-old) has ended */
    char *keep_until;   /* ISO 8601 UTC, NULL before the cut-over */
} sg_bluegreen_state;

typedef struct sg_bluegreen_states {
    sg_bluegreen_state *items; /* by version */
    size_t count;
} sg_bluegreen_states;

/* Reads every change's state; none when the registry has no such table. */
int sg_bluegreen_states_read(sg_bluegreen_states *out, PGconn *conn, sg_error *err);
const sg_bluegreen_state *sg_bluegreen_states_find(const sg_bluegreen_states *states,
                                                   int64_t version);
void sg_bluegreen_states_clear(sg_bluegreen_states *states);

/* Whether a change's old table is still kept: a revert swaps it back. */
bool sg_bluegreen_window_open(const sg_bluegreen_state *state);

#endif
