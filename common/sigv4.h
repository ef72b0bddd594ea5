/* AWS Signature Version 4 for S3 requests: canonical request, string to
 * sign, signing key, Authorization header. Our own signer rather than
 * libcurl's CURLOPT_AWS_SIGV4 because 7.88's neither sorts nor encodes
 * query parameters the way S3 checks them, nor signs the session token;
 * keeping it here also makes it testable against AWS's published examples.
 * https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html */
#ifndef SG_COMMON_SIGV4_H
#define SG_COMMON_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/sha256.h"

/* "20130524T000000Z" and its NUL. */
#define SG_AMZ_DATE_LEN 17

/* A header to sign and send. Names are lowercase; values are sent as given
 * and signed with surrounding blanks trimmed and inner runs folded. */
typedef struct sg_header {
    const char *name;
    const char *value;
} sg_header;

/* What the signature covers. uri and query are already in canonical form
 * (sg_uri_encode, sg_sigv4_query); headers must include "host" and
 * "x-amz-date", and "x-amz-content-sha256" for S3, in any order. */
typedef struct sg_sigv4_request {
    const char *method;
    const char *uri;
    const char *query;
    const sg_header *headers;
    size_t nheaders;
    const char *payload_sha256; /* hex, or "UNSIGNED-PAYLOAD" */
    const char *amz_date;       /* the x-amz-date value */
} sg_sigv4_request;

typedef struct sg_sigv4_credentials {
    const char *access_key;
    const char *secret_key;
    const char *region;
    const char *service; /* "s3" */
} sg_sigv4_credentials;

/* Appends the Authorization header's value ("AWS4-HMAC-SHA256
 * Credential=..., SignedHeaders=..., Signature=...") to out. SG_E_USAGE for
 * a header name that is not lowercase or repeats; SG_E_NOMEM. */
int sg_sigv4_authorization(sg_buf *out, const sg_sigv4_request *req,
                           const sg_sigv4_credentials *creds, sg_error *err);

/* Percent-encodes s as SigV4 wants: every byte but A-Z a-z 0-9 - . _ ~ (and
 * '/' when keep_slash) as %XX with upper-case hex. Appends to out. */
int sg_uri_encode(sg_buf *out, const char *s, int keep_slash, sg_error *err);

/* A query parameter before encoding; value NULL for a bare "?uploads". */
typedef struct sg_query_param {
    const char *name;
    const char *value;
} sg_query_param;

/* Appends the canonical query string: names and values encoded, sorted by
 * name then value, "name=value" joined by '&' (a bare name gets "name=").
 * The same string is sent, so what is signed is what the server sees. */
int sg_sigv4_query(sg_buf *out, const sg_query_param *params, size_t count, sg_error *err);

/* The x-amz-date for a Unix time: "YYYYMMDDTHHMMSSZ". */
void sg_amz_date(char out[SG_AMZ_DATE_LEN], int64_t unix_time);

#endif
