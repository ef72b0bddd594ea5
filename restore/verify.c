#include "restore/verify.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/chunk.h"
#include "common/keys.h"
#include "common/mem.h"
#include "common/workers.h"
#include "restore/access.h"

void sg_verify_options_init(sg_verify_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->level = 1;
    opts->jobs = 2;
}

typedef struct verify_run {
    sg_snapshot_access *access;
    int level;
    /* level 2: one task per chunk, the schema dump being the last */
    const sg_manifest_table **task_table;
    const sg_manifest_chunk **task_chunk;
    size_t ntasks;
} verify_run;

static int check_object(void *arg, size_t worker, size_t index, sg_error *err)
{
    verify_run *v = arg;
    (void)worker;
    return sg_snapshot_check_object(v->access, &v->access->manifest->objects[index], v->level, err);
}

static int check_chunk(void *arg, size_t worker, size_t index, sg_error *err)
{
    verify_run *v = arg;
    const sg_manifest_table *t = v->task_table[index];
    const sg_manifest_chunk *c = v->task_chunk[index];
    const char *schema = t ? t->schema : SG_CHUNK_SCHEMA_SCHEMA;
    const char *table = t ? t->name : SG_CHUNK_SCHEMA_TABLE;
    char what[256];
    sg_writer *sink;
    (void)worker;
    if (t) {
        snprintf(what, sizeof(what), "table %s.%s, chunk %" PRIu32, schema, table, c->seq);
        sink = sg_rows_check_writer_new(NULL, what, c->plain_size, &c->digest);
    } else {
        /* The schema dump is not rows; its size is all there is to check
         * beyond what the AEAD proves. */
        sink = sg_size_writer_new(NULL);
    }
    if (!sink)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    return sg_snapshot_read_chunk(v->access, schema, table, c, sink, err);
}

int sg_verify_run(sg_verify_result *out, const sg_verify_options *opts, sg_error *err)
{
    verify_run v = {.level = opts->level};
    sg_store *store = NULL;
    sg_public_key *trusted = NULL;
    sg_secret_key key;
    bool have_key = false;
    size_t jobs = opts->jobs > 0 ? (size_t)opts->jobs : 1;
    struct timespec t0, t1;
    int rc;

    memset(&key, 0, sizeof(key));
    memset(out, 0, sizeof(*out));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!opts->store.url || !opts->snapshot) {
        rc = sg_error_set(err, SG_E_USAGE, "--store and a SNAPSHOT are required");
        goto done;
    }
    if (opts->level < 0 || opts->level > 2) {
        rc = sg_error_set(err, SG_E_USAGE, "--level must be 0, 1 or 2");
        goto done;
    }
    if (opts->level == 2 && !opts->key_path) {
        rc = sg_error_set(err, SG_E_USAGE, "--level 2 needs --key to open the chunks");
        goto done;
    }
    if ((rc = sg_trusted_keys_load(&trusted, &opts->trust, err)) < 0)
        goto done;
    if (opts->level == 2) {
        if ((rc = sg_secret_key_load(&key, opts->key_path, err)) < 0)
            goto done;
        have_key = true;
    }
    if ((rc = sg_store_open_config(&store, &opts->store, err)) < 0 ||
        (rc = sg_snapshot_access_open(&v.access, store, opts->snapshot, trusted, opts->trust.count,
                                      have_key ? &key : NULL, err)) < 0)
        goto done;
    if ((rc = sg_workers_run(jobs, v.access->manifest->nobjects, check_object, &v, err)) < 0)
        goto done;
    out->objects = v.access->manifest->nobjects;
    for (size_t i = 0; i < out->objects; i++)
        out->stored_bytes += v.access->manifest->objects[i].size;
    if (opts->level == 2) {
        const sg_manifest *m = v.access->manifest;
        size_t n = 0;
        for (size_t i = 0; i < m->ntables; i++)
            v.ntasks += m->tables[i].nchunks;
        v.ntasks++;
        v.task_table = sg_calloc(v.ntasks, sizeof(*v.task_table));
        v.task_chunk = sg_calloc(v.ntasks, sizeof(*v.task_chunk));
        if (!v.task_table || !v.task_chunk) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < m->ntables; i++) {
            for (size_t c = 0; c < m->tables[i].nchunks; c++, n++) {
                v.task_table[n] = &m->tables[i];
                v.task_chunk[n] = &m->tables[i].chunks[c];
                out->plain_bytes += m->tables[i].chunks[c].plain_size;
            }
            out->rows += m->tables[i].digest.rows;
        }
        v.task_chunk[n] = &m->schema;
        if ((rc = sg_workers_run(jobs, v.ntasks, check_chunk, &v, err)) < 0)
            goto done;
        out->chunks = v.ntasks;
    }
    snprintf(out->shard, sizeof(out->shard), "%s", v.access->shard);
    snprintf(out->id, sizeof(out->id), "%s", v.access->id);
    out->level = opts->level;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
done:
    free(v.task_table);
    free(v.task_chunk);
    sg_snapshot_access_free(v.access);
    sg_store_free(store);
    free(trusted);
    sg_secret_key_wipe(&key);
    return rc;
}
