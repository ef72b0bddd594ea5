/* The s3:// store: "s3://BUCKET[/PREFIX]" on Amazon S3 or any S3-compatible
 * server. Objects are written by multipart upload (they appear only when
 * complete) and read by parallel ranged GETs; listings page through
 * ListObjectsV2. Keys are PREFIX/key. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/s3_client.h"
#include "common/s3_transfer.h"
#include "common/s3_xml.h"
#include "common/store_impl.h"

#define DEFAULT_PART_SIZE (16ULL << 20)
#define DEFAULT_PARALLEL 4

typedef struct s3_store {
    sg_store base;
    sg_s3_client *client;
    char *prefix; /* "" or "backups/fleet-a/" (with the slash) */
    uint64_t part_size;
    int parallel;
} s3_store;

/* Bucket names: 3 to 63 characters of letters, digits, dots, hyphens and
 * underscores (the last two for older buckets and other servers). Anything
 * else cannot be in a URL path unencoded and is surely a typo. */
static bool bucket_name_ok(const char *name, size_t len)
{
    if (len < 3 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

static int s3_open(sg_store **out, const sg_store_config *config, const char *rest, sg_error *err)
{
    s3_store *s = NULL;
    size_t bucket_len = strcspn(rest, "/");
    const char *prefix = rest[bucket_len] == '/' ? rest + bucket_len + 1 : "";
    size_t prefix_len = strlen(prefix);
    char *bucket = NULL;
    int rc = 0;

    while (prefix_len && prefix[prefix_len - 1] == '/')
        prefix_len--;
    if (!bucket_name_ok(rest, bucket_len)) {
        sg_error_set(err, SG_E_USAGE, "store URL \"%s\" has no valid bucket name", config->url);
        sg_error_hint(err, "use s3://BUCKET or s3://BUCKET/PREFIX; bucket names are 3 to 63 "
                           "letters, digits, dots and hyphens");
        return SG_E_USAGE;
    }
    /* The prefix becomes part of every key, so it obeys the key rules. */
    for (size_t i = 0; i < prefix_len;) {
        size_t comp = strcspn(prefix + i, "/");
        if (comp > prefix_len - i)
            comp = prefix_len - i;
        if (comp == 0 || (comp == 1 && prefix[i] == '.') ||
            (comp == 2 && prefix[i] == '.' && prefix[i + 1] == '.')) {
            sg_error_set(err, SG_E_USAGE,
                         "store URL \"%s\" has an empty, \".\" or \"..\" "
                         "path component",
                         config->url);
            return SG_E_USAGE;
        }
        i += comp + 1;
    }
    if (config->s3_part_size && config->s3_part_size > SG_S3_MAX_PART_SIZE) {
        sg_error_set(err, SG_E_USAGE, "--s3-part-size is larger than S3's limit of 5 GiB");
        return SG_E_USAGE;
    }

    if (!(s = sg_calloc(1, sizeof(*s))) || !(bucket = sg_strndup(rest, bucket_len)) ||
        !(s->prefix = prefix_len ? sg_asprintf("%.*s/", (int)prefix_len, prefix) : sg_strdup("")) ||
        !(s->base.url = sg_strdup(config->url))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (opening store \"%s\")", config->url);
        goto done;
    }
    s->base.vt = &sg_store_s3_vtable;
    s->part_size = config->s3_part_size ? config->s3_part_size : DEFAULT_PART_SIZE;
    s->parallel = config->s3_parallel > 0 ? config->s3_parallel : DEFAULT_PARALLEL;
    if ((rc = sg_s3_client_new(&s->client, config, bucket, err)) < 0) {
        sg_error_prefix(err, "store \"%s\"", config->url);
        goto done;
    }
    *out = &s->base;
    s = NULL;
done:
    free(bucket);
    if (s)
        sg_store_free(&s->base);
    return rc;
}

static void s3_destroy(sg_store *base)
{
    s3_store *s = (s3_store *)base;
    sg_s3_client_free(s->client);
    free(s->prefix);
}

static char *full_key(const s3_store *s, const char *key, sg_error *err)
{
    char *k = sg_asprintf("%s%s", s->prefix, key);
    if (!k)
        sg_error_set(err, SG_E_NOMEM, "out of memory (store key)");
    return k;
}

static int s3_put_writer(sg_writer **out, sg_store *base, const char *key, sg_error *err)
{
    s3_store *s = (s3_store *)base;
    char *k = full_key(s, key, err);
    int rc;
    if (!k)
        return SG_E_NOMEM;
    rc = sg_s3_upload_writer_new(out, s->client, k, s->part_size, s->parallel, err);
    free(k);
    return rc;
}

static int s3_read(sg_store *base, const char *key, uint64_t offset, uint64_t len, sg_writer *to,
                   sg_error *err)
{
    s3_store *s = (s3_store *)base;
    char *k = full_key(s, key, err);
    int rc;
    if (!k)
        return SG_E_NOMEM;
    rc = sg_s3_download(s->client, k, offset, len, s->part_size, s->parallel, to, err);
    free(k);
    return rc;
}

static int s3_size(sg_store *base, const char *key, uint64_t *size, sg_error *err)
{
    s3_store *s = (s3_store *)base;
    sg_s3_request req = {.method = "HEAD", .missing_ok = true};
    sg_s3_response resp;
    char *k = full_key(s, key, err);
    int rc;
    if (!k)
        return SG_E_NOMEM;
    req.key = k;
    if ((rc = sg_s3_perform(s->client, &req, &resp, err)) == 0)
        *size = resp.content_length;
    free(k);
    return rc;
}

static int s3_list(sg_store *base, const char *prefix, sg_store_list_fn fn, void *ctx,
                   sg_error *err)
{
    s3_store *s = (s3_store *)base;
    char *k = full_key(s, prefix, err);
    sg_buf answer = {0};
    sg_s3_list_page page = {0};
    char *token = NULL;
    size_t strip = strlen(s->prefix);
    int rc = 0;
    if (!k)
        return SG_E_NOMEM;
    do {
        sg_query_param query[3] = {
            {"list-type", "2"}, {"prefix", k}, {"continuation-token", token}};
        sg_s3_request req = {
            .method = "GET", .query = query, .nquery = token ? 3 : 2, .response = &answer};
        if ((rc = sg_s3_perform(s->client, &req, NULL, err)) < 0 ||
            (rc = sg_s3_xml_parse_list(&page, (const char *)answer.data, answer.len, err)) < 0)
            goto done;
        for (size_t i = 0; i < page.count; i++) {
            const char *key = page.objects[i].key;
            /* What another tool put beside ours (a "folder/" marker, a key
             * outside the prefix from a server ignoring it) is not ours. */
            size_t key_len = strlen(key);
            if (key_len <= strip || strncmp(key, k, strlen(k)) != 0 || key[key_len - 1] == '/')
                continue;
            if ((rc = fn(ctx, key + strip, page.objects[i].size)) != 0)
                goto done;
        }
        free(token);
        token = page.next_token;
        page.next_token = NULL;
        sg_s3_list_page_clear(&page);
        if (page.truncated && !token)
            break;
    } while (token);
done:
    sg_s3_list_page_clear(&page);
    sg_buf_free(&answer);
    free(token);
    free(k);
    return rc;
}

static int s3_remove(sg_store *base, const char *key, sg_error *err)
{
    s3_store *s = (s3_store *)base;
    sg_s3_request req = {.method = "DELETE", .missing_ok = true};
    char *k = full_key(s, key, err);
    int rc;
    if (!k)
        return SG_E_NOMEM;
    req.key = k;
    rc = sg_s3_perform(s->client, &req, NULL, err);
    free(k);
    /* Deleting what is already gone is done, as with a file. */
    return rc == SG_E_NOT_FOUND ? 0 : rc;
}

const sg_store_vtable sg_store_s3_vtable = {
    "s3", s3_open, s3_put_writer, s3_read, s3_size, s3_list, s3_remove, s3_destroy,
};

void sg_store_s3_set_retry(sg_store *store, const sg_retry_policy *policy)
{
    sg_s3_client_set_retry(((s3_store *)store)->client, policy);
}
