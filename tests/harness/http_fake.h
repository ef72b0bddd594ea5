/* Test harness: a scripted HTTP/1.1 server on 127.0.0.1 for unit tests of
 * the S3 client. It records every request (method, target, headers, body)
 * and answers from a script, in order, one reply per request; after the
 * script it answers 200 with an empty body. A reply can also misbehave the
 * ways real networks do: cut the body short, reset the connection, or wait.
 *
 * Only for what a real server will not do on demand; the S3 behaviour itself
 * is tested against a real server (s3.h). */
#ifndef SG_TESTS_HARNESS_HTTP_FAKE_H
#define SG_TESTS_HARNESS_HTTP_FAKE_H

#include <stddef.h>

typedef enum {
    SGT_REPLY_NORMAL,
    SGT_REPLY_TRUNCATE, /* promise the whole body, send half, close */
    SGT_REPLY_RESET,    /* send nothing, reset the connection */
} sgt_reply_kind;

typedef struct sgt_reply {
    int status;
    const char *headers; /* extra header lines, each ending in "\r\n"; may be NULL */
    const char *body;    /* may be NULL */
    sgt_reply_kind kind;
    int delay_ms; /* wait before answering */
} sgt_reply;

typedef struct sgt_http_request {
    char method[16];
    char target[4096];
    char *headers; /* raw header block, lowercase names */
    char *body;
    size_t body_len;
} sgt_http_request;

typedef struct sgt_http_fake sgt_http_fake;

/* Starts the server on a free port with a copy of the script. */
sgt_http_fake *sgt_http_fake_start(const sgt_reply *script, size_t nreplies);
void sgt_http_fake_stop(sgt_http_fake *fake);

/* "http://127.0.0.1:PORT". */
const char *sgt_http_fake_url(const sgt_http_fake *fake);

/* Requests received so far, in arrival order. */
size_t sgt_http_fake_count(sgt_http_fake *fake);
const sgt_http_request *sgt_http_fake_request(sgt_http_fake *fake, size_t i);

/* The value of header `name` (lowercase) in a request, or NULL; to free(). */
char *sgt_http_header(const sgt_http_request *req, const char *name);

#endif
