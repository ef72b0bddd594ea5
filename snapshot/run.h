/* The snapshot engine's shared state, for its parts only: the run, the
 * bounded queue of plain chunks between readers and sealers, the pool of
 * chunk buffers, and the reader and sealer threads (snapshot/reader.c,
 * snapshot/sealer.c). */
#ifndef SG_SNAPSHOT_RUN_H
#define SG_SNAPSHOT_RUN_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/chunk.h"
#include "common/digest.h"
#include "common/error.h"
#include "common/keys.h"
#include "common/layout.h"
#include "common/manifest.h"
#include "common/store.h"
#include "snapshot/catalog.h"
#include "snapshot/pack.h"
#include "snapshot/snapshot.h"

/* The table index of the chunk that holds the schema dump. */
#define SG_SCHEMA_TABLE SIZE_MAX

/* A range of one table for one reader: blocks [first, end), end 0 = to the end. */
typedef struct sg_copy_task {
    size_t table;
    uint64_t first_block, end_block;
    bool whole;
} sg_copy_task;

/* Row-aligned plain COPY text on its way from a reader to a sealer. */
typedef struct sg_plain_chunk {
    size_t table; /* SG_SCHEMA_TABLE for the schema dump */
    uint32_t seq;
    sg_buf data;
    sg_digest digest;
} sg_plain_chunk;

typedef struct sg_chunk_record {
    size_t table;
    sg_manifest_chunk where;
} sg_chunk_record;

typedef struct sg_pack_record {
    uint32_t number;
    uint64_t size;
    uint8_t sha256[32];
} sg_pack_record;

typedef struct sg_run {
    const sg_snapshot_options *opts;
    sg_store *store;
    sg_catalog *catalog;
    char id[SG_SNAPSHOT_ID_MAX];
    char shard[SG_SHARD_NAME_MAX + 1];
    uint8_t data_key[SG_DATA_KEY_BYTES];
    char export_name[128];

    sg_copy_task *tasks;
    size_t ntasks;
    atomic_size_t next_task;
    atomic_uint *next_seq; /* per table */
    atomic_uint next_pack;

    /* The bounded queue between readers and sealers: its capacity is what
     * bounds memory, whatever the size of the database. */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    sg_plain_chunk **queue;
    size_t queue_head, queue_len, queue_cap;
    bool readers_done;

    /* Results and the first error, under lock. */
    sg_plain_chunk **spare; /* buffers to reuse */
    size_t nspare, spare_cap;

    sg_chunk_record *records;
    size_t nrecords;
    sg_pack_record *packs;
    size_t npacks;
    atomic_int failed;
    sg_error error;
    PGcancel **cancels;
    size_t ncancels;
} sg_run;

typedef struct sg_reader {
    sg_run *r;
    PGconn *conn;
    sg_plain_chunk *chunk;
    size_t table;
    pthread_t thread;
} sg_reader;

typedef struct sg_sealer {
    sg_run *r;
    sg_chunk_sealer *zs;
    sg_pack_writer *pack;
    uint32_t pack_number;
    pthread_t thread;
} sg_sealer;

/* Records the first error, stops the queue and cancels every COPY. */
void sg_run_fail(sg_run *r, const sg_error *e);

/* Queues a chunk for the sealers, waiting while the queue is full;
 * SG_E_INTERRUPTED once the run has failed (the chunk stays the caller's). */
int sg_run_push_chunk(sg_run *r, sg_plain_chunk *c, sg_error *err);

/* The next chunk, or NULL when the readers are done or the run failed. */
sg_plain_chunk *sg_run_pop_chunk(sg_run *r);

sg_plain_chunk *sg_plain_chunk_new(size_t table, size_t capacity);
void sg_plain_chunk_free(sg_plain_chunk *c);

/* A chunk buffer from the pool (or a new one) for `table`, and back. */
sg_plain_chunk *sg_run_take_chunk(sg_run *r, size_t table);
void sg_run_release_chunk(sg_run *r, sg_plain_chunk *c);

/* Thread bodies: copy tasks into chunks; seal chunks into packs. */
void *sg_reader_main(void *arg);
void *sg_sealer_main(void *arg);

#endif
