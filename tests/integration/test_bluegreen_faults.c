/* The blue-green engine where things go wrong: a standby that replays far
 * behind (a real streaming standby with recovery_min_apply_delay), writes
 * the new shape refuses, writes after the cut-over the old shape cannot
 * take, a shadow table that no longer matches, dependent objects and a
 * shadow schema left by someone else. */
#include "tests/harness/cli.h"
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    EXIT_USAGE = 2,
    EXIT_NOT_FOUND = 10,
    EXIT_TARGET = 13,
    EXIT_MISMATCH = 14,
    EXIT_KILLED = 128 + 9
};

static sgt_pg_server *pg;
static char root[] = "/tmp/sgt-bgfault-XXXXXX";

typedef struct fixture {
    char *db;
    char *dir;
} fixture;

/* A database with orders(id int primary key, qty int, note text) of rows
 * rows, and an empty migrations directory. */
static fixture setup(const char *name, int rows)
{
    static int n;
    fixture f = {sgt_pg_create_db(pg, name), sgt_asprintf("%s/%s-%d", root, name, n++)};
    ck_assert_int_eq(mkdir(f.dir, 0755), 0);
    char *sql =
        sgt_asprintf("CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL, note text);"
                     "INSERT INTO orders SELECT g, g %% 50, 'n' || g"
                     "  FROM generate_series(1, %d) g",
                     rows);
    sgt_pg_exec(f.db, sql);
    free(sql);
    return f;
}

static void teardown(fixture *f)
{
    free(f->db);
    free(f->dir);
}

static void write_migration(const fixture *f, const char *up, const char *down)
{
    char *text = sgt_asprintf("-- shardgate:mode=bluegreen table=public.orders\n"
                              "-- shardgate:up\n%s\n-- shardgate:down\n%s\n",
                              up, down);
    sgt_write_file(f->dir, "0001_change.sql", text);
    free(text);
}

static char *value(const fixture *f, const char *sql)
{
    char *v = sgt_pg_value(f->db, sql);
    ck_assert_msg(v != NULL, "no value for %s", sql);
    return v;
}

static void assert_value(const fixture *f, const char *sql, const char *want)
{
    char *v = value(f, sql);
    ck_assert_msg(strcmp(v, want) == 0, "%s gave %s, wanted %s", sql, v, want);
    free(v);
}

#define MIGRATE(f, ...)                                                                            \
    (const char *const[])                                                                          \
    {                                                                                              \
        "shardgate", "migrate", "--dsn", (f).db, "--migrations", (f).dir, __VA_ARGS__, NULL        \
    }

/* Runs migrate until it has recorded `step`, where it stops dead (as a
 * crash would: SHARDGATE_FAULT), so that a test can act in between. */
static void migrate_until(const fixture *f, const char *step, const char *chunk_rows)
{
    char *fault = sgt_asprintf("bluegreen-%s", step);
    setenv("SHARDGATE_FAULT", fault, 1);
    free(sgt_shardgate(EXIT_KILLED, MIGRATE(*f, "--chunk-rows", chunk_rows)));
    unsetenv("SHARDGATE_FAULT");
    free(fault);
}

/* Neither a shadow nor a kept table is left. */
static void assert_no_bluegreen_schemas(const fixture *f)
{
    assert_value(f, "SELECT count(*) FROM pg_namespace WHERE nspname ~ '^shardgate_(new|old)'",
                 "0");
}

/* A standby replaying 2 s behind: the copy pauses while the lag is above
 * --max-lag, says so, and goes on when the standby has caught up. */
START_TEST(copy_waits_for_a_lagging_standby)
{
    sgt_pg_server *standby = sgt_pg_start_standby(pg, "recovery_min_apply_delay = '2s'");
    fixture f = setup("lag", 20000);
    write_migration(&f, "ALTER TABLE orders ALTER COLUMN qty TYPE bigint;",
                    "ALTER TABLE orders ALTER COLUMN qty TYPE int;");
    /* the standby is behind when the copy starts: a write it replays 2 s
     * late, and its lag seen on the primary */
    char *primary_db = sgt_pg_conninfo(pg, "postgres");
    bool lagging = false;
    for (int i = 0; i < 1500 && !lagging; i++) {
        if (i % 50 == 0)
            sgt_pg_exec(primary_db, "CREATE TABLE IF NOT EXISTS wal (n int);"
                                    "INSERT INTO wal VALUES (1)");
        char *lag = sgt_pg_value(primary_db, "SELECT replay_lag > interval '500 ms'"
                                             "  FROM pg_stat_replication");
        lagging = lag && strcmp(lag, "t") == 0;
        free(lag);
        if (!lagging)
            sgt_sleep_ms(20);
    }
    ck_assert_msg(lagging, "the standby never lagged");
    const char *const want[] = {"copy paused", "copying again", "applied 0001_change.sql", NULL};
    free(sgt_shardgate_fails(
        0, MIGRATE(f, "--chunk-rows", "10000", "--chunk-time", "0", "--max-lag", "500ms"), want));
    assert_value(&f,
                 "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                 " WHERE attrelid = 'orders'::regclass AND attname = 'qty'",
                 "bigint");
    assert_value(&f, "SELECT count(*) FROM orders", "20000");
    free(primary_db);
    sgt_pg_stop(standby);
    teardown(&f);
}
END_TEST

/* A write the new shape refuses does not fail the application's write: it
 * is recorded, and the change stops before its cut-over, naming it. */
START_TEST(write_refused_by_the_new_shape_stops_the_change)
{
    fixture f = setup("refused", 2000);
    write_migration(&f, "ALTER TABLE orders ADD CONSTRAINT qty_small CHECK (qty < 100);",
                    "ALTER TABLE orders DROP CONSTRAINT qty_small;");
    /* stop after the triggers exist, write what the new shape refuses, go on */
    migrate_until(&f, "synced", "500");
    sgt_pg_exec(f.db, "INSERT INTO orders VALUES (5000, 500, 'too many')");
    assert_value(&f, "SELECT qty FROM orders WHERE id = 5000", "500");
    const char *const want[] = {"1 write to the live table could not be copied to the new table",
                                "qty_small", NULL};
    free(sgt_shardgate_fails(EXIT_MISMATCH, MIGRATE(f, "--chunk-rows", "500"), want));
    /* blue is untouched and still the table; revert abandons the attempt */
    assert_value(&f, "SELECT count(*) FROM pg_namespace WHERE nspname = 'shardgate_old_1'", "0");
    assert_value(&f, "SELECT status FROM shardgate.migrations WHERE version = 1", "failed");
    free(sgt_shardgate(0, (const char *const[]){"shardgate", "revert", "--dsn", f.db,
                                                "--migrations", f.dir, "--to", "0", NULL}));
    assert_no_bluegreen_schemas(&f);
    assert_value(&f, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass", "0");
    assert_value(&f, "SELECT count(*) FROM orders", "2001");
    teardown(&f);
}
END_TEST

/* After the cut-over, a value the old shape cannot hold is written: the
 * old table would lose it, so the revert is refused, and says why. */
START_TEST(revert_refused_when_the_old_table_lost_a_write)
{
    fixture f = setup("lost", 2000);
    write_migration(&f, "ALTER TABLE orders ALTER COLUMN id TYPE bigint;",
                    "ALTER TABLE orders ALTER COLUMN id TYPE int;");
    free(sgt_shardgate(0, MIGRATE(f, "--chunk-rows", "500")));
    sgt_pg_exec(f.db, "INSERT INTO orders VALUES (5000000000, 1, 'beyond int')");
    const char *const revert[] = {"shardgate", "revert", "--dsn", f.db, "--migrations",
                                  f.dir,       "--to",   "0",     NULL};
    const char *const want[] = {"could not be copied to the old table", "out of range", NULL};
    free(sgt_shardgate_fails(EXIT_MISMATCH, revert, want));
    /* nothing moved: the new table serves, with the row */
    assert_value(&f, "SELECT count(*) FROM orders WHERE id = 5000000000", "1");
    assert_value(&f, "SELECT step FROM shardgate.bluegreen WHERE version = 1", "cut-over");
    teardown(&f);
}
END_TEST

/* A shadow table changed behind the engine's back is caught by the
 * comparison, which names the keys that differ, and nothing is swapped. */
START_TEST(tampered_shadow_table_is_caught)
{
    fixture f = setup("tampered", 3000);
    write_migration(&f, "ALTER TABLE orders ALTER COLUMN qty TYPE bigint;",
                    "ALTER TABLE orders ALTER COLUMN qty TYPE int;");
    migrate_until(&f, "indexed", "500");
    /* the triggers only copy writes to blue: these go to green alone */
    sgt_pg_exec(f.db, "ALTER TABLE shardgate_new_1.orders DISABLE TRIGGER ALL;"
                      "DELETE FROM shardgate_new_1.orders WHERE id = 17;"
                      "UPDATE shardgate_new_1.orders SET note = 'x' WHERE id = 42");
    const char *const want[] = {"the new public.orders differs from the old one", "key (17)",
                                "only in the old table", "key (42): differs", NULL};
    free(sgt_shardgate_fails(EXIT_MISMATCH, MIGRATE(f, "--chunk-rows", "500"), want));
    assert_value(&f,
                 "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                 " WHERE attrelid = 'orders'::regclass AND attname = 'qty'",
                 "integer");
    assert_value(&f, "SELECT step FROM shardgate.bluegreen WHERE version = 1", "indexed");
    teardown(&f);
}
END_TEST

/* What would stay with the old table is refused before anything is made,
 * naming it. */
START_TEST(dependent_objects_are_refused)
{
    fixture f = setup("dependents", 10);
    write_migration(&f, "ALTER TABLE orders ALTER COLUMN qty TYPE bigint;",
                    "ALTER TABLE orders ALTER COLUMN qty TYPE int;");
    sgt_pg_exec(f.db, "CREATE VIEW big_orders AS SELECT * FROM orders WHERE qty > 10;"
                      "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS"
                      " $$BEGIN RETURN NEW; END$$;"
                      "CREATE CONSTRAINT TRIGGER audit AFTER UPDATE ON orders"
                      " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION touch();"
                      "CREATE TABLE events (id int, order_id int REFERENCES orders (id))"
                      "  PARTITION BY RANGE (id)");
    const char *const want[] = {"public.orders cannot be changed blue-green: view big_orders",
                                "also: constraint trigger audit",
                                "also: foreign key from a partitioned table", NULL};
    free(sgt_shardgate_fails(EXIT_USAGE, MIGRATE(f, "--chunk-rows", "500"), want));
    assert_no_bluegreen_schemas(&f);
    teardown(&f);
}
END_TEST

/* The application's triggers follow the table: before the cut-over they
 * fire on the old table only, after it on the new one only (the sync into
 * the kept table fires nothing), and after a swap back on the old one
 * again; their enabled state goes along. */
START_TEST(application_triggers_follow_the_table)
{
    fixture f = setup("triggers", 100);
    write_migration(&f, "ALTER TABLE orders ALTER COLUMN qty TYPE bigint;",
                    "ALTER TABLE orders ALTER COLUMN qty TYPE int;");
    sgt_pg_exec(f.db, "CREATE TABLE audit (id int, op text);"
                      "CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS"
                      " $$BEGIN INSERT INTO audit VALUES (NEW.id, TG_OP); RETURN NEW; END$$;"
                      "CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE ON orders FOR EACH ROW"
                      " EXECUTE FUNCTION audit_row();"
                      "CREATE TRIGGER orders_idle AFTER DELETE ON orders FOR EACH ROW"
                      " EXECUTE FUNCTION audit_row();"
                      "ALTER TABLE orders DISABLE TRIGGER orders_idle");
    migrate_until(&f, "verified", "50");
    sgt_pg_exec(f.db, "INSERT INTO orders VALUES (1001, 1, 'before')");
    free(sgt_shardgate(0, MIGRATE(f, "--chunk-rows", "50")));
    sgt_pg_exec(f.db, "INSERT INTO orders VALUES (1002, 2, 'after');"
                      "UPDATE orders SET note = 'again' WHERE id = 1002;"
                      "DELETE FROM orders WHERE id = 5");
    /* once each: the kept table's copies are disabled */
    assert_value(&f, "SELECT string_agg(id || op, ',' ORDER BY id, op) FROM audit",
                 "1001INSERT,1002INSERT,1002UPDATE");
    assert_value(&f,
                 "SELECT string_agg(tgname || ':' || tgenabled::text, ',' ORDER BY tgname)"
                 "  FROM pg_trigger WHERE tgrelid = 'orders'::regclass"
                 "   AND tgname !~ '^shardgate_'",
                 "orders_audit:O,orders_idle:D");
    assert_value(&f,
                 "SELECT string_agg(tgname || ':' || tgenabled::text, ',' ORDER BY tgname)"
                 "  FROM pg_trigger WHERE tgrelid = 'shardgate_old_1.orders'::regclass"
                 "   AND tgname !~ '^shardgate_'",
                 "orders_audit:D,orders_idle:D");
    free(sgt_shardgate(0, (const char *const[]){"shardgate", "revert", "--dsn", f.db,
                                                "--migrations", f.dir, "--to", "0", NULL}));
    sgt_pg_exec(f.db, "INSERT INTO orders VALUES (1003, 3, 'reverted')");
    assert_value(&f, "SELECT string_agg(id || op, ',' ORDER BY id, op) FROM audit",
                 "1001INSERT,1002INSERT,1002UPDATE,1003INSERT");
    assert_value(&f,
                 "SELECT string_agg(tgname || ':' || tgenabled::text, ',' ORDER BY tgname)"
                 "  FROM pg_trigger WHERE tgrelid = 'orders'::regclass",
                 "orders_audit:O,orders_idle:D");
    assert_value(&f, "SELECT count(*) FROM orders WHERE id IN (1001, 1002, 1003)", "3");
    teardown(&f);
}
END_TEST

/* Constraints as they are: a foreign key to the table itself whose parents
 * come after their children in key order (added at the cut-over, not
 * during the copy), and a NOT VALID check that old rows break (kept NOT
 * VALID, not enforced on them). */
START_TEST(constraints_as_they_are)
{
    fixture f = setup("constraints", 0);
    sgt_pg_exec(f.db,
                "ALTER TABLE orders ADD COLUMN parent int REFERENCES orders (id);"
                "INSERT INTO orders SELECT g, g % 50, 'n' || g, CASE WHEN g < 1000 THEN 1000 END"
                "  FROM generate_series(1, 1000) g;"
                "ALTER TABLE orders ADD CONSTRAINT qty_small CHECK (qty < 40) NOT VALID");
    write_migration(&f, "ALTER TABLE orders ALTER COLUMN qty TYPE bigint;",
                    "ALTER TABLE orders ALTER COLUMN qty TYPE int;");
    free(sgt_shardgate(0, MIGRATE(f, "--chunk-rows", "100")));
    assert_value(&f,
                 "SELECT string_agg(conname || ':' || convalidated, ',' ORDER BY conname)"
                 "  FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype <> 'p'",
                 "orders_parent_fkey:true,qty_small:false");
    assert_value(&f, "SELECT count(*) FROM orders WHERE parent = 1000", "999");
    teardown(&f);
}
END_TEST

/* A new shape that another table's foreign key cannot reference (the key
 * widened to two columns) is refused before anything is made, not at the
 * cut-over after the copy. */
START_TEST(foreign_key_that_cannot_follow_is_refused)
{
    fixture f = setup("fkprobe", 100);
    sgt_pg_exec(f.db,
                "CREATE TABLE lines (id int PRIMARY KEY, order_id int REFERENCES orders (id));"
                "INSERT INTO lines VALUES (1, 1)");
    write_migration(&f,
                    "ALTER TABLE orders DROP CONSTRAINT orders_pkey,"
                    " ADD CONSTRAINT orders_pkey PRIMARY KEY (id, qty);",
                    "ALTER TABLE orders DROP CONSTRAINT orders_pkey,"
                    " ADD CONSTRAINT orders_pkey PRIMARY KEY (id);");
    const char *const want[] = {"foreign key lines_order_id_fkey of lines cannot reference the new "
                                "public.orders",
                                "no unique constraint", NULL};
    free(sgt_shardgate_fails(EXIT_USAGE, MIGRATE(f, "--chunk-rows", "100"), want));
    assert_no_bluegreen_schemas(&f);
    assert_value(&f, "SELECT count(*) FROM pg_constraint WHERE conname = 'shardgate_probe'", "0");
    teardown(&f);
}
END_TEST

/* A revert killed right after its swap back: migrate refuses to go on with
 * the half-reverted change, finalize has no window to end, and revert
 * finishes it. */
START_TEST(half_done_revert_is_finished_by_revert)
{
    fixture f = setup("halfrevert", 200);
    write_migration(&f, "ALTER TABLE orders ALTER COLUMN qty TYPE bigint;",
                    "ALTER TABLE orders ALTER COLUMN qty TYPE int;");
    free(sgt_shardgate(0, MIGRATE(f, "--chunk-rows", "100")));
    const char *const revert[] = {"shardgate", "revert", "--dsn", f.db, "--migrations",
                                  f.dir,       "--to",   "0",     NULL};
    setenv("SHARDGATE_FAULT", "bluegreen-swapped-back", 1);
    free(sgt_shardgate(EXIT_KILLED, revert));
    unsetenv("SHARDGATE_FAULT");
    assert_value(&f, "SELECT step FROM shardgate.bluegreen", "swapped-back");
    const char *const refused[] = {"the revert of version 1 (change) did not finish",
                                   "shardgate revert --to 0", NULL};
    free(sgt_shardgate_fails(EXIT_TARGET, MIGRATE(f, "--chunk-rows", "100"), refused));
    const char *const finalize[] = {"shardgate", "finalize",  "--dsn", f.db, "--migrations",
                                    f.dir,       "--version", "1",     NULL};
    const char *const no_window[] = {"version 1 has no blue-green change waiting to be finalized",
                                     NULL};
    free(sgt_shardgate_fails(EXIT_NOT_FOUND, finalize, no_window));
    free(sgt_shardgate(0, revert));
    assert_no_bluegreen_schemas(&f);
    assert_value(&f, "SELECT count(*) FROM shardgate.migrations", "0");
    assert_value(&f,
                 "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                 " WHERE attrelid = 'orders'::regclass AND attname = 'qty'",
                 "integer");
    teardown(&f);
}
END_TEST

/* A writer at REPEATABLE READ could keep a deleted row in the new table
 * (its snapshot predates rows the copy added): its write stops the change
 * before the cut-over, saying why. */
START_TEST(repeatable_read_writer_stops_the_change)
{
    fixture f = setup("snapshot", 500);
    write_migration(&f, "ALTER TABLE orders ALTER COLUMN qty TYPE bigint;",
                    "ALTER TABLE orders ALTER COLUMN qty TYPE int;");
    migrate_until(&f, "synced", "100");
    sgt_pg_exec(f.db, "BEGIN ISOLATION LEVEL REPEATABLE READ;"
                      "DELETE FROM orders WHERE id = 3;"
                      "COMMIT");
    const char *const want[] = {"a transaction at repeatable read wrote to the table",
                                "read committed", NULL};
    free(sgt_shardgate_fails(EXIT_MISMATCH, MIGRATE(f, "--chunk-rows", "100"), want));
    assert_value(&f, "SELECT count(*) FROM pg_namespace WHERE nspname = 'shardgate_old_1'", "0");
    teardown(&f);
}
END_TEST

/* Two changes to one table in one run: the first one's window ends before
 * the second starts; a revert of both swaps the second back and runs the
 * first one's down section. */
START_TEST(two_changes_to_one_table)
{
    fixture f = setup("twice", 3000);
    write_migration(&f, "ALTER TABLE orders ALTER COLUMN qty TYPE bigint;",
                    "ALTER TABLE orders ALTER COLUMN qty TYPE int;");
    sgt_write_file(f.dir, "0002_again.sql",
                   "-- shardgate:mode=bluegreen table=public.orders\n"
                   "-- shardgate:up\n"
                   "ALTER TABLE orders ALTER COLUMN id TYPE bigint;\n"
                   "-- shardgate:down\n"
                   "ALTER TABLE orders ALTER COLUMN id TYPE int;\n");
    char *out = sgt_shardgate(0, MIGRATE(f, "--chunk-rows", "1000"));
    ck_assert_msg(strstr(out, "finalized 0001_change.sql") &&
                      strstr(out, "applied  0002_again.sql"),
                  "%s", out);
    free(out);
    assert_value(&f,
                 "SELECT string_agg(version || ':' || step, ',' ORDER BY version)"
                 "  FROM shardgate.bluegreen",
                 "1:finalized,2:cut-over");
    assert_value(&f,
                 "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum)"
                 "  FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0",
                 "bigint,bigint,text");
    free(sgt_shardgate(0, (const char *const[]){"shardgate", "revert", "--dsn", f.db,
                                                "--migrations", f.dir, "--to", "0", NULL}));
    assert_value(&f,
                 "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum)"
                 "  FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0"
                 "   AND NOT attisdropped",
                 "integer,integer,text");
    assert_value(&f, "SELECT count(*) FROM orders", "3000");
    assert_value(&f, "SELECT count(*) FROM shardgate.bluegreen", "0");
    assert_no_bluegreen_schemas(&f);
    teardown(&f);
}
END_TEST

/* A window of --keep-old 0 has ended at once: status says so, and the next
 * migrate finalizes it before anything else. */
START_TEST(ended_window_is_finalized_by_the_next_migrate)
{
    fixture f = setup("window", 500);
    write_migration(&f, "ALTER TABLE orders ALTER COLUMN qty TYPE bigint;",
                    "ALTER TABLE orders ALTER COLUMN qty TYPE int;");
    free(sgt_shardgate(0, MIGRATE(f, "--keep-old", "0")));
    assert_value(&f, "SELECT step FROM shardgate.bluegreen", "cut-over");
    char *status = sgt_shardgate(0, (const char *const[]){"shardgate", "status", "--dsn", f.db,
                                                          "--migrations", f.dir, NULL});
    ck_assert_msg(strstr(status, "its window ended at"), "%s", status);
    free(status);
    char *out = sgt_shardgate(0, MIGRATE(f, "--chunk-rows", "100"));
    ck_assert_msg(strstr(out, "finalized 0001_change.sql"), "%s", out);
    free(out);
    assert_value(&f, "SELECT step FROM shardgate.bluegreen", "finalized");
    assert_no_bluegreen_schemas(&f);
    assert_value(&f, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass", "0");
    teardown(&f);
}
END_TEST

int main(void)
{
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    pg = sgt_pg_start();
    Suite *s = suite_create("bluegreen_faults");
    TCase *tc = tcase_create("faults");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, copy_waits_for_a_lagging_standby);
    tcase_add_test(tc, write_refused_by_the_new_shape_stops_the_change);
    tcase_add_test(tc, revert_refused_when_the_old_table_lost_a_write);
    tcase_add_test(tc, tampered_shadow_table_is_caught);
    tcase_add_test(tc, dependent_objects_are_refused);
    tcase_add_test(tc, two_changes_to_one_table);
    tcase_add_test(tc, constraints_as_they_are);
    tcase_add_test(tc, half_done_revert_is_finished_by_revert);
    tcase_add_test(tc, foreign_key_that_cannot_follow_is_refused);
    tcase_add_test(tc, repeatable_read_writer_stops_the_change);
    tcase_add_test(tc, application_triggers_follow_the_table);
    tcase_add_test(tc, ended_window_is_finalized_by_the_next_migrate);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sgt_pg_stop(pg);
    char *rm = sgt_asprintf("rm -rf %s", root);
    sgt_sh(rm);
    free(rm);
    return failed ? 1 : 0;
}
