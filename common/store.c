/* The store interface: picks a backend by URL scheme, checks keys once for
 * every backend, and builds put and get on the backends' writer and read. */
#include "common/store_impl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

static const sg_store_vtable *const backends[] = {
    &sg_store_file_vtable,
    &sg_store_s3_vtable,
};

#define STORE_OPTION(field) offsetof(sg_store_config, field)
const sg_option sg_store_options[] = {
    {"store", SG_OPT_STRING, STORE_OPTION(url), "URL",
     "the store: file://DIR or s3://BUCKET/PREFIX", 0, 0},
    {"s3-endpoint", SG_OPT_STRING, STORE_OPTION(s3_endpoint), "URL",
     "S3 endpoint (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS)", 0, 0},
    {"s3-region", SG_OPT_STRING, STORE_OPTION(s3_region), "REGION",
     "S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, or us-east-1)", 0, 0},
    {"s3-path-style", SG_OPT_FLAG, STORE_OPTION(s3_path_style), NULL,
     "put the bucket in the URL path, not the host name", 0, 0},
    {"s3-insecure", SG_OPT_FLAG, STORE_OPTION(s3_insecure), NULL,
     "do not verify the S3 server's TLS certificate", 0, 0},
    {"s3-ca-file", SG_OPT_STRING, STORE_OPTION(s3_ca_file), "FILE",
     "also trust the CA certificates in FILE (PEM)", 0, 0},
    {"s3-parallel", SG_OPT_INT, STORE_OPTION(s3_parallel), "N",
     "parts in flight per object (default 4)", 1, 64},
    {"s3-part-size", SG_OPT_SIZE, STORE_OPTION(s3_part_size), "SIZE",
     "multipart part size (default 16MiB)", 0, 0},
    {"s3-timeout", SG_OPT_INT, STORE_OPTION(s3_timeout), "SECONDS",
     "give up on a request that makes no progress for this long (default 60)", 1, 86400},
    {"s3-retry-time", SG_OPT_INT, STORE_OPTION(s3_retry_time), "SECONDS",
     "stop retrying a request after this long (default 300)", 1, 86400},
    {0}};
#undef STORE_OPTION

#define N_BACKENDS (sizeof(backends) / sizeof(backends[0]))

/* Keys become file names and S3 object names: a key must not climb out of the
 * store or name the same object two ways, so "", "/a", "a//b", "a/./b",
 * "a/../b" and "a/" are all refused. */
static const char *key_problem(const char *key, bool prefix)
{
    const char *p = key;
    if (*key == '\0')
        return prefix ? NULL : "it is empty";
    if (*key == '/')
        return "it is an absolute path";
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        /* The last component of a prefix may be partial ("snap"), or empty
         * when the prefix ends with '/'. */
        bool partial = prefix && !slash;
        if (partial)
            break;
        if (len == 0)
            return "it has an empty path component";
        if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return "it has a \".\" or \"..\" path component";
        if (!slash)
            break;
        p = slash + 1;
        if (*p == '\0' && !prefix)
            return "it ends with \"/\"";
    }
    return NULL;
}

static int check_key(const sg_store *store, const char *key, sg_error *err)
{
    const char *problem = key_problem(key, false);
    if (!problem)
        return 0;
    sg_error_set(err, SG_E_USAGE, "invalid object key \"%s\" for store \"%s\": %s", key, store->url,
                 problem);
    sg_error_hint(err, "keys are relative paths such as \"shards/a/snapshots/ID/manifest\"");
    return SG_E_USAGE;
}

int sg_store_open(sg_store **out, const char *url, sg_error *err)
{
    sg_store_config config = {.url = url};
    return sg_store_open_config(out, &config, err);
}

int sg_store_open_config(sg_store **out, const sg_store_config *config, sg_error *err)
{
    const char *url = config->url;
    const char *sep = strstr(url, "://");
    char schemes[256] = "";
    *out = NULL;
    if (sep) {
        size_t scheme_len = (size_t)(sep - url);
        for (size_t i = 0; i < N_BACKENDS; i++) {
            const sg_store_vtable *vt = backends[i];
            if (strlen(vt->scheme) == scheme_len && strncmp(vt->scheme, url, scheme_len) == 0)
                return vt->open(out, config, sep + 3, err);
        }
    }
    for (size_t i = 0; i < N_BACKENDS; i++) {
        size_t used = strlen(schemes);
        snprintf(schemes + used, sizeof(schemes) - used, "%s%s://", i ? ", " : "",
                 backends[i]->scheme);
    }
    sg_error_set(err, SG_E_USAGE, "unsupported store URL \"%s\"", url);
    sg_error_hint(err, "supported schemes: %s", schemes);
    return SG_E_USAGE;
}

void sg_store_free(sg_store *store)
{
    if (!store)
        return;
    if (store->vt->destroy)
        store->vt->destroy(store);
    free(store->url);
    free(store);
}

const char *sg_store_url(const sg_store *store)
{
    return store->url;
}

int sg_store_put_writer(sg_writer **out, sg_store *store, const char *key, sg_error *err)
{
    int rc;
    *out = NULL;
    if ((rc = check_key(store, key, err)) < 0)
        return rc;
    return store->vt->put_writer(out, store, key, err);
}

int sg_store_put(sg_store *store, const char *key, const void *data, size_t len, sg_error *err)
{
    sg_writer *w = NULL;
    int rc;
    if ((rc = sg_store_put_writer(&w, store, key, err)) < 0)
        goto done;
    if ((rc = sg_writer_write(w, data, len, err)) < 0)
        goto done;
    rc = sg_writer_close(w, err);
done:
    sg_writer_free(w);
    return rc;
}

int sg_store_read(sg_store *store, const char *key, uint64_t offset, uint64_t len, sg_writer *to,
                  sg_error *err)
{
    int rc;
    if ((rc = check_key(store, key, err)) < 0)
        return rc;
    return store->vt->read(store, key, offset, len, to, err);
}

int sg_store_get(sg_store *store, const char *key, uint64_t offset, uint64_t len, sg_buf *out,
                 sg_error *err)
{
    size_t old_len = out->len;
    sg_writer *w = sg_buffer_writer_new(out);
    int rc;
    if (!w) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (reading object \"%s\")", key);
        goto done;
    }
    if ((rc = sg_store_read(store, key, offset, len, w, err)) < 0)
        goto done;
    rc = sg_writer_close(w, err);
done:
    /* A failed get leaves out as it was, not holding half an object. */
    if (rc < 0)
        out->len = old_len;
    sg_writer_free(w);
    return rc;
}

int sg_store_size(sg_store *store, const char *key, uint64_t *size, sg_error *err)
{
    int rc;
    if ((rc = check_key(store, key, err)) < 0)
        return rc;
    return store->vt->size(store, key, size, err);
}

int sg_store_list(sg_store *store, const char *prefix, sg_store_list_fn fn, void *ctx,
                  sg_error *err)
{
    const char *problem = key_problem(prefix, true);
    if (problem) {
        sg_error_set(err, SG_E_USAGE, "invalid key prefix \"%s\" for store \"%s\": %s", prefix,
                     store->url, problem);
        return SG_E_USAGE;
    }
    return store->vt->list(store, prefix, fn, ctx, err);
}

int sg_store_delete(sg_store *store, const char *key, sg_error *err)
{
    int rc;
    if ((rc = check_key(store, key, err)) < 0)
        return rc;
    return store->vt->remove(store, key, err);
}
