#include "common/s3_xml.h"

#include <expat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

/* Namespace processing on, so that a prefixed or default-namespaced element is
 * reported as URI, separator, local name; the separator is a character XML
 * 1.0 does not allow anywhere, so it cannot be part of a URI. */
#define NS_SEPARATOR '\x1f'

/* Part numbers S3 accepts (docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html). */
#define PART_NUMBER_MAX 10000

/* Element local names that matter in some document; all others are EL_OTHER. */
enum element {
    EL_OTHER,
    EL_ERROR,
    EL_CODE,
    EL_MESSAGE,
    EL_REQUEST_ID,
    EL_LIST_RESULT,
    EL_CONTENTS,
    EL_KEY,
    EL_SIZE,
    EL_IS_TRUNCATED,
    EL_NEXT_TOKEN,
    EL_INITIATE_RESULT,
    EL_UPLOAD_ID,
    EL_COMPLETE_RESULT,
    EL_COUNT_
};

static const char *const element_names[EL_COUNT_] = {
    [EL_OTHER] = "",
    [EL_ERROR] = "Error",
    [EL_CODE] = "Code",
    [EL_MESSAGE] = "Message",
    [EL_REQUEST_ID] = "RequestId",
    [EL_LIST_RESULT] = "ListBucketResult",
    [EL_CONTENTS] = "Contents",
    [EL_KEY] = "Key",
    [EL_SIZE] = "Size",
    [EL_IS_TRUNCATED] = "IsTruncated",
    [EL_NEXT_TOKEN] = "NextContinuationToken",
    [EL_INITIATE_RESULT] = "InitiateMultipartUploadResult",
    [EL_UPLOAD_ID] = "UploadId",
    [EL_COMPLETE_RESULT] = "CompleteMultipartUploadResult",
};

/* The deepest position that matters is ListBucketResult/Contents/Key. */
#define PATH_DEPTH 3

typedef struct parse_ctx {
    XML_Parser parser;
    const char *what; /* the S3 operation, for messages */
    enum element expect;
    sg_error *err;
    int rc; /* set by a handler that stops the parser */

    int depth;
    enum element path[PATH_DEPTH + 1]; /* path[1] is the root */
    enum element field;                /* the value being collected, or EL_OTHER */
    int field_depth;
    char text[SG_S3_TOKEN_MAX + 1];
    size_t text_len;
    bool text_over; /* more arrived than text holds */

    sg_s3_error_doc error;
    bool has_code;

    sg_s3_list_page page;
    char *key; /* of the Contents being read */
    bool has_size;
    uint64_t size;
    int truncated; /* -1 until IsTruncated is read */

    char *upload_id;
} parse_ctx;

static const char *local_name(const char *name)
{
    const char *sep = strrchr(name, NS_SEPARATOR);
    return sep ? sep + 1 : name;
}

static enum element element_of(const char *local)
{
    for (int i = EL_OTHER + 1; i < EL_COUNT_; i++)
        if (strcmp(local, element_names[i]) == 0)
            return (enum element)i;
    return EL_OTHER;
}

/* The value at the current position that some document wants, or EL_OTHER. */
static enum element field_at(const parse_ctx *ctx)
{
    const enum element *p = ctx->path;
    if (ctx->depth == 2) {
        if (p[1] == EL_ERROR && (p[2] == EL_CODE || p[2] == EL_MESSAGE || p[2] == EL_REQUEST_ID))
            return p[2];
        if (p[1] == EL_LIST_RESULT && (p[2] == EL_IS_TRUNCATED || p[2] == EL_NEXT_TOKEN))
            return p[2];
        if (p[1] == EL_INITIATE_RESULT && p[2] == EL_UPLOAD_ID)
            return p[2];
    } else if (ctx->depth == 3) {
        if (p[1] == EL_LIST_RESULT && p[2] == EL_CONTENTS && (p[3] == EL_KEY || p[3] == EL_SIZE))
            return p[3];
    }
    return EL_OTHER;
}

static void stop(parse_ctx *ctx, int rc)
{
    ctx->rc = rc;
    XML_StopParser(ctx->parser, XML_FALSE);
}

static int nomem(parse_ctx *ctx)
{
    return sg_error_set(ctx->err, SG_E_NOMEM, "out of memory (parsing %s response)", ctx->what);
}

/* Copies a value into a fixed field, cutting it before a UTF-8 character
 * rather than inside one when it is too long. */
static void copy_cut(char *dst, size_t size, const char *src, size_t len)
{
    if (len >= size) {
        len = size - 1;
        while (len > 0 && ((unsigned char)src[len] & 0xc0) == 0x80)
            len--;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* The start of a value, for a message about it. */
static const char *excerpt(char *buf, size_t size, const char *s)
{
    copy_cut(buf, size, s, strlen(s));
    return buf;
}

/* Plain decimal digits only: no sign, space or base prefix strtoull would take. */
static bool parse_u64(uint64_t *out, const char *s, size_t len)
{
    uint64_t v = 0;
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static int malformed(parse_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "malformed ListObjectsV2 response: <problem>" */
static int malformed(parse_ctx *ctx, const char *fmt, ...)
{
    char problem[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    return sg_error_set(ctx->err, SG_E_FORMAT, "malformed %s response: %s", ctx->what, problem);
}

static int finish_field(parse_ctx *ctx)
{
    const char *text = ctx->text;
    size_t len = ctx->text_len;
    char shown[65];
    ctx->text[len] = '\0';
    switch (ctx->field) {
    case EL_CODE:
        copy_cut(ctx->error.code, sizeof(ctx->error.code), text, len);
        ctx->has_code = len > 0;
        return 0;
    case EL_MESSAGE:
        copy_cut(ctx->error.message, sizeof(ctx->error.message), text, len);
        return 0;
    case EL_REQUEST_ID:
        copy_cut(ctx->error.request_id, sizeof(ctx->error.request_id), text, len);
        return 0;
    case EL_KEY:
        if (ctx->text_over || len > SG_S3_KEY_MAX) {
            malformed(ctx, "key longer than %d bytes", SG_S3_KEY_MAX);
            sg_error_detail(ctx->err, "the key starts with \"%s\"",
                            excerpt(shown, sizeof(shown), text));
            return SG_E_FORMAT;
        }
        if (len == 0)
            return malformed(ctx, "empty Key in Contents");
        free(ctx->key);
        if (!(ctx->key = sg_strndup(text, len)))
            return nomem(ctx);
        return 0;
    case EL_SIZE:
        if (ctx->text_over || !parse_u64(&ctx->size, text, len)) {
            malformed(ctx, "Size \"%s\" is not an unsigned 64-bit decimal number",
                      excerpt(shown, 33, text));
            if (ctx->key)
                sg_error_detail(ctx->err, "the object is \"%s\"", ctx->key);
            return SG_E_FORMAT;
        }
        ctx->has_size = true;
        return 0;
    case EL_IS_TRUNCATED:
        if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0) {
            ctx->truncated = text[0] == 't';
            return 0;
        }
        return malformed(ctx, "IsTruncated \"%s\" is neither true nor false",
                         excerpt(shown, 33, text));
    case EL_NEXT_TOKEN:
        if (ctx->text_over)
            return malformed(ctx, "NextContinuationToken longer than %d bytes", SG_S3_TOKEN_MAX);
        free(ctx->page.next_token);
        if (!(ctx->page.next_token = sg_strndup(text, len)))
            return nomem(ctx);
        return 0;
    case EL_UPLOAD_ID:
        if (ctx->text_over)
            return malformed(ctx, "UploadId longer than %d bytes", SG_S3_TOKEN_MAX);
        free(ctx->upload_id);
        if (!(ctx->upload_id = sg_strndup(text, len)))
            return nomem(ctx);
        return 0;
    default:
        return 0;
    }
}

static int finish_object(parse_ctx *ctx)
{
    sg_s3_list_page *page = &ctx->page;
    sg_s3_listed *grown;
    if (!ctx->key)
        return malformed(ctx, "Contents without a Key");
    if (!ctx->has_size)
        return malformed(ctx, "no Size for key \"%s\"", ctx->key);
    if (!(grown = sg_array_grow(page->objects, page->count, sizeof(*grown))))
        return nomem(ctx);
    page->objects = grown;
    page->objects[page->count].key = ctx->key;
    page->objects[page->count].size = ctx->size;
    page->count++;
    ctx->key = NULL;
    ctx->has_size = false;
    return 0;
}

static void XMLCALL on_start(void *data, const XML_Char *name, const XML_Char **attrs)
{
    parse_ctx *ctx = data;
    const char *local;
    enum element el;
    (void)attrs;
    if (ctx->rc)
        return;
    ctx->depth++;
    if (ctx->depth > PATH_DEPTH || ctx->field != EL_OTHER)
        return;
    local = local_name(name);
    el = element_of(local);
    if (ctx->depth == 1 && el != ctx->expect && el != EL_ERROR) {
        char shown[65];
        sg_error_set(ctx->err, SG_E_FORMAT,
                     "malformed %s response: root element is <%s>, expected <%s>", ctx->what,
                     excerpt(shown, sizeof(shown), local), element_names[ctx->expect]);
        stop(ctx, SG_E_FORMAT);
        return;
    }
    ctx->path[ctx->depth] = el;
    if ((ctx->field = field_at(ctx)) != EL_OTHER) {
        ctx->field_depth = ctx->depth;
        ctx->text_len = 0;
        ctx->text_over = false;
    } else if (ctx->depth == 2 && ctx->path[1] == EL_LIST_RESULT && el == EL_CONTENTS) {
        free(ctx->key);
        ctx->key = NULL;
        ctx->has_size = false;
    }
}

static void XMLCALL on_end(void *data, const XML_Char *name)
{
    parse_ctx *ctx = data;
    int rc = 0;
    (void)name;
    if (ctx->rc)
        return;
    if (ctx->field != EL_OTHER && ctx->depth == ctx->field_depth) {
        rc = finish_field(ctx);
        ctx->field = EL_OTHER;
    } else if (ctx->field == EL_OTHER && ctx->depth == 2 && ctx->path[1] == EL_LIST_RESULT &&
               ctx->path[2] == EL_CONTENTS) {
        rc = finish_object(ctx);
    }
    ctx->depth--;
    if (rc < 0)
        stop(ctx, rc);
}

/* Text may come in several pieces: around entities, at line ends, at the
 * parser's buffer boundaries. */
static void XMLCALL on_text(void *data, const XML_Char *s, int len)
{
    parse_ctx *ctx = data;
    size_t room, n = (size_t)len;
    if (ctx->rc || ctx->field == EL_OTHER || ctx->depth != ctx->field_depth)
        return;
    room = SG_S3_TOKEN_MAX - ctx->text_len;
    if (n > room) {
        n = room;
        ctx->text_over = true;
    }
    memcpy(ctx->text + ctx->text_len, s, n);
    ctx->text_len += n;
}

/* S3 documents have no DTD; refusing one leaves no internal entities to
 * expand (expat bounds their amplification anyway) and no external ones. */
static void XMLCALL on_doctype(void *data, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    parse_ctx *ctx = data;
    (void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
    sg_error_set(ctx->err, SG_E_FORMAT,
                 "malformed %s response: document type declarations are not accepted", ctx->what);
    stop(ctx, SG_E_FORMAT);
}

static bool is_xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void ctx_init(parse_ctx *ctx, const char *what, enum element expect, sg_error *err)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->what = what;
    ctx->expect = expect;
    ctx->err = err;
    ctx->truncated = -1;
}

static void ctx_clear(parse_ctx *ctx)
{
    sg_s3_list_page_clear(&ctx->page);
    free(ctx->key);
    free(ctx->upload_id);
    ctx->key = ctx->upload_id = NULL;
}

/* Runs the document through expat; on success ctx holds what it found and
 * ctx->path[1] is the root element, the expected one or EL_ERROR. */
static int parse(parse_ctx *ctx, const char *body, size_t len)
{
    static const XML_Memory_Handling_Suite memory = {sg_malloc, sg_realloc, free};
    static const XML_Char separator[] = {NS_SEPARATOR, '\0'};
    XML_Parser parser = NULL;
    int rc = 0;

    /* AWS keeps a slow CompleteMultipartUpload connection open by sending
     * spaces before the document, while an XML declaration must come first. */
    while (len > 0 && is_xml_space(*body)) {
        body++;
        len--;
    }
    if (len == 0) {
        rc = sg_error_set(ctx->err, SG_E_FORMAT, "empty %s response", ctx->what);
        goto done;
    }
    if (!(parser = XML_ParserCreate_MM(NULL, &memory, separator))) {
        rc = nomem(ctx);
        goto done;
    }
    ctx->parser = parser;
    XML_SetUserData(parser, ctx);
    XML_SetElementHandler(parser, on_start, on_end);
    XML_SetCharacterDataHandler(parser, on_text);
    XML_SetStartDoctypeDeclHandler(parser, on_doctype);
    do {
        int piece = len > INT_MAX ? INT_MAX : (int)len;
        len -= (size_t)piece;
        if (XML_Parse(parser, body, piece, len == 0) != XML_STATUS_OK) {
            enum XML_Error code = XML_GetErrorCode(parser);
            if (ctx->rc)
                rc = ctx->rc;
            else if (code == XML_ERROR_NO_MEMORY)
                rc = nomem(ctx);
            else /* expat counts columns from 0, editors from 1 */
                rc = sg_error_set(ctx->err, SG_E_FORMAT,
                                  "malformed %s response: %s at line %llu, column %llu", ctx->what,
                                  XML_ErrorString(code),
                                  (unsigned long long)XML_GetCurrentLineNumber(parser),
                                  (unsigned long long)XML_GetCurrentColumnNumber(parser) + 1);
            goto done;
        }
        body += piece;
    } while (len > 0);
    if (ctx->path[1] == EL_ERROR && !ctx->has_code)
        rc = sg_error_set(ctx->err, SG_E_FORMAT, "malformed %s response: <Error> without a Code",
                          ctx->what);

done:
    XML_ParserFree(parser);
    return rc;
}

/* An <Error> where a result was expected: the server refused the request. */
static int store_error(parse_ctx *ctx)
{
    const sg_s3_error_doc *doc = &ctx->error;
    if (doc->message[0])
        sg_error_set(ctx->err, SG_E_STORE, "%s failed: %s (%s)", ctx->what, doc->code,
                     doc->message);
    else
        sg_error_set(ctx->err, SG_E_STORE, "%s failed: %s", ctx->what, doc->code);
    if (doc->request_id[0])
        sg_error_detail(ctx->err, "request id %s", doc->request_id);
    return SG_E_STORE;
}

int sg_s3_xml_parse_error(sg_s3_error_doc *out, const char *body, size_t len)
{
    parse_ctx ctx;
    sg_error err = {0};
    int rc;
    ctx_init(&ctx, "error", EL_ERROR, &err);
    memset(out, 0, sizeof(*out));
    if ((rc = parse(&ctx, body, len)) < 0)
        goto done;
    *out = ctx.error;

done:
    ctx_clear(&ctx);
    return rc;
}

int sg_s3_xml_parse_list(sg_s3_list_page *out, const char *body, size_t len, sg_error *err)
{
    parse_ctx ctx;
    int rc;
    ctx_init(&ctx, "ListObjectsV2", EL_LIST_RESULT, err);
    if ((rc = parse(&ctx, body, len)) < 0)
        goto done;
    if (ctx.path[1] == EL_ERROR) {
        rc = store_error(&ctx);
        goto done;
    }
    if (ctx.truncated < 0) {
        rc = malformed(&ctx, "IsTruncated is missing");
        goto done;
    }
    ctx.page.truncated = ctx.truncated;
    if (ctx.page.truncated && (!ctx.page.next_token || !ctx.page.next_token[0])) {
        rc = malformed(&ctx, "IsTruncated is true but NextContinuationToken is missing");
        sg_error_hint(err, "the next page cannot be asked for without a continuation token");
        goto done;
    }
    if (!ctx.page.truncated) {
        free(ctx.page.next_token);
        ctx.page.next_token = NULL;
    }
    *out = ctx.page;
    memset(&ctx.page, 0, sizeof(ctx.page));

done:
    ctx_clear(&ctx);
    return rc;
}

void sg_s3_list_page_clear(sg_s3_list_page *page)
{
    if (!page)
        return;
    for (size_t i = 0; i < page->count; i++)
        free(page->objects[i].key);
    free(page->objects);
    free(page->next_token);
    memset(page, 0, sizeof(*page));
}

int sg_s3_xml_parse_upload_id(char **upload_id, const char *body, size_t len, sg_error *err)
{
    parse_ctx ctx;
    int rc;
    ctx_init(&ctx, "CreateMultipartUpload", EL_INITIATE_RESULT, err);
    *upload_id = NULL;
    if ((rc = parse(&ctx, body, len)) < 0)
        goto done;
    if (ctx.path[1] == EL_ERROR) {
        rc = store_error(&ctx);
        goto done;
    }
    if (!ctx.upload_id || !ctx.upload_id[0]) {
        rc = malformed(&ctx, "UploadId is missing");
        goto done;
    }
    *upload_id = ctx.upload_id;
    ctx.upload_id = NULL;

done:
    ctx_clear(&ctx);
    return rc;
}

int sg_s3_xml_parse_complete(sg_s3_error_doc *error_doc, const char *body, size_t len,
                             sg_error *err)
{
    parse_ctx ctx;
    int rc;
    ctx_init(&ctx, "CompleteMultipartUpload", EL_COMPLETE_RESULT, err);
    if (error_doc)
        memset(error_doc, 0, sizeof(*error_doc));
    if ((rc = parse(&ctx, body, len)) < 0)
        goto done;
    if (ctx.path[1] == EL_ERROR) {
        rc = store_error(&ctx);
        if (error_doc)
            *error_doc = ctx.error;
    }

done:
    ctx_clear(&ctx);
    return rc;
}

static int put(sg_buf *out, const char *s, sg_error *err)
{
    return sg_buf_append(out, s, strlen(s), err);
}

/* Values go into element content: escape the five characters XML reserves.
 * Control characters cannot be written in XML 1.0 and have no business in
 * an ETag or a base64 checksum, so they are refused. */
static int put_escaped(sg_buf *out, const char *s, const char *what, int number, sg_error *err)
{
    const char *run = s;
    int rc;
    for (; *s; s++) {
        const char *entity;
        switch (*s) {
        case '&':
            entity = "&amp;";
            break;
        case '<':
            entity = "&lt;";
            break;
        case '>':
            entity = "&gt;";
            break;
        case '"':
            entity = "&quot;";
            break;
        case '\'':
            entity = "&apos;";
            break;
        default:
            if ((unsigned char)*s < 0x20)
                return sg_error_set(err, SG_E_FORMAT,
                                    "%s of part %d contains control character 0x%02x", what, number,
                                    (unsigned char)*s);
            continue;
        }
        if ((rc = sg_buf_append(out, run, (size_t)(s - run), err)) < 0 ||
            (rc = put(out, entity, err)) < 0)
            return rc;
        run = s + 1;
    }
    return sg_buf_append(out, run, (size_t)(s - run), err);
}

int sg_s3_xml_complete_body(sg_buf *out, const sg_s3_part_ref *parts, size_t count, sg_error *err)
{
    size_t start = out->len;
    int previous = 0, rc = 0;
    char number[48];

    if (count == 0) {
        rc = sg_error_set(err, SG_E_INTERNAL, "CompleteMultipartUpload needs at least one part");
        goto done;
    }
    if ((rc =
             put(out, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
                 err)) < 0)
        goto done;
    for (size_t i = 0; i < count; i++) {
        const sg_s3_part_ref *part = &parts[i];
        if (part->number < 1 || part->number > PART_NUMBER_MAX) {
            rc = sg_error_set(err, SG_E_INTERNAL,
                              "CompleteMultipartUpload part number %d is outside 1 to %d",
                              part->number, PART_NUMBER_MAX);
            goto done;
        }
        if (part->number <= previous) {
            rc = sg_error_set(err, SG_E_INTERNAL,
                              "CompleteMultipartUpload part %d comes after part %d: parts must be "
                              "in ascending order",
                              part->number, previous);
            goto done;
        }
        if (!part->etag || !part->etag[0]) {
            rc = sg_error_set(err, SG_E_INTERNAL, "CompleteMultipartUpload part %d has no ETag",
                              part->number);
            goto done;
        }
        previous = part->number;
        snprintf(number, sizeof(number), "<Part><PartNumber>%d</PartNumber><ETag>", part->number);
        if ((rc = put(out, number, err)) < 0 ||
            (rc = put_escaped(out, part->etag, "ETag", part->number, err)) < 0 ||
            (rc = put(out, "</ETag>", err)) < 0)
            goto done;
        if (part->checksum_sha256 && ((rc = put(out, "<ChecksumSHA256>", err)) < 0 ||
                                      (rc = put_escaped(out, part->checksum_sha256,
                                                        "ChecksumSHA256", part->number, err)) < 0 ||
                                      (rc = put(out, "</ChecksumSHA256>", err)) < 0))
            goto done;
        if ((rc = put(out, "</Part>", err)) < 0)
            goto done;
    }
    rc = put(out, "</CompleteMultipartUpload>", err);

done:
    if (rc < 0)
        out->len = start;
    return rc;
}
