#!/usr/bin/env bash
# Build the benchmark database (about 1 GB) in the server named by the usual
# libpq environment (PGHOST, PGPORT, PGUSER).
#
# Three kinds of data, so no tool wins by compressing one easy pattern:
#   pgbench_*  pgbench -i at scale 20: blank-padded rows, very compressible
#   events     two million log-like rows: timestamps, a skewed kind, text
#              made of real words, numeric amounts and a small jsonb document
#   blobs      about 150 MB of random bytea in TOAST: incompressible
#
# Usage: bench/make-data.sh [--force] [--db NAME] [--events ROWS]
set -euo pipefail

db=bench
events=2000000
force=0
blob_rows=600
blob_kib=256
# Bump when the data changes, so an old database is rebuilt rather than reused.
marker="shardgate bench data v1"

usage() {
    sed -n '2,12s/^# \{0,1\}//p' "$0"
}

while [ $# -gt 0 ]; do
    case "$1" in
    --force) force=1 ;;
    --db)
        db=${2:?--db needs a name}
        shift
        ;;
    --events)
        events=${2:?--events needs a row count}
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "make-data.sh: unknown option $1" >&2
        usage >&2
        exit 2
        ;;
    esac
    shift
done

log() {
    printf 'make-data: %s\n' "$*" >&2
}

q() {
    psql -X -v ON_ERROR_STOP=1 -qAt "$@"
}

errlog=$(mktemp)
trap 'rm -f "$errlog"' EXIT

full_marker="$marker events=$events blobs=${blob_rows}x${blob_kib}KiB"
existing=$(q -d postgres -v db="$db" <<'SQL'
SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :'db'
SQL
)
if [ "$force" = 0 ] && [ "$existing" = "$full_marker" ]; then
    log "database $db already holds the benchmark data (use --force to rebuild)"
else
    start=$(date +%s)
    log "creating database $db"
    q -d postgres -v db="$db" <<'SQL'
SET client_min_messages = warning;
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec
SELECT format('CREATE DATABASE %I', :'db') \gexec
SQL

    # The three loads are independent; running them side by side keeps both
    # cores busy (pgbench -i is mostly client-side COPY, the others server-side).
    pids=()
    pgbench -i -s 20 -q --no-vacuum "$db" >/dev/null 2>"$errlog" &
    pids+=($!)

    # Tables first, in one session, so the parallel loads below only insert.
    q -d "$db" <<'SQL'
CREATE TABLE events (
    id         bigint GENERATED ALWAYS AS IDENTITY,
    created_at timestamptz NOT NULL,
    kind       text NOT NULL,
    message    text NOT NULL,
    amount     numeric(12, 2),
    attrs      jsonb NOT NULL
);
CREATE TABLE blobs (
    id      integer PRIMARY KEY,
    name    text NOT NULL,
    payload bytea NOT NULL
);
SQL

    # Half of the events per session. Words are drawn from a fixed list of a
    # few hundred, and a message takes the first 4..15 of 15 random picks;
    # squaring random() skews kinds and users the way real traffic is skewed.
    load_events() {
        q -d "$db" -v n="$1" <<'SQL'
INSERT INTO events (created_at, kind, message, amount, attrs)
SELECT timestamptz '2024-01-01 00:00:00+00' + random() * interval '365 days',
       k[1 + floor(random() ^ 2 * array_length(k, 1))::int],
       array_to_string((ARRAY[
           w[1 + floor(random() * nw)::int], w[1 + floor(random() * nw)::int],
           w[1 + floor(random() * nw)::int], w[1 + floor(random() * nw)::int],
           w[1 + floor(random() * nw)::int], w[1 + floor(random() * nw)::int],
           w[1 + floor(random() * nw)::int], w[1 + floor(random() * nw)::int],
           w[1 + floor(random() * nw)::int], w[1 + floor(random() * nw)::int],
           w[1 + floor(random() * nw)::int], w[1 + floor(random() * nw)::int],
           w[1 + floor(random() * nw)::int], w[1 + floor(random() * nw)::int],
           w[1 + floor(random() * nw)::int]])[1:4 + floor(random() * 12)::int], ' '),
       CASE WHEN random() < 0.8 THEN round((random() * 5000)::numeric, 2) END,
       jsonb_build_object(
           'user', floor(random() ^ 2 * 100000)::int,
           'ip', format('10.%s.%s.%s', floor(random() * 256)::int,
                        floor(random() * 256)::int, floor(random() * 256)::int),
           'ok', random() < 0.97,
           'tags', jsonb_build_array(w[1 + floor(random() * nw)::int],
                                     w[1 + floor(random() * nw)::int]))
FROM generate_series(1, :n),
     (SELECT ARRAY['login', 'logout', 'view', 'click', 'search', 'purchase',
                   'refund', 'signup', 'error', 'export'] AS k,
             w, array_length(w, 1) AS nw
      FROM (SELECT string_to_array(
 'the of and to in is it you that he was for on are with as his they be at one '
 'have this from or had by word but what some we can out other were all there '
 'when up use your how said an each she which do their time if will way about '
 'many then them write would like so these her long make thing see him two has '
 'look more day could go come did number sound no most people my over know water '
 'than call first who may down side been now find any new work part take get '
 'place made live where after back little only round man year came show every '
 'good me give our under name very through just form sentence great think say '
 'help low line differ turn cause much mean before move right boy old too same '
 'tell does set three want air well also play small end put home read hand port '
 'large spell add even land here must big high such follow act why ask men '
 'change went light kind off need house picture try us again animal point mother '
 'world near build self earth father head stand own page should country found '
 'answer school grow study still learn plant cover food sun four between state '
 'keep eye never last let thought city tree cross farm hard start might story '
 'saw far sea draw left late run while press close night real life few north '
 'open seem together next white children begin got walk example ease paper group '
 'always music those both mark often letter until mile river car feet care second '
 'book carry took science eat room friend began idea fish mountain stop once base '
 'hear horse cut sure watch color face wood main enough plain girl usual young '
 'ready above ever red list though feel talk bird soon body dog family direct '
 'pose leave song measure door product black short numeral class wind question '
 'happen complete ship area half rock order fire south problem piece told knew '
 'pass since top whole king space heard best hour better true during hundred five '
 'remember step early hold west ground interest reach fast verb sing listen six '
 'table travel less morning ten simple several vowel toward war lay against '
 'pattern slow center love person money serve appear road map rain rule govern '
 'pull cold notice voice unit power town fine certain fly fall lead cry dark '
 'machine note wait plan figure star box noun field rest correct able pound done '
 'beauty drive stood contain front teach week final gave green quick develop '
 'ocean warm free minute strong special mind behind clear tail produce fact '
 'street inch multiply nothing course stay wheel full force blue object decide '
 'surface deep moon island foot system busy test record boat common gold '
 'possible plane dry wonder laugh thousand ago ran check game shape equate miss '
 'brought heat snow tire bring yes distant fill east paint language among',
                   ' ') AS w) AS words) AS vocab;
SQL
    }
    half=$((events / 2))
    load_events "$half" &
    pids+=($!)
    load_events "$((events - half))" &
    pids+=($!)

    # Random bytes from pgcrypto (at most 1024 per call), which is dropped
    # again so that dumps of the database need no extension.
    q -d "$db" -v rows="$blob_rows" -v kib="$blob_kib" <<'SQL' &
CREATE EXTENSION pgcrypto;
INSERT INTO blobs (id, name, payload)
SELECT i, format('object-%s.bin', i),
       (SELECT string_agg(gen_random_bytes(1024), ''::bytea)
        FROM generate_series(1, :kib) WHERE i IS NOT NULL)
FROM generate_series(1, :rows) AS i;
DROP EXTENSION pgcrypto;
SQL
    pids+=($!)

    failed=0
    for pid in "${pids[@]}"; do
        wait "$pid" || failed=1
    done
    if [ "$failed" != 0 ]; then
        log "loading $db failed"
        cat "$errlog" >&2
        exit 1
    fi

    log "indexing and vacuuming $db"
    # FREEZE sets every hint bit now: otherwise the first measured run would
    # pay for setting them, and write pages, and the later runs would not.
    q -d "$db" -v db="$db" -v marker="$full_marker" <<'SQL'
ALTER TABLE events ADD PRIMARY KEY (id);
CREATE INDEX events_created_at_idx ON events (created_at);
CREATE INDEX events_kind_idx ON events (kind);
VACUUM (FREEZE, ANALYZE);
CHECKPOINT;
COMMENT ON DATABASE :"db" IS :'marker';
SQL
    log "built $db in $(($(date +%s) - start)) s"
fi

q -d "$db" <<'SQL'
SELECT format('%-20s %10s rows %10s', relname, n_live_tup,
              pg_size_pretty(pg_total_relation_size(relid)))
FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC;
SELECT format('%-20s %10s', 'database ' || current_database(),
              pg_size_pretty(pg_database_size(current_database())));
SQL
