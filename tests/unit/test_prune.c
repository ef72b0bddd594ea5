/* Retention rules on a file:// store filled with stand-in snapshots: which
 * snapshots prune keeps, which it removes, and that a removed snapshot
 * leaves no object behind. The same code on s3:// (and the order of its
 * deletes) is tested in tests/integration/test_s3_store.c. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/layout.h"
#include "common/store.h"
#include "restore/prune.h"

#define HOUR 3600
#define DAY (24 * HOUR)

static char dir[] = "/tmp/sgt-prune-XXXXXX";
static char url[600];
static char ids[6][64];

/* Index in ids[], shard, age, complete. */
static const struct {
    const char *shard;
    long age;
    int complete;
} snaps[6] = {
    {"a", 10 * DAY, 1}, {"a", 5 * DAY, 1},  {"a", 3 * DAY, 0},
    {"a", 1 * DAY, 1},  {"a", 1 * HOUR, 0}, {"b", 30 * DAY, 1},
};

static void put(sg_store *store, const char *shard, const char *id, const char *path)
{
    char *key = sg_layout_key(shard, id, path);
    sg_error err = {0};
    ck_assert_msg(sg_store_put(store, key, "x", 1, &err) == 0, "%s", err.message);
    free(key);
}

static void fill(void)
{
    sg_store *store = NULL;
    sg_error err = {0};
    time_t now = time(NULL);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/store'", dir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(sg_store_open(&store, url, &err), 0);
    for (int i = 0; i < 6; i++) {
        time_t t = now - snaps[i].age;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(ids[i], sizeof(ids[i]), "%Y%m%dT%H%M%SZ", &tm);
        snprintf(ids[i] + strlen(ids[i]), sizeof(ids[i]) - strlen(ids[i]), "-0000000%d", i);
        put(store, snaps[i].shard, ids[i], "packs/0.pack");
        put(store, snaps[i].shard, ids[i], "packs/1.pack");
        if (snaps[i].complete)
            put(store, snaps[i].shard, ids[i], "manifest");
    }
    sg_store_free(store);
}

static int exists(int i)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/store/shards/%s/snapshots/%s", dir, snaps[i].shard, ids[i]);
    return access(path, F_OK) == 0;
}

static void assert_left(const int *want)
{
    for (int i = 0; i < 6; i++)
        ck_assert_msg(exists(i) == want[i], "snapshot %d (%s, %s): exists %d, wanted %d", i,
                      snaps[i].shard, ids[i], exists(i), want[i]);
}

static int run(sg_prune_result *res, int keep_last, int keep_days, const char *shard, bool dry)
{
    sg_prune_options o = {.store = {.url = url},
                          .keep_last = keep_last,
                          .keep_days = keep_days,
                          .shard = shard,
                          .dry_run = dry};
    sg_error err = {0};
    int rc = sg_prune(res, &o, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    return rc;
}

START_TEST(test_keep_last)
{
    sg_prune_result res;
    const int left[6] = {0, 0, 0, 1, 1, 1};
    fill();
    run(&res, 1, 0, NULL, false);
    /* The newest complete snapshot of each shard stays; the incomplete one
     * newer than it may still be running and stays; the incomplete one older
     * than it is a killed run and goes. */
    assert_left(left);
    ck_assert_uint_eq(res.nremoved, 3);
    ck_assert_uint_eq(res.kept, 3);
    ck_assert_uint_eq(res.freed_bytes, 6);
    /* Newest first. */
    ck_assert_str_eq(res.removed[0].id, ids[2]);
    ck_assert(!res.removed[0].complete);
    ck_assert_str_eq(res.removed[2].id, ids[0]);
    sg_prune_result_clear(&res);
    /* A second run has nothing left to do. */
    run(&res, 1, 0, NULL, false);
    ck_assert_uint_eq(res.nremoved, 0);
    sg_prune_result_clear(&res);
}
END_TEST

START_TEST(test_keep_days_adds_to_keep_last)
{
    sg_prune_result res;
    const int left[6] = {0, 1, 0, 1, 1, 1};
    fill();
    run(&res, 1, 7, NULL, false);
    assert_left(left);
    sg_prune_result_clear(&res);
}
END_TEST

START_TEST(test_keep_last_counts_complete_only)
{
    sg_prune_result res;
    const int left[6] = {0, 1, 0, 1, 1, 1};
    fill();
    run(&res, 2, 0, NULL, false);
    assert_left(left);
    sg_prune_result_clear(&res);
}
END_TEST

START_TEST(test_dry_run_changes_nothing)
{
    sg_prune_result res;
    const int left[6] = {1, 1, 1, 1, 1, 1};
    fill();
    run(&res, 1, 0, NULL, true);
    assert_left(left);
    ck_assert_uint_eq(res.nremoved, 3);
    ck_assert_uint_eq(res.freed_bytes, 6);
    sg_prune_result_clear(&res);
}
END_TEST

START_TEST(test_one_shard)
{
    sg_prune_result res;
    const int left[6] = {1, 1, 1, 1, 1, 1};
    fill();
    run(&res, 1, 0, "b", false);
    assert_left(left);
    ck_assert_uint_eq(res.nremoved, 0);
    ck_assert_uint_eq(res.kept, 1);
    sg_prune_result_clear(&res);
}
END_TEST

START_TEST(test_bad_options)
{
    sg_prune_result res;
    sg_prune_options o = {.store = {.url = url}, .keep_last = 0};
    sg_error err = {0};
    ck_assert_int_eq(sg_prune(&res, &o, &err), SG_E_USAGE);
    ck_assert_ptr_nonnull(strstr(err.message, "--keep-last"));
    o.keep_last = 1;
    o.shard = "../x";
    ck_assert_int_eq(sg_prune(&res, &o, &err), SG_E_USAGE);
    o.shard = NULL;
    o.store.url = NULL;
    ck_assert_int_eq(sg_prune(&res, &o, &err), SG_E_USAGE);
    ck_assert_ptr_nonnull(strstr(err.message, "--store"));
}
END_TEST

START_TEST(test_id_time)
{
    ck_assert_int_eq(sg_snapshot_id_time("20130524T000000Z-0badf00d"), 1369353600);
    ck_assert_int_eq(sg_snapshot_id_time("20130524T000000Z"), 1369353600);
    ck_assert_int_eq(sg_snapshot_id_time("nightly-1"), -1);
    ck_assert_int_eq(sg_snapshot_id_time("20130524T000000Zx"), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("prune");
    TCase *rules = tcase_create("rules");
    TCase *input = tcase_create("input");
    SRunner *sr;
    int failed;
    char cmd[700];
    if (!mkdtemp(dir))
        return 1;
    snprintf(url, sizeof(url), "file://%s/store", dir);
    tcase_add_test(rules, test_keep_last);
    tcase_add_test(rules, test_keep_days_adds_to_keep_last);
    tcase_add_test(rules, test_keep_last_counts_complete_only);
    tcase_add_test(rules, test_dry_run_changes_nothing);
    tcase_add_test(rules, test_one_shard);
    tcase_add_test(input, test_bad_options);
    tcase_add_test(input, test_id_time);
    suite_add_tcase(s, rules);
    suite_add_tcase(s, input);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
