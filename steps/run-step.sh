#!/usr/bin/env bash
# The command line of every step Command:
#   exec env -u BASH_ENV -u POSIXLY_CORRECT bash build/step-programs/steps/run-step.sh <step>
# (no startup file of the user's runs, and bash is not in POSIX mode, where a failed connection
# would end this script).
# Runs the step in a warm worker of this build's step runner (steps/runner.ts), which starts it in
# milliseconds instead of Node's own start-up; or, when no runner answers, directly with
# `node main.js <step>` (and starts a runner in the background for the steps after this one).
# Both ways print the same, exit with the same status, and see the same environment.
# Bash builtins only on the runner's path (/dev/tcp, read, printf, compgen): no process is started.
# KONG_UPGRADE_STEP_RUNNER=off: every step runs directly, and no runner is started.
# This script's own variables start with __kus_: it passes the environment on as it found it.
__kus_step=${1:?usage: run-step.sh <step>}
__kus_dir=${BASH_SOURCE[0]%/*}
[ "$__kus_dir" = "${BASH_SOURCE[0]}" ] && __kus_dir=.

__kus_direct() {
    exec node "$__kus_dir/main.js" "$__kus_step"
}

[ "${KONG_UPGRADE_STEP_RUNNER:-on}" = off ] && __kus_direct

__kus_start_runner() {
    # The runner detaches itself (its own session: no terminal's signal reaches it or its workers).
    # It gets none of this step's environment but the settings Node reads only when it starts
    # (a step whose settings differ from its workers' is run directly: steps/runner.ts): no secret
    # sits in the runner, each step brings its own.
    local __kus_keep=(PATH="$PATH" HOME="${HOME:-/}") __kus_var
    for __kus_var in KONG_UPGRADE_STEP_RUNNER_IDLE_SECONDS NODE_OPTIONS NODE_EXTRA_CA_CERTS NODE_ICU_DATA NODE_PATH UV_THREADPOOL_SIZE OPENSSL_CONF SSL_CERT_FILE SSL_CERT_DIR; do
        [ -n "${!__kus_var:-}" ] && __kus_keep+=("$__kus_var=${!__kus_var}")
    done
    ( env -i "${__kus_keep[@]}" node "$__kus_dir/runner.js" </dev/null >>"$__kus_dir/runner.log" 2>&1 & )
    printf '[%s] started the step runner for the steps after this one (%s/runner.log)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$__kus_dir" >&2
}

if ! { [ -r "$__kus_dir/runner.info" ] && read -r __kus_port __kus_hello __kus_proof _ <"$__kus_dir/runner.info"; } 2>/dev/null; then
    __kus_start_runner
    __kus_direct
fi
# A port nothing listens on (the runner was killed): start another, run this step directly.
# (In braces: the redirection of bash's own error applies to them, not to the rest of the script.)
if ! { exec 3<>"/dev/tcp/127.0.0.1/$__kus_port"; } 2>/dev/null; then
    __kus_start_runner
    __kus_direct
fi
# Hello, then the runner's proof, before the environment is sent: whatever else holds the port
# (this build's runner gone, runner.info left behind) learns only a hello no runner answers any more.
printf '%s\n' "$__kus_hello" >&3
if ! read -r -t 2 __kus_answer <&3 || [ "$__kus_answer" != "$__kus_proof" ]; then
    exec 3<&-
    __kus_direct
fi

# The request: two lines after the first, then the whole environment as NAME=value entries, each
# ended by NUL, then an empty entry.
__kus_entries=()
for __kus_name in $(compgen -e); do __kus_entries+=("$__kus_name=${!__kus_name}"); done
{
    printf 'kong-upgrade-step 1\n%s\n%s\n' "$__kus_step" "$PWD"
    printf '%s\0' "${__kus_entries[@]}"
    printf '\0'
} >&3

# Frames: 1<line> stdout, 2<line> stderr, x<status> the end; d: the step did not start (no worker
# took it in time, the runner is leaving, or its worker died before the step began): nothing of it
# ran, so run it directly. (a: the runner acknowledging part of the request, so that the rest is
# sent at once: nothing to do.) The runner gone before any of these: run directly as well only if
# the step had not started (s), else it is a failed step.
__kus_started=
while IFS= read -r __kus_line <&3 || [ -n "$__kus_line" ]; do
    case $__kus_line in
        1*) printf '%s\n' "${__kus_line:1}" ;;
        2*) printf '%s\n' "${__kus_line:1}" >&2 ;;
        s) __kus_started=1 ;;
        x*) exit "${__kus_line:1}" ;;
        d) exec 3<&-; __kus_direct ;;
    esac
    __kus_line=
done
if [ -z "$__kus_started" ]; then
    exec 3<&-
    __kus_direct
fi
printf 'error: the step runner ended before the step did (its log: %s/runner.log); the step did not complete: run again\n' "$__kus_dir" >&2
exit 1
