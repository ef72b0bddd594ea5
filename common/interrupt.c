#include "common/interrupt.h"

#include <signal.h>
#include <string.h>
#include <time.h>

#include "common/retry.h"

static volatile sig_atomic_t caught_signal;

static void on_signal(int signo)
{
    caught_signal = signo;
    /* The next one is not asked politely. */
    signal(signo, SIG_DFL);
}

void sg_interrupt_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: libpq and file I/O carry on; the loops poll the flag. */
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool sg_interrupted(void)
{
    return caught_signal != 0;
}

int sg_interrupt_check(sg_error *err)
{
    int signo = caught_signal;
    if (!signo)
        return 0;
    return sg_error_set(err, SG_E_INTERRUPTED, "interrupted by %s",
                        signo == SIGINT    ? "SIGINT"
                        : signo == SIGTERM ? "SIGTERM"
                                           : "a signal");
}

bool sg_interrupt_sleep_ms(uint64_t ms)
{
    uint64_t until = sg_monotonic_ms() + ms;
    while (!sg_interrupted() && sg_monotonic_ms() < until) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return !sg_interrupted();
}
