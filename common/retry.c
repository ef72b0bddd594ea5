#include "common/retry.h"

#include <time.h>

uint64_t sg_retry_delay_ms(const sg_retry_policy *policy, unsigned retry, uint32_t random)
{
    uint64_t ceiling = policy->base_ms;
    /* Doubling stops at the cap, so the shift never overflows. */
    for (unsigned i = 0; i < retry && ceiling < policy->cap_ms; i++)
        ceiling *= 2;
    if (ceiling > policy->cap_ms)
        ceiling = policy->cap_ms;
    return ceiling ? (uint64_t)random % (ceiling + 1) : 0;
}

bool sg_retry_allowed(const sg_retry_policy *policy, unsigned attempts, uint64_t elapsed_ms,
                      uint64_t delay_ms)
{
    return attempts < policy->max_attempts && elapsed_ms + delay_ms < policy->budget_ms;
}

uint64_t sg_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
