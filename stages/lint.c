#include "stages/lint.h"

#include <ctype.h>
#include <errno.h>
#include <pg_query.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/mem.h"
#include "stages/bluegreen_sql.h"

enum {
    R_INDEX_NOT_CONCURRENT,
    R_CONCURRENTLY_IN_TRANSACTION,
    R_CONSTRAINT_NOT_VALID,
    R_SET_NOT_NULL,
    R_TABLE_REWRITE,
    R_VOLATILE_DEFAULT,
    R_UNIQUE_WITHOUT_INDEX,
    R_DESTRUCTIVE,
    R_LOCK_TABLE,
    R_TRUNCATE,
    R_VACUUM_FULL,
    R_CLUSTER,
    R_REINDEX_NOT_CONCURRENT,
    R_DATA_CHANGE,
    R_MISSING_DOWN,
    R_VERIFY_NOT_READ_ONLY,
    R_BLUEGREEN_OTHER_TABLE,
    R_UNKNOWN_RULE,
    R_COPY_CLIENT,
    R_INDEX_UNNAMED,
    R_COUNT
};

const sg_lint_rule sg_lint_rules[] = {
    [R_INDEX_NOT_CONCURRENT] = {"index-not-concurrent", SG_LINT_ERROR,
                                "CREATE INDEX without CONCURRENTLY on an existing table"},
    [R_CONCURRENTLY_IN_TRANSACTION] = {"concurrently-in-transaction", SG_LINT_ERROR,
                                       "CONCURRENTLY in a file that runs in one transaction"},
    [R_CONSTRAINT_NOT_VALID] = {"constraint-not-valid", SG_LINT_ERROR,
                                "foreign key or check added to an existing table without NOT "
                                "VALID"},
    [R_SET_NOT_NULL] = {"set-not-null", SG_LINT_ERROR,
                        "SET NOT NULL without a validated CHECK (column IS NOT NULL)"},
    [R_TABLE_REWRITE] = {"table-rewrite", SG_LINT_ERROR,
                         "ALTER COLUMN TYPE, SET LOGGED, SET TABLESPACE or another change "
                         "that rewrites an existing table"},
    [R_VOLATILE_DEFAULT] = {"volatile-default", SG_LINT_ERROR,
                            "new column with a volatile default, which rewrites the table"},
    [R_UNIQUE_WITHOUT_INDEX] = {"unique-without-index", SG_LINT_ERROR,
                                "UNIQUE or PRIMARY KEY added to an existing table without "
                                "USING INDEX"},
    [R_DESTRUCTIVE] = {"destructive", SG_LINT_ERROR,
                       "drop or rename of a table, column or schema without the "
                       "destructive directive"},
    [R_LOCK_TABLE] = {"lock-table", SG_LINT_ERROR, "explicit LOCK TABLE"},
    [R_TRUNCATE] = {"truncate", SG_LINT_ERROR, "TRUNCATE of an existing table"},
    [R_VACUUM_FULL] = {"vacuum-full", SG_LINT_ERROR, "VACUUM FULL"},
    [R_CLUSTER] = {"cluster", SG_LINT_ERROR, "CLUSTER"},
    [R_REINDEX_NOT_CONCURRENT] = {"reindex-not-concurrent", SG_LINT_ERROR,
                                  "REINDEX without CONCURRENTLY"},
    [R_DATA_CHANGE] = {"data-change", SG_LINT_WARNING,
                       "INSERT, UPDATE, DELETE, MERGE or COPY FROM on an existing table "
                       "without the data-change directive"},
    [R_MISSING_DOWN] = {"missing-down", SG_LINT_ERROR,
                        "no down section in a file not marked irreversible"},
    [R_VERIFY_NOT_READ_ONLY] = {"verify-not-read-only", SG_LINT_ERROR,
                                "verify statement that is not a plain SELECT"},
    [R_BLUEGREEN_OTHER_TABLE] = {"bluegreen-other-table", SG_LINT_ERROR,
                                 "statement of a mode=bluegreen file that is not an ALTER TABLE, "
                                 "CREATE INDEX or UPDATE ... SET of its table, or that a rebuild "
                                 "cannot run"},
    [R_UNKNOWN_RULE] = {"unknown-rule", SG_LINT_WARNING,
                        "-- shardgate:allow naming a rule that does not exist"},
    [R_INDEX_UNNAMED] = {"concurrent-index-unnamed", SG_LINT_ERROR,
                         "CREATE INDEX CONCURRENTLY without an index name"},
    [R_COPY_CLIENT] = {"copy-client", SG_LINT_ERROR,
                       "COPY FROM STDIN or TO STDOUT, which a migration has no client data for"},
};
const size_t sg_lint_rule_count = R_COUNT;
_Static_assert(sizeof(sg_lint_rules) / sizeof(*sg_lint_rules) == R_COUNT,
               "a rule without an entry");

const sg_lint_rule *sg_lint_rule_find(const char *id)
{
    for (size_t i = 0; i < R_COUNT; i++)
        if (strcmp(sg_lint_rules[i].id, id) == 0)
            return &sg_lint_rules[i];
    return NULL;
}

/* ---- a small string map: open addressing, so that what one file teaches
 * the next costs O(1) per lookup however long the set is ---- */

typedef struct map_entry {
    char *key; /* NULL: an empty slot */
    char *value;
} map_entry;

typedef struct name_map {
    map_entry *slots;
    size_t cap, count; /* cap is 0 or a power of two */
} name_map;

static map_entry *map_slot(map_entry *slots, size_t cap, const char *key)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    size_t i = (size_t)h & (cap - 1);
    while (slots[i].key && strcmp(slots[i].key, key) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static const map_entry *map_find(const name_map *m, const char *key)
{
    if (!m->cap)
        return NULL;
    const map_entry *e = map_slot(m->slots, m->cap, key);
    return e->key ? e : NULL;
}

/* Adds key, or replaces its value; value may be NULL. */
static int map_put(name_map *m, const char *key, const char *value)
{
    char *copy = NULL;
    int rc = SG_E_NOMEM;
    if (value && !(copy = sg_strdup(value)))
        goto done;
    if (2 * (m->count + 1) > m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 16;
        map_entry *slots = sg_calloc(cap, sizeof(*slots));
        if (!slots)
            goto done;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].key)
                *map_slot(slots, cap, m->slots[i].key) = m->slots[i];
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    map_entry *e = map_slot(m->slots, m->cap, key);
    if (!e->key) {
        if (!(e->key = sg_strdup(key)))
            goto done;
        m->count++;
    }
    free(e->value);
    e->value = copy;
    copy = NULL;
    rc = 0;
done:
    free(copy);
    return rc;
}

static void map_clear(name_map *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].key);
        free(m->slots[i].value);
    }
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

/* ---- the linter's state ---- */

typedef enum { SECTION_UP, SECTION_DOWN, SECTION_VERIFY } section_kind;

/* A table as the statement names it, and as lint keys it. */
typedef struct table {
    char name[160]; /* as written: "schema.table" or "table" */
    char key[160];  /* "schema.table", schema public when unqualified */
} table;

typedef struct lint {
    sg_lint_result *res;
    const sg_migration *m;
    section_kind section;
    const sg_sql_stmt *stmt; /* NULL for findings about the whole file */
    unsigned file_line;      /* where findings about the whole file point */
    table bluegreen;         /* the table of a mode=bluegreen file */
    name_map created;        /* tables created earlier in this section */
    name_map proven;         /* "TABLE\x1fCOLUMN": a validated CHECK (COLUMN IS NOT NULL) */
    name_map pending;        /* "TABLE\x1fCONSTRAINT" of a NOT VALID check: its columns */
    /* The first failure (only ever an allocation). Rules report through
     * report() and carry on; it is checked after each statement, which keeps
     * the rules free of error plumbing for a case that stops everything. */
    int rc;
    sg_error *err;
} lint;

static void fail_nomem(lint *l)
{
    if (l->rc == 0)
        l->rc = sg_error_set(l->err, SG_E_NOMEM, "out of memory");
}

static void table_set(table *t, const char *schema, const char *name)
{
    if (schema && *schema) {
        snprintf(t->name, sizeof(t->name), "%s.%s", schema, name);
        snprintf(t->key, sizeof(t->key), "%s.%s", schema, name);
    } else {
        snprintf(t->name, sizeof(t->name), "%s", name);
        snprintf(t->key, sizeof(t->key), "public.%s", name);
    }
}

static void table_of(table *t, const PgQuery__RangeVar *rv)
{
    table_set(t, rv->schemaname, rv->relname);
}

/* A qualified name of a DROP: a List of Strings, catalog.schema.name at most. */
static bool table_of_names(table *t, const PgQuery__Node *node)
{
    if (node->node_case != PG_QUERY__NODE__NODE_LIST)
        return false;
    const PgQuery__List *list = node->list;
    const char *parts[3] = {NULL, NULL, NULL};
    if (list->n_items == 0 || list->n_items > 3)
        return false;
    for (size_t i = 0; i < list->n_items; i++) {
        if (list->items[i]->node_case != PG_QUERY__NODE__NODE_STRING)
            return false;
        parts[3 - list->n_items + i] = list->items[i]->string->sval;
    }
    table_set(t, parts[1], parts[2]);
    return true;
}

/* Whether locking t is harmless: nothing but this migration uses it yet. */
static bool table_is_new(const lint *l, const table *t)
{
    if (map_find(&l->created, t->key))
        return true;
    return l->m->mode == SG_MIGRATION_BLUEGREEN && strcmp(t->key, l->bluegreen.key) == 0;
}

static bool silenced(const lint *l, const sg_lint_rule *rule)
{
    return sg_migration_allows(l->m, rule->id) ||
           (l->stmt && sg_sql_stmt_allows(l->stmt, rule->id));
}

/* The position of a parse-tree location, or of the statement's first token
 * when the node has none (-1). */
static void position(lint *l, int32_t location, unsigned *line, unsigned *column)
{
    if (!l->stmt) {
        *line = l->file_line;
        *column = 1;
        return;
    }
    *line = l->stmt->line;
    *column = l->stmt->column;
    if (location < 0)
        return;
    /* locations count from the start of the section's script */
    size_t base = l->stmt->offset;
    if ((size_t)location < base || (size_t)location - base > l->stmt->len)
        return;
    sg_sql_position(l->stmt->text, (size_t)location - base, l->stmt->line, line, column);
    if (*line == l->stmt->line)
        *column += l->stmt->column - 1;
}

static void vreport(lint *l, int rule, sg_lint_severity severity, int32_t location,
                    const char *hint, const char *fmt, va_list ap)
{
    const sg_lint_rule *r = &sg_lint_rules[rule];
    sg_lint_result *res = l->res;
    char message[512];
    unsigned line, column;
    if (l->rc < 0 || silenced(l, r))
        return;
    position(l, location, &line, &column);
    if (l->rc < 0)
        return;
    vsnprintf(message, sizeof(message), fmt, ap);
    sg_lint_finding *grown = sg_array_grow(res->items, res->count, sizeof(*res->items));
    if (!grown) {
        fail_nomem(l);
        return;
    }
    res->items = grown;
    sg_lint_finding *f = &res->items[res->count];
    *f = (sg_lint_finding){.rule = r,
                           .severity = severity,
                           .file = l->m->path,
                           .line = line,
                           .column = column,
                           .version = l->m->version};
    if (!(f->message = sg_strdup(message)) || !(f->hint = sg_strdup(hint))) {
        free(f->message);
        fail_nomem(l);
        return;
    }
    res->count++;
    if (severity == SG_LINT_ERROR)
        res->errors++;
    else
        res->warnings++;
}

/* Adds a finding of rule at location (-1: the statement's start), unless the
 * statement or the file silences the rule. */
static void report(lint *l, int rule, int32_t location, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void report(lint *l, int rule, int32_t location, const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(l, rule, sg_lint_rules[rule].severity, location, hint, fmt, ap);
    va_end(ap);
}

static void report_warning(lint *l, int rule, int32_t location, const char *hint, const char *fmt,
                           ...) __attribute__((format(printf, 5, 6)));
static void report_warning(lint *l, int rule, int32_t location, const char *hint, const char *fmt,
                           ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(l, rule, SG_LINT_WARNING, location, hint, fmt, ap);
    va_end(ap);
}

static void learn(lint *l, name_map *map, const char *key, const char *value)
{
    if (l->rc == 0 && map_put(map, key, value) < 0)
        fail_nomem(l);
}

/* ---- rules about one statement ---- */

static const char transaction_off_hint[] = "add -- shardgate:transaction=off to the file's header";

static void rewrite_hint(char *hint, size_t size, const table *t)
{
    snprintf(hint, size,
             "rebuild the table without a long lock: put the change in a file with "
             "-- shardgate:mode=bluegreen table=%s",
             t->key);
}

/* Drops lose data and renames break the code that runs against the shard;
 * the file says it means it with the destructive directive. A down section
 * undoes its up section, so it drops by nature. */
static void report_destructive(lint *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report_destructive(lint *l, const char *fmt, ...)
{
    va_list ap;
    if (l->section != SECTION_UP || l->m->destructive)
        return;
    va_start(ap, fmt);
    vreport(l, R_DESTRUCTIVE, SG_LINT_ERROR, -1,
            "if that is intended, add -- shardgate:destructive to the file's header", fmt, ap);
    va_end(ap);
}

static bool def_elem_true(const PgQuery__DefElem *d)
{
    const PgQuery__Node *arg = d->arg;
    if (!arg)
        return true;
    switch (arg->node_case) {
    case PG_QUERY__NODE__NODE_STRING:
        return strcmp(arg->string->sval, "false") != 0 && strcmp(arg->string->sval, "off") != 0 &&
               strcmp(arg->string->sval, "0") != 0;
    case PG_QUERY__NODE__NODE_INTEGER:
        return arg->integer->ival != 0;
    case PG_QUERY__NODE__NODE_BOOLEAN:
        return arg->boolean->boolval;
    default:
        return true;
    }
}

/* Whether a VACUUM, REINDEX or CLUSTER option list turns option on. */
static bool has_option(PgQuery__Node *const *options, size_t n, const char *option)
{
    for (size_t i = 0; i < n; i++)
        if (options[i]->node_case == PG_QUERY__NODE__NODE_DEF_ELEM &&
            strcmp(options[i]->def_elem->defname, option) == 0)
            return def_elem_true(options[i]->def_elem);
    return false;
}

static void concurrently_in_transaction(lint *l, const char *what, const char *name)
{
    if (l->m->mode != SG_MIGRATION_TRANSACTIONAL)
        return;
    report(l, R_CONCURRENTLY_IN_TRANSACTION, -1, transaction_off_hint,
           "%s CONCURRENTLY %s cannot run inside a transaction, and this file runs in one", what,
           name);
}

static void lint_index(lint *l, const PgQuery__IndexStmt *s)
{
    table t;
    char name[200];
    if (!s->relation)
        return;
    table_of(&t, s->relation);
    if (*s->idxname)
        snprintf(name, sizeof(name), "%s on %s", s->idxname, t.name);
    else
        snprintf(name, sizeof(name), "on %s", t.name);
    /* a failed concurrent build leaves an INVALID index that a retry must
     * drop first: only a name lets the runner find it */
    if (s->concurrent && !*s->idxname)
        report(l, R_INDEX_UNNAMED, -1, "name the index: CREATE INDEX CONCURRENTLY name ON ...",
               "CREATE INDEX CONCURRENTLY %s has no name, so an invalid index left by a failed "
               "build cannot be found and dropped before a retry",
               name);
    if (s->concurrent)
        concurrently_in_transaction(l, "CREATE INDEX", name);
    else if (!table_is_new(l, &t))
        report(l, R_INDEX_NOT_CONCURRENT, -1,
               "use CREATE INDEX CONCURRENTLY, in a file with -- shardgate:transaction=off",
               "CREATE INDEX %s blocks writes to the table while the index builds", name);
}

/* The columns a CHECK expression proves NOT NULL: "col IS NOT NULL", alone
 * or in a conjunction (PostgreSQL's implication test sees through AND),
 * appended to cols separated by \x1f. Returns how many. */
static int not_null_columns(const PgQuery__Node *expr, char *cols, size_t size)
{
    if (!expr)
        return 0;
    if (expr->node_case == PG_QUERY__NODE__NODE_BOOL_EXPR &&
        expr->bool_expr->boolop == PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR) {
        int n = 0;
        for (size_t i = 0; i < expr->bool_expr->n_args; i++)
            n += not_null_columns(expr->bool_expr->args[i], cols, size);
        return n;
    }
    if (expr->node_case != PG_QUERY__NODE__NODE_NULL_TEST ||
        expr->null_test->nulltesttype != PG_QUERY__NULL_TEST_TYPE__IS_NOT_NULL ||
        !expr->null_test->arg || expr->null_test->arg->node_case != PG_QUERY__NODE__NODE_COLUMN_REF)
        return 0;
    const PgQuery__ColumnRef *ref = expr->null_test->arg->column_ref;
    if (ref->n_fields == 0 ||
        ref->fields[ref->n_fields - 1]->node_case != PG_QUERY__NODE__NODE_STRING)
        return 0;
    size_t used = strlen(cols);
    snprintf(cols + used, size - used, "%s%s", used ? "\x1f" : "",
             ref->fields[ref->n_fields - 1]->string->sval);
    return 1;
}

static void learn_proven(lint *l, const table *t, const char *cols)
{
    char key[400];
    for (const char *p = cols; *p;) {
        size_t len = strcspn(p, "\x1f");
        snprintf(key, sizeof(key), "%s\x1f%.*s", t->key, (int)len, p);
        learn(l, &l->proven, key, NULL);
        p += len + (p[len] != '\0');
    }
}

/* What a CHECK teaches about NOT NULL: proven now if validated, or once a
 * VALIDATE CONSTRAINT names it. */
static void learn_check(lint *l, const table *t, const PgQuery__Constraint *c)
{
    char cols[300] = "", key[400];
    int n = not_null_columns(c->raw_expr, cols, sizeof(cols));
    if (n == 0)
        return;
    if (!c->skip_validation) {
        learn_proven(l, t, cols);
        return;
    }
    /* unnamed, PostgreSQL calls it TABLE_COLUMN_check when the expression
     * names one column, else TABLE_check; columns named only outside IS NOT
     * NULL are not counted, and a wrong guess costs a finding, never one lost */
    const char *relname = strrchr(t->key, '.') + 1;
    if (*c->conname)
        snprintf(key, sizeof(key), "%s\x1f%s", t->key, c->conname);
    else if (n == 1)
        snprintf(key, sizeof(key), "%s\x1f%s_%s_check", t->key, relname, cols);
    else
        snprintf(key, sizeof(key), "%s\x1f%s_check", t->key, relname);
    learn(l, &l->pending, key, cols);
}

static void learn_validated(lint *l, const table *t, const char *conname)
{
    char key[400];
    snprintf(key, sizeof(key), "%s\x1f%s", t->key, conname);
    const map_entry *e = map_find(&l->pending, key);
    if (e)
        learn_proven(l, t, e->value);
}

static void lint_constraint(lint *l, const table *t, const PgQuery__Constraint *c,
                            const char *column)
{
    char hint[300];
    const char *name = *c->conname ? c->conname : "";
    const char *space = *c->conname ? " " : "";
    switch (c->contype) {
    case PG_QUERY__CONSTR_TYPE__CONSTR_FOREIGN:
    case PG_QUERY__CONSTR_TYPE__CONSTR_CHECK:
        if (c->skip_validation)
            return;
        if (column)
            snprintf(hint, sizeof(hint),
                     "add the column first, then the constraint with ALTER TABLE %s ADD "
                     "CONSTRAINT ... NOT VALID, and VALIDATE CONSTRAINT it in a later statement",
                     t->name);
        else
            snprintf(hint, sizeof(hint),
                     "add it NOT VALID, then ALTER TABLE %s VALIDATE CONSTRAINT in a later "
                     "statement or file: validating takes a lock that lets writes through",
                     t->name);
        report(l, R_CONSTRAINT_NOT_VALID, c->location, hint,
               "adding %s%s%s to existing table %s checks every row while blocking writes",
               c->contype == PG_QUERY__CONSTR_TYPE__CONSTR_FOREIGN ? "foreign key" : "check", space,
               name, t->name);
        return;
    case PG_QUERY__CONSTR_TYPE__CONSTR_PRIMARY:
    case PG_QUERY__CONSTR_TYPE__CONSTR_UNIQUE: {
        const char *kind =
            c->contype == PG_QUERY__CONSTR_TYPE__CONSTR_PRIMARY ? "PRIMARY KEY" : "UNIQUE";
        if (*c->indexname)
            return;
        snprintf(hint, sizeof(hint),
                 "CREATE UNIQUE INDEX CONCURRENTLY first, then ALTER TABLE %s ADD CONSTRAINT ... "
                 "%s USING INDEX",
                 t->name, kind);
        report(l, R_UNIQUE_WITHOUT_INDEX, c->location, hint,
               "adding %s%s%s to existing table %s builds its index while blocking reads and "
               "writes",
               kind, space, name, t->name);
        return;
    }
    default:
        return;
    }
}

/* Functions whose result changes from row to row: as a default of a new
 * column they make PostgreSQL rewrite the table to store one value per row. */
static const char *const volatile_functions[] = {
    "clock_timestamp",  "gen_random_bytes", "gen_random_uuid",
    "nextval",          "random",           "random_normal",
    "timeofday",        "uuid_generate_v1", "uuid_generate_v1mc",
    "uuid_generate_v4", "uuidv4",           "uuidv7",
};

/* Stable or immutable functions commonly used as defaults: one value for the
 * whole ALTER, stored once in the catalog (PostgreSQL 11 and later). */
static const char *const stable_functions[] = {
    "btrim",
    "concat",
    "current_database",
    "current_setting",
    "date_part",
    "date_trunc",
    "extract",
    "json_build_array",
    "json_build_object",
    "jsonb_build_array",
    "jsonb_build_object",
    "left",
    "length",
    "lower",
    "make_date",
    "make_interval",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "md5",
    "now",
    "position",
    "replace",
    "right",
    "round",
    "statement_timestamp",
    "substring",
    "timezone",
    "to_char",
    "to_date",
    "to_json",
    "to_jsonb",
    "to_timestamp",
    "transaction_timestamp",
    "upper",
};

static bool in_list(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

typedef struct default_scan {
    const PgQuery__FuncCall *volatile_call, *unknown_call;
} default_scan;

static const char *func_name(const PgQuery__FuncCall *call)
{
    const PgQuery__Node *last = call->n_funcname ? call->funcname[call->n_funcname - 1] : NULL;
    return last && last->node_case == PG_QUERY__NODE__NODE_STRING ? last->string->sval : "";
}

static void default_visit(const ProtobufCMessage *msg, void *ctx)
{
    default_scan *scan = ctx;
    if (msg->descriptor != &pg_query__func_call__descriptor)
        return;
    const PgQuery__FuncCall *call = (const PgQuery__FuncCall *)msg;
    const char *name = func_name(call);
    const char *schema =
        call->n_funcname == 2 && call->funcname[0]->node_case == PG_QUERY__NODE__NODE_STRING
            ? call->funcname[0]->string->sval
            : NULL;
    /* a volatile name is volatile in whatever schema its extension lives; a
     * stable name is only trusted in pg_catalog, where the built-in is */
    if (in_list(volatile_functions, sizeof(volatile_functions) / sizeof(*volatile_functions),
                name)) {
        if (!scan->volatile_call)
            scan->volatile_call = call;
    } else if ((schema && strcmp(schema, "pg_catalog") != 0) ||
               !in_list(stable_functions, sizeof(stable_functions) / sizeof(*stable_functions),
                        name)) {
        if (!scan->unknown_call)
            scan->unknown_call = call;
    }
}

static bool is_serial(const PgQuery__TypeName *type)
{
    static const char *const serials[] = {"bigserial", "serial",  "serial2",
                                          "serial4",   "serial8", "smallserial"};
    if (!type || type->n_names != 1 || type->names[0]->node_case != PG_QUERY__NODE__NODE_STRING)
        return false;
    return in_list(serials, sizeof(serials) / sizeof(*serials), type->names[0]->string->sval);
}

static void lint_default(lint *l, const table *t, const PgQuery__ColumnDef *col,
                         const PgQuery__Node *expr)
{
    static const char hint[] = "add the column without a default (or with a constant one), "
                               "then SET DEFAULT and fill existing rows in batches";
    default_scan scan = {NULL, NULL};
    sg_sql_walk(&expr->base, default_visit, &scan);
    if (scan.volatile_call)
        report(l, R_VOLATILE_DEFAULT, scan.volatile_call->location, hint,
               "default %s() of new column %s is volatile: adding it rewrites table %s",
               func_name(scan.volatile_call), col->colname, t->name);
    /* Unknown functions (user-defined ones are VOLATILE unless declared
     * otherwise) get a warning, not an error: lint cannot read the catalog */
    else if (scan.unknown_call)
        report_warning(l, R_VOLATILE_DEFAULT, scan.unknown_call->location, hint,
                       "default of new column %s calls %s(), which lint cannot prove stable: if "
                       "it is volatile, adding the column rewrites table %s",
                       col->colname, func_name(scan.unknown_call), t->name);
}

static void lint_add_column(lint *l, const table *t, const PgQuery__ColumnDef *col)
{
    char hint[300];
    rewrite_hint(hint, sizeof(hint), t);
    if (is_serial(col->type_name))
        report(l, R_VOLATILE_DEFAULT, col->location,
               "add an integer column, attach a sequence as its default, then fill existing "
               "rows in batches",
               "new column %s is %s: filling it from a sequence rewrites table %s", col->colname,
               col->type_name->names[0]->string->sval, t->name);
    for (size_t i = 0; i < col->n_constraints; i++) {
        if (col->constraints[i]->node_case != PG_QUERY__NODE__NODE_CONSTRAINT)
            continue;
        const PgQuery__Constraint *c = col->constraints[i]->constraint;
        if (c->contype == PG_QUERY__CONSTR_TYPE__CONSTR_DEFAULT && c->raw_expr)
            lint_default(l, t, col, c->raw_expr);
        else if (c->contype == PG_QUERY__CONSTR_TYPE__CONSTR_GENERATED)
            report(l, R_TABLE_REWRITE, c->location, hint,
                   "adding stored generated column %s rewrites table %s while blocking reads "
                   "and writes",
                   col->colname, t->name);
        else if (c->contype == PG_QUERY__CONSTR_TYPE__CONSTR_IDENTITY)
            report(l, R_TABLE_REWRITE, c->location, hint,
                   "adding identity column %s rewrites table %s while blocking reads and writes",
                   col->colname, t->name);
        else
            lint_constraint(l, t, c, col->colname);
    }
}

static void lint_alter_cmd(lint *l, const table *t, const PgQuery__AlterTableCmd *cmd)
{
    static const char set_not_null_hint[] =
        "first ADD CONSTRAINT ... CHECK (%s IS NOT NULL) NOT VALID and VALIDATE CONSTRAINT it: "
        "PostgreSQL 12 and later then skip the scan (the check can be dropped afterwards)";
    const PgQuery__Node *def = cmd->def;
    char hint[300];
    const char *rewrite = NULL;
    int32_t location = -1;
    bool is_new = table_is_new(l, t);
    switch (cmd->subtype) {
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DetachPartition:
        if (def && def->node_case == PG_QUERY__NODE__NODE_PARTITION_CMD &&
            def->partition_cmd->concurrent && def->partition_cmd->name) {
            table part;
            table_of(&part, def->partition_cmd->name);
            concurrently_in_transaction(l, "DETACH PARTITION", part.name);
        }
        return;
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DropColumn:
        if (!map_find(&l->created, t->key))
            report_destructive(l, "DROP COLUMN %s of table %s loses its data", cmd->name, t->name);
        return;
    default:
        break;
    }
    if (is_new)
        return;
    switch (cmd->subtype) {
    case PG_QUERY__ALTER_TABLE_TYPE__AT_AddColumn:
        if (def && def->node_case == PG_QUERY__NODE__NODE_COLUMN_DEF)
            lint_add_column(l, t, def->column_def);
        return;
    case PG_QUERY__ALTER_TABLE_TYPE__AT_AddConstraint:
        if (def && def->node_case == PG_QUERY__NODE__NODE_CONSTRAINT)
            lint_constraint(l, t, def->constraint, NULL);
        return;
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetNotNull: {
        char key[400];
        snprintf(key, sizeof(key), "%s\x1f%s", t->key, cmd->name);
        if (map_find(&l->proven, key))
            return;
        snprintf(hint, sizeof(hint), set_not_null_hint, cmd->name);
        report(l, R_SET_NOT_NULL, -1, hint,
               "SET NOT NULL on column %s of table %s scans the table while blocking reads and "
               "writes",
               cmd->name, t->name);
        return;
    }
    case PG_QUERY__ALTER_TABLE_TYPE__AT_AlterColumnType:
        rewrite = "changing the type of column";
        if (def && def->node_case == PG_QUERY__NODE__NODE_COLUMN_DEF)
            location = def->column_def->location;
        break;
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetLogged:
        rewrite = "SET LOGGED";
        break;
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetUnLogged:
        rewrite = "SET UNLOGGED";
        break;
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetAccessMethod:
        rewrite = "SET ACCESS METHOD";
        break;
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetTableSpace:
        rewrite = "SET TABLESPACE";
        break;
    default:
        return;
    }
    rewrite_hint(hint, sizeof(hint), t);
    if (cmd->subtype == PG_QUERY__ALTER_TABLE_TYPE__AT_AlterColumnType)
        report(l, R_TABLE_REWRITE, location, hint,
               "changing the type of column %s rewrites table %s and its indexes while blocking "
               "reads and writes (unless the new type is binary-compatible)",
               cmd->name, t->name);
    else
        report(l, R_TABLE_REWRITE, location, hint,
               "%s rewrites table %s while blocking reads and writes", rewrite, t->name);
}

static void learn_alter_cmd(lint *l, const table *t, const PgQuery__AlterTableCmd *cmd)
{
    const PgQuery__Node *def = cmd->def;
    if (cmd->subtype == PG_QUERY__ALTER_TABLE_TYPE__AT_AddConstraint && def &&
        def->node_case == PG_QUERY__NODE__NODE_CONSTRAINT &&
        def->constraint->contype == PG_QUERY__CONSTR_TYPE__CONSTR_CHECK)
        learn_check(l, t, def->constraint);
    else if (cmd->subtype == PG_QUERY__ALTER_TABLE_TYPE__AT_ValidateConstraint)
        learn_validated(l, t, cmd->name);
}

static void lint_alter_table(lint *l, const PgQuery__AlterTableStmt *s)
{
    table t;
    if (s->objtype != PG_QUERY__OBJECT_TYPE__OBJECT_TABLE || !s->relation)
        return;
    table_of(&t, s->relation);
    for (size_t i = 0; i < s->n_cmds; i++)
        if (s->cmds[i]->node_case == PG_QUERY__NODE__NODE_ALTER_TABLE_CMD)
            lint_alter_cmd(l, &t, s->cmds[i]->alter_table_cmd);
    /* learnt after the whole statement: a check added by one command does not
     * spare the scan of a SET NOT NULL in the same ALTER TABLE */
    if (l->section != SECTION_UP)
        return;
    for (size_t i = 0; i < s->n_cmds; i++)
        if (s->cmds[i]->node_case == PG_QUERY__NODE__NODE_ALTER_TABLE_CMD)
            learn_alter_cmd(l, &t, s->cmds[i]->alter_table_cmd);
}

static void lint_drop(lint *l, const PgQuery__DropStmt *s)
{
    table t;
    if (s->concurrent && s->n_objects && table_of_names(&t, s->objects[0]))
        concurrently_in_transaction(l, "DROP INDEX", t.name);
    for (size_t i = 0; i < s->n_objects; i++) {
        const PgQuery__Node *object = s->objects[i];
        if (s->remove_type == PG_QUERY__OBJECT_TYPE__OBJECT_TABLE && table_of_names(&t, object) &&
            !map_find(&l->created, t.key))
            report_destructive(l, "DROP TABLE %s loses its data", t.name);
        else if (s->remove_type == PG_QUERY__OBJECT_TYPE__OBJECT_SCHEMA &&
                 object->node_case == PG_QUERY__NODE__NODE_STRING)
            report_destructive(l, "DROP SCHEMA %s drops what it holds%s", object->string->sval,
                               s->behavior == PG_QUERY__DROP_BEHAVIOR__DROP_CASCADE
                                   ? " (CASCADE: every object in it)"
                                   : "");
    }
}

static void lint_rename(lint *l, const PgQuery__RenameStmt *s)
{
    table t = {.name = ""};
    if (s->relation) {
        table_of(&t, s->relation);
        if (map_find(&l->created, t.key))
            return;
    }
    switch (s->rename_type) {
    case PG_QUERY__OBJECT_TYPE__OBJECT_TABLE:
    case PG_QUERY__OBJECT_TYPE__OBJECT_VIEW:
    case PG_QUERY__OBJECT_TYPE__OBJECT_MATVIEW:
        if (s->relation)
            report_destructive(l, "renaming %s to %s breaks the code that uses the old name",
                               t.name, s->newname);
        return;
    case PG_QUERY__OBJECT_TYPE__OBJECT_COLUMN:
        if (s->relation) {
            report_destructive(l,
                               "renaming column %s of %s to %s breaks the code that uses the "
                               "old name",
                               s->subname, t.name, s->newname);
        }
        return;
    case PG_QUERY__OBJECT_TYPE__OBJECT_SCHEMA:
        report_destructive(l, "renaming schema %s to %s breaks the code that uses the old name",
                           s->subname, s->newname);
        return;
    default:
        return;
    }
}

static void lint_set_schema(lint *l, const PgQuery__AlterObjectSchemaStmt *s)
{
    table t;
    if (s->object_type != PG_QUERY__OBJECT_TYPE__OBJECT_TABLE || !s->relation)
        return;
    table_of(&t, s->relation);
    if (!map_find(&l->created, t.key))
        report_destructive(l, "moving table %s to schema %s breaks the code that uses the old name",
                           t.name, s->newschema);
}

static void lint_reindex(lint *l, const PgQuery__ReindexStmt *s)
{
    char name[200];
    if (s->relation) {
        table t;
        table_of(&t, s->relation);
        snprintf(name, sizeof(name), "%s", t.name);
    } else {
        snprintf(name, sizeof(name), "%s", *s->name ? s->name : "(the current database)");
    }
    if (has_option(s->params, s->n_params, "concurrently"))
        concurrently_in_transaction(l, "REINDEX", name);
    else
        report(l, R_REINDEX_NOT_CONCURRENT, -1,
               "use REINDEX CONCURRENTLY, in a file with -- shardgate:transaction=off",
               "REINDEX %s blocks writes, and reads that use the index, while it rebuilds", name);
}

/* Findings of a statement that names tables (LOCK, TRUNCATE, VACUUM): one per
 * existing table it names. */
static void report_tables(lint *l, int rule, PgQuery__Node *const *rels, size_t n, const char *hint,
                          const char *fmt)
{
    for (size_t i = 0; i < n; i++) {
        const PgQuery__RangeVar *rv = NULL;
        if (rels[i]->node_case == PG_QUERY__NODE__NODE_RANGE_VAR)
            rv = rels[i]->range_var;
        else if (rels[i]->node_case == PG_QUERY__NODE__NODE_VACUUM_RELATION)
            rv = rels[i]->vacuum_relation->relation;
        if (!rv)
            continue;
        table t;
        table_of(&t, rv);
        if (!table_is_new(l, &t))
            report(l, rule, rv->location, hint, fmt, t.name);
    }
}

static void lint_vacuum(lint *l, const PgQuery__VacuumStmt *s)
{
    static const char hint[] = "VACUUM FULL has no place in a migration: run plain VACUUM, or "
                               "pg_repack outside migrations";
    static const char fmt[] = "VACUUM FULL %s rewrites the table while blocking reads and writes";
    if (!s->is_vacuumcmd || !has_option(s->options, s->n_options, "full"))
        return;
    if (s->n_rels == 0)
        report(l, R_VACUUM_FULL, -1, hint, fmt, "(every table of the database)");
    else
        report_tables(l, R_VACUUM_FULL, s->rels, s->n_rels, hint, fmt);
}

static void lint_cluster(lint *l, const PgQuery__ClusterStmt *s)
{
    static const char hint[] = "CLUSTER has no place in a migration: use pg_repack outside "
                               "migrations, or rebuild the table with mode=bluegreen";
    table t;
    if (!s->relation) {
        report(l, R_CLUSTER, -1, hint,
               "CLUSTER rewrites every clustered table of the database while blocking reads and "
               "writes");
        return;
    }
    table_of(&t, s->relation);
    if (!table_is_new(l, &t))
        report(l, R_CLUSTER, s->relation->location, hint,
               "CLUSTER %s rewrites the table while blocking reads and writes", t.name);
}

static void lint_data_change(lint *l, const char *what, const PgQuery__RangeVar *rv)
{
    table t;
    if (!rv || l->m->data_change)
        return;
    table_of(&t, rv);
    /* an UPDATE of a blue-green file's table is not run but fills green, and
     * the bluegreen rule refuses every other change of its rows */
    if (l->m->mode == SG_MIGRATION_BLUEGREEN && strcmp(t.key, l->bluegreen.key) == 0)
        return;
    if (!map_find(&l->created, t.key))
        report(l, R_DATA_CHANGE, rv->location,
               "if the change is intended, add -- shardgate:data-change to the file's header",
               "%s changes rows of table %s, but the file has no data-change directive", what,
               t.name);
}

static void learn_created(lint *l, const PgQuery__RangeVar *rv)
{
    table t;
    table_of(&t, rv);
    learn(l, &l->created, t.key, NULL);
}

/* A mode=bluegreen file rebuilds one table: anything else in it would run on
 * the live shard outside the engine's steps, and some changes of the table
 * itself have no place in a rebuild. The down section is a blue-green change
 * too. The engine's builder asks the same question, so that lint and the
 * engine agree. */
static void lint_bluegreen(lint *l, const PgQuery__Node *tree)
{
    static const char hint[] =
        "a blue-green file changes only its table: put other statements in their own file";
    const char *file_table = l->m->bluegreen_table;
    const char *dot = strchr(file_table, '.');
    char schema[80], message[512];
    int location;
    snprintf(schema, sizeof(schema), "%.*s", (int)(dot - file_table), file_table);
    const char *why = sg_bluegreen_refusal(tree, schema, dot + 1, &location);
    if (!why)
        return;
    sg_bluegreen_refusal_message(message, sizeof(message), why, file_table);
    report(l, R_BLUEGREEN_OTHER_TABLE, location, hint, "%s", message);
}

static void lint_stmt(lint *l)
{
    const PgQuery__Node *tree = l->stmt->tree;
    static const char lock_hint[] = "let each statement take the lock it needs, under the "
                                    "file's lock_timeout";
    static const char truncate_hint[] = "if the rows are meant to go, silence this with "
                                        "-- shardgate:allow truncate on the statement";
    if (l->m->mode == SG_MIGRATION_BLUEGREEN && l->m->bluegreen_table)
        lint_bluegreen(l, tree);
    switch (tree->node_case) {
    case PG_QUERY__NODE__NODE_INDEX_STMT:
        lint_index(l, tree->index_stmt);
        break;
    case PG_QUERY__NODE__NODE_ALTER_TABLE_STMT:
        lint_alter_table(l, tree->alter_table_stmt);
        break;
    case PG_QUERY__NODE__NODE_DROP_STMT:
        lint_drop(l, tree->drop_stmt);
        break;
    case PG_QUERY__NODE__NODE_RENAME_STMT:
        lint_rename(l, tree->rename_stmt);
        break;
    case PG_QUERY__NODE__NODE_ALTER_OBJECT_SCHEMA_STMT:
        lint_set_schema(l, tree->alter_object_schema_stmt);
        break;
    case PG_QUERY__NODE__NODE_REINDEX_STMT:
        lint_reindex(l, tree->reindex_stmt);
        break;
    case PG_QUERY__NODE__NODE_VACUUM_STMT:
        lint_vacuum(l, tree->vacuum_stmt);
        break;
    case PG_QUERY__NODE__NODE_CLUSTER_STMT:
        lint_cluster(l, tree->cluster_stmt);
        break;
    case PG_QUERY__NODE__NODE_LOCK_STMT:
        report_tables(l, R_LOCK_TABLE, tree->lock_stmt->relations, tree->lock_stmt->n_relations,
                      lock_hint,
                      "LOCK TABLE %s holds its lock until the end of the transaction, and every "
                      "other session queues behind it");
        break;
    case PG_QUERY__NODE__NODE_TRUNCATE_STMT:
        report_tables(l, R_TRUNCATE, tree->truncate_stmt->relations,
                      tree->truncate_stmt->n_relations, truncate_hint,
                      "TRUNCATE %s deletes every row while blocking reads and writes");
        break;
    case PG_QUERY__NODE__NODE_INSERT_STMT:
        lint_data_change(l, "INSERT", tree->insert_stmt->relation);
        break;
    case PG_QUERY__NODE__NODE_UPDATE_STMT:
        lint_data_change(l, "UPDATE", tree->update_stmt->relation);
        break;
    case PG_QUERY__NODE__NODE_DELETE_STMT:
        lint_data_change(l, "DELETE", tree->delete_stmt->relation);
        break;
    case PG_QUERY__NODE__NODE_MERGE_STMT:
        lint_data_change(l, "MERGE", tree->merge_stmt->relation);
        break;
    case PG_QUERY__NODE__NODE_COPY_STMT:
        /* no file name: STDIN or STDOUT, which psql would serve; we do not */
        if (!tree->copy_stmt->filename || !*tree->copy_stmt->filename)
            report(l, R_COPY_CLIENT, -1, "copy from or to a file on the server, or use INSERT",
                   "COPY %s %s needs data from the client, which a migration does not have",
                   tree->copy_stmt->is_from ? "FROM STDIN" : "TO STDOUT",
                   tree->copy_stmt->relation ? tree->copy_stmt->relation->relname : "(query)");
        else if (tree->copy_stmt->is_from)
            lint_data_change(l, "COPY FROM", tree->copy_stmt->relation);
        break;
    case PG_QUERY__NODE__NODE_CREATE_STMT:
        if (tree->create_stmt->relation)
            learn_created(l, tree->create_stmt->relation);
        break;
    case PG_QUERY__NODE__NODE_CREATE_TABLE_AS_STMT:
        if (tree->create_table_as_stmt->into && tree->create_table_as_stmt->into->rel)
            learn_created(l, tree->create_table_as_stmt->into->rel);
        break;
    default:
        break;
    }
}

/* What a statement is, to name it: its command for the data-modifying ones
 * (a leading WITH would hide it), else its first keyword. */
static void stmt_kind(char *out, size_t size, const sg_sql_stmt *stmt)
{
    const char *command = NULL;
    size_t n = 0;
    switch (stmt->tree->node_case) {
    case PG_QUERY__NODE__NODE_INSERT_STMT:
        command = "INSERT";
        break;
    case PG_QUERY__NODE__NODE_UPDATE_STMT:
        command = "UPDATE";
        break;
    case PG_QUERY__NODE__NODE_DELETE_STMT:
        command = "DELETE";
        break;
    case PG_QUERY__NODE__NODE_MERGE_STMT:
        command = "MERGE";
        break;
    default:
        break;
    }
    if (command) {
        snprintf(out, size, "%s", command);
        return;
    }
    while (n + 1 < size && n < stmt->len && isalpha((unsigned char)stmt->text[n])) {
        out[n] = (char)toupper((unsigned char)stmt->text[n]);
        n++;
    }
    out[n] = '\0';
}

static void lint_verify(lint *l)
{
    static const char hint[] = "verify holds queries that check the migration (SELECT); "
                               "changes belong in the up section";
    const PgQuery__Node *tree = l->stmt->tree;
    char word[24];
    if (tree->node_case != PG_QUERY__NODE__NODE_SELECT_STMT) {
        stmt_kind(word, sizeof(word), l->stmt);
        report(l, R_VERIFY_NOT_READ_ONLY, -1, hint,
               "verify section runs %s, which is not a query: verify statements must only read",
               word);
        return;
    }
    const PgQuery__SelectStmt *s = tree->select_stmt;
    if (s->into_clause && s->into_clause->rel)
        report(l, R_VERIFY_NOT_READ_ONLY, s->into_clause->rel->location, hint,
               "verify section runs SELECT INTO %s, which creates a table",
               s->into_clause->rel->relname);
    if (s->n_locking_clause)
        report(l, R_VERIFY_NOT_READ_ONLY, -1, hint,
               "verify section runs SELECT ... FOR UPDATE or FOR SHARE, which locks rows");
    for (size_t i = 0; s->with_clause && i < s->with_clause->n_ctes; i++) {
        const PgQuery__Node *cte = s->with_clause->ctes[i];
        if (cte->node_case == PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR &&
            cte->common_table_expr->ctequery &&
            cte->common_table_expr->ctequery->node_case != PG_QUERY__NODE__NODE_SELECT_STMT)
            report(l, R_VERIFY_NOT_READ_ONLY, cte->common_table_expr->location, hint,
                   "verify section runs WITH %s, which modifies data",
                   cte->common_table_expr->ctename);
    }
}

static void lint_allows(lint *l, char *const *allowed, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (!sg_lint_rule_find(allowed[i]))
            report(l, R_UNKNOWN_RULE, -1,
                   "lint --help lists the rules; a misspelt allow silences nothing",
                   "-- shardgate:allow names unknown rule \"%s\"", allowed[i]);
}

static void lint_section(lint *l, section_kind kind, const sg_migration_section *section)
{
    if (!section->script)
        return;
    /* the down section runs after up has been live, so only what it creates
     * itself is new */
    map_clear(&l->created);
    l->section = kind;
    for (size_t i = 0; i < sg_sql_script_count(section->script) && l->rc == 0; i++) {
        l->stmt = sg_sql_script_stmt(section->script, i);
        lint_allows(l, l->stmt->allowed, l->stmt->allowed_count);
        if (kind == SECTION_VERIFY)
            lint_verify(l);
        else
            lint_stmt(l);
    }
    l->stmt = NULL;
}

static int by_position(const void *a, const void *b)
{
    const sg_lint_finding *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return x->rule < y->rule ? -1 : x->rule > y->rule;
}

static void lint_file(lint *l, const sg_migration *m)
{
    size_t first = l->res->count;
    l->m = m;
    l->stmt = NULL;
    if (m->mode == SG_MIGRATION_BLUEGREEN && m->bluegreen_table) {
        const char *dot = strchr(m->bluegreen_table, '.');
        char schema[80];
        snprintf(schema, sizeof(schema), "%.*s", (int)(dot - m->bluegreen_table),
                 m->bluegreen_table);
        table_set(&l->bluegreen, schema, dot + 1);
    }
    l->file_line = 1;
    lint_allows(l, m->allowed, m->allowed_count);
    if (!m->down.line && !m->irreversible) {
        l->file_line = m->up.line;
        report(l, R_MISSING_DOWN, -1,
               "add a -- shardgate:down section that undoes the up section, or mark the file "
               "-- shardgate:irreversible",
               "migration %s has no down section", m->file);
    }
    lint_section(l, SECTION_UP, &m->up);
    lint_section(l, SECTION_DOWN, &m->down);
    lint_section(l, SECTION_VERIFY, &m->verify);
    if (l->rc == 0 && l->res->count - first > 1)
        qsort(l->res->items + first, l->res->count - first, sizeof(*l->res->items), by_position);
}

int sg_lint_set(sg_lint_result *out, const sg_migration_set *set, sg_error *err)
{
    lint l = {.res = out, .err = err};
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < set->count && l.rc == 0; i++)
        lint_file(&l, &set->items[i]);
    map_clear(&l.created);
    map_clear(&l.proven);
    map_clear(&l.pending);
    if (l.rc < 0)
        sg_lint_result_clear(out);
    return l.rc;
}

void sg_lint_result_clear(sg_lint_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; i < res->count; i++) {
        free(res->items[i].message);
        free(res->items[i].hint);
    }
    free(res->items);
    memset(res, 0, sizeof(*res));
}

static const char *severity_name(sg_lint_severity severity)
{
    return severity == SG_LINT_ERROR ? "error" : "warning";
}

int sg_lint_print(FILE *out, const sg_lint_result *res, sg_lint_format format, sg_error *err)
{
    for (size_t i = 0; i < res->count; i++) {
        const sg_lint_finding *f = &res->items[i];
        if (fprintf(out, "%s:%u:%u: %s: %s [%s]\n", f->file, f->line, f->column,
                    severity_name(f->severity), f->message, f->rule->id) < 0 ||
            (format == SG_LINT_TEXT && fprintf(out, "  hint: %s\n", f->hint) < 0))
            return sg_error_set(err, SG_E_IO, "cannot write the lint report: %s", strerror(errno));
    }
    if (fflush(out) != 0 || ferror(out))
        return sg_error_set(err, SG_E_IO, "cannot write the lint report: %s", strerror(errno));
    return 0;
}

/* A JSON string of text. A file that is not UTF-8 gives names that are not
 * either, which jansson refuses: those bytes become '?' rather than losing
 * the finding. */
static json_t *json_text(const char *text)
{
    json_t *s = json_string(text);
    if (s || sg_json_alloc_failed())
        return s;
    char *copy = sg_strdup(text);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    s = json_string(copy);
    free(copy);
    return s;
}

json_t *sg_lint_to_json(const sg_lint_result *res)
{
    json_t *doc = NULL, *findings = NULL, *result = NULL;
    sg_json_init();
    sg_json_alloc_reset();
    if (!(doc = json_object()) || !(findings = json_array()) ||
        json_object_set(doc, "findings", findings) < 0)
        goto done;
    for (size_t i = 0; i < res->count; i++) {
        const sg_lint_finding *f = &res->items[i];
        json_t *item = json_object();
        if (!item || json_array_append_new(findings, item) < 0 ||
            json_object_set_new(item, "rule", json_string(f->rule->id)) < 0 ||
            json_object_set_new(item, "severity", json_string(severity_name(f->severity))) < 0 ||
            json_object_set_new(item, "file", json_text(f->file)) < 0 ||
            json_object_set_new(item, "line", json_integer(f->line)) < 0 ||
            json_object_set_new(item, "column", json_integer(f->column)) < 0 ||
            json_object_set_new(item, "version", json_integer(f->version)) < 0 ||
            json_object_set_new(item, "message", json_text(f->message)) < 0 ||
            json_object_set_new(item, "hint", json_text(f->hint)) < 0)
            goto done;
    }
    if (json_object_set_new(doc, "errors", json_integer((json_int_t)res->errors)) < 0 ||
        json_object_set_new(doc, "warnings", json_integer((json_int_t)res->warnings)) < 0)
        goto done;
    result = doc;
    doc = NULL;
done:
    json_decref(findings);
    json_decref(doc);
    return result;
}
