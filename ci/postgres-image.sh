#!/usr/bin/env bash
# Builds the docker image postgres:15 for the docker sandbox's tests from the
# host's PostgreSQL 15 files (package postgresql-15), without a registry:
# nothing is pulled. The image is FROM scratch with the server binaries, their
# shared libraries, PostgreSQL's lib and share directories (contrib extensions
# such as amcheck included; the LLVM JIT left out), dash as /bin/sh, zoneinfo,
# the C.UTF-8 locale and an entrypoint (postgres-entrypoint.sh) that behaves
# like the official image's for what shardgate uses.
#
#   ci/postgres-image.sh        # builds unless an up-to-date image exists
#
# An image built by this script carries labels with a hash of its recipe (this
# script and the entrypoint) and the server's version; when both match, the
# build is skipped (the cache between runs). Needs a running dockerd
# (ci/docker-service.sh start).
set -euo pipefail

prog=postgres-image
tag=postgres:15
bindir=/usr/lib/postgresql/15/bin
libdir=/usr/lib/postgresql/15/lib
sharedir=/usr/share/postgresql/15
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
    echo "$prog: error: $*" >&2
    exit 1
}

[ -x "$bindir/postgres" ] || die "no PostgreSQL 15 server binaries in $bindir (package postgresql-15)"
command -v docker >/dev/null || die "no docker client in PATH"
server_version=$("$bindir/postgres" --version)
recipe=$(cat "${BASH_SOURCE[0]}" "$here/postgres-entrypoint.sh" | sha256sum | cut -c1-16)

label() {
    docker image inspect --format "{{index .Config.Labels \"$1\"}}" "$tag" 2>/dev/null || true
}
if [ "$(label io.shardgate.image-recipe)" = "$recipe" ] &&
    [ "$(label io.shardgate.postgres-version)" = "$server_version" ]; then
    exit 0
fi
old_image=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)

work=$(mktemp -d "${TMPDIR:-/tmp}/shardgate-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

# Debian is merged-/usr: /bin, /lib and /lib64 are links into /usr, and ldd
# names libraries by those paths.
mkdir -p "$root"/{usr/bin,usr/lib/x86_64-linux-gnu,usr/lib64,etc,tmp,var/lib/postgresql,var/run/postgresql}
ln -s usr/bin "$root/bin"
ln -s usr/bin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"

# Copies files to the same path under the root, following links, and every
# shared library they need (what ldd resolves; unresolved ones are optional
# extension dependencies the host does not have either).
declare -A copied=()
copy() {
    local f dest
    for f in "$@"; do
        [ -n "${copied[$f]:-}" ] && continue
        copied[$f]=1
        dest=$root$f
        mkdir -p "$(dirname "$dest")"
        cp -L "$f" "$dest"
    done
}
copy_with_libs() {
    local libs
    copy "$@"
    libs=$({ ldd "$@" 2>/dev/null || true; } |
        awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $2 ~ /^\(/ { print $1 }' | sort -u)
    # shellcheck disable=SC2086 # paths without spaces, one per line
    [ -z "$libs" ] || copy $libs
}

copy_with_libs "$bindir"/{postgres,initdb,pg_ctl,pg_isready,psql}
copy_with_libs /usr/bin/{dash,mkdir,chmod,chown,id,setpriv}
ln -s dash "$root/usr/bin/sh"

# The extension modules and their libraries; llvmjit needs libLLVM (100 MB)
# for a JIT that throwaway restores do not need: without it jit is off.
mkdir -p "$root$libdir"
mapfile -t modules < <(find "$libdir" -maxdepth 1 -name '*.so' ! -name 'llvmjit*')
copy_with_libs "${modules[@]}"
mkdir -p "$root$sharedir"
cp -a "$sharedir/." "$root$sharedir/"

mkdir -p "$root/usr/share" "$root/usr/lib/locale"
cp -a /usr/share/zoneinfo "$root/usr/share/"
cp -a /usr/lib/locale/C.utf8 "$root/usr/lib/locale/"
# Without /etc/localtime initdb scans every zone to guess one (+200 ms).
ln -s /usr/share/zoneinfo/Etc/UTC "$root/etc/localtime"

# The host's ids for postgres, so files it owns in bind mounts read the same.
uid=$(id -u postgres 2>/dev/null || echo 999)
gid=$(id -g postgres 2>/dev/null || echo 999)
cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
postgres:x:$uid:$gid:PostgreSQL administrator:/var/lib/postgresql:/bin/sh
EOF
cat >"$root/etc/group" <<EOF
root:x:0:
postgres:x:$gid:
EOF
echo "hosts: files" >"$root/etc/nsswitch.conf"
install -D -m 0755 "$here/postgres-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
ldconfig -r "$root"

chmod 1777 "$root/tmp"
chmod 3777 "$root/var/run/postgresql"
chown -R "$uid:$gid" "$root/var/lib/postgresql" "$root/var/run/postgresql"

mkdir "$work/context"
tar -C "$root" --numeric-owner -cf "$work/context/rootfs.tar" .
cat >"$work/context/Dockerfile" <<EOF
FROM scratch
ADD rootfs.tar /
ENV PATH=$bindir:/usr/bin:/bin LANG=C.UTF-8 PGDATA=/var/lib/postgresql/data
LABEL io.shardgate.image-recipe="$recipe" io.shardgate.postgres-version="$server_version"
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
EOF

echo "$prog: building $tag from the host's $server_version" >&2
# The classic builder: BuildKit needs the buildx plugin, which Debian's
# docker.io does not ship.
if ! DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$work/context" >"$work/build.log" 2>&1; then
    cat "$work/build.log" >&2
    die "docker build of $tag failed"
fi
# The image this one replaces would stay behind untagged: remove it unless a
# container still uses it.
if [ -n "$old_image" ] && [ "$(docker image inspect --format '{{.Id}}' "$tag")" != "$old_image" ]; then
    docker image rm "$old_image" >/dev/null 2>&1 || true
fi
