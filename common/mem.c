#include "common/mem.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* -1: never fail. Otherwise the number of allocations still allowed. */
static atomic_long fail_budget = -1;

static int should_fail(void)
{
    long budget = atomic_load(&fail_budget);
    while (budget >= 0) {
        if (budget == 0)
            return 1;
        if (atomic_compare_exchange_weak(&fail_budget, &budget, budget - 1))
            return 0;
    }
    return 0;
}

void sg_mem_fail_after(long after)
{
    atomic_store(&fail_budget, after);
}

void sg_mem_fail_reset(void)
{
    atomic_store(&fail_budget, -1);
}

void *sg_malloc(size_t size)
{
    return should_fail() ? NULL : malloc(size ? size : 1);
}

void *sg_calloc(size_t count, size_t size)
{
    return should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
}

void *sg_realloc(void *ptr, size_t size)
{
    return should_fail() ? NULL : realloc(ptr, size ? size : 1);
}

void *sg_array_grow(void *array, size_t count, size_t size)
{
    size_t cap;
    if (count & (count - 1))
        return array;
    cap = count ? count * 2 : 1;
    if (cap > SIZE_MAX / size)
        return NULL;
    return sg_realloc(array, cap * size);
}

char *sg_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *copy = sg_malloc(len + 1);
    if (copy) {
        memcpy(copy, s, len);
        copy[len] = '\0';
    }
    return copy;
}

char *sg_strdup(const char *s)
{
    return sg_strndup(s, strlen(s));
}

char *sg_asprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    int len;
    char *out;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    out = len < 0 ? NULL : sg_malloc((size_t)len + 1);
    if (out)
        vsnprintf(out, (size_t)len + 1, fmt, ap2);
    va_end(ap2);
    return out;
}
