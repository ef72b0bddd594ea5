/* Object store: where snapshots live. One interface, a backend per URL scheme
 * (file:// now; s3:// behind the same table). Keys are relative paths
 * ("shards/a/snapshots/ID/manifest"). An object appears only once it is
 * completely written. */
#ifndef SG_COMMON_STORE_H
#define SG_COMMON_STORE_H

#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/writer.h"

typedef struct sg_store sg_store;

/* Opens a store by URL: "file:///abs/dir" or "file://relative/dir". The
 * directory need not exist yet (put creates it); unknown schemes are
 * SG_E_USAGE. */
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
