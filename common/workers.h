/* A fixed pool of threads over a list of tasks: each task runs once, the
 * first error (or an interrupting signal) stops the handing out of further
 * tasks and is the result. */
#ifndef SG_COMMON_WORKERS_H
#define SG_COMMON_WORKERS_H

#include <stddef.h>

#include "common/error.h"

/* Runs task `task` on worker `worker` (0..nworkers-1: index per-worker state
 * such as a connection with it). */
typedef int (*sg_task_fn)(void *ctx, size_t worker, size_t task, sg_error *err);

int sg_workers_run(size_t nworkers, size_t ntasks, sg_task_fn fn, void *ctx, sg_error *err);

#endif
