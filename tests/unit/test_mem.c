#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

START_TEST(test_allocations)
{
    char *s = sg_strdup("hello");
    char *n = sg_strndup("hello", 3);
    char *longer = sg_strndup("hi", 10);
    char *f = sg_asprintf("%s-%d", "pack", 7);
    unsigned char *z = sg_calloc(16, 4);
    void *zero = sg_malloc(0);
    ck_assert_str_eq(s, "hello");
    ck_assert_str_eq(n, "hel");
    ck_assert_str_eq(longer, "hi");
    ck_assert_str_eq(f, "pack-7");
    ck_assert_ptr_nonnull(z);
    for (int i = 0; i < 64; i++)
        ck_assert_uint_eq(z[i], 0);
    ck_assert_ptr_nonnull(zero); /* size 0 still gives a pointer, not a failure */
    s = sg_realloc(s, 100);
    ck_assert_str_eq(s, "hello");
    free(s);
    free(n);
    free(longer);
    free(f);
    free(z);
    free(zero);
}
END_TEST

/* fail_after(n): n allocations succeed, then every one fails until reset,
 * whichever function makes them. */
START_TEST(test_fail_after_counts)
{
    void *p[3];
    sg_mem_fail_after(3);
    p[0] = sg_malloc(1);
    p[1] = sg_strdup("x");
    p[2] = sg_calloc(1, 1);
    ck_assert_ptr_nonnull(p[0]);
    ck_assert_ptr_nonnull(p[1]);
    ck_assert_ptr_nonnull(p[2]);
    ck_assert_ptr_null(sg_malloc(1));
    ck_assert_ptr_null(sg_calloc(1, 1));
    ck_assert_ptr_null(sg_realloc(p[0], 10));
    ck_assert_ptr_null(sg_strdup("x"));
    ck_assert_ptr_null(sg_strndup("x", 1));
    ck_assert_ptr_null(sg_asprintf("%d", 1));
    sg_mem_fail_reset();
    p[0] = sg_realloc(p[0], 10); /* the failed realloc left it valid */
    ck_assert_ptr_nonnull(p[0]);
    for (int i = 0; i < 3; i++)
        free(p[i]);
    sg_mem_fail_after(0);
    ck_assert_ptr_null(sg_malloc(1));
    sg_mem_fail_after(1);
    p[0] = sg_malloc(1);
    ck_assert_ptr_nonnull(p[0]);
    ck_assert_ptr_null(sg_malloc(1));
    sg_mem_fail_reset();
    free(p[0]);
}
END_TEST

#define THREADS 4
#define PER_THREAD 1000

static atomic_int successes;

static void *allocate_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        void *p = sg_malloc(8);
        if (p)
            atomic_fetch_add(&successes, 1);
        free(p);
    }
    return NULL;
}

/* The budget is shared by all threads and spent exactly. */
START_TEST(test_fail_after_threads)
{
    pthread_t threads[THREADS];
    atomic_store(&successes, 0);
    sg_mem_fail_after(1234);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, allocate_many, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    sg_mem_fail_reset();
    ck_assert_int_eq(atomic_load(&successes), 1234);
}
END_TEST

static Suite *mem_suite(void)
{
    Suite *s = suite_create("mem");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("allocations", test_allocations);
    CASE("fail after counts", test_fail_after_counts);
    CASE("fail after threads", test_fail_after_threads);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mem_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
