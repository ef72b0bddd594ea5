#!/bin/sh
# Entrypoint of the postgres:15 image that ci/postgres-image.sh builds: the
# part of the official image's docker-entrypoint.sh that shardgate relies on,
# for dash and a handful of binaries.
#
#   POSTGRES_PASSWORD          superuser password (required, unless
#   POSTGRES_HOST_AUTH_METHOD  is trust); host connections use this method,
#                              scram-sha-256 by default
#   POSTGRES_USER              superuser name (postgres)
#   POSTGRES_DB                database created besides postgres
#   POSTGRES_INITDB_ARGS       extra initdb arguments (split on spaces)
#   PGDATA                     /var/lib/postgresql/data
#
# On first start (no PGDATA/PG_VERSION) it runs initdb; then it runs
# postgres "$@" as the postgres user. Started as root, it prepares PGDATA and
# the socket directory (a tmpfs or bind mount owned by root) and drops to
# postgres; started as postgres, it expects them writable.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
export PGDATA

# "docker run IMAGE -c x=y" means postgres with those options.
case "${1:-}" in
-*) set -- postgres "$@" ;;
esac
if [ "${1:-}" != postgres ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    chmod 3777 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

fail() {
    echo "docker-entrypoint: error: $*" >&2
    exit 1
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        fail "POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)"
    fi
    # POSTGRES_INITDB_ARGS is split on spaces (as the official image does),
    # never globbed. The password reaches initdb on a here-document, never on
    # a command line or in a file left behind.
    set -f
    # shellcheck disable=SC2086
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        initdb --username="$POSTGRES_USER" --pwfile=/dev/stdin ${POSTGRES_INITDB_ARGS:-} <<EOF
$POSTGRES_PASSWORD
EOF
    else
        initdb --username="$POSTGRES_USER" ${POSTGRES_INITDB_ARGS:-}
    fi
    set +f
    printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

    # Single-user mode creates the database without a temporary server (one
    # that clients could mistake for the real one).
    if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
        case "$POSTGRES_DB" in
        *\"*) fail "POSTGRES_DB must not contain a double quote" ;;
        esac
        echo "CREATE DATABASE \"$POSTGRES_DB\"" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
fi

exec "$@"
