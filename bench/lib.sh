# shellcheck shell=bash
# What the benchmark scripts (run.sh, s3.sh, drill.sh, migrate.sh) share,
# sourced by each after `set -euo pipefail`:
#
#   . "$(dirname "$0")/lib.sh"
#
# Sourcing it sets the defaults every script starts from (root, runs,
# build_dir, install, sg, jobs, quiet_cores, ticks) and the traps that run
# cleanup on exit, failure, Ctrl-C and SIGTERM. The functions, in the order
# a script uses them:
#
#   parse_options, usage, require_positive   the command line
#   log, die                                 progress and errors on stderr
#   require_tools                            tools on PATH and GNU time
#   resolve_build_paths, make_work_dir       absolute paths; the work directory
#   build_release, build_release_or_die      the release build
#   start_server, q, fresh_db                the throwaway server from ci/pg-server.sh
#   plain_bytes                              the data's size as COPY text
#   machine_ticks, secs, checkpoint_and_sync readings around a step
#   run_timed, stop_if_interrupted, step_failed   one step under GNU time
#   round_begin, round_end, ...              rounds run again when the machine was busy
#   calc, f2, ratio, mb, rss_mib, median, median_of, spread, step_medians,
#   median_range, no_result, target, report_machine, load_average,
#   rounds_report                            numbers and markdown for the report

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=3
build_dir=$root/build-release
install=1
# The binary measured: --shardgate, or the release build's.
sg=
# Connections and worker processes of every tool (and of the build).
jobs=2
# Fewer cores than this busy over 3 s with nothing of ours running: quiet.
quiet_cores=0.2
ticks=$(getconf CLK_TCK)
# The first failure of each step, by step: its row then reads n/a.
declare -A failed
# Rounds counted so far (round_end).
good=0

# --- command line ------------------------------------------------------------

# usage: the script's header comment, from its second line to the first
# line that is not a comment.
usage() {
    awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"
}

# parse_options OPTION... -- ARG...: reads the command line ARGs. Every
# script takes --runs N, --build-dir DIR, --no-install and --help; OPTIONs
# are those it takes besides: --shardgate BIN (sets sg), and options with a
# number, each setting the variable of its name (--lint-files: lint_files).
# An unknown option prints the usage and exits with status 2.
parse_options() {
    local own=' '
    while [ "$1" != -- ]; do
        own+="$1 "
        shift
    done
    shift
    # shellcheck disable=SC2034 # install is the scripts' to read
    while [ $# -gt 0 ]; do
        case "$1" in
        --runs | --build-dir | --no-install | -h | --help) ;;
        *)
            case "$own" in
            *" $1 "*) ;;
            *)
                echo "bench: unknown option $1" >&2
                usage >&2
                exit 2
                ;;
            esac
            ;;
        esac
        case "$1" in
        --no-install) install=0 ;;
        -h | --help)
            usage
            exit 0
            ;;
        --build-dir)
            build_dir=${2:?--build-dir needs a directory}
            shift
            ;;
        --shardgate)
            sg=${2:?--shardgate needs a binary}
            shift
            ;;
        *)
            local var=${1#--}
            printf -v "${var//-/_}" '%s' "${2:?$1 needs a number}"
            shift
            ;;
        esac
        shift
    done
}

# require_positive WHAT N...: exits with status 2 unless every N is a
# positive integer; WHAT starts the message ("--runs must be", "--runs and
# --scale take").
require_positive() {
    local what=$1 n
    shift
    for n in "$@"; do
        case "$n" in
        '' | *[!0-9]* | 0)
            echo "bench: $what a positive integer, not \"$n\"" >&2
            exit 2
            ;;
        esac
    done
}

log() {
    printf 'bench: %s\n' "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

# --- set-up and cleanup --------------------------------------------------------

work=
server=
# cleanup: stops what the script started (its stop_extra_servers, when it
# defines one), then the server, and removes the work directory.
cleanup() {
    if declare -F stop_extra_servers >/dev/null; then
        stop_extra_servers
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

# require_tools TOOL...: dies unless every TOOL, and GNU time, is installed.
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
    [ -x /usr/bin/time ] || die "GNU time is not installed (Debian package time)"
}

# resolve_build_paths: makes build_dir absolute, and sg when --shardgate
# named a binary, which must be an executable file; before the script
# changes into its work directory.
resolve_build_paths() {
    build_dir=$(realpath -m "$build_dir")
    if [ -n "$sg" ]; then
        { [ -f "$sg" ] && [ -x "$sg" ]; } || die "$sg is not an executable"
        sg=$(realpath "$sg")
    fi
}

# make_work_dir NAME: creates the work directory, ${TMPDIR:-/tmp}/NAME.XXXXXX,
# into work, and changes into it. The servers run as postgres when the script
# runs as root and must reach their directories in it.
make_work_dir() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    chmod 711 "$work"
    cd "$work" || exit 1
}

# build_release TARGET...: builds TARGETs of the release build in build_dir,
# the output in $work/build.log; fails when the build does.
build_release() {
    local names=$*
    log "building ${names// / and } (Release) in $build_dir"
    { cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$build_dir" -j "$jobs" --target "$@"; } >"$work/build.log" 2>&1
}

# build_errors N: the first N error lines of the build log.
build_errors() {
    grep -m "$1" -E ': error:|CMake Error|Error [0-9]' "$work/build.log"
}

# build_release_or_die TARGET...: build_release, or dies with the build's
# first errors on stderr.
build_release_or_die() {
    if ! build_release "$@"; then
        build_errors 5 >&2 || true
        die "the release build failed (cmake output above)"
    fi
}

# start_server: starts the throwaway server in $work/server (ci/pg-server.sh)
# and exports PGHOST, PGPORT and PGUSER for it.
start_server() {
    local env
    server=$work/server
    env=$("$root/ci/pg-server.sh" start "$server") || die "could not start the server"
    eval "$env"
}

# q ARGS...: psql for the script's own queries: no psqlrc, stops at the
# first error, prints bare rows.
q() {
    psql -X -v ON_ERROR_STOP=1 -qAt "$@"
}

# fresh_db NAME: the database NAME, dropped if it exists and created anew
# from template0.
fresh_db() {
    q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1" \
        -c "CREATE DATABASE $1 TEMPLATE template0"
}

# plain_bytes: the size of the COPY text output of every table of the
# current database, the unit throughputs are expressed in. Reading it also
# warms the page cache, so that every tool, first run included, reads the
# same warm data.
plain_bytes() {
    local total=0 n t
    log "measuring the plain size of the data"
    for t in $(q -c "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables
                     ORDER BY 1"); do
        n=$(q -c "COPY $t TO STDOUT" | wc -c)
        total=$((total + n))
    done
    echo "$total"
}

# --- measuring -----------------------------------------------------------------

# machine_ticks: CPU ticks the whole machine has been busy so far (against
# what the step used it shows what else ran: kernel writeback, other load).
machine_ticks() {
    local -a f
    # cpu user nice system idle iowait irq softirq steal ...
    read -r -a f </proc/stat
    echo $((f[1] + f[2] + f[3] + f[6] + f[7] + f[8]))
}

# secs TICKS: TICKS in seconds, two decimals.
secs() {
    awk -v t="$1" -v hz="$ticks" 'BEGIN { printf "%.2f", t / hz }'
}

# checkpoint_and_sync: before a step, so that neither the previous step's
# dirty buffers nor the files it wrote or removed are written back on this
# step's time.
checkpoint_and_sync() {
    q -d postgres -c CHECKPOINT
    sync
}

# stop_if_interrupted STATUS: exits with 130 when STATUS says the command
# was interrupted. Ctrl-C reaches the children too; one that catches SIGINT
# and exits (shardgate and sg_bench_sandbox end with status 16, after
# destroying what they made) leaves bash taking the signal as handled: no
# trap runs, so the status has to stop the benchmark, rather than count as a
# failed step. 130 and 143: killed by SIGINT or SIGTERM (GNU time reports a
# signal as 128 + its number).
stop_if_interrupted() {
    case "$1" in
    16 | 130 | 143)
        log "interrupted"
        exit 130
        ;;
    esac
}

# run_timed OUT COMMAND...: runs COMMAND under GNU time, its stdout into OUT
# and its stderr into $work/err; sets rc to its exit status, wall (s), cpu
# (user + system of it and the processes it waited for, s) and rss (the
# peak resident set of its largest process, KiB). Stops the benchmark when
# the command was interrupted.
run_timed() {
    local out=$1 user sys
    shift
    rc=0
    /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" >"$out" 2>"$work/err" || rc=$?
    stop_if_interrupted "$rc"
    # shellcheck disable=SC2034 # wall, cpu and rss are the caller's to read
    read -r wall user sys rss < <(tail -n 1 "$work/time") || true
    # shellcheck disable=SC2034
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
}

# step_failed STEP RUN: keeps the first failure of STEP, as the first line
# its command wrote on stderr (or the exit status rc), and logs it.
step_failed() {
    local why
    if [ -z "${failed[$1]:-}" ]; then
        why=$(awk '/./ && !/^Command exited/ { print; exit }' "$work/err")
        failed[$1]=${why:-exit status $rc}
    fi
    log "$1 run $2 failed: ${failed[$1]}"
}

# --- rounds on a busy machine ----------------------------------------------------
#
# A round is disturbed when the machine was busy just before or just after
# it; it is then run again, up to twice as many rounds in all, and left out
# of the medians. Each round's readings go to $work/rounds.tsv: "round
# load-average busy-before busy-after counted".

# background_cores: cores busy over 3 s while this script does nothing: what
# else runs on the machine (a test suite, a build) and would take CPU from
# the measurements.
background_cores() {
    local before after
    before=$(machine_ticks)
    sleep 3
    after=$(machine_ticks)
    awk -v t=$((after - before)) -v hz="$ticks" 'BEGIN { printf "%.2f", t / hz / 3 }'
}

# wait_quiet: waits up to 2 minutes for the machine to be quiet; prints the
# last reading.
wait_quiet() {
    local busy i
    for ((i = 0; i < 40; i++)); do
        busy=$(background_cores)
        awk -v b="$busy" -v q="$quiet_cores" 'BEGIN { exit !(b < q) }' && break
        [ "$i" -gt 0 ] || log "the machine is busy ($busy cores); waiting for it to be quiet"
    done
    echo "$busy"
}

# round_begin RUN: waits for a quiet machine and notes the reading and the
# load average for round_end.
round_begin() {
    round_before=$(wait_quiet)
    round_load=$(load_average)
    log "round $1, $good of $runs done (load average $round_load, $round_before cores busy before it)"
}

# round_end RUN: reads the machine again, and counts the round in good when
# it was quiet both times.
round_end() {
    local after verdict
    after=$(background_cores)
    if awk -v b="$round_before" -v a="$after" -v q="$quiet_cores" \
        'BEGIN { exit !(b < q && a < q) }'; then
        verdict=yes
        good=$((good + 1))
    else
        verdict="no (disturbed)"
        log "round $1 was disturbed ($round_before cores busy before it, $after after): run again"
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$round_load" "$round_before" "$after" "$verdict" \
        >>"$work/rounds.tsv"
}

# warn_if_every_round_disturbed: after the rounds.
warn_if_every_round_disturbed() {
    [ "$good" -gt 0 ] || log "warning: every round was disturbed; the medians are over all of them"
}

# counted_only FILE: the name of a copy of FILE (rows of "step round ...")
# with the rows of counted rounds only, or every row if no round counted.
counted_only() {
    awk -F '\t' -v all=$((good == 0)) 'NR == FNR { if (all || $5 == "yes") ok[$1] = 1; next }
        ok[$2]' "$work/rounds.tsv" "$1" >"$1.used"
    echo "$1.used"
}

# --- report --------------------------------------------------------------------

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

# mb BYTES: whole MB (10^6 bytes).
mb() {
    calc 'sprintf("%.0f", b / 1e6)' b="$1"
}

# rss_mib KIB: GNU time's peak resident set in whole MiB.
rss_mib() {
    calc 'sprintf("%.0f", k / 1024)' k="$1"
}

# median: the median of the numbers on stdin, one a line; nothing if none.
median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# median_range FORMAT: "median (min–max)" of the numbers on stdin, each in
# the printf FORMAT; nothing if none.
median_range() {
    sort -g | awk -v f="$1" '{ v[NR] = $1 }
        END { if (NR) printf f " (" f "–" f ")", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR] }'
}

# median_of FILE STEP COLUMN: the median of one column over a step's rows
# (tab-separated, the step first).
median_of() {
    awk -F '\t' -v step="$2" -v col="$3" '$1 == step { print $col }' "$1" | median
}

# spread FILE STEP COLUMN: " (min–max)" of a column over a step's rows when
# there are several.
spread() {
    awk -F '\t' -v step="$2" -v col="$3" '$1 == step {
            if (!n++ || $col < lo) lo = $col
            if ($col > hi) hi = $col
        }
        END { if (n > 1) printf " (%.2f–%.2f)", lo, hi }' "$1"
}

# step_medians FILE STEP ARRAY=COLUMN...: sets ARRAY[STEP] to the median of
# COLUMN over STEP's rows of FILE; empty when STEP failed at least once (its
# other rounds are not comparable).
step_medians() {
    local file=$1 step=$2 pair element value=
    shift 2
    for pair in "$@"; do
        [ -n "${failed[$step]:-}" ] || value=$(median_of "$file" "$step" "${pair#*=}")
        element=${pair%%=*}[$step]
        printf -v "$element" '%s' "$value"
    done
}

# no_result STEP [SKIPPED]: why STEP has no numbers, for its row: "failed:
# " and its first failure, "skipped: SKIPPED" when the step could not run,
# or "not run".
no_result() {
    local why=${failed[$1]:-not run}
    [ -z "${failed[$1]:-}" ] || why="failed: $why"
    [ -z "${2:-}" ] || why="skipped: $2"
    printf '%s' "${why//|/\\|}"
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

# load_average: the 1, 5 and 15 minute load averages.
load_average() {
    cut -d ' ' -f 1-3 /proc/loadavg
}

# report_machine: how the report starts: the date, the CPU, cores, RAM and
# the server's version.
report_machine() {
    printf '%s, %s, %s cores, %s RAM; PostgreSQL %s' "$(date -u +%Y-%m-%d)" \
        "$(grep -m 1 'model name' /proc/cpuinfo | sed 's/.*: //')" "$(nproc)" \
        "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)" \
        "$(q -c 'SHOW server_version' | cut -d ' ' -f 1)"
}

# rounds_report RESULTS NAME=STEP...: the table of every round, with its
# readings and the wall time in RESULTS of each STEP, in a column NAME.
rounds_report() {
    local results=$1 pair r l b a v
    shift
    printf '%s\n\n' "Every round (wall s of each step; cores busy over 3 s with nothing of the benchmark \
running, just before and just after the round; a round with $quiet_cores or more either time is \
disturbed, run again and left out of the medians):"
    printf '| round | load average | busy cores before | after | counted |'
    for pair in "$@"; do
        printf ' %s |' "${pair%%=*}"
    done
    printf '\n|---:|---|---:|---:|---|'
    for pair in "$@"; do
        printf -- '---:|'
    done
    printf '\n'
    while IFS=$'\t' read -r r l b a v; do
        printf '| %s | %s | %s | %s | %s |' "$r" "$l" "$b" "$a" "$v"
        for pair in "$@"; do
            printf ' %s |' "$(awk -F '\t' -v s="${pair#*=}" -v r="$r" '$1 == s && $2 == r { print $3 }' "$results")"
        done
        printf '\n'
    done <"$work/rounds.tsv"
}
