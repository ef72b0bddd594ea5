#include "common/pg.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/proc.h"

const sg_pg_setting sg_pg_pinned_settings[] = {
    {"DateStyle", "ISO"},
    {"IntervalStyle", "postgres"},
    {"TimeZone", "UTC"},
    {"extra_float_digits", "3"},
    {"bytea_output", "hex"},
    {"client_encoding", "UTF8"},
    {"lc_monetary", "C"},
    /* reg* columns print names relative to search_path; empty, they are
     * always schema-qualified, the same on every side (pg_dump does so). */
    {"search_path", ""},
};
const size_t sg_pg_pinned_settings_count =
    sizeof(sg_pg_pinned_settings) / sizeof(sg_pg_pinned_settings[0]);

/* Secrets are never shown, and never put on a command line. */
static bool is_secret(const char *keyword)
{
    return strcmp(keyword, "password") == 0 || strcmp(keyword, "sslpassword") == 0;
}

/* Writes the options back as a keyword string, values quoted as libpq reads
 * them. For messages, secrets show as *****; for a child's command line they
 * are left out, and so are the options, which reach it merged into PGOPTIONS
 * (on the command line they would override it). */
static char *conninfo_string(const PQconninfoOption *opts, bool for_child)
{
    sg_buf buf = {0};
    char *out = NULL;
    int rc = 0;
    for (const PQconninfoOption *o = opts; rc == 0 && o->keyword; o++) {
        bool secret = is_secret(o->keyword);
        if (!o->val || !*o->val || (for_child && (secret || strcmp(o->keyword, "options") == 0)))
            continue;
        if (buf.len)
            rc = sg_buf_append(&buf, " ", 1, NULL);
        if (rc == 0)
            rc = sg_buf_append(&buf, o->keyword, strlen(o->keyword), NULL);
        if (rc == 0)
            rc = sg_buf_append(&buf, "='", 2, NULL);
        for (const char *v = secret ? "*****" : o->val; rc == 0 && *v; v++) {
            if (*v == '\\' || *v == '\'')
                rc = sg_buf_append(&buf, "\\", 1, NULL);
            if (rc == 0)
                rc = sg_buf_append(&buf, v, 1, NULL);
        }
        if (rc == 0)
            rc = sg_buf_append(&buf, "'", 1, NULL);
    }
    if (rc == 0 && sg_buf_terminate(&buf, NULL) == 0)
        out = sg_strdup(buf.data ? (const char *)buf.data : "");
    sg_buf_free(&buf);
    return out;
}

char *sg_pg_redact_dsn(const char *dsn)
{
    PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
    char *out;
    if (!opts)
        return sg_strdup("(unparsable connection string)");
    out = conninfo_string(opts, false);
    PQconninfoFree(opts);
    return out;
}

/* libpq error text ends with a newline; messages here do not. */
static void trim_newline(char *s)
{
    size_t len = strlen(s);
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
        s[--len] = '\0';
}

/* Not part of the canonical text, but every session needs them, as pg_dump
 * sets them too: a role's statement_timeout must not cancel a long COPY, an
 * idle_in_transaction_session_timeout must not end the coordinator's
 * transaction (and its exported snapshot) while the readers work, and row
 * security must make a filtered table an error rather than silently copy or
 * check part of it. Given at connection start, they hold from the first
 * statement on. */
static const char session_options[] =
    "-c statement_timeout=0 -c idle_in_transaction_session_timeout=0 -c row_security=off";

char *sg_pg_session_options(const char *dsn)
{
    PQconninfoOption *opts = dsn ? PQconninfoParse(dsn, NULL) : NULL;
    const char *user = getenv("PGOPTIONS");
    char *out;
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "options") == 0 && o->val && *o->val)
            user = o->val;
    /* The user's options come first and ours last: a later -c wins. */
    out = sg_asprintf("%s%s%s", user ? user : "", user && *user ? " " : "", session_options);
    PQconninfoFree(opts);
    return out;
}

int sg_pg_child_prepare(sg_pg_child *out, const char *dsn, const char *extra_options, sg_error *err)
{
    PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
    const char *password = NULL;
    char *options = NULL, *stripped = NULL;
    const char *set[3];
    size_t nset = 0;
    int rc = 0;
    memset(out, 0, sizeof(*out));
    if (!opts) {
        rc = sg_error_set(err, SG_E_USAGE, "invalid connection string");
        goto done;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (strcmp(o->keyword, "password") == 0)
            password = o->val;
        /* libpq reads no environment variable for it, and a command line
         * is no place for it. */
        if (strcmp(o->keyword, "sslpassword") == 0) {
            rc = sg_error_set(err, SG_E_USAGE,
                              "a connection string with sslpassword cannot be passed to "
                              "pg_dump or pg_restore safely");
            sg_error_hint(err, "use a client key without a passphrase, readable only by "
                               "this user, or a service file (PGSERVICEFILE)");
            goto done;
        }
    }
    /* A password goes by environment, never on a command line that every
     * local user can read in the process list. */
    if (!(stripped = conninfo_string(opts, true)) ||
        !(out->dbname_arg = sg_asprintf("--dbname=%s", stripped)) ||
        !(options = sg_pg_session_options(dsn)) ||
        !(out->options_var = sg_asprintf("PGOPTIONS=%s%s%s", options, extra_options ? " " : "",
                                         extra_options ? extra_options : "")) ||
        (password && !(out->password_var = sg_asprintf("PGPASSWORD=%s", password)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    set[nset++] = out->options_var;
    if (out->password_var)
        set[nset++] = out->password_var;
    set[nset] = NULL;
    if (!(out->env = sg_env_with(set)))
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
done:
    if (rc < 0)
        sg_pg_child_free(out);
    PQconninfoFree(opts);
    free(options);
    free(stripped);
    return rc;
}

void sg_pg_child_free(sg_pg_child *child)
{
    free(child->dbname_arg);
    free(child->env);
    free(child->options_var);
    if (child->password_var) {
        sodium_memzero(child->password_var, strlen(child->password_var));
        free(child->password_var);
    }
    memset(child, 0, sizeof(*child));
}

/* Server notices (RAISE NOTICE in a migration, "skipping" from IF EXISTS)
 * go to the log rather than straight to stderr, so --log-format json and
 * --quiet hold for them too. */
static void log_notice(void *arg, const PGresult *res)
{
    const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    (void)arg;
    sg_log(severity && strcmp(severity, "WARNING") == 0 ? SG_LOG_WARNING : SG_LOG_INFO,
           "server %s: %s", severity ? severity : "notice", primary ? primary : "");
}

int sg_pg_connect(PGconn **out, const char *dsn, const char *what, sg_error *err)
{
    const char *keys[] = {"dbname", "fallback_application_name", "options", NULL};
    const char *vals[] = {dsn, "shardgate", NULL, NULL};
    PGconn *conn;
    char *redacted, *options;
    char msg[512];
    *out = NULL;
    if (!(options = sg_pg_session_options(dsn)))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    vals[2] = options;
    /* expand_dbname=1: dsn may be a keyword string or a URI, and PG* variables
     * and the password file still fill in whatever it leaves out; keywords
     * after dbname override it, so options carries the dsn's own too. */
    conn = PQconnectdbParams(keys, vals, 1);
    free(options);
    if (conn && PQstatus(conn) == CONNECTION_OK) {
        PQsetNoticeReceiver(conn, log_notice, NULL);
        *out = conn;
        return 0;
    }
    snprintf(msg, sizeof(msg), "%s", conn ? PQerrorMessage(conn) : "out of memory");
    trim_newline(msg);
    redacted = sg_pg_redact_dsn(dsn);
    sg_error_set(err, SG_E_DB, "cannot connect to the %s", what);
    sg_error_detail(err, "%s", msg);
    sg_error_detail(err, "connection: %s", redacted ? redacted : "?");
    free(redacted);
    PQfinish(conn);
    return SG_E_DB;
}

int sg_pg_result_error(PGresult *res, PGconn *conn, const char *sql, sg_error *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", primary ? primary : PQerrorMessage(conn));
    trim_newline(msg);
    sg_error_set(err, SG_E_DB, "%s", msg);
    if (state) {
        sg_error_detail(err, "SQLSTATE %s", state);
        if (err)
            snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state);
    }
    if (detail)
        sg_error_detail(err, "%s", detail);
    sg_error_detail(err, "statement: %.300s", sql);
    if (hint)
        sg_error_hint(err, "%s", hint);
    return SG_E_DB;
}

int sg_pg_query_params(PGresult **out, PGconn *conn, const char *sql, int nparams,
                       const char *const *params, sg_error *err)
{
    PGresult *res =
        nparams ? PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0) : PQexec(conn, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    *out = NULL;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        int rc = sg_pg_result_error(res, conn, sql, err);
        PQclear(res);
        return rc;
    }
    *out = res;
    return 0;
}

int sg_pg_exec_params(PGconn *conn, const char *sql, int nparams, const char *const *params,
                      sg_error *err)
{
    PGresult *res = NULL;
    int rc = sg_pg_query_params(&res, conn, sql, nparams, params, err);
    PQclear(res);
    return rc;
}

int sg_pg_query(PGresult **out, PGconn *conn, const char *sql, sg_error *err)
{
    return sg_pg_query_params(out, conn, sql, 0, NULL, err);
}

int sg_pg_exec(PGconn *conn, const char *sql, sg_error *err)
{
    PGresult *res = NULL;
    int rc = sg_pg_query(&res, conn, sql, err);
    PQclear(res);
    return rc;
}

static int set_all(PGconn *conn, const sg_pg_setting *settings, size_t count, sg_error *err)
{
    for (size_t i = 0; i < count; i++) {
        const char *params[] = {settings[i].name, settings[i].value};
        PGresult *res = NULL;
        int rc = sg_pg_query_params(&res, conn, "SELECT pg_catalog.set_config($1, $2, false)", 2,
                                    params, err);
        PQclear(res);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int sg_pg_pin_settings(PGconn *conn, sg_error *err)
{
    return set_all(conn, sg_pg_pinned_settings, sg_pg_pinned_settings_count, err);
}

char *sg_pg_qualified_name(PGconn *conn, const char *schema, const char *name)
{
    char *qs = schema ? PQescapeIdentifier(conn, schema, strlen(schema)) : NULL;
    char *qn = PQescapeIdentifier(conn, name, strlen(name));
    char *out = !qn || (schema && !qs) ? NULL
                : schema               ? sg_asprintf("%s.%s", qs, qn)
                                       : sg_strdup(qn);
    PQfreemem(qs);
    PQfreemem(qn);
    return out;
}

char *sg_pg_column_list(PGconn *conn, const char *const *names, size_t count)
{
    sg_buf buf = {0};
    char *out = NULL;
    for (size_t i = 0; i < count; i++) {
        char *q = PQescapeIdentifier(conn, names[i], strlen(names[i]));
        int rc = q ? 0 : -1;
        if (rc == 0 && i > 0)
            rc = sg_buf_append(&buf, ", ", 2, NULL);
        if (rc == 0)
            rc = sg_buf_append(&buf, q, strlen(q), NULL);
        PQfreemem(q);
        if (rc < 0)
            goto done;
    }
    if (sg_buf_terminate(&buf, NULL) < 0)
        goto done;
    out = sg_strdup((const char *)buf.data);
done:
    sg_buf_free(&buf);
    return out;
}

int sg_pg_copy_out(PGconn *conn, const char *copy_sql, sg_pg_copy_fn fn, void *ctx, sg_error *err)
{
    PGresult *res = PQexec(conn, copy_sql);
    int rc = 0;
    if (!res || PQresultStatus(res) != PGRES_COPY_OUT) {
        rc = sg_pg_result_error(res, conn, copy_sql, err);
        PQclear(res);
        return rc;
    }
    PQclear(res);
    for (;;) {
        char *row = NULL;
        int len = PQgetCopyData(conn, &row, 0);
        if (len < 0)
            break;
        if (rc == 0 && (rc = fn(ctx, row, (size_t)len, err)) < 0) {
            /* Libpq cannot stop a COPY OUT but by cancelling it; what is
             * already on the way is drained, so the connection stays usable. */
            PGcancel *cancel = PQgetCancel(conn);
            char buf[256];
            if (cancel)
                PQcancel(cancel, buf, sizeof(buf));
            PQfreeCancel(cancel);
        }
        PQfreemem(row);
    }
    while ((res = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && rc == 0)
            rc = sg_pg_result_error(res, conn, copy_sql, err);
        PQclear(res);
    }
    return rc;
}

static int digest_rows(void *ctx, const char *data, size_t len, sg_error *err)
{
    size_t used = sg_digest_copy_text(ctx, data, len);
    if (used != len)
        return sg_error_set(err, SG_E_DB, "server sent a COPY row without a line end");
    return 0;
}

int sg_pg_digest_table(PGconn *conn, const char *qualified_table, const char *column_list,
                       sg_digest *out, sg_error *err)
{
    /* The table form (no executor projection) when there are columns; it
     * copies no child rows, like ONLY, and yields the same text. */
    char *sql = *column_list ? sg_asprintf("COPY %s (%s) TO STDOUT", qualified_table, column_list)
                             : sg_asprintf("COPY (SELECT FROM ONLY %s) TO STDOUT", qualified_table);
    int rc;
    if (!sql)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    sg_digest_init(out);
    rc = sg_pg_copy_out(conn, sql, digest_rows, out, err);
    free(sql);
    return rc;
}

int sg_pg_digest_query(PGconn *conn, const char *select_sql, sg_digest *out, sg_error *err)
{
    char *sql = sg_asprintf("COPY (%s) TO STDOUT", select_sql);
    int rc;
    if (!sql)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    sg_digest_init(out);
    rc = sg_pg_copy_out(conn, sql, digest_rows, out, err);
    free(sql);
    return rc;
}
