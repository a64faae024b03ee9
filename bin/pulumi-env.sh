# Sourced by bin/pulumi-local.sh and bin/*-dev.sh (not run on its own). Sets PULUMI_CLI to the
# Pulumi CLI to run and says which on stderr, points it at this project's local state backend,
# and checks that Docker answers. Every failure says what to do and exits before anything changed.
#
# Which CLI (KONG_UPGRADE_PULUMI):
#   unset, "" or "project"  the CLI of the `pulumi` npm package pinned in package.json (same
#                           version as the package); downloaded on first use into
#                           $PULUMI_HOME/versions/<version>/bin (PULUMI_HOME defaults to ~/.pulumi)
#   "system"                the first `pulumi` on PATH, skipping node_modules/.bin (where `npm run`
#                           puts the project's own)
#   a path                  that executable, or the `pulumi` in that folder
# A CLI on PATH is never used unless asked for: the versions of CLI and SDK stay the project's.

kong_upgrade_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

kong_upgrade_say() { echo "kong-upgrade: $*" >&2; }
kong_upgrade_fail() { echo "kong-upgrade: $*" >&2; exit 1; }

# The first `pulumi` on PATH outside any node_modules/.bin.
kong_upgrade_pulumi_on_path() {
    local dir dirs
    IFS=: read -r -a dirs <<< "$PATH"
    for dir in "${dirs[@]}"; do
        case "${dir%/}" in ""|*/node_modules/.bin|node_modules/.bin) continue ;; esac
        if [ -f "$dir/pulumi" ] && [ -x "$dir/pulumi" ]; then echo "$dir/pulumi"; return 0; fi
    done
    return 1
}

# `pulumi version` of $1 ("v3.250.0"), or a failure naming it and its output.
kong_upgrade_cli_version() {
    local out
    out=$("$1" version 2>&1) || { out=${out//$'\n'/; }; kong_upgrade_fail "the Pulumi CLI $1 does not run (\`pulumi version\` failed: ${out:0:300})"; }
    printf '%s' "$out" | tail -1
}

# Sets PULUMI_CLI and prints one line saying which CLI and which version (a second line warns
# when it is older than the @pulumi/pulumi SDK the program uses).
kong_upgrade_choose_pulumi() {
    local choice="${KONG_UPGRADE_PULUMI:-project}" versions package sdk want cli version how
    versions=$(cd "$kong_upgrade_root" && node -e '
        const v = (p) => { try { return require(p).version; } catch { return "-"; } };
        process.stdout.write(`${v("./node_modules/pulumi/package.json")} ${v("./node_modules/@pulumi/pulumi/package.json")}`);')
    package=${versions% *}; sdk=${versions#* }
    case "$choice" in
    project)
        [ "$package" != "-" ] || kong_upgrade_fail "the project's Pulumi CLI (npm package \`pulumi\`) is not installed: run \`npm ci\` first, or point KONG_UPGRADE_PULUMI at an installed CLI (KONG_UPGRADE_PULUMI=system for the pulumi on your PATH, or its path)"
        # The package runs the CLI of its own version (PULUMI_VERSION overrides it) from this
        # cache (its README: "Binaries are cached at ~/.pulumi/versions/<version>/bin/").
        want=${PULUMI_VERSION:-$package}
        cli="${PULUMI_HOME:-$HOME/.pulumi}/versions/$want/bin/pulumi"
        if ! { [ -x "$cli" ] && [ -s "$cli" ]; }; then
            kong_upgrade_say "first use of the project's Pulumi CLI v$want: downloading it into ${cli%/bin/pulumi} (once)"
            # The package's own `pulumi version` downloads it (its output, then the CLI's, to stderr).
            "$kong_upgrade_root/node_modules/.bin/pulumi" version >&2 && [ -x "$cli" ] || {
                local other
                other=$(kong_upgrade_pulumi_on_path) && other="; there is one on your PATH: $other" || other=""
                kong_upgrade_fail "could not download the Pulumi CLI v$want: no internet? point KONG_UPGRADE_PULUMI at an installed CLI (KONG_UPGRADE_PULUMI=system for the pulumi on your PATH, or its path)$other"
            }
        fi
        how="the project's own (npm package pulumi@$package${PULUMI_VERSION:+, PULUMI_VERSION=$PULUMI_VERSION}): $cli"
        ;;
    system)
        cli=$(kong_upgrade_pulumi_on_path) || kong_upgrade_fail "KONG_UPGRADE_PULUMI=system but there is no pulumi on PATH (node_modules/.bin skipped): install the Pulumi CLI, give its path in KONG_UPGRADE_PULUMI, or unset KONG_UPGRADE_PULUMI to use the project's own"
        how="from PATH (KONG_UPGRADE_PULUMI=system): $cli"
        ;;
    *)
        cli=$choice
        case "$cli" in /*) ;; *) cli="${INIT_CWD:-$PWD}/$cli" ;; esac # npm run starts in the project root
        [ -d "$cli" ] && cli="${cli%/}/pulumi"
        { [ -f "$cli" ] && [ -x "$cli" ]; } || kong_upgrade_fail "KONG_UPGRADE_PULUMI=$KONG_UPGRADE_PULUMI: $cli is not an executable file; give the path of a Pulumi CLI (or its folder), \"system\" for the pulumi on your PATH, or unset it for the project's own"
        how="as KONG_UPGRADE_PULUMI says: $cli"
        ;;
    esac
    version=$(kong_upgrade_cli_version "$cli") || exit 1
    kong_upgrade_say "Pulumi CLI $version, $how"
    if [ "$sdk" != "-" ] && [ "$(printf '%s\n%s\n' "$sdk" "${version#v}" | sort -V | head -1)" != "$sdk" ]; then
        kong_upgrade_say "warning: this CLI is older than the @pulumi/pulumi SDK $sdk the program uses; use a newer one or the project's own (unset KONG_UPGRADE_PULUMI)"
    fi
    # As the package's own launcher does: the language hosts installed beside the CLI come first.
    [ "$choice" = project ] && export PATH="${cli%/pulumi}:$PATH"
    PULUMI_CLI=$cli
}

# The project's own local state backend (.pulumi-state/, beside the code) with a passphrase
# generated once for it, for this command only: your `pulumi login` for other projects is not
# touched. Set PULUMI_BACKEND_URL / PULUMI_CONFIG_PASSPHRASE(_FILE) yourself to use your own.
kong_upgrade_local_backend() {
    mkdir -p "$kong_upgrade_root/.pulumi-state"
    export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$kong_upgrade_root/.pulumi-state}"
    if [ -z "${PULUMI_CONFIG_PASSPHRASE+x}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
        local file="$kong_upgrade_root/.pulumi-state/passphrase"
        [ -s "$file" ] || { node -e 'process.stdout.write(require("crypto").randomBytes(24).toString("base64url"))' > "$file"; chmod 600 "$file"; }
        export PULUMI_CONFIG_PASSPHRASE_FILE="$file"
    fi
}

# The dev stack runs Kong and PostgreSQL in Docker: fail before anything else when it does not answer.
kong_upgrade_require_docker() {
    command -v docker >/dev/null || kong_upgrade_fail "Docker is not installed (no docker command on PATH): the dev stack runs Kong and PostgreSQL in Docker. Install Docker and run this again; nothing was changed."
    local bounded=() err
    command -v timeout >/dev/null && bounded=(timeout 20)
    if ! err=$(${bounded[@]+"${bounded[@]}"} docker info --format '{{.ServerVersion}}' 2>&1 >/dev/null); then
        kong_upgrade_fail "Docker is not answering${DOCKER_HOST:+ at DOCKER_HOST=$DOCKER_HOST}: start Docker${DOCKER_HOST:+ (or fix DOCKER_HOST)} and run this again; nothing was changed.
  docker info: $(printf '%s' "${err:-no answer within 20 s}" | head -1)"
    fi
}

# `pulumi stack select` of the dev stack, created the first time with a random database password
# (a Pulumi secret).
kong_upgrade_dev_stack() {
    "$PULUMI_CLI" stack select --create dev >/dev/null
    if ! "$PULUMI_CLI" config get --path database.password --stack dev >/dev/null 2>&1; then
        node -e 'process.stdout.write(require("crypto").randomBytes(18).toString("base64url"))' | "$PULUMI_CLI" config set --secret --path database.password --stack dev
        kong_upgrade_say "generated the dev database password (npm run pulumi -- config get --path database.password --stack dev shows it)"
    fi
}
