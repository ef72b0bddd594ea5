/* Parallel ranged downloads (see s3_transfer.h). Each worker fetches whole
 * ranges into its own buffer, so a retried range never pushes a byte twice,
 * and waits for its turn to deliver: the writer sees the object in order and
 * at most `parallel` ranges are held in memory. */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/s3_transfer.h"

typedef struct download {
    sg_s3_client *client;
    const char *key;
    const char *what;
    uint64_t offset, len, part_size;
    uint64_t nparts;
    sg_writer *to;

    pthread_mutex_t lock;
    pthread_cond_t turn;
    uint64_t next_fetch;
    uint64_t next_deliver;
    int failed_rc;
    sg_error failure;
} download;

static int fetch_range(download *d, uint64_t index, sg_buf *into, sg_error *err)
{
    uint64_t start = d->offset + index * d->part_size;
    uint64_t want =
        d->len - index * d->part_size < d->part_size ? d->len - index * d->part_size : d->part_size;
    sg_s3_request req = {.method = "GET",
                         .key = d->key,
                         .range_offset = start,
                         .range_len = want,
                         .response = into,
                         .missing_ok = true};
    sg_s3_response resp;
    int rc;
    if ((rc = sg_s3_perform(d->client, &req, &resp, err)) < 0) {
        /* Asking past the end of an object is a range the server cannot
         * satisfy: the object is shorter than whoever asked believed. */
        if (resp.status == 416)
            return sg_error_set(err, SG_E_CORRUPT,
                                "%s is shorter than expected: it ends before "
                                "byte %" PRIu64,
                                d->what, start);
        return rc;
    }
    if (into->len != want)
        return sg_error_set(err, SG_E_CORRUPT,
                            "%s is shorter than expected: %" PRIu64 " bytes, %" PRIu64 " needed",
                            d->what, resp.object_size, d->offset + d->len);
    return 0;
}

static void fail(download *d, int rc, const sg_error *err)
{
    if (!d->failed_rc) {
        d->failed_rc = rc;
        d->failure = *err;
    }
    pthread_cond_broadcast(&d->turn);
}

static void *range_worker(void *arg)
{
    download *d = arg;
    sg_buf buf = {0};
    pthread_mutex_lock(&d->lock);
    while (!d->failed_rc && d->next_fetch < d->nparts) {
        uint64_t index = d->next_fetch++;
        sg_error err = {0};
        int rc;
        pthread_mutex_unlock(&d->lock);
        rc = fetch_range(d, index, &buf, &err);
        pthread_mutex_lock(&d->lock);
        if (rc < 0) {
            fail(d, rc, &err);
            break;
        }
        while (!d->failed_rc && d->next_deliver != index)
            pthread_cond_wait(&d->turn, &d->lock);
        if (d->failed_rc)
            break;
        /* Only the worker whose turn it is gets here, so the writer is never
         * called from two threads at once. */
        pthread_mutex_unlock(&d->lock);
        rc = sg_writer_write(d->to, buf.data, buf.len, &err);
        pthread_mutex_lock(&d->lock);
        if (rc < 0) {
            fail(d, rc, &err);
            break;
        }
        d->next_deliver++;
        pthread_cond_broadcast(&d->turn);
    }
    pthread_mutex_unlock(&d->lock);
    sg_buf_free(&buf);
    return NULL;
}

static int object_size(download *d, uint64_t *size, sg_error *err)
{
    sg_s3_request req = {.method = "HEAD", .key = d->key, .missing_ok = true};
    sg_s3_response resp;
    int rc = sg_s3_perform(d->client, &req, &resp, err);
    *size = resp.content_length;
    return rc;
}

int sg_s3_download(sg_s3_client *client, const char *key, uint64_t offset, uint64_t len,
                   uint64_t part_size, int parallel, sg_writer *to, sg_error *err)
{
    download d = {.client = client,
                  .key = key,
                  .offset = offset,
                  .len = len,
                  .part_size = part_size,
                  .to = to};
    pthread_t *threads = NULL;
    char *what = sg_s3_client_describe(client, key);
    int nthreads = 0, rc = 0;

    if (!what)
        return sg_error_set(err, SG_E_NOMEM, "out of memory (reading %s)", key);
    d.what = what;
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.turn, NULL);
    /* Without a length, the size comes first; a zero length still proves
     * the object exists, as reading a file would. */
    if (len == UINT64_MAX || len == 0) {
        uint64_t size;
        if ((rc = object_size(&d, &size, err)) < 0)
            goto done;
        if (offset > size) {
            rc = sg_error_set(err, SG_E_CORRUPT,
                              "%s is shorter than expected: %" PRIu64 " bytes, %" PRIu64 " needed",
                              what, size, offset);
            goto done;
        }
        d.len = len = len == 0 ? 0 : size - offset;
    }
    if (len == 0)
        goto done;
    d.nparts = (len + part_size - 1) / part_size;
    if (d.nparts == 1 || parallel <= 1) {
        range_worker(&d);
    } else {
        int want = (uint64_t)parallel < d.nparts ? parallel : (int)d.nparts;
        if (!(threads = sg_calloc((size_t)want, sizeof(*threads)))) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory (reading %s)", what);
            goto done;
        }
        for (; nthreads < want; nthreads++)
            if (pthread_create(&threads[nthreads], NULL, range_worker, &d) != 0)
                break;
        /* Fewer threads than asked is slower, not wrong; none at all still
         * works on this thread. */
        if (nthreads == 0)
            range_worker(&d);
        for (int i = 0; i < nthreads; i++)
            pthread_join(threads[i], NULL);
    }
    if (d.failed_rc) {
        *err = d.failure;
        rc = d.failed_rc;
    }
done:
    pthread_mutex_destroy(&d.lock);
    pthread_cond_destroy(&d.turn);
    free(threads);
    free(what);
    return rc;
}
