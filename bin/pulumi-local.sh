#!/usr/bin/env bash
# `npm run pulumi -- <pulumi args>`: the project's own Pulumi CLI (see bin/pulumi-env.sh for
# KONG_UPGRADE_PULUMI) on this project's local state backend (.pulumi-state/, beside the code)
# with a passphrase generated once for it. Your `pulumi login` for other projects is not touched:
# the backend and passphrase are set for this command only. Set PULUMI_BACKEND_URL /
# PULUMI_CONFIG_PASSPHRASE(_FILE) yourself to use your own.
set -euo pipefail
source "$(dirname "$0")/pulumi-env.sh"
kong_upgrade_choose_pulumi
kong_upgrade_local_backend
cd "$kong_upgrade_root"
exec "$PULUMI_CLI" "$@"
