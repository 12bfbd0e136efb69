#!/usr/bin/env bash
# Every check and test of tcplab, as the README's test command runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --locked

echo "== every built-in lab (tcplab lab run --all)"
cargo build --locked --bin tcplab
target/debug/tcplab lab run --all

echo "== python gRPC client (examples/python against a live server)"
bash .ci/python_client.sh

echo "== dashboard in a real browser (headless chromium, tests/e2e)"
bash .ci/e2e.sh
