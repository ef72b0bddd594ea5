#include "pipeline/report.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/report_text.h"
#include "stages/bluegreen.h"

/* A sample's value: an integer, or seconds to the millisecond. */
#define VALUE_MAX 32

/* Seconds from the journal's milliseconds, exactly: "61.000". */
static void seconds_text(char out[VALUE_MAX], uint64_t ms)
{
    snprintf(out, VALUE_MAX, "%" PRIu64 ".%03" PRIu64, ms / 1000, ms % 1000);
}

/* ---- metrics ---- */

static int append_family(sg_buf *b, const char *name, const char *help, sg_error *err)
{
    return sg_report_appendf(b, err, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

/* NAME{pipeline="...",run_id="...",KEY="VALUE"...} VALUE: every sample
 * names its run; `more` holds up to two more label pairs, NULL where
 * unused. */
static int append_sample(sg_buf *b, const char *name, const sg_journal *j,
                         const char *const more[4], const char *value, sg_error *err)
{
    const char *labels[] = {"pipeline", j->pipeline, "run_id", j->run_id,
                            more[0],    more[1],     more[2],  more[3]};
    int rc = sg_report_appendf(b, err, "%s{", name);
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]) && labels[i] && rc == 0; i += 2)
        if ((rc = sg_report_appendf(b, err, "%s%s=\"", i ? "," : "", labels[i])) == 0 &&
            (rc = sg_report_append_prometheus_label(b, labels[i + 1], err)) == 0)
            rc = sg_report_appendf(b, err, "\"");
    return rc < 0 ? rc : sg_report_appendf(b, err, "} %s\n", value);
}

/* A shard's sample of a metric, for one gate where the metric is per gate;
 * false when the shard has none (no snapshot, no size: a 0 would read as an
 * empty snapshot). */
typedef bool (*shard_value_fn)(char out[VALUE_MAX], const sg_journal_shard *s, sg_gate gate);

static bool shard_success(char out[VALUE_MAX], const sg_journal_shard *s, sg_gate gate)
{
    snprintf(out, VALUE_MAX, "%d", s->state == SG_SHARD_DONE);
    return true;
}

static bool gate_seconds(char out[VALUE_MAX], const sg_journal_shard *s, sg_gate gate)
{
    if (!s->gates[gate].ran)
        return false;
    seconds_text(out, s->gates[gate].ms);
    return true;
}

static bool snapshot_bytes(char out[VALUE_MAX], const sg_journal_shard *s, sg_gate gate)
{
    if (!s->snapshot_id[0])
        return false;
    snprintf(out, VALUE_MAX, "%" PRIu64, s->snapshot_bytes);
    return true;
}

/* Only a restore that passed: a restore cut short by a failure is no
 * measure of how long recovering the shard takes. */
static bool restore_seconds(char out[VALUE_MAX], const sg_journal_shard *s, sg_gate gate)
{
    const sg_journal_gate_entry *g = &s->gates[SG_GATE_TEST_RESTORE];
    if (!g->ran || g->rc != 0)
        return false;
    seconds_text(out, g->ms);
    return true;
}

/* The versions are read by the apply gate; a rolled-back shard is back at
 * the one it had before. */
static bool schema_version(char out[VALUE_MAX], const sg_journal_shard *s, sg_gate gate)
{
    if (!s->gates[SG_GATE_APPLY].ran)
        return false;
    snprintf(out, VALUE_MAX, "%" PRId64,
             s->state == SG_SHARD_ROLLED_BACK ? s->from_version : s->to_version);
    return true;
}

static const struct {
    const char *name, *help;
    shard_value_fn value;
    bool per_gate;
} shard_metrics[] = {
    {"shardgate_run_shard_success",
     "Whether the shard went through every gate of the run (1) or not (0).", shard_success, false},
    {"shardgate_run_gate_seconds", "Seconds the gate took for the shard, for each gate that ran.",
     gate_seconds, true},
    {"shardgate_run_snapshot_bytes", "Bytes stored for the snapshot the run took of the shard.",
     snapshot_bytes, false},
    {"shardgate_run_restore_seconds",
     "Seconds the shard's test restore took (read back, verify, restore, rehearse), when it "
     "passed.",
     restore_seconds, false},
    {"shardgate_run_schema_version",
     "Schema version (the latest migration applied) the run left the shard at, once its apply "
     "gate ran.",
     schema_version, false},
};

static int append_shard_metrics(sg_buf *b, const sg_journal *j, sg_error *err)
{
    char value[VALUE_MAX];
    int rc = 0;
    for (size_t m = 0; m < sizeof(shard_metrics) / sizeof(shard_metrics[0]) && rc == 0; m++) {
        size_t ngates = shard_metrics[m].per_gate ? SG_GATE_COUNT : 1;
        rc = append_family(b, shard_metrics[m].name, shard_metrics[m].help, err);
        for (size_t i = 0; i < j->nshards && rc == 0; i++) {
            for (size_t g = 0; g < ngates && rc == 0; g++) {
                const char *labels[4] = {"shard", j->shards[i].name};
                if (!shard_metrics[m].value(value, &j->shards[i], (sg_gate)g))
                    continue;
                if (shard_metrics[m].per_gate) {
                    labels[2] = "gate";
                    labels[3] = sg_gate_name((sg_gate)g);
                }
                rc = append_sample(b, shard_metrics[m].name, j, labels, value, err);
            }
        }
    }
    return rc;
}

/* Per shard and version, the lock its blue-green cut-over took: the one
 * moment a blue-green change blocks the table. The family is left out of a
 * run without one, so a fleet that never runs such a change is not told of
 * it. */
static int append_bluegreen_metrics(sg_buf *b, const sg_journal *j, sg_error *err)
{
    static const char name[] = "shardgate_run_bluegreen_lock_seconds";
    bool any = false;
    int rc = 0;
    for (size_t i = 0; i < j->nshards && rc == 0; i++) {
        const sg_journal_shard *s = &j->shards[i];
        for (size_t k = 0; k < s->nbluegreen && rc == 0; k++) {
            const sg_journal_bluegreen *e = &s->bluegreen[k];
            char version[VALUE_MAX], value[VALUE_MAX];
            const char *labels[4] = {"shard", s->name, "version", version};
            if (strcmp(e->step, sg_bluegreen_step_name(SG_BLUEGREEN_CUT_OVER)) != 0 ||
                e->lock_ms < 0)
                continue;
            if (!any && (rc = append_family(b, name,
                                            "Seconds the blue-green cut-over of the version "
                                            "held the table's lock on the shard.",
                                            err)) < 0)
                break;
            any = true;
            snprintf(version, sizeof(version), "%" PRId64, e->version);
            snprintf(value, sizeof(value), "%.6f", e->lock_ms / 1000);
            rc = append_sample(b, name, j, labels, value, err);
        }
    }
    return rc;
}

int sg_run_write_metrics(const sg_journal *j, const char *path, sg_error *err)
{
    static const char status_name[] = "shardgate_run_status";
    sg_buf b = {0};
    int rc;
    /* Every status with 0 but the run's: an alert on
     * shardgate_run_status{status="failed"} == 1 needs no absent(). */
    rc = append_family(&b, status_name,
                       "Status of the run: 1 for the one it is in (running, done, failed, "
                       "halted, rolled-back), 0 for the others.",
                       err);
    for (int st = SG_RUN_RUNNING; st <= SG_RUN_ROLLED_BACK && rc == 0; st++) {
        const char *labels[4] = {"status", sg_run_status_name((sg_run_status)st)};
        rc = append_sample(&b, status_name, j, labels, st == (int)j->status ? "1" : "0", err);
    }
    if (rc == 0)
        rc = append_shard_metrics(&b, j, err);
    if (rc == 0)
        rc = append_bluegreen_metrics(&b, j, err);
    if (rc == 0)
        rc = sg_file_replace(path, b.data, b.len, err);
    sg_buf_free(&b);
    return rc;
}

/* ---- JUnit ---- */

typedef enum { CASE_PASSED, CASE_FAILED, CASE_SKIPPED } case_result;

/* A gate is failed when it ended with an error or is where the shard
 * failed; passed when it ran without; skipped when it did not finish. */
static case_result gate_result(const sg_journal_shard *s, sg_gate g)
{
    if ((s->has_failure && s->failure.gate == g) || (s->gates[g].ran && s->gates[g].rc != 0))
        return CASE_FAILED;
    return s->gates[g].ran ? CASE_PASSED : CASE_SKIPPED;
}

typedef struct counts {
    size_t tests, failures, skipped;
    uint64_t ms;
} counts;

static void count_stage(counts *c, const sg_journal *j, size_t stage)
{
    for (size_t i = 0; i < j->nshards; i++) {
        const sg_journal_shard *s = &j->shards[i];
        if (s->stage != stage)
            continue;
        for (int g = 0; g < SG_GATE_COUNT; g++) {
            case_result r = gate_result(s, (sg_gate)g);
            c->tests++;
            c->failures += r == CASE_FAILED;
            c->skipped += r == CASE_SKIPPED;
            c->ms += s->gates[g].ms;
        }
    }
}

/* Why a gate has no result. */
static void skip_reason(char *out, size_t size, const sg_journal_shard *s, sg_gate g)
{
    if (s->has_failure && s->failure.gate < g)
        snprintf(out, size, "not reached: %s failed", sg_gate_name(s->failure.gate));
    else if (s->gates[g].started_at[0])
        snprintf(out, size, "did not finish");
    else
        snprintf(out, size, "not run");
}

static int append_case(sg_buf *b, const sg_journal *j, const sg_journal_shard *s, sg_gate g,
                       sg_error *err)
{
    const char *stage = j->stages[s->stage].name, *type, *message;
    case_result result = gate_result(s, g);
    char seconds[VALUE_MAX], reason[64];
    int rc;
    seconds_text(seconds, s->gates[g].ms);
    if ((rc = sg_report_appendf(b, err, "    <testcase classname=\"shardgate.run.")) < 0 ||
        (rc = sg_report_append_xml(b, stage, err)) < 0 ||
        (rc = sg_report_appendf(b, err, "\" name=\"")) < 0 ||
        (rc = sg_report_append_xml(b, s->name, err)) < 0 ||
        (rc = sg_report_appendf(b, err, ": %s\" time=\"%s\"", sg_gate_name(g), seconds)) < 0)
        return rc;
    if (result == CASE_PASSED)
        return sg_report_appendf(b, err, "/>\n");
    if (result == CASE_SKIPPED) {
        skip_reason(reason, sizeof(reason), s, g);
        return sg_report_appendf(b, err, ">\n      <skipped message=\"%s\"/>\n    </testcase>\n",
                                 reason);
    }
    /* The shard's failure is the gate's own, kept when the shard is
     * rolled back; the gate's record stands in for a journal without it. */
    if (s->has_failure && s->failure.gate == g) {
        type = sg_error_class(s->failure.code);
        message = s->failure.message;
    } else {
        type = sg_error_class(s->gates[g].rc);
        message = s->gates[g].message;
    }
    if ((rc = sg_report_appendf(b, err, ">\n      <failure type=\"")) < 0 ||
        (rc = sg_report_append_xml(b, type, err)) < 0 ||
        (rc = sg_report_appendf(b, err, "\" message=\"")) < 0 ||
        (rc = sg_report_append_xml(b, message, err)) < 0 ||
        (rc = sg_report_appendf(b, err, "\">")) < 0 ||
        (rc = sg_report_append_xml(b, message, err)) < 0)
        return rc;
    return sg_report_appendf(b, err, "</failure>\n    </testcase>\n");
}

static int append_suite(sg_buf *b, const sg_journal *j, size_t stage, sg_error *err)
{
    const sg_journal_stage *st = &j->stages[stage];
    counts c = {0};
    char seconds[VALUE_MAX];
    int rc;
    count_stage(&c, j, stage);
    seconds_text(seconds, c.ms);
    if ((rc = sg_report_appendf(b, err, "  <testsuite name=\"")) < 0 ||
        (rc = sg_report_append_xml(b, st->name, err)) < 0 ||
        (rc = sg_report_appendf(b, err,
                                "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" skipped=\"%zu\" "
                                "time=\"%s\"",
                                c.tests, c.failures, c.skipped, seconds)) < 0)
        return rc;
    /* A stage never started has no time to give. */
    if (st->started_at[0] &&
        (rc = sg_report_appendf(b, err, " timestamp=\"%s\"", st->started_at)) < 0)
        return rc;
    if ((rc = sg_report_appendf(b, err, ">\n")) < 0)
        return rc;
    for (size_t i = 0; i < j->nshards && rc == 0; i++) {
        if (j->shards[i].stage != stage)
            continue;
        for (int g = 0; g < SG_GATE_COUNT && rc == 0; g++)
            rc = append_case(b, j, &j->shards[i], (sg_gate)g, err);
    }
    return rc < 0 ? rc : sg_report_appendf(b, err, "  </testsuite>\n");
}

int sg_run_write_junit(const sg_journal *j, const char *path, sg_error *err)
{
    sg_buf b = {0};
    counts total = {0};
    char seconds[VALUE_MAX];
    int rc;
    for (size_t st = 0; st < j->nstages; st++)
        count_stage(&total, j, st);
    seconds_text(seconds, total.ms);
    if ((rc = sg_report_appendf(&b, err,
                                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                "<testsuites name=\"shardgate run ")) < 0 ||
        (rc = sg_report_append_xml(&b, j->run_id, err)) < 0 ||
        (rc = sg_report_appendf(&b, err, " of ")) < 0 ||
        (rc = sg_report_append_xml(&b, j->pipeline, err)) < 0 ||
        (rc = sg_report_appendf(&b, err,
                                "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" skipped=\"%zu\" "
                                "time=\"%s\">\n",
                                total.tests, total.failures, total.skipped, seconds)) < 0)
        goto done;
    for (size_t st = 0; st < j->nstages && rc == 0; st++)
        rc = append_suite(&b, j, st, err);
    if (rc == 0)
        rc = sg_report_appendf(&b, err, "</testsuites>\n");
    if (rc == 0)
        rc = sg_file_replace(path, b.data, b.len, err);
done:
    sg_buf_free(&b);
    return rc;
}
