/* Allocation with a test hook: every allocation in the program goes through
 * these, so tests can make the N-th one fail and check the error path. */
#ifndef SG_COMMON_MEM_H
#define SG_COMMON_MEM_H

#include <stddef.h>

void *sg_malloc(size_t size);
void *sg_calloc(size_t count, size_t size);
void *sg_realloc(void *ptr, size_t size);
char *sg_strdup(const char *s);
char *sg_strndup(const char *s, size_t n);
/* printf into a new string; NULL on allocation failure. */
char *sg_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Grows an array that is appended to one element at a time from empty, so
 * it needs no capacity field: the capacity is the next power of two at or
 * above count, doubled whenever count reaches one. Call before storing
 * element `count`; returns the (possibly moved) array, or NULL with the
 * array untouched. */
void *sg_array_grow(void *array, size_t count, size_t size);

/* Tests only: the next `after` allocations succeed, then every one fails
 * until sg_mem_fail_reset(). Counting is process-wide and thread-safe. */
void sg_mem_fail_after(long after);
void sg_mem_fail_reset(void);

#endif
