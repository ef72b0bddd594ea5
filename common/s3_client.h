/* Requests to one S3 bucket: where the bucket is (endpoint, addressing
 * style, region), who asks (the AWS credentials of the environment), how
 * (SigV4, TLS settings, timeouts), and what to do when a request fails
 * (retry with backoff and jitter, or give a message that names the cause).
 * The s3 store (store_s3.c) builds uploads, downloads and listings on it.
 *
 * A client is shared by threads: each request takes an idle libcurl handle
 * from a pool (keeping its connection alive for the next request) and puts
 * it back. Secrets never leave this module: no URL, message or log line
 * holds one. */
#ifndef SG_COMMON_S3_CLIENT_H
#define SG_COMMON_S3_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/retry.h"
#include "common/s3_xml.h"
#include "common/sigv4.h"
#include "common/store.h"

typedef struct sg_s3_client sg_s3_client;

/* A new client for `bucket` with the config's S3 settings, defaults taken
 * from AWS_* environment variables. Fails with SG_E_USAGE naming what is
 * missing or malformed (no credentials, a bad endpoint URL, an unreadable
 * CA file). Makes no request. */
int sg_s3_client_new(sg_s3_client **out, const sg_store_config *config, const char *bucket,
                     sg_error *err);
void sg_s3_client_free(sg_s3_client *client);

/* The endpoint as used ("https://s3.eu-west-1.amazonaws.com"), the region,
 * and whether the bucket goes in the path. */
const char *sg_s3_client_endpoint(const sg_s3_client *client);
const char *sg_s3_client_region(const sg_s3_client *client);
bool sg_s3_client_path_style(const sg_s3_client *client);

/* Tests only: retry faster and fewer times. */
void sg_s3_client_set_retry(sg_s3_client *client, const sg_retry_policy *policy);

typedef struct sg_s3_request {
    const char *method;
    const char *key; /* object key in the bucket; NULL for the bucket itself */
    const sg_query_param *query;
    size_t nquery;
    const void *body; /* sent as is, body_len bytes (PUT, POST) */
    size_t body_len;
    /* The body's SHA-256 when the caller has it already (an uploaded part),
     * so it is computed once for the signature and the checksum header. */
    const uint8_t *body_sha256;
    bool send_checksum;       /* x-amz-checksum-sha256, which the server checks */
    const sg_header *headers; /* more headers to send and sign */
    size_t nheaders;
    uint64_t range_offset; /* with range_len > 0: "Range: bytes=off-(off+len-1)" */
    uint64_t range_len;
    sg_buf *response; /* the body of a 2xx answer (cleared before each attempt) */
    /* 404 gives SG_E_NOT_FOUND without a message of its own: the caller
     * says what was missing. */
    bool missing_ok;
} sg_s3_request;

/* What came back: filled on success, and on failure as far as known (the
 * status and S3 error code of the last attempt), so callers can tell a
 * NoSuchUpload or an InvalidRange apart. */
typedef struct sg_s3_response {
    long status;
    char error_code[64];
    char etag[130];
    uint64_t content_length;
    uint64_t object_size; /* the total of a Content-Range answer, else content_length */
    char request_id[128];
    unsigned attempts;
} sg_s3_response;

/* Performs the request, retrying what may succeed later (connection
 * failures, resets, timeouts, truncated bodies, 5xx, 408, 429, RequestTimeout)
 * with full-jitter backoff, and fails at once on what cannot (403, 404, other
 * 4xx) with a message naming the cause and what to check. resp may be
 * NULL. SG_E_INTERRUPTED when SIGINT/SIGTERM arrives. */
int sg_s3_perform(sg_s3_client *client, const sg_s3_request *req, sg_s3_response *resp,
                  sg_error *err);

/* Waits as the retry policy says before retry number `retry` (0 for the
 * first), for callers that retry a request whose answer was a failure in
 * disguise (a 200 carrying an error document). */
void sg_s3_client_backoff(sg_s3_client *client, unsigned retry);

/* "s3://bucket/key" of a key, for messages; to free. */
char *sg_s3_client_describe(const sg_s3_client *client, const char *key);

/* How a finished attempt is treated. Exposed for the unit tests. */
typedef enum { SG_S3_DONE, SG_S3_RETRY, SG_S3_FAIL } sg_s3_outcome;
sg_s3_outcome sg_s3_classify(int curl_code, long status, const char *error_code);

#endif
