#!/usr/bin/env bash
# Runs the Python gRPC client (examples/python/client.py) against a live
# tcplab server: a venv in target/py-venv with the pinned requirements, stubs
# generated from the proto, the server on free ports with a temporary
# database. Fails if the client fails. Every step is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/py-venv
PY="$VENV/bin/python"
REQ=examples/python/requirements.txt

if [ ! -x "$PY" ]; then
    echo "-- creating $VENV"
    timeout 120 python3 -m venv "$VENV"
fi
# Install when a pinned requirement is missing (or the venv is incomplete).
if ! timeout 60 "$PY" - "$REQ" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PYEOF
then
    echo "-- installing $REQ"
    timeout 600 "$PY" -m pip install --quiet --disable-pip-version-check -r "$REQ"
fi

echo "-- generating stubs"
PYTHON="$PY" timeout 120 bash examples/python/gen.sh

source .ci/live_server.sh
start_live_server "$PY"

echo "-- running examples/python/client.py"
status=0
timeout 120 "$PY" examples/python/client.py --target "127.0.0.1:$GRPC_PORT" --timeout 60 || status=$?
if [ "$status" -ne 0 ]; then
    echo "python client failed (exit $status); server log:" >&2
    tail -n 50 "$TMP/server.log" >&2
    exit 1
fi
echo "python_client: 1 passed, 0 failed"
