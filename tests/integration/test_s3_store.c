/* The data path through s3:// against a real S3 server (s3rver) behind a
 * proxy that checks every signature and payload hash with AWS's own signer
 * and injects scripted faults: round trip, an independent client reading
 * what we wrote, wrong credentials, every fault the issue names, prune, an
 * interrupted upload, and TLS. */
#include "tests/harness/cli.h"
#include "tests/harness/pg.h"
#include "tests/harness/run.h"
#include "tests/harness/s3.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUCKET "sg-test"
/* Small parts and packs: every pack is a multipart upload of several parts. */
#define PART_SIZE "64k"
#define PACK_SIZE "256k"

static sgt_pg_server *pg;
static sgt_s3 *s3, *tls;
static char cert[600];
static char *source;
static char dir[] = "/tmp/sgt-s3-XXXXXX";
static char key[512], pub[512];

static char *table_fingerprint(const char *conninfo)
{
    return sgt_pg_value(conninfo, "SELECT count(*) || ':' || md5(string_agg(md5(t::text), '' "
                                  "ORDER BY md5(t::text))) FROM big t");
}

/* Takes a snapshot of the source into s3://BUCKET/prefix; returns its id. */
static char *snapshot(const char *prefix, const char *shard)
{
    char url[256];
    char *out;
    snprintf(url, sizeof(url), "s3://%s/%s", BUCKET, prefix);
    const char *argv[] = {"shardgate",      "snapshot", "--dsn",       source,
                          "--store",        url,        "--key",       key,
                          "--shard",        shard,      "--jobs",      "2",
                          "--chunk-size",   "128k",     "--pack-size", PACK_SIZE,
                          "--s3-part-size", PART_SIZE,  NULL};
    out = sgt_shardgate(0, argv);
    out[strcspn(out, "\n")] = '\0';
    return out;
}

static void verify_level2(const char *prefix, const char *spec)
{
    char url[256];
    snprintf(url, sizeof(url), "s3://%s/%s", BUCKET, prefix);
    const char *argv[] = {"shardgate", "verify", "--store", url, "--trust",        pub,
                          "--key",     key,      "--level", "2", "--s3-part-size", PART_SIZE,
                          spec,        NULL};
    free(sgt_shardgate(0, argv));
}

/* Objects s3cmd, an independent client, sees under a prefix. */
static int objects_under(const char *prefix)
{
    char url[256];
    int n = 0;
    snprintf(url, sizeof(url), "s3://%s/%s", BUCKET, prefix);
    const char *argv[] = {"ls", "--recursive", url, NULL};
    char *out = sgt_s3cmd(s3, argv);
    for (char *p = out; (p = strstr(p, "s3://")); p++)
        n++;
    free(out);
    return n;
}

static void start_clean(const char *faults)
{
    sgt_s3_set_faults(s3, faults);
    sgt_s3_clear_log(s3);
}

START_TEST(round_trip_through_multipart)
{
    char *id, spec[160], *target, *want, *got, url[256];
    start_clean("[]");
    id = snapshot("rt", "src");
    snprintf(spec, sizeof(spec), "src/%s", id);
    /* Several parts per pack, all acknowledged and assembled. */
    ck_assert_int_ge(sgt_s3_count(s3, "PUT", "partNumber=3&", 200), 1);
    ck_assert_int_ge(sgt_s3_count(s3, "POST", "uploadId=", 200), 1);
    ck_assert_int_eq(sgt_s3_open_uploads(s3), 0);
    verify_level2("rt", spec);

    snprintf(url, sizeof(url), "s3://%s/rt", BUCKET);
    {
        const char *argv[] = {"shardgate", "snapshots", "--store", url, NULL};
        char *out = sgt_shardgate(0, argv);
        ck_assert_msg(strstr(out, id) && strstr(out, "complete"), "listing: %s", out);
        free(out);
    }
    target = sgt_pg_create_db(pg, "from_s3");
    {
        const char *argv[] = {
            "shardgate", "restore", "--store",        url,       "--key", key, "--trust", pub,
            "--target",  target,    "--s3-part-size", PART_SIZE, spec,    NULL};
        free(sgt_shardgate(0, argv));
    }
    want = table_fingerprint(source);
    got = table_fingerprint(target);
    ck_assert_str_eq(want, got);
    free(want);
    free(got);
    free(target);
    free(id);
}
END_TEST

/* s3cmd downloads what we uploaded; the copy, as a file:// store, verifies
 * at level 2: every byte an independent client reads is what we wrote. */
START_TEST(independent_client_reads_our_objects)
{
    char *id, url[256], local[600], store[700], spec[160];
    start_clean("[]");
    id = snapshot("cross", "cross");
    snprintf(url, sizeof(url), "s3://%s/cross/", BUCKET);
    snprintf(local, sizeof(local), "%s/cross/", dir);
    {
        const char *argv[] = {"sync", "--no-progress", url, local, NULL};
        free(sgt_s3cmd(s3, argv));
    }
    snprintf(store, sizeof(store), "file://%s", local);
    snprintf(spec, sizeof(spec), "cross/%s", id);
    {
        const char *argv[] = {"shardgate", "verify", "--store", store, "--trust", pub,
                              "--key",     key,      "--level", "2",   spec,      NULL};
        free(sgt_shardgate(0, argv));
    }
    ck_assert_int_ge(objects_under("cross/"), 3);
    free(id);
}
END_TEST

START_TEST(wrong_secret_is_refused_and_leaves_nothing)
{
    char url[256];
    sgt_result r;
    snprintf(url, sizeof(url), "s3://%s/wrong", BUCKET);
    start_clean("[]");
    const char *env[] = {"AWS_SECRET_ACCESS_KEY=NotTheSecret42", NULL};
    const char *argv[] = {"shardgate",   "snapshot", "--dsn", source,           "--store",
                          url,           "--key",    key,     "--s3-part-size", PART_SIZE,
                          "--pack-size", PACK_SIZE,  NULL};
    sgt_run(&r, argv, env);
    ck_assert_msg(r.status == 11, "exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "SignatureDoesNotMatch") && strstr(r.err, "AWS_SECRET_ACCESS_KEY"),
                  "%s", r.err);
    ck_assert_ptr_null(strstr(r.err, "NotTheSecret42"));
    ck_assert_ptr_null(strstr(r.out, "NotTheSecret42"));
    /* Refused at once, not retried. */
    ck_assert_int_eq(sgt_s3_count(s3, NULL, NULL, 200), 0);
    sgt_result_free(&r);
    ck_assert_int_eq(objects_under("wrong/"), 0);
}
END_TEST

/* A fault script, a snapshot that must succeed despite it, and proof that
 * the fault fired and what was stored is intact. */
static void snapshot_survives(const char *prefix, const char *faults, const char *method,
                              const char *query, int fault_status)
{
    char *id, spec[160];
    start_clean(faults);
    id = snapshot(prefix, "f");
    snprintf(spec, sizeof(spec), "f/%s", id);
    sgt_s3_set_faults(s3, "[]");
    {
        char *log = sgt_s3_log(s3);
        ck_assert_msg(strstr(log, "\"fault\":\"") || strstr(log, "\"fault\": \""),
                      "no fault fired: %s", log);
        free(log);
    }
    if (fault_status)
        ck_assert_int_ge(sgt_s3_count(s3, method, query, fault_status), 1);
    ck_assert_int_eq(sgt_s3_open_uploads(s3), 0);
    verify_level2(prefix, spec);
    free(id);
}

START_TEST(part_3_gets_503_then_succeeds)
{
    snapshot_survives("f503",
                      "[{\"method\":\"PUT\",\"query\":\"partNumber=3&\",\"nth\":1,\"count\":1,"
                      "\"action\":\"status\",\"status\":503,\"code\":\"ServiceUnavailable\","
                      "\"message\":\"Please try again\"}]",
                      "PUT", "partNumber=3&", 503);
    /* The failed part was sent again, alone. */
    ck_assert_int_ge(sgt_s3_count(s3, "PUT", "partNumber=3&", 200), 1);
}
END_TEST

START_TEST(slowdown_429_retried)
{
    snapshot_survives("f429",
                      "[{\"method\":\"PUT\",\"query\":\"partNumber=2&\",\"nth\":1,\"count\":2,"
                      "\"action\":\"status\",\"status\":429,\"code\":\"SlowDown\","
                      "\"message\":\"Please reduce your request rate.\","
                      "\"headers\":{\"Retry-After\":\"0\"}}]",
                      "PUT", "partNumber=2&", 429);
}
END_TEST

START_TEST(reset_mid_body_retried)
{
    snapshot_survives("freset",
                      "[{\"method\":\"PUT\",\"query\":\"partNumber=2&\",\"nth\":1,\"count\":1,"
                      "\"action\":\"reset\"}]",
                      NULL, NULL, 0);
}
END_TEST

START_TEST(slow_response_times_out_and_is_retried)
{
    char *id, url[256], spec[160];
    snprintf(url, sizeof(url), "s3://%s/fslow", BUCKET);
    start_clean("[]");
    id = snapshot("fslow", "f");
    snprintf(spec, sizeof(spec), "f/%s", id);
    start_clean("[{\"method\":\"GET\",\"query\":\"\",\"path\":\"manifest$\",\"nth\":1,\"count\":1,"
                "\"action\":\"delay\",\"ms\":4000}]");
    {
        const char *argv[] = {"shardgate", "verify",       "--store", url,  "--trust",
                              pub,         "--s3-timeout", "1",       spec, NULL};
        free(sgt_shardgate(0, argv));
    }
    {
        char *log = sgt_s3_log(s3);
        ck_assert_msg(strstr(log, "delay"), "no delay fired: %s", log);
        free(log);
    }
    free(id);
}
END_TEST

/* Reads cut short (a reset or a truncated body) are fetched again. */
START_TEST(cut_downloads_retried)
{
    char *id, url[256], spec[160];
    snprintf(url, sizeof(url), "s3://%s/fcut", BUCKET);
    start_clean("[]");
    id = snapshot("fcut", "f");
    snprintf(spec, sizeof(spec), "f/%s", id);
    start_clean("[{\"method\":\"GET\",\"path\":\"pack$\",\"nth\":1,\"count\":1,"
                "\"action\":\"truncate\"},"
                "{\"method\":\"GET\",\"path\":\"pack$\",\"nth\":3,\"count\":1,"
                "\"action\":\"reset\"}]");
    verify_level2("fcut", spec);
    {
        char *log = sgt_s3_log(s3);
        ck_assert_msg(strstr(log, "truncate") && strstr(log, "reset"), "faults: %s", log);
        free(log);
    }
    free(id);
}
END_TEST

START_TEST(complete_answering_error_in_200_retried)
{
    snapshot_survives("fcomplete",
                      "[{\"method\":\"POST\",\"query\":\"uploadId=\",\"nth\":1,\"count\":1,"
                      "\"action\":\"complete-error\"}]",
                      NULL, NULL, 0);
}
END_TEST

/* A request refused for good in the middle of an upload: the snapshot
 * fails with the server's words, the upload is aborted, nothing is left. */
START_TEST(signature_error_mid_upload_aborts)
{
    char url[256];
    snprintf(url, sizeof(url), "s3://%s/fsig", BUCKET);
    start_clean("[{\"method\":\"PUT\",\"query\":\"partNumber=2&\",\"nth\":1,\"count\":1,"
                "\"action\":\"status\",\"status\":403,\"code\":\"SignatureDoesNotMatch\","
                "\"message\":\"The request signature we calculated does not match\"}]");
    const char *argv[] = {"shardgate",      "snapshot", "--dsn",   source, "--store",     url,
                          "--key",          key,        "--shard", "f",    "--pack-size", PACK_SIZE,
                          "--s3-part-size", PART_SIZE,  NULL};
    const char *want[] = {"part 2 of s3://" BUCKET "/fsig/shards/f/snapshots/",
                          "SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY", NULL};
    free(sgt_shardgate_fails(11, argv, want));
    ck_assert_int_eq(sgt_s3_open_uploads(s3), 0);
    ck_assert_int_ge(sgt_s3_count(s3, "DELETE", "uploadId=", 204), 1);
    ck_assert_int_eq(objects_under("fsig/"), 0);
}
END_TEST

/* An S3 error document keeps coming back: after the retries, the message
 * carries its code and message. */
START_TEST(persistent_xml_error_reported)
{
    char url[256];
    snprintf(url, sizeof(url), "s3://%s/fxml", BUCKET);
    start_clean("[{\"method\":\"GET\",\"query\":\"list-type=2\",\"nth\":1,\"count\":-1,"
                "\"action\":\"status\",\"status\":500,\"code\":\"InternalError\","
                "\"message\":\"The disk is on fire\"}]");
    const char *argv[] = {"shardgate", "snapshots", "--store", url, "--s3-retry-time", "2", NULL};
    const char *want[] = {"cannot list s3://" BUCKET, "InternalError: The disk is on fire", NULL};
    free(sgt_shardgate_fails(11, argv, want));
    ck_assert_int_ge(sgt_s3_count(s3, "GET", "list-type=2", 500), 2);
}
END_TEST

START_TEST(html_error_page_reported)
{
    char url[256];
    snprintf(url, sizeof(url), "s3://%s/fhtml", BUCKET);
    start_clean("[{\"method\":\"GET\",\"query\":\"list-type=2\",\"nth\":1,\"count\":-1,"
                "\"action\":\"status\",\"status\":502,\"raw\":\"<html>Bad Gateway</html>\"}]");
    const char *argv[] = {"shardgate", "snapshots", "--store", url, "--s3-retry-time", "1", NULL};
    const char *want[] = {"HTTP 502", NULL};
    free(sgt_shardgate_fails(11, argv, want));
}
END_TEST

START_TEST(vanished_server_reported)
{
    const char *argv[] = {"shardgate",
                          "snapshots",
                          "--store",
                          "s3://" BUCKET "/x",
                          "--s3-endpoint",
                          "http://127.0.0.1:9",
                          "--s3-retry-time",
                          "1",
                          NULL};
    const char *want[] = {"Couldn't connect", "is up", NULL};
    free(sgt_shardgate_fails(11, argv, want));
}
END_TEST

START_TEST(missing_bucket_reported)
{
    const char *argv[] = {"shardgate", "snapshots", "--store", "s3://no-such-bucket/x", NULL};
    const char *want[] = {"NoSuchBucket", "bucket \"no-such-bucket\" does not exist", NULL};
    free(sgt_shardgate_fails(11, argv, want));
}
END_TEST

/* SIGTERM while parts are in flight: the upload is aborted and nothing
 * of the snapshot stays in the bucket. */
START_TEST(interrupted_upload_is_aborted)
{
    char url[256], run_dir[600];
    pid_t pid;
    int status;
    snprintf(url, sizeof(url), "s3://%s/fkill", BUCKET);
    snprintf(run_dir, sizeof(run_dir), "%s/kill", dir);
    {
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", run_dir);
        sgt_sh(cmd);
    }
    start_clean("[{\"method\":\"PUT\",\"query\":\"partNumber=\",\"nth\":1,\"count\":-1,"
                "\"action\":\"delay\",\"ms\":600}]");
    const char *argv[] = {"shardgate",      "snapshot", "--dsn",   source, "--store",     url,
                          "--key",          key,        "--shard", "k",    "--pack-size", PACK_SIZE,
                          "--s3-part-size", PART_SIZE,  NULL};
    pid = sgt_spawn(argv, NULL, run_dir);
    for (int i = 0; i < 200 && sgt_s3_count(s3, "PUT", "partNumber=", 0) < 2; i++)
        usleep(50 * 1000);
    ck_assert_int_ge(sgt_s3_count(s3, "PUT", "partNumber=", 0), 1);
    kill(pid, SIGTERM);
    status = sgt_wait(pid);
    ck_assert_int_eq(status, 16);
    sgt_s3_set_faults(s3, "[]");
    ck_assert_int_eq(sgt_s3_open_uploads(s3), 0);
    ck_assert_int_eq(objects_under("fkill/"), 0);
}
END_TEST

START_TEST(prune_removes_manifest_before_packs)
{
    char url[256], *ids[3];
    snprintf(url, sizeof(url), "s3://%s/prune", BUCKET);
    start_clean("[]");
    for (int i = 0; i < 3; i++) {
        ids[i] = snapshot("prune", "p");
        sleep(1); /* ids sort by the second they were taken in */
    }
    sgt_s3_clear_log(s3);
    {
        const char *argv[] = {"shardgate", "prune", "--store", url, "--keep-last", "1", NULL};
        char *out = sgt_shardgate(0, argv);
        ck_assert_msg(strstr(out, ids[0]) && strstr(out, ids[1]) && !strstr(out, ids[2]), "%s",
                      out);
        free(out);
    }
    {
        /* In the proxy's log, each removed snapshot's manifest DELETE comes
         * before any of its packs'. */
        char *log = sgt_s3_log(s3);
        for (int i = 0; i < 2; i++) {
            char manifest[256], pack[256];
            const char *m, *p;
            snprintf(manifest, sizeof(manifest), "%s/manifest", ids[i]);
            snprintf(pack, sizeof(pack), "%s/packs/", ids[i]);
            m = strstr(log, manifest);
            p = strstr(log, pack);
            ck_assert_msg(m && p && m < p, "order of deletes for %s: %s", ids[i], log);
        }
        free(log);
    }
    ck_assert_int_gt(objects_under("prune/"), 0);
    {
        char prefix[256];
        snprintf(prefix, sizeof(prefix), "prune/shards/p/snapshots/%s", ids[0]);
        ck_assert_int_eq(objects_under(prefix), 0);
        snprintf(prefix, sizeof(prefix), "prune/shards/p/snapshots/%s", ids[2]);
        ck_assert_int_ge(objects_under(prefix), 2);
    }
    for (int i = 0; i < 3; i++)
        free(ids[i]);
}
END_TEST

/* The proxy outlives each forked test: every test starts without faults. */
static void no_faults(void)
{
    start_clean("[]");
}

/* Certificates are verified by default; --s3-ca-file adds a CA to the
 * trusted ones, --s3-insecure turns verification off by name. */
START_TEST(tls_verified_unless_told_otherwise)
{
    const char *endpoint = sgt_s3_endpoint(tls);
    const char *plain[] = {"shardgate",     "snapshots", "--store", "s3://sg-tls/x",
                           "--s3-endpoint", endpoint,    NULL};
    const char *want[] = {"cannot list s3://sg-tls/x", "not trusted", "--s3-ca-file", NULL};
    char *err = sgt_shardgate_fails(11, plain, want);
    /* A certificate problem is not retried. */
    ck_assert_msg(strstr(err, "1 attempt;") || strstr(err, "1 attempt\n"), "%s", err);
    free(err);
    const char *with_ca[] = {
        "shardgate",    "snapshots", "--store", "s3://sg-tls/x", "--s3-endpoint", endpoint,
        "--s3-ca-file", cert,        NULL};
    free(sgt_shardgate(0, with_ca));
    const char *insecure[] = {"shardgate",     "snapshots", "--store",       "s3://sg-tls/x",
                              "--s3-endpoint", endpoint,    "--s3-insecure", NULL};
    free(sgt_shardgate(0, insecure));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("s3_store");
    TCase *data = tcase_create("data_path");
    TCase *faults = tcase_create("faults");
    TCase *retention = tcase_create("retention");
    tcase_add_test(data, round_trip_through_multipart);
    tcase_add_test(data, independent_client_reads_our_objects);
    tcase_add_test(data, wrong_secret_is_refused_and_leaves_nothing);
    tcase_add_test(data, tls_verified_unless_told_otherwise);
    tcase_add_test(faults, part_3_gets_503_then_succeeds);
    tcase_add_test(faults, slowdown_429_retried);
    tcase_add_test(faults, reset_mid_body_retried);
    tcase_add_test(faults, slow_response_times_out_and_is_retried);
    tcase_add_test(faults, cut_downloads_retried);
    tcase_add_test(faults, complete_answering_error_in_200_retried);
    tcase_add_test(faults, signature_error_mid_upload_aborts);
    tcase_add_test(faults, persistent_xml_error_reported);
    tcase_add_test(faults, html_error_page_reported);
    tcase_add_test(faults, vanished_server_reported);
    tcase_add_test(faults, missing_bucket_reported);
    tcase_add_test(faults, interrupted_upload_is_aborted);
    tcase_add_test(retention, prune_removes_manifest_before_packs);
    tcase_add_checked_fixture(data, no_faults, NULL);
    tcase_add_checked_fixture(faults, no_faults, NULL);
    tcase_add_checked_fixture(retention, no_faults, NULL);
    suite_add_tcase(s, data);
    suite_add_tcase(s, faults);
    suite_add_tcase(s, retention);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;
    pg = sgt_pg_start();
    s3 = sgt_s3_start(BUCKET, 1);
    sgt_s3_setenv(s3);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    sgt_keygen_or_exit(dir, "owner", key, pub);
    {
        char cmd[2048], tls_key[600];
        snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
        snprintf(tls_key, sizeof(tls_key), "%s/key.pem", dir);
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
                 "-keyout '%s' -out '%s' 2>/dev/null",
                 tls_key, cert);
        sgt_sh(cmd);
        tls = sgt_s3_start_tls("sg-tls", cert, tls_key);
    }
    source = sgt_pg_create_db(pg, "s3src");
    /* About 1.5 MB stored: several packs of several parts each. */
    sgt_sql_or_exit(source, "CREATE TABLE big (id int PRIMARY KEY, v text);"
                            "INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) "
                            "FROM generate_series(1, 40000) g;"
                            "CREATE TABLE small (k text PRIMARY KEY);"
                            "INSERT INTO small VALUES ('a'), ('b');");

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
    sgt_s3_stop(tls);
    sgt_s3_stop(s3);
    sgt_pg_stop(pg);
    free(source);
    return failed ? 1 : 0;
}
