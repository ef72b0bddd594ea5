#include "common/s3_client.h"

#include <ctype.h>
#include <errno.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/interrupt.h"
#include "common/log.h"
#include "common/mem.h"

#define DEFAULT_TIMEOUT_S 60
#define DEFAULT_RETRY_TIME_S 300
/* Idle handles kept per client; more concurrent requests than this still
 * work, their handles are just closed afterwards. */
#define POOL_MAX 64
/* An error answer is a small XML document; more is not read. */
#define ERROR_BODY_MAX (64 * 1024)

struct sg_s3_client {
    char *bucket;
    char *scheme; /* "https" or "http" */
    char *host;   /* the endpoint's host[:port], without the bucket */
    char *endpoint;
    char *region;
    bool path_style;
    bool insecure;
    char *ca_file;
    long timeout_s;
    sg_retry_policy retry;
    char *access_key;
    char *secret_key;
    char *session_token;

    pthread_mutex_t pool_lock;
    CURL *pool[POOL_MAX];
    size_t pool_count;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static const char *first_env(const char *a, const char *b)
{
    const char *v = getenv(a);
    if (v && *v)
        return v;
    v = b ? getenv(b) : NULL;
    return v && *v ? v : NULL;
}

/* Virtual-hosted addressing puts the bucket in the host name, which only
 * works for names that are valid DNS labels, for a host name endpoint (not
 * an IP address or localhost), and over TLS only without dots (the
 * wildcard certificate covers one label). Otherwise path style is the only
 * style that can work. */
static bool needs_path_style(const char *bucket, const char *host, bool tls)
{
    size_t host_len = strcspn(host, ":");
    bool ip = true;
    if (host[0] == '[')
        return true;
    for (size_t i = 0; i < host_len; i++)
        if (!isdigit((unsigned char)host[i]) && host[i] != '.')
            ip = false;
    if (ip || (host_len == 9 && strncasecmp(host, "localhost", 9) == 0))
        return true;
    for (const char *c = bucket; *c; c++) {
        if (!(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '-' || *c == '.') ||
            (tls && *c == '.'))
            return true;
    }
    return false;
}

/* "https://host[:port][/]" or "host[:port]" (https assumed). The default
 * port is dropped so the Host header we sign is the one a server expects. */
static int parse_endpoint(sg_s3_client *c, const char *endpoint, sg_error *err)
{
    const char *rest = endpoint, *end;
    size_t host_len;
    if (strncasecmp(rest, "https://", 8) == 0) {
        c->scheme = sg_strdup("https");
        rest += 8;
    } else if (strncasecmp(rest, "http://", 7) == 0) {
        c->scheme = sg_strdup("http");
        rest += 7;
    } else if (strstr(rest, "://")) {
        sg_error_set(err, SG_E_USAGE, "S3 endpoint \"%s\" is not an http:// or https:// URL",
                     endpoint);
        return SG_E_USAGE;
    } else {
        c->scheme = sg_strdup("https");
    }
    host_len = strcspn(rest, "/?#");
    end = rest + host_len;
    if (host_len == 0 || (*end && strcmp(end, "/") != 0) || memchr(rest, '@', host_len)) {
        sg_error_set(err, SG_E_USAGE, "S3 endpoint \"%s\" must be scheme://host[:port]", endpoint);
        sg_error_hint(err, "the bucket and prefix go in the store URL: s3://BUCKET/PREFIX");
        return SG_E_USAGE;
    }
    if (host_len > 4 && strcmp(c->scheme ? c->scheme : "", "https") == 0 &&
        strncmp(end - 4, ":443", 4) == 0)
        host_len -= 4;
    else if (host_len > 3 && strcmp(c->scheme ? c->scheme : "", "http") == 0 &&
             strncmp(end - 3, ":80", 3) == 0)
        host_len -= 3;
    c->host = sg_strndup(rest, host_len);
    if (!c->scheme || !c->host)
        return sg_error_set(err, SG_E_NOMEM, "out of memory (S3 endpoint)");
    for (char *h = c->host; *h; h++)
        *h = (char)tolower((unsigned char)*h);
    return 0;
}

int sg_s3_client_new(sg_s3_client **out, const sg_store_config *config, const char *bucket,
                     sg_error *err)
{
    sg_s3_client *c = NULL;
    const char *endpoint, *region, *access_key, *secret_key, *token;
    sg_retry_policy policy = SG_RETRY_POLICY_DEFAULT;
    int rc = 0;
    *out = NULL;

    pthread_once(&curl_once, curl_init_once);
    if (curl_init_result != CURLE_OK)
        return sg_error_set(err, SG_E_INTERNAL, "cannot initialize libcurl: %s",
                            curl_easy_strerror(curl_init_result));

    access_key = first_env("AWS_ACCESS_KEY_ID", NULL);
    secret_key = first_env("AWS_SECRET_ACCESS_KEY", NULL);
    token = first_env("AWS_SESSION_TOKEN", NULL);
    if (!access_key || !secret_key) {
        sg_error_set(err, SG_E_USAGE, "no S3 credentials: %s is not set",
                     access_key ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        sg_error_hint(err, "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
                           "AWS_SESSION_TOKEN for temporary credentials)");
        return SG_E_USAGE;
    }
    region = config->s3_region ? config->s3_region : first_env("AWS_REGION", "AWS_DEFAULT_REGION");
    if (!region)
        region = "us-east-1";
    endpoint = config->s3_endpoint ? config->s3_endpoint
                                   : first_env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");

    if (!(c = sg_calloc(1, sizeof(*c))))
        return sg_error_set(err, SG_E_NOMEM, "out of memory (S3 client)");
    pthread_mutex_init(&c->pool_lock, NULL);
    c->bucket = sg_strdup(bucket);
    c->region = sg_strdup(region);
    c->access_key = sg_strdup(access_key);
    c->secret_key = sg_strdup(secret_key);
    c->session_token = token ? sg_strdup(token) : NULL;
    c->ca_file = config->s3_ca_file ? sg_strdup(config->s3_ca_file) : NULL;
    if (!c->bucket || !c->region || !c->access_key || !c->secret_key ||
        (token && !c->session_token) || (config->s3_ca_file && !c->ca_file)) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (S3 client)");
        goto done;
    }
    for (const char *r = region; *r; r++) {
        if (!isalnum((unsigned char)*r) && *r != '-') {
            rc = sg_error_set(err, SG_E_USAGE, "invalid S3 region \"%s\"", region);
            goto done;
        }
    }
    if (endpoint) {
        if ((rc = parse_endpoint(c, endpoint, err)) < 0)
            goto done;
    } else {
        c->scheme = sg_strdup("https");
        c->host = sg_asprintf("s3.%s.amazonaws.com", region);
        if (!c->scheme || !c->host) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory (S3 client)");
            goto done;
        }
    }
    c->endpoint = sg_asprintf("%s://%s", c->scheme, c->host);
    if (!c->endpoint) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (S3 client)");
        goto done;
    }
    c->path_style =
        config->s3_path_style || needs_path_style(bucket, c->host, strcmp(c->scheme, "https") == 0);
    c->insecure = config->s3_insecure;
    if (c->ca_file && access(c->ca_file, R_OK) != 0) {
        rc = sg_error_set(err, SG_E_USAGE, "cannot read CA file \"%s\" (--s3-ca-file): %s",
                          c->ca_file, strerror(errno));
        goto done;
    }
    c->timeout_s = config->s3_timeout > 0 ? config->s3_timeout : DEFAULT_TIMEOUT_S;
    policy.budget_ms =
        (uint64_t)(config->s3_retry_time > 0 ? config->s3_retry_time : DEFAULT_RETRY_TIME_S) * 1000;
    c->retry = policy;
    *out = c;
    c = NULL;
done:
    sg_s3_client_free(c);
    return rc;
}

static void free_secret(char *s)
{
    if (s) {
        sodium_memzero(s, strlen(s));
        free(s);
    }
}

void sg_s3_client_free(sg_s3_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->pool_count; i++)
        curl_easy_cleanup(c->pool[i]);
    pthread_mutex_destroy(&c->pool_lock);
    free(c->bucket);
    free(c->scheme);
    free(c->host);
    free(c->endpoint);
    free(c->region);
    free(c->ca_file);
    free(c->access_key);
    free_secret(c->secret_key);
    free_secret(c->session_token);
    free(c);
}

const char *sg_s3_client_endpoint(const sg_s3_client *c)
{
    return c->endpoint;
}

const char *sg_s3_client_region(const sg_s3_client *c)
{
    return c->region;
}

bool sg_s3_client_path_style(const sg_s3_client *c)
{
    return c->path_style;
}

void sg_s3_client_set_retry(sg_s3_client *c, const sg_retry_policy *policy)
{
    c->retry = *policy;
}

char *sg_s3_client_describe(const sg_s3_client *c, const char *key)
{
    return key ? sg_asprintf("s3://%s/%s", c->bucket, key) : sg_asprintf("s3://%s", c->bucket);
}

static CURL *take_handle(sg_s3_client *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->pool_lock);
    if (c->pool_count)
        h = c->pool[--c->pool_count];
    pthread_mutex_unlock(&c->pool_lock);
    return h ? h : curl_easy_init();
}

static void return_handle(sg_s3_client *c, CURL *h)
{
    pthread_mutex_lock(&c->pool_lock);
    if (c->pool_count < POOL_MAX) {
        c->pool[c->pool_count++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->pool_lock);
    if (h)
        curl_easy_cleanup(h);
}

/* ---- one attempt ---- */

typedef struct transfer {
    const sg_s3_request *req;
    size_t sent;
    sg_buf *response;
    sg_buf error_body;
    bool nomem;
    bool ignored_range; /* a 200 with the whole object where a range was asked */
    sg_s3_response head;
} transfer;

static size_t read_body(char *dest, size_t size, size_t n, void *ctx)
{
    transfer *t = ctx;
    size_t left = t->req->body_len - t->sent, take = size * n < left ? size * n : left;
    if (take)
        memcpy(dest, (const char *)t->req->body + t->sent, take);
    t->sent += take;
    return take;
}

/* Lets libcurl rewind the body when it must send it again on the same
 * attempt (a connection that closed before the request went out). */
static int seek_body(void *ctx, curl_off_t offset, int origin)
{
    transfer *t = ctx;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > t->req->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    t->sent = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t write_body(char *data, size_t size, size_t n, void *ctx)
{
    transfer *t = ctx;
    size_t len = size * n;
    sg_error ignored;
    if (t->head.status >= 200 && t->head.status < 300) {
        /* A 200 to a ranged GET is the whole object: usable only when the
         * range asked for was the whole object anyway. */
        if (t->head.status == 200 && t->req->range_len &&
            (t->req->range_offset != 0 || t->head.content_length > t->req->range_len)) {
            t->ignored_range = true;
            return 0;
        }
        if (!t->response)
            return len;
        if (sg_buf_append(t->response, data, len, &ignored) < 0) {
            t->nomem = true;
            return 0;
        }
        return len;
    }
    if (t->error_body.len < ERROR_BODY_MAX) {
        size_t take =
            len < ERROR_BODY_MAX - t->error_body.len ? len : ERROR_BODY_MAX - t->error_body.len;
        if (sg_buf_append(&t->error_body, data, take, &ignored) < 0) {
            t->nomem = true;
            return 0;
        }
    }
    return len;
}

static void copy_header_value(char *dest, size_t size, const char *value, size_t len)
{
    while (len && (value[len - 1] == '\r' || value[len - 1] == '\n' || value[len - 1] == ' '))
        len--;
    while (len && *value == ' ') {
        value++;
        len--;
    }
    if (len >= size)
        len = size - 1;
    memcpy(dest, value, len);
    dest[len] = '\0';
}

static bool header_is(const char *line, size_t len, const char *name, const char **value,
                      size_t *value_len)
{
    size_t n = strlen(name);
    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return false;
    *value = line + n + 1;
    *value_len = len - n - 1;
    return true;
}

static size_t on_header(char *line, size_t size, size_t n, void *ctx)
{
    transfer *t = ctx;
    size_t len = size * n, vlen;
    const char *v;
    char num[32];
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* A new response (after a 100 Continue): forget the previous one's. */
        const char *sp = memchr(line, ' ', len);
        memset(&t->head, 0, sizeof(t->head));
        t->head.status = sp ? strtol(sp + 1, NULL, 10) : 0;
    } else if (header_is(line, len, "etag", &v, &vlen)) {
        copy_header_value(t->head.etag, sizeof(t->head.etag), v, vlen);
    } else if (header_is(line, len, "content-length", &v, &vlen)) {
        copy_header_value(num, sizeof(num), v, vlen);
        t->head.content_length = strtoull(num, NULL, 10);
    } else if (header_is(line, len, "content-range", &v, &vlen)) {
        /* "bytes 0-99/1234": the total follows the slash. */
        char range[128];
        const char *slash;
        copy_header_value(range, sizeof(range), v, vlen);
        if ((slash = strchr(range, '/')) && isdigit((unsigned char)slash[1]))
            t->head.object_size = strtoull(slash + 1, NULL, 10);
    } else if (header_is(line, len, "x-amz-request-id", &v, &vlen)) {
        copy_header_value(t->head.request_id, sizeof(t->head.request_id), v, vlen);
    }
    return len;
}

/* Deletes are how a failed or interrupted run cleans up (aborting an upload,
 * removing packs), so they go ahead after SIGINT; a second signal still ends
 * the process at once. */
static bool stops_on_interrupt(const sg_s3_request *req)
{
    return strcmp(req->method, "DELETE") != 0;
}

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const transfer *t = ctx;
    return sg_interrupted() && stops_on_interrupt(t->req) ? 1 : 0;
}

typedef struct ca_settings {
    const char *file;
} ca_settings;

/* Adds the CA file to the certificates libcurl already trusts, rather than
 * replacing them as CURLOPT_CAINFO would: a private CA for one endpoint
 * should not stop AWS from verifying. */
static CURLcode add_ca_file(CURL *h, void *ssl_ctx, void *ctx)
{
    X509_STORE *store = SSL_CTX_get_cert_store((SSL_CTX *)ssl_ctx);
    return X509_STORE_load_file(store, (const char *)ctx) == 1 ? CURLE_OK
                                                               : CURLE_SSL_CACERT_BADFILE;
}

typedef struct built_request {
    sg_buf url;
    sg_buf path;
    sg_buf query;
    sg_buf auth;
    struct curl_slist *headers;
} built_request;

static void built_request_free(built_request *b)
{
    sg_buf_free(&b->url);
    sg_buf_free(&b->path);
    sg_buf_free(&b->query);
    sg_buf_free(&b->auth);
    curl_slist_free_all(b->headers);
    memset(b, 0, sizeof(*b));
}

static int add_header(built_request *b, const char *name, const char *value, sg_error *err)
{
    char *line = sg_asprintf("%s: %s", name, value);
    struct curl_slist *grown = line ? curl_slist_append(b->headers, line) : NULL;
    free(line);
    if (!grown)
        return sg_error_set(err, SG_E_NOMEM, "out of memory (building an S3 request)");
    b->headers = grown;
    return 0;
}

/* Builds the URL, the signed headers and the Authorization for one attempt:
 * the date is taken anew each time, so a retry hours later is still valid. */
static int build_request(sg_s3_client *c, const sg_s3_request *req, const char *payload_hex,
                         const char *checksum_b64, built_request *b, sg_error *err)
{
    char date[SG_AMZ_DATE_LEN], range[64];
    sg_header signed_headers[16];
    size_t n = 0;
    sg_sigv4_credentials creds = {c->access_key, c->secret_key, c->region, "s3"};
    sg_sigv4_request sig;
    char *host = NULL;
    int rc;

    sg_amz_date(date, (int64_t)time(NULL));
    host = c->path_style ? sg_strdup(c->host) : sg_asprintf("%s.%s", c->bucket, c->host);
    if (!host)
        return sg_error_set(err, SG_E_NOMEM, "out of memory (building an S3 request)");
    if (c->path_style) {
        if ((rc = sg_buf_append(&b->path, "/", 1, err)) < 0 ||
            (rc = sg_uri_encode(&b->path, c->bucket, 0, err)) < 0)
            goto done;
    }
    if (req->key || !c->path_style) {
        if ((rc = sg_buf_append(&b->path, "/", 1, err)) < 0 ||
            (req->key && (rc = sg_uri_encode(&b->path, req->key, 1, err)) < 0))
            goto done;
    }
    if ((rc = sg_buf_terminate(&b->path, err)) < 0 ||
        (rc = sg_sigv4_query(&b->query, req->query, req->nquery, err)) < 0 ||
        (rc = sg_buf_terminate(&b->query, err)) < 0)
        goto done;

    signed_headers[n++] = (sg_header){"host", host};
    signed_headers[n++] = (sg_header){"x-amz-date", date};
    signed_headers[n++] = (sg_header){"x-amz-content-sha256", payload_hex};
    if (c->session_token)
        signed_headers[n++] = (sg_header){"x-amz-security-token", c->session_token};
    if (checksum_b64)
        signed_headers[n++] = (sg_header){"x-amz-checksum-sha256", checksum_b64};
    if (req->range_len) {
        snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, req->range_offset,
                 req->range_offset + req->range_len - 1);
        signed_headers[n++] = (sg_header){"range", range};
    }
    for (size_t i = 0; i < req->nheaders && n < sizeof(signed_headers) / sizeof(*signed_headers);
         i++)
        signed_headers[n++] = req->headers[i];

    sig = (sg_sigv4_request){
        req->method, (char *)b->path.data, (char *)b->query.data, signed_headers, n, payload_hex,
        date};
    if ((rc = sg_sigv4_authorization(&b->auth, &sig, &creds, err)) < 0 ||
        (rc = sg_buf_terminate(&b->auth, err)) < 0)
        goto done;
    for (size_t i = 0; i < n; i++)
        if ((rc = add_header(b, signed_headers[i].name, signed_headers[i].value, err)) < 0)
            goto done;
    /* No "Expect: 100-continue" round trip before each part, and no
     * Content-Type that would then have to be signed. */
    if ((rc = add_header(b, "authorization", (char *)b->auth.data, err)) < 0 ||
        (rc = add_header(b, "expect", "", err)) < 0)
        goto done;
    if (!(b->headers = curl_slist_append(b->headers, "content-type:"))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (building an S3 request)");
        goto done;
    }
    if ((rc = sg_buf_append(&b->url, c->scheme, strlen(c->scheme), err)) < 0 ||
        (rc = sg_buf_append(&b->url, "://", 3, err)) < 0 ||
        (rc = sg_buf_append(&b->url, host, strlen(host), err)) < 0 ||
        (rc = sg_buf_append(&b->url, b->path.data, b->path.len, err)) < 0 ||
        (b->query.len && ((rc = sg_buf_append(&b->url, "?", 1, err)) < 0 ||
                          (rc = sg_buf_append(&b->url, b->query.data, b->query.len, err)) < 0)) ||
        (rc = sg_buf_terminate(&b->url, err)) < 0)
        goto done;
done:
    free(host);
    return rc;
}

static void setup_handle(sg_s3_client *c, CURL *h, const sg_s3_request *req, built_request *b,
                         transfer *t, char *curl_error)
{
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, (char *)b->url.data);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, b->headers);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_error);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->timeout_s);
    /* A transfer that moves no byte for timeout_s is dead; one that is just
     * long (a 1 GiB part on a slow link) is not. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->timeout_s);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    if (c->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (c->ca_file) {
        curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, add_ca_file);
        curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, c->ca_file);
    }
    if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_body);
        curl_easy_setopt(h, CURLOPT_READDATA, t);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_body);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, t);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_len);
    } else if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
    }
}

sg_s3_outcome sg_s3_classify(int curl_code, long status, const char *error_code)
{
    switch ((CURLcode)curl_code) {
    case CURLE_OK:
        break;
    /* The network or the server let us down mid-way: another attempt on a
     * fresh connection may well succeed. */
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_SSL_CONNECT_ERROR:
        return SG_S3_RETRY;
    default:
        return SG_S3_FAIL;
    }
    if (status >= 200 && status < 300)
        return SG_S3_DONE;
    if (status >= 500 || status == 408 || status == 429)
        return SG_S3_RETRY;
    /* S3 answers 400 RequestTimeout when the client sent too slowly, and
     * some servers send SlowDown or InternalError codes with other statuses. */
    if (error_code &&
        (strcmp(error_code, "RequestTimeout") == 0 || strcmp(error_code, "SlowDown") == 0 ||
         strcmp(error_code, "InternalError") == 0 || strcmp(error_code, "ServiceUnavailable") == 0))
        return SG_S3_RETRY;
    return SG_S3_FAIL;
}

/* ---- messages ---- */

static const char *method_action(const sg_s3_request *req)
{
    const char *method = req->method;
    if (!req->key && strcmp(method, "GET") == 0)
        return "list";
    if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0)
        return "write";
    if (strcmp(method, "DELETE") == 0)
        return "delete";
    if (strcmp(method, "HEAD") == 0)
        return "look up";
    return "read";
}

static void describe_http_failure(sg_s3_client *c, const sg_s3_request *req, const char *what,
                                  long status, const sg_s3_error_doc *doc, unsigned attempts,
                                  sg_error *err)
{
    const char *code = doc->code[0] ? doc->code : NULL;
    int ecode = SG_E_STORE;
    char said[700] = "";
    if (code)
        snprintf(said, sizeof(said), ": %s%s%s", code, doc->message[0] ? ": " : "", doc->message);
    if (status == 404 && (!code || strcmp(code, "NoSuchKey") == 0) && req->key)
        ecode = SG_E_NOT_FOUND;
    sg_error_set(err, ecode, "cannot %s %s: HTTP %ld%s", method_action(req), what, status, said);
    if (attempts > 1 || doc->request_id[0])
        sg_error_detail(err, "%s %s; %u attempt%s%s%s", req->method, c->endpoint, attempts,
                        attempts == 1 ? "" : "s", doc->request_id[0] ? "; request id " : "",
                        doc->request_id);
    if (!code) {
        if (status == 403)
            sg_error_hint(err, "access denied or a wrong signature: check AWS_ACCESS_KEY_ID, "
                               "AWS_SECRET_ACCESS_KEY and the bucket's policy");
        else if (status == 404 && !req->key)
            sg_error_hint(err, "check that bucket \"%s\" exists", c->bucket);
        else if (status == 301 || status == 307)
            sg_error_hint(err,
                          "the bucket is in another region than %s: set --s3-region or "
                          "AWS_REGION",
                          c->region);
        return;
    }
    if (strcmp(code, "SignatureDoesNotMatch") == 0)
        sg_error_hint(err,
                      "the secret key does not match access key id %s: check "
                      "AWS_SECRET_ACCESS_KEY",
                      c->access_key);
    else if (strcmp(code, "InvalidAccessKeyId") == 0)
        sg_error_hint(err, "the server does not know access key id %s: check AWS_ACCESS_KEY_ID",
                      c->access_key);
    else if (strcmp(code, "RequestTimeTooSkewed") == 0)
        sg_error_hint(err, "this machine's clock is too far from the server's: synchronize it "
                           "(NTP)");
    else if (strcmp(code, "ExpiredToken") == 0 || strcmp(code, "InvalidToken") == 0 ||
             strcmp(code, "TokenRefreshRequired") == 0)
        sg_error_hint(err, "the temporary credentials have expired: renew AWS_SESSION_TOKEN with "
                           "the other AWS_* variables");
    else if (strcmp(code, "NoSuchBucket") == 0)
        sg_error_hint(err, "bucket \"%s\" does not exist at %s: create it or fix the store URL",
                      c->bucket, c->endpoint);
    else if (strcmp(code, "AccessDenied") == 0)
        sg_error_hint(err,
                      "the credentials of access key id %s may not %s this; check the "
                      "bucket's and the user's policies",
                      c->access_key, method_action(req));
    else if (strcmp(code, "PermanentRedirect") == 0 ||
             strcmp(code, "AuthorizationHeaderMalformed") == 0 ||
             strcmp(code, "IllegalLocationConstraintException") == 0)
        sg_error_hint(err,
                      "the bucket may be in another region than %s: set --s3-region or "
                      "AWS_REGION",
                      c->region);
}

static void describe_curl_failure(sg_s3_client *c, const sg_s3_request *req, const char *what,
                                  CURLcode code, const char *curl_error, unsigned attempts,
                                  sg_error *err)
{
    const char *reason = curl_error[0] ? curl_error : curl_easy_strerror(code);
    sg_error_set(err, SG_E_STORE, "cannot %s %s: %s", method_action(req), what, reason);
    sg_error_detail(err, "%s %s; %u attempt%s", req->method, c->endpoint, attempts,
                    attempts == 1 ? "" : "s");
    switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        sg_error_hint(err,
                      "check that the S3 server at %s is up, and --s3-endpoint or "
                      "AWS_ENDPOINT_URL_S3",
                      c->endpoint);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        sg_error_hint(err, "the server sent nothing for %ld s; --s3-timeout sets how long to wait",
                      c->timeout_s);
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        sg_error_hint(err, "the server's TLS certificate is not trusted: add its CA with "
                           "--s3-ca-file FILE, or turn verification off with --s3-insecure");
        break;
    default:
        break;
    }
}

/* A listing is described by the prefix it lists. */
static const char *listed_prefix(const sg_s3_request *req)
{
    for (size_t i = 0; i < req->nquery; i++)
        if (strcmp(req->query[i].name, "prefix") == 0)
            return req->query[i].value;
    return NULL;
}

static void sleep_ms(uint64_t ms);

void sg_s3_client_backoff(sg_s3_client *c, unsigned retry)
{
    sleep_ms(sg_retry_delay_ms(&c->retry, retry, randombytes_random()));
}

static void sleep_ms(uint64_t ms)
{
    /* In slices, so that SIGINT is noticed during a long backoff. */
    while (ms && !sg_interrupted()) {
        uint64_t slice = ms < 100 ? ms : 100;
        struct timespec ts = {0, (long)slice * 1000000L};
        nanosleep(&ts, NULL);
        ms -= slice;
    }
}

int sg_s3_perform(sg_s3_client *c, const sg_s3_request *req, sg_s3_response *resp, sg_error *err)
{
    uint8_t digest[32];
    char payload_hex[SG_SHA256_HEX_LEN];
    char checksum_b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    char curl_error[CURL_ERROR_SIZE];
    char *what = NULL;
    CURL *h = NULL;
    transfer t = {0};
    uint64_t started = sg_monotonic_ms();
    unsigned attempts = 0;
    int rc = 0;

    if (req->body_sha256)
        memcpy(digest, req->body_sha256, 32);
    else
        sg_sha256(digest, req->body ? req->body : "", req->body_len);
    sg_hex_encode(payload_hex, digest, 32);
    sodium_bin2base64(checksum_b64, sizeof(checksum_b64), digest, 32,
                      sodium_base64_VARIANT_ORIGINAL);
    if (!(what = sg_s3_client_describe(c, req->key ? req->key : listed_prefix(req))) ||
        !(h = take_handle(c))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (S3 request)");
        goto done;
    }

    for (;;) {
        built_request b = {0};
        sg_s3_error_doc doc = {0};
        CURLcode code;
        sg_s3_outcome outcome;
        uint64_t delay;

        if (stops_on_interrupt(req) && (rc = sg_interrupt_check(err)) < 0)
            goto done;
        memset(&t, 0, sizeof(t));
        t.req = req;
        t.response = req->response;
        if (req->response)
            sg_buf_reset(req->response);
        curl_error[0] = '\0';
        if ((rc = build_request(c, req, payload_hex, req->send_checksum ? checksum_b64 : NULL, &b,
                                err)) < 0) {
            built_request_free(&b);
            goto done;
        }
        setup_handle(c, h, req, &b, &t, curl_error);
        attempts++;
        code = curl_easy_perform(h);
        built_request_free(&b);
        if (t.nomem) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory (reading the answer from %s)", what);
            goto done;
        }
        if (code == CURLE_ABORTED_BY_CALLBACK && sg_interrupted()) {
            rc = sg_interrupt_check(err);
            goto done;
        }
        if (t.ignored_range) {
            rc = sg_error_set(err, SG_E_STORE,
                              "cannot read %s: the server ignored the Range "
                              "header and sent the whole object",
                              what);
            goto done;
        }
        if (code == CURLE_OK && (t.head.status < 200 || t.head.status >= 300))
            sg_s3_xml_parse_error(&doc, (const char *)t.error_body.data, t.error_body.len);
        outcome = sg_s3_classify(code, code == CURLE_OK ? t.head.status : 0,
                                 doc.code[0] ? doc.code : NULL);
        if (outcome == SG_S3_DONE)
            break;
        snprintf(t.head.error_code, sizeof(t.head.error_code), "%s", doc.code);
        if (req->missing_ok && code == CURLE_OK && t.head.status == 404 &&
            (!doc.code[0] || strcmp(doc.code, "NoSuchKey") == 0)) {
            rc = sg_error_set(err, SG_E_NOT_FOUND, "%s not found", what);
            goto done;
        }
        delay = sg_retry_delay_ms(&c->retry, attempts - 1, randombytes_random());
        if (outcome == SG_S3_RETRY &&
            sg_retry_allowed(&c->retry, attempts, sg_monotonic_ms() - started, delay)) {
            if (code != CURLE_OK)
                sg_log_debug("%s %s: %s; retrying in %" PRIu64 " ms", req->method, what,
                             curl_error[0] ? curl_error : curl_easy_strerror(code), delay);
            else
                sg_log_debug("%s %s: HTTP %ld %s; retrying in %" PRIu64 " ms", req->method, what,
                             t.head.status, doc.code, delay);
            sg_buf_free(&t.error_body);
            sleep_ms(delay);
            continue;
        }
        if (code != CURLE_OK)
            describe_curl_failure(c, req, what, code, curl_error, attempts, err);
        else
            describe_http_failure(c, req, what, t.head.status, &doc, attempts, err);
        rc = err->code;
        goto done;
    }
done:
    if (resp) {
        *resp = t.head;
        if (!resp->object_size)
            resp->object_size = resp->content_length;
        resp->attempts = attempts;
    }
    sg_buf_free(&t.error_body);
    if (h)
        return_handle(c, h);
    free(what);
    return rc;
}
