#!/usr/bin/env bash
# Benchmark shardgate against plain COPY, pg_dump, pg_restore and pgBackRest on
# a throwaway PostgreSQL 15 server; prints a markdown report on stdout.
#
# Usage: bench/run.sh [--runs N] [--build-dir DIR | --shardgate BIN] [--no-install]
#
#   --runs N         rounds of every measurement; the report shows medians (3)
#   --build-dir DIR  where the release build of shardgate goes (build-release)
#   --shardgate BIN  measure this shardgate binary instead of building one
#   --no-install     skip ci/install-deps.sh and the pgBackRest package check
#
# See bench/README.md for what is measured and how.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
runs=3
build_dir=$root/build-release
install=1
sg=
jobs=2
# The snapshot chunk size the memory target is computed from (DESIGN.md).
chunk_mib=32

usage() {
    sed -n '2,12s/^# \{0,1\}//p' "$0"
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
    --shardgate)
        sg=${2:?--shardgate needs a binary}
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
case "$runs" in
'' | *[!0-9]* | 0)
    echo "bench: --runs must be a positive integer, not \"$runs\"" >&2
    exit 2
    ;;
esac

log() {
    printf 'bench: %s\n' "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

work=
server=
cleanup() {
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

if [ "$install" = 1 ]; then
    "$root/ci/install-deps.sh"
    if ! command -v pgbackrest >/dev/null; then
        log "installing pgbackrest"
        sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q pgbackrest >&2
    fi
fi
for tool in pg_dump pg_restore pgbench psql pgbackrest cmake runuser; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ -x /usr/bin/time ] || die "GNU time is not installed (Debian package time)"
[ "$(id -u)" -eq 0 ] || die "run as root: pgBackRest must run as the postgres user"

build_dir=$(realpath -m "$build_dir")
if [ -n "$sg" ]; then
    { [ -f "$sg" ] && [ -x "$sg" ]; } || die "$sg is not an executable"
    sg=$(realpath "$sg")
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/shardgate-bench.XXXXXX")
# The server and pgBackRest run as postgres and must reach their directories.
chmod 711 "$work"
cd "$work"

# --- release build -----------------------------------------------------------

sg_error=
if [ -n "$sg" ]; then
    :
elif log "building shardgate (Release) in $build_dir" &&
    cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >"$work/build.log" 2>&1 &&
    cmake --build "$build_dir" -j "$jobs" --target shardgate >>"$work/build.log" 2>&1; then
    sg=$build_dir/shardgate
else
    sg_error="build failed: $(grep -m 1 -E ': error:|CMake Error|Error [0-9]' "$work/build.log" || echo 'see cmake output')"
    log "$sg_error"
fi

# --- server and data -----------------------------------------------------------

server=$work/server
env=$("$root/ci/pg-server.sh" start "$server") || die "could not start the server"
eval "$env"
datadir=$server/data
export PGDATABASE=bench
"$root/bench/make-data.sh" >&2

q() {
    psql -X -v ON_ERROR_STOP=1 -qAt "$@"
}

# Plain bytes: the COPY text output of every table, the unit every throughput
# in the report is expressed in. Reading it once also warms the page cache, so
# that every tool, first run included, reads the same warm data.
log "measuring the plain size of the data"
tables=$(q -c "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables
               ORDER BY 1")
plain=0
for t in $tables; do
    n=$(q -c "COPY $t TO STDOUT" | wc -c)
    plain=$((plain + n))
done
db_bytes=$(q -c "SELECT pg_database_size(current_database())")

# Baseline: two connections, each copying half of every table's blocks (a TID
# range scan), into /dev/null on the client.
: >"$work/copy0.sql"
: >"$work/copy1.sql"
while IFS='|' read -r t blocks; do
    if [ "$blocks" -lt 2 ]; then
        echo "\\copy $t TO '/dev/null'" >>"$work/copy0.sql"
    else
        mid=$((blocks / 2))
        echo "\\copy (SELECT * FROM $t WHERE ctid < '($mid,0)') TO '/dev/null'" \
            >>"$work/copy0.sql"
        echo "\\copy (SELECT * FROM $t WHERE ctid >= '($mid,0)') TO '/dev/null'" \
            >>"$work/copy1.sql"
    fi
done < <(q -c "SELECT format('%I.%I', schemaname, relname),
                      pg_relation_size(relid) / current_setting('block_size')::int
               FROM pg_stat_user_tables ORDER BY 1")
cat >"$work/copy.sh" <<EOF
psql -X -q -v ON_ERROR_STOP=1 -f "$work/copy0.sql" & p0=\$!
psql -X -q -v ON_ERROR_STOP=1 -f "$work/copy1.sql" & p1=\$!
wait \$p0 && wait \$p1
EOF

# pgBackRest: repository, cipher and lock/log/spool paths all in the work dir.
pgbr=$work/pgbr
mkdir -p "$pgbr/log" "$pgbr/lock" "$pgbr/spool"
cat >"$pgbr/pgbackrest.conf" <<EOF
[global]
repo1-path=$pgbr/repo
repo1-retention-full=2
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$(head -c 24 /dev/urandom | base64)
compress-type=zst
process-max=$jobs
start-fast=y
archive-check=n
log-path=$pgbr/log
lock-path=$pgbr/lock
spool-path=$pgbr/spool
log-level-console=warn
log-level-file=off

[bench]
pg1-path=$datadir
pg1-port=$PGPORT
pg1-socket-path=$server
pg1-user=postgres
EOF
chown -R postgres: "$pgbr"
chmod 600 "$pgbr/pgbackrest.conf"
pgbackrest() {
    runuser -u postgres -- pgbackrest --config="$pgbr/pgbackrest.conf" --stanza=bench "$@"
}

keys=$work/keys
store=$work/store
if [ -n "$sg" ]; then
    mkdir -p "$keys"
    if ! "$sg" keygen --out "$keys/bench" >/dev/null 2>"$work/err"; then
        sg_error="keygen failed: $(grep -m 1 . "$work/err" || echo "no message")"
        log "$sg_error"
    fi
fi

# --- measuring -----------------------------------------------------------------

ticks=$(getconf CLK_TCK)

# CPU ticks used by the server so far: what its live children have used, plus
# the postmaster's own and its reaped children's (cutime, cstime). The
# difference of two readings counts every backend of a step, whether it ended
# before the second reading or not. The postmaster is read last, so a backend
# reaped during a reading is not missed, and a reading is taken again until
# the only children left are the resident ones (checkpointer, writers,
# launchers), so that none is counted twice either; 10 s at most.
server_ticks() {
    local pm f line total busy tries
    local -a s
    pm=$(head -n 1 "$datadir/postmaster.pid")
    for ((tries = 0; tries < 200; tries++)); do
        total=0
        busy=0
        for f in /proc/[0-9]*/stat; do
            read -r line 2>/dev/null <"$f" || continue
            # Fields after the command name, which may hold spaces: s[0] is
            # field 3 (state), s[1] the parent, s[11..14] utime stime cutime
            # cstime.
            read -r -a s <<<"${line##*) }"
            if [ "${s[1]}" = "$pm" ]; then
                total=$((total + s[11] + s[12]))
                case " $resident " in
                *" ${line%% *} "*) ;;
                *) busy=1 ;;
                esac
            fi
        done
        read -r line <"/proc/$pm/stat"
        read -r -a s <<<"${line##*) }"
        total=$((total + s[11] + s[12] + s[13] + s[14]))
        [ "$busy" = 1 ] || break
        sleep 0.05
    done
    [ "$busy" = 0 ] || log "warning: the server did not go idle; its CPU time may be short"
    echo "$total"
}

# CPU ticks the whole machine has been busy so far: against client plus server
# it shows what else ran (kernel writeback, or other load spoiling a run).
machine_ticks() {
    local -a f
    # cpu user nice system idle iowait irq softirq steal ...
    read -r -a f </proc/stat
    echo $((f[1] + f[2] + f[3] + f[6] + f[7] + f[8]))
}

# Autovacuum is background noise here (the data is frozen and analyzed, and
# restored databases are dropped), and its workers would hold up readings.
q -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
resident=$(
    pm=$(head -n 1 "$datadir/postmaster.pid")
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        read -r -a s <<<"${line##*) }"
        [ "${s[1]}" != "$pm" ] || printf '%s ' "${line%% *}"
    done
)

results=$work/results.tsv
: >"$results"
declare -A failed size

# measure STEP RUN COMMAND...: runs COMMAND under GNU time and appends
# "step run wall client-cpu server-cpu rss-kib machine-cpu" to the results;
# the first failure of a step is kept with the first line its command wrote
# on stderr.
measure() {
    local step=$1 run=$2 before after m_before m_after rc=0 wall user sys rss
    shift 2
    # Neither the previous step's dirty buffers nor its output files still in
    # the page cache may be written back on this step's time.
    q -d postgres -c CHECKPOINT
    sync
    before=$(server_ticks)
    m_before=$(machine_ticks)
    /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" >/dev/null 2>"$work/err" || rc=$?
    after=$(server_ticks)
    m_after=$(machine_ticks)
    if [ "$rc" != 0 ]; then
        if [ -z "${failed[$step]:-}" ]; then
            failed[$step]=$(grep -m 1 . "$work/err" || echo "exit status $rc")
        fi
        log "$step run $run failed: ${failed[$step]}"
        return 0
    fi
    read -r wall user sys rss < <(tail -n 1 "$work/time")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$step" "$run" "$wall" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" \
        "$(awk -v t=$((after - before)) -v hz="$ticks" 'BEGIN { printf "%.2f", t / hz }')" \
        "$rss" \
        "$(awk -v t=$((m_after - m_before)) -v hz="$ticks" 'BEGIN { printf "%.2f", t / hz }')" \
        >>"$results"
    log "$step run $run: $(tail -n 1 "$results" | awk -F '\t' '{ printf "wall %s s, client CPU %s s, server CPU %s s, machine CPU %s s, peak RSS %d MiB", $3, $4, $5, $7, $6 / 1024 }')"
}

# shardgate steps are skipped, with the reason, when it could not be built.
measure_sg() {
    local step=$1 run=$2
    shift 2
    if [ -n "$sg_error" ]; then
        failed[$step]=$sg_error
        return 0
    fi
    measure "$step" "$run" "$sg" "$@"
}

fresh_db() {
    q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1" \
        -c "CREATE DATABASE $1 TEMPLATE template0"
}

bytes_of() {
    du -sb "$1" | cut -f 1
}

load_start=$(cut -d ' ' -f 1-3 /proc/loadavg)
for ((run = 1; run <= runs; run++)); do
    log "round $run of $runs"
    measure copy "$run" bash "$work/copy.sh"

    rm -f "$work/dump.fc"
    measure dump_fc "$run" pg_dump -Fc -f "$work/dump.fc" bench
    [ -f "$work/dump.fc" ] && size[dump_fc]=$(bytes_of "$work/dump.fc")

    rm -rf "$work/dump.d"
    measure dump_fd "$run" pg_dump -Fd -j "$jobs" -f "$work/dump.d" bench
    [ -d "$work/dump.d" ] && size[dump_fd]=$(bytes_of "$work/dump.d")

    rm -rf "$pgbr/repo"
    if pgbackrest stanza-create >/dev/null 2>"$work/err"; then
        measure pgbackrest "$run" runuser -u postgres -- pgbackrest \
            --config="$pgbr/pgbackrest.conf" --stanza=bench --type=full backup
        size[pgbackrest]=$(bytes_of "$pgbr/repo")
    else
        failed[pgbackrest]="stanza-create: $(grep -m 1 . "$work/err" || echo "failed")"
    fi

    rm -rf "$store"
    mkdir -p "$store"
    measure_sg sg_snapshot "$run" snapshot --dsn "dbname=bench" --store "file://$store" \
        --key "$keys/bench.key" --jobs "$jobs"
    size[sg_snapshot]=$(bytes_of "$store")

    fresh_db restore_pg
    if [ -d "$work/dump.d" ]; then
        measure pg_restore "$run" pg_restore -j "$jobs" -d restore_pg "$work/dump.d"
    fi
    q -d postgres -c "DROP DATABASE restore_pg"

    fresh_db restore_sg
    measure_sg sg_restore "$run" restore --store "file://$store" --key "$keys/bench.key" \
        --trust "$keys/bench.pub" --target "dbname=restore_sg" --jobs "$jobs" bench/latest
    q -d postgres -c "DROP DATABASE restore_sg"

    measure_sg sg_verify "$run" verify --store "file://$store" --trust "$keys/bench.pub" \
        --key "$keys/bench.key" --level 2 bench/latest
done

# --- report --------------------------------------------------------------------

# median STEP COLUMN: the median of one column over a step's runs; empty when
# the step has no successful run or failed at least once.
median() {
    [ -z "${failed[$1]:-}" ] || return 0
    awk -F '\t' -v step="$1" -v col="$2" '$1 == step { print $col }' "$results" |
        sort -g | awk '{ v[NR] = $1 }
            END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
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

declare -A wall cpu srv rss mach
steps=(copy dump_fc dump_fd pgbackrest sg_snapshot pg_restore sg_restore sg_verify)
for s in "${steps[@]}"; do
    wall[$s]=$(median "$s" 3)
    cpu[$s]=$(median "$s" 4)
    srv[$s]=$(median "$s" 5)
    rss[$s]=$(median "$s" 6)
    mach[$s]=$(median "$s" 7)
done

declare -A label=(
    [copy]="plain COPY, $jobs connections, to /dev/null"
    [dump_fc]="pg_dump -Fc"
    [dump_fd]="pg_dump -Fd -j $jobs"
    [pgbackrest]="pgBackRest full (zst, aes-256-cbc, process-max $jobs)"
    [sg_snapshot]="shardgate snapshot --jobs $jobs"
    [pg_restore]="pg_restore -j $jobs (of the -Fd dump)"
    [sg_restore]="shardgate restore --jobs $jobs"
    [sg_verify]="shardgate verify --level 2"
)

mb() {
    calc 'sprintf("%.0f", b / 1e6)' b="$1"
}

# spread STEP: "(min–max)" of a step's wall times when there are several.
spread() {
    awk -F '\t' -v step="$1" '$1 == step {
            if (!n++ || $3 < lo) lo = $3
            if ($3 > hi) hi = $3
        }
        END { if (n > 1) printf " (%.2f–%.2f)", lo, hi }' "$results"
}

# row STEP [REFERENCE]: one table row; REFERENCE is the step whose wall time
# the "speed" column divides by this step's.
row() {
    local s=$1 ref=${2:-} speed=
    if [ -z "${wall[$s]}" ]; then
        local why="failed: ${failed[$s]:-}"
        [ -n "${failed[$s]:-}" ] || why="not run"
        printf '| %s | n/a (%s) | | | | | | | |\n' "${label[$s]}" "${why//|/\\|}"
        return
    fi
    if [ -n "$ref" ]; then
        speed=$(calc 'sprintf("%.2f×", r / w)' r="${wall[$ref]}" w="${wall[$s]}")
    fi
    printf '| %s | %s%s | %s | %s | %s | %s | %s | %s | %s |\n' "${label[$s]}" \
        "$(calc 'sprintf("%.2f", x)' x="${wall[$s]}")" "$(spread "$s")" \
        "$(calc 'sprintf("%.2f", x)' x="${cpu[$s]}")" \
        "$(calc 'sprintf("%.2f", x)' x="${srv[$s]}")" \
        "$(calc 'sprintf("%.2f", x)' x="${mach[$s]}")" \
        "$(calc 'sprintf("%.0f", k / 1024)' k="${rss[$s]}")" \
        "$(calc 'sprintf("%.0f", p / 1e6 / w)' p="$plain" w="${wall[$s]}")" \
        "$(mb "${size[$s]:-}")" "$speed"
}

# target STEP NAME GOAL VALUE OK: one row of the targets table on a
# shardgate step; OK is an awk condition on v. Without a value the target is
# pending while the shardgate step has no result, and n/a when a peer has none.
target() {
    local verdict=pending shown=pending
    if [ -n "$4" ]; then
        shown=$4
        verdict=$(calc "($5) ? \"met\" : \"missed\"" v="$4")
    elif [ -n "${wall[$1]}" ]; then
        shown=n/a
        verdict=n/a
    fi
    printf '| %s | %s | %s | %s |\n' "$2" "$3" "$shown" "$verdict"
}

ratio() {
    calc 'sprintf("%.2f", a / b)' a="$1" b="$2"
}

mem_limit=$((64 + jobs * 4 * chunk_mib))
sg_rss_max=$(for s in sg_snapshot sg_restore sg_verify; do echo "${rss[$s]}"; done |
    awk 'NF { if ($1 > m) m = $1; n++ } END { if (n) printf "%.0f", m / 1024 }')
verify_per_core=$(calc 'sprintf("%.0f", p / 1e6 / c)' p="$plain" c="${cpu[sg_verify]}")

cat <<EOF
## Results

$(date -u +%Y-%m-%d), $(grep -m 1 'model name' /proc/cpuinfo | sed 's/.*: //'), \
$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM; \
PostgreSQL $(q -c 'SHOW server_version' | cut -d ' ' -f 1) from ci/pg-server.sh; \
$(command pgbackrest version); medians of $runs runs; load average at the start $load_start.
Database: $(mb "$db_bytes") MB on disk, $(mb "$plain") MB of plain data (COPY text).

| step | wall s (min–max) | client CPU s | server CPU s | machine CPU s | client peak RSS MiB | plain MB/s | stored MB | speed |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
$(row copy dump_fc)
$(row dump_fc dump_fc)
$(row dump_fd dump_fc)
$(row pgbackrest dump_fc)
$(row sg_snapshot dump_fc)
$(row pg_restore pg_restore)
$(row sg_restore pg_restore)
$(row sg_verify)

"speed" is pg_dump -Fc's wall time (for restores, pg_restore's) divided by the row's.
Machine CPU well above client + server means something else ran during the step.

| target | goal | measured | verdict |
|---|---|---:|---|
$(target sg_snapshot "snapshot vs pg_dump -Fc" "≥ 3× faster" \
    "$(ratio "${wall[dump_fc]}" "${wall[sg_snapshot]}")" 'v >= 3')
$(target sg_snapshot "snapshot vs pgBackRest" "≥ 1.5× faster" \
    "$(ratio "${wall[pgbackrest]}" "${wall[sg_snapshot]}")" 'v >= 1.5')
$(target sg_snapshot "snapshot throughput vs plain COPY" "≥ 0.60" \
    "$(ratio "${wall[copy]}" "${wall[sg_snapshot]}")" 'v >= 0.6')
$(target sg_restore "restore vs pg_restore -j $jobs" "≥ 1.3× faster" \
    "$(ratio "${wall[pg_restore]}" "${wall[sg_restore]}")" 'v >= 1.3')
$(target sg_verify "verify level 2, plain MB/s per CPU second" "≥ 400" "$verify_per_core" 'v >= 400')
$(target sg_snapshot "shardgate peak RSS, MiB" "< $mem_limit (64 + $jobs × 4 × $chunk_mib)" \
    "$sg_rss_max" "v < $mem_limit")
EOF
