/* shardgate.bluegreen: where each blue-green change stands, and the small
 * text helpers the engine builds its SQL with. */
#include "stages/bluegreen_impl.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"

void sg_bluegreen_options_init(sg_bluegreen_options *opts)
{
    *opts = (sg_bluegreen_options){
        .chunk_rows = 5000,
        /* a chunk holds FOR SHARE locks on its rows while it runs: writers to
         * those rows wait for it, so it is kept short */
        .chunk_time_ms = 50,
        .max_lag_ms = 1000,
        .keep_old_ms = 24 * 3600 * 1000,
    };
}

static const char *const step_names[] = {
    [SG_BLUEGREEN_NONE] = "none",           [SG_BLUEGREEN_PREPARED] = "prepared",
    [SG_BLUEGREEN_SYNCED] = "synced",       [SG_BLUEGREEN_BACKFILLED] = "backfilled",
    [SG_BLUEGREEN_INDEXED] = "indexed",     [SG_BLUEGREEN_VERIFIED] = "verified",
    [SG_BLUEGREEN_CUT_OVER] = "cut-over",   [SG_BLUEGREEN_SWAPPED_BACK] = "swapped-back",
    [SG_BLUEGREEN_FINALIZED] = "finalized",
};

const char *sg_bluegreen_step_name(sg_bluegreen_step step)
{
    return (size_t)step < sizeof(step_names) / sizeof(*step_names) ? step_names[step] : "?";
}

static sg_bluegreen_step step_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(step_names) / sizeof(*step_names); i++)
        if (strcmp(step_names[i], name) == 0)
            return (sg_bluegreen_step)i;
    return SG_BLUEGREEN_NONE;
}

bool sg_bluegreen_window_open(const sg_bluegreen_state *state)
{
    return state->step == SG_BLUEGREEN_CUT_OVER;
}

/* ---- text ---- */

void sg_bg_add(sg_bg_text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n =
            vsnprintf(t->data ? t->data + t->len : NULL, t->data ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->data && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap : 256;
        while (cap <= t->len + (size_t)n)
            cap *= 2;
        char *grown = sg_realloc(t->data, cap);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->data = grown;
        t->cap = cap;
    }
}

char *sg_bg_text_take(sg_bg_text *t, sg_error *err)
{
    if (t->failed || !t->data) {
        sg_bg_text_free(t);
        sg_error_set(err, SG_E_NOMEM, "out of memory");
        return NULL;
    }
    char *s = t->data;
    *t = (sg_bg_text){0};
    return s;
}

void sg_bg_text_free(sg_bg_text *t)
{
    free(t->data);
    *t = (sg_bg_text){0};
}

char *sg_bg_quote(const char *name)
{
    size_t n = 2;
    for (const char *p = name; *p; p++)
        n += *p == '"' ? 2 : 1;
    char *q = sg_malloc(n + 1), *o = q;
    if (!q)
        return NULL;
    *o++ = '"';
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            *o++ = '"';
        *o++ = *p;
    }
    *o++ = '"';
    *o = '\0';
    return q;
}

void sg_bg_step_done(sg_bg *b, sg_bluegreen_step step, double lock_ms)
{
    const sg_apply_options *o = b->e->opts;
    if (o->on_bluegreen_step)
        o->on_bluegreen_step(o->on_bluegreen_ctx, b->m, step, lock_ms);
    sg_bg_fault(sg_bluegreen_step_name(step));
}

char *sg_bg_qualify(const char *schema, const char *name)
{
    char *qs = sg_bg_quote(schema), *qn = sg_bg_quote(name);
    char *q = qs && qn ? sg_asprintf("%s.%s", qs, qn) : NULL;
    free(qs);
    free(qn);
    return q;
}

int sg_bg_run(sg_bg *b, const char *sql, sg_error *err)
{
    return sg_exec_run(NULL, b->e->conn, sql, &b->e->watch, err);
}

int sg_bg_run_taken(sg_bg *b, char *sql, sg_error *err)
{
    int rc = sql ? sg_bg_run(b, sql, err) : err->code;
    free(sql);
    return rc;
}

void sg_bg_fault(const char *step)
{
    const char *fault = getenv("SHARDGATE_FAULT");
    if (fault && strncmp(fault, "bluegreen-", 10) == 0 && strcmp(fault + 10, step) == 0) {
        sg_log(SG_LOG_WARNING, "SHARDGATE_FAULT: stopping dead after %s", step);
        raise(SIGKILL);
    }
}

/* ---- states ---- */

#define STATE_COLUMNS                                                                              \
    "version, direction = 'down', table_schema, table_name, step, last_key, rows_copied,"          \
    " coalesce(lock_ms, -1), coalesce(keep_until < now(), false),"                                 \
    " to_char(keep_until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

void sg_bluegreen_state_clear(sg_bluegreen_state *state)
{
    free(state->schema);
    free(state->table);
    for (size_t i = 0; i < state->last_key_count; i++)
        free(state->last_key[i]);
    free(state->last_key);
    free(state->keep_until);
    memset(state, 0, sizeof(*state));
}

/* Parses a text[] literal as PostgreSQL prints it: {a,"b c","d\"e"}. NULL
 * elements do not occur in a key. */
static int parse_text_array(char ***out, size_t *count, const char *s, sg_error *err)
{
    char **items = NULL;
    size_t n = 0;
    int rc = 0;
    if (*s++ != '{')
        return sg_error_set(err, SG_E_FORMAT, "shardgate.bluegreen.last_key is not an array");
    while (*s && *s != '}') {
        sg_bg_text t = {0};
        if (*s == '"') {
            for (s++; *s && *s != '"'; s++) {
                if (*s == '\\' && s[1])
                    s++;
                sg_bg_add(&t, "%c", *s);
            }
            if (*s == '"')
                s++;
        } else {
            for (; *s && *s != ',' && *s != '}'; s++)
                sg_bg_add(&t, "%c", *s);
        }
        if (!t.data)
            sg_bg_add(&t, "%s", "");
        char **grown = sg_array_grow(items, n, sizeof(*items));
        char *item = sg_bg_text_take(&t, err);
        if (!grown || !item) {
            free(item);
            if (grown)
                items = grown;
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            goto done;
        }
        items = grown;
        items[n++] = item;
        if (*s == ',')
            s++;
    }
done:
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            free(items[i]);
        free(items);
        return rc;
    }
    *out = items;
    *count = n;
    return 0;
}

static int state_from_row(sg_bluegreen_state *st, PGresult *res, int row, sg_error *err)
{
    memset(st, 0, sizeof(*st));
    st->version = strtoll(PQgetvalue(res, row, 0), NULL, 10);
    st->down = strcmp(PQgetvalue(res, row, 1), "t") == 0;
    st->schema = sg_strdup(PQgetvalue(res, row, 2));
    st->table = sg_strdup(PQgetvalue(res, row, 3));
    st->step = step_parse(PQgetvalue(res, row, 4));
    st->rows_copied = strtoll(PQgetvalue(res, row, 6), NULL, 10);
    st->lock_ms = strtod(PQgetvalue(res, row, 7), NULL);
    st->window_closed = strcmp(PQgetvalue(res, row, 8), "t") == 0;
    st->keep_until = PQgetisnull(res, row, 9) ? NULL : sg_strdup(PQgetvalue(res, row, 9));
    if (!st->schema || !st->table || (!PQgetisnull(res, row, 9) && !st->keep_until))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    if (!PQgetisnull(res, row, 5))
        return parse_text_array(&st->last_key, &st->last_key_count, PQgetvalue(res, row, 5), err);
    return 0;
}

int sg_bluegreen_states_read(sg_bluegreen_states *out, PGconn *conn, sg_error *err)
{
    PGresult *res = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = sg_pg_query(&res, conn,
                          "SELECT pg_catalog.to_regclass('shardgate.bluegreen') IS NOT NULL",
                          err)) < 0)
        return rc;
    bool exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    res = NULL;
    if (!exists)
        return 0;
    if ((rc = sg_pg_query(&res, conn,
                          "SELECT " STATE_COLUMNS " FROM shardgate.bluegreen ORDER BY version",
                          err)) < 0)
        return rc;
    int n = PQntuples(res);
    if (n > 0 && !(out->items = sg_calloc((size_t)n, sizeof(*out->items)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        out->count++;
        if ((rc = state_from_row(&out->items[i], res, i, err)) < 0)
            goto done;
    }
done:
    PQclear(res);
    if (rc < 0)
        sg_bluegreen_states_clear(out);
    return rc;
}

const sg_bluegreen_state *sg_bluegreen_states_find(const sg_bluegreen_states *states,
                                                   int64_t version)
{
    for (size_t i = 0; states && i < states->count; i++)
        if (states->items[i].version == version)
            return &states->items[i];
    return NULL;
}

void sg_bluegreen_states_clear(sg_bluegreen_states *states)
{
    for (size_t i = 0; i < states->count; i++)
        sg_bluegreen_state_clear(&states->items[i]);
    free(states->items);
    memset(states, 0, sizeof(*states));
}

int sg_bg_state_load(sg_bg *b, sg_error *err)
{
    PGresult *res = NULL;
    char version[24];
    snprintf(version, sizeof(version), "%" PRId64, b->m->version);
    const char *params[] = {version};
    sg_bluegreen_state_clear(&b->state);
    b->state.lock_ms = -1;
    int rc = sg_pg_query_params(
        &res, b->e->conn, "SELECT " STATE_COLUMNS " FROM shardgate.bluegreen WHERE version = $1", 1,
        params, err);
    if (rc == 0 && PQntuples(res) == 1)
        rc = state_from_row(&b->state, res, 0, err);
    PQclear(res);
    return rc;
}

int sg_bg_state_set(sg_bg *b, sg_bluegreen_step step, sg_error *err)
{
    char version[24], keep[32];
    snprintf(version, sizeof(version), "%" PRId64, b->m->version);
    snprintf(keep, sizeof(keep), "%" PRIu64, b->e->opts->bluegreen.keep_old_ms);
    const char *params[] = {version,  b->down ? "down" : "up",      b->schema,
                            b->table, sg_bluegreen_step_name(step), keep};
    /* the cut-over starts the rollback window; a new prepare starts afresh */
    int rc = sg_pg_exec_params(
        b->e->conn,
        "INSERT INTO shardgate.bluegreen AS s (version, direction, table_schema, table_name, step)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (version) DO UPDATE SET step = EXCLUDED.step, updated_at = now(),"
        "   direction = CASE WHEN EXCLUDED.step = 'prepared' THEN EXCLUDED.direction"
        "                    ELSE s.direction END,"
        "   last_key = CASE WHEN EXCLUDED.step = 'prepared' THEN NULL ELSE s.last_key END,"
        "   index_definitions = CASE WHEN EXCLUDED.step = 'prepared' THEN NULL"
        "                            ELSE s.index_definitions END,"
        "   rows_copied = CASE WHEN EXCLUDED.step = 'prepared' THEN 0 ELSE s.rows_copied END,"
        "   cutover_at = CASE WHEN EXCLUDED.step = 'cut-over' THEN now() ELSE s.cutover_at END,"
        "   keep_until = CASE WHEN EXCLUDED.step = 'cut-over'"
        "     THEN now() + $6::bigint * interval '1 ms' ELSE s.keep_until END,"
        "   finalized_at = CASE WHEN EXCLUDED.step = 'finalized' THEN now()"
        "                       ELSE s.finalized_at END",
        6, params, err);
    if (rc == 0)
        b->state.step = step;
    if (rc == 0 && step == SG_BLUEGREEN_PREPARED) {
        for (size_t i = 0; i < b->state.last_key_count; i++)
            free(b->state.last_key[i]);
        free(b->state.last_key);
        b->state.last_key = NULL;
        b->state.last_key_count = 0;
        b->state.rows_copied = 0;
    }
    return rc;
}

int sg_bg_state_delete(sg_bg *b, sg_error *err)
{
    char version[24];
    snprintf(version, sizeof(version), "%" PRId64, b->m->version);
    const char *params[] = {version};
    int rc = sg_pg_exec_params(b->e->conn, "DELETE FROM shardgate.bluegreen WHERE version = $1", 1,
                               params, err);
    if (rc == 0)
        rc = sg_pg_exec_params(b->e->conn,
                               "DELETE FROM shardgate.bluegreen_errors WHERE version = $1", 1,
                               params, err);
    if (rc == 0)
        b->state.step = SG_BLUEGREEN_NONE;
    return rc;
}
