#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/mem.h"
#include "common/workers.h"

#define MAX_TASKS 1000

typedef struct run {
    size_t nworkers;
    atomic_int ran[MAX_TASKS];
    atomic_int bad_worker;
    size_t fail_at[2]; /* tasks that fail (SIZE_MAX: none) */
    size_t fail_below; /* and tasks below this fail too */
    /* A barrier: tasks below `hold` wait until `hold` tasks are running. */
    size_t hold;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t holding;
    atomic_int worker_used[8];
} run;

static void run_init(run *r, size_t nworkers)
{
    memset(r, 0, sizeof(*r));
    r->nworkers = nworkers;
    r->fail_at[0] = r->fail_at[1] = SIZE_MAX;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
}

static void run_destroy(run *r)
{
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
}

static int task(void *ctx, size_t worker, size_t index, sg_error *err)
{
    run *r = ctx;
    if (worker >= r->nworkers || worker >= 8)
        atomic_store(&r->bad_worker, 1);
    else
        atomic_fetch_add(&r->worker_used[worker], 1);
    atomic_fetch_add(&r->ran[index], 1);
    if (index < r->hold) {
        pthread_mutex_lock(&r->lock);
        if (++r->holding == r->hold)
            pthread_cond_broadcast(&r->cond);
        while (r->holding < r->hold)
            pthread_cond_wait(&r->cond, &r->lock);
        pthread_mutex_unlock(&r->lock);
    }
    if (index == r->fail_at[0] || index == r->fail_at[1] || index < r->fail_below) {
        sg_error_set(err, SG_E_IO, "task %zu failed", index);
        sg_error_detail(err, "on worker %zu", worker);
        return SG_E_IO;
    }
    return 0;
}

START_TEST(test_every_task_once)
{
    for (size_t nworkers = 1; nworkers <= 4; nworkers++) {
        static run r;
        sg_error err = {0};
        run_init(&r, nworkers);
        ck_assert_int_eq(sg_workers_run(nworkers, MAX_TASKS, task, &r, &err), 0);
        for (size_t i = 0; i < MAX_TASKS; i++)
            ck_assert_msg(atomic_load(&r.ran[i]) == 1, "%zu workers: task %zu ran %d times",
                          nworkers, i, atomic_load(&r.ran[i]));
        ck_assert_int_eq(atomic_load(&r.bad_worker), 0);
        run_destroy(&r);
    }
}
END_TEST

/* Every worker runs concurrently: all of them are inside a task at once. */
START_TEST(test_workers_concurrent)
{
    for (size_t nworkers = 1; nworkers <= 4; nworkers++) {
        static run r;
        sg_error err = {0};
        run_init(&r, nworkers);
        r.hold = nworkers;
        ck_assert_int_eq(sg_workers_run(nworkers, 10, task, &r, &err), 0);
        for (size_t w = 0; w < nworkers; w++)
            ck_assert_msg(atomic_load(&r.worker_used[w]) > 0, "worker %zu of %zu unused", w,
                          nworkers);
        for (size_t i = 0; i < 10; i++)
            ck_assert_int_eq(atomic_load(&r.ran[i]), 1);
        run_destroy(&r);
    }
}
END_TEST

/* One worker runs the tasks in order, so the stop is exact. */
START_TEST(test_first_error_one_worker)
{
    static run r;
    sg_error err = {0};
    run_init(&r, 1);
    r.fail_at[0] = 2;
    r.fail_at[1] = 5;
    ck_assert_int_eq(sg_workers_run(1, 10, task, &r, &err), SG_E_IO);
    ck_assert_int_eq(err.code, SG_E_IO);
    ck_assert_str_eq(err.message, "task 2 failed");
    ck_assert_str_eq(err.detail, "on worker 0");
    for (size_t i = 0; i < 10; i++)
        ck_assert_int_eq(atomic_load(&r.ran[i]), i <= 2 ? 1 : 0);
    run_destroy(&r);
}
END_TEST

/* With several workers the failing task's error is returned whole; tasks
 * handed out before it have all run, none twice. */
START_TEST(test_error_many_workers)
{
    for (size_t nworkers = 1; nworkers <= 4; nworkers++) {
        static run r;
        sg_error err = {0};
        run_init(&r, nworkers);
        r.fail_at[0] = 17;
        ck_assert_int_eq(sg_workers_run(nworkers, MAX_TASKS, task, &r, &err), SG_E_IO);
        ck_assert_str_eq(err.message, "task 17 failed");
        ck_assert_ptr_nonnull(strstr(err.detail, "on worker "));
        for (size_t i = 0; i < MAX_TASKS; i++)
            ck_assert_int_le(atomic_load(&r.ran[i]), 1);
        for (size_t i = 0; i <= 17; i++)
            ck_assert_int_eq(atomic_load(&r.ran[i]), 1);
        run_destroy(&r);
    }
}
END_TEST

/* Every worker is inside a task that fails: once each has failed none may
 * take another task, so nothing after them runs. Which of them is first is
 * up to the scheduler; the one returned must be one of them. */
START_TEST(test_error_stops_the_rest)
{
    for (size_t nworkers = 2; nworkers <= 4; nworkers++) {
        static run r;
        sg_error err = {0};
        size_t failed_task = SIZE_MAX;
        run_init(&r, nworkers);
        r.hold = nworkers;
        r.fail_below = nworkers;
        ck_assert_int_eq(sg_workers_run(nworkers, MAX_TASKS, task, &r, &err), SG_E_IO);
        ck_assert_int_eq(sscanf(err.message, "task %zu failed", &failed_task), 1);
        ck_assert_uint_lt(failed_task, nworkers);
        for (size_t i = 0; i < MAX_TASKS; i++)
            ck_assert_msg(atomic_load(&r.ran[i]) == (i < nworkers ? 1 : 0),
                          "%zu workers: task %zu ran %d times", nworkers, i,
                          atomic_load(&r.ran[i]));
        run_destroy(&r);
    }
}
END_TEST

START_TEST(test_more_workers_than_tasks)
{
    static run r;
    sg_error err = {0};
    run_init(&r, 3);
    /* Only as many workers as tasks: indexes stay below the task count. */
    ck_assert_int_eq(sg_workers_run(8, 3, task, &r, &err), 0);
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(atomic_load(&r.ran[i]), 1);
    ck_assert_int_eq(atomic_load(&r.ran[3]), 0);
    ck_assert_int_eq(atomic_load(&r.bad_worker), 0);
    run_destroy(&r);
}
END_TEST

START_TEST(test_zero_tasks)
{
    static run r;
    sg_error err = {0};
    run_init(&r, 4);
    ck_assert_int_eq(sg_workers_run(4, 0, task, &r, &err), 0);
    ck_assert_int_eq(atomic_load(&r.ran[0]), 0);
    ck_assert_int_eq(sg_workers_run(0, 0, task, &r, &err), 0);
    ck_assert_int_eq(atomic_load(&r.ran[0]), 0);
    run_destroy(&r);
}
END_TEST

START_TEST(test_zero_workers)
{
    static run r;
    sg_error err = {0};
    run_init(&r, 1);
    ck_assert_int_eq(sg_workers_run(0, 5, task, &r, &err), 0);
    for (size_t i = 0; i < 5; i++)
        ck_assert_int_eq(atomic_load(&r.ran[i]), 1);
    run_destroy(&r);
}
END_TEST

START_TEST(test_nomem)
{
    static run r;
    sg_error err = {0};
    run_init(&r, 2);
    sg_mem_fail_after(0);
    ck_assert_int_eq(sg_workers_run(2, 5, task, &r, &err), SG_E_NOMEM);
    sg_mem_fail_reset();
    ck_assert_str_eq(err.message, "out of memory");
    ck_assert_int_eq(atomic_load(&r.ran[0]), 0);
    run_destroy(&r);
}
END_TEST

static Suite *workers_suite(void)
{
    Suite *s = suite_create("workers");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("every task once", test_every_task_once);
    CASE("workers concurrent", test_workers_concurrent);
    CASE("first error one worker", test_first_error_one_worker);
    CASE("error many workers", test_error_many_workers);
    CASE("error stops the rest", test_error_stops_the_rest);
    CASE("more workers than tasks", test_more_workers_than_tasks);
    CASE("zero tasks", test_zero_tasks);
    CASE("zero workers", test_zero_workers);
    CASE("nomem", test_nomem);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(workers_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
