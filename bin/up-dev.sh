#!/usr/bin/env bash
# `npm run up:dev`: `pulumi up` on the dev stack with the embedded PostgreSQL. Creates the stack
# and a random database password (a Pulumi secret) the first time. Checks Docker first: when it
# does not answer, nothing is touched. Extra arguments go to `pulumi up` (`npm run up:dev -- --yes`).
set -euo pipefail
source "$(dirname "$0")/pulumi-env.sh"
kong_upgrade_require_docker
kong_upgrade_choose_pulumi
kong_upgrade_local_backend
cd "$kong_upgrade_root"
kong_upgrade_dev_stack
"$PULUMI_CLI" up --stack dev "$@"
