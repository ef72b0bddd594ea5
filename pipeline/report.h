/* The report files of a pipeline run, for monitoring, CI and people: a
 * Prometheus textfile (`--metrics-file`), a JUnit XML file (`--junit`) and
 * an HTML page (`--report`). All are rendered from the run's journal, the
 * model `--json` prints, so they agree; each replaces its file atomically
 * (sg_file_replace), and SG_E_IO names the file when it cannot be written. */
#ifndef SG_PIPELINE_REPORT_H
#define SG_PIPELINE_REPORT_H

#include "common/error.h"
#include "pipeline/journal.h"
#include "stages/migration.h"

/* Gauges labelled by pipeline and run_id: shardgate_run_status (1 for the
 * run's status, 0 for the others), and per shard shardgate_run_shard_success,
 * shardgate_run_gate_seconds (per gate that ran), shardgate_run_snapshot_bytes
 * (with a snapshot), shardgate_run_restore_seconds (when the test restore
 * passed), shardgate_run_schema_version (once the apply gate ran) and
 * shardgate_run_bluegreen_lock_seconds (per blue-green cut-over or swap
 * back, by version). */
int sg_run_write_metrics(const sg_journal *j, const char *path, sg_error *err);

/* A <testsuite> per stage and a <testcase> per shard and gate, all four of
 * every shard of the journal: a failed gate has a <failure> of the error's
 * class and message, a gate not run <skipped/>. Times are the gates' own, in
 * seconds; a suite's is the sum of its cases'. */
int sg_run_write_junit(const sg_journal *j, const char *path, sg_error *err);

/* One self-contained page (inline CSS and SVG, no script, nothing fetched),
 * also well-formed XHTML: the run's facts and a summary by stage; an SVG
 * timeline with a row per shard and a <rect class="gate gate-GATE
 * result-ok|failed|running" data-shard data-gate> per gate that started,
 * in seconds from the run's start; per shard its versions, snapshot and the
 * comparisons made (test restore, fingerprint, tables against the
 * snapshot); the migrations applied, from set (with its files and modes) or,
 * when set is NULL, from the journal's versions; and the failures with their
 * messages. */
int sg_run_write_html(const sg_journal *j, const sg_migration_set *set, const char *path,
                      sg_error *err);

#endif
