/* When to try a failed request again: exponential backoff with full jitter
 * (each delay uniformly random between zero and base * 2^attempt, capped),
 * within a bounded number of attempts and a bounded total time. Full jitter
 * spreads the retries of many clients hit by the same outage, which is what
 * an S3 SlowDown asks for.
 * https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/ */
#ifndef SG_COMMON_RETRY_H
#define SG_COMMON_RETRY_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sg_retry_policy {
    uint64_t base_ms;   /* ceiling of the first delay */
    uint64_t cap_ms;    /* no delay is longer */
    uint64_t budget_ms; /* attempts stop once this much time has gone by */
    unsigned max_attempts;
} sg_retry_policy;

/* Base 100 ms, cap 20 s, 10 attempts, 300 s. */
#define SG_RETRY_POLICY_DEFAULT                                                                    \
    {                                                                                              \
        100, 20000, 300000, 10                                                                     \
    }

/* The delay before retry number `retry` (0 for the first retry), given a
 * uniformly random 32-bit value. */
uint64_t sg_retry_delay_ms(const sg_retry_policy *policy, unsigned retry, uint32_t random);

/* Whether attempt number `attempts` + 1 may start after waiting delay_ms,
 * elapsed_ms after the first attempt began. */
bool sg_retry_allowed(const sg_retry_policy *policy, unsigned attempts, uint64_t elapsed_ms,
                      uint64_t delay_ms);

/* Milliseconds on a monotonic clock. */
uint64_t sg_monotonic_ms(void);

#endif
