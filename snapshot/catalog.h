/* What a snapshot copies, read inside the coordinator's transaction: the
 * tables that hold data (leaf partitions and plain tables, not partitioned
 * parents, temporary tables or extension members), their copied columns
 * (generated columns left out, as COPY FROM cannot take them), sequences with
 * their values, and populated materialized views. */
#ifndef SG_SNAPSHOT_CATALOG_H
#define SG_SNAPSHOT_CATALOG_H

#include <libpq-fe.h>
#include <stdint.h>

#include "common/error.h"

typedef struct sg_catalog_table {
    uint32_t oid;
    char *schema;
    char *name;
    char *qualified;   /* quoted "schema"."name" */
    char *select_list; /* quoted, comma-separated copied columns */
    char **column_names;
    char **column_types;
    size_t ncolumns;
    uint64_t blocks; /* relation size in blocks when the snapshot was taken */
} sg_catalog_table;

typedef struct sg_catalog_sequence {
    char *schema;
    char *name;
    int64_t last_value;
    int is_called;
} sg_catalog_sequence;

typedef struct sg_catalog {
    sg_catalog_table *tables;
    size_t ntables;
    sg_catalog_sequence *sequences;
    size_t nsequences;
    char **matviews; /* quoted names of populated materialized views, in OID order */
    size_t nmatviews;
    uint32_t block_size;
    char *database;
    char *system_identifier; /* NULL without the privilege to read it */
    char *lsn;
} sg_catalog;

/* Reads the catalog on a connection inside the snapshot transaction. */
int sg_catalog_read(sg_catalog **out, PGconn *conn, sg_error *err);

/* Takes ACCESS SHARE locks on every table (the transaction's lock_timeout
 * applies), so concurrent DDL cannot break the copy, then reads their sizes. */
int sg_catalog_lock_tables(const sg_catalog *catalog, PGconn *conn, sg_error *err);

void sg_catalog_free(sg_catalog *catalog);

#endif
