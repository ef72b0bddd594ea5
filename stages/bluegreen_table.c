/* The tables of a blue-green change: what blue and green look like, whether
 * blue can be rebuilt this way at all, how each side's columns come from the
 * other's, and the triggers that keep one in sync with the other. */
#include "stages/bluegreen_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"

/* ---- a table's columns and key ---- */

void sg_bg_rel_clear(sg_bg_rel *rel)
{
    free(rel->schema);
    free(rel->name);
    free(rel->qualified);
    for (size_t i = 0; i < rel->ncolumns; i++) {
        free(rel->columns[i].name);
        free(rel->columns[i].type);
    }
    free(rel->columns);
    for (size_t i = 0; i < rel->nkey; i++)
        free(rel->key[i]);
    free(rel->key);
    free(rel->key_constraint);
    memset(rel, 0, sizeof(*rel));
}

static const char columns_sql[] =
    "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),"
    "       a.attgenerated <> '', a.attidentity <> '', a.attidentity = 'a'"
    "  FROM pg_catalog.pg_attribute a"
    " WHERE a.attrelid = $1::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped"
    " ORDER BY a.attnum";

/* The key rows are copied and synced by: the primary key, else the
 * narrowest unique index that a key can be (valid, immediate, on plain NOT
 * NULL columns, not partial). INCLUDE columns are not part of it. */
static const char key_sql[] =
    "WITH k AS ("
    "  SELECT i.indexrelid, i.indkey, i.indnkeyatts"
    "    FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid"
    "   WHERE i.indrelid = $1::pg_catalog.regclass AND i.indisunique AND i.indisvalid"
    "     AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL"
    "     AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a"
    "                      WHERE a.attrelid = i.indrelid"
    "                        AND a.attnum = ANY (i.indkey::pg_catalog.int2[])"
    "                        AND NOT a.attnotnull)"
    "   ORDER BY i.indisprimary DESC, i.indnkeyatts, ic.relname LIMIT 1)"
    " SELECT a.attname, c.relname"
    "   FROM k CROSS JOIN LATERAL unnest(k.indkey::pg_catalog.int2[]) WITH ORDINALITY u(attnum, "
    "ord)"
    "   JOIN pg_catalog.pg_attribute a"
    "     ON a.attrelid = $1::pg_catalog.regclass AND a.attnum = u.attnum"
    "   JOIN pg_catalog.pg_class c ON c.oid = k.indexrelid"
    "  WHERE u.ord <= k.indnkeyatts"
    "  ORDER BY u.ord";

int sg_bg_rel_load(sg_bg_rel *rel, PGconn *conn, const char *schema, const char *name,
                   sg_error *err)
{
    PGresult *res = NULL;
    int rc;
    sg_bg_rel_clear(rel);
    rel->schema = sg_strdup(schema);
    rel->name = sg_strdup(name);
    rel->qualified = sg_bg_qualify(schema, name);
    if (!rel->schema || !rel->name || !rel->qualified) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    const char *params[] = {rel->qualified};
    if ((rc = sg_pg_query_params(&res, conn, columns_sql, 1, params, err)) < 0)
        goto done;
    int n = PQntuples(res);
    if (n > 0 && !(rel->columns = sg_calloc((size_t)n, sizeof(*rel->columns)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        sg_bg_column *c = &rel->columns[rel->ncolumns++];
        c->name = sg_strdup(PQgetvalue(res, i, 0));
        c->type = sg_strdup(PQgetvalue(res, i, 1));
        c->generated = strcmp(PQgetvalue(res, i, 2), "t") == 0;
        c->identity = strcmp(PQgetvalue(res, i, 3), "t") == 0;
        c->identity_always = strcmp(PQgetvalue(res, i, 4), "t") == 0;
        if (!c->name || !c->type) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            goto done;
        }
    }
    PQclear(res);
    if ((rc = sg_pg_query_params(&res, conn, key_sql, 1, params, err)) < 0)
        goto done;
    n = PQntuples(res);
    if (n > 0 && (!(rel->key = sg_calloc((size_t)n, sizeof(*rel->key))) ||
                  !(rel->key_constraint = sg_strdup(PQgetvalue(res, 0, 1))))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (!(rel->key[rel->nkey++] = sg_strdup(PQgetvalue(res, i, 0)))) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            goto done;
        }
    }
done:
    PQclear(res);
    return rc;
}

const sg_bg_column *sg_bg_rel_column(const sg_bg_rel *rel, const char *name)
{
    for (size_t i = 0; i < rel->ncolumns; i++)
        if (strcmp(rel->columns[i].name, name) == 0)
            return &rel->columns[i];
    return NULL;
}

/* ---- what stands in the way ---- */

/* Everything that would not follow the table to its new self, or would
 * break the engine's triggers, with what it is. Views, rules and
 * materialized views refer to blue by OID and would stay with the old
 * table; constraint triggers, policies and extended statistics are not
 * copied (the application's other triggers follow the table at the swap);
 * publications list tables by OID; partitions and inheritance make the
 * table's rows not its own. */
static const char obstacles_sql[] =
    "WITH t AS (SELECT $1::pg_catalog.regclass AS oid)"
    " SELECT 'partitioned table', ''"
    "   FROM pg_catalog.pg_class c, t WHERE c.oid = t.oid AND c.relkind = 'p'"
    " UNION ALL SELECT 'inheritance (' || CASE WHEN i.inhrelid = t.oid THEN 'child of '"
    "   ELSE 'parent of ' END || CASE WHEN i.inhrelid = t.oid THEN i.inhparent ELSE i.inhrelid"
    "   END::pg_catalog.regclass::text || ')', ''"
    "   FROM pg_catalog.pg_inherits i, t WHERE t.oid IN (i.inhrelid, i.inhparent)"
    " UNION ALL SELECT DISTINCT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN"
    "   'materialized view' ELSE 'rule of' END, r.ev_class::pg_catalog.regclass::text"
    "   FROM pg_catalog.pg_depend d"
    "   JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid"
    "   JOIN pg_catalog.pg_class c ON c.oid = r.ev_class, t"
    "  WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
    "    AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
    "    AND d.refobjid = t.oid AND r.ev_class <> t.oid"
    " UNION ALL SELECT 'rule', r.rulename::text"
    "   FROM pg_catalog.pg_rewrite r, t WHERE r.ev_class = t.oid"
    " UNION ALL SELECT 'constraint trigger', tg.tgname::text"
    "   FROM pg_catalog.pg_trigger tg, t"
    "  WHERE tg.tgrelid = t.oid AND NOT tg.tgisinternal AND tg.tgconstraint <> 0"
    " UNION ALL SELECT 'row security policy', p.polname::text"
    "   FROM pg_catalog.pg_policy p, t WHERE p.polrelid = t.oid"
    " UNION ALL SELECT 'extended statistics', s.stxname::text"
    "   FROM pg_catalog.pg_statistic_ext s, t WHERE s.stxrelid = t.oid"
    " UNION ALL SELECT 'publication', p.pubname::text"
    "   FROM pg_catalog.pg_publication_rel pr"
    "   JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid, t WHERE pr.prrelid = t.oid"
    " UNION ALL SELECT 'foreign key from a partitioned table (PostgreSQL cannot re-make it"
    " NOT VALID)', c.conrelid::pg_catalog.regclass::text"
    "   FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class r ON r.oid = c.conrelid, t"
    "  WHERE c.contype = 'f' AND c.confrelid = t.oid AND c.conparentid = 0 AND r.relkind = 'p'"
    " UNION ALL SELECT 'subscription (its apply worker fires no statement triggers)',"
    "   s.subname::text"
    "   FROM pg_catalog.pg_subscription_rel sr"
    "   JOIN pg_catalog.pg_subscription s ON s.oid = sr.srsubid, t WHERE sr.srrelid = t.oid";

static const char open_change_sql[] =
    "SELECT version, step FROM shardgate.bluegreen"
    " WHERE table_schema = $1 AND table_name = $2 AND version <> $3 AND step <> 'finalized'";

int sg_bg_check_obstacles(sg_bg *b, sg_error *err)
{
    PGresult *res = NULL;
    const char *params[] = {b->live};
    int rc = sg_pg_query_params(&res, b->e->conn, obstacles_sql, 1, params, err);
    if (rc == 0 && PQntuples(res) > 0) {
        const char *what = PQgetvalue(res, 0, 0), *name = PQgetvalue(res, 0, 1);
        rc = sg_error_set(err, SG_E_USAGE, "%s: %s cannot be changed blue-green: %s%s%s",
                          b->m->file, b->m->bluegreen_table, what, *name ? " " : "", name);
        for (int i = 1; i < PQntuples(res); i++)
            sg_error_detail(err, "also: %s%s%s", PQgetvalue(res, i, 0),
                            *PQgetvalue(res, i, 1) ? " " : "", PQgetvalue(res, i, 1));
        sg_error_hint(err, "views and rules would stay with the old table: drop them first and "
                           "re-create them after the change, or use a transactional migration");
    }
    PQclear(res);
    return rc;
}

int sg_bg_check_table(sg_bg *b, sg_error *err)
{
    PGresult *res = NULL;
    char version[24];
    int rc;
    const char *exists_params[] = {b->live};
    if ((rc = sg_pg_query_params(&res, b->e->conn,
                                 "SELECT c.relkind FROM pg_catalog.pg_class c"
                                 " WHERE c.oid = pg_catalog.to_regclass($1)",
                                 1, exists_params, err)) < 0)
        return rc;
    if (PQntuples(res) == 0) {
        rc = sg_error_set(err, SG_E_NOT_FOUND, "%s: table %s does not exist", b->m->file,
                          b->m->bluegreen_table);
        goto done;
    }
    if (!strchr("rp", PQgetvalue(res, 0, 0)[0])) {
        rc = sg_error_set(err, SG_E_USAGE, "%s: %s is not a table", b->m->file,
                          b->m->bluegreen_table);
        goto done;
    }
    PQclear(res);
    res = NULL;
    if ((rc = sg_bg_rel_load(&b->blue, b->e->conn, b->schema, b->table, err)) < 0 ||
        (rc = sg_bg_check_obstacles(b, err)) < 0)
        goto done;
    if (b->blue.nkey == 0) {
        rc = sg_error_set(err, SG_E_USAGE,
                          "%s: %s has no primary key (nor a unique index on NOT NULL columns)",
                          b->m->file, b->m->bluegreen_table);
        sg_error_hint(err, "blue-green copies and syncs rows by their key: add a primary key "
                           "first");
        goto done;
    }
    PQclear(res);
    snprintf(version, sizeof(version), "%" PRId64, b->m->version);
    const char *params[] = {b->schema, b->table, version};
    if ((rc = sg_pg_query_params(&res, b->e->conn, open_change_sql, 3, params, err)) < 0)
        goto done;
    if (PQntuples(res) > 0) {
        rc = sg_error_set(err, SG_E_USAGE, "%s: version %s already changes %s blue-green (step %s)",
                          b->m->file, PQgetvalue(res, 0, 0), b->m->bluegreen_table,
                          PQgetvalue(res, 0, 1));
        sg_error_hint(err, "finish or finalize that change first: shardgate finalize --version %s",
                      PQgetvalue(res, 0, 0));
    }
done:
    PQclear(res);
    return rc;
}

/* ---- how columns map ---- */

void sg_bg_map_clear(sg_bg_map *map)
{
    free(map->items);
    free(map->key);
    memset(map, 0, sizeof(*map));
}

void sg_bg_item_sql(sg_bg_text *t, const sg_bg_item *item, const char *alias)
{
    if (item->fill) {
        sg_bg_add(t, "(%s)", item->fill);
        return;
    }
    char *q = sg_bg_quote(item->source->name);
    if (!q) {
        t->failed = true;
        return;
    }
    if (item->cast)
        sg_bg_add(t, "CAST(%s.%s AS %s)", alias, q, item->target->type);
    else
        sg_bg_add(t, "%s.%s", alias, q);
    free(q);
}

/* The column of the other side that a column came from, through the
 * file's renames (walked backwards). */
static const char *renamed_from(const sg_bluegreen_script *s, const char *name)
{
    for (size_t i = s->nrenames; i-- > 0;)
        if (strcmp(s->renames[i].to, name) == 0)
            name = s->renames[i].from;
    return name;
}

static const sg_bluegreen_fill *fill_of(const sg_bluegreen_script *s, const char *column)
{
    for (size_t i = s->nfills; i-- > 0;)
        if (strcmp(s->fills[i].column, column) == 0)
            return &s->fills[i];
    return NULL;
}

static int map_alloc(sg_bg_map *map, const sg_bg_rel *target, sg_error *err)
{
    sg_bg_map_clear(map);
    map->items = sg_calloc(target->ncolumns ? target->ncolumns : 1, sizeof(*map->items));
    map->key = sg_calloc(target->nkey ? target->nkey : 1, sizeof(*map->key));
    if (!map->items || !map->key)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    return 0;
}

/* Points the map's key at the items of the target's key columns: the
 * triggers find a row's counterpart by them, so each must come straight
 * from a column of the source. */
static int map_key(sg_bg_map *map, const sg_bg_rel *target, const char *what, const sg_bg *b,
                   sg_error *err)
{
    for (size_t k = 0; k < target->nkey; k++) {
        size_t i = 0;
        while (i < map->count && strcmp(map->items[i].target->name, target->key[k]) != 0)
            i++;
        if (i == map->count || map->items[i].fill) {
            sg_error_set(err, SG_E_USAGE,
                         "%s: the key column %s of the %s table does not come from a column of "
                         "the %s one",
                         b->m->file, target->key[k], what,
                         strcmp(what, "new") == 0 ? "old" : "new");
            sg_error_hint(err, "blue-green syncs rows by key: keep the key's columns (renamed or "
                               "with a new type is fine)");
            return SG_E_USAGE;
        }
        map->key[map->nkey++] = i;
    }
    return 0;
}

int sg_bg_maps_build(sg_bg *b, sg_error *err)
{
    const sg_bluegreen_script *s = b->script;
    int rc;
    if ((rc = map_alloc(&b->forward, &b->green, err)) < 0 ||
        (rc = map_alloc(&b->back, &b->blue, err)) < 0)
        return rc;
    if (b->green.nkey == 0) {
        sg_error_set(err, SG_E_USAGE, "%s: the new %s has no primary key", b->m->file,
                     b->m->bluegreen_table);
        sg_error_hint(err, "blue-green syncs rows by key: the new shape needs one too");
        return SG_E_USAGE;
    }
    for (size_t i = 0; i < b->green.ncolumns; i++) {
        const sg_bg_column *g = &b->green.columns[i];
        if (g->generated)
            continue;
        const sg_bluegreen_fill *fill = fill_of(s, g->name);
        const sg_bg_column *from = sg_bg_rel_column(&b->blue, renamed_from(s, g->name));
        /* a fill wins over the column it came from, which still says
         * where the column goes back to and whose sequence it takes */
        if (fill)
            b->forward.items[b->forward.count++] =
                (sg_bg_item){.target = g, .source = from, .fill = fill->expression};
        else if (from)
            b->forward.items[b->forward.count++] =
                (sg_bg_item){.target = g, .source = from, .cast = strcmp(from->type, g->type) != 0};
        /* else: a new column, which takes its default */
    }
    for (size_t i = 0; i < b->blue.ncolumns; i++) {
        const sg_bg_column *o = &b->blue.columns[i];
        const sg_bg_item *fwd = NULL;
        if (o->generated)
            continue;
        for (size_t j = 0; j < b->forward.count && !fwd; j++)
            if (b->forward.items[j].source == o)
                fwd = &b->forward.items[j];
        /* the down section's USING or UPDATE ... SET says how, when it does */
        const sg_bluegreen_fill *fill = b->back_script ? fill_of(b->back_script, o->name) : NULL;
        if (fill)
            b->back.items[b->back.count++] = (sg_bg_item){
                .target = o, .source = fwd ? fwd->target : NULL, .fill = fill->expression};
        else if (fwd)
            b->back.items[b->back.count++] =
                (sg_bg_item){.target = o,
                             .source = fwd->target,
                             .cast = strcmp(o->type, fwd->target->type) != 0};
        else if (!b->down) /* a revert by change keeps no window */
            sg_log(SG_LOG_WARNING,
                   "%s: column %s of the old %s has no counterpart in the new one: rows written "
                   "after the cut-over get its default there",
                   b->m->file, o->name, b->m->bluegreen_table);
    }
    if ((rc = map_key(&b->forward, &b->green, "new", b, err)) < 0 ||
        (rc = map_key(&b->back, &b->blue, "old", b, err)) < 0)
        return rc;
    return 0;
}

/* ---- triggers ---- */

static void key_list(sg_bg_text *t, const sg_bg_map *map, const char *alias)
{
    sg_bg_add(t, "(");
    for (size_t k = 0; k < map->nkey; k++) {
        char *q = sg_bg_quote(map->items[map->key[k]].target->name);
        if (!q)
            t->failed = true;
        else if (alias)
            sg_bg_add(t, "%s%s.%s", k ? ", " : "", alias, q);
        else
            sg_bg_add(t, "%s%s", k ? ", " : "", q);
        free(q);
    }
    sg_bg_add(t, ")");
}

/* The source key expressions of the target's key over alias. */
static void key_exprs(sg_bg_text *t, const sg_bg_map *map, const char *alias)
{
    sg_bg_add(t, "(");
    for (size_t k = 0; k < map->nkey; k++) {
        sg_bg_add(t, "%s", k ? ", " : "");
        sg_bg_item_sql(t, &map->items[map->key[k]], alias);
    }
    sg_bg_add(t, ")");
}

static bool is_key(const sg_bg_map *map, size_t item)
{
    for (size_t k = 0; k < map->nkey; k++)
        if (map->key[k] == item)
            return true;
    return false;
}

/* INSERT ... SELECT from rows (a transition table or a chunk) under alias
 * b, upserting by key. */
static void upsert(sg_bg_text *t, const sg_bg_map *map, const char *target, const char *rows,
                   bool update_existing)
{
    sg_bg_add(t, "INSERT INTO %s (", target);
    for (size_t i = 0; i < map->count; i++) {
        char *q = sg_bg_quote(map->items[i].target->name);
        sg_bg_add(t, "%s%s", i ? ", " : "", q ? q : "");
        t->failed |= !q;
        free(q);
    }
    sg_bg_add(t, ") OVERRIDING SYSTEM VALUE SELECT ");
    for (size_t i = 0; i < map->count; i++) {
        sg_bg_add(t, "%s", i ? ", " : "");
        sg_bg_item_sql(t, &map->items[i], "b");
    }
    sg_bg_add(t, " FROM %s AS b ON CONFLICT ", rows);
    key_list(t, map, NULL);
    bool any = false;
    for (size_t i = 0; update_existing && i < map->count; i++) {
        /* an ALWAYS identity column cannot be set by UPDATE; the writer
         * cannot change it either, short of SET ... = DEFAULT */
        if (is_key(map, i) || map->items[i].target->identity_always)
            continue;
        char *q = sg_bg_quote(map->items[i].target->name);
        sg_bg_add(t, "%s%s = EXCLUDED.%s", any ? ", " : " DO UPDATE SET ", q ? q : "", q ? q : "");
        t->failed |= !q;
        free(q);
        any = true;
    }
    if (!any)
        sg_bg_add(t, " DO NOTHING");
}

char *sg_bg_upsert_sql(const sg_bg_map *map, const char *target, const char *rows,
                       bool update_existing, sg_error *err)
{
    sg_bg_text t = {0};
    upsert(&t, map, target, rows, update_existing);
    return sg_bg_text_take(&t, err);
}

/* A function body: the statements, and a handler that records what could
 * not be copied instead of failing the application's write. Errors of the
 * moment (a deadlock, a lock or statement timeout, a cancel) are raised:
 * the writer retries them as it would any other. */
static void function(sg_bg_text *t, const sg_bg *b, const char *fn_schema, const char *name,
                     const char *direction, const char *body)
{
    /* A writer at REPEATABLE READ or SERIALIZABLE sees green as of its
     * snapshot: a row a chunk copied after it began is invisible to its
     * delete, and green would keep it. Such a write is recorded, which
     * stops the change before its cut-over; the window's sync has no
     * chunks to race with. */
    static const char snapshot_check[] =
        "IF current_setting('transaction_isolation') <> 'read committed' THEN\n"
        "  INSERT INTO shardgate.bluegreen_errors (version, direction, error) VALUES (%" PRId64
        ", 'forward', 'a transaction at ' || current_setting('transaction_isolation') ||"
        " ' wrote to the table while its rows were copied: writers must run at read"
        " committed during a blue-green change');\n"
        "END IF;\n";
    sg_bg_add(t,
              "CREATE FUNCTION %s.%s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
              " SET search_path FROM CURRENT AS $sg_bluegreen$\n"
              "BEGIN\n",
              fn_schema, name);
    if (strcmp(direction, "forward") == 0)
        sg_bg_add(t, snapshot_check, b->m->version);
    sg_bg_add(t,
              "%s;\nRETURN NULL;\n"
              "EXCEPTION WHEN OTHERS THEN\n"
              "  IF SQLSTATE IN ('40P01', '40001', '55P03', '57014') THEN RAISE; END IF;\n"
              "  INSERT INTO shardgate.bluegreen_errors (version, direction, sqlstate, error)"
              " VALUES (%" PRId64 ", '%s', SQLSTATE, SQLERRM);\n"
              "  RETURN NULL;\n"
              "END $sg_bluegreen$;\n",
              body, b->m->version, direction);
}

/* Adds the function of body to t and empties body; a body that could not
 * be built fails t, so that no function is made with part of its SQL. */
static void add_function(sg_bg_text *t, sg_bg_text *body, const sg_bg *b, const char *fn_schema,
                         const char *name, const char *direction)
{
    if (body->failed || !body->data)
        t->failed = true;
    else
        function(t, b, fn_schema, name, direction, body->data);
    sg_bg_text_free(body);
}

char *sg_bg_triggers_sql(const sg_bg *b, const sg_bg_map *map, const char *source,
                         const char *target, const char *fn_schema, const char *direction,
                         sg_error *err)
{
    sg_bg_text t = {0}, body = {0};
    char *fs = sg_bg_quote(fn_schema);
    char *sql = NULL;
    if (!fs) {
        sg_error_set(err, SG_E_NOMEM, "out of memory");
        return NULL;
    }
    upsert(&body, map, target, "shardgate_new_rows", true);
    add_function(&t, &body, b, fs, "insert_rows", direction);

    /* an update that changed a row's key removes the row under its old key */
    sg_bg_add(&body, "DELETE FROM %s AS g USING shardgate_old_rows AS o WHERE ", target);
    key_list(&body, map, "g");
    sg_bg_add(&body, " = ");
    key_exprs(&body, map, "o");
    sg_bg_add(&body, " AND NOT EXISTS (SELECT FROM shardgate_new_rows AS n WHERE ");
    key_exprs(&body, map, "n");
    sg_bg_add(&body, " = ");
    key_exprs(&body, map, "o");
    sg_bg_add(&body, ");\n");
    upsert(&body, map, target, "shardgate_new_rows", true);
    add_function(&t, &body, b, fs, "update_rows", direction);

    sg_bg_add(&body, "DELETE FROM %s AS g USING shardgate_old_rows AS o WHERE ", target);
    key_list(&body, map, "g");
    sg_bg_add(&body, " = ");
    key_exprs(&body, map, "o");
    add_function(&t, &body, b, fs, "delete_rows", direction);

    sg_bg_add(&body, "TRUNCATE %s", target);
    add_function(&t, &body, b, fs, "truncate_rows", direction);

    /* Statement triggers with transition tables: one INSERT ... SELECT per
     * statement rather than one per row. ENABLE ALWAYS, so that writes made
     * under session_replication_role = replica (tools that replay changes
     * that way) are synced too; a subscription's apply worker fires no
     * statement triggers, so its tables are refused (obstacles_sql). */
    static const struct {
        const char *event, *fn, *referencing;
    } triggers[] = {
        {"INSERT", "insert_rows", "REFERENCING NEW TABLE AS shardgate_new_rows"},
        {"UPDATE", "update_rows",
         "REFERENCING OLD TABLE AS shardgate_old_rows NEW TABLE AS shardgate_new_rows"},
        {"DELETE", "delete_rows", "REFERENCING OLD TABLE AS shardgate_old_rows"},
        {"TRUNCATE", "truncate_rows", ""},
    };
    for (size_t i = 0; i < sizeof(triggers) / sizeof(*triggers); i++) {
        sg_bg_add(&t,
                  "CREATE TRIGGER shardgate_%s_%s AFTER %s ON %s %s FOR EACH STATEMENT"
                  " EXECUTE FUNCTION %s.%s();\n"
                  "ALTER TABLE %s ENABLE ALWAYS TRIGGER shardgate_%s_%s;\n",
                  direction, triggers[i].fn, triggers[i].event, source, triggers[i].referencing, fs,
                  triggers[i].fn, source, direction, triggers[i].fn);
    }
    sql = sg_bg_text_take(&t, err);
    free(fs);
    return sql;
}

char *sg_bg_drop_triggers_sql(const sg_bg *b, const char *source, const char *direction,
                              sg_error *err)
{
    (void)b;
    sg_bg_text t = {0};
    static const char *const fns[] = {"insert_rows", "update_rows", "delete_rows", "truncate_rows"};
    for (size_t i = 0; i < sizeof(fns) / sizeof(*fns); i++)
        sg_bg_add(&t, "DROP TRIGGER IF EXISTS shardgate_%s_%s ON %s;\n", direction, fns[i], source);
    return sg_bg_text_take(&t, err);
}
