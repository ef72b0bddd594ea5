/* Copying blue's rows into green, and comparing the two.
 *
 * The copy walks blue in key order, one chunk per transaction. Each chunk
 * reads its rows FOR SHARE: a delete or key change racing with the copy
 * waits until the chunk commits, and its trigger then removes the row from
 * green, so green never keeps a row that blue no longer has. Rows that
 * writers insert meanwhile reach green through the triggers; a conflict
 * with one (the trigger was first) keeps the trigger's row, which is the
 * newer. The last key is recorded with each chunk, so a killed copy goes on
 * from there. */
#include "stages/bluegreen_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/digest.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "common/retry.h"

/* A chunk waits this long at most for a row lock; less than the server's
 * default deadlock_timeout (1 s), so that in a lock cycle with a writer the
 * copy gives way rather than the writer being cancelled as the deadlock's
 * victim. */
#define CHUNK_LOCK_TIMEOUT_MS 500
#define MIN_CHUNK_ROWS 100
#define PROGRESS_EVERY_MS 2000
/* consecutive chunks that time out on a lock before the copy gives up */
#define MAX_CHUNK_FAILURES 50
/* key columns a copy can page by: PostgreSQL's indexes take at most 32 */
#define SG_BG_MAX_KEY 32

/* The statements of the copy, over blue's key columns k:
 *   end        the highest key when the copy starts: rows above it were
 *              written since the triggers exist, so green has them already
 *              (without the bound, a table that grows at its end would keep
 *              the copy chasing it);
 *   bound      the key `rows` rows after the last one copied, at most end;
 *   copy       copies the rows in (last, upper], FOR SHARE.
 * The chunk is a range of keys fixed before the rows are read: a row whose
 * key a writer changes while the chunk waits for it is re-checked against
 * the range, so a key moved far ahead cannot stretch the chunk over rows it
 * never read. [1] of bound and copy are for chunks after the first. */
typedef struct copy_sql {
    char *end, *bound[2], *copy[2];
} copy_sql;

static void copy_sql_clear(copy_sql *q)
{
    free(q->end);
    for (int i = 0; i < 2; i++) {
        free(q->bound[i]);
        free(q->copy[i]);
    }
}

/* "b.k1, b.k2", "b.k1::text, ...", or "$i::t1, $i+1::t2" */
static void key_list(sg_bg_text *t, const sg_bg *b, const char *suffix, size_t param)
{
    for (size_t k = 0; k < b->blue.nkey; k++) {
        char *q = sg_bg_quote(b->blue.key[k]);
        if (!q)
            t->failed = true;
        else if (param)
            sg_bg_add(t, "%s$%zu::%s", k ? ", " : "", param + k,
                      sg_bg_rel_column(&b->blue, b->blue.key[k])->type);
        else
            sg_bg_add(t, "%sb.%s%s", k ? ", " : "", q, suffix);
        free(q);
    }
}

/* WHERE [(k) > (last) AND] (k) <= (upper): last in $1.., upper after it */
static void key_range(sg_bg_text *t, const sg_bg *b, bool after)
{
    size_t n = b->blue.nkey;
    sg_bg_add(t, " WHERE ");
    if (after) {
        sg_bg_add(t, "(");
        key_list(t, b, "", 0);
        sg_bg_add(t, ") > (");
        key_list(t, b, "", 1);
        sg_bg_add(t, ") AND ");
    }
    sg_bg_add(t, "(");
    key_list(t, b, "", 0);
    sg_bg_add(t, ") <= (");
    key_list(t, b, "", after ? n + 1 : 1);
    sg_bg_add(t, ")");
}

static int copy_sql_build(copy_sql *q, const sg_bg *b, sg_error *err)
{
    char *upsert = sg_bg_upsert_sql(&b->forward, b->shadow, "chunk", false, err);
    sg_bg_text t = {0};
    if (!upsert)
        return err->code;
    memset(q, 0, sizeof(*q));
    sg_bg_add(&t, "SELECT ");
    key_list(&t, b, "::text", 0);
    sg_bg_add(&t, " FROM ONLY %s AS b ORDER BY ", b->live);
    key_list(&t, b, " DESC", 0);
    sg_bg_add(&t, " LIMIT 1");
    q->end = sg_bg_text_take(&t, err);
    for (int after = 0; q->end && after < 2; after++) {
        size_t offset_param = (after ? 2 : 1) * b->blue.nkey + 1;
        sg_bg_add(&t, "SELECT ");
        key_list(&t, b, "::text", 0);
        sg_bg_add(&t, " FROM ONLY %s AS b", b->live);
        key_range(&t, b, after);
        sg_bg_add(&t, " ORDER BY ");
        key_list(&t, b, "", 0);
        sg_bg_add(&t, " OFFSET $%zu LIMIT 1", offset_param);
        if (!(q->bound[after] = sg_bg_text_take(&t, err)))
            break;
        sg_bg_add(&t, "WITH chunk AS (SELECT * FROM ONLY %s AS b", b->live);
        key_range(&t, b, after);
        sg_bg_add(&t, " FOR SHARE), copied AS (%s) SELECT count(*) FROM chunk", upsert);
        if (!(q->copy[after] = sg_bg_text_take(&t, err)))
            break;
    }
    free(upsert);
    if (!q->copy[1]) {
        copy_sql_clear(q);
        return err->code ? err->code : sg_error_set(err, SG_E_NOMEM, "out of memory");
    }
    return 0;
}

/* {"a","b"} for text[], every element quoted. */
static char *array_literal(char **items, size_t n)
{
    sg_bg_text t = {0};
    sg_bg_add(&t, "{");
    for (size_t i = 0; i < n; i++) {
        sg_bg_add(&t, "%s\"", i ? "," : "");
        for (const char *p = items[i]; *p; p++)
            sg_bg_add(&t, "%s%c", *p == '"' || *p == '\\' ? "\\" : "", *p);
        sg_bg_add(&t, "\"");
    }
    sg_bg_add(&t, "}");
    return t.failed ? (sg_bg_text_free(&t), NULL) : t.data;
}

/* How far the slowest standby is behind in replay, in ms (0 without any). */
static int replication_lag(int64_t *lag_ms, char name[128], PGconn *conn, sg_error *err)
{
    PGresult *res = NULL;
    int rc = sg_pg_query(
        &res, conn,
        "SELECT coalesce(extract(epoch FROM replay_lag) * 1000, 0)::bigint, application_name"
        "  FROM pg_catalog.pg_stat_replication ORDER BY replay_lag DESC NULLS LAST LIMIT 1",
        err);
    *lag_ms = 0;
    if (rc == 0 && PQntuples(res) == 1) {
        *lag_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        snprintf(name, 128, "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return rc;
}

/* Waits while a standby lags more than --max-lag: the copy writes WAL as
 * fast as the server can, which a standby may not replay as fast. */
static int throttle(sg_bg *b, sg_error *err)
{
    uint64_t max = b->e->opts->bluegreen.max_lag_ms;
    bool paused = false;
    int rc;
    for (;;) {
        int64_t lag = 0;
        char standby[128] = "";
        if ((rc = sg_interrupt_check(err)) < 0 ||
            (rc = replication_lag(&lag, standby, b->e->conn, err)) < 0)
            return rc;
        if (max == 0 || lag <= (int64_t)max) {
            if (paused)
                sg_log(SG_LOG_INFO, "%s: replication lag %" PRId64 " ms; copying again", b->m->file,
                       lag);
            return 0;
        }
        if (!paused)
            sg_log(SG_LOG_INFO,
                   "%s: standby %s replays %" PRId64 " ms behind (--max-lag %" PRIu64
                   " ms): copy paused",
                   b->m->file, standby, lag, max);
        paused = true;
        sg_interrupt_sleep_ms(200);
    }
}

static int64_t estimated_rows(sg_bg *b)
{
    PGresult *res = NULL;
    sg_error ignored = {0};
    const char *params[] = {b->live};
    int64_t n = -1;
    if (sg_pg_query_params(&res, b->e->conn,
                           "SELECT c.reltuples::bigint FROM pg_catalog.pg_class c"
                           " WHERE c.oid = $1::pg_catalog.regclass",
                           1, params, &ignored) == 0 &&
        PQntuples(res) == 1)
        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return n;
}

typedef struct copy_progress {
    uint64_t started, last_line;
    int64_t rows_at_start, total;
} copy_progress;

/* Logs where the copy is, every few seconds; true when it did. */
static bool progress_line(const sg_bg *b, copy_progress *p, bool last)
{
    uint64_t now = sg_monotonic_ms();
    if (!last && now - p->last_line < PROGRESS_EVERY_MS)
        return false;
    p->last_line = now;
    double secs = (double)(now - p->started) / 1000.0;
    int64_t copied = b->state.rows_copied;
    double rate = secs > 0 ? (double)(copied - p->rows_at_start) / secs : 0;
    if (last) {
        sg_log(SG_LOG_INFO, "%s: copied %" PRId64 " rows of %s in %.1f s (%.0f rows/s)", b->m->file,
               copied, b->m->bluegreen_table, secs, rate);
    } else if (p->total > copied && rate > 0) {
        sg_log(SG_LOG_INFO,
               "%s: copied %" PRId64 " of about %" PRId64
               " rows (%d%%), %.0f rows/s, about %.0f s left",
               b->m->file, copied, p->total, (int)(100 * copied / p->total), rate,
               (double)(p->total - copied) / rate);
    } else {
        sg_log(SG_LOG_INFO, "%s: copied %" PRId64 " rows, %.0f rows/s", b->m->file, copied, rate);
    }
    return true;
}

static int keys_dup_strings(char ***out, char *const *src, size_t n)
{
    char **keys = sg_calloc(n ? n : 1, sizeof(*keys));
    bool ok = keys != NULL;
    for (size_t k = 0; ok && k < n; k++)
        ok = (keys[k] = sg_strdup(src[k])) != NULL;
    if (!ok) {
        for (size_t k = 0; keys && k < n; k++)
            free(keys[k]);
        free(keys);
        return -1;
    }
    *out = keys;
    return 0;
}

static void keys_free(char **keys, size_t n)
{
    for (size_t k = 0; keys && k < n; k++)
        free(keys[k]);
    free(keys);
}

/* The first row of res, n key values, as strings the caller owns. */
static int keys_dup(char ***out, PGresult *res, size_t n)
{
    char *values[SG_BG_MAX_KEY];
    for (size_t k = 0; k < n && k < SG_BG_MAX_KEY; k++)
        values[k] = PQgetvalue(res, 0, (int)k);
    return keys_dup_strings(out, values, n);
}

/* Copies the next chunk, up to `end`, and records its progress, in one
 * transaction. *rows gets how many rows it copied; *finished is set when
 * the chunk reached the end. */
static int copy_chunk(sg_bg *b, const copy_sql *q, char **end, uint64_t limit, int64_t *rows,
                      bool *finished, sg_error *err)
{
    PGconn *conn = b->e->conn;
    PGresult *res = NULL;
    size_t n = b->blue.nkey;
    bool after = b->state.last_key != NULL;
    const char *params[2 * SG_BG_MAX_KEY + 1];
    char offset[24], version[24], count_text[24], lock_sql[64];
    char **upper = NULL, *key_literal = NULL;
    size_t p = 0;
    int rc;
    *rows = 0;
    for (size_t k = 0; after && k < n; k++)
        params[p++] = b->state.last_key[k];
    for (size_t k = 0; k < n; k++)
        params[p++] = end[k];
    snprintf(offset, sizeof(offset), "%" PRIu64, limit - 1);
    params[p] = offset;
    snprintf(lock_sql, sizeof(lock_sql), "SET LOCAL lock_timeout = %d", CHUNK_LOCK_TIMEOUT_MS);
    if ((rc = sg_pg_exec(conn, "BEGIN", err)) < 0)
        return rc;
    if ((rc = sg_pg_exec(conn, lock_sql, err)) < 0 ||
        (rc = sg_pg_query_params(&res, conn, q->bound[after], (int)p + 1, params, err)) < 0)
        goto done;
    /* no row `limit` rows on: this chunk runs to the end */
    *finished = PQntuples(res) == 0;
    if (!*finished && keys_dup(&upper, res, n) < 0) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < n; k++)
        params[(after ? n : 0) + k] = upper ? upper[k] : end[k];
    PQclear(res);
    if ((rc = sg_pg_query_params(&res, conn, q->copy[after], (int)(after ? 2 * n : n), params,
                                 err)) < 0)
        goto done;
    *rows = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    if (!(key_literal = array_literal(upper ? upper : end, n))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    snprintf(version, sizeof(version), "%" PRId64, b->m->version);
    snprintf(count_text, sizeof(count_text), "%" PRId64, *rows);
    const char *progress[] = {key_literal, count_text, version};
    rc = sg_pg_exec_params(conn,
                           "UPDATE shardgate.bluegreen SET last_key = $1::text[],"
                           " rows_copied = rows_copied + $2::bigint, updated_at = now()"
                           " WHERE version = $3",
                           3, progress, err);
done:
    PQclear(res);
    free(key_literal);
    if (rc == 0 && (rc = sg_pg_exec(conn, "COMMIT", err)) == 0) {
        b->state.rows_copied += *rows;
        /* the chunk's upper key is the next one's lower: the state owns it */
        if (!upper && keys_dup_strings(&upper, end, n) < 0)
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        if (rc == 0) {
            keys_free(b->state.last_key, b->state.last_key_count);
            b->state.last_key = upper;
            b->state.last_key_count = n;
            upper = NULL;
        }
    } else if (rc < 0 && PQstatus(conn) == CONNECTION_OK) {
        PGresult *r = PQexec(conn, "ROLLBACK");
        PQclear(r);
    }
    keys_free(upper, n);
    return rc;
}

/* A chunk failed on a row the new shape refuses (a constraint, a cast):
 * the migration does not fit the data. The sync triggers may have met the
 * same row first, and say more; either way it is a mismatch, not a fault
 * of the database. */
static int refused_row(sg_bg *b, sg_error *err)
{
    sg_error first = {0};
    if (sg_bg_check_sync_errors(b, "forward", &first) == SG_E_MISMATCH) {
        *err = first;
        return SG_E_MISMATCH;
    }
    if (strncmp(err->sqlstate, "22", 2) != 0 && strncmp(err->sqlstate, "23", 2) != 0)
        return err->code;
    sg_error_prefix(err, "%s: a row of %s does not fit the new shape", b->m->file,
                    b->m->bluegreen_table);
    err->code = SG_E_MISMATCH;
    sg_error_hint(err, "fix the migration (or the row), then shardgate revert abandons this "
                       "attempt");
    return SG_E_MISMATCH;
}

/* The next chunk's size: toward the target time per chunk, at most doubling
 * at a time. */
static uint64_t adapt(uint64_t rows, uint64_t elapsed_ms, uint64_t target_ms, uint64_t max_rows)
{
    if (target_ms == 0)
        return rows;
    if (elapsed_ms < target_ms / 2)
        rows *= 2;
    else if (elapsed_ms > target_ms)
        rows = rows * target_ms / elapsed_ms;
    if (rows < MIN_CHUNK_ROWS)
        rows = MIN_CHUNK_ROWS;
    return rows > max_rows ? max_rows : rows;
}

/* The highest key now (NULL: the table is empty). */
static int end_key(char ***out, sg_bg *b, const copy_sql *q, sg_error *err)
{
    PGresult *res = NULL;
    int rc = sg_pg_query(&res, b->e->conn, q->end, err);
    *out = NULL;
    if (rc == 0 && PQntuples(res) == 1 && keys_dup(out, res, b->blue.nkey) < 0)
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
    PQclear(res);
    return rc;
}

int sg_bg_backfill(sg_bg *b, sg_error *err)
{
    const sg_bluegreen_options *o = &b->e->opts->bluegreen;
    copy_sql q;
    char **end = NULL;
    uint64_t rows = o->chunk_rows ? o->chunk_rows : 5000;
    /* adapting may grow a chunk to this many rows, and no further */
    uint64_t max_rows = rows * 20;
    unsigned failures = 0;
    bool first = true, finished = false;
    int rc;
    copy_progress p = {.started = sg_monotonic_ms(),
                       .rows_at_start = b->state.rows_copied,
                       .total = estimated_rows(b)};
    p.last_line = p.started;
    if (b->blue.nkey > SG_BG_MAX_KEY)
        return sg_error_set(err, SG_E_USAGE, "%s: a key of %zu columns is too wide to copy by",
                            b->m->file, b->blue.nkey);
    if ((rc = copy_sql_build(&q, b, err)) < 0)
        return rc;
    if ((rc = end_key(&end, b, &q, err)) < 0 || !end)
        goto done;
    if (b->state.last_key)
        sg_log(SG_LOG_INFO, "%s: copy resumes after %" PRId64 " rows", b->m->file,
               b->state.rows_copied);
    while (!finished) {
        int64_t copied = 0;
        if ((rc = sg_interrupt_check(err)) < 0 || (rc = throttle(b, err)) < 0)
            goto done;
        uint64_t start = sg_monotonic_ms();
        rc = copy_chunk(b, &q, end, rows, &copied, &finished, err);
        if (rc < 0 &&
            (strcmp(err->sqlstate, "55P03") == 0 || strcmp(err->sqlstate, "40P01") == 0) &&
            ++failures < MAX_CHUNK_FAILURES) {
            /* a writer holds one of the chunk's rows: let it finish, and
             * take fewer rows at a time */
            sg_log(SG_LOG_DEBUG, "%s: chunk waited too long for a row lock; trying again",
                   b->m->file);
            rows = rows / 2 < MIN_CHUNK_ROWS ? MIN_CHUNK_ROWS : rows / 2;
            sg_interrupt_sleep_ms(50 * failures);
            continue;
        }
        if (rc < 0) {
            if (failures >= MAX_CHUNK_FAILURES)
                sg_error_prefix(err,
                                "%s: the copy gave up after %u chunks in a row waited too "
                                "long for row locks",
                                b->m->file, failures);
            else if (rc == SG_E_DB && PQstatus(b->e->conn) == CONNECTION_OK)
                rc = refused_row(b, err);
            goto done;
        }
        failures = 0;
        if (first)
            sg_bg_fault("chunk");
        first = false;
        rows = adapt(rows, sg_monotonic_ms() - start, o->chunk_time_ms, max_rows);
        /* a write the new shape refuses dooms the change: stop early */
        if (progress_line(b, &p, false) && (rc = sg_bg_check_sync_errors(b, "forward", err)) < 0)
            goto done;
        if (!finished && o->chunk_pause_ms)
            sg_interrupt_sleep_ms(o->chunk_pause_ms);
    }
    progress_line(b, &p, true);
done:
    keys_free(end, b->blue.nkey);
    copy_sql_clear(&q);
    return rc;
}

/* ---- comparing ---- */

int sg_bg_check_sync_errors(sg_bg *b, const char *direction, sg_error *err)
{
    PGresult *res = NULL;
    char version[24];
    snprintf(version, sizeof(version), "%" PRId64, b->m->version);
    const char *params[] = {version, direction};
    int rc = sg_pg_query_params(&res, b->e->conn,
                                "SELECT count(*), (array_agg(error ORDER BY id))[1],"
                                "       (array_agg(sqlstate ORDER BY id))[1]"
                                "  FROM shardgate.bluegreen_errors"
                                " WHERE version = $1 AND direction = $2",
                                2, params, err);
    if (rc == 0 && strcmp(PQgetvalue(res, 0, 0), "0") != 0) {
        bool forward = strcmp(direction, "forward") == 0;
        rc = sg_error_set(err, SG_E_MISMATCH,
                          "%s: %s write%s to %s could not be copied to the %s table", b->m->file,
                          PQgetvalue(res, 0, 0), strcmp(PQgetvalue(res, 0, 0), "1") ? "s" : "",
                          forward ? "the live table" : "the new table", forward ? "new" : "old");
        sg_error_detail(err, "the first: %s (SQLSTATE %s)", PQgetvalue(res, 0, 1),
                        PQgetvalue(res, 0, 2));
        sg_error_hint(err, forward ? "the new shape refuses rows the application writes: fix the "
                                     "migration, then shardgate revert abandons this attempt"
                                   : "the old table no longer has every row: a revert would lose "
                                     "writes, so it is refused; revert with a new migration");
    }
    PQclear(res);
    return rc;
}

/* SELECT of the compared columns: blue's through the map, green's as they
 * are; with_key puts the key first, as text, for finding differing rows. */
static char *side_sql(const sg_bg *b, const char *rel, bool blue_side, bool with_key, sg_error *err)
{
    const sg_bg_map *map = &b->forward;
    sg_bg_text t = {0};
    sg_bg_add(&t, "SELECT ");
    if (with_key) {
        sg_bg_add(&t, "ROW(");
        for (size_t k = 0; k < map->nkey; k++) {
            const sg_bg_item *item = &map->items[map->key[k]];
            sg_bg_add(&t, "%s", k ? ", " : "");
            if (blue_side) {
                sg_bg_item_sql(&t, item, "b");
            } else {
                char *q = sg_bg_quote(item->target->name);
                sg_bg_add(&t, "b.%s", q ? q : "");
                t.failed |= !q;
                free(q);
            }
        }
        sg_bg_add(&t, ")::text AS k, ROW(");
    }
    for (size_t i = 0; i < map->count; i++) {
        sg_bg_add(&t, "%s", i ? ", " : "");
        if (blue_side) {
            sg_bg_item_sql(&t, &map->items[i], "b");
        } else {
            char *q = sg_bg_quote(map->items[i].target->name);
            sg_bg_add(&t, "b.%s", q ? q : "");
            t.failed |= !q;
            free(q);
        }
    }
    sg_bg_add(&t, "%s FROM ONLY %s AS b", with_key ? ")::text AS r" : "", rel);
    return sg_bg_text_take(&t, err);
}

/* Keys of up to five rows that differ, for the message. */
static void name_differences(sg_bg *b, const char *blue, const char *green, sg_error *err)
{
    sg_error ignored = {0};
    PGresult *res = NULL;
    char *x = side_sql(b, blue, true, true, &ignored);
    char *y = side_sql(b, green, false, true, &ignored);
    char *sql = x && y ? sg_asprintf("SELECT coalesce(x.k, y.k), x.k IS NULL, y.k IS NULL"
                                     "  FROM (%s) x FULL JOIN (%s) y ON x.k = y.k"
                                     " WHERE x.r IS DISTINCT FROM y.r LIMIT 5",
                                     x, y)
                       : NULL;
    if (sql && sg_pg_query(&res, b->e->conn, sql, &ignored) == 0) {
        for (int i = 0; i < PQntuples(res); i++)
            sg_error_detail(err, "key %s: %s", PQgetvalue(res, i, 0),
                            strcmp(PQgetvalue(res, i, 1), "t") == 0   ? "only in the new table"
                            : strcmp(PQgetvalue(res, i, 2), "t") == 0 ? "only in the old table"
                                                                      : "differs");
    }
    PQclear(res);
    free(sql);
    free(x);
    free(y);
}

int sg_bg_compare(sg_bg *b, bool after_cutover, sg_error *err)
{
    const char *blue = after_cutover ? b->kept : b->live;
    const char *green = after_cutover ? b->live : b->shadow;
    char *x = NULL, *y = NULL;
    sg_digest dx, dy;
    int rc;
    if (!(x = side_sql(b, blue, true, false, err)) ||
        !(y = side_sql(b, green, false, false, err))) {
        rc = err->code;
        goto done;
    }
    /* one snapshot for both sides: the triggers write green in the writer's
     * own transaction, so any snapshot sees the two alike */
    if ((rc = sg_pg_exec(b->e->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err)) < 0)
        goto done;
    if ((rc = sg_pg_digest_query(b->e->conn, x, &dx, err)) == 0 &&
        (rc = sg_pg_digest_query(b->e->conn, y, &dy, err)) == 0 && !sg_digest_equal(&dx, &dy)) {
        char hx[SG_DIGEST_HEX_LEN + 1], hy[SG_DIGEST_HEX_LEN + 1];
        sg_digest_hex(&dx, hx);
        sg_digest_hex(&dy, hy);
        rc = sg_error_set(err, SG_E_MISMATCH,
                          "%s: the new %s differs from the old one: %" PRIu64 " rows (digest %s) "
                          "against %" PRIu64 " (digest %s)",
                          b->m->file, b->m->bluegreen_table, dy.rows, hy, dx.rows, hx);
        name_differences(b, blue, green, err);
        sg_error_hint(err, "nothing was swapped; shardgate revert abandons this attempt");
    }
    if (rc == 0)
        sg_log(SG_LOG_INFO, "%s: old and new %s agree: %" PRIu64 " rows, %zu columns compared",
               b->m->file, b->m->bluegreen_table, dx.rows, b->forward.count);
    sg_error ignored = {0};
    sg_pg_exec(b->e->conn, rc == 0 ? "COMMIT" : "ROLLBACK", &ignored);
done:
    free(x);
    free(y);
    return rc;
}
