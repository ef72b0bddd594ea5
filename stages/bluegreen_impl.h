/* What the parts of the blue-green engine share: bluegreen.c drives the
 * steps, bluegreen_table.c reads the tables and works out how green's
 * columns come from blue's, bluegreen_copy.c copies and compares rows,
 * bluegreen_swap.c cuts over, swaps back and finalizes, bluegreen_state.c
 * keeps shardgate.bluegreen. */
#ifndef SG_STAGES_BLUEGREEN_IMPL_H
#define SG_STAGES_BLUEGREEN_IMPL_H

#include <stdarg.h>

#include "stages/apply_impl.h"
#include "stages/bluegreen.h"
#include "stages/bluegreen_sql.h"

/* ---- SQL text ---- */

/* A growing string; the first failure to grow sticks, and sg_bg_text_take
 * reports it, so that long statements are built without a check per piece. */
typedef struct sg_bg_text {
    char *data;
    size_t len, cap;
    bool failed;
} sg_bg_text;

void sg_bg_add(sg_bg_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The text (to free), or NULL with SG_E_NOMEM in err. */
char *sg_bg_text_take(sg_bg_text *t, sg_error *err);
void sg_bg_text_free(sg_bg_text *t);

/* "name" with embedded quotes doubled: every generated identifier is quoted,
 * so that names that need no quoting and names that do are treated alike. */
char *sg_bg_quote(const char *name);

/* "schema"."name", quoted as sg_bg_quote does; NULL when out of memory. */
char *sg_bg_qualify(const char *schema, const char *name);

/* ---- tables and how their columns map ---- */

typedef struct sg_bg_column {
    char *name, *type; /* type as format_type() gives it, schema-qualified */
    bool generated;    /* GENERATED ... STORED: computed by the table, never written */
    bool identity;
    bool identity_always; /* GENERATED ALWAYS AS IDENTITY: UPDATE may only set it to DEFAULT */
} sg_bg_column;

typedef struct sg_bg_rel {
    char *schema, *name; /* unquoted */
    char *qualified;     /* quoted schema.name */
    sg_bg_column *columns;
    size_t ncolumns;
    char **key; /* the primary key's columns (or those of a usable unique index), in order */
    size_t nkey;
    char *key_constraint; /* the primary key constraint or unique index that is the key */
} sg_bg_rel;

/* How one column of a target table is computed from a row of the source,
 * which is in scope under an alias. */
typedef struct sg_bg_item {
    const sg_bg_column *target;
    const sg_bg_column *source; /* the column it comes from (NULL: a fill of a new one) */
    const char *fill; /* when set, the value: an expression over the source row (unqualified) */
    bool cast;        /* source's type differs from the target's */
} sg_bg_item;

typedef struct sg_bg_map {
    sg_bg_item *items; /* the target columns written, in the target's order */
    size_t count;
    size_t *key; /* items that are the target's key, in key order */
    size_t nkey;
} sg_bg_map;

/* The item as SQL over alias (a fill is written as it is: use it only where
 * the source row is the one relation in scope). */
void sg_bg_item_sql(sg_bg_text *t, const sg_bg_item *item, const char *alias);

/* ---- the engine ---- */

typedef struct sg_bg {
    sg_apply_engine *e;
    sg_apply_step *step;
    const sg_migration *m;
    bool down; /* a down section run as a change of its own */
    const sg_migration_section *section;
    sg_bluegreen_script *script;
    /* the down section's fills, which compute the old shape's columns from
     * the new one for the rollback window (NULL for a down change) */
    sg_bluegreen_script *back_script;
    char *schema, *table;                /* the table, unquoted */
    char new_schema[64], old_schema[64]; /* shardgate_new_V, shardgate_old_V */
    char *live, *shadow, *kept; /* quoted: schema.table, new_schema.table, old_schema.table */
    sg_bluegreen_state state;   /* as recorded; step NONE before the prepare */
    sg_bg_rel blue, green;      /* the old shape and the new one, wherever they are */
    sg_bg_map forward;          /* green from blue */
    sg_bg_map back;             /* blue from green, for the rollback window */
} sg_bg;

/* A step was committed: tells the run's observer, then, for tests,
 * SHARDGATE_FAULT=bluegreen-STEP kills the process right there, as a crash
 * would (STEP a step's name, or "chunk" after the first copy chunk). */
void sg_bg_step_done(sg_bg *b, sg_bluegreen_step step, double lock_ms);
void sg_bg_fault(const char *step);

/* Runs SQL of the engine on its connection, with the lock watch (so that a
 * statement waiting for a lock names who holds it). The _taken form frees
 * sql, and passes on the error of the call that failed to build it (NULL). */
int sg_bg_run(sg_bg *b, const char *sql, sg_error *err);
int sg_bg_run_taken(sg_bg *b, char *sql, sg_error *err);

/* Reads a relation's columns and key. */
int sg_bg_rel_load(sg_bg_rel *rel, PGconn *conn, const char *schema, const char *name,
                   sg_error *err);
void sg_bg_rel_clear(sg_bg_rel *rel);
/* The column of rel named name, or NULL. */
const sg_bg_column *sg_bg_rel_column(const sg_bg_rel *rel, const char *name);

/* Reads blue (into b->blue) and says why it cannot be changed this way:
 * SG_E_NOT_FOUND when it is not there, SG_E_USAGE naming the object in the
 * way; checked before anything is created. */
int sg_bg_check_table(sg_bg *b, sg_error *err);
/* The part of it that may change while a change runs (a view made since),
 * checked again under the cut-over's lock. */
int sg_bg_check_obstacles(sg_bg *b, sg_error *err);

/* Works out b->forward and b->back from b->blue, b->green and the script's
 * fills and renames. A key column of either side that cannot be mapped is
 * SG_E_USAGE. */
int sg_bg_maps_build(sg_bg *b, sg_error *err);
void sg_bg_map_clear(sg_bg_map *map);

/* INSERT INTO target ... SELECT from `rows` (a relation, under alias b)
 * through map, on conflict of the key doing nothing or updating the row. */
char *sg_bg_upsert_sql(const sg_bg_map *map, const char *target, const char *rows,
                       bool update_existing, sg_error *err);

/* SQL that creates the sync triggers on `source` writing to `target` through
 * map (functions in fn_schema, triggers named shardgate_<tag>_*), and the
 * SQL that drops them. direction is "forward" or "back", as errors are
 * recorded. */
char *sg_bg_triggers_sql(const sg_bg *b, const sg_bg_map *map, const char *source,
                         const char *target, const char *fn_schema, const char *direction,
                         sg_error *err);
char *sg_bg_drop_triggers_sql(const sg_bg *b, const char *source, const char *direction,
                              sg_error *err);

/* The backfill: copies blue's rows into green chunk by chunk from the
 * recorded last key, recording progress with each chunk. */
int sg_bg_backfill(sg_bg *b, sg_error *err);

/* Compares blue with green (or, after the cut-over, the kept table with the
 * live one) in one snapshot: rows and digests over the mapped columns; a
 * difference is SG_E_MISMATCH with the keys of some differing rows. */
int sg_bg_compare(sg_bg *b, bool after_cutover, sg_error *err);

/* The errors the sync triggers recorded for this change and direction:
 * SG_E_MISMATCH naming the first, 0 when there are none. */
int sg_bg_check_sync_errors(sg_bg *b, const char *direction, sg_error *err);

int sg_bg_cut_over(sg_bg *b, sg_error *err);
/* Validates the foreign keys to the live table that a swap re-created NOT
 * VALID (again after a run that stopped before it could). */
int sg_bg_validate_foreign_keys(sg_bg *b, sg_error *err);
int sg_bg_swap_back(sg_bg *b, sg_error *err);
int sg_bg_finalize(sg_bg *b, sg_error *err);
/* Drops green, its schema and the sync triggers: a change rolled back before
 * its cut-over. */
int sg_bg_abandon(sg_bg *b, sg_error *err);

/* ---- shardgate.bluegreen ---- */

int sg_bg_state_load(sg_bg *b, sg_error *err);
/* Records the step reached (the row is created with the first). */
int sg_bg_state_set(sg_bg *b, sg_bluegreen_step step, sg_error *err);
int sg_bg_state_delete(sg_bg *b, sg_error *err);
void sg_bluegreen_state_clear(sg_bluegreen_state *state);

/* The entry points, called for a plan's step (apply_file.c). */
int sg_bluegreen_apply(sg_apply_engine *e, sg_apply_step *step, sg_error *err);
int sg_bluegreen_revert(sg_apply_engine *e, sg_apply_step *step, sg_error *err);
int sg_bluegreen_finalize(sg_apply_engine *e, sg_apply_step *step, sg_error *err);

#endif
