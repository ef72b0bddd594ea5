#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server on 127.0.0.1 for the demo and benchmarks.
#
#   eval "$(ci/pg-server.sh start DIR [PORT])"   # prints export PGHOST=... lines
#   ci/pg-server.sh stop DIR
#
# The cluster lives in DIR/data, its socket in DIR and its log in DIR/server.log.
# It trusts every local connection and does not fsync: never keep data in it.
set -euo pipefail

prog=pg-server
die() {
    echo "$prog: error: $*" >&2
    exit 1
}
usage() {
    echo "usage: $0 start DIR [PORT] | stop DIR" >&2
    exit 2
}

bindir() {
    local dir
    dir=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$dir" ] && [ -x "$dir/postgres" ] &&
        "$dir/postgres" --version 2>/dev/null | grep -q ' 15\.'; then
        echo "$dir"
    else
        echo /usr/lib/postgresql/15/bin
    fi
}

# postgres refuses to run as root; as root, the server runs as the postgres
# system user that the postgresql-common package creates.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
    local port
    for port in $(seq 54320 54420); do
        port_in_use "$port" || {
            echo "$port"
            return
        }
    done
    die "no free port in 54320-54420"
}

start() {
    local dir=$1 port=${2:-} bin pid i
    bin=$(bindir)
    [ -x "$bin/postgres" ] || die "no PostgreSQL 15 server binaries in $bin"
    [ -n "$port" ] || port=$(free_port)
    port_in_use "$port" && die "port $port on 127.0.0.1 is already in use"

    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -e "$dir/data" ] && die "$dir/data already exists"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"

    as_owner "$bin/initdb" -D "$dir/data" -A trust -E UTF8 --locale=C --no-sync \
        -U postgres >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        die "initdb failed in $dir/data"
    }

    # setsid and the redirections detach the server from the caller, so that
    # `eval "$(pg-server.sh start ...)"` returns at once.
    as_owner setsid "$bin/postgres" -D "$dir/data" -k "$dir" -h 127.0.0.1 -p "$port" \
        -c fsync=off -c full_page_writes=off </dev/null >>"$dir/server.log" 2>&1 &
    pid=$!

    for ((i = 0; i < 600; i++)); do
        if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; then
            echo "$prog: server ready on 127.0.0.1:$port (log: $dir/server.log)" >&2
            echo "export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres"
            return
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    tail -n 20 "$dir/server.log" >&2
    stop "$dir" 2>/dev/null || true
    die "server in $dir did not start"
}

stop() {
    local dir=$1 pid i
    [ -f "$dir/data/postmaster.pid" ] || {
        echo "$prog: no server running in $dir" >&2
        return 0
    }
    pid=$(head -n 1 "$dir/data/postmaster.pid")
    kill -INT "$pid" 2>/dev/null || return 0
    # Fast shutdown: sessions are ended and a checkpoint is written, which is
    # quick with fsync off; fall back to an immediate shutdown after 30 s.
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    kill -QUIT "$pid" 2>/dev/null || true
    die "server $pid in $dir did not stop on SIGINT; sent SIGQUIT"
}

[ $# -ge 2 ] || usage
case "$1" in
start)
    [ $# -le 3 ] || usage
    start "$2" "${3:-}"
    ;;
stop)
    [ $# -eq 2 ] || usage
    stop "$2"
    ;;
*) usage ;;
esac
