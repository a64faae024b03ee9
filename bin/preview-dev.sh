#!/usr/bin/env bash
# `npm run preview:dev`: `pulumi preview` of the dev stack, the plan of what `npm run up:dev` would
# do (creating the stack and its password the first time, as up:dev does). Needs Docker like
# up:dev (the Docker provider checks the daemon when it starts); `npm run plan -- --stack dev`
# shows the runbook without Docker or Pulumi.
set -euo pipefail
source "$(dirname "$0")/pulumi-env.sh"
kong_upgrade_require_docker
kong_upgrade_choose_pulumi
kong_upgrade_local_backend
cd "$kong_upgrade_root"
kong_upgrade_dev_stack
"$PULUMI_CLI" preview --stack dev "$@"
