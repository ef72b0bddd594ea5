/* The drill's report files, from a result built by hand: what monitoring
 * and CI read. The drill itself runs in tests/integration/test_drill.c. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "restore/drill.h"
#include "tests/harness/run.h"

static char dir[] = "/tmp/sgt-drill-report-XXXXXX";

static sg_drill_result sample(sg_drill_shard shards[3])
{
    sg_drill_result res = {.started_at = "2026-11-25T02:00:00Z", .seconds = 12.5};
    memset(shards, 0, 3 * sizeof(*shards));
    snprintf(shards[0].shard, sizeof(shards[0].shard), "eu-1");
    snprintf(shards[0].result.id, sizeof(shards[0].result.id), "20261125T010000Z-0000000a");
    shards[0].result.seconds = 4.25;
    shards[0].result.snapshot_age = 3600;
    shards[0].result.rows = 1234;
    snprintf(shards[1].shard, sizeof(shards[1].shard), "eu-2");
    snprintf(shards[1].result.id, sizeof(shards[1].result.id), "20261125T010000Z-0000000b");
    shards[1].result.seconds = 2;
    shards[1].rc = SG_E_CORRUPT;
    sg_error_set(&shards[1].error, SG_E_CORRUPT, "table \"x\".<y> & z: \001bad");
    sg_error_detail(&shards[1].error, "a 'detail'");
    snprintf(shards[2].shard, sizeof(shards[2].shard), "us-1");
    shards[2].rc = SG_E_NOT_FOUND; /* no snapshot at all */
    sg_error_set(&shards[2].error, SG_E_NOT_FOUND, "shard \"us-1\" has no complete snapshot");
    res.shards = shards;
    res.count = 3;
    res.failed = 2;
    return res;
}

static void assert_contains(const char *text, const char *needle)
{
    ck_assert_msg(strstr(text, needle) != NULL, "\"%s\" not in:\n%s", needle, text);
}

START_TEST(test_metrics)
{
    sg_drill_shard shards[3];
    sg_drill_result res = sample(shards);
    char path[600], *text;
    sg_error err = {0};
    snprintf(path, sizeof(path), "%s/drill.prom", dir);
    ck_assert_int_eq(sg_drill_write_metrics(&res, path, &err), 0);
    text = sgt_read_file(path, NULL);
    assert_contains(text, "# HELP shardgate_drill_success ");
    assert_contains(text, "# TYPE shardgate_drill_success gauge\n");
    assert_contains(text, "shardgate_drill_success{shard=\"eu-1\"} 1.000\n");
    assert_contains(text, "shardgate_drill_success{shard=\"eu-2\"} 0.000\n");
    assert_contains(text, "shardgate_drill_success{shard=\"us-1\"} 0.000\n");
    assert_contains(text, "shardgate_drill_restore_seconds{shard=\"eu-1\"} 4.250\n");
    assert_contains(text, "shardgate_drill_snapshot_age_seconds{shard=\"eu-1\"} 3600.000\n");
    assert_contains(text, "shardgate_drill_rows{shard=\"eu-1\"} 1234.000\n");
    /* A shard without a snapshot has no age (0 would read as fresh). */
    ck_assert_ptr_null(strstr(text, "shardgate_drill_snapshot_age_seconds{shard=\"us-1\"}"));
    free(text);
}
END_TEST

START_TEST(test_junit)
{
    sg_drill_shard shards[3];
    sg_drill_result res = sample(shards);
    char path[600], *text;
    sg_error err = {0};
    snprintf(path, sizeof(path), "%s/drill.xml", dir);
    ck_assert_int_eq(sg_drill_write_junit(&res, path, &err), 0);
    text = sgt_read_file(path, NULL);
    assert_contains(text, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    assert_contains(text, "tests=\"3\" failures=\"2\" errors=\"0\" time=\"12.500\" "
                          "timestamp=\"2026-11-25T02:00:00Z\"");
    assert_contains(text, "<testcase classname=\"shardgate.drill\" name=\"eu-1\" "
                          "time=\"4.250\"/>");
    /* Escaped, and the control character XML cannot hold replaced. */
    assert_contains(text, "<failure type=\"corrupt data\" message=\"table &quot;x&quot;.&lt;y&gt; "
                          "&amp; z:  bad\">a &apos;detail&apos;</failure>");
    assert_contains(text, "<failure type=\"not found\"");
    free(text);
}
END_TEST

START_TEST(test_rto_exceeded)
{
    sg_drill_shard shards[3];
    sg_drill_result res = sample(shards);
    char path[600], *text;
    sg_error err = {0};
    res.count = 1;
    res.failed = 0;
    res.too_slow = 1;
    shards[0].rto_exceeded = true;
    ck_assert_str_eq(sg_drill_shard_status(&shards[0]), "rto_exceeded");
    snprintf(path, sizeof(path), "%s/slow.xml", dir);
    ck_assert_int_eq(sg_drill_write_junit(&res, path, &err), 0);
    text = sgt_read_file(path, NULL);
    assert_contains(text, "failures=\"1\"");
    assert_contains(text, "<failure type=\"objective missed\" message=\"recovered in 4.2 s");
    free(text);
}
END_TEST

/* An unwritable destination fails naming it and leaves no temporary file. */
START_TEST(test_unwritable)
{
    sg_drill_shard shards[3];
    sg_drill_result res = sample(shards);
    char path[600];
    sg_error err = {0};
    snprintf(path, sizeof(path), "%s/no/such/dir/drill.prom", dir);
    ck_assert_int_eq(sg_drill_write_metrics(&res, path, &err), SG_E_IO);
    assert_contains(err.message, path);
    snprintf(path, sizeof(path), "%s/adir", dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert_int_eq(sg_drill_write_junit(&res, path, &err), SG_E_IO);
    assert_contains(err.message, path);
    {
        DIR *d = opendir(dir);
        struct dirent *e;
        while ((e = readdir(d)))
            ck_assert_msg(!strstr(e->d_name, ".tmp."), "left %s", e->d_name);
        closedir(d);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("drill_report");
    TCase *tc = tcase_create("reports");
    SRunner *sr;
    int failed;
    if (!mkdtemp(dir))
        return 1;
    tcase_add_test(tc, test_metrics);
    tcase_add_test(tc, test_junit);
    tcase_add_test(tc, test_rto_exceeded);
    tcase_add_test(tc, test_unwritable);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sgt_remove_tree(dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
