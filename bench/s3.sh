#!/usr/bin/env bash
# Benchmark shardgate's s3:// store against s3rver on loopback: a snapshot to
# s3:// against the same snapshot to file://, and one large object up and
# down against s3cmd and curl; prints a markdown report on stdout.
#
# Usage: bench/s3.sh [--runs N] [--build-dir DIR] [--object-mib N] [--no-install]
#
#   --runs N          rounds of every measurement; the report shows medians (3)
#   --build-dir DIR   where the release build of shardgate goes (build-release)
#   --object-mib N    size of the object moved up and down, in MiB (1024)
#   --no-install      skip ci/install-deps.sh
#
# See "S3 store" in bench/README.md for what is measured and how.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

object_mib=1024
# The snapshot chunk size the file:// memory target is computed from
# (DESIGN.md), and the S3 store's defaults (common/store_s3.c): every step
# runs with them, and the memory bound is computed from them.
chunk_mib=32
part_mib=16
parallel=4

parse_options --object-mib -- "$@"
require_positive "--runs and --object-mib take" "$runs" "$object_mib"

s3rver_pid=
stop_extra_servers() {
    if [ -n "$s3rver_pid" ]; then
        kill "$s3rver_pid" 2>/dev/null || true
        wait "$s3rver_pid" 2>/dev/null || true
    fi
}

# --- dependencies ------------------------------------------------------------

[ "$install" = 0 ] || "$root/ci/install-deps.sh"
require_tools psql cmake node s3cmd curl split xargs
s3rver_js=$root/tests/harness/s3/node_modules/s3rver/bin/s3rver.js
[ -f "$s3rver_js" ] || die "s3rver is not installed in tests/harness/s3 (run ci/install-deps.sh)"

resolve_build_paths
make_work_dir shardgate-bench-s3

# --- release build -----------------------------------------------------------

build_release_or_die shardgate sg_bench_s3put
sg=$build_dir/shardgate
s3put=$build_dir/bench/sg_bench_s3put

# --- servers and data ----------------------------------------------------------

start_server
export PGDATABASE=bench
"$root/bench/make-data.sh" >&2

# The file:// store and s3rver's data both live in the work directory: the
# two snapshots write to the same file system and disk.
store=$work/store
s3data=$work/s3rver
mkdir -p "$s3data"
# s3rver makes ListObjectsV2 continuation tokens with DES, which OpenSSL 3
# keeps in its legacy provider. Port 0: the kernel picks a free port.
node --openssl-legacy-provider "$s3rver_js" -d "$s3data" -a 127.0.0.1 -p 0 -s \
    --no-vhost-buckets --configure-bucket bench >"$work/s3rver.log" 2>&1 &
s3rver_pid=$!
port=
for ((i = 0; i < 300; i++)); do
    port=$(sed -n 's/.*S3rver listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/s3rver.log")
    [ -z "$port" ] || break
    kill -0 "$s3rver_pid" 2>/dev/null || die "s3rver exited: $(tail -n 3 "$work/s3rver.log")"
    sleep 0.1
done
[ -n "$port" ] || die "s3rver did not start within 30 s"
endpoint=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_ENDPOINT_URL_S3=$endpoint
log "s3rver $(node -p "require('$root/tests/harness/s3/node_modules/s3rver/package.json').version") on $endpoint, pid $s3rver_pid"

# host_bucket without %(bucket)s makes s3cmd use path-style URLs.
cat >"$work/s3cmd.cfg" <<EOF
[default]
access_key = S3RVER
secret_key = S3RVER
host_base = 127.0.0.1:$port
host_bucket = 127.0.0.1:$port
bucket_location = us-east-1
use_https = False
signature_v2 = False
progress_meter = False
EOF
s3cmd=(s3cmd -c "$work/s3cmd.cfg")
# curl signs with SigV4 but does not add x-amz-content-sha256, which s3rver
# requires; an unsigned payload spares curl from hashing the body.
sigv4=(--aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
s3_delete() {
    curl -sS --fail "${sigv4[@]}" -X DELETE -o /dev/null "$endpoint/bench/$1"
}

plain=$(plain_bytes)

keys=$work/keys
mkdir -p "$keys"
"$sg" keygen --out "$keys/bench" >/dev/null || die "shardgate keygen failed"

# The object every client sends: the driver's PRNG data, written once through
# a file:// store, then split into parts for the curl multipart client. Both
# copies stay in the page cache (the machine has RAM to spare), so no client
# reads the disk.
object_bytes=$((object_mib << 20))
log "generating the $object_mib MiB object"
"$s3put" "file://$work/src" object.bin --bytes "${object_mib}MiB" >/dev/null
object=$work/src/object.bin
mkdir -p "$work/parts"
split -b "${part_mib}M" -d -a 5 "$object" "$work/parts/p."
cat "$object" "$work/parts"/p.* >/dev/null

# The simplest multipart client: curl, $parallel parts in flight from the
# part files, then CompleteMultipartUpload; how long the completion took is
# written to the file named by $4 (the server assembles the object then).
cat >"$work/curl-multipart.sh" <<'EOF'
set -euo pipefail
base=$1 parts=$2 parallel=$3 complete_time=$4
shift 4
sigv4=("$@")
id=$(curl -sS --fail "${sigv4[@]}" -X POST "$base?uploads" |
    sed -n 's:.*<UploadId>\(.*\)</UploadId>.*:\1:p')
[ -n "$id" ] || { echo "curl-multipart: no upload id" >&2; exit 1; }
export base id
ls "$parts" | grep '^p\.' | xargs -P "$parallel" -I {} bash -c '
    n=$((10#${1#p.} + 1))
    curl -sS --fail "${@:3}" -T "$2/$1" -D - -o /dev/null \
        "$base?partNumber=$n&uploadId=$id" | tr -d "\r" | sed -n "s/^etag: *//Ip" >"$2/etag.$n"
' _ {} "$parts" "${sigv4[@]}"
body="<CompleteMultipartUpload>"
for ((n = 1; ; n++)); do
    [ -f "$parts/etag.$n" ] || break
    body+="<Part><PartNumber>$n</PartNumber><ETag>$(cat "$parts/etag.$n")</ETag></Part>"
done
body+="</CompleteMultipartUpload>"
start=$(date +%s.%N)
curl -sS --fail "${sigv4[@]}" -X POST --data-binary "$body" -o /dev/null "$base?uploadId=$id"
end=$(date +%s.%N)
rm -f "$parts"/etag.*
awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f\n", e - s }' >"$complete_time"
EOF

# --- measuring -----------------------------------------------------------------

# CPU ticks of s3rver so far: the whole node process (its libuv threads do
# the file writes), and its main thread alone (JavaScript, MD5 and the HTTP
# parser run there, so at 100 % of a core it is the bottleneck).
node_ticks() {
    local line
    local -a s
    read -r line <"/proc/$s3rver_pid/stat"
    read -r -a s <<<"${line##*) }"
    printf '%s ' $((s[11] + s[12]))
    read -r line <"/proc/$s3rver_pid/task/$s3rver_pid/stat"
    read -r -a s <<<"${line##*) }"
    echo $((s[11] + s[12]))
}

results=$work/results.tsv
: >"$results"
declare -A complete_s

# measure STEP RUN COMMAND...: runs COMMAND under GNU time and appends
# "step run wall client-cpu rss-kib s3rver-cpu s3rver-main-cpu machine-cpu"
# to the results; a failure is kept (step_failed) and the benchmark goes on.
measure() {
    local step=$1 run=$2 rc wall cpu rss n_before n_after m_before m_after
    shift 2
    # The previous step's writes are not flushed on this step's time.
    sync
    read -r -a n_before < <(node_ticks)
    m_before=$(machine_ticks)
    run_timed /dev/null "$@"
    read -r -a n_after < <(node_ticks)
    m_after=$(machine_ticks)
    if [ "$rc" != 0 ]; then
        step_failed "$step" "$run"
        return 0
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$step" "$run" "$wall" "$cpu" "$rss" \
        "$(secs $((n_after[0] - n_before[0])))" "$(secs $((n_after[1] - n_before[1])))" \
        "$(secs $((m_after - m_before)))" >>"$results"
    log "$step run $run: $(tail -n 1 "$results" | awk -F '\t' '{ printf "wall %s s, client CPU %s s, peak RSS %d MiB, s3rver CPU %s s (main thread %s s), machine CPU %s s", $3, $4, $5 / 1024, $6, $7, $8 }')"
}

snapshot=("$sg" snapshot --dsn "dbname=bench" --key "$keys/bench.key" --jobs "$jobs" --store)

# The driver's resident set with no part buffer touched: what the process
# holds besides the parts (libraries, libcurl, the 1 MiB write buffer).
/usr/bin/time -f '%M' -o "$work/time" "$s3put" s3://bench tiny --bytes 1k >/dev/null
s3put_base_kib=$(tail -n 1 "$work/time")
s3_delete tiny

load_start=$(load_average)
for ((run = 1; run <= runs; run++)); do
    log "round $run of $runs"

    rm -rf "$store"
    mkdir -p "$store"
    measure sg_file "$run" "${snapshot[@]}" "file://$store"
    stored_file=$(du -sb "$store" | cut -f 1)

    "${s3cmd[@]}" del --recursive --force s3://bench/snap/ >/dev/null
    measure sg_s3 "$run" "${snapshot[@]}" s3://bench/snap
    stored_s3=$("${s3cmd[@]}" du s3://bench/snap/ | awk '{ print $1 }')
    if [ "$run" = 1 ] && [ -z "${failed[sg_s3]:-}" ] &&
        ! "$sg" verify --store s3://bench/snap --trust "$keys/bench.pub" --level 1 bench/latest \
            >/dev/null 2>"$work/err"; then
        failed[sg_s3]="verify of the S3 snapshot: $(grep -m 1 . "$work/err")"
        log "${failed[sg_s3]}"
    fi

    s3_delete s3put.bin
    measure s3put "$run" "$s3put" s3://bench s3put.bin --bytes "${object_mib}MiB"

    s3_delete s3cmd.bin
    measure s3cmd_put "$run" "${s3cmd[@]}" put --multipart-chunk-size-mb="$part_mib" "$object" \
        s3://bench/s3cmd.bin

    s3_delete multipart.bin
    measure curl_mp "$run" bash "$work/curl-multipart.sh" "$endpoint/bench/multipart.bin" \
        "$work/parts" "$parallel" "$work/complete" "${sigv4[@]}"
    [ ! -f "$work/complete" ] || complete_s[$run]=$(cat "$work/complete")
    rm -f "$work/complete"

    s3_delete single.bin
    measure curl_put "$run" curl -sS --fail "${sigv4[@]}" -T "$object" -o /dev/null \
        "$endpoint/bench/single.bin"

    # Every download reads the same object, the one curl stored in one piece.
    measure s3put_get "$run" "$s3put" --get s3://bench single.bin
    measure s3cmd_get "$run" "${s3cmd[@]}" get --force s3://bench/single.bin -
    measure curl_get "$run" curl -sS --fail "${sigv4[@]}" -o /dev/null \
        "$endpoint/bench/single.bin"
done

# --- report --------------------------------------------------------------------

declare -A wall cpu rss ncpu nmain mach
steps=(sg_file sg_s3 s3put s3cmd_put curl_mp curl_put s3put_get s3cmd_get curl_get)
for s in "${steps[@]}"; do
    step_medians "$results" "$s" wall=3 cpu=4 rss=5 ncpu=6 nmain=7 mach=8
done
complete_median=$(for r in "${complete_s[@]}"; do echo "$r"; done | median)

declare -A label=(
    [sg_file]="shardgate snapshot --jobs $jobs to file://"
    [sg_s3]="shardgate snapshot --jobs $jobs to s3://"
    [s3put]="sg_bench_s3put (multipart, $parallel × $part_mib MiB in flight)"
    [s3cmd_put]="s3cmd put --multipart-chunk-size-mb=$part_mib"
    [curl_mp]="curl multipart, $parallel parts in flight"
    [curl_put]="curl single PUT"
    [s3put_get]="sg_bench_s3put --get ($parallel ranged GETs of $part_mib MiB in flight)"
    [s3cmd_get]="s3cmd get (to stdout, /dev/null)"
    [curl_get]="curl single GET"
)

# row STEP BYTES [EXTRA]: one table row; BYTES is what the step moved (MB/s).
row() {
    local s=$1 bytes=$2 extra=${3:-}
    if [ -z "${wall[$s]}" ]; then
        printf '| %s | n/a (%s) | | | | | | |\n' "${label[$s]}" "$(no_result "$s")"
        return
    fi
    printf '| %s%s | %s%s | %s | %s | %s | %s | %s | %s |\n' "${label[$s]}" "$extra" \
        "$(f2 "${wall[$s]}")" "$(spread "$results" "$s" 3)" "$(f2 "${cpu[$s]}")" \
        "$(f2 "${ncpu[$s]}")" "$(f2 "${nmain[$s]}")" "$(f2 "${mach[$s]}")" \
        "$(rss_mib "${rss[$s]}")" \
        "$(calc 'sprintf("%.0f", b / 1e6 / w)' b="$bytes" w="${wall[$s]}")"
}

parts_mib=$((part_mib * (parallel + 1)))
file_bound=$((64 + jobs * 4 * chunk_mib))
s3_bound=$((file_bound + jobs * parts_mib))
upload_bound=$((parts_mib + 2))
s3put_parts=$(calc 'sprintf("%.1f", (r - b) / 1024)' r="${rss[s3put]}" b="$s3put_base_kib")
mib() {
    calc 'sprintf("%.0f", b / 1048576)' b="$1"
}

cat <<EOF
### Results

$(report_machine) from ci/pg-server.sh; \
s3rver $(node -p "require('$root/tests/harness/s3/node_modules/s3rver/package.json').version") on \
Node.js $(node --version); $(s3cmd --version); $(curl --version | head -n 1 | cut -d ' ' -f 1-2); \
medians of $runs runs; load average at the start $load_start.
Database: $(mb "$plain") MB of plain data (COPY text); \
object: $object_mib MiB of PRNG data.

| step | wall s (min–max) | client CPU s | s3rver CPU s | s3rver main thread CPU s | machine CPU s | client peak RSS MiB | MB/s |
|---|---:|---:|---:|---:|---:|---:|---:|
$(row sg_file "$plain")
$(row sg_s3 "$plain")
$(row s3put "$object_bytes")
$(row s3cmd_put "$object_bytes")
$(row curl_mp "$object_bytes" "${complete_median:+ (of which CompleteMultipartUpload ${complete_median} s)}")
$(row curl_put "$object_bytes")
$(row s3put_get "$object_bytes")
$(row s3cmd_get "$object_bytes")
$(row curl_get "$object_bytes")

Snapshot MB/s are plain MB (COPY text) per second; stored: $(mib "$stored_file") MiB in the \
file:// store, $(mib "${stored_s3:-}") MiB in s3://. Transfer MB/s are object MB per second. \
The s3rver columns are the CPU time of the node process over the step; \
the main thread runs JavaScript, MD5 and HTTP parsing, its libuv threads the file writes.

| target | goal | measured | verdict |
|---|---|---:|---|
$(target "snapshot to s3:// vs to file://, throughput" "≥ 0.80" \
    "$(ratio "${wall[sg_file]}" "${wall[sg_s3]}")" 'v >= 0.8')
$(target "machine CPU of the file:// snapshot / of the s3:// snapshot (the ceiling of the ratio above while both keep every core busy)" "" \
    "$(ratio "${mach[sg_file]}" "${mach[sg_s3]}")" "")
$(target "sg_bench_s3put vs s3cmd put, throughput" "≥ 1.5" \
    "$(ratio "${wall[s3cmd_put]}" "${wall[s3put]}")" 'v >= 1.5')
$(target "sg_bench_s3put vs s3cmd put, parts only (CompleteMultipartUpload's time taken off both)" "" \
    "$(calc 'sprintf("%.2f", (c - m) / (s - m))' c="${wall[s3cmd_put]}" s="${wall[s3put]}" m="$complete_median")" "")
$(target "sg_bench_s3put vs curl multipart (same parts, same server work)" "" \
    "$(ratio "${wall[curl_mp]}" "${wall[s3put]}")" "")
$(target "sg_bench_s3put vs curl single PUT (the server's ceiling for one stream)" "" \
    "$(ratio "${wall[curl_put]}" "${wall[s3put]}")" "")
$(target "sg_bench_s3put --get vs s3cmd get, throughput" "" \
    "$(ratio "${wall[s3cmd_get]}" "${wall[s3put_get]}")" "")
$(target "sg_bench_s3put --get vs curl single GET" "" \
    "$(ratio "${wall[curl_get]}" "${wall[s3put_get]}")" "")
$(target "upload peak RSS above the driver's idle $(rss_mib "$s3put_base_kib") MiB, MiB" \
    "≤ $upload_bound ($part_mib × ($parallel + 1) + 2)" "$s3put_parts" "v <= $upload_bound")
$(target "snapshot to s3:// peak RSS, MiB" \
    "< $s3_bound ($file_bound + $jobs × $parts_mib)" "$(rss_mib "${rss[sg_s3]}")" "v < $s3_bound")
$(target "snapshot peak RSS, s3:// minus file://, MiB (one upload per pack being written: at most $jobs × $parts_mib)" "" \
    "$(calc 'sprintf("%.0f", (a - b) / 1024)' a="${rss[sg_s3]}" b="${rss[sg_file]}")" "")

The upload's bound: $parallel parts in flight and one filling, $part_mib MiB each, plus 2 MiB \
(the driver's 1 MiB write buffer, libcurl's buffers). A snapshot writes $jobs packs at once, \
each through its own upload.
EOF
