/* The report files of a pipeline run, for monitoring and CI: a Prometheus
 * textfile (`--metrics-file`) and a JUnit XML file (`--junit`). Both are
 * rendered from the run's journal, the model `--json` prints, so the three
 * agree; both replace their file atomically (sg_file_replace), and SG_E_IO
 * names the file when it cannot be written. */
#ifndef SG_PIPELINE_REPORT_H
#define SG_PIPELINE_REPORT_H

#include "common/error.h"
#include "pipeline/journal.h"

/* Gauges labelled by pipeline and run_id: shardgate_run_status (1 for the
 * run's status, 0 for the others), and per shard shardgate_run_shard_success,
 * shardgate_run_gate_seconds (per gate that ran), shardgate_run_snapshot_bytes
 * (with a snapshot), shardgate_run_restore_seconds (when the test restore
 * passed) and shardgate_run_schema_version (once the apply gate ran). */
int sg_run_write_metrics(const sg_journal *j, const char *path, sg_error *err);

/* A <testsuite> per stage and a <testcase> per shard and gate, all four of
 * every shard of the journal: a failed gate has a <failure> of the error's
 * class and message, a gate not run <skipped/>. Times are the gates' own, in
 * seconds; a suite's is the sum of its cases'. */
int sg_run_write_junit(const sg_journal *j, const char *path, sg_error *err);

#endif
