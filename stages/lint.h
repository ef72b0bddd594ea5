/* The migration linter: rules over the parse trees of a migration set that
 * catch what takes long locks on a live shard (index builds, validations,
 * table rewrites), what loses data without saying so, and what the apply
 * modes cannot run. Each finding names the file, line and column, the object
 * and the safer way to do the same thing.
 *
 * Rules see the up and down sections; the verify section only gets
 * verify-not-read-only. A table created earlier in the same section is new
 * (nothing waits on it, so locking it is harmless), as is the table of a
 * mode=bluegreen file, which is rebuilt as a whole. Knowledge of validated
 * NOT NULL checks carries over from one file to the next. An unqualified
 * table name is taken to be in schema public, the default search_path, both
 * when matching tables and against a blue-green file's table=SCHEMA.TABLE.
 *
 * A rule is silenced for one statement by `-- shardgate:allow RULE` and for a
 * whole file by the same line in its header. */
#ifndef SG_STAGES_LINT_H
#define SG_STAGES_LINT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/error.h"
#include "stages/migration.h"

typedef enum { SG_LINT_ERROR, SG_LINT_WARNING } sg_lint_severity;

typedef struct sg_lint_rule {
    const char *id; /* what `-- shardgate:allow` names */
    sg_lint_severity severity;
    const char *summary; /* one line, for `lint --help` and the docs */
} sg_lint_rule;

/* Every rule, in the order the docs list them. */
extern const sg_lint_rule sg_lint_rules[];
extern const size_t sg_lint_rule_count;

/* The rule with this id, or NULL. */
const sg_lint_rule *sg_lint_rule_find(const char *id);

typedef struct sg_lint_finding {
    const sg_lint_rule *rule;
    sg_lint_severity severity; /* the rule's, or a warning where lint cannot be sure */
    const char *file;          /* the migration's path; points into the set */
    unsigned line, column;     /* 1-based, in the file */
    int64_t version;
    char *message;
    char *hint;
} sg_lint_finding;

typedef struct sg_lint_result {
    sg_lint_finding *items; /* by file in version order, then by line and column */
    size_t count, errors, warnings;
} sg_lint_result;

/* Lints every migration of set in order; knowledge carries over from earlier
 * files (validated checks). Findings are not failures: this returns 0 with
 * the findings in *out, and fails only for lack of memory (SG_E_NOMEM), when
 * *out is left empty. Clear *out with sg_lint_result_clear. */
int sg_lint_set(sg_lint_result *out, const sg_migration_set *set, sg_error *err);

/* Frees the findings and zeroes res; NULL is a no-op. */
void sg_lint_result_clear(sg_lint_result *res);

typedef enum {
    SG_LINT_TEXT, /* "FILE:LINE:COL: error: MESSAGE [RULE]", then "  hint: HINT" */
    SG_LINT_GCC   /* only the first line, as compilers print diagnostics */
} sg_lint_format;

/* Prints the findings, one per line (plus its hint in text format). A failed
 * write is SG_E_IO. */
int sg_lint_print(FILE *out, const sg_lint_result *res, sg_lint_format format, sg_error *err);

/* The same result as one JSON document:
 * {"findings":[{"rule","severity","file","line","column","version","message",
 * "hint"}],"errors":N,"warnings":N}. NULL on allocation failure. */
json_t *sg_lint_to_json(const sg_lint_result *res);

#endif
