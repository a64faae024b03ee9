#!/usr/bin/env bash
# `npm run up:dev`: `pulumi up` on the dev stack with the embedded PostgreSQL. Creates the stack
# and a random database password (a Pulumi secret) the first time; needs Docker and the Pulumi CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "Docker is not running or not installed; the dev stack runs Kong and PostgreSQL in Docker" >&2; exit 1; }
pulumi() { bash bin/pulumi-local.sh "$@"; }
pulumi stack select --create dev >/dev/null
if ! pulumi config get --path database.password --stack dev >/dev/null 2>&1; then
  node -e 'process.stdout.write(require("crypto").randomBytes(18).toString("base64url"))' | pulumi config set --secret --path database.password --stack dev
  echo "Generated the dev database password (pulumi config get --path database.password shows it)."
fi
pulumi up --stack dev "$@"
