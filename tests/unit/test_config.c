/* The pipeline file: the shipped example, defaults, every error with the
 * input that reaches it and its exact position, paths, partitions, and
 * allocation failures. Each test runs in a fresh temporary directory, so
 * files are named "pipeline.yaml" in messages. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mem.h"
#include "pipeline/config.h"
#include "tests/harness/run.h"

static char dir[64];

static void make_dir(void)
{
    strcpy(dir, "/tmp/sg-test-config-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(chdir(dir), 0);
}

static void remove_dir(void)
{
    ck_assert_int_eq(chdir("/"), 0);
    sgt_remove_tree(dir);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    ck_assert_int_eq(fclose(f), 0);
}

static int load(sg_pipeline_config *cfg, const char *text, sg_error *err)
{
    write_file("pipeline.yaml", text);
    return sg_pipeline_config_load(cfg, "pipeline.yaml", err);
}

/* Loading text fails with SG_E_FORMAT and exactly this message (and hint,
 * unless hint is NULL), leaving the config zeroed. */
#define assert_error(text, message, hint) assert_error_at(__LINE__, text, message, hint)

static void assert_error_at(int line, const char *text, const char *message, const char *hint)
{
    static const sg_pipeline_config zero;
    sg_pipeline_config cfg;
    sg_error err = {0};
    int rc = load(&cfg, text, &err);
    ck_assert_msg(rc == SG_E_FORMAT, "line %d: rc %d, message %s", line, rc, err.message);
    ck_assert_msg(strcmp(err.message, message) == 0, "line %d: message\n  %s\nexpected\n  %s", line,
                  err.message, message);
    if (hint)
        ck_assert_msg(strcmp(err.hint, hint) == 0, "line %d: hint\n  %s\nexpected\n  %s", line,
                      err.hint, hint);
    ck_assert_msg(memcmp(&cfg, &zero, sizeof(cfg)) == 0, "line %d: config not cleared", line);
}

/* A valid file in pieces, so a test swaps one piece for a bad one. */
#define HEAD                                                                                       \
    "version: 1\n"               /* 1 */                                                           \
    "name: t\n"                  /* 2 */                                                           \
    "store: file:///tmp/store\n" /* 3 */                                                           \
    "keys: {key: k.key}\n"       /* 4 */                                                           \
    "migrations: m\n"            /* 5 */
#define FLEET                                                                                      \
    "fleet:\n"                                    /* 6 */                                          \
    "  - {name: a, dsn: \"dbname=a\", ring: r}\n" /* 7 */
#define STAGES                                                                                     \
    "stages:\n"                /* 8 */                                                             \
    "  - {name: s, ring: r}\n" /* 9 */

/* The same with lines 2 to 4 given. */
#define NAME "name: t\n"
#define STORE "store: file:///tmp/store\n"
#define KEYS "keys: {key: k.key}\n"
#define TOP(name, store, keys) "version: 1\n" name store keys "migrations: m\n" FLEET STAGES

#define TOP_KEYS                                                                                   \
    "version, name, store, s3, keys, sandbox, migrations, target, fleet, stages, policy, "         \
    "verify, objectives, bluegreen"
#define PASSWORD_HINT                                                                              \
    "passwords come from libpq: the password file (~/.pgpass, or the file PGPASSFILE names) or "   \
    "PGPASSWORD"
#define AWS_HINT                                                                                   \
    "S3 credentials come from the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "      \
    "AWS_SESSION_TOKEN"

static char *real_dir(const char *sub)
{
    char real[PATH_MAX];
    ck_assert_ptr_nonnull(realpath(sub, real));
    return sgt_asprintf("%s", real);
}

static void assert_path(const char *got, const char *base, const char *rel)
{
    char *want = sgt_asprintf("%s/%s", base, rel);
    ck_assert_str_eq(got, want);
    free(want);
}

START_TEST(test_example)
{
    const char *source = getenv("SG_SOURCE_DIR");
    sg_pipeline_config cfg;
    sg_error err = {0};
    char *path, *base, *url;
    int rc;
    ck_assert_msg(source != NULL, "SG_SOURCE_DIR is not set (ctest sets it)");
    path = sgt_asprintf("%s/examples/pipeline.yaml", source);
    base = sgt_asprintf("%s/examples", source);
    {
        char *real = real_dir(base);
        free(base);
        base = real;
    }
    rc = sg_pipeline_config_load(&cfg, path, &err);
    ck_assert_msg(rc == 0, "%s", err.message);

    ck_assert_str_eq(cfg.file, path);
    ck_assert_str_eq(cfg.name, "demo");
    url = sgt_asprintf("file://%s/store", base);
    ck_assert_str_eq(cfg.store.url, url);
    ck_assert_ptr_null(cfg.store.s3_endpoint);
    ck_assert_int_eq(cfg.store.s3_parallel, 0);
    assert_path(cfg.key_path, base, "keys/runner.key");
    ck_assert_uint_eq(cfg.recipients.count, 0);
    ck_assert_uint_eq(cfg.trust.count, 1);
    assert_path(cfg.trust.items[0], base, "keys/runner.pub");
    ck_assert_str_eq(cfg.sandbox.driver, "local");
    ck_assert_ptr_null(cfg.sandbox.image);
    ck_assert_ptr_null(cfg.sandbox.memory);
    ck_assert_ptr_null(cfg.sandbox.cpus);
    assert_path(cfg.migrations, base, "migrations");
    ck_assert_int_eq(cfg.target, SG_PIPELINE_TARGET_LATEST);

    ck_assert_uint_eq(cfg.nfleet, 4);
    for (size_t i = 0; i < 4; i++) {
        char name[16], dsn[64];
        snprintf(name, sizeof(name), "shard-%zu", i + 1);
        snprintf(dsn, sizeof(dsn), "host=/tmp/shardgate-demo/%zu dbname=app", i + 1);
        ck_assert_str_eq(cfg.fleet[i].name, name);
        ck_assert_str_eq(cfg.fleet[i].dsn, dsn);
        ck_assert_str_eq(cfg.fleet[i].ring, i == 0 ? "canary" : "wave");
        ck_assert_uint_eq(cfg.fleet[i].stage, i == 0 ? 0 : 1);
        ck_assert_ptr_eq(sg_pipeline_config_shard(&cfg, name), &cfg.fleet[i]);
    }
    ck_assert_ptr_null(sg_pipeline_config_shard(&cfg, "shard-5"));

    ck_assert_uint_eq(cfg.nstages, 2);
    ck_assert_str_eq(cfg.stages[0].name, "canary");
    ck_assert_str_eq(cfg.stages[0].ring, "canary");
    ck_assert_uint_eq(cfg.stages[0].nshards, 1);
    ck_assert_uint_eq(cfg.stages[0].shards[0], 0);
    ck_assert_uint_eq(cfg.stages[0].parallel, 1);
    ck_assert_uint_eq(cfg.stages[0].soak_ms, 5000);
    ck_assert_uint_eq(cfg.stages[0].max_failures, 0);
    ck_assert_str_eq(cfg.stages[1].name, "wave");
    ck_assert_str_eq(cfg.stages[1].ring, "wave");
    ck_assert_uint_eq(cfg.stages[1].nshards, 3);
    for (size_t i = 0; i < 3; i++)
        ck_assert_uint_eq(cfg.stages[1].shards[i], i + 1);
    ck_assert_uint_eq(cfg.stages[1].parallel, 2);
    ck_assert_uint_eq(cfg.stages[1].soak_ms, 0);
    ck_assert_uint_eq(cfg.stages[1].max_failures, 0);

    ck_assert_int_eq(cfg.policy.on_failure, SG_ON_FAILURE_HALT);
    ck_assert_uint_eq(cfg.policy.lock_timeout_ms, 2000);
    ck_assert_uint_eq(cfg.policy.statement_timeout_ms, 0);
    ck_assert_uint_eq(cfg.policy.retries, 10);
    ck_assert_uint_eq(cfg.policy.rehearsal_budget_ms, 0);
    ck_assert(!cfg.verify_quiesced);
    ck_assert_uint_eq(cfg.rto_ms, 15 * 60 * 1000);

    sg_pipeline_config_clear(&cfg);
    ck_assert_ptr_null(cfg.fleet);
    sg_pipeline_config_clear(&cfg); /* cleared twice: a no-op */
    sg_pipeline_config_clear(NULL);
    free(url);
    free(path);
    free(base);
}
END_TEST

START_TEST(test_defaults)
{
    sg_pipeline_config cfg;
    sg_error err = {0};
    int rc = load(&cfg, HEAD FLEET STAGES, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    ck_assert_str_eq(cfg.store.url, "file:///tmp/store");
    ck_assert_uint_eq(cfg.recipients.count, 0);
    ck_assert_ptr_null(cfg.recipients.items);
    ck_assert_uint_eq(cfg.trust.count, 0);
    ck_assert_str_eq(cfg.sandbox.driver, "local");
    ck_assert_ptr_null(cfg.sandbox.image);
    ck_assert_int_eq(cfg.target, SG_PIPELINE_TARGET_LATEST);
    ck_assert_uint_eq(cfg.stages[0].parallel, 1);
    ck_assert_uint_eq(cfg.stages[0].soak_ms, 0);
    ck_assert_uint_eq(cfg.stages[0].max_failures, 0);
    ck_assert_int_eq(cfg.policy.on_failure, SG_ON_FAILURE_HALT);
    ck_assert_str_eq(sg_pipeline_on_failure_name(cfg.policy.on_failure), "halt");
    ck_assert_uint_eq(cfg.policy.lock_timeout_ms, 2000);
    ck_assert_uint_eq(cfg.policy.statement_timeout_ms, 0);
    ck_assert_uint_eq(cfg.policy.retries, 10);
    ck_assert_uint_eq(cfg.policy.rehearsal_budget_ms, 0);
    ck_assert(!cfg.verify_quiesced);
    ck_assert_uint_eq(cfg.rto_ms, 0);
    sg_pipeline_config_clear(&cfg);

    /* Sections given empty take their defaults too. */
    rc = load(&cfg, HEAD FLEET STAGES "policy:\nverify: {}\nsandbox: ~\n", &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    ck_assert_uint_eq(cfg.policy.lock_timeout_ms, 2000);
    ck_assert_str_eq(cfg.sandbox.driver, "local");
    sg_pipeline_config_clear(&cfg);
}
END_TEST

/* Every setting away from its default, and the other ways to write them. */
START_TEST(test_everything)
{
    static const char text[] =
        "version: 1\n"
        "name: nightly.eu_1\n"
        "store: s3://backups/fleet-a\n"
        "s3:\n"
        "  endpoint: http://127.0.0.1:4568\n"
        "  region: eu-west-1\n"
        "  path_style: true\n"
        "  insecure: False\n"
        "  ca_file: certs/ca.pem\n"
        "  parallel: 8\n"
        "  part_size: 8MiB\n"
        "  timeout: 1500ms\n"
        "  retry_time: 5m\n"
        "keys: {key: /etc/shardgate/runner.key, recipients: [dr.pub, ./b.pub], trust: []}\n"
        "sandbox: {driver: docker, image: \"postgres:16\", memory: 2g, cpus: 1.5}\n"
        "migrations: /srv/migrations/\n"
        "target: 42\n"
        "fleet:\n"
        "  - &first {name: b, dsn: \"postgresql://migrator@db-b/app\", ring: one}\n"
        "  - {name: a, dsn: 'host=db-a dbname=app', ring: two}\n"
        "  - {name: c, dsn: \"service=c\", ring: one}\n"
        "stages:\n"
        "  - name: first\n"
        "    shards: [c, b]\n"
        "    parallel: 3\n"
        "    soak: 1h30m\n"
        "    max_failures: 2\n"
        "  - {name: rest, ring: two}\n"
        "policy:\n"
        "  on_failure: rollback-stage\n"
        "  lock_timeout: 500ms\n"
        "  statement_timeout: 1m\n"
        "  retries: 0\n"
        "  rehearsal_budget: 30\n"
        "verify: {quiesced: true}\n"
        "objectives: {rto: 1h}\n";
    sg_pipeline_config cfg;
    sg_error err = {0};
    char *base;
    int rc = load(&cfg, text, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    base = real_dir(".");
    ck_assert_str_eq(cfg.name, "nightly.eu_1");
    ck_assert_str_eq(cfg.store.url, "s3://backups/fleet-a");
    ck_assert_str_eq(cfg.store.s3_endpoint, "http://127.0.0.1:4568");
    ck_assert_str_eq(cfg.store.s3_region, "eu-west-1");
    ck_assert(cfg.store.s3_path_style);
    ck_assert(!cfg.store.s3_insecure);
    assert_path(cfg.store.s3_ca_file, base, "certs/ca.pem");
    ck_assert_int_eq(cfg.store.s3_parallel, 8);
    ck_assert_uint_eq(cfg.store.s3_part_size, 8 << 20);
    ck_assert_int_eq(cfg.store.s3_timeout, 2); /* rounded up to whole seconds */
    ck_assert_int_eq(cfg.store.s3_retry_time, 300);
    ck_assert_str_eq(cfg.key_path, "/etc/shardgate/runner.key");
    ck_assert_uint_eq(cfg.recipients.count, 2);
    assert_path(cfg.recipients.items[0], base, "dr.pub");
    assert_path(cfg.recipients.items[1], base, "b.pub");
    ck_assert_uint_eq(cfg.trust.count, 0);
    ck_assert_str_eq(cfg.sandbox.driver, "docker");
    ck_assert_str_eq(cfg.sandbox.image, "postgres:16");
    ck_assert_str_eq(cfg.sandbox.memory, "2147483648");
    ck_assert_str_eq(cfg.sandbox.cpus, "1.5");
    ck_assert_str_eq(cfg.migrations, "/srv/migrations/");
    ck_assert_int_eq(cfg.target, 42);

    ck_assert_uint_eq(cfg.nfleet, 3);
    ck_assert_str_eq(cfg.fleet[0].dsn, "postgresql://migrator@db-b/app");
    ck_assert_str_eq(cfg.fleet[1].dsn, "host=db-a dbname=app");
    ck_assert_uint_eq(cfg.fleet[0].stage, 0);
    ck_assert_uint_eq(cfg.fleet[1].stage, 1);
    ck_assert_uint_eq(cfg.fleet[2].stage, 0);
    ck_assert_ptr_null(cfg.stages[0].ring);
    ck_assert_uint_eq(cfg.stages[0].nshards, 2); /* in the order listed */
    ck_assert_uint_eq(cfg.stages[0].shards[0], 2);
    ck_assert_uint_eq(cfg.stages[0].shards[1], 0);
    ck_assert_uint_eq(cfg.stages[0].parallel, 3);
    ck_assert_uint_eq(cfg.stages[0].soak_ms, 5400000);
    ck_assert_uint_eq(cfg.stages[0].max_failures, 2);
    ck_assert_uint_eq(cfg.stages[1].nshards, 1);
    ck_assert_uint_eq(cfg.stages[1].shards[0], 1);

    ck_assert_int_eq(cfg.policy.on_failure, SG_ON_FAILURE_ROLLBACK_STAGE);
    ck_assert_str_eq(sg_pipeline_on_failure_name(cfg.policy.on_failure), "rollback-stage");
    ck_assert_str_eq(sg_pipeline_on_failure_name(SG_ON_FAILURE_ROLLBACK_ALL), "rollback-all");
    ck_assert_uint_eq(cfg.policy.lock_timeout_ms, 500);
    ck_assert_uint_eq(cfg.policy.statement_timeout_ms, 60000);
    ck_assert_uint_eq(cfg.policy.retries, 0);
    ck_assert_uint_eq(cfg.policy.rehearsal_budget_ms, 30000); /* a bare number is seconds */
    ck_assert(cfg.verify_quiesced);
    ck_assert_uint_eq(cfg.rto_ms, 3600000);
    sg_pipeline_config_clear(&cfg);
    free(base);
}
END_TEST

START_TEST(test_aliases)
{
    /* An alias stands for its anchor's node; merge keys are refused. */
    sg_pipeline_config cfg;
    sg_error err = {0};
    int rc = load(&cfg,
                  HEAD "fleet:\n"
                       "  - {name: a, dsn: &dsn \"dbname=app\", ring: &ring r}\n"
                       "  - {name: b, dsn: *dsn, ring: *ring}\n" STAGES,
                  &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    ck_assert_str_eq(cfg.fleet[1].dsn, "dbname=app");
    ck_assert_uint_eq(cfg.stages[0].nshards, 2);
    sg_pipeline_config_clear(&cfg);

    assert_error(HEAD FLEET STAGES "policy: {retries: *nowhere}\n",
                 "pipeline.yaml:10:19: unknown alias \"*nowhere\"", NULL);
    assert_error(HEAD "defaults: &d {ring: r}\n" FLEET STAGES,
                 "pipeline.yaml:6:1: unknown key \"defaults\"", NULL);
    assert_error(HEAD "fleet:\n"
                      "  - {<<: {ring: r}, name: a, dsn: x}\n" STAGES,
                 "pipeline.yaml:7:6: merge keys (<<) are not supported",
                 "write the settings out in full");
}
END_TEST

START_TEST(test_unknown_keys)
{
    assert_error(HEAD FLEET STAGES "stage: x\n", "pipeline.yaml:10:1: unknown key \"stage\"",
                 "did you mean \"stages\"? keys allowed here: " TOP_KEYS);
    assert_error(HEAD FLEET STAGES "extra: x\n", "pipeline.yaml:10:1: unknown key \"extra\"",
                 "keys allowed here: " TOP_KEYS);
    assert_error(HEAD "fleet:\n"
                      "  - {name: a, dns: \"dbname=a\", ring: r}\n" STAGES,
                 "pipeline.yaml:7:15: unknown key \"dns\" in shard \"a\"",
                 "did you mean \"dsn\"? keys allowed here: name, dsn, ring");
    assert_error(HEAD FLEET "stages:\n"
                            "  - name: wave-1\n"
                            "    ring: r\n"
                            "    paralel: 4\n",
                 "pipeline.yaml:11:5: unknown key \"paralel\" in stage \"wave-1\"",
                 "did you mean \"parallel\"? keys allowed here: name, ring, shards, parallel, "
                 "soak, max_failures");
    assert_error(HEAD FLEET STAGES "policy: {lock_timout: 2s}\n",
                 "pipeline.yaml:10:10: unknown key \"lock_timout\" in policy",
                 "did you mean \"lock_timeout\"? keys allowed here: on_failure, lock_timeout, "
                 "statement_timeout, retries, rehearsal_budget");
    assert_error(HEAD FLEET STAGES "sandbox: {drive: docker}\n",
                 "pipeline.yaml:10:11: unknown key \"drive\" in sandbox",
                 "did you mean \"driver\"? keys allowed here: driver, image, memory, cpus");
    assert_error(TOP(NAME, STORE, "keys: {key: k, trusted: [a.pub]}\n"),
                 "pipeline.yaml:4:16: unknown key \"trusted\" in keys",
                 "did you mean \"trust\"? keys allowed here: key, recipients, trust");
    assert_error(HEAD FLEET STAGES "verify: {quiesce: true}\n",
                 "pipeline.yaml:10:10: unknown key \"quiesce\" in verify", NULL);
    assert_error(HEAD FLEET STAGES "objectives: {rpo: 1h}\n",
                 "pipeline.yaml:10:14: unknown key \"rpo\" in objectives",
                 "did you mean \"rto\"? keys allowed here: rto");
    /* A stage without a name is named by its place. */
    assert_error(HEAD FLEET "stages:\n  - {ring: r, soak: 1s, sok: 1s}\n",
                 "pipeline.yaml:9:25: unknown key \"sok\" in stage #1", NULL);
    assert_error(HEAD FLEET STAGES "[a]: 1\n", "pipeline.yaml:10:1: keys must be names, not a list",
                 NULL);
}
END_TEST

START_TEST(test_secrets)
{
    assert_error(HEAD "fleet:\n"
                      "  - {name: a, dsn: \"host=x password=hunter2\", ring: r}\n" STAGES,
                 "pipeline.yaml:7:20: the dsn of shard \"a\" holds a password", PASSWORD_HINT);
    assert_error(HEAD "fleet:\n"
                      "  - {name: a, dsn: \"postgresql://u:hunter2@db/app\", ring: r}\n" STAGES,
                 "pipeline.yaml:7:20: the dsn of shard \"a\" holds a password", PASSWORD_HINT);
    assert_error(HEAD
                 "fleet:\n"
                 "  - {name: a, dsn: \"postgresql://db/app?password=hunter2\", ring: r}\n" STAGES,
                 "pipeline.yaml:7:20: the dsn of shard \"a\" holds a password", PASSWORD_HINT);
    assert_error(HEAD "fleet:\n"
                      "  - {name: a, dsn: \"host=x sslpassword=hunter2\", ring: r}\n" STAGES,
                 "pipeline.yaml:7:20: the dsn of shard \"a\" holds a password", PASSWORD_HINT);
    assert_error(
        HEAD "fleet:\n"
             "  - {name: a, dsn: \"host=x dbname\", ring: r}\n" STAGES,
        "pipeline.yaml:7:20: invalid dsn of shard \"a\": missing \"=\" after \"dbname\" in "
        "connection info string",
        NULL);
    assert_error(HEAD "fleet:\n"
                      "  - {name: a, dsn: x, ring: r, password: hunter2}\n" STAGES,
                 "pipeline.yaml:7:32: \"password\" in shard \"a\" is a secret, and secrets do not "
                 "belong in the pipeline file",
                 PASSWORD_HINT);
    assert_error(TOP(NAME, "store: s3://b/p\n", KEYS) "s3: {region: x, secret_access_key: y}\n",
                 "pipeline.yaml:10:17: \"secret_access_key\" in s3 is a secret, and secrets do not "
                 "belong in the pipeline file",
                 AWS_HINT);
    assert_error(TOP(NAME, "store: s3://AKIA:hunter2@b/p\n", KEYS),
                 "pipeline.yaml:3:8: the store URL holds credentials", AWS_HINT);
}
END_TEST

START_TEST(test_wrong_types)
{
    assert_error(HEAD FLEET STAGES "sandbox: [local]\n",
                 "pipeline.yaml:10:10: sandbox must be a mapping, not a list", NULL);
    assert_error(HEAD "fleet: {name: a}\n" STAGES,
                 "pipeline.yaml:6:8: fleet must be a list of shards, not a mapping", NULL);
    assert_error(HEAD "fleet:\n  - a\n" STAGES,
                 "pipeline.yaml:7:5: shard #1 must be a mapping, not \"a\"", NULL);
    assert_error(HEAD FLEET "stages: ring\n",
                 "pipeline.yaml:8:9: stages must be a list of stages, not \"ring\"", NULL);
    assert_error(TOP("name: [t]\n", STORE, KEYS),
                 "pipeline.yaml:2:7: name must be a name, not a list", NULL);
    assert_error(TOP(NAME, "store:\n", KEYS), "pipeline.yaml:3:1: store must be a URL, not empty",
                 NULL);
    assert_error(TOP("name: \"\"\n", STORE, KEYS), "pipeline.yaml:2:7: name must not be empty",
                 NULL);
    assert_error(TOP("name: a b\n", STORE, KEYS),
                 "pipeline.yaml:2:7: invalid pipeline name \"a b\"",
                 "names use letters, digits, '.', '_' and '-' (at most 100), and do not start "
                 "with '.'");
    assert_error(HEAD "fleet:\n  - {name: ../a, dsn: x, ring: r}\n" STAGES,
                 "pipeline.yaml:7:12: invalid shard name \"../a\"", NULL);
    assert_error(TOP(NAME, STORE, "keys: {key: k, recipients: a.pub}\n"),
                 "pipeline.yaml:4:28: recipients in keys must be a list of file names, not "
                 "\"a.pub\"",
                 NULL);
    assert_error(TOP(NAME, STORE, "keys: {key: k, trust: [{a: b}]}\n"),
                 "pipeline.yaml:4:24: trust in keys must list file names, found a mapping", NULL);
    assert_error(HEAD FLEET "stages:\n  - {name: s, shards: [a, [b]]}\n",
                 "pipeline.yaml:9:27: shards in stage \"s\" must list shard names, found a list",
                 NULL);

    /* Numbers. */
    assert_error(HEAD FLEET "stages:\n  - {name: s, ring: r, parallel: four}\n",
                 "pipeline.yaml:9:34: parallel in stage \"s\" must be an integer, not \"four\"",
                 "");
    assert_error(HEAD FLEET "stages:\n  - {name: s, ring: r, parallel: \"4\"}\n",
                 "pipeline.yaml:9:34: parallel in stage \"s\" must be an integer, not \"4\"",
                 "write numbers and true/false without quotes");
    assert_error(HEAD FLEET "stages:\n  - {name: s, ring: r, parallel: 1.5}\n",
                 "pipeline.yaml:9:34: parallel in stage \"s\" must be an integer, not \"1.5\"",
                 NULL);
    assert_error(HEAD FLEET "stages:\n  - {name: s, ring: r, parallel: 0}\n",
                 "pipeline.yaml:9:34: parallel in stage \"s\" must be at least 1, not 0", NULL);
    assert_error(HEAD FLEET "stages:\n  - {name: s, ring: r, parallel: 100001}\n",
                 "pipeline.yaml:9:34: parallel in stage \"s\" must be at most 100000, not 100001",
                 NULL);
    assert_error(HEAD FLEET "stages:\n  - {name: s, ring: r, max_failures: -1}\n",
                 "pipeline.yaml:9:38: max_failures in stage \"s\" must be at least 0, not -1",
                 NULL);
    assert_error(HEAD FLEET STAGES "policy: {retries: 99999999999999999999}\n",
                 "pipeline.yaml:10:19: retries in policy must be at most 1000000, not "
                 "99999999999999999999",
                 NULL);
    assert_error(HEAD FLEET STAGES "policy: {retries: -99999999999999999999}\n",
                 "pipeline.yaml:10:19: retries in policy must be at least 0, not "
                 "-99999999999999999999",
                 NULL);
    assert_error(HEAD FLEET STAGES "policy: {retries: ~}\n",
                 "pipeline.yaml:10:19: retries in policy must be an integer, not empty", NULL);

    /* Durations, sizes, CPUs, booleans, choices. */
    assert_error(HEAD FLEET "stages:\n  - {name: s, ring: r, soak: 10 minutes}\n",
                 "pipeline.yaml:9:30: soak in stage \"s\" must be a duration, not \"10 minutes\"",
                 "use a number with a unit, e.g. 500ms, 90s, 15m, 1h30m or 2d");
    assert_error(HEAD FLEET STAGES "policy: {lock_timeout: 0s}\n",
                 "pipeline.yaml:10:24: lock_timeout in policy must be more than 0", NULL);
    assert_error(HEAD FLEET STAGES "objectives: {rto: [1h]}\n",
                 "pipeline.yaml:10:19: rto in objectives must be a duration, not a list", NULL);
    assert_error(HEAD FLEET STAGES "sandbox: {driver: docker, memory: lots}\n",
                 "pipeline.yaml:10:35: memory in sandbox must be a size, not \"lots\"",
                 "use a number with an optional unit, e.g. 512k, 32MiB or 1G");
    assert_error(HEAD FLEET STAGES "sandbox: {driver: docker, memory: 0}\n",
                 "pipeline.yaml:10:35: memory in sandbox must be more than 0", NULL);
    assert_error(HEAD FLEET STAGES "sandbox: {driver: docker, cpus: -1}\n",
                 "pipeline.yaml:10:33: cpus in sandbox must be a number of CPUs more than 0, not "
                 "\"-1\"",
                 "");
    assert_error(HEAD FLEET STAGES "sandbox: {driver: docker, cpus: 0.0}\n",
                 "pipeline.yaml:10:33: cpus in sandbox must be a number of CPUs more than 0, not "
                 "\"0.0\"",
                 NULL);
    assert_error(HEAD FLEET STAGES "sandbox: {driver: docker, cpus: \"2\"}\n",
                 "pipeline.yaml:10:33: cpus in sandbox must be a number of CPUs more than 0, not "
                 "\"2\"",
                 "write numbers and true/false without quotes");
    assert_error(HEAD FLEET STAGES "sandbox: {image: \"postgres:16\"}\n",
                 "pipeline.yaml:10:18: image in sandbox applies to the docker driver only", NULL);
    assert_error(HEAD FLEET STAGES "sandbox: {driver: dokcer}\n",
                 "pipeline.yaml:10:19: unknown sandbox driver \"dokcer\"",
                 "did you mean \"docker\"? drivers: local, docker");
    assert_error(HEAD FLEET STAGES "verify: {quiesced: yes}\n",
                 "pipeline.yaml:10:20: quiesced in verify must be true or false, not \"yes\"",
                 NULL);
    assert_error(HEAD FLEET STAGES "policy: {on_failure: rollback_stage}\n",
                 "pipeline.yaml:10:22: on_failure in policy must be halt, rollback-stage or "
                 "rollback-all, not \"rollback_stage\"",
                 "did you mean \"rollback-stage\"? one of: halt, rollback-stage, rollback-all");
    assert_error(HEAD FLEET STAGES "target: -1\n",
                 "pipeline.yaml:10:9: target must be latest or a version number, not -1", NULL);
    assert_error(HEAD FLEET STAGES "target: newest\n",
                 "pipeline.yaml:10:9: target must be latest or a version number, not \"newest\"",
                 NULL);
}
END_TEST

/* The bluegreen section: defaults, every key, and its mistakes. */
START_TEST(test_bluegreen)
{
    sg_pipeline_config cfg;
    sg_error err = {0};
    int rc = load(&cfg, HEAD FLEET STAGES, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    ck_assert_uint_eq(cfg.bluegreen.chunk_rows, 5000);
    ck_assert_uint_eq(cfg.bluegreen.chunk_time_ms, 50);
    ck_assert_uint_eq(cfg.bluegreen.chunk_pause_ms, 0);
    ck_assert_uint_eq(cfg.bluegreen.max_lag_ms, 1000);
    ck_assert_uint_eq(cfg.bluegreen.keep_old_ms, 24u * 3600 * 1000);
    sg_pipeline_config_clear(&cfg);

    rc = load(&cfg,
              HEAD FLEET STAGES "bluegreen: {chunk_rows: 2000, chunk_time: 1s, chunk_pause: 50ms,"
                                " max_lag: 0, keep_old: 0}\n",
              &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    ck_assert_uint_eq(cfg.bluegreen.chunk_rows, 2000);
    ck_assert_uint_eq(cfg.bluegreen.chunk_time_ms, 1000);
    ck_assert_uint_eq(cfg.bluegreen.chunk_pause_ms, 50);
    ck_assert_uint_eq(cfg.bluegreen.max_lag_ms, 0);
    ck_assert_uint_eq(cfg.bluegreen.keep_old_ms, 0);
    sg_pipeline_config_clear(&cfg);

    assert_error(HEAD FLEET STAGES "bluegreen: {chunk_rows: 0}\n",
                 "pipeline.yaml:10:25: chunk_rows in bluegreen must be at least 1, not 0", NULL);
    assert_error(HEAD FLEET STAGES "bluegreen: {keep_old: soon}\n",
                 "pipeline.yaml:10:23: keep_old in bluegreen must be a duration, not \"soon\"",
                 NULL);
    assert_error(HEAD FLEET STAGES "bluegreen: {max_lagg: 1s}\n",
                 "pipeline.yaml:10:13: unknown key \"max_lagg\" in bluegreen", NULL);
}
END_TEST

START_TEST(test_store)
{
    assert_error(TOP(NAME, "store: ftp://host/dir\n", KEYS),
                 "pipeline.yaml:3:8: unsupported store URL \"ftp://host/dir\"",
                 "use file://DIR or s3://BUCKET/PREFIX");
    assert_error(TOP(NAME, "store: file://\n", KEYS),
                 "pipeline.yaml:3:8: store URL \"file://\" names no directory", NULL);
    assert_error(TOP(NAME, "store: s3:///prefix\n", KEYS),
                 "pipeline.yaml:3:8: store URL \"s3:///prefix\" names no bucket", NULL);
    assert_error(TOP(NAME, STORE, KEYS) "s3: {region: x}\n",
                 "pipeline.yaml:10:5: s3 settings apply to s3:// stores only", NULL);
    assert_error(TOP(NAME, "store: s3://b\n", KEYS) "s3: {parallel: 65}\n",
                 "pipeline.yaml:10:16: parallel in s3 must be at most 64, not 65", NULL);
    assert_error(TOP(NAME, "store: s3://b\n", KEYS) "s3: {part_size: 6GiB}\n",
                 "pipeline.yaml:10:17: part_size in s3 must be at most 5.0 GiB, not 6GiB", NULL);
    assert_error(TOP(NAME, "store: s3://b\n", KEYS) "s3: {timeout: 2d}\n",
                 "pipeline.yaml:10:15: timeout in s3 must be at most 86400s, not 2d", NULL);
    assert_error(TOP(NAME, "store: s3://b\n", KEYS) "s3: {path_style: 1}\n",
                 "pipeline.yaml:10:18: path_style in s3 must be true or false, not \"1\"", NULL);
}
END_TEST

START_TEST(test_missing)
{
    static const char *const required[][2] = {
        {"version: 1\n", "missing key \"name\""},
        {"version: 1\nname: t\n", "missing key \"store\""},
        {"version: 1\nname: t\nstore: file:///s\n", "missing key \"keys\""},
        {"version: 1\nname: t\nstore: file:///s\nkeys: {key: k}\n", "missing key \"migrations\""},
        {HEAD, "missing key \"fleet\""},
        {HEAD STAGES, "missing key \"fleet\""},
        {HEAD FLEET, "missing key \"stages\""},
    };
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        char *message = sgt_asprintf("pipeline.yaml:1:1: %s", required[i][1]);
        assert_error(required[i][0], message, NULL);
        free(message);
    }
    assert_error("name: t\n", "pipeline.yaml:1:1: missing key \"version\"",
                 "a pipeline file starts with version: 1");
    assert_error(TOP(NAME, STORE, "keys: {recipients: []}\n"),
                 "pipeline.yaml:4:7: missing key \"key\" in keys", NULL);
    assert_error(TOP(NAME, STORE, "keys:\n"), "pipeline.yaml:4:1: missing key \"key\" in keys",
                 NULL);
    assert_error(HEAD "fleet:\n  - {name: a, ring: r}\n" STAGES,
                 "pipeline.yaml:7:5: missing key \"dsn\" in shard \"a\"", NULL);
    assert_error(HEAD "fleet:\n  - {dsn: x, ring: r}\n" STAGES,
                 "pipeline.yaml:7:5: missing key \"name\" in shard #1", NULL);
    assert_error(HEAD "fleet:\n  - name: a\n    dsn: x\n" STAGES,
                 "pipeline.yaml:7:5: missing key \"ring\" in shard \"a\"", NULL);
    assert_error(HEAD FLEET "stages:\n  - {ring: r}\n",
                 "pipeline.yaml:9:5: missing key \"name\" in stage #1", NULL);
    assert_error(HEAD "fleet: []\n" STAGES, "pipeline.yaml:6:8: fleet must list at least one shard",
                 NULL);
    assert_error(HEAD FLEET "stages: []\n",
                 "pipeline.yaml:8:9: stages must list at least one stage", NULL);
}
END_TEST

START_TEST(test_duplicates)
{
    sg_error err = {0};
    sg_pipeline_config cfg;
    assert_error(HEAD FLEET STAGES "name: u\n", "pipeline.yaml:10:1: duplicate key \"name\"", NULL);
    ck_assert_int_eq(load(&cfg, HEAD FLEET STAGES "name: u\n", &err), SG_E_FORMAT);
    ck_assert_str_eq(err.detail, "first at pipeline.yaml:2:1");

    assert_error(HEAD "fleet:\n  - {name: a, dsn: x, ring: r, dsn: y}\n" STAGES,
                 "pipeline.yaml:7:32: duplicate key \"dsn\" in shard \"a\"", NULL);
    assert_error(HEAD "fleet:\n"
                      "  - {name: a, dsn: \"dbname=a\", ring: r}\n"
                      "  - {name: b, dsn: \"dbname=b\", ring: r}\n"
                      "  - {name: a, dsn: \"dbname=c\", ring: r}\n" STAGES,
                 "pipeline.yaml:9:12: duplicate shard name \"a\"", NULL);
    ck_assert_int_eq(load(&cfg,
                          HEAD "fleet:\n"
                               "  - {name: a, dsn: \"dbname=a\", ring: r}\n"
                               "  - {name: a, dsn: \"dbname=b\", ring: r}\n" STAGES,
                          &err),
                     SG_E_FORMAT);
    ck_assert_str_eq(err.message, "pipeline.yaml:8:12: duplicate shard name \"a\"");
    ck_assert_str_eq(err.detail, "first at pipeline.yaml:7:12");

    assert_error(HEAD FLEET "stages:\n  - {name: s, ring: r}\n  - {name: s, shards: [a]}\n",
                 "pipeline.yaml:10:12: duplicate stage name \"s\"", NULL);
}
END_TEST

START_TEST(test_stage_membership)
{
    static const char two[] = HEAD "fleet:\n"
                                   "  - {name: a, dsn: \"dbname=a\", ring: wave}\n"
                                   "  - {name: b, dsn: \"dbname=b\", ring: canary}\n";
    char *text;
    assert_error(HEAD FLEET "stages:\n  - {name: s, ring: x}\n",
                 "pipeline.yaml:9:21: ring \"x\" of stage \"s\" has no shards in the fleet",
                 "rings in the fleet: r");
    text = sgt_asprintf("%sstages:\n  - {name: s, ring: wav}\n", two);
    assert_error(text,
                 "pipeline.yaml:10:21: ring \"wav\" of stage \"s\" has no shards in the fleet",
                 "did you mean \"wave\"? rings in the fleet: wave, canary");
    free(text);
    text = sgt_asprintf("%sstages:\n  - {name: s, ring: wave}\n", two);
    assert_error(text, "pipeline.yaml:8:5: shard \"b\" is in no stage",
                 "add its ring or its name to a stage, or remove it from the fleet");
    free(text);
    assert_error(HEAD FLEET "stages:\n  - {name: s, ring: r}\n  - {name: t, shards: [a]}\n",
                 "pipeline.yaml:10:24: shard \"a\" is in stage \"s\" and in stage \"t\"",
                 "every shard belongs to exactly one stage");
    assert_error(HEAD FLEET "stages:\n  - {name: s, ring: r}\n  - {name: t, ring: r}\n",
                 "pipeline.yaml:10:21: shard \"a\" is in stage \"s\" and in stage \"t\"", NULL);
    assert_error(HEAD FLEET "stages:\n  - {name: s, shards: [a, a]}\n",
                 "pipeline.yaml:9:27: shard \"a\" is listed twice in stage \"s\"", NULL);
    assert_error(HEAD "fleet:\n  - {name: shard-01, dsn: \"dbname=x\", ring: r}\n"
                      "stages:\n  - {name: s, shards: [shard-1]}\n",
                 "pipeline.yaml:9:24: shard \"shard-1\" of stage \"s\" is not in the fleet",
                 "did you mean \"shard-01\"?");
    assert_error(HEAD FLEET "stages:\n  - {name: s, shards: []}\n",
                 "pipeline.yaml:9:23: shards in stage \"s\" must list at least one shard", NULL);
    assert_error(HEAD FLEET "stages:\n  - {name: s, ring: r, shards: [a]}\n",
                 "pipeline.yaml:9:32: stage \"s\" names both a ring and shards",
                 "a stage takes either ring: RING or shards: [SHARD, ...]");
    assert_error(HEAD FLEET "stages:\n  - {name: s, parallel: 2}\n",
                 "pipeline.yaml:9:5: stage \"s\" names neither a ring nor shards",
                 "a stage takes either ring: RING or shards: [SHARD, ...]");
}
END_TEST

START_TEST(test_version)
{
    assert_error("version: 2\nname: t\nunknown: x\n",
                 "pipeline.yaml:1:10: pipeline format 2 is not supported (this shardgate reads 1)",
                 NULL);
    assert_error("name: t\nversion: 0\n",
                 "pipeline.yaml:2:10: pipeline format 0 is not supported (this shardgate reads 1)",
                 NULL);
    assert_error("version: \"1\"\n", "pipeline.yaml:1:10: version must be an integer, not \"1\"",
                 "write numbers and true/false without quotes");
}
END_TEST

START_TEST(test_yaml_errors)
{
    assert_error("version: 1\nkeys:\n  key: k.key\n recipients: []\n",
                 "pipeline.yaml:4:2: invalid indentation in mapping", NULL);
    assert_error("version: 1\nkeys: {key: k.key\nmigrations: m\n",
                 "pipeline.yaml:3:11: missing comma in flow mapping", NULL);
    assert_error("version: 1\nfleet: [{name: a}\n",
                 "pipeline.yaml:3:1: flow sequence without a closing bracket", NULL);
    assert_error("version: 1\nname: \"t\n",
                 "pipeline.yaml:2:8: double-quoted scalar without closing quote", NULL);
    assert_error(HEAD FLEET STAGES "---\nversion: 1\n",
                 "pipeline.yaml:10:1: a pipeline file holds one YAML document, this is a second",
                 NULL);
    assert_error("version: 1\nname: \"a\\0b\"\n",
                 "pipeline.yaml:2:7: a value holds a NUL character", NULL);
}
END_TEST

START_TEST(test_empty_and_missing_files)
{
    sg_pipeline_config cfg;
    sg_error err = {0};
    assert_error("", "pipeline.yaml:1:1: the pipeline file is empty",
                 "a pipeline file starts with version: 1");
    assert_error("# nothing yet\n\n", "pipeline.yaml:1:1: the pipeline file is empty", NULL);
    assert_error("---\n", "pipeline.yaml:1:1: the pipeline file is empty", NULL);
    assert_error("- version: 1\n",
                 "pipeline.yaml:1:1: the pipeline file must be a mapping of settings, not a list",
                 NULL);
    assert_error("version\n",
                 "pipeline.yaml:1:1: the pipeline file must be a mapping of settings, not "
                 "\"version\"",
                 NULL);

    ck_assert_int_eq(sg_pipeline_config_load(&cfg, "nope.yaml", &err), SG_E_IO);
    ck_assert_str_eq(err.message, "cannot read nope.yaml: No such file or directory");
    ck_assert_ptr_null(cfg.file);
    ck_assert_int_eq(mkdir("adir.yaml", 0700), 0);
    ck_assert_int_eq(sg_pipeline_config_load(&cfg, "adir.yaml", &err), SG_E_IO);
    ck_assert_str_eq(err.message, "cannot read adir.yaml: not a regular file");
}
END_TEST

START_TEST(test_relative_paths)
{
    static const char text[] = "version: 1\n"
                               "name: t\n"
                               "store: file://./snapshots/\n"
                               "keys:\n"
                               "  key: keys/runner.key\n"
                               "  recipients: [./dr.pub, /etc/keys/offline.pub, ../up.pub]\n"
                               "  trust: [.//keys//runner.pub]\n"
                               "migrations: migrations/\n" FLEET STAGES;
    sg_pipeline_config cfg;
    sg_error err = {0};
    char *base, *url;
    int rc;
    ck_assert_int_eq(mkdir("sub", 0700), 0);
    write_file("sub/pipeline.yaml", text);
    rc = sg_pipeline_config_load(&cfg, "sub/pipeline.yaml", &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    base = real_dir("sub");
    url = sgt_asprintf("file://%s/snapshots", base);
    ck_assert_str_eq(cfg.file, "sub/pipeline.yaml");
    ck_assert_str_eq(cfg.store.url, url);
    assert_path(cfg.key_path, base, "keys/runner.key");
    assert_path(cfg.recipients.items[0], base, "dr.pub");
    ck_assert_str_eq(cfg.recipients.items[1], "/etc/keys/offline.pub");
    assert_path(cfg.recipients.items[2], base, "../up.pub");
    assert_path(cfg.trust.items[0], base, "keys//runner.pub");
    assert_path(cfg.migrations, base, "migrations");
    sg_pipeline_config_clear(&cfg);
    free(url);

    /* From the file's own directory, and by an absolute name. */
    ck_assert_int_eq(chdir("sub"), 0);
    rc = sg_pipeline_config_load(&cfg, "pipeline.yaml", &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    assert_path(cfg.key_path, base, "keys/runner.key");
    sg_pipeline_config_clear(&cfg);
    url = sgt_asprintf("%s/pipeline.yaml", base);
    rc = sg_pipeline_config_load(&cfg, url, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    assert_path(cfg.migrations, base, "migrations");
    sg_pipeline_config_clear(&cfg);
    free(url);
    free(base);

    /* The parse entry point takes the base directory as given. */
    rc = sg_pipeline_config_parse(&cfg, text, strlen(text), "x.yaml", "/", &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    ck_assert_str_eq(cfg.store.url, "file:///snapshots");
    ck_assert_str_eq(cfg.key_path, "/keys/runner.key");
    sg_pipeline_config_clear(&cfg);
}
END_TEST

/* A fleet of names in two stages: c alone, then the rest by ring. */
static char *partition_text(const char *const *names, size_t n)
{
    char *fleet = sgt_asprintf("fleet:\n"), *text;
    for (size_t i = 0; i < n; i++) {
        char *more = sgt_asprintf("%s  - {name: %s, dsn: \"dbname=%s\", ring: %s}\n", fleet,
                                  names[i], names[i], strcmp(names[i], "c") == 0 ? "one" : "two");
        free(fleet);
        fleet = more;
    }
    text = sgt_asprintf(HEAD "%sstages:\n  - {name: first, shards: [c]}\n"
                             "  - {name: rest, ring: two}\n",
                        fleet);
    free(fleet);
    return text;
}

/* The partition (1-based) each shard name falls in, for n partitions. */
static void partitions_of(unsigned *out, const char *const *names, size_t count, unsigned n)
{
    sg_pipeline_config cfg;
    sg_error err = {0};
    char *text = partition_text(names, count);
    bool selected[16];
    int rc = load(&cfg, text, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    memset(out, 0, count * sizeof(*out));
    for (unsigned k = 1; k <= n; k++) {
        memset(selected, 0, sizeof(selected));
        ck_assert_int_eq(sg_pipeline_partition(selected, &cfg, k, n, &err), 0);
        for (size_t i = 0; i < count; i++) {
            if (selected[i]) {
                ck_assert_msg(out[i] == 0, "%s in partitions %u and %u", names[i], out[i], k);
                out[i] = k;
            }
        }
    }
    for (size_t i = 0; i < count; i++)
        ck_assert_msg(out[i] != 0, "%s in no partition", names[i]);
    sg_pipeline_config_clear(&cfg);
    free(text);
}

START_TEST(test_partitions)
{
    static const char *const names[] = {"g", "b", "c", "a", "f", "e", "d", "h"};
    static const char *const reordered[] = {"d", "h", "a", "c", "b", "g", "e", "f"};
    /* c (first stage) is dealt first; then a, b, d, e, f, g, h in turn. */
    static const unsigned expected[] = {/* g */ 1, /* b */ 3, /* c */ 1, /* a */ 2,
                                        /* f */ 3, /* e */ 2, /* d */ 1, /* h */ 2};
    unsigned got[8], again[8], sizes[4];
    sg_pipeline_config cfg;
    sg_error err = {0};
    bool selected[8];
    char *text;

    partitions_of(got, names, 8, 3);
    for (size_t i = 0; i < 8; i++)
        ck_assert_msg(got[i] == expected[i], "%s in %u, expected %u", names[i], got[i],
                      expected[i]);
    /* Reordering the fleet changes nothing. */
    partitions_of(again, reordered, 8, 3);
    for (size_t i = 0; i < 8; i++)
        for (size_t j = 0; j < 8; j++)
            if (strcmp(names[i], reordered[j]) == 0)
                ck_assert_uint_eq(got[i], again[j]);
    /* Sizes differ by at most one, for every n. */
    for (unsigned n = 1; n <= 4; n++) {
        partitions_of(got, names, 8, n);
        memset(sizes, 0, sizeof(sizes));
        for (size_t i = 0; i < 8; i++)
            sizes[got[i] - 1]++;
        for (unsigned k = 0; k < n; k++)
            ck_assert_msg(sizes[k] == 8 / n || sizes[k] == 8 / n + 1, "n %u: partition %u has %u",
                          n, k + 1, sizes[k]);
    }

    text = partition_text(names, 8);
    ck_assert_int_eq(load(&cfg, text, &err), 0);
    ck_assert_int_eq(sg_pipeline_partition(selected, &cfg, 0, 3, &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "invalid partition 0/3");
    ck_assert_str_eq(err.hint, "partitions are numbered from 1 to N, as in 2/4");
    ck_assert_int_eq(sg_pipeline_partition(selected, &cfg, 4, 3, &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "invalid partition 4/3");
    ck_assert_int_eq(sg_pipeline_partition(selected, &cfg, 1, 0, &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "invalid partition 1/0");
    sg_pipeline_config_clear(&cfg);
    free(text);
}
END_TEST

/* Every allocation of ours fails in turn: each failure is SG_E_NOMEM and
 * leaves nothing behind (the sanitizer's leak check), until one succeeds. */
static void fail_each_allocation(const char *path)
{
    sg_pipeline_config cfg;
    long n;
    for (n = 0;; n++) {
        sg_error err = {0};
        int rc;
        sg_mem_fail_after(n);
        rc = sg_pipeline_config_load(&cfg, path, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_msg(rc == SG_E_NOMEM, "allocation %ld: rc %d, %s", n, rc, err.message);
        ck_assert_msg(strncmp(err.message, "out of memory", 13) == 0, "allocation %ld: %s", n,
                      err.message);
        ck_assert_ptr_null(cfg.file);
    }
    ck_assert_int_gt(n, 20);
    sg_pipeline_config_clear(&cfg);
}

START_TEST(test_allocation_failures)
{
    const char *source = getenv("SG_SOURCE_DIR");
    char *path;
    ck_assert_msg(source != NULL, "SG_SOURCE_DIR is not set (ctest sets it)");
    path = sgt_asprintf("%s/examples/pipeline.yaml", source);
    fail_each_allocation(path);
    free(path);

    write_file("s3.yaml", "version: 1\nname: t\nstore: s3://b/p\n"
                          "s3: {endpoint: e, region: r, ca_file: ca.pem}\n"
                          "keys: {key: k, recipients: [a.pub, b.pub], trust: [c.pub]}\n"
                          "sandbox: {driver: docker, image: i, memory: 1g, cpus: 2}\n"
                          "migrations: m\n"
                          "fleet:\n"
                          "  - {name: a, dsn: &d \"dbname=a\", ring: &r r}\n"
                          "  - {name: b, dsn: *d, ring: *r}\n"
                          "  - {name: c, dsn: \"dbname=c\", ring: q}\n"
                          "stages:\n"
                          "  - {name: s, shards: [c, b]}\n"
                          "  - {name: t, ring: r, shards: [a]}\n"
                          "policy: {on_failure: halt}\n");
    /* The file is wrong at its end: allocations on the way there fail as
     * NOMEM, and the last outcome is the format error. */
    {
        sg_pipeline_config cfg;
        long n;
        for (n = 0;; n++) {
            sg_error err = {0};
            int rc;
            sg_mem_fail_after(n);
            rc = sg_pipeline_config_load(&cfg, "s3.yaml", &err);
            sg_mem_fail_reset();
            if (rc != SG_E_NOMEM) {
                ck_assert_int_eq(rc, SG_E_FORMAT);
                ck_assert_str_eq(err.message,
                                 "s3.yaml:14:32: stage \"t\" names both a ring and shards");
                break;
            }
        }
        ck_assert_int_gt(n, 30);
    }
}
END_TEST

static Suite *config_suite(void)
{
    Suite *suite = suite_create("config");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"example", test_example},
        {"defaults", test_defaults},
        {"everything", test_everything},
        {"aliases", test_aliases},
        {"unknown_keys", test_unknown_keys},
        {"secrets", test_secrets},
        {"wrong_types", test_wrong_types},
        {"bluegreen", test_bluegreen},
        {"store", test_store},
        {"missing", test_missing},
        {"duplicates", test_duplicates},
        {"stage_membership", test_stage_membership},
        {"version", test_version},
        {"yaml_errors", test_yaml_errors},
        {"empty_and_missing_files", test_empty_and_missing_files},
        {"relative_paths", test_relative_paths},
        {"partitions", test_partitions},
        {"allocation_failures", test_allocation_failures},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, make_dir, remove_dir);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(suite, tc);
    }
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
