#!/usr/bin/env bash
# System tools the Rust tests need beyond cargo: Debian's tshark, which
# tests/pcap_tshark.rs runs on the captures tcplab writes. Idempotent: a tool
# already on PATH is not reinstalled. Root runs apt-get itself, anyone else
# through `sudo -n` (never prompting).
set -euo pipefail

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -n); fi

if command -v tshark >/dev/null 2>&1; then
    echo "-- tshark: $(tshark --version 2>/dev/null | head -n 1)"
    exit 0
fi

echo "-- installing tshark (apt)"
# wireshark-common asks whether non-root users may capture; answer "no"
# before apt asks, so the install never waits for a terminal.
echo "wireshark-common wireshark-common/install-setuid boolean false" \
    | timeout 60 "${SUDO[@]}" debconf-set-selections || true
timeout 600 "${SUDO[@]}" apt-get update -q || true
timeout 900 "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tshark

command -v tshark >/dev/null 2>&1 || { echo "tshark is still missing after apt-get install" >&2; exit 1; }
echo "-- tshark: $(tshark --version 2>/dev/null | head -n 1)"
