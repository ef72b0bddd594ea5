/* zstd compression and decompression writers. A chunk is exactly one frame
 * with a content checksum, so the decompressor can tell a complete chunk from
 * a truncated one and catches corruption even without the seal around it. */
#include "common/writer_impl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <zstd.h>

#include "common/mem.h"

typedef struct zstd_writer {
    sg_writer base;
    ZSTD_CCtx *cctx;
    uint8_t *out;
    size_t out_size;
    size_t out_len; /* compressed bytes waiting in out */
} zstd_writer;

/* Runs the compressor over in (possibly empty) with the given directive,
 * passing the output buffer on each time it fills. Returns once all input is
 * consumed and, for flush and end, zstd has nothing left to give. */
static int zstd_run(zstd_writer *w, ZSTD_inBuffer *in, ZSTD_EndDirective mode, sg_error *err)
{
    for (;;) {
        ZSTD_outBuffer out = {w->out, w->out_size, w->out_len};
        size_t remaining = ZSTD_compressStream2(w->cctx, &out, in, mode);
        bool finished;
        int rc;
        if (ZSTD_isError(remaining))
            return sg_error_set(err, SG_E_INTERNAL, "zstd compression failed: %s",
                                ZSTD_getErrorName(remaining));
        w->out_len = out.pos;
        /* Decided before flushing: calling again with ZSTD_e_end after the
         * frame is complete would start another frame. */
        finished = mode == ZSTD_e_continue ? in->pos == in->size : remaining == 0;
        if (w->out_len == w->out_size) {
            if ((rc = sg_writer_write(w->base.next, w->out, w->out_len, err)) < 0)
                return rc;
            w->out_len = 0;
        }
        if (finished)
            return 0;
    }
}

static int zstd_write(sg_writer *base, const void *data, size_t len, sg_error *err)
{
    ZSTD_inBuffer in = {data, len, 0};
    return zstd_run((zstd_writer *)base, &in, ZSTD_e_continue, err);
}

static int zstd_close(sg_writer *base, sg_error *err)
{
    zstd_writer *w = (zstd_writer *)base;
    ZSTD_inBuffer in = {NULL, 0, 0};
    int rc = zstd_run(w, &in, ZSTD_e_end, err);
    if (rc == 0 && w->out_len > 0)
        rc = sg_writer_write(base->next, w->out, w->out_len, err);
    w->out_len = 0;
    return rc;
}

static void zstd_destroy(sg_writer *base)
{
    zstd_writer *w = (zstd_writer *)base;
    ZSTD_freeCCtx(w->cctx);
    free(w->out);
}

static const sg_writer_vtable zstd_vt = {"zstd", zstd_write, zstd_close, zstd_destroy};

sg_writer *sg_zstd_writer_new(sg_writer *next, int level, size_t buffer_size)
{
    zstd_writer *w = sg_writer_alloc(sizeof(*w), &zstd_vt, next);
    if (!w)
        return NULL;
    w->out_size = buffer_size ? buffer_size : ZSTD_CStreamOutSize();
    w->out = sg_malloc(w->out_size);
    w->cctx = ZSTD_createCCtx();
    /* Workers stay at 0: chunks are compressed in parallel by our own
     * threads, and zstd's workers would only add copies and contention. */
    if (!w->out || !w->cctx ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_nbWorkers, 0))) {
        sg_writer_free((sg_writer *)w);
        return NULL;
    }
    return (sg_writer *)w;
}

typedef struct unzstd_writer {
    sg_writer base;
    ZSTD_DCtx *dctx;
    uint8_t *out;
    size_t out_size;
    uint64_t max_output; /* 0: no limit */
    uint64_t produced;
    bool frame_done;
} unzstd_writer;

static int trailing_data(sg_error *err)
{
    return sg_error_set(err, SG_E_CORRUPT,
                        "unexpected data after the end of the compressed stream");
}

static int unzstd_write(sg_writer *base, const void *data, size_t len, sg_error *err)
{
    unzstd_writer *w = (unzstd_writer *)base;
    ZSTD_inBuffer in = {data, len, 0};
    ZSTD_outBuffer out;
    int rc;

    if (w->frame_done)
        return trailing_data(err);
    /* Output can remain inside zstd after the input is used up; a full output
     * buffer is the sign to call again. */
    do {
        size_t ret;
        out = (ZSTD_outBuffer){w->out, w->out_size, 0};
        ret = ZSTD_decompressStream(w->dctx, &out, &in);
        if (ZSTD_isError(ret))
            return sg_error_set(err, SG_E_CORRUPT, "compressed stream is corrupt: %s",
                                ZSTD_getErrorName(ret));
        if (w->max_output && out.pos > w->max_output - w->produced)
            return sg_error_set(err, SG_E_CORRUPT,
                                "compressed stream expands to more than %" PRIu64 " bytes",
                                w->max_output);
        w->produced += out.pos;
        if (out.pos > 0 && (rc = sg_writer_write(base->next, w->out, out.pos, err)) < 0)
            return rc;
        if (ret == 0) {
            w->frame_done = true;
            return in.pos < in.size ? trailing_data(err) : 0;
        }
    } while (in.pos < in.size || out.pos == out.size);
    return 0;
}

static int unzstd_close(sg_writer *base, sg_error *err)
{
    unzstd_writer *w = (unzstd_writer *)base;
    if (!w->frame_done)
        return sg_error_set(err, SG_E_CORRUPT, "compressed stream is truncated");
    return 0;
}

static void unzstd_destroy(sg_writer *base)
{
    unzstd_writer *w = (unzstd_writer *)base;
    ZSTD_freeDCtx(w->dctx);
    free(w->out);
}

static const sg_writer_vtable unzstd_vt = {"zstd decompression", unzstd_write, unzstd_close,
                                           unzstd_destroy};

sg_writer *sg_unzstd_writer_new(sg_writer *next, size_t buffer_size, uint64_t max_output)
{
    unzstd_writer *w = sg_writer_alloc(sizeof(*w), &unzstd_vt, next);
    if (!w)
        return NULL;
    w->out_size = buffer_size ? buffer_size : ZSTD_DStreamOutSize();
    w->max_output = max_output;
    w->out = sg_malloc(w->out_size);
    w->dctx = ZSTD_createDCtx();
    if (!w->out || !w->dctx) {
        sg_writer_free((sg_writer *)w);
        return NULL;
    }
    return (sg_writer *)w;
}
