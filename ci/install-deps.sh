#!/usr/bin/env bash
# Installs the Debian packages needed to build and test shardgate.
# Idempotent: when everything is installed it neither needs the network nor
# says anything. The postgresql-15 package may create and start its own
# cluster on port 5432; shardgate never uses it (tests and the demo run private
# servers on other ports), so it is left alone.
set -euo pipefail

packages=(
    build-essential cmake pkg-config clang-format
    libpq-dev postgresql-15 postgresql-client-15
    libarchive-dev libzstd-dev libsodium-dev libcurl4-openssl-dev libssl-dev
    check libjansson-dev libfyaml-dev libexpat1-dev libpg-query-dev libxxhash-dev
    zstd time
)

# dpkg-query fails when any package is unknown to it; what it prints is enough.
installed=" $({ dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${packages[@]}" 2>/dev/null ||
    true; } | awk '$1 == "installed" { printf "%s ", $2 }')"
missing=()
for pkg in "${packages[@]}"; do
    [[ $installed == *" $pkg "* ]] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get update -q &&
       "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-deps: error: apt-get failed" >&2
    exit 1
fi
