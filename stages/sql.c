#include "stages/sql.h"

#include <pg_query.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

struct sg_sql_script {
    char *text; /* NUL-terminated copy: libpg_query needs one */
    PgQuery__ParseResult *tree;
    sg_sql_stmt *stmts;
    size_t count;
};

/* Parse trees are unpacked with our allocator, so that allocation-failure
 * tests reach them like every other allocation, and a string put into a
 * tree is freed with it. */
static void *tree_alloc(void *data, size_t size)
{
    (void)data;
    return sg_malloc(size);
}

static void tree_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

ProtobufCAllocator sg_sql_tree_allocator = {tree_alloc, tree_free, NULL};

void sg_sql_position(const char *text, size_t offset, unsigned first_line, unsigned *line,
                     unsigned *column)
{
    unsigned l = first_line, c = 1;
    for (size_t i = 0; i < offset && text[i]; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *column = c;
}

static int is_comment(const PgQuery__ScanToken *tok)
{
    return tok->token == PG_QUERY__TOKEN__SQL_COMMENT || tok->token == PG_QUERY__TOKEN__C_COMMENT;
}

/* Whether text[from, to) holds no newline. */
static int same_line(const char *text, size_t from, size_t to)
{
    return !memchr(text + from, '\n', to - from);
}

/* Adds the rule ids of a `-- shardgate:allow R1 R2` (or `/ * ... * /`)
 * comment to stmt; other comments are ignored. */
static int add_allowed(sg_sql_stmt *stmt, const char *comment, size_t len, sg_error *err)
{
    static const char marker[] = "shardgate:allow";
    const char *end = comment + len;
    const char *p = comment + 2; /* past "--" or "/ *" */
    if (len >= 4 && comment[0] == '/' && end[-1] == '/' && end[-2] == '*')
        end -= 2;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if ((size_t)(end - p) < sizeof(marker) - 1 || strncmp(p, marker, sizeof(marker) - 1) != 0)
        return 0;
    p += sizeof(marker) - 1;
    if (p < end && *p != ' ' && *p != '\t' && *p != '\r') /* "shardgate:allowed" is prose */
        return 0;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',' || *p == '\r'))
            p++;
        const char *word = p;
        while (p < end && *p != ' ' && *p != '\t' && *p != ',' && *p != '\r')
            p++;
        if (p == word)
            break;
        char **grown = sg_array_grow(stmt->allowed, stmt->allowed_count, sizeof(char *));
        if (!grown)
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        stmt->allowed = grown;
        if (!(stmt->allowed[stmt->allowed_count] = sg_strndup(word, (size_t)(p - word))))
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        stmt->allowed_count++;
    }
    return 0;
}

/* Gives each statement its text, from its first token to its last (so
 * without the stray semicolons of empty statements before it, its ';' or the
 * comments around it), and its allow comments: those before its first token
 * or inside it, and one trailing it on the line where it ends. ranges[i] is
 * where statement i's range starts (after the previous ';'), ends[i] where its
 * ';' is, or len when it has none. */
static int attach_tokens(sg_sql_script *s, const PgQuery__ScanResult *scan, const size_t *ranges,
                         size_t *ends, sg_error *err)
{
    size_t next = 0;
    for (size_t t = 0; t < scan->n_tokens; t++) {
        const PgQuery__ScanToken *tok = scan->tokens[t];
        size_t at = (size_t)tok->start;
        while (next + 1 < s->count && at >= ranges[next + 1])
            next++;
        sg_sql_stmt *stmt = &s->stmts[next];
        if (is_comment(tok) || at < ranges[next] || at >= ends[next])
            continue;
        if (!stmt->text)
            stmt->text = s->text + at;
        stmt->len = (size_t)tok->end - (size_t)(stmt->text - s->text);
    }
    for (size_t i = 0; i < s->count; i++) {
        sg_sql_stmt *stmt = &s->stmts[i];
        if (!stmt->text) /* the grammar makes no statement without a token */
            stmt->text = s->text + ranges[i];
        /* the last statement may have no ';': it ends with its last token */
        if (ends[i] == ranges[s->count])
            ends[i] = (size_t)(stmt->text - s->text) + stmt->len;
    }

    next = 0;
    for (size_t t = 0; t < scan->n_tokens; t++) {
        const PgQuery__ScanToken *tok = scan->tokens[t];
        size_t at = (size_t)tok->start;
        sg_sql_stmt *owner;
        if (!is_comment(tok))
            continue;
        while (next + 1 < s->count && at >= ranges[next + 1])
            next++;
        if (at < (size_t)(s->stmts[next].text - s->text))
            owner = next > 0 && same_line(s->text, ends[next - 1], at) ? &s->stmts[next - 1]
                                                                       : &s->stmts[next];
        else if (at < ends[next] || same_line(s->text, ends[next], at))
            owner = &s->stmts[next];
        else if (next + 1 < s->count)
            owner = &s->stmts[next + 1];
        else
            continue; /* on a line of its own after the last statement */
        int rc = add_allowed(owner, s->text + at, (size_t)(tok->end - tok->start), err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* PostgreSQL reports the cursor in characters (pg_mbstrlen_with_len, here in
 * UTF-8), and columns count bytes: walk the characters the way it counts them. */
static size_t cursor_offset(const char *text, int cursor)
{
    size_t at = 0;
    for (int n = 1; n < cursor && text[at]; n++) {
        unsigned char c = (unsigned char)text[at];
        size_t len = c < 0x80             ? 1
                     : (c & 0xe0) == 0xc0 ? 2
                     : (c & 0xf0) == 0xe0 ? 3
                     : (c & 0xf8) == 0xf0 ? 4
                                          : 1;
        while (len-- && text[at])
            at++;
    }
    return at;
}

static int syntax_error(const char *text, const PgQueryError *e, unsigned first_line, sg_error *err)
{
    unsigned line = first_line, column = 1;
    if (e->cursorpos > 0)
        sg_sql_position(text, cursor_offset(text, e->cursorpos), first_line, &line, &column);
    return sg_error_set(err, SG_E_FORMAT, "%u:%u: %s", line, column, e->message);
}

int sg_sql_script_parse(sg_sql_script **out, const char *text, size_t len, unsigned first_line,
                        sg_error *err)
{
    PgQueryProtobufParseResult parsed = {0};
    PgQueryScanResult scanned = {0};
    PgQuery__ScanResult *scan = NULL;
    size_t *ranges = NULL, *ends = NULL;
    sg_sql_script *s = sg_calloc(1, sizeof(*s));
    int rc = SG_E_NOMEM;
    *out = NULL;
    if (!s || !(s->text = sg_strndup(text, len)))
        goto nomem;
    if (strlen(s->text) != len) {
        unsigned line, column;
        sg_sql_position(text, strlen(s->text), first_line, &line, &column);
        rc = sg_error_set(err, SG_E_FORMAT, "%u:%u: NUL byte in SQL text", line, column);
        goto done;
    }
    parsed = pg_query_parse_protobuf(s->text);
    if (parsed.error) {
        rc = syntax_error(s->text, parsed.error, first_line, err);
        goto done;
    }
    s->tree = pg_query__parse_result__unpack(&sg_sql_tree_allocator, parsed.parse_tree.len,
                                             (const uint8_t *)parsed.parse_tree.data);
    if (!s->tree)
        goto nomem;
    scanned = pg_query_scan(s->text);
    if (scanned.error) {
        rc = syntax_error(s->text, scanned.error, first_line, err);
        goto done;
    }
    scan = pg_query__scan_result__unpack(&sg_sql_tree_allocator, scanned.pbuf.len,
                                         (const uint8_t *)scanned.pbuf.data);
    s->count = s->tree->n_stmts;
    if (!scan || !(s->stmts = sg_calloc(s->count + 1, sizeof(*s->stmts))) ||
        !(ranges = sg_calloc(s->count + 1, sizeof(*ranges))) ||
        !(ends = sg_calloc(s->count + 1, sizeof(*ends))))
        goto nomem;
    for (size_t i = 0; i < s->count; i++) {
        const PgQuery__RawStmt *raw = s->tree->stmts[i];
        ranges[i] = (size_t)raw->stmt_location;
        /* stmt_len 0 means "to the end of the script" */
        ends[i] = raw->stmt_len ? ranges[i] + (size_t)raw->stmt_len : len;
        s->stmts[i].tree = raw->stmt;
    }
    ranges[s->count] = len;
    if ((rc = attach_tokens(s, scan, ranges, ends, err)) < 0)
        goto done;
    for (size_t i = 0; i < s->count; i++) {
        sg_sql_stmt *stmt = &s->stmts[i];
        stmt->offset = (size_t)(stmt->text - s->text);
        sg_sql_position(s->text, stmt->offset, first_line, &stmt->line, &stmt->column);
    }
    *out = s;
    s = NULL;
    rc = 0;
    goto done;
nomem:
    rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
done:
    free(ranges);
    free(ends);
    if (scan)
        pg_query__scan_result__free_unpacked(scan, &sg_sql_tree_allocator);
    pg_query_free_scan_result(scanned);
    pg_query_free_protobuf_parse_result(parsed);
    sg_sql_script_free(s);
    return rc;
}

size_t sg_sql_script_count(const sg_sql_script *script)
{
    return script->count;
}

const sg_sql_stmt *sg_sql_script_stmt(const sg_sql_script *script, size_t index)
{
    return index < script->count ? &script->stmts[index] : NULL;
}

void sg_sql_script_digest(const sg_sql_script *script, size_t count, char out[SG_SHA256_HEX_LEN])
{
    crypto_hash_sha256_state state;
    uint8_t digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_init(&state);
    for (size_t i = 0; script && i < count && i < script->count; i++) {
        /* each text with its length, so that statements cannot run together */
        uint64_t len = script->stmts[i].len;
        crypto_hash_sha256_update(&state, (const uint8_t *)&len, sizeof(len));
        crypto_hash_sha256_update(&state, (const uint8_t *)script->stmts[i].text, len);
    }
    crypto_hash_sha256_final(&state, digest);
    sg_hex_encode(out, digest, sizeof(digest));
}

int sg_sql_stmt_allows(const sg_sql_stmt *stmt, const char *rule)
{
    for (size_t i = 0; i < stmt->allowed_count; i++)
        if (strcmp(stmt->allowed[i], rule) == 0)
            return 1;
    return 0;
}

void sg_sql_script_free(sg_sql_script *script)
{
    if (!script)
        return;
    for (size_t i = 0; script->stmts && i < script->count; i++) {
        for (size_t j = 0; j < script->stmts[i].allowed_count; j++)
            free(script->stmts[i].allowed[j]);
        free(script->stmts[i].allowed);
    }
    free(script->stmts);
    if (script->tree)
        pg_query__parse_result__free_unpacked(script->tree, &sg_sql_tree_allocator);
    free(script->text);
    free(script);
}

void sg_sql_walk(const ProtobufCMessage *msg, sg_sql_visit_fn visit, void *ctx)
{
    if (!msg)
        return;
    visit(msg, ctx);
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const char *base = (const char *)msg;
    if (d == &pg_query__node__descriptor) {
        /* a Node is a oneof of some 250 fields: go straight to the one set */
        const PgQuery__Node *node = (const PgQuery__Node *)msg;
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(d, (unsigned)node->node_case);
        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE)
            sg_sql_walk(*(ProtobufCMessage *const *)(base + f->offset), visit, ctx);
        return;
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *items = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                sg_sql_walk(items[k], visit, ctx);
        } else {
            sg_sql_walk(*(ProtobufCMessage *const *)(base + f->offset), visit, ctx);
        }
    }
}
