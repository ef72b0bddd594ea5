#!/usr/bin/env bash
# Benchmark shardgate's migrations on a throwaway PostgreSQL 15 server:
# `shardgate migrate` of N small migrations against psql running the same SQL
# and against Sqitch deploying the same changes, the revert and status of
# both, and `shardgate lint` of a set of lint files; prints a markdown report
# on stdout.
#
# Usage: bench/migrate.sh [--runs N] [--build-dir DIR | --shardgate BIN]
#                         [--no-install] [--migrations N] [--lint-files N]
#
#   --runs N          rounds of every measurement; the report shows medians (3)
#   --build-dir DIR   where the release build of shardgate goes (build-release)
#   --shardgate BIN   measure this shardgate binary instead of building one
#   --no-install      skip ci/install-deps.sh and installing sqitch
#   --migrations N    migrations applied per database (200)
#   --lint-files N    files of the lint set (1000)
#
# See "Migrations" in bench/README.md for what is measured and how.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

migrations=200
lint_files=1000
# The issue's targets.
overhead_target_ms=20
lint_target_s=1

parse_options --shardgate --migrations --lint-files -- "$@"
require_positive "--runs, --migrations and --lint-files take" "$runs" "$migrations" "$lint_files"
if [ "$migrations" -gt 9999 ] || [ "$lint_files" -gt 9999 ]; then
    echo "bench: at most 9999 migrations and lint files (four-digit versions)" >&2
    exit 2
fi

# --- dependencies ------------------------------------------------------------

[ "$install" = 0 ] || "$root/ci/install-deps.sh"
require_tools psql cmake

# Sqitch is the peer its users know; it is only ever installed here, and the
# benchmark goes on without it.
sqitch_why=
if ! command -v sqitch >/dev/null && [ "$install" = 1 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        log "installing sqitch (Debian package)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q sqitch >&2 ||
            log "apt-get install sqitch failed"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        log "installing sqitch (Debian package)"
        sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q sqitch >&2 ||
            log "apt-get install sqitch failed"
    fi
fi
if ! command -v sqitch >/dev/null; then
    sqitch_why="sqitch is not installed (Debian package sqitch)"
elif ! perl -MDBD::Pg -e 1 2>/dev/null; then
    sqitch_why="sqitch cannot reach PostgreSQL: DBD::Pg is missing (Debian package libdbd-pg-perl)"
fi
[ -z "$sqitch_why" ] || log "sqitch steps skipped: $sqitch_why"

resolve_build_paths
make_work_dir shardgate-bench-migrate

# --- release build -----------------------------------------------------------

if [ -z "$sg" ]; then
    build_release_or_die shardgate
    sg=$build_dir/shardgate
fi

# --- server ----------------------------------------------------------------------

start_server
# q and every psql without -d talk to the maintenance database.
export PGDATABASE=postgres
server_log=$server/server.log

# Autovacuum would visit the fresh databases at moments of its own choosing;
# nothing here needs it. The log prefix lets the profile below tell sessions
# and databases apart; nothing is logged per statement until then.
q -c "ALTER SYSTEM SET autovacuum = off" \
    -c "ALTER SYSTEM SET log_line_prefix = '%m [%p] %d '" -c "SELECT pg_reload_conf()" >/dev/null

# --- the migrations, for shardgate, psql and sqitch -----------------------------

# One migration, by its number: sets name, header, up, down and verify
# (verify may be empty) and notoff (0 for a transaction=off file). Most
# files create a table; every tenth, from the fifth on, adds a column to the
# last table made; every tenth, from the eighth on, inserts a few rows into
# it; every twentieth builds an index on it concurrently, outside a
# transaction, which is the only way lint lets an index onto an existing
# table.
last=
migration() {
    local i=$1
    header='' verify='' notoff=1
    if ((i % 20 == 0)); then
        name=index_$last
        header='-- shardgate:transaction=off'
        notoff=0
        up="CREATE INDEX CONCURRENTLY ${last}_v ON $last (v);"
        down="DROP INDEX CONCURRENTLY ${last}_v;"
        verify="SELECT indisvalid FROM pg_index WHERE indexrelid = '${last}_v'::regclass;"
    elif ((i % 10 == 5)); then
        name=add_column_$last
        up="ALTER TABLE $last ADD COLUMN c integer;"
        down="ALTER TABLE $last DROP COLUMN c;"
    elif ((i % 10 == 8)); then
        name=seed_$last
        header='-- shardgate:data-change'
        up="INSERT INTO $last (id, v) SELECT g, 'row ' || g FROM generate_series(1, 5) g;"
        down="DELETE FROM $last WHERE id BETWEEN 1 AND 5;"
        verify="SELECT count(*) = 5 FROM $last;"
    else
        last=t_$i
        name=create_$last
        up="CREATE TABLE $last (id bigint PRIMARY KEY, v text NOT NULL DEFAULT '');"
        down="DROP TABLE $last;"
        ((i % 2)) || verify="SELECT to_regclass('public.$last') IS NOT NULL;"
    fi
}

# Writes the set as shardgate files in sg/, as one psql script per direction
# (up.sql: up and verify sections in order; down.sql: down sections in
# reverse order; each file's SQL in its own transaction unless it is
# transaction=off) and as a Sqitch project in sqitch/ (deploy, revert and
# verify scripts, and sqitch.plan written directly: `sqitch add` takes a
# second per change). The SQL is the same text everywhere.
make_migrations() {
    local dir=$1 n=$2 i v change now
    mkdir -p "$dir/sg" "$dir/sqitch/deploy" "$dir/sqitch/revert" "$dir/sqitch/verify"
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    printf '%%syntax-version=1.0.0\n%%project=migbench\n\n' >"$dir/sqitch/sqitch.plan"
    printf '[core]\n\tengine = pg\n' >"$dir/sqitch/sqitch.conf"
    : >"$dir/up.sql"
    : >"$dir/down.tmp"
    last=
    for ((i = 1; i <= n; i++)); do
        migration "$i"
        v=$(printf '%04d' "$i")
        change=m${v}_$name
        {
            [ -z "$header" ] || echo "$header"
            printf -- '-- shardgate:up\n%s\n-- shardgate:down\n%s\n' "$up" "$down"
            [ -z "$verify" ] || printf -- '-- shardgate:verify\n%s\n' "$verify"
        } >"$dir/sg/${v}_$name.sql"
        if [ "$notoff" = 1 ]; then
            printf 'BEGIN;\n%s\n%s%sCOMMIT;\n' "$up" "$verify" "${verify:+$'\n'}" >>"$dir/up.sql"
            printf 'BEGIN;\n%s\nCOMMIT;\n' "$up" >"$dir/sqitch/deploy/$change.sql"
            printf 'BEGIN;\n%s\nCOMMIT;\n' "$down" >"$dir/sqitch/revert/$change.sql"
            # down.sql runs the files backwards: each line is one file.
            printf 'BEGIN; %s COMMIT;\n' "$down" >>"$dir/down.tmp"
        else
            printf '%s\n%s%s' "$up" "$verify" "${verify:+$'\n'}" >>"$dir/up.sql"
            printf '%s\n' "$up" >"$dir/sqitch/deploy/$change.sql"
            printf '%s\n' "$down" >"$dir/sqitch/revert/$change.sql"
            printf '%s\n' "$down" >>"$dir/down.tmp"
        fi
        # Sqitch warns about, and skips, a change without a verify script.
        printf '%s\n' "${verify:-SELECT true;}" >"$dir/sqitch/verify/$change.sql"
        printf '%s %s bench <bench@example.com> # %s\n' "$change" "$now" "$name" \
            >>"$dir/sqitch/sqitch.plan"
    done
    tac "$dir/down.tmp" >"$dir/down.sql"
    rm "$dir/down.tmp"
}

# One lint file, by its number: a mix of what migrations hold, some clean
# and some breaking a rule, with multi-statement sections and dollar-quoted
# function bodies (semicolons inside); every tenth file creates the table
# the nine after it use.
# shellcheck disable=SC2016 # $body$ and $$ are SQL's dollar quotes
lint_file() {
    local i=$1 t=lt_$(($1 - $1 % 10))
    case $((i % 10)) in
    0)
        printf -- '-- shardgate:up\n'
        printf 'CREATE TABLE %s (id bigint PRIMARY KEY, owner bigint, v text NOT NULL DEFAULT %s,\n' \
            "$t" "''"
        printf '    created timestamptz NOT NULL DEFAULT now());\n'
        printf 'CREATE INDEX %s_created ON %s (created);\n' "$t" "$t"
        printf 'COMMENT ON TABLE %s IS %s;\n' "$t" "'one of the lint set''s tables; made by file $i'"
        printf -- '-- shardgate:down\nDROP TABLE %s;\n' "$t"
        printf -- '-- shardgate:verify\nSELECT to_regclass(%s) IS NOT NULL;\n' "'public.$t'"
        ;;
    1)
        printf -- '-- shardgate:up\nCREATE INDEX %s_v ON %s (v);\n' "$t" "$t"
        printf -- '-- shardgate:down\nDROP INDEX %s_v;\n' "$t"
        ;;
    2)
        printf -- '-- shardgate:up\nALTER TABLE %s ADD COLUMN parent bigint;\n' "$t"
        printf 'ALTER TABLE %s ADD CONSTRAINT %s_parent FOREIGN KEY (parent) REFERENCES %s (id);\n' \
            "$t" "$t" "$t"
        printf -- '-- shardgate:down\nALTER TABLE %s DROP CONSTRAINT %s_parent;\n' "$t" "$t"
        printf 'ALTER TABLE %s DROP COLUMN parent;\n' "$t"
        ;;
    3)
        printf -- '-- shardgate:up\nALTER TABLE %s ALTER COLUMN owner TYPE numeric;\n' "$t"
        printf -- '-- shardgate:down\nALTER TABLE %s ALTER COLUMN owner TYPE bigint;\n' "$t"
        ;;
    4)
        printf -- '-- shardgate:up\n'
        printf 'CREATE FUNCTION %s_touch() RETURNS trigger LANGUAGE plpgsql AS $body$\n' "$t"
        printf 'BEGIN\n    NEW.v := coalesce(NEW.v, %s);\n' "''"
        printf '    IF NEW.created IS NULL THEN\n        NEW.created := now();\n    END IF;\n'
        printf '    RETURN NEW;\nEND;\n$body$;\n'
        printf 'CREATE TRIGGER %s_touch BEFORE INSERT OR UPDATE ON %s\n' "$t" "$t"
        printf '    FOR EACH ROW EXECUTE FUNCTION %s_touch();\n' "$t"
        printf -- '-- shardgate:down\nDROP TRIGGER %s_touch ON %s;\n' "$t" "$t"
        printf 'DROP FUNCTION %s_touch();\n' "$t"
        ;;
    5)
        printf -- '-- shardgate:transaction=off\n-- shardgate:up\n'
        printf 'CREATE INDEX CONCURRENTLY %s_owner ON %s (owner);\n' "$t" "$t"
        printf -- '-- shardgate:down\nDROP INDEX CONCURRENTLY %s_owner;\n' "$t"
        ;;
    6)
        printf -- '-- shardgate:up\n'
        printf 'INSERT INTO %s (id, v) SELECT g, %s || g FROM generate_series(1, 100) g;\n' \
            "$t" "'row '"
        printf 'UPDATE %s SET owner = id %% 7 WHERE owner IS NULL;\n' "$t"
        printf -- '-- shardgate:down\nDELETE FROM %s WHERE id BETWEEN 1 AND 100;\n' "$t"
        ;;
    7)
        printf -- '-- shardgate:up\nALTER TABLE %s ALTER COLUMN owner SET NOT NULL;\n' "$t"
        printf -- '-- shardgate:down\nALTER TABLE %s ALTER COLUMN owner DROP NOT NULL;\n' "$t"
        ;;
    8)
        printf -- '-- shardgate:up\nALTER TABLE %s DROP COLUMN created;\n' "$t"
        printf -- '-- shardgate:down\nALTER TABLE %s ADD COLUMN created timestamptz;\n' "$t"
        ;;
    9)
        printf -- '-- shardgate:up\nALTER TABLE %s ADD COLUMN note text;\n' "$t"
        printf 'CREATE VIEW %s_recent AS\n    SELECT id, v, note FROM %s\n' "$t" "$t"
        printf '    WHERE created > now() - interval %s;\n' "'1 day'"
        printf 'CREATE FUNCTION %s_count() RETURNS bigint LANGUAGE sql STABLE\n' "$t"
        printf '    AS $$ SELECT count(*) FROM %s; $$;\n' "$t"
        printf -- '-- shardgate:down\nDROP FUNCTION %s_count();\nDROP VIEW %s_recent;\n' "$t" "$t"
        printf 'ALTER TABLE %s DROP COLUMN note;\n' "$t"
        printf -- '-- shardgate:verify\nSELECT %s_count() >= 0;\n' "$t"
        ;;
    esac
}

make_lint_set() {
    local dir=$1 n=$2 i
    mkdir -p "$dir"
    for ((i = 0; i < n; i++)); do
        lint_file "$i" >"$dir/$(printf '%04d' "$((i + 1))")_lint_$i.sql"
    done
}

log "generating $migrations migrations and $lint_files lint files"
set_dir=$work/set
make_migrations "$set_dir" "$migrations"
make_lint_set "$work/lint" "$lint_files"
# The benchmark applies the set: lint, which migrate runs first, must pass it.
"$sg" lint "$set_dir/sg" >"$work/out" 2>"$work/err" ||
    die "shardgate lint rejects the generated migrations: $(grep -m 1 . "$work/out" "$work/err")"
lint_lines=$(cat "$work/lint"/*.sql | wc -l)
lint_bytes=$(cat "$work/lint"/*.sql | wc -c)

sqitch_target() {
    echo "db:pg://$PGUSER@$PGHOST:$PGPORT/$1"
}
# Sqitch takes the planner's name from these rather than from the system.
export SQITCH_FULLNAME=bench SQITCH_EMAIL=bench@example.com
export SQITCH_USER_CONFIG=$work/sqitch-user.conf
: >"$SQITCH_USER_CONFIG"
sqitch=(sqitch --chdir "$set_dir/sqitch")

# --- measuring -----------------------------------------------------------------

results=$work/results.tsv
durations=$work/durations.tsv
: >"$results"
: >"$work/rounds.tsv"
: >"$durations"

# measure STEP RUN OK COMMAND...: runs COMMAND under GNU time, its stdout
# into $work/out, and appends "step run wall client-cpu rss-kib" to the
# results. OK is the exit status that counts as success (lint exits with 1
# when it finds errors); a failure is kept (step_failed) and returns 1.
measure() {
    local step=$1 run=$2 ok=$3 rc wall cpu rss
    shift 3
    checkpoint_and_sync
    run_timed "$work/out" "$@"
    if [ "$rc" != "$ok" ]; then
        step_failed "$step" "$run"
        return 1
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$step" "$run" "$wall" "$cpu" "$rss" >>"$results"
    log "$step run $run: $(tail -n 1 "$results" | awk -F '\t' '{ printf "wall %s s, client CPU %s s, peak RSS %d MiB", $3, $4, $5 / 1024 }')"
}

sg_dsn() {
    echo "dbname=$1"
}

# A round on a busy machine is run again, up to twice as many rounds in
# all, and left out of the medians (lib.sh: round_begin, round_end).
load_start=$(load_average)
for ((run = 1; good < runs && run <= 2 * runs; run++)); do
    round_begin "$run"

    fresh_db mig_psql
    fresh_db mig_sg
    measure psql_up "$run" 0 psql -X -q -v ON_ERROR_STOP=1 -d mig_psql -f "$set_dir/up.sql" || true
    if measure sg_migrate "$run" 0 "$sg" migrate --dsn "$(sg_dsn mig_sg)" \
        --migrations "$set_dir/sg"; then
        # Its own per-file times: "applied  FILE  N ms".
        awk -v r="$run" '$1 == "applied" { print "sg_migrate\t" r "\t" $2 "\t" $3 }' "$work/out" \
            >>"$durations"
    fi
    if [ -z "$sqitch_why" ]; then
        fresh_db mig_sqitch
        measure sqitch_deploy "$run" 0 "${sqitch[@]}" deploy --verify \
            "$(sqitch_target mig_sqitch)" || true
    fi

    measure sg_status "$run" 0 "$sg" status --dsn "$(sg_dsn mig_sg)" \
        --migrations "$set_dir/sg" || true
    [ -n "$sqitch_why" ] ||
        measure sqitch_status "$run" 0 "${sqitch[@]}" status "$(sqitch_target mig_sqitch)" || true

    measure psql_down "$run" 0 psql -X -q -v ON_ERROR_STOP=1 -d mig_psql -f "$set_dir/down.sql" ||
        true
    measure sg_revert "$run" 0 "$sg" revert --dsn "$(sg_dsn mig_sg)" --migrations "$set_dir/sg" \
        --to 0 || true
    [ -n "$sqitch_why" ] ||
        measure sqitch_revert "$run" 0 "${sqitch[@]}" revert -y "$(sqitch_target mig_sqitch)" ||
        true

    # What migrate spends on lint before it applies anything.
    measure sg_lint_set "$run" 0 "$sg" lint "$set_dir/sg" || true
    measure lint_text "$run" 1 "$sg" lint "$work/lint" || true
    measure lint_json "$run" 1 "$sg" lint --json "$work/lint" || true
    [ -s "$work/lint.json" ] || cp "$work/out" "$work/lint.json"

    round_end "$run"
done
warn_if_every_round_disturbed

# --- where shardgate's time goes -------------------------------------------------

# One more migrate, and the same SQL through psql, with every statement's
# duration in the server log (log_min_duration_statement = 0, set on these
# two databases only). Logging slows both a little; this run is not among
# the measured ones.
log "profiling: one migrate and one psql run with every statement logged"
profile=$work/profile.tsv
for db in mig_prof_sg mig_prof_psql; do
    fresh_db "$db"
    q -c "ALTER DATABASE $db SET log_min_duration_statement = 0"
done
log_offset=$(stat -c %s "$server_log")
prof_start=$(date +%s.%N)
"$sg" migrate --dsn "$(sg_dsn mig_prof_sg)" --migrations "$set_dir/sg" >/dev/null 2>"$work/err" ||
    die "the profiled migrate failed: $(grep -m 1 . "$work/err")"
prof_sg_wall=$(awk -v s="$prof_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
prof_start=$(date +%s.%N)
psql -X -q -v ON_ERROR_STOP=1 -d mig_prof_psql -f "$set_dir/up.sql" >/dev/null ||
    die "the profiled psql run failed"
prof_psql_wall=$(awk -v s="$prof_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
# Sessions write their last lines as they end.
sleep 1

# Every logged statement of the two databases as "db class ms counted
# describe": parse, bind and execute of one statement each have a duration
# line (counted is 1 for execute and for a simple query only); a schema
# description runs from its SAVEPOINT (or, in a transaction=off file, its
# own BEGIN) to the ROLLBACK that ends it, and describe is its ordinal, that
# is the migration it follows. A statement's text starts on the line of its
# duration; continuation lines begin with a tab.
tail -c "+$((log_offset + 1))" "$server_log" | awk -v OFS='\t' '
    match($0, /^[0-9-]+ [0-9:.]+ [^ ]+ \[[0-9]+\] mig_prof_(sg|psql) LOG:  duration: [0-9.]+ ms  /) {
        split($0, f, " ")
        pid = f[4]
        db = f[5]
        ms = f[8]
        rest = substr($0, RLENGTH + 1)
        counted = rest ~ /^(statement|execute)/
        sub(/^[a-z]+( <[^>]*>)?: /, "", rest)
        class = "migration"
        if (db == "mig_prof_psql") {
            if (rest ~ /^(BEGIN|COMMIT);?$/)
                class = "txn"
        } else if (describing[pid]) {
            class = "describe"
            if (rest ~ /^ROLLBACK/)
                describing[pid] = 0
        } else if (rest ~ /^(SAVEPOINT shardgate_describe|BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY)/) {
            class = "describe"
            describing[pid] = 1
            describes[pid]++
        } else if (rest ~ /pg_blocking_pids/) {
            class = "watch"
        } else if (rest ~ /shardgate\.events/) {
            class = "event"
        } else if (rest ~ /^INSERT INTO shardgate\.migrations/) {
            class = "registry_begin"
        } else if (rest ~ /^UPDATE shardgate\.migrations SET status = \$2, finished_at/) {
            class = "registry_finish"
        } else if (rest ~ /advisory|shardgate\.meta|CREATE SCHEMA IF NOT EXISTS shardgate|to_regclass\(.shardgate|FROM shardgate\.migrations ORDER BY/) {
            class = "once"
        } else if (rest ~ /shardgate\.migrations/) {
            class = "registry_other"
        } else if (rest ~ /^(BEGIN|COMMIT|ROLLBACK|SET (LOCAL|SESSION) )/) {
            class = "txn"
        }
        # Which part of a description: the kind of object a catalog query
        # lists (its first literal), the pinned settings, or the statements
        # that open and close it.
        what = ""
        if (class == "describe") {
            if (match(rest, /^SELECT \047[a-z]+ \047/))
                what = substr(rest, 9, RLENGTH - 10)
            else if (rest ~ /^SELECT CASE c\.relkind/)
                what = "view"
            else if (rest ~ /^SELECT CASE p\.prokind/)
                what = "function"
            else if (rest ~ /set_config/)
                what = "pinned settings (set_config)"
            else
                what = "SAVEPOINT and ROLLBACK TO SAVEPOINT"
        }
        print db, class, ms, counted, (class == "describe" ? describes[pid] : 0), what
    }' >"$profile"

# --- report --------------------------------------------------------------------

all_results=$results
results=$(counted_only "$results")
durations=$(counted_only "$durations")

declare -A wall cpu rss
steps=(psql_up sg_migrate sqitch_deploy sg_status sqitch_status psql_down sg_revert sqitch_revert
    sg_lint_set lint_text lint_json)
for s in "${steps[@]}"; do
    step_medians "$results" "$s" wall=3 cpu=4 rss=5
done

n=$migrations
declare -A label=(
    [psql_up]="psql -f up.sql: the $n up sections (and verify lines), one transaction each, one session"
    [sg_migrate]="shardgate migrate"
    [sqitch_deploy]="sqitch deploy --verify"
    [sg_status]="shardgate status (all $n applied)"
    [sqitch_status]="sqitch status (all $n deployed)"
    [psql_down]="psql -f down.sql: the $n down sections, newest first"
    [sg_revert]="shardgate revert --to 0"
    [sqitch_revert]="sqitch revert -y"
    [sg_lint_set]="shardgate lint of the $n migrations (what migrate lints first)"
    [lint_text]="shardgate lint, $lint_files files, text to /dev/null"
    [lint_json]="shardgate lint --json, $lint_files files"
)
# The step each row is compared with.
declare -A peer=(
    [sg_migrate]=psql_up [sqitch_deploy]=psql_up [psql_up]=psql_up
    [sg_revert]=psql_down [sqitch_revert]=psql_down [psql_down]=psql_down
)

# row STEP PER: one table row; PER is what the per-item time divides by.
row() {
    local s=$1 per=$2
    if [ -z "${wall[$s]}" ]; then
        local skipped=
        [[ "$s" != sqitch_* ]] || skipped=$sqitch_why
        printf '| %s | n/a (%s) | | | | |\n' "${label[$s]}" "$(no_result "$s" "$skipped")"
        return
    fi
    local vs=
    [ -z "${peer[$s]:-}" ] || vs=$(calc 'sprintf("%.2f×", w / p)' w="${wall[$s]}" p="${wall[${peer[$s]}]}")
    printf '| %s | %s%s | %s | %s | %s | %s |\n' "${label[$s]}" "$(f2 "${wall[$s]}")" \
        "$(spread "$results" "$s" 3)" "$(f2 "${cpu[$s]}")" "$(rss_mib "${rss[$s]}")" \
        "$(calc 'sprintf("%.2f", w * 1000 / n)' w="${wall[$s]}" n="$per")" "$vs"
}

overhead=$(calc 'sprintf("%.1f", (s - p) * 1000 / n)' s="${wall[sg_migrate]}" p="${wall[psql_up]}" \
    n="$n")
revert_overhead=$(calc 'sprintf("%.1f", (s - p) * 1000 / n)' s="${wall[sg_revert]}" \
    p="${wall[psql_down]}" n="$n")

# Each round's own overhead, median and range (the machine's speed drifts
# between rounds).
round_overheads() {
    [ -n "${wall[$1]}" ] && [ -n "${wall[$2]}" ] || return 0
    awk -F '\t' -v a="$1" -v b="$2" -v n="$n" '$1 == a { x[$2] = $3 } $1 == b { y[$2] = $3 }
        END { for (r in x) if (r in y) print (x[r] - y[r]) * 1000 / n }' "$results" | median_range '%.1f'
}

# The profile: per class, statements and server milliseconds per migration.
prof() {
    awk -F '\t' -v db="$1" -v c="$2" -v n="$n" -v what="$3" '$1 == db && (c == "" || $2 == c) {
            ms += $3; k += $4 }
        END { printf "%.2f", what == "count" ? k / n : ms / n }' "$profile"
}
prof_row() {
    local c=$1 text=$2 ms
    ms=$(prof mig_prof_sg "$c" ms)
    printf '| %s | %s | %s | %s |\n' "$text" "$(prof mig_prof_sg "$c" count)" "$ms" \
        "$(calc 'sprintf("%.0f %%", m / t * 100)' m="$ms" t="$(prof mig_prof_sg "" ms)")"
}
# describe_ms FIRST LAST: mean server ms of the schema descriptions after
# migrations FIRST to LAST.
describe_ms() {
    awk -F '\t' -v a="$1" -v b="$2" '$2 == "describe" && $5 >= a && $5 <= b { ms[$5] += $3 }
        END { for (k in ms) { t += ms[k]; m++ } if (m) printf "%.2f", t / m }' "$profile"
}
# file_ms FIRST LAST: median over files FIRST to LAST (by version) of the
# median over rounds of the duration migrate printed for the file.
file_ms() {
    awk -F '\t' -v a="$1" -v b="$2" '{ v = $3 + 0 } v >= a && v <= b { print $3 "\t" $4 }' \
        "$durations" | sort -k 1,1 -k 2,2g | awk -F '\t' '
            function flush() { if (k) print (k % 2 ? x[(k + 1) / 2] : (x[k / 2] + x[k / 2 + 1]) / 2) }
            $1 != f { flush(); f = $1; k = 0 } { x[++k] = $2 } END { flush() }' | median
}
tenth=$(((n + 9) / 10))

# describe_rows: per part of the schema description, its mean server ms per
# description over all of them, the first tenth and the last tenth of the
# migrations, the costliest first.
describe_rows() {
    awk -F '\t' -v n="$n" -v tenth="$tenth" '$2 == "describe" {
            all[$6] += $3
            if ($5 <= tenth) first[$6] += $3
            if ($5 > n - tenth) last[$6] += $3
        }
        END {
            for (w in all)
                printf "%.3f\t| %s | %.2f | %.2f | %.2f |\n", all[w], (w ~ /^[a-z]+$/ ? "catalog query: " w : w),
                    all[w] / n, first[w] / tenth, last[w] / tenth
        }' "$profile" | sort -t $'\t' -k 1,1gr | cut -f 2-
}
mid=$(((n - tenth) / 2 + 1))
lint_errors=$(grep -o '"errors": *[0-9]*' "$work/lint.json" 2>/dev/null | grep -o '[0-9]*$' || true)
lint_warnings=$(grep -o '"warnings": *[0-9]*' "$work/lint.json" 2>/dev/null | grep -o '[0-9]*$' || true)
sg_server_ms=$(prof mig_prof_sg "" ms)
psql_server_ms=$(prof mig_prof_psql "" ms)

cat <<EOF
### Results

$(report_machine) from ci/pg-server.sh\
$([ -n "$sqitch_why" ] || echo "; $(sqitch --version | head -n 1)"); \
$(if [ "$good" -gt 0 ]; then echo "medians of $good undisturbed runs of $((run - 1))"; \
else echo "medians of all $((run - 1)) runs, every one disturbed"; fi); \
load average at the start $load_start.
Migrations: $n files ($(grep -l 'transaction=off' "$set_dir"/sg/*.sql | wc -l) of them \
transaction=off, $(grep -l 'shardgate:verify' "$set_dir"/sg/*.sql | wc -l) with a verify section).
Lint set: $lint_files files, $lint_lines lines, $(calc 'sprintf("%.0f", b / 1024)' b="$lint_bytes") KiB; \
lint finds ${lint_errors:-?} errors and ${lint_warnings:-?} warnings in it.

| step | wall s (min–max) | client CPU s | client peak RSS MiB | ms per migration (per file for lint) | wall / psql |
|---|---:|---:|---:|---:|---:|
$(row psql_up "$n")
$(row sg_migrate "$n")
$(row sqitch_deploy "$n")
$(row psql_down "$n")
$(row sg_revert "$n")
$(row sqitch_revert "$n")
$(row sg_status "$n")
$(row sqitch_status "$n")
$(row sg_lint_set "$n")
$(row lint_text "$lint_files")
$(row lint_json "$lint_files")

| target | goal | measured | verdict |
|---|---|---:|---|
$(target "shardgate migrate overhead per migration, ms: (migrate − psql) / $n" "< $overhead_target_ms" "$overhead" "v < $overhead_target_ms")
$(target "the same, each round's own: median (min–max)" "" "$(round_overheads sg_migrate psql_up)" "")
$(target "shardgate revert overhead per migration, ms: (revert − psql down) / $n" "" "$revert_overhead" "")
$(target "sqitch deploy --verify / shardgate migrate, wall" "" "$(ratio "${wall[sqitch_deploy]}" "${wall[sg_migrate]}")" "")
$(target "sqitch revert / shardgate revert, wall" "" "$(ratio "${wall[sqitch_revert]}" "${wall[sg_revert]}")" "")
$(target "shardgate lint of $lint_files files, s" "< $lint_target_s" "$(f2 "${wall[lint_text]}")" "v < $lint_target_s")
$(target "shardgate lint --json of $lint_files files, s" "< $lint_target_s" "$(f2 "${wall[lint_json]}")" "v < $lint_target_s")

Where a migration's time goes: one more \`shardgate migrate\` of the same $n files into a fresh \
database with \`log_min_duration_statement = 0\` (not one of the measured runs), every statement's \
server-side duration summed by kind (parse, bind and execute of one statement together). \
Wall time with the logging: $prof_sg_wall s; the same SQL through psql: $prof_psql_wall s, \
of which $(f2 "$psql_server_ms") ms per migration on the server.

| statements of shardgate migrate | statements per migration | server ms per migration | share of server time |
|---|---:|---:|---:|
$(prof_row describe "schema description (fingerprint.c): SAVEPOINT, pinned settings, catalog queries, ROLLBACK TO SAVEPOINT")
$(prof_row registry_finish "registry row finished: UPDATE with the fingerprint and the schema text")
$(prof_row registry_begin "registry row started: INSERT … ON CONFLICT")
$(prof_row registry_other "other registry updates (progress of transaction=off files)")
$(prof_row event "event row: INSERT INTO shardgate.events")
$(prof_row txn "BEGIN, SET LOCAL timeouts, COMMIT")
$(prof_row migration "the migration's own SQL: up and verify sections")
$(prof_row watch "lock watcher")
$(prof_row once "once per run, spread: advisory lock, registry set-up and read")
| all | $(prof mig_prof_sg "" count) | $(f2 "$sg_server_ms") | 100 % |

Server time is $(calc 'sprintf("%.1f", s)' s="$sg_server_ms") of the \
$(calc 'sprintf("%.1f", w * 1000 / n)' w="$prof_sg_wall" n="$n") ms per migration of that run; \
the rest is the client and the round trips. The schema description by part, server ms per \
description, over all of them and over those after the first and the last tenth of the files:

| part of the schema description | all $n | first $tenth | last $tenth |
|---|---:|---:|---:|
$(describe_rows)

| files (by version) | migrate's own time per file, ms (median) | schema description on the server, ms (mean) |
|---|---:|---:|
| 1–$tenth | $(f2 "$(file_ms 1 "$tenth")") | $(describe_ms 1 "$tenth") |
| $mid–$((mid + tenth - 1)) | $(f2 "$(file_ms "$mid" $((mid + tenth - 1)))") | $(describe_ms "$mid" $((mid + tenth - 1))) |
| $((n - tenth + 1))–$n | $(f2 "$(file_ms $((n - tenth + 1)) "$n")") | $(describe_ms $((n - tenth + 1)) "$n") |

$(rounds_report "$all_results" "psql up=psql_up" "migrate=sg_migrate" \
    "sqitch deploy=sqitch_deploy" "lint=lint_text")
EOF
