#include "common/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/mem.h"

static void hmac_sha256(uint8_t out[32], const void *key, size_t key_len, const char *msg)
{
    unsigned int out_len = 32;
    if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), out,
              &out_len))
        abort();
}

void sg_amz_date(char out[SG_AMZ_DATE_LEN], int64_t unix_time)
{
    time_t t = (time_t)unix_time;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, SG_AMZ_DATE_LEN, "%Y%m%dT%H%M%SZ", &tm);
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int sg_uri_encode(sg_buf *out, const char *s, int keep_slash, sg_error *err)
{
    static const char digits[] = "0123456789ABCDEF";
    int rc;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char enc[3] = {'%', digits[*p >> 4], digits[*p & 15]};
        if (unreserved(*p) || (keep_slash && *p == '/'))
            rc = sg_buf_append(out, p, 1, err);
        else
            rc = sg_buf_append(out, enc, 3, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

typedef struct encoded_param {
    char *name;
    char *value;
} encoded_param;

static int compare_params(const void *a, const void *b)
{
    const encoded_param *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static char *encode_string(const char *s, sg_error *err)
{
    sg_buf b = {0};
    if (sg_uri_encode(&b, s, 0, err) < 0 || sg_buf_terminate(&b, err) < 0) {
        sg_buf_free(&b);
        return NULL;
    }
    if (!b.data)
        return sg_strdup("");
    return (char *)b.data;
}

int sg_sigv4_query(sg_buf *out, const sg_query_param *params, size_t count, sg_error *err)
{
    encoded_param *enc = NULL;
    size_t done_count = 0;
    int rc = 0;
    if (count == 0)
        return 0;
    if (!(enc = sg_calloc(count, sizeof(*enc)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (building a query string)");
        goto done;
    }
    for (; done_count < count; done_count++) {
        encoded_param *e = &enc[done_count];
        e->name = encode_string(params[done_count].name, err);
        e->value =
            e->name ? encode_string(params[done_count].value ? params[done_count].value : "", err)
                    : NULL;
        if (!e->name || !e->value) {
            done_count++;
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory (building a query string)");
            goto done;
        }
    }
    /* Sorting by encoded name is what SigV4 specifies (byte order of the
     * encoded form, which differs from the raw form for reserved bytes). */
    qsort(enc, count, sizeof(*enc), compare_params);
    for (size_t i = 0; i < count; i++) {
        if ((i && (rc = sg_buf_append(out, "&", 1, err)) < 0) ||
            (rc = sg_buf_append(out, enc[i].name, strlen(enc[i].name), err)) < 0 ||
            (rc = sg_buf_append(out, "=", 1, err)) < 0 ||
            (rc = sg_buf_append(out, enc[i].value, strlen(enc[i].value), err)) < 0)
            goto done;
    }
done:
    for (size_t i = 0; enc && i < done_count; i++) {
        free(enc[i].name);
        free(enc[i].value);
    }
    free(enc);
    return rc;
}

static int compare_headers(const void *a, const void *b)
{
    const sg_header *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Canonical header value: leading and trailing blanks dropped, inner runs of
 * blanks folded to one space. */
static int append_trimmed(sg_buf *out, const char *value, sg_error *err)
{
    const char *p = value;
    bool pending_space = false;
    int rc;
    while (*p == ' ' || *p == '\t')
        p++;
    for (; *p; p++) {
        if (*p == ' ' || *p == '\t') {
            pending_space = true;
            continue;
        }
        if (pending_space && (rc = sg_buf_append(out, " ", 1, err)) < 0)
            return rc;
        pending_space = false;
        if ((rc = sg_buf_append(out, p, 1, err)) < 0)
            return rc;
    }
    return 0;
}

static int append_str(sg_buf *out, const char *s, sg_error *err)
{
    return sg_buf_append(out, s, strlen(s), err);
}

int sg_sigv4_authorization(sg_buf *out, const sg_sigv4_request *req,
                           const sg_sigv4_credentials *creds, sg_error *err)
{
    const sg_header **sorted = NULL;
    sg_buf canonical = {0}, signed_names = {0}, to_sign = {0}, key = {0};
    char date[9], scope[256], hash_hex[SG_SHA256_HEX_LEN], sig_hex[SG_SHA256_HEX_LEN];
    uint8_t hash[32], k[32];
    int rc = 0;

    if (!(sorted = sg_calloc(req->nheaders ? req->nheaders : 1, sizeof(*sorted))))
        goto nomem;
    for (size_t i = 0; i < req->nheaders; i++) {
        for (const char *c = req->headers[i].name; *c; c++) {
            if (*c >= 'A' && *c <= 'Z') {
                rc = sg_error_set(err, SG_E_USAGE, "header name \"%s\" is not lowercase",
                                  req->headers[i].name);
                goto done;
            }
        }
        sorted[i] = &req->headers[i];
    }
    qsort(sorted, req->nheaders, sizeof(*sorted), compare_headers);
    for (size_t i = 1; i < req->nheaders; i++) {
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
            rc = sg_error_set(err, SG_E_USAGE, "header \"%s\" given twice", sorted[i]->name);
            goto done;
        }
    }

    /* The canonical request: method, URI, query, headers, signed header
     * names, payload hash, each on its own line. */
    if (append_str(&canonical, req->method, err) < 0 || append_str(&canonical, "\n", err) < 0 ||
        append_str(&canonical, req->uri, err) < 0 || append_str(&canonical, "\n", err) < 0 ||
        append_str(&canonical, req->query ? req->query : "", err) < 0 ||
        append_str(&canonical, "\n", err) < 0)
        goto nomem;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (append_str(&canonical, sorted[i]->name, err) < 0 ||
            append_str(&canonical, ":", err) < 0 ||
            append_trimmed(&canonical, sorted[i]->value, err) < 0 ||
            append_str(&canonical, "\n", err) < 0 ||
            (i && append_str(&signed_names, ";", err) < 0) ||
            append_str(&signed_names, sorted[i]->name, err) < 0)
            goto nomem;
    }
    if (sg_buf_terminate(&signed_names, err) < 0 || append_str(&canonical, "\n", err) < 0 ||
        append_str(&canonical, (char *)signed_names.data, err) < 0 ||
        append_str(&canonical, "\n", err) < 0 ||
        append_str(&canonical, req->payload_sha256, err) < 0)
        goto nomem;

    memcpy(date, req->amz_date, 8);
    date[8] = '\0';
    snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, creds->region, creds->service);
    sg_sha256(hash, canonical.data, canonical.len);
    sg_hex_encode(hash_hex, hash, 32);
    if (append_str(&to_sign, "AWS4-HMAC-SHA256\n", err) < 0 ||
        append_str(&to_sign, req->amz_date, err) < 0 || append_str(&to_sign, "\n", err) < 0 ||
        append_str(&to_sign, scope, err) < 0 || append_str(&to_sign, "\n", err) < 0 ||
        append_str(&to_sign, hash_hex, err) < 0 || sg_buf_terminate(&to_sign, err) < 0)
        goto nomem;

    /* The signing key chains HMACs over date, region, service and the
     * literal "aws4_request", starting from "AWS4" + secret. */
    if (append_str(&key, "AWS4", err) < 0 || append_str(&key, creds->secret_key, err) < 0)
        goto nomem;
    hmac_sha256(k, key.data, key.len, date);
    hmac_sha256(k, k, 32, creds->region);
    hmac_sha256(k, k, 32, creds->service);
    hmac_sha256(k, k, 32, "aws4_request");
    hmac_sha256(hash, k, 32, (const char *)to_sign.data);
    sg_hex_encode(sig_hex, hash, 32);

    if (append_str(out, "AWS4-HMAC-SHA256 Credential=", err) < 0 ||
        append_str(out, creds->access_key, err) < 0 || append_str(out, "/", err) < 0 ||
        append_str(out, scope, err) < 0 || append_str(out, ", SignedHeaders=", err) < 0 ||
        append_str(out, (char *)signed_names.data, err) < 0 ||
        append_str(out, ", Signature=", err) < 0 || append_str(out, sig_hex, err) < 0)
        goto nomem;
    goto done;
nomem:
    rc = sg_error_set(err, SG_E_NOMEM, "out of memory (signing a request)");
done:
    sodium_memzero(k, sizeof(k));
    free(sorted);
    sg_buf_free(&canonical);
    sg_buf_free(&signed_names);
    sg_buf_free(&to_sign);
    sg_buf_free(&key); /* wipes the secret */
    return rc;
}
