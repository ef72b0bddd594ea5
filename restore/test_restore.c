#include "restore/test_restore.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/interrupt.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "common/retry.h"
#include "restore/access.h"
#include "restore/restore.h"
#include "restore/verify.h"

/* The database the snapshot is restored into inside the sandbox. */
#define RESTORED_DB "restored"

static double seconds_since(uint64_t start_ms)
{
    return (double)(sg_monotonic_ms() - start_ms) / 1000.0;
}

static int64_t iso_time(const char *text)
{
    struct tm tm = {0};
    const char *end = text ? strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    return end && *end == '\0' ? (int64_t)timegm(&tm) : -1;
}

/* Reads the manifest's header (signature checked, no secret key needed) to
 * pin SHARD/latest to one snapshot for the whole test, and to learn the
 * server version the sandbox must run. */
static int read_header(sg_test_restore_result *res, int *pg_major,
                       const sg_test_restore_options *opts, sg_error *err)
{
    sg_store *store = NULL;
    sg_public_key *trusted = NULL;
    sg_snapshot_access *access = NULL;
    int rc;
    if ((rc = sg_trusted_keys_load(&trusted, &opts->trust, err)) < 0 ||
        (rc = sg_store_open_config(&store, &opts->store, err)) < 0 ||
        (rc = sg_snapshot_access_open(&access, store, opts->snapshot, trusted, opts->trust.count,
                                      NULL, err)) < 0)
        goto done;
    snprintf(res->shard, sizeof(res->shard), "%s", access->shard);
    snprintf(res->id, sizeof(res->id), "%s", access->id);
    snprintf(res->finished_at, sizeof(res->finished_at), "%s", access->manifest->finished_at);
    res->stored_bytes = access->manifest->stored_bytes;
    res->tables = access->manifest->table_count;
    res->rows = access->manifest->row_count;
    *pg_major = access->manifest->server_version_num / 10000;
    {
        int64_t taken = iso_time(access->manifest->finished_at);
        res->snapshot_age = taken >= 0 ? difftime(time(NULL), (time_t)taken) : 0;
    }
done:
    sg_snapshot_access_free(access);
    sg_store_free(store);
    free(trusted);
    return rc;
}

static int create_database(const char *conninfo, sg_error *err)
{
    PGconn *conn = NULL;
    int rc;
    if ((rc = sg_pg_connect(&conn, conninfo, "the sandbox", err)) == 0)
        rc = sg_pg_exec(conn, "CREATE DATABASE " RESTORED_DB " TEMPLATE template0", err);
    PQfinish(conn);
    return rc;
}

/* amcheck's bt_index_check: every index entry is well-formed and in order
 * (and with heap, every heap tuple is in its index). A restore builds
 * indexes afresh, so a failure here means the data breaks an invariant the
 * indexes rely on: above all a collation that sorts differently on the
 * restoring host than on the shard's. The checks run in a transaction that
 * is rolled back, so the extension is gone after: the restored database
 * stays as the snapshot had it (the pipeline rehearses on it, and compares
 * schema fingerprints). */
static int check_indexes(sg_test_restore_result *res, const char *conninfo, bool heap,
                         sg_error *err)
{
    static const char list_sql[] =
        "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't' "
        "AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' ORDER BY 1";
    PGconn *conn = NULL;
    PGresult *list = NULL;
    int rc;
    if ((rc = sg_pg_connect(&conn, conninfo, "the restored database", err)) < 0 ||
        (rc = sg_pg_exec(conn, "BEGIN", err)) < 0)
        goto done;
    {
        PGresult *r = PQexec(conn, "CREATE EXTENSION IF NOT EXISTS amcheck");
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            sg_log_info("amcheck is not available in the sandbox (%s); indexes not checked",
                        strtok(PQerrorMessage(conn), "\n"));
        PQclear(r);
        if (!ok)
            goto done;
    }
    res->amcheck = true;
    if ((rc = sg_pg_query(&list, conn, list_sql, err)) < 0)
        goto done;
    for (int i = 0; i < PQntuples(list); i++) {
        const char *index = PQgetvalue(list, i, 0);
        const char *params[] = {index, heap ? "true" : "false"};
        PGresult *r;
        if ((rc = sg_interrupt_check(err)) < 0)
            goto done;
        r = PQexecParams(conn, "SELECT bt_index_check($1::regclass, $2::boolean)", 2, NULL, params,
                         NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            rc = sg_error_set(err, SG_E_MISMATCH, "index %s fails amcheck: %s", index,
                              strtok(PQerrorMessage(conn), "\n"));
            PQclear(r);
            goto done;
        }
        PQclear(r);
        res->indexes_checked++;
    }
done:
    PQclear(list);
    if (conn && PQtransactionStatus(conn) != PQTRANS_IDLE)
        PQclear(PQexec(conn, "ROLLBACK"));
    PQfinish(conn);
    return rc;
}

int sg_test_restore(sg_test_restore_result *res, const sg_test_restore_options *opts, sg_error *err)
{
    uint64_t start = sg_monotonic_ms(), step;
    sg_sandbox *sandbox = NULL;
    sg_sandbox_options sandbox_opts = opts->sandbox;
    sg_verify_options verify;
    sg_verify_result verified;
    sg_restore_options restore;
    sg_restore_result restored;
    char spec[SG_SHARD_NAME_MAX + SG_SNAPSHOT_ID_MAX + 2];
    char *target = NULL;
    int pg_major = 0, rc;

    memset(res, 0, sizeof(*res));
    if (!opts->store.url || !opts->snapshot || !opts->key_path) {
        rc = sg_error_set(err, SG_E_USAGE, "a store, a snapshot and --key are required");
        goto done;
    }
    if ((rc = read_header(res, &pg_major, opts, err)) < 0)
        goto done;
    snprintf(spec, sizeof(spec), "%s/%s", res->shard, res->id);

    step = sg_monotonic_ms();
    sg_verify_options_init(&verify);
    verify.store = opts->store;
    verify.trust = opts->trust;
    verify.snapshot = spec;
    verify.level = 1;
    verify.jobs = opts->jobs > 0 ? opts->jobs : 2;
    if ((rc = sg_verify_run(&verified, &verify, err)) < 0)
        goto done;
    res->verify_seconds = seconds_since(step);

    step = sg_monotonic_ms();
    sandbox_opts.pg_major = pg_major;
    if (!sandbox_opts.shard)
        sandbox_opts.shard = res->shard;
    if ((rc = sg_sandbox_create(&sandbox, &sandbox_opts, err)) < 0 ||
        (rc = create_database(sg_sandbox_conninfo(sandbox), err)) < 0)
        goto done;
    res->sandbox_seconds = seconds_since(step);
    /* In a libpq conninfo string the last setting of a keyword wins. */
    if (!(target = sg_asprintf("%s dbname=" RESTORED_DB, sg_sandbox_conninfo(sandbox)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }

    step = sg_monotonic_ms();
    sg_restore_options_init(&restore);
    restore.store = opts->store;
    restore.key_path = opts->key_path;
    restore.trust = opts->trust;
    restore.target = target;
    restore.snapshot = spec;
    if (opts->jobs > 0)
        restore.jobs = opts->jobs;
    if (opts->maintenance_work_mem)
        restore.maintenance_work_mem = opts->maintenance_work_mem;
    restore.pg_bindir = opts->pg_bindir;
    /* The sandbox has none of the shard's roles. */
    restore.no_owner = true;
    restore.no_privileges = true;
    if ((rc = sg_restore_run(&restored, &restore, err)) < 0)
        goto done;
    res->restore_seconds = seconds_since(step);
    res->tables = restored.tables;
    res->rows = restored.rows;
    if ((rc = check_indexes(res, target, opts->amcheck_heap, err)) < 0)
        goto done;
    res->seconds = seconds_since(start);
    if (opts->on_restored) {
        step = sg_monotonic_ms();
        rc = opts->on_restored(opts->on_restored_ctx, sg_sandbox_conninfo(sandbox), RESTORED_DB,
                               err);
        res->hook_seconds = seconds_since(step);
        if (rc < 0)
            goto done;
    }
done:
    if (rc < 0)
        res->seconds = seconds_since(start);
    sg_sandbox_destroy(sandbox);
    free(target);
    return rc;
}
