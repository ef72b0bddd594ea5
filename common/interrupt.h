/* SIGINT and SIGTERM: the first one asks every long loop to stop at its next
 * check and clean up (nothing half-written is left in a store); a second one
 * ends the process at once. */
#ifndef SG_COMMON_INTERRUPT_H
#define SG_COMMON_INTERRUPT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

/* Installs the handlers (the command line does, once). */
void sg_interrupt_install(void);

bool sg_interrupted(void);

/* 0, or SG_E_INTERRUPTED naming the signal once one has arrived. */
int sg_interrupt_check(sg_error *err);

/* Sleeps ms, waking every 20 ms to look for an interrupt; false when one
 * has arrived (then at once). */
bool sg_interrupt_sleep_ms(uint64_t ms);

#endif
