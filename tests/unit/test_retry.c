#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/retry.h"

static const sg_retry_policy policy = SG_RETRY_POLICY_DEFAULT;

/* The ceiling doubles from the base and stops at the cap: the largest random
 * value gives the ceiling itself, and 0 gives no wait at all. */
START_TEST(test_ceiling_doubles_then_caps)
{
    const uint64_t want[] = {100, 200, 400, 800, 1600, 3200, 6400, 12800, 20000, 20000};
    for (unsigned retry = 0; retry < 10; retry++) {
        uint32_t top = (uint32_t)want[retry];
        ck_assert_uint_eq(sg_retry_delay_ms(&policy, retry, top), want[retry]);
        ck_assert_uint_eq(sg_retry_delay_ms(&policy, retry, 0), 0);
    }
    ck_assert_uint_eq(sg_retry_delay_ms(&policy, 1000, UINT32_MAX), UINT32_MAX % 20001);
}
END_TEST

/* Full jitter: over many random values every delay stays within
 * [0, ceiling] and the spread covers most of the range. */
START_TEST(test_full_jitter_range)
{
    uint64_t lo = UINT64_MAX, hi = 0;
    srand(7);
    for (int i = 0; i < 10000; i++) {
        uint32_t r = ((uint32_t)rand() << 16) ^ (uint32_t)rand();
        uint64_t d = sg_retry_delay_ms(&policy, 3, r);
        ck_assert_uint_le(d, 800);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    ck_assert_uint_lt(lo, 50);
    ck_assert_uint_gt(hi, 750);
}
END_TEST

START_TEST(test_attempts_and_budget_bound_retries)
{
    sg_retry_policy p = {100, 20000, 5000, 3};
    ck_assert(sg_retry_allowed(&p, 1, 0, 100));
    ck_assert(sg_retry_allowed(&p, 2, 1000, 100));
    ck_assert(!sg_retry_allowed(&p, 3, 1000, 100)); /* third attempt was the last */
    ck_assert(!sg_retry_allowed(&p, 1, 4950, 100)); /* the wait would overrun the budget */
    ck_assert(sg_retry_allowed(&p, 1, 4800, 100));
}
END_TEST

START_TEST(test_zero_base_never_waits)
{
    sg_retry_policy p = {0, 0, 1000, 5};
    ck_assert_uint_eq(sg_retry_delay_ms(&p, 4, UINT32_MAX), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("retry");
    TCase *delay = tcase_create("delay");
    TCase *limits = tcase_create("limits");
    tcase_add_test(delay, test_ceiling_doubles_then_caps);
    tcase_add_test(delay, test_full_jitter_range);
    tcase_add_test(delay, test_zero_base_never_waits);
    tcase_add_test(limits, test_attempts_and_budget_bound_retries);
    suite_add_tcase(s, delay);
    suite_add_tcase(s, limits);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
