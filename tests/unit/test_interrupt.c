/* common/interrupt: the flag a signal raises, and the sleep that wakes for it. */
#include "common/interrupt.h"

#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_sleep_without_interrupt)
{
    sg_interrupt_install();
    ck_assert(sg_interrupt_sleep_ms(30));
    ck_assert(!sg_interrupted());
    sg_error err = {0};
    ck_assert_int_eq(sg_interrupt_check(&err), 0);
}
END_TEST

/* After SIGINT the sleep returns false at once, however long it was asked
 * for, and the check names the signal. Check runs each test in its own
 * process, so the flag does not outlive it. */
START_TEST(test_sleep_ends_on_interrupt)
{
    sg_interrupt_install();
    raise(SIGINT);
    ck_assert(sg_interrupted());
    ck_assert(!sg_interrupt_sleep_ms(3600 * 1000));
    sg_error err = {0};
    ck_assert_int_eq(sg_interrupt_check(&err), SG_E_INTERRUPTED);
    ck_assert_msg(strstr(err.message, "SIGINT"), "%s", err.message);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("interrupt");
    TCase *tc = tcase_create("sleep");
    tcase_add_test(tc, test_sleep_without_interrupt);
    tcase_add_test(tc, test_sleep_ends_on_interrupt);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
