/* One shard through the four gates (stages/shard.h) on a real server, with a
 * file:// store and the local sandbox: a run that passes every gate and what
 * it leaves (a stored snapshot, the registry, no sandbox, no lock); a
 * rehearsal that fails and keeps the shard untouched; drift between the
 * rehearsal and the apply; writes during a quiesced run; a data-change file;
 * a shard another session holds; a run resumed from the test restore; and a
 * shard that cannot be reached. The observer sees every gate start and end,
 * and makes the changes a test needs at the start of a gate. */
#include "tests/harness/cli.h"
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <check.h>
#include <dirent.h>
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
#include "stages/shard.h"

static sgt_pg_server *pg;
static char root[] = "/tmp/sgt-shard-XXXXXX";
static char key[512], pub[512];
static char *bindir;

/* What the observer saw of one gate's start or end. */
typedef struct observed {
    sg_gate gate;
    bool ran;
    int rc;
    double seconds;
} observed;

/* One test's shard: its database, migrations, store and TMPDIR, and what
 * the observer saw and does. */
typedef struct fixture {
    const char *name;
    char *db;
    char *dir;       /* migrations */
    char *store_dir; /* the file:// store */
    char *store_url;
    char *tmp; /* TMPDIR, where sandboxes and restores make their directories */
    const char *trust[1];
    sg_migration_set *set;
    sg_shard_settings settings;
    observed calls[2 * SG_GATE_COUNT];
    int ncalls;
    sg_gate act_at;      /* at the start of this gate, */
    const char *act_sql; /* run this on the live shard (NULL: nothing) */
} fixture;

/* The shard: a table the migrations extend, a partitioned table, a table
 * nothing touches, and one a data-change file updates. */
static const char shard_sql[] =
    "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text);"
    "INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.com'"
    "  FROM generate_series(1, 50) g;"
    "CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, kind text) PARTITION BY RANGE (at);"
    "CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');"
    "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
    "INSERT INTO events SELECT g, date '2023-07-01' + g, 'kind ' || g % 3"
    "  FROM generate_series(1, 300) g;"
    "CREATE TABLE tags (id int PRIMARY KEY, label text NOT NULL);"
    "INSERT INTO tags SELECT g, 'tag ' || g FROM generate_series(1, 5) g;"
    "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL);"
    "INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 20) g;";

/* The tables the rehearsal compares over a non-empty column list on this
 * shard when no data-change file names one of them. */
#define SHARD_TABLES 5

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

/* Its verify section is false: customers has 50 rows. */
static const char check_customers_wrong[] = "-- shardgate:up\n"
                                            "CREATE TABLE notes (id int);\n"
                                            "-- shardgate:down\n"
                                            "DROP TABLE notes;\n"
                                            "-- shardgate:verify\n"
                                            "SELECT count(*) = 51 FROM customers;\n";

static const char check_customers_fixed[] = "-- shardgate:up\n"
                                            "CREATE TABLE notes (id int);\n"
                                            "-- shardgate:down\n"
                                            "DROP TABLE notes;\n"
                                            "-- shardgate:verify\n"
                                            "SELECT count(*) = 50 FROM customers;\n";

static const char ship_orders[] = "-- shardgate:data-change\n"
                                  "-- shardgate:up\n"
                                  "UPDATE orders SET status = 'shipped' WHERE id <= 10;\n"
                                  "-- shardgate:down\n"
                                  "UPDATE orders SET status = 'new' WHERE id <= 10;\n"
                                  "-- shardgate:verify\n"
                                  "SELECT count(*) = 10 FROM orders WHERE status = 'shipped';\n";

static void observe(void *ctx, const sg_shard_settings *shard, sg_gate gate,
                    const sg_gate_record *record)
{
    fixture *f = ctx;
    ck_assert_ptr_eq(shard, &f->settings);
    ck_assert_msg(f->ncalls < 2 * SG_GATE_COUNT, "the observer was called more than %d times",
                  2 * SG_GATE_COUNT);
    f->calls[f->ncalls++] = (observed){gate, record->ran, record->rc, record->seconds};
    if (!record->ran && gate == f->act_at && f->act_sql)
        sgt_pg_exec(f->db, f->act_sql);
}

static void load_set(fixture *f)
{
    sg_error err = {0};
    sg_migration_set_free(f->set);
    f->set = NULL;
    ck_assert_msg(sg_migration_set_load(&f->set, f->dir, &err) == 0, "%s", err.message);
    f->settings.set = f->set;
}

/* A shard named name with its own store and TMPDIR (set for this test's
 * process: Check forks one per test), quiesced, to the latest version. */
static fixture setup(const char *name)
{
    fixture f = {.name = name};
    char *base = sgt_asprintf("%s/%s", root, name);
    ck_assert_int_eq(mkdir(base, 0755), 0);
    f.db = sgt_pg_create_db(pg, name);
    sgt_pg_exec(f.db, shard_sql);
    f.dir = sgt_asprintf("%s/migrations", base);
    ck_assert_int_eq(mkdir(f.dir, 0755), 0);
    f.store_dir = sgt_asprintf("%s/store", base);
    f.store_url = sgt_asprintf("file://%s", f.store_dir);
    /* As root, the sandbox's server runs as another user, who must reach it. */
    f.tmp = sgt_asprintf("%s/tmp", base);
    ck_assert_int_eq(mkdir(f.tmp, 01777), 0);
    ck_assert_int_eq(chmod(f.tmp, 01777), 0);
    ck_assert_int_eq(setenv("TMPDIR", f.tmp, 1), 0);
    free(base);
    f.trust[0] = pub;
    f.settings = (sg_shard_settings){
        .name = name,
        .dsn = f.db,
        .key_path = key,
        .sandbox = {.driver = "local", .pg_bindir = bindir},
        .target = SG_APPLY_LATEST,
        .quiesced = true,
        .run_id = "test-run",
        .pg_bindir = bindir,
        .jobs = 2,
    };
    f.settings.store = (sg_store_config){.url = f.store_url};
    return f;
}

static void teardown(fixture *f)
{
    sg_migration_set_free(f->set);
    free(f->db);
    free(f->dir);
    free(f->store_dir);
    free(f->store_url);
    free(f->tmp);
}

static void write_file(const fixture *f, const char *name, const char *text)
{
    sgt_write_file(f->dir, name, text);
}

/* Runs the gates from first with the observer, after loading the set. The
 * trust list is pointed at here: setup returned the fixture by value. */
static int run(sg_shard_outcome *out, fixture *f, sg_gate first, sg_error *err)
{
    load_set(f);
    f->settings.trust = (sg_strlist){f->trust, 1};
    f->ncalls = 0;
    memset(err, 0, sizeof(*err));
    int rc = sg_shard_run(out, &f->settings, first, observe, f, err);
    ck_assert_msg(rc == err->code, "returned %d, error code %d (%s)", rc, err->code, err->message);
    return rc;
}

static void run_ok(sg_shard_outcome *out, fixture *f, sg_gate first)
{
    sg_error err;
    int rc = run(out, f, first, &err);
    ck_assert_msg(rc == 0, "the run failed (%d): %s\ndetail: %s\nhint: %s", rc, err.message,
                  err.detail, err.hint);
}

static void assert_starts_with(const char *text, const char *prefix)
{
    ck_assert_msg(strncmp(text, prefix, strlen(prefix)) == 0, "\"%s\" does not start with \"%s\"",
                  text, prefix);
}

static void assert_contains(const char *text, const char *want)
{
    ck_assert_msg(strstr(text, want) != NULL, "\"%s\" not in:\n%s", want, text);
}

static void assert_value(const fixture *f, const char *sql, const char *want)
{
    char *v = sgt_pg_value(f->db, sql);
    ck_assert_msg(v && strcmp(v, want) == 0, "%s: got %s, want %s", sql, v ? v : "NULL", want);
    free(v);
}

/* Entries of a directory but . and ..; -1 when it does not exist. */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* The shard's snapshots in the store; -1 when it has none at all. */
static int stored_snapshots(const fixture *f)
{
    char *dir = sgt_asprintf("%s/shards/%s/snapshots", f->store_dir, f->name);
    int n = entries(dir);
    free(dir);
    return n;
}

/* The snapshot is complete in the store (its manifest, the commit point,
 * is there) and `shardgate snapshots` lists it. */
static void assert_stored(const fixture *f, const char *id)
{
    struct stat st;
    char *manifest = sgt_asprintf("%s/shards/%s/snapshots/%s/manifest", f->store_dir, f->name, id);
    ck_assert_msg(stat(manifest, &st) == 0 && st.st_size > 0, "no manifest %s", manifest);
    free(manifest);
    const char *argv[] = {"shardgate", "snapshots", "--store", f->store_url,
                          "--shard",   f->name,     NULL};
    char *listing = sgt_shardgate(0, argv);
    assert_contains(listing, id);
    free(listing);
}

static void assert_no_leftovers(const fixture *f)
{
    ck_assert_msg(entries(f->tmp) == 0, "%d entries left in TMPDIR %s", entries(f->tmp), f->tmp);
    assert_value(f, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", "0");
}

/* The observer saw gates first.. start and end in order; the run ended at
 * gate last with rc (0: every gate passed). */
static void assert_calls(const fixture *f, sg_gate first, sg_gate last, int rc)
{
    int want = 2 * (int)(last - first + 1);
    ck_assert_msg(f->ncalls == want, "the observer was called %d times, want %d", f->ncalls, want);
    for (int i = 0; i < want; i++) {
        const observed *c = &f->calls[i];
        sg_gate gate = first + (sg_gate)(i / 2);
        bool end = i % 2 == 1;
        ck_assert_msg(c->gate == gate && c->ran == end, "call %d: gate %s ran %d, want %s ran %d",
                      i, sg_gate_name(c->gate), c->ran, sg_gate_name(gate), end);
        if (end) {
            int want_rc = gate == last ? rc : 0;
            ck_assert_msg(c->rc == want_rc, "%s ended with %d, want %d", sg_gate_name(gate), c->rc,
                          want_rc);
        }
    }
}

/* The gate ran and passed, and took some time. */
static void assert_passed(const sg_shard_outcome *out, sg_gate gate)
{
    const sg_gate_record *g = &out->gates[gate];
    ck_assert_msg(g->ran && g->rc == 0 && g->seconds > 0 && g->message[0] == '\0',
                  "%s: ran %d rc %d seconds %f message \"%s\"", sg_gate_name(gate), g->ran, g->rc,
                  g->seconds, g->message);
}

/* The gate failed with code, its error names the shard and the gate, and
 * the gate's record keeps that message. */
static void assert_failed(const fixture *f, const sg_shard_outcome *out, sg_gate gate,
                          const sg_error *err, int code)
{
    const sg_gate_record *g = &out->gates[gate];
    ck_assert_msg(err->code == code, "error %d, want %d: %s\ndetail: %s", err->code, code,
                  err->message, err->detail);
    ck_assert_msg(g->ran && g->rc == code, "%s: ran %d rc %d, want %d", sg_gate_name(gate), g->ran,
                  g->rc, code);
    ck_assert_str_eq(g->message, err->message);
    char *prefix = sgt_asprintf("%s: %s: ", f->name, sg_gate_name(gate));
    assert_starts_with(err->message, prefix);
    free(prefix);
}

static void assert_not_run(const sg_shard_outcome *out, sg_gate gate)
{
    ck_assert_msg(!out->gates[gate].ran, "%s ran", sg_gate_name(gate));
}

/* The rehearsal's tables the verify gate must compare with the snapshot. */
static size_t comparable_tables(const sg_shard_outcome *out)
{
    size_t n = 0;
    for (size_t i = 0; i < out->rehearsal.ntables; i++) {
        const sg_rehearsal_table *t = &out->rehearsal.tables[i];
        n += t->result == SG_TABLE_EQUAL && t->column_list && t->column_list[0];
    }
    return n;
}

static const sg_rehearsal_table *rehearsed_table(const sg_shard_outcome *out, const char *name)
{
    for (size_t i = 0; i < out->rehearsal.ntables; i++)
        if (strcmp(out->rehearsal.tables[i].schema, "public") == 0 &&
            strcmp(out->rehearsal.tables[i].name, name) == 0)
            return &out->rehearsal.tables[i];
    ck_abort_msg("the rehearsal did not compare public.%s", name);
    return NULL;
}

/* Every table's rows, as a count and an md5 of their text, sorted. */
static const char rows_sql[] =
    "SELECT coalesce(string_agg(format('%s %s', c.oid::regclass,"
    "  (xpath('/row/h/text()', query_to_xml(format("
    "    'SELECT count(*) || '' '' || md5(coalesce(string_agg(t::text, '','' ORDER BY t::text),"
    "     '''')) AS h FROM ONLY %s t', c.oid::regclass), false, true, '')))[1]::text),"
    "  E'\\n' ORDER BY c.oid::regclass::text), '')"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'";

/* The shard's schema (its description) and rows. */
static char *shard_state(const fixture *f)
{
    PGconn *conn = NULL;
    sg_schema_desc *d = NULL;
    sg_error err = {0};
    ck_assert_msg(sg_pg_connect(&conn, f->db, "shard", &err) == 0, "%s", err.message);
    ck_assert_msg(sg_schema_describe(&d, conn, &err) == 0, "describe: %s", err.message);
    PQfinish(conn);
    char *rows = sgt_pg_value(f->db, rows_sql);
    char *state = sgt_asprintf("%s\n%s", sg_schema_desc_text(d), rows);
    free(rows);
    sg_schema_desc_free(d);
    return state;
}

static void assert_unchanged(const fixture *f, const char *before)
{
    char *after = shard_state(f);
    ck_assert_msg(strcmp(before, after) == 0, "the shard changed:\n%s\n---\n%s", before, after);
    free(after);
    assert_value(f, "SELECT to_regnamespace('shardgate') IS NULL", "t");
}

START_TEST(every_gate_passes)
{
    fixture f = setup("success");
    write_file(&f, "0001_add_phone.sql", add_phone);
    write_file(&f, "0002_index_email.sql", index_email);
    write_file(&f, "0003_create_invoices.sql", create_invoices);
    sg_shard_outcome out = {0};
    run_ok(&out, &f, SG_GATE_SNAPSHOT);

    for (sg_gate g = SG_GATE_SNAPSHOT; g <= SG_GATE_VERIFY; g++)
        assert_passed(&out, g);
    assert_calls(&f, SG_GATE_SNAPSHOT, SG_GATE_VERIFY, 0);

    ck_assert_msg(out.snapshot_id[0] != '\0', "no snapshot id");
    assert_stored(&f, out.snapshot_id);
    ck_assert_int_eq(stored_snapshots(&f), 1);
    ck_assert_str_eq(out.restore.id, out.snapshot_id);

    ck_assert_uint_eq(out.rehearsal.nfiles, 3);
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(out.rehearsal.files[i].migration->version, (int64_t)i + 1);
    ck_assert(out.rehearsal.reverted);
    ck_assert_int_eq(out.rehearsal.from_version, 0);
    ck_assert_int_eq(out.rehearsal.to_version, 3);

    ck_assert_int_eq(out.from_version, 0);
    ck_assert_int_eq(out.to_version, 3);
    ck_assert_uint_eq(out.applied, 3);
    assert_value(&f,
                 "SELECT string_agg(version || ' ' || status, ',' ORDER BY version)"
                 " FROM shardgate.migrations",
                 "1 applied,2 applied,3 applied");
    char *sql = sgt_asprintf("SELECT count(*) FROM shardgate.migrations"
                             " WHERE snapshot_id = '%s' AND run_id = 'test-run'",
                             out.snapshot_id);
    assert_value(&f, sql, "3");
    free(sql);
    assert_value(
        &f, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'customers_email'::regclass", "t");
    assert_value(&f, "SELECT count(*) FROM invoices", "2");

    ck_assert_str_eq(out.live_fingerprint, out.rehearsal.fingerprint);
    ck_assert_uint_eq(comparable_tables(&out), SHARD_TABLES);
    ck_assert_uint_eq(out.tables_verified, comparable_tables(&out));
    assert_no_leftovers(&f);
    sg_shard_outcome_clear(&out);
    teardown(&f);
}
END_TEST

START_TEST(failed_rehearsal_blocks_the_apply)
{
    fixture f = setup("badverify");
    write_file(&f, "0001_add_phone.sql", add_phone);
    write_file(&f, "0002_check_customers.sql", check_customers_wrong);
    char *before = shard_state(&f);
    sg_shard_outcome out = {0};
    sg_error err;
    ck_assert_int_eq(run(&out, &f, SG_GATE_SNAPSHOT, &err), SG_E_MISMATCH);
    assert_failed(&f, &out, SG_GATE_TEST_RESTORE, &err, SG_E_MISMATCH);
    assert_contains(err.message, "0002_check_customers.sql");
    assert_passed(&out, SG_GATE_SNAPSHOT);
    assert_not_run(&out, SG_GATE_APPLY);
    assert_not_run(&out, SG_GATE_VERIFY);
    assert_calls(&f, SG_GATE_SNAPSHOT, SG_GATE_TEST_RESTORE, SG_E_MISMATCH);
    assert_unchanged(&f, before);
    /* the snapshot stays: it is a good one, whatever the migrations do */
    assert_stored(&f, out.snapshot_id);
    assert_no_leftovers(&f);
    free(before);
    sg_shard_outcome_clear(&out);
    teardown(&f);
}
END_TEST

START_TEST(drift_after_the_rehearsal)
{
    fixture f = setup("drift");
    write_file(&f, "0001_add_phone.sql", add_phone);
    f.act_at = SG_GATE_VERIFY;
    f.act_sql = "ALTER TABLE tags ADD COLUMN sneaky int";
    sg_shard_outcome out = {0};
    sg_error err;
    ck_assert_int_eq(run(&out, &f, SG_GATE_SNAPSHOT, &err), SG_E_MISMATCH);
    assert_failed(&f, &out, SG_GATE_VERIFY, &err, SG_E_MISMATCH);
    ck_assert_str_eq(err.message, "drift: verify: the shard's schema differs from the rehearsal's");
    /* that column and nothing else */
    ck_assert_str_eq(err.detail, "added on the shard: column public.tags.sneaky");
    for (sg_gate g = SG_GATE_SNAPSHOT; g < SG_GATE_VERIFY; g++)
        assert_passed(&out, g);
    assert_calls(&f, SG_GATE_SNAPSHOT, SG_GATE_VERIFY, SG_E_MISMATCH);
    ck_assert_str_ne(out.live_fingerprint, out.rehearsal.fingerprint);
    assert_no_leftovers(&f);
    sg_shard_outcome_clear(&out);
    teardown(&f);
}
END_TEST

static const char insert_tag[] = "INSERT INTO tags VALUES (6, 'written meanwhile')";

START_TEST(write_during_a_quiesced_run)
{
    fixture f = setup("quiesced");
    write_file(&f, "0001_add_phone.sql", add_phone);
    f.act_at = SG_GATE_VERIFY;
    f.act_sql = insert_tag;
    sg_shard_outcome out = {0};
    sg_error err;
    ck_assert_int_eq(run(&out, &f, SG_GATE_SNAPSHOT, &err), SG_E_MISMATCH);
    assert_failed(&f, &out, SG_GATE_VERIFY, &err, SG_E_MISMATCH);
    assert_contains(err.message, "table \"public\".\"tags\" differs from the snapshot");
    assert_contains(err.detail, "rows in the snapshot 5, on the shard 6");
    assert_calls(&f, SG_GATE_SNAPSHOT, SG_GATE_VERIFY, SG_E_MISMATCH);
    assert_no_leftovers(&f);
    sg_shard_outcome_clear(&out);
    teardown(&f);
}
END_TEST

START_TEST(write_during_a_run_not_quiesced)
{
    fixture f = setup("notquiesced");
    write_file(&f, "0001_add_phone.sql", add_phone);
    f.act_at = SG_GATE_VERIFY;
    f.act_sql = insert_tag;
    f.settings.quiesced = false;
    sg_shard_outcome out = {0};
    run_ok(&out, &f, SG_GATE_SNAPSHOT);
    for (sg_gate g = SG_GATE_SNAPSHOT; g <= SG_GATE_VERIFY; g++)
        assert_passed(&out, g);
    ck_assert_uint_eq(comparable_tables(&out), SHARD_TABLES);
    ck_assert_uint_eq(out.tables_verified, 0);
    assert_value(&f, "SELECT count(*) FROM tags", "6");
    assert_no_leftovers(&f);
    sg_shard_outcome_clear(&out);
    teardown(&f);
}
END_TEST

START_TEST(data_change_table_is_not_compared)
{
    fixture f = setup("datachange");
    write_file(&f, "0001_ship_orders.sql", ship_orders);
    sg_shard_outcome out = {0};
    run_ok(&out, &f, SG_GATE_SNAPSHOT);
    assert_calls(&f, SG_GATE_SNAPSHOT, SG_GATE_VERIFY, 0);
    const sg_rehearsal_table *orders = rehearsed_table(&out, "orders");
    ck_assert_int_eq(orders->result, SG_TABLE_DATA_CHANGE);
    ck_assert_uint_eq(comparable_tables(&out), SHARD_TABLES - 1);
    ck_assert_uint_eq(out.tables_verified, SHARD_TABLES - 1);
    assert_value(&f, "SELECT count(*) FROM orders WHERE status = 'shipped'", "10");
    assert_no_leftovers(&f);
    sg_shard_outcome_clear(&out);
    teardown(&f);
}
END_TEST

START_TEST(shard_held_by_another_session)
{
    fixture f = setup("busy");
    write_file(&f, "0001_add_phone.sql", add_phone);
    char *conninfo = sgt_asprintf("%s application_name=sgt-holder", f.db);
    PGconn *holder = PQconnectdb(conninfo);
    ck_assert_msg(PQstatus(holder) == CONNECTION_OK, "%s", PQerrorMessage(holder));
    PGresult *res = PQexec(holder, "SELECT pg_advisory_lock(1936220530, 1)");
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQerrorMessage(holder));
    PQclear(res);
    char *before = shard_state(&f);

    sg_shard_outcome out = {0};
    sg_error err;
    ck_assert_int_eq(run(&out, &f, SG_GATE_SNAPSHOT, &err), SG_E_BUSY);
    assert_starts_with(err.message, "busy: the migration lock is held by another session");
    char *pid = sgt_asprintf("pid %d,", PQbackendPID(holder));
    assert_contains(err.message, pid);
    assert_contains(err.message, "application_name \"sgt-holder\"");
    ck_assert_int_eq(f.ncalls, 0);
    for (sg_gate g = SG_GATE_SNAPSHOT; g <= SG_GATE_VERIFY; g++)
        assert_not_run(&out, g);
    ck_assert_str_eq(out.snapshot_id, "");
    ck_assert_int_eq(entries(f.store_dir), -1);
    assert_unchanged(&f, before);
    ck_assert_int_eq(entries(f.tmp), 0);
    /* the holder's lock, and only it */
    char *want = sgt_asprintf("%d", PQbackendPID(holder));
    assert_value(&f, "SELECT string_agg(pid::text, ',') FROM pg_locks WHERE locktype = 'advisory'",
                 want);
    free(want);
    free(pid);
    free(before);
    PQfinish(holder);
    free(conninfo);
    teardown(&f);
}
END_TEST

START_TEST(resume_from_the_test_restore)
{
    fixture f = setup("resume");
    write_file(&f, "0001_add_phone.sql", add_phone);
    write_file(&f, "0002_check_customers.sql", check_customers_wrong);
    sg_shard_outcome out = {0};
    sg_error err;
    ck_assert_int_eq(run(&out, &f, SG_GATE_SNAPSHOT, &err), SG_E_MISMATCH);
    assert_failed(&f, &out, SG_GATE_TEST_RESTORE, &err, SG_E_MISMATCH);
    char id[SG_SNAPSHOT_ID_MAX];
    ck_assert_msg(out.snapshot_id[0] != '\0', "no snapshot id");
    memcpy(id, out.snapshot_id, sizeof(id));

    /* the fix, and the run resumed: no new snapshot, the first one's used */
    sgt_remove_file(f.dir, "0002_check_customers.sql");
    write_file(&f, "0002_check_customers.sql", check_customers_fixed);
    sg_shard_outcome_clear(&out);
    memcpy(out.snapshot_id, id, sizeof(id));
    run_ok(&out, &f, SG_GATE_TEST_RESTORE);
    assert_not_run(&out, SG_GATE_SNAPSHOT);
    for (sg_gate g = SG_GATE_TEST_RESTORE; g <= SG_GATE_VERIFY; g++)
        assert_passed(&out, g);
    assert_calls(&f, SG_GATE_TEST_RESTORE, SG_GATE_VERIFY, 0);
    ck_assert_str_eq(out.snapshot_id, id);
    ck_assert_str_eq(out.restore.id, id);
    ck_assert_int_eq(stored_snapshots(&f), 1);
    ck_assert_int_eq(out.to_version, 2);
    char *sql = sgt_asprintf("SELECT count(*) FILTER (WHERE snapshot_id = '%s') || ' of '"
                             " || count(*) FROM shardgate.migrations WHERE status = 'applied'",
                             id);
    assert_value(&f, sql, "2 of 2");
    free(sql);
    ck_assert_str_eq(out.live_fingerprint, out.rehearsal.fingerprint);
    assert_no_leftovers(&f);
    sg_shard_outcome_clear(&out);
    teardown(&f);
}
END_TEST

START_TEST(resume_without_a_snapshot_id)
{
    fixture f = setup("resumeusage");
    write_file(&f, "0001_add_phone.sql", add_phone);
    char *before = shard_state(&f);
    sg_shard_outcome out = {0};
    sg_error err;
    ck_assert_int_eq(run(&out, &f, SG_GATE_TEST_RESTORE, &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "resumeusage: resuming needs the run's snapshot id");
    ck_assert_int_eq(f.ncalls, 0);
    for (sg_gate g = SG_GATE_SNAPSHOT; g <= SG_GATE_VERIFY; g++)
        assert_not_run(&out, g);
    assert_unchanged(&f, before);
    assert_no_leftovers(&f);
    free(before);
    teardown(&f);
}
END_TEST

START_TEST(shard_that_cannot_be_reached)
{
    fixture f = setup("unreachable");
    write_file(&f, "0001_add_phone.sql", add_phone);
    char *dsn = sgt_asprintf("host=%s port=1 user=postgres dbname=postgres", sgt_pg_host(pg));
    f.settings.dsn = dsn;
    sg_shard_outcome out = {0};
    sg_error err;
    ck_assert_int_eq(run(&out, &f, SG_GATE_SNAPSHOT, &err), SG_E_DB);
    ck_assert_str_eq(err.message, "unreachable: cannot connect to the shard");
    assert_contains(err.detail, "port='1'");
    ck_assert_int_eq(f.ncalls, 0);
    for (sg_gate g = SG_GATE_SNAPSHOT; g <= SG_GATE_VERIFY; g++)
        assert_not_run(&out, g);
    ck_assert_int_eq(entries(f.store_dir), -1);
    ck_assert_int_eq(entries(f.tmp), 0);
    free(dsn);
    teardown(&f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("shard");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"success", every_gate_passes},
        {"failed_rehearsal", failed_rehearsal_blocks_the_apply},
        {"drift", drift_after_the_rehearsal},
        {"quiesced", write_during_a_quiesced_run},
        {"not_quiesced", write_during_a_run_not_quiesced},
        {"data_change", data_change_table_is_not_compared},
        {"busy", shard_held_by_another_session},
        {"resume", resume_from_the_test_restore},
        {"resume_usage", resume_without_a_snapshot_id},
        {"unreachable", shard_that_cannot_be_reached},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        /* as CTest sets it: a sandbox alone can take longer than Check's 4 s */
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    pg = sgt_pg_start();
    bindir = sgt_pg_bindir();
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    /* As root, sandbox servers run as another user, who must reach TMPDIR. */
    chmod(root, 0755);
    sgt_keygen_or_exit(root, "runner", key, pub);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sgt_remove_tree(root);
    free(bindir);
    sgt_pg_stop(pg);
    return failed ? 1 : 0;
}
