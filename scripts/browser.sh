# Sourced by scripts/test: installs what the end-to-end tests drive and check with, besides the
# server itself. The browser tests need a browser and an accessibility engine; the relying-party
# tests need a real OpenID Connect client library.
#
#   - Chromium and ChromeDriver from Debian's packages (chromium, chromium-driver), installed
#     when missing and we are root (a tool's own browser download cannot reach this network);
#   - from the npm registry, into target/browser (never committed), at the versions pinned below:
#     axe-core, the accessibility engine, and panva's openid-client, the OpenID-certified relying
#     party that crates/testkit/rp/openid-client.mjs runs under Node (with its two dependencies,
#     pinned too so that every run uses the same library);
#   - Node and npm (Debian's npm package), to install those and to run the relying party;
#   - curl, which the README's demo asks a person to run (the demo's browser test runs it too).
#
# Exports LATCHKEY_TEST_CHROMIUM, LATCHKEY_TEST_CHROMEDRIVER, LATCHKEY_TEST_AXE and
# LATCHKEY_TEST_OPENID_CLIENT for the tests.

AXE_CORE_VERSION=4.14.1
OPENID_CLIENT_VERSION=6.9.1
NPM_PACKAGES=(
    "axe-core@$AXE_CORE_VERSION"
    "openid-client@$OPENID_CLIENT_VERSION"
    oauth4webapi@3.8.9 # openid-client's dependencies
    jose@6.2.19
)

# Installs Debian packages when we are root and apt-get exists; otherwise says what is missing.
install_packages() {
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "== installing $* (Debian packages)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
    else
        echo "missing: install the Debian packages $*" >&2
        return 1
    fi
}

# Whether every package of NPM_PACKAGES is installed in $1/node_modules at its pinned version.
npm_packages_installed() {
    local package
    for package in "${NPM_PACKAGES[@]}"; do
        node -e 'const [file, version] = process.argv.slice(1);
                 process.exit(require(file).version === version ? 0 : 1)' \
            "$PWD/$1/node_modules/${package%@*}/package.json" "${package##*@}" 2>/dev/null || return 1
    done
}

ensure_browser() {
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        install_packages chromium chromium-driver
    fi
    command -v curl >/dev/null || install_packages curl
    command -v npm >/dev/null || install_packages npm
    local dir=target/browser
    if ! npm_packages_installed "$dir"; then
        # One install for all of them: npm removes what an earlier --no-save install put there.
        echo "== installing ${NPM_PACKAGES[*]} into $dir"
        mkdir -p "$dir"
        npm install --silent --no-save --no-audit --no-fund --prefix "$dir" "${NPM_PACKAGES[@]}" >/dev/null
    fi
    export LATCHKEY_TEST_CHROMIUM
    export LATCHKEY_TEST_CHROMEDRIVER
    export LATCHKEY_TEST_AXE
    export LATCHKEY_TEST_OPENID_CLIENT
    LATCHKEY_TEST_CHROMIUM=$(command -v chromium)
    LATCHKEY_TEST_CHROMEDRIVER=$(command -v chromedriver)
    LATCHKEY_TEST_AXE=$(realpath "$dir/node_modules/axe-core/axe.min.js")
    LATCHKEY_TEST_OPENID_CLIENT=$(realpath "$dir/node_modules/openid-client/build/index.js")
}
