#!/usr/bin/env bash
# Benchmark shardgate's blue-green apply on a throwaway PostgreSQL 15 server,
# with 4 pgbench writer connections changing the table all along: the
# backfill's rate with and without the writers, the writers' throughput
# during the backfill against before it, the lock held at each cut-over and
# swap back, and the longest writer stall against a plain ALTER TABLE ...
# TYPE of the same table under the same writers; prints a markdown report
# on stdout.
#
# Usage: bench/bluegreen.sh [--runs N] [--build-dir DIR | --shardgate BIN]
#                           [--no-install] [--rows N] [--cutovers N]
#                           [--cutover-rows N] [--baseline S] [--key-changes W]
#
#   --runs N           rounds of the backfill and ALTER measurements; the
#                      report shows medians (3)
#   --build-dir DIR    where the release build of shardgate goes (build-release)
#   --shardgate BIN    measure this shardgate binary instead of building one
#   --no-install       skip ci/install-deps.sh
#   --rows N           rows of the table the backfill copies (2000000)
#   --cutovers N       cut-overs, each swapped back, for the lock times (20)
#   --cutover-rows N   rows of the table those run on (100000)
#   --baseline S       seconds of writers alone before each migration (10)
#   --key-changes W    weight of the key-changing update in the writers' mix,
#                      against 1 insert, 2 updates and 1 delete (1; 0: none)
#
# See "Blue-green apply" in bench/README.md for what is measured and how.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
# EPOCHREALTIME and awk's numbers with a decimal point, whatever the locale.
export LC_ALL=C

rows=2000000
cutovers=20
cutover_rows=100000
baseline=10
key_changes=1
# The issue's targets.
rate_target=50000
writers_target=0.70
lock_target_ms=200

parse_options --shardgate --rows --cutovers --cutover-rows --baseline --key-changes -- "$@"
require_positive "--runs, --rows, --cutovers, --cutover-rows and --baseline take" "$runs" \
    "$rows" "$cutovers" "$cutover_rows" "$baseline"
case "$key_changes" in
'' | *[!0-9]*)
    echo "bench: --key-changes takes a weight of 0 or more, not \"$key_changes\"" >&2
    exit 2
    ;;
esac

# --- dependencies ------------------------------------------------------------

[ "$install" = 0 ] || "$root/ci/install-deps.sh"
require_tools psql pgbench cmake

resolve_build_paths
make_work_dir shardgate-bench-bluegreen

# --- release build -----------------------------------------------------------

if [ -z "$sg" ]; then
    build_release_or_die shardgate
    sg=$build_dir/shardgate
fi

# --- server ----------------------------------------------------------------------

start_server
# q and every psql without -d talk to the maintenance database.
export PGDATABASE=postgres

# Autovacuum would visit the tables, the new one above all, at moments of its
# own choosing; every database here is a fresh copy of a frozen, analyzed
# template, and lives for one measurement.
q -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null

# --- the table, the migration and the writers -----------------------------------

# make_template NAME ROWS: a database holding t with ROWS narrow rows, ids 1
# to ROWS, frozen and analyzed, and the sequence that key-changing updates
# draw new keys from (far above every id an insert picks), copied by
# CREATE DATABASE ... TEMPLATE for each measurement.
make_template() {
    log "making the table: $2 rows in database $1"
    fresh_db "$1"
    q -d "$1" -c "CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL, b int NOT NULL, c text)" \
        -c "INSERT INTO t SELECT g, g % 1000, g % 97, md5(g::text)
            FROM generate_series(1, $2) g" \
        -c "CREATE SEQUENCE t_moved START 1000000000000" \
        -c "VACUUM (FREEZE, ANALYZE) t"
}

# clone NAME TEMPLATE: NAME anew, a copy of TEMPLATE.
clone() {
    q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1" \
        -c "CREATE DATABASE $1 TEMPLATE $2"
}

drop_db() {
    q -c "DROP DATABASE IF EXISTS $1"
}

migrations=$work/migrations
mkdir -p "$migrations"
cat >"$migrations/0001_a_bigint.sql" <<'EOF'
-- shardgate:mode=bluegreen table=public.t
-- shardgate:up
ALTER TABLE t ALTER COLUMN a TYPE bigint;
-- shardgate:down
ALTER TABLE t ALTER COLUMN a TYPE integer;
EOF
alter_sql="ALTER TABLE t ALTER COLUMN a TYPE bigint"

# The writers' mix, one statement per transaction on a random row, none of
# which can fail: an insert of an id up to twice the table's (half of them
# exist: nothing happens), an update of two columns, a delete, and an update
# that moves a row to a new key from the sequence.
writers=$work/writers
mkdir -p "$writers"
cat >"$writers/insert.sql" <<'EOF'
\set id random(1, 2 * :rows)
INSERT INTO t (id, a, b, c) VALUES (:id, :id % 1000, :id % 97, md5(:id::text))
    ON CONFLICT (id) DO NOTHING;
EOF
cat >"$writers/update.sql" <<'EOF'
\set id random(1, :rows)
UPDATE t SET b = b + 1, c = md5(c) WHERE id = :id;
EOF
cat >"$writers/delete.sql" <<'EOF'
\set id random(1, :rows)
DELETE FROM t WHERE id = :id;
EOF
cat >"$writers/move_key.sql" <<'EOF'
\set id random(1, :rows)
UPDATE t SET id = nextval('t_moved') WHERE id = :id;
EOF
mix=(-f "$writers/insert.sql@1" -f "$writers/update.sql@2" -f "$writers/delete.sql@1")
[ "$key_changes" = 0 ] || mix+=(-f "$writers/move_key.sql@$key_changes")

writers_pid=
# writers_start DB ROWS LOG: starts 4 pgbench writer connections on DB (a
# table of about ROWS ids), each transaction logged to LOG.* (pgbench
# --log: "client transaction latency-us script epoch-s us"), errors to
# LOG.err; they run until writers_stop.
writers_start() {
    rm -f "$3".*
    pgbench -M simple -n -c 4 -j 2 -T 86400 -D rows="$2" "${mix[@]}" \
        --log --log-prefix="$3" "$1" >"$3.out" 2>"$3.err" &
    writers_pid=$!
}

# writers_stop: ends pgbench. It has no way to be told to stop before -T
# ends; killed, it loses the per-transaction lines still in its stdio
# buffer, the last few ms, which is why every measurement waits a little
# after its window before stopping it.
writers_stop() {
    [ -n "$writers_pid" ] || return 0
    kill -TERM "$writers_pid" 2>/dev/null || true
    wait "$writers_pid" 2>/dev/null || true
    writers_pid=
}

stop_extra_servers() {
    writers_stop
}

# writers_failed LOG: the first error pgbench wrote (a writer that fails
# aborts its client), or nothing.
writers_failed() {
    grep -m 1 . "$1.err" || true
}

now() {
    printf '%s' "$EPOCHREALTIME"
}

# stamp: each line of stdin with the time it arrived: the log lines carry
# no time of their own.
stamp() {
    local line
    while IFS= read -r line; do
        printf '%s %s\n' "$EPOCHREALTIME" "$line"
    done
}

# sg_run LOG COMMAND...: runs a shardgate command, its stdout into
# $work/out and each log line into LOG, stamped; sets rc, and started and
# ended (epoch s). Its first log line goes to $work/err for step_failed.
sg_run() {
    local logfile=$1
    shift
    rc=0
    started=$(now)
    "$@" 2>&1 >"$work/out" | stamp >"$logfile" || rc=$?
    ended=$(now)
    stop_if_interrupted "$rc"
    grep -m 1 -E 'error: ' "$logfile" | cut -d ' ' -f 2- >"$work/err" || true
}

sg_migrate() {
    sg_run "$1" "$sg" migrate --dsn "dbname=$2" --migrations "$migrations" --verbose
}

sg_revert() {
    sg_run "$1" "$sg" revert --dsn "dbname=$2" --migrations "$migrations" --to 0 --verbose
}

# copy_line LOG: "rows seconds rows/s end" of the backfill's last line
# ("copied N rows of T in S s (R rows/s)"), end the time it was logged.
copy_line() {
    awk 'match($0, /: copied [0-9]+ rows of [^ ]+ in [0-9.]+ s \([0-9]+ rows\/s\)$/) {
            split(substr($0, RSTART), f, " ")
            sub(/\(/, "", f[10])
            print f[3], f[8], f[10], $1
        }' "$1" | tail -n 1
}

# lock_waits LOG: chunks that gave way to a writer holding one of their rows.
lock_waits() {
    grep -c 'chunk waited too long for a row lock' "$1" || true
}

# tps LOG FROM TO: writer transactions per second that ended between FROM
# and TO (epoch s).
tps() {
    cat "$1".[0-9]* | awk -v a="$2" -v b="$3" 'NF >= 6 { t = $5 + $6 / 1e6 }
        NF >= 6 && t >= a && t < b { n++ } END { printf "%.0f", n / (b - a) }'
}

# stall LOG FROM TO: "ms start" of the longest writer transaction that ended
# between FROM and TO, and when it began.
stall() {
    cat "$1".[0-9]* | awk -v a="$2" -v b="$3" 'NF >= 6 { t = $5 + $6 / 1e6 }
        NF >= 6 && t >= a && t <= b && $3 > max { max = $3; at = t - $3 / 1e6 }
        END { printf "%.1f %.3f", max / 1000, at }'
}

# slow LOG FROM TO MS: writer transactions that ended between FROM and TO
# and took MS ms or more.
slow() {
    cat "$1".[0-9]* | awk -v a="$2" -v b="$3" -v ms="$4" 'NF >= 6 { t = $5 + $6 / 1e6 }
        NF >= 6 && t >= a && t <= b && $3 >= ms * 1000 { n++ } END { print n + 0 }'
}

# events DB ACTION: "epoch-s lock-ms" of each of DB's ACTION events
# (cut-over, swap-back) in order.
events() {
    q -d "$1" -F ' ' -c "SELECT extract(epoch FROM at), detail->>'lock_ms' FROM shardgate.events
                         WHERE action = '$2' ORDER BY id"
}

# phase STALL_START STALL_MS COPY_START COPY_END CUTOVER: where the longest
# stall was: the cut-over (it began before the cut-over event was written,
# after the swap's commit, and ended at most 1 s before it), the copy (it
# began during it) or elsewhere in the change (preparing, indexes, compare).
phase() {
    awk -v s="$1" -v ms="$2" -v c0="$3" -v c1="$4" -v cut="$5" 'BEGIN {
            e = s + ms / 1000
            if (cut != "" && s <= cut && e >= cut - 1) print "cut-over"
            else if (s >= c0 && s < c1) print "backfill"
            else print "elsewhere"
        }'
}

log "making the data"
make_template bg_big "$rows"
make_template bg_small "$cutover_rows"

# --- rounds: backfill alone, under writers, and ALTER TABLE under writers ----------

results=$work/results.tsv
walls=$work/walls.tsv
: >"$results"
: >"$walls"
: >"$work/rounds.tsv"

load_start=$(load_average)
for ((run = 1; good < runs && run <= 2 * runs; run++)); do
    round_begin "$run"

    # The backfill with nothing else running.
    clone bg_alone bg_big
    checkpoint_and_sync
    sg_migrate "$work/alone.log" bg_alone
    if [ "$rc" != 0 ]; then
        step_failed alone "$run"
    else
        read -r n secs rate _ < <(copy_line "$work/alone.log") || true
        wall=$(calc 'sprintf("%.2f", e - s)' s="$started" e="$ended")
        printf 'alone\t%s\t%s\t%s\t%s\t%s\n' "$run" "$wall" "$n" "$secs" "$rate" >>"$results"
        printf 'alone\t%s\t%s\n' "$run" "$wall" >>"$walls"
        log "alone run $run: copied $n rows in $secs s ($rate rows/s), migrate $wall s"
    fi
    drop_db bg_alone

    # The same under the writers: a baseline window of writers alone, then
    # the migration, then a moment for the last transactions to be logged.
    clone bg_live bg_big
    checkpoint_and_sync
    writers_start bg_live "$rows" "$work/live"
    sleep $((baseline + 1))
    sg_migrate "$work/live.log" bg_live
    sleep 2
    writers_stop
    why=$(writers_failed "$work/live")
    if [ -n "$why" ]; then
        failed[live]=${failed[live]:-"a writer failed: $why"}
        log "live run $run: a writer failed: $why"
    elif [ "$rc" != 0 ]; then
        step_failed live "$run"
    else
        read -r n secs rate copy_end < <(copy_line "$work/live.log") || true
        copy_start=$(calc 'sprintf("%.3f", e - s)' e="$copy_end" s="$secs")
        before=$(tps "$work/live" "$(calc 'sprintf("%.3f", s - b)' s="$started" b="$baseline")" \
            "$started")
        during=$(tps "$work/live" "$copy_start" "$copy_end")
        read -r cut_at lock_ms < <(events bg_live cut-over | tail -n 1) || true
        read -r stall_ms stall_at < <(stall "$work/live" "$started" "$(calc 's + 1' s="$ended")") ||
            true
        where=$(phase "$stall_at" "$stall_ms" "$copy_start" "$copy_end" "$cut_at")
        slow100=$(slow "$work/live" "$started" "$(calc 's + 1' s="$ended")" 100)
        wall=$(calc 'sprintf("%.2f", e - s)' s="$started" e="$ended")
        printf 'live\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$wall" "$n" \
            "$secs" "$rate" "$before" "$during" "$(ratio "$during" "$before")" "$stall_ms" \
            "$lock_ms" "$(lock_waits "$work/live.log")" "$slow100" >>"$results"
        printf 'live\t%s\t%s\n' "$run" "$wall" >>"$walls"
        printf 'stall\t%s\t%s\n' "$run" "$where" >>"$work/stalls.tsv"
        log "live run $run: copied $n rows in $secs s ($rate rows/s); writers $before tps" \
            "before, $during during the copy; longest writer stall $stall_ms ms ($where);" \
            "cut-over lock $lock_ms ms; migrate $wall s"
    fi
    drop_db bg_live

    # The peer: the same change as one ALTER TABLE under the same writers
    # (a shorter window before it: its only use is to let them settle).
    clone bg_alter bg_big
    checkpoint_and_sync
    writers_start bg_alter "$rows" "$work/alter"
    sleep 3
    started=$(now)
    rc=0
    q -d bg_alter -c "$alter_sql" 2>"$work/err" || rc=$?
    ended=$(now)
    stop_if_interrupted "$rc"
    sleep 2
    writers_stop
    why=$(writers_failed "$work/alter")
    if [ -n "$why" ]; then
        failed[alter]=${failed[alter]:-"a writer failed: $why"}
        log "alter run $run: a writer failed: $why"
    elif [ "$rc" != 0 ]; then
        step_failed alter "$run"
    else
        read -r stall_ms _ < <(stall "$work/alter" "$started" "$(calc 's + 1' s="$ended")") || true
        wall=$(calc 'sprintf("%.2f", e - s)' s="$started" e="$ended")
        printf 'alter\t%s\t%s\t%s\n' "$run" "$wall" "$stall_ms" >>"$results"
        printf 'alter\t%s\t%s\n' "$run" "$wall" >>"$walls"
        log "alter run $run: ALTER TABLE took $wall s; longest writer stall $stall_ms ms"
    fi
    drop_db bg_alter

    round_end "$run"
done
warn_if_every_round_disturbed

# --- cut-overs ---------------------------------------------------------------------

# One database, the writers running all along: migrate and revert --to 0
# (which swaps the old table back and drops the new one), again and again.
log "$cutovers cut-overs, each swapped back, on $cutover_rows rows under the writers"
cut_busy_before=$(wait_quiet)
clone bg_cut bg_small
checkpoint_and_sync
writers_start bg_cut "$cutover_rows" "$work/cut"
sleep 2
cut_started=$(now)
cut_migrate_walls=$work/cut_walls
: >"$cut_migrate_walls"
for ((i = 1; i <= cutovers; i++)); do
    sg_migrate "$work/cut.log" bg_cut
    if [ "$rc" != 0 ]; then
        step_failed cutover "$i"
    else
        calc 'sprintf("%.2f\n", e - s)' s="$started" e="$ended" >>"$cut_migrate_walls"
        log "cut-over $i: $(grep -o 'the lock was held .*' "$work/cut.log" || true)"
    fi
    sg_revert "$work/revert.log" bg_cut
    [ "$rc" = 0 ] || step_failed swap_back "$i"
    [ -z "$(writers_failed "$work/cut")" ] || break
done
cut_ended=$(now)
sleep 2
writers_stop
cut_busy_after=$(background_cores)
why=$(writers_failed "$work/cut")
[ -z "$why" ] || failed[cutover]=${failed[cutover]:-"a writer failed: $why"}
events bg_cut cut-over | cut -d ' ' -f 2 >"$work/cut_locks"
events bg_cut swap-back | cut -d ' ' -f 2 >"$work/back_locks"
read -r cut_stall_ms _ < <(stall "$work/cut" "$cut_started" "$cut_ended") || true
cut_tps=$(tps "$work/cut" "$cut_started" "$cut_ended")
drop_db bg_cut

# --- report --------------------------------------------------------------------

all_walls=$walls
results=$(counted_only "$results")

# shellcheck disable=SC2034 # value reads them by name
declare -A m_wall m_secs m_rate m_before m_during m_share m_stall m_lock m_waits m_slow
step_medians "$results" alone m_wall=3 m_secs=5 m_rate=6
step_medians "$results" live m_wall=3 m_secs=5 m_rate=6 m_before=7 m_during=8 m_share=9 \
    m_stall=10 m_lock=11 m_waits=12 m_slow=13
step_medians "$results" alter m_wall=3 m_stall=4

# pct P FILE: the nearest-rank P-th percentile of the numbers in FILE: the
# smallest value with at least P % of them at or below it.
pct() {
    sort -g "$2" | awk -v p="$1" '{ v[NR] = $1 }
        END { if (NR) { r = int(p / 100 * NR); if (r < p / 100 * NR) r++; print v[r < 1 ? 1 : r] } }'
}
cut_n=$(grep -c . "$work/cut_locks" || true)
back_n=$(grep -c . "$work/back_locks" || true)

# value STEP ARRAY COLUMN FORMAT: "median (min–max)" of STEP's COLUMN in
# the printf FORMAT, or why there is none (ARRAY holds the medians).
value() {
    local -n a=$2
    if [ -n "${a[$1]:-}" ]; then
        awk -F '\t' -v s="$1" -v c="$3" '$1 == s { print $c }' "$results" | median_range "$4"
    else
        printf 'n/a (%s)' "$(no_result "$1")"
    fi
}

stall_where=$(awk -F '\t' '{ print $3 }' "$work/stalls.tsv" 2>/dev/null | sort | uniq -c |
    awk '{ n = $1; $1 = ""; printf "%s%s ×%s", sep, substr($0, 2), n; sep = ", " }' || true)

mix_text="1 insert, 2 updates, 1 delete"
[ "$key_changes" = 0 ] || mix_text+=", $key_changes key-changing update"
[ "$key_changes" -lt 2 ] || mix_text+="s"

cat <<EOF
### Results

$(report_machine) from ci/pg-server.sh; $(pgbench --version); \
$(if [ "$good" -gt 0 ]; then echo "medians of $good undisturbed rounds of $((run - 1))"; \
else echo "medians of all $((run - 1)) rounds, every one disturbed"; fi); \
load average at the start $load_start.
Table: t (id bigint primary key, a int, b int, c text), $rows rows \
($(q -d bg_big -c "SELECT pg_size_pretty(pg_total_relation_size('t'))")); \
migration: \`$alter_sql\` as \`mode=bluegreen\`, default chunk settings. \
Writers: pgbench -M simple -n -c 4 -j 2, one statement per transaction, weights $mix_text.

| measurement | median (min–max) |
|---|---:|
| backfill alone: rows/s | $(value alone m_rate 6 '%.0f') |
| backfill alone: copy s / migrate s | ${m_secs[alone]:-n/a} / ${m_wall[alone]:-n/a} |
| backfill under the writers: rows/s | $(value live m_rate 6 '%.0f') |
| backfill under the writers: copy s / migrate s | ${m_secs[live]:-n/a} / ${m_wall[live]:-n/a} |
| chunks that gave way to a writer's row lock (500 ms lock_timeout), per migration | ${m_waits[live]:-n/a} |
| writers, tps over the $baseline s before the migration | $(value live m_before 7 '%.0f') |
| writers, tps during the backfill | $(value live m_during 8 '%.0f') |
| writers during / before | $(value live m_share 9 '%.2f') |
| longest writer transaction during the whole blue-green migrate, ms | $(value live m_stall 10 '%.1f') |
| … where it fell, by round | ${stall_where:-n/a} |
| writer transactions of 100 ms or more during the migrate | ${m_slow[live]:-n/a} |
| cut-over lock of those runs, ms | $(value live m_lock 11 '%.1f') |
| ALTER TABLE under the writers: its duration, s | $(value alter m_wall 3 '%.2f') |
| ALTER TABLE under the writers: longest writer transaction, ms | $(value alter m_stall 4 '%.1f') |

Cut-overs: $cutovers migrate and \`revert --to 0\` pairs on a table of $cutover_rows rows, \
the writers running throughout ($cut_tps tps over the $(calc 'sprintf("%.0f", e - s)' s="$cut_started" e="$cut_ended") s; \
cores busy with nothing of the benchmark running: $cut_busy_before before, $cut_busy_after after).\
$([ "$cutovers" -gt 100 ] || echo " Of $cutovers runs, the nearest-rank p99 is the largest: p99 and max \
are the same run.")

| lock held, ms | runs | p50 | p99 | max |
|---|---:|---:|---:|---:|
| cut-over (migrate) | $cut_n | $(median <"$work/cut_locks" | xargs -r printf '%.1f') | $(pct 99 "$work/cut_locks") | $(sort -g "$work/cut_locks" | tail -n 1) |
| swap back (revert --to 0) | $back_n | $(median <"$work/back_locks" | xargs -r printf '%.1f') | $(pct 99 "$work/back_locks") | $(sort -g "$work/back_locks" | tail -n 1) |

Each migrate of the $cutover_rows rows took \
$(median_range '%.2f' <"$cut_migrate_walls" | grep . || echo n/a) s (median, min–max, \
of the $(grep -c . "$cut_migrate_walls") that succeeded); the longest writer transaction over \
all $cutovers pairs took ${cut_stall_ms:-n/a} ms.\
$([ -z "${failed[cutover]:-}" ] || printf ' Migrate: %s.' "$(no_result cutover)")\
$([ -z "${failed[swap_back]:-}" ] || printf ' Revert: %s.' "$(no_result swap_back)")

| target | goal | measured | verdict |
|---|---|---:|---|
$(target "backfill under 4 writers, rows/s" "≥ $rate_target" "${m_rate[live]:-}" "v >= $rate_target")
$(target "writers' throughput during the backfill / before" "≥ $writers_target" "${m_share[live]:-}" "v >= $writers_target")
$(target "cut-over lock, p99 of $cut_n, ms" "< $lock_target_ms" "$(pct 99 "$work/cut_locks")" "v < $lock_target_ms")
$(target "longest writer stall: ALTER TABLE / blue-green" "" "$(ratio "${m_stall[alter]:-}" "${m_stall[live]:-}")" "")

$(rounds_report "$all_walls" "migrate alone=alone" "migrate under writers=live" \
    "ALTER TABLE=alter")
EOF
