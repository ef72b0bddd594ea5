/* A migration set: the directory of NNNN_name.sql files, each with its
 * directives and its up, down and verify sections parsed into statements.
 *
 *   -- shardgate:transaction=off lock_timeout=5s
 *   -- shardgate:up
 *   CREATE INDEX CONCURRENTLY orders_created ON orders (created_at);
 *   -- shardgate:down
 *   DROP INDEX CONCURRENTLY orders_created;
 *   -- shardgate:verify
 *   SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_created'::regclass;
 */
#ifndef SG_STAGES_MIGRATION_H
#define SG_STAGES_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/sha256.h"
#include "stages/sql.h"

typedef enum {
    SG_MIGRATION_TRANSACTIONAL, /* the default: one transaction per file */
    SG_MIGRATION_STATEMENTS,    /* transaction=off: statement by statement */
    SG_MIGRATION_BLUEGREEN      /* mode=bluegreen table=SCHEMA.TABLE */
} sg_migration_mode;

/* "transactional", "statements" or "bluegreen", as recorded in the registry. */
const char *sg_migration_mode_name(sg_migration_mode mode);

typedef struct sg_migration_section {
    sg_sql_script *script; /* NULL when the file has no such section */
    unsigned line;         /* of its `-- shardgate:` marker */
} sg_migration_section;

typedef struct sg_migration {
    int64_t version;
    char *name; /* the file name without the number and ".sql" */
    char *file; /* the file name */
    char *path;
    char sha256[SG_SHA256_HEX_LEN]; /* of the whole file */
    sg_migration_mode mode;
    char *bluegreen_table; /* SCHEMA.TABLE of mode=bluegreen */
    bool irreversible, destructive, data_change;
    int64_t lock_timeout_ms, statement_timeout_ms; /* -1 when not set by the file */
    char **allowed;                                /* `-- shardgate:allow` in the header */
    size_t allowed_count;
    sg_migration_section up, down, verify;
} sg_migration;

typedef struct sg_migration_set {
    char *dir;
    sg_migration *items; /* by version */
    size_t count;
} sg_migration_set;

/* Largest migration file read, as a guard against pointing at the wrong
 * directory. */
#define SG_MIGRATION_MAX_FILE (64u << 20)

/* Loads every NNNN_name.sql file of dir (other files are ignored; a .sql file
 * with another name is an error, as are two files with one version).
 * Malformed files are SG_E_FORMAT with "FILE:LINE:COL: ..." in the message. */
int sg_migration_set_load(sg_migration_set **out, const char *dir, sg_error *err);

/* Parses one file's text; file is its name (NNNN_name.sql), path where it was
 * read from. */
int sg_migration_parse(sg_migration *out, const char *path, const char *file, const char *text,
                       size_t len, sg_error *err);

/* The migration with this version, or NULL. */
const sg_migration *sg_migration_set_find(const sg_migration_set *set, int64_t version);

/* Whether rule is silenced for the whole file by a header allow line. */
bool sg_migration_allows(const sg_migration *m, const char *rule);

void sg_migration_clear(sg_migration *m);
void sg_migration_set_free(sg_migration_set *set);

#endif
