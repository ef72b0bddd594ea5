/* The swaps of a blue-green change, each one short transaction under
 * lock_timeout (retried with backoff by sg_apply_transaction): the cut-over
 * (green in, blue kept), the swap back of a revert, finalize (the kept table
 * dropped) and abandoning a change before its cut-over.
 *
 * Tables change places by schema, not by name: ALTER TABLE ... SET SCHEMA
 * moves a table with its indexes, constraints and owned sequences, so green,
 * built under the table's own name in shardgate_new_V, arrives with every
 * index and constraint named as before. What refers to a table by OID does
 * not follow it: foreign keys that reference it are re-created, sequences
 * it owns are handed over, and identity sequences are carried forward. */
#include "stages/bluegreen_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"

/* A cut-over waits at most this long for its lock unless told otherwise:
 * while it waits, every query on the table queues behind it. */
#define SWAP_LOCK_TIMEOUT_MS 1000

static int runf(sg_bg *b, sg_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int runf(sg_bg *b, sg_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = NULL;
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && (sql = sg_malloc((size_t)n + 1))) {
        va_start(ap, fmt);
        vsnprintf(sql, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    int rc = sql ? sg_bg_run(b, sql, err) : sg_error_set(err, SG_E_NOMEM, "out of memory");
    free(sql);
    return rc;
}

/* ---- foreign keys that reference the table ---- */

/* Other tables' foreign keys to rel, read under the swap's lock: per row
 * the table, the name, the definition and whether it is validated. Their
 * definitions name the referenced table by name, which after the swap is
 * the other table. */
static int inbound_read(PGresult **out, sg_bg *b, const char *rel, sg_error *err)
{
    const char *params[] = {rel};
    return sg_pg_query_params(out, b->e->conn,
                              "SELECT c.conrelid::pg_catalog.regclass::text,"
                              "       pg_catalog.quote_ident(c.conname),"
                              "       pg_catalog.pg_get_constraintdef(c.oid), c.convalidated"
                              "  FROM pg_catalog.pg_constraint c"
                              " WHERE c.contype = 'f' AND c.conparentid = 0"
                              "   AND c.confrelid = $1::pg_catalog.regclass"
                              "   AND c.conrelid <> $1::pg_catalog.regclass"
                              " ORDER BY 1, 2",
                              1, params, err);
}

static bool validated(const PGresult *fks, int i)
{
    return strcmp(PQgetvalue(fks, i, 3), "t") == 0;
}

static int inbound_drop(sg_bg *b, const PGresult *fks, sg_error *err)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(fks); i++)
        rc = runf(b, err, "ALTER TABLE %s DROP CONSTRAINT %s", PQgetvalue(fks, i, 0),
                  PQgetvalue(fks, i, 1));
    return rc;
}

/* Re-created NOT VALID, which needs no scan under the lock; validated after
 * the commit, which holds no lock that blocks writers. */
static int inbound_add(sg_bg *b, const PGresult *fks, sg_error *err)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(fks); i++)
        rc = runf(b, err, "ALTER TABLE %s ADD CONSTRAINT %s %s%s", PQgetvalue(fks, i, 0),
                  PQgetvalue(fks, i, 1), PQgetvalue(fks, i, 2),
                  validated(fks, i) ? " NOT VALID" : "");
    return rc;
}

/* The leaving table's constraints that green got only now (bluegreen.c
 * copy_constraints): a foreign key to the table itself and the NOT VALID
 * ones; per row the name, the definition (naming the table) and whether it
 * is validated. The swap adds each to the incoming table unless that has
 * it (a swap back finds the old table's own): NOT VALID, the validated
 * ones to be validated after the commit. */
static int deferred_read(PGresult **out, sg_bg *b, sg_error *err)
{
    const char *params[] = {b->live};
    return sg_pg_query_params(out, b->e->conn,
                              "SELECT pg_catalog.quote_ident(c.conname),"
                              "       pg_catalog.pg_get_constraintdef(c.oid), c.convalidated"
                              "  FROM pg_catalog.pg_constraint c"
                              " WHERE c.contype IN ('c', 'f') AND c.conparentid = 0"
                              "   AND c.conrelid = $1::pg_catalog.regclass"
                              "   AND (NOT c.convalidated OR c.confrelid = c.conrelid)"
                              " ORDER BY 1",
                              1, params, err);
}

static int deferred_add(sg_bg *b, const PGresult *fks, json_t *added, sg_error *err)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(fks); i++) {
        const char *params[] = {b->live, PQgetvalue(fks, i, 0)};
        PGresult *res = NULL;
        if ((rc = sg_pg_query_params(&res, b->e->conn,
                                     "SELECT FROM pg_catalog.pg_constraint"
                                     " WHERE conrelid = $1::pg_catalog.regclass"
                                     "   AND pg_catalog.quote_ident(conname) = $2",
                                     2, params, err)) < 0)
            break;
        bool exists = PQntuples(res) > 0;
        PQclear(res);
        if (exists)
            continue;
        bool valid = strcmp(PQgetvalue(fks, i, 2), "t") == 0;
        rc = runf(b, err, "ALTER TABLE %s ADD CONSTRAINT %s %s%s", b->live, PQgetvalue(fks, i, 0),
                  PQgetvalue(fks, i, 1), valid ? " NOT VALID" : "");
        if (rc == 0 && valid && added)
            json_array_append_new(added, json_string(PQgetvalue(fks, i, 0)));
    }
    return rc;
}

/* Validates the foreign keys to the live table that the last swap re-made
 * NOT VALID (the change's row keeps their names, committed with the swap);
 * run outside a transaction, again by a run that resumes after the swap. */
int sg_bg_validate_foreign_keys(sg_bg *b, sg_error *err)
{
    PGresult *res = NULL;
    char version[24];
    snprintf(version, sizeof(version), "%" PRId64, b->m->version);
    const char *params[] = {b->live, version};
    int rc = sg_pg_query_params(&res, b->e->conn,
                                "SELECT c.conrelid::pg_catalog.regclass::text,"
                                "       pg_catalog.quote_ident(c.conname)"
                                "  FROM pg_catalog.pg_constraint c"
                                " WHERE c.contype = 'f' AND NOT c.convalidated"
                                "   AND c.confrelid = $1::pg_catalog.regclass"
                                "   AND pg_catalog.quote_ident(c.conname) IN (SELECT"
                                "         unnest(foreign_keys) FROM shardgate.bluegreen"
                                "        WHERE version = $2)",
                                2, params, err);
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        sg_log(SG_LOG_INFO, "%s: validating foreign key %s of %s", b->m->file,
               PQgetvalue(res, i, 1), PQgetvalue(res, i, 0));
        rc = runf(b, err, "ALTER TABLE %s VALIDATE CONSTRAINT %s", PQgetvalue(res, i, 0),
                  PQgetvalue(res, i, 1));
    }
    PQclear(res);
    return rc;
}

/* ---- sequences ---- */

/* Sequences owned by rel's columns (serial), not its identity sequences:
 * SET SCHEMA would take them along, and DROP TABLE would drop them. */
static int owned_read(PGresult **out, sg_bg *b, const char *rel, sg_error *err)
{
    const char *params[] = {rel};
    return sg_pg_query_params(out, b->e->conn,
                              "SELECT d.objid::pg_catalog.regclass::text, a.attname"
                              "  FROM pg_catalog.pg_depend d"
                              "  JOIN pg_catalog.pg_class s ON s.oid = d.objid"
                              "  JOIN pg_catalog.pg_attribute a"
                              "    ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
                              " WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
                              "   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
                              "   AND d.refobjid = $1::pg_catalog.regclass"
                              "   AND d.deptype = 'a' AND s.relkind = 'S'",
                              1, params, err);
}

static int owned_release(sg_bg *b, const PGresult *seqs, sg_error *err)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(seqs); i++)
        rc = runf(b, err, "ALTER SEQUENCE %s OWNED BY NONE", PQgetvalue(seqs, i, 0));
    return rc;
}

/* Hands each sequence to the incoming table's column that the leaving
 * column maps to (map: incoming from leaving). */
static int owned_hand_over(sg_bg *b, const PGresult *seqs, const sg_bg_map *map,
                           const char *incoming, sg_error *err)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(seqs); i++) {
        const char *sequence = PQgetvalue(seqs, i, 0), *column = PQgetvalue(seqs, i, 1);
        const sg_bg_item *to = NULL;
        for (size_t j = 0; j < map->count && !to; j++)
            if (map->items[j].source && strcmp(map->items[j].source->name, column) == 0)
                to = &map->items[j];
        if (!to) {
            sg_log(SG_LOG_WARNING,
                   "%s: sequence %s stays without an owner: its column %s has no counterpart",
                   b->m->file, sequence, column);
            continue;
        }
        char *col = sg_bg_quote(to->target->name);
        rc = col ? runf(b, err, "ALTER SEQUENCE %s OWNED BY %s.%s", sequence, incoming, col)
                 : sg_error_set(err, SG_E_NOMEM, "out of memory");
        free(col);
    }
    return rc;
}

/* Carries identity sequences forward: the incoming table's own sequence
 * never moved (its rows were copied with their values). */
static int identity_carry(sg_bg *b, const sg_bg_map *map, const char *incoming, const char *leaving,
                          sg_error *err)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < map->count; i++) {
        const sg_bg_item *it = &map->items[i];
        if (!it->target->identity || !it->source || !it->source->identity)
            continue;
        const char *params[] = {incoming, it->target->name, leaving, it->source->name};
        rc = sg_pg_exec_params(
            b->e->conn,
            "SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence($1, $2), v)"
            "  FROM (SELECT pg_catalog.pg_sequence_last_value("
            "          pg_catalog.pg_get_serial_sequence($3, $4)::pg_catalog.regclass) AS v) x"
            " WHERE v IS NOT NULL",
            4, params, err);
    }
    return rc;
}

static char *drop_functions_sql(const char *schema, sg_error *err)
{
    char *q = sg_bg_quote(schema);
    char *sql = q ? sg_asprintf("DROP FUNCTION IF EXISTS %s.insert_rows(), %s.update_rows(),"
                                " %s.delete_rows(), %s.truncate_rows()",
                                q, q, q, q)
                  : NULL;
    free(q);
    if (!sql)
        sg_error_set(err, SG_E_NOMEM, "out of memory");
    return sql;
}

/* ---- the application's triggers ---- */

/* The application's own triggers on rel (not the sync's, not a foreign
 * key's): per row the name, the definition and how it is enabled. */
static int user_triggers_read(PGresult **out, sg_bg *b, const char *rel, sg_error *err)
{
    const char *params[] = {rel};
    return sg_pg_query_params(out, b->e->conn,
                              "SELECT pg_catalog.quote_ident(t.tgname),"
                              "       pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled"
                              "  FROM pg_catalog.pg_trigger t"
                              " WHERE t.tgrelid = $1::pg_catalog.regclass AND NOT t.tgisinternal"
                              "   AND t.tgname !~ '^shardgate_'"
                              " ORDER BY t.tgname",
                              1, params, err);
}

/* The leaving table's triggers go with the table's name: made on the
 * incoming table from their definitions (which name the table, now the
 * incoming one) unless it has them already (a swap back finds its own,
 * disabled), set as they were, and disabled on the leaving table, whose
 * rows from now on come from the sync, not from the application. */
static int user_triggers_follow(sg_bg *b, const PGresult *triggers, const char *leaving,
                                sg_error *err)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(triggers); i++) {
        const char *name = PQgetvalue(triggers, i, 0);
        const char *params[] = {b->live, name};
        PGresult *res = NULL;
        if ((rc = sg_pg_query_params(&res, b->e->conn,
                                     "SELECT FROM pg_catalog.pg_trigger"
                                     " WHERE tgrelid = $1::pg_catalog.regclass"
                                     "   AND pg_catalog.quote_ident(tgname) = $2",
                                     2, params, err)) < 0)
            break;
        bool exists = PQntuples(res) > 0;
        PQclear(res);
        if (!exists && (rc = sg_bg_run(b, PQgetvalue(triggers, i, 1), err)) < 0)
            break;
        const char *state = PQgetvalue(triggers, i, 2);
        rc =
            runf(b, err, "ALTER TABLE %s %s TRIGGER %s; ALTER TABLE %s DISABLE TRIGGER %s", b->live,
                 *state == 'D'   ? "DISABLE"
                 : *state == 'R' ? "ENABLE REPLICA"
                 : *state == 'A' ? "ENABLE ALWAYS"
                                 : "ENABLE",
                 name, leaving, name);
    }
    return rc;
}

/* The monotonic clock in ms with its fraction: a cut-over's lock lasts a
 * few ms, which whole ms would report coarsely. */
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* ---- one swap ---- */

/* Moves `leaving` (the live table) to out_schema and `incoming` to the
 * table's schema, in the caller's transaction, with the live table locked.
 * map gives the incoming table's columns from the leaving one's. */
typedef struct swap {
    sg_bg *b;
    const char *leaving_triggers; /* direction of the triggers on the live table */
    const char *incoming;         /* where the incoming table is */
    const char *out_schema;       /* where the leaving one goes */
    const char *dropped_schema;   /* emptied by the swap: its functions go, then it */
    const sg_bg_map *map;         /* incoming from leaving */
    const sg_bg_map *sync;        /* leaving (its new place) from incoming, for new triggers */
    const char *sync_direction;   /* NULL: no triggers after the swap */
    const char *sync_target;      /* where the leaving table ends up */
    sg_bluegreen_step step;
    const char *event;
    double locked_at; /* ms, on the monotonic clock */
    json_t *fk_names;
} swap;

/* The names of the foreign keys to validate after the swap, committed with
 * it, so that a run killed before the validation still finds them. */
static int keep_fk_names(sg_bg *b, json_t *names, sg_error *err)
{
    char version[24];
    char *text = json_dumps(names, JSON_COMPACT);
    snprintf(version, sizeof(version), "%" PRId64, b->m->version);
    const char *params[] = {text, version};
    int rc = text ? sg_pg_exec_params(b->e->conn,
                                      "UPDATE shardgate.bluegreen SET foreign_keys ="
                                      " ARRAY(SELECT jsonb_array_elements_text($1::jsonb))"
                                      " WHERE version = $2",
                                      2, params, err)
                  : sg_error_set(err, SG_E_NOMEM, "out of memory");
    free(text);
    return rc;
}

static int swap_in_transaction(sg_apply_engine *e, void *ctx, sg_error *err)
{
    swap *s = ctx;
    sg_bg *b = s->b;
    PGresult *fks = NULL, *seqs = NULL, *triggers = NULL, *deferred = NULL;
    char *qout = sg_bg_quote(s->out_schema);
    int rc;
    (void)e;
    if (!qout)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    if ((rc = runf(b, err, "LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", b->live)) < 0)
        goto done;
    s->locked_at = now_ms();
    if ((s->step == SG_BLUEGREEN_CUT_OVER && (rc = sg_bg_check_obstacles(b, err)) < 0) ||
        (rc = sg_bg_check_sync_errors(b, s->leaving_triggers, err)) < 0 ||
        (rc = inbound_read(&fks, b, b->live, err)) < 0 || (rc = inbound_drop(b, fks, err)) < 0 ||
        (rc = sg_bg_run_taken(b, sg_bg_drop_triggers_sql(b, b->live, s->leaving_triggers, err),
                              err)) < 0 ||
        (rc = owned_read(&seqs, b, b->live, err)) < 0 || (rc = owned_release(b, seqs, err)) < 0 ||
        (rc = user_triggers_read(&triggers, b, b->live, err)) < 0 ||
        (rc = deferred_read(&deferred, b, err)) < 0)
        goto done;
    char *qschema = sg_bg_quote(b->schema);
    if (!qschema) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    rc = runf(b, err,
              "CREATE SCHEMA IF NOT EXISTS %s; ALTER TABLE %s SET SCHEMA %s;"
              " ALTER TABLE %s SET SCHEMA %s",
              qout, b->live, qout, s->incoming, qschema);
    free(qschema);
    /* the names now: b->live is the incoming table, the leaving one is in out_schema */
    if (rc < 0 || (rc = owned_hand_over(b, seqs, s->map, b->live, err)) < 0 ||
        (rc = identity_carry(b, s->map, b->live, s->sync_target, err)) < 0 ||
        (rc = user_triggers_follow(b, triggers, s->sync_target, err)) < 0 ||
        (rc = sg_bg_run_taken(b, drop_functions_sql(s->dropped_schema, err), err)) < 0)
        goto done;
    char *qdropped = sg_bg_quote(s->dropped_schema);
    rc = qdropped ? runf(b, err, "DROP SCHEMA IF EXISTS %s", qdropped)
                  : sg_error_set(err, SG_E_NOMEM, "out of memory");
    free(qdropped);
    if (rc < 0)
        goto done;
    if (s->sync_direction &&
        (rc = sg_bg_run_taken(b,
                              sg_bg_triggers_sql(b, s->sync, b->live, s->sync_target, s->out_schema,
                                                 s->sync_direction, err),
                              err)) < 0)
        goto done;
    json_decref(s->fk_names);
    if (!(s->fk_names = json_array())) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < PQntuples(fks); i++)
        if (validated(fks, i))
            json_array_append_new(s->fk_names, json_string(PQgetvalue(fks, i, 1)));
    if ((rc = inbound_add(b, fks, err)) < 0 ||
        (rc = deferred_add(b, deferred, s->fk_names, err)) < 0 ||
        (rc = sg_bg_state_set(b, s->step, err)) < 0 ||
        (rc = keep_fk_names(b, s->fk_names, err)) < 0)
        goto done;
done:
    PQclear(fks);
    PQclear(seqs);
    PQclear(triggers);
    PQclear(deferred);
    free(qout);
    return rc;
}

static int do_swap(sg_bg *b, swap *s, sg_error *err)
{
    int rc = sg_apply_transaction(b->e, b->m, SWAP_LOCK_TIMEOUT_MS, swap_in_transaction, s, err);
    if (rc < 0) {
        json_decref(s->fk_names);
        if (rc != SG_E_NOMEM && rc != SG_E_INTERRUPTED && !strstr(err->message, b->m->file))
            sg_error_prefix(err, "%s: %s", b->m->file, s->event);
        return rc;
    }
    double lock_ms = now_ms() - s->locked_at;
    b->step->lock_ms = lock_ms;
    char version[24], ms[32];
    snprintf(version, sizeof(version), "%" PRId64, b->m->version);
    snprintf(ms, sizeof(ms), "%.2f", lock_ms);
    const char *params[] = {ms, version};
    sg_error ignored = {0};
    sg_pg_exec_params(b->e->conn, "UPDATE shardgate.bluegreen SET lock_ms = $1 WHERE version = $2",
                      2, params, &ignored);
    sg_log(SG_LOG_INFO, "%s: %s %s; the lock was held %.1f ms", b->m->file, s->event,
           b->m->bluegreen_table, lock_ms);
    sg_apply_event(b->e, b->m, s->event,
                   json_pack("{s:f, s:o}", "lock_ms", lock_ms, "foreign_keys",
                             s->fk_names ? s->fk_names : json_array()));
    sg_bg_step_done(b, s->step, lock_ms);
    return sg_bg_validate_foreign_keys(b, err);
}

int sg_bg_cut_over(sg_bg *b, sg_error *err)
{
    swap s = {.b = b,
              .leaving_triggers = "forward",
              .incoming = b->shadow,
              .out_schema = b->old_schema,
              .dropped_schema = b->new_schema,
              .map = &b->forward,
              .sync = &b->back,
              .sync_direction = "back",
              .sync_target = b->kept,
              .step = SG_BLUEGREEN_CUT_OVER,
              .event = "cut-over"};
    return do_swap(b, &s, err);
}

int sg_bg_swap_back(sg_bg *b, sg_error *err)
{
    swap s = {.b = b,
              .leaving_triggers = "back",
              .incoming = b->kept,
              .out_schema = b->new_schema,
              .dropped_schema = b->old_schema,
              .map = &b->back,
              .sync_target = b->shadow,
              .step = SG_BLUEGREEN_SWAPPED_BACK,
              .event = "swap-back"};
    int rc = do_swap(b, &s, err);
    if (rc == 0)
        rc = sg_bg_abandon(b, err);
    return rc;
}

/* ---- finalize and abandon ---- */

static int finalize_in_transaction(sg_apply_engine *e, void *ctx, sg_error *err)
{
    sg_bg *b = ctx;
    char *q = sg_bg_quote(b->old_schema);
    int rc;
    (void)e;
    if (!q)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    /* IF EXISTS, for a run that stopped half way: no notices about it */
    if ((rc = sg_bg_run(b, "SET LOCAL client_min_messages = warning", err)) == 0 &&
        (rc = sg_bg_run_taken(b, sg_bg_drop_triggers_sql(b, b->live, "back", err), err)) == 0 &&
        (rc = runf(b, err, "DROP TABLE IF EXISTS %s", b->kept)) == 0 &&
        (rc = sg_bg_run_taken(b, drop_functions_sql(b->old_schema, err), err)) == 0 &&
        (rc = runf(b, err, "DROP SCHEMA IF EXISTS %s", q)) == 0)
        rc = sg_bg_state_set(b, SG_BLUEGREEN_FINALIZED, err);
    free(q);
    return rc;
}

int sg_bg_finalize(sg_bg *b, sg_error *err)
{
    int rc = sg_apply_transaction(b->e, b->m, 0, finalize_in_transaction, b, err);
    if (rc == 0) {
        sg_log(SG_LOG_INFO, "%s: finalized: the old %s is dropped", b->m->file,
               b->m->bluegreen_table);
        sg_apply_event(b->e, b->m, "finalize", NULL);
        sg_bg_step_done(b, SG_BLUEGREEN_FINALIZED, -1);
    }
    return rc;
}

/* Green goes with its schema: the table, its sequences and the sync
 * functions are all in it, and the triggers on the live table with their
 * functions. */
static int abandon_in_transaction(sg_apply_engine *e, void *ctx, sg_error *err)
{
    sg_bg *b = ctx;
    char *q = sg_bg_quote(b->new_schema);
    int rc;
    (void)e;
    if (!q)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    if ((rc = sg_bg_run(b, "SET LOCAL client_min_messages = warning", err)) == 0 &&
        (rc = sg_bg_run_taken(b, sg_bg_drop_triggers_sql(b, b->live, "forward", err), err)) == 0 &&
        (rc = runf(b, err, "DROP SCHEMA IF EXISTS %s CASCADE", q)) == 0)
        rc = sg_bg_state_delete(b, err);
    free(q);
    return rc;
}

int sg_bg_abandon(sg_bg *b, sg_error *err)
{
    return sg_apply_transaction(b->e, b->m, 0, abandon_in_transaction, b, err);
}
