/* SQL scripts through PostgreSQL's own parser (libpg_query): a script is split
 * into statements by the grammar, never by looking for semicolons, so dollar
 * quotes, E'' strings, comments and CREATE RULE bodies are handled exactly as
 * the server handles them. Each statement keeps its parse tree, its place in
 * the file and the rules silenced for it by `-- shardgate:allow RULE`. */
#ifndef SG_STAGES_SQL_H
#define SG_STAGES_SQL_H

#include <pg_query/pg_query.pb-c.h>
#include <stddef.h>

#include "common/error.h"
#include "common/sha256.h"

typedef struct sg_sql_stmt {
    const char *text; /* from its first token to its last, without the ';' */
    size_t len;
    size_t offset;             /* of text in the script: parse-tree locations count from there */
    unsigned line, column;     /* of the first token, 1-based, in the file */
    const PgQuery__Node *tree; /* the statement's parse tree */
    char **allowed;            /* rule ids silenced for this statement */
    size_t allowed_count;
} sg_sql_stmt;

typedef struct sg_sql_script sg_sql_script;

/* Parses len bytes of SQL that start at line first_line of their file. A
 * syntax error is SG_E_FORMAT, with the line and column in the message as
 * "LINE:COL: syntax error at or near ...". An empty script (only whitespace or
 * comments) has no statements. */
int sg_sql_script_parse(sg_sql_script **out, const char *text, size_t len, unsigned first_line,
                        sg_error *err);

size_t sg_sql_script_count(const sg_sql_script *script);
const sg_sql_stmt *sg_sql_script_stmt(const sg_sql_script *script, size_t index);

/* NULL is a no-op. */
void sg_sql_script_free(sg_sql_script *script);

/* SHA-256 (hex) over the text of the first `count` statements, which
 * tells whether the statements a run has done are still those of the file. */
void sg_sql_script_digest(const sg_sql_script *script, size_t count, char out[SG_SHA256_HEX_LEN]);

/* Whether rule is silenced for stmt by a `-- shardgate:allow` comment. */
int sg_sql_stmt_allows(const sg_sql_stmt *stmt, const char *rule);

/* The allocator parse trees are unpacked (and packed copies freed) with. */
extern ProtobufCAllocator sg_sql_tree_allocator;

/* Calls visit on msg, then on every message below it (as they are after the
 * visit), through protobuf-c's descriptors: one walker for the parser's some
 * 250 node types. The walker only reads; a visitor of a tree of its own may
 * change the message it is given. */
typedef void (*sg_sql_visit_fn)(const ProtobufCMessage *msg, void *ctx);
void sg_sql_walk(const ProtobufCMessage *msg, sg_sql_visit_fn visit, void *ctx);

/* The line and column (1-based) of byte offset in text, which starts at line
 * first_line. */
void sg_sql_position(const char *text, size_t offset, unsigned first_line, unsigned *line,
                     unsigned *column);

#endif
