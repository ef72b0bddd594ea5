/* What a mode=bluegreen file's statements become. The engine builds a "green"
 * copy of the file's table, with the same name, in a schema of its own: the
 * file's ALTER TABLEs are rewritten onto green and run before the rows are
 * copied, its CREATE INDEXes are rewritten onto green and built CONCURRENTLY
 * after the copy, and its UPDATE ... SETs are not run at all but become fills,
 * expressions that compute a column of green from blue's row during the copy
 * and in the triggers that keep green in sync. Rewriting goes through the
 * parse tree (every RangeVar that names the table, FOREIGN KEY ... REFERENCES
 * included), never through the text. */
#ifndef SG_STAGES_BLUEGREEN_SQL_H
#define SG_STAGES_BLUEGREEN_SQL_H

#include <pg_query/pg_query.pb-c.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "stages/migration.h"

/* A column of green whose value is computed from blue's row, for the copy
 * and the sync triggers. */
typedef struct sg_bluegreen_fill {
    char *column;     /* green's column name (unquoted), after the file's renames */
    char *expression; /* SQL expression over blue's columns, unqualified, deparsed by libpg_query */
    unsigned line;    /* where it came from in the file */
} sg_bluegreen_fill;

/* A column rename of the file, from and to as unquoted names. */
typedef struct sg_bluegreen_rename {
    char *from, *to;
} sg_bluegreen_rename;

typedef struct sg_bluegreen_script {
    /* ALTER TABLE, ALTER TABLE RENAME COLUMN|CONSTRAINT rewritten onto green,
     * run before the copy */
    char **before;
    size_t nbefore;
    /* CREATE INDEX rewritten onto green and made CONCURRENTLY, run after the
     * copy, while green receives live writes through the triggers */
    char **after;
    size_t nafter;
    sg_bluegreen_fill *fills; /* one per column: a later one replaces an earlier */
    size_t nfills;
    sg_bluegreen_rename *renames; /* in the file's order */
    size_t nrenames;
} sg_bluegreen_script;

/* Builds the script of one section (up or down) of m, a mode=bluegreen file
 * whose table is m->bluegreen_table ("schema.table", exact names), for green
 * in schema green_schema (same table name). A section without a script gives
 * an empty one. A statement the engine cannot run is SG_E_FORMAT,
 * "FILE:LINE:COL: ..." naming what it is; one that cannot be rewritten
 * faithfully (see sg_sql_rewrite_table) is SG_E_INTERNAL, "FILE:LINE:COL: ...". */
int sg_bluegreen_script_build(sg_bluegreen_script **out, const sg_migration *m,
                              const sg_migration_section *section, const char *green_schema,
                              sg_error *err);

/* NULL is a no-op. */
void sg_bluegreen_script_free(sg_bluegreen_script *s);

/* Why a statement (its parse tree) cannot be in a blue-green file for table
 * schema.name, or NULL when it can: a static message such as "ALTER TABLE ...
 * SET SCHEMA moves the table". *location is the parse-tree location of the
 * offending part (counted, like every location of the tree, from the start of
 * the parsed text), or -1 for the statement as a whole. The builder and lint's
 * bluegreen rule both ask this, so that they agree. */
const char *sg_bluegreen_refusal(const PgQuery__Node *tree, const char *schema, const char *name,
                                 int *location);

/* The message for a refusal of sg_bluegreen_refusal in a file for table
 * ("schema.table"), into buf: the refusal itself, or, when the refusal only
 * names the statement (one of a kind, or of a table, that a blue-green file
 * cannot hold), the refusal followed by what such a file may hold. */
void sg_bluegreen_refusal_message(char *buf, size_t size, const char *refusal, const char *table);

/* Rewrites one SQL statement so that every reference to from_schema.name (or
 * to an unqualified name when from_schema is "public") names to_schema.name
 * instead, through the parse tree, and deparses it. Serves the file's
 * statements and definitions the catalog makes (pg_get_indexdef,
 * pg_get_constraintdef inside an ALTER TABLE, pg_get_triggerdef), which are
 * schema-qualified. With concurrently, a CREATE INDEX becomes CREATE INDEX
 * CONCURRENTLY (other statements are left as they are). Text that is not one
 * statement is SG_E_FORMAT. The result is parsed back and must give the
 * same tree: libpg_query's deparser gets some statements wrong (Debian's
 * 15-4.0 drops NULLS NOT DISTINCT, for one), and those are SG_E_INTERNAL
 * rather than DDL that does something else. */
int sg_sql_rewrite_table(char **out, const char *sql, const char *from_schema, const char *name,
                         const char *to_schema, bool concurrently, sg_error *err);

#endif
