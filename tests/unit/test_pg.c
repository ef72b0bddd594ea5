/* PostgreSQL helpers that need no server: how connection strings are shown in
 * messages and handed to pg_dump and pg_restore. */
#include "common/pg.h"

#include <check.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

/* The value of keyword in a connection string, as libpq reads it. */
static char *parsed(const char *conninfo, const char *keyword)
{
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    char *value = NULL;
    ck_assert_ptr_nonnull(opts);
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, keyword) == 0 && o->val)
            value = strdup(o->val);
    PQconninfoFree(opts);
    return value;
}

static const char *env_value(char **env, const char *name)
{
    size_t len = strlen(name);
    const char *found = NULL;
    for (size_t i = 0; env[i]; i++)
        if (strncmp(env[i], name, len) == 0 && env[i][len] == '=')
            found = env[i] + len + 1;
    return found;
}

START_TEST(redacted_dsn_hides_the_password_and_keeps_the_rest)
{
    const char *dsns[] = {"host=db1 dbname=app user=u password=hunter2",
                          "postgresql://u:hunter2@db1:5433/app?sslmode=require"};
    for (size_t i = 0; i < 2; i++) {
        char *r = sg_pg_redact_dsn(dsns[i]), *host;
        ck_assert_ptr_nonnull(r);
        ck_assert_msg(strstr(r, "hunter2") == NULL, "%s", r);
        ck_assert_msg(strstr(r, "*****") != NULL, "%s", r);
        host = parsed(r, "host");
        ck_assert_str_eq(host, "db1");
        free(host);
        free(r);
    }
}
END_TEST

START_TEST(child_gets_the_password_by_environment_only)
{
    sg_pg_child child;
    sg_error err = {0};
    char *dbname, *password;
    const char *dsn =
        "host=db1 dbname='my \\'odd\\' db' password=hunter2 options='-c work_mem=8MB'";
    unsetenv("PGOPTIONS");
    ck_assert_int_eq(sg_pg_child_prepare(&child, dsn, "-c maintenance_work_mem=1GB", &err), 0);
    ck_assert_msg(strstr(child.dbname_arg, "hunter2") == NULL, "%s", child.dbname_arg);
    ck_assert(strncmp(child.dbname_arg, "--dbname=", 9) == 0);
    /* The name survives quoting: libpq reads back what the user gave. */
    dbname = parsed(child.dbname_arg + 9, "dbname");
    ck_assert_str_eq(dbname, "my 'odd' db");
    password = parsed(child.dbname_arg + 9, "password");
    ck_assert_ptr_null(password);
    /* Options travel in PGOPTIONS only: on the command line they would win. */
    ck_assert_ptr_null(parsed(child.dbname_arg + 9, "options"));
    ck_assert_str_eq(env_value(child.env, "PGPASSWORD"), "hunter2");
    /* The user's options first, then the session's, then the extra ones. */
    ck_assert_str_eq(env_value(child.env, "PGOPTIONS"),
                     "-c work_mem=8MB -c statement_timeout=0 "
                     "-c idle_in_transaction_session_timeout=0 -c row_security=off "
                     "-c maintenance_work_mem=1GB");
    free(dbname);
    sg_pg_child_free(&child);
}
END_TEST

START_TEST(child_without_password_sets_none)
{
    sg_pg_child child;
    sg_error err = {0};
    setenv("PGPASSWORD", "from-the-user", 1);
    setenv("PGOPTIONS", "-c search_path=x", 1);
    ck_assert_int_eq(sg_pg_child_prepare(&child, "dbname=app", NULL, &err), 0);
    /* The user's own variables still reach the child. */
    ck_assert_str_eq(env_value(child.env, "PGPASSWORD"), "from-the-user");
    ck_assert_str_eq(env_value(child.env, "PGOPTIONS"),
                     "-c search_path=x -c statement_timeout=0 "
                     "-c idle_in_transaction_session_timeout=0 -c row_security=off");
    sg_pg_child_free(&child);
    unsetenv("PGPASSWORD");
    unsetenv("PGOPTIONS");
}
END_TEST

START_TEST(ssl_key_passphrase_is_secret_too)
{
    sg_pg_child child;
    sg_error err = {0};
    char *r = sg_pg_redact_dsn("host=db1 sslpassword=keypass");
    ck_assert_msg(strstr(r, "keypass") == NULL, "%s", r);
    free(r);
    ck_assert_int_eq(sg_pg_child_prepare(&child, "host=db1 sslpassword=keypass", NULL, &err),
                     SG_E_USAGE);
    ck_assert_msg(strstr(err.message, "sslpassword") && !strstr(err.message, "keypass"), "%s",
                  err.message);
    ck_assert_ptr_null(child.dbname_arg);
}
END_TEST

START_TEST(unparsable_dsn_is_a_usage_error)
{
    sg_pg_child child;
    sg_error err = {0};
    ck_assert_int_eq(sg_pg_child_prepare(&child, "host='unterminated", NULL, &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "invalid connection string");
    ck_assert_ptr_null(child.env);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pg");
    TCase *tc;
    SRunner *sr;
    int failed;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("redacted dsn", redacted_dsn_hides_the_password_and_keeps_the_rest);
    CASE("child password", child_gets_the_password_by_environment_only);
    CASE("child without password", child_without_password_sets_none);
    CASE("unparsable dsn", unparsable_dsn_is_a_usage_error);
    CASE("ssl key passphrase", ssl_key_passphrase_is_secret_too);
#undef CASE
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
