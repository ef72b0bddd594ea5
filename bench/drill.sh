#!/usr/bin/env bash
# Benchmark sandboxes and drills: the time to create a ready sandbox (local
# and docker), and `shardgate drill` of a pgbench database against a bare
# `shardgate restore` into an existing server and against `pg_restore -j 2`
# into a fresh cluster; prints a markdown report on stdout.
#
# Usage: bench/drill.sh [--runs N] [--build-dir DIR] [--scale N] [--no-install]
#
#   --runs N          rounds of every measurement; the report shows medians (3)
#   --build-dir DIR   where the release build of shardgate goes (build-release)
#   --scale N         pgbench scale of the database drilled (50: about 750 MB)
#   --no-install      skip ci/install-deps.sh
#
# See "Sandboxes and drills" in bench/README.md for what is measured and how.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

scale=50
# Sandboxes created and destroyed per driver and round.
sandboxes=5
db=drillbench
image=postgres:15
# Bump when the data changes, so an old database is rebuilt rather than reused.
marker_version=v1

parse_options --scale -- "$@"
require_positive "--runs and --scale take" "$runs" "$scale"
marker="shardgate drill bench: pgbench scale $scale $marker_version"

# postgres refuses to run as root; as root, the fresh clusters run as the
# postgres system user, as the local sandbox's servers do.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

fresh=
stop_extra_servers() {
    if [ -n "$fresh" ] && [ -f "$fresh/data/postmaster.pid" ]; then
        as_owner "$pgbin/pg_ctl" stop -D "$fresh/data" -m immediate >/dev/null 2>&1 || true
    fi
}

# --- dependencies ------------------------------------------------------------

[ "$install" = 0 ] || "$root/ci/install-deps.sh"
require_tools psql pgbench pg_dump pg_restore cmake curl
# The server binaries of the fresh clusters: the ones the local sandbox and
# ci/pg-server.sh use.
pgbin=/usr/lib/postgresql/15/bin
[ -x "$pgbin/initdb" ] || die "no PostgreSQL 15 server binaries in $pgbin (package postgresql-15)"
[ "$(id -u)" -ne 0 ] || command -v runuser >/dev/null || die "runuser is not installed"

# The docker steps run when dockerd answers and the image is there
# (ci/docker-service.sh start, ci/postgres-image.sh); shardgate never pulls.
docker_why=
if ! curl -sf --max-time 5 --unix-socket /var/run/docker.sock http://docker/_ping >/dev/null 2>&1; then
    docker_why="dockerd does not answer on /var/run/docker.sock"
elif ! curl -sf --max-time 5 --unix-socket /var/run/docker.sock \
    "http://docker/images/$image/json" >/dev/null 2>&1; then
    docker_why="no image $image (ci/postgres-image.sh builds one)"
fi
[ -z "$docker_why" ] || log "docker steps skipped: $docker_why"

resolve_build_paths
make_work_dir shardgate-bench-drill

# --- release build -----------------------------------------------------------

build_release_or_die shardgate sg_bench_sandbox
sg=$build_dir/shardgate
sandbox_bench=$build_dir/bench/sg_bench_sandbox

# --- server, data, snapshot and dump -------------------------------------------

start_server
# q and every psql without -d talk to the maintenance database.
export PGDATABASE=postgres

# The server gets the settings a sandbox's server runs with where they can
# change without a restart (restore/sandbox_local.c: max_wal_size 4GB,
# autovacuum off; it sets synchronous_commit and maintenance_work_mem per
# session itself), so that the drill and the bare restore load into equally
# tuned servers and the ratio measures the drill's own work.
q -c "ALTER SYSTEM SET max_wal_size = '4GB'" -c "ALTER SYSTEM SET autovacuum = off" \
    -c "SELECT pg_reload_conf()" >/dev/null

if [ "$(q -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database
              WHERE datname = '$db'")" = "$marker" ]; then
    log "reusing database $db ($marker)"
else
    log "building database $db: pgbench -i -s $scale"
    fresh_db "$db"
    pgbench -i -q -s "$scale" "$db" >"$work/pgbench.log" 2>&1 ||
        die "pgbench -i failed: $(tail -n 3 "$work/pgbench.log")"
    q -c "COMMENT ON DATABASE $db IS '$marker'"
fi
db_bytes=$(q -c "SELECT pg_database_size('$db')")
rows=$(q -d "$db" -c "SELECT sum(n_live_tup) FROM pg_stat_user_tables")

keys=$work/keys
store=$work/store
mkdir -p "$keys" "$store"
"$sg" keygen --out "$keys/drill" >/dev/null || die "shardgate keygen failed"
log "taking the snapshot and the pg_dump -Fd -j $jobs"
"$sg" snapshot --dsn "dbname=$db" --store "file://$store" --key "$keys/drill.key" \
    --jobs "$jobs" >/dev/null 2>"$work/err" || die "shardgate snapshot failed: $(grep -m 1 . "$work/err")"
pg_dump -Fd -j "$jobs" -f "$work/dump.d" "$db" || die "pg_dump failed"
stored_bytes=$(du -sb "$store" | cut -f 1)
dump_bytes=$(du -sb "$work/dump.d" | cut -f 1)
# Both are read by every round; reading them once puts the first round on
# the same warm page cache as the others.
cat "$store"/shards/*/snapshots/*/packs/* "$work/dump.d"/* >/dev/null

sg_store=(--store "file://$store" --key "$keys/drill.key" --trust "$keys/drill.pub")
# The indexes a drill checks with amcheck (restore/test_restore.c).
btree_indexes="FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't'
    AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"

# A fresh cluster as the local sandbox makes one (restore/sandbox_local.c):
# the same initdb flags, and the same server settings; a unix socket in the
# cluster's directory and no TCP listener. Timed from initdb to pg_restore
# done; the time at which the server accepted connections goes to $2.
cat >"$work/fresh.sh" <<'EOF'
set -euo pipefail
pgbin=$1 ready_file=$2 dir=$3 dump=$4 jobs=$5
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
# pg_restore ends itself on SIGINT with status 1, which bash would take as
# a plain failure (see stop_if_interrupted); waiting with the builtin lets
# these traps run, and the benchmark see 130 or 143.
trap 'exit 130' INT
trap 'exit 143' TERM
run() {
    "$@" &
    wait $!
}
start=$(date +%s.%N)
mkdir -p "$dir"
[ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
run as_owner "$pgbin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    >"$dir/initdb.log" 2>&1
as_owner setsid "$pgbin/postgres" -D "$dir/data" -c listen_addresses= \
    -c unix_socket_directories="$dir" -c port=5432 -c fsync=off -c full_page_writes=off \
    -c synchronous_commit=off -c maintenance_work_mem=512MB -c max_wal_size=4GB \
    -c autovacuum=off -c max_connections=50 -c logging_collector=off \
    </dev/null >"$dir/server.log" 2>&1 &
# The local sandbox polls its server every 10 ms.
until "$pgbin/pg_isready" -q -h "$dir" -p 5432; do
    kill -0 $! 2>/dev/null || { tail -n 5 "$dir/server.log" >&2; exit 1; }
    sleep 0.01
done
ready=$(date +%s.%N)
run psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p 5432 -U postgres -d postgres \
    -c "CREATE DATABASE restored TEMPLATE template0"
run pg_restore -j "$jobs" -h "$dir" -p 5432 -U postgres -d restored "$dump"
awk -v s="$start" -v r="$ready" 'BEGIN { printf "%.3f\n", r - s }' >"$ready_file"
EOF

# --- measuring -----------------------------------------------------------------

results=$work/results.tsv
drills=$work/drills.tsv
boxes=$work/sandboxes.tsv
: >"$results"
: >"$drills"
: >"$boxes"
: >"$work/rounds.tsv"

# measure STEP RUN COMMAND...: runs COMMAND under GNU time, its stdout into
# $work/out, and appends "step run wall machine-cpu rss-kib" to the results;
# a failure is kept (step_failed) and returns 1.
measure() {
    # shellcheck disable=SC2034 # run_timed sets cpu too, unused here
    local step=$1 run=$2 rc wall cpu rss m_before m_after
    shift 2
    checkpoint_and_sync
    m_before=$(machine_ticks)
    run_timed "$work/out" "$@"
    m_after=$(machine_ticks)
    if [ "$rc" != 0 ]; then
        step_failed "$step" "$run"
        return 1
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$step" "$run" "$wall" "$(secs $((m_after - m_before)))" \
        "$rss" >>"$results"
    log "$step run $run: $(tail -n 1 "$results" | awk -F '\t' '{ printf "wall %s s, machine CPU %s s, peak RSS %d MiB", $3, $4, $5 / 1024 }')"
}

# sandbox_round DRIVER RUN: every sandbox's ready and destroyed seconds.
sandbox_round() {
    local driver=$1 run=$2 rc=0
    sync
    "$sandbox_bench" --driver "$driver" --count "$sandboxes" >"$work/out" 2>"$work/err" || rc=$?
    stop_if_interrupted "$rc"
    if [ "$rc" != 0 ]; then
        [ -n "${failed[box_$driver]:-}" ] ||
            failed[box_$driver]=$(grep -m 1 . "$work/err" || echo "failed")
        log "$driver sandboxes run $run failed: ${failed[box_$driver]}"
        return 0
    fi
    awk -v d="$driver" -v r="$run" '$1 ~ /^[0-9]+$/ { printf "%s\t%s\t%s\t%s\n", d, r, $2, $3 }' \
        "$work/out" >>"$boxes"
    log "$driver sandboxes run $run: $(awk '$1 == "median" { printf "median ready %s s, destroyed %s s", $2, $3 }' "$work/out")"
}

# The drill's own breakdown, from the shard of its --json result.
drill_breakdown() {
    local step=$1 run=$2
    psql -X -v ON_ERROR_STOP=1 -qAt -F $'\t' -d postgres -v j="$(cat "$work/out")" <<EOF >>"$drills"
SELECT '$step', $run, s->>'seconds', s->>'verify_seconds', s->>'sandbox_seconds',
       s->>'restore_seconds', s->>'indexes_checked'
FROM (SELECT :'j'::json -> 'shards' -> 0 AS s) x
EOF
}

drill() {
    local driver=$1 run=$2
    measure "drill_$driver" "$run" "$sg" drill "${sg_store[@]}" --shard "$db" --jobs "$jobs" \
        --sandbox "$driver" --json && drill_breakdown "drill_$driver" "$run"
}

# A round on a busy machine is run again, up to twice as many rounds in
# all, and left out of the medians (lib.sh: round_begin, round_end).
load_start=$(load_average)
for ((run = 1; good < runs && run <= 2 * runs; run++)); do
    round_begin "$run"

    sandbox_round local "$run"
    [ -n "$docker_why" ] || sandbox_round docker "$run"

    fresh_db restored
    measure restore "$run" "$sg" restore "${sg_store[@]}" --target "dbname=restored" \
        --jobs "$jobs" --json "$db/latest" || true
    # What the drill's index check costs, apart: the indexes it checks, once
    # as a drill does (heapallindexed) and once the B-tree structure alone.
    if q -d restored -c "CREATE EXTENSION amcheck"; then
        measure amcheck_heap "$run" psql -X -qAt -v ON_ERROR_STOP=1 -d restored \
            -c "SELECT bt_index_check(i.indexrelid, true) $btree_indexes" || true
        measure amcheck_structure "$run" psql -X -qAt -v ON_ERROR_STOP=1 -d restored \
            -c "SELECT bt_index_check(i.indexrelid, false) $btree_indexes" || true
    fi
    q -c "DROP DATABASE restored"

    drill local "$run" || true
    [ -n "$docker_why" ] || drill docker "$run" || true

    fresh=$work/fresh
    measure pg_restore_fresh "$run" bash "$work/fresh.sh" "$pgbin" "$work/ready" "$fresh" \
        "$work/dump.d" "$jobs" &&
        printf 'initdb_start\t%s\t%s\t\t\n' "$run" "$(cat "$work/ready")" >>"$results"
    as_owner "$pgbin/pg_ctl" stop -D "$fresh/data" -m immediate >/dev/null 2>&1 || true
    rm -rf "$fresh" "$work/ready"
    fresh=

    round_end "$run"
done
warn_if_every_round_disturbed

all_results=$results
results=$(counted_only "$results")
drills=$(counted_only "$drills")
boxes=$(counted_only "$boxes")

# --- report --------------------------------------------------------------------

declare -A wall mach rss
steps=(restore amcheck_heap amcheck_structure drill_local drill_docker pg_restore_fresh initdb_start)
for s in "${steps[@]}"; do
    step_medians "$results" "$s" wall=3 mach=4 rss=5
done

declare -A label=(
    [restore]="shardgate restore --jobs $jobs into an empty database of the running server"
    [drill_local]="shardgate drill --jobs $jobs --sandbox local"
    [drill_docker]="shardgate drill --jobs $jobs --sandbox docker"
    [pg_restore_fresh]="initdb, start, pg_restore -j $jobs of the -Fd dump into the fresh cluster"
    [initdb_start]="of which initdb and start until the server accepts connections"
    [amcheck_heap]="amcheck of the restored indexes as a drill runs it: bt_index_check(index, heapallindexed => true)"
    [amcheck_structure]="amcheck of the same indexes, B-tree structure only: heapallindexed => false"
)

row() {
    local s=$1
    if [ -z "${wall[$s]}" ]; then
        local skipped=
        [ "$s" != drill_docker ] || skipped=$docker_why
        printf '| %s | n/a (%s) | | | |\n' "${label[$s]}" "$(no_result "$s" "$skipped")"
        return
    fi
    if [ "$s" = initdb_start ]; then
        printf '| %s | %s%s | | | |\n' "${label[$s]}" "$(f2 "${wall[$s]}")" \
            "$(spread "$results" "$s" 3)"
        return
    fi
    printf '| %s | %s%s | %s | %s | %s |\n' "${label[$s]}" "$(f2 "${wall[$s]}")" \
        "$(spread "$results" "$s" 3)" "$(f2 "${mach[$s]}")" \
        "$(rss_mib "${rss[$s]}")" \
        "$(calc 'sprintf("%.2f×", w / r)' w="${wall[$s]}" r="${wall[restore]}")"
}

box_row() {
    local d=$1
    if [ "$d" = docker ] && [ -n "$docker_why" ]; then
        printf '| %s | | n/a (skipped: %s) | |\n' "$d" "$docker_why"
        return
    fi
    if [ -n "${failed[box_$d]:-}" ] || ! grep -q "^$d	" "$boxes"; then
        printf '| %s | | n/a (failed: %s) | |\n' "$d" "${failed[box_$d]:-no result}"
        return
    fi
    printf '| %s | %s | %s%s | %s%s |\n' "$d" "$(grep -c "^$d	" "$boxes")" \
        "$(f2 "$(median_of "$boxes" "$d" 3)")" "$(spread "$boxes" "$d" 3)" \
        "$(f2 "$(median_of "$boxes" "$d" 4)")" "$(spread "$boxes" "$d" 4)"
}

# breakdown STEP: the drill's phases, medians over the rounds; amcheck is
# what the shard's seconds hold beyond the three phases (it also holds the
# manifest header read, milliseconds), and destroy and process what the
# wall time holds beyond the shard's seconds.
breakdown() {
    local s=$1 total verify box restore indexes amcheck rest
    if [ -z "${wall[$s]}" ] || ! grep -q "^$s	" "$drills"; then
        return
    fi
    total=$(median_of "$drills" "$s" 3)
    verify=$(median_of "$drills" "$s" 4)
    box=$(median_of "$drills" "$s" 5)
    restore=$(median_of "$drills" "$s" 6)
    indexes=$(median_of "$drills" "$s" 7)
    amcheck=$(median_of <(awk -F '\t' -v OFS='\t' '{ print $1, $3 - $4 - $5 - $6 }' "$drills") "$s" 2)
    rest=$(calc 'sprintf("%.2f", w - t)' w="${wall[$s]}" t="$total")
    printf '| %s | %s | %s | %s | %s (%s indexes) | %s | %s | %s |\n' "${label[$s]}" \
        "$(f2 "$verify")" "$(f2 "$box")" "$(f2 "$restore")" "$(f2 "$amcheck")" "$indexes" \
        "$(f2 "$total")" "$rest" "$(f2 "${wall[$s]}")"
}

# round_ratios A B: the median and range of A's wall time over B's, each
# round on its own (the machine's speed drifts between rounds).
round_ratios() {
    [ -n "${wall[$1]}" ] && [ -n "${wall[$2]}" ] || return 0
    awk -F '\t' -v a="$1" -v b="$2" '$1 == a { x[$2] = $3 } $1 == b { y[$2] = $3 }
        END { for (r in x) if (r in y) print x[r] / y[r] }' "$results" | median_range '%.2f'
}

docker_version=
if [ -z "$docker_why" ] && command -v docker >/dev/null; then
    docker_version="; Docker Engine $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo unknown)"
fi

cat <<EOF
### Results

$(report_machine)$docker_version; \
medians of $(calc 'sprintf("%d", g ? g : r)' g="$good" r=$((run - 1))) undisturbed runs \
of $((run - 1)); load average at the start $load_start.
Database: \`pgbench -i -s $scale\`, $(mb "$db_bytes") MB on disk, \
$rows rows; snapshot $(mb "$stored_bytes") MB stored, \`pg_dump -Fd\` $(mb "$dump_bytes") MB.

| sandbox driver | sandboxes | ready s, median (min–max) | destroyed s, median (min–max) |
|---|---:|---:|---:|
$(box_row local)
$(box_row docker)

| step | wall s (min–max) | machine CPU s | client peak RSS MiB | wall / bare restore |
|---|---:|---:|---:|---:|
$(row restore)
$(row amcheck_heap)
$(row amcheck_structure)
$(row drill_local)
$(row drill_docker)
$(row pg_restore_fresh)
$(row initdb_start)

The drills' own breakdown (medians of the \`--json\` fields; amcheck is \`seconds\` minus the \
other three; destroy and exit is the wall time minus \`seconds\`):

| drill | verify level 1 s | sandbox s (create, CREATE DATABASE) | restore s | amcheck s | seconds | destroy and exit s | wall s |
|---|---:|---:|---:|---:|---:|---:|---:|
$(breakdown drill_local)
$(breakdown drill_docker)

| target | goal | measured | verdict |
|---|---|---:|---|
$(target "drill (local) / bare restore, wall" "≤ 1.2" "$(ratio "${wall[drill_local]}" "${wall[restore]}")" 'v <= 1.2')
$(target "drill (docker) / bare restore, wall" "≤ 1.2" "$(ratio "${wall[drill_docker]}" "${wall[restore]}")" 'v <= 1.2')
$(target "drill (local) / pg_restore into a fresh cluster, wall" "" "$(ratio "${wall[drill_local]}" "${wall[pg_restore_fresh]}")" "")
$(target "drill (docker) / pg_restore into a fresh cluster, wall" "" "$(ratio "${wall[drill_docker]}" "${wall[pg_restore_fresh]}")" "")
$(target "drill (local) / bare restore, each round's own ratio: median (min–max)" "" "$(round_ratios drill_local restore)" "")
$(target "drill (docker) / bare restore, each round's own ratio: median (min–max)" "" "$(round_ratios drill_docker restore)" "")
$(target "drill (local) without heapallindexed / bare restore (drill − amcheck as run + structure only)" "" \
    "$(calc 'sprintf("%.2f", (d - h + c) / r)' d="${wall[drill_local]}" h="${wall[amcheck_heap]}" c="${wall[amcheck_structure]}" r="${wall[restore]}")" "")

$(rounds_report "$all_results" "bare restore=restore" "drill local=drill_local" \
    "drill docker=drill_docker" "pg_restore fresh=pg_restore_fresh")
EOF
