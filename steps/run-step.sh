#!/usr/bin/env bash
# The command line of every step Command: `bash build/step-programs/steps/run-step.sh <step>`.
# Runs the step in a warm worker of this build's step runner (steps/runner.ts), which starts it in
# milliseconds instead of Node's own start-up; or, when no runner answers, directly with
# `node main.js <step>` (and starts a runner in the background for the steps after this one).
# Both ways print the same, exit with the same status, and see the same environment.
# Bash builtins only on the runner's path (/dev/tcp, read, printf, compgen): no process is started.
# KONG_UPGRADE_STEP_RUNNER=off: every step runs directly, and no runner is started.
step=${1:?usage: run-step.sh <step>}
dir=${BASH_SOURCE[0]%/*}
[ "$dir" = "${BASH_SOURCE[0]}" ] && dir=.

direct() {
    exec node "$dir/main.js" "$step"
}

[ "${KONG_UPGRADE_STEP_RUNNER:-on}" = off ] && direct

start_runner() {
    # Detached from this step's output, so the Command does not wait for it; it leaves when idle.
    # With none of this step's environment: no secret sits in the runner (each step brings its own).
    ( env -i PATH="$PATH" HOME="${HOME:-/}" KONG_UPGRADE_STEP_RUNNER_IDLE_SECONDS="${KONG_UPGRADE_STEP_RUNNER_IDLE_SECONDS:-}" \
        node "$dir/runner.js" </dev/null >>"$dir/runner.log" 2>&1 & )
    printf '[%s] started the step runner for the steps after this one (%s/runner.log)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$dir" >&2
}

if ! { [ -r "$dir/runner.info" ] && read -r port hello proof _ <"$dir/runner.info"; } 2>/dev/null; then
    start_runner
    direct
fi
# A port nothing listens on (the runner was killed): start another, run this step directly.
# (In braces: the redirection of bash's own error applies to them, not to the rest of the script.)
if ! { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
    start_runner
    direct
fi
# Hello, then the runner's proof, before the environment is sent: whatever else holds the port
# (this build's runner gone, runner.info left behind) learns only a hello no runner answers any more.
printf '%s\n' "$hello" >&3
if ! read -r -t 2 answer <&3 || [ "$answer" != "$proof" ]; then
    exec 3<&-
    direct
fi

# The request: three lines, then the whole environment as NAME=value entries, each ended by NUL,
# then an empty entry. One printf each, so the runner reads it in a few writes.
entries=()
for name in $(compgen -e); do entries+=("$name=${!name}"); done
{
    printf 'kong-upgrade-step 1\n%s\n%s\n' "$step" "$PWD"
    printf '%s\0' "${entries[@]}"
    printf '\0'
} >&3

# Frames: 1<line> stdout, 2<line> stderr, x<status> the end; d: no worker took the step (none
# ready in time, or the runner is leaving), nothing of it ran: run it directly. (a: the runner
# acknowledging part of the request, so that the rest is sent at once: nothing to do.)
while IFS= read -r line <&3 || [ -n "$line" ]; do
    case $line in
        1*) printf '%s\n' "${line:1}" ;;
        2*) printf '%s\n' "${line:1}" >&2 ;;
        x*) exit "${line:1}" ;;
        d) exec 3<&-; direct ;;
    esac
    line=
done
printf 'error: the step runner ended before the step did (its log: %s/runner.log); the step did not complete: run again\n' "$dir" >&2
exit 1
