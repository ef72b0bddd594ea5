/* The registry on each shard: schema `shardgate`, with the applied migrations
 * (shardgate.migrations), an append-only log of every action
 * (shardgate.events) and the layout's format (shardgate.meta). It is created
 * on first use, under the migration lock, and read without it. */
#ifndef SG_STAGES_REGISTRY_H
#define SG_STAGES_REGISTRY_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/sha256.h"
#include "stages/migration.h"

#define SG_REGISTRY_FORMAT 1

typedef enum {
    SG_REGISTRY_APPLYING,      /* transaction=off, in progress or killed */
    SG_REGISTRY_APPLIED,       /* done: the only state `status` calls applied */
    SG_REGISTRY_FAILED,        /* apply failed; statements_done tells how far */
    SG_REGISTRY_REVERTING,     /* transaction=off revert, in progress or killed */
    SG_REGISTRY_REVERT_FAILED, /* revert failed; statements_done of the down section */
} sg_registry_status;

/* "applying", "applied", ... as stored. */
const char *sg_registry_status_name(sg_registry_status status);

typedef struct sg_registry_row {
    int64_t version;
    char *name;
    char checksum[SG_SHA256_HEX_LEN];
    char *mode;
    sg_registry_status status;
    int statements_done;
    char done_checksum[SG_SHA256_HEX_LEN]; /* of the statements done ("" for none) */
    int statement_started;          /* a statement outside a transaction was started: its number */
    char *started_at, *finished_at; /* ISO 8601, UTC; finished_at NULL until done */
    int64_t duration_ms;            /* -1 until done */
    char *host, *run_id, *snapshot_id; /* NULL when not known */
    char *fingerprint;                 /* schema fingerprint after this migration */
    char *description;                 /* its normalized description (for diffs) */
} sg_registry_row;

typedef struct sg_registry_rows {
    sg_registry_row *items; /* by version */
    size_t count;
    bool exists; /* whether the registry exists on the shard at all */
} sg_registry_rows;

/* Who is acting, recorded with every row and event. */
typedef struct sg_registry_actor {
    const char *host;
    const char *run_id;
    const char *snapshot_id; /* may be NULL */
} sg_registry_actor;

/* Takes the shard's migration lock, a session advisory lock, without
 * waiting: a lock held by another session is SG_E_BUSY naming its pid,
 * application_name, client and since when. Taking it again on the same
 * session is harmless (the pipeline holds it across steps). A dropped
 * connection releases it, so a killed runner leaves no stale lock. */
int sg_registry_lock(PGconn *conn, sg_error *err);
int sg_registry_unlock(PGconn *conn, sg_error *err);

/* Creates the schema and its tables when missing; a registry of a newer
 * format is SG_E_FORMAT. Call with the lock held. */
int sg_registry_ensure(PGconn *conn, sg_error *err);

/* Reads every row (descriptions too when with_description); a shard without a
 * registry gives no rows and exists = false. */
int sg_registry_read(sg_registry_rows *out, PGconn *conn, bool with_description, sg_error *err);
const sg_registry_row *sg_registry_rows_find(const sg_registry_rows *rows, int64_t version);
void sg_registry_rows_clear(sg_registry_rows *rows);

/* Appends an event; detail_json is a JSON object as text, or NULL. Runs in
 * whatever transaction the session is in. */
int sg_registry_event(PGconn *conn, const sg_registry_actor *actor, int64_t version,
                      const char *action, const char *detail_json, sg_error *err);

/* Creates or resets migration m's row with this status, statements_done 0
 * and started_at now (the transaction's start). */
int sg_registry_begin(PGconn *conn, const sg_registry_actor *actor, const sg_migration *m,
                      sg_registry_status status, sg_error *err);

/* Sets the status and keeps the progress (a resumed run); checksum, when not
 * NULL, replaces the file's (a file edited after its done statements). */
int sg_registry_mark(PGconn *conn, int64_t version, sg_registry_status status, const char *checksum,
                     sg_error *err);

/* Records that `done` statements of the current direction have run, and
 * the digest of their text (sg_sql_script_digest), so that a resumed run can
 * tell whether they are still the statements of the file. */
int sg_registry_progress(PGconn *conn, int64_t version, int done, const char *done_checksum,
                         sg_error *err);

/* Records that statement number `statement` (1-based), which runs outside a
 * transaction, has started: if the run dies before its progress is recorded,
 * the next one knows the statement may have completed. */
int sg_registry_started(PGconn *conn, int64_t version, int statement, sg_error *err);

/* Sets the row's final status, finished_at, duration and (when not NULL) the
 * schema fingerprint and description. */
int sg_registry_finish(PGconn *conn, int64_t version, sg_registry_status status,
                       const char *fingerprint, const char *description, sg_error *err);

/* Removes the row of a reverted migration (its events stay). */
int sg_registry_delete(PGconn *conn, int64_t version, sg_error *err);

#endif
