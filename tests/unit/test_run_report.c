/* The report files of a pipeline run, from journals driven in memory
 * through the transitions the runner makes (everything passes; a shard
 * fails its test restore; a failure rolls a stage back; blue-green changes
 * cut over and swap back), pinned line by line; the HTML page, parsed as XML, its timeline's bars
 * read back; the same files from the journal read back from its JSON; an unwritable destination;
 * allocation failures. Escaping is test_report_text's: shard and pipeline names cannot hold what
 * needs it; the HTML page's failure messages are checked escaped. */
#include <check.h>
#include <dirent.h>
#include <expat.h>
#include <sys/stat.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/mem.h"
#include "pipeline/config.h"
#include "pipeline/journal.h"
#include "pipeline/report.h"
#include "stages/migration.h"
#include "tests/harness/run.h"

#define HASH "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define RUN_ID "20261125T020000Z-1a2b3c4d"
#define SNAPSHOT_ID "20261125T020001Z-0123456789abcdef"
/* Every sample's first labels. */
#define RUN "pipeline=\"nightly\",run_id=\"" RUN_ID "\""

static const char pipeline_yaml[] = "version: 1\n"
                                    "name: nightly\n"
                                    "store: file:///tmp/store\n"
                                    "keys: {key: runner.key}\n"
                                    "migrations: migrations\n"
                                    "fleet:\n"
                                    "  - {name: eu-1, dsn: \"dbname=eu1\", ring: canary}\n"
                                    "  - {name: eu-2, dsn: \"dbname=eu2\", ring: wave}\n"
                                    "  - {name: us-1, dsn: \"dbname=us1\", ring: wave}\n"
                                    "stages:\n"
                                    "  - {name: canary, ring: canary}\n"
                                    "  - {name: wave, ring: wave, parallel: 2}\n";

static char dir[] = "/tmp/sgt-run-report-XXXXXX";
static sg_pipeline_config cfg;

static void assert_contains(const char *text, const char *needle)
{
    ck_assert_msg(strstr(text, needle) != NULL, "\"%s\" not in:\n%s", needle, text);
}

/* Whole files compared, the first difference shown: Check cannot carry
 * both files in one message. */
static void assert_text_eq(const char *text, const char *expected)
{
    size_t at = 0, line = 1, from;
    while (text[at] && text[at] == expected[at])
        line += text[at++] == '\n';
    if (!text[at] && !expected[at])
        return;
    from = at > 40 ? at - 40 : 0;
    ck_abort_msg("differs at line %zu:\n  got      ...%.120s\n  expected ...%.120s", line,
                 text + from, expected + from);
}

static void assert_lacks(const char *text, const char *needle)
{
    ck_assert_msg(strstr(text, needle) == NULL, "\"%s\" in:\n%s", needle, text);
}

static sg_journal *new_journal(const bool *selected)
{
    sg_journal *j = NULL;
    sg_error err = {0};
    ck_assert_msg(sg_journal_new(&j, RUN_ID, &cfg, HASH, 0, 0, selected, &err) == 0, "%s",
                  err.message);
    return j;
}

/* One shard's way through its gates, as the runner's hooks record it. */
typedef struct shard_run {
    const char *name;
    double seconds[SG_GATE_COUNT];
    int fail_gate; /* -1: none */
    int code;
    const char *message;
    uint64_t bytes;
    int64_t from, to;
} shard_run;

static void drive(sg_journal *j, const shard_run *r)
{
    long i = sg_journal_shard_find(j, r->name);
    sg_shard_outcome out;
    memset(&out, 0, sizeof(out));
    ck_assert_int_ge(i, 0);
    for (int g = 0; g < SG_GATE_COUNT; g++) {
        sg_gate_record rec = {0};
        sg_journal_gate(j, (size_t)i, (sg_gate)g, &rec);
        rec.ran = true;
        rec.seconds = r->seconds[g];
        if (g == r->fail_gate) {
            rec.rc = r->code;
            snprintf(rec.message, sizeof(rec.message), "%s", r->message);
        } else if (g == SG_GATE_SNAPSHOT) {
            snprintf(out.snapshot_id, sizeof(out.snapshot_id), "%s", SNAPSHOT_ID);
            out.snapshot_bytes = r->bytes;
        }
        if (g == SG_GATE_APPLY) {
            out.from_version = r->from;
            out.to_version = r->to;
        }
        sg_journal_gate(j, (size_t)i, (sg_gate)g, &rec);
        sg_journal_shard_outcome(j, (size_t)i, &out);
        if (rec.rc)
            return;
    }
    sg_journal_shard_state(j, (size_t)i, SG_SHARD_DONE);
}

static const shard_run eu1 = {"eu-1", {61, 120.5, 2.25, 0.9}, -1, 0, NULL, 5368709120, 3, 7};
static const shard_run eu2 = {"eu-2", {10, 20, 1, 0.5}, -1, 0, NULL, 1048576, 3, 7};
static const shard_run us1 = {"us-1", {12, 30.125, 1.5, 0.75}, -1, 0, NULL, 2097152, 3, 7};

/* Stage times are the clock's: pinned so the files can be. */
static void pin_times(sg_journal *j)
{
    for (size_t s = 0; s < j->nstages; s++)
        if (j->stages[s].started_at[0])
            snprintf(j->stages[s].started_at, sizeof(j->stages[s].started_at),
                     "2026-11-25T02:0%zu:00Z", s);
}

/* Every shard through: the canary, then the wave. */
static sg_journal *passed_run(void)
{
    sg_journal *j = new_journal(NULL);
    sg_journal_stage_state(j, 0, SG_STAGE_RUNNING);
    drive(j, &eu1);
    sg_journal_stage_state(j, 0, SG_STAGE_DONE);
    sg_journal_stage_state(j, 1, SG_STAGE_RUNNING);
    drive(j, &eu2);
    drive(j, &us1);
    sg_journal_stage_state(j, 1, SG_STAGE_DONE);
    sg_journal_run_status(j, SG_RUN_DONE);
    pin_times(j);
    return j;
}

#define FAILURE_MESSAGE                                                                            \
    "eu-2: test-restore: table \"public\".\"orders\" has 10 rows, the manifest <12> & 'more'"

/* eu-2 fails its test restore with message; the wave is over its budget
 * and the run halts with us-1 never started. */
static sg_journal *failed_run_with(const char *message)
{
    shard_run bad = eu2;
    sg_journal *j = new_journal(NULL);
    bad.fail_gate = SG_GATE_TEST_RESTORE;
    bad.code = SG_E_MISMATCH;
    bad.message = message;
    sg_journal_stage_state(j, 0, SG_STAGE_RUNNING);
    drive(j, &eu1);
    sg_journal_stage_state(j, 0, SG_STAGE_DONE);
    sg_journal_stage_state(j, 1, SG_STAGE_RUNNING);
    drive(j, &bad);
    sg_journal_stage_state(j, 1, SG_STAGE_FAILED);
    sg_journal_run_status(j, SG_RUN_HALTED);
    pin_times(j);
    return j;
}

static sg_journal *failed_run(void)
{
    return failed_run_with(FAILURE_MESSAGE);
}

/* us-1 fails its verify after its apply; rollback-stage reverts both
 * shards of the wave, the canary stays done. */
static sg_journal *rolled_back_run(void)
{
    shard_run bad = us1;
    sg_journal *j = new_journal(NULL);
    bad.fail_gate = SG_GATE_VERIFY;
    bad.code = SG_E_MISMATCH;
    bad.message = "us-1: verify: schema fingerprint differs from the rehearsal's";
    sg_journal_stage_state(j, 0, SG_STAGE_RUNNING);
    drive(j, &eu1);
    sg_journal_stage_state(j, 0, SG_STAGE_DONE);
    sg_journal_stage_state(j, 1, SG_STAGE_RUNNING);
    drive(j, &eu2);
    drive(j, &bad);
    sg_journal_stage_state(j, 1, SG_STAGE_FAILED);
    sg_journal_shard_state(j, (size_t)sg_journal_shard_find(j, "us-1"), SG_SHARD_ROLLED_BACK);
    sg_journal_shard_state(j, (size_t)sg_journal_shard_find(j, "eu-2"), SG_SHARD_ROLLED_BACK);
    sg_journal_stage_state(j, 1, SG_STAGE_ROLLED_BACK);
    sg_journal_run_status(j, SG_RUN_ROLLED_BACK);
    pin_times(j);
    return j;
}

static void bluegreen_step(sg_journal *j, const char *shard, int64_t version, const char *step,
                           double lock_ms, const char *at)
{
    long i = sg_journal_shard_find(j, shard);
    sg_journal_shard *s;
    sg_error err = {0};
    ck_assert_int_ge(i, 0);
    ck_assert_msg(sg_journal_bluegreen_step(j, (size_t)i, version, step, lock_ms, &err) == 0, "%s",
                  err.message);
    s = &j->shards[i];
    snprintf(s->bluegreen[s->nbluegreen - 1].at, SG_JOURNAL_TIME_MAX, "%s", at);
}

/* Every shard through, migration 7 blue-green: eu-1 cut over; us-1 cut
 * over, then a failed verify swapped the old table back (the shard was
 * retried and passed); eu-2's steps were not recorded. */
static sg_journal *bluegreen_run(void)
{
    static const char *const before[] = {"prepared", "synced", "backfilled", "indexed", "verified"};
    sg_journal *j = passed_run();
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++)
        bluegreen_step(j, "eu-1", 7, before[i], -1, "2026-11-25T02:03:01Z");
    bluegreen_step(j, "eu-1", 7, "cut-over", 12.5, "2026-11-25T02:03:02Z");
    bluegreen_step(j, "us-1", 7, "cut-over", 40.25, "2026-11-25T02:05:00Z");
    bluegreen_step(j, "us-1", 7, "swapped-back", 3, "2026-11-25T02:05:01Z");
    return j;
}

static char *write_metrics(const sg_journal *j, const char *name)
{
    char *path = sgt_asprintf("%s/%s", dir, name), *text;
    sg_error err = {0};
    ck_assert_msg(sg_run_write_metrics(j, path, &err) == 0, "%s", err.message);
    text = sgt_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    free(path);
    return text;
}

static char *write_junit(const sg_journal *j, const char *name)
{
    char *path = sgt_asprintf("%s/%s", dir, name), *text;
    sg_error err = {0};
    ck_assert_msg(sg_run_write_junit(j, path, &err) == 0, "%s", err.message);
    text = sgt_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    free(path);
    return text;
}

/* ---- metrics ---- */

START_TEST(test_metrics_passed)
{
    sg_journal *j = passed_run();
    char *text = write_metrics(j, "passed.prom");
    assert_text_eq(
        text,
        "# HELP shardgate_run_status Status of the run: 1 for the one it is in (running, done, "
        "failed, halted, rolled-back), 0 for the others.\n"
        "# TYPE shardgate_run_status gauge\n"
        "shardgate_run_status{" RUN ",status=\"running\"} 0\n"
        "shardgate_run_status{" RUN ",status=\"done\"} 1\n"
        "shardgate_run_status{" RUN ",status=\"failed\"} 0\n"
        "shardgate_run_status{" RUN ",status=\"halted\"} 0\n"
        "shardgate_run_status{" RUN ",status=\"rolled-back\"} 0\n"
        "# HELP shardgate_run_shard_success Whether the shard went through every gate of the "
        "run (1) or not (0).\n"
        "# TYPE shardgate_run_shard_success gauge\n"
        "shardgate_run_shard_success{" RUN ",shard=\"eu-1\"} 1\n"
        "shardgate_run_shard_success{" RUN ",shard=\"eu-2\"} 1\n"
        "shardgate_run_shard_success{" RUN ",shard=\"us-1\"} 1\n"
        "# HELP shardgate_run_gate_seconds Seconds the gate took for the shard, for each gate "
        "that ran.\n"
        "# TYPE shardgate_run_gate_seconds gauge\n"
        "shardgate_run_gate_seconds{" RUN ",shard=\"eu-1\",gate=\"snapshot\"} 61.000\n"
        "shardgate_run_gate_seconds{" RUN ",shard=\"eu-1\",gate=\"test-restore\"} 120.500\n"
        "shardgate_run_gate_seconds{" RUN ",shard=\"eu-1\",gate=\"apply\"} 2.250\n"
        "shardgate_run_gate_seconds{" RUN ",shard=\"eu-1\",gate=\"verify\"} 0.900\n"
        "shardgate_run_gate_seconds{" RUN ",shard=\"eu-2\",gate=\"snapshot\"} 10.000\n"
        "shardgate_run_gate_seconds{" RUN ",shard=\"eu-2\",gate=\"test-restore\"} 20.000\n"
        "shardgate_run_gate_seconds{" RUN ",shard=\"eu-2\",gate=\"apply\"} 1.000\n"
        "shardgate_run_gate_seconds{" RUN ",shard=\"eu-2\",gate=\"verify\"} 0.500\n"
        "shardgate_run_gate_seconds{" RUN ",shard=\"us-1\",gate=\"snapshot\"} 12.000\n"
        "shardgate_run_gate_seconds{" RUN ",shard=\"us-1\",gate=\"test-restore\"} 30.125\n"
        "shardgate_run_gate_seconds{" RUN ",shard=\"us-1\",gate=\"apply\"} 1.500\n"
        "shardgate_run_gate_seconds{" RUN ",shard=\"us-1\",gate=\"verify\"} 0.750\n"
        "# HELP shardgate_run_snapshot_bytes Bytes stored for the snapshot the run took of the "
        "shard.\n"
        "# TYPE shardgate_run_snapshot_bytes gauge\n"
        "shardgate_run_snapshot_bytes{" RUN ",shard=\"eu-1\"} 5368709120\n"
        "shardgate_run_snapshot_bytes{" RUN ",shard=\"eu-2\"} 1048576\n"
        "shardgate_run_snapshot_bytes{" RUN ",shard=\"us-1\"} 2097152\n"
        "# HELP shardgate_run_restore_seconds Seconds the shard's test restore took (read back, "
        "verify, restore, rehearse), when it passed.\n"
        "# TYPE shardgate_run_restore_seconds gauge\n"
        "shardgate_run_restore_seconds{" RUN ",shard=\"eu-1\"} 120.500\n"
        "shardgate_run_restore_seconds{" RUN ",shard=\"eu-2\"} 20.000\n"
        "shardgate_run_restore_seconds{" RUN ",shard=\"us-1\"} 30.125\n"
        "# HELP shardgate_run_schema_version Schema version (the latest migration applied) the "
        "run left the shard at, once its apply gate ran.\n"
        "# TYPE shardgate_run_schema_version gauge\n"
        "shardgate_run_schema_version{" RUN ",shard=\"eu-1\"} 7\n"
        "shardgate_run_schema_version{" RUN ",shard=\"eu-2\"} 7\n"
        "shardgate_run_schema_version{" RUN ",shard=\"us-1\"} 7\n");
    free(text);
    sg_journal_free(j);
}
END_TEST

/* The failed shard has the gates it ran, its snapshot, and no restore time
 * (it did not pass) or version (it never reached the apply); the shard never
 * started has only its failure. */
START_TEST(test_metrics_failed)
{
    sg_journal *j = failed_run();
    char *text = write_metrics(j, "failed.prom");
    assert_contains(text, "shardgate_run_status{" RUN ",status=\"halted\"} 1\n");
    assert_contains(text, "shardgate_run_status{" RUN ",status=\"done\"} 0\n");
    assert_contains(text, "shardgate_run_shard_success{" RUN ",shard=\"eu-1\"} 1\n"
                          "shardgate_run_shard_success{" RUN ",shard=\"eu-2\"} 0\n"
                          "shardgate_run_shard_success{" RUN ",shard=\"us-1\"} 0\n");
    assert_contains(
        text, "shardgate_run_gate_seconds{" RUN ",shard=\"eu-1\",gate=\"verify\"} 0.900\n"
              "shardgate_run_gate_seconds{" RUN ",shard=\"eu-2\",gate=\"snapshot\"} 10.000\n"
              "shardgate_run_gate_seconds{" RUN ",shard=\"eu-2\",gate=\"test-restore\"} 20.000\n"
              "# HELP shardgate_run_snapshot_bytes ");
    assert_contains(text, "shardgate_run_snapshot_bytes{" RUN ",shard=\"eu-2\"} 1048576\n"
                          "# HELP shardgate_run_restore_seconds ");
    assert_contains(text, "# TYPE shardgate_run_restore_seconds gauge\n"
                          "shardgate_run_restore_seconds{" RUN ",shard=\"eu-1\"} 120.500\n"
                          "# HELP shardgate_run_schema_version ");
    assert_contains(text, "# TYPE shardgate_run_schema_version gauge\n"
                          "shardgate_run_schema_version{" RUN ",shard=\"eu-1\"} 7\n");
    assert_lacks(text, "shard=\"us-1\",gate=");
    assert_lacks(text, "shardgate_run_snapshot_bytes{" RUN ",shard=\"us-1\"}");
    ck_assert_int_eq(text[strlen(text) - 1], '\n');
    ck_assert_ptr_eq(strstr(text, "shardgate_run_schema_version{" RUN ",shard=\"eu-1\"} 7\n") +
                         strlen("shardgate_run_schema_version{" RUN ",shard=\"eu-1\"} 7\n"),
                     text + strlen(text));
    free(text);
    sg_journal_free(j);
}
END_TEST

/* Rolled back: not a success, and back at the version before the run,
 * whether the shard passed (eu-2) or failed (us-1). */
START_TEST(test_metrics_rolled_back)
{
    sg_journal *j = rolled_back_run();
    char *text = write_metrics(j, "rolled-back.prom");
    assert_contains(text, "shardgate_run_status{" RUN ",status=\"rolled-back\"} 1\n");
    assert_contains(text, "shardgate_run_status{" RUN ",status=\"failed\"} 0\n");
    assert_contains(text, "shardgate_run_shard_success{" RUN ",shard=\"eu-1\"} 1\n"
                          "shardgate_run_shard_success{" RUN ",shard=\"eu-2\"} 0\n"
                          "shardgate_run_shard_success{" RUN ",shard=\"us-1\"} 0\n");
    assert_contains(text, "shardgate_run_gate_seconds{" RUN ",shard=\"us-1\",gate=\"verify\"} "
                          "0.750\n");
    assert_contains(text, "shardgate_run_restore_seconds{" RUN ",shard=\"us-1\"} 30.125\n");
    assert_contains(text, "shardgate_run_schema_version{" RUN ",shard=\"eu-1\"} 7\n"
                          "shardgate_run_schema_version{" RUN ",shard=\"eu-2\"} 3\n"
                          "shardgate_run_schema_version{" RUN ",shard=\"us-1\"} 3\n");
    free(text);
    sg_journal_free(j);
}
END_TEST

/* The cut-overs' locks, per shard and version, after the other families;
 * a swap back is not a cut-over. A run without any has no such family
 * (test_metrics_passed pins its whole file). */
START_TEST(test_metrics_bluegreen)
{
    static const char tail[] =
        "shardgate_run_schema_version{" RUN ",shard=\"us-1\"} 7\n"
        "# HELP shardgate_run_bluegreen_lock_seconds Seconds the blue-green cut-over of the "
        "version held the table's lock on the shard.\n"
        "# TYPE shardgate_run_bluegreen_lock_seconds gauge\n"
        "shardgate_run_bluegreen_lock_seconds{" RUN ",shard=\"eu-1\",version=\"7\"} 0.012500\n"
        "shardgate_run_bluegreen_lock_seconds{" RUN ",shard=\"us-1\",version=\"7\"} 0.040250\n";
    sg_journal *j = bluegreen_run();
    char *text = write_metrics(j, "bluegreen.prom");
    ck_assert_uint_gt(strlen(text), strlen(tail));
    ck_assert_str_eq(text + strlen(text) - strlen(tail), tail);
    free(text);
    sg_journal_free(j);
}
END_TEST

/* ---- JUnit ---- */

START_TEST(test_junit_passed)
{
    sg_journal *j = passed_run();
    char *text = write_junit(j, "passed.xml");
    assert_text_eq(
        text,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<testsuites name=\"shardgate run " RUN_ID " of nightly\" tests=\"12\" failures=\"0\" "
        "errors=\"0\" skipped=\"0\" time=\"260.525\">\n"
        "  <testsuite name=\"canary\" tests=\"4\" failures=\"0\" errors=\"0\" skipped=\"0\" "
        "time=\"184.650\" timestamp=\"2026-11-25T02:00:00Z\">\n"
        "    <testcase classname=\"shardgate.run.canary\" name=\"eu-1: snapshot\" "
        "time=\"61.000\"/>\n"
        "    <testcase classname=\"shardgate.run.canary\" name=\"eu-1: test-restore\" "
        "time=\"120.500\"/>\n"
        "    <testcase classname=\"shardgate.run.canary\" name=\"eu-1: apply\" time=\"2.250\"/>\n"
        "    <testcase classname=\"shardgate.run.canary\" name=\"eu-1: verify\" time=\"0.900\"/>\n"
        "  </testsuite>\n"
        "  <testsuite name=\"wave\" tests=\"8\" failures=\"0\" errors=\"0\" skipped=\"0\" "
        "time=\"75.875\" timestamp=\"2026-11-25T02:01:00Z\">\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"eu-2: snapshot\" "
        "time=\"10.000\"/>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"eu-2: test-restore\" "
        "time=\"20.000\"/>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"eu-2: apply\" time=\"1.000\"/>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"eu-2: verify\" time=\"0.500\"/>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"us-1: snapshot\" "
        "time=\"12.000\"/>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"us-1: test-restore\" "
        "time=\"30.125\"/>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"us-1: apply\" time=\"1.500\"/>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"us-1: verify\" time=\"0.750\"/>\n"
        "  </testsuite>\n"
        "</testsuites>\n");
    free(text);
    sg_journal_free(j);
}
END_TEST

START_TEST(test_junit_failed)
{
    sg_journal *j = failed_run();
    char *text = write_junit(j, "failed.xml");
    assert_text_eq(
        text,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<testsuites name=\"shardgate run " RUN_ID " of nightly\" tests=\"12\" failures=\"1\" "
        "errors=\"0\" skipped=\"6\" time=\"214.650\">\n"
        "  <testsuite name=\"canary\" tests=\"4\" failures=\"0\" errors=\"0\" skipped=\"0\" "
        "time=\"184.650\" timestamp=\"2026-11-25T02:00:00Z\">\n"
        "    <testcase classname=\"shardgate.run.canary\" name=\"eu-1: snapshot\" "
        "time=\"61.000\"/>\n"
        "    <testcase classname=\"shardgate.run.canary\" name=\"eu-1: test-restore\" "
        "time=\"120.500\"/>\n"
        "    <testcase classname=\"shardgate.run.canary\" name=\"eu-1: apply\" time=\"2.250\"/>\n"
        "    <testcase classname=\"shardgate.run.canary\" name=\"eu-1: verify\" time=\"0.900\"/>\n"
        "  </testsuite>\n"
        "  <testsuite name=\"wave\" tests=\"8\" failures=\"1\" errors=\"0\" skipped=\"6\" "
        "time=\"30.000\" timestamp=\"2026-11-25T02:01:00Z\">\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"eu-2: snapshot\" "
        "time=\"10.000\"/>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"eu-2: test-restore\" "
        "time=\"20.000\">\n"
        "      <failure type=\"verification mismatch\" message=\"eu-2: test-restore: table "
        "&quot;public&quot;.&quot;orders&quot; has 10 rows, the manifest &lt;12&gt; &amp; "
        "&apos;more&apos;\">eu-2: test-restore: table &quot;public&quot;.&quot;orders&quot; "
        "has 10 rows, the manifest &lt;12&gt; &amp; &apos;more&apos;</failure>\n"
        "    </testcase>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"eu-2: apply\" time=\"0.000\">\n"
        "      <skipped message=\"not reached: test-restore failed\"/>\n"
        "    </testcase>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"eu-2: verify\" time=\"0.000\">\n"
        "      <skipped message=\"not reached: test-restore failed\"/>\n"
        "    </testcase>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"us-1: snapshot\" "
        "time=\"0.000\">\n"
        "      <skipped message=\"not run\"/>\n"
        "    </testcase>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"us-1: test-restore\" "
        "time=\"0.000\">\n"
        "      <skipped message=\"not run\"/>\n"
        "    </testcase>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"us-1: apply\" time=\"0.000\">\n"
        "      <skipped message=\"not run\"/>\n"
        "    </testcase>\n"
        "    <testcase classname=\"shardgate.run.wave\" name=\"us-1: verify\" time=\"0.000\">\n"
        "      <skipped message=\"not run\"/>\n"
        "    </testcase>\n"
        "  </testsuite>\n"
        "</testsuites>\n");
    free(text);
    sg_journal_free(j);
}
END_TEST

/* The failure is kept once the shard is rolled back; the shard that passed
 * its gates passed them. */
START_TEST(test_junit_rolled_back)
{
    sg_journal *j = rolled_back_run();
    char *text = write_junit(j, "rolled-back.xml");
    assert_contains(text, "tests=\"12\" failures=\"1\" errors=\"0\" skipped=\"0\"");
    assert_contains(text, "    <testcase classname=\"shardgate.run.wave\" name=\"eu-2: verify\" "
                          "time=\"0.500\"/>\n");
    assert_contains(text, "    <testcase classname=\"shardgate.run.wave\" name=\"us-1: apply\" "
                          "time=\"1.500\"/>\n"
                          "    <testcase classname=\"shardgate.run.wave\" name=\"us-1: verify\" "
                          "time=\"0.750\">\n"
                          "      <failure type=\"verification mismatch\" message=\"us-1: verify: "
                          "schema fingerprint differs from the rehearsal&apos;s\">");
    free(text);
    sg_journal_free(j);
}
END_TEST

/* A partition without the wave's shards: the wave is an empty suite, never
 * started, so without a timestamp. */
START_TEST(test_junit_empty_stage)
{
    static const bool canary_only[] = {true, false, false};
    sg_journal *j = new_journal(canary_only);
    char *text;
    sg_journal_stage_state(j, 0, SG_STAGE_RUNNING);
    drive(j, &eu1);
    sg_journal_stage_state(j, 0, SG_STAGE_DONE);
    pin_times(j);
    text = write_junit(j, "partition.xml");
    assert_contains(text, "tests=\"4\" failures=\"0\" errors=\"0\" skipped=\"0\" "
                          "time=\"184.650\">\n");
    assert_contains(text, "    <testcase classname=\"shardgate.run.canary\" name=\"eu-1: verify\" "
                          "time=\"0.900\"/>\n"
                          "  </testsuite>\n"
                          "  <testsuite name=\"wave\" tests=\"0\" failures=\"0\" errors=\"0\" "
                          "skipped=\"0\" time=\"0.000\">\n"
                          "  </testsuite>\n"
                          "</testsuites>\n");
    free(text);
    sg_journal_free(j);
}
END_TEST

/* A gate that started and has no result (the runner was killed in it). */
START_TEST(test_junit_unfinished)
{
    sg_journal *j = new_journal(NULL);
    sg_gate_record rec = {0};
    char *text;
    sg_journal_gate(j, 0, SG_GATE_SNAPSHOT, &rec);
    text = write_junit(j, "unfinished.xml");
    assert_contains(text, "name=\"eu-1: snapshot\" time=\"0.000\">\n"
                          "      <skipped message=\"did not finish\"/>\n");
    assert_contains(text, "name=\"eu-1: test-restore\" time=\"0.000\">\n"
                          "      <skipped message=\"not run\"/>\n");
    free(text);
    sg_journal_free(j);
}
END_TEST

/* ---- HTML ---- */

/* 2026-11-25T02:00:00Z, when the journals' runs start. */
#define RUN_START ((time_t)1795572000)
/* The names' column (170 px) and the timeline's 780 px. */
#define LABEL_W 170

static char *write_html(const sg_journal *j, const sg_migration_set *set, const char *name)
{
    char *path = sgt_asprintf("%s/%s", dir, name), *text;
    sg_error err = {0};
    ck_assert_msg(sg_run_write_html(j, set, path, &err) == 0, "%s", err.message);
    text = sgt_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    free(path);
    return text;
}

static void time_text(char out[SG_JOURNAL_TIME_MAX], long seconds)
{
    time_t t = RUN_START + seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, SG_JOURNAL_TIME_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The gates' start times are the clock's too: pinned end to end from each
 * shard's start (eu-1 at the run's start, the wave's two shards together
 * at 185 s), in whole seconds as the journal keeps them; the journal last
 * updated at 300 s. */
static void pin_timeline(sg_journal *j)
{
    static const struct {
        const char *name;
        long start;
    } starts[] = {{"eu-1", 0}, {"eu-2", 185}, {"us-1", 185}};
    time_text(j->started_at, 0);
    time_text(j->updated_at, 300);
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
        sg_journal_shard *s = &j->shards[sg_journal_shard_find(j, starts[i].name)];
        long at = starts[i].start;
        for (int g = 0; g < SG_GATE_COUNT; g++) {
            if (!s->gates[g].started_at[0])
                continue;
            time_text(s->gates[g].started_at, at);
            at += (long)(s->gates[g].ms / 1000);
        }
    }
}

#define MAX_BARS 16

/* What an XML parser reads of the page: its SVG elements, and the bars of
 * the timeline, each as "SHARD GATE RESULT" with its tooltip. */
typedef struct page {
    size_t svgs;
    size_t nbars;
    char bars[MAX_BARS][80];
    char titles[MAX_BARS][SG_JOURNAL_MESSAGE_MAX + 80];
    bool in_bar, in_title;
} page;

static const char *attr(const XML_Char **attrs, const char *name)
{
    for (size_t i = 0; attrs[i]; i += 2)
        if (strcmp(attrs[i], name) == 0)
            return attrs[i + 1];
    return NULL;
}

static void XMLCALL on_start(void *ctx, const XML_Char *name, const XML_Char **attrs)
{
    page *p = ctx;
    const char *cls = attr(attrs, "class"), *shard = attr(attrs, "data-shard"),
               *gate = attr(attrs, "data-gate"), *result;
    char want[80];
    p->svgs += strcmp(name, "svg") == 0;
    p->in_title = p->in_bar && strcmp(name, "title") == 0;
    if (strcmp(name, "rect") != 0 || !cls || strncmp(cls, "gate ", 5) != 0)
        return;
    ck_assert_msg(shard && gate, "a bar without data-shard or data-gate: %s", cls);
    ck_assert_uint_lt(p->nbars, MAX_BARS);
    result = strstr(cls, " result-");
    ck_assert_ptr_nonnull(result);
    /* the class names the gate the data attribute does */
    snprintf(want, sizeof(want), "gate gate-%s result-%s", gate, result + strlen(" result-"));
    ck_assert_str_eq(cls, want);
    snprintf(p->bars[p->nbars++], sizeof(p->bars[0]), "%s %s %s", shard, gate,
             result + strlen(" result-"));
    p->in_bar = true;
}

static void XMLCALL on_end(void *ctx, const XML_Char *name)
{
    page *p = ctx;
    if (strcmp(name, "title") == 0)
        p->in_title = false;
    else if (strcmp(name, "rect") == 0)
        p->in_bar = false;
}

static void XMLCALL on_text(void *ctx, const XML_Char *text, int len)
{
    page *p = ctx;
    char *title;
    size_t have;
    if (!p->in_title)
        return;
    title = p->titles[p->nbars - 1];
    have = strlen(title);
    ck_assert_uint_lt(have + (size_t)len, sizeof(p->titles[0]));
    memcpy(title + have, text, (size_t)len);
    title[have + (size_t)len] = '\0';
}

/* The page must be well-formed XML (XHTML): an XML parser reads it whole. */
static void read_page(page *p, const char *text)
{
    XML_Parser parser = XML_ParserCreate("UTF-8");
    memset(p, 0, sizeof(*p));
    ck_assert_ptr_nonnull(parser);
    XML_SetUserData(parser, p);
    XML_SetElementHandler(parser, on_start, on_end);
    XML_SetCharacterDataHandler(parser, on_text);
    if (XML_Parse(parser, text, (int)strlen(text), 1) != XML_STATUS_OK)
        ck_abort_msg("not well-formed at line %lu, column %lu: %s",
                     (unsigned long)XML_GetCurrentLineNumber(parser),
                     (unsigned long)XML_GetCurrentColumnNumber(parser),
                     XML_ErrorString(XML_GetErrorCode(parser)));
    XML_ParserFree(parser);
}

static void assert_bars(const page *p, const char *const *want, size_t n)
{
    for (size_t i = 0; i < n && i < p->nbars; i++)
        ck_assert_str_eq(p->bars[i], want[i]);
    ck_assert_uint_eq(p->nbars, n);
}

/* The bar of a shard's gate, as written: "<rect class=... data-gate="G" x=...". */
static void assert_bar_at(const char *text, const char *shard, const char *gate,
                          const char *geometry)
{
    char *want = sgt_asprintf("data-shard=\"%s\" data-gate=\"%s\" %s", shard, gate, geometry);
    assert_contains(text, want);
    free(want);
}

/* Every shard through: a bar per shard and gate, all passed, each at its
 * time (250 s over 780 px, after the names' 170 px), ticks every 50 s. */
START_TEST(test_html_passed)
{
    static const char *const bars[] = {
        "eu-1 snapshot ok", "eu-1 test-restore ok", "eu-1 apply ok", "eu-1 verify ok",
        "eu-2 snapshot ok", "eu-2 test-restore ok", "eu-2 apply ok", "eu-2 verify ok",
        "us-1 snapshot ok", "us-1 test-restore ok", "us-1 apply ok", "us-1 verify ok"};
    sg_journal *j = passed_run();
    page p;
    char *text;
    pin_timeline(j);
    text = write_html(j, NULL, "passed.html");
    read_page(&p, text);
    ck_assert_uint_eq(p.svgs, 1);
    assert_bars(&p, bars, 12);
    ck_assert_str_eq(p.titles[1], "eu-1: test-restore, 120.500 s, ok");
    /* 61 s and 120.5 s at 3.12 px a second; eu-1 is the first stage's
     * first row, below its heading */
    assert_bar_at(text, "eu-1", "test-restore",
                  "x=\"360.3\" y=\"29.0\" width=\"376.0\" height=\"14\"");
    assert_bar_at(text, "us-1", "snapshot", "x=\"747.2\" y=\"89.0\" width=\"37.4\"");
    assert_contains(text, ">0 s</text>");
    assert_contains(text, ">250 s</text>");
    assert_lacks(text, ">300 s</text>");
    assert_contains(text, "<td class=\"status-done\">done</td>");
    assert_contains(text, "<p>3 shards: 3 done, 0 failed, 0 rolled back, 0 not finished.</p>");
    assert_contains(text, "<tr><td>wave</td><td>done</td><td>2026-11-25T02:01:00Z</td>");
    assert_contains(text, "<tr><td>eu-1</td><td>canary</td><td>done</td>"
                          "<td>3 &#8594; 7 (0 applied)</td><td><code>" SNAPSHOT_ID
                          "</code> (5.0 GiB)</td><td>passed</td>");
    /* without the migration files, the versions the journal has */
    assert_contains(text, "<tr><td>3 &#8594; 7</td><td class=\"n\">3</td></tr>");
    assert_contains(text, "<h2>Failures</h2>\n<p>None.</p>");
    ck_assert_str_eq(text + strlen(text) - strlen("</body>\n</html>\n"), "</body>\n</html>\n");
    free(text);
    sg_journal_free(j);
}
END_TEST

/* A failure message that holds markup is text on the page, in the failed
 * bar's tooltip and in the failures' table; the bars are those of the
 * gates that ran. */
START_TEST(test_html_failed)
{
    static const char *const bars[] = {"eu-1 snapshot ok", "eu-1 test-restore ok",
                                       "eu-1 apply ok",    "eu-1 verify ok",
                                       "eu-2 snapshot ok", "eu-2 test-restore failed"};
    static const char message[] = "eu-2: test-restore: <script>alert('x')</script> & \"more\"";
    static const char escaped[] = "eu-2: test-restore: &lt;script&gt;alert(&apos;x&apos;)"
                                  "&lt;/script&gt; &amp; &quot;more&quot;";
    sg_journal *j = failed_run_with(message);
    page p;
    char *text, *want;
    pin_timeline(j);
    text = write_html(j, NULL, "failed.html");
    read_page(&p, text);
    assert_bars(&p, bars, 6);
    want = sgt_asprintf("eu-2: test-restore, 20.000 s, failed\n%s", message);
    ck_assert_str_eq(p.titles[5], want);
    free(want);
    assert_lacks(text, "<script");
    want = sgt_asprintf("<tr><td>eu-2</td><td>test-restore</td><td>verification mismatch</td>"
                        "<td class=\"failure\">%s</td></tr>",
                        escaped);
    assert_contains(text, want);
    free(want);
    assert_contains(text, "<td class=\"status-halted\">halted</td>");
    assert_contains(text, "<td>2 shards, 1 passed</td>");
    assert_contains(text, "<td>0 shards, 0 equal</td>");
    assert_contains(text, "<p>3 shards: 1 done, 1 failed, 0 rolled back, 1 not finished.</p>");
    assert_contains(text, "<tr><td>us-1</td><td>wave</td><td>pending</td><td>&#8212;</td>"
                          "<td>&#8212;</td><td>not run</td>");
    assert_contains(text, "<tr><td>eu-2</td><td>wave</td><td>failed</td><td>&#8212;</td>"
                          "<td><code>" SNAPSHOT_ID "</code> (1.0 MiB)</td><td>failed</td>");
    free(text);
    sg_journal_free(j);
}
END_TEST

/* Migrations 4 to 7 went from 3 to 7 on each shard; rollback-stage took the
 * wave's back. The files, with their modes, and where each stayed. */
static sg_migration_set *load_set(void)
{
    static const struct {
        const char *file, *text;
    } files[] = {
        {"0003_base.sql", "-- shardgate:up\nCREATE TABLE orders (id int PRIMARY KEY);\n"},
        {"0004_add_note.sql", "-- shardgate:up\nALTER TABLE orders ADD COLUMN note text;\n"},
        {"0005_index.sql", "-- shardgate:transaction=off\n-- shardgate:up\n"
                           "CREATE INDEX CONCURRENTLY orders_note ON orders (note);\n"},
        {"0007_widen.sql", "-- shardgate:mode=bluegreen table=public.orders\n"
                           "-- shardgate:up\nALTER TABLE orders ALTER COLUMN id TYPE bigint;\n"},
        {"0008_later.sql", "-- shardgate:up\nALTER TABLE orders ADD COLUMN later text;\n"},
    };
    char *migrations = sgt_asprintf("%s/migrations", dir);
    sg_migration_set *set = NULL;
    sg_error err = {0};
    ck_assert_int_eq(mkdir(migrations, 0755), 0);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        sgt_write_file(migrations, files[i].file, files[i].text);
    ck_assert_msg(sg_migration_set_load(&set, migrations, &err) == 0, "%s", err.message);
    free(migrations);
    return set;
}

/* The comparisons: eu-1's fingerprint equal and 12 tables compared with
 * its snapshot (quiesced); us-1's fingerprint differs, failing its
 * verify; eu-2 none. */
START_TEST(test_html_rolled_back)
{
    static const char *const bars[] = {
        "eu-1 snapshot ok", "eu-1 test-restore ok", "eu-1 apply ok", "eu-1 verify ok",
        "eu-2 snapshot ok", "eu-2 test-restore ok", "eu-2 apply ok", "eu-2 verify ok",
        "us-1 snapshot ok", "us-1 test-restore ok", "us-1 apply ok", "us-1 verify failed"};
    sg_journal *j = rolled_back_run();
    sg_journal_shard *eu1_shard = &j->shards[sg_journal_shard_find(j, "eu-1")];
    sg_journal_shard *us1_shard = &j->shards[sg_journal_shard_find(j, "us-1")];
    sg_migration_set *set = load_set();
    page p;
    char *text;
    memcpy(eu1_shard->rehearsal_fingerprint, HASH, sizeof(HASH));
    memcpy(eu1_shard->live_fingerprint, HASH, sizeof(HASH));
    eu1_shard->tables_verified = 12;
    memcpy(us1_shard->rehearsal_fingerprint, HASH, sizeof(HASH));
    memcpy(us1_shard->live_fingerprint, HASH, sizeof(HASH));
    us1_shard->live_fingerprint[0] = 'f';
    pin_timeline(j);
    text = write_html(j, set, "rolled-back.html");
    read_page(&p, text);
    assert_bars(&p, bars, 12);
    assert_contains(text, "<td class=\"status-rolled-back\">rolled-back</td>");
    assert_contains(text, "<p>3 shards: 1 done, 0 failed, 2 rolled back, 0 not finished.</p>");
    assert_contains(text, "<td>the snapshot's data, in a sandbox</td><td>the restored tables with "
                          "the snapshot's manifest; each table before and after the rehearsal of "
                          "the migrations</td><td>3 shards, 3 passed</td></tr>\n"
                          "<tr><td>verify</td><td>the live shard</td><td>its schema fingerprint "
                          "with the rehearsal's</td><td>2 shards, 1 equal</td></tr>\n"
                          "<tr><td>verify</td><td>the live shard, when quiesced</td><td>its "
                          "tables with the snapshot's rows</td><td>12 tables on 1 shard</td>");
    assert_contains(text, "<td>passed</td><td>equal <code title=\"" HASH "\">0123456789ab</code>"
                          "</td><td class=\"n\">12</td></tr>");
    assert_contains(text, "<td class=\"failure\">rehearsal <code title=\"" HASH
                          "\">0123456789ab</code>, live <code title=\"f123456789abcdef0123456789ab"
                          "cdef0123456789abcdef0123456789abcdef\">f123456789ab</code></td>"
                          "<td>&#8212;</td></tr>");
    assert_contains(text, "<tr><td>eu-2</td><td>wave</td><td>rolled-back</td>"
                          "<td>3 &#8594; 7 (0 applied)</td>");
    assert_contains(text, "<td>passed</td><td>&#8212;</td><td>not compared</td></tr>");
    /* 3 was there before, 8 beyond the target: neither is listed */
    assert_lacks(text, "0003_base.sql");
    assert_lacks(text, "0008_later.sql");
    assert_contains(text, "<tr><td class=\"n\">4</td><td><code>0004_add_note.sql</code></td>"
                          "<td>transactional</td><td class=\"n\">1</td><td class=\"n\">2</td>"
                          "</tr>\n"
                          "<tr><td class=\"n\">5</td><td><code>0005_index.sql</code></td>"
                          "<td>statements</td><td class=\"n\">1</td><td class=\"n\">2</td></tr>\n"
                          "<tr><td class=\"n\">7</td><td><code>0007_widen.sql</code></td>"
                          "<td>bluegreen public.orders</td><td class=\"n\">1</td>"
                          "<td class=\"n\">2</td></tr>\n</table>");
    assert_contains(text, "<tr><td>us-1</td><td>verify</td><td>verification mismatch</td>"
                          "<td class=\"failure\">us-1: verify: schema fingerprint differs from "
                          "the rehearsal&apos;s</td></tr>");
    free(text);
    sg_migration_set_free(set);
    sg_journal_free(j);
}
END_TEST

/* A line per cut-over and swap back, under the migrations, with the
 * table's lock; none without them. */
START_TEST(test_html_bluegreen)
{
    sg_journal *j = bluegreen_run();
    page p;
    char *text;
    pin_timeline(j);
    text = write_html(j, NULL, "bluegreen.html");
    read_page(&p, text);
    ck_assert_uint_eq(p.nbars, 12);
    assert_contains(text,
                    "<tr><td>3 &#8594; 7</td><td class=\"n\">3</td></tr>\n</table>\n"
                    "<p>Blue-green cut-overs and swaps back:</p>\n<ul>\n"
                    "<li>eu-1: v7 cut over at 2026-11-25T02:03:02Z, table locked 12.5 ms</li>\n"
                    "<li>us-1: v7 cut over at 2026-11-25T02:05:00Z, table locked 40.2 ms</li>\n"
                    "<li>us-1: v7 swapped back at 2026-11-25T02:05:01Z, table locked 3.0 ms"
                    "</li>\n</ul>\n<h2>Failures</h2>");
    /* a cut-over recorded without its lock still says it happened */
    j->shards[0].bluegreen[5].lock_ms = -1;
    free(text);
    text = write_html(j, NULL, "bluegreen.html");
    assert_contains(text, "<li>eu-1: v7 cut over at 2026-11-25T02:03:02Z</li>\n");
    free(text);
    sg_journal_free(j);

    j = passed_run();
    text = write_html(j, NULL, "passed.html");
    assert_lacks(text, "Blue-green");
    free(text);
    sg_journal_free(j);
}
END_TEST

/* A gate that started and has no result (the runner was killed in it)
 * runs to the journal's last update: from 10 s to 60 s, 13 px a second. */
START_TEST(test_html_unfinished)
{
    static const char *const bars[] = {"eu-1 snapshot running"};
    sg_journal *j = new_journal(NULL);
    sg_gate_record rec = {0};
    page p;
    char *text;
    sg_journal_gate(j, 0, SG_GATE_SNAPSHOT, &rec);
    time_text(j->started_at, 0);
    time_text(j->shards[0].gates[SG_GATE_SNAPSHOT].started_at, 10);
    time_text(j->updated_at, 60);
    text = write_html(j, NULL, "unfinished.html");
    read_page(&p, text);
    assert_bars(&p, bars, 1);
    ck_assert_str_eq(p.titles[0], "eu-1: snapshot, no result after 50 s");
    assert_bar_at(text, "eu-1", "snapshot", "x=\"300.0\" y=\"29.0\" width=\"650.0\"");
    assert_contains(text, ">60 s</text>");
    assert_contains(text, "<td class=\"status-running\">running</td>");
    assert_contains(text, "<h2>Migrations applied</h2>\n<p>None.</p>");
    free(text);
    sg_journal_free(j);
}
END_TEST

/* ---- the journal's model ---- */

/* The files from the journal read back from its JSON (what `--json`
 * prints and a resumed run starts from) are the files from the journal. */
START_TEST(test_same_from_json)
{
    sg_journal *runs[4] = {passed_run(), failed_run(), rolled_back_run(), bluegreen_run()};
    for (size_t r = 0; r < 4; r++) {
        sg_journal *back = NULL;
        sg_error err = {0};
        char *json = NULL, *a, *b;
        ck_assert_msg(sg_journal_to_json(&json, runs[r], &err) == 0, "%s", err.message);
        ck_assert_msg(sg_journal_parse(&back, json, strlen(json), &err) == 0, "%s", err.message);
        a = write_metrics(runs[r], "a.prom");
        b = write_metrics(back, "b.prom");
        ck_assert_str_eq(a, b);
        free(a);
        free(b);
        a = write_junit(runs[r], "a.xml");
        b = write_junit(back, "b.xml");
        ck_assert_str_eq(a, b);
        free(a);
        free(b);
        a = write_html(runs[r], NULL, "a.html");
        b = write_html(back, NULL, "b.html");
        ck_assert_str_eq(a, b);
        free(a);
        free(b);
        free(json);
        sg_journal_free(back);
        sg_journal_free(runs[r]);
    }
}
END_TEST

/* ---- errors ---- */

static void assert_no_temporary_files(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)))
        ck_assert_msg(!strstr(e->d_name, ".tmp."), "left %s", e->d_name);
    closedir(d);
}

/* A directory that does not exist: SG_E_IO naming the file. */
START_TEST(test_unwritable)
{
    sg_journal *j = failed_run();
    char *path = sgt_asprintf("%s/no/such/dir/run.prom", dir);
    sg_error err = {0};
    ck_assert_int_eq(sg_run_write_metrics(j, path, &err), SG_E_IO);
    assert_contains(err.message, path);
    free(path);
    sg_error_clear(&err);
    path = sgt_asprintf("%s/no/such/dir/run.xml", dir);
    ck_assert_int_eq(sg_run_write_junit(j, path, &err), SG_E_IO);
    assert_contains(err.message, path);
    free(path);
    sg_error_clear(&err);
    path = sgt_asprintf("%s/no/such/dir/run.html", dir);
    ck_assert_int_eq(sg_run_write_html(j, NULL, path, &err), SG_E_IO);
    assert_contains(err.message, path);
    free(path);
    assert_no_temporary_files();
    sg_journal_free(j);
}
END_TEST

/* The HTML page without the migration files: it sorts the journal's
 * versions, in memory of its own. */
static int write_html_from_journal(const sg_journal *j, const char *path, sg_error *err)
{
    return sg_run_write_html(j, NULL, path, err);
}

/* With 0, 1, 2... allocations allowed, each writer fails with SG_E_NOMEM
 * and no file, until it has what it needs. */
START_TEST(test_allocation_failure)
{
    typedef int (*writer_fn)(const sg_journal *j, const char *path, sg_error *err);
    static const writer_fn writers[] = {sg_run_write_metrics, sg_run_write_junit,
                                        write_html_from_journal};
    sg_journal *j = failed_run();
    bluegreen_step(j, "eu-1", 7, "cut-over", 12.5, "2026-11-25T02:03:02Z");
    for (size_t w = 0; w < sizeof(writers) / sizeof(writers[0]); w++) {
        char *path = sgt_asprintf("%s/nomem.%zu", dir, w);
        long n;
        for (n = 0;; n++) {
            sg_error err = {0};
            int rc;
            sg_mem_fail_after(n);
            rc = writers[w](j, path, &err);
            sg_mem_fail_reset();
            if (rc == 0)
                break;
            ck_assert_msg(rc == SG_E_NOMEM, "writer %zu, %ld allocations: %d %s", w, n, rc,
                          err.message);
            assert_contains(err.message, "out of memory");
            ck_assert_int_ne(access(path, F_OK), 0);
        }
        /* the buffer's growths and the temporary file's name */
        ck_assert_int_gt(n, 2);
        ck_assert_int_eq(access(path, F_OK), 0);
        free(path);
    }
    assert_no_temporary_files();
    sg_journal_free(j);
}
END_TEST

static Suite *run_report_suite(void)
{
    Suite *s = suite_create("run_report");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, test_metrics_passed);
    tcase_add_test(tc, test_metrics_failed);
    tcase_add_test(tc, test_metrics_rolled_back);
    tcase_add_test(tc, test_metrics_bluegreen);
    suite_add_tcase(s, tc);

    tc = tcase_create("junit");
    tcase_add_test(tc, test_junit_passed);
    tcase_add_test(tc, test_junit_failed);
    tcase_add_test(tc, test_junit_rolled_back);
    tcase_add_test(tc, test_junit_empty_stage);
    tcase_add_test(tc, test_junit_unfinished);
    suite_add_tcase(s, tc);

    tc = tcase_create("html");
    tcase_add_test(tc, test_html_passed);
    tcase_add_test(tc, test_html_failed);
    tcase_add_test(tc, test_html_rolled_back);
    tcase_add_test(tc, test_html_unfinished);
    tcase_add_test(tc, test_html_bluegreen);
    suite_add_tcase(s, tc);

    tc = tcase_create("journal_model");
    tcase_add_test(tc, test_same_from_json);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_unwritable);
    tcase_add_test(tc, test_allocation_failure);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    sg_error err = {0};
    SRunner *sr;
    int failed;
    /* jansson's allocator is chosen once, before the tests' own JSON use. */
    sg_json_init();
    if (!mkdtemp(dir))
        return EXIT_FAILURE;
    if (sg_pipeline_config_parse(&cfg, pipeline_yaml, strlen(pipeline_yaml), "pipeline.yaml", "/",
                                 &err) < 0) {
        fprintf(stderr, "pipeline.yaml: %s\n", err.message);
        return EXIT_FAILURE;
    }
    sr = srunner_create(run_report_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sg_pipeline_config_clear(&cfg);
    sgt_remove_tree(dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
