/* `shardgate migrate`, `revert` and `status` on a real server: round trips,
 * files edited after they were applied, locks held by other sessions (waited
 * out, or given up on), two runners at once, a runner killed inside a
 * transaction=off file and resumed, a failed CREATE INDEX CONCURRENTLY,
 * failing verify sections, lint blocking an apply, and drift made by hand. */
#include "tests/harness/cli.h"
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
#include <unistd.h>

enum {
    EXIT_LINT = 1,
    EXIT_USAGE = 2,
    EXIT_DB = 12,
    EXIT_NOT_FOUND = 10,
    EXIT_TARGET = 13,
    EXIT_MISMATCH = 14,
    EXIT_BUSY = 19
};

static sgt_pg_server *pg;
static char root[] = "/tmp/sgt-migrate-XXXXXX";

/* A fresh database and an empty migrations directory for one test. */
typedef struct fixture {
    char *db;
    char *dir;
} fixture;

static fixture setup(const char *name)
{
    static int n;
    fixture f = {sgt_pg_create_db(pg, name), sgt_asprintf("%s/%s-%d", root, name, n++)};
    ck_assert_int_eq(mkdir(f.dir, 0755), 0);
    return f;
}

static void teardown(fixture *f)
{
    free(f->db);
    free(f->dir);
}

static void write_file(const fixture *f, const char *name, const char *text)
{
    sgt_write_file(f->dir, name, text);
}

static void remove_file(const fixture *f, const char *name)
{
    sgt_remove_file(f->dir, name);
}

static void assert_contains(const char *text, const char *want)
{
    ck_assert_msg(text && strstr(text, want), "expected \"%s\" in:\n%s", want, text ? text : "");
}

static char *value(const fixture *f, const char *sql)
{
    return sgt_pg_value(f->db, sql);
}

static void assert_value(const fixture *f, const char *sql, const char *want)
{
    char *v = value(f, sql);
    ck_assert_msg(v && strcmp(v, want) == 0, "%s: got %s, want %s", sql, v ? v : "NULL", want);
    free(v);
}

/* Runs shardgate COMMAND --dsn DB --migrations DIR [extra...]. */
static char *run_ok(const fixture *f, const char *command, const char *const extra[])
{
    const char *argv[32] = {"shardgate", command, "--dsn", f->db, "--migrations", f->dir};
    size_t n = 6;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return sgt_shardgate(0, argv);
}

static char *run_fails(const fixture *f, int status, const char *command, const char *const extra[],
                       const char *const want[])
{
    const char *argv[32] = {"shardgate", command, "--dsn", f->db, "--migrations", f->dir};
    size_t n = 6;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return sgt_shardgate_fails(status, argv, want);
}

static const char create_orders[] =
    "-- shardgate:up\n"
    "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric);\n"
    "INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 100) g;\n"
    "-- shardgate:down\n"
    "DROP TABLE orders;\n";

static const char index_orders[] =
    "-- shardgate:transaction=off\n"
    "-- shardgate:up\n"
    "CREATE INDEX CONCURRENTLY orders_total ON orders (total);\n"
    "-- shardgate:down\n"
    "DROP INDEX CONCURRENTLY orders_total;\n"
    "-- shardgate:verify\n"
    "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_total'::regclass;\n";

static const char add_note[] =
    "-- shardgate:up\n"
    "ALTER TABLE orders ADD COLUMN note text DEFAULT 'none';\n"
    "CREATE FUNCTION order_note(o orders) RETURNS text LANGUAGE plpgsql AS $$\n"
    "BEGIN\n  RETURN o.note || ';'; -- a semicolon in a comment; and one in a string: ';'\nEND "
    "$$;\n"
    "-- shardgate:down\n"
    "DROP FUNCTION order_note(orders);\n"
    "ALTER TABLE orders DROP COLUMN note;\n"
    "-- shardgate:verify\n"
    "SELECT count(*) = 100 FROM orders WHERE note = 'none';\n"
    "SELECT order_note(o) = E'none;' FROM orders o LIMIT 1;\n";

/* A database with 0001_create_orders.sql applied. */
static fixture with_orders(const char *name)
{
    fixture f = setup(name);
    write_file(&f, "0001_create_orders.sql", create_orders);
    free(run_ok(&f, "migrate", NULL));
    return f;
}

START_TEST(apply_revert_round_trip)
{
    fixture f = setup("roundtrip");
    write_file(&f, "0001_create_orders.sql", create_orders);
    write_file(&f, "0002_index_orders.sql", index_orders);
    write_file(&f, "0005_add_note.sql", add_note);
    write_file(&f, "README.md", "not a migration\n");

    char *out = run_ok(&f, "migrate", (const char *const[]){"--to", "2", NULL});
    assert_contains(out, "applied  0001_create_orders.sql");
    assert_contains(out, "applied  0002_index_orders.sql");
    assert_contains(out, "schema version 0 -> 2");
    free(out);
    out = run_ok(&f, "migrate", NULL);
    assert_contains(out, "schema version 2 -> 5");
    free(out);
    out = run_ok(&f, "migrate", NULL);
    assert_contains(out, "nothing to apply: schema version 5");
    free(out);

    assert_value(&f,
                 "SELECT string_agg(version || ':' || status || ':' || mode, ',' ORDER BY version)"
                 " FROM shardgate.migrations",
                 "1:applied:transactional,2:applied:statements,5:applied:transactional");
    assert_value(&f,
                 "SELECT count(*) FROM shardgate.migrations WHERE schema_fingerprint IS NULL"
                 " OR duration_ms IS NULL OR run_id IS NULL OR applied_by_host IS NULL",
                 "0");
    assert_value(&f, "SELECT statements_done FROM shardgate.migrations WHERE version = 2", "1");
    assert_value(&f, "SELECT count(*) FROM shardgate.events WHERE action = 'apply'", "3");

    out = run_ok(&f, "status", NULL);
    assert_contains(out, "schema version 5: 3 applied, 0 pending");
    assert_contains(out, "schema: no drift");
    free(out);

    out = run_ok(&f, "revert", (const char *const[]){"--to", "1", NULL});
    assert_contains(out, "reverted 0005_add_note.sql");
    assert_contains(out, "reverted 0002_index_orders.sql");
    assert_contains(out, "schema version 5 -> 1");
    free(out);
    assert_value(&f, "SELECT to_regclass('orders_total') IS NULL", "t");
    assert_value(&f, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'",
                 "0");
    assert_value(&f, "SELECT string_agg(version::text, ',') FROM shardgate.migrations", "1");
    assert_value(&f, "SELECT count(*) FROM shardgate.events WHERE action = 'revert'", "2");

    out = run_ok(&f, "revert", (const char *const[]){"--to", "0", NULL});
    free(out);
    assert_value(&f, "SELECT to_regclass('orders') IS NULL", "t");
    out = run_ok(&f, "status", (const char *const[]){"--json", NULL});
    assert_contains(out, "\"schema_version\": 0");
    assert_contains(out, "\"pending\": 3");
    free(out);
    /* and up again, from nothing */
    free(run_ok(&f, "migrate", NULL));
    assert_value(&f, "SELECT count(*) FROM orders WHERE note = 'none'", "100");
    teardown(&f);
}
END_TEST

START_TEST(dry_run_changes_nothing)
{
    fixture f = setup("dryrun");
    write_file(&f, "0001_create_orders.sql", create_orders);
    write_file(&f, "0002_index_orders.sql", index_orders);
    char *out = run_ok(&f, "migrate", (const char *const[]){"--dry-run", NULL});
    assert_contains(out, "would apply    0001_create_orders.sql (transactional, 2 statements)");
    assert_contains(out, "would apply    0002_index_orders.sql (statements, 1 statement)");
    free(out);
    assert_value(
        &f, "SELECT to_regnamespace('shardgate') IS NULL AND to_regclass('orders') IS NULL", "t");
    out = run_ok(&f, "migrate", (const char *const[]){"--dry-run", "--json", NULL});
    assert_contains(out, "\"dry_run\": true");
    assert_contains(out, "\"file\": \"0002_index_orders.sql\"");
    free(out);
    teardown(&f);
}
END_TEST

START_TEST(edited_file_is_refused_unless_allowed)
{
    fixture f = with_orders("edited");
    char *applied_sum = value(&f, "SELECT checksum FROM shardgate.migrations WHERE version = 1");
    write_file(
        &f, "0001_create_orders.sql",
        "-- shardgate:up\nCREATE TABLE orders (id bigint PRIMARY KEY, total numeric, x int);\n"
        "-- shardgate:down\nDROP TABLE orders;\n");
    write_file(&f, "0002_index_orders.sql", index_orders);
    free(run_fails(&f, EXIT_MISMATCH, "migrate", NULL,
                   (const char *const[]){"0001_create_orders.sql changed since it was applied",
                                         applied_sum, "checksum now:", "--allow-changed", NULL}));
    assert_value(&f, "SELECT to_regclass('orders_total') IS NULL", "t");
    char *out = run_ok(&f, "status", NULL);
    assert_contains(out, "changed");
    free(out);
    free(run_fails(&f, EXIT_MISMATCH, "status", (const char *const[]){"--check", NULL},
                   (const char *const[]){"1 changed", NULL}));
    free(run_ok(&f, "migrate", (const char *const[]){"--allow-changed", NULL}));
    assert_value(&f, "SELECT to_regclass('orders_total') IS NOT NULL", "t");
    assert_value(&f,
                 "SELECT detail->>'applied_checksum' FROM shardgate.events"
                 " WHERE action = 'changed-allowed'",
                 applied_sum);
    free(applied_sum);
    teardown(&f);
}
END_TEST

/* A session that holds a lock on orders until released. */
static PGconn *hold(const fixture *f, const char *sql)
{
    char *conninfo = sgt_asprintf("%s application_name=blocker", f->db);
    PGconn *c = PQconnectdb(conninfo);
    free(conninfo);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s", PQerrorMessage(c));
    PQclear(r);
    return c;
}

/* A session that keeps every DDL statement on orders waiting. */
static PGconn *lock_orders(const fixture *f)
{
    return hold(f, "BEGIN; LOCK TABLE orders IN ACCESS SHARE MODE");
}

static void wait_for(const fixture *f, const char *sql)
{
    for (int i = 0; i < 600; i++) {
        char *v = value(f, sql);
        bool ok = v && strcmp(v, "t") == 0;
        free(v);
        if (ok)
            return;
        sgt_sleep_ms(50);
    }
    ck_abort_msg("timed out waiting for: %s", sql);
}

static pid_t spawn(const fixture *f, const char *dir, const char *const extra[])
{
    const char *argv[32] = {"shardgate", "migrate", "--dsn", f->db, "--migrations", f->dir};
    size_t n = 6;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    return sgt_spawn(argv, NULL, dir);
}

START_TEST(lock_held_then_released)
{
    fixture f = with_orders("lockwait");
    write_file(&f, "0002_add_note.sql", add_note);
    PGconn *blocker = lock_orders(&f);
    char *dir = sgt_asprintf("%s/run", f.dir);
    pid_t pid =
        spawn(&f, dir, (const char *const[]){"--lock-timeout", "500ms", "--retries", "100", NULL});
    /* it waits, times out, says who blocked it, and tries again */
    wait_for(&f, "SELECT count(*) >= 2 FROM shardgate.events WHERE action = 'lock-wait'");
    assert_value(&f,
                 "SELECT detail->'blockers'->0->>'application_name' FROM shardgate.events"
                 " WHERE action = 'lock-wait' ORDER BY id DESC LIMIT 1",
                 "blocker");
    assert_value(&f,
                 "SELECT detail->'blockers'->0->>'query' LIKE 'BEGIN; LOCK TABLE orders%'"
                 " FROM shardgate.events WHERE action = 'lock-wait' ORDER BY id DESC LIMIT 1",
                 "t");
    assert_value(&f, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'",
                 "0");
    PQclear(PQexec(blocker, "COMMIT"));
    ck_assert_int_eq(sgt_wait(pid), 0);
    char *errors = sgt_asprintf("%s/stderr", dir);
    char *log = sgt_read_file(errors, NULL);
    assert_contains(log, "a lock was not granted within lock_timeout");
    assert_contains(log, "blocked by: pid");
    assert_contains(log, "blocker");
    free(log);
    free(errors);
    assert_value(&f, "SELECT status FROM shardgate.migrations WHERE version = 2", "applied");
    assert_value(&f, "SELECT count(*) > 0 FROM shardgate.events WHERE action = 'retry'", "t");
    PQfinish(blocker);
    free(dir);
    teardown(&f);
}
END_TEST

START_TEST(lock_never_released_gives_up)
{
    fixture f = with_orders("giveup");
    write_file(&f, "0002_add_note.sql", add_note);
    PGconn *blocker = lock_orders(&f);
    free(run_fails(&f, EXIT_BUSY, "migrate",
                   (const char *const[]){"--lock-timeout", "500ms", "--retries", "2", NULL},
                   (const char *const[]){"0002_add_note.sql: gave up after 3 attempts",
                                         "blocked by: pid", "application_name \"blocker\"",
                                         "LOCK TABLE orders", "--lock-timeout", NULL}));
    /* nothing of the file stayed, and the registry says it failed */
    assert_value(&f, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'",
                 "0");
    assert_value(&f,
                 "SELECT status || ':' || statements_done FROM shardgate.migrations"
                 " WHERE version = 2",
                 "failed:0");
    assert_value(&f, "SELECT count(*) FROM shardgate.events WHERE action = 'lock-wait'", "3");
    PQfinish(blocker);
    free(run_ok(&f, "migrate", NULL));
    assert_value(&f, "SELECT status FROM shardgate.migrations WHERE version = 2", "applied");
    teardown(&f);
}
END_TEST

START_TEST(two_runners_never_overlap)
{
    fixture f = with_orders("tworunners");
    write_file(&f, "0002_add_note.sql", add_note);
    /* the first runner holds the migration lock while it waits for a table lock */
    PGconn *blocker = lock_orders(&f);
    char *dir = sgt_asprintf("%s/first", f.dir);
    pid_t first =
        spawn(&f, dir, (const char *const[]){"--lock-timeout", "500ms", "--retries", "100", NULL});
    wait_for(&f, "SELECT count(*) >= 1 FROM shardgate.events WHERE action = 'lock-wait'");
    char *holder = value(&f, "SELECT pid FROM pg_locks WHERE locktype = 'advisory'"
                             " AND classid = 1936220530 AND objid = 1 AND granted");
    ck_assert_ptr_nonnull(holder);
    free(run_fails(&f, EXIT_BUSY, "migrate", NULL,
                   (const char *const[]){"the migration lock is held by another session", holder,
                                         "application_name \"shardgate\"", NULL}));
    free(run_fails(&f, EXIT_BUSY, "revert", (const char *const[]){"--to", "0", NULL},
                   (const char *const[]){"held by another session", NULL}));
    PQclear(PQexec(blocker, "COMMIT"));
    ck_assert_int_eq(sgt_wait(first), 0);
    assert_value(&f, "SELECT count(*) FROM shardgate.events WHERE action = 'apply'", "2");
    PQfinish(blocker);
    free(holder);
    free(dir);
    teardown(&f);
}
END_TEST

static const char three_steps[] = "-- shardgate:transaction=off\n"
                                  "-- shardgate:up\n"
                                  "CREATE TABLE audit (id int);\n"
                                  "ALTER TABLE orders ADD COLUMN audited boolean;\n"
                                  "CREATE INDEX CONCURRENTLY orders_audited ON orders (audited);\n"
                                  "-- shardgate:down\n"
                                  "DROP INDEX CONCURRENTLY orders_audited;\n"
                                  "ALTER TABLE orders DROP COLUMN audited;\n"
                                  "DROP TABLE audit;\n";

START_TEST(killed_runner_resumes_after_last_done_statement)
{
    fixture f = with_orders("killed");
    write_file(&f, "0002_three_steps.sql", three_steps);
    PGconn *blocker = lock_orders(&f);
    char *dir = sgt_asprintf("%s/run", f.dir);
    pid_t pid =
        spawn(&f, dir, (const char *const[]){"--lock-timeout", "500ms", "--retries", "100", NULL});
    /* statement 1 is done; statement 2 waits for the lock: kill the runner there */
    wait_for(&f, "SELECT count(*) >= 1 FROM shardgate.events WHERE action = 'lock-wait'");
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(sgt_wait(pid), 128 + SIGKILL);
    assert_value(&f,
                 "SELECT status || ':' || statements_done FROM shardgate.migrations"
                 " WHERE version = 2",
                 "applying:1");
    PQclear(PQexec(blocker, "COMMIT"));
    PQfinish(blocker);
    /* its session is gone with it, and the advisory lock with the session */
    wait_for(&f, "SELECT NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory')");
    char *out = run_ok(&f, "status", NULL);
    assert_contains(out, "partial");
    free(out);
    const char *argv[] = {"shardgate", "migrate", "--dsn", f.db, "--migrations", f.dir, NULL};
    sgt_result r;
    ck_assert_int_eq(sgt_run(&r, argv, NULL), 0);
    assert_contains(r.err, "resuming after statement 1");
    sgt_result_free(&r);
    /* CREATE TABLE audit ran once: a second run would have failed on it */
    assert_value(&f,
                 "SELECT status || ':' || statements_done FROM shardgate.migrations"
                 " WHERE version = 2",
                 "applied:3");
    assert_value(
        &f, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_audited'::regclass", "t");
    free(dir);
    teardown(&f);
}
END_TEST

START_TEST(failed_concurrent_index_is_dropped_before_retry)
{
    fixture f = with_orders("invalidindex");
    sgt_pg_exec(f.db, "ALTER TABLE orders DROP CONSTRAINT orders_pkey;"
                      "INSERT INTO orders VALUES (1, 0)");
    write_file(&f, "0002_unique_id.sql",
               "-- shardgate:transaction=off\n"
               "-- shardgate:up\n"
               "CREATE UNIQUE INDEX CONCURRENTLY orders_id ON orders (id);\n"
               "-- shardgate:down\n"
               "DROP INDEX CONCURRENTLY orders_id;\n");
    free(run_fails(&f, EXIT_DB, "migrate", NULL,
                   (const char *const[]){"0002_unique_id.sql:3", "could not create unique index",
                                         "23505", NULL}));
    assert_value(&f, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_id'::regclass",
                 "f");
    assert_value(&f, "SELECT status FROM shardgate.migrations WHERE version = 2", "failed");
    sgt_pg_exec(f.db, "DELETE FROM orders WHERE id = 1 AND total = 0");
    const char *argv[] = {"shardgate", "migrate", "--dsn", f.db, "--migrations", f.dir, NULL};
    sgt_result r;
    ck_assert_int_eq(sgt_run(&r, argv, NULL), 0);
    assert_contains(r.err, "dropping the invalid index public.orders_id");
    sgt_result_free(&r);
    assert_value(&f, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_id'::regclass",
                 "t");
    assert_value(&f, "SELECT count(*) FROM shardgate.events WHERE action = 'drop-invalid-index'",
                 "1");
    teardown(&f);
}
END_TEST

START_TEST(failing_verify_rolls_back_or_reverts)
{
    fixture f = setup("verify");
    write_file(&f, "0001_create_orders.sql", create_orders);
    /* transactional: the verify runs inside the transaction, which rolls back */
    write_file(&f, "0002_wrong.sql",
               "-- shardgate:up\n"
               "ALTER TABLE orders ADD COLUMN flag boolean;\n"
               "-- shardgate:down\n"
               "ALTER TABLE orders DROP COLUMN flag;\n"
               "-- shardgate:verify\n"
               "SELECT 1;\n"
               "SELECT count(*) = 7 FROM orders;\n");
    free(run_fails(&f, EXIT_MISMATCH, "migrate", NULL,
                   (const char *const[]){"0002_wrong.sql:7: verify statement returned false",
                                         "count(*) = 7", NULL}));
    assert_value(&f, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'flag'",
                 "0");
    assert_value(&f, "SELECT status FROM shardgate.migrations WHERE version = 2", "failed");
    assert_value(&f, "SELECT status FROM shardgate.migrations WHERE version = 1", "applied");

    /* transaction=off: the statements are committed, so the down section undoes them */
    write_file(&f, "0002_wrong.sql",
               "-- shardgate:transaction=off\n"
               "-- shardgate:up\n"
               "CREATE INDEX CONCURRENTLY orders_total ON orders (total);\n"
               "-- shardgate:down\n"
               "DROP INDEX CONCURRENTLY orders_total;\n"
               "-- shardgate:verify\n"
               "SELECT no_such_column FROM orders;\n");
    free(
        run_fails(&f, EXIT_MISMATCH, "migrate", NULL,
                  (const char *const[]){"0002_wrong.sql:7: verify statement failed",
                                        "no_such_column", "reverted with its down section", NULL}));
    assert_value(&f, "SELECT to_regclass('orders_total') IS NULL", "t");
    assert_value(&f, "SELECT count(*) FROM shardgate.migrations WHERE version = 2", "0");
    assert_value(&f,
                 "SELECT string_agg(action, ',' ORDER BY id) FROM shardgate.events"
                 " WHERE version = 2",
                 "fail,verify-fail,revert");
    teardown(&f);
}
END_TEST

START_TEST(lint_blocks_apply)
{
    fixture f = with_orders("lintblocks");
    write_file(&f, "0002_index.sql",
               "-- shardgate:up\n"
               "CREATE INDEX orders_total ON orders (total);\n"
               "-- shardgate:down\n"
               "DROP INDEX orders_total;\n");
    free(run_fails(&f, EXIT_LINT, "migrate", NULL,
                   (const char *const[]){"lint found 1 error", "0002_index.sql:2:1",
                                         "index-not-concurrent", NULL}));
    assert_value(&f, "SELECT to_regclass('orders_total') IS NULL", "t");
    /* silenced on purpose, it goes through */
    write_file(&f, "0002_index.sql",
               "-- shardgate:up\n"
               "-- shardgate:allow index-not-concurrent\n"
               "CREATE INDEX orders_total ON orders (total);\n"
               "-- shardgate:down\n"
               "DROP INDEX orders_total;\n");
    free(run_ok(&f, "migrate", NULL));
    assert_value(&f, "SELECT to_regclass('orders_total') IS NOT NULL", "t");
    teardown(&f);
}
END_TEST

START_TEST(refusals_change_nothing)
{
    fixture f = setup("refusals");
    write_file(&f, "0001_create_orders.sql", create_orders);
    write_file(&f, "0003_forever.sql",
               "-- shardgate:irreversible\n"
               "-- shardgate:up\n"
               "CREATE TABLE forever (id int);\n");
    free(run_ok(&f, "migrate", NULL));
    free(run_fails(
        &f, EXIT_TARGET, "revert", (const char *const[]){"--to", "0", NULL},
        (const char *const[]){"cannot revert 0003_forever.sql: it is irreversible", NULL}));
    assert_value(&f, "SELECT count(*) FROM shardgate.migrations", "2");
    /* a file numbered below the schema version */
    write_file(&f, "0002_late.sql",
               "-- shardgate:up\nCREATE TABLE late (id int);\n"
               "-- shardgate:down\nDROP TABLE late;\n");
    free(run_fails(&f, EXIT_TARGET, "migrate", NULL,
                   (const char *const[]){"0002_late.sql is pending, but version 3 is already "
                                         "applied",
                                         NULL}));
    assert_value(&f, "SELECT to_regclass('late') IS NULL", "t");
    remove_file(&f, "0002_late.sql");
    /* a blue-green file for a table that is not there: nothing is made */
    write_file(&f, "0004_bluegreen.sql",
               "-- shardgate:mode=bluegreen table=public.nope\n"
               "-- shardgate:up\n"
               "ALTER TABLE nope ALTER COLUMN total TYPE bigint;\n"
               "-- shardgate:down\n"
               "ALTER TABLE nope ALTER COLUMN total TYPE numeric;\n");
    free(run_fails(
        &f, EXIT_NOT_FOUND, "migrate", NULL,
        (const char *const[]){"0004_bluegreen.sql: table public.nope does not exist", NULL}));
    assert_value(&f, "SELECT count(*) FROM pg_namespace WHERE nspname ~ '^shardgate_(new|old)'",
                 "0");
    /* COPY with client data: lint refuses it; allowed anyway, it fails cleanly */
    write_file(&f, "0004_bluegreen.sql",
               "-- shardgate:irreversible data-change\n"
               "-- shardgate:up\n"
               "-- shardgate:allow copy-client\n"
               "COPY orders TO STDOUT;\n");
    free(run_fails(&f, EXIT_DB, "migrate", NULL,
                   (const char *const[]){"0004_bluegreen.sql:4: COPY to or from the client is "
                                         "not supported in a migration",
                                         NULL}));
    /* a malformed file names itself and where */
    write_file(&f, "0004_bluegreen.sql", "-- shardgate:up\nCREATE TABLE x (id int;\n");
    free(run_fails(&f, 5, "migrate", NULL,
                   (const char *const[]){"0004_bluegreen.sql:2:", "syntax error", NULL}));
    /* a database that is not there */
    remove_file(&f, "0004_bluegreen.sql");
    const char *argv[] = {"shardgate",    "migrate", "--dsn", "host=127.0.0.1 port=1 dbname=x",
                          "--migrations", f.dir,     NULL};
    free(sgt_shardgate_fails(EXIT_DB, argv, (const char *const[]){"cannot connect", NULL}));
    teardown(&f);
}
END_TEST

START_TEST(drift_made_by_hand_is_shown)
{
    fixture f = with_orders("drift");
    sgt_pg_exec(f.db, "ALTER TABLE orders ADD COLUMN sneaky int");
    char *out = run_ok(&f, "status", NULL);
    assert_contains(out, "schema: DRIFTED since version 1");
    assert_contains(out, "+ column public.orders.sneaky");
    free(out);
    out = run_ok(&f, "status", (const char *const[]){"--json", NULL});
    assert_contains(out, "\"drifted\": true");
    assert_contains(out, "\"object\": \"column public.orders.sneaky\"");
    free(out);
    free(run_fails(&f, EXIT_MISMATCH, "status", (const char *const[]){"--check", NULL},
                   (const char *const[]){"drifted since version 1", NULL}));
    sgt_pg_exec(f.db, "ALTER TABLE orders DROP COLUMN sneaky");
    out = run_ok(&f, "status", (const char *const[]){"--check", NULL});
    assert_contains(out, "schema: no drift");
    free(out);
    teardown(&f);
}
END_TEST

START_TEST(interrupt_cancels_a_waiting_statement)
{
    fixture f = with_orders("interrupt");
    write_file(&f, "0002_add_note.sql", add_note);
    PGconn *blocker = lock_orders(&f);
    char *dir = sgt_asprintf("%s/run", f.dir);
    pid_t pid = spawn(&f, dir, (const char *const[]){"--lock-timeout", "1h", NULL});
    wait_for(&f, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name ="
                 " 'shardgate' AND wait_event_type = 'Lock')");
    ck_assert_int_eq(kill(pid, SIGINT), 0);
    ck_assert_int_eq(sgt_wait(pid), 16);
    char *errors = sgt_asprintf("%s/stderr", dir);
    char *log = sgt_read_file(errors, NULL);
    assert_contains(log, "interrupted");
    free(log);
    free(errors);
    /* the blocker still holds its lock, and nothing of the file was applied */
    assert_value(&f, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'",
                 "0");
    assert_value(&f, "SELECT status FROM shardgate.migrations WHERE version = 2", "failed");
    assert_value(&f,
                 "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name ="
                 " 'shardgate' AND wait_event_type = 'Lock')",
                 "t");
    PQfinish(blocker);
    free(dir);
    teardown(&f);
}
END_TEST

START_TEST(registry_of_a_newer_version_is_refused)
{
    fixture f = with_orders("newer");
    sgt_pg_exec(f.db, "UPDATE shardgate.meta SET value = '2' WHERE key = 'format'");
    write_file(&f, "0002_add_note.sql", add_note);
    free(run_fails(&f, 5, "migrate", NULL,
                   (const char *const[]){"the registry (schema shardgate) has format 2, not 1",
                                         "a newer shardgate", NULL}));
    free(run_fails(&f, 5, "status", NULL, (const char *const[]){"has format 2", NULL}));
    assert_value(&f, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'",
                 "0");
    /* a row a hand edit left in a state no shardgate writes */
    sgt_pg_exec(f.db, "UPDATE shardgate.meta SET value = '1' WHERE key = 'format';"
                      "ALTER TABLE shardgate.migrations DROP CONSTRAINT migrations_status_check;"
                      "UPDATE shardgate.migrations SET status = 'sideways'");
    free(run_fails(&f, 5, "status", NULL,
                   (const char *const[]){"unknown status \"sideways\" for version 1", NULL}));
    teardown(&f);
}
END_TEST

START_TEST(missing_file_is_shown_and_blocks_revert)
{
    fixture f = setup("missing");
    write_file(&f, "0001_create_orders.sql", create_orders);
    write_file(&f, "0002_add_note.sql", add_note);
    free(run_ok(&f, "migrate", NULL));
    remove_file(&f, "0002_add_note.sql");
    char *out = run_ok(&f, "status", NULL);
    assert_contains(out, "missing");
    free(out);
    const char *argv[] = {"shardgate", "migrate", "--dsn", f.db, "--migrations", f.dir, NULL};
    sgt_result r;
    ck_assert_int_eq(sgt_run(&r, argv, NULL), 0);
    assert_contains(r.err, "version 2 (add_note) is applied, but its file is not in");
    sgt_result_free(&r);
    free(run_fails(
        &f, 10, "revert", (const char *const[]){"--to", "0", NULL},
        (const char *const[]){"cannot revert version 2 (add_note): its file is not in", NULL}));
    assert_value(&f, "SELECT count(*) FROM shardgate.migrations", "2");
    free(run_fails(&f, EXIT_USAGE, "revert", (const char *const[]){"--to", "x1", NULL},
                   (const char *const[]){"--to must be a version number", NULL}));
    free(run_fails(&f, EXIT_USAGE, "revert", NULL,
                   (const char *const[]){"--to VERSION is required", NULL}));
    teardown(&f);
}
END_TEST

/* Runs migrate and returns its stderr, asserting the exit status. */
static char *migrate_log(const fixture *f, int want)
{
    const char *argv[] = {"shardgate", "migrate", "--dsn", f->db, "--migrations", f->dir, NULL};
    sgt_result r;
    ck_assert_int_eq(sgt_run(&r, argv, NULL), want);
    free(r.out);
    return r.err;
}

static const char audit_index[] = "-- shardgate:transaction=off\n"
                                  "-- shardgate:up\n"
                                  "CREATE TABLE audit (id int);\n"
                                  "CREATE INDEX CONCURRENTLY audit_id ON audit (id);\n"
                                  "-- shardgate:down\n"
                                  "DROP INDEX CONCURRENTLY audit_id;\n"
                                  "DROP TABLE audit;\n";

START_TEST(index_build_that_completed_is_not_run_again)
{
    fixture f = with_orders("completed");
    write_file(&f, "0002_audit.sql", audit_index);
    free(run_ok(&f, "migrate", NULL));
    /* the registry as a run leaves it when it dies after the build finished
     * and before its progress was recorded */
    sgt_pg_exec(f.db, "UPDATE shardgate.migrations SET status = 'applying', statements_done = 1,"
                      " statement_started = 2 WHERE version = 2");
    char *log = migrate_log(&f, 0);
    assert_contains(log, "0002_audit.sql:4: completed before the last run stopped");
    free(log);
    assert_value(&f,
                 "SELECT status || ':' || statements_done FROM shardgate.migrations"
                 " WHERE version = 2",
                 "applied:2");
    /* and the same for a DROP INDEX CONCURRENTLY of a revert */
    free(run_ok(&f, "revert", (const char *const[]){"--to", "1", NULL}));
    free(run_ok(&f, "migrate", NULL));
    sgt_pg_exec(f.db, "DROP INDEX audit_id;"
                      "UPDATE shardgate.migrations SET status = 'reverting', statements_done = 0,"
                      " statement_started = 1 WHERE version = 2");
    free(run_ok(&f, "revert", (const char *const[]){"--to", "1", NULL}));
    assert_value(&f, "SELECT to_regclass('audit') IS NULL", "t");
    teardown(&f);
}
END_TEST

START_TEST(runner_killed_during_index_build)
{
    fixture f = with_orders("killedbuild");
    write_file(&f, "0002_audit.sql", audit_index);
    /* an open transaction with a snapshot keeps CREATE INDEX CONCURRENTLY
     * waiting in its last phase */
    PGconn *reader = hold(&f, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM orders");
    char *dir = sgt_asprintf("%s/run", f.dir);
    pid_t pid = spawn(&f, dir, NULL);
    wait_for(&f, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name ="
                 " 'shardgate' AND query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type ="
                 " 'Lock')");
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(sgt_wait(pid), 128 + SIGKILL);
    /* the server notices the client is gone within seconds
     * (client_connection_check_interval), ends the build and the session,
     * and with it the migration lock */
    wait_for(&f, "SELECT NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory')");
    PQfinish(reader);
    assert_value(&f,
                 "SELECT status || ':' || statements_done || ':' || statement_started"
                 " FROM shardgate.migrations WHERE version = 2",
                 "applying:1:2");
    char *log = migrate_log(&f, 0);
    assert_contains(log, "the last run stopped during this statement; running it again");
    free(log);
    assert_value(&f, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'audit_id'::regclass",
                 "t");
    free(dir);
    teardown(&f);
}
END_TEST

START_TEST(edited_rest_of_a_failed_file_resumes)
{
    fixture f = with_orders("editedrest");
    write_file(&f, "0002_p.sql",
               "-- shardgate:transaction=off\n"
               "-- shardgate:up\n"
               "CREATE TABLE p (id int);\n"
               "CREATE INDEX CONCURRENTLY p_id ON p (no_such_column);\n"
               "-- shardgate:down\n"
               "DROP INDEX CONCURRENTLY p_id;\nDROP TABLE p;\n");
    free(run_fails(&f, EXIT_DB, "migrate", NULL,
                   (const char *const[]){"0002_p.sql:4", "no_such_column", NULL}));
    assert_value(&f,
                 "SELECT status || ':' || statements_done FROM shardgate.migrations"
                 " WHERE version = 2",
                 "failed:1");
    /* an edit of the statement already run cannot be resumed */
    write_file(&f, "0002_p.sql",
               "-- shardgate:transaction=off\n"
               "-- shardgate:up\n"
               "CREATE TABLE p (id bigint);\n"
               "CREATE INDEX CONCURRENTLY p_id ON p (id);\n"
               "-- shardgate:down\n"
               "DROP INDEX CONCURRENTLY p_id;\nDROP TABLE p;\n");
    free(run_fails(
        &f, EXIT_MISMATCH, "migrate", NULL,
        (const char *const[]){"0002_p.sql changed in the 1 statements already run", NULL}));
    /* nor a file that is no longer transaction=off */
    write_file(&f, "0002_p.sql",
               "-- shardgate:up\n"
               "CREATE TABLE p (id int);\n"
               "-- shardgate:down\n"
               "DROP TABLE p;\n");
    free(run_fails(&f, EXIT_TARGET, "migrate", NULL,
                   (const char *const[]){"no longer says transaction=off", NULL}));
    /* the fix of the failed statement alone resumes */
    write_file(&f, "0002_p.sql",
               "-- shardgate:transaction=off\n"
               "-- shardgate:up\n"
               "CREATE TABLE p (id int);\n"
               "CREATE INDEX CONCURRENTLY p_id ON p (id);\n"
               "-- shardgate:down\n"
               "DROP INDEX CONCURRENTLY p_id;\nDROP TABLE p;\n");
    char *log = migrate_log(&f, 0);
    assert_contains(log, "0002_p.sql changed after 1 of its statements ran; those are unchanged");
    free(log);
    char *out = run_ok(&f, "status", (const char *const[]){"--check", NULL});
    assert_contains(out, "2 applied, 0 pending");
    free(out);
    assert_value(&f, "SELECT count(*) FROM shardgate.events WHERE action = 'changed-resumed'", "1");
    teardown(&f);
}
END_TEST

START_TEST(verify_failures_that_are_not_undone)
{
    fixture f = with_orders("noundo");
    /* no down section: nothing to undo with, so the statements stay */
    write_file(&f, "0002_keep.sql",
               "-- shardgate:transaction=off\n"
               "-- shardgate:allow missing-down\n"
               "-- shardgate:up\n"
               "CREATE TABLE keep (id int);\n"
               "-- shardgate:verify\n"
               "SELECT false;\n");
    free(run_fails(&f, EXIT_MISMATCH, "migrate", NULL,
                   (const char *const[]){"verify statement returned false",
                                         "has no down section: its statements stay", NULL}));
    assert_value(&f, "SELECT to_regclass('keep') IS NOT NULL", "t");
    assert_value(&f,
                 "SELECT status || ':' || statements_done FROM shardgate.migrations"
                 " WHERE version = 2",
                 "failed:1");
    remove_file(&f, "0002_keep.sql");
    sgt_pg_exec(f.db, "DROP TABLE keep; DELETE FROM shardgate.migrations WHERE version = 2");
    /* a verify that times out proves nothing: no undo, and a rerun verifies again */
    write_file(&f, "0002_slow.sql",
               "-- shardgate:transaction=off statement_timeout=300ms\n"
               "-- shardgate:up\n"
               "CREATE TABLE slow (id int);\n"
               "-- shardgate:down\n"
               "DROP TABLE slow;\n"
               "-- shardgate:verify\n"
               "SELECT pg_sleep(2) IS NOT NULL;\n");
    free(run_fails(&f, EXIT_DB, "migrate", NULL,
                   (const char *const[]){"verify statement failed", "statement timeout", NULL}));
    assert_value(&f, "SELECT to_regclass('slow') IS NOT NULL", "t");
    assert_value(&f, "SELECT count(*) FROM shardgate.events WHERE action = 'revert'", "0");
    write_file(&f, "0002_slow.sql",
               "-- shardgate:transaction=off statement_timeout=300ms\n"
               "-- shardgate:up\n"
               "CREATE TABLE slow (id int);\n"
               "-- shardgate:down\n"
               "DROP TABLE slow;\n"
               "-- shardgate:verify\n"
               "SELECT pg_sleep(0.01) IS NOT NULL;\n");
    char *log = migrate_log(&f, 0);
    assert_contains(log, "resuming after statement 1");
    free(log);
    teardown(&f);
}
END_TEST

START_TEST(procedures_that_commit_and_session_settings)
{
    fixture f = with_orders("session");
    write_file(&f, "0002_batches.sql",
               "-- shardgate:transaction=off\n"
               "-- shardgate:up\n"
               "CREATE TABLE batches (id int);\n"
               "DO $$ BEGIN FOR i IN 1..3 LOOP INSERT INTO batches VALUES (i); COMMIT; END LOOP;"
               " END $$;\n"
               "-- shardgate:down\n"
               "DROP TABLE batches;\n");
    /* a file that changes its session's search_path leaves the next one alone */
    write_file(&f, "0003_path.sql",
               "-- shardgate:up\n"
               "SET search_path = no_such_schema;\n"
               "-- shardgate:down\n"
               "RESET search_path;\n");
    write_file(&f, "0004_table.sql",
               "-- shardgate:up\n"
               "CREATE TABLE placed (id int);\n"
               "-- shardgate:down\n"
               "DROP TABLE placed;\n");
    free(run_ok(&f, "migrate", NULL));
    assert_value(&f, "SELECT count(*) FROM batches", "3");
    assert_value(&f, "SELECT to_regclass('public.placed') IS NOT NULL", "t");
    teardown(&f);
}
END_TEST

START_TEST(failed_file_that_was_removed_is_skipped)
{
    fixture f = with_orders("removedfailed");
    write_file(&f, "0002_broken.sql",
               "-- shardgate:up\n"
               "ALTER TABLE no_such_table ADD COLUMN x int;\n"
               "-- shardgate:down\n"
               "ALTER TABLE no_such_table DROP COLUMN x;\n");
    free(run_fails(&f, EXIT_DB, "migrate", NULL,
                   (const char *const[]){"0002_broken.sql:2", "no_such_table", NULL}));
    remove_file(&f, "0002_broken.sql");
    write_file(&f, "0003_fixed.sql",
               "-- shardgate:up\n"
               "CREATE TABLE fixed (id int);\n"
               "-- shardgate:down\n"
               "DROP TABLE fixed;\n");
    char *log = migrate_log(&f, 0);
    assert_contains(log, "version 2 (broken) failed before and its file is gone");
    free(log);
    assert_value(&f, "SELECT status FROM shardgate.migrations WHERE version = 3", "applied");
    teardown(&f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("migrate");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"round_trip", apply_revert_round_trip},
        {"dry_run", dry_run_changes_nothing},
        {"edited_file", edited_file_is_refused_unless_allowed},
        {"lock_released", lock_held_then_released},
        {"lock_gives_up", lock_never_released_gives_up},
        {"two_runners", two_runners_never_overlap},
        {"killed_resumes", killed_runner_resumes_after_last_done_statement},
        {"invalid_index", failed_concurrent_index_is_dropped_before_retry},
        {"failing_verify", failing_verify_rolls_back_or_reverts},
        {"lint_blocks", lint_blocks_apply},
        {"refusals", refusals_change_nothing},
        {"drift", drift_made_by_hand_is_shown},
        {"interrupt", interrupt_cancels_a_waiting_statement},
        {"newer_registry", registry_of_a_newer_version_is_refused},
        {"missing_file", missing_file_is_shown_and_blocks_revert},
        {"completed_build", index_build_that_completed_is_not_run_again},
        {"killed_build", runner_killed_during_index_build},
        {"edited_rest", edited_rest_of_a_failed_file_resumes},
        {"no_undo", verify_failures_that_are_not_undone},
        {"session", procedures_that_commit_and_session_settings},
        {"removed_failed", failed_file_that_was_removed_is_skipped},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
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
