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

root=$(cd "$(dirname "$0")/.." && pwd)
runs=3
build_dir=$root/build-release
install=1
scale=50
jobs=2
# Sandboxes created and destroyed per driver and round.
sandboxes=5
# Fewer cores than this busy over 3 s with nothing of ours running: quiet.
quiet_cores=0.2
db=drillbench
image=postgres:15
# Bump when the data changes, so an old database is rebuilt rather than reused.
marker_version=v1

usage() {
    sed -n '2,14s/^# \{0,1\}//p' "$0"
}

while [ $# -gt 0 ]; do
    case "$1" in
    --runs)
        runs=${2:?--runs needs a number}
        shift
        ;;
    --build-dir)
        build_dir=${2:?--build-dir needs a directory}
        shift
        ;;
    --scale)
        scale=${2:?--scale needs a number}
        shift
        ;;
    --no-install) install=0 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "bench: unknown option $1" >&2
        usage >&2
        exit 2
        ;;
    esac
    shift
done
for n in "$runs" "$scale"; do
    case "$n" in
    '' | *[!0-9]* | 0)
        echo "bench: --runs and --scale take a positive integer, not \"$n\"" >&2
        exit 2
        ;;
    esac
done
marker="shardgate drill bench: pgbench scale $scale $marker_version"

log() {
    printf 'bench: %s\n' "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

# postgres refuses to run as root; as root, the fresh clusters run as the
# postgres system user, as the local sandbox's servers do.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

work=
server=
fresh=
cleanup() {
    if [ -n "$fresh" ] && [ -f "$fresh/data/postmaster.pid" ]; then
        as_owner "$pgbin/pg_ctl" stop -D "$fresh/data" -m immediate >/dev/null 2>&1 || true
    fi
    if [ -n "$server" ]; then
        "$root/ci/pg-server.sh" stop "$server" || true
    fi
    if [ -n "$work" ]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- dependencies ------------------------------------------------------------

[ "$install" = 0 ] || "$root/ci/install-deps.sh"
for tool in psql pgbench pg_dump pg_restore cmake curl; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ -x /usr/bin/time ] || die "GNU time is not installed (Debian package time)"
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

build_dir=$(realpath -m "$build_dir")
work=$(mktemp -d "${TMPDIR:-/tmp}/shardgate-bench-drill.XXXXXX")
# The servers run as postgres and must reach their directories.
chmod 711 "$work"
cd "$work"

# --- release build -----------------------------------------------------------

log "building shardgate and sg_bench_sandbox (Release) in $build_dir"
if ! { cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release &&
    cmake --build "$build_dir" -j "$jobs" --target shardgate sg_bench_sandbox; } \
    >"$work/build.log" 2>&1; then
    grep -m 5 -E ': error:|CMake Error|Error [0-9]' "$work/build.log" >&2 || true
    die "the release build failed (cmake output above)"
fi
sg=$build_dir/shardgate
sandbox_bench=$build_dir/bench/sg_bench_sandbox

# --- server, data, snapshot and dump -------------------------------------------

server=$work/server
env=$("$root/ci/pg-server.sh" start "$server") || die "could not start the server"
eval "$env"

q() {
    psql -X -v ON_ERROR_STOP=1 -qAt -d postgres "$@"
}

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
    q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" \
        -c "CREATE DATABASE $db TEMPLATE template0"
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

ticks=$(getconf CLK_TCK)

machine_ticks() {
    local -a f
    # cpu user nice system idle iowait irq softirq steal ...
    read -r -a f </proc/stat
    echo $((f[1] + f[2] + f[3] + f[6] + f[7] + f[8]))
}

secs() {
    awk -v t="$1" -v hz="$ticks" 'BEGIN { printf "%.2f", t / hz }'
}

# Cores busy over 3 s while this script does nothing: what else runs on the
# machine (a test suite, a build) and would take CPU from the measurements.
background_cores() {
    local before after
    before=$(machine_ticks)
    sleep 3
    after=$(machine_ticks)
    awk -v t=$((after - before)) -v hz="$ticks" 'BEGIN { printf "%.2f", t / hz / 3 }'
}

# Waits up to 2 minutes for the machine to be quiet; prints the last reading.
wait_quiet() {
    local busy i
    for ((i = 0; i < 40; i++)); do
        busy=$(background_cores)
        awk -v b="$busy" -v q="$quiet_cores" 'BEGIN { exit !(b < q) }' && break
        [ "$i" -gt 0 ] || log "the machine is busy ($busy cores); waiting for it to be quiet"
    done
    echo "$busy"
}

results=$work/results.tsv
drills=$work/drills.tsv
boxes=$work/sandboxes.tsv
rounds=$work/rounds.tsv
: >"$results"
: >"$drills"
: >"$boxes"
: >"$rounds"
declare -A failed

# Ctrl-C reaches the children too. One that catches SIGINT and exits
# (shardgate and sg_bench_sandbox destroy their sandboxes and exit with
# status 16) leaves bash taking the signal as handled: no trap runs, so the
# status has to stop the benchmark. 130 and 143: killed by SIGINT or SIGTERM
# (GNU time reports a signal as 128 + its number).
stop_if_interrupted() {
    case "$1" in
    16 | 130 | 143)
        log "interrupted"
        exit 130
        ;;
    esac
}

# measure STEP RUN COMMAND...: runs COMMAND under GNU time, its stdout into
# $work/out, and appends "step run wall machine-cpu rss-kib" to the results;
# the first failure of a step is kept with the first line its command wrote
# on stderr.
measure() {
    local step=$1 run=$2 rc=0 wall rss m_before m_after
    shift 2
    # Neither the previous step's dirty buffers nor its files still in the
    # page cache may be written back on this step's time.
    q -c CHECKPOINT
    sync
    m_before=$(machine_ticks)
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$work/out" 2>"$work/err" || rc=$?
    m_after=$(machine_ticks)
    stop_if_interrupted "$rc"
    if [ "$rc" != 0 ]; then
        if [ -z "${failed[$step]:-}" ]; then
            failed[$step]=$(grep -v '^Command exited' "$work/err" | grep -m 1 . ||
                echo "exit status $rc")
        fi
        log "$step run $run failed: ${failed[$step]}"
        return 1
    fi
    read -r wall rss < <(tail -n 1 "$work/time")
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

# A round is disturbed when the machine was busy just before or just after
# it; it is then run again, up to twice as many rounds in all, and left out
# of the medians.
load_start=$(cut -d ' ' -f 1-3 /proc/loadavg)
good=0
for ((run = 1; good < runs && run <= 2 * runs; run++)); do
    before=$(wait_quiet)
    load=$(cut -d ' ' -f 1-3 /proc/loadavg)
    log "round $run, $good of $runs done (load average $load, $before cores busy before it)"

    sandbox_round local "$run"
    [ -n "$docker_why" ] || sandbox_round docker "$run"

    q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS restored" \
        -c "CREATE DATABASE restored TEMPLATE template0"
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

    after=$(background_cores)
    if awk -v b="$before" -v a="$after" -v q="$quiet_cores" 'BEGIN { exit !(b < q && a < q) }'; then
        verdict=yes
        good=$((good + 1))
    else
        verdict="no (disturbed)"
        log "round $run was disturbed ($before cores busy before it, $after after): run again"
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$load" "$before" "$after" "$verdict" >>"$rounds"
done
[ "$good" -gt 0 ] || log "warning: every round was disturbed; the medians are over all of them"

# The rounds the medians are over: the undisturbed ones, or all if none was.
used() {
    awk -F '\t' -v all=$((good == 0)) 'NR == FNR { if (all || $5 == "yes") ok[$1] = 1; next }
        ok[$2]' "$rounds" "$1" >"$1.used"
    echo "$1.used"
}
results=$(used "$results")
drills=$(used "$drills")
boxes=$(used "$boxes")

# --- report --------------------------------------------------------------------

# median FILE STEP COLUMN: the median of one column over a step's rows;
# empty when there are none.
median_of() {
    awk -F '\t' -v step="$2" -v col="$3" '$1 == step { print $col }' "$1" |
        sort -g | awk '{ v[NR] = $1 }
            END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# spread FILE STEP COLUMN: "(min–max)" of a column when there are several rows.
spread() {
    awk -F '\t' -v step="$2" -v col="$3" '$1 == step {
            if (!n++ || $col < lo) lo = $col
            if ($col > hi) hi = $col
        }
        END { if (n > 1) printf " (%.2f–%.2f)", lo, hi }' "$1"
}

# calc EXPR VAR=VALUE...: prints EXPR evaluated by awk, or nothing when a
# value is missing.
calc() {
    local expr=$1 arg
    local -a vars=()
    shift
    for arg in "$@"; do
        [ -n "${arg#*=}" ] || return 0
        vars+=(-v "$arg")
    done
    awk "${vars[@]}" "BEGIN { printf \"%s\", $expr }"
}

f2() {
    calc 'sprintf("%.2f", x)' x="$1"
}

ratio() {
    calc 'sprintf("%.2f", a / b)' a="$1" b="$2"
}

declare -A wall mach rss
steps=(restore amcheck_heap amcheck_structure drill_local drill_docker pg_restore_fresh initdb_start)
for s in "${steps[@]}"; do
    # A step that failed once has no median: its other rounds are not comparable.
    if [ -n "${failed[$s]:-}" ]; then
        wall[$s]=''
        mach[$s]=''
        rss[$s]=''
        continue
    fi
    wall[$s]=$(median_of "$results" "$s" 3)
    mach[$s]=$(median_of "$results" "$s" 4)
    rss[$s]=$(median_of "$results" "$s" 5)
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
        local why=${failed[$s]:-not run}
        [ -z "${failed[$s]:-}" ] || why="failed: $why"
        [ "$s" != drill_docker ] || [ -z "$docker_why" ] || why="skipped: $docker_why"
        printf '| %s | n/a (%s) | | | |\n' "${label[$s]}" "${why//|/\\|}"
        return
    fi
    if [ "$s" = initdb_start ]; then
        printf '| %s | %s%s | | | |\n' "${label[$s]}" "$(f2 "${wall[$s]}")" \
            "$(spread "$results" "$s" 3)"
        return
    fi
    printf '| %s | %s%s | %s | %s | %s |\n' "${label[$s]}" "$(f2 "${wall[$s]}")" \
        "$(spread "$results" "$s" 3)" "$(f2 "${mach[$s]}")" \
        "$(calc 'sprintf("%.0f", k / 1024)' k="${rss[$s]}")" \
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
        END { for (r in x) if (r in y) print x[r] / y[r] }' "$results" | sort -g |
        awk '{ v[NR] = $1 }
            END { if (NR) printf "%.2f (%.2f–%.2f)", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR] }'
}

# target NAME GOAL VALUE OK: one row of the targets table; OK is an awk
# condition on v (empty: no goal, shown for information).
target() {
    local verdict=n/a shown=n/a
    if [ -n "$3" ]; then
        shown=$3
        verdict=—
        [ -z "$4" ] || verdict=$(calc "($4) ? \"met\" : \"missed\"" v="$3")
    fi
    printf '| %s | %s | %s | %s |\n' "$1" "$2" "$shown" "$verdict"
}

docker_version=
if [ -z "$docker_why" ] && command -v docker >/dev/null; then
    docker_version="; Docker Engine $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo unknown)"
fi

cat <<EOF
### Results

$(date -u +%Y-%m-%d), $(grep -m 1 'model name' /proc/cpuinfo | sed 's/.*: //'), \
$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM; \
PostgreSQL $(q -c 'SHOW server_version' | cut -d ' ' -f 1)$docker_version; \
medians of $(calc 'sprintf("%d", g ? g : r)' g="$good" r=$((run - 1))) undisturbed runs \
of $((run - 1)); load average at the start $load_start.
Database: \`pgbench -i -s $scale\`, $(calc 'sprintf("%.0f", b / 1e6)' b="$db_bytes") MB on disk, \
$rows rows; snapshot $(calc 'sprintf("%.0f", b / 1e6)' b="$stored_bytes") MB stored, \
\`pg_dump -Fd\` $(calc 'sprintf("%.0f", b / 1e6)' b="$dump_bytes") MB.

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

Every round (wall s of each step; cores busy over 3 s with nothing of the benchmark \
running, just before and just after the round; a round with $quiet_cores or more either time is \
disturbed, run again and left out of the medians):

| round | load average | busy cores before | after | counted | bare restore | drill local | drill docker | pg_restore fresh |
|---:|---|---:|---:|---|---:|---:|---:|---:|
$(while IFS=$'\t' read -r r l b a v; do
    printf '| %s | %s | %s | %s | %s |' "$r" "$l" "$b" "$a" "$v"
    for s in restore drill_local drill_docker pg_restore_fresh; do
        printf ' %s |' "$(awk -F '\t' -v s="$s" -v r="$r" '$1 == s && $2 == r { print $3 }' "$work/results.tsv")"
    done
    echo
done <"$rounds")
EOF
