/* The blue-green engine's steps, in order, each recorded in
 * shardgate.bluegreen when done: a run picks up at the first step not
 * recorded. See bluegreen.h for the whole sequence. */
#include "stages/bluegreen_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/interrupt.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"

/* ---- the change ---- */

static void bg_clear(sg_bg *b)
{
    sg_bluegreen_script_free(b->script);
    sg_bluegreen_script_free(b->back_script);
    free(b->schema);
    free(b->table);
    free(b->live);
    free(b->shadow);
    free(b->kept);
    sg_bluegreen_state_clear(&b->state);
    sg_bg_rel_clear(&b->blue);
    sg_bg_rel_clear(&b->green);
    sg_bg_map_clear(&b->forward);
    sg_bg_map_clear(&b->back);
    memset(b, 0, sizeof(*b));
}

static int bg_init(sg_bg *b, sg_apply_engine *e, sg_apply_step *step, sg_error *err)
{
    const sg_migration *m = step->migration;
    memset(b, 0, sizeof(*b));
    b->e = e;
    b->step = step;
    b->m = m;
    b->state.lock_ms = -1;
    step->lock_ms = -1;
    const char *dot = m->bluegreen_table ? strchr(m->bluegreen_table, '.') : NULL;
    if (!dot)
        return sg_error_set(err, SG_E_FORMAT, "%s: mode=bluegreen needs table=SCHEMA.TABLE",
                            m->file);
    b->schema = sg_strndup(m->bluegreen_table, (size_t)(dot - m->bluegreen_table));
    b->table = sg_strdup(dot + 1);
    snprintf(b->new_schema, sizeof(b->new_schema), "shardgate_new_%" PRId64, m->version);
    snprintf(b->old_schema, sizeof(b->old_schema), "shardgate_old_%" PRId64, m->version);
    if (!b->schema || !b->table || !(b->live = sg_bg_qualify(b->schema, b->table)) ||
        !(b->shadow = sg_bg_qualify(b->new_schema, b->table)) ||
        !(b->kept = sg_bg_qualify(b->old_schema, b->table)))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    return sg_bg_state_load(b, err);
}

/* The script of the section this change runs: up, or down for a revert
 * after finalize. */
static int bg_script(sg_bg *b, sg_error *err)
{
    const sg_migration_section *section = b->down ? &b->m->down : &b->m->up;
    sg_bluegreen_script_free(b->script);
    sg_bluegreen_script_free(b->back_script);
    b->script = b->back_script = NULL;
    int rc = sg_bluegreen_script_build(&b->script, b->m, section, b->new_schema, err);
    if (rc == 0 && !b->down)
        rc = sg_bluegreen_script_build(&b->back_script, b->m, &b->m->down, b->old_schema, err);
    return rc;
}

/* Reads both tables where the step says they are, and how they map. */
static int bg_load(sg_bg *b, sg_error *err)
{
    bool swapped = b->state.step >= SG_BLUEGREEN_CUT_OVER;
    int rc;
    if ((rc = sg_bg_rel_load(&b->blue, b->e->conn, swapped ? b->old_schema : b->schema, b->table,
                             err)) < 0 ||
        (rc = sg_bg_rel_load(&b->green, b->e->conn, swapped ? b->schema : b->new_schema, b->table,
                             err)) < 0)
        return rc;
    return sg_bg_maps_build(b, err);
}

/* ---- prepare ---- */

/* Blue's constraints, re-created on green from their definitions: CHECKs,
 * those that need an index (primary key, unique, exclusion) and foreign
 * keys to other tables. On an empty table they cost nothing, and the file's
 * statements can then drop or change them by name. Two kinds wait for the
 * cut-over (bluegreen_swap.c): a NOT VALID one, which old rows may break
 * (and the copy would be checked against it), and a foreign key to the
 * table itself, since green's rows arrive in key order, not parents
 * first. */
static int copy_constraints(sg_bg *b, sg_error *err)
{
    PGresult *res = NULL;
    const char *params[] = {b->live};
    int rc = sg_pg_query_params(&res, b->e->conn,
                                "SELECT pg_catalog.quote_ident(c.conname),"
                                "       pg_catalog.pg_get_constraintdef(c.oid)"
                                "  FROM pg_catalog.pg_constraint c"
                                " WHERE c.conrelid = $1::pg_catalog.regclass"
                                "   AND c.contype IN ('c', 'p', 'u', 'x', 'f') AND c.convalidated"
                                "   AND (c.contype <> 'f' OR c.confrelid <> c.conrelid)"
                                " ORDER BY c.contype = 'f', c.conname",
                                1, params, err);
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        char *sql = sg_asprintf("ALTER TABLE ONLY %s ADD CONSTRAINT %s %s", b->live,
                                PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
        char *rewritten = NULL;
        if (!sql)
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        else if ((rc = sg_sql_rewrite_table(&rewritten, sql, b->schema, b->table, b->new_schema,
                                            false, err)) == 0)
            rc = sg_bg_run(b, rewritten, err);
        free(sql);
        free(rewritten);
    }
    PQclear(res);
    return rc;
}

/* Blue's indexes that are not constraints', on green before the file's
 * statements run, so that PostgreSQL adjusts them to what the statements do
 * (a dropped column drops its index, a renamed one is followed, a new type
 * is taken). Afterwards their definitions are kept and all but the key
 * index are dropped again, to be built concurrently once the rows are in:
 * an index maintained during the copy would slow it down. The key index
 * stays: the sync triggers' upserts need it from the start. */
static int copy_indexes(sg_bg *b, sg_error *err)
{
    PGresult *res = NULL;
    const char *params[] = {b->live};
    int rc = sg_pg_query_params(&res, b->e->conn,
                                "SELECT pg_catalog.pg_get_indexdef(i.indexrelid)"
                                "  FROM pg_catalog.pg_index i"
                                " WHERE i.indrelid = $1::pg_catalog.regclass"
                                "   AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k"
                                "                    WHERE k.conindid = i.indexrelid)",
                                1, params, err);
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        char *sql = NULL;
        if ((rc = sg_sql_rewrite_table(&sql, PQgetvalue(res, i, 0), b->schema, b->table,
                                       b->new_schema, false, err)) == 0)
            rc = sg_bg_run(b, sql, err);
        free(sql);
    }
    PQclear(res);
    return rc;
}

/* Keeps the definitions of green's deferred indexes in the change's row
 * and drops the indexes (green is empty, and nothing writes to it yet). */
static int defer_indexes(sg_bg *b, sg_error *err)
{
    PGresult *res = NULL;
    char version[24];
    snprintf(version, sizeof(version), "%" PRId64, b->m->version);
    const char *params[] = {b->shadow, b->green.key_constraint ? b->green.key_constraint : "",
                            version};
    int rc = sg_pg_query_params(
        &res, b->e->conn,
        "WITH d AS (SELECT c.relname, pg_catalog.pg_get_indexdef(i.indexrelid) AS def"
        "             FROM pg_catalog.pg_index i"
        "             JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
        "            WHERE i.indrelid = $1::pg_catalog.regclass AND c.relname <> $2"
        "              AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k"
        "                               WHERE k.conindid = i.indexrelid)),"
        " kept AS (UPDATE shardgate.bluegreen"
        "             SET index_definitions = (SELECT coalesce(array_agg(def ORDER BY relname),"
        "                                                       '{}') FROM d)"
        "           WHERE version = $3::bigint)"
        " SELECT relname FROM d",
        3, params, err);
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        char *q = sg_bg_qualify(b->new_schema, PQgetvalue(res, i, 0));
        char *sql = q ? sg_asprintf("DROP INDEX %s", q) : NULL;
        rc = sql ? sg_bg_run(b, sql, err) : sg_error_set(err, SG_E_NOMEM, "out of memory");
        free(sql);
        free(q);
    }
    PQclear(res);
    return rc;
}

/* Owner, privileges, storage options and replica identity: what the
 * application and replication see of the table, which LIKE leaves out. */
static int copy_table_settings(sg_bg *b, sg_error *err)
{
    PGresult *res = NULL;
    const char *params[] = {b->live, b->shadow};
    int rc = sg_pg_query_params(
        &res, b->e->conn,
        "SELECT format('ALTER TABLE %s OWNER TO %I', $2::text, "
        "pg_catalog.pg_get_userbyid(c.relowner))"
        "  FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.regclass"
        " UNION ALL SELECT format('GRANT %s ON %s TO %s%s', a.privilege_type, $2,"
        "   CASE a.grantee WHEN 0 THEN 'PUBLIC'"
        "   ELSE quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,"
        "   CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)"
        "  FROM pg_catalog.pg_class c, aclexplode(c.relacl) a"
        " WHERE c.oid = $1::pg_catalog.regclass AND a.grantee <> c.relowner"
        " UNION ALL SELECT format('ALTER TABLE %s SET (%s)', $2,"
        "   array_to_string(c.reloptions, ', '))"
        "  FROM pg_catalog.pg_class c"
        " WHERE c.oid = $1::pg_catalog.regclass AND c.reloptions IS NOT NULL"
        " UNION ALL SELECT format('ALTER TABLE %s REPLICA IDENTITY %s', $2,"
        "   CASE c.relreplident WHEN 'f' THEN 'FULL' ELSE 'NOTHING' END)"
        "  FROM pg_catalog.pg_class c"
        " WHERE c.oid = $1::pg_catalog.regclass AND c.relreplident IN ('f', 'n')",
        2, params, err);
    for (int i = 0; rc == 0 && i < PQntuples(res); i++)
        rc = sg_bg_run(b, PQgetvalue(res, i, 0), err);
    PQclear(res);
    return rc;
}

/* Whether the foreign keys of other tables that reference blue can point at
 * green: each is tried on green (NOT VALID, rolled back), so that a new
 * shape without a unique key on the referenced columns (a key widened to
 * two columns, a referenced column dropped) is refused now, not at the
 * cut-over after the whole copy. The try locks the referencing table
 * briefly (until the prepare commits), as adding the key would. */
static int probe_inbound_fks(sg_bg *b, sg_error *err)
{
    PGresult *res = NULL;
    const char *params[] = {b->live};
    sg_bg_text probe = {0}, from = {0}, to = {0};
    int rc = sg_pg_query_params(
        &res, b->e->conn,
        "SELECT c.oid, c.conrelid::pg_catalog.regclass::text, c.conname,"
        "       pg_catalog.quote_ident(ca.attname), fa.attname"
        "  FROM pg_catalog.pg_constraint c,"
        "       unnest(c.conkey, c.confkey) WITH ORDINALITY k(attnum, fattnum, ord)"
        "  JOIN pg_catalog.pg_attribute ca ON ca.attnum = k.attnum"
        "  JOIN pg_catalog.pg_attribute fa ON fa.attnum = k.fattnum"
        " WHERE c.contype = 'f' AND c.conparentid = 0"
        "   AND c.confrelid = $1::pg_catalog.regclass AND c.conrelid <> c.confrelid"
        "   AND ca.attrelid = c.conrelid AND fa.attrelid = c.confrelid"
        " ORDER BY c.oid, k.ord",
        1, params, err);
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        const char *fk = PQgetvalue(res, i, 0), *referenced = PQgetvalue(res, i, 4);
        const sg_bg_item *to_item = NULL;
        for (size_t j = 0; j < b->forward.count && !to_item; j++)
            if (b->forward.items[j].source &&
                strcmp(b->forward.items[j].source->name, referenced) == 0)
                to_item = &b->forward.items[j];
        if (!to_item) {
            rc = sg_error_set(err, SG_E_USAGE,
                              "%s: foreign key %s of %s references column %s of %s, which the new "
                              "shape does not have",
                              b->m->file, PQgetvalue(res, i, 2), PQgetvalue(res, i, 1), referenced,
                              b->m->bluegreen_table);
            break;
        }
        char *q = sg_bg_quote(to_item->target->name);
        sg_bg_add(&from, "%s%s", from.len ? ", " : "", PQgetvalue(res, i, 3));
        sg_bg_add(&to, "%s%s", to.len ? ", " : "", q ? q : "");
        to.failed |= !q;
        free(q);
        if (i + 1 < PQntuples(res) && strcmp(PQgetvalue(res, i + 1, 0), fk) == 0)
            continue;
        sg_bg_add(&probe,
                  "SAVEPOINT shardgate_probe; ALTER TABLE %s ADD CONSTRAINT shardgate_probe"
                  " FOREIGN KEY (%s) REFERENCES %s (%s) NOT VALID;"
                  " ROLLBACK TO SAVEPOINT shardgate_probe",
                  PQgetvalue(res, i, 1), from.data ? from.data : "", b->shadow,
                  to.data ? to.data : "");
        char *sql = sg_bg_text_take(&probe, err);
        if (!sql || from.failed || to.failed) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        } else if ((rc = sg_bg_run(b, sql, err)) < 0) {
            sg_error_prefix(err, "%s: foreign key %s of %s cannot reference the new %s", b->m->file,
                            PQgetvalue(res, i, 2), PQgetvalue(res, i, 1), b->m->bluegreen_table);
            if (rc == SG_E_DB && strncmp(err->sqlstate, "42", 2) == 0)
                rc = err->code = SG_E_USAGE;
        }
        free(sql);
        sg_bg_text_free(&from);
        sg_bg_text_free(&to);
    }
    sg_bg_text_free(&probe);
    sg_bg_text_free(&from);
    sg_bg_text_free(&to);
    PQclear(res);
    return rc;
}

static int prepare_in_transaction(sg_apply_engine *e, void *ctx, sg_error *err)
{
    sg_bg *b = ctx;
    PGresult *res = NULL;
    const char *params[] = {b->live};
    char *qnew = sg_bg_quote(b->new_schema);
    int rc;
    (void)e;
    if (!qnew)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    if ((rc = sg_pg_query_params(&res, b->e->conn,
                                 "SELECT c.relpersistence = 'u' FROM pg_catalog.pg_class c"
                                 " WHERE c.oid = $1::pg_catalog.regclass",
                                 1, params, err)) < 0)
        goto done;
    bool unlogged = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    /* LIKE takes columns, defaults, NOT NULL, identity, generated
     * columns, storage, compression and comments; constraints come from
     * their definitions, indexes later, built concurrently once the rows
     * are in */
    char *sql = sg_asprintf("CREATE SCHEMA %s; CREATE %sTABLE %s (LIKE %s INCLUDING ALL"
                            " EXCLUDING CONSTRAINTS EXCLUDING INDEXES EXCLUDING STATISTICS)",
                            qnew, unlogged ? "UNLOGGED " : "", b->shadow, b->live);
    rc = sql ? sg_bg_run_taken(b, sql, err) : sg_error_set(err, SG_E_NOMEM, "out of memory");
    if (rc < 0 || (rc = copy_constraints(b, err)) < 0 || (rc = copy_indexes(b, err)) < 0 ||
        (rc = copy_table_settings(b, err)) < 0)
        goto done;
    for (size_t i = 0; i < b->script->nbefore; i++) {
        if ((rc = sg_bg_run(b, b->script->before[i], err)) < 0) {
            sg_error_prefix(err, "%s: on the new table", b->m->file);
            goto done;
        }
    }
    /* the maps are checked here, so that a change whose key cannot be
     * followed leaves nothing behind */
    b->state.step = SG_BLUEGREEN_PREPARED;
    if ((rc = bg_load(b, err)) == 0 && (rc = probe_inbound_fks(b, err)) == 0 &&
        (rc = sg_bg_state_set(b, SG_BLUEGREEN_PREPARED, err)) == 0)
        rc = defer_indexes(b, err);
    if (rc < 0)
        b->state.step = SG_BLUEGREEN_NONE;
done:
    PQclear(res);
    free(qnew);
    return rc;
}

static int prepare(sg_bg *b, sg_error *err)
{
    int rc;
    if ((rc = sg_bg_check_table(b, err)) < 0)
        return rc;
    sg_log(SG_LOG_INFO, "%s: building the new %s in %s", b->m->file, b->m->bluegreen_table,
           b->new_schema);
    if ((rc = sg_apply_transaction(b->e, b->m, 0, prepare_in_transaction, b, err)) < 0)
        return rc;
    sg_apply_event(b->e, b->m, "bluegreen-prepared",
                   json_pack("{s:s, s:i}", "table", b->m->bluegreen_table, "columns_copied",
                             (int)b->forward.count));
    sg_bg_step_done(b, SG_BLUEGREEN_PREPARED, -1);
    return 0;
}

/* ---- sync ---- */

static int sync_in_transaction(sg_apply_engine *e, void *ctx, sg_error *err)
{
    sg_bg *b = ctx;
    (void)e;
    int rc = sg_bg_run_taken(
        b, sg_bg_triggers_sql(b, &b->forward, b->live, b->shadow, b->new_schema, "forward", err),
        err);
    return rc < 0 ? rc : sg_bg_state_set(b, SG_BLUEGREEN_SYNCED, err);
}

/* ---- indexes ---- */

typedef struct index_build {
    char *name; /* unquoted, in the new schema */
    char *sql;  /* CREATE INDEX CONCURRENTLY on green */
} index_build;

static void builds_clear(index_build *builds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(builds[i].name);
        free(builds[i].sql);
    }
    free(builds);
}

/* The index a CREATE INDEX statement names (NULL with err filled). */
static char *index_name(const char *sql, sg_error *err)
{
    sg_sql_script *script = NULL;
    char *name = NULL;
    if (sg_sql_script_parse(&script, sql, strlen(sql), 1, err) < 0)
        return NULL;
    const PgQuery__Node *tree =
        sg_sql_script_count(script) == 1 ? sg_sql_script_stmt(script, 0)->tree : NULL;
    if (!tree || tree->node_case != PG_QUERY__NODE__NODE_INDEX_STMT || !tree->index_stmt->idxname)
        sg_error_set(err, SG_E_INTERNAL, "not a named CREATE INDEX: %.200s", sql);
    else if (!(name = sg_strdup(tree->index_stmt->idxname)))
        sg_error_set(err, SG_E_NOMEM, "out of memory");
    sg_sql_script_free(script);
    return name;
}

/* Blue's indexes as the file's statements left them, then the file's. */
static int index_builds(index_build **out, size_t *count, sg_bg *b, sg_error *err)
{
    PGresult *res = NULL;
    index_build *builds = NULL;
    size_t n = 0;
    char version[24];
    snprintf(version, sizeof(version), "%" PRId64, b->m->version);
    const char *params[] = {version};
    int rc = sg_pg_query_params(&res, b->e->conn,
                                "SELECT unnest(index_definitions) FROM shardgate.bluegreen"
                                " WHERE version = $1",
                                1, params, err);
    size_t total = (rc == 0 ? (size_t)PQntuples(res) : 0) + b->script->nafter;
    if (rc == 0 && total && !(builds = sg_calloc(total, sizeof(*builds))))
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        index_build *ib = &builds[n++];
        if ((rc = sg_sql_rewrite_table(&ib->sql, PQgetvalue(res, i, 0), b->new_schema, b->table,
                                       b->new_schema, true, err)) == 0 &&
            !(ib->name = index_name(ib->sql, err)))
            rc = err->code;
    }
    for (size_t i = 0; rc == 0 && i < b->script->nafter; i++) {
        index_build *ib = &builds[n++];
        if (!(ib->sql = sg_strdup(b->script->after[i])))
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        else if (!(ib->name = index_name(ib->sql, err)))
            rc = err->code;
    }
    PQclear(res);
    if (rc < 0) {
        builds_clear(builds, n);
        return rc;
    }
    *out = builds;
    *count = n;
    return 0;
}

/* Whether green has the index already, valid, after a run that stopped
 * during the builds; an invalid one (a build that failed or was killed) is
 * dropped, to be built again. */
static int index_done(bool *done, sg_bg *b, const index_build *ib, sg_error *err)
{
    PGresult *res = NULL;
    const char *params[] = {b->new_schema, ib->name};
    int rc = sg_pg_query_params(&res, b->e->conn,
                                "SELECT i.indisvalid FROM pg_catalog.pg_index i"
                                "  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
                                "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                                " WHERE n.nspname = $1 AND c.relname = $2",
                                2, params, err);
    *done = false;
    if (rc == 0 && PQntuples(res) == 1) {
        *done = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        if (!*done) {
            char *q = sg_bg_qualify(b->new_schema, ib->name);
            char *sql = q ? sg_asprintf("DROP INDEX CONCURRENTLY IF EXISTS %s", q) : NULL;
            rc = sql ? sg_bg_run(b, sql, err) : sg_error_set(err, SG_E_NOMEM, "out of memory");
            free(sql);
            free(q);
        }
    }
    PQclear(res);
    return rc;
}

static int build_indexes(sg_bg *b, sg_error *err)
{
    index_build *builds = NULL;
    size_t n = 0;
    int rc;
    /* a concurrent build waits for older transactions to end; green is
     * not the application's, so that wait blocks no one and may be long */
    if ((rc = index_builds(&builds, &n, b, err)) < 0 ||
        (rc = sg_pg_exec(b->e->conn, "SET lock_timeout = 0", err)) < 0)
        goto done;
    for (size_t i = 0; i < n; i++) {
        bool done = false;
        if ((rc = sg_interrupt_check(err)) < 0 || (rc = index_done(&done, b, &builds[i], err)) < 0)
            goto done;
        if (done)
            continue;
        sg_log(SG_LOG_INFO, "%s: building index %s on the new table", b->m->file, builds[i].name);
        if ((rc = sg_bg_run(b, builds[i].sql, err)) < 0)
            goto done;
    }
    /* statistics, so that the first plans on the new table after the
     * cut-over are not made blind */
    char *analyze = sg_asprintf("ANALYZE %s", b->shadow);
    if ((rc = sg_pg_exec(b->e->conn, "RESET lock_timeout", err)) == 0)
        rc = analyze ? sg_bg_run(b, analyze, err) : sg_error_set(err, SG_E_NOMEM, "out of memory");
    free(analyze);
    if (rc == 0)
        rc = sg_bg_state_set(b, SG_BLUEGREEN_INDEXED, err);
done:
    builds_clear(builds, n);
    return rc;
}

/* ---- apply ---- */

/* Runs the steps from where the state says, up to and including the
 * cut-over. */
static int forward(sg_bg *b, sg_error *err)
{
    int rc;
    if (b->state.step == SG_BLUEGREEN_NONE && (rc = prepare(b, err)) < 0)
        return rc;
    if (b->state.step != SG_BLUEGREEN_NONE && !b->forward.items && (rc = bg_load(b, err)) < 0)
        return rc;
    if (b->state.step == SG_BLUEGREEN_PREPARED) {
        if ((rc = sg_apply_transaction(b->e, b->m, 0, sync_in_transaction, b, err)) < 0)
            return rc;
        sg_bg_step_done(b, SG_BLUEGREEN_SYNCED, -1);
    }
    if (b->state.step == SG_BLUEGREEN_SYNCED) {
        if ((rc = sg_bg_backfill(b, err)) < 0 ||
            (rc = sg_bg_state_set(b, SG_BLUEGREEN_BACKFILLED, err)) < 0)
            return rc;
        sg_bg_step_done(b, SG_BLUEGREEN_BACKFILLED, -1);
    }
    if (b->state.step == SG_BLUEGREEN_BACKFILLED) {
        if ((rc = build_indexes(b, err)) < 0)
            return rc;
        sg_bg_step_done(b, SG_BLUEGREEN_INDEXED, -1);
    }
    if (b->state.step == SG_BLUEGREEN_INDEXED) {
        if ((rc = sg_bg_compare(b, false, err)) < 0 ||
            (rc = sg_bg_state_set(b, SG_BLUEGREEN_VERIFIED, err)) < 0)
            return rc;
        sg_bg_step_done(b, SG_BLUEGREEN_VERIFIED, -1);
    }
    if (b->state.step == SG_BLUEGREEN_VERIFIED && (rc = sg_bg_cut_over(b, err)) < 0)
        return rc;
    return 0;
}

int sg_bluegreen_apply(sg_apply_engine *e, sg_apply_step *step, sg_error *err)
{
    const sg_migration *m = step->migration;
    sg_bg b;
    int rc;
    step->attempts = 1;
    if ((rc = bg_init(&b, e, step, err)) < 0 || (rc = bg_script(&b, err)) < 0)
        goto done;
    if (b.state.step >= SG_BLUEGREEN_SWAPPED_BACK) {
        rc = sg_error_set(err, SG_E_TARGET, "%s: its blue-green change is %s", m->file,
                          sg_bluegreen_step_name(b.state.step));
        sg_error_hint(err, "finish the revert with shardgate revert --to %" PRId64, m->version - 1);
        goto done;
    }
    if (b.state.step == SG_BLUEGREEN_NONE)
        rc = sg_registry_begin(e->conn, &e->actor, m, SG_REGISTRY_APPLYING, err);
    else
        rc = sg_registry_mark(e->conn, m->version, SG_REGISTRY_APPLYING, NULL, err);
    if (rc < 0)
        goto done;
    if (b.state.step != SG_BLUEGREEN_NONE)
        sg_log(SG_LOG_INFO, "%s: resuming the blue-green change after step %s", m->file,
               sg_bluegreen_step_name(b.state.step));
    if ((rc = forward(&b, err)) < 0 || (rc = sg_bg_validate_foreign_keys(&b, err)) < 0 ||
        (rc = sg_pg_exec(e->conn, "RESET lock_timeout", err)) < 0)
        goto done;
    /* the verify section runs on the new table; a failure swaps back */
    if ((rc = sg_migration_verify(e->conn, m, err)) == SG_E_MISMATCH) {
        sg_error failure = *err;
        sg_apply_event(e, m, "verify-fail", sg_apply_error_detail(&failure));
        sg_log(SG_LOG_WARNING, "%s: verify failed; swapping the old table back", m->file);
        if ((rc = sg_bg_swap_back(&b, err)) == 0) {
            *err = failure;
            sg_error_hint(err, "the old table was swapped back: nothing was lost");
            rc = failure.code;
        }
        goto done;
    }
    if (rc == 0 && (rc = sg_apply_finish_row(e, step, err)) == 0)
        sg_apply_applied_event(e, step);
done:
    if (rc < 0 && rc != SG_E_INTERRUPTED && PQstatus(e->conn) == CONNECTION_OK &&
        b.state.step != SG_BLUEGREEN_CUT_OVER) {
        sg_error ignored = {0};
        sg_registry_mark(e->conn, m->version, SG_REGISTRY_FAILED, NULL, &ignored);
        sg_apply_event(e, m, "fail", sg_apply_error_detail(err));
    }
    bg_clear(&b);
    return rc;
}

/* ---- revert and finalize ---- */

/* Goes on with a revert by change that a killed run left at some step. */
static int resume_revert_by_change(sg_bg *b, sg_error *err)
{
    int rc;
    b->down = true;
    if ((rc = bg_script(b, err)) < 0 || (rc = forward(b, err)) < 0)
        return rc;
    return sg_bg_finalize(b, err);
}

/* A revert after finalize: the down section, as a blue-green change of its
 * own, finalized at once (its own old table is the shape being left). */
static int revert_by_change(sg_bg *b, sg_error *err)
{
    int rc;
    b->down = true;
    b->state.step = SG_BLUEGREEN_NONE;
    sg_bg_rel_clear(&b->blue);
    sg_bg_rel_clear(&b->green);
    sg_bg_map_clear(&b->forward);
    sg_bg_map_clear(&b->back);
    if ((rc = bg_script(b, err)) < 0 || (rc = forward(b, err)) < 0)
        return rc;
    return sg_bg_finalize(b, err);
}

int sg_bluegreen_revert(sg_apply_engine *e, sg_apply_step *step, sg_error *err)
{
    const sg_migration *m = step->migration;
    sg_bg b;
    int rc;
    step->attempts = 1;
    if ((rc = bg_init(&b, e, step, err)) < 0 || (rc = bg_script(&b, err)) < 0 ||
        (rc = sg_registry_mark(e->conn, m->version, SG_REGISTRY_REVERTING, NULL, err)) < 0)
        goto done;
    switch (b.state.step) {
    case SG_BLUEGREEN_NONE:
        break; /* nothing of it is on the database */
    case SG_BLUEGREEN_PREPARED:
    case SG_BLUEGREEN_SYNCED:
    case SG_BLUEGREEN_BACKFILLED:
    case SG_BLUEGREEN_INDEXED:
    case SG_BLUEGREEN_VERIFIED:
    case SG_BLUEGREEN_CUT_OVER:
        if (b.state.down) {
            /* a revert by change that stopped part way: it goes on */
            sg_log(SG_LOG_INFO, "%s: resuming the revert by a change of its own (step %s)", m->file,
                   sg_bluegreen_step_name(b.state.step));
            if ((rc = resume_revert_by_change(&b, err)) == 0)
                rc = sg_bg_state_delete(&b, err);
        } else if (b.state.step == SG_BLUEGREEN_CUT_OVER) {
            if ((rc = bg_load(&b, err)) == 0)
                rc = sg_bg_swap_back(&b, err);
        } else {
            sg_log(SG_LOG_INFO, "%s: abandoning the blue-green change (step %s)", m->file,
                   sg_bluegreen_step_name(b.state.step));
            rc = sg_bg_abandon(&b, err);
        }
        break;
    case SG_BLUEGREEN_SWAPPED_BACK:
        /* killed after the swap back: its foreign keys may wait to be validated */
        if ((rc = sg_bg_validate_foreign_keys(&b, err)) == 0)
            rc = sg_bg_abandon(&b, err);
        break;
    case SG_BLUEGREEN_FINALIZED:
        if (b.state.down)
            rc = sg_bg_finalize(&b, err); /* a revert by change that stopped at its end */
        else
            rc = revert_by_change(&b, err);
        if (rc == 0)
            rc = sg_bg_state_delete(&b, err);
        break;
    }
    if (rc == 0 && (rc = sg_registry_delete(e->conn, m->version, err)) == 0)
        sg_apply_event(e, m, "revert", json_pack("{s:s}", "mode", "bluegreen"));
done:
    if (rc < 0 && rc != SG_E_INTERRUPTED && PQstatus(e->conn) == CONNECTION_OK) {
        sg_error ignored = {0};
        sg_registry_mark(e->conn, m->version, SG_REGISTRY_REVERT_FAILED, NULL, &ignored);
        sg_apply_event(e, m, "revert-fail", sg_apply_error_detail(err));
    }
    bg_clear(&b);
    return rc;
}

int sg_bluegreen_verify_window(bool *compared, PGconn *conn, const sg_migration *m, sg_error *err)
{
    sg_apply_options opts;
    sg_apply_engine e = {.conn = conn, .opts = &opts};
    sg_apply_step step = {.migration = m, .kind = SG_STEP_APPLY};
    sg_bg b;
    *compared = false;
    sg_apply_options_init(&opts, NULL);
    int rc = bg_init(&b, &e, &step, err);
    if (rc == 0 && b.state.step == SG_BLUEGREEN_CUT_OVER && (rc = bg_script(&b, err)) == 0 &&
        (rc = bg_load(&b, err)) == 0) {
        rc = sg_bg_compare(&b, true, err);
        *compared = true;
    }
    bg_clear(&b);
    return rc;
}

int sg_bluegreen_finalize(sg_apply_engine *e, sg_apply_step *step, sg_error *err)
{
    sg_bg b;
    int rc = bg_init(&b, e, step, err);
    if (rc == 0 && b.state.step == SG_BLUEGREEN_CUT_OVER)
        rc = sg_bg_finalize(&b, err);
    bg_clear(&b);
    return rc;
}
