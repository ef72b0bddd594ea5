#include "stages/rehearse.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "common/retry.h"
#include "stages/fingerprint.h"

/* A conninfo for database db on the server: the last dbname wins. */
static char *on_database(const char *server, const char *db)
{
    sg_buf buf = {0};
    char *out = NULL;
    sg_error ignored = {0};
    /* a conninfo value in single quotes, with ' and \ escaped */
    if (sg_buf_append(&buf, server, strlen(server), &ignored) < 0 ||
        sg_buf_append(&buf, " dbname='", 9, &ignored) < 0)
        goto done;
    for (const char *p = db; *p; p++)
        if ((*p == '\'' || *p == '\\') ? sg_buf_append(&buf, "\\", 1, &ignored) < 0 ||
                                             sg_buf_append(&buf, p, 1, &ignored) < 0
                                       : sg_buf_append(&buf, p, 1, &ignored) < 0)
            goto done;
    if (sg_buf_append(&buf, "'", 1, &ignored) < 0 || sg_buf_terminate(&buf, &ignored) < 0)
        goto done;
    out = (char *)buf.data;
    buf.data = NULL;
done:
    sg_buf_free(&buf);
    return out;
}

static int admin_connect(PGconn **conn, const char *server, sg_error *err)
{
    char *admin = on_database(server, "postgres");
    int rc = admin ? sg_pg_connect(conn, admin, "sandbox server", err)
                   : sg_error_set(err, SG_E_NOMEM, "out of memory");
    free(admin);
    return rc;
}

static char *quote(PGconn *conn, const char *name, sg_error *err)
{
    char *q = PQescapeIdentifier(conn, name, strlen(name));
    if (!q)
        sg_error_set(err, SG_E_FORMAT, "cannot quote the name \"%s\": %s", name,
                     PQerrorMessage(conn));
    return q;
}

/* A fresh copy of the restored database, made from it as a template: the
 * rehearsal may do anything to the copy, and the restored database stays as
 * the snapshot had it, for the comparison. The copy's name is new, and
 * CREATE fails rather than reuse a database that exists. */
static int copy_database(const char *server, const char *from, const char *to, sg_error *err)
{
    PGconn *conn = NULL;
    char *qfrom = NULL, *qto = NULL, *sql = NULL;
    int rc;
    if ((rc = admin_connect(&conn, server, err)) < 0)
        goto done;
    if (!(qfrom = quote(conn, from, err)) || !(qto = quote(conn, to, err))) {
        rc = SG_E_FORMAT;
        goto done;
    }
    /* FILE_COPY (15+) copies the files at once rather than block by block
     * through the WAL: much faster for a large copy, and nothing here needs
     * the WAL */
    if (!(sql = sg_asprintf("CREATE DATABASE %s TEMPLATE %s%s", qto, qfrom,
                            PQserverVersion(conn) >= 150000 ? " STRATEGY FILE_COPY" : ""))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    rc = sg_pg_exec(conn, sql, err);
done:
    if (rc < 0)
        sg_error_prefix(err, "cannot copy database %s for the rehearsal", from);
    PQfreemem(qfrom);
    PQfreemem(qto);
    free(sql);
    PQfinish(conn);
    return rc;
}

/* The copy goes when the rehearsal ends: a sandbox is thrown away anyway,
 * but a server kept for rehearsals should not fill up with copies. */
static void drop_copy(const char *server, const char *copy)
{
    sg_error err = {0};
    PGconn *conn = NULL;
    char *q = NULL, *sql = NULL;
    if (admin_connect(&conn, server, &err) == 0 && (q = quote(conn, copy, &err)) &&
        (sql = sg_asprintf("DROP DATABASE %s", q)))
        sg_pg_exec(conn, sql, &err);
    if (err.code)
        sg_log(SG_LOG_WARNING, "cannot drop the rehearsal's database %s: %s", copy, err.message);
    PQfreemem(q);
    free(sql);
    PQfinish(conn);
}

/* ---- the migrations ---- */

static void apply_options(sg_apply_options *o, const char *dsn, const sg_rehearsal_options *opts)
{
    sg_apply_options_init(o, dsn);
    o->target = opts->target;
    if (opts->lock_timeout_ms)
        o->lock_timeout_ms = opts->lock_timeout_ms;
    o->statement_timeout_ms = opts->statement_timeout_ms;
    o->skip_lint = true; /* the pipeline lints once, before any shard */
    o->actor.run_id = opts->run_id;
}

static sg_rehearsal_file *file_of(sg_rehearsal_result *res, const sg_migration *m)
{
    for (size_t i = 0; i < res->nfiles; i++)
        if (res->files[i].migration == m)
            return &res->files[i];
    return NULL;
}

/* Runs one step (up, down or up again) and records each file's time. */
static int step(sg_rehearsal_result *res, PGconn *conn, const sg_migration_set *set,
                const sg_apply_options *o, bool revert, const char *what, sg_error *err)
{
    sg_apply_result applied = {0};
    int rc =
        revert ? sg_revert(&applied, conn, set, o, err) : sg_migrate(&applied, conn, set, o, err);
    for (size_t i = 0; i < applied.count; i++) {
        const sg_apply_step *s = &applied.steps[i];
        sg_rehearsal_file *f = file_of(res, s->migration);
        if (!f && !revert && !res->reverted) {
            sg_rehearsal_file *grown = sg_array_grow(res->files, res->nfiles, sizeof(*res->files));
            if (!grown) {
                rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
                break;
            }
            res->files = grown;
            f = &res->files[res->nfiles++];
            *f = (sg_rehearsal_file){s->migration, -1, -1, -1};
        }
        if (f && s->done)
            *(revert ? &f->down_ms : res->reverted ? &f->up_again_ms : &f->up_ms) = s->duration_ms;
    }
    if (!revert && !res->reverted && rc == 0) {
        res->from_version = applied.from_version;
        res->to_version = applied.to_version;
    }
    sg_apply_result_clear(&applied);
    if (rc < 0)
        sg_error_prefix(err, "rehearsal (%s)", what);
    return rc;
}

/* The version the down step goes back to: where the run started, or the
 * newest irreversible file it applied, which no down section can undo. */
static int64_t revert_target(const sg_rehearsal_result *res)
{
    int64_t to = res->from_version;
    for (size_t i = 0; i < res->nfiles; i++) {
        const sg_migration *m = res->files[i].migration;
        if ((m->irreversible || !m->down.script) && m->version > to)
            to = m->version;
    }
    return to;
}

static int check_budget(const sg_rehearsal_result *res, uint64_t budget_ms, sg_error *err)
{
    for (size_t i = 0; budget_ms && i < res->nfiles; i++) {
        const sg_rehearsal_file *f = &res->files[i];
        if (f->up_ms > (int64_t)budget_ms) {
            sg_error_set(err, SG_E_OBJECTIVE,
                         "%s took %" PRId64 " ms in the rehearsal, over its budget of %" PRIu64
                         " ms",
                         f->migration->file, f->up_ms, budget_ms);
            sg_error_hint(err, "on the live shard it would hold its locks at least as long: make "
                               "it cheaper (CONCURRENTLY, NOT VALID, batches), or raise the "
                               "pipeline's policy.rehearsal_budget");
            return SG_E_OBJECTIVE;
        }
    }
    return 0;
}

/* ---- which tables a data-change file writes to ---- */

typedef struct name_list {
    char **items;
    size_t count;
} name_list;

static void name_list_clear(name_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
}

static int add_line(name_list *l, char *line, sg_error *err)
{
    char **grown = line ? sg_array_grow(l->items, l->count, sizeof(char *)) : NULL;
    if (!grown) {
        free(line);
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    }
    l->items = grown;
    l->items[l->count++] = line;
    return 0;
}

/* The name as the file wrote it, quoted, so that the server resolves it as
 * the statement did. */
static int add_name(name_list *l, PGconn *conn, const PgQuery__RangeVar *rv, sg_error *err)
{
    if (!rv || !rv->relname)
        return 0;
    return add_line(l,
                    sg_pg_qualified_name(conn,
                                         rv->schemaname && *rv->schemaname ? rv->schemaname : NULL,
                                         rv->relname),
                    err);
}

static const PgQuery__RangeVar *written_table(const PgQuery__Node *n)
{
    switch (n->node_case) {
    case PG_QUERY__NODE__NODE_INSERT_STMT:
        return n->insert_stmt->relation;
    case PG_QUERY__NODE__NODE_UPDATE_STMT:
        return n->update_stmt->relation;
    case PG_QUERY__NODE__NODE_DELETE_STMT:
        return n->delete_stmt->relation;
    case PG_QUERY__NODE__NODE_MERGE_STMT:
        return n->merge_stmt->relation;
    case PG_QUERY__NODE__NODE_COPY_STMT:
        return n->copy_stmt->is_from ? n->copy_stmt->relation : NULL;
    default:
        return NULL;
    }
}

/* The tables the rehearsed data-change files write to: their rows may
 * differ on purpose, so they are not compared. A write to a partitioned
 * (or inheritance) parent writes to its children, which are the tables
 * compared: each name stands for its whole tree, as "schema<TAB>table". */
static const char tree_sql[] =
    "WITH RECURSIVE tree(oid) AS ("
    " SELECT c.oid FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)"
    " UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree ON i.inhparent = tree.oid)"
    " SELECT n.nspname || E'\\t' || c.relname FROM tree"
    " JOIN pg_catalog.pg_class c ON c.oid = tree.oid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace";

static int data_change_tables(name_list *out, PGconn *conn, const sg_rehearsal_result *res,
                              sg_error *err)
{
    name_list written = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < res->nfiles; i++) {
        const sg_migration *m = res->files[i].migration;
        const sg_sql_script *up = m->up.script;
        for (size_t j = 0; rc == 0 && m->data_change && up && j < sg_sql_script_count(up); j++)
            rc = add_name(&written, conn, written_table(sg_sql_script_stmt(up, j)->tree), err);
    }
    for (size_t i = 0; rc == 0 && i < written.count; i++) {
        PGresult *tree = NULL;
        const char *params[] = {written.items[i]};
        if ((rc = sg_pg_query_params(&tree, conn, tree_sql, 1, params, err)) < 0)
            break;
        for (int t = 0; rc == 0 && t < PQntuples(tree); t++)
            rc = add_line(out, sg_strdup(PQgetvalue(tree, t, 0)), err);
        PQclear(tree);
    }
    name_list_clear(&written);
    return rc;
}

static bool listed(const name_list *l, const char *schema, const char *table)
{
    size_t ns = strlen(schema);
    for (size_t i = 0; i < l->count; i++)
        if (strncmp(l->items[i], schema, ns) == 0 && l->items[i][ns] == '\t' &&
            strcmp(l->items[i] + ns + 1, table) == 0)
            return true;
    return false;
}

/* ---- comparing the tables ---- */

/* The user's tables with rows of their own (partitioned parents have none),
 * outside the registry and extensions. */
static const char tables_sql[] =
    "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'shardgate')"
    " AND n.nspname !~ '^pg_(toast|temp)'"
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid ="
    " 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e')"
    " ORDER BY 1, 2";

/* Stored columns with their types (generated ones are computed, and COPY
 * leaves them out), as "name\ttype" lines; the query gives NULL for a table
 * that is gone. */
static const char columns_sql[] =
    "SELECT pg_catalog.to_regclass($1) IS NULL,"
    " (SELECT pg_catalog.string_agg(a.attname || E'\\t' ||"
    " pg_catalog.format_type(a.atttypid, a.atttypmod), E'\\n' ORDER BY a.attnum)"
    " FROM pg_catalog.pg_attribute a WHERE a.attrelid = pg_catalog.to_regclass($1)"
    " AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '')";

typedef struct column_set {
    bool gone;
    char *lines; /* "name\ttype\n..." */
} column_set;

static int columns_of(column_set *out, PGconn *conn, const char *qualified, sg_error *err)
{
    PGresult *res = NULL;
    const char *params[] = {qualified};
    int rc = sg_pg_query_params(&res, conn, columns_sql, 1, params, err);
    memset(out, 0, sizeof(*out));
    if (rc < 0)
        return rc;
    out->gone = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    if (!out->gone && !(out->lines = sg_strdup(PQgetvalue(res, 0, 1))))
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
    PQclear(res);
    return rc;
}

static bool has_line(const char *lines, const char *line, size_t len)
{
    for (const char *p = lines; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, line, len) == 0)
            return true;
        p = end ? end + 1 : p + n;
    }
    return false;
}

/* The columns of `before` that `after` has with the same type, as a quoted
 * column list; *count of them, *total of before's. */
static int surviving_columns(char **out, size_t *count, size_t *total, PGconn *conn,
                             const column_set *before, const column_set *after, sg_error *err)
{
    const char **names = NULL;
    char *copy = sg_strdup(before->lines);
    size_t n = 0, all = 0;
    int rc = 0;
    *out = NULL;
    if (!copy)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    for (char *line = copy, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        size_t len = next ? (size_t)(next - line) : strlen(line);
        if (next)
            *next++ = '\0';
        all++;
        if (!has_line(after->lines, line, len))
            continue;
        const char **grown = sg_array_grow(names, n, sizeof(*names));
        if (!grown) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            goto done;
        }
        names = grown;
        *strchr(line, '\t') = '\0';
        names[n++] = line;
    }
    if (!(*out = sg_pg_column_list(conn, names, n)))
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
    *count = n;
    *total = all;
done:
    free(names);
    free(copy);
    return rc;
}

static int count_rows(uint64_t *rows, PGconn *conn, const char *qualified, sg_error *err)
{
    PGresult *res = NULL;
    char *sql = sg_asprintf("SELECT count(*) FROM ONLY %s", qualified);
    int rc =
        sql ? sg_pg_query(&res, conn, sql, err) : sg_error_set(err, SG_E_NOMEM, "out of memory");
    if (rc == 0)
        *rows = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    free(sql);
    return rc;
}

/* Rows and digest of the surviving columns, on both sides. */
static int compare_table(sg_rehearsal_table *t, PGconn *before, PGconn *after,
                         const char *qualified, sg_error *err)
{
    column_set cb = {0}, ca = {0};
    char *list = NULL;
    sg_digest db, da;
    int rc;
    if ((rc = columns_of(&cb, before, qualified, err)) < 0 ||
        (rc = columns_of(&ca, after, qualified, err)) < 0)
        goto done;
    if (ca.gone) {
        t->result = SG_TABLE_DROPPED;
        rc = count_rows(&t->rows, before, qualified, err);
        goto done;
    }
    if ((rc = surviving_columns(&list, &t->columns_compared, &t->columns, before, &cb, &ca, err)) <
        0)
        goto done;
    if (t->columns_compared == 0) {
        /* nothing survives but the rows themselves: count them */
        uint64_t rows_after = 0;
        if ((rc = count_rows(&t->rows, before, qualified, err)) < 0 ||
            (rc = count_rows(&rows_after, after, qualified, err)) < 0)
            goto done;
        db.rows = t->rows;
        da.rows = rows_after;
        db.lo = db.hi = da.lo = da.hi = 0;
    } else if ((rc = sg_pg_digest_table(before, qualified, list, &db, err)) < 0 ||
               (rc = sg_pg_digest_table(after, qualified, list, &da, err)) < 0) {
        goto done;
    }
    t->rows = db.rows;
    t->digest = db;
    t->column_list = list;
    list = NULL;
    if (!sg_digest_equal(&db, &da)) {
        rc = sg_error_set(err, SG_E_MISMATCH,
                          "the rehearsal changed the rows of table %s, and no data-change file "
                          "writes to it",
                          qualified);
        sg_error_detail(err,
                        "rows before %" PRIu64 ", after %" PRIu64 "; compared over %zu of %zu "
                        "columns",
                        db.rows, da.rows, t->columns_compared, t->columns);
        sg_error_hint(err, "if the change is intended, add -- shardgate:data-change to the file "
                           "that makes it");
    }
done:
    free(cb.lines);
    free(ca.lines);
    free(list);
    return rc;
}

static int compare_tables(sg_rehearsal_result *res, PGconn *before, PGconn *after, sg_error *err)
{
    name_list changed = {0};
    PGresult *tables = NULL;
    int rc;
    if ((rc = data_change_tables(&changed, before, res, err)) < 0 ||
        (rc = sg_pg_pin_settings(before, err)) < 0 || (rc = sg_pg_pin_settings(after, err)) < 0 ||
        (rc = sg_pg_query(&tables, before, tables_sql, err)) < 0)
        goto done;
    int n = PQntuples(tables);
    if (n && !(res->tables = sg_calloc((size_t)n, sizeof(*res->tables)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const char *schema = PQgetvalue(tables, i, 0), *name = PQgetvalue(tables, i, 1);
        sg_rehearsal_table *t = &res->tables[res->ntables++];
        char *qualified = sg_pg_qualified_name(before, schema, name);
        if (!qualified || !(t->schema = sg_strdup(schema)) || !(t->name = sg_strdup(name))) {
            free(qualified);
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            goto done;
        }
        if (listed(&changed, schema, name)) {
            t->result = SG_TABLE_DATA_CHANGE;
            rc = count_rows(&t->rows, before, qualified, err);
        } else {
            rc = compare_table(t, before, after, qualified, err);
        }
        free(qualified);
        if (rc < 0)
            goto done;
    }
done:
    PQclear(tables);
    name_list_clear(&changed);
    return rc;
}

/* ---- the whole rehearsal ---- */

int sg_rehearse(sg_rehearsal_result *out, const char *server, const char *dbname,
                const sg_rehearsal_options *opts, sg_error *err)
{
    uint64_t start = sg_monotonic_ms();
    char copy[64];
    char *before_dsn = NULL, *after_dsn = NULL;
    PGconn *before = NULL, *after = NULL;
    sg_schema_desc *desc = NULL;
    sg_apply_options o;
    bool copied = false;
    int rc;
    memset(out, 0, sizeof(*out));
    snprintf(copy, sizeof(copy), "shardgate_rehearsal_%08" PRIx32, randombytes_random());
    if (!(before_dsn = on_database(server, dbname)) || !(after_dsn = on_database(server, copy))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = copy_database(server, dbname, copy, err)) < 0)
        goto done;
    copied = true;
    if ((rc = sg_pg_connect(&after, after_dsn, "rehearsal database", err)) < 0)
        goto done;

    apply_options(&o, after_dsn, opts);
    if ((rc = step(out, after, opts->set, &o, false, "up", err)) < 0 ||
        (rc = check_budget(out, opts->budget_ms, err)) < 0)
        goto done;
    int64_t back_to = revert_target(out);
    if (back_to < out->to_version) {
        o.target = back_to;
        if ((rc = step(out, after, opts->set, &o, true, "down", err)) < 0)
            goto done;
        out->reverted = true;
        o.target = opts->target;
        if ((rc = step(out, after, opts->set, &o, false, "up again", err)) < 0)
            goto done;
    }
    if ((rc = sg_schema_describe(&desc, after, err)) < 0)
        goto done;
    memcpy(out->fingerprint, sg_schema_desc_fingerprint(desc), SG_SHA256_HEX_LEN);
    if (!(out->description = sg_strdup(sg_schema_desc_text(desc)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }

    if ((rc = sg_pg_connect(&before, before_dsn, "restored database", err)) < 0 ||
        (rc = compare_tables(out, before, after, err)) < 0)
        goto done;
done:
    out->seconds = (double)(sg_monotonic_ms() - start) / 1000.0;
    sg_schema_desc_free(desc);
    PQfinish(before);
    PQfinish(after);
    if (copied)
        drop_copy(server, copy);
    free(before_dsn);
    free(after_dsn);
    return rc;
}

void sg_rehearsal_result_clear(sg_rehearsal_result *res)
{
    for (size_t i = 0; i < res->ntables; i++) {
        free(res->tables[i].schema);
        free(res->tables[i].name);
        free(res->tables[i].column_list);
    }
    free(res->tables);
    free(res->files);
    free(res->description);
    memset(res, 0, sizeof(*res));
}
