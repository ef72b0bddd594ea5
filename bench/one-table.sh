#!/usr/bin/env bash
# Restore of a database dominated by one table: where splitting a table across
# workers matters. pg_restore -j N gives a table's data to one worker; shardgate
# spreads its chunks over all of them. Prints wall seconds of each restore.
#
# Usage: bench/one-table.sh [--rows N] [--runs N] [--shardgate BIN]
#   --rows N        rows of the table (default 4000000, about 600 MB of COPY text)
#   --runs N        restores of each kind (default 3; the median is reported)
#   --shardgate BIN the binary to measure (default: a release build in build-release/)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rows=4000000
runs=3
sg=
while [ $# -gt 0 ]; do
    case "$1" in
    --rows) rows=${2:?}; shift ;;
    --runs) runs=${2:?}; shift ;;
    --shardgate) sg=${2:?}; shift ;;
    *) sed -n '2,10s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
    esac
    shift
done

if [ -z "$sg" ]; then
    cmake -S "$root" -B "$root/build-release" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$root/build-release" -j2 >/dev/null
    sg=$root/build-release/shardgate
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/shardgate-one-table.XXXXXX")
chmod 755 "$work"
cleanup() {
    "$root/ci/pg-server.sh" stop "$work/pg" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
eval "$("$root/ci/pg-server.sh" start "$work/pg")"
export PGHOST PGPORT PGUSER

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE one"
psql -X -q -v ON_ERROR_STOP=1 -d one <<SQL
CREATE TABLE big (id bigint PRIMARY KEY, at timestamptz, amount numeric, note text);
INSERT INTO big SELECT g, timestamptz '2024-01-01' + g * interval '1 s', g * 0.01,
       md5(g::text) || ' ' || md5((g * 3)::text)
  FROM generate_series(1, $rows) g;
CREATE INDEX big_at ON big (at);
CREATE TABLE small (id int PRIMARY KEY, name text);
INSERT INTO small SELECT g, 'n' || g FROM generate_series(1, 10000) g;
VACUUM (FREEZE, ANALYZE);
SQL
echo "database: $(psql -XAtc "SELECT pg_size_pretty(pg_database_size('one'))" one)" >&2

pg_dump -Fd -j 2 -f "$work/dump" one
"$sg" keygen --out "$work/k" >/dev/null 2>&1
"$sg" snapshot --dsn dbname=one --store "file://$work/store" --key "$work/k.key" --quiet >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f\n", b - a }'
}
pgr=() sgr=()
for _ in $(seq "$runs"); do
    for tool in pg_restore shardgate; do
        psql -X -q -d postgres -c "DROP DATABASE IF EXISTS target" -c "CREATE DATABASE target"
        psql -X -q -d one -c CHECKPOINT
        if [ "$tool" = pg_restore ]; then
            pgr+=("$(timed pg_restore -j 2 -d target "$work/dump")")
        else
            sgr+=("$(timed "$sg" restore --store "file://$work/store" --key "$work/k.key" \
                --trust "$work/k.pub" --target dbname=target --jobs 2 one/latest)")
        fi
    done
done
p=$(printf '%s\n' "${pgr[@]}" | median)
s=$(printf '%s\n' "${sgr[@]}" | median)
echo "| restore of one dominant table | wall s (median of $runs) |"
echo "|---|---:|"
echo "| pg_restore -j 2 | $p |"
echo "| shardgate restore --jobs 2 (rows checked against the manifest) | $s |"
echo "| speed-up | $(awk -v p="$p" -v s="$s" 'BEGIN { printf "%.2f", p / s }')× |"
