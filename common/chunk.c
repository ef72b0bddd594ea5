#include "common/chunk.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/mem.h"
#include "common/writer_impl.h"

size_t sg_chunk_ad(uint8_t out[SG_CHUNK_AD_MAX], const sg_chunk_ref *ref)
{
    /* NUL separators: no field can contain one, so fields cannot be shifted
     * into each other to forge another context. Identifiers are at most 63
     * bytes and ids are short, so the whole always fits. */
    int len = snprintf((char *)out, SG_CHUNK_AD_MAX,
                       "shardgate chunk 1%c%s%c%s%c%s%c%" PRIu32 "%c%" PRIu64, 0, ref->snapshot_id,
                       0, ref->schema, 0, ref->table, 0, ref->seq, 0, ref->plain_size);
    return len < 0 ? 0 : (size_t)len >= SG_CHUNK_AD_MAX ? SG_CHUNK_AD_MAX - 1 : (size_t)len;
}

/* Sealing compresses a whole chunk at once rather than through a zstd
 * writer: the chunk is already in memory, one-shot compression is faster
 * than streaming, and the context is kept from chunk to chunk, where
 * creating one per chunk costs page faults for its tables every time. */
struct sg_chunk_sealer {
    ZSTD_CCtx *cctx;
    sg_buf compressed;
};

sg_chunk_sealer *sg_chunk_sealer_new(int level)
{
    sg_chunk_sealer *s = sg_calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (!(s->cctx = ZSTD_createCCtx()) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_checksumFlag, 1))) {
        sg_chunk_sealer_free(s);
        return NULL;
    }
    return s;
}

void sg_chunk_sealer_free(sg_chunk_sealer *sealer)
{
    if (!sealer)
        return;
    ZSTD_freeCCtx(sealer->cctx);
    sg_buf_free(&sealer->compressed);
    free(sealer);
}

int sg_chunk_sealer_compress(sg_chunk_sealer *sealer, uint64_t *sealed_size, const void *plain,
                             size_t len, sg_error *err)
{
    size_t bound = ZSTD_compressBound(len), n;
    int rc;
    sg_buf_reset(&sealer->compressed);
    if ((rc = sg_buf_reserve(&sealer->compressed, bound, err)) < 0)
        return rc;
    n = ZSTD_compress2(sealer->cctx, sealer->compressed.data, bound, plain, len);
    if (ZSTD_isError(n))
        return sg_error_set(err, SG_E_INTERNAL, "compressing a chunk failed: %s",
                            ZSTD_getErrorName(n));
    sealer->compressed.len = n;
    *sealed_size = sg_sealed_size(n, SG_CHUNK_SEGMENT_SIZE);
    return 0;
}

int sg_chunk_sealer_seal(sg_chunk_sealer *sealer, sg_writer *to, const sg_chunk_ref *ref,
                         const uint8_t *key, uint8_t sha256[32], sg_error *err)
{
    uint8_t ad[SG_CHUNK_AD_MAX];
    size_t ad_len = sg_chunk_ad(ad, ref);
    sg_writer *hash = sha256 ? sg_hash_writer_new(to) : to;
    sg_writer *chain =
        hash ? sg_seal_writer_new(hash, key, ad, ad_len, SG_CHUNK_SEGMENT_SIZE) : NULL;
    int rc;
    if (!chain)
        return sg_error_set(err, SG_E_NOMEM, "out of memory sealing a chunk");
    rc = sg_writer_write(chain, sealer->compressed.data, sealer->compressed.len, err);
    if (rc == 0)
        rc = sg_writer_close(chain, err);
    if (rc == 0 && sha256)
        sg_hash_writer_digest(hash, sha256);
    sg_writer_free(chain);
    return rc;
}

int sg_chunk_seal(sg_buf *out, const void *plain, const sg_chunk_ref *ref, const uint8_t *key,
                  int level, sg_error *err)
{
    sg_chunk_sealer *sealer = sg_chunk_sealer_new(level);
    sg_writer *to = sg_buffer_writer_new(out);
    uint64_t sealed_size;
    int rc;
    if (!sealer || !to) {
        sg_writer_free(to);
        sg_chunk_sealer_free(sealer);
        return sg_error_set(err, SG_E_NOMEM, "out of memory sealing a chunk");
    }
    rc = sg_chunk_sealer_compress(sealer, &sealed_size, plain, ref->plain_size, err);
    if (rc == 0)
        rc = sg_chunk_sealer_seal(sealer, to, ref, key, NULL, err);
    else
        sg_writer_free(to);
    sg_chunk_sealer_free(sealer);
    return rc;
}

/* The associated data binds the plain length, so a chunk that opens to any
 * other length was sealed wrongly; this says so before the rows are looked at. */
typedef struct size_check_writer {
    sg_writer base;
    uint64_t expected;
    uint64_t seen;
} size_check_writer;

static int size_check_write(sg_writer *w, const void *data, size_t len, sg_error *err)
{
    size_check_writer *sc = (size_check_writer *)w;
    if (len > sc->expected - sc->seen)
        return sg_error_set(err, SG_E_CORRUPT,
                            "chunk holds more than the %" PRIu64 " bytes it was sealed with",
                            sc->expected);
    sc->seen += len;
    return sg_writer_write(w->next, data, len, err);
}

static int size_check_close(sg_writer *w, sg_error *err)
{
    size_check_writer *sc = (size_check_writer *)w;
    if (sc->seen != sc->expected)
        return sg_error_set(err, SG_E_CORRUPT,
                            "chunk holds %" PRIu64 " bytes, not the %" PRIu64 " it was sealed with",
                            sc->seen, sc->expected);
    return 0;
}

static const sg_writer_vtable size_check_vtable = {"chunk size", size_check_write, size_check_close,
                                                   NULL};

int sg_chunk_open_writer(sg_writer **out, sg_writer *sink, const sg_chunk_ref *ref,
                         const uint8_t *key, sg_error *err)
{
    uint8_t ad[SG_CHUNK_AD_MAX];
    size_t ad_len = sg_chunk_ad(ad, ref);
    uint64_t plain_size = ref->plain_size;
    size_check_writer *check = sg_writer_alloc(sizeof(*check), &size_check_vtable, sink);
    sg_writer *chain = NULL;
    if (check) {
        check->expected = plain_size;
        /* One more than expected, since 0 means no limit: the cap only stops
         * a bomb, the size check above reports the overlong chunk. */
        chain = sg_unzstd_writer_new(&check->base, 0, plain_size + 1);
    }
    chain = chain ? sg_unseal_writer_new(chain, key, ad, ad_len) : NULL;
    *out = chain;
    if (!chain)
        return sg_error_set(err, SG_E_NOMEM, "out of memory opening a chunk");
    return 0;
}

typedef struct rows_check_writer {
    sg_writer base;
    char *what;
    uint64_t expected;
    uint64_t seen;
    sg_digest want, got;
    sg_buf partial; /* a row split across writes */
} rows_check_writer;

static int rows_check_write(sg_writer *w, const void *data, size_t len, sg_error *err)
{
    rows_check_writer *rc = (rows_check_writer *)w;
    const char *p = data;
    size_t total = len, used;
    rc->seen += len;
    if (rc->partial.len > 0) {
        const char *nl = memchr(p, '\n', len);
        size_t take = nl ? (size_t)(nl - p) + 1 : len;
        int r = sg_buf_append(&rc->partial, p, take, err);
        if (r < 0)
            return r;
        if (nl) {
            sg_digest_copy_text(&rc->got, rc->partial.data, rc->partial.len);
            sg_buf_reset(&rc->partial);
        }
        p += take;
        len -= take;
    }
    used = sg_digest_copy_text(&rc->got, p, len);
    if (used < len) {
        int r = sg_buf_append(&rc->partial, p + used, len - used, err);
        if (r < 0)
            return r;
    }
    return w->next ? sg_writer_write(w->next, data, total, err) : 0;
}

static int rows_check_close(sg_writer *w, sg_error *err)
{
    rows_check_writer *rc = (rows_check_writer *)w;
    char want[SG_DIGEST_HEX_LEN + 1], got[SG_DIGEST_HEX_LEN + 1];
    if (rc->seen != rc->expected)
        return sg_error_set(err, SG_E_MISMATCH,
                            "%s: has %" PRIu64 " bytes of rows, manifest says %" PRIu64, rc->what,
                            rc->seen, rc->expected);
    if (rc->partial.len > 0)
        return sg_error_set(err, SG_E_MISMATCH,
                            "%s: ends in an incomplete row (%zu bytes after the last newline)",
                            rc->what, rc->partial.len);
    if (!sg_digest_equal(&rc->want, &rc->got)) {
        sg_digest_hex(&rc->want, want);
        sg_digest_hex(&rc->got, got);
        sg_error_set(err, SG_E_MISMATCH, "%s: rows do not match the manifest", rc->what);
        sg_error_detail(err, "manifest: %" PRIu64 " rows, digest %s", rc->want.rows, want);
        sg_error_detail(err, "found:    %" PRIu64 " rows, digest %s", rc->got.rows, got);
        return SG_E_MISMATCH;
    }
    return 0;
}

static void rows_check_destroy(sg_writer *w)
{
    rows_check_writer *rc = (rows_check_writer *)w;
    free(rc->what);
    sg_buf_free(&rc->partial);
}

static const sg_writer_vtable rows_check_vtable = {"rows check", rows_check_write, rows_check_close,
                                                   rows_check_destroy};

sg_writer *sg_rows_check_writer_new(sg_writer *next, const char *what, uint64_t expected,
                                    const sg_digest *digest)
{
    rows_check_writer *w = sg_writer_alloc(sizeof(*w), &rows_check_vtable, next);
    if (!w)
        return NULL;
    w->what = sg_strdup(what);
    if (!w->what) {
        sg_writer_free(&w->base);
        return NULL;
    }
    w->expected = expected;
    w->want = *digest;
    sg_digest_init(&w->got);
    return &w->base;
}
