#!/usr/bin/env bash
# dockerd for the docker sandbox's tests (Debian's docker.io, run as root).
#
#   ci/docker-service.sh start   # starts dockerd unless the socket already answers
#   ci/docker-service.sh stop    # stops dockerd, only if `start` started it
#   ci/docker-service.sh running # exits 0 when the socket answers
#
# Quiet on success. dockerd logs to $SG_DOCKERD_LOG (default
# /var/log/shardgate-dockerd.log); the pid of a dockerd started here is kept
# in /run/shardgate-dockerd.pid, so `stop` never stops a daemon it did not
# start (a developer's own, or the one a CI runner provides).
set -euo pipefail

prog=docker-service
sock=/var/run/docker.sock
pidfile=/run/shardgate-dockerd.pid
containerd_pidfile=/var/run/docker/containerd/containerd.pid
log=${SG_DOCKERD_LOG:-/var/log/shardgate-dockerd.log}
# The first start creates /var/lib/docker and is the slowest (seconds).
start_timeout_s=120

die() {
    echo "$prog: error: $*" >&2
    exit 1
}
usage() {
    echo "usage: $0 start|stop|running" >&2
    exit 2
}

answers() {
    curl -sf --max-time 5 --unix-socket "$sock" http://docker/_ping >/dev/null 2>&1
}

# The pid in pid file $1 if that process is still a running $2: a pid file
# left by a killed run may name a pid reused since by something else, or a
# zombie not yet reaped.
live_pid() {
    local file=$1 comm=$2 pid
    [ -f "$file" ] || return 1
    pid=$(head -n 1 "$file" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$comm" ] || return 1
    [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" != Z ] || return 1
    echo "$pid"
}

start() {
    local pid i
    answers && return 0
    [ "$(id -u)" -eq 0 ] || die "dockerd must be started as root (the socket $sock does not answer)"
    command -v dockerd >/dev/null || die "dockerd is not installed"
    if pid=$(live_pid /var/run/docker.pid dockerd); then
        die "dockerd $pid is running but $sock does not answer" \
            "(see $log or stop it first)"
    fi
    # Stale state of a killed daemon: dockerd refuses a pid file that names a
    # live process, waits 15 s for a containerd its pid file names when that
    # one is dying, and our own pid file would make `stop` kill a stranger.
    rm -f /var/run/docker.pid "$pidfile"
    live_pid "$containerd_pidfile" containerd >/dev/null || rm -f "$containerd_pidfile"

    mkdir -p "$(dirname "$log")"
    setsid dockerd </dev/null >>"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$pidfile"

    for ((i = 0; i < start_timeout_s * 10; i++)); do
        answers && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pidfile"
            tail -n 20 "$log" >&2
            die "dockerd exited at start (log: $log)"
        fi
        sleep 0.1
    done
    tail -n 20 "$log" >&2
    stop
    die "dockerd did not answer on $sock within ${start_timeout_s}s (log: $log)"
}

stop() {
    local pid i
    if ! pid=$(live_pid "$pidfile" dockerd); then
        rm -f "$pidfile"
        return 0
    fi
    # SIGTERM: dockerd stops its containers (10 s grace each, in parallel) and
    # its containerd, then exits.
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        live_pid "$pidfile" dockerd >/dev/null || break
        sleep 0.1
    done
    if live_pid "$pidfile" dockerd >/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "$prog: warning: dockerd $pid did not stop within 60s; killed it" >&2
    fi
    rm -f "$pidfile"
}

[ $# -eq 1 ] || usage
case "$1" in
start) start ;;
stop) stop ;;
running) answers ;;
*) usage ;;
esac
