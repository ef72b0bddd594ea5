#include <check.h>
#include <stdint.h>
#include <string.h>

#include "common/buf.h"
#include "common/mem.h"

START_TEST(test_zeroed_is_empty)
{
    sg_buf buf = {0};
    sg_error err = {0};
    ck_assert_int_eq(sg_buf_append(&buf, "", 0, &err), 0);
    ck_assert_ptr_null(buf.data); /* nothing to store: nothing allocated */
    ck_assert_int_eq(sg_buf_terminate(&buf, &err), 0);
    ck_assert_uint_eq(buf.len, 0);
    ck_assert_str_eq((char *)buf.data, "");
    sg_buf_free(&buf);
    sg_buf_free(&buf);
    sg_buf_free(NULL);
}
END_TEST

/* Growth keeps every byte, in pieces of every size across many doublings. */
START_TEST(test_growth)
{
    sg_buf buf = {0};
    sg_error err = {0};
    uint8_t piece[1000];
    size_t total = 0, last_cap = 0, growths = 0;
    for (size_t n = 0; n < sizeof(piece); n++) {
        for (size_t i = 0; i < n; i++)
            piece[i] = (uint8_t)(total + i);
        ck_assert_int_eq(sg_buf_append(&buf, piece, n, &err), 0);
        total += n;
        ck_assert_uint_eq(buf.len, total);
        ck_assert_uint_ge(buf.cap, buf.len);
        if (buf.cap != last_cap) {
            growths++;
            last_cap = buf.cap;
        }
    }
    {
        size_t wrong = 0;
        for (size_t i = 0; i < total; i++)
            wrong += buf.data[i] != (uint8_t)i;
        ck_assert_uint_eq(wrong, 0);
    }
    /* Doubling: about log2(total / 256) reallocations, not one per append. */
    ck_assert_uint_lt(growths, 20);
    ck_assert_int_eq(sg_buf_terminate(&buf, &err), 0);
    ck_assert_uint_eq(buf.len, total);
    ck_assert_uint_eq(buf.data[total], 0);
    sg_buf_free(&buf);
    ck_assert_ptr_null(buf.data);
    ck_assert_uint_eq(buf.len, 0);
    ck_assert_uint_eq(buf.cap, 0);
}
END_TEST

START_TEST(test_reserve)
{
    sg_buf buf = {0};
    sg_error err = {0};
    uint8_t *data;
    ck_assert_int_eq(sg_buf_reserve(&buf, 1000, &err), 0);
    ck_assert_uint_ge(buf.cap, 1000);
    ck_assert_uint_eq(buf.len, 0);
    data = buf.data;
    /* Enough room already: no reallocation, even under allocation failure. */
    sg_mem_fail_after(0);
    ck_assert_int_eq(sg_buf_append(&buf, "abc", 3, &err), 0);
    ck_assert_int_eq(sg_buf_reserve(&buf, 997, &err), 0);
    sg_mem_fail_reset();
    ck_assert_ptr_eq(buf.data, data);
    sg_buf_free(&buf);
}
END_TEST

START_TEST(test_reset_keeps_memory)
{
    sg_buf buf = {0};
    sg_error err = {0};
    size_t cap;
    ck_assert_int_eq(sg_buf_append(&buf, "hello", 5, &err), 0);
    cap = buf.cap;
    sg_buf_reset(&buf);
    ck_assert_uint_eq(buf.len, 0);
    ck_assert_uint_eq(buf.cap, cap);
    ck_assert_int_eq(sg_buf_append(&buf, "hi", 2, &err), 0);
    ck_assert_mem_eq(buf.data, "hi", 2);
    sg_buf_free(&buf);
}
END_TEST

/* Sizes that would wrap around are refused before any allocation. */
START_TEST(test_overflow_guard)
{
    sg_buf buf = {0};
    sg_error err = {0};
    ck_assert_int_eq(sg_buf_reserve(&buf, SIZE_MAX, &err), SG_E_NOMEM);
    ck_assert_str_eq(err.message, "buffer size overflow");
    ck_assert_ptr_null(buf.data);
    ck_assert_int_eq(sg_buf_append(&buf, "x", 1, &err), 0);
    ck_assert_int_eq(sg_buf_reserve(&buf, SIZE_MAX - 1, &err), SG_E_NOMEM);
    ck_assert_str_eq(err.message, "buffer size overflow");
    ck_assert_int_eq(sg_buf_append(&buf, "x", SIZE_MAX - 1, &err), SG_E_NOMEM);
    ck_assert_str_eq(err.message, "buffer size overflow");
    ck_assert_uint_eq(buf.len, 1);
    ck_assert_uint_eq(buf.data[0], 'x');
    sg_buf_free(&buf);
}
END_TEST

/* A failed growth leaves the buffer as it was. */
START_TEST(test_nomem)
{
    sg_buf buf = {0};
    sg_error err = {0};
    uint8_t big[300];
    memset(big, 'b', sizeof(big));
    sg_mem_fail_after(0);
    ck_assert_int_eq(sg_buf_append(&buf, "a", 1, &err), SG_E_NOMEM);
    ck_assert_str_eq(err.message, "out of memory (growing a buffer to 256 bytes)");
    ck_assert_ptr_null(buf.data);
    ck_assert_int_eq(sg_buf_terminate(&buf, &err), SG_E_NOMEM);
    sg_mem_fail_reset();
    ck_assert_int_eq(sg_buf_append(&buf, "a", 1, &err), 0);
    sg_mem_fail_after(0);
    ck_assert_int_eq(sg_buf_append(&buf, big, sizeof(big), &err), SG_E_NOMEM);
    ck_assert_str_eq(err.message, "out of memory (growing a buffer to 512 bytes)");
    sg_mem_fail_reset();
    ck_assert_uint_eq(buf.len, 1);
    ck_assert_uint_eq(buf.cap, 256);
    ck_assert_uint_eq(buf.data[0], 'a');
    sg_buf_free(&buf);
}
END_TEST

static Suite *buf_suite(void)
{
    Suite *s = suite_create("buf");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("zeroed is empty", test_zeroed_is_empty);
    CASE("growth", test_growth);
    CASE("reserve", test_reserve);
    CASE("reset keeps memory", test_reset_keeps_memory);
    CASE("overflow guard", test_overflow_guard);
    CASE("nomem", test_nomem);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(buf_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
