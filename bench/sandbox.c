/* A tiny driver for bench/drill.sh: creates and destroys sandboxes one after
 * the other through the sandbox interface, the way a drill does, and prints
 * how long each took to be ready and to be gone.
 *
 *   sg_bench_sandbox --driver local|docker [--count N] [--pg-major N] [--image IMAGE]
 *
 * "Ready" is sg_sandbox_create returning: the server accepts connections.
 * Nothing is run in the sandbox, so the times are the driver's own. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/interrupt.h"
#include "common/mem.h"
#include "restore/sandbox.h"

#define PROG "sg_bench_sandbox"
#define COUNT_MAX 1000

typedef struct bench_args {
    sg_sandbox_options sandbox;
    int count;
} bench_args;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " PROG " --driver local|docker [--count N] [--pg-major N] [--image IMAGE]\n"
            "Creates and destroys N sandboxes (default 1) one after the other, running\n"
            "PostgreSQL N (default 15), and prints per sandbox the seconds until its server\n"
            "accepted connections and the seconds its destruction took, then the medians.\n");
}

static int parse_int(int *out, const char *name, const char *value, long min, long max,
                     sg_error *err)
{
    char *end;
    long n;
    errno = 0;
    n = strtol(value, &end, 10);
    if (errno || *end || end == value || n < min || n > max)
        return sg_error_set(err, SG_E_USAGE, "invalid %s \"%s\": it takes %ld to %ld", name, value,
                            min, max);
    *out = (int)n;
    return 0;
}

static int parse_args(bench_args *a, int argc, char **argv, sg_error *err)
{
    a->count = 1;
    a->sandbox.pg_major = 15;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strncmp(arg, "--", 2) != 0)
            return sg_error_set(err, SG_E_USAGE, "unexpected argument \"%s\"", arg);
        if (strcmp(arg, "--driver") != 0 && strcmp(arg, "--count") != 0 &&
            strcmp(arg, "--pg-major") != 0 && strcmp(arg, "--image") != 0)
            return sg_error_set(err, SG_E_USAGE, "unknown option %s", arg);
        if (!value)
            return sg_error_set(err, SG_E_USAGE, "option %s needs a value", arg);
        if (strcmp(arg, "--driver") == 0)
            a->sandbox.driver = value;
        else if (strcmp(arg, "--image") == 0)
            a->sandbox.image = value;
        else if (strcmp(arg, "--count") == 0)
            rc = parse_int(&a->count, arg, value, 1, COUNT_MAX, err);
        else
            rc = parse_int(&a->sandbox.pg_major, arg, value, 10, 99, err);
        if (rc < 0)
            return rc;
        i++;
    }
    if (!a->sandbox.driver)
        return sg_error_set(err, SG_E_USAGE, "--driver is required");
    if (sg_sandbox_check_driver(a->sandbox.driver, err) < 0) {
        /* Its hint names shardgate's --sandbox option; the usage that
         * follows names ours. */
        err->hint[0] = '\0';
        return SG_E_USAGE;
    }
    return 0;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v in place. */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), compare_doubles);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    bench_args a = {0};
    sg_sandbox *sandbox = NULL;
    sg_error err = {0};
    double *ready = NULL, *destroyed = NULL;
    char run_id[32];
    int rc;

    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if ((rc = parse_args(&a, argc, argv, &err)) < 0) {
        sg_error_print(&err, PROG, stderr);
        usage(stderr);
        return sg_error_exit_status(rc);
    }
    /* Labels and markers as a drill's, so `shardgate sandbox gc` recognises
     * what a killed benchmark left behind. */
    snprintf(run_id, sizeof(run_id), "bench-%ld", (long)getpid());
    a.sandbox.run_id = run_id;
    a.sandbox.shard = "bench";
    sg_interrupt_install();
    ready = sg_calloc((size_t)a.count, sizeof(*ready));
    destroyed = sg_calloc((size_t)a.count, sizeof(*destroyed));
    if (!ready || !destroyed) {
        rc = sg_error_set(&err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    printf("%-8s %10s %12s\n", "sandbox", "ready_s", "destroyed_s");
    for (int i = 0; i < a.count; i++) {
        double started = now_seconds();
        if ((rc = sg_sandbox_create(&sandbox, &a.sandbox, &err)) < 0) {
            sg_error_prefix(&err, "%s sandbox %d of %d", a.sandbox.driver, i + 1, a.count);
            goto done;
        }
        ready[i] = now_seconds() - started;
        started = now_seconds();
        sg_sandbox_destroy(sandbox);
        sandbox = NULL;
        destroyed[i] = now_seconds() - started;
        printf("%-8d %10.3f %12.3f\n", i + 1, ready[i], destroyed[i]);
        fflush(stdout);
        if ((rc = sg_interrupt_check(&err)) < 0)
            goto done;
    }
    printf("%-8s %10.3f %12.3f\n", "median", median(ready, a.count), median(destroyed, a.count));
done:
    sg_sandbox_destroy(sandbox);
    free(ready);
    free(destroyed);
    if (rc < 0)
        sg_error_print(&err, PROG, stderr);
    return sg_error_exit_status(rc);
}
