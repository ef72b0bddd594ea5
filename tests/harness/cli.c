#include "tests/harness/cli.h"

#include <check.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness/run.h"

/* Check carries a failure message through a pipe of limited size (a longer
 * one ends the test with "Message string too long"): keep stderr's end,
 * where the reason is, and print all of it on the test's own stderr. */
static const char *stderr_tail(const sgt_result *r)
{
    if (r->err_len > 2500) {
        fprintf(stderr, "%s", r->err);
        return r->err + r->err_len - 2500;
    }
    return r->err;
}

static char *take_stdout(sgt_result *r)
{
    char *out = r->out;
    r->out = NULL;
    sgt_result_free(r);
    return out;
}

char *sgt_shardgate(int want_status, const char *const argv[])
{
    sgt_result r;
    sgt_run(&r, argv, NULL);
    ck_assert_msg(r.status == want_status, "shardgate %s exited %d, wanted %d\nstderr:\n%s",
                  argv[1], r.status, want_status, stderr_tail(&r));
    return take_stdout(&r);
}

char *sgt_shardgate_fails(int want_status, const char *const argv[], const char *const want[])
{
    sgt_result r;
    char *err;
    sgt_run(&r, argv, NULL);
    ck_assert_msg(r.status == want_status, "shardgate %s exited %d, wanted %d\nstderr:\n%s",
                  argv[1], r.status, want_status, stderr_tail(&r));
    for (size_t i = 0; want && want[i]; i++)
        ck_assert_msg(strstr(r.err, want[i]) != NULL, "stderr lacks \"%s\":\n%s", want[i],
                      stderr_tail(&r));
    /* A failure says so in the first line, the way every error is printed. */
    if (want_status != 0)
        ck_assert_msg(strncmp(r.err, "shardgate: error: ", 18) == 0 ||
                          strstr(r.err, "\nshardgate: error: "),
                      "no error line in stderr:\n%s", r.err);
    err = r.err;
    r.err = NULL;
    sgt_result_free(&r);
    return err;
}

char *sgt_shardgate_or_exit(const char *const argv[])
{
    sgt_result r;
    sgt_run(&r, argv, NULL);
    if (r.status != 0) {
        fprintf(stderr, "setup: shardgate %s exited %d\n%s", argv[1], r.status, r.err);
        exit(1);
    }
    return take_stdout(&r);
}

void sgt_keygen_or_exit(const char *dir, const char *name, char key[512], char pub[512])
{
    char out[512];
    snprintf(out, sizeof(out), "%s/%s", dir, name);
    snprintf(key, 512, "%s.key", out);
    snprintf(pub, 512, "%s.pub", out);
    const char *argv[] = {"shardgate", "keygen", "--out", out, NULL};
    free(sgt_shardgate_or_exit(argv));
}

void sgt_sh(const char *command_line)
{
    const char *argv[] = {"sh", "-c", command_line, NULL};
    sgt_result r;
    sgt_run(&r, argv, NULL);
    if (r.status != 0) {
        fprintf(stderr, "setup: `%s` exited %d\n%s", command_line, r.status, r.err);
        exit(1);
    }
    sgt_result_free(&r);
}

void sgt_sql_or_exit(const char *conninfo, const char *sql)
{
    PGconn *conn = PQconnectdb(conninfo);
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "setup: SQL failed: %s", PQerrorMessage(conn));
        exit(1);
    }
    PQclear(res);
    PQfinish(conn);
}
