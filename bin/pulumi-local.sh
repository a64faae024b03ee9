#!/usr/bin/env bash
# `npm run pulumi -- <pulumi args>`: the Pulumi CLI on this project's own local state backend
# (.pulumi-state/, beside the code) with a passphrase generated once for it. Your `pulumi login`
# for other projects is not touched: the backend and passphrase are set for this command only.
# Set PULUMI_BACKEND_URL / PULUMI_CONFIG_PASSPHRASE(_FILE) yourself to use your own.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v pulumi >/dev/null || { echo "The Pulumi CLI is not installed: see https://www.pulumi.com/docs/iac/download-install/" >&2; exit 1; }
mkdir -p .pulumi-state
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$PWD/.pulumi-state}"
if [ -z "${PULUMI_CONFIG_PASSPHRASE+x}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  [ -s .pulumi-state/passphrase ] || { node -e 'process.stdout.write(require("crypto").randomBytes(24).toString("base64url"))' > .pulumi-state/passphrase; chmod 600 .pulumi-state/passphrase; }
  export PULUMI_CONFIG_PASSPHRASE_FILE="$PWD/.pulumi-state/passphrase"
fi
exec pulumi "$@"
