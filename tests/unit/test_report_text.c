/* Report text: formatted appends at and across the buffer's capacity, the
 * Prometheus label and XML escapes byte by byte (every escaped character,
 * every control character, UTF-8 passed through), and allocation
 * failures. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/report_text.h"

/* The buffer's bytes as a string (they are not NUL-terminated). */
static char *text_of(const sg_buf *b)
{
    char *s = malloc(b->len + 1);
    ck_assert_ptr_nonnull(s);
    if (b->len)
        memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    return s;
}

static void assert_buf_eq(const sg_buf *b, const char *expected)
{
    char *s = text_of(b);
    ck_assert_str_eq(s, expected);
    free(s);
}

/* ---- appendf ---- */

START_TEST(test_appendf)
{
    sg_buf b = {0};
    sg_error err = {0};
    ck_assert_int_eq(sg_report_appendf(&b, &err, "%s", ""), 0);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(sg_report_appendf(&b, &err, "# TYPE %s gauge\n", "x"), 0);
    ck_assert_int_eq(sg_report_appendf(&b, &err, "x{a=\"%d\"} %.3f\n", 7, 1.5), 0);
    assert_buf_eq(&b, "# TYPE x gauge\nx{a=\"7\"} 1.500\n");
    sg_buf_free(&b);
}
END_TEST

/* Text that fits the spare room exactly, then text one byte too long for
 * what is left (vsnprintf needs room for its NUL), then text far larger
 * than the buffer: each appended whole, after what was there. */
START_TEST(test_appendf_capacity)
{
    sg_buf b = {0};
    sg_error err = {0};
    char *expected, *big = malloc(10001);
    size_t cap;
    ck_assert_ptr_nonnull(big);
    ck_assert_int_eq(sg_buf_reserve(&b, 10, &err), 0);
    cap = b.cap;
    memset(b.data, 'x', cap - 6);
    b.len = cap - 6;
    ck_assert_int_eq(sg_report_appendf(&b, &err, "%s", "abcde"), 0);
    ck_assert_uint_eq(b.cap, cap); /* fitted: no growth */
    ck_assert_uint_eq(b.len, cap - 1);
    ck_assert_int_eq(sg_report_appendf(&b, &err, "%d", 123456), 0);
    ck_assert_uint_gt(b.cap, cap);
    ck_assert_uint_eq(b.len, cap + 5);
    memset(big, 'y', 10000);
    big[10000] = '\0';
    ck_assert_int_eq(sg_report_appendf(&b, &err, "<%s>", big), 0);
    ck_assert_uint_eq(b.len, cap + 5 + 10002);
    expected = malloc(b.len + 1);
    ck_assert_ptr_nonnull(expected);
    memset(expected, 'x', cap - 6);
    strcpy(expected + cap - 6, "abcde123456<");
    strcat(expected, big);
    strcat(expected, ">");
    assert_buf_eq(&b, expected);
    free(expected);
    free(big);
    sg_buf_free(&b);
}
END_TEST

/* ---- Prometheus label values ---- */

START_TEST(test_prometheus_label)
{
    sg_buf b = {0};
    sg_error err = {0};
    ck_assert_int_eq(sg_report_append_prometheus_label(&b, "", &err), 0);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(sg_report_append_prometheus_label(&b, "eu-1", &err), 0);
    assert_buf_eq(&b, "eu-1");
    sg_buf_reset(&b);
    /* each of the three, alone, doubled, at either end and side by side */
    ck_assert_int_eq(sg_report_append_prometheus_label(&b, "\\", &err), 0);
    assert_buf_eq(&b, "\\\\");
    sg_buf_reset(&b);
    ck_assert_int_eq(sg_report_append_prometheus_label(&b, "\"", &err), 0);
    assert_buf_eq(&b, "\\\"");
    sg_buf_reset(&b);
    ck_assert_int_eq(sg_report_append_prometheus_label(&b, "\n", &err), 0);
    assert_buf_eq(&b, "\\n");
    sg_buf_reset(&b);
    ck_assert_int_eq(
        sg_report_append_prometheus_label(&b, "\"a\\\\b\"\n\nc \"quoted\" C:\\dir\n", &err), 0);
    assert_buf_eq(&b, "\\\"a\\\\\\\\b\\\"\\n\\nc \\\"quoted\\\" C:\\\\dir\\n");
    sg_buf_free(&b);
}
END_TEST

/* The format escapes nothing else: tab, carriage return, other control
 * characters and UTF-8 are label text as they are. */
START_TEST(test_prometheus_label_passthrough)
{
    static const char text[] = "tab\there\rcr \x01\x1f\x7f café ✓ 😀";
    sg_buf b = {0};
    sg_error err = {0};
    ck_assert_int_eq(sg_report_append_prometheus_label(&b, text, &err), 0);
    assert_buf_eq(&b, text);
    sg_buf_free(&b);
}
END_TEST

/* ---- XML ---- */

START_TEST(test_xml_entities)
{
    sg_buf b = {0};
    sg_error err = {0};
    ck_assert_int_eq(sg_report_append_xml(&b, "", &err), 0);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(sg_report_append_xml(&b, "&<>\"'", &err), 0);
    assert_buf_eq(&b, "&amp;&lt;&gt;&quot;&apos;");
    sg_buf_reset(&b);
    ck_assert_int_eq(sg_report_append_xml(&b, "table \"x\".<y> & 'z' &amp;", &err), 0);
    assert_buf_eq(&b, "table &quot;x&quot;.&lt;y&gt; &amp; &apos;z&apos; &amp;amp;");
    sg_buf_free(&b);
}
END_TEST

/* Every byte from 0x01 to 0x1f: tab and newline kept, the others (which
 * XML 1.0 cannot hold, even as references) a space each. */
START_TEST(test_xml_control_characters)
{
    char text[34], expected[34];
    sg_buf b = {0};
    sg_error err = {0};
    text[0] = expected[0] = '[';
    for (int c = 1; c < 0x20; c++) {
        text[c] = (char)c;
        expected[c] = c == '\t' || c == '\n' ? (char)c : ' ';
    }
    text[32] = expected[32] = ']';
    text[33] = expected[33] = '\0';
    ck_assert_int_eq(sg_report_append_xml(&b, text, &err), 0);
    assert_buf_eq(&b, expected);
    sg_buf_free(&b);
}
END_TEST

/* Bytes from 0x7f up pass through: DEL is allowed, and the text is UTF-8. */
START_TEST(test_xml_utf8)
{
    static const char text[] = "\x7f café ✓ 😀 \xc3\xa9";
    sg_buf b = {0};
    sg_error err = {0};
    ck_assert_int_eq(sg_report_append_xml(&b, text, &err), 0);
    assert_buf_eq(&b, text);
    sg_buf_reset(&b);
    ck_assert_int_eq(sg_report_append_xml(&b, "<é>", &err), 0);
    assert_buf_eq(&b, "&lt;é&gt;");
    sg_buf_free(&b);
}
END_TEST

/* ---- allocation failures ---- */

/* Each function on an empty buffer, then on a full one, with no allocation
 * allowed: SG_E_NOMEM saying so, and nothing appended. */
START_TEST(test_allocation_failure)
{
    sg_buf b = {0};
    sg_error err = {0};
    int rc;
    for (int full = 0; full < 2; full++) {
        size_t len;
        if (full) {
            ck_assert_int_eq(sg_buf_reserve(&b, 1, &err), 0);
            memset(b.data, 'x', b.cap);
            b.len = b.cap;
        }
        len = b.len;
        sg_mem_fail_after(0);
        rc = sg_report_appendf(&b, &err, "%s", "text");
        sg_mem_fail_reset();
        ck_assert_int_eq(rc, SG_E_NOMEM);
        ck_assert_msg(strstr(err.message, "out of memory") != NULL, "%s", err.message);
        ck_assert_uint_eq(b.len, len);
        sg_error_clear(&err);
        sg_mem_fail_after(0);
        rc = sg_report_append_prometheus_label(&b, "a\"b", &err);
        sg_mem_fail_reset();
        ck_assert_int_eq(rc, SG_E_NOMEM);
        ck_assert_msg(strstr(err.message, "out of memory") != NULL, "%s", err.message);
        ck_assert_uint_eq(b.len, len);
        sg_error_clear(&err);
        sg_mem_fail_after(0);
        rc = sg_report_append_xml(&b, "a&b", &err);
        sg_mem_fail_reset();
        ck_assert_int_eq(rc, SG_E_NOMEM);
        ck_assert_msg(strstr(err.message, "out of memory") != NULL, "%s", err.message);
        ck_assert_uint_eq(b.len, len);
    }
    sg_buf_free(&b);
}
END_TEST

/* An escape that must grow the buffer in the middle of the text fails
 * there, and says so. */
START_TEST(test_allocation_failure_midway)
{
    sg_buf b = {0};
    sg_error err = {0};
    int rc;
    ck_assert_int_eq(sg_buf_reserve(&b, 1, &err), 0);
    memset(b.data, 'x', b.cap - 2);
    b.len = b.cap - 2;
    sg_mem_fail_after(0);
    rc = sg_report_append_xml(&b, "a&b", &err);
    sg_mem_fail_reset();
    ck_assert_int_eq(rc, SG_E_NOMEM);
    ck_assert_msg(strstr(err.message, "out of memory") != NULL, "%s", err.message);
    ck_assert_uint_eq(b.len, b.cap - 1); /* the "a" before the escape */
    sg_buf_free(&b);
}
END_TEST

static Suite *report_text_suite(void)
{
    Suite *s = suite_create("report_text");
    TCase *tc = tcase_create("appendf");
    tcase_add_test(tc, test_appendf);
    tcase_add_test(tc, test_appendf_capacity);
    suite_add_tcase(s, tc);

    tc = tcase_create("prometheus_label");
    tcase_add_test(tc, test_prometheus_label);
    tcase_add_test(tc, test_prometheus_label_passthrough);
    suite_add_tcase(s, tc);

    tc = tcase_create("xml");
    tcase_add_test(tc, test_xml_entities);
    tcase_add_test(tc, test_xml_control_characters);
    tcase_add_test(tc, test_xml_utf8);
    suite_add_tcase(s, tc);

    tc = tcase_create("allocation_failure");
    tcase_add_test(tc, test_allocation_failure);
    tcase_add_test(tc, test_allocation_failure_midway);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(report_text_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
