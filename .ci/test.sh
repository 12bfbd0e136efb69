#!/usr/bin/env bash
# Every check and test of tcplab, as the README's test command runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --all-targets --locked -- -D warnings

echo "== tools the tests need (tshark)"
bash .ci/tools.sh

echo "== cargo test"
cargo test --locked

echo "== every built-in lab (tcplab lab run --all)"
cargo build --locked --bin tcplab
target/debug/tcplab lab run --all

echo "== packetdrill: our scripts, and the shared FreeBSD suite's summary (its floor is checked by cargo test)"
target/debug/tcplab packetdrill run tests/packetdrill | tail -1
if [ -d ../shared/conformance/freebsd-tcp-testsuite ]; then
  target/debug/tcplab packetdrill run ../shared/conformance/freebsd-tcp-testsuite | tail -2 || true
  target/debug/tcplab packetdrill run ../shared/conformance/freebsd-data-path | tail -2 || true
else
  echo "!!! ../shared/conformance/freebsd-tcp-testsuite is absent: the shared suite was NOT run"
fi

echo "== python gRPC client (examples/python against a live server)"
bash .ci/python_client.sh

echo "== API fuzzing: schemathesis against /api/v1/openapi.json of a live server (bounded)"
bash .ci/schemathesis.sh

echo "== client examples (examples/http with curl and requests, examples/node) against a live server"
bash .ci/examples.sh

echo "== dashboard in a real browser (headless chromium, tests/e2e)"
bash .ci/e2e.sh
