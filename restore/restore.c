#include "restore/restore.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/chunk.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "common/proc.h"
#include "common/workers.h"
#include "common/writer_impl.h"
#include "restore/access.h"

void sg_restore_options_init(sg_restore_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->jobs = 2;
    opts->maintenance_work_mem = 256ULL << 20;
}

/* ---- a writer that feeds COPY FROM STDIN ---- */

typedef struct copy_in_writer {
    sg_writer base;
    PGconn *conn;
} copy_in_writer;

static int copy_in_write(sg_writer *w, const void *data, size_t len, sg_error *err)
{
    copy_in_writer *c = (copy_in_writer *)w;
    /* PQputCopyData takes an int length. */
    while (len > 0) {
        size_t piece = len > (1u << 30) ? (1u << 30) : len;
        if (PQputCopyData(c->conn, data, (int)piece) != 1)
            return sg_error_set(err, SG_E_DB, "sending rows to the target failed: %s",
                                PQerrorMessage(c->conn));
        data = (const char *)data + piece;
        len -= piece;
    }
    return 0;
}

static int copy_in_close(sg_writer *w, sg_error *err)
{
    (void)w;
    (void)err;
    return 0; /* the COPY is ended by its owner, who knows whether to commit */
}

static const sg_writer_vtable copy_in_vtable = {"copy in", copy_in_write, copy_in_close, NULL};

/* ---- the run ---- */

typedef struct chunk_task {
    const sg_manifest_table *table;
    const sg_manifest_chunk *chunk;
    char *copy_sql;
} chunk_task;

typedef struct restore_run {
    const sg_restore_options *opts;
    sg_snapshot_access *access;
    PGconn **conns;
    chunk_task *tasks;
    size_t ntasks;
    char **qualified; /* per manifest table */
    char **columns;   /* per manifest table */
} restore_run;

static int load_chunk(void *arg, size_t worker, size_t index, sg_error *err)
{
    restore_run *r = arg;
    chunk_task *t = &r->tasks[index];
    PGconn *conn = r->conns[worker];
    PGresult *res = PQexec(conn, t->copy_sql);
    copy_in_writer *sink;
    sg_writer *check;
    char what[256];
    int rc;
    if (!res || PQresultStatus(res) != PGRES_COPY_IN) {
        rc = sg_pg_result_error(res, conn, t->copy_sql, err);
        PQclear(res);
        return rc;
    }
    PQclear(res);
    snprintf(what, sizeof(what), "table %s.%s, chunk %" PRIu32, t->table->schema, t->table->name,
             t->chunk->seq);
    sink = sg_writer_alloc(sizeof(*sink), &copy_in_vtable, NULL);
    if (sink)
        sink->conn = conn;
    check =
        sink ? sg_rows_check_writer_new(&sink->base, what, t->chunk->plain_size, &t->chunk->digest)
             : NULL;
    if (!check)
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
    else
        rc = sg_snapshot_read_chunk(r->access, t->table->schema, t->table->name, t->chunk, check,
                                    err);
    /* Ending the COPY with an error message rolls its rows back: a chunk is
     * loaded whole or not at all. */
    PQputCopyEnd(conn, rc < 0 ? "shardgate: chunk rejected" : NULL);
    while ((res = PQgetResult(conn)) != NULL) {
        if (rc == 0 && PQresultStatus(res) != PGRES_COMMAND_OK) {
            rc = sg_error_set(err, SG_E_DB, "loading %s: %s", what,
                              PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                                  ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                                  : PQerrorMessage(conn));
        }
        PQclear(res);
    }
    return rc;
}

static int digest_table(void *arg, size_t worker, size_t index, sg_error *err)
{
    restore_run *r = arg;
    const sg_manifest_table *t = &r->access->manifest->tables[index];
    sg_digest got;
    char want_hex[SG_DIGEST_HEX_LEN + 1], got_hex[SG_DIGEST_HEX_LEN + 1];
    int rc =
        sg_pg_digest_table(r->conns[worker], r->qualified[index], r->columns[index], &got, err);
    if (rc < 0) {
        sg_error_prefix(err, "checking table %s", r->qualified[index]);
        return rc;
    }
    if (sg_digest_equal(&got, &t->digest))
        return 0;
    sg_digest_hex(&t->digest, want_hex);
    sg_digest_hex(&got, got_hex);
    sg_error_set(err, SG_E_MISMATCH, "restored table %s does not match the snapshot",
                 r->qualified[index]);
    sg_error_detail(err, "snapshot: %" PRIu64 " rows, digest %s", t->digest.rows, want_hex);
    sg_error_detail(err, "restored: %" PRIu64 " rows, digest %s", got.rows, got_hex);
    return SG_E_MISMATCH;
}

static int check_target_empty(PGconn *conn, const char *target, sg_error *err)
{
    PGresult *res = NULL;
    int rc = sg_pg_query(&res, conn,
                         "SELECT count(*), min(pg_catalog.quote_ident(n.nspname) || '.' ||"
                         "                     pg_catalog.quote_ident(c.relname))"
                         "  FROM pg_catalog.pg_class c"
                         "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                         " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
                         "   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'",
                         err);
    char *redacted;
    if (rc < 0)
        return rc;
    if (strcmp(PQgetvalue(res, 0, 0), "0") != 0) {
        redacted = sg_pg_redact_dsn(target);
        sg_error_set(err, SG_E_TARGET, "restore target is not empty: it has %s relations (%s, ...)",
                     PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
        sg_error_detail(err, "target: %s", redacted ? redacted : "?");
        sg_error_hint(err, "restore into a new, empty database (createdb NAME)");
        free(redacted);
        rc = SG_E_TARGET;
    }
    PQclear(res);
    return rc;
}

static int write_file(const char *path, const sg_buf *data, sg_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    sg_writer *w;
    int rc;
    if (fd < 0)
        return sg_error_set(err, SG_E_IO, "cannot create %s", path);
    if (!(w = sg_fd_writer_new(fd, true))) {
        close(fd);
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    }
    rc = sg_writer_write(w, data->data, data->len, err);
    if (rc == 0)
        rc = sg_writer_close(w, err);
    sg_writer_free(w);
    return rc;
}

/* Starts pg_restore on one section of the schema dump. */
static int start_pg_restore(sg_proc **out, restore_run *r, const char *dump_path,
                            const char *section, int jobs, sg_error *err)
{
    char *tool = NULL, *section_arg = sg_asprintf("--section=%s", section),
         *jobs_arg = sg_asprintf("--jobs=%d", jobs),
         /* Index builds sort in maintenance_work_mem: the server's default
          * (64 MB) spills large ones to disk. */
             *memory = sg_asprintf("-c maintenance_work_mem=%" PRIu64 "kB",
                                   r->opts->maintenance_work_mem / 1024);
    sg_pg_child child = {0};
    const char *argv[12];
    size_t n = 0;
    int rc;
    if (!section_arg || !jobs_arg || !memory) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = sg_pg_tool_find(&tool, "pg_restore", r->access->manifest->server_version_num / 10000,
                              r->opts->pg_bindir, err)) < 0 ||
        (rc = sg_pg_child_prepare(&child, r->opts->target, memory, err)) < 0)
        goto done;
    argv[n++] = tool;
    argv[n++] = "--exit-on-error";
    argv[n++] = section_arg;
    argv[n++] = jobs_arg;
    argv[n++] = child.dbname_arg;
    if (r->opts->no_owner)
        argv[n++] = "--no-owner";
    if (r->opts->no_privileges)
        argv[n++] = "--no-privileges";
    argv[n++] = dump_path;
    argv[n] = NULL;
    rc = sg_proc_start_env(out, argv, child.env, err);
done:
    sg_pg_child_free(&child);
    free(tool);
    free(section_arg);
    free(jobs_arg);
    free(memory);
    return rc;
}

static int finish_pg_restore(sg_proc *proc, const char *section, sg_error *err)
{
    char what[64];
    int rc;
    snprintf(what, sizeof(what), "pg_restore --section=%s", section);
    if ((rc = sg_proc_wait(proc, what, err)) < 0)
        sg_error_prefix(err, "restoring the %s schema", section);
    return rc;
}

static int run_pg_restore(restore_run *r, const char *dump_path, const char *section, int jobs,
                          sg_error *err)
{
    sg_proc *proc = NULL;
    int rc = start_pg_restore(&proc, r, dump_path, section, jobs, err);
    return rc < 0 ? rc : finish_pg_restore(proc, section, err);
}

static int compare_tasks(const void *a, const void *b)
{
    const chunk_task *x = a, *y = b;
    return x->chunk->plain_size < y->chunk->plain_size   ? 1
           : x->chunk->plain_size > y->chunk->plain_size ? -1
                                                         : 0;
}

static int prepare(restore_run *r, PGconn *conn, sg_error *err)
{
    const sg_manifest *m = r->access->manifest;
    size_t n = 0;
    for (size_t i = 0; i < m->ntables; i++)
        r->ntasks += m->tables[i].nchunks;
    if (!(r->tasks = sg_calloc(r->ntasks, sizeof(*r->tasks))) ||
        !(r->qualified = sg_calloc(m->ntables, sizeof(char *))) ||
        !(r->columns = sg_calloc(m->ntables, sizeof(char *))))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < m->ntables; i++) {
        const sg_manifest_table *t = &m->tables[i];
        const char **names = sg_calloc(t->ncolumns, sizeof(char *));
        if (!names)
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        for (size_t c = 0; c < t->ncolumns; c++)
            names[c] = t->columns[c].name;
        r->qualified[i] = sg_pg_qualified_name(conn, t->schema, t->name);
        r->columns[i] = sg_pg_column_list(conn, names, t->ncolumns);
        free(names);
        if (!r->qualified[i] || !r->columns[i])
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        for (size_t c = 0; c < t->nchunks; c++, n++) {
            r->tasks[n].table = t;
            r->tasks[n].chunk = &t->chunks[c];
            /* A table without columns still has rows: COPY takes no list then. */
            r->tasks[n].copy_sql =
                t->ncolumns ? sg_asprintf("COPY %s (%s) FROM STDIN", r->qualified[i], r->columns[i])
                            : sg_asprintf("COPY %s FROM STDIN", r->qualified[i]);
            if (!r->tasks[n].copy_sql)
                return sg_error_set(err, SG_E_NOMEM, "out of memory");
        }
    }
    if (r->ntasks > 1)
        qsort(r->tasks, r->ntasks, sizeof(*r->tasks), compare_tasks);
    return 0;
}

static int restore_sequences(restore_run *r, PGconn *conn, sg_error *err)
{
    const sg_manifest *m = r->access->manifest;
    for (size_t i = 0; i < m->nsequences; i++) {
        const sg_manifest_sequence *s = &m->sequences[i];
        char *name = sg_pg_qualified_name(conn, s->schema, s->name);
        char value[32];
        const char *params[3];
        PGresult *res = NULL;
        int rc;
        if (!name)
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        snprintf(value, sizeof(value), "%" PRId64, s->last_value);
        params[0] = name;
        params[1] = value;
        params[2] = s->is_called ? "true" : "false";
        rc = sg_pg_query_params(&res, conn,
                                "SELECT pg_catalog.setval($1::pg_catalog.regclass, $2, $3)", 3,
                                params, err);
        PQclear(res);
        if (rc < 0)
            sg_error_prefix(err, "setting sequence %s", name);
        free(name);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < m->nrefresh_matviews; i++) {
        char *sql = sg_asprintf("REFRESH MATERIALIZED VIEW %s", m->refresh_matviews[i]);
        int rc = sql ? sg_pg_exec(conn, sql, err) : sg_error_set(err, SG_E_NOMEM, "out of memory");
        free(sql);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int connect_workers(restore_run *r, size_t n, sg_error *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc;
        if ((rc = sg_pg_connect(&r->conns[i], r->opts->target, "restore target", err)) < 0 ||
            (rc = sg_pg_pin_settings(r->conns[i], err)) < 0 ||
            /* Losing a restore to a crash only means restoring again. */
            (rc = sg_pg_exec(r->conns[i], "SET synchronous_commit = off", err)) < 0)
            return rc;
    }
    return 0;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

int sg_restore_run(sg_restore_result *out, const sg_restore_options *opts, sg_error *err)
{
    restore_run r_ = {.opts = opts}, *r = &r_;
    sg_store *store = NULL;
    sg_secret_key key;
    sg_public_key *trusted = NULL;
    size_t nconns = opts->jobs > 0 ? (size_t)opts->jobs : 1;
    char *tmpdir = NULL, *dump_path = NULL;
    sg_buf dump = {0};
    sg_proc *post_data = NULL;
    struct timespec t0;
    bool loading = false;
    int rc;

    memset(&key, 0, sizeof(key));
    memset(out, 0, sizeof(*out));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!opts->store.url || !opts->target || !opts->snapshot || !opts->key_path) {
        rc = sg_error_set(err, SG_E_USAGE,
                          "--store, --key, --trust, --target and a SNAPSHOT are required");
        goto done;
    }
    if ((rc = sg_trusted_keys_load(&trusted, &opts->trust, err)) < 0 ||
        (rc = sg_secret_key_load(&key, opts->key_path, err)) < 0 ||
        (rc = sg_store_open_config(&store, &opts->store, err)) < 0 ||
        (rc = sg_snapshot_access_open(&r->access, store, opts->snapshot, trusted, opts->trust.count,
                                      &key, err)) < 0)
        goto done;
    /* A missing or truncated pack is found before the target is touched;
     * damage inside a pack is found by each chunk's SHA-256 as it loads. */
    for (size_t i = 0; i < r->access->manifest->nobjects; i++)
        if ((rc = sg_snapshot_check_object(r->access, &r->access->manifest->objects[i], 0, err)) <
            0)
            goto done;
    if (!(r->conns = sg_calloc(nconns, sizeof(PGconn *)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = connect_workers(r, nconns, err)) < 0 ||
        (rc = check_target_empty(r->conns[0], opts->target, err)) < 0 ||
        (rc = prepare(r, r->conns[0], err)) < 0)
        goto done;
    sg_log_info("restoring %s/%s: %zu tables, %zu chunks", r->access->shard, r->access->id,
                r->access->manifest->ntables, r->ntasks);

    /* The schema dump is opened like any chunk: it is bound to this
     * snapshot and checked before pg_restore sees a byte of it. */
    {
        sg_writer *sink = sg_buffer_writer_new(&dump);
        if (!sink) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            goto done;
        }
        if ((rc = sg_snapshot_read_chunk(r->access, SG_CHUNK_SCHEMA_SCHEMA, SG_CHUNK_SCHEMA_TABLE,
                                         &r->access->manifest->schema, sink, err)) < 0)
            goto done;
    }
    if ((rc = sg_tmpdir_new(&tmpdir, "restore", err)) < 0)
        goto done;
    if (!(dump_path = sg_asprintf("%s/schema.dump", tmpdir))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = write_file(dump_path, &dump, err)) < 0 ||
        (rc = run_pg_restore(r, dump_path, "pre-data", 1, err)) < 0)
        goto done;
    loading = true;
    if ((rc = sg_workers_run(nconns, r->ntasks, load_chunk, r, err)) < 0 ||
        (rc = restore_sequences(r, r->conns[0], err)) < 0)
        goto done;
    /* Index and constraint builds leave cores idle while they wait on each
     * other; the check of every table runs alongside to use them. Neither
     * changes rows, and their locks only make one wait for the other. */
    sg_log_info("data loaded at %.1f s; building indexes and constraints while checking every "
                "table against the manifest",
                seconds_since(&t0));
    if ((rc = start_pg_restore(&post_data, r, dump_path, "post-data", (int)nconns, err)) < 0 ||
        (rc = sg_workers_run(nconns, r->access->manifest->ntables, digest_table, r, err)) < 0)
        goto done;
    sg_log_info("rows checked at %.1f s", seconds_since(&t0));
    rc = finish_pg_restore(post_data, "post-data", err);
    post_data = NULL;
    if (rc < 0)
        goto done;
    loading = false;

    snprintf(out->shard, sizeof(out->shard), "%s", r->access->shard);
    snprintf(out->id, sizeof(out->id), "%s", r->access->id);
    out->tables = r->access->manifest->ntables;
    for (size_t i = 0; i < out->tables; i++)
        out->rows += r->access->manifest->tables[i].digest.rows;
    out->plain_bytes = r->access->manifest->plain_bytes;
    out->seconds = seconds_since(&t0);
done:
    sg_proc_kill(post_data);
    if (rc < 0 && loading)
        sg_error_hint(err, "the target database is partly restored: drop it and restore into a "
                           "new, empty database");
    for (size_t i = 0; r->conns && i < nconns; i++)
        PQfinish(r->conns[i]);
    free(r->conns);
    for (size_t i = 0; r->tasks && i < r->ntasks; i++)
        free(r->tasks[i].copy_sql);
    free(r->tasks);
    for (size_t i = 0; r->access && r->qualified && i < r->access->manifest->ntables; i++) {
        free(r->qualified[i]);
        if (r->columns)
            free(r->columns[i]);
    }
    free(r->qualified);
    free(r->columns);
    sg_snapshot_access_free(r->access);
    sg_store_free(store);
    free(trusted);
    sg_secret_key_wipe(&key);
    sg_buf_free(&dump);
    if (tmpdir)
        sg_tmpdir_remove(tmpdir);
    free(tmpdir);
    free(dump_path);
    return rc;
}
