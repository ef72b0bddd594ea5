/* The S3 client against a scripted HTTP server: how requests are built and
 * signed, how answers are read, what is retried and what fails at once with
 * which message. The same client against a real S3 server is
 * tests/integration/test_s3_store.c. */
#include <check.h>
#include <curl/curl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/s3_client.h"
#include "common/s3_transfer.h"
#include "common/sigv4.h"
#include "common/store_impl.h"
#include "tests/harness/http_fake.h"

#define SECRET "s3cr3t-never-printed"
#define INITIATE                                                                                   \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult "                  \
    "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>bkt</Bucket><Key>k</Key>"           \
    "<UploadId>up-1</UploadId></InitiateMultipartUploadResult>"
#define COMPLETED                                                                                  \
    "<CompleteMultipartUploadResult><ETag>\"abc-3\"</ETag></CompleteMultipartUploadResult>"

static const sg_retry_policy fast_retry = {1, 5, 20000, 4};

static sg_store *open_store(sgt_http_fake *fake, uint64_t part_size)
{
    sg_store_config config = {.url = "s3://bkt/pre/fix",
                              .s3_endpoint = sgt_http_fake_url(fake),
                              .s3_part_size = part_size,
                              .s3_parallel = 1,
                              .s3_timeout = 1};
    sg_store *store = NULL;
    sg_error err = {0};
    ck_assert_msg(sg_store_open_config(&store, &config, &err) == 0, "%s", err.message);
    sg_store_s3_set_retry(store, &fast_retry);
    return store;
}

static void assert_header(const sgt_http_request *req, const char *name, const char *want)
{
    char *got = sgt_http_header(req, name);
    ck_assert_msg(got != NULL, "no %s header in %s %s", name, req->method, req->target);
    ck_assert_str_eq(got, want);
    free(got);
}

/* Recomputes the Authorization header from what arrived, with the secret
 * the client was given: what the server checks. */
static void assert_signed(const sgt_http_request *req)
{
    char *auth = sgt_http_header(req, "authorization");
    char *names, *path, *query, *payload, *date;
    sg_header headers[16];
    size_t n = 0;
    sg_buf want = {0};
    sg_error err = {0};
    sg_sigv4_credentials creds = {"AKIDEXAMPLE", SECRET, "eu-west-3", "s3"};
    sg_sigv4_request sig;
    ck_assert_ptr_nonnull(auth);
    names = strdup(strstr(auth, "SignedHeaders=") + 14);
    *strchr(names, ',') = '\0';
    for (char *save = NULL, *name = strtok_r(names, ";", &save); name;
         name = strtok_r(NULL, ";", &save)) {
        headers[n].name = name;
        headers[n].value = sgt_http_header(req, name);
        ck_assert_msg(headers[n].value != NULL, "signed header %s was not sent", name);
        n++;
    }
    path = strdup(req->target);
    query = strchr(path, '?');
    if (query)
        *query++ = '\0';
    payload = sgt_http_header(req, "x-amz-content-sha256");
    date = sgt_http_header(req, "x-amz-date");
    sig = (sg_sigv4_request){req->method, path, query ? query : "", headers, n, payload, date};
    ck_assert_int_eq(sg_sigv4_authorization(&want, &sig, &creds, &err), 0);
    ck_assert_int_eq(sg_buf_terminate(&want, &err), 0);
    ck_assert_str_eq(auth, (char *)want.data);
    for (size_t i = 0; i < n; i++)
        free((char *)headers[i].value);
    sg_buf_free(&want);
    free(names);
    free(path);
    free(payload);
    free(date);
    free(auth);
}

static void assert_payload_hashes(const sgt_http_request *req)
{
    uint8_t digest[32];
    char hex[SG_SHA256_HEX_LEN], b64[64];
    sg_sha256(digest, req->body, req->body_len);
    sg_hex_encode(hex, digest, 32);
    sodium_bin2base64(b64, sizeof(b64), digest, 32, sodium_base64_VARIANT_ORIGINAL);
    assert_header(req, "x-amz-content-sha256", hex);
    assert_header(req, "x-amz-checksum-sha256", b64);
}

/* ---- configuration ---- */

START_TEST(test_config_from_environment_and_flags)
{
    sg_store_config config = {0};
    sg_s3_client *c = NULL;
    sg_error err = {0};
    setenv("AWS_ENDPOINT_URL", "http://generic.example:9000", 1);
    setenv("AWS_ENDPOINT_URL_S3", "https://s3only.example:443/", 1);
    setenv("AWS_DEFAULT_REGION", "ap-south-1", 1);
    unsetenv("AWS_REGION");
    ck_assert_int_eq(sg_s3_client_new(&c, &config, "bkt", &err), 0);
    /* The S3-specific variable wins, and the default port is dropped. */
    ck_assert_str_eq(sg_s3_client_endpoint(c), "https://s3only.example");
    ck_assert_str_eq(sg_s3_client_region(c), "ap-south-1");
    ck_assert(!sg_s3_client_path_style(c));
    sg_s3_client_free(c);

    setenv("AWS_REGION", "eu-west-3", 1);
    unsetenv("AWS_ENDPOINT_URL_S3");
    ck_assert_int_eq(sg_s3_client_new(&c, &config, "bkt", &err), 0);
    ck_assert_str_eq(sg_s3_client_endpoint(c), "http://generic.example:9000");
    ck_assert_str_eq(sg_s3_client_region(c), "eu-west-3");
    sg_s3_client_free(c);

    /* Flags win over the environment; without any endpoint, AWS's. */
    config.s3_region = "us-west-2";
    config.s3_endpoint = "minio.local:9000";
    config.s3_path_style = true;
    ck_assert_int_eq(sg_s3_client_new(&c, &config, "bkt", &err), 0);
    ck_assert_str_eq(sg_s3_client_endpoint(c), "https://minio.local:9000");
    ck_assert_str_eq(sg_s3_client_region(c), "us-west-2");
    ck_assert(sg_s3_client_path_style(c));
    sg_s3_client_free(c);
    unsetenv("AWS_ENDPOINT_URL");
    config = (sg_store_config){.s3_region = "eu-central-1"};
    ck_assert_int_eq(sg_s3_client_new(&c, &config, "bkt", &err), 0);
    ck_assert_str_eq(sg_s3_client_endpoint(c), "https://s3.eu-central-1.amazonaws.com");
    sg_s3_client_free(c);
    setenv("AWS_REGION", "eu-west-3", 1);
}
END_TEST

/* Virtual-hosted addressing cannot work for an IP address, localhost, or a
 * bucket name that is not one DNS label under TLS: those go path style. */
START_TEST(test_path_style_when_needed)
{
    struct {
        const char *endpoint, *bucket;
        bool path;
    } cases[] = {
        {"http://127.0.0.1:9000", "bkt", true},      {"http://localhost:9000", "bkt", true},
        {"http://[::1]:9000", "bkt", true},          {"https://s3.example", "my.bucket", true},
        {"http://s3.example", "my.bucket", false},   {"https://s3.example", "Upper", true},
        {"https://s3.example", "under_score", true}, {"https://s3.example", "plain-name", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sg_store_config config = {.s3_endpoint = cases[i].endpoint};
        sg_s3_client *c = NULL;
        sg_error err = {0};
        ck_assert_int_eq(sg_s3_client_new(&c, &config, cases[i].bucket, &err), 0);
        ck_assert_msg(sg_s3_client_path_style(c) == cases[i].path, "%s %s", cases[i].endpoint,
                      cases[i].bucket);
        sg_s3_client_free(c);
    }
}
END_TEST

static void assert_open_fails(const sg_store_config *config, int code, const char *needle)
{
    sg_store *store = NULL;
    sg_error err = {0};
    ck_assert_int_eq(sg_store_open_config(&store, config, &err), code);
    ck_assert_ptr_null(store);
    ck_assert_msg(strstr(err.message, needle) || strstr(err.hint, needle), "\"%s\" not in: %s / %s",
                  needle, err.message, err.hint);
    ck_assert_ptr_null(strstr(err.message, SECRET));
}

START_TEST(test_bad_configuration_refused)
{
    sg_store_config c = {.url = "s3://bkt/p"};
    assert_open_fails(&(sg_store_config){.url = "s3://"}, SG_E_USAGE, "no valid bucket name");
    assert_open_fails(&(sg_store_config){.url = "s3://ab/x"}, SG_E_USAGE, "no valid bucket name");
    assert_open_fails(&(sg_store_config){.url = "s3://b%kt/x"}, SG_E_USAGE, "no valid bucket name");
    assert_open_fails(&(sg_store_config){.url = "s3://bkt/a/../b"}, SG_E_USAGE, "\"..\"");
    assert_open_fails(&(sg_store_config){.url = "s3://bkt/a//b"}, SG_E_USAGE, "empty");
    c.s3_endpoint = "ftp://host";
    assert_open_fails(&c, SG_E_USAGE, "not an http:// or https:// URL");
    c.s3_endpoint = "http://host/bucket";
    assert_open_fails(&c, SG_E_USAGE, "must be scheme://host[:port]");
    c.s3_endpoint = "http://user:pw@host";
    assert_open_fails(&c, SG_E_USAGE, "must be scheme://host[:port]");
    c.s3_endpoint = NULL;
    c.s3_region = "eu west";
    assert_open_fails(&c, SG_E_USAGE, "invalid S3 region");
    c.s3_region = NULL;
    c.s3_ca_file = "/nonexistent/ca.pem";
    assert_open_fails(&c, SG_E_USAGE, "cannot read CA file \"/nonexistent/ca.pem\"");
    c.s3_ca_file = NULL;
    c.s3_part_size = 6ULL << 30;
    assert_open_fails(&c, SG_E_USAGE, "5 GiB");
    c.s3_part_size = 0;
    unsetenv("AWS_SECRET_ACCESS_KEY");
    assert_open_fails(&c, SG_E_USAGE, "AWS_SECRET_ACCESS_KEY is not set");
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    unsetenv("AWS_ACCESS_KEY_ID");
    assert_open_fails(&c, SG_E_USAGE, "AWS_ACCESS_KEY_ID is not set");
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
}
END_TEST

START_TEST(test_classification)
{
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 200, NULL), SG_S3_DONE);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 206, NULL), SG_S3_DONE);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 204, NULL), SG_S3_DONE);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 500, "InternalError"), SG_S3_RETRY);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 503, "SlowDown"), SG_S3_RETRY);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 502, NULL), SG_S3_RETRY);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 408, NULL), SG_S3_RETRY);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 429, NULL), SG_S3_RETRY);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 400, "RequestTimeout"), SG_S3_RETRY);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 400, "BadDigest"), SG_S3_FAIL);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 403, "SignatureDoesNotMatch"), SG_S3_FAIL);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 403, "RequestTimeTooSkewed"), SG_S3_FAIL);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 404, "NoSuchKey"), SG_S3_FAIL);
    ck_assert_int_eq(sg_s3_classify(CURLE_OK, 301, NULL), SG_S3_FAIL);
    ck_assert_int_eq(sg_s3_classify(CURLE_RECV_ERROR, 0, NULL), SG_S3_RETRY);
    ck_assert_int_eq(sg_s3_classify(CURLE_PARTIAL_FILE, 0, NULL), SG_S3_RETRY);
    ck_assert_int_eq(sg_s3_classify(CURLE_OPERATION_TIMEDOUT, 0, NULL), SG_S3_RETRY);
    ck_assert_int_eq(sg_s3_classify(CURLE_COULDNT_CONNECT, 0, NULL), SG_S3_RETRY);
    ck_assert_int_eq(sg_s3_classify(CURLE_GOT_NOTHING, 0, NULL), SG_S3_RETRY);
    ck_assert_int_eq(sg_s3_classify(CURLE_PEER_FAILED_VERIFICATION, 0, NULL), SG_S3_FAIL);
    ck_assert_int_eq(sg_s3_classify(CURLE_URL_MALFORMAT, 0, NULL), SG_S3_FAIL);
}
END_TEST

/* ---- requests ---- */

START_TEST(test_put_small_object)
{
    sgt_http_fake *fake = sgt_http_fake_start(NULL, 0);
    sg_store *store = open_store(fake, 1024);
    sg_error err = {0};
    const sgt_http_request *req;
    char host[64];
    ck_assert_msg(sg_store_put(store, "shards/a b/obj", "hello", 5, &err) == 0, "%s", err.message);
    ck_assert_uint_eq(sgt_http_fake_count(fake), 1);
    req = sgt_http_fake_request(fake, 0);
    ck_assert_str_eq(req->method, "PUT");
    /* Path style (an IP endpoint), the store's prefix, the key encoded. */
    ck_assert_str_eq(req->target, "/bkt/pre/fix/shards/a%20b/obj");
    ck_assert_str_eq(req->body, "hello");
    snprintf(host, sizeof(host), "%s", sgt_http_fake_url(fake) + 7);
    assert_header(req, "host", host);
    assert_header(req, "content-length", "5");
    assert_payload_hashes(req);
    assert_signed(req);
    {
        char *expect = sgt_http_header(req, "expect");
        ck_assert_ptr_null(expect);
    }
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

START_TEST(test_session_token_signed)
{
    sgt_http_fake *fake = sgt_http_fake_start(NULL, 0);
    sg_store *store;
    sg_error err = {0};
    setenv("AWS_SESSION_TOKEN", "tok/en+1", 1);
    store = open_store(fake, 1024);
    ck_assert_int_eq(sg_store_delete(store, "k", &err), 0);
    assert_header(sgt_http_fake_request(fake, 0), "x-amz-security-token", "tok/en+1");
    assert_signed(sgt_http_fake_request(fake, 0));
    {
        char *auth = sgt_http_header(sgt_http_fake_request(fake, 0), "authorization");
        ck_assert_ptr_nonnull(strstr(auth, "x-amz-security-token"));
        free(auth);
    }
    unsetenv("AWS_SESSION_TOKEN");
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

typedef struct listed {
    char keys[8][64];
    uint64_t sizes[8];
    int count;
} listed;

static int collect(void *ctx, const char *key, uint64_t size)
{
    listed *l = ctx;
    snprintf(l->keys[l->count], sizeof(l->keys[0]), "%s", key);
    l->sizes[l->count++] = size;
    return 0;
}

START_TEST(test_list_pages)
{
    sgt_reply script[] = {
        {200, NULL,
         "<ListBucketResult><IsTruncated>true</IsTruncated>"
         "<NextContinuationToken>tok/1+=</NextContinuationToken>"
         "<Contents><Key>pre/fix/shards/a/1</Key><Size>10</Size></Contents>"
         "<Contents><Key>pre/fix/shards/a/</Key><Size>0</Size></Contents>"
         "</ListBucketResult>"},
        {200, NULL,
         "<ListBucketResult><IsTruncated>false</IsTruncated>"
         "<Contents><Key>pre/fix/shards/b</Key><Size>7</Size></Contents>"
         "</ListBucketResult>"},
    };
    sgt_http_fake *fake = sgt_http_fake_start(script, 2);
    sg_store *store = open_store(fake, 1024);
    sg_error err = {0};
    listed l = {0};
    ck_assert_msg(sg_store_list(store, "shards/", collect, &l, &err) == 0, "%s", err.message);
    /* The folder marker "shards/a/" is not an object of ours. */
    ck_assert_int_eq(l.count, 2);
    ck_assert_str_eq(l.keys[0], "shards/a/1");
    ck_assert_uint_eq(l.sizes[0], 10);
    ck_assert_str_eq(l.keys[1], "shards/b");
    ck_assert_str_eq(sgt_http_fake_request(fake, 0)->target,
                     "/bkt?list-type=2&prefix=pre%2Ffix%2Fshards%2F");
    ck_assert_str_eq(
        sgt_http_fake_request(fake, 1)->target,
        "/bkt?continuation-token=tok%2F1%2B%3D&list-type=2&prefix=pre%2Ffix%2Fshards%2F");
    assert_signed(sgt_http_fake_request(fake, 1));
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

/* ---- multipart upload ---- */

static sg_writer *upload(sg_store *store, const char *data, size_t len, sg_error *err, int *rc)
{
    sg_writer *w = NULL;
    ck_assert_int_eq(sg_store_put_writer(&w, store, "obj", err), 0);
    *rc = sg_writer_write(w, data, len, err);
    if (*rc == 0)
        *rc = sg_writer_close(w, err);
    return w;
}

START_TEST(test_multipart_parts_and_complete)
{
    sgt_reply script[] = {
        {200, NULL, INITIATE},           {200, "ETag: \"e1\"\r\n", NULL},
        {200, "ETag: \"e2\"\r\n", NULL}, {200, "ETag: \"e3\"\r\n", NULL},
        {200, NULL, COMPLETED},
    };
    sgt_http_fake *fake = sgt_http_fake_start(script, 5);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    int rc;
    sg_writer *w = upload(store, "0123456789abcdefXYZ!", 20, &err, &rc);
    const sgt_http_request *req;
    ck_assert_msg(rc == 0, "%s", err.message);
    sg_writer_free(w);
    ck_assert_uint_eq(sgt_http_fake_count(fake), 5);
    req = sgt_http_fake_request(fake, 0);
    ck_assert_str_eq(req->method, "POST");
    ck_assert_str_eq(req->target, "/bkt/pre/fix/obj?uploads=");
    assert_header(req, "x-amz-checksum-algorithm", "SHA256");
    assert_signed(req);
    /* Every part but the last has the part size. */
    for (int i = 1; i <= 3; i++) {
        char target[128];
        req = sgt_http_fake_request(fake, (size_t)i);
        snprintf(target, sizeof(target), "/bkt/pre/fix/obj?partNumber=%d&uploadId=up-1", i);
        ck_assert_str_eq(req->method, "PUT");
        ck_assert_str_eq(req->target, target);
        ck_assert_uint_eq(req->body_len, i < 3 ? 8 : 4);
        assert_payload_hashes(req);
        assert_signed(req);
    }
    ck_assert_str_eq(sgt_http_fake_request(fake, 3)->body, "XYZ!");
    req = sgt_http_fake_request(fake, 4);
    ck_assert_str_eq(req->method, "POST");
    ck_assert_str_eq(req->target, "/bkt/pre/fix/obj?uploadId=up-1");
    ck_assert_ptr_nonnull(strstr(req->body, "<PartNumber>3</PartNumber><ETag>&quot;e3&quot;"));
    assert_signed(req);
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

/* A part that cannot be sent ends the upload: the object never appears and
 * the upload is aborted, so no parts are left to pay for. */
START_TEST(test_multipart_failure_aborts)
{
    sgt_reply script[] = {
        {200, NULL, INITIATE},
        {200, "ETag: \"e1\"\r\n", NULL},
        {403, NULL,
         "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
         "<RequestId>R42</RequestId></Error>"},
        {204, NULL, NULL},
    };
    sgt_http_fake *fake = sgt_http_fake_start(script, 4);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    int rc;
    sg_writer *w = upload(store, "0123456789abcdefXYZ!", 20, &err, &rc);
    ck_assert_int_eq(rc, SG_E_STORE);
    ck_assert_ptr_nonnull(strstr(err.message, "part 2 of s3://bkt/pre/fix/obj"));
    ck_assert_ptr_nonnull(strstr(err.message, "AccessDenied"));
    ck_assert_ptr_nonnull(strstr(err.detail, "R42"));
    sg_writer_free(w);
    {
        const sgt_http_request *last = sgt_http_fake_request(fake, sgt_http_fake_count(fake) - 1);
        ck_assert_str_eq(last->method, "DELETE");
        ck_assert_str_eq(last->target, "/bkt/pre/fix/obj?uploadId=up-1");
        for (size_t i = 0; i < sgt_http_fake_count(fake); i++)
            ck_assert_msg(strstr(sgt_http_fake_request(fake, i)->target, "uploadId=up-1&") ==
                                  NULL ||
                              strcmp(sgt_http_fake_request(fake, i)->method, "POST") != 0,
                          "the upload was completed");
    }
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

/* S3 may answer CompleteMultipartUpload with 200 and an error document. */
START_TEST(test_complete_error_in_200_retried)
{
    sgt_reply script[] = {
        {200, NULL, INITIATE},
        {200, "ETag: \"e1\"\r\n", NULL},
        {200, "ETag: \"e2\"\r\n", NULL},
        {200, NULL,
         "<?xml version=\"1.0\"?>\n\n<Error><Code>InternalError</Code>"
         "<Message>We encountered an internal error.</Message></Error>"},
        {200, NULL, COMPLETED},
    };
    sgt_http_fake *fake = sgt_http_fake_start(script, 5);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    int rc;
    sg_writer *w = upload(store, "0123456789abcdef", 16, &err, &rc);
    ck_assert_msg(rc == 0, "%s", err.message);
    sg_writer_free(w);
    ck_assert_uint_eq(sgt_http_fake_count(fake), 5);
    ck_assert_str_eq(sgt_http_fake_request(fake, 4)->target, "/bkt/pre/fix/obj?uploadId=up-1");
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

/* An error in a 200 that cannot pass (a part the server does not accept)
 * is not retried: the upload fails, is aborted, and the object removed in
 * case it was assembled after all. */
START_TEST(test_complete_permanent_error_in_200)
{
    sgt_reply script[] = {
        {200, NULL, INITIATE},
        {200, "ETag: \"e1\"\r\n", NULL},
        {200, "ETag: \"e2\"\r\n", NULL},
        {200, NULL,
         "<Error><Code>InvalidPart</Code><Message>One or more of the specified parts could not "
         "be found</Message></Error>"},
        {204, NULL, NULL},
        {204, NULL, NULL},
    };
    sgt_http_fake *fake = sgt_http_fake_start(script, 6);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    int rc;
    sg_writer *w = upload(store, "0123456789abcdef", 16, &err, &rc);
    ck_assert_int_eq(rc, SG_E_STORE);
    ck_assert_ptr_nonnull(strstr(err.message, "cannot complete s3://bkt/pre/fix/obj"));
    ck_assert_ptr_nonnull(strstr(err.message, "InvalidPart"));
    sg_writer_free(w);
    ck_assert_uint_eq(sgt_http_fake_count(fake), 6);
    ck_assert_str_eq(sgt_http_fake_request(fake, 4)->method, "DELETE");
    ck_assert_str_eq(sgt_http_fake_request(fake, 4)->target, "/bkt/pre/fix/obj?uploadId=up-1");
    ck_assert_str_eq(sgt_http_fake_request(fake, 5)->method, "DELETE");
    ck_assert_str_eq(sgt_http_fake_request(fake, 5)->target, "/bkt/pre/fix/obj");
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

/* Freed without close (the producer failed): aborted, nothing completed. */
START_TEST(test_unclosed_writer_aborts)
{
    sgt_reply script[] = {{200, NULL, INITIATE}, {200, "ETag: \"e1\"\r\n", NULL}};
    sgt_http_fake *fake = sgt_http_fake_start(script, 2);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    sg_writer *w = NULL;
    ck_assert_int_eq(sg_store_put_writer(&w, store, "obj", &err), 0);
    ck_assert_int_eq(sg_writer_write(w, "0123456789", 10, &err), 0);
    sg_writer_free(w);
    ck_assert_str_eq(sgt_http_fake_request(fake, sgt_http_fake_count(fake) - 1)->method, "DELETE");
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

/* ---- downloads ---- */

START_TEST(test_ranged_reads)
{
    sgt_reply script[] = {
        {200, "Content-Length: 20\r\n", NULL},
        {206, "Content-Range: bytes 0-7/20\r\n", "01234567"},
        {206, "Content-Range: bytes 8-15/20\r\n", "89abcdef"},
        {206, "Content-Range: bytes 16-19/20\r\n", "XYZ!"},
    };
    sgt_http_fake *fake = sgt_http_fake_start(script, 4);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    sg_buf out = {0};
    ck_assert_msg(sg_store_get(store, "obj", 0, UINT64_MAX, &out, &err) == 0, "%s", err.message);
    ck_assert_uint_eq(out.len, 20);
    ck_assert(memcmp(out.data, "0123456789abcdefXYZ!", 20) == 0);
    ck_assert_str_eq(sgt_http_fake_request(fake, 0)->method, "HEAD");
    assert_header(sgt_http_fake_request(fake, 1), "range", "bytes=0-7");
    assert_header(sgt_http_fake_request(fake, 2), "range", "bytes=8-15");
    assert_header(sgt_http_fake_request(fake, 3), "range", "bytes=16-19");
    assert_signed(sgt_http_fake_request(fake, 3));
    sg_buf_free(&out);
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

/* A server that ignores Range answers 200 with the whole object: fine when
 * that is what was asked, an error otherwise (never a wrong byte). */
START_TEST(test_range_ignored)
{
    sgt_reply script[] = {
        {200, NULL, "01234567"},
        {200, NULL, "0123456789abcdef"},
    };
    sgt_http_fake *fake = sgt_http_fake_start(script, 2);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    sg_buf out = {0};
    ck_assert_msg(sg_store_get(store, "obj", 0, 8, &out, &err) == 0, "%s", err.message);
    ck_assert_uint_eq(out.len, 8);
    ck_assert_int_eq(sg_store_get(store, "obj", 8, 8, &out, &err), SG_E_STORE);
    ck_assert_ptr_nonnull(strstr(err.message, "ignored the Range header"));
    ck_assert_uint_eq(out.len, 8);
    sg_buf_free(&out);
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

START_TEST(test_short_object_is_corrupt)
{
    sgt_reply script[] = {
        {206, "Content-Range: bytes 0-7/12\r\n", "01234567"},
        {206, "Content-Range: bytes 8-11/12\r\n", "89ab"},
    };
    sgt_http_fake *fake = sgt_http_fake_start(script, 2);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    sg_buf out = {0};
    ck_assert_int_eq(sg_store_get(store, "obj", 0, 16, &out, &err), SG_E_CORRUPT);
    ck_assert_ptr_nonnull(strstr(err.message, "s3://bkt/pre/fix/obj is shorter than expected"));
    ck_assert_uint_eq(out.len, 0);
    sg_buf_free(&out);
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

START_TEST(test_missing_object)
{
    sgt_reply script[] = {
        {404, NULL, "<Error><Code>NoSuchKey</Code><Message>no</Message></Error>"},
        {404, NULL, NULL},
    };
    sgt_http_fake *fake = sgt_http_fake_start(script, 2);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    sg_buf out = {0};
    uint64_t size;
    ck_assert_int_eq(sg_store_get(store, "obj", 0, 4, &out, &err), SG_E_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err.message, "s3://bkt/pre/fix/obj not found"));
    ck_assert_int_eq(sg_store_size(store, "obj", &size, &err), SG_E_NOT_FOUND);
    ck_assert_uint_eq(sgt_http_fake_count(fake), 2);
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

/* ---- retries and messages ---- */

START_TEST(test_transient_failures_retried)
{
    sgt_reply script[] = {
        {503, NULL, "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"},
        {500, NULL, "<Error><Code>InternalError</Code><Message>oops</Message></Error>"},
        {502, "Content-Type: text/html\r\n", "<html><body>Bad Gateway</body></html>"},
        {429, NULL, NULL},
        {0, NULL, NULL, SGT_REPLY_RESET},
        {206, "Content-Range: bytes 0-7/8\r\n", "01234567", SGT_REPLY_TRUNCATE},
        {206, "Content-Range: bytes 0-7/8\r\n", "01234567"},
    };
    sgt_http_fake *fake = sgt_http_fake_start(script, 7);
    sg_store *store = open_store(fake, 8);
    sg_retry_policy patient = {1, 5, 20000, 10};
    sg_error err = {0};
    sg_buf out = {0};
    sg_store_s3_set_retry(store, &patient);
    ck_assert_msg(sg_store_get(store, "obj", 0, 8, &out, &err) == 0, "%s", err.message);
    ck_assert_uint_eq(out.len, 8);
    ck_assert(memcmp(out.data, "01234567", 8) == 0);
    ck_assert_uint_eq(sgt_http_fake_count(fake), 7);
    sg_buf_free(&out);
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

START_TEST(test_retries_bounded)
{
    sgt_reply script[] = {
        {503, NULL, "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"},
        {503, NULL, "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"},
        {503, NULL, "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"},
        {503, NULL, "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"},
        {503, NULL, "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"},
    };
    sgt_http_fake *fake = sgt_http_fake_start(script, 5);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    ck_assert_int_eq(sg_store_delete(store, "obj", &err), SG_E_STORE);
    /* fast_retry allows 4 attempts. */
    ck_assert_uint_eq(sgt_http_fake_count(fake), 4);
    ck_assert_str_eq(err.message,
                     "cannot delete s3://bkt/pre/fix/obj: HTTP 503: SlowDown: Reduce your rate");
    ck_assert_ptr_nonnull(strstr(err.detail, "4 attempts"));
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

START_TEST(test_timeout_retried)
{
    sgt_reply script[] = {{204, NULL, NULL, SGT_REPLY_NORMAL, 3000}, {204, NULL, NULL}};
    sgt_http_fake *fake = sgt_http_fake_start(script, 2);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    ck_assert_msg(sg_store_delete(store, "obj", &err) == 0, "%s", err.message);
    ck_assert_uint_eq(sgt_http_fake_count(fake), 2);
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}
END_TEST

static void assert_fails_once(const char *body, int status, int code, const char *message,
                              const char *hint)
{
    sgt_reply script[] = {{status, NULL, body}, {204, NULL, NULL}};
    sgt_http_fake *fake = sgt_http_fake_start(script, 2);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    ck_assert_int_eq(sg_store_delete(store, "obj", &err), code);
    ck_assert_uint_eq(sgt_http_fake_count(fake), 1);
    ck_assert_msg(strstr(err.message, message), "\"%s\" not in \"%s\"", message, err.message);
    ck_assert_msg(strstr(err.hint, hint), "\"%s\" not in \"%s\"", hint, err.hint);
    ck_assert_ptr_null(strstr(err.message, SECRET));
    ck_assert_ptr_null(strstr(err.detail, SECRET));
    ck_assert_ptr_null(strstr(err.hint, SECRET));
    sg_store_free(store);
    sgt_http_fake_stop(fake);
}

START_TEST(test_permanent_failures_explained)
{
    assert_fails_once("<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature "
                      "we calculated does not match</Message></Error>",
                      403, SG_E_STORE, "HTTP 403: SignatureDoesNotMatch",
                      "does not match access key id AKIDEXAMPLE: check AWS_SECRET_ACCESS_KEY");
    assert_fails_once("<Error><Code>InvalidAccessKeyId</Code><Message>x</Message></Error>", 403,
                      SG_E_STORE, "InvalidAccessKeyId", "check AWS_ACCESS_KEY_ID");
    assert_fails_once("<Error><Code>RequestTimeTooSkewed</Code><Message>x</Message></Error>", 403,
                      SG_E_STORE, "RequestTimeTooSkewed", "clock");
    assert_fails_once("<Error><Code>ExpiredToken</Code><Message>x</Message></Error>", 400,
                      SG_E_STORE, "ExpiredToken", "AWS_SESSION_TOKEN");
    assert_fails_once("<Error><Code>NoSuchBucket</Code><Message>x</Message></Error>", 404,
                      SG_E_STORE, "NoSuchBucket", "bucket \"bkt\" does not exist");
    assert_fails_once("<Error><Code>PermanentRedirect</Code><Message>x</Message></Error>", 301,
                      SG_E_STORE, "PermanentRedirect", "--s3-region");
    assert_fails_once(NULL, 403, SG_E_STORE, "HTTP 403", "access denied or a wrong signature");
}
END_TEST

START_TEST(test_server_gone)
{
    sgt_http_fake *fake = sgt_http_fake_start(NULL, 0);
    sg_store *store = open_store(fake, 8);
    sg_error err = {0};
    sgt_http_fake_stop(fake);
    ck_assert_int_eq(sg_store_delete(store, "obj", &err), SG_E_STORE);
    ck_assert_ptr_nonnull(strstr(err.message, "cannot delete s3://bkt/pre/fix/obj"));
    ck_assert_ptr_nonnull(strstr(err.detail, "4 attempts"));
    ck_assert_ptr_nonnull(strstr(err.hint, "is up"));
    sg_store_free(store);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("s3_client");
    TCase *config = tcase_create("configuration");
    TCase *requests = tcase_create("requests");
    TCase *multipart = tcase_create("multipart");
    TCase *download = tcase_create("download");
    TCase *failures = tcase_create("failures");
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    setenv("AWS_REGION", "eu-west-3", 1);
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_ENDPOINT_URL_S3");
    tcase_add_test(config, test_config_from_environment_and_flags);
    tcase_add_test(config, test_path_style_when_needed);
    tcase_add_test(config, test_bad_configuration_refused);
    tcase_add_test(config, test_classification);
    tcase_add_test(requests, test_put_small_object);
    tcase_add_test(requests, test_session_token_signed);
    tcase_add_test(requests, test_list_pages);
    tcase_add_test(multipart, test_multipart_parts_and_complete);
    tcase_add_test(multipart, test_multipart_failure_aborts);
    tcase_add_test(multipart, test_complete_error_in_200_retried);
    tcase_add_test(multipart, test_unclosed_writer_aborts);
    tcase_add_test(multipart, test_complete_permanent_error_in_200);
    tcase_add_test(download, test_ranged_reads);
    tcase_add_test(download, test_short_object_is_corrupt);
    tcase_add_test(download, test_range_ignored);
    tcase_add_test(download, test_missing_object);
    tcase_add_test(failures, test_transient_failures_retried);
    tcase_add_test(failures, test_retries_bounded);
    tcase_add_test(failures, test_timeout_retried);
    tcase_add_test(failures, test_permanent_failures_explained);
    tcase_add_test(failures, test_server_gone);
    suite_add_tcase(s, config);
    suite_add_tcase(s, requests);
    suite_add_tcase(s, multipart);
    suite_add_tcase(s, download);
    suite_add_tcase(s, failures);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
