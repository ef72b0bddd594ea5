#include "snapshot/catalog.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"

/* Tables with data of their own: relkind 'r' covers plain tables and leaf
 * partitions (a partitioned parent is 'p' and holds nothing). Extension
 * members are left to CREATE EXTENSION, as pg_dump does. Sizes are read only
 * once the tables are locked: pg_relation_size takes a lock of its own, and
 * would wait unnamed behind DDL. */
static const char tables_sql[] =
    "SELECT c.oid, n.nspname, c.relname"
    "  FROM pg_catalog.pg_class c"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r' AND c.relpersistence <> 't'"
    "   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"
    "   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d"
    "                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
    "                      AND d.objid = c.oid AND d.deptype = 'e')"
    " ORDER BY n.nspname, c.relname";

static const char columns_sql[] =
    "SELECT a.attrelid, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)"
    "  FROM pg_catalog.pg_attribute a"
    "  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''"
    "   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"
    " ORDER BY a.attrelid, a.attnum";

static const char sequences_sql[] =
    "SELECT n.nspname, c.relname"
    "  FROM pg_catalog.pg_class c"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'S' AND c.relpersistence <> 't'"
    "   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"
    "   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d"
    "                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
    "                      AND d.objid = c.oid AND d.deptype = 'e')"
    " ORDER BY n.nspname, c.relname";

static const char matviews_sql[] =
    "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)"
    "  FROM pg_catalog.pg_class c"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'm' AND c.relispopulated"
    "   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"
    " ORDER BY c.oid";

/* pg_control_system() is not executable by everyone; ask before calling so a
 * missing privilege cannot abort the snapshot transaction. */
static const char identity_sql[] =
    "SELECT pg_catalog.current_database(), pg_catalog.current_setting('block_size'),"
    "       CASE WHEN pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', "
    "'EXECUTE')"
    "            THEN (SELECT system_identifier::text FROM pg_catalog.pg_control_system()) END,"
    "       CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()"
    "            ELSE pg_catalog.pg_current_wal_lsn() END::text";

static int nomem(sg_error *err)
{
    return sg_error_set(err, SG_E_NOMEM, "out of memory reading the catalog");
}

/* Columns come ordered by table OID, tables by name: binary-search the first
 * row of a table's run of columns. */
static int first_column_row(PGresult *cols, int ncols, uint32_t oid)
{
    int lo = 0, hi = ncols;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strtoul(PQgetvalue(cols, mid, 0), NULL, 10) < oid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int read_tables(sg_catalog *cat, PGconn *conn, sg_error *err)
{
    PGresult *res = NULL, *cols = NULL;
    int rc, row = 0, ncols;
    if ((rc = sg_pg_query(&res, conn, tables_sql, err)) < 0 ||
        (rc = sg_pg_query(&cols, conn, columns_sql, err)) < 0)
        goto done;
    cat->ntables = (size_t)PQntuples(res);
    if (!(cat->tables = sg_calloc(cat->ntables, sizeof(*cat->tables)))) {
        rc = nomem(err);
        goto done;
    }
    ncols = PQntuples(cols);
    for (size_t i = 0; i < cat->ntables; i++) {
        sg_catalog_table *t = &cat->tables[i];
        size_t first, n = 0;
        t->oid = (uint32_t)strtoul(PQgetvalue(res, (int)i, 0), NULL, 10);
        t->schema = sg_strdup(PQgetvalue(res, (int)i, 1));
        t->name = sg_strdup(PQgetvalue(res, (int)i, 2));
        if (!t->schema || !t->name ||
            !(t->qualified = sg_pg_qualified_name(conn, t->schema, t->name))) {
            rc = nomem(err);
            goto done;
        }
        row = first_column_row(cols, ncols, t->oid);
        first = (size_t)row;
        while (row < ncols && strtoul(PQgetvalue(cols, row, 0), NULL, 10) == t->oid) {
            row++;
            n++;
        }
        t->ncolumns = n;
        t->column_names = sg_calloc(n, sizeof(char *));
        t->column_types = sg_calloc(n, sizeof(char *));
        if (!t->column_names || !t->column_types) {
            rc = nomem(err);
            goto done;
        }
        for (size_t c = 0; c < n; c++) {
            t->column_names[c] = sg_strdup(PQgetvalue(cols, (int)(first + c), 1));
            t->column_types[c] = sg_strdup(PQgetvalue(cols, (int)(first + c), 2));
            if (!t->column_names[c] || !t->column_types[c]) {
                rc = nomem(err);
                goto done;
            }
        }
        if (!(t->select_list =
                  sg_pg_column_list(conn, (const char *const *)t->column_names, t->ncolumns))) {
            rc = nomem(err);
            goto done;
        }
    }
done:
    PQclear(res);
    PQclear(cols);
    return rc;
}

static int read_sequences(sg_catalog *cat, PGconn *conn, sg_error *err)
{
    PGresult *res = NULL;
    int rc;
    if ((rc = sg_pg_query(&res, conn, sequences_sql, err)) < 0)
        return rc;
    cat->nsequences = (size_t)PQntuples(res);
    if (!(cat->sequences = sg_calloc(cat->nsequences, sizeof(*cat->sequences)))) {
        rc = nomem(err);
        goto done;
    }
    for (size_t i = 0; i < cat->nsequences; i++) {
        sg_catalog_sequence *s = &cat->sequences[i];
        PGresult *val = NULL;
        char *qualified, *sql;
        s->schema = sg_strdup(PQgetvalue(res, (int)i, 0));
        s->name = sg_strdup(PQgetvalue(res, (int)i, 1));
        qualified = s->schema && s->name ? sg_pg_qualified_name(conn, s->schema, s->name) : NULL;
        sql = qualified ? sg_asprintf("SELECT last_value, is_called FROM %s", qualified) : NULL;
        free(qualified);
        if (!sql) {
            rc = nomem(err);
            goto done;
        }
        rc = sg_pg_query(&val, conn, sql, err);
        free(sql);
        if (rc < 0)
            goto done;
        s->last_value = strtoll(PQgetvalue(val, 0, 0), NULL, 10);
        s->is_called = PQgetvalue(val, 0, 1)[0] == 't';
        PQclear(val);
    }
done:
    PQclear(res);
    return rc;
}

static int read_matviews(sg_catalog *cat, PGconn *conn, sg_error *err)
{
    PGresult *res = NULL;
    int rc;
    if ((rc = sg_pg_query(&res, conn, matviews_sql, err)) < 0)
        return rc;
    cat->nmatviews = (size_t)PQntuples(res);
    if (!(cat->matviews = sg_calloc(cat->nmatviews, sizeof(char *))))
        rc = nomem(err);
    for (size_t i = 0; rc == 0 && i < cat->nmatviews; i++)
        if (!(cat->matviews[i] = sg_strdup(PQgetvalue(res, (int)i, 0))))
            rc = nomem(err);
    PQclear(res);
    return rc;
}

static int read_identity(sg_catalog *cat, PGconn *conn, sg_error *err)
{
    PGresult *res = NULL;
    int rc;
    if ((rc = sg_pg_query(&res, conn, identity_sql, err)) < 0)
        return rc;
    cat->database = sg_strdup(PQgetvalue(res, 0, 0));
    cat->block_size = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
    if (!PQgetisnull(res, 0, 2))
        cat->system_identifier = sg_strdup(PQgetvalue(res, 0, 2));
    cat->lsn = sg_strdup(PQgetvalue(res, 0, 3));
    if (!cat->database || !cat->lsn || (!PQgetisnull(res, 0, 2) && !cat->system_identifier))
        rc = nomem(err);
    PQclear(res);
    return rc;
}

/* What a snapshot cannot carry yet is said out loud rather than lost
 * silently: large objects stop the snapshot; rows users added to extension
 * configuration tables (CREATE EXTENSION recreates only the defaults) are
 * named in a warning. */
static int check_unsupported(PGconn *conn, sg_error *err)
{
    PGresult *res = NULL;
    int rc =
        sg_pg_query(&res, conn,
                    "SELECT (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata),"
                    "       (SELECT pg_catalog.string_agg(c.oid::pg_catalog.regclass::text, ', ')"
                    "          FROM pg_catalog.pg_extension e,"
                    "               pg_catalog.unnest(e.extconfig) AS x(oid)"
                    "          JOIN pg_catalog.pg_class c ON c.oid = x.oid"
                    "         WHERE c.relkind = 'r')",
                    err);
    if (rc < 0)
        return rc;
    if (strcmp(PQgetvalue(res, 0, 0), "0") != 0) {
        rc = sg_error_set(err, SG_E_DB,
                          "the database has %s large objects, which snapshots do not capture",
                          PQgetvalue(res, 0, 0));
        sg_error_hint(err, "store them in bytea columns, or snapshot this database with pg_dump");
    } else if (!PQgetisnull(res, 0, 1)) {
        sg_log_warning("extension configuration tables are restored by CREATE EXTENSION alone; "
                       "rows added to them are not in the snapshot: %s",
                       PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return rc;
}

int sg_catalog_read(sg_catalog **out, PGconn *conn, sg_error *err)
{
    sg_catalog *cat = sg_calloc(1, sizeof(*cat));
    int rc;
    *out = NULL;
    if (!cat)
        return nomem(err);
    if ((rc = read_identity(cat, conn, err)) < 0 || (rc = check_unsupported(conn, err)) < 0 ||
        (rc = read_tables(cat, conn, err)) < 0 || (rc = read_sequences(cat, conn, err)) < 0 ||
        (rc = read_matviews(cat, conn, err)) < 0) {
        sg_error_prefix(err, "reading the catalog");
        sg_catalog_free(cat);
        return rc;
    }
    *out = cat;
    return 0;
}

/* Relation sizes in blocks, in the tables' order. */
static int read_sizes(const sg_catalog *catalog, PGconn *conn, sg_error *err)
{
    sg_buf oids = {0};
    PGresult *res = NULL;
    const char *params[1];
    int rc = sg_buf_append(&oids, "{", 1, err);
    for (size_t i = 0; rc == 0 && i < catalog->ntables; i++) {
        char one[16];
        int n = snprintf(one, sizeof(one), "%s%u", i ? "," : "", catalog->tables[i].oid);
        rc = sg_buf_append(&oids, one, (size_t)n, err);
    }
    if (rc == 0 && (rc = sg_buf_append(&oids, "}", 2, err)) == 0) {
        params[0] = (const char *)oids.data;
        rc = sg_pg_query_params(&res, conn,
                                "SELECT pg_catalog.pg_relation_size(u.oid) /"
                                "       pg_catalog.current_setting('block_size')::int"
                                "  FROM pg_catalog.unnest($1::pg_catalog.oid[])"
                                "       WITH ORDINALITY AS u(oid, i) ORDER BY u.i",
                                1, params, err);
    }
    for (size_t i = 0; rc == 0 && i < catalog->ntables; i++)
        catalog->tables[i].blocks = strtoull(PQgetvalue(res, (int)i, 0), NULL, 10);
    PQclear(res);
    sg_buf_free(&oids);
    return rc;
}

int sg_catalog_lock_tables(const sg_catalog *catalog, PGconn *conn, sg_error *err)
{
    for (size_t i = 0; i < catalog->ntables; i++) {
        char *sql = sg_asprintf("LOCK TABLE %s IN ACCESS SHARE MODE", catalog->tables[i].qualified);
        int rc;
        if (!sql)
            return nomem(err);
        rc = sg_pg_exec(conn, sql, err);
        free(sql);
        if (rc < 0) {
            if (strstr(err->detail, "SQLSTATE 55P03")) {
                sg_error_set(err, SG_E_DB,
                             "cannot lock table %s: another session holds a conflicting lock",
                             catalog->tables[i].qualified);
                sg_error_hint(err, "a long-running DDL or maintenance command is running; retry "
                                   "later or raise --lock-timeout");
            } else {
                sg_error_prefix(err, "locking table %s", catalog->tables[i].qualified);
            }
            return rc;
        }
    }
    return read_sizes(catalog, conn, err);
}

static void free_strings(char **items, size_t count)
{
    if (!items)
        return;
    for (size_t i = 0; i < count; i++)
        free(items[i]);
    free(items);
}

void sg_catalog_free(sg_catalog *catalog)
{
    if (!catalog)
        return;
    for (size_t i = 0; catalog->tables && i < catalog->ntables; i++) {
        sg_catalog_table *t = &catalog->tables[i];
        free(t->schema);
        free(t->name);
        free(t->qualified);
        free(t->select_list);
        free_strings(t->column_names, t->ncolumns);
        free_strings(t->column_types, t->ncolumns);
    }
    free(catalog->tables);
    for (size_t i = 0; catalog->sequences && i < catalog->nsequences; i++) {
        free(catalog->sequences[i].schema);
        free(catalog->sequences[i].name);
    }
    free(catalog->sequences);
    free_strings(catalog->matviews, catalog->nmatviews);
    free(catalog->database);
    free(catalog->system_identifier);
    free(catalog->lsn);
    free(catalog);
}
