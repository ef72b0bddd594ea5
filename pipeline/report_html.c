/* The HTML run report: one self-contained page (inline CSS and SVG, no
 * script, nothing fetched) that a person reads after a run, or prints. It
 * is XHTML as well as HTML, so that an XML parser can check it; every value
 * from the journal is escaped for XML. */
#include "pipeline/report.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/mem.h"
#include "common/report_text.h"
#include "stages/bluegreen.h"

#define DASH "&#8212;"
#define ARROW " &#8594; "

/* Print needs the colours too: browsers drop backgrounds by default. */
static const char css[] =
    "body{font:14px/1.4 system-ui,sans-serif;color:#222;max-width:1000px;margin:2em auto;"
    "padding:0 1em}\n"
    "h1{font-size:1.4em}\n"
    "h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}\n"
    "table{border-collapse:collapse;margin:.5em 0}\n"
    "th,td{padding:2px 10px 2px 0;text-align:left;vertical-align:top;"
    "border-bottom:1px solid #eee}\n"
    "td.n{text-align:right}\n"
    "code{font:12px ui-monospace,monospace;white-space:nowrap}\n"
    "svg{max-width:100%;height:auto;font:12px system-ui,sans-serif}\n"
    ".result-ok{fill:#2e7d32;background:#2e7d32}\n"
    ".result-failed{fill:#c62828;background:#c62828}\n"
    ".result-running{fill:#f9a825;background:#f9a825}\n"
    "rect.gate{stroke:#fff;stroke-width:1}\n"
    "line.tick{stroke:#ddd}\n"
    "text.tick{fill:#666}\n"
    "text.stage{font-weight:bold}\n"
    ".key{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em;"
    "vertical-align:middle}\n"
    ".status-done{color:#2e7d32}\n"
    ".status-failed,.status-halted,.status-rolled-back,.failure{color:#c62828}\n"
    "@media print{body{margin:0;max-width:none}"
    "*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}\n";

/* Appends before, then text escaped, then after. */
static int put(sg_buf *b, const char *before, const char *text, const char *after, sg_error *err)
{
    int rc;
    if ((rc = sg_buf_append(b, before, strlen(before), err)) < 0 ||
        (rc = sg_report_append_xml(b, text, err)) < 0)
        return rc;
    return sg_buf_append(b, after, strlen(after), err);
}

/* Seconds since the epoch of a journal time ("2026-11-25T02:00:00Z"), or -1
 * for one not known (""). */
static int64_t parse_time(const char *text)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static void bytes_text(char out[32], uint64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, 32, "%" PRIu64 " B", bytes);
    else
        snprintf(out, 32, "%.1f %s", v, units[u]);
}

static bool shard_through(const sg_journal_shard *s)
{
    return s->state == SG_SHARD_DONE || s->state == SG_SHARD_VERIFIED;
}

/* The gate a shard failed at and its error, as the JUnit report takes it:
 * the shard's failure, kept once it is rolled back, else a gate's record. */
static bool shard_failure(sg_gate *gate, int *code, const char **message, const sg_journal_shard *s)
{
    if (s->has_failure) {
        *gate = s->failure.gate;
        *code = s->failure.code;
        *message = s->failure.message;
        return true;
    }
    for (int g = 0; g < SG_GATE_COUNT; g++) {
        if (s->gates[g].ran && s->gates[g].rc != 0) {
            *gate = (sg_gate)g;
            *code = s->gates[g].rc;
            *message = s->gates[g].message;
            return true;
        }
    }
    return false;
}

/* ---- header and summary ---- */

static int append_fact(sg_buf *b, const char *name, const char *value, const char *cls,
                       sg_error *err)
{
    int rc = sg_report_appendf(b, err, "<tr><th>%s</th><td%s%s%s>", name, cls ? " class=\"" : "",
                               cls ? cls : "", cls ? "\"" : "");
    return rc < 0 ? rc : put(b, "", value[0] ? value : "unknown", "</td></tr>\n", err);
}

static int append_head(sg_buf *b, const sg_journal *j, sg_error *err)
{
    const char *status = sg_run_status_name(j->status);
    char partition[48], target[32], status_class[32];
    int rc;
    if (j->part_n)
        snprintf(partition, sizeof(partition), "%u of %u", j->part_k, j->part_n);
    else
        snprintf(partition, sizeof(partition), "the whole fleet");
    if (j->target == SG_PIPELINE_TARGET_LATEST)
        snprintf(target, sizeof(target), "the latest migration");
    else
        snprintf(target, sizeof(target), "version %" PRId64, j->target);
    snprintf(status_class, sizeof(status_class), "status-%s", status);
    if ((rc = sg_report_appendf(b, err,
                                "<!DOCTYPE html>\n"
                                "<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n"
                                "<head>\n<meta charset=\"utf-8\"/>\n")) < 0 ||
        (rc = put(b, "<title>shardgate run ", j->run_id, " of ", err)) < 0 ||
        (rc = put(b, "", j->pipeline, "</title>\n", err)) < 0 ||
        (rc = sg_report_appendf(b, err, "<style>\n%s</style>\n</head>\n<body>\n", css)) < 0 ||
        (rc = put(b, "<h1>shardgate run ", j->run_id, " of ", err)) < 0 ||
        (rc = put(b, "", j->pipeline, "</h1>\n<table>\n", err)) < 0 ||
        (rc = append_fact(b, "pipeline", j->pipeline, NULL, err)) < 0 ||
        (rc = append_fact(b, "run id", j->run_id, NULL, err)) < 0 ||
        (rc = append_fact(b, "status", status, status_class, err)) < 0 ||
        (rc = append_fact(b, "started", j->started_at, NULL, err)) < 0 ||
        (rc = append_fact(b, "updated", j->updated_at, NULL, err)) < 0 ||
        (rc = append_fact(b, "partition", partition, NULL, err)) < 0 ||
        (rc = append_fact(b, "target", target, NULL, err)) < 0)
        return rc;
    return sg_report_appendf(b, err, "</table>\n");
}

typedef struct tally {
    size_t shards, through, failed, rolled_back;
} tally;

static void tally_shard(tally *t, const sg_journal_shard *s)
{
    t->shards++;
    t->through += shard_through(s);
    t->failed += s->state == SG_SHARD_FAILED;
    t->rolled_back += s->state == SG_SHARD_ROLLED_BACK;
}

static int append_summary(sg_buf *b, const sg_journal *j, sg_error *err)
{
    tally all = {0};
    int rc;
    for (size_t i = 0; i < j->nshards; i++)
        tally_shard(&all, &j->shards[i]);
    rc =
        sg_report_appendf(b, err,
                          "<h2>Summary</h2>\n<p>%zu shard%s: %zu done, %zu failed, %zu rolled "
                          "back, %zu not finished.</p>\n<table>\n<tr><th>stage</th><th>state</th>"
                          "<th>started</th><th>finished</th><th>shards</th><th>done</th>"
                          "<th>failed</th><th>rolled back</th></tr>\n",
                          all.shards, all.shards == 1 ? "" : "s", all.through, all.failed,
                          all.rolled_back, all.shards - all.through - all.failed - all.rolled_back);
    for (size_t st = 0; st < j->nstages && rc == 0; st++) {
        const sg_journal_stage *stage = &j->stages[st];
        const char *started = stage->started_at[0] ? stage->started_at : DASH,
                   *finished = stage->finished_at[0] ? stage->finished_at : DASH;
        tally t = {0};
        for (size_t i = 0; i < j->nshards; i++)
            if (j->shards[i].stage == st)
                tally_shard(&t, &j->shards[i]);
        if ((rc = put(b, "<tr><td>", stage->name, "</td>", err)) < 0 ||
            (rc = put(b, "<td>", sg_stage_state_name(stage->state), "</td>", err)) < 0 ||
            (rc = sg_report_appendf(b, err, "<td>%s</td><td>%s</td>", started, finished)) < 0)
            break;
        rc = sg_report_appendf(b, err,
                               "<td class=\"n\">%zu</td><td class=\"n\">%zu</td>"
                               "<td class=\"n\">%zu</td><td class=\"n\">%zu</td></tr>\n",
                               t.shards, t.through, t.failed, t.rolled_back);
    }
    return rc < 0 ? rc : sg_report_appendf(b, err, "</table>\n");
}

/* ---- timeline ---- */

/* Pixels of the drawing: names on the left, the time axis below. */
#define LABEL_W 170
#define PLOT_W 780
#define ROW_H 20
#define BAR_H 14
#define TOP 6
#define AXIS_H 24

typedef enum { BAR_NONE, BAR_OK, BAR_FAILED, BAR_RUNNING } bar_result;

static const char *const bar_result_names[] = {"", "ok", "failed", "running"};

typedef struct bar {
    double start, seconds; /* from the run's start */
    bar_result result;
} bar;

/* Where gate g of s sits, in seconds from origin. A gate that has not
 * finished runs until the journal's last update. A start time the journal
 * lacks is taken to be where the gate before ended (*prev_end). */
static bar gate_bar(const sg_journal_shard *s, sg_gate g, int64_t origin, int64_t updated,
                    double *prev_end)
{
    const sg_journal_gate_entry *e = &s->gates[g];
    int64_t started = parse_time(e->started_at);
    bar r = {0};
    if (!e->ran && started < 0)
        return r;
    r.start = started < 0 ? *prev_end : (double)(started > origin ? started - origin : 0);
    if (e->ran) {
        r.seconds = (double)e->ms / 1000;
        r.result = e->rc != 0 || (s->has_failure && s->failure.gate == g) ? BAR_FAILED : BAR_OK;
    } else {
        r.seconds = updated > started ? (double)(updated - started) : 0;
        r.result = BAR_RUNNING;
    }
    *prev_end = r.start + r.seconds;
    return r;
}

/* A step of 1, 2 or 5 times a power of ten that gives at most ten ticks. */
static double tick_step(double span)
{
    static const double mantissa[] = {1, 2, 5};
    for (double p = 1;; p *= 10)
        for (size_t i = 0; i < 3; i++)
            if (span / (mantissa[i] * p) <= 10)
                return mantissa[i] * p;
}

static int append_bar(sg_buf *b, const sg_journal_shard *s, sg_gate g, const bar *r, double x0,
                      double scale, double y, sg_error *err)
{
    const char *gate = sg_gate_name(g), *result = bar_result_names[r->result];
    const sg_journal_gate_entry *e = &s->gates[g];
    /* A gate of a few milliseconds still gets a visible sliver. */
    double width = r->seconds * scale < 1 ? 1 : r->seconds * scale;
    int rc;
    if ((rc = sg_report_appendf(b, err, "<rect class=\"gate gate-%s result-%s\" data-shard=\"",
                                gate, result)) < 0 ||
        (rc = put(b, "", s->name, "\"", err)) < 0 ||
        (rc = sg_report_appendf(b, err,
                                " data-gate=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                                "height=\"%d\">",
                                gate, x0 + r->start * scale, y, width, BAR_H)) < 0 ||
        (rc = put(b, "<title>", s->name, ": ", err)) < 0)
        return rc;
    if (r->result == BAR_RUNNING)
        rc = sg_report_appendf(b, err, "%s, no result after %.0f s", gate, r->seconds);
    else
        rc = sg_report_appendf(b, err, "%s, %" PRIu64 ".%03" PRIu64 " s, %s", gate, e->ms / 1000,
                               e->ms % 1000, result);
    if (rc == 0 && r->result == BAR_FAILED && e->message[0])
        rc = put(b, "\n", e->message, "", err);
    return rc < 0 ? rc : sg_report_appendf(b, err, "</title></rect>\n");
}

static int append_timeline(sg_buf *b, const sg_journal *j, sg_error *err)
{
    int64_t origin = parse_time(j->started_at), updated = parse_time(j->updated_at);
    size_t rows = j->nstages + j->nshards;
    double span = 1, step, scale, y = TOP;
    int height = TOP + (int)rows * ROW_H + AXIS_H, rc;
    if (origin < 0)
        origin = updated;
    for (size_t i = 0; i < j->nshards; i++) {
        double prev_end = 0;
        for (int g = 0; g < SG_GATE_COUNT; g++) {
            bar r = gate_bar(&j->shards[i], (sg_gate)g, origin, updated, &prev_end);
            if (r.result != BAR_NONE && r.start + r.seconds > span)
                span = r.start + r.seconds;
        }
    }
    /* The axis ends at a tick: the span rounded up to a whole step. */
    step = tick_step(span);
    span = step * (double)(int64_t)((span + step - 1e-9) / step);
    scale = PLOT_W / span;
    rc = sg_report_appendf(
        b, err,
        "<h2>Timeline</h2>\n<p>Seconds from the start of the run; a row per shard, a bar per "
        "gate (snapshot, test-restore, apply, verify).</p>\n<p><span class=\"key result-ok\">"
        "</span>passed<span class=\"key result-failed\"></span>failed<span class=\"key "
        "result-running\"></span>no result (running, or stopped)</p>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"%d\" "
        "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"timeline of the run\">\n",
        LABEL_W + PLOT_W + 10, height, LABEL_W + PLOT_W + 10, height);
    for (double t = 0; t <= span + 1e-9 && rc == 0; t += step) {
        double x = LABEL_W + t * scale;
        rc = sg_report_appendf(b, err,
                               "<line class=\"tick\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" "
                               "y2=\"%d\"/><text class=\"tick\" x=\"%.1f\" y=\"%d\" "
                               "text-anchor=\"middle\">%.0f s</text>\n",
                               x, TOP, x, height - AXIS_H + 4, x, height - 6, t);
    }
    for (size_t st = 0; st < j->nstages && rc == 0; st++) {
        rc = sg_report_appendf(b, err, "<text class=\"stage\" x=\"4\" y=\"%.0f\">", y + BAR_H - 2);
        if (rc == 0)
            rc = put(b, "", j->stages[st].name, "</text>\n", err);
        y += ROW_H;
        for (size_t i = 0; i < j->nshards && rc == 0; i++) {
            const sg_journal_shard *s = &j->shards[i];
            double prev_end = 0;
            if (s->stage != st)
                continue;
            if ((rc = sg_report_appendf(b, err,
                                        "<text x=\"%d\" y=\"%.0f\" "
                                        "text-anchor=\"end\">",
                                        LABEL_W - 6, y + BAR_H - 2)) < 0 ||
                (rc = put(b, "", s->name, "</text>\n", err)) < 0)
                break;
            for (int g = 0; g < SG_GATE_COUNT && rc == 0; g++) {
                bar r = gate_bar(s, (sg_gate)g, origin, updated, &prev_end);
                if (r.result != BAR_NONE)
                    rc = append_bar(b, s, (sg_gate)g, &r, LABEL_W, scale, y + (ROW_H - BAR_H) / 2.0,
                                    err);
            }
            y += ROW_H;
        }
    }
    return rc < 0 ? rc : sg_report_appendf(b, err, "</svg>\n");
}

/* ---- shards ---- */

static const char *gate_outcome(const sg_journal_shard *s, sg_gate g)
{
    if (!s->gates[g].ran)
        return s->gates[g].started_at[0] ? "no result" : "not run";
    return s->gates[g].rc == 0 ? "passed" : "failed";
}

/* Twelve digits tell two fingerprints apart at a glance; the whole one is
 * in the tooltip. */
static int append_fingerprint_code(sg_buf *b, const char *hex, sg_error *err)
{
    char head[13];
    int rc = put(b, "<code title=\"", hex, "\">", err);
    snprintf(head, sizeof(head), "%s", hex);
    return rc < 0 ? rc : put(b, "", head, "</code>", err);
}

static int append_fingerprint(sg_buf *b, const sg_journal_shard *s, sg_error *err)
{
    bool equal;
    int rc;
    if (!s->rehearsal_fingerprint[0] || !s->live_fingerprint[0])
        return sg_report_appendf(b, err, "<td>" DASH "</td>");
    equal = strcmp(s->rehearsal_fingerprint, s->live_fingerprint) == 0;
    if ((rc = sg_report_appendf(b, err, "%s",
                                equal ? "<td>equal " : "<td class=\"failure\">rehearsal ")) < 0 ||
        (rc = append_fingerprint_code(b, s->rehearsal_fingerprint, err)) < 0)
        return rc;
    if (!equal && ((rc = sg_report_appendf(b, err, ", live ")) < 0 ||
                   (rc = append_fingerprint_code(b, s->live_fingerprint, err)) < 0))
        return rc;
    return sg_report_appendf(b, err, "</td>");
}

static int append_shard_row(sg_buf *b, const sg_journal *j, const sg_journal_shard *s,
                            sg_error *err)
{
    const char *restore = gate_outcome(s, SG_GATE_TEST_RESTORE);
    char size[32];
    int rc;
    if ((rc = put(b, "<tr><td>", s->name, "</td>", err)) < 0 ||
        (rc = put(b, "<td>", j->stages[s->stage].name, "</td>", err)) < 0 ||
        (rc = put(b, "<td>", sg_shard_state_name(s->state), "</td>", err)) < 0)
        return rc;
    if (s->gates[SG_GATE_APPLY].ran)
        rc = sg_report_appendf(b, err, "<td>%" PRId64 ARROW "%" PRId64 " (%zu applied)</td>",
                               s->from_version, s->to_version, s->applied);
    else
        rc = sg_report_appendf(b, err, "<td>" DASH "</td>");
    if (rc < 0)
        return rc;
    if (s->snapshot_id[0]) {
        bytes_text(size, s->snapshot_bytes);
        rc = put(b, "<td><code>", s->snapshot_id, "</code>", err);
        if (rc == 0)
            rc = sg_report_appendf(b, err, " (%s)</td>", size);
    } else {
        rc = sg_report_appendf(b, err, "<td>" DASH "</td>");
    }
    if (rc < 0 || (rc = sg_report_appendf(b, err, "<td>%s</td>", restore)) < 0 ||
        (rc = append_fingerprint(b, s, err)) < 0)
        return rc;
    /* Live tables are compared only on a quiesced shard; a verify that
     * passed without any was not asked to. */
    if (s->tables_verified)
        rc = sg_report_appendf(b, err, "<td class=\"n\">%zu</td></tr>\n", s->tables_verified);
    else if (s->gates[SG_GATE_VERIFY].ran && s->gates[SG_GATE_VERIFY].rc == 0)
        rc = sg_report_appendf(b, err, "<td>not compared</td></tr>\n");
    else
        rc = sg_report_appendf(b, err, "<td>" DASH "</td></tr>\n");
    return rc;
}

/* Which comparisons were made where, and how many: the test restore's on
 * the snapshot's data, the verify gate's on the live shard. */
static int append_comparisons(sg_buf *b, const sg_journal *j, sg_error *err)
{
    size_t restored = 0, restored_ok = 0, fingerprints = 0, equal = 0, tables = 0, shards = 0;
    for (size_t i = 0; i < j->nshards; i++) {
        const sg_journal_shard *s = &j->shards[i];
        const sg_journal_gate_entry *g = &s->gates[SG_GATE_TEST_RESTORE];
        restored += g->ran;
        restored_ok += g->ran && g->rc == 0;
        if (s->rehearsal_fingerprint[0] && s->live_fingerprint[0]) {
            fingerprints++;
            equal += strcmp(s->rehearsal_fingerprint, s->live_fingerprint) == 0;
        }
        tables += s->tables_verified;
        shards += s->tables_verified > 0;
    }
    return sg_report_appendf(
        b, err,
        "<h2>Comparisons</h2>\n<table>\n"
        "<tr><th>gate</th><th>on</th><th>compared</th><th>made</th></tr>\n"
        "<tr><td>test-restore</td><td>the snapshot's data, in a sandbox</td><td>the restored "
        "tables with the snapshot's manifest; each table before and after the rehearsal of "
        "the migrations</td><td>%zu shard%s, %zu passed</td></tr>\n"
        "<tr><td>verify</td><td>the live shard</td><td>its schema fingerprint with the "
        "rehearsal's</td><td>%zu shard%s, %zu equal</td></tr>\n"
        "<tr><td>verify</td><td>the live shard, when quiesced</td><td>its tables with the "
        "snapshot's rows</td><td>%zu table%s on %zu shard%s</td></tr>\n</table>\n",
        restored, restored == 1 ? "" : "s", restored_ok, fingerprints, fingerprints == 1 ? "" : "s",
        equal, tables, tables == 1 ? "" : "s", shards, shards == 1 ? "" : "s");
}

static int append_shards(sg_buf *b, const sg_journal *j, sg_error *err)
{
    int rc = sg_report_appendf(b, err,
                               "<h2>Shards</h2>\n<table>\n<tr><th>shard</th><th>stage</th>"
                               "<th>state</th><th>versions</th><th>snapshot</th>"
                               "<th>test restore</th><th>fingerprint</th>"
                               "<th>tables vs snapshot</th></tr>\n");
    for (size_t i = 0; i < j->nshards && rc == 0; i++)
        rc = append_shard_row(b, j, &j->shards[i], err);
    return rc < 0 ? rc : sg_report_appendf(b, err, "</table>\n");
}

/* ---- migrations ---- */

/* Whether shard s went from below version v to at least v. */
static bool shard_got(const sg_journal_shard *s, int64_t v)
{
    return s->gates[SG_GATE_APPLY].ran && s->from_version < v && v <= s->to_version;
}

static int append_set_migrations(sg_buf *b, const sg_journal *j, const sg_migration_set *set,
                                 sg_error *err)
{
    size_t listed = 0;
    int rc = 0;
    for (size_t m = 0; m < set->count && rc == 0; m++) {
        const sg_migration *mig = &set->items[m];
        size_t applied = 0, rolled_back = 0;
        for (size_t i = 0; i < j->nshards; i++) {
            if (!shard_got(&j->shards[i], mig->version))
                continue;
            if (j->shards[i].state == SG_SHARD_ROLLED_BACK)
                rolled_back++;
            else
                applied++;
        }
        if (!applied && !rolled_back)
            continue;
        if (listed++ == 0 && (rc = sg_report_appendf(b, err,
                                                     "<table>\n<tr><th>version</th><th>file</th>"
                                                     "<th>mode</th><th>applied to</th>"
                                                     "<th>rolled back on</th></tr>\n")) < 0)
            break;
        if ((rc = sg_report_appendf(b, err, "<tr><td class=\"n\">%" PRId64 "</td>", mig->version)) <
                0 ||
            (rc = put(b, "<td><code>", mig->file, "</code></td><td>", err)) < 0 ||
            (rc = put(b, "", sg_migration_mode_name(mig->mode), "", err)) < 0 ||
            (mig->bluegreen_table && (rc = put(b, " ", mig->bluegreen_table, "", err)) < 0))
            break;
        rc = sg_report_appendf(b, err,
                               "</td><td class=\"n\">%zu</td><td class=\"n\">%zu</td></tr>\n",
                               applied, rolled_back);
    }
    if (rc == 0)
        rc = sg_report_appendf(b, err, "%s", listed ? "</table>\n" : "<p>None.</p>\n");
    return rc;
}

typedef struct version_step {
    int64_t from, to;
} version_step;

static int step_cmp(const void *a, const void *b)
{
    const version_step *x = a, *y = b;
    if (x->from != y->from)
        return x->from < y->from ? -1 : 1;
    return x->to < y->to ? -1 : x->to > y->to;
}

/* Without the migration files, what the journal knows: each shard's
 * versions before and after its apply, counted by pair. */
static int append_journal_migrations(sg_buf *b, const sg_journal *j, sg_error *err)
{
    version_step *steps = NULL;
    size_t n = 0;
    int rc = 0;
    if (j->nshards && !(steps = sg_calloc(j->nshards, sizeof(*steps)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < j->nshards; i++)
        if (j->shards[i].gates[SG_GATE_APPLY].ran)
            steps[n++] = (version_step){j->shards[i].from_version, j->shards[i].to_version};
    if (!n) {
        rc = sg_report_appendf(b, err, "<p>None.</p>\n");
        goto done;
    }
    qsort(steps, n, sizeof(*steps), step_cmp);
    rc = sg_report_appendf(b, err,
                           "<p>Versions from the journal (the migration files were not "
                           "given).</p>\n<table>\n<tr><th>versions</th><th>shards</th>"
                           "</tr>\n");
    for (size_t i = 0, k; i < n && rc == 0; i = k) {
        for (k = i; k < n && step_cmp(&steps[k], &steps[i]) == 0; k++)
            ;
        rc = sg_report_appendf(
            b, err, "<tr><td>%" PRId64 ARROW "%" PRId64 "</td><td class=\"n\">%zu</td></tr>\n",
            steps[i].from, steps[i].to, k - i);
    }
    if (rc == 0)
        rc = sg_report_appendf(b, err, "</table>\n");
done:
    free(steps);
    return rc;
}

/* What a blue-green step that locks the table did, for a sentence; NULL
 * for the steps that do not lock it. */
static const char *lock_step_verb(const char *step)
{
    if (strcmp(step, sg_bluegreen_step_name(SG_BLUEGREEN_CUT_OVER)) == 0)
        return "cut over";
    if (strcmp(step, sg_bluegreen_step_name(SG_BLUEGREEN_SWAPPED_BACK)) == 0)
        return "swapped back";
    return NULL;
}

/* The blue-green steps that lock the table, a line each: how long the
 * live table was blocked is what a reader of a blue-green change asks. */
static int append_bluegreen(sg_buf *b, const sg_journal *j, sg_error *err)
{
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; i < j->nshards && rc == 0; i++) {
        const sg_journal_shard *s = &j->shards[i];
        for (size_t k = 0; k < s->nbluegreen && rc == 0; k++) {
            const sg_journal_bluegreen *e = &s->bluegreen[k];
            const char *what = lock_step_verb(e->step);
            if (!what)
                continue;
            if (n++ == 0 && (rc = sg_report_appendf(b, err,
                                                    "<p>Blue-green cut-overs and swaps back:</p>\n"
                                                    "<ul>\n")) < 0)
                break;
            if ((rc = put(b, "<li>", s->name, ": ", err)) < 0 ||
                (rc = sg_report_appendf(b, err, "v%" PRId64 " %s", e->version, what)) < 0 ||
                (rc = put(b, " at ", e->at, "", err)) < 0)
                break;
            if (e->lock_ms >= 0)
                rc = sg_report_appendf(b, err, ", table locked %.1f ms", e->lock_ms);
            if (rc == 0)
                rc = sg_report_appendf(b, err, "</li>\n");
        }
    }
    if (rc == 0 && n)
        rc = sg_report_appendf(b, err, "</ul>\n");
    return rc;
}

static int append_migrations(sg_buf *b, const sg_journal *j, const sg_migration_set *set,
                             sg_error *err)
{
    int rc = sg_report_appendf(b, err, "<h2>Migrations applied</h2>\n");
    if (rc == 0)
        rc = set ? append_set_migrations(b, j, set, err) : append_journal_migrations(b, j, err);
    return rc < 0 ? rc : append_bluegreen(b, j, err);
}

/* ---- failures ---- */

static int append_failures(sg_buf *b, const sg_journal *j, sg_error *err)
{
    size_t n = 0;
    int rc = sg_report_appendf(b, err, "<h2>Failures</h2>\n");
    for (size_t i = 0; i < j->nshards && rc == 0; i++) {
        const sg_journal_shard *s = &j->shards[i];
        const char *message;
        sg_gate gate;
        int code;
        if (!shard_failure(&gate, &code, &message, s))
            continue;
        if (n++ == 0 && (rc = sg_report_appendf(b, err,
                                                "<table>\n<tr><th>shard</th><th>gate"
                                                "</th><th>error</th><th>message</th>"
                                                "</tr>\n")) < 0)
            break;
        if ((rc = put(b, "<tr><td>", s->name, "</td>", err)) < 0 ||
            (rc = put(b, "<td>", sg_gate_name(gate), "</td>", err)) < 0 ||
            (rc = put(b, "<td>", sg_error_class(code), "</td>", err)) < 0)
            break;
        rc = put(b, "<td class=\"failure\">", message, "</td></tr>\n", err);
    }
    if (rc == 0)
        rc = sg_report_appendf(b, err, "%s", n ? "</table>\n" : "<p>None.</p>\n");
    return rc;
}

int sg_run_write_html(const sg_journal *j, const sg_migration_set *set, const char *path,
                      sg_error *err)
{
    sg_buf b = {0};
    int rc;
    if ((rc = append_head(&b, j, err)) < 0 || (rc = append_summary(&b, j, err)) < 0 ||
        (rc = append_timeline(&b, j, err)) < 0 || (rc = append_shards(&b, j, err)) < 0 ||
        (rc = append_comparisons(&b, j, err)) < 0 ||
        (rc = append_migrations(&b, j, set, err)) < 0 || (rc = append_failures(&b, j, err)) < 0 ||
        (rc = sg_report_appendf(&b, err, "</body>\n</html>\n")) < 0)
        goto done;
    rc = sg_file_replace(path, b.data, b.len, err);
done:
    sg_buf_free(&b);
    return rc;
}
