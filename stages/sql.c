#include "stages/sql.h"

#include <ctype.h>
#include <pg_query.h>
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

/* The parse tree is unpacked with our allocator, so that allocation-failure
 * tests reach it like every other allocation. */
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

static ProtobufCAllocator tree_allocator = {tree_alloc, tree_free, NULL};

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

static int line_of(const char *text, size_t offset)
{
    int line = 0;
    for (size_t i = 0; i < offset; i++)
        line += text[i] == '\n';
    return line;
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

/* Gives each statement its first token (the statement starts there, after the
 * comments the grammar counts as its own) and its allow comments: those
 * inside its range, and one trailing it on the line where it ends. ranges[i]
 * is where statement i's range starts, ends[i] where its text ends. */
static int attach_tokens(sg_sql_script *s, const PgQuery__ScanResult *scan, const size_t *ranges,
                         const size_t *ends, sg_error *err)
{
    size_t next = 0, started = (size_t)-1;
    for (size_t t = 0; t < scan->n_tokens; t++) {
        const PgQuery__ScanToken *tok = scan->tokens[t];
        size_t at = (size_t)tok->start;
        while (next < s->count && at >= ranges[next + 1])
            next++;
        if (next >= s->count)
            break;
        if (!is_comment(tok)) {
            if (started != next) {
                s->stmts[next].text = s->text + at;
                started = next;
            }
            continue;
        }
        sg_sql_stmt *owner = &s->stmts[next];
        /* a comment before a statement's first token, on the line where the
         * previous statement ended, belongs to the previous one */
        if (next > 0 && started != next && at >= ends[next - 1] &&
            line_of(s->text + ends[next - 1], at - ends[next - 1]) == 0)
            owner = &s->stmts[next - 1];
        int rc = add_allowed(owner, s->text + at, (size_t)(tok->end - tok->start), err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int syntax_error(const char *text, const PgQueryError *e, unsigned first_line, sg_error *err)
{
    unsigned line = first_line, column = 1;
    if (e->cursorpos > 0)
        sg_sql_position(text, (size_t)e->cursorpos - 1, first_line, &line, &column);
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
    parsed = pg_query_parse_protobuf(s->text);
    if (parsed.error) {
        rc = syntax_error(s->text, parsed.error, first_line, err);
        goto done;
    }
    s->tree = pg_query__parse_result__unpack(&tree_allocator, parsed.parse_tree.len,
                                             (const uint8_t *)parsed.parse_tree.data);
    if (!s->tree)
        goto nomem;
    scanned = pg_query_scan(s->text);
    if (scanned.error) {
        rc = syntax_error(s->text, scanned.error, first_line, err);
        goto done;
    }
    scan = pg_query__scan_result__unpack(&tree_allocator, scanned.pbuf.len,
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
        s->stmts[i].text = s->text + ranges[i];
        s->stmts[i].tree = raw->stmt;
    }
    ranges[s->count] = len;
    if ((rc = attach_tokens(s, scan, ranges, ends, err)) < 0)
        goto done;
    for (size_t i = 0; i < s->count; i++) {
        sg_sql_stmt *stmt = &s->stmts[i];
        stmt->len = ends[i] - (size_t)(stmt->text - s->text);
        while (stmt->len && isspace((unsigned char)stmt->text[stmt->len - 1]))
            stmt->len--;
        sg_sql_position(s->text, (size_t)(stmt->text - s->text), first_line, &stmt->line,
                        &stmt->column);
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
        pg_query__scan_result__free_unpacked(scan, &tree_allocator);
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
        pg_query__parse_result__free_unpacked(script->tree, &tree_allocator);
    free(script->text);
    free(script);
}
