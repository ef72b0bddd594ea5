#include "restore/access.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/chunk.h"
#include "common/mem.h"
#include "common/sha256.h"

typedef struct list_ctx {
    sg_snapshot_entry *entries;
    size_t count;
    int rc;
    sg_error *err;
} list_ctx;

/* Keys look like shards/<shard>/snapshots/<id>/<rest>. */
static int on_object(void *arg, const char *key, uint64_t size)
{
    list_ctx *ctx = arg;
    const char *shard, *id, *rest, *p;
    size_t shard_len, id_len;
    sg_snapshot_entry *e = NULL;
    if (strncmp(key, "shards/", 7) != 0)
        return 0;
    shard = key + 7;
    if (!(p = strchr(shard, '/')) || strncmp(p, "/snapshots/", 11) != 0)
        return 0;
    shard_len = (size_t)(p - shard);
    id = p + 11;
    if (!(rest = strchr(id, '/')))
        return 0;
    id_len = (size_t)(rest - id);
    rest++;
    if (shard_len > SG_SHARD_NAME_MAX || id_len >= SG_SNAPSHOT_ID_MAX)
        return 0;
    /* Objects of one snapshot are listed together (key order). */
    if (ctx->count > 0) {
        sg_snapshot_entry *last = &ctx->entries[ctx->count - 1];
        if (strlen(last->shard) == shard_len && strncmp(last->shard, shard, shard_len) == 0 &&
            strlen(last->id) == id_len && strncmp(last->id, id, id_len) == 0)
            e = last;
    }
    if (!e) {
        sg_snapshot_entry *entries = sg_array_grow(ctx->entries, ctx->count, sizeof(*entries));
        if (!entries) {
            ctx->rc = sg_error_set(ctx->err, SG_E_NOMEM, "out of memory");
            return 1;
        }
        ctx->entries = entries;
        e = &ctx->entries[ctx->count++];
        memset(e, 0, sizeof(*e));
        memcpy(e->shard, shard, shard_len);
        memcpy(e->id, id, id_len);
    }
    if (strcmp(rest, "manifest") == 0)
        e->complete = true;
    else if (strncmp(rest, "packs/", 6) == 0)
        e->pack_bytes += size;
    return 0;
}

static int newest_first(const void *a, const void *b)
{
    const sg_snapshot_entry *x = a, *y = b;
    int c = strcmp(y->id, x->id);
    return c ? c : strcmp(x->shard, y->shard);
}

int sg_snapshot_list(sg_snapshot_entry **out, size_t *count, sg_store *store, const char *shard,
                     sg_error *err)
{
    list_ctx ctx = {.err = err};
    char *prefix = shard ? sg_layout_shard_prefix(shard) : sg_strdup("shards/");
    int rc;
    *out = NULL;
    *count = 0;
    if (!prefix)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    rc = sg_store_list(store, prefix, on_object, &ctx, err);
    free(prefix);
    if (rc == 0 && ctx.rc < 0)
        rc = ctx.rc;
    if (rc < 0) {
        free(ctx.entries);
        return rc < 0 ? rc : ctx.rc;
    }
    if (ctx.count > 1) /* an empty array may be NULL, which qsort must not get */
        qsort(ctx.entries, ctx.count, sizeof(*ctx.entries), newest_first);
    *out = ctx.entries;
    *count = ctx.count;
    return 0;
}

int sg_trusted_keys_load(sg_public_key **out, const sg_strlist *paths, sg_error *err)
{
    sg_public_key *keys;
    int rc;
    *out = NULL;
    if (paths->count == 0) {
        sg_error_set(err, SG_E_USAGE, "--trust is required");
        sg_error_hint(err, "pass the public key (.pub) of the runner that signed the snapshot");
        return SG_E_USAGE;
    }
    if (!(keys = sg_calloc(paths->count, sizeof(*keys))))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < paths->count; i++) {
        if ((rc = sg_public_key_load(&keys[i], paths->items[i], err)) < 0) {
            free(keys);
            return rc;
        }
    }
    *out = keys;
    return 0;
}

static int resolve_latest(sg_snapshot_access *a, sg_error *err)
{
    sg_snapshot_entry *entries = NULL;
    size_t count = 0;
    int rc = sg_snapshot_list(&entries, &count, a->store, a->shard, err);
    if (rc < 0)
        return rc;
    rc = sg_error_set(err, SG_E_NOT_FOUND, "shard \"%s\" has no complete snapshot in %s", a->shard,
                      sg_store_url(a->store));
    for (size_t i = 0; i < count; i++) {
        if (entries[i].complete) {
            snprintf(a->id, sizeof(a->id), "%s", entries[i].id);
            sg_error_clear(err);
            rc = 0;
            break;
        }
    }
    free(entries);
    return rc;
}

int sg_snapshot_access_open(sg_snapshot_access **out, sg_store *store, const char *spec,
                            const sg_public_key *trusted, size_t ntrusted, const sg_secret_key *key,
                            sg_error *err)
{
    sg_snapshot_access *a = sg_calloc(1, sizeof(*a));
    sg_buf bytes = {0};
    char *manifest_key = NULL;
    char id[64];
    int rc;
    *out = NULL;
    if (!a)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    a->store = store;
    if ((rc = sg_layout_parse_spec(a->shard, id, spec, err)) < 0)
        goto done;
    if (strcmp(id, "latest") == 0) {
        if ((rc = resolve_latest(a, err)) < 0)
            goto done;
    } else {
        snprintf(a->id, sizeof(a->id), "%s", id);
    }
    if (!(manifest_key = sg_layout_key(a->shard, a->id, "manifest"))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = sg_store_get(store, manifest_key, 0, UINT64_MAX, &bytes, err)) < 0) {
        if (rc == SG_E_NOT_FOUND) {
            sg_error_set(err, SG_E_NOT_FOUND,
                         "snapshot %s/%s not found or incomplete (no manifest)", a->shard, a->id);
            sg_error_hint(err, "\"shardgate snapshots --store %s\" lists the snapshots",
                          sg_store_url(store));
        }
        goto done;
    }
    if ((rc = sg_manifest_parse(&a->manifest, bytes.data, bytes.len, trusted, ntrusted, err)) < 0) {
        sg_error_prefix(err, "snapshot %s/%s", a->shard, a->id);
        goto done;
    }
    if (strcmp(a->manifest->id, a->id) != 0 || strcmp(a->manifest->shard, a->shard) != 0) {
        rc = sg_error_set(err, SG_E_CORRUPT,
                          "snapshot %s/%s: the manifest belongs to snapshot %s/%s", a->shard, a->id,
                          a->manifest->shard, a->manifest->id);
        sg_error_detail(err, "a manifest was copied or moved inside the store");
        goto done;
    }
    if (key) {
        if ((rc = sg_manifest_open_body(a->manifest, key, a->data_key, err)) < 0) {
            sg_error_prefix(err, "snapshot %s/%s", a->shard, a->id);
            goto done;
        }
        a->has_key = true;
    }
    *out = a;
    a = NULL;
done:
    sg_buf_free(&bytes);
    free(manifest_key);
    sg_snapshot_access_free(a);
    return rc;
}

void sg_snapshot_access_free(sg_snapshot_access *access)
{
    if (!access)
        return;
    sg_manifest_free(access->manifest);
    sodium_memzero(access->data_key, sizeof(access->data_key));
    free(access);
}

char *sg_snapshot_object_key(const sg_snapshot_access *access, const char *path)
{
    return sg_layout_key(access->shard, access->id, path);
}

int sg_snapshot_read_chunk(sg_snapshot_access *access, const char *schema, const char *table,
                           const sg_manifest_chunk *chunk, sg_writer *sink, sg_error *err)
{
    sg_chunk_ref ref = {access->id, schema, table, chunk->seq, chunk->plain_size};
    sg_writer *chain = NULL;
    sg_buf sealed = {0};
    uint8_t sha[32];
    char path[64], *key = NULL;
    int rc;
    snprintf(path, sizeof(path), "packs/%" PRIu32 ".pack", chunk->pack);
    if (!(key = sg_snapshot_object_key(access, path))) {
        sg_writer_free(sink);
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    }
    if ((rc = sg_chunk_open_writer(&chain, sink, &ref, access->data_key, err)) < 0)
        goto done;
    /* The whole sealed chunk is read and checked against the signed
     * manifest before a byte of it is opened: what reaches the database was
     * written by the signer, not merely by someone holding the data key. */
    if ((rc = sg_store_get(access->store, key, chunk->offset, chunk->stored_size, &sealed, err)) <
        0)
        goto failed;
    sg_sha256(sha, sealed.data ? (const void *)sealed.data : "", sealed.len);
    if (sodium_memcmp(sha, chunk->sha256, sizeof(sha)) != 0) {
        rc = sg_error_set(err, SG_E_CORRUPT, "does not match its SHA-256 in the manifest");
        sg_error_detail(err, "its bytes were changed or damaged after the snapshot was taken");
        goto failed;
    }
    if ((rc = sg_writer_write(chain, sealed.data, sealed.len, err)) < 0 ||
        (rc = sg_writer_close(chain, err)) < 0)
        goto failed;
    goto done;
failed:
    if (schema[0])
        sg_error_prefix(err, "table %s.%s, chunk %" PRIu32 " (in %s)", schema, table, chunk->seq,
                        path);
    else
        sg_error_prefix(err, "schema dump (in %s)", path);
done:
    free(sealed.data); /* ciphertext: nothing to wipe */
    sg_writer_free(chain);
    free(key);
    return rc;
}

int sg_snapshot_check_object(sg_snapshot_access *access, const sg_manifest_object *o, int level,
                             sg_error *err)
{
    char *key = sg_snapshot_object_key(access, o->path);
    uint64_t size = 0;
    uint8_t sha[32];
    sg_writer *hash = NULL;
    int rc;
    if (!key)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    if ((rc = sg_store_size(access->store, key, &size, err)) < 0) {
        if (rc == SG_E_NOT_FOUND)
            sg_error_set(err, SG_E_NOT_FOUND, "object %s is missing", o->path);
        goto done;
    }
    if (size != o->size) {
        rc = sg_error_set(err, SG_E_CORRUPT,
                          "object %s has %" PRIu64 " bytes; the manifest says %" PRIu64, o->path,
                          size, o->size);
        if (size < o->size)
            sg_error_detail(err, "the object is truncated");
        goto done;
    }
    if (level < 1)
        goto done;
    if (!(hash = sg_hash_writer_new(NULL))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = sg_store_read(access->store, key, 0, o->size, hash, err)) < 0 ||
        (rc = sg_writer_close(hash, err)) < 0) {
        sg_error_prefix(err, "reading object %s", o->path);
        goto done;
    }
    sg_hash_writer_digest(hash, sha);
    if (sodium_memcmp(sha, o->sha256, sizeof(sha)) != 0) {
        rc = sg_error_set(err, SG_E_CORRUPT, "object %s does not match its SHA-256 in the manifest",
                          o->path);
        sg_error_detail(err, "its bytes were changed after the snapshot was taken");
    }
done:
    sg_writer_free(hash);
    free(key);
    return rc;
}
