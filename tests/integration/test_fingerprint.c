/* Schema fingerprints against a real server: what must not change the
 * fingerprint (creation order, dropped columns, owners, privileges, data,
 * session settings, the registry schema, a dump and restore), what must
 * (each kind of drift, named in the diff), transactions, and failures. */
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <check.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/pg.h"
#include "stages/fingerprint.h"

static sgt_pg_server *pg;
static char *fixture; /* tests/integration/sql/fingerprint_schema.sql */

static PGconn *connect_db(const char *conninfo)
{
    PGconn *conn = NULL;
    sg_error err = {0};
    ck_assert_msg(sg_pg_connect(&conn, conninfo, "test database", &err) == 0, "%s", err.message);
    return conn;
}

static sg_schema_desc *describe_conn(PGconn *conn)
{
    sg_schema_desc *d = NULL;
    sg_error err = {0};
    int rc = sg_schema_describe(&d, conn, &err);
    ck_assert_msg(rc == 0, "describe: %s (%s)", err.message, err.detail);
    return d;
}

static sg_schema_desc *describe(const char *conninfo)
{
    PGconn *conn = connect_db(conninfo);
    sg_schema_desc *d = describe_conn(conn);
    PQfinish(conn);
    return d;
}

static size_t diff(sg_schema_change **changes, const sg_schema_desc *a, const sg_schema_desc *b)
{
    size_t n = 0;
    sg_error err = {0};
    ck_assert_int_eq(sg_schema_diff(changes, &n, a, b, &err), 0);
    return n;
}

/* The first few differences, for a failure message. */
static void describe_changes(char *out, size_t size, const sg_schema_change *c, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && i < 5 && used < size; i++)
        used += (size_t)snprintf(
            out + used, size - used, "\n  %s %s: %s -> %s", sg_schema_change_kind_name(c[i].kind),
            c[i].object, c[i].before ? c[i].before : "(none)", c[i].after ? c[i].after : "(none)");
}

static void assert_same(const sg_schema_desc *a, const sg_schema_desc *b)
{
    sg_schema_change *changes = NULL;
    size_t n = diff(&changes, a, b);
    char shown[2048];
    describe_changes(shown, sizeof(shown), changes, n);
    ck_assert_msg(n == 0, "%zu objects differ:%s", n, shown);
    ck_assert_str_eq(sg_schema_desc_fingerprint(a), sg_schema_desc_fingerprint(b));
    sg_schema_changes_free(changes, n);
}

/* Creates a database from one or more SQL scripts, run in order. */
static char *make_db(const char *prefix, const char *sql, const char *more_sql)
{
    char *db = sgt_pg_create_db(pg, prefix);
    sgt_pg_exec(db, sql);
    if (more_sql)
        sgt_pg_exec(db, more_sql);
    return db;
}

static const char base_sql[] =
    "CREATE TABLE public.t (id integer PRIMARY KEY, b integer, c text);"
    "INSERT INTO public.t VALUES (1, 1, 'x'), (2, 1, 'y');"
    "CREATE SEQUENCE public.s;"
    "CREATE FUNCTION public.f(x integer) RETURNS integer LANGUAGE sql AS 'SELECT x + 1';"
    "CREATE FUNCTION public.trg() RETURNS trigger LANGUAGE plpgsql"
    "    AS 'BEGIN RETURN NEW; END';"
    "CREATE TRIGGER t_trg BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.trg();"
    "CREATE TABLE public.events (at date NOT NULL) PARTITION BY RANGE (at);"
    "CREATE TABLE public.events_1 PARTITION OF public.events"
    "    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
    "ALTER TABLE public.t ADD CONSTRAINT t_b_check CHECK (b > 0) NOT VALID;";

/* One schema built two ways: objects in another order (so other OIDs), a
 * column dropped and another added later, constraints added by ALTER. */
START_TEST(test_creation_order_and_dropped_columns)
{
    char *a = make_db("order_a",
                      "CREATE TYPE public.e AS ENUM ('x', 'y');"
                      "CREATE TABLE public.t (id integer PRIMARY KEY, a text,"
                      "                       b integer NOT NULL DEFAULT 0);"
                      "CREATE TABLE public.u (id integer REFERENCES public.t, c public.e);"
                      "CREATE INDEX u_c_idx ON public.u (c);"
                      "CREATE VIEW public.v AS SELECT id, a FROM public.t;"
                      "CREATE FUNCTION public.f(x integer) RETURNS integer"
                      "    LANGUAGE sql AS 'SELECT x';",
                      NULL);
    char *b = make_db("order_b",
                      "CREATE FUNCTION public.f(x integer) RETURNS integer"
                      "    LANGUAGE sql AS 'SELECT x';"
                      "CREATE TABLE public.junk (x integer);"
                      "CREATE TABLE public.t (id integer, gone integer, a text);"
                      "ALTER TABLE public.t DROP COLUMN gone;"
                      "ALTER TABLE public.t ADD COLUMN b integer NOT NULL DEFAULT 0;"
                      "ALTER TABLE public.t ADD PRIMARY KEY (id);"
                      "CREATE TYPE public.e AS ENUM ('x', 'y');"
                      "CREATE VIEW public.v AS SELECT id, a FROM public.t;"
                      "CREATE TABLE public.u (id integer, c public.e);"
                      "ALTER TABLE public.u ADD FOREIGN KEY (id) REFERENCES public.t;"
                      "CREATE INDEX u_c_idx ON public.u (c);"
                      "DROP TABLE public.junk;",
                      NULL);
    sg_schema_desc *da = describe(a), *db = describe(b);
    assert_same(da, db);
    /* The dropped column left no gap: b is the third column on both. */
    ck_assert_ptr_nonnull(strstr(sg_schema_desc_text(db),
                                 "\ncolumn public.t.b\tinteger not null default 0 position 3\n"));
    sg_schema_desc_free(da);
    sg_schema_desc_free(db);
    free(a);
    free(b);
}
END_TEST

START_TEST(test_owners_privileges_comments_and_data)
{
    char *a = make_db("plain", base_sql, NULL);
    char *b = make_db("owned", base_sql,
                      "DO $$ BEGIN CREATE ROLE fp_owner; EXCEPTION WHEN duplicate_object THEN"
                      "    NULL; END $$;"
                      "ALTER TABLE public.t OWNER TO fp_owner;"
                      "ALTER FUNCTION public.f(integer) OWNER TO fp_owner;"
                      "ALTER SEQUENCE public.s OWNER TO fp_owner;"
                      "GRANT SELECT, INSERT ON public.t TO PUBLIC;"
                      "REVOKE ALL ON FUNCTION public.f(integer) FROM PUBLIC;"
                      "COMMENT ON TABLE public.t IS 'orders';"
                      "COMMENT ON COLUMN public.t.b IS 'b';"
                      "INSERT INTO public.t SELECT g, g, 'z' FROM generate_series(3, 500) g;"
                      "SELECT setval('public.s', 42);");
    sg_schema_desc *da, *db;
    /* A new relfilenode and fresh statistics. */
    sgt_pg_exec(b, "VACUUM FULL ANALYZE public.t");
    da = describe(a);
    db = describe(b);
    assert_same(da, db);
    sg_schema_desc_free(da);
    sg_schema_desc_free(db);
    free(a);
    free(b);
}
END_TEST

/* The registry lives in `shardgate` and changes with every migration. */
START_TEST(test_registry_schema_is_ignored)
{
    char *a = make_db("no_registry", base_sql, NULL);
    char *b =
        make_db("registry", base_sql,
                "CREATE SCHEMA shardgate;"
                "CREATE TABLE shardgate.migrations (version integer PRIMARY KEY, name text);"
                "CREATE INDEX ON shardgate.migrations (name);"
                "CREATE TYPE shardgate.status AS ENUM ('done', 'failed');"
                "CREATE SEQUENCE shardgate.events_id;"
                "CREATE VIEW shardgate.latest AS SELECT max(version) FROM shardgate.migrations;"
                "CREATE FUNCTION shardgate.noop() RETURNS void LANGUAGE sql AS '';");
    sg_schema_desc *da = describe(a), *db = describe(b);
    assert_same(da, db);
    ck_assert_ptr_null(strstr(sg_schema_desc_text(db), "shardgate."));
    sg_schema_desc_free(da);
    sg_schema_desc_free(db);
    free(a);
    free(b);
}
END_TEST

/* Constants in defaults and checks print by DateStyle, TimeZone and
 * extra_float_digits, names by search_path: the caller's settings must not
 * show, and must be left as they were. */
START_TEST(test_session_settings_do_not_matter)
{
    char *db = make_db("settings", fixture, NULL);
    sg_schema_desc *plain = describe(db), *odd;
    PGconn *conn = connect_db(db);
    PGresult *res;
    sg_error err = {0};
    ck_assert_int_eq(sg_pg_exec(conn,
                                "SET search_path = app, public; SET DateStyle = 'SQL, DMY';"
                                "SET TimeZone = 'Asia/Kolkata'; SET extra_float_digits = 0;"
                                "SET IntervalStyle = 'sql_standard'",
                                &err),
                     0);
    odd = describe_conn(conn);
    assert_same(plain, odd);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    ck_assert_int_eq(sg_pg_query(&res, conn,
                                 "SELECT current_setting('search_path'),"
                                 " current_setting('DateStyle')",
                                 &err),
                     0);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), "app, public");
    ck_assert_str_eq(PQgetvalue(res, 0, 1), "SQL, DMY");
    PQclear(res);
    PQfinish(conn);
    sg_schema_desc_free(plain);
    sg_schema_desc_free(odd);
    free(db);
}
END_TEST

static void run_tool(const char *tool, const char *const *args)
{
    char *bindir = sgt_pg_bindir(), *path = sgt_asprintf("%s/%s", bindir, tool);
    const char *argv[16] = {path};
    sgt_result r;
    size_t n = 1;
    for (; args[n - 1]; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    sgt_run(&r, argv, NULL);
    ck_assert_msg(r.status == 0, "%s failed: %s", tool, r.err);
    sgt_result_free(&r);
    free(path);
    free(bindir);
}

/* The pipeline's own use: the live shard against a sandbox restored from a
 * schema dump without owners or privileges. */
START_TEST(test_dump_and_restore_keeps_the_fingerprint)
{
    char *live = make_db("live", fixture, NULL), *sandbox = sgt_pg_create_db(pg, "sandbox");
    char dir[] = "/tmp/sgt-fingerprint-XXXXXX", *dump;
    sg_schema_desc *dl, *ds;
    ck_assert_ptr_nonnull(mkdtemp(dir));
    dump = sgt_asprintf("%s/schema.dump", dir);
    {
        const char *args[] = {"--schema-only", "--format=custom", "--file", dump, "-d", live, NULL};
        run_tool("pg_dump", args);
    }
    {
        const char *args[] = {
            "--no-owner", "--no-privileges", "--exit-on-error", "-d", sandbox, dump, NULL};
        run_tool("pg_restore", args);
    }
    dl = describe(live);
    ds = describe(sandbox);
    assert_same(dl, ds);
    sg_schema_desc_free(dl);
    sg_schema_desc_free(ds);
    sgt_remove_tree(dir);
    free(dump);
    free(live);
    free(sandbox);
}
END_TEST

/* What the fixture's description holds: names quoted and escaped onto one
 * line, definitions that need no search_path, extension members folded
 * into their extension, and text that reads back to the same fingerprint. */
START_TEST(test_description_of_every_kind)
{
    char *db = make_db("kinds", fixture, NULL);
    sg_schema_desc *d = describe(db), *back = NULL;
    const char *text = sg_schema_desc_text(d);
    sg_error err = {0};
    static const char *const want[] = {
        "\nschema \"Odd Schema\"\n",
        "\ncolumn \"Odd Schema\".\"Mixed \"\"Case\"\" Table\".\"new\\nline\"\tinteger position 2\n",
        "\ncolumn \"Odd Schema\".\"Mixed \"\"Case\"\" Table\".\"tab\\tcol\"\ttext position 1\n",
        "\ncolumn app.customers.id\tbigint not null identity always position 1\n",
        "\ncolumn app.customers.name\ttext collate pg_catalog.\"C\" not null position 3\n",
        "\ncolumn app.customers.since\tdate default '2020-01-02'::date position 6\n",
        "\ncolumn app.orders.note\ttext storage e compression p position 5\n",
        "\ncolumn app.events_2024.at\tdate not null\n",
        "\ncolumn app.child.id\tinteger\n",
        "\ntable app.events_2024\tkind r persistence p partition of app.events"
        " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')\n",
        "\ntable app.child\tkind r persistence p inherits app.base\n",
        "\ntable app.orders\tkind r persistence p row-security\n",
        "\ntype app.mood\tenum ('happy', 'sad', 'o''k')\n",
        "\ntype app.amount\tdomain numeric(12,2) not null default 0\n",
        "\nconstraint app.amount.amount_check\tCHECK ((VALUE >= (0)::numeric))\n",
        "\nsequence app.counter\tinteger start 5 increment 5 min 1 max 1000 cache 1 cycle"
        " unlogged\n",
        "\nsequence app.orders_id_seq\tinteger start 1 increment 1 min 1 max 2147483647 cache 1"
        " owned-by app.orders.id\n",
        "\nindex app.orders_note_idx\tCREATE INDEX orders_note_idx ON app.orders USING btree"
        " (lower(note) text_pattern_ops) WITH (fillfactor='70') valid\n",
        "\naggregate app.total(numeric)\treturns numeric kind n sfunc numeric_add",
        "\nprocedure app.noop()\tdefinition ",
        "\nfunction app.add(integer,integer)\tdefinition ",
        "\nmatview app.order_totals\tdefinition ",
        "\nview app.big_orders\tdefinition ",
        "\npolicy app.orders.orders_positive\trestrictive for r to public using",
        "\nrule app.customers.customers_no_delete\tCREATE RULE customers_no_delete AS\\n",
        "\nstatistics app.orders_stats\tCREATE STATISTICS app.orders_stats (dependencies)",
        "\ntrigger app.orders.orders_touch\tCREATE TRIGGER orders_touch BEFORE INSERT OR UPDATE"
        " OF note ON app.orders FOR EACH ROW",
        "\ncollation app.ci\t{",
        "\nextension citext\t1.6 schema public\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        ck_assert_msg(strstr(text, want[i]), "no \"%s\" in:\n%s", want[i], text);
    /* citext's own functions, operators and types belong to the extension;
     * the range type's constructors to the type. */
    ck_assert_msg(!strstr(text, "\nfunction public."), "%s", text);
    ck_assert_msg(!strstr(text, "\ntype public."), "%s", text);
    ck_assert_msg(!strstr(text, "\nfunction app.floatrange("), "%s", text);
    ck_assert_int_eq(sg_schema_desc_parse(&back, text, strlen(text), &err), 0);
    assert_same(d, back);
    sg_schema_desc_free(back);
    sg_schema_desc_free(d);
    free(db);
}
END_TEST

static void exec_fails(const char *conninfo, const char *sql)
{
    PGconn *conn = PQconnectdb(conninfo);
    PGresult *res = PQexec(conn, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "%s succeeded", sql);
    PQclear(res);
    PQfinish(conn);
}

/* Each kind of drift changes the fingerprint, and the diff names exactly the
 * object that changed. */
static const struct {
    const char *change;
    int fails; /* the change is a statement that fails and leaves debris */
    sg_schema_change_kind kind;
    const char *object;
    const char *after; /* the new attributes end so */
} drifts[] = {
    {"ALTER TABLE public.t ADD COLUMN newcol text", 0, SG_SCHEMA_ADDED, "column public.t.newcol",
     "text position 4"},
    {"ALTER TABLE public.t ALTER COLUMN b TYPE bigint", 0, SG_SCHEMA_CHANGED, "column public.t.b",
     "bigint position 2"},
    {"ALTER TABLE public.t ALTER COLUMN c SET NOT NULL", 0, SG_SCHEMA_CHANGED, "column public.t.c",
     "text not null position 3"},
    /* Fails on the duplicate b values and leaves an INVALID index. */
    {"CREATE UNIQUE INDEX CONCURRENTLY t_b_key ON public.t (b)", 1, SG_SCHEMA_ADDED,
     "index public.t_b_key", " invalid"},
    {"ALTER TABLE public.t VALIDATE CONSTRAINT t_b_check", 0, SG_SCHEMA_CHANGED,
     "constraint public.t.t_b_check", "CHECK ((b > 0))"},
    {"CREATE OR REPLACE FUNCTION public.f(x integer) RETURNS integer LANGUAGE sql"
     " AS 'SELECT x + 2'",
     0, SG_SCHEMA_CHANGED, "function public.f(integer)", NULL},
    {"DROP TRIGGER t_trg ON public.t; CREATE TRIGGER t_trg BEFORE INSERT OR UPDATE ON public.t"
     " FOR EACH ROW EXECUTE FUNCTION public.trg()",
     0, SG_SCHEMA_CHANGED, "trigger public.t.t_trg",
     "BEFORE INSERT OR UPDATE ON public.t"
     " FOR EACH ROW EXECUTE FUNCTION public.trg()"},
    {"ALTER TABLE public.t DISABLE TRIGGER t_trg", 0, SG_SCHEMA_CHANGED, "trigger public.t.t_trg",
     " disabled"},
    {"ALTER TABLE public.events DETACH PARTITION public.events_1;"
     "ALTER TABLE public.events ATTACH PARTITION public.events_1"
     " FOR VALUES FROM ('2024-01-01') TO ('2026-01-01')",
     0, SG_SCHEMA_CHANGED, "table public.events_1", "TO ('2026-01-01')"},
    {"ALTER SEQUENCE public.s INCREMENT BY 10", 0, SG_SCHEMA_CHANGED, "sequence public.s", NULL},
    {"DROP FUNCTION public.f(integer)", 0, SG_SCHEMA_REMOVED, "function public.f(integer)", NULL},
};

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

START_TEST(test_drift_is_named)
{
    char *db = make_db("drift", base_sql, NULL);
    sg_schema_desc *before = describe(db), *after;
    sg_schema_change *changes = NULL;
    size_t n;
    char shown[2048];
    if (drifts[_i].fails)
        exec_fails(db, drifts[_i].change);
    else
        sgt_pg_exec(db, drifts[_i].change);
    after = describe(db);
    ck_assert_str_ne(sg_schema_desc_fingerprint(before), sg_schema_desc_fingerprint(after));
    n = diff(&changes, before, after);
    describe_changes(shown, sizeof(shown), changes, n);
    ck_assert_msg(n == 1, "%s: %zu changes:%s", drifts[_i].change, n, shown);
    ck_assert_int_eq(changes[0].kind, drifts[_i].kind);
    ck_assert_str_eq(changes[0].object, drifts[_i].object);
    if (drifts[_i].kind == SG_SCHEMA_REMOVED)
        ck_assert_ptr_null(changes[0].after);
    else if (drifts[_i].after)
        ck_assert_msg(ends_with(changes[0].after, drifts[_i].after), "after: %s", changes[0].after);
    if (drifts[_i].kind == SG_SCHEMA_CHANGED)
        ck_assert_str_ne(changes[0].before, changes[0].after);
    sg_schema_changes_free(changes, n);
    sg_schema_desc_free(before);
    sg_schema_desc_free(after);
    free(db);
}
END_TEST

/* Inside the caller's transaction, the description sees what it has done,
 * and leaves it open with its own settings. */
START_TEST(test_inside_the_callers_transaction)
{
    char *db = make_db("in_tx", base_sql, NULL);
    PGconn *conn = connect_db(db);
    sg_error err = {0};
    sg_schema_desc *d;
    PGresult *res;
    ck_assert_int_eq(sg_pg_exec(conn,
                                "BEGIN; SET LOCAL search_path = public;"
                                " CREATE TABLE uncommitted (x integer)",
                                &err),
                     0);
    d = describe_conn(conn);
    ck_assert_ptr_nonnull(strstr(sg_schema_desc_text(d), "\ntable public.uncommitted\t"));
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_INTRANS);
    ck_assert_int_eq(sg_pg_query(&res, conn, "SHOW search_path", &err), 0);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), "public");
    PQclear(res);
    ck_assert_int_eq(sg_pg_exec(conn, "INSERT INTO uncommitted VALUES (1); ROLLBACK", &err), 0);
    sg_schema_desc_free(d);
    d = describe_conn(conn);
    ck_assert_ptr_null(strstr(sg_schema_desc_text(d), "uncommitted"));
    sg_schema_desc_free(d);
    PQfinish(conn);
    free(db);
}
END_TEST

START_TEST(test_aborted_transaction)
{
    char *db = sgt_pg_create_db(pg, "aborted");
    PGconn *conn = connect_db(db);
    sg_schema_desc *d = (sg_schema_desc *)&d;
    sg_error err = {0};
    PQclear(PQexec(conn, "BEGIN"));
    PQclear(PQexec(conn, "SELECT 1 / 0"));
    ck_assert_int_eq(sg_schema_describe(&d, conn, &err), SG_E_DB);
    ck_assert_ptr_null(d);
    ck_assert_str_eq(err.message,
                     "cannot describe the schema: the connection's transaction is aborted");
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_INERROR);
    PQfinish(conn);
    free(db);
}
END_TEST

/* The backend is terminated (and gone: pg_terminate_backend waits) before
 * the description starts. */
START_TEST(test_server_gone)
{
    char *db = sgt_pg_create_db(pg, "gone"), *sql, *killed;
    PGconn *conn = connect_db(db);
    sg_schema_desc *d = (sg_schema_desc *)&d;
    sg_error err = {0};
    sql = sgt_asprintf("SELECT pg_terminate_backend(%d, 60000)", PQbackendPID(conn));
    killed = sgt_pg_value(db, sql);
    ck_assert_str_eq(killed, "t");
    ck_assert_int_eq(sg_schema_describe(&d, conn, &err), SG_E_DB);
    ck_assert_ptr_null(d);
    ck_assert_msg(strncmp(err.message, "cannot describe the schema: ", 28) == 0 &&
                      strlen(err.message) > 28,
                  "message: %s", err.message);
    PQfinish(conn);
    free(killed);
    free(sql);
    free(db);
}
END_TEST

/* Each allocation in turn fails: SG_E_NOMEM, and the connection is back to
 * idle, ready for the next statement. */
START_TEST(test_allocation_failures)
{
    char *db = make_db("alloc", fixture, NULL);
    PGconn *conn = connect_db(db);
    long n;
    for (n = 0;; n++) {
        sg_schema_desc *d = (sg_schema_desc *)&d;
        sg_error err = {0};
        int rc;
        sg_mem_fail_after(n);
        rc = sg_schema_describe(&d, conn, &err);
        sg_mem_fail_reset();
        ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
        if (rc == 0) {
            sg_schema_desc_free(d);
            break;
        }
        ck_assert_msg(rc == SG_E_NOMEM, "after %ld allocations: %s", n, err.message);
        ck_assert_ptr_null(d);
        ck_assert_int_lt(n, 1000);
    }
    ck_assert_int_gt(n, 5);
    PQfinish(conn);
    free(db);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fingerprint");
    TCase *tc;
#define CASE(name)                                                                                 \
    tc = tcase_create(name);                                                                       \
    tcase_set_timeout(tc, 300);                                                                    \
    suite_add_tcase(s, tc)
    CASE("same schema, same fingerprint");
    tcase_add_test(tc, test_creation_order_and_dropped_columns);
    tcase_add_test(tc, test_owners_privileges_comments_and_data);
    tcase_add_test(tc, test_registry_schema_is_ignored);
    tcase_add_test(tc, test_session_settings_do_not_matter);
    tcase_add_test(tc, test_dump_and_restore_keeps_the_fingerprint);
    CASE("description");
    tcase_add_test(tc, test_description_of_every_kind);
    CASE("drift");
    tcase_add_loop_test(tc, test_drift_is_named, 0, (int)(sizeof(drifts) / sizeof(drifts[0])));
    CASE("transactions");
    tcase_add_test(tc, test_inside_the_callers_transaction);
    tcase_add_test(tc, test_aborted_transaction);
    CASE("failures");
    tcase_add_test(tc, test_server_gone);
    tcase_add_test(tc, test_allocation_failures);
#undef CASE
    return s;
}

int main(void)
{
    const char *src_dir = getenv("SG_SOURCE_DIR");
    char path[1024];
    SRunner *sr;
    int failed;
    snprintf(path, sizeof(path), "%s/tests/integration/sql/fingerprint_schema.sql",
             src_dir ? src_dir : ".");
    if (!(fixture = sgt_read_file(path, NULL))) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    pg = sgt_pg_start();
    sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sgt_pg_stop(pg);
    free(fixture);
    return failed ? 1 : 0;
}
