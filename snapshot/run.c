/* The run shared by readers and sealers: first error, the bounded queue of
 * plain chunks, and the pool of chunk buffers. */
#include "snapshot/run.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/interrupt.h"
#include "common/mem.h"
#include "common/pg.h"

void sg_run_fail(sg_run *r, const sg_error *e)
{
    bool first = false;
    pthread_mutex_lock(&r->lock);
    if (!atomic_load(&r->failed)) {
        r->error = *e;
        atomic_store(&r->failed, 1);
        first = true;
    }
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
    /* Stop every COPY in flight now rather than draining it. Outside the
     * lock: a cancel connects to the server, which may be slow to answer.
     * The handles are set before any thread starts and never change. */
    for (size_t i = 0; first && i < r->ncancels; i++) {
        char buf[256];
        if (r->cancels[i])
            PQcancel(r->cancels[i], buf, sizeof(buf));
    }
}

int sg_run_push_chunk(sg_run *r, sg_plain_chunk *c, sg_error *err)
{
    pthread_mutex_lock(&r->lock);
    while (r->queue_len == r->queue_cap && !atomic_load(&r->failed))
        pthread_cond_wait(&r->changed, &r->lock);
    if (atomic_load(&r->failed)) {
        pthread_mutex_unlock(&r->lock);
        return sg_error_set(err, SG_E_INTERRUPTED, "snapshot stopped");
    }
    r->queue[(r->queue_head + r->queue_len++) % r->queue_cap] = c;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

sg_plain_chunk *sg_run_pop_chunk(sg_run *r)
{
    sg_plain_chunk *c = NULL;
    pthread_mutex_lock(&r->lock);
    while (r->queue_len == 0 && !r->readers_done && !atomic_load(&r->failed))
        pthread_cond_wait(&r->changed, &r->lock);
    if (r->queue_len > 0 && !atomic_load(&r->failed)) {
        c = r->queue[r->queue_head];
        r->queue_head = (r->queue_head + 1) % r->queue_cap;
        r->queue_len--;
        pthread_cond_broadcast(&r->changed);
    }
    pthread_mutex_unlock(&r->lock);
    return c;
}

void sg_plain_chunk_free(sg_plain_chunk *c)
{
    if (c) {
        sg_buf_free(&c->data);
        free(c);
    }
}

sg_plain_chunk *sg_plain_chunk_new(size_t table, size_t capacity)
{
    sg_plain_chunk *c = sg_calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->table = table;
    sg_digest_init(&c->digest);
    if (capacity && sg_buf_reserve(&c->data, capacity, NULL) < 0) {
        free(c);
        return NULL;
    }
    return c;
}

/* Chunk buffers go round between readers and sealers instead of being
 * allocated for every chunk: a fresh 32 MiB buffer costs a page fault and a
 * zeroed page for every 4 KiB, a tenth of the client's time. There are never
 * more than the readers, the queue and the sealers hold. */
sg_plain_chunk *sg_run_take_chunk(sg_run *r, size_t table)
{
    sg_plain_chunk *c = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->nspare > 0)
        c = r->spare[--r->nspare];
    pthread_mutex_unlock(&r->lock);
    if (!c)
        return sg_plain_chunk_new(table, r->opts->chunk_size + 65536);
    /* Emptied only now: a spare keeps its length so that freeing wipes it. */
    c->data.len = 0;
    c->table = table;
    sg_digest_init(&c->digest);
    return c;
}

void sg_run_release_chunk(sg_run *r, sg_plain_chunk *c)
{
    /* A buffer that grew for a huge row goes back to the system. */
    if (c->data.cap > 2 * r->opts->chunk_size + 65536) {
        sg_plain_chunk_free(c);
        return;
    }
    pthread_mutex_lock(&r->lock);
    if (r->nspare < r->spare_cap) {
        r->spare[r->nspare++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    sg_plain_chunk_free(c);
}
