#include "common/workers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common/interrupt.h"
#include "common/mem.h"

typedef struct pool {
    sg_task_fn fn;
    void *ctx;
    size_t ntasks;
    atomic_size_t next;
    atomic_int failed;
    pthread_mutex_t lock;
    sg_error error;
} pool;

typedef struct worker {
    pool *p;
    size_t index;
    pthread_t thread;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    pool *p = w->p;
    size_t task;
    while (!atomic_load(&p->failed) && (task = atomic_fetch_add(&p->next, 1)) < p->ntasks) {
        sg_error err = {0};
        if (sg_interrupt_check(&err) < 0 || p->fn(p->ctx, w->index, task, &err) < 0) {
            pthread_mutex_lock(&p->lock);
            if (!atomic_load(&p->failed)) {
                p->error = err;
                atomic_store(&p->failed, 1);
            }
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

int sg_workers_run(size_t nworkers, size_t ntasks, sg_task_fn fn, void *ctx, sg_error *err)
{
    pool p = {.fn = fn, .ctx = ctx, .ntasks = ntasks};
    worker *workers;
    size_t started = 0;
    if (nworkers > ntasks)
        nworkers = ntasks ? ntasks : 1;
    if (!(workers = sg_calloc(nworkers, sizeof(*workers))))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    pthread_mutex_init(&p.lock, NULL);
    for (; started < nworkers; started++) {
        workers[started].p = &p;
        workers[started].index = started;
        if (pthread_create(&workers[started].thread, NULL, worker_main, &workers[started]) != 0)
            break;
    }
    /* If no thread could start, run the work here rather than fail. */
    if (started == 0) {
        workers[0].p = &p;
        worker_main(&workers[0]);
    }
    for (size_t i = 0; i < started; i++)
        pthread_join(workers[i].thread, NULL);
    pthread_mutex_destroy(&p.lock);
    free(workers);
    if (atomic_load(&p.failed)) {
        if (err)
            *err = p.error;
        return p.error.code;
    }
    return 0;
}
