#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"

/* Expected XXH3-128 values come from the reference implementation's CLI, not
 * from the library under test: printf '%s' ROW | xxhsum -H2 (xxHash 0.8.1)
 * prints the hash high half first, the order sg_digest_hex uses. */
#define ROW_A "1\talice\t\\N"
#define ROW_A_HASH "2ee3f21c9ea46844661e4fa3ab324588"
#define ROW_B "2\tbob\t2024-05-01"
#define ROW_B_HASH "997115a3b1359158c594a6fd01810281"
#define EMPTY_HASH "99aa06d3014798d86001c324468d497f"
/* (ROW_A_HASH + ROW_B_HASH) mod 2^128; the low halves carry into the high. */
#define ROW_AB_SUM "c85507c04fd9f99d2bb2f6a0acb34809"

static const char *hex_of(const sg_digest *d)
{
    static char hex[SG_DIGEST_HEX_LEN + 1];
    sg_digest_hex(d, hex);
    return hex;
}

static void assert_same(const sg_digest *a, const sg_digest *b)
{
    char ha[SG_DIGEST_HEX_LEN + 1], hb[SG_DIGEST_HEX_LEN + 1];
    sg_digest_hex(a, ha);
    sg_digest_hex(b, hb);
    ck_assert_msg(sg_digest_equal(a, b), "%llu rows %s != %llu rows %s",
                  (unsigned long long)a->rows, ha, (unsigned long long)b->rows, hb);
}

START_TEST(test_known_values)
{
    sg_digest d;
    sg_digest_init(&d);
    ck_assert_str_eq(hex_of(&d), "00000000000000000000000000000000");
    ck_assert_uint_eq(d.rows, 0);
    sg_digest_row(&d, "", 0);
    ck_assert_str_eq(hex_of(&d), EMPTY_HASH);
    ck_assert_uint_eq(d.rows, 1);

    sg_digest_init(&d);
    sg_digest_row(&d, ROW_A, strlen(ROW_A));
    ck_assert_str_eq(hex_of(&d), ROW_A_HASH);
    sg_digest_row(&d, ROW_B, strlen(ROW_B));
    ck_assert_str_eq(hex_of(&d), ROW_AB_SUM);
    ck_assert_uint_eq(d.rows, 2);
}
END_TEST

/* The newline is not part of what is hashed. */
START_TEST(test_copy_text_known_value)
{
    const char text[] = ROW_A "\n" ROW_B "\n";
    sg_digest d;
    sg_digest_init(&d);
    ck_assert_uint_eq(sg_digest_copy_text(&d, text, strlen(text)), strlen(text));
    ck_assert_str_eq(hex_of(&d), ROW_AB_SUM);
    ck_assert_uint_eq(d.rows, 2);
}
END_TEST

START_TEST(test_order_independent)
{
    const char *rows[] = {"a", "bb", "ccc", "", "d\te"};
    sg_digest fwd, rev;
    sg_digest_init(&fwd);
    sg_digest_init(&rev);
    for (size_t i = 0; i < 5; i++) {
        sg_digest_row(&fwd, rows[i], strlen(rows[i]));
        sg_digest_row(&rev, rows[4 - i], strlen(rows[4 - i]));
    }
    assert_same(&fwd, &rev);
    ck_assert_uint_eq(fwd.rows, 5);
}
END_TEST

/* A duplicated row changes the digest, and so does a row moved to another
 * value (the digest is not a set). */
START_TEST(test_duplicates_count)
{
    sg_digest once, twice, other;
    sg_digest_init(&once);
    sg_digest_init(&twice);
    sg_digest_init(&other);
    sg_digest_row(&once, "x", 1);
    sg_digest_row(&twice, "x", 1);
    sg_digest_row(&twice, "x", 1);
    ck_assert_uint_eq(twice.rows, 2);
    ck_assert(!sg_digest_equal(&once, &twice));
    /* Same row count, different rows. */
    sg_digest_row(&other, "x", 1);
    sg_digest_row(&other, "y", 1);
    ck_assert(!sg_digest_equal(&twice, &other));
    /* Same sum, different row count: equal must look at rows too. */
    other = once;
    other.rows++;
    ck_assert(!sg_digest_equal(&once, &other));
}
END_TEST

START_TEST(test_combine)
{
    char text[4096];
    size_t len = 0;
    sg_digest whole, parts[3], combined;
    for (int i = 0; i < 200; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%d\trow %d\t%s\n", i, i * 7,
                                i % 3 ? "x" : "\\N");
    sg_digest_init(&whole);
    ck_assert_uint_eq(sg_digest_copy_text(&whole, text, len), len);
    ck_assert_uint_eq(whole.rows, 200);
    /* Split into three pieces at row boundaries and digest each alone. */
    {
        const char *cut1 = strchr(text + len / 3, '\n') + 1;
        const char *cut2 = strchr(text + 2 * len / 3, '\n') + 1;
        const char *bounds[4] = {text, cut1, cut2, text + len};
        sg_digest_init(&combined);
        for (int i = 0; i < 3; i++) {
            sg_digest_init(&parts[i]);
            sg_digest_copy_text(&parts[i], bounds[i], (size_t)(bounds[i + 1] - bounds[i]));
        }
        /* In any order. */
        sg_digest_add(&combined, &parts[2]);
        sg_digest_add(&combined, &parts[0]);
        sg_digest_add(&combined, &parts[1]);
    }
    assert_same(&combined, &whole);
}
END_TEST

/* Adding carries from the low half into the high half and wraps at 2^128. */
START_TEST(test_add_carry_wraps)
{
    sg_digest a = {.rows = 1, .lo = UINT64_MAX, .hi = 5};
    sg_digest b = {.rows = 2, .lo = 2, .hi = 7};
    sg_digest_add(&a, &b);
    ck_assert_uint_eq(a.rows, 3);
    ck_assert_uint_eq(a.lo, 1);
    ck_assert_uint_eq(a.hi, 13);
    a = (sg_digest){.rows = 0, .lo = UINT64_MAX, .hi = UINT64_MAX};
    b = (sg_digest){.rows = 0, .lo = 1, .hi = 0};
    sg_digest_add(&a, &b);
    ck_assert_uint_eq(a.lo, 0);
    ck_assert_uint_eq(a.hi, 0);
}
END_TEST

START_TEST(test_hex_round_trip)
{
    sg_digest d, back;
    sg_error err = {0};
    sg_digest_init(&d);
    sg_digest_row(&d, ROW_A, strlen(ROW_A));
    d.hi = 0x0123456789abcdefULL; /* leading zero nibble must survive */
    sg_digest_init(&back);
    back.rows = 42;
    ck_assert_int_eq(sg_digest_parse_hex(&back, hex_of(&d), &err), 0);
    ck_assert_uint_eq(back.hi, d.hi);
    ck_assert_uint_eq(back.lo, d.lo);
    ck_assert_uint_eq(back.rows, 42); /* untouched */
    ck_assert_str_eq(hex_of(&back), hex_of(&d));
    ck_assert_int_eq(sg_digest_parse_hex(&back, "ffffffffffffffff0000000000000001", &err), 0);
    ck_assert_uint_eq(back.hi, UINT64_MAX);
    ck_assert_uint_eq(back.lo, 1);
}
END_TEST

START_TEST(test_hex_invalid)
{
    static const char *bad[] = {
        "",
        "2ee3f21c9ea46844661e4fa3ab32458",   /* 31 */
        "2ee3f21c9ea46844661e4fa3ab3245880", /* 33 */
        "2EE3F21C9EA46844661E4FA3AB324588",  /* the format is lowercase */
        "2ee3f21c9ea46844661e4fa3ab32458g",
        "2ee3f21c9ea4684 661e4fa3ab324588",
        "0x2ee3f21c9ea46844661e4fa3ab3245",
        "-ee3f21c9ea46844661e4fa3ab324588",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sg_error err = {0};
        sg_digest d;
        char want[80];
        sg_digest_init(&d);
        ck_assert_int_eq(sg_digest_parse_hex(&d, bad[i], &err), SG_E_FORMAT);
        ck_assert_int_eq(err.code, SG_E_FORMAT);
        snprintf(want, sizeof(want), "invalid row digest \"%s\"", bad[i]);
        ck_assert_str_eq(err.message, want);
    }
    {
        sg_error err = {0};
        sg_digest d;
        ck_assert_int_eq(sg_digest_parse_hex(&d, NULL, &err), SG_E_FORMAT);
        ck_assert_str_eq(err.message, "invalid row digest \"\"");
    }
}
END_TEST

START_TEST(test_copy_text_complete_rows_only)
{
    const char text[] = "a\nbb\nccc";
    sg_digest d, want;
    sg_digest_init(&d);
    sg_digest_init(&want);
    ck_assert_uint_eq(sg_digest_copy_text(&d, text, strlen(text)), 5);
    sg_digest_row(&want, "a", 1);
    sg_digest_row(&want, "bb", 2);
    assert_same(&d, &want);
    /* No newline: nothing consumed, nothing counted. */
    sg_digest_init(&d);
    ck_assert_uint_eq(sg_digest_copy_text(&d, "ccc", 3), 0);
    ck_assert_uint_eq(d.rows, 0);
    ck_assert_uint_eq(sg_digest_copy_text(&d, "", 0), 0);
    ck_assert_uint_eq(d.rows, 0);
    /* Empty rows are rows. */
    sg_digest_init(&want);
    sg_digest_row(&want, "", 0);
    sg_digest_row(&want, "", 0);
    ck_assert_uint_eq(sg_digest_copy_text(&d, "\n\n", 2), 2);
    assert_same(&d, &want);
}
END_TEST

static Suite *digest_suite(void)
{
    Suite *s = suite_create("digest");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("known values", test_known_values);
    CASE("copy text known value", test_copy_text_known_value);
    CASE("order independent", test_order_independent);
    CASE("duplicates count", test_duplicates_count);
    CASE("combine", test_combine);
    CASE("add carry wraps", test_add_carry_wraps);
    CASE("hex round trip", test_hex_round_trip);
    CASE("hex invalid", test_hex_invalid);
    CASE("copy text complete rows only", test_copy_text_complete_rows_only);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(digest_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
