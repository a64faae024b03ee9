#!/usr/bin/env bash
# `npm run down:dev`: `pulumi destroy` of the dev stack, then what it deliberately kept and how to
# remove that too. The program never drops data: Kong's database, its snapshots and the databases
# a rollback set aside stay (in the embedded server's volume, or on your server), and so do dump
# files and pulled images. Extra arguments go to `pulumi destroy` (`npm run down:dev -- --yes`).
set -euo pipefail
source "$(dirname "$0")/pulumi-env.sh"
kong_upgrade_require_docker
kong_upgrade_choose_pulumi
kong_upgrade_local_backend
cd "$kong_upgrade_root"
setting() { "$PULUMI_CLI" config get --path "$1" --stack dev 2>/dev/null || echo "$2"; }
mode=$(setting database.mode embedded)
db=$(setting database.name kong)
dumps=$(setting upgrade.dumpDirectory ./snapshots)
"$PULUMI_CLI" destroy --stack dev "$@"

volume=kong-upgrade-dev-pgdata
{
    echo "The dev stack is destroyed. Kept on purpose, so that no data is lost:"
    if [ "$mode" = embedded ]; then
        if docker volume inspect "$volume" >/dev/null 2>&1; then
            echo "  - Docker volume $volume: Kong's database $db, its snapshots (${db}_snap_*) and the databases rollbacks set aside (${db}_failed_*)"
            echo "      remove it (all of that, for good): docker volume rm $volume"
        fi
    else
        echo "  - on your PostgreSQL server: Kong's database $db, its snapshots (${db}_snap_*) and the databases rollbacks set aside (${db}_failed_*)"
        echo "      remove those you no longer need: DROP DATABASE <name>;"
    fi
    if [ -d "$dumps" ] && files=$(find "$dumps" -maxdepth 1 -type f | wc -l) && [ "$files" -gt 0 ]; then
        echo "  - $((files)) file(s) in $dumps: dump snapshots with their .json records, declarative exports"
        echo "      remove them: rm -r $dumps"
    fi
    echo "  - the Docker images it pulled: docker image ls; docker image rm <image> frees the space"
    echo "  - the dev stack itself, now empty, and its configuration (Pulumi.dev.yaml)"
} >&2
