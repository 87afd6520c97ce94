# Sourced by scripts/test: makes sure the browser tests have what they drive and check with.
#
#   - Chromium and ChromeDriver from Debian's packages (chromium, chromium-driver), installed
#     when missing and we are root (a tool's own browser download cannot reach this network);
#   - axe-core, the accessibility engine, from the npm registry, into target/browser (never
#     committed). Its version is pinned here;
#   - curl, which the README's demo asks a person to run (the demo's browser test runs it too).
#
# Exports LATCHKEY_TEST_CHROMIUM, LATCHKEY_TEST_CHROMEDRIVER and LATCHKEY_TEST_AXE for the tests.

AXE_CORE_VERSION=4.14.1

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

ensure_browser() {
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        install_packages chromium chromium-driver
    fi
    command -v curl >/dev/null || install_packages curl
    command -v npm >/dev/null || install_packages npm
    local dir=target/browser
    local axe="$dir/node_modules/axe-core/axe.min.js"
    if [[ ! -f $axe ]] || ! grep -q "axe v$AXE_CORE_VERSION" "$axe"; then
        echo "== installing axe-core $AXE_CORE_VERSION into $dir"
        mkdir -p "$dir"
        npm install --silent --no-save --no-audit --no-fund --prefix "$dir" "axe-core@$AXE_CORE_VERSION" >/dev/null
    fi
    export LATCHKEY_TEST_CHROMIUM
    export LATCHKEY_TEST_CHROMEDRIVER
    export LATCHKEY_TEST_AXE
    LATCHKEY_TEST_CHROMIUM=$(command -v chromium)
    LATCHKEY_TEST_CHROMEDRIVER=$(command -v chromedriver)
    LATCHKEY_TEST_AXE=$(realpath "$axe")
}
