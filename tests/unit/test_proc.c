#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/proc.h"
#include "tests/harness/run.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/sg-test-proc-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    sg_tmpdir_remove(dir);
}

static void assert_contains(const char *haystack, const char *needle)
{
    ck_assert_msg(strstr(haystack, needle) != NULL, "\"%s\" does not contain \"%s\"", haystack,
                  needle);
}

static int sh(const char *script, sg_error *err)
{
    const char *argv[] = {"sh", "-c", script, NULL};
    return sg_proc_run(argv, "step", err);
}

START_TEST(test_success)
{
    const char *argv[] = {"true", NULL};
    sg_error err = {0};
    ck_assert_int_eq(sg_proc_run(argv, "true", &err), 0);
    /* Output on stdout and stderr of a successful run is not an error. */
    ck_assert_int_eq(sh("echo out; echo err >&2; cat", &err), 0);
    ck_assert_int_eq(err.code, 0);
}
END_TEST

START_TEST(test_exit_status)
{
    sg_error err = {0};
    ck_assert_int_eq(sh("echo first >&2; echo 'the reason' >&2; exit 3", &err), SG_E_PROCESS);
    ck_assert_int_eq(err.code, SG_E_PROCESS);
    ck_assert_str_eq(err.message, "step failed with exit status 3");
    ck_assert_str_eq(err.detail, "first\nthe reason");
    ck_assert_int_eq(sh("exit 1", &err), SG_E_PROCESS);
    ck_assert_str_eq(err.message, "step failed with exit status 1");
    ck_assert_str_eq(err.detail, "");
}
END_TEST

/* A chatty program: the detail keeps the end of its stderr, from a line
 * start, within what an error can hold. */
START_TEST(test_exit_long_stderr)
{
    sg_error err = {0};
    size_t len;
    ck_assert_int_eq(sh("i=0; while [ $i -lt 3000 ]; do echo \"noise line $i\" >&2; i=$((i+1)); "
                        "done; echo 'the reason' >&2; exit 2",
                        &err),
                     SG_E_PROCESS);
    ck_assert_str_eq(err.message, "step failed with exit status 2");
    len = strlen(err.detail);
    ck_assert_uint_gt(len, 500);
    ck_assert_uint_lt(len, sizeof(err.detail));
    ck_assert_str_eq(err.detail + len - strlen("\nnoise line 2999\nthe reason"),
                     "\nnoise line 2999\nthe reason");
    ck_assert_msg(strncmp(err.detail, "noise line ", 11) == 0, "%.40s", err.detail);
}
END_TEST

START_TEST(test_signal)
{
    sg_error err = {0};
    ck_assert_int_eq(sh("echo dying >&2; kill -KILL $$", &err), SG_E_PROCESS);
    ck_assert_str_eq(err.message, "step was killed by signal 9");
    ck_assert_str_eq(err.detail, "dying");
}
END_TEST

START_TEST(test_missing_program)
{
    const char *in_path[] = {"sg-no-such-program", "--version", NULL};
    const char *by_path[] = {"/nonexistent/sg-no-such-program", NULL};
    sg_error err = {0};
    ck_assert_int_eq(sg_proc_run(in_path, "sg-no-such-program", &err), SG_E_PROCESS);
    ck_assert_str_eq(err.message, "sg-no-such-program failed with exit status 127");
    ck_assert_str_eq(err.detail, "cannot execute sg-no-such-program: No such file or directory");
    ck_assert_int_eq(sg_proc_run(by_path, "the tool", &err), SG_E_PROCESS);
    ck_assert_str_eq(err.message, "the tool failed with exit status 127");
    assert_contains(err.detail, "cannot execute /nonexistent/sg-no-such-program");
}
END_TEST

static pid_t read_pid(const char *path)
{
    for (;;) {
        size_t len = 0;
        char *text = sgt_read_file(path, &len);
        if (text && len > 0 && text[len - 1] == '\n') {
            pid_t pid = (pid_t)atol(text);
            free(text);
            return pid;
        }
        free(text);
        usleep(1000);
    }
}

/* The process is gone and reaped: not even a zombie is left. */
START_TEST(test_kill)
{
    char script[256], pidfile[128];
    const char *argv[] = {"sh", "-c", script, NULL};
    sg_proc *proc = NULL;
    sg_error err = {0};
    pid_t pid;
    snprintf(pidfile, sizeof(pidfile), "%s/pid", dir);
    snprintf(script, sizeof(script), "echo $$ > %s; exec sleep 1000", pidfile);
    ck_assert_int_eq(sg_proc_start(&proc, argv, &err), 0);
    ck_assert_ptr_nonnull(proc);
    pid = read_pid(pidfile);
    ck_assert_int_gt(pid, 0);
    ck_assert_int_eq(kill(pid, 0), 0);
    sg_proc_kill(proc);
    ck_assert_int_eq(kill(pid, 0), -1);
    ck_assert_int_eq(errno, ESRCH);
    sg_proc_kill(NULL);
}
END_TEST

START_TEST(test_start_wait)
{
    const char *argv[] = {"sh", "-c", "exit 4", NULL};
    sg_proc *proc = NULL;
    sg_error err = {0};
    ck_assert_int_eq(sg_proc_start(&proc, argv, &err), 0);
    ck_assert_int_eq(sg_proc_wait(proc, "pg_dump", &err), SG_E_PROCESS);
    ck_assert_str_eq(err.message, "pg_dump failed with exit status 4");
}
END_TEST

START_TEST(test_proc_nomem)
{
    const char *argv[] = {"true", NULL};
    sg_proc *proc = NULL;
    sg_error err = {0};
    for (long after = 0; after < 2; after++) {
        sg_mem_fail_after(after);
        ck_assert_int_eq(sg_proc_start(&proc, argv, &err), SG_E_NOMEM);
        sg_mem_fail_reset();
        ck_assert_ptr_null(proc);
        ck_assert_str_eq(err.message, "out of memory");
    }
}
END_TEST

START_TEST(test_tmpdir)
{
    char *path = NULL, prefix[128], file[256];
    struct stat st;
    sg_error err = {0};
    int fd;
    setenv("TMPDIR", dir, 1);
    ck_assert_int_eq(sg_tmpdir_new(&path, "restore", &err), 0);
    snprintf(prefix, sizeof(prefix), "%s/shardgate-restore-", dir);
    ck_assert_int_eq(strncmp(path, prefix, strlen(prefix)), 0);
    ck_assert_uint_eq(strlen(path), strlen(prefix) + 6);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(st.st_mode & 07777, 0700);

    /* A tree with files, a nested directory and a symlink out of it. */
    snprintf(file, sizeof(file), "%s/outside", dir);
    fd = open(file, O_CREAT | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    snprintf(file, sizeof(file), "%s/a", path);
    ck_assert_int_eq(mkdir(file, 0700), 0);
    snprintf(file, sizeof(file), "%s/a/b", path);
    ck_assert_int_eq(mkdir(file, 0700), 0);
    snprintf(file, sizeof(file), "%s/a/b/data", path);
    fd = open(file, O_CREAT | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "x", 1), 1);
    close(fd);
    snprintf(file, sizeof(file), "%s/a/link", path);
    snprintf(prefix, sizeof(prefix), "%s/outside", dir);
    ck_assert_int_eq(symlink(prefix, file), 0);

    sg_tmpdir_remove(path);
    ck_assert_int_eq(access(path, F_OK), -1);
    ck_assert_int_eq(access(prefix, F_OK), 0); /* the link was not followed */
    /* Already gone, or nothing at all: quiet. */
    sg_tmpdir_remove(path);
    sg_tmpdir_remove(NULL);
    free(path);
}
END_TEST

START_TEST(test_tmpdir_default)
{
    char *path = NULL;
    sg_error err = {0};
    setenv("TMPDIR", "", 1);
    ck_assert_int_eq(sg_tmpdir_new(&path, "t", &err), 0);
    ck_assert_int_eq(strncmp(path, "/tmp/shardgate-t-", 17), 0);
    sg_tmpdir_remove(path);
    ck_assert_int_eq(access(path, F_OK), -1);
    free(path);
}
END_TEST

START_TEST(test_tmpdir_error)
{
    char *path = NULL;
    sg_error err = {0};
    setenv("TMPDIR", "/nonexistent/sg-dir", 1);
    ck_assert_int_eq(sg_tmpdir_new(&path, "verify", &err), SG_E_IO);
    ck_assert_ptr_null(path);
    /* mkdtemp fills in the template even when it fails. */
    assert_contains(err.message,
                    "cannot create a temporary directory /nonexistent/sg-dir/shardgate-verify-");
    assert_contains(err.message, ": No such file or directory");
    setenv("TMPDIR", dir, 1);
    sg_mem_fail_after(0);
    ck_assert_int_eq(sg_tmpdir_new(&path, "verify", &err), SG_E_NOMEM);
    sg_mem_fail_reset();
    ck_assert_ptr_null(path);
}
END_TEST

START_TEST(test_pg_tool_find)
{
    char bindir[128], tool[160], *path = NULL;
    sg_error err = {0};
    int fd;
    snprintf(bindir, sizeof(bindir), "%s/bin", dir);
    ck_assert_int_eq(mkdir(bindir, 0700), 0);
    snprintf(tool, sizeof(tool), "%s/pg_dump", bindir);
    fd = open(tool, O_CREAT | O_WRONLY, 0700);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(sg_pg_tool_find(&path, "pg_dump", 16, bindir, &err), 0);
    ck_assert_str_eq(path, tool);
    free(path);
    ck_assert_int_eq(sg_pg_tool_find(&path, "pg_restore", 16, bindir, &err), SG_E_USAGE);
    ck_assert_ptr_null(path);
    snprintf(tool, sizeof(tool), "pg_restore not found in %s", bindir);
    ck_assert_str_eq(err.message, tool);
    /* No such major installed: left to PATH. */
    ck_assert_int_eq(sg_pg_tool_find(&path, "pg_dump", 999, NULL, &err), 0);
    ck_assert_str_eq(path, "pg_dump");
    free(path);
}
END_TEST

START_TEST(test_child_environment)
{
    sg_error err = {0};
    char **env;
    const char *argv[] = {"sh", "-c", "test \"$SG_PROC_TEST\" = 'b c' && test -n \"$PATH\"", NULL};
    setenv("SG_PROC_TEST", "a", 1);
    /* The variable is replaced, not added twice, and the rest is kept. */
    const char *set[] = {"SG_PROC_TEST=b c", NULL};
    env = sg_env_with(set);
    ck_assert_ptr_nonnull(env);
    ck_assert_int_eq(sg_proc_run_env(argv, env, "env check", &err), 0);
    free(env);
    /* Without an environment of its own the child gets this process's. */
    ck_assert_int_eq(sg_proc_run_env(argv, NULL, "env check", &err), SG_E_PROCESS);
    ck_assert_str_eq(err.message, "env check failed with exit status 1");
}
END_TEST

START_TEST(test_process_alive)
{
    unsigned long long start = 0;
    char state = 0;
    pid_t child;
    ck_assert_int_eq(sg_process_stat(getpid(), &state, &start), 0);
    ck_assert_uint_gt(start, 0);
    ck_assert(sg_process_alive(getpid(), start));
    ck_assert(sg_process_alive(getpid(), 0));
    /* Same pid, another start time: a reused pid, not the owner. */
    ck_assert(!sg_process_alive(getpid(), start + 1));
    child = fork();
    if (child == 0)
        _exit(0);
    sgt_sleep_ms(100);
    ck_assert(!sg_process_alive(child, 0)); /* a zombie */
    ck_assert_int_eq(waitpid(child, NULL, 0), child);
    ck_assert(!sg_process_alive(child, 0)); /* gone */
    ck_assert_int_eq(sg_process_stat(child, NULL, &start), -1);
}
END_TEST

/* A directory whose creator died is removed; one of a live process, and one
 * without an owner file, are not. */
START_TEST(test_tmpdir_gc)
{
    char *mine = NULL, unowned[128];
    size_t removed = 99;
    sg_error err = {0};
    pid_t child;
    int status;
    setenv("TMPDIR", dir, 1);
    child = fork();
    if (child == 0) {
        char *path = NULL;
        _exit(sg_tmpdir_new(&path, "restore", &err) == 0 ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_int_eq(status, 0);
    ck_assert_int_eq(sg_tmpdir_new(&mine, "restore", &err), 0);
    snprintf(unowned, sizeof(unowned), "%s/shardgate-restore-manual", dir);
    ck_assert_int_eq(mkdir(unowned, 0700), 0);
    ck_assert_int_eq(sg_tmpdir_gc("snapshot", &removed, &err), 0);
    ck_assert_uint_eq(removed, 0);
    ck_assert_int_eq(sg_tmpdir_gc("restore", &removed, &err), 0);
    ck_assert_uint_eq(removed, 1);
    ck_assert_int_eq(access(mine, F_OK), 0);
    ck_assert_int_eq(access(unowned, F_OK), 0);
    ck_assert_int_eq(sg_tmpdir_gc("restore", &removed, &err), 0);
    ck_assert_uint_eq(removed, 0);
    sg_tmpdir_remove(mine);
    free(mine);
    setenv("TMPDIR", "/nonexistent/sg-dir", 1);
    ck_assert_int_eq(sg_tmpdir_gc("restore", &removed, &err), SG_E_IO);
    assert_contains(err.message, "/nonexistent/sg-dir");
    unsetenv("TMPDIR");
}
END_TEST

static Suite *proc_suite(void)
{
    Suite *s = suite_create("proc");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_checked_fixture(tc, setup, teardown);                                                \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("success", test_success);
    CASE("process alive", test_process_alive);
    CASE("tmpdir gc", test_tmpdir_gc);
    CASE("exit status", test_exit_status);
    CASE("exit long stderr", test_exit_long_stderr);
    CASE("signal", test_signal);
    CASE("missing program", test_missing_program);
    CASE("kill", test_kill);
    CASE("start wait", test_start_wait);
    CASE("proc nomem", test_proc_nomem);
    CASE("tmpdir", test_tmpdir);
    CASE("tmpdir default", test_tmpdir_default);
    CASE("tmpdir error", test_tmpdir_error);
    CASE("pg tool find", test_pg_tool_find);
    CASE("child environment", test_child_environment);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(proc_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
