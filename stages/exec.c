#include "stages/exec.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/interrupt.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pg.h"
#include "common/retry.h"

/* A statement that has not finished after this long may be waiting for a
 * lock; the watch looks then, and again every WATCH_EVERY_MS. */
#define WATCH_AFTER_MS 100
#define WATCH_EVERY_MS 1000

void sg_exec_watch_reset(sg_exec_watch *watch)
{
    if (!watch)
        return;
    free(watch->blockers);
    free(watch->blockers_text);
    watch->blockers = watch->blockers_text = NULL;
}

void sg_exec_watch_clear(sg_exec_watch *watch)
{
    if (!watch)
        return;
    sg_exec_watch_reset(watch);
    PQfinish(watch->monitor);
    watch->monitor = NULL;
}

/* Looks up who blocks backend pid. Failing to look is not the statement's
 * failure: the watch logs it and the statement goes on. */
static void look(sg_exec_watch *watch, int pid)
{
    sg_error err = {0};
    PGresult *res = NULL;
    json_t *list = NULL;
    sg_buf text = {0};
    char *json = NULL, pid_text[16];
    if (!watch->monitor && sg_pg_connect(&watch->monitor, watch->dsn,
                                         "database (to see who blocks a migration)", &err) < 0)
        goto done;
    snprintf(pid_text, sizeof(pid_text), "%d", pid);
    const char *params[] = {pid_text};
    if (sg_pg_query_params(&res, watch->monitor,
                           "SELECT pid, coalesce(application_name, ''), coalesce(state, ''),"
                           " coalesce(extract(epoch FROM now() - xact_start)::bigint, 0),"
                           " left(coalesce(query, ''), 300), coalesce(usename::text, '')"
                           " FROM pg_catalog.pg_stat_activity"
                           " WHERE pid = ANY (pg_catalog.pg_blocking_pids($1)) ORDER BY pid",
                           1, params, &err) < 0)
        goto done;
    if (PQntuples(res) == 0)
        goto done;
    sg_json_init();
    if (!(list = json_array()))
        goto nomem;
    for (int i = 0; i < PQntuples(res); i++) {
        char line[512];
        json_t *o = json_pack(
            "{s:I, s:s, s:s, s:s, s:I, s:s}", "pid", (json_int_t)atoll(PQgetvalue(res, i, 0)),
            "application_name", PQgetvalue(res, i, 1), "user", PQgetvalue(res, i, 5), "state",
            PQgetvalue(res, i, 2), "transaction_seconds", (json_int_t)atoll(PQgetvalue(res, i, 3)),
            "query", PQgetvalue(res, i, 4));
        if (!o || json_array_append_new(list, o) < 0)
            goto nomem;
        /* one line per blocker, its query with newlines folded */
        snprintf(line, sizeof(line),
                 "%spid %s (application_name \"%s\", user %s, %s, in a transaction for %ss): %s",
                 i ? "\n" : "", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 5),
                 PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 4));
        for (char *c = line; *c; c++)
            if ((*c == '\n' && c != line) || *c == '\r' || *c == '\t')
                *c = ' ';
        if (sg_buf_append(&text, line, strlen(line), &err) < 0)
            goto nomem;
    }
    if (!(json = json_dumps(list, JSON_COMPACT)) || sg_buf_terminate(&text, &err) < 0)
        goto nomem;
    sg_exec_watch_reset(watch);
    watch->blockers = json;
    watch->blockers_text = (char *)text.data;
    json = NULL;
    text.data = NULL;
    goto done;
nomem:
    sg_error_set(&err, SG_E_NOMEM, "out of memory");
done:
    if (err.code)
        sg_log(SG_LOG_DEBUG, "cannot see who blocks the migration: %s", err.message);
    free(json);
    sg_buf_free(&text);
    json_decref(list);
    PQclear(res);
}

/* Asks the server to cancel what the session is running. */
static void cancel(PGconn *conn)
{
    PGcancel *c = PQgetCancel(conn);
    char why[256];
    if (c)
        PQcancel(c, why, sizeof(why));
    PQfreeCancel(c);
}

static void end_copy(PGconn *conn, ExecStatusType st)
{
    char *row = NULL;
    if (st == PGRES_COPY_IN || st == PGRES_COPY_BOTH)
        PQputCopyEnd(conn, "shardgate sends no COPY data");
    if (st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        /* cancelled, the server stops sending soon; what it sent is dropped */
        cancel(conn);
        while (PQgetCopyData(conn, &row, 0) > 0) {
            PQfreemem(row);
            row = NULL;
        }
    }
}

int sg_exec_run(PGresult **out, PGconn *conn, const char *sql, sg_exec_watch *watch, sg_error *err)
{
    PGresult *last = NULL, *res;
    uint64_t start = sg_monotonic_ms(), next_look = start + WATCH_AFTER_MS;
    bool cancelled = false;
    int rc = 0;
    if (out)
        *out = NULL;
    if (!PQsendQuery(conn, sql))
        return sg_pg_result_error(NULL, conn, sql, err);
    for (;;) {
        if (!PQconsumeInput(conn))
            break; /* the connection is gone: PQgetResult reports it */
        if (!PQisBusy(conn))
            break;
        if (!cancelled && sg_interrupted()) {
            cancel(conn);
            cancelled = true;
        }
        bool watching = watch && watch->dsn && !cancelled;
        uint64_t now = sg_monotonic_ms();
        if (watching && now >= next_look) {
            look(watch, PQbackendPID(conn));
            now = sg_monotonic_ms();
            next_look = now + WATCH_EVERY_MS;
        }
        /* wake for the next look, and at least every 100 ms for interrupts */
        int timeout = watching && next_look - now < 100 ? (int)(next_look - now) : 100;
        struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
        if (poll(&pfd, 1, timeout) < 0 && errno != EINTR)
            break;
    }
    while ((res = PQgetResult(conn))) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            /* A migration has no client-side data: end the COPY, or libpq
             * hands out the same COPY state for ever. */
            end_copy(conn, st);
            if (!rc) {
                rc = sg_error_set(err, SG_E_DB,
                                  "COPY to or from the client is not supported in "
                                  "a migration");
                sg_error_detail(err, "statement: %.300s", sql);
                sg_error_hint(err, "copy from or to a file on the server, or use INSERT");
            }
            PQclear(res);
            continue;
        }
        if (!rc && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            rc = sg_pg_result_error(res, conn, sql, err);
        PQclear(last);
        last = res;
    }
    if (!rc && !last)
        rc = sg_pg_result_error(NULL, conn, sql, err);
    /* a statement that completed before the cancel reached it is a success:
     * the caller records it, and sees the interrupt before the next one */
    if (cancelled && rc < 0) {
        PQclear(last);
        return sg_interrupt_check(err) < 0 ? SG_E_INTERRUPTED : rc;
    }
    if (rc < 0 || !out)
        PQclear(last);
    else
        *out = last;
    return rc;
}
