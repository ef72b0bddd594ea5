/* Schema descriptions as text: parsing, what makes one malformed, object-level
 * differences, and allocation failures. Describing a live database is in
 * tests/integration/test_fingerprint.c. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/mem.h"
#include "common/sha256.h"
#include "stages/fingerprint.h"

#define HEADER "shardgate-schema 1\n"

static const char sample[] =
    HEADER "column public.t.a\tinteger not null position 1\n"
           "column public.t.b\ttext position 2\n"
           "index public.t_pkey\tCREATE UNIQUE INDEX t_pkey ON public.t USING btree (a) valid\n"
           "schema public\n"
           "table public.t\tkind r persistence p\n";

static sg_schema_desc *parse_ok(const char *text)
{
    sg_schema_desc *d = NULL;
    sg_error err = {0};
    int rc = sg_schema_desc_parse(&d, text, strlen(text), &err);
    ck_assert_msg(rc == 0, "parse failed: %s (%s)", err.message, err.detail);
    ck_assert_ptr_nonnull(d);
    return d;
}

START_TEST(test_parse_keeps_text_and_hashes_it)
{
    sg_schema_desc *d = parse_ok(sample);
    uint8_t digest[32];
    char hex[SG_SHA256_HEX_LEN];
    sg_sha256(digest, sample, strlen(sample));
    sg_hex_encode(hex, digest, sizeof(digest));
    ck_assert_str_eq(sg_schema_desc_text(d), sample);
    ck_assert_str_eq(sg_schema_desc_fingerprint(d), hex);
    ck_assert_uint_eq(sg_schema_desc_count(d), 5);
    sg_schema_desc_free(d);
    sg_schema_desc_free(NULL);
}
END_TEST

/* The fingerprint of a description with no objects is a fixed value, the
 * SHA-256 of the header line (as `printf 'shardgate-schema 1\n' | sha256sum`
 * prints it): the hash covers exactly the text. */
START_TEST(test_empty_description)
{
    sg_schema_desc *d = parse_ok(HEADER);
    ck_assert_uint_eq(sg_schema_desc_count(d), 0);
    ck_assert_str_eq(sg_schema_desc_fingerprint(d),
                     "0a255d9f881e478c9fef4c9e1828a7d81268abc7ae1199c546f87eae60d9e79c");
    sg_schema_desc_free(d);
}
END_TEST

/* Every escape the describer writes is accepted, and so are bytes above
 * ASCII (names in UTF-8). */
START_TEST(test_parse_accepts_escapes)
{
    sg_schema_desc *d = parse_ok(HEADER "column \"s\\tx\".\"n\\\\ew\\nline\"\tint\\r\\x1f\\x7f\n"
                                        "schema \"caf\xc3\xa9\"\n");
    ck_assert_uint_eq(sg_schema_desc_count(d), 2);
    sg_schema_desc_free(d);
}
END_TEST

static void assert_malformed(const char *text, size_t len, size_t lineno, const char *why,
                             const char *shown)
{
    sg_schema_desc *d = (sg_schema_desc *)&d; /* must be reset to NULL */
    sg_error err = {0};
    char want[128];
    ck_assert_int_eq(sg_schema_desc_parse(&d, text, len, &err), SG_E_FORMAT);
    ck_assert_ptr_null(d);
    snprintf(want, sizeof(want), "malformed schema description at line %zu: %s", lineno, why);
    ck_assert_str_eq(err.message, want);
    ck_assert_msg(strstr(err.detail, shown), "detail \"%s\" does not show \"%s\"", err.detail,
                  shown);
}

#define MALFORMED(text, lineno, why, shown)                                                        \
    assert_malformed(text, sizeof(text) - 1, lineno, why, shown)

START_TEST(test_malformed_header)
{
    MALFORMED("", 1, "expected the header \"shardgate-schema 1\"", "line: ");
    MALFORMED("schema public\n", 1, "expected the header \"shardgate-schema 1\"",
              "line: schema public");
    MALFORMED("shardgate-schema 2\nschema public\n", 1,
              "expected the header \"shardgate-schema 1\"", "line: shardgate-schema 2");
    MALFORMED("shardgate-schema 1", 1, "no newline at the end", "line: shardgate-schema 1");
}
END_TEST

START_TEST(test_malformed_kind_or_name)
{
    const char *why = "expected a kind and an object name";
    MALFORMED(HEADER "\n", 2, why, "line: ");
    MALFORMED(HEADER "schema\n", 2, why, "line: schema");
    MALFORMED(HEADER "schema \n", 2, why, "line: schema ");
    MALFORMED(HEADER "Schema public\n", 2, why, "line: Schema public");
    MALFORMED(HEADER " public\n", 2, why, "line:  public");
    MALFORMED(HEADER "schema a\nschema \tx\n", 3, why, "line: schema \\x09x");
    MALFORMED(HEADER "schema a\t\n", 2, "empty attributes after the tab", "line: schema a\\x09");
}
END_TEST

START_TEST(test_malformed_escapes)
{
    const char *why = "invalid escape sequence";
    MALFORMED(HEADER "schema a\\q\n", 2, why, "line: schema a\\q");
    MALFORMED(HEADER "schema a\\\n", 2, why, "line: schema a\\");
    MALFORMED(HEADER "schema a\\x4\n", 2, why, "line: schema a\\x4");
    MALFORMED(HEADER "schema a\\xZZ\n", 2, why, "line: schema a\\xZZ");
    MALFORMED(HEADER "schema a\\x4F\n", 2, why, "line: schema a\\x4F");
    /* Raw control bytes are shown escaped, so the message stays one line. */
    MALFORMED(HEADER "schema a\rb\n", 2, "unescaped control character", "line: schema a\\x0db");
    MALFORMED(HEADER "schema a\0b\n", 2, "unescaped control character", "line: schema a\\x00b");
    MALFORMED(HEADER "table t\tkind\tr\n", 2, "unescaped control character",
              "line: table t\\x09kind\\x09r");
}
END_TEST

START_TEST(test_malformed_order)
{
    MALFORMED(HEADER "schema a\nschema b\nschema b\n", 4, "object described twice", "schema b");
    MALFORMED(HEADER "table t\tkind r\ntable t\tkind p\n", 3, "object described twice",
              "line: table t\\x09kind p");
    MALFORMED(HEADER "schema b\nschema a\n", 3, "object out of order", "line: schema a");
    /* Bytewise order: "B" sorts before "a", whatever the locale says. */
    MALFORMED(HEADER "schema a\nschema B\n", 3, "object out of order", "line: schema B");
    MALFORMED(HEADER "schema a\nschema b", 3, "no newline at the end", "line: schema b");
}
END_TEST

/* A long bad line is cut in the message, which says so. */
START_TEST(test_malformed_long_line)
{
    char text[1200];
    sg_schema_desc *d = NULL;
    sg_error err = {0};
    int n = snprintf(text, sizeof(text), HEADER "schema ");
    memset(text + n, 'x', 1000);
    strcpy(text + n + 1000, "\\q\n");
    ck_assert_int_eq(sg_schema_desc_parse(&d, text, strlen(text), &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message,
                     "malformed schema description at line 2: invalid escape sequence");
    ck_assert_ptr_nonnull(strstr(err.detail, "line: schema xxxx"));
    ck_assert_ptr_nonnull(strstr(err.detail, "x..."));
    ck_assert_uint_lt(strlen(err.detail), 260);
}
END_TEST

static size_t diff_ok(sg_schema_change **changes, const char *before, const char *after)
{
    sg_schema_desc *b = parse_ok(before), *a = parse_ok(after);
    sg_error err = {0};
    size_t count = 99;
    ck_assert_int_eq(sg_schema_diff(changes, &count, b, a, &err), 0);
    /* The changes own their strings: the descriptions can go first. */
    sg_schema_desc_free(b);
    sg_schema_desc_free(a);
    return count;
}

static void assert_change(const sg_schema_change *c, sg_schema_change_kind kind, const char *object,
                          const char *before, const char *after)
{
    ck_assert_str_eq(sg_schema_change_kind_name(c->kind), sg_schema_change_kind_name(kind));
    ck_assert_str_eq(c->object, object);
    if (before)
        ck_assert_str_eq(c->before, before);
    else
        ck_assert_ptr_null(c->before);
    if (after)
        ck_assert_str_eq(c->after, after);
    else
        ck_assert_ptr_null(c->after);
}

START_TEST(test_diff_identical)
{
    sg_schema_change *changes = (sg_schema_change *)&changes;
    ck_assert_uint_eq(diff_ok(&changes, sample, sample), 0);
    ck_assert_ptr_null(changes);
    ck_assert_uint_eq(diff_ok(&changes, HEADER, HEADER), 0);
    ck_assert_ptr_null(changes);
    sg_schema_changes_free(NULL, 0);
}
END_TEST

START_TEST(test_diff_added_removed_changed)
{
    sg_schema_change *changes = NULL;
    const char *after = HEADER "column public.t.a\tbigint not null position 1\n"
                               "column public.t.newcol\ttext position 3\n"
                               "index public.t_pkey\tCREATE UNIQUE INDEX t_pkey ON public.t "
                               "USING btree (a) invalid\n"
                               "schema app\n"
                               "schema public\n"
                               "table public.t\tkind r persistence p\n";
    size_t n = diff_ok(&changes, sample, after);
    ck_assert_uint_eq(n, 5);
    /* Ordered by object, bytewise. */
    assert_change(&changes[0], SG_SCHEMA_CHANGED, "column public.t.a",
                  "integer not null position 1", "bigint not null position 1");
    assert_change(&changes[1], SG_SCHEMA_REMOVED, "column public.t.b", "text position 2", NULL);
    assert_change(&changes[2], SG_SCHEMA_ADDED, "column public.t.newcol", NULL, "text position 3");
    assert_change(&changes[3], SG_SCHEMA_CHANGED, "index public.t_pkey",
                  "CREATE UNIQUE INDEX t_pkey ON public.t USING btree (a) valid",
                  "CREATE UNIQUE INDEX t_pkey ON public.t USING btree (a) invalid");
    assert_change(&changes[4], SG_SCHEMA_ADDED, "schema app", NULL, NULL);
    sg_schema_changes_free(changes, n);
}
END_TEST

/* From nothing, everything is added; to nothing, everything removed. */
START_TEST(test_diff_against_empty)
{
    sg_schema_change *changes = NULL;
    size_t n = diff_ok(&changes, HEADER, sample);
    ck_assert_uint_eq(n, 5);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(changes[i].kind, SG_SCHEMA_ADDED);
    assert_change(&changes[3], SG_SCHEMA_ADDED, "schema public", NULL, NULL);
    assert_change(&changes[4], SG_SCHEMA_ADDED, "table public.t", NULL, "kind r persistence p");
    sg_schema_changes_free(changes, n);
    n = diff_ok(&changes, sample, HEADER);
    ck_assert_uint_eq(n, 5);
    assert_change(&changes[0], SG_SCHEMA_REMOVED, "column public.t.a",
                  "integer not null position 1", NULL);
    sg_schema_changes_free(changes, n);
}
END_TEST

/* An object that gains or loses its attributes has changed, and the side
 * without them is NULL. One name being a prefix of another is no match. */
START_TEST(test_diff_attributes_appear)
{
    sg_schema_change *changes = NULL;
    size_t n =
        diff_ok(&changes, HEADER "schema a\nschema ab\ttwo\n", HEADER "schema a\tone\nschema ab\n");
    ck_assert_uint_eq(n, 2);
    assert_change(&changes[0], SG_SCHEMA_CHANGED, "schema a", NULL, "one");
    assert_change(&changes[1], SG_SCHEMA_CHANGED, "schema ab", "two", NULL);
    sg_schema_changes_free(changes, n);
}
END_TEST

START_TEST(test_kind_names)
{
    ck_assert_str_eq(sg_schema_change_kind_name(SG_SCHEMA_ADDED), "added");
    ck_assert_str_eq(sg_schema_change_kind_name(SG_SCHEMA_REMOVED), "removed");
    ck_assert_str_eq(sg_schema_change_kind_name(SG_SCHEMA_CHANGED), "changed");
}
END_TEST

/* Each allocation in turn fails: SG_E_NOMEM, nothing returned, nothing
 * leaked (the sanitizer build checks), until there are enough. */
START_TEST(test_alloc_parse)
{
    for (long n = 0;; n++) {
        sg_schema_desc *d = (sg_schema_desc *)&d;
        sg_error err = {0};
        int rc;
        sg_mem_fail_after(n);
        rc = sg_schema_desc_parse(&d, sample, strlen(sample), &err);
        sg_mem_fail_reset();
        if (rc == 0) {
            ck_assert_str_eq(sg_schema_desc_text(d), sample);
            sg_schema_desc_free(d);
            break;
        }
        ck_assert_int_eq(rc, SG_E_NOMEM);
        ck_assert_str_eq(err.message, "out of memory describing the schema");
        ck_assert_ptr_null(d);
        ck_assert_int_lt(n, 20);
    }
}
END_TEST

START_TEST(test_alloc_diff)
{
    sg_schema_desc *b = parse_ok(sample), *a = parse_ok(HEADER "schema x\nschema y\nschema z\n");
    for (long n = 0;; n++) {
        sg_schema_change *changes = (sg_schema_change *)&changes;
        size_t count = 99;
        sg_error err = {0};
        int rc;
        sg_mem_fail_after(n);
        rc = sg_schema_diff(&changes, &count, b, a, &err);
        sg_mem_fail_reset();
        if (rc == 0) {
            ck_assert_uint_eq(count, 8);
            sg_schema_changes_free(changes, count);
            break;
        }
        ck_assert_int_eq(rc, SG_E_NOMEM);
        ck_assert_str_eq(err.message, "out of memory describing the schema");
        ck_assert_ptr_null(changes);
        ck_assert_uint_eq(count, 0);
        ck_assert_int_lt(n, 30);
    }
    sg_schema_desc_free(b);
    sg_schema_desc_free(a);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fingerprint");
    TCase *tc;
#define CASE(name) tc = tcase_create(name), suite_add_tcase(s, tc)
    CASE("parse");
    tcase_add_test(tc, test_parse_keeps_text_and_hashes_it);
    tcase_add_test(tc, test_empty_description);
    tcase_add_test(tc, test_parse_accepts_escapes);
    CASE("malformed");
    tcase_add_test(tc, test_malformed_header);
    tcase_add_test(tc, test_malformed_kind_or_name);
    tcase_add_test(tc, test_malformed_escapes);
    tcase_add_test(tc, test_malformed_order);
    tcase_add_test(tc, test_malformed_long_line);
    CASE("diff");
    tcase_add_test(tc, test_diff_identical);
    tcase_add_test(tc, test_diff_added_removed_changed);
    tcase_add_test(tc, test_diff_against_empty);
    tcase_add_test(tc, test_diff_attributes_appear);
    tcase_add_test(tc, test_kind_names);
    CASE("alloc");
    tcase_add_test(tc, test_alloc_parse);
    tcase_add_test(tc, test_alloc_diff);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
