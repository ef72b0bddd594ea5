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
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

# The snapshot chunk size the memory target is computed from (DESIGN.md).
chunk_mib=32

parse_options --shardgate -- "$@"
require_positive "--runs must be" "$runs"

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
require_tools pg_dump pg_restore pgbench psql pgbackrest cmake runuser
[ "$(id -u)" -eq 0 ] || die "run as root: pgBackRest must run as the postgres user"

resolve_build_paths
# pgBackRest, too, runs as postgres and must reach its directory there.
make_work_dir shardgate-bench

# --- release build -----------------------------------------------------------

# A failed build does not stop the benchmark: the shardgate rows say why
# they have no numbers.
sg_error=
if [ -n "$sg" ]; then
    :
elif build_release shardgate; then
    sg=$build_dir/shardgate
else
    sg_error="build failed: $(build_errors 1 || echo 'see cmake output')"
    log "$sg_error"
fi

# --- server and data -----------------------------------------------------------

start_server
datadir=$server/data
export PGDATABASE=bench
"$root/bench/make-data.sh" >&2

plain=$(plain_bytes)
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
declare -A size

# measure STEP RUN COMMAND...: runs COMMAND under GNU time and appends
# "step run wall client-cpu server-cpu rss-kib machine-cpu" to the results;
# a failure is kept (step_failed) and the benchmark goes on.
measure() {
    local step=$1 run=$2 before after m_before m_after rc wall cpu rss
    shift 2
    checkpoint_and_sync
    before=$(server_ticks)
    m_before=$(machine_ticks)
    run_timed /dev/null "$@"
    after=$(server_ticks)
    m_after=$(machine_ticks)
    if [ "$rc" != 0 ]; then
        step_failed "$step" "$run"
        return 0
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$step" "$run" "$wall" "$cpu" \
        "$(secs $((after - before)))" "$rss" "$(secs $((m_after - m_before)))" >>"$results"
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

bytes_of() {
    du -sb "$1" | cut -f 1
}

load_start=$(load_average)
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

declare -A wall cpu srv rss mach
steps=(copy dump_fc dump_fd pgbackrest sg_snapshot pg_restore sg_restore sg_verify)
for s in "${steps[@]}"; do
    step_medians "$results" "$s" wall=3 cpu=4 srv=5 rss=6 mach=7
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

# row STEP [REFERENCE]: one table row; REFERENCE is the step whose wall time
# the "speed" column divides by this step's.
row() {
    local s=$1 ref=${2:-} speed=
    if [ -z "${wall[$s]}" ]; then
        printf '| %s | n/a (%s) | | | | | | | |\n' "${label[$s]}" "$(no_result "$s")"
        return
    fi
    if [ -n "$ref" ]; then
        speed=$(calc 'sprintf("%.2f×", r / w)' r="${wall[$ref]}" w="${wall[$s]}")
    fi
    printf '| %s | %s%s | %s | %s | %s | %s | %s | %s | %s |\n' "${label[$s]}" \
        "$(f2 "${wall[$s]}")" "$(spread "$results" "$s" 3)" "$(f2 "${cpu[$s]}")" \
        "$(f2 "${srv[$s]}")" "$(f2 "${mach[$s]}")" "$(rss_mib "${rss[$s]}")" \
        "$(calc 'sprintf("%.0f", p / 1e6 / w)' p="$plain" w="${wall[$s]}")" \
        "$(mb "${size[$s]:-}")" "$speed"
}

# sg_target STEP NAME GOAL VALUE OK: a target (lib.sh) on a shardgate step;
# without a value it is pending while the step has no result.
sg_target() {
    local step=$1
    shift
    if [ -z "$3" ] && [ -z "${wall[$step]}" ]; then
        printf '| %s | %s | pending | pending |\n' "$1" "$2"
    else
        target "$@"
    fi
}

mem_limit=$((64 + jobs * 4 * chunk_mib))
sg_rss_max=$(for s in sg_snapshot sg_restore sg_verify; do echo "${rss[$s]}"; done |
    awk 'NF { if ($1 > m) m = $1; n++ } END { if (n) printf "%.0f", m / 1024 }')
verify_per_core=$(calc 'sprintf("%.0f", p / 1e6 / c)' p="$plain" c="${cpu[sg_verify]}")

cat <<EOF
## Results

$(report_machine) from ci/pg-server.sh; \
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
$(sg_target sg_snapshot "snapshot vs pg_dump -Fc" "≥ 3× faster" \
    "$(ratio "${wall[dump_fc]}" "${wall[sg_snapshot]}")" 'v >= 3')
$(sg_target sg_snapshot "snapshot vs pgBackRest" "≥ 1.5× faster" \
    "$(ratio "${wall[pgbackrest]}" "${wall[sg_snapshot]}")" 'v >= 1.5')
$(sg_target sg_snapshot "snapshot throughput vs plain COPY" "≥ 0.60" \
    "$(ratio "${wall[copy]}" "${wall[sg_snapshot]}")" 'v >= 0.6')
$(sg_target sg_restore "restore vs pg_restore -j $jobs" "≥ 1.3× faster" \
    "$(ratio "${wall[pg_restore]}" "${wall[sg_restore]}")" 'v >= 1.3')
$(sg_target sg_verify "verify level 2, plain MB/s per CPU second" "≥ 400" "$verify_per_core" 'v >= 400')
$(sg_target sg_snapshot "shardgate peak RSS, MiB" "< $mem_limit (64 + $jobs × 4 × $chunk_mib)" \
    "$sg_rss_max" "v < $mem_limit")
EOF
