/* The S3 XML documents the s3 store reads and writes: error documents,
 * ListObjectsV2 pages, the upload id of a new multipart upload, the answer to
 * CompleteMultipartUpload, and that request's body. Parsing goes through
 * expat: elements are matched by local name (with or without a namespace or
 * prefix) and by position, unknown elements are ignored, a document type
 * declaration is refused, and every value is bounded. */
#ifndef SG_COMMON_S3_XML_H
#define SG_COMMON_S3_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"

/* Longest object key S3 allows, in bytes of UTF-8. */
#define SG_S3_KEY_MAX 1024
/* Longest continuation token or upload id accepted. Both are opaque; AWS sends
 * a few hundred bytes, other servers at most an encoded key. */
#define SG_S3_TOKEN_MAX 4096

/* An S3 error document: <Error><Code/><Message/><RequestId/>...</Error>.
 * Longer values are cut, at a UTF-8 character boundary, to fit. */
typedef struct sg_s3_error_doc {
    char code[64];
    char message[512];
    char request_id[128];
} sg_s3_error_doc;

/* Fills *out and returns 0 when body is an S3 <Error> document with a Code;
 * otherwise zeroes *out and returns SG_E_FORMAT (an HTML page from a load
 * balancer, an empty or truncated body, not XML), or SG_E_NOMEM. There is no
 * sg_error: the caller falls back to the HTTP status. */
int sg_s3_xml_parse_error(sg_s3_error_doc *out, const char *body, size_t len);

typedef struct sg_s3_listed {
    char *key;
    uint64_t size;
} sg_s3_listed;

/* One page of a ListObjectsV2 listing, in the server's order. next_token is
 * set when truncated is true and NULL otherwise. A zeroed page is empty. */
typedef struct sg_s3_list_page {
    sg_s3_listed *objects;
    size_t count;
    bool truncated;
    char *next_token;
} sg_s3_list_page;

/* Parses a ListObjectsV2 answer (ListBucketResult): the Key and Size of each
 * Contents, IsTruncated and NextContinuationToken; CommonPrefixes and the rest
 * are ignored. *out must be empty and is left empty on failure. An <Error>
 * document gives SG_E_STORE with its code and message; anything malformed or
 * out of bounds gives SG_E_FORMAT naming what is wrong. */
int sg_s3_xml_parse_list(sg_s3_list_page *out, const char *body, size_t len, sg_error *err);

/* Frees what a page holds and leaves it zeroed; NULL is a no-op. */
void sg_s3_list_page_clear(sg_s3_list_page *page);

/* Parses the answer to CreateMultipartUpload
 * (InitiateMultipartUploadResult/UploadId) into a new string for free().
 * *upload_id is NULL on failure; errors as for sg_s3_xml_parse_list. */
int sg_s3_xml_parse_upload_id(char **upload_id, const char *body, size_t len, sg_error *err);

/* Parses the 200 answer to CompleteMultipartUpload, which is either a
 * CompleteMultipartUploadResult (returns 0) or, when assembly fails late, an
 * <Error> document: then returns SG_E_STORE with the error's code and message
 * in err and, when error_doc is not NULL, the document in *error_doc so the
 * caller can retry InternalError or SlowDown. *error_doc is zeroed otherwise.
 * The body may start with the whitespace S3 sends to keep the connection
 * open while it works. */
int sg_s3_xml_parse_complete(sg_s3_error_doc *error_doc, const char *body, size_t len,
                             sg_error *err);

/* One uploaded part: its number (1 to 10000), the ETag the server returned
 * for it, quotes included, and its base64 SHA-256 checksum or NULL. */
typedef struct sg_s3_part_ref {
    int number;
    const char *etag;
    const char *checksum_sha256;
} sg_s3_part_ref;

/* Appends the CompleteMultipartUpload request body for parts, which must be
 * in ascending order of number, to *out, escaping values for XML. On failure
 * *out is as it was. */
int sg_s3_xml_complete_body(sg_buf *out, const sg_s3_part_ref *parts, size_t count, sg_error *err);

#endif
