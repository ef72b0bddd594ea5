/* Blue-green migrations (mode=bluegreen) on a real server, under concurrent
 * writes from pgbench.
 *
 * Each test table T has a control table T_control of the same shape; the
 * load writes both with the same values in one transaction. After a change,
 * T must hold exactly the rows of T_control transformed the way the
 * migration says, so every write made before, during and after the change
 * is accounted for. Cases: type changes, a computed NOT NULL column, a
 * widened primary key with key-changing updates, revert inside the rollback
 * window and after finalize, a runner killed after each step and resumed, a
 * table without a primary key, a lock held at cut-over, and foreign keys on
 * both sides of the table. */
#include "tests/harness/cli.h"
#include "tests/harness/load.h"
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <check.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { EXIT_USAGE = 2, EXIT_BUSY = 19, EXIT_KILLED = 128 + SIGKILL };

enum {
    CLIENTS = 4,
    /* enough for a backfill of a few seconds in 50 chunks */
    ROWS = 100000,
    /* for the cases that run the engine several times */
    SMALL_ROWS = 20000,
    POLL_MS = 50,
    POLL_LIMIT = 1200,        /* a minute */
    RUNNER_POLL_LIMIT = 3600, /* three minutes: only a hang takes that long */
    CASE_TIMEOUT = 300
};

static sgt_pg_server *pg;
static char root[] = "/tmp/sgt-bluegreen-XXXXXX";

static const char *const chunked[] = {"--chunk-rows", "2000", NULL};

/* A fresh database, an empty migrations directory, and the load on it. */
typedef struct fixture {
    char *db;
    char *dir;
    sgt_load *load;
} fixture;

static fixture setup(const char *name)
{
    /* the pid: each test, and each round of a loop test, is a process of its own */
    fixture f = {sgt_pg_create_db(pg, name), sgt_asprintf("%s/%s-%d", root, name, (int)getpid()),
                 NULL};
    ck_assert_int_eq(mkdir(f.dir, 0755), 0);
    return f;
}

static void teardown(fixture *f)
{
    sgt_load_stop(f->load);
    free(f->db);
    free(f->dir);
}

static void assert_contains(const char *text, const char *want)
{
    ck_assert_msg(text && strstr(text, want), "expected \"%s\" in:\n%s", want, text ? text : "");
}

static void assert_value(const fixture *f, const char *sql, const char *want)
{
    char *v = sgt_pg_value(f->db, sql);
    ck_assert_msg(v && strcmp(v, want) == 0, "%s: got %s, want %s", sql, v ? v : "NULL", want);
    free(v);
}

/* Fills argv with shardgate COMMAND --dsn DB --migrations DIR [extra...]. */
static void command_line(const char *argv[32], const fixture *f, const char *command,
                         const char *const extra[])
{
    size_t n = 0;
    argv[n++] = "shardgate";
    argv[n++] = command;
    argv[n++] = "--dsn";
    argv[n++] = f->db;
    argv[n++] = "--migrations";
    argv[n++] = f->dir;
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
}

/* Runs shardgate COMMAND with env added to the environment, asserts its
 * exit status, and returns its stderr (to free). */
static char *run(const fixture *f, const char *const env[], int want, const char *command,
                 const char *const extra[])
{
    const char *argv[32];
    sgt_result r;
    command_line(argv, f, command, extra);
    sgt_run(&r, argv, env);
    if (r.status != want) {
        /* Check's failure message has a size limit: all of it goes to stderr */
        fprintf(stderr, "shardgate %s stderr:\n%s\n", command, r.err);
        ck_abort_msg("shardgate %s exited %d, wanted %d; stderr ends:\n%s", command, r.status, want,
                     r.err_len > 2000 ? r.err + r.err_len - 2000 : r.err);
    }
    free(r.out);
    return r.err;
}

static void run_ok(const fixture *f, const char *command, const char *const extra[])
{
    free(run(f, NULL, 0, command, extra));
}

static char *run_fails(const fixture *f, int status, const char *command, const char *const extra[],
                       const char *const want[])
{
    const char *argv[32];
    command_line(argv, f, command, extra);
    return sgt_shardgate_fails(status, argv, want);
}

/* Polls sql until it returns true. An error counts as "not yet": the
 * registry's tables may not exist when polling starts. A runner given by
 * pid (with its output in dir) must still be running. */
static void wait_for(const fixture *f, const char *sql, pid_t runner, const char *dir)
{
    PGconn *c = PQconnectdb(f->db);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    for (int i = 0; i < POLL_LIMIT; i++) {
        PGresult *r = PQexec(c, sql);
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                  strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        PQclear(r);
        if (ok) {
            PQfinish(c);
            return;
        }
        int status;
        if (runner > 0 && waitpid(runner, &status, WNOHANG) == runner) {
            char *path = sgt_asprintf("%s/stderr", dir);
            char *log = sgt_read_file(path, NULL);
            ck_abort_msg("shardgate exited %d before: %s\nstderr:\n%.2000s",
                         WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), sql,
                         log ? log : "");
        }
        sgt_sleep_ms(POLL_MS);
    }
    PQfinish(c);
    ck_abort_msg("timed out waiting for: %s", sql);
}

/* Waits for a runner started with sgt_spawn() and returns its exit status.
 * One that has not ended after the limit is killed, so that a hung engine
 * fails this test instead of outliving it. */
static int wait_runner(pid_t runner, const char *dir)
{
    for (int i = 0; i < RUNNER_POLL_LIMIT; i++) {
        int status;
        if (waitpid(runner, &status, WNOHANG) == runner)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        sgt_sleep_ms(POLL_MS);
    }
    kill(runner, SIGKILL);
    sgt_wait(runner);
    char *path = sgt_asprintf("%s/stderr", dir);
    char *log = sgt_read_file(path, NULL);
    size_t len = log ? strlen(log) : 0;
    ck_abort_msg("shardgate had not ended after 3 minutes; its stderr ends:\n%s",
                 log ? log + (len > 2000 ? len - 2000 : 0) : "");
}

/* Until the server has ended every session of a runner that was killed:
 * the next one would find the migration lock held. */
static void wait_runner_gone(const fixture *f)
{
    wait_for(f,
             "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity"
             "  WHERE datname = current_database() AND application_name LIKE 'shardgate%')"
             " AND NOT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
             "  WHERE l.locktype = 'advisory' AND d.datname = current_database())",
             0, NULL);
}

/* Runs sql in a session of its own and asserts it fails with sqlstate. */
static void assert_fails_with(const fixture *f, const char *sql, const char *sqlstate)
{
    PGconn *c = PQconnectdb(f->db);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    ck_assert_msg(PQresultStatus(r) == PGRES_FATAL_ERROR && state && strcmp(state, sqlstate) == 0,
                  "%s: wanted SQLSTATE %s, got %s %s", sql, sqlstate, state ? state : "success",
                  PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

/* Asserts that query got returns exactly the rows of query want, duplicates
 * counted, and that there are some; shows a few differing rows if not. */
static void assert_same_rows(const fixture *f, const char *want, const char *got)
{
    char *sql = sgt_asprintf("SELECT (SELECT count(*) FROM (%s) w) || ' ' ||"
                             " (SELECT count(*) FROM (%s) g) || ' ' ||"
                             " (SELECT count(*) FROM ((%s) EXCEPT ALL (%s)) m) || ' ' ||"
                             " (SELECT count(*) FROM ((%s) EXCEPT ALL (%s)) x)",
                             want, got, want, got, got, want);
    char *v = sgt_pg_value(f->db, sql);
    long nwant = -1, ngot = -1, missing = -1, extra = -1;
    ck_assert_int_eq(sscanf(v ? v : "", "%ld %ld %ld %ld", &nwant, &ngot, &missing, &extra), 4);
    if (nwant == 0 || nwant != ngot || missing != 0 || extra != 0) {
        char *sample_sql =
            sgt_asprintf("SELECT coalesce((SELECT string_agg(m::text, ' ') FROM"
                         "  (SELECT * FROM ((%s) EXCEPT ALL (%s)) e LIMIT 5) m), '') || ' | ' ||"
                         " coalesce((SELECT string_agg(x::text, ' ') FROM"
                         "  (SELECT * FROM ((%s) EXCEPT ALL (%s)) e LIMIT 5) x), '')",
                         want, got, got, want);
        char *sample = sgt_pg_value(f->db, sample_sql);
        ck_abort_msg("%s\n  against %s:\n  %ld rows wanted, %ld got, %ld missing, %ld extra\n"
                     "  missing | extra: %s",
                     got, want, nwant, ngot, missing, extra, sample ? sample : "");
    }
    free(v);
    free(sql);
}

/* Columns of a table as "name type[ not null], ..." in their order. */
static void assert_shape(const fixture *f, const char *table, const char *want)
{
    char *sql = sgt_asprintf("SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod)"
                             " || CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', '"
                             " ORDER BY attnum) FROM pg_attribute WHERE attrelid = '%s'::regclass"
                             " AND attnum > 0 AND NOT attisdropped",
                             table);
    assert_value(f, sql, want);
    free(sql);
}

/* The names of a table's indexes and constraints, sorted, comma-separated. */
static void assert_names(const fixture *f, const char *table, const char *indexes,
                         const char *constraints)
{
    char *sql = sgt_asprintf("SELECT string_agg(c.relname, ',' ORDER BY c.relname)"
                             " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                             " WHERE i.indrelid = '%s'::regclass",
                             table);
    assert_value(f, sql, indexes);
    free(sql);
    sql = sgt_asprintf("SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint"
                       " WHERE conrelid = '%s'::regclass",
                       table);
    assert_value(f, sql, constraints);
    free(sql);
}

/* What a finished migrate leaves: the registry rows and the kept old table. */
static void assert_cut_over(const fixture *f, const char *old_table)
{
    assert_value(f, "SELECT status || ':' || mode FROM shardgate.migrations WHERE version = 1",
                 "applied:bluegreen");
    assert_value(f,
                 "SELECT step || ':' || (lock_ms >= 0) || ':' || (rows_copied > 0)"
                 " FROM shardgate.bluegreen WHERE version = 1",
                 "cut-over:true:true");
    char *sql = sgt_asprintf("SELECT to_regclass('%s') IS NOT NULL", old_table);
    assert_value(f, sql, "t");
    free(sql);
}

/* What a revert inside the rollback window leaves: no trace. */
static void assert_reverted(const fixture *f, const char *table)
{
    assert_value(f, "SELECT count(*) FROM pg_namespace WHERE nspname ~ '^shardgate_(new|old)_'",
                 "0");
    assert_value(f, "SELECT count(*) FROM shardgate.migrations WHERE version = 1", "0");
    char *sql = sgt_asprintf(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = '%s'::regclass AND NOT tgisinternal",
        table);
    assert_value(f, sql, "0");
    free(sql);
}

/* items: a key from the sequence items_key (which it owns), an index, and
 * rows rows; items_control: the same rows, indexed alike so the load's
 * writes by key are as cheap on both. */
static fixture with_items(const char *name, int rows)
{
    fixture f = setup(name);
    char *sql =
        sgt_asprintf("CREATE SEQUENCE items_key START %d;"
                     "CREATE TABLE items (id int DEFAULT nextval('items_key') PRIMARY KEY,"
                     " qty int NOT NULL, price int NOT NULL, name text NOT NULL);"
                     "ALTER SEQUENCE items_key OWNED BY items.id;"
                     "CREATE INDEX items_name ON items (name);"
                     "CREATE TABLE items_control (LIKE items INCLUDING INDEXES);"
                     "INSERT INTO items SELECT g, g %% 1000 + 1, g %% 9973 + 1, 'item ' || g"
                     " FROM generate_series(1, %d) g;"
                     "INSERT INTO items_control SELECT * FROM items;"
                     "ANALYZE items, items_control",
                     rows + 1, rows);
    sgt_pg_exec(f.db, sql);
    free(sql);
    return f;
}

/* What the load on items does besides inserts, updates and deletes. */
enum {
    /* moves rows to new keys: only the cases about keys use it, so that a
     * fault in key handling does not hide what the others test */
    LOAD_MOVES = 1,
    /* writes total = qty * price once items has that column, as the
     * application of the computed-column case would */
    LOAD_TOTAL = 2
};

#define INSERT_ITEMS                                                                               \
    "INSERT INTO items (id, qty, price, name) VALUES (:nk, :q, :p, 'new ' || :nk);\n"
/* An update or delete of items and of its control by one statement: one
 * snapshot for both, so a row another client is inserting is either in
 * both or in neither (two statements could see it only in the second). */
#define UPDATE_ITEMS                                                                               \
    "WITH u AS (UPDATE items SET qty = :q, price = :p, name = 'upd ' || :q WHERE id = :k"          \
    " RETURNING id) "
#define UPDATE_CONTROL                                                                             \
    "UPDATE items_control SET qty = :q, price = :p, name = 'upd ' || :q"                           \
    " WHERE id IN (SELECT id FROM u);\n"

/* The load on items. Each transaction touches at most one existing row, in
 * items first, so clients never deadlock; keys reach a fifth past the
 * initial rows, so rows inserted during a test are updated and deleted too.
 * A write that misses its row does nothing. */
static void start_items_load(fixture *f, int rows, int flags)
{
    int maxkey = rows + rows / 5;
    /* The lock pins the table the shape was read from until COMMIT: no
     * cut-over can swap it between the check and the write. */
    static const char shape[] =
        "LOCK TABLE items IN ROW EXCLUSIVE MODE;\n"
        "SELECT count(*) AS has_total FROM pg_attribute WHERE attrelid = 'items'::regclass"
        " AND attname = 'total' AND NOT attisdropped \\gset\n";
    static const char insert_total[] = "\\if :has_total\n"
                                       "INSERT INTO items (id, qty, price, name, total)"
                                       " VALUES (:nk, :q, :p, 'new ' || :nk, :q * :p);\n"
                                       "\\else\n" INSERT_ITEMS "\\endif\n";
    static const char update_total[] =
        "\\if :has_total\n"
        "WITH u AS (UPDATE items SET qty = :q, price = :p, name = 'upd ' || :q,"
        " total = :q * :p WHERE id = :k RETURNING id) " UPDATE_CONTROL
        "\\else\n" UPDATE_ITEMS UPDATE_CONTROL "\\endif\n";
    bool total = flags & LOAD_TOTAL;
    char *moves = sgt_asprintf("\\set k random(1, %d)\n"
                               "BEGIN;\n"
                               "SELECT nextval('items_key') AS nk \\gset\n"
                               "WITH m AS (UPDATE items SET id = :nk, name = 'moved ' || :k"
                               " WHERE id = :k RETURNING :k AS old) "
                               "UPDATE items_control SET id = :nk, name = 'moved ' || :k"
                               " WHERE id IN (SELECT old FROM m);\n" SGT_LOAD_COUNT "COMMIT;\n",
                               maxkey);
    char *script = sgt_asprintf(
        "\\set q random(1, 1000)\n"
        "\\set p random(1, 10000)\n"
        "BEGIN;\n"
        "SELECT nextval('items_key') AS nk \\gset\n"
        "%s%s"
        "INSERT INTO items_control (id, qty, price, name)"
        " VALUES (:nk, :q, :p, 'new ' || :nk);\n" SGT_LOAD_COUNT "COMMIT;\n"
        "\\set k random(1, %d)\n"
        "BEGIN;\n"
        "%s%s" SGT_LOAD_COUNT "COMMIT;\n"
        "\\set k random(1, %d)\n"
        "BEGIN;\n"
        "WITH d AS (DELETE FROM items WHERE id = :k RETURNING id)"
        " DELETE FROM items_control WHERE id IN (SELECT id FROM d);\n" SGT_LOAD_COUNT "COMMIT;\n"
        "%s",
        total ? shape : "", total ? insert_total : INSERT_ITEMS, maxkey, total ? shape : "",
        total ? update_total : UPDATE_ITEMS UPDATE_CONTROL, maxkey,
        flags & LOAD_MOVES ? moves : "");
    f->load = sgt_load_start(f->db, script, CLIENTS);
    free(script);
    free(moves);
}

static long stop_load(fixture *f)
{
    long n = sgt_load_stop(f->load);
    f->load = NULL;
    return n;
}

/* Runs migrate, with the load on, and asserts the load committed
 * transactions while it ran. */
static void migrate_under_load(const fixture *f, const char *const extra[])
{
    long before = sgt_load_commits(f->load);
    run_ok(f, "migrate", extra);
    long after = sgt_load_commits(f->load);
    ck_assert_msg(after > before, "the load committed nothing while migrate ran (%ld)", before);
}

#define ITEMS_OLD_SHAPE                                                                            \
    "id integer not null, qty integer not null, price integer not null, name text not null"
#define ITEMS_TYPED_SHAPE                                                                          \
    "id integer not null, qty bigint not null, price integer not null,"                            \
    " name character varying(100) not null"
#define CONTROL_AS_OLD "SELECT id, qty, price, name FROM items_control"
#define CONTROL_AS_TYPED "SELECT id, qty::bigint, price, name::varchar(100) FROM items_control"
#define ITEMS_ROWS "SELECT id, qty, price, name FROM items"
#define OLD_ITEMS_ROWS "SELECT id, qty, price, name FROM shardgate_old_1.items"

static const char change_types[] =
    "-- shardgate:mode=bluegreen table=public.items\n"
    "-- shardgate:up\n"
    "ALTER TABLE items ALTER COLUMN qty TYPE bigint, ALTER COLUMN name TYPE varchar(100);\n"
    "CREATE INDEX items_qty ON items (qty);\n"
    "-- shardgate:down\n"
    "ALTER TABLE items ALTER COLUMN qty TYPE integer, ALTER COLUMN name TYPE text;\n";

static const char widen_qty[] = "-- shardgate:mode=bluegreen table=public.items\n"
                                "-- shardgate:up\n"
                                "ALTER TABLE items ALTER COLUMN qty TYPE bigint;\n"
                                "-- shardgate:down\n"
                                "ALTER TABLE items ALTER COLUMN qty TYPE integer;\n";

/* The harness alone, no engine: the counter counts exactly the commits of
 * every client, and stop waits for the last of them. */
START_TEST(load_counts_commits)
{
    fixture f = setup("loadcount");
    sgt_pg_exec(f.db, "CREATE TABLE load_log (client int NOT NULL)");
    f.load =
        sgt_load_start(f.db,
                       "BEGIN;\n"
                       "INSERT INTO load_log VALUES (:client_id);\n" SGT_LOAD_COUNT "COMMIT;\n",
                       CLIENTS);
    assert_value(&f,
                 "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                 " AND application_name = 'pgbench'",
                 "4");
    sgt_load_wait_beyond(f.load, 400);
    long n = stop_load(&f);
    ck_assert_int_gt(n, 400);
    char *want = sgt_asprintf("%ld:4", n);
    assert_value(&f, "SELECT count(*) || ':' || count(DISTINCT client) FROM load_log", want);
    free(want);
    assert_value(&f,
                 "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                 " AND application_name = 'pgbench'",
                 "0");
    ck_assert_int_eq(sgt_load_stop(NULL), 0);
    teardown(&f);
}
END_TEST

/* The harness alone, no engine: the items script keeps items and its
 * control equal, and does each kind of write. */
START_TEST(load_keeps_control_equal)
{
    fixture f = with_items("loadcontrol", 5000);
    start_items_load(&f, 5000, LOAD_MOVES | LOAD_TOTAL);
    sgt_load_wait_beyond(f.load, 800);
    ck_assert_int_gt(stop_load(&f), 800);
    assert_same_rows(&f, CONTROL_AS_OLD, ITEMS_ROWS);
    assert_value(&f,
                 "SELECT bool_or(name LIKE 'new %') AND bool_or(name LIKE 'upd %')"
                 " AND bool_or(name LIKE 'moved %') AND count(*) FILTER (WHERE id <= 5000)"
                 " < 5000 FROM items_control",
                 "t");
    teardown(&f);
}
END_TEST

/* (a) int -> bigint on a column, text -> varchar(100), and a new index */
START_TEST(type_change_under_load)
{
    fixture f = with_items("types", ROWS);
    sgt_write_file(f.dir, "0001_types.sql", change_types);
    start_items_load(&f, ROWS, 0);
    migrate_under_load(&f, chunked);
    assert_cut_over(&f, "shardgate_old_1.items");
    /* writes to the new table reach the old one, for a rollback */
    sgt_load_wait_beyond(f.load, sgt_load_commits(f.load));
    stop_load(&f);
    assert_shape(&f, "public.items", ITEMS_TYPED_SHAPE);
    assert_names(&f, "public.items", "items_name,items_pkey,items_qty", "items_pkey");
    assert_same_rows(&f, CONTROL_AS_TYPED, ITEMS_ROWS);
    assert_shape(&f, "shardgate_old_1.items", ITEMS_OLD_SHAPE);
    assert_same_rows(&f, CONTROL_AS_OLD, OLD_ITEMS_ROWS);
    teardown(&f);
}
END_TEST

/* (b) a NOT NULL column computed from others, for copied rows and for rows
 * the load writes during the change */
START_TEST(computed_column_under_load)
{
    fixture f = with_items("computed", ROWS);
    sgt_write_file(f.dir, "0001_total.sql",
                   "-- shardgate:mode=bluegreen table=public.items\n"
                   "-- shardgate:up\n"
                   "ALTER TABLE items ADD COLUMN total bigint;\n"
                   "UPDATE items SET total = qty * price;\n"
                   "ALTER TABLE items ALTER COLUMN total SET NOT NULL;\n"
                   "-- shardgate:down\n"
                   "ALTER TABLE items DROP COLUMN total;\n");
    /* the writers know total once it is there: after the cut-over they
     * write it, before it the engine computes it */
    start_items_load(&f, ROWS, LOAD_TOTAL);
    migrate_under_load(&f, chunked);
    assert_cut_over(&f, "shardgate_old_1.items");
    sgt_load_wait_beyond(f.load, sgt_load_commits(f.load));
    stop_load(&f);
    assert_shape(&f, "public.items", ITEMS_OLD_SHAPE ", total bigint not null");
    assert_value(&f, "SELECT count(*) FROM items WHERE total IS DISTINCT FROM qty * price", "0");
    char *rows = sgt_asprintf("SELECT count(*) > 0 FROM items WHERE id > %d", ROWS);
    assert_value(&f, rows, "t");
    free(rows);
    assert_same_rows(&f, "SELECT id, qty, price, name, (qty * price)::bigint FROM items_control",
                     "SELECT id, qty, price, name, total FROM items");
    assert_same_rows(&f, CONTROL_AS_OLD, OLD_ITEMS_ROWS);
    teardown(&f);
}
END_TEST

/* (c) the primary key widened while the load moves rows to new keys */
START_TEST(key_widening_under_load)
{
    fixture f = with_items("widenkey", ROWS);
    sgt_write_file(f.dir, "0001_bigint_id.sql",
                   "-- shardgate:mode=bluegreen table=public.items\n"
                   "-- shardgate:up\n"
                   "ALTER TABLE items ALTER COLUMN id TYPE bigint;\n"
                   "-- shardgate:down\n"
                   "ALTER TABLE items ALTER COLUMN id TYPE integer;\n");
    start_items_load(&f, ROWS, LOAD_MOVES);
    migrate_under_load(&f, chunked);
    assert_cut_over(&f, "shardgate_old_1.items");
    sgt_load_wait_beyond(f.load, sgt_load_commits(f.load));
    stop_load(&f);
    assert_shape(&f, "public.items",
                 "id bigint not null, qty integer not null, price integer not null,"
                 " name text not null");
    assert_names(&f, "public.items", "items_name,items_pkey", "items_pkey");
    assert_value(&f, "SELECT count(*) > 0 FROM items WHERE name LIKE 'moved %'", "t");
    assert_same_rows(&f, "SELECT id::bigint, qty, price, name FROM items_control", ITEMS_ROWS);
    assert_same_rows(&f, CONTROL_AS_OLD, OLD_ITEMS_ROWS);
    /* the key's sequence and default moved with the name */
    assert_value(&f, "SELECT pg_get_serial_sequence('public.items', 'id')", "public.items_key");
    assert_value(&f,
                 "SELECT column_default FROM information_schema.columns WHERE table_schema ="
                 " 'public' AND table_name = 'items' AND column_name = 'id'",
                 "nextval('items_key'::regclass)");
    teardown(&f);
}
END_TEST

/* (d) revert inside the window: the old shape again, with every write made
 * since the cut-over, while the load runs across both */
START_TEST(revert_after_cut_over_under_load)
{
    fixture f = with_items("revert", ROWS);
    sgt_write_file(f.dir, "0001_types.sql", change_types);
    start_items_load(&f, ROWS, 0);
    migrate_under_load(&f, chunked);
    sgt_load_wait_beyond(f.load, sgt_load_commits(f.load));
    run_ok(&f, "revert", (const char *const[]){"--to", "0", NULL});
    assert_shape(&f, "public.items", ITEMS_OLD_SHAPE);
    sgt_load_wait_beyond(f.load, sgt_load_commits(f.load));
    stop_load(&f);
    assert_names(&f, "public.items", "items_name,items_pkey", "items_pkey");
    assert_same_rows(&f, CONTROL_AS_OLD, ITEMS_ROWS);
    assert_reverted(&f, "public.items");
    assert_value(&f, "SELECT count(*) FROM shardgate.bluegreen WHERE version = 1", "0");
    assert_value(&f, "SELECT pg_get_serial_sequence('public.items', 'id')", "public.items_key");
    teardown(&f);
}
END_TEST

/* finalize drops the kept table and its triggers (not the sequence the
 * table now owns); a revert after it is a blue-green change of its own */
START_TEST(finalize_then_revert)
{
    fixture f = with_items("finalize", SMALL_ROWS);
    sgt_write_file(f.dir, "0001_widen_qty.sql", widen_qty);
    start_items_load(&f, SMALL_ROWS, 0);
    migrate_under_load(&f, chunked);
    run_ok(&f, "finalize", (const char *const[]){"--version", "1", NULL});
    assert_value(&f, "SELECT count(*) FROM pg_namespace WHERE nspname ~ '^shardgate_(new|old)_1$'",
                 "0");
    assert_value(&f, "SELECT step FROM shardgate.bluegreen WHERE version = 1", "finalized");
    assert_value(&f,
                 "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.items'::regclass"
                 " AND NOT tgisinternal",
                 "0");
    assert_value(&f, "SELECT pg_get_serial_sequence('public.items', 'id')", "public.items_key");
    sgt_load_wait_beyond(f.load, sgt_load_commits(f.load));
    run_ok(&f, "revert", (const char *const[]){"--to", "0", NULL});
    sgt_load_wait_beyond(f.load, sgt_load_commits(f.load));
    stop_load(&f);
    assert_shape(&f, "public.items", ITEMS_OLD_SHAPE);
    assert_same_rows(&f, CONTROL_AS_OLD, ITEMS_ROWS);
    assert_value(&f, "SELECT count(*) FROM shardgate.migrations WHERE version = 1", "0");
    teardown(&f);
}
END_TEST

static const char *const fault_steps[] = {"prepared", "synced",   "chunk",   "backfilled",
                                          "indexed",  "verified", "cut-over"};

/* The runner SIGKILLs itself right after recording a step, the load going
 * on; a plain migrate resumes and finishes with nothing lost. */
START_TEST(killed_after_each_step_resumes)
{
    const char *step = fault_steps[_i];
    fixture f = with_items("fault", SMALL_ROWS);
    sgt_write_file(f.dir, "0001_types.sql", change_types);
    start_items_load(&f, SMALL_ROWS, 0);
    char *fault = sgt_asprintf("SHARDGATE_FAULT=bluegreen-%s", step);
    long before = sgt_load_commits(f.load);
    free(run(&f, (const char *const[]){fault, NULL}, EXIT_KILLED, "migrate", chunked));
    free(fault);
    if (strcmp(step, "chunk") == 0) {
        char *sql = sgt_asprintf("SELECT rows_copied BETWEEN 1 AND %d FROM shardgate.bluegreen"
                                 " WHERE version = 1",
                                 SMALL_ROWS - 1);
        assert_value(&f, sql, "t");
        free(sql);
    } else {
        char *sql =
            sgt_asprintf("SELECT step = '%s' FROM shardgate.bluegreen WHERE version = 1", step);
        assert_value(&f, sql, "t");
        free(sql);
    }
    wait_runner_gone(&f);
    /* writes go on between the runs, into whatever the killed one left; a
     * resumed run may be too short to be sure of writes during it */
    sgt_load_wait_beyond(f.load, before);
    run_ok(&f, "migrate", chunked);
    assert_cut_over(&f, "shardgate_old_1.items");
    sgt_load_wait_beyond(f.load, sgt_load_commits(f.load));
    stop_load(&f);
    assert_shape(&f, "public.items", ITEMS_TYPED_SHAPE);
    assert_names(&f, "public.items", "items_name,items_pkey,items_qty", "items_pkey");
    assert_same_rows(&f, CONTROL_AS_TYPED, ITEMS_ROWS);
    assert_same_rows(&f, CONTROL_AS_OLD, OLD_ITEMS_ROWS);
    teardown(&f);
}
END_TEST

START_TEST(table_without_primary_key_is_refused)
{
    fixture f = setup("nopk");
    sgt_pg_exec(f.db, "CREATE TABLE nopk (id int NOT NULL, v text);"
                      "INSERT INTO nopk SELECT g, 'v' || g FROM generate_series(1, 1000) g");
    sgt_write_file(f.dir, "0001_nopk.sql",
                   "-- shardgate:mode=bluegreen table=public.nopk\n"
                   "-- shardgate:up\n"
                   "ALTER TABLE nopk ALTER COLUMN v TYPE varchar(20);\n"
                   "-- shardgate:down\n"
                   "ALTER TABLE nopk ALTER COLUMN v TYPE text;\n");
    free(run_fails(&f, EXIT_USAGE, "migrate", NULL,
                   (const char *const[]){"public.nopk", "primary key", NULL}));
    assert_value(&f, "SELECT count(*) FROM pg_namespace WHERE nspname ~ '^shardgate_(new|old)_'",
                 "0");
    assert_value(&f, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.nopk'::regclass",
                 "0");
    assert_shape(&f, "public.nopk", "id integer not null, v text");
    assert_value(&f, "SELECT count(*) FROM nopk", "1000");
    teardown(&f);
}
END_TEST

/* A session that holds a lock on items until it ends. */
static PGconn *hold(const fixture *f, const char *sql)
{
    char *conninfo = sgt_asprintf("%s application_name=blocker", f->db);
    PGconn *c = PQconnectdb(conninfo);
    free(conninfo);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    return c;
}

/* A long transaction that holds a lock when the cut-over needs its own:
 * the runner gives up, says who blocked it, and leaves blue serving
 * writes in its old shape; once the lock is gone, migrate finishes. */
START_TEST(lock_held_at_cut_over_leaves_blue)
{
    fixture f = with_items("lockcut", ROWS);
    sgt_write_file(f.dir, "0001_types.sql", change_types);
    start_items_load(&f, ROWS, 0);
    char *dir = sgt_asprintf("%s/run", f.dir);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    const char *argv[32];
    command_line(argv, &f, "migrate",
                 (const char *const[]){"--chunk-rows", "2000", "--chunk-pause", "50ms",
                                       "--lock-timeout", "200ms", "--retries", "2", NULL});
    long before = sgt_load_commits(f.load);
    pid_t runner = sgt_spawn(argv, NULL, dir);
    /* the backfill has begun: its 50 chunks and pauses leave seconds to
     * take the lock before the cut-over */
    wait_for(&f, "SELECT rows_copied > 0 FROM shardgate.bluegreen WHERE version = 1", runner, dir);
    PGconn *blocker =
        hold(&f, "SET lock_timeout = '1min'; BEGIN; LOCK TABLE items IN ACCESS SHARE MODE");
    char *blocker_pid = sgt_asprintf("%d", PQbackendPID(blocker));
    ck_assert_int_eq(wait_runner(runner, dir), EXIT_BUSY);
    ck_assert_msg(sgt_load_commits(f.load) > before,
                  "the load committed nothing while migrate ran");
    char *path = sgt_asprintf("%s/stderr", dir);
    char *log = sgt_read_file(path, NULL);
    assert_contains(log, "shardgate: error: ");
    assert_contains(log, "blocker");
    assert_contains(log, blocker_pid);
    free(log);
    free(path);
    assert_shape(&f, "public.items", ITEMS_OLD_SHAPE);
    assert_value(&f,
                 "SELECT count(*) FROM shardgate.migrations WHERE version = 1"
                 " AND status = 'applied'",
                 "0");
    /* blue still takes writes */
    sgt_load_wait_beyond(f.load, sgt_load_commits(f.load));
    PQfinish(blocker);
    run_ok(&f, "migrate", chunked);
    assert_cut_over(&f, "shardgate_old_1.items");
    sgt_load_wait_beyond(f.load, sgt_load_commits(f.load));
    stop_load(&f);
    assert_shape(&f, "public.items", ITEMS_TYPED_SHAPE);
    assert_same_rows(&f, CONTROL_AS_TYPED, ITEMS_ROWS);
    free(blocker_pid);
    free(dir);
    teardown(&f);
}
END_TEST

/* orders is referenced by order_lines and references customers: after the
 * swap both keys hold on the new table, and the referencing one is valid. */
START_TEST(foreign_keys_follow_the_table)
{
    fixture f = setup("fkeys");
    sgt_pg_exec(f.db,
                "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);"
                "CREATE TABLE orders (id int PRIMARY KEY,"
                " customer_id int NOT NULL REFERENCES customers (id), amount int NOT NULL);"
                "CREATE TABLE order_lines (id int PRIMARY KEY,"
                " order_id int NOT NULL REFERENCES orders (id), qty int NOT NULL);"
                "INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 1000) g;"
                "INSERT INTO orders SELECT g, g % 1000 + 1, g FROM generate_series(1, 20000) g;"
                /* orders above 10000 have no lines */
                "INSERT INTO order_lines SELECT g, g % 10000 + 1, g % 7"
                " FROM generate_series(1, 40000) g;"
                "CREATE TABLE orders_control AS SELECT * FROM orders");
    sgt_write_file(f.dir, "0001_bigint_orders.sql",
                   "-- shardgate:mode=bluegreen table=public.orders\n"
                   "-- shardgate:up\n"
                   "ALTER TABLE orders ALTER COLUMN id TYPE bigint;\n"
                   "-- shardgate:down\n"
                   "ALTER TABLE orders ALTER COLUMN id TYPE integer;\n");
    run_ok(&f, "migrate", chunked);
    assert_cut_over(&f, "shardgate_old_1.orders");
    assert_shape(&f, "public.orders",
                 "id bigint not null, customer_id integer not null, amount integer not null");
    assert_same_rows(&f, "SELECT id::bigint, customer_id, amount FROM orders_control",
                     "SELECT id, customer_id, amount FROM orders");
    assert_value(&f,
                 "SELECT string_agg(conname || ':' || confrelid::regclass || ':' || convalidated,"
                 " ',') FROM pg_constraint WHERE conrelid = 'public.order_lines'::regclass"
                 " AND contype = 'f'",
                 "order_lines_order_id_fkey:orders:true");
    assert_value(&f,
                 "SELECT string_agg(conname || ':' || confrelid::regclass, ',') FROM pg_constraint"
                 " WHERE conrelid = 'public.orders'::regclass AND contype = 'f'",
                 "orders_customer_id_fkey:customers");
    assert_fails_with(&f, "INSERT INTO order_lines VALUES (40001, 999999, 1)", "23503");
    assert_fails_with(&f, "DELETE FROM orders WHERE id = 1", "23503");
    assert_fails_with(&f, "INSERT INTO orders VALUES (20001, 999999, 1)", "23503");
    /* while rows the keys allow still go in and out */
    sgt_pg_exec(f.db, "INSERT INTO order_lines VALUES (40001, 15000, 1);"
                      "DELETE FROM orders WHERE id = 20000;"
                      "INSERT INTO orders VALUES (5000000000, 1, 1)");
    assert_value(&f, "SELECT count(*) FROM orders", "20000");
    teardown(&f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("bluegreen");
    struct {
        const char *name;
        const TTest *test;
        int loops; /* 0: a plain test */
    } cases[] = {
        {"load_counts", load_counts_commits, 0},
        {"load_control", load_keeps_control_equal, 0},
        {"types", type_change_under_load, 0},
        {"computed", computed_column_under_load, 0},
        {"widen_key", key_widening_under_load, 0},
        {"revert", revert_after_cut_over_under_load, 0},
        {"finalize", finalize_then_revert, 0},
        {"killed", killed_after_each_step_resumes,
         (int)(sizeof(fault_steps) / sizeof(fault_steps[0]))},
        {"no_primary_key", table_without_primary_key_is_refused, 0},
        {"lock_cut_over", lock_held_at_cut_over_leaves_blue, 0},
        {"foreign_keys", foreign_keys_follow_the_table, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        /* a hung engine fails its case, not the whole CTest run */
        tcase_set_timeout(tc, CASE_TIMEOUT);
        if (cases[i].loops)
            tcase_add_loop_test(tc, cases[i].test, 0, cases[i].loops);
        else
            tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    pg = sgt_pg_start();
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sgt_remove_tree(root);
    sgt_pg_stop(pg);
    return failed ? 1 : 0;
}
