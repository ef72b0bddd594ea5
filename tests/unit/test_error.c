#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static void assert_contains(const char *haystack, const char *needle)
{
    ck_assert_msg(strstr(haystack, needle) != NULL, "\"%s\" does not contain \"%s\"", haystack,
                  needle);
}

/* What sg_error_print writes, as a string to free(). */
static char *printed(const sg_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(out);
    sg_error_print(err, "shardgate", out);
    ck_assert_int_eq(fclose(out), 0);
    return text;
}

/* Every code has its own status, none of them 0 (success), or 2 for anything
 * but usage. 1 is what a crash or an unchecked failure would give, so only lint
 * findings use it, as compilers and linters do (CI scripts expect it). */
START_TEST(test_exit_status_table)
{
    int seen[256] = {0};
    int count = 0;
    ck_assert_int_eq(sg_error_exit_status(SG_OK), 0);
    for (int code = SG_E_FIRST_ + 1; code < SG_E_LAST_; code++) {
        int status = sg_error_exit_status(code);
        count++;
        ck_assert_msg((status > 1 || code == SG_E_LINT) && status < 126, "code %d: status %d", code,
                      status);
        ck_assert_msg(seen[status] == 0, "codes %d and %d share exit status %d", seen[status], code,
                      status);
        seen[status] = code;
        ck_assert_str_ne(sg_error_class(code), "unknown");
        ck_assert_str_ne(sg_error_class(code), "");
    }
    ck_assert_int_eq(count, 20);
    ck_assert_int_eq(sg_error_exit_status(SG_E_USAGE), 2);
    ck_assert_int_eq(sg_error_exit_status(SG_E_MISMATCH), 14);
    ck_assert_int_eq(sg_error_exit_status(SG_E_SHARDS_FAILED), 17);
    ck_assert_int_eq(sg_error_exit_status(SG_E_OBJECTIVE), 18);
    ck_assert_int_eq(sg_error_exit_status(SG_E_BUSY), 19);
    ck_assert_int_eq(sg_error_exit_status(SG_E_LINT), 1);
    ck_assert_int_eq(sg_error_exit_status(SG_E_INTERNAL), 70);
    /* Codes are negative, so a status can never be mistaken for one. */
    ck_assert_int_lt(SG_E_LAST_, 0);
}
END_TEST

/* By design, a code outside the table is an internal error. */
START_TEST(test_exit_status_unknown)
{
    ck_assert_int_eq(sg_error_exit_status(SG_E_FIRST_), 70);
    ck_assert_int_eq(sg_error_exit_status(SG_E_LAST_), 70);
    ck_assert_int_eq(sg_error_exit_status(-1), 70);
    ck_assert_int_eq(sg_error_exit_status(5), 70);
    ck_assert_str_eq(sg_error_class(-1), "unknown");
    ck_assert_str_eq(sg_error_class(SG_OK), "ok");
    ck_assert_str_eq(sg_error_class(SG_E_CORRUPT), "corrupt data");
    ck_assert_str_eq(sg_error_class(SG_E_MISMATCH), "verification mismatch");
}
END_TEST

START_TEST(test_set)
{
    sg_error err = {0};
    ck_assert_int_eq(sg_error_set(&err, SG_E_IO, "cannot read %s: %s", "packs/0.pack", "gone"),
                     SG_E_IO);
    ck_assert_int_eq(err.code, SG_E_IO);
    ck_assert_str_eq(err.message, "cannot read packs/0.pack: gone");
    /* Setting again replaces the message and drops the old detail and hint. */
    sg_error_detail(&err, "old detail");
    sg_error_hint(&err, "old hint");
    ck_assert_int_eq(sg_error_set(&err, SG_E_KEY, "bad key"), SG_E_KEY);
    ck_assert_str_eq(err.message, "bad key");
    ck_assert_str_eq(err.detail, "");
    ck_assert_str_eq(err.hint, "");
    sg_error_clear(&err);
    ck_assert_int_eq(err.code, 0);
    ck_assert_str_eq(err.message, "");
}
END_TEST

START_TEST(test_null_error)
{
    ck_assert_int_eq(sg_error_set(NULL, SG_E_STORE, "x %d", 1), SG_E_STORE);
    sg_error_detail(NULL, "d");
    sg_error_hint(NULL, "h");
    sg_error_prefix(NULL, "p");
    sg_error_clear(NULL);
}
END_TEST

START_TEST(test_detail_hint_lines)
{
    sg_error err = {0};
    sg_error_set(&err, SG_E_MISMATCH, "rows do not match");
    sg_error_detail(&err, "manifest: %d rows", 2);
    sg_error_detail(&err, "found: %d rows", 3);
    sg_error_hint(&err, "run %s", "verify");
    ck_assert_str_eq(err.detail, "manifest: 2 rows\nfound: 3 rows");
    ck_assert_str_eq(err.hint, "run verify");
}
END_TEST

/* Long text is cut at the field's size, never past it. */
START_TEST(test_overflow)
{
    sg_error err = {0};
    char long_text[3000];
    memset(long_text, 'x', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    sg_error_set(&err, SG_E_IO, "%s", long_text);
    ck_assert_uint_eq(strlen(err.message), sizeof(err.message) - 1);
    for (int i = 0; i < 5; i++)
        sg_error_detail(&err, "%s", long_text);
    ck_assert_uint_eq(strlen(err.detail), sizeof(err.detail) - 1);
    sg_error_hint(&err, "%s", long_text);
    sg_error_hint(&err, "more");
    ck_assert_uint_eq(strlen(err.hint), sizeof(err.hint) - 1);
    sg_error_prefix(&err, "%s", long_text);
    ck_assert_uint_eq(strlen(err.message), sizeof(err.message) - 1);
}
END_TEST

START_TEST(test_prefix)
{
    sg_error err = {0};
    sg_error_set(&err, SG_E_CORRUPT, "sealed stream is truncated");
    sg_error_detail(&err, "kept");
    sg_error_prefix(&err, "reading pack %d", 3);
    sg_error_prefix(&err, "table %s", "public.t");
    ck_assert_str_eq(err.message, "table public.t: reading pack 3: sealed stream is truncated");
    ck_assert_int_eq(err.code, SG_E_CORRUPT);
    ck_assert_str_eq(err.detail, "kept");
}
END_TEST

START_TEST(test_print)
{
    sg_error err = {0};
    char *text;
    sg_error_set(&err, SG_E_MISMATCH, "table t: rows do not match the manifest");
    sg_error_detail(&err, "manifest: 2 rows");
    sg_error_detail(&err, "found:    3 rows");
    sg_error_hint(&err, "restore from another snapshot");
    text = printed(&err);
    ck_assert_str_eq(text, "shardgate: error: table t: rows do not match the manifest\n"
                           "shardgate: detail: manifest: 2 rows\n"
                           "shardgate: detail: found:    3 rows\n"
                           "shardgate: hint: restore from another snapshot\n");
    free(text);
}
END_TEST

/* Without a message the class stands in; a detail's lines each get their
 * prefix, a trailing newline adds no empty line. */
START_TEST(test_print_edges)
{
    sg_error err = {0};
    char *text;
    err.code = SG_E_NOMEM;
    text = printed(&err);
    ck_assert_str_eq(text, "shardgate: error: out of memory\n");
    free(text);
    sg_error_set(&err, SG_E_PROCESS, "pg_dump failed with exit status 1");
    sg_error_detail(&err, "line one\nline two\n");
    text = printed(&err);
    ck_assert_str_eq(text, "shardgate: error: pg_dump failed with exit status 1\n"
                           "shardgate: detail: line one\n"
                           "shardgate: detail: line two\n");
    free(text);
    assert_contains(err.detail, "line two");
}
END_TEST

static Suite *error_suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("exit status table", test_exit_status_table);
    CASE("exit status unknown", test_exit_status_unknown);
    CASE("set", test_set);
    CASE("null error", test_null_error);
    CASE("detail hint lines", test_detail_hint_lines);
    CASE("overflow", test_overflow);
    CASE("prefix", test_prefix);
    CASE("print", test_print);
    CASE("print edges", test_print_edges);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(error_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
