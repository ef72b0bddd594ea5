/* `shardgate drill` end to end with the local sandbox: three shards, one
 * tampered with; the table, JSON, Prometheus and JUnit reports agree; the
 * recovery-time objective; a drill killed mid-restore leaves nothing after
 * `shardgate sandbox gc`, and one interrupted cleans up after itself. */
#include "tests/harness/cli.h"
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <check.h>
#include <stdbool.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { EXIT_USAGE = 2, EXIT_INTERRUPTED = 16, EXIT_SHARDS_FAILED = 17, EXIT_OBJECTIVE = 18 };

static sgt_pg_server *pg;
static char dir[] = "/tmp/sgt-drill-XXXXXX";
static char store_dir[512], store[600], key[512], pub[512], tmp_env[600], sandboxes[512];

/* Setup, outside any test: failures end the process. */
static void flip_byte(const char *path, long from_end)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    off_t at = fd < 0 ? -1 : lseek(fd, 0, SEEK_END) - from_end;
    if (at < 0 || pread(fd, &c, 1, at) != 1)
        sgt_abort("cannot read %s", path);
    c ^= 0x20;
    if (pwrite(fd, &c, 1, at) != 1)
        sgt_abort("cannot write %s", path);
    close(fd);
}

/* Runs shardgate with TMPDIR pointing at a directory of this test, so the
 * sandboxes it makes can be seen and counted. */
static int drill(sgt_result *r, const char *const argv[])
{
    const char *env[] = {tmp_env, NULL};
    return sgt_run(r, argv, env);
}

static int sandbox_dirs(void)
{
    DIR *d = opendir(sandboxes);
    struct dirent *e;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)))
        n += strncmp(e->d_name, "shardgate-sandbox-", 18) == 0;
    closedir(d);
    return n;
}

/* Every temporary directory shardgate made under TMPDIR. */
static int shardgate_dirs(void)
{
    DIR *d = opendir(sandboxes);
    struct dirent *e;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)))
        n += strncmp(e->d_name, "shardgate-", 10) == 0;
    closedir(d);
    return n;
}

static void assert_contains(const char *text, const char *needle)
{
    ck_assert_msg(strstr(text, needle) != NULL, "\"%s\" not in:\n%s", needle, text);
}

START_TEST(tampered_shard_fails_and_reports_agree)
{
    char metrics[600], junit[600];
    sgt_result r;
    snprintf(metrics, sizeof(metrics), "%s/drill.prom", dir);
    snprintf(junit, sizeof(junit), "%s/drill.xml", dir);
    const char *argv[] = {
        "shardgate",  "drill", "--store",        store,   "--key",   key,   "--trust", pub, "--all",
        "--parallel", "2",     "--metrics-file", metrics, "--junit", junit, NULL};
    drill(&r, argv);
    ck_assert_msg(r.status == EXIT_SHARDS_FAILED, "exit %d\n%s\n%s", r.status, r.out, r.err);
    /* The table: two pass, the tampered one fails naming the object. */
    assert_contains(r.out, "alpha");
    assert_contains(r.out, "bravo");
    assert_contains(r.out, "charlie");
    assert_contains(r.out, "FAILED: object packs/0.pack does not match its SHA-256");
    assert_contains(r.err, "drill failed for 1 of 4 shards");
    {
        char *line = strstr(r.out, "alpha");
        ck_assert_ptr_nonnull(line);
        ck_assert_msg(strstr(line, " ok\n") && strstr(line, " ok\n") < strstr(line, "\n") + 1,
                      "alpha did not pass:\n%s", r.out);
    }
    sgt_result_free(&r);
    {
        char *text = sgt_read_file(metrics, NULL);
        ck_assert_ptr_nonnull(text);
        assert_contains(text, "# TYPE shardgate_drill_success gauge");
        assert_contains(text, "shardgate_drill_success{shard=\"alpha\"} 1.000");
        assert_contains(text, "shardgate_drill_success{shard=\"bravo\"} 1.000");
        assert_contains(text, "shardgate_drill_success{shard=\"charlie\"} 0.000");
        assert_contains(text, "shardgate_drill_restore_seconds{shard=\"alpha\"}");
        assert_contains(text, "shardgate_drill_snapshot_age_seconds{shard=\"charlie\"}");
        assert_contains(text, "shardgate_drill_rows{shard=\"bravo\"} 2000.000");
        free(text);
    }
    {
        char *text = sgt_read_file(junit, NULL);
        ck_assert_ptr_nonnull(text);
        assert_contains(text, "tests=\"4\" failures=\"1\"");
        assert_contains(text, "name=\"alpha\"");
        assert_contains(text, "<testcase classname=\"shardgate.drill\" name=\"charlie\"");
        assert_contains(text, "<failure type=\"corrupt data\" message=\"object packs/0.pack does "
                              "not match its SHA-256");
        free(text);
    }
    /* each shard's result is left in the store, for status --config */
    {
        char *path = sgt_asprintf("%s/shards/alpha/last-drill.json", store_dir);
        char *text = sgt_read_file(path, NULL);
        ck_assert_msg(text != NULL, "no drill record %s", path);
        assert_contains(text, "\"ok\":true");
        assert_contains(text, "\"error\":null");
        free(text);
        free(path);
        path = sgt_asprintf("%s/shards/charlie/last-drill.json", store_dir);
        text = sgt_read_file(path, NULL);
        ck_assert_msg(text != NULL, "no drill record %s", path);
        assert_contains(text, "\"ok\":false");
        assert_contains(text, "object packs/0.pack does not match its SHA-256");
        free(text);
        free(path);
    }
    ck_assert_int_eq(sandbox_dirs(), 0);
}
END_TEST

START_TEST(json_report_and_amcheck)
{
    sgt_result r;
    /* With the heap pass too: every row of alpha must be in both indexes. */
    const char *argv[] = {"shardgate", "drill", "--store", store,   "--key",          key,
                          "--trust",   pub,     "--shard", "alpha", "--amcheck-heap", "--json",
                          NULL};
    drill(&r, argv);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    assert_contains(r.out, "\"shard\": \"alpha\"");
    assert_contains(r.out, "\"result\": \"ok\"");
    assert_contains(r.out, "\"rows\": 1000");
    assert_contains(r.out, "\"amcheck\": true");
    /* alpha has a primary key and one more index: both checked. */
    assert_contains(r.out, "\"indexes_checked\": 2");
    assert_contains(r.out, "\"failed\": 0");
    sgt_result_free(&r);
}
END_TEST

/* The same drill in a container: the docker driver (CI starts dockerd and
 * builds postgres:15 locally). */
START_TEST(docker_sandbox)
{
    sgt_result r;
    const char *argv[] = {"shardgate", "drill",  "--store", store,   "--key",   key,
                          "--trust",   pub,      "--shard", "alpha", "--shard", "bravo",
                          "--sandbox", "docker", "--json",  NULL};
    drill(&r, argv);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    assert_contains(r.out, "\"failed\": 0");
    assert_contains(r.out, "\"rows\": 2000");
    assert_contains(r.out, "\"amcheck\": true");
    sgt_result_free(&r);
}
END_TEST

START_TEST(objective_missed)
{
    sgt_result r;
    const char *argv[] = {"shardgate", "drill",   "--store", store,   "--key", key, "--trust",
                          pub,         "--shard", "alpha",   "--rto", "1ms",   NULL};
    drill(&r, argv);
    ck_assert_msg(r.status == EXIT_OBJECTIVE, "exit %d\n%s", r.status, r.err);
    assert_contains(r.out, "SLOW");
    assert_contains(r.err, "longer than the recovery-time objective");
    sgt_result_free(&r);
}
END_TEST

START_TEST(usage_errors)
{
    const char *none[] = {"shardgate", "drill",   "--store", store, "--key",
                          key,         "--trust", pub,       NULL};
    const char *want_none[] = {"--shard NAME", "--all", NULL};
    const char *bad_rto[] = {"shardgate", "drill", "--store", store,   "--key", key,
                             "--trust",   pub,     "--all",   "--rto", "soon",  NULL};
    const char *want_rto[] = {"--rto: invalid duration \"soon\"", NULL};
    const char *bad_driver[] = {"shardgate", "drill",   "--store", store,     "--key",
                                key,         "--trust", pub,       "--shard", "alpha",
                                "--sandbox", "vm",      NULL};
    const char *want_driver[] = {"unknown sandbox driver \"vm\"", NULL};
    const char *missing[] = {"shardgate", "drill", "--store", store,     "--key", key,
                             "--trust",   pub,     "--shard", "nothere", NULL};
    const char *want_missing[] = {"nothere", "no complete snapshot", NULL};
    free(sgt_shardgate_fails(EXIT_USAGE, none, want_none));
    free(sgt_shardgate_fails(EXIT_USAGE, bad_rto, want_rto));
    free(sgt_shardgate_fails(EXIT_USAGE, bad_driver, want_driver));
    free(sgt_shardgate_fails(EXIT_SHARDS_FAILED, missing, want_missing));
}
END_TEST

/* Whether any process's command line mentions text (a postmaster started
 * with -D under the sandbox directory would). */
static bool process_mentions(const char *text)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    bool found = false;
    ck_assert_ptr_nonnull(d);
    while (!found && (e = readdir(d))) {
        char path[300], *cmdline;
        size_t len;
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        if (!(cmdline = sgt_read_file(path, &len)))
            continue;
        for (size_t i = 0; i < len; i++)
            if (cmdline[i] == '\0')
                cmdline[i] = ' ';
        found = strstr(cmdline, text) != NULL;
        free(cmdline);
    }
    closedir(d);
    return found;
}

/* Whether a restore has begun: it keeps the schema dump in a temporary
 * directory of its own while it loads. */
static bool restoring(void)
{
    DIR *d = opendir(sandboxes);
    struct dirent *e;
    bool found = false;
    ck_assert_ptr_nonnull(d);
    while (!found && (e = readdir(d)))
        found = strncmp(e->d_name, "shardgate-restore-", 18) == 0;
    closedir(d);
    return found;
}

/* Waits until the drill is restoring into its sandbox. */
static void wait_for_restore(pid_t pid)
{
    for (int i = 0; i < 3000 && !restoring(); i++)
        sgt_sleep_ms(10);
    ck_assert_msg(restoring(), "the drill never started restoring");
    ck_assert_int_eq(sandbox_dirs(), 1);
    sgt_sleep_ms(200);
    ck_assert_int_eq(kill(pid, 0), 0);
}

START_TEST(killed_drill_leaves_nothing_after_gc)
{
    char run_dir[600];
    pid_t pid;
    sgt_result r;
    const char *argv[] = {"shardgate", "drill", "--store", store,   "--key", key,
                          "--trust",   pub,     "--shard", "delta", NULL};
    const char *env[] = {tmp_env, NULL};
    snprintf(run_dir, sizeof(run_dir), "%s/killed", dir);
    mkdir(run_dir, 0700);
    pid = sgt_spawn(argv, env, run_dir);
    wait_for_restore(pid);
    kill(pid, SIGKILL);
    sgt_wait(pid);
    ck_assert_int_gt(sandbox_dirs(), 0);
    {
        const char *gc[] = {"shardgate", "sandbox", "gc", "--sandbox", "local", NULL};
        drill(&r, gc);
        ck_assert_msg(r.status == 0, "gc exit %d: %s", r.status, r.err);
        /* The sandbox, and the restore's own temporary directory. */
        assert_contains(r.out, "removed 2 leftovers of killed runs");
        sgt_result_free(&r);
    }
    ck_assert_int_eq(sandbox_dirs(), 0);
    ck_assert_int_eq(shardgate_dirs(), 0);
    ck_assert_msg(!process_mentions(sandboxes), "a process of the killed sandbox is running");
}
END_TEST

START_TEST(interrupted_drill_cleans_up)
{
    char run_dir[600];
    pid_t pid;
    const char *argv[] = {"shardgate", "drill", "--store", store,   "--key", key,
                          "--trust",   pub,     "--shard", "delta", NULL};
    const char *env[] = {tmp_env, NULL};
    snprintf(run_dir, sizeof(run_dir), "%s/interrupted", dir);
    mkdir(run_dir, 0700);
    pid = sgt_spawn(argv, env, run_dir);
    wait_for_restore(pid);
    kill(pid, SIGTERM);
    ck_assert_int_eq(sgt_wait(pid), EXIT_INTERRUPTED);
    ck_assert_int_eq(shardgate_dirs(), 0);
}
END_TEST

static void make_shard(const char *name, const char *sql)
{
    char *db = sgt_pg_create_db(pg, name);
    sgt_sql_or_exit(db, sql);
    const char *argv[] = {"shardgate", "snapshot", "--dsn",   db,   "--store", store,
                          "--key",     key,        "--shard", name, NULL};
    free(sgt_shardgate_or_exit(argv));
    free(db);
}

int main(void)
{
    SRunner *sr;
    Suite *s = suite_create("drill");
    TCase *reports = tcase_create("reports");
    TCase *cleanup = tcase_create("cleanup");
    int failed;
    pg = sgt_pg_start();
    if (!mkdtemp(dir))
        return 1;
    /* As root, sandbox servers run as another user, who must reach TMPDIR. */
    chmod(dir, 0755);
    snprintf(store_dir, sizeof(store_dir), "%s/store", dir);
    snprintf(store, sizeof(store), "file://%s", store_dir);
    snprintf(sandboxes, sizeof(sandboxes), "%s/tmp", dir);
    snprintf(tmp_env, sizeof(tmp_env), "TMPDIR=%s", sandboxes);
    mkdir(sandboxes, 01777);
    chmod(sandboxes, 01777);
    sgt_keygen_or_exit(dir, "owner", key, pub);
    make_shard("alpha", "CREATE TABLE t (id int PRIMARY KEY, v text);"
                        "CREATE INDEX t_v ON t (v);"
                        "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g;");
    make_shard("bravo", "CREATE TABLE u (id bigint PRIMARY KEY, n numeric);"
                        "INSERT INTO u SELECT g, g / 7.0 FROM generate_series(1, 2000) g;");
    make_shard("charlie", "CREATE TABLE w (id int PRIMARY KEY, b bytea);"
                          "INSERT INTO w SELECT g, sha256(g::text::bytea) "
                          "FROM generate_series(1, 3000) g;");
    /* Large enough that a restore is still running when it is killed. */
    make_shard("delta", "CREATE TABLE big (id int PRIMARY KEY, v text);"
                        "INSERT INTO big SELECT g, repeat(md5(g::text), 4) "
                        "FROM generate_series(1, 600000) g;");
    {
        /* Tamper with charlie's pack, inside its data. */
        char cmd[1200], *pack;
        sgt_result r;
        snprintf(cmd, sizeof(cmd), "ls %s/shards/charlie/snapshots/*/packs/0.pack", store_dir);
        const char *argv[] = {"sh", "-c", cmd, NULL};
        sgt_run(&r, argv, NULL);
        pack = r.out;
        pack[strcspn(pack, "\n")] = '\0';
        flip_byte(pack, 4000);
        sgt_result_free(&r);
    }

    tcase_add_test(reports, tampered_shard_fails_and_reports_agree);
    tcase_add_test(reports, json_report_and_amcheck);
    tcase_add_test(reports, objective_missed);
    tcase_add_test(reports, docker_sandbox);
    tcase_add_test(reports, usage_errors);
    tcase_add_test(cleanup, killed_drill_leaves_nothing_after_gc);
    tcase_add_test(cleanup, interrupted_drill_cleans_up);
    suite_add_tcase(s, reports);
    suite_add_tcase(s, cleanup);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sgt_remove_tree(dir);
    sgt_pg_stop(pg);
    return failed ? 1 : 0;
}
