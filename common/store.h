/* Object store: where snapshots live. One interface, a backend per URL scheme
 * (file:// now; s3:// behind the same table). Keys are relative paths
 * ("shards/a/snapshots/ID/manifest"). An object appears only once it is
 * completely written. */
#ifndef SG_COMMON_STORE_H
#define SG_COMMON_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/options.h"
#include "common/writer.h"

typedef struct sg_store sg_store;

/* How to reach a store: its URL and the settings of the backend the URL
 * names. A zero field takes its default; for S3 the defaults come from the
 * AWS environment variables users already have (see store_s3.c). */
typedef struct sg_store_config {
    const char *url;
    const char *s3_endpoint; /* default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then AWS */
    const char *s3_region;   /* default: AWS_REGION, AWS_DEFAULT_REGION, then us-east-1 */
    bool s3_path_style;      /* bucket in the path, not the host name */
    bool s3_insecure;        /* do not verify TLS certificates */
    const char *s3_ca_file;  /* extra CA certificates (PEM) */
    int s3_parallel;         /* requests in flight per object (default 4) */
    uint64_t s3_part_size;   /* multipart part and ranged-read size (default 16 MiB) */
    int s3_timeout;          /* seconds a request may go without progress (default 60) */
    int s3_retry_time;       /* seconds one request may spend retrying (default 300) */
} sg_store_config;

/* The "--store URL" and "--s3-*" options, for commands that open a store;
 * offsets are into sg_store_config (include with SG_OPTIONS_INCLUDE). */
extern const sg_option sg_store_options[];

/* Opens a store: "file:///abs/dir", "file://relative/dir" or
 * "s3://BUCKET[/PREFIX]". A file store's directory need not exist yet (put
 * creates it); an S3 store makes no request until it is used. Unknown
 * schemes are SG_E_USAGE. */
int sg_store_open_config(sg_store **out, const sg_store_config *config, sg_error *err);

/* sg_store_open_config with every setting at its default. */
int sg_store_open(sg_store **out, const char *url, sg_error *err);
void sg_store_free(sg_store *store);
const char *sg_store_url(const sg_store *store);

/* A writer that creates object `key`: the object appears atomically when the
 * writer closes successfully; freeing it unclosed leaves nothing behind. The
 * writer must be freed before the store. */
int sg_store_put_writer(sg_writer **out, sg_store *store, const char *key, sg_error *err);

/* Writes a whole object from memory. */
int sg_store_put(sg_store *store, const char *key, const void *data, size_t len, sg_error *err);

/* Pushes len bytes of object `key` starting at offset into `to` (not closed,
 * not owned). len UINT64_MAX reads to the end. Reading past the end of the
 * object is SG_E_CORRUPT (the object is shorter than the manifest says); a
 * missing object is SG_E_NOT_FOUND. */
int sg_store_read(sg_store *store, const char *key, uint64_t offset, uint64_t len, sg_writer *to,
                  sg_error *err);

/* Reads a range (or the whole object, len UINT64_MAX) into out (appended). */
int sg_store_get(sg_store *store, const char *key, uint64_t offset, uint64_t len, sg_buf *out,
                 sg_error *err);

/* Size of an object; SG_E_NOT_FOUND if missing. */
int sg_store_size(sg_store *store, const char *key, uint64_t *size, sg_error *err);

/* Calls fn for every object whose key starts with prefix, in key order.
 * fn returning non-zero stops the listing and is returned. */
typedef int (*sg_store_list_fn)(void *ctx, const char *key, uint64_t size);
int sg_store_list(sg_store *store, const char *prefix, sg_store_list_fn fn, void *ctx,
                  sg_error *err);

/* Deletes an object; a missing object is not an error. */
int sg_store_delete(sg_store *store, const char *key, sg_error *err);

#endif
