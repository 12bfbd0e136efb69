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
