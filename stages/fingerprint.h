/* Schema fingerprints: a normalized description of a database's schema (one
 * line per object: schemas, extensions, types, tables, columns, constraints,
 * indexes, sequences, views, functions, triggers, policies, rules, extended
 * statistics, collations) and the SHA-256 of that text. The registry stores
 * it after each applied migration, `status` compares it with the live one,
 * and the pipeline compares shards with each other and with the rehearsal
 * sandbox.
 *
 * The text is a header line, "shardgate-schema 1", then one line per object,
 * "KIND IDENTITY" or "KIND IDENTITY<TAB>ATTRIBUTES", sorted bytewise by
 * "KIND IDENTITY", each ending in '\n'. Names are quoted as quote_ident
 * does; backslash, and every control character, are escaped (\\ \n \t \r
 * \xHH), so a line holds exactly one object. It leaves out what differs
 * between copies of one schema: OIDs, owners, privileges, tablespaces,
 * statistics, sequence values, comments, creation order, dropped columns,
 * the search_path, and the `shardgate` schema (the registry itself).
 * Objects that belong to an extension are described by the extension's own
 * line. */
#ifndef SG_STAGES_FINGERPRINT_H
#define SG_STAGES_FINGERPRINT_H

#include <libpq-fe.h>
#include <stddef.h>

#include "common/error.h"

/* An immutable description: its text, its lines and its fingerprint. */
typedef struct sg_schema_desc sg_schema_desc;

/* Describes the schema of the database conn is connected to (PostgreSQL 14
 * or later), in one REPEATABLE READ READ ONLY transaction; on a connection
 * already in a transaction, inside it, under a savepoint that is rolled back
 * after, so the caller's transaction and settings are left as they were.
 * A failed query is SG_E_DB. */
int sg_schema_describe(sg_schema_desc **out, PGconn *conn, sg_error *err);

/* Rebuilds a description from its text, as stored in the registry. Text
 * that sg_schema_describe could not have produced (no header, a line
 * without a kind, a bad escape, lines out of order or twice, no final
 * newline) is SG_E_FORMAT naming the line. */
int sg_schema_desc_parse(sg_schema_desc **out, const char *text, size_t len, sg_error *err);

/* The normalized text, NUL-terminated. */
const char *sg_schema_desc_text(const sg_schema_desc *d);

/* The SHA-256 of the text, 64 lowercase hex digits. */
const char *sg_schema_desc_fingerprint(const sg_schema_desc *d);

/* The number of objects described (lines after the header). */
size_t sg_schema_desc_count(const sg_schema_desc *d);

void sg_schema_desc_free(sg_schema_desc *d);

typedef enum { SG_SCHEMA_ADDED, SG_SCHEMA_REMOVED, SG_SCHEMA_CHANGED } sg_schema_change_kind;

/* One object that differs. The strings are escaped as in the text and are
 * owned by the array that holds the change. */
typedef struct sg_schema_change {
    sg_schema_change_kind kind;
    const char *object; /* "KIND IDENTITY", e.g. "column public.t.c" */
    const char *before; /* attributes before; NULL when added or when it had none */
    const char *after;  /* attributes after; NULL when removed or when it has none */
} sg_schema_change;

/* The objects that differ from `before` to `after`, ordered by object;
 * *count is 0 (and *out NULL) when the descriptions are the same. The
 * changes own copies of their strings: they outlive both descriptions.
 * Free them with sg_schema_changes_free. */
int sg_schema_diff(sg_schema_change **out, size_t *count, const sg_schema_desc *before,
                   const sg_schema_desc *after, sg_error *err);

/* Frees what sg_schema_diff returned; NULL is a no-op. */
void sg_schema_changes_free(sg_schema_change *changes, size_t count);

/* "added", "removed" or "changed". */
const char *sg_schema_change_kind_name(sg_schema_change_kind kind);

#endif
