#!/usr/bin/env bash
# Browser tests of the dashboard (tests/e2e/): headless Debian chromium driven
# by playwright-core against the real server. Installs what a fresh Debian
# machine lacks (chromium from apt, playwright-core from npm; no browser
# download), builds the server, runs the tests. Screenshots of the main views
# go to target/e2e-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."

# Root runs apt-get itself; anyone else through sudo.
SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -n); fi
apt_install() {
  timeout 600 "${SUDO[@]}" apt-get update -q || true
  timeout 900 "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

if [ ! -x /usr/bin/chromium ]; then
  echo "-- installing chromium (apt)"
  apt_install chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "-- installing node and npm (apt)"
  apt_install nodejs npm
fi

if [ ! -d tests/e2e/node_modules/playwright-core ]; then
  echo "-- npm ci (tests/e2e)"
  (cd tests/e2e && timeout 600 npm ci --no-audit --no-fund)
fi

echo "-- building the server"
timeout 1800 cargo build --locked --bin tcplab

echo "-- browser tests"
cd tests/e2e
timeout 900 node --test --test-concurrency=1 dashboard.test.mjs
