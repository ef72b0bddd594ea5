/* The multipart upload writer (see s3_transfer.h). */
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/s3_transfer.h"
#include "common/writer_impl.h"

/* A part handed to the workers. */
typedef struct part_job {
    struct part_job *next;
    int number;
    sg_buf data;
} part_job;

/* What CompleteMultipartUpload needs of an acknowledged part. */
typedef struct part_record {
    char etag[130];
    char checksum[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
} part_record;

typedef struct upload_writer {
    sg_writer base;
    sg_s3_client *client;
    char *key;
    char *what; /* s3://bucket/key, for messages */
    uint64_t part_size;
    int parallel;
    sg_buf current; /* the part being filled */
    char *upload_id;
    int parts_started;
    uint64_t total;
    bool completed;
    /* A whole PUT or a CompleteMultipartUpload was sent: the object may
     * exist even though the answer said otherwise or never came. */
    bool maybe_created;

    pthread_mutex_t lock;
    pthread_cond_t changed;
    part_job *queue_head, *queue_tail;
    int in_flight;        /* queued or being sent */
    part_job *spare;      /* finished jobs whose buffers are reused */
    part_record *records; /* [number - 1] */
    pthread_t *threads;
    int nthreads;
    bool stopping;
    int failed_rc;
    sg_error failure;
} upload_writer;

/* ---- workers ---- */

static int send_part(upload_writer *u, part_job *job, part_record *record, sg_error *err)
{
    char number[16];
    uint8_t digest[32];
    sg_query_param query[] = {{"partNumber", number}, {"uploadId", u->upload_id}};
    sg_s3_response resp;
    sg_s3_request req = {.method = "PUT",
                         .key = u->key,
                         .query = query,
                         .nquery = 2,
                         .body = job->data.data,
                         .body_len = job->data.len,
                         .body_sha256 = digest,
                         .send_checksum = true};
    int rc;
    snprintf(number, sizeof(number), "%d", job->number);
    /* Hashed once here, in parallel with the other parts: the same digest
     * signs every attempt and is the checksum the server verifies. */
    sg_sha256(digest, job->data.data ? (const void *)job->data.data : "", job->data.len);
    if ((rc = sg_s3_perform(u->client, &req, &resp, err)) < 0) {
        sg_error_prefix(err, "part %d of %s", job->number, u->what);
        return rc;
    }
    if (!resp.etag[0])
        return sg_error_set(err, SG_E_STORE, "cannot write %s: the server sent no ETag for part %d",
                            u->what, job->number);
    snprintf(record->etag, sizeof(record->etag), "%s", resp.etag);
    sodium_bin2base64(record->checksum, sizeof(record->checksum), digest, 32,
                      sodium_base64_VARIANT_ORIGINAL);
    return 0;
}

static void *part_worker(void *arg)
{
    upload_writer *u = arg;
    pthread_mutex_lock(&u->lock);
    for (;;) {
        part_job *job;
        part_record record;
        sg_error err = {0};
        int rc = 0;
        memset(&record, 0, sizeof(record));
        while (!u->queue_head && !u->stopping)
            pthread_cond_wait(&u->changed, &u->lock);
        if (!u->queue_head)
            break;
        job = u->queue_head;
        u->queue_head = job->next;
        if (!u->queue_head)
            u->queue_tail = NULL;
        /* Once one part has failed the upload is lost: the rest are dropped. */
        if (!u->failed_rc) {
            pthread_mutex_unlock(&u->lock);
            rc = send_part(u, job, &record, &err);
            pthread_mutex_lock(&u->lock);
        }
        if (rc < 0 && !u->failed_rc) {
            u->failed_rc = rc;
            u->failure = err;
        } else if (rc == 0 && !u->failed_rc) {
            u->records[job->number - 1] = record;
        }
        sg_buf_reset(&job->data);
        job->next = u->spare;
        u->spare = job;
        u->in_flight--;
        pthread_cond_broadcast(&u->changed);
    }
    pthread_mutex_unlock(&u->lock);
    return NULL;
}

static void stop_workers(upload_writer *u)
{
    pthread_mutex_lock(&u->lock);
    u->stopping = true;
    pthread_cond_broadcast(&u->changed);
    pthread_mutex_unlock(&u->lock);
    for (int i = 0; i < u->nthreads; i++)
        pthread_join(u->threads[i], NULL);
    u->nthreads = 0;
}

/* ---- the writer ---- */

static int fail_from_workers(upload_writer *u, sg_error *err)
{
    *err = u->failure;
    return u->failed_rc;
}

static int start_upload(upload_writer *u, sg_error *err)
{
    sg_query_param query[] = {{"uploads", NULL}};
    sg_header headers[] = {{"x-amz-checksum-algorithm", "SHA256"}};
    sg_s3_request req = {.method = "POST",
                         .key = u->key,
                         .query = query,
                         .nquery = 1,
                         .headers = headers,
                         .nheaders = 1};
    sg_buf answer = {0};
    int rc;
    req.response = &answer;
    if ((rc = sg_s3_perform(u->client, &req, NULL, err)) < 0 ||
        (rc = sg_s3_xml_parse_upload_id(&u->upload_id, (const char *)answer.data, answer.len,
                                        err)) < 0)
        goto done;
    if (!(u->records = sg_calloc(SG_S3_MAX_PARTS, sizeof(*u->records))) ||
        !(u->threads = sg_calloc((size_t)u->parallel, sizeof(*u->threads)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (uploading %s)", u->what);
        goto done;
    }
    for (int i = 0; i < u->parallel; i++) {
        if (pthread_create(&u->threads[i], NULL, part_worker, u) != 0) {
            rc = sg_error_set(err, SG_E_INTERNAL, "cannot start an upload thread for %s", u->what);
            goto done;
        }
        u->nthreads++;
    }
done:
    sg_buf_free(&answer);
    return rc;
}

/* Queues the full (or last) part, waiting while `parallel` parts are in
 * flight: that wait is what bounds memory. */
static int submit_part(upload_writer *u, sg_error *err)
{
    part_job *job;
    int rc = 0;
    if (!u->upload_id && (rc = start_upload(u, err)) < 0)
        return rc;
    if (u->parts_started >= SG_S3_MAX_PARTS) {
        sg_error_set(err, SG_E_STORE,
                     "cannot write %s: it needs more than %d parts of %" PRIu64 " bytes", u->what,
                     SG_S3_MAX_PARTS, u->part_size);
        sg_error_hint(err, "raise --s3-part-size");
        return SG_E_STORE;
    }
    pthread_mutex_lock(&u->lock);
    while (u->in_flight >= u->parallel && !u->failed_rc)
        pthread_cond_wait(&u->changed, &u->lock);
    if (u->failed_rc) {
        rc = fail_from_workers(u, err);
        goto done;
    }
    if ((job = u->spare)) {
        u->spare = job->next;
    } else if (!(job = sg_calloc(1, sizeof(*job)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (uploading %s)", u->what);
        goto done;
    }
    /* The filled buffer moves to the job; the job's old buffer (empty, with
     * its capacity) becomes the one to fill next. */
    {
        sg_buf filled = u->current;
        u->current = job->data;
        job->data = filled;
    }
    job->number = ++u->parts_started;
    job->next = NULL;
    if (u->queue_tail)
        u->queue_tail->next = job;
    else
        u->queue_head = job;
    u->queue_tail = job;
    u->in_flight++;
    pthread_cond_broadcast(&u->changed);
done:
    pthread_mutex_unlock(&u->lock);
    return rc;
}

static int upload_write(sg_writer *base, const void *data, size_t len, sg_error *err)
{
    upload_writer *u = (upload_writer *)base;
    const uint8_t *p = data;
    int rc;
    while (len) {
        size_t room, take;
        if (u->current.cap < u->part_size &&
            (rc = sg_buf_reserve(&u->current, (size_t)u->part_size - u->current.len, err)) < 0)
            return rc;
        room = (size_t)u->part_size - u->current.len;
        take = len < room ? len : room;
        memcpy(u->current.data + u->current.len, p, take);
        u->current.len += take;
        u->total += take;
        p += take;
        len -= take;
        if (u->current.len == u->part_size && (rc = submit_part(u, err)) < 0)
            return rc;
    }
    return 0;
}

static int put_whole(upload_writer *u, sg_error *err)
{
    sg_s3_request req = {.method = "PUT",
                         .key = u->key,
                         .body = u->current.data,
                         .body_len = u->current.len,
                         .send_checksum = true};
    u->maybe_created = true;
    return sg_s3_perform(u->client, &req, NULL, err);
}

/* A retried CompleteMultipartUpload whose first answer was lost finds the
 * upload gone (NoSuchUpload) although the object was assembled: the object
 * having the written size tells the two cases apart. */
static bool object_is_complete(upload_writer *u)
{
    sg_s3_request req = {.method = "HEAD", .key = u->key};
    sg_s3_response resp;
    sg_error ignored;
    return sg_s3_perform(u->client, &req, &resp, &ignored) == 0 && resp.content_length == u->total;
}

static int complete_upload(upload_writer *u, sg_error *err)
{
    sg_query_param query[] = {{"uploadId", u->upload_id}};
    sg_s3_part_ref *refs = NULL;
    sg_buf body = {0}, answer = {0};
    sg_s3_request req = {.method = "POST", .key = u->key, .query = query, .nquery = 1};
    sg_s3_response resp;
    int rc = 0;

    if (!(refs = sg_calloc((size_t)u->parts_started, sizeof(*refs)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (completing %s)", u->what);
        goto done;
    }
    for (int i = 0; i < u->parts_started; i++)
        refs[i] = (sg_s3_part_ref){i + 1, u->records[i].etag, u->records[i].checksum};
    if ((rc = sg_s3_xml_complete_body(&body, refs, (size_t)u->parts_started, err)) < 0)
        goto done;
    req.body = body.data;
    req.body_len = body.len;
    req.response = &answer;
    u->maybe_created = true;
    /* S3 may answer 200 and then report a failed assembly in the body; such
     * an InternalError is retried like a 500. */
    for (unsigned attempt = 0;; attempt++) {
        sg_s3_error_doc doc;
        if ((rc = sg_s3_perform(u->client, &req, &resp, err)) < 0) {
            if (resp.attempts > 1 && strcmp(resp.error_code, "NoSuchUpload") == 0 &&
                object_is_complete(u))
                rc = 0;
            goto done;
        }
        rc = sg_s3_xml_parse_complete(&doc, (const char *)answer.data, answer.len, err);
        /* Judged by its code alone: the status said 200. */
        if (rc == 0 || attempt >= 4 || !doc.code[0] ||
            sg_s3_classify(0, 400, doc.code) != SG_S3_RETRY)
            break;
        sg_log_debug("completing %s: %s; retrying", u->what, doc.code);
        sg_s3_client_backoff(u->client, attempt);
    }
    if (rc < 0)
        sg_error_prefix(err, "cannot complete %s", u->what);
done:
    free(refs);
    sg_buf_free(&body);
    sg_buf_free(&answer);
    return rc;
}

static int upload_close(sg_writer *base, sg_error *err)
{
    upload_writer *u = (upload_writer *)base;
    int rc;
    if (!u->upload_id) {
        if ((rc = put_whole(u, err)) < 0)
            return rc;
        u->completed = true;
        return 0;
    }
    if (u->current.len && (rc = submit_part(u, err)) < 0)
        return rc;
    pthread_mutex_lock(&u->lock);
    while (u->in_flight > 0)
        pthread_cond_wait(&u->changed, &u->lock);
    pthread_mutex_unlock(&u->lock);
    stop_workers(u);
    if (u->failed_rc)
        return fail_from_workers(u, err);
    if ((rc = complete_upload(u, err)) < 0)
        return rc;
    u->completed = true;
    return 0;
}

static void abort_upload(upload_writer *u)
{
    sg_query_param query[] = {{"uploadId", u->upload_id}};
    sg_s3_request req = {.method = "DELETE", .key = u->key, .query = query, .nquery = 1};
    sg_s3_response resp;
    sg_error err = {0};
    if (sg_s3_perform(u->client, &req, &resp, &err) < 0 && resp.status != 404)
        sg_log_warning("could not abort the upload of %s (upload id %s): %s; its parts stay in "
                       "the bucket until a lifecycle rule for incomplete multipart uploads "
                       "removes them",
                       u->what, u->upload_id, err.message);
}

/* The writer failed after the object may have been created (an interrupted
 * or failed answer to the request that creates it): remove it, since an
 * object must appear only when its writer closes successfully. */
static void remove_object(upload_writer *u)
{
    sg_s3_request req = {.method = "DELETE", .key = u->key};
    sg_error err = {0};
    if (sg_s3_perform(u->client, &req, NULL, &err) < 0)
        sg_log_warning("could not remove the unfinished %s: %s", u->what, err.message);
}

static void upload_destroy(sg_writer *base)
{
    upload_writer *u = (upload_writer *)base;
    if (u->nthreads) {
        /* Unsent parts are dropped: the upload is being abandoned. */
        pthread_mutex_lock(&u->lock);
        if (!u->failed_rc)
            u->failed_rc = SG_E_INTERRUPTED;
        pthread_mutex_unlock(&u->lock);
        stop_workers(u);
    }
    if (u->upload_id && !u->completed)
        abort_upload(u);
    if (u->maybe_created && !u->completed)
        remove_object(u);
    for (part_job *j = u->queue_head, *next; j; j = next) {
        next = j->next;
        sg_buf_free(&j->data);
        free(j);
    }
    for (part_job *j = u->spare, *next; j; j = next) {
        next = j->next;
        sg_buf_free(&j->data);
        free(j);
    }
    sg_buf_free(&u->current);
    pthread_mutex_destroy(&u->lock);
    pthread_cond_destroy(&u->changed);
    free(u->records);
    free(u->threads);
    free(u->upload_id);
    free(u->key);
    free(u->what);
}

static const sg_writer_vtable upload_vt = {"s3 upload", upload_write, upload_close, upload_destroy};

int sg_s3_upload_writer_new(sg_writer **out, sg_s3_client *client, const char *key,
                            uint64_t part_size, int parallel, sg_error *err)
{
    upload_writer *u;
    *out = NULL;
    if (part_size == 0 || part_size > SG_S3_MAX_PART_SIZE || parallel < 1)
        return sg_error_set(err, SG_E_USAGE, "invalid S3 part size %" PRIu64 " or parallelism %d",
                            part_size, parallel);
    if (!(u = sg_writer_alloc(sizeof(*u), &upload_vt, NULL)))
        return sg_error_set(err, SG_E_NOMEM, "out of memory (uploading %s)", key);
    pthread_mutex_init(&u->lock, NULL);
    pthread_cond_init(&u->changed, NULL);
    u->client = client;
    u->part_size = part_size;
    u->parallel = parallel;
    u->key = sg_strdup(key);
    u->what = sg_s3_client_describe(client, key);
    if (!u->key || !u->what) {
        sg_writer_free(&u->base);
        return sg_error_set(err, SG_E_NOMEM, "out of memory (uploading %s)", key);
    }
    *out = &u->base;
    return 0;
}
