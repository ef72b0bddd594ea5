#include "restore/drill.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/interrupt.h"
#include "common/json.h"
#include "common/layout.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/report_text.h"
#include "common/retry.h"
#include "common/workers.h"
#include "restore/access.h"

const char *sg_drill_shard_status(const sg_drill_shard *shard)
{
    return shard->rc < 0 ? "failed" : shard->rto_exceeded ? "rto_exceeded" : "ok";
}

/* Every shard with at least one snapshot, complete or not: a shard whose
 * snapshots are all incomplete cannot be recovered, and the drill must say
 * so rather than skip it. */
static int find_shards(sg_drill_result *res, sg_store *store, sg_error *err)
{
    sg_snapshot_entry *entries = NULL;
    size_t count = 0;
    int rc = sg_snapshot_list(&entries, &count, store, NULL, err);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < count; i++) {
        bool seen = false;
        for (size_t j = 0; j < res->count && !seen; j++)
            seen = strcmp(res->shards[j].shard, entries[i].shard) == 0;
        if (seen)
            continue;
        sg_drill_shard *grown = sg_array_grow(res->shards, res->count, sizeof(*grown));
        if (!grown) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            break;
        }
        res->shards = grown;
        memset(&res->shards[res->count], 0, sizeof(*res->shards));
        snprintf(res->shards[res->count].shard, sizeof(res->shards[0].shard), "%s",
                 entries[i].shard);
        res->count++;
    }
    free(entries);
    return rc;
}

static int compare_shards(const void *a, const void *b)
{
    return strcmp(((const sg_drill_shard *)a)->shard, ((const sg_drill_shard *)b)->shard);
}

static int choose_shards(sg_drill_result *res, const sg_drill_options *opts, sg_error *err)
{
    sg_store *store = NULL;
    int rc = 0;
    if (opts->all == (opts->shards.count > 0)) {
        sg_error_set(err, SG_E_USAGE, "name the shards to drill (--shard NAME ...) or --all");
        return SG_E_USAGE;
    }
    if (opts->all) {
        if ((rc = sg_store_open_config(&store, &opts->test.store, err)) == 0)
            rc = find_shards(res, store, err);
        sg_store_free(store);
        if (rc == 0 && res->count == 0) {
            sg_error_set(err, SG_E_NOT_FOUND, "no snapshots in %s", opts->test.store.url);
            return SG_E_NOT_FOUND;
        }
    } else {
        if (!(res->shards = sg_calloc(opts->shards.count, sizeof(*res->shards))))
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        for (size_t i = 0; i < opts->shards.count; i++) {
            if ((rc = sg_shard_name_check(opts->shards.items[i], err)) < 0)
                return rc;
            snprintf(res->shards[i].shard, sizeof(res->shards[i].shard), "%s",
                     opts->shards.items[i]);
        }
        res->count = opts->shards.count;
    }
    if (rc == 0 && res->count > 1)
        qsort(res->shards, res->count, sizeof(*res->shards), compare_shards);
    return rc;
}

typedef struct drill_run {
    const sg_drill_options *opts;
    sg_drill_result *res;
} drill_run;

/* One shard. A failed shard is a result, not an error of the drill: only an
 * interrupt stops the other shards. */
static int drill_shard(void *ctx, size_t worker, size_t task, sg_error *err)
{
    drill_run *d = ctx;
    sg_drill_shard *s = &d->res->shards[task];
    sg_test_restore_options test = d->opts->test;
    char spec[SG_SHARD_NAME_MAX + 8];
    snprintf(spec, sizeof(spec), "%s/latest", s->shard);
    test.snapshot = spec;
    test.sandbox.shard = s->shard;
    if (!test.sandbox.run_id)
        test.sandbox.run_id = d->res->run_id;
    sg_log_info("drill %s: starting", s->shard);
    s->rc = sg_test_restore(&s->result, &test, &s->error);
    if (s->rc == SG_E_INTERRUPTED) {
        *err = s->error;
        return s->rc;
    }
    if (s->rc < 0) {
        sg_log_warning("drill %s: failed after %.1f s: %s", s->shard, s->result.seconds,
                       s->error.message);
        return 0;
    }
    s->rto_exceeded = d->opts->rto_ms && s->result.seconds * 1000.0 > (double)d->opts->rto_ms;
    sg_log_info("drill %s: %s/%s recovered and verified in %.1f s%s", s->shard, s->result.shard,
                s->result.id, s->result.seconds,
                s->rto_exceeded ? ", longer than the recovery-time objective" : "");
    return 0;
}

/* Leaves each shard's result in the store (shards/<shard>/last-drill.json),
 * so that whoever looks at the fleet sees when each shard was last proven
 * recoverable. A record that cannot be written is a warning: the drill's
 * own result stands. */
static void record_drills(const sg_drill_result *res, const sg_drill_options *opts)
{
    sg_store *store = NULL;
    sg_error err = {0};
    if (sg_store_open_config(&store, &opts->test.store, &err) < 0) {
        sg_log_warning("cannot record the drills in the store: %s", err.message);
        return;
    }
    sg_json_init();
    for (size_t i = 0; i < res->count; i++) {
        const sg_drill_shard *s = &res->shards[i];
        char *key = sg_layout_drill_key(s->shard), *text = NULL;
        json_t *doc = json_pack("{s:i, s:s, s:s?, s:b, s:b, s:f, s:s?}", "format", 1, "started_at",
                                res->started_at, "snapshot", s->result.id[0] ? s->result.id : NULL,
                                "ok", s->rc == 0, "objective_missed", s->rto_exceeded, "seconds",
                                s->result.seconds, "error", s->rc < 0 ? s->error.message : NULL);
        if (!key || !doc || !(text = json_dumps(doc, JSON_COMPACT)))
            sg_error_set(&err, SG_E_NOMEM, "out of memory");
        else
            sg_store_put(store, key, text, strlen(text), &err);
        if (err.code)
            sg_log_warning("cannot record the drill of %s in the store: %s", s->shard, err.message);
        sg_error_clear(&err);
        free(text);
        json_decref(doc);
        free(key);
    }
    sg_store_free(store);
}

int sg_drill_run(sg_drill_result *res, const sg_drill_options *opts, sg_error *err)
{
    drill_run d = {opts, res};
    uint64_t start = sg_monotonic_ms();
    time_t now = time(NULL);
    struct tm tm;
    int rc;
    memset(res, 0, sizeof(*res));
    gmtime_r(&now, &tm);
    strftime(res->started_at, sizeof(res->started_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    strftime(res->run_id, sizeof(res->run_id), "drill-%Y%m%dT%H%M%SZ", &tm);
    snprintf(res->run_id + strlen(res->run_id), sizeof(res->run_id) - strlen(res->run_id), "-%ld",
             (long)getpid());
    if (!opts->test.store.url || !opts->test.key_path || opts->test.trust.count == 0) {
        sg_error_set(err, SG_E_USAGE, "--store, --key and --trust are required");
        return SG_E_USAGE;
    }
    if ((rc = sg_sandbox_check_driver(opts->test.sandbox.driver, err)) < 0 ||
        (rc = choose_shards(res, opts, err)) < 0)
        return rc;
    rc = sg_workers_run(opts->parallel > 0 ? (size_t)opts->parallel : 1, res->count, drill_shard,
                        &d, err);
    res->seconds = (double)(sg_monotonic_ms() - start) / 1000.0;
    if (rc == 0)
        record_drills(res, opts);
    for (size_t i = 0; i < res->count; i++) {
        res->failed += res->shards[i].rc < 0;
        res->too_slow += res->shards[i].rc == 0 && res->shards[i].rto_exceeded;
    }
    if (rc < 0)
        return rc;
    if (res->failed) {
        sg_error_set(err, SG_E_SHARDS_FAILED, "drill failed for %zu of %zu shards", res->failed,
                     res->count);
        for (size_t i = 0; i < res->count; i++)
            if (res->shards[i].rc < 0) {
                sg_error_detail(err, "first failure: %s: %s", res->shards[i].shard,
                                res->shards[i].error.message);
                break;
            }
        return SG_E_SHARDS_FAILED;
    }
    if (res->too_slow) {
        sg_error_set(err, SG_E_OBJECTIVE,
                     "%zu of %zu shards took longer than the recovery-time objective of %.0f s",
                     res->too_slow, res->count, (double)opts->rto_ms / 1000.0);
        return SG_E_OBJECTIVE;
    }
    return 0;
}

void sg_drill_result_clear(sg_drill_result *res)
{
    free(res->shards);
    memset(res, 0, sizeof(*res));
}

/* ---- reports ---- */

typedef double (*metric_fn)(const sg_drill_shard *s);

static double metric_success(const sg_drill_shard *s)
{
    return s->rc == 0 ? 1 : 0;
}
static double metric_seconds(const sg_drill_shard *s)
{
    return s->result.seconds;
}
static double metric_age(const sg_drill_shard *s)
{
    return s->result.snapshot_age;
}
static double metric_rows(const sg_drill_shard *s)
{
    return (double)s->result.rows;
}

int sg_drill_write_metrics(const sg_drill_result *res, const char *path, sg_error *err)
{
    static const struct {
        const char *name, *help;
        metric_fn value;
        bool needs_snapshot;
    } metrics[] = {
        {"shardgate_drill_success",
         "Whether the drill restored and verified the shard's latest snapshot (1) or not (0).",
         metric_success, false},
        {"shardgate_drill_restore_seconds",
         "Seconds from the start of the shard's drill until its restore was verified.",
         metric_seconds, false},
        {"shardgate_drill_snapshot_age_seconds",
         "Age of the snapshot the drill restored, in seconds, when the drill started.", metric_age,
         true},
        {"shardgate_drill_rows", "Rows restored and verified by the drill.", metric_rows, true},
    };
    sg_buf b = {0};
    int rc = 0;
    for (size_t m = 0; m < sizeof(metrics) / sizeof(metrics[0]) && rc == 0; m++) {
        rc = sg_report_appendf(&b, err, "# HELP %s %s\n# TYPE %s gauge\n", metrics[m].name,
                               metrics[m].help, metrics[m].name);
        for (size_t i = 0; i < res->count && rc == 0; i++) {
            const sg_drill_shard *s = &res->shards[i];
            /* No snapshot, no age: a sample of 0 would read as "fresh". */
            if (metrics[m].needs_snapshot && !s->result.id[0])
                continue;
            if ((rc = sg_report_appendf(&b, err, "%s{shard=\"", metrics[m].name)) == 0 &&
                (rc = sg_report_append_prometheus_label(&b, s->shard, err)) == 0)
                rc = sg_report_appendf(&b, err, "\"} %.3f\n", metrics[m].value(s));
        }
    }
    if (rc == 0)
        rc = sg_file_replace(path, b.data, b.len, err);
    sg_buf_free(&b);
    return rc;
}

static int append_case(sg_buf *b, const sg_drill_shard *s, sg_error *err)
{
    int rc;
    if ((rc = sg_report_appendf(b, err,
                                "    <testcase classname=\"shardgate.drill\" "
                                "name=\"")) < 0 ||
        (rc = sg_report_append_xml(b, s->shard, err)) < 0 ||
        (rc = sg_report_appendf(b, err, "\" time=\"%.3f\"", s->result.seconds)) < 0)
        return rc;
    if (s->rc == 0 && !s->rto_exceeded)
        return sg_report_appendf(b, err, "/>\n");
    if ((rc = sg_report_appendf(b, err, ">\n      <failure type=\"")) < 0 ||
        (rc = sg_report_append_xml(b, s->rc < 0 ? sg_error_class(s->rc) : "objective missed",
                                   err)) < 0 ||
        (rc = sg_report_appendf(b, err, "\" message=\"")) < 0)
        return rc;
    if (s->rc < 0)
        rc = sg_report_append_xml(b, s->error.message, err);
    else
        rc = sg_report_appendf(b, err,
                               "recovered in %.1f s, longer than the recovery-time objective",
                               s->result.seconds);
    if (rc < 0 || (rc = sg_report_appendf(b, err, "\">")) < 0)
        return rc;
    if (s->rc < 0 && s->error.detail[0] && (rc = sg_report_append_xml(b, s->error.detail, err)) < 0)
        return rc;
    if (s->rc < 0 && s->error.hint[0] &&
        ((rc = sg_report_appendf(b, err, "\nhint: ")) < 0 ||
         (rc = sg_report_append_xml(b, s->error.hint, err)) < 0))
        return rc;
    return sg_report_appendf(b, err, "</failure>\n    </testcase>\n");
}

int sg_drill_write_junit(const sg_drill_result *res, const char *path, sg_error *err)
{
    sg_buf b = {0};
    size_t failures = res->failed + res->too_slow;
    int rc = sg_report_appendf(
        &b, err,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<testsuites name=\"shardgate drill\" tests=\"%zu\" failures=\"%zu\" "
        "time=\"%.3f\">\n"
        "  <testsuite name=\"shardgate drill\" tests=\"%zu\" failures=\"%zu\" "
        "errors=\"0\" time=\"%.3f\" timestamp=\"%s\">\n",
        res->count, failures, res->seconds, res->count, failures, res->seconds, res->started_at);
    for (size_t i = 0; i < res->count && rc == 0; i++)
        rc = append_case(&b, &res->shards[i], err);
    if (rc == 0)
        rc = sg_report_appendf(&b, err, "  </testsuite>\n</testsuites>\n");
    if (rc == 0)
        rc = sg_file_replace(path, b.data, b.len, err);
    sg_buf_free(&b);
    return rc;
}
