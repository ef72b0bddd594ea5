#include "stages/shard.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "common/retry.h"
#include "snapshot/snapshot.h"
#include "stages/apply.h"
#include "stages/fingerprint.h"
#include "stages/registry.h"

static const char *const gate_names[SG_GATE_COUNT] = {"snapshot", "test-restore", "apply",
                                                      "verify"};

const char *sg_gate_name(sg_gate gate)
{
    return gate_names[gate];
}

/* ---- gates ---- */

static int snapshot_gate(sg_shard_outcome *out, const sg_shard_settings *s, sg_error *err)
{
    sg_snapshot_options o;
    sg_snapshot_result res;
    sg_snapshot_options_init(&o);
    o.dsn = s->dsn;
    o.store = s->store;
    o.key_path = s->key_path;
    o.recipients = s->recipients;
    o.shard = s->name;
    if (s->jobs > 0)
        o.jobs = s->jobs;
    o.pg_bindir = s->pg_bindir;
    /* tagged with the run and the version it migrates to */
    o.run_id = s->run_id;
    o.target_version = 0;
    for (size_t i = 0; i < s->set->count; i++)
        if (s->set->items[i].version <= s->target)
            o.target_version = s->set->items[i].version;
    int rc = sg_snapshot_run(&res, &o, err);
    if (rc == 0) {
        snprintf(out->snapshot_id, sizeof(out->snapshot_id), "%s", res.id);
        out->snapshot_bytes = res.stored_bytes;
        out->snapshot_rows = res.rows;
    }
    return rc;
}

typedef struct rehearsal_ctx {
    sg_shard_outcome *out;
    const sg_shard_settings *s;
} rehearsal_ctx;

static int rehearse_in_sandbox(void *arg, const char *server, const char *dbname, sg_error *err)
{
    rehearsal_ctx *ctx = arg;
    sg_rehearsal_options o = {.set = ctx->s->set,
                              .target = ctx->s->target,
                              .lock_timeout_ms = ctx->s->lock_timeout_ms,
                              .statement_timeout_ms = ctx->s->statement_timeout_ms,
                              .budget_ms = ctx->s->rehearsal_budget_ms,
                              .run_id = ctx->s->run_id};
    return sg_rehearse(&ctx->out->rehearsal, server, dbname, &o, err);
}

static int test_restore_gate(sg_shard_outcome *out, const sg_shard_settings *s, sg_error *err)
{
    char spec[SG_SHARD_NAME_MAX + SG_SNAPSHOT_ID_MAX + 2];
    rehearsal_ctx ctx = {out, s};
    sg_test_restore_options o = {.store = s->store,
                                 .key_path = s->key_path,
                                 .trust = s->trust,
                                 .snapshot = spec,
                                 .jobs = s->jobs,
                                 .pg_bindir = s->pg_bindir,
                                 .sandbox = s->sandbox,
                                 .on_restored = rehearse_in_sandbox,
                                 .on_restored_ctx = &ctx};
    snprintf(spec, sizeof(spec), "%s/%s", s->name, out->snapshot_id);
    o.sandbox.shard = s->name;
    if (!o.sandbox.run_id)
        o.sandbox.run_id = s->run_id;
    /* a resumed run rehearses again: start from an empty result */
    sg_rehearsal_result_clear(&out->rehearsal);
    return sg_test_restore(&out->restore, &o, err);
}

/* Applies what the rehearsal ran, no more: files added to the directory
 * since would not have been rehearsed. */
static int apply_gate(sg_shard_outcome *out, PGconn *conn, const sg_shard_settings *s,
                      sg_error *err)
{
    sg_apply_options o;
    sg_apply_result res = {0};
    out->applied = 0; /* an outcome kept from a killed run counts afresh */
    sg_apply_options_init(&o, s->dsn);
    o.target = out->rehearsal.to_version;
    if (s->lock_timeout_ms)
        o.lock_timeout_ms = s->lock_timeout_ms;
    o.statement_timeout_ms = s->statement_timeout_ms;
    o.retries = s->retries;
    o.skip_lint = true; /* the pipeline lints the set once */
    o.actor.run_id = s->run_id;
    o.actor.snapshot_id = out->snapshot_id;
    o.bluegreen = s->bluegreen;
    o.on_bluegreen_step = s->on_bluegreen_step;
    o.on_bluegreen_ctx = s->on_bluegreen_ctx;
    int rc = sg_migrate(&res, conn, s->set, &o, err);
    out->from_version = res.from_version;
    out->to_version = res.to_version;
    for (size_t i = 0; i < res.count; i++)
        out->applied += res.steps[i].done && res.steps[i].kind == SG_STEP_APPLY;
    if (rc == 0 && out->to_version != out->rehearsal.to_version) {
        rc = sg_error_set(err, SG_E_MISMATCH,
                          "the shard is at version %" PRId64
                          " after apply, the rehearsal at %" PRId64,
                          out->to_version, out->rehearsal.to_version);
        sg_error_hint(err, "the shard was migrated by someone else since its snapshot");
    }
    sg_apply_result_clear(&res);
    return rc;
}

/* The objects that differ, first few, as the error's detail. */
static int fingerprint_mismatch(const char *live_text, const char *rehearsed_text, sg_error *err)
{
    sg_schema_desc *live = NULL, *rehearsed = NULL;
    sg_schema_change *changes = NULL;
    size_t count = 0;
    sg_error set = {0};
    sg_error_set(err, SG_E_MISMATCH, "the shard's schema differs from the rehearsal's");
    if (sg_schema_desc_parse(&live, live_text, strlen(live_text), &set) == 0 &&
        sg_schema_desc_parse(&rehearsed, rehearsed_text, strlen(rehearsed_text), &set) == 0 &&
        sg_schema_diff(&changes, &count, rehearsed, live, &set) == 0) {
        for (size_t i = 0; i < count && i < 5; i++)
            sg_error_detail(err, "%s on the shard: %s", sg_schema_change_kind_name(changes[i].kind),
                            changes[i].object);
        if (count > 5)
            sg_error_detail(err, "and %zu more objects", count - 5);
    }
    sg_error_hint(err, "something changed the shard's schema outside the migrations: run "
                       "shardgate status on it");
    sg_schema_changes_free(changes, count);
    sg_schema_desc_free(live);
    sg_schema_desc_free(rehearsed);
    return SG_E_MISMATCH;
}

/* With nothing else writing, every table the rehearsal compared holds the
 * snapshot's rows over its surviving columns on the live shard too. */
static int compare_with_snapshot(sg_shard_outcome *out, PGconn *conn, sg_error *err)
{
    int rc = sg_pg_pin_settings(conn, err);
    for (size_t i = 0; rc == 0 && i < out->rehearsal.ntables; i++) {
        const sg_rehearsal_table *t = &out->rehearsal.tables[i];
        char *qualified = NULL;
        sg_digest live;
        if (t->result != SG_TABLE_EQUAL || !t->column_list || !*t->column_list)
            continue;
        if (!(qualified = sg_pg_qualified_name(conn, t->schema, t->name)))
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        if ((rc = sg_pg_digest_table(conn, qualified, t->column_list, &live, err)) == 0 &&
            !sg_digest_equal(&live, &t->digest)) {
            rc = sg_error_set(err, SG_E_MISMATCH,
                              "table %s differs from the snapshot after the migrations", qualified);
            sg_error_detail(err, "rows in the snapshot %" PRIu64 ", on the shard %" PRIu64,
                            t->digest.rows, live.rows);
            sg_error_hint(err, "verify.quiesced says nothing writes to the shards during the run: "
                               "if something does, turn it off");
        }
        free(qualified);
        out->tables_verified += rc == 0;
    }
    return rc;
}

/* keep_old: 0 asks for no rollback window: the old tables go once the
 * shard is verified. */
static int finalize_now(PGconn *conn, const sg_shard_settings *s, sg_error *err)
{
    sg_apply_options o;
    sg_apply_result res = {0};
    sg_apply_options_init(&o, s->dsn);
    if (s->lock_timeout_ms)
        o.lock_timeout_ms = s->lock_timeout_ms;
    o.retries = s->retries;
    o.actor.run_id = s->run_id;
    o.on_bluegreen_step = s->on_bluegreen_step;
    o.on_bluegreen_ctx = s->on_bluegreen_ctx;
    int rc = sg_finalize(&res, conn, s->set, &o, err);
    sg_apply_result_clear(&res);
    return rc;
}

static int verify_gate(sg_shard_outcome *out, PGconn *conn, const sg_shard_settings *s,
                       sg_error *err)
{
    sg_schema_desc *desc = NULL;
    int rc = 0;
    out->tables_verified = 0;
    out->bluegreen_verified = 0;
    out->live_fingerprint[0] = '\0';
    /* the verify sections of every file the shard now has from the set, up to
     * the version the run reached: they must still hold */
    for (size_t i = 0; rc == 0 && i < s->set->count; i++) {
        const sg_migration *m = &s->set->items[i];
        bool compared = false;
        if (m->version <= out->from_version || m->version > out->to_version)
            continue;
        /* a blue-green change: the kept old table and the live new one
         * still agree row for row (their sync triggers are at work) */
        if ((rc = sg_migration_verify(conn, m, err)) == 0 && m->mode == SG_MIGRATION_BLUEGREEN &&
            (rc = sg_bluegreen_verify_window(&compared, conn, m, err)) == 0 && compared)
            out->bluegreen_verified++;
    }
    if (rc == 0 && (rc = sg_schema_describe(&desc, conn, err)) == 0) {
        memcpy(out->live_fingerprint, sg_schema_desc_fingerprint(desc), SG_SHA256_HEX_LEN);
        if (strcmp(out->live_fingerprint, out->rehearsal.fingerprint) != 0)
            rc = fingerprint_mismatch(sg_schema_desc_text(desc),
                                      out->rehearsal.description ? out->rehearsal.description : "",
                                      err);
    }
    if (rc == 0 && s->quiesced)
        rc = compare_with_snapshot(out, conn, err);
    if (rc == 0 && out->bluegreen_verified && s->bluegreen.keep_old_ms == 0)
        rc = finalize_now(conn, s, err);
    sg_schema_desc_free(desc);
    return rc;
}

/* ---- the run ---- */

static void begin_gate(sg_shard_outcome *out, const sg_shard_settings *s, sg_gate gate,
                       sg_gate_observer observer, void *ctx)
{
    memset(&out->gates[gate], 0, sizeof(out->gates[gate]));
    sg_log_set_shard(s->name, sg_gate_name(gate));
    if (observer)
        observer(ctx, s, gate, &out->gates[gate]);
    sg_log(SG_LOG_INFO, "%s: %s", s->name, sg_gate_name(gate));
}

static int end_gate(sg_shard_outcome *out, const sg_shard_settings *s, sg_gate gate, uint64_t start,
                    int rc, sg_gate_observer observer, void *ctx, sg_error *err)
{
    sg_gate_record *rec = &out->gates[gate];
    rec->ran = true;
    rec->rc = rc;
    rec->seconds = (double)(sg_monotonic_ms() - start) / 1000.0;
    if (rc < 0) {
        sg_error_prefix(err, "%s: %s", s->name, sg_gate_name(gate));
        snprintf(rec->message, sizeof(rec->message), "%s", err->message);
    } else {
        sg_log_step_done(rec->seconds, "%s: %s passed in %.1f s", s->name, sg_gate_name(gate),
                         rec->seconds);
    }
    if (observer)
        observer(ctx, s, gate, rec);
    return rc;
}

int sg_shard_run(sg_shard_outcome *out, const sg_shard_settings *s, sg_gate first,
                 sg_gate_observer observer, void *ctx, sg_error *err)
{
    PGconn *conn = NULL;
    bool locked = false;
    int rc;
    if (first > SG_GATE_TEST_RESTORE)
        first = SG_GATE_TEST_RESTORE; /* the rehearsal's results live only in this process */
    if (first > SG_GATE_SNAPSHOT && !out->snapshot_id[0])
        return sg_error_set(err, SG_E_USAGE, "%s: resuming needs the run's snapshot id", s->name);
    /* the shard's lock first: a shard another runner holds is reported, not
     * waited for, and nothing is taken from it */
    if ((rc = sg_pg_connect(&conn, s->dsn, "shard", err)) < 0 ||
        (rc = sg_registry_lock(conn, err)) < 0) {
        sg_error_prefix(err, "%s", s->name);
        goto done;
    }
    locked = true;
    for (sg_gate gate = first; gate < SG_GATE_COUNT; gate++) {
        uint64_t start = sg_monotonic_ms();
        begin_gate(out, s, gate, observer, ctx);
        switch (gate) {
        case SG_GATE_SNAPSHOT:
            rc = snapshot_gate(out, s, err);
            break;
        case SG_GATE_TEST_RESTORE:
            rc = test_restore_gate(out, s, err);
            break;
        case SG_GATE_APPLY:
            rc = apply_gate(out, conn, s, err);
            break;
        case SG_GATE_VERIFY:
            rc = verify_gate(out, conn, s, err);
            break;
        }
        if ((rc = end_gate(out, s, gate, start, rc, observer, ctx, err)) < 0)
            goto done;
    }
done:
    if (locked && PQstatus(conn) == CONNECTION_OK) {
        sg_error ignored = {0};
        sg_registry_unlock(conn, &ignored);
    }
    PQfinish(conn);
    sg_log_set_shard(NULL, NULL);
    return rc;
}

void sg_shard_outcome_clear(sg_shard_outcome *out)
{
    sg_rehearsal_result_clear(&out->rehearsal);
    memset(out, 0, sizeof(*out));
}
