/* The pipeline file. libfyaml's events become a small tree that keeps every
 * node's position, and the tree becomes an sg_pipeline_config. Events rather
 * than libfyaml's documents: in libfyaml 0.7 a document node tells no
 * position unless it is a scalar, and a missing key or a list where a
 * mapping belongs must still point at the place; duplicate keys are checked
 * here so that the message is ours and names the key. */
#include "pipeline/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libfyaml.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/layout.h"
#include "common/mem.h"
#include "common/s3_transfer.h"
#include "stages/apply.h"

_Static_assert(SG_PIPELINE_TARGET_LATEST == SG_APPLY_LATEST, "latest means the same everywhere");

#define NONE SIZE_MAX
#define NAME_HINT                                                                                  \
    "names use letters, digits, '.', '_' and '-' (at most 100), and do not start with '.'"
#define PASSWORD_HINT                                                                              \
    "passwords come from libpq: the password file (~/.pgpass, or the file PGPASSFILE names) or "   \
    "PGPASSWORD"
#define AWS_HINT                                                                                   \
    "S3 credentials come from the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "      \
    "AWS_SESSION_TOKEN"
#define STAGE_HINT "a stage takes either ring: RING or shards: [SHARD, ...]"
#define QUOTED_NUMBER_HINT "write numbers and true/false without quotes"

/* ---- the tree ---- */

typedef enum { NODE_SCALAR, NODE_SEQUENCE, NODE_MAPPING } node_kind;

typedef struct node node;
struct node {
    node_kind kind;
    int line, column; /* 1-based */
    char *text;       /* scalar: its value, escapes resolved */
    bool plain;       /* scalar without quotes: may stand for null, a boolean or a number */
    node **items;     /* sequence: the items; mapping: key, value, key, value, ... */
    size_t count;
    node *next; /* every node of the document, for freeing: an alias shares its node */
};

typedef struct anchor {
    char *name;
    node *node;
} anchor;

typedef struct reader {
    const char *file;
    const char *base_dir;
    struct fy_diag *diag;
    struct fy_parser *parser;
    node *nodes;
    anchor *anchors;
    size_t nanchors;
} reader;

static void reader_clear(reader *r)
{
    while (r->nodes) {
        node *n = r->nodes;
        r->nodes = n->next;
        free(n->text);
        free(n->items);
        free(n);
    }
    for (size_t i = 0; i < r->nanchors; i++)
        free(r->anchors[i].name);
    free(r->anchors);
    if (r->parser)
        fy_parser_destroy(r->parser);
    if (r->diag)
        fy_diag_destroy(r->diag);
}

static int nomem(sg_error *err)
{
    return sg_error_set(err, SG_E_NOMEM, "out of memory (reading the pipeline file)");
}

static int fail_at(const reader *r, int line, int column, sg_error *err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail_at(const reader *r, int line, int column, sg_error *err, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sg_error_set(err, SG_E_FORMAT, "%s:%d:%d: %s", r->file, line, column, msg);
}

static int fail(const reader *r, const node *at, sg_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(const reader *r, const node *at, sg_error *err, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sg_error_set(err, SG_E_FORMAT, "%s:%d:%d: %s", r->file, at->line, at->column, msg);
}

/* libfyaml's first diagnostic, whose position is 1-based already. */
static int syntax_error(const reader *r, sg_error *err)
{
    void *iter = NULL;
    struct fy_diag_error *e = fy_diag_errors_iterate(r->diag, &iter);
    if (e && e->msg)
        return fail_at(r, e->line, e->column, err, "%s", e->msg);
    return sg_error_set(err, SG_E_FORMAT, "%s: not a YAML file", r->file);
}

static struct fy_event *next_event(const reader *r, sg_error *err)
{
    struct fy_event *ev = fy_parser_parse(r->parser);
    if (!ev)
        syntax_error(r, err);
    return ev;
}

/* A node without a mark (an empty value has none) is placed by its parent:
 * line 0 until then. */
static node *node_new(reader *r, node_kind kind, const struct fy_mark *mark)
{
    node *n = sg_calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->kind = kind;
    n->line = mark ? mark->line + 1 : 0;
    n->column = mark ? mark->column + 1 : 0;
    n->next = r->nodes;
    r->nodes = n;
    return n;
}

/* Anchors are registered once their node is complete, so an alias inside
 * its own anchor's node is unknown: the tree has no cycles. */
static int anchor_add(reader *r, struct fy_token *name, node *n, sg_error *err)
{
    size_t len;
    const char *text = name ? fy_token_get_text(name, &len) : NULL;
    anchor *grown;
    if (!name)
        return 0;
    if (!text || !(grown = sg_array_grow(r->anchors, r->nanchors, sizeof(*grown))))
        return nomem(err);
    r->anchors = grown;
    if (!(grown[r->nanchors].name = sg_strndup(text, len)))
        return nomem(err);
    grown[r->nanchors++].node = n;
    return 0;
}

static int build(node **out, reader *r, struct fy_event *ev, sg_error *err);

static int build_scalar(node **out, reader *r, struct fy_event *ev, sg_error *err)
{
    size_t len;
    const char *text = fy_token_get_text(ev->scalar.value, &len);
    enum fy_scalar_style style;
    node *n;
    if (!text || !(n = node_new(r, NODE_SCALAR, fy_event_start_mark(ev))) ||
        !(n->text = sg_strndup(text, len)))
        return nomem(err);
    style = fy_token_scalar_style(ev->scalar.value);
    n->plain = style == FYSS_PLAIN;
    /* The mark of a quoted scalar is past its quote; point at the quote. */
    if ((style == FYSS_SINGLE_QUOTED || style == FYSS_DOUBLE_QUOTED) && n->column > 1)
        n->column--;
    if (memchr(text, '\0', len))
        return fail(r, n, err, "a value holds a NUL character");
    *out = n;
    return anchor_add(r, ev->scalar.anchor, n, err);
}

static int build_alias(node **out, reader *r, struct fy_event *ev, sg_error *err)
{
    size_t len;
    const char *name = fy_token_get_text(ev->alias.anchor, &len);
    const struct fy_mark *mark = fy_event_start_mark(ev);
    if (!name)
        return nomem(err);
    for (size_t i = r->nanchors; i-- > 0;) {
        if (strlen(r->anchors[i].name) == len && memcmp(r->anchors[i].name, name, len) == 0) {
            *out = r->anchors[i].node;
            return 0;
        }
    }
    /* The alias token's mark is past its '*'. */
    return fail_at(r, mark ? mark->line + 1 : 1, mark && mark->column > 0 ? mark->column : 1, err,
                   "unknown alias \"*%.*s\"", (int)len, name);
}

static int build_collection(node **out, reader *r, struct fy_event *start, sg_error *err)
{
    bool mapping = start->type == FYET_MAPPING_START;
    enum fy_event_type end = mapping ? FYET_MAPPING_END : FYET_SEQUENCE_END;
    struct fy_event *ev = NULL;
    node *n = node_new(r, mapping ? NODE_MAPPING : NODE_SEQUENCE, fy_event_start_mark(start));
    int rc = 0;
    if (!n)
        return nomem(err);
    for (;;) {
        node *item = NULL, **grown;
        if (!(ev = next_event(r, err))) {
            rc = SG_E_FORMAT;
            goto done;
        }
        if (ev->type == end)
            break;
        if ((rc = build(&item, r, ev, err)) < 0)
            goto done;
        fy_parser_event_free(r->parser, ev);
        ev = NULL;
        if (item->line == 0) {
            const node *at = mapping && n->count % 2 ? n->items[n->count - 1] : n;
            item->line = at->line;
            item->column = at->column;
        }
        if (!(grown = sg_array_grow(n->items, n->count, sizeof(*grown)))) {
            rc = nomem(err);
            goto done;
        }
        n->items = grown;
        n->items[n->count++] = item;
    }
    *out = n;
    rc =
        anchor_add(r, mapping ? start->mapping_start.anchor : start->sequence_start.anchor, n, err);
done:
    if (ev)
        fy_parser_event_free(r->parser, ev);
    return rc;
}

/* Builds the node that starts with ev; the caller frees ev. */
static int build(node **out, reader *r, struct fy_event *ev, sg_error *err)
{
    switch (ev->type) {
    case FYET_SCALAR:
        return build_scalar(out, r, ev, err);
    case FYET_ALIAS:
        return build_alias(out, r, ev, err);
    case FYET_SEQUENCE_START:
    case FYET_MAPPING_START:
        return build_collection(out, r, ev, err);
    default:
        return sg_error_set(err, SG_E_INTERNAL, "%s: unexpected YAML event %d", r->file,
                            (int)ev->type);
    }
}

/* The one document of the stream; *root stays NULL when there is none. */
static int read_document(node **root, reader *r, sg_error *err)
{
    struct fy_event *ev = NULL;
    int rc = 0;
    *root = NULL;
    for (int docs = 0;;) {
        if (ev)
            fy_parser_event_free(r->parser, ev);
        if (!(ev = next_event(r, err))) {
            rc = SG_E_FORMAT;
            goto done;
        }
        if (ev->type == FYET_STREAM_END)
            break;
        if (ev->type == FYET_DOCUMENT_START && docs++ > 0) {
            const struct fy_mark *mark = fy_event_start_mark(ev);
            rc = fail_at(r, mark ? mark->line + 1 : 1, mark ? mark->column + 1 : 1, err,
                         "a pipeline file holds one YAML document, this is a second");
            goto done;
        }
        if (ev->type == FYET_SCALAR || ev->type == FYET_ALIAS || ev->type == FYET_SEQUENCE_START ||
            ev->type == FYET_MAPPING_START) {
            if ((rc = build(root, r, ev, err)) < 0)
                goto done;
            if ((*root)->line == 0)
                (*root)->line = (*root)->column = 1;
        }
    }
done:
    if (ev)
        fy_parser_event_free(r->parser, ev);
    return rc;
}

/* ---- reading values ---- */

static bool is_null(const node *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (n->kind != NODE_SCALAR || !n->plain)
        return false;
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        if (strcmp(n->text, nulls[i]) == 0)
            return true;
    return false;
}

static const char *describe(const node *n, char *buf, size_t size)
{
    if (n->kind == NODE_MAPPING)
        return "a mapping";
    if (n->kind == NODE_SEQUENCE)
        return "a list";
    if (is_null(n))
        return "empty";
    if (strlen(n->text) > 60)
        snprintf(buf, size, "\"%.57s...\"", n->text);
    else
        snprintf(buf, size, "\"%s\"", n->text);
    return buf;
}

/* "parallel in stage \"wave-1\"", or the bare key at the top level. */
static const char *label(char *buf, size_t size, const char *key, const char *where)
{
    if (where)
        snprintf(buf, size, "%s in %s", key, where);
    else
        snprintf(buf, size, "%s", key);
    return buf;
}

static int wrong_type(const reader *r, const node *n, const char *key, const char *where,
                      const char *expected, sg_error *err)
{
    char lbl[200], found[80];
    int rc = fail(r, n, err, "%s must be %s, not %s", label(lbl, sizeof(lbl), key, where), expected,
                  describe(n, found, sizeof(found)));
    if (n->kind == NODE_SCALAR && !n->plain &&
        (isdigit((unsigned char)n->text[0]) || strcmp(n->text, "true") == 0 ||
         strcmp(n->text, "false") == 0))
        sg_error_hint(err, QUOTED_NUMBER_HINT);
    return rc;
}

/* Levenshtein distance, for "did you mean"; long words are never close. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[33];
    if (la > 32 || lb > 32)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The closest of n words at distance 2 or less, or NULL. */
static const char *closest(const char *word, const char *const *words, size_t n)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < n; i++) {
        size_t d = distance(word, words[i]);
        if (d < best_d && d < strlen(words[i])) {
            best = words[i];
            best_d = d;
        }
    }
    return best;
}

/* Appends "did you mean "x"? " and "ALLOWED: a, b, c" to the hint. */
static void hint_choices(sg_error *err, const char *word, const char *const *words, size_t n,
                         const char *allowed)
{
    const char *guess = closest(word, words, n);
    char list[400];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && used < sizeof(list); i++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", words[i]);
    if (guess)
        sg_error_hint(err, "did you mean \"%s\"? %s: %s", guess, allowed, list);
    else
        sg_error_hint(err, "%s: %s", allowed, list);
}

static int get_string(char **out, const reader *r, const node *n, const char *key,
                      const char *where, const char *what, sg_error *err)
{
    char lbl[200];
    if (n->kind != NODE_SCALAR || is_null(n))
        return wrong_type(r, n, key, where, what, err);
    if (!*n->text)
        return fail(r, n, err, "%s must not be empty", label(lbl, sizeof(lbl), key, where));
    if (!(*out = sg_strdup(n->text)))
        return nomem(err);
    return 0;
}

/* Pipeline, shard, ring and stage names: the rule of shard names, which
 * become path components in the store. */
static int get_name(char **out, const reader *r, const node *n, const char *key, const char *where,
                    const char *kind, sg_error *err)
{
    int rc = get_string(out, r, n, key, where, "a name", err);
    if (rc < 0 || sg_shard_name_check(*out, NULL) == 0)
        return rc;
    free(*out);
    *out = NULL;
    rc = fail(r, n, err, "invalid %s name \"%s\"", kind, n->text);
    sg_error_hint(err, NAME_HINT);
    return rc;
}

static int get_int(int64_t *out, const reader *r, const node *n, const char *key, const char *where,
                   int64_t min, int64_t max, sg_error *err)
{
    char lbl[200], *end;
    const char *p;
    long long value;
    if (n->kind != NODE_SCALAR || !n->plain || is_null(n))
        return wrong_type(r, n, key, where, "an integer", err);
    p = n->text + (n->text[0] == '-');
    if (*p < '0' || *p > '9')
        return wrong_type(r, n, key, where, "an integer", err);
    errno = 0;
    value = strtoll(n->text, &end, 10);
    if (*end)
        return wrong_type(r, n, key, where, "an integer", err);
    if (value < min || (errno == ERANGE && value == LLONG_MIN))
        return fail(r, n, err, "%s must be at least %" PRId64 ", not %s",
                    label(lbl, sizeof(lbl), key, where), min, n->text);
    if (value > max || errno == ERANGE)
        return fail(r, n, err, "%s must be at most %" PRId64 ", not %s",
                    label(lbl, sizeof(lbl), key, where), max, n->text);
    *out = value;
    return 0;
}

static int get_unsigned(unsigned *out, const reader *r, const node *n, const char *key,
                        const char *where, unsigned min, unsigned max, sg_error *err)
{
    int64_t value;
    int rc = get_int(&value, r, n, key, where, min, max, err);
    if (rc == 0)
        *out = (unsigned)value;
    return rc;
}

static int get_bool(bool *out, const reader *r, const node *n, const char *key, const char *where,
                    sg_error *err)
{
    static const char *const yes[] = {"true", "True", "TRUE"}, *const no[] = {"false", "False",
                                                                              "FALSE"};
    for (size_t i = 0; n->kind == NODE_SCALAR && n->plain && i < 3; i++) {
        if (strcmp(n->text, yes[i]) == 0 || strcmp(n->text, no[i]) == 0) {
            *out = n->text[0] == 't' || n->text[0] == 'T';
            return 0;
        }
    }
    return wrong_type(r, n, key, where, "true or false", err);
}

/* A duration of at least min_ms (0 or 1: "more than 0") and at most max_ms. */
static int get_duration(uint64_t *out, const reader *r, const node *n, const char *key,
                        const char *where, uint64_t min_ms, uint64_t max_ms, sg_error *err)
{
    char lbl[200], found[80];
    sg_error perr = {0};
    if (n->kind != NODE_SCALAR || is_null(n))
        return wrong_type(r, n, key, where, "a duration", err);
    if (sg_parse_duration(out, n->text, &perr) < 0) {
        fail(r, n, err, "%s must be a duration, not %s", label(lbl, sizeof(lbl), key, where),
             describe(n, found, sizeof(found)));
        sg_error_hint(err, "%s", perr.hint);
        return SG_E_FORMAT;
    }
    if (*out < min_ms)
        return fail(r, n, err, "%s must be more than 0", label(lbl, sizeof(lbl), key, where));
    if (*out > max_ms)
        return fail(r, n, err, "%s must be at most %" PRIu64 "s, not %s",
                    label(lbl, sizeof(lbl), key, where), max_ms / 1000, n->text);
    return 0;
}

static int get_size(uint64_t *out, const reader *r, const node *n, const char *key,
                    const char *where, uint64_t max, sg_error *err)
{
    char lbl[200], found[80], limit[32];
    sg_error perr = {0};
    if (n->kind != NODE_SCALAR || is_null(n))
        return wrong_type(r, n, key, where, "a size", err);
    if (sg_parse_size(out, n->text, &perr) < 0) {
        fail(r, n, err, "%s must be a size, not %s", label(lbl, sizeof(lbl), key, where),
             describe(n, found, sizeof(found)));
        sg_error_hint(err, "%s", perr.hint);
        return SG_E_FORMAT;
    }
    if (*out == 0)
        return fail(r, n, err, "%s must be more than 0", label(lbl, sizeof(lbl), key, where));
    if (*out > max) {
        sg_format_size(limit, sizeof(limit), max);
        return fail(r, n, err, "%s must be at most %s, not %s", label(lbl, sizeof(lbl), key, where),
                    limit, n->text);
    }
    return 0;
}

/* One of the words, with a "did you mean" for a near miss. */
static int get_choice(int *out, const reader *r, const node *n, const char *key, const char *where,
                      const char *const *words, size_t count, const char *expected, sg_error *err)
{
    char lbl[200], found[80];
    for (size_t i = 0; n->kind == NODE_SCALAR && i < count; i++) {
        if (strcmp(n->text, words[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    fail(r, n, err, "%s must be %s, not %s", label(lbl, sizeof(lbl), key, where), expected,
         describe(n, found, sizeof(found)));
    if (n->kind == NODE_SCALAR)
        hint_choices(err, n->text, words, count, "one of");
    return SG_E_FORMAT;
}

/* A path from the file: relative ones are taken from base_dir. */
static char *resolve_path(const char *base_dir, const char *path)
{
    size_t len, dir_len = strlen(base_dir);
    if (path[0] == '/')
        return sg_strdup(path);
    while (path[0] == '.' && path[1] == '/') {
        path += 2;
        while (*path == '/')
            path++;
    }
    len = strlen(path);
    while (len > 0 && path[len - 1] == '/')
        len--;
    if (len == 0 || (len == 1 && path[0] == '.'))
        return sg_strdup(base_dir);
    if (dir_len > 0 && base_dir[dir_len - 1] == '/')
        dir_len--;
    return sg_asprintf("%.*s/%.*s", (int)dir_len, base_dir, (int)len, path);
}

static int get_path(char **out, const reader *r, const node *n, const char *key, const char *where,
                    sg_error *err)
{
    char *text = NULL;
    int rc = get_string(&text, r, n, key, where, "a file name", err);
    if (rc == 0 && !(*out = resolve_path(r->base_dir, text)))
        rc = nomem(err);
    free(text);
    return rc;
}

static int get_path_list(sg_strlist *out, const reader *r, const node *n, const char *key,
                         const char *where, sg_error *err)
{
    char lbl[200], found[80];
    if (is_null(n))
        return 0;
    if (n->kind != NODE_SEQUENCE)
        return wrong_type(r, n, key, where, "a list of file names", err);
    if (n->count && !(out->items = sg_calloc(n->count, sizeof(*out->items))))
        return nomem(err);
    for (size_t i = 0; i < n->count; i++) {
        char *path = NULL;
        const node *item = n->items[i];
        if (item->kind != NODE_SCALAR || is_null(item))
            return fail(r, item, err, "%s must list file names, found %s",
                        label(lbl, sizeof(lbl), key, where), describe(item, found, sizeof(found)));
        int rc = get_path(&path, r, item, key, where, err);
        if (rc < 0)
            return rc;
        out->items[out->count++] = path;
    }
    return 0;
}

/* ---- mappings ---- */

typedef struct field {
    const char *key;
    bool required;
} field;

static const node *find_value(const node *map, const char *key)
{
    for (size_t i = 0; map->kind == NODE_MAPPING && i + 1 < map->count; i += 2)
        if (map->items[i]->kind == NODE_SCALAR && strcmp(map->items[i]->text, key) == 0)
            return map->items[i + 1];
    return NULL;
}

/* Credentials under any name people give them: a mistake to refuse before
 * it is committed to a repository. */
static const char *secret_hint(const char *key)
{
    static const char *const db[] = {"password", "passwd", "pgpassword", "sslpassword"};
    static const char *const aws[] = {
        "secret",           "secret_key",        "secret_access_key", "access_key",
        "access_key_id",    "aws_access_key_id", "session_token",     "aws_secret_access_key",
        "aws_session_token"};
    for (size_t i = 0; i < sizeof(db) / sizeof(db[0]); i++)
        if (strcmp(key, db[i]) == 0)
            return PASSWORD_HINT;
    for (size_t i = 0; i < sizeof(aws) / sizeof(aws[0]); i++)
        if (strcmp(key, aws[i]) == 0)
            return AWS_HINT;
    return NULL;
}

/* Sorts a mapping's values into values[] by the field table: unknown,
 * duplicate and missing keys are errors. A null value (the key alone, or
 * nothing at all) reads as an empty mapping. where names the mapping in
 * messages ("policy", "stage \"canary\""); NULL at the top. */
static int read_mapping(const node **values, const reader *r, const node *map, const field *fields,
                        size_t nfields, const char *where, sg_error *err)
{
    const char *names[16];
    char in[200], found[80];
    snprintf(in, sizeof(in), "%s%s", where ? " in " : "", where ? where : "");
    for (size_t f = 0; f < nfields; f++) {
        values[f] = NULL;
        names[f] = fields[f].key;
    }
    if (map->kind != NODE_MAPPING && !is_null(map))
        return wrong_type(r, map, where, NULL, "a mapping", err);
    for (size_t i = 0; i + 1 < map->count; i += 2) {
        const node *k = map->items[i];
        const char *hint;
        size_t f;
        if (k->kind != NODE_SCALAR)
            return fail(r, k, err, "keys must be names, not %s", describe(k, found, sizeof(found)));
        if (strcmp(k->text, "<<") == 0) {
            fail(r, k, err, "merge keys (<<) are not supported");
            sg_error_hint(err, "write the settings out in full");
            return SG_E_FORMAT;
        }
        if ((hint = secret_hint(k->text)) != NULL) {
            fail(r, k, err, "\"%s\"%s is a secret, and secrets do not belong in the pipeline file",
                 k->text, in);
            sg_error_hint(err, "%s", hint);
            return SG_E_FORMAT;
        }
        for (f = 0; f < nfields && strcmp(k->text, fields[f].key) != 0; f++)
            ;
        if (f == nfields) {
            fail(r, k, err, "unknown key \"%s\"%s", k->text, in);
            hint_choices(err, k->text, names, nfields, "keys allowed here");
            return SG_E_FORMAT;
        }
        if (values[f]) {
            const node *first = NULL;
            for (size_t j = 0; !first; j += 2)
                if (strcmp(map->items[j]->text, k->text) == 0)
                    first = map->items[j];
            fail(r, k, err, "duplicate key \"%s\"%s", k->text, in);
            sg_error_detail(err, "first at %s:%d:%d", r->file, first->line, first->column);
            return SG_E_FORMAT;
        }
        values[f] = map->items[i + 1];
    }
    for (size_t f = 0; f < nfields; f++)
        if (fields[f].required && !values[f])
            return fail(r, map, err, "missing key \"%s\"%s", fields[f].key, in);
    return 0;
}

/* ---- the sections ---- */

static int read_version(const reader *r, const node *root, sg_error *err)
{
    const node *v = find_value(root, "version");
    int64_t version;
    int rc;
    if (!v) {
        fail(r, root, err, "missing key \"version\"");
        sg_error_hint(err, "a pipeline file starts with version: %d", SG_PIPELINE_FORMAT);
        return SG_E_FORMAT;
    }
    if ((rc = get_int(&version, r, v, "version", NULL, INT64_MIN, INT64_MAX, err)) < 0)
        return rc;
    if (version != SG_PIPELINE_FORMAT)
        return fail(r, v, err,
                    "pipeline format %" PRId64 " is not supported (this shardgate reads %d)",
                    version, SG_PIPELINE_FORMAT);
    return 0;
}

static int read_store(sg_pipeline_config *cfg, const reader *r, const node *n, sg_error *err)
{
    char *url = NULL, *dir = NULL;
    int rc;
    if ((rc = get_string(&url, r, n, "store", NULL, "a URL", err)) < 0)
        goto done;
    if (strncmp(url, "file://", 7) == 0) {
        if (!url[7]) {
            rc = fail(r, n, err, "store URL \"%s\" names no directory", url);
            goto done;
        }
        if (!(dir = resolve_path(r->base_dir, url + 7)) ||
            !(cfg->store.url = sg_asprintf("file://%s", dir)))
            rc = nomem(err);
    } else if (strncmp(url, "s3://", 5) == 0) {
        size_t bucket = strcspn(url + 5, "/");
        if (memchr(url + 5, '@', bucket)) {
            rc = fail(r, n, err, "the store URL holds credentials");
            sg_error_hint(err, AWS_HINT);
        } else if (bucket == 0) {
            rc = fail(r, n, err, "store URL \"%s\" names no bucket", url);
        } else {
            cfg->store.url = url;
            url = NULL;
        }
    } else {
        rc = fail(r, n, err, "unsupported store URL \"%s\"", url);
        sg_error_hint(err, "use file://DIR or s3://BUCKET/PREFIX");
    }
done:
    free(url);
    free(dir);
    return rc;
}

/* The strings are the config's as soon as they are read. */
static int read_s3(sg_pipeline_config *cfg, const reader *r, const node *n, sg_error *err)
{
    static const field fields[] = {{"endpoint"},  {"region"},  {"path_style"},
                                   {"insecure"},  {"ca_file"}, {"parallel"},
                                   {"part_size"}, {"timeout"}, {"retry_time"}};
    const node *v[sizeof(fields) / sizeof(fields[0])];
    sg_store_config *s = &cfg->store;
    char *text = NULL;
    uint64_t ms = 0;
    unsigned parallel = 0;
    int rc;
    if ((rc = read_mapping(v, r, n, fields, sizeof(fields) / sizeof(fields[0]), "s3", err)) < 0)
        return rc;
    if (strncmp(s->url, "s3://", 5) != 0)
        return fail(r, n, err, "s3 settings apply to s3:// stores only");
    if (v[0]) {
        if ((rc = get_string(&text, r, v[0], "endpoint", "s3", "a URL", err)) < 0)
            return rc;
        s->s3_endpoint = text;
    }
    if (v[1]) {
        if ((rc = get_string(&text, r, v[1], "region", "s3", "a region", err)) < 0)
            return rc;
        s->s3_region = text;
    }
    if (v[4]) {
        if ((rc = get_path(&text, r, v[4], "ca_file", "s3", err)) < 0)
            return rc;
        s->s3_ca_file = text;
    }
    if ((v[2] && (rc = get_bool(&s->s3_path_style, r, v[2], "path_style", "s3", err)) < 0) ||
        (v[3] && (rc = get_bool(&s->s3_insecure, r, v[3], "insecure", "s3", err)) < 0) ||
        (v[5] && (rc = get_unsigned(&parallel, r, v[5], "parallel", "s3", 1, 64, err)) < 0) ||
        (v[6] && (rc = get_size(&s->s3_part_size, r, v[6], "part_size", "s3", SG_S3_MAX_PART_SIZE,
                                err)) < 0))
        return rc;
    s->s3_parallel = (int)parallel;
    /* The store counts whole seconds: round up, so a limit never shrinks. */
    if (v[7]) {
        if ((rc = get_duration(&ms, r, v[7], "timeout", "s3", 1, 86400000, err)) < 0)
            return rc;
        s->s3_timeout = (int)((ms + 999) / 1000);
    }
    if (v[8]) {
        if ((rc = get_duration(&ms, r, v[8], "retry_time", "s3", 1, 86400000, err)) < 0)
            return rc;
        s->s3_retry_time = (int)((ms + 999) / 1000);
    }
    return 0;
}

static int read_keys(sg_pipeline_config *cfg, const reader *r, const node *n, sg_error *err)
{
    static const field fields[] = {{"key", true}, {"recipients"}, {"trust"}};
    const node *v[3];
    int rc;
    if ((rc = read_mapping(v, r, n, fields, 3, "keys", err)) < 0 ||
        (rc = get_path(&cfg->key_path, r, v[0], "key", "keys", err)) < 0 ||
        (v[1] && (rc = get_path_list(&cfg->recipients, r, v[1], "recipients", "keys", err)) < 0) ||
        (v[2] && (rc = get_path_list(&cfg->trust, r, v[2], "trust", "keys", err)) < 0))
        return rc;
    return 0;
}

/* A positive decimal number of CPUs, as the docker driver reads it. */
static bool cpus_valid(const char *text)
{
    size_t whole = strspn(text, "0123456789"), frac = 0;
    if (text[whole] == '.')
        frac = strspn(text + whole + 1, "0123456789");
    if (whole + frac == 0 || whole > 6 || text[whole + (text[whole] == '.') + frac])
        return false;
    for (const char *p = text; *p; p++)
        if (*p >= '1' && *p <= '9')
            return true;
    return false;
}

static int read_sandbox(sg_pipeline_config *cfg, const reader *r, const node *n, sg_error *err)
{
    static const field fields[] = {{"driver"}, {"image"}, {"memory"}, {"cpus"}};
    const node *v[4];
    sg_sandbox_options *sb = &cfg->sandbox;
    char *driver = NULL, *image = NULL, *memory = NULL, *cpus = NULL, lbl[64];
    uint64_t bytes;
    int rc;
    if ((rc = read_mapping(v, r, n, fields, 4, "sandbox", err)) < 0)
        return rc;
    if (v[0]) {
        sg_error derr = {0};
        if ((rc = get_string(&driver, r, v[0], "driver", "sandbox", "a driver", err)) < 0)
            return rc;
        free((char *)sb->driver);
        sb->driver = driver;
        if (sg_sandbox_check_driver(driver, &derr) < 0) {
            static const char *const drivers[] = {"local", "docker"};
            fail(r, v[0], err, "%s", derr.message);
            hint_choices(err, driver, drivers, 2, "drivers");
            return SG_E_FORMAT;
        }
    }
    for (size_t i = 1; i < 4; i++)
        if (v[i] && strcmp(sb->driver, "docker") != 0)
            return fail(r, v[i], err, "%s applies to the docker driver only",
                        label(lbl, sizeof(lbl), fields[i].key, "sandbox"));
    if (v[1]) {
        if ((rc = get_string(&image, r, v[1], "image", "sandbox", "an image name", err)) < 0)
            return rc;
        sb->image = image;
    }
    if (v[2]) {
        /* Kept as bytes: the docker driver reads a plain number of bytes. */
        if ((rc = get_size(&bytes, r, v[2], "memory", "sandbox", INT64_MAX, err)) < 0)
            return rc;
        if (!(memory = sg_asprintf("%" PRIu64, bytes)))
            return nomem(err);
        sb->memory = memory;
    }
    if (v[3]) {
        if (v[3]->kind != NODE_SCALAR || !v[3]->plain || !cpus_valid(v[3]->text)) {
            wrong_type(r, v[3], "cpus", "sandbox", "a number of CPUs more than 0", err);
            return SG_E_FORMAT;
        }
        if (!(cpus = sg_strdup(v[3]->text)))
            return nomem(err);
        sb->cpus = cpus;
    }
    return 0;
}

static int read_target(sg_pipeline_config *cfg, const reader *r, const node *n, sg_error *err)
{
    if (n->kind == NODE_SCALAR && strcmp(n->text, "latest") == 0) {
        cfg->target = SG_PIPELINE_TARGET_LATEST;
        return 0;
    }
    if (n->kind == NODE_SCALAR && n->plain && n->text[0] == '-')
        return fail(r, n, err, "target must be latest or a version number, not %s", n->text);
    if (n->kind != NODE_SCALAR || !n->plain || n->text[0] < '0' || n->text[0] > '9')
        return wrong_type(r, n, "target", NULL, "latest or a version number", err);
    return get_int(&cfg->target, r, n, "target", NULL, 0, INT64_MAX - 1, err);
}

/* libpq reads the DSN, as it will to connect: a keyword/value string or a
 * URI, a password in either form is found the same way. */
static int check_dsn(const reader *r, const node *n, const char *shard, sg_error *err)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(n->text, &msg);
    int rc = 0;
    if (!opts && !msg) {
        rc = nomem(err);
    } else if (!opts) {
        msg[strcspn(msg, "\n")] = '\0';
        rc = fail(r, n, err, "invalid dsn of shard \"%s\": %s", shard, msg);
    } else {
        for (PQconninfoOption *o = opts; o->keyword; o++) {
            if (o->val &&
                (strcmp(o->keyword, "password") == 0 || strcmp(o->keyword, "sslpassword") == 0)) {
                rc = fail(r, n, err, "the dsn of shard \"%s\" holds a password", shard);
                sg_error_hint(err, PASSWORD_HINT);
                break;
            }
        }
    }
    PQconninfoFree(opts);
    PQfreemem(msg);
    return rc;
}

/* "shard \"name\"" when the mapping names itself, else "shard #3". */
static void item_name(char *buf, size_t size, const node *item, const char *kind, size_t index)
{
    const node *name = find_value(item, "name");
    if (name && name->kind == NODE_SCALAR && !is_null(name) && *name->text)
        snprintf(buf, size, "%s \"%s\"", kind, name->text);
    else
        snprintf(buf, size, "%s #%zu", kind, index + 1);
}

typedef struct sorted_name {
    const char *name;
    size_t index;
} sorted_name;

static int compare_names(const void *a, const void *b)
{
    const sorted_name *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

static size_t shard_index(const sg_pipeline_config *cfg, const char *name)
{
    size_t lo = 0, hi = cfg->nfleet;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(cfg->fleet[cfg->by_name[mid]].name, name);
        if (c == 0)
            return cfg->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NONE;
}

/* Sorts the fleet by name; a name twice is an error at its second place. */
static int index_fleet(sg_pipeline_config *cfg, const reader *r, const node *const *names,
                       sg_error *err)
{
    sorted_name *sorted = sg_calloc(cfg->nfleet, sizeof(*sorted));
    size_t dup = NONE, first = NONE;
    int rc = 0;
    if (!sorted || !(cfg->by_name = sg_calloc(cfg->nfleet, sizeof(*cfg->by_name)))) {
        rc = nomem(err);
        goto done;
    }
    for (size_t i = 0; i < cfg->nfleet; i++)
        sorted[i] = (sorted_name){cfg->fleet[i].name, i};
    qsort(sorted, cfg->nfleet, sizeof(*sorted), compare_names);
    for (size_t i = 0; i < cfg->nfleet; i++) {
        cfg->by_name[i] = sorted[i].index;
        if (i > 0 && strcmp(sorted[i].name, sorted[i - 1].name) == 0 &&
            (dup == NONE || sorted[i].index < dup)) {
            dup = sorted[i].index;
            for (first = i; first > 0 && strcmp(sorted[first - 1].name, sorted[i].name) == 0;)
                first--;
            first = sorted[first].index;
        }
    }
    if (dup != NONE) {
        rc = fail(r, names[dup], err, "duplicate shard name \"%s\"", cfg->fleet[dup].name);
        sg_error_detail(err, "first at %s:%d:%d", r->file, names[first]->line,
                        names[first]->column);
    }
done:
    free(sorted);
    return rc;
}

/* Reads the fleet; nodes[i] is shard i's mapping and names[i] its name, for
 * the checks that come later. */
static int read_fleet(sg_pipeline_config *cfg, const node ***nodes, const node ***names,
                      const reader *r, const node *n, sg_error *err)
{
    static const field fields[] = {{"name", true}, {"dsn", true}, {"ring", true}};
    if (n->kind != NODE_SEQUENCE)
        return wrong_type(r, n, "fleet", NULL, "a list of shards", err);
    if (n->count == 0)
        return fail(r, n, err, "fleet must list at least one shard");
    if (!(cfg->fleet = sg_calloc(n->count, sizeof(*cfg->fleet))) ||
        !(*nodes = sg_calloc(n->count, sizeof(**nodes))) ||
        !(*names = sg_calloc(n->count, sizeof(**names))))
        return nomem(err);
    for (size_t i = 0; i < n->count; i++) {
        sg_pipeline_shard *shard = &cfg->fleet[i];
        const node *v[3];
        char where[160];
        int rc;
        item_name(where, sizeof(where), n->items[i], "shard", i);
        (*nodes)[i] = n->items[i];
        shard->stage = NONE;
        cfg->nfleet++;
        if ((rc = read_mapping(v, r, n->items[i], fields, 3, where, err)) < 0 ||
            (rc = get_name(&shard->name, r, v[0], "name", where, "shard", err)) < 0 ||
            (rc = get_string(&shard->dsn, r, v[1], "dsn", where, "a connection string", err)) < 0 ||
            (rc = check_dsn(r, v[1], shard->name, err)) < 0 ||
            (rc = get_name(&shard->ring, r, v[2], "ring", where, "ring", err)) < 0)
            return rc;
        (*names)[i] = v[0];
    }
    return index_fleet(cfg, r, *names, err);
}

/* Puts shard i in stage s; at names the reference, for the error. */
static int assign(sg_pipeline_config *cfg, const reader *r, size_t i, size_t s, const node *at,
                  sg_error *err)
{
    sg_pipeline_shard *shard = &cfg->fleet[i];
    sg_pipeline_stage *stage = &cfg->stages[s];
    if (shard->stage == s)
        return fail(r, at, err, "shard \"%s\" is listed twice in stage \"%s\"", shard->name,
                    stage->name);
    if (shard->stage != NONE) {
        fail(r, at, err, "shard \"%s\" is in stage \"%s\" and in stage \"%s\"", shard->name,
             cfg->stages[shard->stage].name, stage->name);
        sg_error_hint(err, "every shard belongs to exactly one stage");
        return SG_E_FORMAT;
    }
    shard->stage = s;
    stage->shards[stage->nshards++] = i;
    return 0;
}

static int stage_ring(sg_pipeline_config *cfg, const reader *r, size_t s, const node *at,
                      sg_error *err)
{
    sg_pipeline_stage *stage = &cfg->stages[s];
    const char **rings = NULL;
    size_t nrings = 0, matches = 0;
    int rc = 0;
    for (size_t i = 0; i < cfg->nfleet; i++)
        matches += strcmp(cfg->fleet[i].ring, stage->ring) == 0;
    if (matches && !(stage->shards = sg_calloc(matches, sizeof(*stage->shards))))
        return nomem(err);
    for (size_t i = 0; i < cfg->nfleet && rc == 0; i++)
        if (strcmp(cfg->fleet[i].ring, stage->ring) == 0)
            rc = assign(cfg, r, i, s, at, err);
    if (rc < 0 || matches)
        return rc;
    /* The rings there are, once each in fleet order, for the hint. */
    if (!(rings = sg_calloc(cfg->nfleet, sizeof(*rings))))
        return nomem(err);
    for (size_t i = 0; i < cfg->nfleet; i++) {
        size_t j = 0;
        while (j < nrings && strcmp(rings[j], cfg->fleet[i].ring) != 0)
            j++;
        if (j == nrings)
            rings[nrings++] = cfg->fleet[i].ring;
    }
    fail(r, at, err, "ring \"%s\" of stage \"%s\" has no shards in the fleet", stage->ring,
         stage->name);
    hint_choices(err, stage->ring, rings, nrings, "rings in the fleet");
    free(rings);
    return SG_E_FORMAT;
}

static int stage_shards(sg_pipeline_config *cfg, const reader *r, size_t s, const node *n,
                        const char *where, sg_error *err)
{
    sg_pipeline_stage *stage = &cfg->stages[s];
    char found[80];
    if (n->kind != NODE_SEQUENCE)
        return wrong_type(r, n, "shards", where, "a list of shard names", err);
    if (n->count == 0)
        return fail(r, n, err, "shards in %s must list at least one shard", where);
    if (!(stage->shards = sg_calloc(n->count, sizeof(*stage->shards))))
        return nomem(err);
    for (size_t j = 0; j < n->count; j++) {
        const node *item = n->items[j];
        size_t i;
        int rc;
        if (item->kind != NODE_SCALAR || is_null(item))
            return fail(r, item, err, "shards in %s must list shard names, found %s", where,
                        describe(item, found, sizeof(found)));
        if ((i = shard_index(cfg, item->text)) == NONE) {
            const char **all = sg_calloc(cfg->nfleet, sizeof(*all));
            const char *guess;
            if (!all)
                return nomem(err);
            for (size_t k = 0; k < cfg->nfleet; k++)
                all[k] = cfg->fleet[k].name;
            guess = closest(item->text, all, cfg->nfleet);
            fail(r, item, err, "shard \"%s\" of stage \"%s\" is not in the fleet", item->text,
                 stage->name);
            if (guess)
                sg_error_hint(err, "did you mean \"%s\"?", guess);
            free(all);
            return SG_E_FORMAT;
        }
        if ((rc = assign(cfg, r, i, s, item, err)) < 0)
            return rc;
    }
    return 0;
}

static int read_stages(sg_pipeline_config *cfg, const reader *r, const node *n, sg_error *err)
{
    static const field fields[] = {{"name", true}, {"ring"}, {"shards"},
                                   {"parallel"},   {"soak"}, {"max_failures"}};
    const node **names = NULL;
    int rc = 0;
    if (n->kind != NODE_SEQUENCE)
        return wrong_type(r, n, "stages", NULL, "a list of stages", err);
    if (n->count == 0)
        return fail(r, n, err, "stages must list at least one stage");
    if (!(cfg->stages = sg_calloc(n->count, sizeof(*cfg->stages))) ||
        !(names = sg_calloc(n->count, sizeof(*names)))) {
        rc = nomem(err);
        goto done;
    }
    for (size_t s = 0; s < n->count; s++) {
        sg_pipeline_stage *stage = &cfg->stages[s];
        const node *v[6];
        char where[160];
        item_name(where, sizeof(where), n->items[s], "stage", s);
        cfg->nstages++;
        stage->parallel = 1;
        if ((rc = read_mapping(v, r, n->items[s], fields, 6, where, err)) < 0 ||
            (rc = get_name(&stage->name, r, v[0], "name", where, "stage", err)) < 0)
            goto done;
        names[s] = v[0];
        for (size_t t = 0; t < s; t++) {
            if (strcmp(cfg->stages[t].name, stage->name) == 0) {
                rc = fail(r, v[0], err, "duplicate stage name \"%s\"", stage->name);
                sg_error_detail(err, "first at %s:%d:%d", r->file, names[t]->line,
                                names[t]->column);
                goto done;
            }
        }
        if (v[1] && v[2]) {
            rc = fail(r, v[2], err, "stage \"%s\" names both a ring and shards", stage->name);
            sg_error_hint(err, STAGE_HINT);
            goto done;
        }
        if (!v[1] && !v[2]) {
            rc = fail(r, n->items[s], err, "stage \"%s\" names neither a ring nor shards",
                      stage->name);
            sg_error_hint(err, STAGE_HINT);
            goto done;
        }
        if ((v[1] && ((rc = get_name(&stage->ring, r, v[1], "ring", where, "ring", err)) < 0 ||
                      (rc = stage_ring(cfg, r, s, v[1], err)) < 0)) ||
            (v[2] && (rc = stage_shards(cfg, r, s, v[2], where, err)) < 0) ||
            (v[3] && (rc = get_unsigned(&stage->parallel, r, v[3], "parallel", where, 1, 100000,
                                        err)) < 0) ||
            (v[4] && (rc = get_duration(&stage->soak_ms, r, v[4], "soak", where, 0, UINT64_MAX,
                                        err)) < 0) ||
            (v[5] && (rc = get_unsigned(&stage->max_failures, r, v[5], "max_failures", where, 0,
                                        INT_MAX, err)) < 0))
            goto done;
    }
done:
    free(names);
    return rc;
}

static int read_policy(sg_pipeline_policy *p, const reader *r, const node *n, sg_error *err)
{
    static const field fields[] = {
        {"on_failure"}, {"lock_timeout"}, {"statement_timeout"}, {"retries"}, {"rehearsal_budget"}};
    static const char *const on_failure[] = {"halt", "rollback-stage", "rollback-all"};
    const node *v[5];
    int choice, rc;
    if ((rc = read_mapping(v, r, n, fields, 5, "policy", err)) < 0)
        return rc;
    if (v[0]) {
        if ((rc = get_choice(&choice, r, v[0], "on_failure", "policy", on_failure, 3,
                             "halt, rollback-stage or rollback-all", err)) < 0)
            return rc;
        p->on_failure = (sg_pipeline_on_failure)choice;
    }
    if ((v[1] && (rc = get_duration(&p->lock_timeout_ms, r, v[1], "lock_timeout", "policy", 1,
                                    UINT64_MAX, err)) < 0) ||
        (v[2] && (rc = get_duration(&p->statement_timeout_ms, r, v[2], "statement_timeout",
                                    "policy", 0, UINT64_MAX, err)) < 0) ||
        (v[3] &&
         (rc = get_unsigned(&p->retries, r, v[3], "retries", "policy", 0, 1000000, err)) < 0) ||
        (v[4] && (rc = get_duration(&p->rehearsal_budget_ms, r, v[4], "rehearsal_budget", "policy",
                                    0, UINT64_MAX, err)) < 0))
        return rc;
    return 0;
}

static int read_verify(sg_pipeline_config *cfg, const reader *r, const node *n, sg_error *err)
{
    static const field fields[] = {{"quiesced"}};
    const node *v[1];
    int rc;
    if ((rc = read_mapping(v, r, n, fields, 1, "verify", err)) < 0 ||
        (v[0] && (rc = get_bool(&cfg->verify_quiesced, r, v[0], "quiesced", "verify", err)) < 0))
        return rc;
    return 0;
}

static int read_objectives(sg_pipeline_config *cfg, const reader *r, const node *n, sg_error *err)
{
    static const field fields[] = {{"rto"}};
    const node *v[1];
    int rc;
    if ((rc = read_mapping(v, r, n, fields, 1, "objectives", err)) < 0 ||
        (v[0] &&
         (rc = get_duration(&cfg->rto_ms, r, v[0], "rto", "objectives", 0, UINT64_MAX, err)) < 0))
        return rc;
    return 0;
}

static int read_bluegreen(sg_bluegreen_options *o, const reader *r, const node *n, sg_error *err)
{
    static const field fields[] = {
        {"chunk_rows"}, {"chunk_time"}, {"chunk_pause"}, {"max_lag"}, {"keep_old"}};
    const node *v[5];
    unsigned rows = 0;
    int rc;
    if ((rc = read_mapping(v, r, n, fields, 5, "bluegreen", err)) < 0 ||
        (v[0] &&
         (rc = get_unsigned(&rows, r, v[0], "chunk_rows", "bluegreen", 1, 10000000, err)) < 0) ||
        (v[1] && (rc = get_duration(&o->chunk_time_ms, r, v[1], "chunk_time", "bluegreen", 0,
                                    UINT64_MAX, err)) < 0) ||
        (v[2] && (rc = get_duration(&o->chunk_pause_ms, r, v[2], "chunk_pause", "bluegreen", 0,
                                    UINT64_MAX, err)) < 0) ||
        (v[3] && (rc = get_duration(&o->max_lag_ms, r, v[3], "max_lag", "bluegreen", 0, UINT64_MAX,
                                    err)) < 0) ||
        (v[4] && (rc = get_duration(&o->keep_old_ms, r, v[4], "keep_old", "bluegreen", 0,
                                    UINT64_MAX, err)) < 0))
        return rc;
    if (v[0])
        o->chunk_rows = rows;
    return 0;
}

enum {
    F_VERSION,
    F_NAME,
    F_STORE,
    F_S3,
    F_KEYS,
    F_SANDBOX,
    F_MIGRATIONS,
    F_TARGET,
    F_FLEET,
    F_STAGES,
    F_POLICY,
    F_VERIFY,
    F_OBJECTIVES,
    F_BLUEGREEN,
    N_TOP
};

static int read_config(sg_pipeline_config *cfg, const reader *r, const node *root, sg_error *err)
{
    static const field fields[N_TOP] = {[F_VERSION] = {"version", true},
                                        [F_NAME] = {"name", true},
                                        [F_STORE] = {"store", true},
                                        [F_S3] = {"s3"},
                                        [F_KEYS] = {"keys", true},
                                        [F_SANDBOX] = {"sandbox"},
                                        [F_MIGRATIONS] = {"migrations", true},
                                        [F_TARGET] = {"target"},
                                        [F_FLEET] = {"fleet", true},
                                        [F_STAGES] = {"stages", true},
                                        [F_POLICY] = {"policy"},
                                        [F_VERIFY] = {"verify"},
                                        [F_OBJECTIVES] = {"objectives"},
                                        [F_BLUEGREEN] = {"bluegreen"}};
    const node *v[N_TOP], **nodes = NULL, **names = NULL;
    char found[80];
    int rc;
    if (!root || is_null(root)) {
        rc = fail_at(r, 1, 1, err, "the pipeline file is empty");
        sg_error_hint(err, "a pipeline file starts with version: %d", SG_PIPELINE_FORMAT);
        goto done;
    }
    if (root->kind != NODE_MAPPING) {
        rc = fail(r, root, err, "the pipeline file must be a mapping of settings, not %s",
                  describe(root, found, sizeof(found)));
        goto done;
    }
    cfg->target = SG_PIPELINE_TARGET_LATEST;
    cfg->policy = (sg_pipeline_policy){
        .on_failure = SG_ON_FAILURE_HALT, .lock_timeout_ms = 2000, .retries = 10};
    sg_bluegreen_options_init(&cfg->bluegreen);
    if (!(cfg->file = sg_strdup(r->file)) || !(cfg->sandbox.driver = sg_strdup("local"))) {
        rc = nomem(err);
        goto done;
    }
    if ((rc = read_version(r, root, err)) < 0 ||
        (rc = read_mapping(v, r, root, fields, N_TOP, NULL, err)) < 0 ||
        (rc = get_name(&cfg->name, r, v[F_NAME], "name", NULL, "pipeline", err)) < 0 ||
        (rc = read_store(cfg, r, v[F_STORE], err)) < 0 ||
        (v[F_S3] && (rc = read_s3(cfg, r, v[F_S3], err)) < 0) ||
        (rc = read_keys(cfg, r, v[F_KEYS], err)) < 0 ||
        (v[F_SANDBOX] && (rc = read_sandbox(cfg, r, v[F_SANDBOX], err)) < 0) ||
        (rc = get_path(&cfg->migrations, r, v[F_MIGRATIONS], "migrations", NULL, err)) < 0 ||
        (v[F_TARGET] && (rc = read_target(cfg, r, v[F_TARGET], err)) < 0) ||
        (rc = read_fleet(cfg, &nodes, &names, r, v[F_FLEET], err)) < 0 ||
        (rc = read_stages(cfg, r, v[F_STAGES], err)) < 0 ||
        (v[F_POLICY] && (rc = read_policy(&cfg->policy, r, v[F_POLICY], err)) < 0) ||
        (v[F_VERIFY] && (rc = read_verify(cfg, r, v[F_VERIFY], err)) < 0) ||
        (v[F_OBJECTIVES] && (rc = read_objectives(cfg, r, v[F_OBJECTIVES], err)) < 0) ||
        (v[F_BLUEGREEN] && (rc = read_bluegreen(&cfg->bluegreen, r, v[F_BLUEGREEN], err)) < 0))
        goto done;
    for (size_t i = 0; i < cfg->nfleet; i++) {
        if (cfg->fleet[i].stage == NONE) {
            rc = fail(r, nodes[i], err, "shard \"%s\" is in no stage", cfg->fleet[i].name);
            sg_error_hint(err, "add its ring or its name to a stage, or remove it from the fleet");
            goto done;
        }
    }
done:
    free(nodes);
    free(names);
    return rc;
}

/* ---- public ---- */

static void diag_discard(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
}

int sg_pipeline_config_parse(sg_pipeline_config *out, const char *text, size_t len,
                             const char *file, const char *base_dir, sg_error *err)
{
    reader r = {.file = file, .base_dir = base_dir};
    struct fy_diag_cfg dcfg;
    struct fy_parse_cfg pcfg = {0};
    node *root = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = diag_discard;
    dcfg.level = FYET_ERROR;
    if (!(r.diag = fy_diag_create(&dcfg))) {
        rc = nomem(err);
        goto done;
    }
    /* Errors are collected with their positions instead of printed. */
    fy_diag_set_collect_errors(r.diag, true);
    pcfg.flags = FYPCF_QUIET | FYPCF_COLLECT_DIAG;
    pcfg.diag = r.diag;
    if (!(r.parser = fy_parser_create(&pcfg)) || fy_parser_set_string(r.parser, text, len) != 0) {
        rc = nomem(err);
        goto done;
    }
    if ((rc = read_document(&root, &r, err)) < 0 || (rc = read_config(out, &r, root, err)) < 0)
        goto done;
done:
    if (rc < 0)
        sg_pipeline_config_clear(out);
    reader_clear(&r);
    return rc;
}

int sg_pipeline_config_load(sg_pipeline_config *out, const char *path, sg_error *err)
{
    char *text = NULL, *dir = NULL, real[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t len;
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = sg_file_read(&text, &len, path, SG_PIPELINE_MAX_FILE, err)) < 0)
        goto done;
    if (!(dir = slash ? sg_strndup(path, slash == path ? 1 : (size_t)(slash - path))
                      : sg_strdup("."))) {
        rc = nomem(err);
        goto done;
    }
    if (!realpath(dir, real)) {
        rc = sg_error_set(err, SG_E_IO, "cannot resolve the directory of %s: %s", path,
                          strerror(errno));
        goto done;
    }
    rc = sg_pipeline_config_parse(out, text, len, path, real, err);
done:
    free(text);
    free(dir);
    return rc;
}

static void strlist_clear(sg_strlist *list)
{
    for (size_t i = 0; i < list->count; i++)
        free((char *)list->items[i]);
    free(list->items);
}

void sg_pipeline_config_clear(sg_pipeline_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nfleet; i++) {
        free(cfg->fleet[i].name);
        free(cfg->fleet[i].dsn);
        free(cfg->fleet[i].ring);
    }
    for (size_t s = 0; s < cfg->nstages; s++) {
        free(cfg->stages[s].name);
        free(cfg->stages[s].ring);
        free(cfg->stages[s].shards);
    }
    free(cfg->fleet);
    free(cfg->stages);
    free(cfg->by_name);
    free(cfg->file);
    free(cfg->name);
    free((char *)cfg->store.url);
    free((char *)cfg->store.s3_endpoint);
    free((char *)cfg->store.s3_region);
    free((char *)cfg->store.s3_ca_file);
    free(cfg->key_path);
    strlist_clear(&cfg->recipients);
    strlist_clear(&cfg->trust);
    free((char *)cfg->sandbox.driver);
    free((char *)cfg->sandbox.image);
    free((char *)cfg->sandbox.memory);
    free((char *)cfg->sandbox.cpus);
    free(cfg->migrations);
    memset(cfg, 0, sizeof(*cfg));
}

const sg_pipeline_shard *sg_pipeline_config_shard(const sg_pipeline_config *cfg, const char *name)
{
    size_t i = shard_index(cfg, name);
    return i == NONE ? NULL : &cfg->fleet[i];
}

const char *sg_pipeline_on_failure_name(sg_pipeline_on_failure value)
{
    switch (value) {
    case SG_ON_FAILURE_ROLLBACK_STAGE:
        return "rollback-stage";
    case SG_ON_FAILURE_ROLLBACK_ALL:
        return "rollback-all";
    default:
        return "halt";
    }
}

int sg_pipeline_partition(bool *selected, const sg_pipeline_config *cfg, unsigned k, unsigned n,
                          sg_error *err)
{
    size_t dealt = 0;
    if (n == 0 || k < 1 || k > n) {
        sg_error_set(err, SG_E_USAGE, "invalid partition %u/%u", k, n);
        sg_error_hint(err, "partitions are numbered from 1 to N, as in 2/4");
        return SG_E_USAGE;
    }
    /* Balanced stage by stage: a wave is spread over every job, not given
     * to the first few. */
    for (size_t s = 0; s < cfg->nstages; s++) {
        for (size_t j = 0; j < cfg->nfleet; j++) {
            size_t i = cfg->by_name[j];
            if (cfg->fleet[i].stage == s)
                selected[i] = dealt++ % n == k - 1;
        }
    }
    return 0;
}
