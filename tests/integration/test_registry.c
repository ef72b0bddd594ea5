/* The registry through its C API on a real server: created once and left
 * alone after, rows through their life (begin, progress, mark, finish,
 * delete), events, the migration lock between two sessions, and a database
 * without a registry. */
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/pg.h"
#include "stages/registry.h"

static sgt_pg_server *pg;

static PGconn *connect_to(const char *conninfo)
{
    PGconn *conn = NULL;
    sg_error err = {0};
    ck_assert_msg(sg_pg_connect(&conn, conninfo, "test database", &err) == 0, "%s", err.message);
    return conn;
}

static sg_migration migration(int64_t version, const char *name)
{
    sg_migration m = {.version = version, .name = (char *)name, .mode = SG_MIGRATION_STATEMENTS};
    memset(m.sha256, 'a', SG_SHA256_HEX_LEN - 1);
    return m;
}

static void assert_value(const char *db, const char *sql, const char *want)
{
    char *v = sgt_pg_value(db, sql);
    ck_assert_msg(v && strcmp(v, want) == 0, "%s: got %s, want %s", sql, v ? v : "NULL", want);
    free(v);
}

START_TEST(database_without_registry)
{
    char *db = sgt_pg_create_db(pg, "noregistry");
    PGconn *conn = connect_to(db);
    sg_registry_rows rows;
    sg_error err = {0};
    ck_assert_int_eq(sg_registry_read(&rows, conn, true, &err), 0);
    ck_assert(!rows.exists);
    ck_assert_uint_eq(rows.count, 0);
    sg_registry_rows_clear(&rows);
    /* reading created nothing */
    assert_value(db, "SELECT to_regnamespace('shardgate') IS NULL", "t");
    PQfinish(conn);
    free(db);
}
END_TEST

START_TEST(rows_through_their_life)
{
    char *db = sgt_pg_create_db(pg, "rows");
    PGconn *conn = connect_to(db);
    sg_error err = {0};
    sg_registry_actor actor = {"host-a", "run-1", "snap-1"};
    sg_migration m = migration(7, "seven");
    ck_assert_int_eq(sg_registry_ensure(conn, &err), 0);
    ck_assert_int_eq(sg_registry_ensure(conn, &err), 0); /* once is enough; twice is harmless */
    ck_assert_int_eq(sg_registry_begin(conn, &actor, &m, SG_REGISTRY_APPLYING, &err), 0);
    ck_assert_int_eq(sg_registry_started(conn, 7, 1, &err), 0);
    ck_assert_int_eq(sg_registry_progress(conn, 7, 2, "d2", &err), 0);
    ck_assert_int_eq(sg_registry_started(conn, 7, 3, &err), 0);
    ck_assert_int_eq(sg_registry_mark(conn, 7, SG_REGISTRY_FAILED, NULL, &err), 0);

    sg_registry_rows rows;
    ck_assert_int_eq(sg_registry_read(&rows, conn, true, &err), 0);
    ck_assert(rows.exists);
    ck_assert_uint_eq(rows.count, 1);
    const sg_registry_row *row = sg_registry_rows_find(&rows, 7);
    ck_assert_ptr_nonnull(row);
    ck_assert_ptr_null(sg_registry_rows_find(&rows, 8));
    ck_assert_str_eq(row->name, "seven");
    ck_assert_str_eq(row->mode, "statements");
    ck_assert_int_eq(row->status, SG_REGISTRY_FAILED);
    ck_assert_int_eq(row->statements_done, 2);
    ck_assert_str_eq(row->done_checksum, "d2");
    ck_assert_int_eq(row->statement_started, 3);
    ck_assert_str_eq(row->checksum, m.sha256);
    ck_assert_str_eq(row->host, "host-a");
    ck_assert_str_eq(row->run_id, "run-1");
    ck_assert_str_eq(row->snapshot_id, "snap-1");
    ck_assert_ptr_null(row->finished_at);
    ck_assert_int_eq(row->duration_ms, -1);
    ck_assert_ptr_null(row->description);
    sg_registry_rows_clear(&rows);

    /* a resumed run of an edited file records its new checksum */
    ck_assert_int_eq(sg_registry_mark(conn, 7, SG_REGISTRY_APPLYING, "feed", &err), 0);
    assert_value(db, "SELECT checksum || ':' || status FROM shardgate.migrations", "feed:applying");
    /* a new attempt starts over, and keeps the snapshot id it had */
    sg_registry_actor again = {"host-b", "run-2", NULL};
    ck_assert_int_eq(sg_registry_begin(conn, &again, &m, SG_REGISTRY_APPLYING, &err), 0);
    ck_assert_int_eq(sg_registry_finish(conn, 7, SG_REGISTRY_APPLIED, "f1", "d1", &err), 0);
    ck_assert_int_eq(sg_registry_read(&rows, conn, false, &err), 0);
    row = &rows.items[0];
    ck_assert_int_eq(row->status, SG_REGISTRY_APPLIED);
    ck_assert_int_eq(row->statements_done, 0);
    ck_assert_int_eq(row->statement_started, 0);
    ck_assert_str_eq(row->done_checksum, "");
    ck_assert_str_eq(row->run_id, "run-2");
    ck_assert_str_eq(row->snapshot_id, "snap-1");
    ck_assert_str_eq(row->fingerprint, "f1");
    ck_assert_ptr_null(row->description); /* not asked for */
    ck_assert_ptr_nonnull(row->finished_at);
    ck_assert_int_ge(row->duration_ms, 0);
    sg_registry_rows_clear(&rows);

    ck_assert_int_eq(sg_registry_event(conn, &actor, 7, "apply", "{\"k\": 1}", &err), 0);
    ck_assert_int_eq(sg_registry_event(conn, &actor, -1, "note", NULL, &err), 0);
    assert_value(db,
                 "SELECT string_agg(coalesce(version::text, '-') || ':' || action || ':' ||"
                 " coalesce(detail->>'k', '-'), ',' ORDER BY id) FROM shardgate.events",
                 "7:apply:1,-:note:-");
    ck_assert_int_eq(sg_registry_event(conn, &actor, 7, "apply", "{not json", &err), SG_E_DB);

    ck_assert_int_eq(sg_registry_delete(conn, 7, &err), 0);
    assert_value(db, "SELECT count(*) FROM shardgate.migrations", "0");
    PQfinish(conn);
    free(db);
}
END_TEST

START_TEST(lock_between_two_sessions)
{
    char *db = sgt_pg_create_db(pg, "lock");
    char *named = sgt_asprintf("%s application_name=first-runner", db);
    PGconn *first = connect_to(named), *second = connect_to(db);
    sg_error err = {0};
    ck_assert_int_eq(sg_registry_lock(first, &err), 0);
    ck_assert_int_eq(sg_registry_lock(first, &err), 0); /* the same session again */
    ck_assert_int_eq(sg_registry_lock(second, &err), SG_E_BUSY);
    char pid[16];
    snprintf(pid, sizeof(pid), "pid %d", PQbackendPID(first));
    ck_assert_msg(strstr(err.message, pid) && strstr(err.message, "\"first-runner\""), "%s",
                  err.message);
    ck_assert_msg(strstr(err.detail, "connected since"), "%s", err.detail);
    /* taken twice, released twice */
    ck_assert_int_eq(sg_registry_unlock(first, &err), 0);
    ck_assert_int_eq(sg_registry_lock(second, &err), SG_E_BUSY);
    ck_assert_int_eq(sg_registry_unlock(first, &err), 0);
    ck_assert_int_eq(sg_registry_lock(second, &err), 0);
    /* a session that ends releases it */
    PQfinish(second);
    second = connect_to(db);
    ck_assert_int_eq(sg_registry_lock(first, &err), 0);
    PQfinish(first);
    PQfinish(second);
    free(named);
    free(db);
}
END_TEST

START_TEST(something_else_named_shardgate)
{
    char *db = sgt_pg_create_db(pg, "squatter");
    sgt_pg_exec(db, "CREATE SCHEMA shardgate; CREATE TABLE shardgate.meta (key text, value text);"
                    "CREATE TABLE shardgate.events (id int)");
    PGconn *conn = connect_to(db);
    sg_error err = {0};
    ck_assert_int_eq(sg_registry_ensure(conn, &err), SG_E_FORMAT);
    ck_assert_msg(strstr(err.message, "has format (none), not 1"), "%s", err.message);
    ck_assert_msg(strstr(err.hint, "belongs to something else"), "%s", err.hint);
    PQfinish(conn);
    free(db);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("no_registry");
    tcase_add_test(tc, database_without_registry);
    suite_add_tcase(s, tc);
    tc = tcase_create("rows");
    tcase_add_test(tc, rows_through_their_life);
    suite_add_tcase(s, tc);
    tc = tcase_create("lock");
    tcase_add_test(tc, lock_between_two_sessions);
    suite_add_tcase(s, tc);
    tc = tcase_create("squatter");
    tcase_add_test(tc, something_else_named_shardgate);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    pg = sgt_pg_start();
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sgt_pg_stop(pg);
    return failed ? 1 : 0;
}
