#!/usr/bin/env bash
# Installs the Debian packages needed to build and test shardgate, and the npm
# packages of the S3 test service (tests/harness/s3, from its lock file).
# Idempotent: when everything is installed it neither needs the network nor
# says anything. The postgresql-15 package may create and start its own
# cluster on port 5432; shardgate never uses it (tests and the demo run private
# servers on other ports), so it is left alone. docker.io (dockerd and its
# client) and curl serve the docker sandbox's tests, through
# ci/docker-service.sh and ci/postgres-image.sh. libprotobuf-c-dev is needed
# for its header only: libpg_query carries the protobuf-c runtime.
set -euo pipefail

packages=(
    build-essential cmake pkg-config clang-format
    libpq-dev postgresql-15 postgresql-client-15
    libarchive-dev libzstd-dev libsodium-dev libcurl4-openssl-dev libssl-dev
    check libjansson-dev libfyaml-dev libexpat1-dev libpg-query-dev libprotobuf-c-dev libxxhash-dev
    zstd time s3cmd openssl
    docker.io curl
    chromium # headless, renders the HTML run report in tests/integration/test_report_html.c
)
# The S3 test service runs on Node.js; any recent node and npm will do.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    packages+=(nodejs npm)
fi

# dpkg-query fails when any package is unknown to it; what it prints is enough.
installed=" $({ dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${packages[@]}" 2>/dev/null ||
    true; } | awk '$1 == "installed" { printf "%s ", $2 }')"
missing=()
for pkg in "${packages[@]}"; do
    [[ $installed == *" $pkg "* ]] || missing+=("$pkg")
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT

install_packages() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null; then
            echo "install-deps: missing packages: ${missing[*]}" >&2
            echo "install-deps: hint: run as root, or install them with apt-get" >&2
            exit 1
        fi
        sudo=(sudo)
    fi

    export DEBIAN_FRONTEND=noninteractive
    echo "install-deps: installing ${missing[*]}" >&2
    if ! { "${sudo[@]}" apt-get update -q &&
           "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "install-deps: error: apt-get failed" >&2
        exit 1
    fi
}

[ ${#missing[@]} -eq 0 ] || install_packages

# npm writes node_modules/.package-lock.json on every install: older than the
# committed lock file means the lock file changed since.
s3_service=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/harness/s3" && pwd)
stamp=$s3_service/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ "$s3_service/package-lock.json" -nt "$stamp" ]; then
    echo "install-deps: installing the npm packages of tests/harness/s3" >&2
    if ! (cd "$s3_service" && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
        cat "$log" >&2
        echo "install-deps: error: npm ci failed in tests/harness/s3" >&2
        exit 1
    fi
fi
