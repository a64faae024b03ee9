#!/usr/bin/env bash
# The whole test suite (`npm test`): type-check, compile the test fixtures, run every test file.
# Tests start what they need themselves (embedded PostgreSQL per file); the Docker rehearsal
# runs only where a Docker engine answers, and says so when it does not.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc --noEmit -p .
rm -rf build && npx tsc -p . --noEmit false --outDir build --rootDir . --sourceMap false
# Step runners the tests started (steps/runner.ts: they would leave by themselves after 15 idle
# minutes) leave with the suite.
stop_runners() {
  for info in build/step-programs.*/steps/runner.info build/runner-test-*/steps/runner.info; do
    [ -f "$info" ] && kill "$(cut -d' ' -f4 "$info")" 2>/dev/null || true
  done
}
trap stop_runners EXIT
node --require ts-node/register/transpile-only --test --test-concurrency=2 test/*.test.ts
