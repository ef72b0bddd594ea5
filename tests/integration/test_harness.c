/* The test harness itself: the PostgreSQL server and the process runner that
 * every integration suite relies on. */
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <check.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One server for the whole run, started before Check forks the tests. */
static sgt_pg_server *pg;

static void pause_briefly(void)
{
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
}

static int path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Polls until nothing answers on the port; the test timeout bounds it. */
static void wait_until_down(int port)
{
    char conninfo[128];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres dbname=postgres",
             port);
    while (PQping(conninfo) != PQPING_NO_RESPONSE)
        pause_briefly();
}

static void remove_dir(const char *dir)
{
    const char *rm[] = {"rm", "-rf", dir, NULL};
    sgt_result r;
    ck_assert_int_eq(sgt_run(&r, rm, NULL), 0);
    sgt_result_free(&r);
}

START_TEST(server_is_postgresql_15_on_loopback)
{
    ck_assert_str_eq(sgt_pg_host(pg), "127.0.0.1");
    ck_assert_int_gt(sgt_pg_port(pg), 0);

    char *conninfo = sgt_pg_create_db(pg, "server");
    char *major =
        sgt_pg_value(conninfo, "SELECT current_setting('server_version_num')::int / 10000");
    char *port = sgt_pg_value(conninfo, "SELECT current_setting('port')");
    char *fsync = sgt_pg_value(conninfo, "SHOW fsync");
    ck_assert_str_eq(major, "15");
    ck_assert_int_eq(atoi(port), sgt_pg_port(pg));
    ck_assert_str_eq(fsync, "off");
    free(major);
    free(port);
    free(fsync);
    free(conninfo);
}
END_TEST

START_TEST(databases_are_distinct)
{
    char *a = sgt_pg_create_db(pg, "Same Prefix!");
    char *b = sgt_pg_create_db(pg, "Same Prefix!");
    ck_assert_str_ne(a, b);
    ck_assert_ptr_nonnull(strstr(a, "dbname=same_prefix__"));

    sgt_pg_exec(a, "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)");
    char *in_a = sgt_pg_value(a, "SELECT count(*) FROM t");
    char *in_b = sgt_pg_value(b, "SELECT count(*) FROM pg_class WHERE relname = 't'");
    ck_assert_str_eq(in_a, "2");
    ck_assert_str_eq(in_b, "0");

    char *encoding = sgt_pg_value(b, "SELECT pg_encoding_to_char(encoding) FROM pg_database "
                                     "WHERE datname = current_database()");
    ck_assert_str_eq(encoding, "UTF8");
    free(in_a);
    free(in_b);
    free(encoding);
    free(a);
    free(b);
}
END_TEST

START_TEST(value_is_null_without_a_row_or_for_null)
{
    char *conninfo = sgt_pg_create_db(pg, "value");
    ck_assert_ptr_null(sgt_pg_value(conninfo, "SELECT 1 WHERE false"));
    ck_assert_ptr_null(sgt_pg_value(conninfo, "SELECT NULL"));
    free(conninfo);
}
END_TEST

/* Expected to end the test process: Check records the failure as exit 1. */
START_TEST(exec_aborts_on_sql_error)
{
    char *conninfo = sgt_pg_create_db(pg, "bad_sql");
    sgt_pg_exec(conninfo, "SELECT * FROM no_such_table");
    free(conninfo);
}
END_TEST

START_TEST(stop_shuts_down_and_removes_the_directory)
{
    sgt_pg_server *second = sgt_pg_start();
    int port = sgt_pg_port(second);
    char *dir = strdup(sgt_pg_dir(second));
    ck_assert_int_ne(port, sgt_pg_port(pg));
    ck_assert(path_exists(dir));

    sgt_pg_stop(second);
    ck_assert(!path_exists(dir));
    char conninfo[128];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres dbname=postgres",
             port);
    ck_assert_int_eq(PQping(conninfo), PQPING_NO_RESPONSE);
    free(dir);
}
END_TEST

/* A runner killed outright runs no cleanup: the server must go by itself. */
START_TEST(server_dies_with_its_process)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        sgt_pg_server *own = sgt_pg_start();
        char line[4200];
        int n = snprintf(line, sizeof(line), "%d %s\n", sgt_pg_port(own), sgt_pg_dir(own));
        if (write(fds[1], line, (size_t)n) != n)
            _exit(1);
        pause();
        _exit(0);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    int port = 0;
    char dir[4096];
    ck_assert_int_eq(fscanf(f, "%d %4095s", &port, dir), 2);
    fclose(f);

    kill(child, SIGKILL);
    ck_assert_int_eq(sgt_wait(child), 128 + SIGKILL);
    wait_until_down(port);

    /* The directory is left behind in that case. */
    remove_dir(dir);
}
END_TEST

/* A bin directory with the real initdb and a scripted postgres, or with
 * nothing at all when postgres_script is NULL. */
static char *fake_bindir(const char *postgres_script)
{
    char *dir = strdup("/tmp/sgt-bin-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    /* As root the server runs as the postgres user, who must reach it. */
    ck_assert_int_eq(chmod(dir, 0755), 0);
    if (postgres_script) {
        char *real = sgt_pg_bindir(), path[4200], target[4200];
        snprintf(target, sizeof(target), "%s/initdb", real);
        snprintf(path, sizeof(path), "%s/initdb", dir);
        ck_assert_int_eq(symlink(target, path), 0);
        snprintf(path, sizeof(path), "%s/postgres", dir);
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "#!/bin/sh\n%s\n", postgres_script);
        ck_assert_int_eq(fclose(f), 0);
        ck_assert_int_eq(chmod(path, 0755), 0);
        free(real);
    }
    return dir;
}

/* Runs sgt_pg_start() with binaries from bindir in a child process, which it
 * is expected to end; returns the exit status and what it printed. */
static int start_in_child(const char *bindir, char **err)
{
    char path[] = "/tmp/sgt-start-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("SG_TEST_PG_BINDIR", bindir, 1);
        dup2(fd, 2);
        sgt_pg_start();
        _exit(0);
    }
    close(fd);
    int status = sgt_wait(pid);
    *err = sgt_read_file(path, NULL);
    ck_assert_ptr_nonnull(*err);
    unlink(path);
    return status;
}

/* The server directory named in the log tail that a failed start prints. */
static int server_dir_left(const char *err)
{
    const char *start = strstr(err, "--- end of ");
    const char *end = start ? strstr(start, "/server.log") : NULL;
    ck_assert_msg(end != NULL, "no server log in: %s", err);
    start += strlen("--- end of ");
    char dir[4200];
    snprintf(dir, sizeof(dir), "%.*s", (int)(end - start), start);
    return path_exists(dir);
}

START_TEST(start_fails_without_binaries)
{
    char *bindir = fake_bindir(NULL);
    char *err = NULL;
    ck_assert_int_eq(start_in_child(bindir, &err), 1);
    ck_assert_msg(strstr(err, "no PostgreSQL server binaries at ") && strstr(err, bindir) &&
                      strstr(err, "hint: install postgresql-15"),
                  "unexpected: %s", err);
    free(err);
    remove_dir(bindir);
    free(bindir);
}
END_TEST

START_TEST(start_fails_with_the_server_log)
{
    char *bindir = fake_bindir("echo 'FATAL:  cannot start here' >&2; exit 1");
    char *err = NULL;
    ck_assert_int_eq(start_in_child(bindir, &err), 1);
    ck_assert_msg(strstr(err, "postgres exited during startup with status 1") &&
                      strstr(err, "FATAL:  cannot start here"),
                  "unexpected: %s", err);
    ck_assert_msg(!server_dir_left(err), "server directory left behind");
    free(err);
    remove_dir(bindir);
    free(bindir);
}
END_TEST

START_TEST(start_retries_taken_ports_then_gives_up)
{
    char *bindir = fake_bindir("echo 'LOG:  could not bind IPv4 address \"127.0.0.1\": Address "
                               "already in use' >&2; exit 1");
    char *err = NULL;
    ck_assert_int_eq(start_in_child(bindir, &err), 1);
    ck_assert_msg(strstr(err, "every port tried was taken"), "unexpected: %s", err);
    const char *p = err;
    int attempts = 0;
    while ((p = strstr(p, "Address already in use")) != NULL) {
        attempts++;
        p++;
    }
    ck_assert_int_eq(attempts, 5);
    ck_assert_msg(!server_dir_left(err), "server directory left behind");
    free(err);
    remove_dir(bindir);
    free(bindir);
}
END_TEST

START_TEST(run_captures_large_output_on_both_streams)
{
    /* stderr is filled first: a runner that read stdout to its end before
     * stderr would deadlock here. */
    const char *argv[] = {"sh", "-c",
                          "head -c 1000000 /dev/zero | tr '\\0' e >&2; "
                          "head -c 3000000 /dev/zero | tr '\\0' o",
                          NULL};
    sgt_result r;
    ck_assert_int_eq(sgt_run(&r, argv, NULL), 0);
    ck_assert_uint_eq(r.out_len, 3000000);
    ck_assert_uint_eq(r.err_len, 1000000);
    ck_assert_uint_eq(strspn(r.out, "o"), r.out_len);
    ck_assert_uint_eq(strspn(r.err, "e"), r.err_len);
    ck_assert_int_eq(r.out[r.out_len], '\0');
    sgt_result_free(&r);
}
END_TEST

START_TEST(run_reports_exit_status_and_signals)
{
    const char *exit3[] = {"sh", "-c", "echo before; exit 3", NULL};
    const char *killed[] = {"sh", "-c", "kill -TERM $$", NULL};
    const char *missing[] = {"/nonexistent/sgt-program", NULL};
    sgt_result r;

    ck_assert_int_eq(sgt_run(&r, exit3, NULL), 3);
    ck_assert_int_eq(r.status, 3);
    ck_assert_str_eq(r.out, "before\n");
    sgt_result_free(&r);

    ck_assert_int_eq(sgt_run(&r, killed, NULL), 128 + SIGTERM);
    sgt_result_free(&r);

    ck_assert_int_eq(sgt_run(&r, missing, NULL), 127);
    ck_assert_ptr_nonnull(strstr(r.err, "/nonexistent/sgt-program"));
    ck_assert_str_eq(r.out, "");
    sgt_result_free(&r);
}
END_TEST

START_TEST(run_adds_and_replaces_environment)
{
    ck_assert_int_eq(setenv("SGT_REPLACED", "old", 1), 0);
    ck_assert_int_eq(setenv("SGT_KEPT", "kept", 1), 0);
    const char *argv[] = {"sh", "-c",
                          "printf '%s,%s,%s' \"$SGT_ADDED\" \"$SGT_REPLACED\" "
                          "\"$SGT_KEPT\"; env | grep -c '^SGT_REPLACED='",
                          NULL};
    const char *env[] = {"SGT_ADDED=a b", "SGT_REPLACED=new", NULL};
    sgt_result r;
    ck_assert_int_eq(sgt_run(&r, argv, env), 0);
    ck_assert_str_eq(r.out, "a b,new,kept1\n");
    sgt_result_free(&r);
}
END_TEST

START_TEST(run_resolves_shardgate_from_sg_binary)
{
    ck_assert_int_eq(setenv("SG_BINARY", "/bin/echo", 1), 0);
    const char *argv[] = {"shardgate", "snapshots", "--json", NULL};
    sgt_result r;
    ck_assert_int_eq(sgt_run(&r, argv, NULL), 0);
    ck_assert_str_eq(r.out, "snapshots --json\n");
    sgt_result_free(&r);
}
END_TEST

START_TEST(spawn_runs_in_background_until_killed)
{
    char dir[] = "/tmp/sgt-spawn-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char out_path[64], err_path[64];
    snprintf(out_path, sizeof(out_path), "%s/stdout", dir);
    snprintf(err_path, sizeof(err_path), "%s/stderr", dir);

    const char *argv[] = {"sh", "-c", "echo to-err >&2; echo started; exec sleep 600", NULL};
    pid_t pid = sgt_spawn(argv, NULL, dir);
    ck_assert_int_gt(pid, 0);
    char *out = NULL;
    for (;;) {
        out = sgt_read_file(out_path, NULL);
        if (out && strcmp(out, "started\n") == 0)
            break;
        free(out);
        pause_briefly();
    }
    free(out);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(sgt_wait(pid), 128 + SIGKILL);

    size_t len = 0;
    char *err = sgt_read_file(err_path, &len);
    ck_assert_str_eq(err, "to-err\n");
    ck_assert_uint_eq(len, 7);
    free(err);
    ck_assert_ptr_null(sgt_read_file("/nonexistent/sgt-file", NULL));

    unlink(out_path);
    unlink(err_path);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

static Suite *harness_suite(void)
{
    Suite *s = suite_create("harness");
    TCase *tc;

    tc = tcase_create("server");
    tcase_add_test(tc, server_is_postgresql_15_on_loopback);
    suite_add_tcase(s, tc);

    tc = tcase_create("databases");
    tcase_add_test(tc, databases_are_distinct);
    tcase_add_test(tc, value_is_null_without_a_row_or_for_null);
    tcase_add_exit_test(tc, exec_aborts_on_sql_error, 1);
    suite_add_tcase(s, tc);

    tc = tcase_create("lifecycle");
    tcase_add_test(tc, stop_shuts_down_and_removes_the_directory);
    tcase_add_test(tc, server_dies_with_its_process);
    suite_add_tcase(s, tc);

    tc = tcase_create("start_errors");
    tcase_add_test(tc, start_fails_without_binaries);
    tcase_add_test(tc, start_fails_with_the_server_log);
    tcase_add_test(tc, start_retries_taken_ports_then_gives_up);
    suite_add_tcase(s, tc);

    tc = tcase_create("run");
    tcase_add_test(tc, run_captures_large_output_on_both_streams);
    tcase_add_test(tc, run_reports_exit_status_and_signals);
    tcase_add_test(tc, run_adds_and_replaces_environment);
    tcase_add_test(tc, run_resolves_shardgate_from_sg_binary);
    suite_add_tcase(s, tc);

    tc = tcase_create("spawn");
    tcase_add_test(tc, spawn_runs_in_background_until_killed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    pg = sgt_pg_start();
    SRunner *sr = srunner_create(harness_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sgt_pg_stop(pg);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
