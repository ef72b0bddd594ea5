/* The data path end to end against a real server: snapshot a database that
 * has every awkward thing the issue names, list, verify at every level,
 * restore into an empty database, and prove both databases are the same. */
#include "tests/harness/cli.h"
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <check.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sgt_pg_server *pg;
static char *source; /* conninfo of the source database */
static char dir[] = "/tmp/sgt-roundtrip-XXXXXX";
static char store[512], owner_key[512], owner_pub[512], snapshot_id[128], spec[160];

static const char *const tables[] = {"customers",
                                     "orders",
                                     "empty_table",
                                     "\"Odd Schema\".\"Mixed \"\"Case\"\" Table\"",
                                     "measurements_eu",
                                     "measurements_us",
                                     "measurements_other",
                                     "big",
                                     "blobs",
                                     "order_totals"};

static char *schema_dump(const char *conninfo)
{
    const char *argv[] = {"pg_dump", "--schema-only", "--restrict-key=sgtest",
                          "-d",      conninfo,        NULL};
    char *bindir = sgt_pg_bindir(), tool[512];
    sgt_result r;
    char *out;
    snprintf(tool, sizeof(tool), "%s/pg_dump", bindir);
    argv[0] = tool;
    sgt_run(&r, argv, NULL);
    free(bindir);
    ck_assert_msg(r.status == 0, "pg_dump failed: %s", r.err);
    out = r.out;
    r.out = NULL;
    sgt_result_free(&r);
    return out;
}

/* Count and an order-independent hash of every row's text, computed by the
 * server: independent of shardgate's own digests. */
static char *table_fingerprint(const char *conninfo, const char *table)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) || ':' || coalesce(md5(string_agg(md5(t::text), '' ORDER BY "
             "md5(t::text))), '-') FROM %s t",
             table);
    return sgt_pg_value(conninfo, sql);
}

static void assert_same_data(const char *a, const char *b)
{
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        char *fa = table_fingerprint(a, tables[i]), *fb = table_fingerprint(b, tables[i]);
        ck_assert_msg(strcmp(fa, fb) == 0, "table %s differs: %s vs %s", tables[i], fa, fb);
        free(fa);
        free(fb);
    }
    for (int i = 0; i < 4; i++) {
        static const char *const seqs[] = {
            "SELECT last_value || ',' || is_called FROM countdown",
            "SELECT last_value || ',' || is_called FROM untouched",
            "SELECT last_value || ',' || is_called FROM orders_id_seq",
            "SELECT last_value || ',' || is_called FROM orders_serial_no_seq"};
        char *va = sgt_pg_value(a, seqs[i]), *vb = sgt_pg_value(b, seqs[i]);
        ck_assert_msg(strcmp(va, vb) == 0, "%s: %s vs %s", seqs[i], va, vb);
        free(va);
        free(vb);
    }
}

static char *restore_into_new_db(const char *prefix, int jobs)
{
    char *target = sgt_pg_create_db(pg, prefix);
    char jobs_text[16];
    snprintf(jobs_text, sizeof(jobs_text), "%d", jobs);
    const char *argv[] = {"shardgate", "restore", "--store", store,      "--key",
                          owner_key,   "--trust", owner_pub, "--target", target,
                          "--jobs",    jobs_text, spec,      NULL};
    free(sgt_shardgate(0, argv));
    return target;
}

START_TEST(restore_reproduces_schema_and_every_row)
{
    char *target = restore_into_new_db("restored", 2);
    char *want = schema_dump(source), *got = schema_dump(target);
    ck_assert_msg(strcmp(want, got) == 0, "schema dumps differ");
    assert_same_data(source, target);
    free(want);
    free(got);
    free(target);
}
END_TEST

START_TEST(restore_with_one_job_and_latest)
{
    char *target = sgt_pg_create_db(pg, "latest");
    const char *argv[] = {"shardgate", "restore", "--store",    store,      "--key",
                          owner_key,   "--trust", owner_pub,    "--target", target,
                          "--jobs",    "1",       "src/latest", NULL};
    free(sgt_shardgate(0, argv));
    assert_same_data(source, target);
    free(target);
}
END_TEST

/* The value of `key=` in a libpq keyword string made by the harness. */
static void conninfo_value(char *out, size_t size, const char *conninfo, const char *key)
{
    const char *p = strstr(conninfo, key);
    ck_assert_ptr_nonnull(p);
    p += strlen(key);
    snprintf(out, size, "%.*s", (int)strcspn(p, " "), p);
}

START_TEST(uri_and_libpq_environment_are_honoured)
{
    char dbname[128], port[16], env_host[64], env_port[64], uri[256], *target_db, *target_dbname;
    sgt_result r;
    conninfo_value(dbname, sizeof(dbname), source, "dbname=");
    conninfo_value(port, sizeof(port), source, "port=");
    snprintf(env_host, sizeof(env_host), "PGHOST=%s", sgt_pg_host(pg));
    snprintf(env_port, sizeof(env_port), "PGPORT=%s", port);
    const char *env[] = {env_host, env_port, "PGUSER=postgres", NULL};
    char dsn[160];
    snprintf(dsn, sizeof(dsn), "dbname=%s", dbname);
    const char *snap[] = {"shardgate", "snapshot", "--dsn",   dsn,   "--store", store,
                          "--key",     owner_key,  "--shard", "env", NULL};
    sgt_run(&r, snap, env);
    ck_assert_msg(r.status == 0, "snapshot through PG* variables: %s", r.err);
    sgt_result_free(&r);

    target_db = sgt_pg_create_db(pg, "uri");
    conninfo_value(uri, sizeof(uri), target_db, "dbname=");
    target_dbname = strdup(uri);
    snprintf(uri, sizeof(uri), "postgresql://postgres@%s:%s/%s?application_name=t", sgt_pg_host(pg),
             port, target_dbname);
    const char *restore[] = {"shardgate", "restore", "--store",  store, "--key",      owner_key,
                             "--trust",   owner_pub, "--target", uri,   "env/latest", NULL};
    free(sgt_shardgate(0, restore));
    assert_same_data(source, target_db);
    free(target_dbname);
    free(target_db);
}
END_TEST

START_TEST(role_and_database_timeouts_do_not_break_a_run)
{
    /* Production roles often carry short timeouts; a snapshot's COPY and its
     * idle coordinator must not be cut short by them. */
    char *db = sgt_pg_create_db(pg, "timeouts"), *target = sgt_pg_create_db(pg, "timeouts_copy");
    char dbname[128], sql[512];
    sgt_pg_exec(
        db, "CREATE TABLE t (id int PRIMARY KEY, v text);"
            "INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 200000) g");
    for (int i = 0; i < 2; i++) {
        conninfo_value(dbname, sizeof(dbname), i ? target : db, "dbname=");
        snprintf(sql, sizeof(sql),
                 "ALTER DATABASE %s SET statement_timeout = '50ms';"
                 "ALTER DATABASE %s SET idle_in_transaction_session_timeout = '50ms'",
                 dbname, dbname);
        sgt_pg_exec(source, sql);
    }
    const char *snap[] = {"shardgate", "snapshot", "--dsn",   db,         "--store", store,
                          "--key",     owner_key,  "--shard", "timeouts", NULL};
    free(sgt_shardgate(0, snap));
    const char *restore[] = {"shardgate", "restore", "--store",         store,
                             "--key",     owner_key, "--trust",         owner_pub,
                             "--target",  target,    "timeouts/latest", NULL};
    free(sgt_shardgate(0, restore));
    free(db);
    free(target);
}
END_TEST

/* A database without a single table is still a snapshot: nothing to copy,
 * every list empty. */
START_TEST(empty_database_round_trip)
{
    char *db = sgt_pg_create_db(pg, "nothing"), *target = sgt_pg_create_db(pg, "nothing_copy");
    const char *snap[] = {"shardgate", "snapshot", "--dsn",   db,      "--store", store,
                          "--key",     owner_key,  "--shard", "empty", NULL};
    const char *restore[] = {"shardgate", "restore", "--store",  store,  "--key",        owner_key,
                             "--trust",   owner_pub, "--target", target, "empty/latest", NULL};
    const char *verify[] = {"shardgate", "verify",  "--store", store, "--trust",      owner_pub,
                            "--key",     owner_key, "--level", "2",   "empty/latest", NULL};
    free(sgt_shardgate(0, snap));
    free(sgt_shardgate(0, restore));
    free(sgt_shardgate(0, verify));
    free(db);
    free(target);
}
END_TEST

START_TEST(snapshots_lists_the_snapshot_as_complete)
{
    const char *argv[] = {"shardgate", "snapshots", "--store", store, NULL};
    const char *json_argv[] = {"shardgate", "snapshots", "--store", store, "--json", NULL};
    char *out = sgt_shardgate(0, argv);
    ck_assert_msg(strstr(out, snapshot_id) && strstr(out, "complete"), "listing: %s", out);
    free(out);
    out = sgt_shardgate(0, json_argv);
    ck_assert_msg(strstr(out, "\"restorable\": true"), "json listing: %s", out);
    free(out);
}
END_TEST

START_TEST(verify_passes_at_every_level)
{
    for (int level = 0; level <= 2; level++) {
        char level_text[4];
        snprintf(level_text, sizeof(level_text), "%d", level);
        const char *argv[] = {"shardgate", "verify",  "--store", store,      "--trust", owner_pub,
                              "--key",     owner_key, "--level", level_text, spec,      NULL};
        char *out = sgt_shardgate(0, argv);
        ck_assert_msg(strstr(out, "ok"), "verify level %d: %s", level, out);
        free(out);
    }
}
END_TEST

START_TEST(snapshot_json_summary_counts_rows)
{
    const char *argv[] = {"shardgate", "snapshot", "--dsn",   source,    "--store", store,
                          "--key",     owner_key,  "--shard", "summary", "--json",  NULL};
    char *out = sgt_shardgate(0, argv);
    /* 50 + 2001 + 0 + 2 + 3000 + 120000 + 3 rows; the matview's rows are
     * not copied (it is refreshed on restore). */
    ck_assert_msg(strstr(out, "\"rows\": 125056"), "summary: %s", out);
    ck_assert_msg(strstr(out, "\"tables\": 9"), "summary: %s", out);
    ck_assert_msg(strstr(out, "\"shard\": \"summary\""), "summary: %s", out);
    free(out);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("snapshot_restore");
    TCase *tc = tcase_create("roundtrip");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, restore_reproduces_schema_and_every_row);
    tcase_add_test(tc, empty_database_round_trip);
    tcase_add_test(tc, restore_with_one_job_and_latest);
    tcase_add_test(tc, snapshots_lists_the_snapshot_as_complete);
    tcase_add_test(tc, uri_and_libpq_environment_are_honoured);
    tcase_add_test(tc, role_and_database_timeouts_do_not_break_a_run);
    tcase_add_test(tc, verify_passes_at_every_level);
    tcase_add_test(tc, snapshot_json_summary_counts_rows);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    char path[1024], *sql, *out;
    const char *src_dir = getenv("SG_SOURCE_DIR");
    SRunner *sr;
    int failed;

    pg = sgt_pg_start();
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(store, sizeof(store), "file://%s/store", dir);
    snprintf(path, sizeof(path), "%s/tests/integration/sql/source.sql", src_dir ? src_dir : ".");
    if (!(sql = sgt_read_file(path, NULL))) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    source = sgt_pg_create_db(pg, "source");
    sgt_sql_or_exit(source, sql);
    free(sql);
    {
        sgt_keygen_or_exit(dir, "owner", owner_key, owner_pub);
        /* A small chunk size splits `big` into many TID ranges and chunks,
         * and the TOASTed value is larger than a chunk. */
        const char *snap[] = {"shardgate", "snapshot", "--dsn",        source,    "--store",
                              store,       "--key",    owner_key,      "--shard", "src",
                              "--jobs",    "3",        "--chunk-size", "1MiB",    NULL};
        out = sgt_shardgate_or_exit(snap);
    }
    out[strcspn(out, "\n")] = '\0';
    snprintf(snapshot_id, sizeof(snapshot_id), "%s", out);
    snprintf(spec, sizeof(spec), "src/%s", snapshot_id);
    free(out);

    sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    {
        const char *rm[] = {"rm", "-rf", dir, NULL};
        sgt_result r;
        sgt_run(&r, rm, NULL);
        sgt_result_free(&r);
    }
    sgt_pg_stop(pg);
    free(source);
    return failed ? 1 : 0;
}
