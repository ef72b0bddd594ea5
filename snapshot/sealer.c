/* Sealers: each compresses and seals chunks from the queue straight into a
 * pack of its own, starting a new pack at the size limit, and records where
 * every chunk landed. */
#include "snapshot/run.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/interrupt.h"
#include "common/mem.h"
#include "common/pg.h"

static int record_pack(sg_run *r, uint32_t number, uint64_t size, const uint8_t sha256[32],
                       sg_error *err)
{
    sg_pack_record *packs;
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    if ((packs = sg_array_grow(r->packs, r->npacks, sizeof(*packs))) != NULL) {
        r->packs = packs;
        packs[r->npacks].number = number;
        packs[r->npacks].size = size;
        memcpy(packs[r->npacks].sha256, sha256, 32);
        r->npacks++;
    } else {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static int close_pack(sg_sealer *s, sg_error *err)
{
    uint64_t size;
    uint8_t sha256[32];
    int rc;
    if (!s->pack)
        return 0;
    rc = sg_pack_writer_close(s->pack, &size, sha256, err);
    sg_pack_writer_free(s->pack);
    s->pack = NULL;
    return rc < 0 ? rc : record_pack(s->r, s->pack_number, size, sha256, err);
}

static int open_pack(sg_sealer *s, sg_error *err)
{
    sg_run *r = s->r;
    char path[64];
    char *key;
    int rc;
    s->pack_number = atomic_fetch_add(&r->next_pack, 1);
    snprintf(path, sizeof(path), "packs/%" PRIu32 ".pack", s->pack_number);
    if (!(key = sg_layout_key(r->shard, r->id, path)))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    rc = sg_pack_writer_new(&s->pack, r->store, key, err);
    free(key);
    return rc;
}

static int record_chunk(sg_run *r, size_t table, const sg_manifest_chunk *where, sg_error *err)
{
    sg_chunk_record *records;
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    if ((records = sg_array_grow(r->records, r->nrecords, sizeof(*records))) != NULL) {
        r->records = records;
        records[r->nrecords].table = table;
        records[r->nrecords].where = *where;
        r->nrecords++;
    } else {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static int seal_one(sg_sealer *s, sg_plain_chunk *c, sg_error *err)
{
    sg_run *r = s->r;
    bool schema = c->table == SG_SCHEMA_TABLE;
    const sg_catalog_table *t = schema ? NULL : &r->catalog->tables[c->table];
    sg_chunk_ref ref = {r->id, schema ? SG_CHUNK_SCHEMA_SCHEMA : t->schema,
                        schema ? SG_CHUNK_SCHEMA_TABLE : t->name, c->seq, c->data.len};
    sg_manifest_chunk where = {0};
    sg_writer *member_data = NULL;
    uint64_t sealed_size;
    char member[64];
    int rc;
    if ((rc = sg_chunk_sealer_compress(s->zs, &sealed_size, c->data.data, c->data.len, err)) < 0)
        return rc;
    if (s->pack && sg_pack_writer_size(s->pack) >= r->opts->pack_size &&
        (rc = close_pack(s, err)) < 0)
        return rc;
    if (!s->pack && (rc = open_pack(s, err)) < 0)
        return rc;
    /* Member names are for people running `tar tvf`; restore finds chunks by
     * offset. OIDs keep names short and free of odd characters. */
    if (schema)
        snprintf(member, sizeof(member), "schema.dump");
    else
        snprintf(member, sizeof(member), "%" PRIu32 "/%06" PRIu32 ".chunk", t->oid, c->seq);
    where.seq = c->seq;
    where.pack = s->pack_number;
    where.stored_size = sealed_size;
    where.plain_size = c->data.len;
    where.digest = c->digest;
    /* Sealed straight into the pack: the sealed size is known up front, so
     * no third copy of the chunk is held in memory. */
    if ((rc = sg_pack_writer_begin(&member_data, s->pack, member, sealed_size, &where.offset,
                                   err)) < 0 ||
        (rc = sg_chunk_sealer_seal(s->zs, member_data, &ref, r->data_key, where.sha256, err)) < 0)
        return rc;
    return record_chunk(r, c->table, &where, err);
}

void *sg_sealer_main(void *arg)
{
    sg_sealer *s = arg;
    sg_run *r = s->r;
    sg_error err = {0};
    sg_plain_chunk *c;
    while ((c = sg_run_pop_chunk(r)) != NULL) {
        int rc = seal_one(s, c, &err);
        sg_run_release_chunk(r, c);
        if (rc < 0) {
            sg_run_fail(r, &err);
            break;
        }
    }
    if (!atomic_load(&r->failed) && close_pack(s, &err) < 0)
        sg_run_fail(r, &err);
    sg_pack_writer_free(s->pack);
    s->pack = NULL;
    return NULL;
}
