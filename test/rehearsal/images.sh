#!/usr/bin/env bash
# Builds the rehearsal's images locally (no registry): a Debian root filesystem with PostgreSQL 15
# and Node.js made by debootstrap and `docker import`ed once (cached as kong-upgrade-rootfs:1), then
#   kong-upgrade-postgres:15   honouring the official image's contract (POSTGRES_*, PGDATA, pg_isready)
#   kong-sim:<version>         the Kong stand-in with the official image's KONG_* environment and
#                              `kong health`, one per version given (hops included)
# Usage: test/rehearsal/images.sh 3.4.3 3.5.0 3.6.1 3.7.1
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=${KONG_UPGRADE_IMAGE_CACHE:-/var/cache/kong-upgrade}
export DOCKER_BUILDKIT=0

if ! docker image inspect kong-upgrade-rootfs:1 >/dev/null 2>&1; then
  if [ ! -x "$cache/rootfs/usr/bin/node" ]; then
    command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
    rm -rf "$cache/rootfs.tmp" && mkdir -p "$cache"
    debootstrap --variant=minbase --include=postgresql-15,nodejs,ca-certificates bookworm "$cache/rootfs.tmp" http://deb.debian.org/debian >/dev/null
    rm -rf "$cache/rootfs.tmp"/var/cache/apt/archives/*.deb "$cache/rootfs.tmp"/usr/share/doc "$cache/rootfs.tmp"/usr/share/man "$cache/rootfs.tmp"/usr/share/locale
    mv "$cache/rootfs.tmp" "$cache/rootfs"
  fi
  tar -C "$cache/rootfs" -c . | docker import - kong-upgrade-rootfs:1 >/dev/null
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# The stand-in, compiled, with the pg driver and its dependencies.
npx tsc --outDir "$ctx/standin" --rootDir . --module node16 --moduleResolution node16 --target ES2022 --strict --esModuleInterop \
  --skipLibCheck --types node test/kong-standin/kong.ts
node -e '
  const fs = require("fs"), path = require("path");
  const seen = new Set();
  const copy = (name) => {
    if (seen.has(name)) return; seen.add(name);
    const dir = path.join("node_modules", name);
    fs.cpSync(dir, path.join(process.argv[1], "node_modules", name), { recursive: true });
    for (const dep of Object.keys(require(path.resolve(dir, "package.json")).dependencies || {})) copy(dep);
  };
  copy("pg");' "$ctx/standin"
cp test/rehearsal/image/kong test/rehearsal/image/postgres-entrypoint.sh "$ctx/"
chmod +x "$ctx/kong" "$ctx/postgres-entrypoint.sh"

build() { # tag, dockerfile
  printf '%s\n' "$2" > "$ctx/Dockerfile"
  docker build -q -t "$1" "$ctx" >/dev/null
}
build kong-upgrade-postgres:15 'FROM kong-upgrade-rootfs:1
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]'
for version in "$@"; do
  build "kong-sim:$version" "FROM kong-upgrade-rootfs:1
COPY standin /opt/kong-standin
COPY kong /usr/local/bin/kong
ENV KONG_VERSION=$version KONG_PREFIX=/usr/local/kong PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
STOPSIGNAL SIGQUIT
CMD [\"kong\", \"docker-start\"]"
done
echo "images ready: kong-upgrade-postgres:15 $(printf 'kong-sim:%s ' "$@")"
