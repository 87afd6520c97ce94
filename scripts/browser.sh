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

ensure_browser() {
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            echo "== installing Chromium and ChromeDriver (Debian packages chromium, chromium-driver)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
                || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }
        else
            echo "Chromium is not installed: install the Debian packages chromium and chromium-driver" >&2
            return 1
        fi
    fi
    if ! command -v curl >/dev/null; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            echo "== installing curl (Debian package curl)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl >/dev/null
        else
            echo "curl is not installed" >&2
            return 1
        fi
    fi
    local dir=target/browser
    local axe="$dir/node_modules/axe-core/axe.min.js"
    if [[ ! -f $axe ]] || ! grep -q "axe v$AXE_CORE_VERSION" "$axe"; then
        if ! command -v npm >/dev/null; then
            if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
                echo "== installing npm (Debian package npm)"
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm >/dev/null
            else
                echo "npm is not installed: install Node.js and npm" >&2
                return 1
            fi
        fi
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
