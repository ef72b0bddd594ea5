/* Sizes that matter in practice: a table of several hundred MB, which the
 * snapshot splits into TID ranges across workers, and a value of tens of MB
 * in one row, larger than a chunk. Checked independently of shardgate's own
 * digests with the server's aggregates. */
#include "tests/harness/cli.h"
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sgt_pg_server *pg;
static char *source;
static char dir[] = "/tmp/sgt-large-XXXXXX";
static char store[512], key[512], pub[512];

static const char *const checks[] = {
    "SELECT count(*) || ':' || sum(length(payload)) || ':' || sum(id) FROM wide",
    "SELECT count(*) || ':' || sum(hashtext(payload)::bigint) FROM wide",
    "SELECT md5(content) || ':' || length(content) FROM toasted WHERE id = 1",
    "SELECT count(*) FROM toasted",
};

START_TEST(large_table_and_large_value_round_trip)
{
    char *target = sgt_pg_create_db(pg, "large_copy");
    const char *snap[] = {"shardgate", "snapshot", "--dsn", source,   "--store", store, "--key",
                          key,         "--shard",  "large", "--jobs", "2",       NULL};
    const char *restore[] = {"shardgate",    "restore", "--store",  store,  "--key",  key,
                             "--trust",      pub,       "--target", target, "--jobs", "2",
                             "large/latest", NULL};
    const char *verify[] = {"shardgate", "verify", "--store", store, "--trust",      pub,
                            "--key",     key,      "--level", "2",   "large/latest", NULL};
    free(sgt_shardgate(0, snap));
    free(sgt_shardgate(0, verify));
    free(sgt_shardgate(0, restore));
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        char *want = sgt_pg_value(source, checks[i]), *got = sgt_pg_value(target, checks[i]);
        ck_assert_msg(strcmp(want, got) == 0, "%s: %s vs %s", checks[i], want, got);
        free(want);
        free(got);
    }
    free(target);
}
END_TEST

int main(void)
{
    char name[600];
    SRunner *sr;
    Suite *s;
    TCase *tc;
    int failed;

    pg = sgt_pg_start();
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(store, sizeof(store), "file://%s/store", dir);
    sgt_keygen_or_exit(dir, "k", key, pub);
    source = sgt_pg_create_db(pg, "large");
    /* About 330 MB of heap in `wide`, and a 40 MB random value (80 MB of
     * COPY text as hex) in `toasted`. */
    sgt_sql_or_exit(source,
                    "CREATE TABLE wide (id bigint PRIMARY KEY, payload text);"
                    "INSERT INTO wide SELECT g, md5(g::text) || repeat(md5((g * 7)::text), 4)"
                    "  FROM generate_series(1, 1700000) g;"
                    "CREATE TABLE toasted (id int PRIMARY KEY, content bytea);"
                    "ALTER TABLE toasted ALTER COLUMN content SET STORAGE EXTERNAL;"
                    "INSERT INTO toasted SELECT 1, string_agg(decode(md5(random()::text), 'hex'),"
                    "  ''::bytea) FROM generate_series(1, 2500000);"
                    "INSERT INTO toasted VALUES (2, 'small');");

    s = suite_create("large");
    tc = tcase_create("round_trip");
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, large_table_and_large_value_round_trip);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    snprintf(name, sizeof(name), "rm -rf '%s'", dir);
    sgt_sh(name);
    sgt_pg_stop(pg);
    free(source);
    return failed ? 1 : 0;
}
