#include "snapshot/snapshot.h"

#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/chunk.h"
#include "common/interrupt.h"
#include "common/keys.h"
#include "common/layout.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "common/proc.h"
#include "common/store.h"
#include "snapshot/catalog.h"
#include "snapshot/pack.h"
#include "snapshot/run.h"

/* Tables above this many chunks' worth of blocks are split into TID ranges
 * of about that size, so one large table keeps several readers busy. */
#define SPLIT_CHUNKS 2

void sg_snapshot_options_init(sg_snapshot_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->jobs = 2;
    opts->chunk_size = 32ULL << 20;
    opts->pack_size = 1ULL << 30;
    opts->compress_level = 1;
    opts->lock_timeout_ms = 5000;
}

/* ---- planning ---- */

static int compare_tasks_by_size(const void *a, const void *b, void *ctx)
{
    const sg_run *r = ctx;
    const sg_copy_task *x = a, *y = b;
    uint64_t bx = x->whole ? r->catalog->tables[x->table].blocks : x->end_block - x->first_block;
    uint64_t by = y->whole ? r->catalog->tables[y->table].blocks : y->end_block - y->first_block;
    if (!x->whole && x->end_block == 0)
        bx = r->catalog->tables[x->table].blocks - x->first_block;
    if (!y->whole && y->end_block == 0)
        by = r->catalog->tables[y->table].blocks - y->first_block;
    return bx < by ? 1 : bx > by ? -1 : 0;
}

static int plan_tasks(sg_run *r, int server_version, sg_error *err)
{
    uint64_t range_blocks = r->opts->chunk_size * SPLIT_CHUNKS / r->catalog->block_size;
    size_t n = 0, cap = r->catalog->ntables + 16;
    if (range_blocks == 0)
        range_blocks = 1;
    if (!(r->tasks = sg_calloc(cap, sizeof(*r->tasks))))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < r->catalog->ntables; i++) {
        uint64_t blocks = r->catalog->tables[i].blocks;
        /* TID range scans arrived in PostgreSQL 14; before that a ctid
         * predicate is a full scan per range, so older servers copy whole. */
        size_t pieces = server_version >= 140000 && r->opts->jobs > 1 && blocks > range_blocks
                            ? (size_t)((blocks + range_blocks - 1) / range_blocks)
                            : 1;
        if (n + pieces > cap) {
            size_t ncap = (n + pieces) * 2;
            sg_copy_task *grown = sg_realloc(r->tasks, ncap * sizeof(*grown));
            if (!grown)
                return sg_error_set(err, SG_E_NOMEM, "out of memory");
            r->tasks = grown;
            cap = ncap;
        }
        for (size_t p = 0; p < pieces; p++) {
            sg_copy_task *t = &r->tasks[n++];
            t->table = i;
            t->whole = pieces == 1;
            t->first_block = p * range_blocks;
            /* The last range is open-ended: whatever the relation size was
             * when we looked, every row the snapshot sees is copied. */
            t->end_block = p + 1 == pieces ? 0 : (p + 1) * range_blocks;
        }
    }
    r->ntasks = n;
    if (n > 1)
        qsort_r(r->tasks, n, sizeof(*r->tasks), compare_tasks_by_size, r);
    return 0;
}

/* ---- coordinator ---- */

static int begin_snapshot(sg_run *r, PGconn *conn, sg_error *err)
{
    PGresult *res = NULL;
    char sql[128];
    int rc;
    if ((rc = sg_pg_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", err)) < 0 ||
        (rc = sg_pg_pin_settings(conn, err)) < 0)
        return rc;
    snprintf(sql, sizeof(sql), "SET LOCAL lock_timeout = %d", r->opts->lock_timeout_ms);
    if ((rc = sg_pg_exec(conn, sql, err)) < 0 ||
        (rc = sg_catalog_read(&r->catalog, conn, err)) < 0 ||
        (rc = sg_catalog_lock_tables(r->catalog, conn, err)) < 0)
        return rc;
    if ((rc = sg_pg_query(&res, conn, "SELECT pg_catalog.pg_export_snapshot()", err)) < 0)
        return rc;
    snprintf(r->export_name, sizeof(r->export_name), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

static int connect_reader(sg_run *r, PGconn **out, sg_error *err)
{
    char sql[192];
    int rc;
    if ((rc = sg_pg_connect(out, r->opts->dsn, "source database", err)) < 0)
        return rc;
    snprintf(sql, sizeof(sql), "SET TRANSACTION SNAPSHOT '%s'", r->export_name);
    if ((rc = sg_pg_exec(*out, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", err)) < 0 ||
        (rc = sg_pg_exec(*out, sql, err)) < 0 || (rc = sg_pg_pin_settings(*out, err)) < 0)
        sg_error_prefix(err, "starting a reader");
    return rc;
}

static int start_schema_dump(sg_run *r, sg_proc **proc, const char *path, int server_version,
                             sg_error *err)
{
    char *pg_dump = NULL, *snapshot_arg = NULL, *file_arg = NULL, *lock_arg = NULL;
    sg_pg_child child = {0};
    int rc;
    if ((rc = sg_pg_tool_find(&pg_dump, "pg_dump", server_version / 10000, r->opts->pg_bindir,
                              err)) < 0 ||
        (rc = sg_pg_child_prepare(&child, r->opts->dsn, NULL, err)) < 0)
        goto done;
    snapshot_arg = sg_asprintf("--snapshot=%s", r->export_name);
    file_arg = sg_asprintf("--file=%s", path);
    /* pg_dump locks every table again; like the readers, it must not wait
     * behind DDL that waits behind the coordinator. */
    lock_arg = sg_asprintf("--lock-wait-timeout=%d", r->opts->lock_timeout_ms);
    if (!snapshot_arg || !file_arg || !lock_arg) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
    } else {
        const char *argv[] = {pg_dump,     "--schema-only",  "--format=custom",
                              "--no-sync", snapshot_arg,     file_arg,
                              lock_arg,    child.dbname_arg, NULL};
        rc = sg_proc_start_env(proc, argv, child.env, err);
    }
done:
    free(pg_dump);
    free(snapshot_arg);
    free(file_arg);
    free(lock_arg);
    sg_pg_child_free(&child);
    return rc;
}

static int read_file(sg_buf *out, const char *path, sg_error *err)
{
    FILE *f = fopen(path, "rb");
    char block[65536];
    size_t n;
    int rc = 0;
    if (!f)
        return sg_error_set(err, SG_E_IO, "cannot read %s", path);
    while (rc == 0 && (n = fread(block, 1, sizeof(block), f)) > 0)
        rc = sg_buf_append(out, block, n, err);
    if (rc == 0 && ferror(f))
        rc = sg_error_set(err, SG_E_IO, "cannot read %s", path);
    fclose(f);
    return rc;
}

/* ---- the manifest ---- */

static int compare_records(const void *a, const void *b)
{
    const sg_chunk_record *x = a, *y = b;
    if (x->table != y->table)
        return x->table < y->table ? -1 : 1;
    return x->where.seq < y->where.seq ? -1 : x->where.seq > y->where.seq;
}

static int compare_packs(const void *a, const void *b)
{
    const sg_pack_record *x = a, *y = b;
    return x->number < y->number ? -1 : x->number > y->number;
}

static void iso_time(char out[32], time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A fingerprint of the copied shape (tables, columns, types), so two
 * snapshots of the same schema can be compared without opening dumps. */
static void shape_fingerprint(const sg_catalog *cat, char out[65])
{
    crypto_hash_sha256_state st;
    uint8_t digest[32];
    crypto_hash_sha256_init(&st);
    for (size_t i = 0; i < cat->ntables; i++) {
        const sg_catalog_table *t = &cat->tables[i];
        crypto_hash_sha256_update(&st, (const uint8_t *)t->qualified, strlen(t->qualified) + 1);
        for (size_t c = 0; c < t->ncolumns; c++) {
            crypto_hash_sha256_update(&st, (const uint8_t *)t->column_names[c],
                                      strlen(t->column_names[c]) + 1);
            crypto_hash_sha256_update(&st, (const uint8_t *)t->column_types[c],
                                      strlen(t->column_types[c]) + 1);
        }
    }
    crypto_hash_sha256_final(&st, digest);
    sodium_bin2hex(out, 65, digest, sizeof(digest));
}

/* Copies value into *field; a NULL value leaves the field NULL. */
static int copy_string(char **field, const char *value, sg_error *err)
{
    if (value && !(*field = sg_strdup(value)))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    return 0;
}

static int build_manifest(sg_manifest *m, sg_run *r, const sg_secret_key *key,
                          const sg_public_key *recipients, size_t nrecipients, PGconn *coord,
                          time_t started, sg_error *err)
{
    char when[32], fingerprint[65];
    int rc = 0;
    size_t next = 0;
    const char *version = PQparameterStatus(coord, "server_version");
#define TRY(call)                                                                                  \
    do {                                                                                           \
        if ((rc = (call)) < 0)                                                                     \
            return rc;                                                                             \
    } while (0)
#define DUP(field, value) TRY(copy_string(&(field), (value), err))
    DUP(m->id, r->id);
    DUP(m->shard, r->shard);
    DUP(m->tool_version, SG_VERSION);
    iso_time(when, started);
    DUP(m->started_at, when);
    iso_time(when, time(NULL));
    DUP(m->finished_at, when);
    DUP(m->server_version, version ? version : "unknown");
    m->server_version_num = PQserverVersion(coord);
    DUP(m->run_id, r->opts->run_id);
    m->target_version = r->opts->run_id ? r->opts->target_version : -1;
    TRY(sg_manifest_add_recipient(m, &key->pub, r->data_key, err));
    for (size_t i = 0; i < nrecipients; i++) {
        bool dup = strcmp(recipients[i].id, key->pub.id) == 0;
        for (size_t j = 0; j < i && !dup; j++)
            dup = strcmp(recipients[i].id, recipients[j].id) == 0;
        if (!dup)
            TRY(sg_manifest_add_recipient(m, &recipients[i], r->data_key, err));
    }
    qsort(r->packs, r->npacks, sizeof(*r->packs), compare_packs);
    for (size_t i = 0; i < r->npacks; i++) {
        char path[64];
        snprintf(path, sizeof(path), "packs/%" PRIu32 ".pack", r->packs[i].number);
        TRY(sg_manifest_add_object(m, path, r->packs[i].size, r->packs[i].sha256, err));
        m->stored_bytes += r->packs[i].size;
    }
    DUP(m->system_identifier, r->catalog->system_identifier);
    DUP(m->snapshot_lsn, r->catalog->lsn);
    shape_fingerprint(r->catalog, fingerprint);
    DUP(m->schema_fingerprint, fingerprint);
    for (size_t i = 0; i < sg_pg_pinned_settings_count; i++)
        TRY(sg_manifest_add_setting(m, sg_pg_pinned_settings[i].name,
                                    sg_pg_pinned_settings[i].value, err));
    for (size_t i = 0; i < r->catalog->nsequences; i++) {
        const sg_catalog_sequence *s = &r->catalog->sequences[i];
        TRY(sg_manifest_add_sequence(m, s->schema, s->name, s->last_value, s->is_called, err));
    }
    for (size_t i = 0; i < r->catalog->nmatviews; i++)
        TRY(sg_manifest_add_matview(m, r->catalog->matviews[i], err));
    if (r->nrecords > 1)
        qsort(r->records, r->nrecords, sizeof(*r->records), compare_records);
    for (size_t i = 0; i < r->catalog->ntables; i++) {
        const sg_catalog_table *ct = &r->catalog->tables[i];
        sg_manifest_table *mt;
        TRY(sg_manifest_add_table(&mt, m, ct->oid, ct->schema, ct->name, err));
        for (size_t c = 0; c < ct->ncolumns; c++)
            TRY(sg_manifest_table_add_column(mt, ct->column_names[c], ct->column_types[c], err));
        sg_digest_init(&mt->digest);
        for (; next < r->nrecords && r->records[next].table == i; next++) {
            TRY(sg_manifest_table_add_chunk(mt, &r->records[next].where, err));
            sg_digest_add(&mt->digest, &r->records[next].where.digest);
            m->plain_bytes += r->records[next].where.plain_size;
        }
    }
    if (next < r->nrecords && r->records[next].table == SG_SCHEMA_TABLE)
        m->schema = r->records[next].where;
    else
        return sg_error_set(err, SG_E_INTERNAL, "the schema dump was not stored");
#undef TRY
#undef DUP
    return rc;
}

/* Best effort: a failed snapshot should not leave packs behind. Anything
 * left (a killed process) has no manifest and is listed as incomplete. */
static void remove_packs(sg_run *r)
{
    for (size_t i = 0; i < r->npacks; i++) {
        char path[64];
        char *key;
        snprintf(path, sizeof(path), "packs/%" PRIu32 ".pack", r->packs[i].number);
        if ((key = sg_layout_key(r->shard, r->id, path)) != NULL)
            sg_store_delete(r->store, key, NULL);
        free(key);
    }
}

static int load_keys(sg_secret_key *key, sg_public_key **recipients,
                     const sg_snapshot_options *opts, sg_error *err)
{
    int rc;
    if (!opts->key_path)
        return sg_error_set(err, SG_E_USAGE, "--key is required (the signing and owner key)");
    if ((rc = sg_secret_key_load(key, opts->key_path, err)) < 0)
        return rc;
    if (opts->recipients.count &&
        !(*recipients = sg_calloc(opts->recipients.count, sizeof(**recipients))))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < opts->recipients.count; i++)
        if ((rc = sg_public_key_load(&(*recipients)[i], opts->recipients.items[i], err)) < 0)
            return rc;
    return 0;
}

int sg_snapshot_run(sg_snapshot_result *out, const sg_snapshot_options *opts, sg_error *err)
{
    sg_run r_ = {0}, *r = &r_;
    sg_secret_key key;
    sg_public_key *recipients = NULL;
    PGconn *coord = NULL;
    sg_reader *readers = NULL;
    sg_sealer *sealers = NULL;
    size_t nreaders = 0, nsealers = 0, nstarted = 0;
    sg_proc *dump = NULL;
    char *tmpdir = NULL, *dump_path = NULL, *manifest_key = NULL;
    sg_buf manifest_bytes = {0};
    sg_manifest *m = NULL;
    sg_plain_chunk *schema_chunk = NULL;
    struct timespec t0, t1;
    time_t started = time(NULL);
    int rc, server_version;

    memset(&key, 0, sizeof(key));
    memset(out, 0, sizeof(*out));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r->opts = opts;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->changed, NULL);
    if (!opts->dsn || !opts->store.url) {
        rc = sg_error_set(err, SG_E_USAGE, "--dsn and --store are required");
        goto done;
    }
    if (opts->jobs < 1 || opts->chunk_size < 1) {
        rc = sg_error_set(err, SG_E_USAGE, "--jobs and --chunk-size must be positive");
        goto done;
    }
    if ((rc = load_keys(&key, &recipients, opts, err)) < 0 ||
        (rc = sg_store_open_config(&r->store, &opts->store, err)) < 0 ||
        (rc = sg_snapshot_id_new(r->id, err)) < 0)
        goto done;
    randombytes_buf(r->data_key, sizeof(r->data_key));

    if ((rc = sg_pg_connect(&coord, opts->dsn, "source database", err)) < 0)
        goto done;
    server_version = PQserverVersion(coord);
    if ((rc = begin_snapshot(r, coord, err)) < 0) {
        sg_error_prefix(err, "starting the snapshot");
        goto done;
    }
    snprintf(r->shard, sizeof(r->shard), "%s", opts->shard ? opts->shard : r->catalog->database);
    if ((rc = sg_shard_name_check(r->shard, err)) < 0) {
        if (!opts->shard)
            sg_error_hint(err, "the database name is the default shard name; pass --shard NAME");
        goto done;
    }
    sg_log_info("snapshot %s/%s: %zu tables, %zu sequences, exported snapshot %s", r->shard, r->id,
                r->catalog->ntables, r->catalog->nsequences, r->export_name);

    if ((rc = plan_tasks(r, server_version, err)) < 0)
        goto done;
    if (!(r->next_seq = sg_calloc(r->catalog->ntables + 1, sizeof(*r->next_seq))) ||
        !(r->queue = sg_calloc((size_t)opts->jobs, sizeof(*r->queue))) ||
        !(readers = sg_calloc((size_t)opts->jobs, sizeof(*readers))) ||
        !(sealers = sg_calloc((size_t)opts->jobs, sizeof(*sealers))) ||
        !(r->cancels = sg_calloc((size_t)opts->jobs, sizeof(*r->cancels))) ||
        !(r->spare = sg_calloc(3 * (size_t)opts->jobs, sizeof(*r->spare)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    r->queue_cap = (size_t)opts->jobs;
    r->spare_cap = 3 * (size_t)opts->jobs;
    for (size_t i = 0; i < (size_t)opts->jobs; i++) {
        sealers[i].r = r;
        if (!(sealers[i].zs = sg_chunk_sealer_new(opts->compress_level))) {
            rc = sg_error_set(err, SG_E_USAGE, "cannot compress at zstd level %d",
                              opts->compress_level);
            goto done;
        }
    }

    /* Connect every reader before starting any thread, so a connection
     * problem is reported once, plainly. */
    for (; nreaders < (size_t)opts->jobs; nreaders++) {
        readers[nreaders].r = r;
        if ((rc = connect_reader(r, &readers[nreaders].conn, err)) < 0)
            goto done;
        r->cancels[nreaders] = PQgetCancel(readers[nreaders].conn);
        r->ncancels = nreaders + 1;
    }
    if ((rc = sg_tmpdir_new(&tmpdir, "snapshot", err)) < 0 ||
        !(dump_path = sg_asprintf("%s/schema.dump", tmpdir))) {
        rc = rc < 0 ? rc : sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = start_schema_dump(r, &dump, dump_path, server_version, err)) < 0)
        goto done;

    /* Sealers first: readers block on a full queue until one runs. A thread
     * that cannot start fails the run, and only started ones are joined. */
    for (; nsealers < (size_t)opts->jobs; nsealers++)
        if (pthread_create(&sealers[nsealers].thread, NULL, sg_sealer_main, &sealers[nsealers]) !=
            0)
            break;
    for (; nstarted < nreaders && nsealers > 0; nstarted++)
        if (pthread_create(&readers[nstarted].thread, NULL, sg_reader_main, &readers[nstarted]) !=
            0)
            break;
    if (nsealers == 0 || nstarted < nreaders) {
        sg_error thread_error;
        sg_error_set(&thread_error, SG_E_INTERNAL, "cannot start a thread");
        sg_run_fail(r, &thread_error);
    }

    rc = sg_proc_wait(dump, "pg_dump", err);
    dump = NULL;
    if (rc == 0)
        rc = sg_interrupt_check(err);
    if (rc == 0 && !(schema_chunk = sg_plain_chunk_new(SG_SCHEMA_TABLE, 0)))
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
    if (rc == 0 && (rc = read_file(&schema_chunk->data, dump_path, err)) == 0) {
        rc = sg_run_push_chunk(r, schema_chunk, err);
        if (rc == 0)
            schema_chunk = NULL;
    }
    if (rc < 0)
        sg_run_fail(r, err); /* keeps the first error if the run had already failed */

    for (size_t i = 0; i < nstarted; i++)
        pthread_join(readers[i].thread, NULL);
    pthread_mutex_lock(&r->lock);
    r->readers_done = true;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
    for (size_t i = 0; i < nsealers; i++)
        pthread_join(sealers[i].thread, NULL);
    if (atomic_load(&r->failed)) {
        *err = r->error;
        rc = err->code;
        goto done;
    }

    if (!(m = sg_manifest_new())) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = build_manifest(m, r, &key, recipients, opts->recipients.count, coord, started, err)) <
            0 ||
        (rc = sg_manifest_serialize(&manifest_bytes, m, r->data_key, &key, err)) < 0)
        goto done;
    if (!(manifest_key = sg_layout_key(r->shard, r->id, "manifest"))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    /* The commit point: until this object exists the snapshot does not. */
    if ((rc = sg_store_put(r->store, manifest_key, manifest_bytes.data, manifest_bytes.len, err)) <
        0)
        goto done;
    sg_pg_exec(coord, "COMMIT", NULL);

    clock_gettime(CLOCK_MONOTONIC, &t1);
    snprintf(out->id, sizeof(out->id), "%s", r->id);
    snprintf(out->shard, sizeof(out->shard), "%s", r->shard);
    out->tables = m->ntables;
    for (size_t i = 0; i < m->ntables; i++)
        out->rows += m->tables[i].digest.rows;
    out->plain_bytes = m->plain_bytes;
    out->stored_bytes = m->stored_bytes;
    out->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
done:
    if (rc < 0 && r->store)
        remove_packs(r);
    sg_proc_kill(dump);
    for (size_t i = 0; readers && i < nreaders; i++)
        PQfinish(readers[i].conn);
    for (size_t i = 0; r->cancels && i < r->ncancels; i++)
        PQfreeCancel(r->cancels[i]);
    free(r->cancels);
    free(readers);
    for (size_t i = 0; sealers && i < (size_t)opts->jobs; i++)
        sg_chunk_sealer_free(sealers[i].zs);
    free(sealers);
    for (size_t i = 0; i < r->nspare; i++)
        sg_plain_chunk_free(r->spare[i]);
    free(r->spare);
    PQfinish(coord);
    for (size_t i = 0; i < r->queue_len; i++)
        sg_plain_chunk_free(r->queue[(r->queue_head + i) % r->queue_cap]);
    free(r->queue);
    sg_plain_chunk_free(schema_chunk);
    free(r->next_seq);
    free(r->tasks);
    free(r->records);
    free(r->packs);
    sg_catalog_free(r->catalog);
    sg_store_free(r->store);
    sg_manifest_free(m);
    sg_buf_free(&manifest_bytes);
    free(manifest_key);
    if (tmpdir)
        sg_tmpdir_remove(tmpdir);
    free(tmpdir);
    free(dump_path);
    free(recipients);
    sg_secret_key_wipe(&key);
    sodium_memzero(r->data_key, sizeof(r->data_key));
    pthread_cond_destroy(&r->changed);
    pthread_mutex_destroy(&r->lock);
    return rc;
}
