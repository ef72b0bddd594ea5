/* The rehearsal on a real server: a restored database with a plain table, a
 * partitioned one and one with a generated column goes through up, verify,
 * down and up again on a copy; the tables are compared over their surviving
 * columns, and the fingerprint is the one a plain migrate gives. Irreversible
 * files, targets, a shard with a registry, nothing pending. Then what must
 * stop it: rows changed without data-change, a failing verify, a broken down
 * section, a file over its budget or its statement timeout, a database that
 * does not exist or is in use. Database names that need quoting or cutting.
 * The restored database is checked after every rehearsal: still there, same
 * schema, same rows, no registry written to it. */
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <check.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pg.h"
#include "stages/apply.h"
#include "stages/fingerprint.h"
#include "stages/migration.h"
#include "stages/rehearse.h"

static sgt_pg_server *pg;
static char *server; /* conninfo of the server's postgres database */
static char root[] = "/tmp/sgt-rehearse-XXXXXX";

/* The restored database of one test and its migrations directory. */
typedef struct fixture {
    char *db;   /* conninfo */
    char *name; /* the database's name, as sg_rehearse takes it */
    char *dir;
    char *sql; /* what made the database, to build a reference from */
    sg_migration_set *set;
} fixture;

static char *database_name(const char *conninfo)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);
    ck_assert_msg(opts, "%s: %s", conninfo, msg ? msg : "out of memory");
    char *name = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "dbname") == 0 && o->val)
            name = sgt_asprintf("%s", o->val);
    PQconninfoFree(opts);
    ck_assert_ptr_nonnull(name);
    return name;
}

static fixture setup_in(char *db, const char *sql)
{
    static int n;
    fixture f = {db, database_name(db), sgt_asprintf("%s/m%d-%d", root, (int)getpid(), n++),
                 sgt_asprintf("%s", sql), NULL};
    ck_assert_int_eq(mkdir(f.dir, 0755), 0);
    sgt_pg_exec(f.db, sql);
    return f;
}

static fixture setup(const char *prefix, const char *sql)
{
    return setup_in(sgt_pg_create_db(pg, prefix), sql);
}

static void teardown(fixture *f)
{
    sg_migration_set_free(f->set);
    free(f->db);
    free(f->name);
    free(f->dir);
    free(f->sql);
}

static void write_file(const fixture *f, const char *name, const char *text)
{
    sgt_write_file(f->dir, name, text);
}

static void remove_file(const fixture *f, const char *name)
{
    sgt_remove_file(f->dir, name);
}

static void load_set(fixture *f)
{
    sg_error err = {0};
    sg_migration_set_free(f->set);
    f->set = NULL;
    ck_assert_msg(sg_migration_set_load(&f->set, f->dir, &err) == 0, "%s", err.message);
}

static PGconn *connect_db(const char *conninfo)
{
    PGconn *conn = NULL;
    sg_error err = {0};
    ck_assert_msg(sg_pg_connect(&conn, conninfo, "test database", &err) == 0, "%s", err.message);
    return conn;
}

static sg_schema_desc *describe(const char *conninfo)
{
    PGconn *conn = connect_db(conninfo);
    sg_schema_desc *d = NULL;
    sg_error err = {0};
    ck_assert_msg(sg_schema_describe(&d, conn, &err) == 0, "describe: %s", err.message);
    PQfinish(conn);
    return d;
}

static char *fingerprint_of(const char *conninfo)
{
    sg_schema_desc *d = describe(conninfo);
    char *fp = sgt_asprintf("%s", sg_schema_desc_fingerprint(d));
    sg_schema_desc_free(d);
    return fp;
}

/* Every table's rows (the registry's too, when there is one), as an md5 of
 * its rows in text form, sorted. */
static const char rows_sql[] =
    "SELECT coalesce(string_agg(format('%s %s', c.oid::regclass,"
    "  (xpath('/row/h/text()', query_to_xml(format("
    "    'SELECT count(*) || '' '' || md5(coalesce(string_agg(t::text, '','' ORDER BY t::text),"
    "     '''')) AS h FROM ONLY %s t', c.oid::regclass), false, true, '')))[1]::text),"
    "  E'\\n' ORDER BY c.oid::regclass::text), '')"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'";

/* What a rehearsal must leave as it found it in the restored database. */
static char *db_state(const char *conninfo)
{
    sg_schema_desc *d = describe(conninfo);
    char *registry = sgt_pg_value(conninfo, "SELECT to_regnamespace('shardgate') IS NOT NULL");
    char *rows = sgt_pg_value(conninfo, rows_sql);
    char *state = sgt_asprintf("%s\nregistry %s\n%s", sg_schema_desc_text(d), registry, rows);
    free(rows);
    free(registry);
    sg_schema_desc_free(d);
    return state;
}

static const char *find_text(const char *text, const char *want)
{
    return text ? strstr(text, want) : NULL;
}

static void assert_error(const sg_error *err, int code, const char *const want[])
{
    ck_assert_msg(err->code == code, "error code %d, want %d: %s", err->code, code, err->message);
    for (size_t i = 0; want && want[i]; i++)
        ck_assert_msg(find_text(err->message, want[i]) || find_text(err->detail, want[i]),
                      "expected \"%s\" in:\n%s\ndetail: %s", want[i], err->message, err->detail);
}

static sg_rehearsal_options options(int64_t target)
{
    return (sg_rehearsal_options){.target = target};
}

static bool database_exists(const char *name)
{
    PGconn *conn = connect_db(server);
    const char *params[] = {name};
    PGresult *res = PQexecParams(conn, "SELECT count(*) FROM pg_database WHERE datname = $1", 1,
                                 NULL, params, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQerrorMessage(conn));
    bool exists = strcmp(PQgetvalue(res, 0, 0), "1") == 0;
    PQclear(res);
    PQfinish(conn);
    return exists;
}

/* Loads the set, rehearses it on the fixture's database, and checks that
 * database did not change, whatever the outcome. */
static int rehearse(sg_rehearsal_result *res, fixture *f, sg_rehearsal_options opts, sg_error *err)
{
    load_set(f);
    opts.set = f->set;
    char *before = db_state(f->db);
    memset(err, 0, sizeof(*err));
    int rc = sg_rehearse(res, server, f->name, &opts, err);
    ck_assert_msg(rc == err->code, "returned %d, error code %d", rc, err->code);
    ck_assert_msg(database_exists(f->name), "the rehearsal dropped the restored database %s (%s)",
                  f->name, err->message);
    char *after = db_state(f->db);
    ck_assert_msg(strcmp(before, after) == 0, "the restored database changed:\n%s\n---\n%s", before,
                  after);
    free(after);
    free(before);
    return rc;
}

static void rehearse_ok(sg_rehearsal_result *res, fixture *f, sg_rehearsal_options opts)
{
    sg_error err;
    int rc = rehearse(res, f, opts, &err);
    ck_assert_msg(rc == 0, "rehearsal failed (%d): %s\ndetail: %s", rc, err.message, err.detail);
}

static void rehearse_fails(fixture *f, sg_rehearsal_options opts, int code,
                           const char *const want[])
{
    sg_rehearsal_result res;
    sg_error err;
    ck_assert_int_eq(rehearse(&res, f, opts, &err), code);
    assert_error(&err, code, want);
    sg_rehearsal_result_clear(&res);
}

/* The fingerprint of a fresh database made like the fixture's and migrated
 * with its set up to target by sg_migrate: what the rehearsal must end with. */
static char *reference_fingerprint(const fixture *f, int64_t target)
{
    char *db = sgt_pg_create_db(pg, "reference");
    sgt_pg_exec(db, f->sql);
    PGconn *conn = connect_db(db);
    sg_apply_options o;
    sg_apply_options_init(&o, db);
    o.target = target;
    o.skip_lint = true;
    sg_apply_result applied = {0};
    sg_error err = {0};
    ck_assert_msg(sg_migrate(&applied, conn, f->set, &o, &err) == 0, "reference migrate: %s",
                  err.message);
    sg_apply_result_clear(&applied);
    PQfinish(conn);
    char *fp = fingerprint_of(db);
    free(db);
    return fp;
}

/* The versions of the files that went up, as "1,2,3". */
static char *versions(const sg_rehearsal_result *res)
{
    char *out = sgt_asprintf("%s", "");
    for (size_t i = 0; i < res->nfiles; i++) {
        char *more = sgt_asprintf("%s%s%lld", out, i ? "," : "",
                                  (long long)res->files[i].migration->version);
        free(out);
        out = more;
    }
    return out;
}

static void assert_versions(const sg_rehearsal_result *res, const char *want)
{
    char *got = versions(res);
    ck_assert_msg(strcmp(got, want) == 0, "files that went up: %s, want %s", got, want);
    free(got);
}

/* Each file went up; it went down and up again, or neither (-1: not run). */
static void assert_timed(const sg_rehearsal_file *file, bool down)
{
    const char *name = file->migration->file;
    ck_assert_msg(file->up_ms >= 0, "%s: up_ms %lld", name, (long long)file->up_ms);
    if (down) {
        ck_assert_msg(file->down_ms >= 0 && file->up_again_ms >= 0, "%s: down %lld, up again %lld",
                      name, (long long)file->down_ms, (long long)file->up_again_ms);
    } else {
        ck_assert_msg(file->down_ms == -1 && file->up_again_ms == -1,
                      "%s: down %lld, up again %lld, want -1 (not run)", name,
                      (long long)file->down_ms, (long long)file->up_again_ms);
    }
}

/* The tables compared, as "schema.name,..." in the result's order. */
static void assert_tables(const sg_rehearsal_result *res, const char *want)
{
    char *got = sgt_asprintf("%s", "");
    for (size_t i = 0; i < res->ntables; i++) {
        char *more = sgt_asprintf("%s%s%s.%s", got, i ? "," : "", res->tables[i].schema,
                                  res->tables[i].name);
        free(got);
        got = more;
    }
    ck_assert_msg(strcmp(got, want) == 0, "tables: %s, want %s", got, want);
    free(got);
}

static const sg_rehearsal_table *table(const sg_rehearsal_result *res, const char *name)
{
    for (size_t i = 0; i < res->ntables; i++)
        if (strcmp(res->tables[i].schema, "public") == 0 && strcmp(res->tables[i].name, name) == 0)
            return &res->tables[i];
    ck_abort_msg("no table public.%s in the result", name);
    return NULL;
}

static void assert_equal_table(const sg_rehearsal_result *res, const char *name, uint64_t rows,
                               size_t compared, size_t columns)
{
    const sg_rehearsal_table *t = table(res, name);
    ck_assert_msg(t->result == SG_TABLE_EQUAL, "%s: result %d, want equal", name, (int)t->result);
    ck_assert_msg(t->rows == rows, "%s: %llu rows, want %llu", name, (unsigned long long)t->rows,
                  (unsigned long long)rows);
    ck_assert_msg(t->columns_compared == compared && t->columns == columns,
                  "%s: %zu of %zu columns compared, want %zu of %zu", name, t->columns_compared,
                  t->columns, compared, columns);
}

static void assert_result(const sg_rehearsal_result *res, const char *name,
                          sg_table_comparison want)
{
    const sg_rehearsal_table *t = table(res, name);
    ck_assert_msg(t->result == want, "%s: result %d, want %d", name, (int)t->result, (int)want);
}

/* The shard as restored: a plain table with rows, a partitioned table with
 * two partitions, a table with a generated column, and one to drop. */
static const char shard_sql[] =
    "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text);"
    "INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.com'"
    "  FROM generate_series(1, 50) g;"
    "CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, kind text) PARTITION BY RANGE (at);"
    "CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');"
    "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
    "INSERT INTO events SELECT g, date '2023-07-01' + g, 'kind ' || g % 3"
    "  FROM generate_series(1, 300) g;" /* 183 days in 2023, 117 in 2024 */
    "CREATE TABLE prices (id int PRIMARY KEY, net numeric NOT NULL,"
    "  gross numeric GENERATED ALWAYS AS (round(net * 1.2, 2)) STORED);"
    "INSERT INTO prices (id, net) SELECT g, g * 10 FROM generate_series(1, 10) g;"
    "CREATE TABLE legacy (id int PRIMARY KEY, payload text);"
    "INSERT INTO legacy VALUES (1, 'a'), (2, 'b');";

static const char add_phone[] = "-- shardgate:up\n"
                                "ALTER TABLE customers ADD COLUMN phone text;\n"
                                "-- shardgate:down\n"
                                "ALTER TABLE customers DROP COLUMN phone;\n"
                                "-- shardgate:verify\n"
                                "SELECT count(*) = 50 FROM customers WHERE phone IS NULL;\n";

static const char index_email[] =
    "-- shardgate:transaction=off\n"
    "-- shardgate:up\n"
    "CREATE INDEX CONCURRENTLY customers_email ON customers (email);\n"
    "-- shardgate:down\n"
    "DROP INDEX CONCURRENTLY customers_email;\n"
    "-- shardgate:verify\n"
    "SELECT indisvalid FROM pg_index WHERE indexrelid = 'customers_email'::regclass;\n";

static const char create_invoices[] =
    "-- shardgate:up\n"
    "CREATE TABLE invoices (id bigint PRIMARY KEY,"
    " customer_id bigint NOT NULL REFERENCES customers, total numeric NOT NULL);\n"
    "INSERT INTO invoices VALUES (1, 1, 9.5), (2, 2, 12);\n"
    "-- shardgate:down\n"
    "DROP TABLE invoices;\n"
    "-- shardgate:verify\n"
    "SELECT count(*) = 2 FROM invoices;\n";

static const char drop_event_kind[] = "-- shardgate:destructive\n"
                                      "-- shardgate:up\n"
                                      "ALTER TABLE events DROP COLUMN kind;\n"
                                      "-- shardgate:down\n"
                                      "ALTER TABLE events ADD COLUMN kind text;\n";

static const char drop_legacy[] = "-- shardgate:destructive\n"
                                  "-- shardgate:up\n"
                                  "DROP TABLE legacy;\n"
                                  "-- shardgate:down\n"
                                  "CREATE TABLE legacy (id int PRIMARY KEY, payload text);\n";

static const char all_tables[] =
    "public.customers,public.events_2023,public.events_2024,public.legacy,public.prices";

START_TEST(rehearsal_succeeds)
{
    fixture f = setup("success", shard_sql);
    write_file(&f, "0001_add_phone.sql", add_phone);
    write_file(&f, "0002_index_email.sql", index_email);
    write_file(&f, "0003_create_invoices.sql", create_invoices);
    write_file(&f, "0004_drop_event_kind.sql", drop_event_kind);
    write_file(&f, "0005_drop_legacy.sql", drop_legacy);
    sg_rehearsal_result res;
    rehearse_ok(&res, &f, options(SG_APPLY_LATEST));

    assert_versions(&res, "1,2,3,4,5");
    for (size_t i = 0; i < res.nfiles; i++)
        assert_timed(&res.files[i], true);
    ck_assert(res.reverted);
    ck_assert_int_eq(res.from_version, 0);
    ck_assert_int_eq(res.to_version, 5);
    ck_assert(res.seconds > 0);

    /* partitions are compared, not their parent; a generated column is
     * computed, not stored, so it is not among the columns */
    assert_tables(&res, all_tables);
    assert_equal_table(&res, "customers", 50, 3, 3);
    assert_equal_table(&res, "events_2023", 183, 2, 3);
    assert_equal_table(&res, "events_2024", 117, 2, 3);
    assert_result(&res, "legacy", SG_TABLE_DROPPED);
    assert_equal_table(&res, "prices", 10, 2, 2);

    char *want = reference_fingerprint(&f, SG_APPLY_LATEST);
    ck_assert_str_eq(res.fingerprint, want);
    char *restored = fingerprint_of(f.db);
    ck_assert_str_ne(res.fingerprint, restored);
    free(restored);
    sg_rehearsal_result_clear(&res);

    /* a retried rehearsal starts from the restored database again */
    rehearse_ok(&res, &f, options(SG_APPLY_LATEST));
    assert_versions(&res, "1,2,3,4,5");
    ck_assert_str_eq(res.fingerprint, want);
    sg_rehearsal_result_clear(&res);
    free(want);
    teardown(&f);
}
END_TEST

static const char upper_names[] = "-- shardgate:up\n"
                                  "UPDATE customers SET name = upper(name);\n"
                                  "-- shardgate:down\n"
                                  "UPDATE customers SET name = lower(name);\n";

START_TEST(rows_changed_without_data_change)
{
    fixture f = setup("datachange", shard_sql);
    write_file(&f, "0001_upper_names.sql", upper_names);
    rehearse_fails(&f, options(SG_APPLY_LATEST), SG_E_MISMATCH,
                   (const char *const[]){"\"public\".\"customers\"", "data-change",
                                         "rows before 50, after 50", NULL});

    /* rows added (up, down, up again) change the count */
    remove_file(&f, "0001_upper_names.sql");
    write_file(&f, "0001_more_prices.sql",
               "-- shardgate:up\n"
               "INSERT INTO prices (id, net) VALUES (100, 1);\n"
               "-- shardgate:down\n"
               "DELETE FROM prices WHERE id = 100;\n");
    rehearse_fails(
        &f, options(SG_APPLY_LATEST), SG_E_MISMATCH,
        (const char *const[]){"\"public\".\"prices\"", "rows before 10, after 11", NULL});

    /* said on purpose: that table is not compared, the others still are */
    remove_file(&f, "0001_more_prices.sql");
    write_file(&f, "0001_upper_names.sql",
               "-- shardgate:data-change\n"
               "-- shardgate:up\n"
               "UPDATE customers SET name = upper(name);\n"
               "-- shardgate:down\n"
               "UPDATE customers SET name = lower(name);\n");
    sg_rehearsal_result res;
    rehearse_ok(&res, &f, options(SG_APPLY_LATEST));
    assert_versions(&res, "1");
    assert_tables(&res, all_tables);
    assert_result(&res, "customers", SG_TABLE_DATA_CHANGE);
    assert_equal_table(&res, "events_2023", 183, 3, 3);
    assert_equal_table(&res, "prices", 10, 2, 2);
    sg_rehearsal_result_clear(&res);

    /* ...and a data-change file does not excuse a table it does not write to */
    write_file(&f, "0002_more_prices.sql",
               "-- shardgate:up\n"
               "INSERT INTO prices (id, net) VALUES (100, 1);\n"
               "-- shardgate:down\n"
               "DELETE FROM prices WHERE id = 100;\n");
    rehearse_fails(&f, options(SG_APPLY_LATEST), SG_E_MISMATCH,
                   (const char *const[]){"\"public\".\"prices\"", NULL});
    teardown(&f);
}
END_TEST

/* A data-change file names the partitioned table; its rows live in the
 * partitions, which are what is compared. */
START_TEST(data_change_through_a_partitioned_table)
{
    fixture f = setup("partchange", shard_sql);
    write_file(&f, "0001_upper_kinds.sql",
               "-- shardgate:data-change\n"
               "-- shardgate:up\n"
               "UPDATE events SET kind = upper(kind);\n"
               "-- shardgate:down\n"
               "UPDATE events SET kind = lower(kind);\n");
    sg_rehearsal_result res;
    rehearse_ok(&res, &f, options(SG_APPLY_LATEST));
    assert_result(&res, "events_2023", SG_TABLE_DATA_CHANGE);
    assert_result(&res, "events_2024", SG_TABLE_DATA_CHANGE);
    assert_equal_table(&res, "customers", 50, 3, 3);
    sg_rehearsal_result_clear(&res);
    teardown(&f);
}
END_TEST

static const char create_audit_irreversible[] =
    "-- shardgate:irreversible\n"
    "-- shardgate:up\n"
    "CREATE TABLE audit (id bigint PRIMARY KEY, what text);\n"
    "INSERT INTO audit VALUES (1, 'created');\n";

START_TEST(irreversible_file_stops_the_down)
{
    fixture f = setup("irreversible", shard_sql);
    write_file(&f, "0001_add_phone.sql", add_phone);
    write_file(&f, "0002_create_audit.sql", create_audit_irreversible);
    sg_rehearsal_result res;
    rehearse_ok(&res, &f, options(SG_APPLY_LATEST));
    /* nothing can go down past version 2, and nothing is above it */
    assert_versions(&res, "1,2");
    assert_timed(&res.files[0], false);
    assert_timed(&res.files[1], false);
    ck_assert(!res.reverted);
    ck_assert_int_eq(res.to_version, 2);
    assert_equal_table(&res, "customers", 50, 3, 3);
    char *want = reference_fingerprint(&f, SG_APPLY_LATEST);
    ck_assert_str_eq(res.fingerprint, want);
    free(want);
    sg_rehearsal_result_clear(&res);

    /* the files above it still go down and up again */
    write_file(&f, "0003_index_email.sql", index_email);
    rehearse_ok(&res, &f, options(SG_APPLY_LATEST));
    assert_versions(&res, "1,2,3");
    assert_timed(&res.files[0], false);
    assert_timed(&res.files[1], false);
    assert_timed(&res.files[2], true);
    ck_assert(res.reverted);
    ck_assert_int_eq(res.to_version, 3);
    want = reference_fingerprint(&f, SG_APPLY_LATEST);
    ck_assert_str_eq(res.fingerprint, want);
    free(want);
    sg_rehearsal_result_clear(&res);

    /* a file without a down section cannot go down either, marked or not */
    remove_file(&f, "0002_create_audit.sql");
    write_file(&f, "0002_create_audit.sql",
               "-- shardgate:up\n"
               "CREATE TABLE audit (id bigint PRIMARY KEY, what text);\n");
    rehearse_ok(&res, &f, options(SG_APPLY_LATEST));
    assert_versions(&res, "1,2,3");
    assert_timed(&res.files[0], false);
    assert_timed(&res.files[1], false);
    assert_timed(&res.files[2], true);
    sg_rehearsal_result_clear(&res);
    teardown(&f);
}
END_TEST

START_TEST(failing_verify_names_the_file)
{
    fixture f = setup("verify", shard_sql);
    write_file(&f, "0001_add_phone.sql", add_phone);
    write_file(&f, "0002_check_customers.sql",
               "-- shardgate:up\n"
               "CREATE TABLE notes (id int);\n"
               "-- shardgate:down\n"
               "DROP TABLE notes;\n"
               "-- shardgate:verify\n"
               "SELECT count(*) = 51 FROM customers;\n");
    rehearse_fails(&f, options(SG_APPLY_LATEST), SG_E_MISMATCH,
                   (const char *const[]){"0002_check_customers.sql", "verify", NULL});
    teardown(&f);
}
END_TEST

START_TEST(broken_down_section_names_the_step)
{
    fixture f = setup("down", shard_sql);
    write_file(&f, "0001_notes.sql",
               "-- shardgate:up\n"
               "CREATE TABLE notes (id int);\n"
               "-- shardgate:down\n"
               "DROP TABLE no_such_table;\n");
    rehearse_fails(&f, options(SG_APPLY_LATEST), SG_E_DB,
                   (const char *const[]){"down", "0001_notes.sql", "no_such_table", NULL});
    teardown(&f);
}
END_TEST

static const char create_fast[] = "-- shardgate:up\n"
                                  "CREATE TABLE fast (id int);\n"
                                  "-- shardgate:down\n"
                                  "DROP TABLE fast;\n";

static const char create_slow[] = "-- shardgate:up\n"
                                  "SELECT pg_sleep(0.3);\n"
                                  "CREATE TABLE slow (id int);\n"
                                  "-- shardgate:down\n"
                                  "DROP TABLE slow;\n";

START_TEST(budget_and_timeouts)
{
    fixture f = setup("budget", shard_sql);
    write_file(&f, "0001_fast.sql", create_fast);
    write_file(&f, "0002_slow.sql", create_slow);
    sg_rehearsal_options o = options(SG_APPLY_LATEST);
    o.budget_ms = 100;
    rehearse_fails(&f, o, SG_E_OBJECTIVE, (const char *const[]){"0002_slow.sql", "100 ms", NULL});

    /* no budget: it passes, and the time measured is the time it took */
    sg_rehearsal_result res;
    rehearse_ok(&res, &f, options(SG_APPLY_LATEST));
    assert_versions(&res, "1,2");
    ck_assert_msg(res.files[1].up_ms >= 300 && res.files[1].up_again_ms >= 300,
                  "a pg_sleep(0.3) measured as %lld ms, then %lld ms",
                  (long long)res.files[1].up_ms, (long long)res.files[1].up_again_ms);
    sg_rehearsal_result_clear(&res);

    /* the statement timeout of the live apply applies here too */
    o = options(SG_APPLY_LATEST);
    o.statement_timeout_ms = 100;
    rehearse_fails(&f, o, SG_E_DB,
                   (const char *const[]){"0002_slow.sql", "statement timeout", NULL});
    teardown(&f);
}
END_TEST

static const char create_t1[] = "-- shardgate:up\nCREATE TABLE t1 (id int);\n"
                                "-- shardgate:down\nDROP TABLE t1;\n";
static const char create_t2[] = "-- shardgate:up\nCREATE TABLE t2 (id int);\n"
                                "-- shardgate:down\nDROP TABLE t2;\n";
static const char create_t3[] = "-- shardgate:up\nCREATE TABLE t3 (id int);\n"
                                "-- shardgate:down\nDROP TABLE t3;\n";

START_TEST(target_stops_at_a_version)
{
    fixture f = setup("target", shard_sql);
    write_file(&f, "0001_t1.sql", create_t1);
    write_file(&f, "0002_t2.sql", create_t2);
    write_file(&f, "0004_t3.sql", create_t3);
    sg_rehearsal_result res;
    rehearse_ok(&res, &f, options(2));
    assert_versions(&res, "1,2");
    ck_assert(res.reverted);
    ck_assert_int_eq(res.from_version, 0);
    ck_assert_int_eq(res.to_version, 2);
    char *want = reference_fingerprint(&f, 2), *latest = reference_fingerprint(&f, 4);
    ck_assert_str_eq(res.fingerprint, want);
    ck_assert_str_ne(res.fingerprint, latest);
    free(latest);
    free(want);
    sg_rehearsal_result_clear(&res);
    teardown(&f);
}
END_TEST

/* A shard that already has a registry: only what is pending runs, and the
 * registry is not among the tables compared (the copy's gains rows). */
START_TEST(shard_with_applied_migrations)
{
    fixture f = setup("applied", shard_sql);
    write_file(&f, "0001_t1.sql", create_t1);
    load_set(&f);
    PGconn *conn = connect_db(f.db);
    sg_apply_options o;
    sg_apply_options_init(&o, f.db);
    sg_apply_result applied = {0};
    sg_error err = {0};
    ck_assert_msg(sg_migrate(&applied, conn, f.set, &o, &err) == 0, "%s", err.message);
    sg_apply_result_clear(&applied);
    PQfinish(conn);

    write_file(&f, "0002_t2.sql", create_t2);
    write_file(&f, "0003_add_phone.sql", add_phone);
    sg_rehearsal_result res;
    rehearse_ok(&res, &f, options(SG_APPLY_LATEST));
    assert_versions(&res, "2,3");
    for (size_t i = 0; i < res.nfiles; i++)
        assert_timed(&res.files[i], true);
    ck_assert(res.reverted);
    ck_assert_int_eq(res.from_version, 1);
    ck_assert_int_eq(res.to_version, 3);
    assert_tables(&res, "public.customers,public.events_2023,public.events_2024,public.legacy,"
                        "public.prices,public.t1");
    assert_equal_table(&res, "t1", 0, 1, 1);
    char *want = reference_fingerprint(&f, SG_APPLY_LATEST);
    ck_assert_str_eq(res.fingerprint, want);
    free(want);
    sg_rehearsal_result_clear(&res);
    teardown(&f);
}
END_TEST

static void assert_nothing_ran(const fixture *f, const sg_rehearsal_result *res)
{
    ck_assert_uint_eq(res->nfiles, 0);
    ck_assert(!res->reverted);
    ck_assert_int_eq(res->from_version, 0);
    ck_assert_int_eq(res->to_version, 0);
    assert_tables(res, all_tables);
    assert_equal_table(res, "customers", 50, 3, 3);
    assert_equal_table(res, "events_2023", 183, 3, 3);
    assert_equal_table(res, "events_2024", 117, 3, 3);
    assert_equal_table(res, "legacy", 2, 2, 2);
    assert_equal_table(res, "prices", 10, 2, 2);
    char *want = fingerprint_of(f->db);
    ck_assert_str_eq(res->fingerprint, want);
    free(want);
}

START_TEST(nothing_pending)
{
    fixture f = setup("nothing", shard_sql);
    sg_rehearsal_result res;
    rehearse_ok(&res, &f, options(SG_APPLY_LATEST));
    assert_nothing_ran(&f, &res);
    sg_rehearsal_result_clear(&res);

    write_file(&f, "0001_t1.sql", create_t1);
    rehearse_ok(&res, &f, options(0));
    assert_nothing_ran(&f, &res);
    sg_rehearsal_result_clear(&res);
    teardown(&f);
}
END_TEST

START_TEST(database_that_does_not_exist)
{
    fixture f = setup("missingdb", shard_sql);
    write_file(&f, "0001_t1.sql", create_t1);
    load_set(&f);
    sg_rehearsal_options o = options(SG_APPLY_LATEST);
    o.set = f.set;
    sg_rehearsal_result res;
    sg_error err = {0};
    ck_assert_int_eq(sg_rehearse(&res, server, "no_such_database", &o, &err), SG_E_DB);
    assert_error(&err, SG_E_DB, (const char *const[]){"no_such_database", NULL});
    sg_rehearsal_result_clear(&res);

    /* nor a server that is not there: the port of the test server, closed */
    char *gone = sgt_asprintf("host=%s port=1 user=postgres", sgt_pg_host(pg));
    memset(&err, 0, sizeof(err));
    ck_assert_int_eq(sg_rehearse(&res, gone, f.name, &o, &err), SG_E_DB);
    assert_error(&err, SG_E_DB, (const char *const[]){"cannot connect", "port='1'", NULL});
    sg_rehearsal_result_clear(&res);
    free(gone);
    teardown(&f);
}
END_TEST

/* The copy is made with the restored database as its template, which
 * PostgreSQL refuses while another session is connected to it. */
START_TEST(restored_database_in_use)
{
    fixture f = setup("inuse", shard_sql);
    write_file(&f, "0001_t1.sql", create_t1);
    PGconn *other = connect_db(f.db);
    char *want = sgt_asprintf("cannot copy database %s", f.name);
    rehearse_fails(&f, options(SG_APPLY_LATEST), SG_E_DB,
                   (const char *const[]){want, "being accessed by other users", NULL});
    free(want);
    PQfinish(other);
    teardown(&f);
}
END_TEST

/* A database created under a name that needs quoting, in SQL and in a
 * conninfo; returns its conninfo. */
static char *create_named_db(const char *name)
{
    PGconn *conn = connect_db(server);
    char *ident = PQescapeIdentifier(conn, name, strlen(name));
    ck_assert_ptr_nonnull(ident);
    char *sql = sgt_asprintf("CREATE DATABASE %s TEMPLATE template0", ident);
    sgt_pg_exec(server, sql);
    free(sql);
    PQfreemem(ident);
    PQfinish(conn);
    char *quoted = sgt_asprintf("%s", "");
    for (const char *p = name; *p; p++) {
        char *more = sgt_asprintf("%s%s%c", quoted, *p == '\'' || *p == '\\' ? "\\" : "", *p);
        free(quoted);
        quoted = more;
    }
    char *conninfo = sgt_asprintf("host=%s port=%d user=postgres dbname='%s'", sgt_pg_host(pg),
                                  sgt_pg_port(pg), quoted);
    free(quoted);
    return conninfo;
}

/* Rehearses one reversible file on a database of that name. */
static void rehearse_named(const char *name)
{
    fixture f = setup_in(create_named_db(name), shard_sql);
    ck_assert_str_eq(f.name, name);
    write_file(&f, "0001_add_phone.sql", add_phone);
    sg_rehearsal_result res;
    rehearse_ok(&res, &f, options(SG_APPLY_LATEST));
    assert_versions(&res, "1");
    assert_equal_table(&res, "customers", 50, 3, 3);
    sg_rehearsal_result_clear(&res);
    teardown(&f);
}

START_TEST(names_that_need_quoting)
{
    rehearse_named("Shard \"7\" o'Brien \\ copy");
    /* the longest name there is: the copy's name must still fit */
    rehearse_named("s123456789012345678901234567890123456789012345678901234567890ab");
}
END_TEST

/* A long name cut short to name the copy must not be cut inside a
 * character. */
START_TEST(long_name_cut_inside_a_character)
{
    rehearse_named("s123456789012345678901234567890123456789012345678\xc3\xa9t");
}
END_TEST

/* A long name cut short must not give the name of the restored database
 * itself, which the copy replaces. */
START_TEST(long_name_cut_to_itself)
{
    rehearse_named("r1234567890123456789012345678901234567890123456789_rehearsal");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("rehearse");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"success", rehearsal_succeeds},
        {"data_change", rows_changed_without_data_change},
        {"data_change_partitioned", data_change_through_a_partitioned_table},
        {"irreversible", irreversible_file_stops_the_down},
        {"failing_verify", failing_verify_names_the_file},
        {"broken_down", broken_down_section_names_the_step},
        {"budget", budget_and_timeouts},
        {"target", target_stops_at_a_version},
        {"applied", shard_with_applied_migrations},
        {"nothing_pending", nothing_pending},
        {"missing_database", database_that_does_not_exist},
        {"in_use", restored_database_in_use},
        {"quoted_names", names_that_need_quoting},
        {"name_cut_in_a_character", long_name_cut_inside_a_character},
        {"name_cut_to_itself", long_name_cut_to_itself},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        /* as CTest sets it: Check's 4 s is less than in_use waits (the
         * server retries a busy template for 5 s) */
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    pg = sgt_pg_start();
    server = sgt_pg_conninfo(pg, "postgres");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sgt_remove_tree(root);
    free(server);
    sgt_pg_stop(pg);
    return failed ? 1 : 0;
}
