#include <check.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common/layout.h"
#include "common/mem.h"

#define ID "20240501T020000Z-1a2b3c4d"
#define NAME_HINT                                                                                  \
    "shard names use letters, digits, '.', '_' and '-' (at most 100), and do not start with '.'"
#define SPEC_HINT "name a snapshot as SHARD/ID or SHARD/latest"

START_TEST(test_shard_name_valid)
{
    static const char *good[] = {"a", "shard-01", "eu_west.2", "A.b-C_d", "0", "a.", "a..b"};
    char longest[SG_SHARD_NAME_MAX + 1];
    sg_error err = {0};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ck_assert_msg(sg_shard_name_check(good[i], &err) == 0, "%s: %s", good[i], err.message);
    memset(longest, 'x', SG_SHARD_NAME_MAX);
    longest[SG_SHARD_NAME_MAX] = '\0';
    ck_assert_int_eq(sg_shard_name_check(longest, &err), 0);
}
END_TEST

START_TEST(test_shard_name_invalid)
{
    static const char *bad[] = {"",     ".",   "..",          ".hidden", "a/b", "a b",
                                "a\\b", "a:b", "caf\xc3\xa9", "a\tb",    "a*",  "a\nb"};
    char too_long[SG_SHARD_NAME_MAX + 2];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sg_error err = {0};
        char msg[128];
        snprintf(msg, sizeof(msg), "invalid shard name \"%s\"", bad[i]);
        ck_assert_int_eq(sg_shard_name_check(bad[i], &err), SG_E_USAGE);
        ck_assert_str_eq(err.message, msg);
        ck_assert_str_eq(err.hint, NAME_HINT);
    }
    memset(too_long, 'x', SG_SHARD_NAME_MAX + 1);
    too_long[SG_SHARD_NAME_MAX + 1] = '\0';
    {
        sg_error err = {0};
        ck_assert_int_eq(sg_shard_name_check(too_long, &err), SG_E_USAGE);
        ck_assert_ptr_nonnull(strstr(err.message, "invalid shard name \"xxx"));
    }
}
END_TEST

START_TEST(test_keys)
{
    char *key = sg_layout_key("shard-a", ID, "packs/0.pack");
    ck_assert_str_eq(key, "shards/shard-a/snapshots/" ID "/packs/0.pack");
    free(key);
    key = sg_layout_key("shard-a", ID, "");
    ck_assert_str_eq(key, "shards/shard-a/snapshots/" ID "/");
    free(key);
    key = sg_layout_shard_prefix("shard-a");
    ck_assert_str_eq(key, "shards/shard-a/snapshots/");
    free(key);
}
END_TEST

START_TEST(test_keys_nomem)
{
    sg_mem_fail_after(0);
    ck_assert_ptr_null(sg_layout_key("a", ID, "manifest"));
    ck_assert_ptr_null(sg_layout_shard_prefix("a"));
    sg_mem_fail_reset();
}
END_TEST

START_TEST(test_spec_valid)
{
    char shard[SG_SHARD_NAME_MAX + 1], id[64];
    char spec[SG_SHARD_NAME_MAX + 80];
    sg_error err = {0};
    ck_assert_int_eq(sg_layout_parse_spec(shard, id, "shard-a/" ID, &err), 0);
    ck_assert_str_eq(shard, "shard-a");
    ck_assert_str_eq(id, ID);
    ck_assert_int_eq(sg_layout_parse_spec(shard, id, "eu.1/latest", &err), 0);
    ck_assert_str_eq(shard, "eu.1");
    ck_assert_str_eq(id, "latest");
    /* The longest shard name and the longest id fit their buffers. */
    memset(spec, 'x', SG_SHARD_NAME_MAX);
    spec[SG_SHARD_NAME_MAX] = '/';
    memset(spec + SG_SHARD_NAME_MAX + 1, 'y', 63);
    spec[SG_SHARD_NAME_MAX + 64] = '\0';
    ck_assert_int_eq(sg_layout_parse_spec(shard, id, spec, &err), 0);
    ck_assert_uint_eq(strlen(shard), SG_SHARD_NAME_MAX);
    ck_assert_uint_eq(strlen(id), 63);
}
END_TEST

START_TEST(test_spec_malformed)
{
    char too_long_shard[SG_SHARD_NAME_MAX + 16], too_long_id[128];
    const char *bad[] = {"", "shard-a", "/" ID, "shard-a/", "/", "//", too_long_shard, too_long_id};
    memset(too_long_shard, 'x', SG_SHARD_NAME_MAX + 1);
    strcpy(too_long_shard + SG_SHARD_NAME_MAX + 1, "/latest");
    strcpy(too_long_id, "a/");
    memset(too_long_id + 2, 'y', 64);
    too_long_id[66] = '\0';
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char shard[SG_SHARD_NAME_MAX + 1], id[64], msg[256];
        sg_error err = {0};
        snprintf(msg, sizeof(msg), "invalid snapshot \"%s\"", bad[i]);
        ck_assert_int_eq(sg_layout_parse_spec(shard, id, bad[i], &err), SG_E_USAGE);
        ck_assert_str_eq(err.message, msg);
        ck_assert_str_eq(err.hint, SPEC_HINT);
    }
}
END_TEST

START_TEST(test_spec_bad_shard)
{
    char shard[SG_SHARD_NAME_MAX + 1], id[64];
    sg_error err = {0};
    ck_assert_int_eq(sg_layout_parse_spec(shard, id, ".hidden/latest", &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "invalid shard name \".hidden\"");
    ck_assert_str_eq(err.hint, NAME_HINT);
    ck_assert_int_eq(sg_layout_parse_spec(shard, id, "a b/latest", &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "invalid shard name \"a b\"");
}
END_TEST

START_TEST(test_spec_bad_id)
{
    static const char *bad[] = {"a/b/c",           "a/Latest/", "a/../x",
                                "a/id with space", "a/id.1",    "a/x\ny"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char shard[SG_SHARD_NAME_MAX + 1], id[64], msg[128];
        sg_error err = {0};
        snprintf(msg, sizeof(msg), "invalid snapshot id \"%s\"", strchr(bad[i], '/') + 1);
        ck_assert_int_eq(sg_layout_parse_spec(shard, id, bad[i], &err), SG_E_USAGE);
        ck_assert_str_eq(err.message, msg);
        ck_assert_ptr_nonnull(strstr(err.hint, "shardgate snapshots"));
    }
}
END_TEST

/* Run ids start with the UTC time, so that they sort by when runs started,
 * and end with 8 random hex digits, so that two runs of one second differ. */
START_TEST(test_run_id)
{
    char a[SG_RUN_ID_MAX], b[SG_RUN_ID_MAX];
    sg_run_id_new(a);
    sg_run_id_new(b);
    ck_assert_uint_eq(strlen(a), 25);
    ck_assert_int_eq(a[8], 'T');
    ck_assert_int_eq(a[15], 'Z');
    ck_assert_int_eq(a[16], '-');
    for (int i = 0; i < 25; i++)
        if (i != 8 && i != 15 && i != 16)
            ck_assert_msg(isxdigit((unsigned char)a[i]), "%s: position %d", a, i);
    ck_assert_str_ne(a, b);
    char *key = sg_layout_drill_key("alpha");
    ck_assert_str_eq(key, "shards/alpha/last-drill.json");
    free(key);
}
END_TEST

static Suite *layout_suite(void)
{
    Suite *s = suite_create("layout");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("shard name valid", test_shard_name_valid);
    CASE("shard name invalid", test_shard_name_invalid);
    CASE("keys", test_keys);
    CASE("keys nomem", test_keys_nomem);
    CASE("spec valid", test_spec_valid);
    CASE("spec malformed", test_spec_malformed);
    CASE("spec bad shard", test_spec_bad_shard);
    CASE("spec bad id", test_spec_bad_id);
    CASE("run id", test_run_id);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(layout_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
