/* Readers: each owns a connection in the exported snapshot, takes copy tasks
 * (a table or a TID range of one), and cuts the COPY output into row-aligned,
 * digested chunks for the sealers. */
#include "snapshot/run.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/interrupt.h"
#include "common/mem.h"
#include "common/pg.h"

static int hand_off(sg_reader *rd, sg_error *err)
{
    sg_run *r = rd->r;
    sg_plain_chunk *c = rd->chunk;
    rd->chunk = NULL;
    c->seq = atomic_fetch_add(&r->next_seq[c->table], 1);
    if (sg_run_push_chunk(r, c, err) < 0) {
        sg_plain_chunk_free(c);
        return err->code;
    }
    return 0;
}

static int on_rows(void *ctx, const char *data, size_t len, sg_error *err)
{
    sg_reader *rd = ctx;
    sg_run *r = rd->r;
    int rc;
    if (atomic_load(&r->failed))
        return sg_error_set(err, SG_E_INTERRUPTED, "snapshot stopped");
    if ((rc = sg_interrupt_check(err)) < 0) {
        sg_run_fail(r, err);
        return rc;
    }
    if (!rd->chunk && !(rd->chunk = sg_run_take_chunk(r, rd->table)))
        return sg_error_set(err, SG_E_NOMEM, "out of memory for a chunk");
    if (sg_digest_copy_text(&rd->chunk->digest, data, len) != len)
        return sg_error_set(err, SG_E_DB, "server sent a COPY row without a line end");
    if ((rc = sg_buf_append(&rd->chunk->data, data, len, err)) < 0)
        return rc;
    if (rd->chunk->data.len >= r->opts->chunk_size)
        return hand_off(rd, err);
    return 0;
}

static char *task_sql(sg_run *r, const sg_copy_task *t)
{
    const sg_catalog_table *tab = &r->catalog->tables[t->table];
    /* The table form skips the executor's projection, a measurable saving
     * of server CPU; it copies no child rows, like ONLY. Without columns it
     * would copy generated ones, so that case keeps the query form. */
    if (t->whole && tab->ncolumns > 0)
        return sg_asprintf("COPY %s (%s) TO STDOUT", tab->qualified, tab->select_list);
    if (t->whole)
        return sg_asprintf("COPY (SELECT FROM ONLY %s) TO STDOUT", tab->qualified);
    if (t->end_block == 0)
        return sg_asprintf("COPY (SELECT %s FROM ONLY %s WHERE ctid >= '(%" PRIu64
                           ",0)'::pg_catalog.tid) TO STDOUT",
                           tab->select_list, tab->qualified, t->first_block);
    return sg_asprintf("COPY (SELECT %s FROM ONLY %s WHERE ctid >= '(%" PRIu64
                       ",0)'::pg_catalog.tid AND ctid < '(%" PRIu64
                       ",0)'::pg_catalog.tid) TO STDOUT",
                       tab->select_list, tab->qualified, t->first_block, t->end_block);
}

/* A worker locks each table it copies with NOWAIT, as pg_dump's workers do:
 * if DDL asked for an ACCESS EXCLUSIVE lock after the coordinator locked the
 * table, a waiting worker would queue behind it while it waits for the
 * coordinator, which waits for the worker: a deadlock no server can see. */
static int lock_for_copy(sg_reader *rd, const sg_catalog_table *tab, sg_error *err)
{
    char *sql = sg_asprintf("LOCK TABLE %s IN ACCESS SHARE MODE NOWAIT", tab->qualified);
    int rc;
    if (!sql)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    rc = sg_pg_exec(rd->conn, sql, err);
    free(sql);
    if (rc < 0 && strstr(err->detail, "SQLSTATE 55P03")) {
        sg_error_set(err, SG_E_DB,
                     "cannot copy table %s: another session is waiting for an exclusive lock on it",
                     tab->qualified);
        sg_error_detail(err, "DDL (ALTER TABLE, DROP, TRUNCATE, ...) on the table began after the "
                             "snapshot locked it; waiting for it would deadlock the snapshot");
        sg_error_hint(err, "take the snapshot again once the DDL is done");
    }
    return rc;
}

void *sg_reader_main(void *arg)
{
    sg_reader *rd = arg;
    sg_run *r = rd->r;
    sg_error err = {0};
    size_t i;
    while (!atomic_load(&r->failed) && (i = atomic_fetch_add(&r->next_task, 1)) < r->ntasks) {
        const sg_copy_task *t = &r->tasks[i];
        char *sql = task_sql(r, t);
        int rc;
        if (!sql) {
            sg_error_set(&err, SG_E_NOMEM, "out of memory");
            sg_run_fail(r, &err);
            break;
        }
        rd->table = t->table;
        rc = lock_for_copy(rd, &r->catalog->tables[t->table], &err);
        /* A cancel that arrived between the lock and the COPY was lost. */
        if (rc == 0 && atomic_load(&r->failed))
            rc = sg_error_set(&err, SG_E_INTERRUPTED, "snapshot stopped");
        if (rc == 0)
            rc = sg_pg_copy_out(rd->conn, sql, on_rows, rd, &err);
        free(sql);
        if (rc == 0 && rd->chunk && rd->chunk->data.len > 0)
            rc = hand_off(rd, &err);
        sg_plain_chunk_free(rd->chunk);
        rd->chunk = NULL;
        if (rc < 0) {
            if (rc != SG_E_INTERRUPTED && !strstr(err.message, "cannot copy table"))
                sg_error_prefix(&err, "copying table %s", r->catalog->tables[t->table].qualified);
            sg_run_fail(r, &err);
            break;
        }
    }
    return NULL;
}
