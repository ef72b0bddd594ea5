/* For store backends: the table of functions behind sg_store. Adding a backend
 * is adding a file with one of these and a line in store.c.
 *
 * open gets the configuration (config->url is the whole URL) and the part of
 * the URL after "scheme://"; it allocates the
 * backend's struct (sg_store embedded first) and sets vt and url (an sg_strdup
 * copy). destroy releases the backend's own resources; sg_store_free then
 * frees url and the struct. store.c checks every key and prefix before a
 * backend sees it, so backends can rely on keys being well-formed relative
 * paths. */
#ifndef SG_COMMON_STORE_IMPL_H
#define SG_COMMON_STORE_IMPL_H

#include "common/retry.h"
#include "common/store.h"

typedef struct sg_store_vtable {
    const char *scheme; /* "file" */
    int (*open)(sg_store **out, const sg_store_config *config, const char *rest, sg_error *err);
    int (*put_writer)(sg_writer **out, sg_store *store, const char *key, sg_error *err);
    int (*read)(sg_store *store, const char *key, uint64_t offset, uint64_t len, sg_writer *to,
                sg_error *err);
    int (*size)(sg_store *store, const char *key, uint64_t *size, sg_error *err);
    int (*list)(sg_store *store, const char *prefix, sg_store_list_fn fn, void *ctx, sg_error *err);
    int (*remove)(sg_store *store, const char *key, sg_error *err);
    void (*destroy)(sg_store *store);
} sg_store_vtable;

struct sg_store {
    const sg_store_vtable *vt;
    char *url;
};

extern const sg_store_vtable sg_store_file_vtable;
extern const sg_store_vtable sg_store_s3_vtable;

/* Tests only: the size of the buffer a file store reads objects through
 * (default 1 MiB), so that tests can hit every boundary with a few bytes. */
void sg_store_file_set_read_buffer(sg_store *store, size_t size);

/* Tests only: how an s3 store retries, so fault tests run in seconds. */
void sg_store_s3_set_retry(sg_store *store, const sg_retry_policy *policy);

#endif
