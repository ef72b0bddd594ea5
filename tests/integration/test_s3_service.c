/* The S3 test service itself: the verifying, fault-injecting proxy in front
 * of s3rver. The S3 store's tests trust it to refuse what AWS refuses and to
 * fail exactly when told, so each of those promises is checked here with an
 * independent client (s3cmd) or with libcurl's own SigV4 signer. */
#include "tests/harness/run.h"
#include "tests/harness/s3.h"

#include <check.h>
#include <curl/curl.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB (1024 * 1024)
#define BUCKET "sgtest"

/* Started before Check forks the tests; the second accepts small parts. */
static sgt_s3 *s3;
static sgt_s3 *small_parts;

enum { SIGN = 1, CAPTURE = 2 };

typedef struct reply {
    CURLcode rc;
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    char *authorization; /* with CAPTURE: the signed request's headers */
    char *amz_date;
    char *etag; /* the response's ETag header, quotes and all */
} reply;

static void reply_free(reply *r)
{
    free(r->body);
    free(r->authorization);
    free(r->amz_date);
    free(r->etag);
    memset(r, 0, sizeof(*r));
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    reply *r = userdata;
    size_t n = size * nmemb;
    char *grown = realloc(r->body, r->len + n + 1);
    ck_assert_ptr_nonnull(grown);
    memcpy(grown + r->len, ptr, n);
    r->body = grown;
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

static char *header_value(const char *data, size_t size, const char *name)
{
    size_t nlen = strlen(name);
    for (const char *line = data; line < data + size;) {
        const char *end = memchr(line, '\n', (size_t)(data + size - line));
        size_t len = end ? (size_t)(end - line) : (size_t)(data + size - line);
        if (len > nlen + 1 && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            size_t vlen = (size_t)(line + len - v);
            while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == ' '))
                vlen--;
            return strndup(v, vlen);
        }
        line += len + 1;
    }
    return NULL;
}

static size_t collect_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    reply *r = userdata;
    char *etag = header_value(ptr, size * nmemb, "ETag");
    if (etag) {
        free(r->etag);
        r->etag = etag;
    }
    return size * nmemb;
}

static int capture_headers(CURL *curl, curl_infotype type, char *data, size_t size, void *userdata)
{
    (void)curl;
    reply *r = userdata;
    if (type == CURLINFO_HEADER_OUT) {
        free(r->authorization);
        free(r->amz_date);
        r->authorization = header_value(data, size, "Authorization");
        r->amz_date = header_value(data, size, "x-amz-date");
    }
    return 0;
}

static void sha256_hex(char out[65], const void *data, size_t len)
{
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, data, len);
    sodium_bin2hex(out, 65, digest, sizeof(digest));
}

/* One request to the proxy. With SIGN, libcurl signs it (SigV4, the payload
 * hash taken from an x-amz-content-sha256 in headers, else the body's), and
 * with CAPTURE the signed headers are kept for a replay. */
static reply request(const sgt_s3 *service, const char *method, const char *target,
                     const void *body, size_t len, const char *const headers[], unsigned flags)
{
    reply r = {0};
    char url[1024], hash[65], hash_header[100];
    struct curl_slist *list = NULL;
    int has_hash = 0;

    snprintf(url, sizeof(url), "%s%s", sgt_s3_endpoint(service), target);
    for (size_t i = 0; headers && headers[i]; i++) {
        list = curl_slist_append(list, headers[i]);
        has_hash |= strncasecmp(headers[i], "x-amz-content-sha256:", 21) == 0;
    }
    if ((flags & SIGN) && !has_hash) {
        sha256_hex(hash, body ? body : "", body ? len : 0);
        snprintf(hash_header, sizeof(hash_header), "x-amz-content-sha256: %s", hash);
        list = curl_slist_append(list, hash_header);
    }
    /* Not the form content type; and not "Content-Type:" to drop it, which
     * libcurl 7.88 still signs (as an empty header) without sending. */
    if (body)
        list = curl_slist_append(list, "Content-Type: application/octet-stream");

    CURL *curl = curl_easy_init();
    ck_assert_ptr_nonnull(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, collect_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    }
    if (flags & SIGN) {
        curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, "aws:amz:" SGT_S3_REGION ":s3");
        curl_easy_setopt(curl, CURLOPT_USERPWD, SGT_S3_ACCESS_KEY ":" SGT_S3_SECRET_KEY);
    }
    if (flags & CAPTURE) {
        curl_easy_setopt(curl, CURLOPT_DEBUGFUNCTION, capture_headers);
        curl_easy_setopt(curl, CURLOPT_DEBUGDATA, &r);
        curl_easy_setopt(curl, CURLOPT_VERBOSE, 1L);
    }
    r.rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(curl);
    curl_slist_free_all(list);
    if (!r.body) {
        r.body = strdup("");
        ck_assert_ptr_nonnull(r.body);
    }
    return r;
}

/* A signed request that must get an HTTP answer; returns its status. */
static long call(const sgt_s3 *service, const char *method, const char *target, const void *body,
                 size_t len, char **response)
{
    reply r = request(service, method, target, body, len, NULL, SIGN);
    ck_assert_msg(r.rc == CURLE_OK, "%s %s: %s", method, target, curl_easy_strerror(r.rc));
    long status = r.status;
    if (response) {
        *response = r.body;
        r.body = NULL;
    }
    reply_free(&r);
    return status;
}

/* The text of the first <tag> element, to free(); NULL if there is none. */
static char *xml_value(const char *xml, const char *tag)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *start = strstr(xml, open);
    const char *end = start ? strstr(start, close) : NULL;
    return end ? strndup(start + strlen(open), (size_t)(end - start - strlen(open))) : NULL;
}

static void assert_error(const char *xml, const char *code, const char *message_part)
{
    char *got = xml_value(xml, "Code");
    char *message = xml_value(xml, "Message");
    ck_assert_msg(got && strcmp(got, code) == 0, "expected error %s, got: %s", code, xml);
    if (message_part)
        ck_assert_msg(message && strstr(message, message_part), "message lacks \"%s\": %s",
                      message_part, xml);
    free(got);
    free(message);
}

/* Bytes that differ from one offset and one seed to the next. */
static unsigned char *pattern(size_t len, uint32_t seed)
{
    unsigned char *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (unsigned char)(x >> 24);
    }
    return p;
}

static char *temp_file(const void *data, size_t len)
{
    char *path = strdup("/tmp/sgt-s3-file-XXXXXX");
    ck_assert_ptr_nonnull(path);
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

static void assert_file_is(const char *path, const void *data, size_t len)
{
    size_t got_len;
    char *got = sgt_read_file(path, &got_len);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(got_len, len);
    ck_assert_int_eq(memcmp(got, data, len), 0);
    free(got);
}

static void reset_service(void)
{
    sgt_s3_set_faults(s3, "[]");
    sgt_s3_clear_log(s3);
    sgt_s3_set_faults(small_parts, "[]");
    sgt_s3_clear_log(small_parts);
}

/* ------------------------------------------------------------------ s3cmd */

START_TEST(s3cmd_round_trip)
{
    unsigned char *data = pattern(10000, 1);
    char *file = temp_file(data, 10000);
    char *copy = strdup("/tmp/sgt-s3-copy-XXXXXX");
    close(mkstemp(copy));

    free(sgt_s3cmd(s3, (const char *[]){"mb", "s3://made-by-s3cmd", NULL}));
    free(sgt_s3cmd(s3, (const char *[]){"put", file, "s3://" BUCKET "/shards/a/one", NULL}));
    free(sgt_s3cmd(s3, (const char *[]){"put", file, "s3://" BUCKET "/shards/b/two", NULL}));
    char *listing = sgt_s3cmd(s3, (const char *[]){"ls", "s3://" BUCKET "/shards/a/", NULL});
    ck_assert_ptr_nonnull(strstr(listing, "s3://" BUCKET "/shards/a/one"));
    ck_assert_ptr_null(strstr(listing, "two"));
    char *buckets = sgt_s3cmd(s3, (const char *[]){"ls", NULL});
    ck_assert_ptr_nonnull(strstr(buckets, "s3://made-by-s3cmd"));
    free(sgt_s3cmd(s3,
                   (const char *[]){"get", "--force", "s3://" BUCKET "/shards/a/one", copy, NULL}));
    assert_file_is(copy, data, 10000);

    /* It all went through the proxy, and passed its checks. */
    ck_assert_int_eq(sgt_s3_count(s3, "PUT", NULL, 200), 3);
    ck_assert_int_ge(sgt_s3_count(s3, "GET", "prefix=shards%2Fa%2F", 200), 1);
    ck_assert_int_eq(sgt_s3_count(s3, NULL, NULL, 403), 0);
    ck_assert_int_eq(sgt_s3_count(s3, NULL, NULL, 400), 0);

    unlink(file);
    unlink(copy);
    free(listing);
    free(buckets);
    free(file);
    free(copy);
    free(data);
}
END_TEST

START_TEST(s3cmd_multipart_round_trip)
{
    size_t len = 12 * MiB + 12345;
    unsigned char *data = pattern(len, 2);
    char *file = temp_file(data, len);
    char *copy = strdup("/tmp/sgt-s3-copy-XXXXXX");
    close(mkstemp(copy));
    int open_before = sgt_s3_open_uploads(s3);

    free(sgt_s3cmd(s3, (const char *[]){"put", "--multipart-chunk-size-mb=5", file,
                                        "s3://" BUCKET "/multi/big", NULL}));
    ck_assert_int_eq(sgt_s3_count(s3, "POST", "uploads", 200), 1);
    ck_assert_int_eq(sgt_s3_count(s3, "PUT", "partNumber=", 200), 3);
    ck_assert_int_eq(sgt_s3_count(s3, "POST", "uploadId=", 200), 1);
    ck_assert_int_eq(sgt_s3_open_uploads(s3), open_before);

    free(
        sgt_s3cmd(s3, (const char *[]){"get", "--force", "s3://" BUCKET "/multi/big", copy, NULL}));
    assert_file_is(copy, data, len);

    unlink(file);
    unlink(copy);
    free(file);
    free(copy);
    free(data);
}
END_TEST

START_TEST(s3cmd_wrong_secret_refused)
{
    const char *argv[] = {"s3cmd",
                          "--config",
                          sgt_s3cmd_config(s3),
                          "--secret_key=NOT-S3RVER",
                          "ls",
                          "s3://" BUCKET "/",
                          NULL};
    sgt_result r;
    ck_assert_int_ne(sgt_run(&r, argv, NULL), 0);
    ck_assert_msg(strstr(r.err, "SignatureDoesNotMatch"), "s3cmd said: %s", r.err);
    ck_assert_int_ge(sgt_s3_count(s3, "GET", NULL, 403), 1);
    ck_assert_int_eq(sgt_s3_count(s3, NULL, NULL, 200), 0);
    sgt_result_free(&r);

    /* A wrong access key is named as such. */
    const char *key_argv[] = {
        "s3cmd", "--config", sgt_s3cmd_config(s3), "--access_key=NOBODY", "ls", "s3://" BUCKET "/",
        NULL};
    ck_assert_int_ne(sgt_run(&r, key_argv, NULL), 0);
    ck_assert_msg(strstr(r.err, "InvalidAccessKeyId"), "s3cmd said: %s", r.err);
    sgt_result_free(&r);
}
END_TEST

/* ---------------------------------------------------------- body checks */

START_TEST(payload_hash_must_match_body)
{
    char other[65], *body = NULL, hash_header[100];
    sha256_hex(other, "other bytes", 11);
    snprintf(hash_header, sizeof(hash_header), "x-amz-content-sha256: %s", other);
    const char *headers[] = {hash_header, NULL};

    /* Validly signed, but for other bytes than those sent. */
    reply r = request(s3, "PUT", "/" BUCKET "/hash/x", "hello", 5, headers, SIGN);
    ck_assert_int_eq(r.rc, CURLE_OK);
    ck_assert_int_eq(r.status, 400);
    assert_error(r.body, "XAmzContentSHA256Mismatch", other);
    reply_free(&r);
    ck_assert_int_eq(call(s3, "HEAD", "/" BUCKET "/hash/x", NULL, 0, NULL), 404);

    /* The same request with the body's own hash is stored. */
    ck_assert_int_eq(call(s3, "PUT", "/" BUCKET "/hash/x", "hello", 5, NULL), 200);
    ck_assert_int_eq(call(s3, "GET", "/" BUCKET "/hash/x", NULL, 0, &body), 200);
    ck_assert_str_eq(body, "hello");
    free(body);

    /* UNSIGNED-PAYLOAD is allowed. */
    const char *unsigned_headers[] = {"x-amz-content-sha256: UNSIGNED-PAYLOAD", NULL};
    r = request(s3, "PUT", "/" BUCKET "/hash/y", "hello", 5, unsigned_headers, SIGN);
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
}
END_TEST

START_TEST(checksum_headers_must_match_body)
{
    /* base64 of SHA-256 and MD5 of "hello", and of "other". */
    const char *good_sha[] = {"x-amz-checksum-sha256: LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
                              NULL};
    const char *bad_sha[] = {"x-amz-checksum-sha256: 2d8I3A5EvPhhEJ3tFQHuy7Du0iFpaNj5o+ySRp2eyLg=",
                             NULL};
    const char *good_md5[] = {"Content-MD5: XUFAKrxLKna5cZ2REBfFkg==", NULL};
    const char *bad_md5[] = {"Content-MD5: eV3kXRd4M9uuR7y/6ZJ8YA==", NULL};

    reply r = request(s3, "PUT", "/" BUCKET "/sum/sha", "hello", 5, bad_sha, SIGN);
    ck_assert_int_eq(r.status, 400);
    assert_error(r.body, "BadDigest", "x-amz-checksum-sha256");
    reply_free(&r);
    r = request(s3, "PUT", "/" BUCKET "/sum/md5", "hello", 5, bad_md5, SIGN);
    ck_assert_int_eq(r.status, 400);
    assert_error(r.body, "BadDigest", "Content-MD5");
    reply_free(&r);
    ck_assert_int_eq(call(s3, "HEAD", "/" BUCKET "/sum/sha", NULL, 0, NULL), 404);
    ck_assert_int_eq(call(s3, "HEAD", "/" BUCKET "/sum/md5", NULL, 0, NULL), 404);

    r = request(s3, "PUT", "/" BUCKET "/sum/sha", "hello", 5, good_sha, SIGN);
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    r = request(s3, "PUT", "/" BUCKET "/sum/md5", "hello", 5, good_md5, SIGN);
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
}
END_TEST

/* ---------------------------------------------------- what is signed */

START_TEST(query_strings_are_checked)
{
    /* Keys whose listing takes several pages: each page's continuation
     * token (base64: "+", "/", "=") goes back percent-encoded. */
    for (int i = 0; i < 5; i++) {
        char target[128];
        snprintf(target, sizeof(target), "/" BUCKET "/list/a/key%d", i);
        ck_assert_int_eq(call(s3, "PUT", target, "x", 1, NULL), 200);
    }
    ck_assert_int_eq(call(s3, "PUT", "/" BUCKET "/list/b/other", "x", 1, NULL), 200);

    int keys = 0, pages = 0;
    char *token = NULL;
    do {
        /* libcurl 7.88 signs the query as written: keep it sorted. */
        char target[1024];
        char *escaped = token ? curl_easy_escape(NULL, token, 0) : NULL;
        snprintf(target, sizeof(target),
                 "/" BUCKET "?%s%s%slist-type=2&max-keys=2&prefix=list%%2Fa%%2F",
                 escaped ? "continuation-token=" : "", escaped ? escaped : "", escaped ? "&" : "");
        curl_free(escaped);
        free(token);
        char *xml = NULL;
        ck_assert_msg(call(s3, "GET", target, NULL, 0, &xml) == 200, "GET %s: %s", target, xml);
        for (const char *p = xml; (p = strstr(p, "<Key>list/a/")); p++)
            keys++;
        ck_assert_ptr_null(strstr(xml, "list/b/"));
        token = xml_value(xml, "NextContinuationToken");
        free(xml);
        pages++;
    } while (token && pages < 10);
    ck_assert_int_eq(keys, 5);
    ck_assert_int_eq(pages, 3);
    ck_assert_int_eq(sgt_s3_count(s3, "GET", "continuation-token=", 200), 2);

    /* Replaying a signature with another query is refused; the same replay
     * with the signed query passes, so the query is what was checked. */
    reply signed_req = request(s3, "GET", "/" BUCKET "?list-type=2&prefix=list%2Fa%2F", NULL, 0,
                               NULL, SIGN | CAPTURE);
    ck_assert_int_eq(signed_req.status, 200);
    ck_assert_ptr_nonnull(signed_req.authorization);
    ck_assert_ptr_nonnull(signed_req.amz_date);
    char auth[1024], date[64], hash[65], hash_header[100];
    snprintf(auth, sizeof(auth), "Authorization: %s", signed_req.authorization);
    snprintf(date, sizeof(date), "x-amz-date: %s", signed_req.amz_date);
    sha256_hex(hash, "", 0);
    snprintf(hash_header, sizeof(hash_header), "x-amz-content-sha256: %s", hash);
    const char *replay[] = {auth, date, hash_header, NULL};

    reply same =
        request(s3, "GET", "/" BUCKET "?list-type=2&prefix=list%2Fa%2F", NULL, 0, replay, 0);
    ck_assert_int_eq(same.status, 200);
    reply other =
        request(s3, "GET", "/" BUCKET "?list-type=2&prefix=list%2Fb%2F", NULL, 0, replay, 0);
    ck_assert_int_eq(other.status, 403);
    assert_error(other.body, "SignatureDoesNotMatch", "signature");
    reply path = request(s3, "GET", "/" BUCKET "/list/a/key0", NULL, 0, replay, 0);
    ck_assert_int_eq(path.status, 403);

    /* A security token must be signed. */
    const char *token_replay[] = {auth, date, hash_header, "x-amz-security-token: abc", NULL};
    reply with_token =
        request(s3, "GET", "/" BUCKET "?list-type=2&prefix=list%2Fa%2F", NULL, 0, token_replay, 0);
    ck_assert_int_eq(with_token.status, 403);
    assert_error(with_token.body, "SignatureDoesNotMatch", "x-amz-security-token");

    /* Unsigned requests are refused too. */
    reply anonymous = request(s3, "GET", "/" BUCKET "/list/a/key0", NULL, 0, NULL, 0);
    ck_assert_int_eq(anonymous.status, 403);
    assert_error(anonymous.body, "AccessDenied", "Authorization");

    reply_free(&signed_req);
    reply_free(&same);
    reply_free(&other);
    reply_free(&path);
    reply_free(&with_token);
    reply_free(&anonymous);
}
END_TEST

START_TEST(keys_needing_encoding_round_trip)
{
    /* Space, "+", "=", "&", "~" and a non-ASCII letter, each encoded once. */
    const char *target = "/" BUCKET "/enc/a%20b%2Bc%3Dd%26e~f%C3%A9";
    char *body = NULL;
    ck_assert_int_eq(call(s3, "PUT", target, "odd", 3, NULL), 200);
    ck_assert_int_eq(call(s3, "GET", target, NULL, 0, &body), 200);
    ck_assert_str_eq(body, "odd");
    free(body);
    char *listing = sgt_s3cmd(s3, (const char *[]){"ls", "s3://" BUCKET "/enc/", NULL});
    ck_assert_msg(strstr(listing, "enc/a b+c=d&e~f\xc3\xa9"), "listing: %s", listing);
    free(listing);
}
END_TEST

/* ---------------------------------------------------------------- faults */

START_TEST(status_fault_fires_on_nth_match)
{
    sgt_s3_set_faults(s3, "[{\"method\": \"PUT\", \"path\": \"^/" BUCKET "/fault/\", \"nth\": 2,"
                          " \"action\": \"status\", \"status\": 503, \"code\": \"SlowDown\","
                          " \"message\": \"Please reduce your request rate.\","
                          " \"headers\": {\"Retry-After\": \"1\"}}]");
    /* Neither another method nor another path counts. */
    ck_assert_int_eq(call(s3, "PUT", "/" BUCKET "/elsewhere", "x", 1, NULL), 200);
    ck_assert_int_eq(call(s3, "GET", "/" BUCKET "/elsewhere", NULL, 0, NULL), 200);

    char *body = NULL;
    ck_assert_int_eq(call(s3, "PUT", "/" BUCKET "/fault/1", "x", 1, NULL), 200);
    ck_assert_int_eq(call(s3, "PUT", "/" BUCKET "/fault/2", "x", 1, &body), 503);
    assert_error(body, "SlowDown", "Please reduce your request rate.");
    free(body);
    ck_assert_int_eq(call(s3, "PUT", "/" BUCKET "/fault/3", "x", 1, NULL), 200);

    /* The failed request never reached s3rver. */
    ck_assert_int_eq(call(s3, "HEAD", "/" BUCKET "/fault/1", NULL, 0, NULL), 200);
    ck_assert_int_eq(call(s3, "HEAD", "/" BUCKET "/fault/2", NULL, 0, NULL), 404);

    char *log = sgt_s3_log(s3);
    ck_assert_int_eq(sgt_s3_count(s3, "PUT", NULL, 503), 1);
    ck_assert_msg(strstr(log, "\"path\":\"/" BUCKET "/fault/2\",\"query\":\"\",\"bodyLength\":1,"
                              "\"status\":503,\"fault\":\"status\",\"rule\":0"),
                  "log: %s", log);
    ck_assert_msg(strstr(log, "\"path\":\"/" BUCKET "/fault/3\",\"query\":\"\",\"bodyLength\":1,"
                              "\"status\":200,\"fault\":null"),
                  "log: %s", log);
    free(log);
}
END_TEST

START_TEST(fault_windows_and_raw_bodies)
{
    /* From the 2nd matching request on, every one: a load balancer's page. */
    sgt_s3_set_faults(s3, "[{\"method\": \"GET\", \"query\": \"list-type=2\", \"nth\": 2,"
                          " \"count\": -1, \"action\": \"status\", \"status\": 502,"
                          " \"raw\": \"<html>bad gateway</html>\"}]");
    const char *list = "/" BUCKET "?list-type=2&prefix=none%2F";
    char *body = NULL;
    ck_assert_int_eq(call(s3, "GET", list, NULL, 0, NULL), 200);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(call(s3, "GET", list, NULL, 0, &body), 502);
        ck_assert_str_eq(body, "<html>bad gateway</html>");
        free(body);
    }
    ck_assert_int_eq(sgt_s3_count(s3, "GET", "list-type=2", 502), 3);

    /* A new script starts its counters afresh: 2 faults from the 1st. */
    sgt_s3_set_faults(s3, "[{\"method\": \"GET\", \"query\": \"list-type=2\", \"count\": 2,"
                          " \"action\": \"status\", \"status\": 500}]");
    ck_assert_int_eq(call(s3, "GET", list, NULL, 0, NULL), 500);
    ck_assert_int_eq(call(s3, "GET", list, NULL, 0, NULL), 500);
    ck_assert_int_eq(call(s3, "GET", list, NULL, 0, NULL), 200);
}
END_TEST

START_TEST(bad_fault_script_is_refused)
{
    /* sgt_s3_set_faults would end the test: ask with curl for the reason. */
    sgt_s3_set_faults(s3, "[{\"method\": \"GET\", \"count\": -1, \"action\": \"status\","
                          " \"status\": 500}]");
    char url[128];
    snprintf(url, sizeof(url), "%s/__faults", sgt_s3_endpoint(s3));
    const char *argv[] = {"curl", "-s", "-X", "PUT", "--data", "[{\"action\": \"explode\"}]",
                          url,    NULL};
    sgt_result r;
    ck_assert_int_eq(sgt_run(&r, argv, NULL), 0);
    ck_assert_msg(strstr(r.out, "rule 0: action must be one of"), "proxy said: %s", r.out);
    sgt_result_free(&r);

    /* The script in force stays. */
    ck_assert_int_eq(call(s3, "GET", "/" BUCKET "?list-type=2", NULL, 0, NULL), 500);
}
END_TEST

START_TEST(connection_faults)
{
    size_t len = 256 * 1024;
    unsigned char *data = pattern(len, 3);
    ck_assert_int_eq(call(s3, "PUT", "/" BUCKET "/conn/obj", data, len, NULL), 200);
    sgt_s3_set_faults(s3, "[{\"method\": \"GET\", \"path\": \"/conn/obj$\", \"nth\": 1,"
                          "  \"action\": \"truncate\"},"
                          " {\"method\": \"GET\", \"path\": \"/conn/obj$\", \"nth\": 2,"
                          "  \"action\": \"reset\"},"
                          " {\"method\": \"GET\", \"path\": \"/conn/obj$\", \"nth\": 3,"
                          "  \"action\": \"drop\"},"
                          " {\"method\": \"GET\", \"path\": \"/conn/obj$\", \"nth\": 4,"
                          "  \"action\": \"stall\", \"ms\": 100},"
                          " {\"method\": \"PUT\", \"path\": \"/conn/late$\","
                          "  \"action\": \"delay\", \"ms\": 100}]");

    /* Full Content-Length announced, half the body, then a clean close. */
    reply r = request(s3, "GET", "/" BUCKET "/conn/obj", NULL, 0, NULL, SIGN);
    ck_assert_int_eq(r.rc, CURLE_PARTIAL_FILE);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.len, len / 2);
    ck_assert_int_eq(memcmp(r.body, data, r.len), 0);
    reply_free(&r);

    r = request(s3, "GET", "/" BUCKET "/conn/obj", NULL, 0, NULL, SIGN);
    ck_assert_msg(r.rc == CURLE_RECV_ERROR, "reset gave: %s", curl_easy_strerror(r.rc));
    ck_assert_uint_lt(r.len, len);
    reply_free(&r);

    r = request(s3, "GET", "/" BUCKET "/conn/obj", NULL, 0, NULL, SIGN);
    ck_assert_msg(r.rc == CURLE_GOT_NOTHING, "drop gave: %s", curl_easy_strerror(r.rc));
    reply_free(&r);

    /* Slow but whole. */
    r = request(s3, "GET", "/" BUCKET "/conn/obj", NULL, 0, NULL, SIGN);
    ck_assert_int_eq(r.rc, CURLE_OK);
    ck_assert_uint_eq(r.len, len);
    ck_assert_int_eq(memcmp(r.body, data, len), 0);
    reply_free(&r);

    /* A delayed request is still forwarded. */
    ck_assert_int_eq(call(s3, "PUT", "/" BUCKET "/conn/late", "x", 1, NULL), 200);
    ck_assert_int_eq(call(s3, "HEAD", "/" BUCKET "/conn/late", NULL, 0, NULL), 200);

    char *log = sgt_s3_log(s3);
    const char *expected[] = {"\"status\":200,\"fault\":\"truncate\",\"rule\":0",
                              "\"status\":200,\"fault\":\"reset\",\"rule\":1",
                              "\"status\":0,\"fault\":\"drop\",\"rule\":2",
                              "\"status\":200,\"fault\":\"stall\",\"rule\":3",
                              "\"status\":200,\"fault\":\"delay\",\"rule\":4"};
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        ck_assert_msg(strstr(log, expected[i]), "no %s in log: %s", expected[i], log);
    free(log);
    free(data);
}
END_TEST

/* ------------------------------------------------------------- multipart */

/* Starts an upload of target; returns its id, to free(). */
static char *create_upload(sgt_s3 *service, const char *target)
{
    char create[512], *xml = NULL;
    /* "uploads=", not "uploads": libcurl 7.88 signs the query as written,
     * and SigV4's canonical form has the "=". */
    snprintf(create, sizeof(create), "%s?uploads=", target);
    ck_assert_int_eq(call(service, "POST", create, "", 0, &xml), 200);
    char *id = xml_value(xml, "UploadId");
    ck_assert_msg(id != NULL, "no UploadId in: %s", xml);
    free(xml);
    return id;
}

/* Uploads parts of the given sizes; returns the CompleteMultipartUpload
 * body that lists them, to free(). */
static char *upload_parts(sgt_s3 *service, const char *target, const char *id, const size_t *sizes,
                          int n)
{
    size_t cap = 64 + (size_t)n * 128, used;
    char *complete = malloc(cap);
    ck_assert_ptr_nonnull(complete);
    used = (size_t)snprintf(complete, cap, "<CompleteMultipartUpload>");
    for (int i = 0; i < n; i++) {
        char part[512];
        unsigned char *data = pattern(sizes[i], (uint32_t)(10 + i));
        snprintf(part, sizeof(part), "%s?partNumber=%d&uploadId=%s", target, i + 1, id);
        reply r = request(service, "PUT", part, data, sizes[i], NULL, SIGN);
        ck_assert_int_eq(r.status, 200);
        ck_assert_ptr_nonnull(r.etag);
        used += (size_t)snprintf(complete + used, cap - used,
                                 "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i + 1,
                                 r.etag);
        reply_free(&r);
        free(data);
    }
    snprintf(complete + used, cap - used, "</CompleteMultipartUpload>");
    return complete;
}

/* CompleteMultipartUpload; returns the status, the response in *xml. */
static long complete_upload(sgt_s3 *service, const char *target, const char *id, const char *body,
                            char **xml)
{
    char url[512];
    snprintf(url, sizeof(url), "%s?uploadId=%s", target, id);
    return call(service, "POST", url, body, strlen(body), xml);
}

START_TEST(abort_is_answered_and_tracked)
{
    const char *target = "/" BUCKET "/mp/aborted";
    char url[512], *xml = NULL;
    int open_before = sgt_s3_open_uploads(s3);
    char *id = create_upload(s3, target);
    size_t sizes[] = {1000};
    free(upload_parts(s3, target, id, sizes, 1));
    ck_assert_int_eq(sgt_s3_open_uploads(s3), open_before + 1);
    char *uploads = NULL;

    snprintf(url, sizeof(url), "%s?uploadId=%s", target, id);
    ck_assert_int_eq(call(s3, "DELETE", url, NULL, 0, NULL), 204);
    ck_assert_int_eq(sgt_s3_open_uploads(s3), open_before);
    reply r = request(s3, "GET", "/__uploads", NULL, 0, NULL, 0);
    uploads = r.body;
    ck_assert_ptr_null(strstr(uploads, id));
    ck_assert_msg(strstr(uploads, "\"aborted\":") && !strstr(uploads, "\"aborted\":0"),
                  "uploads: %s", uploads);
    reply_free(&r);

    /* Gone: a second abort, another part and a completion are refused. */
    ck_assert_int_eq(call(s3, "DELETE", url, NULL, 0, &xml), 404);
    assert_error(xml, "NoSuchUpload", id);
    free(xml);
    snprintf(url, sizeof(url), "%s?partNumber=2&uploadId=%s", target, id);
    ck_assert_int_eq(call(s3, "PUT", url, "x", 1, &xml), 404);
    assert_error(xml, "NoSuchUpload", id);
    free(xml);
    ck_assert_int_eq(complete_upload(s3, target, id, "<CompleteMultipartUpload/>", &xml), 404);
    free(xml);
    snprintf(url, sizeof(url), "%s?uploadId=no-such-upload", target);
    ck_assert_int_eq(call(s3, "DELETE", url, NULL, 0, &xml), 404);
    assert_error(xml, "NoSuchUpload", "no-such-upload");
    free(xml);
    ck_assert_int_eq(call(s3, "HEAD", target, NULL, 0, NULL), 404);
    free(id);
}
END_TEST

START_TEST(part_sizes_follow_s3_and_r2)
{
    const char *target = "/" BUCKET "/mp/sizes";
    char *xml = NULL;

    /* Unequal parts (R2 refuses them; S3 would not). */
    char *id = create_upload(s3, target);
    size_t unequal[] = {6 * MiB, 5 * MiB, 1000};
    char *body = upload_parts(s3, target, id, unequal, 3);
    ck_assert_int_eq(complete_upload(s3, target, id, body, &xml), 400);
    assert_error(xml, "InvalidPart", "all parts but the last must have the same size");
    free(xml);
    free(body);
    free(id);

    /* Small parts (S3's 5 MiB minimum). */
    id = create_upload(s3, target);
    size_t small[] = {1000, 1000, 10};
    body = upload_parts(s3, target, id, small, 3);
    ck_assert_int_eq(complete_upload(s3, target, id, body, &xml), 400);
    assert_error(xml, "EntityTooSmall", "less than the minimum part size of 5242880 bytes");
    free(xml);
    free(body);
    free(id);
    ck_assert_int_eq(call(s3, "HEAD", target, NULL, 0, NULL), 404);

    /* 5 MiB, 5 MiB and a smaller last part are fine. */
    id = create_upload(s3, target);
    size_t good[] = {5 * MiB, 5 * MiB, 1000};
    body = upload_parts(s3, target, id, good, 3);
    ck_assert_int_eq(complete_upload(s3, target, id, body, &xml), 200);
    ck_assert_ptr_null(strstr(xml, "<Error>"));
    free(xml);
    free(body);
    free(id);
    char *object = NULL;
    ck_assert_int_eq(call(s3, "GET", target, NULL, 0, &object), 200);
    free(object);
    ck_assert_int_eq(sgt_s3_count(s3, "GET", NULL, 200), 1);
}
END_TEST

START_TEST(small_parts_when_allowed)
{
    const char *target = "/small/mp/obj";
    char *xml = NULL;
    char *id = create_upload(small_parts, target);
    size_t unequal[] = {1000, 999, 10};
    char *body = upload_parts(small_parts, target, id, unequal, 3);
    ck_assert_int_eq(complete_upload(small_parts, target, id, body, &xml), 400);
    assert_error(xml, "InvalidPart", "part 2 of upload");
    free(xml);
    free(body);
    free(id);

    id = create_upload(small_parts, target);
    size_t equal[] = {1000, 1000, 10};
    body = upload_parts(small_parts, target, id, equal, 3);
    ck_assert_int_eq(complete_upload(small_parts, target, id, body, &xml), 200);
    free(xml);
    free(body);
    free(id);
    reply r = request(small_parts, "GET", target, NULL, 0, NULL, SIGN);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.len, 2010);
    reply_free(&r);
}
END_TEST

START_TEST(complete_checks_the_listed_parts)
{
    const char *target = "/small/mp/listed";
    char *xml = NULL;
    int open_before = sgt_s3_open_uploads(small_parts);
    char *id = create_upload(small_parts, target);
    size_t sizes[] = {100, 100};
    free(upload_parts(small_parts, target, id, sizes, 2));

    ck_assert_int_eq(complete_upload(small_parts, target, id,
                                     "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
                                     "<ETag>\"0123\"</ETag></Part></CompleteMultipartUpload>",
                                     &xml),
                     400);
    assert_error(xml, "InvalidPart", "is not the part's ETag");
    free(xml);
    ck_assert_int_eq(complete_upload(small_parts, target, id,
                                     "<CompleteMultipartUpload><Part><PartNumber>3</PartNumber>"
                                     "<ETag>\"0123\"</ETag></Part></CompleteMultipartUpload>",
                                     &xml),
                     400);
    assert_error(xml, "InvalidPart", "part 3 of upload");
    free(xml);
    /* Refused completions leave the upload open. */
    ck_assert_int_eq(sgt_s3_open_uploads(small_parts), open_before + 1);
    free(id);
}
END_TEST

START_TEST(complete_error_leaves_upload_open)
{
    const char *target = "/small/mp/error";
    char *xml = NULL;
    int open_before = sgt_s3_open_uploads(small_parts);
    sgt_s3_set_faults(small_parts, "[{\"method\": \"POST\", \"query\": \"uploadId=\","
                                   " \"action\": \"complete-error\"}]");
    char *id = create_upload(small_parts, target);
    size_t sizes[] = {100, 10};
    char *body = upload_parts(small_parts, target, id, sizes, 2);

    /* 200 with an error in the body, as S3 may answer. */
    ck_assert_int_eq(complete_upload(small_parts, target, id, body, &xml), 200);
    assert_error(xml, "InternalError", NULL);
    free(xml);
    ck_assert_int_eq(sgt_s3_open_uploads(small_parts), open_before + 1);
    ck_assert_int_eq(call(small_parts, "HEAD", target, NULL, 0, NULL), 404);

    /* The retry goes through. */
    ck_assert_int_eq(complete_upload(small_parts, target, id, body, &xml), 200);
    ck_assert_ptr_null(strstr(xml, "<Error>"));
    free(xml);
    ck_assert_int_eq(sgt_s3_open_uploads(small_parts), open_before);
    ck_assert_int_eq(call(small_parts, "HEAD", target, NULL, 0, NULL), 200);
    free(body);
    free(id);
}
END_TEST

static Suite *s3_service_suite(void)
{
    Suite *s = suite_create("s3_service");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"s3cmd_round_trip", s3cmd_round_trip},
        {"s3cmd_multipart_round_trip", s3cmd_multipart_round_trip},
        {"s3cmd_wrong_secret_refused", s3cmd_wrong_secret_refused},
        {"payload_hash_must_match_body", payload_hash_must_match_body},
        {"checksum_headers_must_match_body", checksum_headers_must_match_body},
        {"query_strings_are_checked", query_strings_are_checked},
        {"keys_needing_encoding_round_trip", keys_needing_encoding_round_trip},
        {"status_fault_fires_on_nth_match", status_fault_fires_on_nth_match},
        {"fault_windows_and_raw_bodies", fault_windows_and_raw_bodies},
        {"bad_fault_script_is_refused", bad_fault_script_is_refused},
        {"connection_faults", connection_faults},
        {"abort_is_answered_and_tracked", abort_is_answered_and_tracked},
        {"part_sizes_follow_s3_and_r2", part_sizes_follow_s3_and_r2},
        {"small_parts_when_allowed", small_parts_when_allowed},
        {"complete_checks_the_listed_parts", complete_checks_the_listed_parts},
        {"complete_error_leaves_upload_open", complete_error_leaves_upload_open},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, reset_service, NULL);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    if (sodium_init() < 0)
        return EXIT_FAILURE;
    s3 = sgt_s3_start(BUCKET, 0);
    small_parts = sgt_s3_start("small", 1);
    SRunner *sr = srunner_create(s3_service_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sgt_s3_stop(small_parts);
    sgt_s3_stop(s3);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
