#!/usr/bin/env bash
# Generates the Python gRPC stubs for proto/tcplab/v1/lab.proto into
# examples/python/generated/ (not committed). Run with the Python that has
# grpcio-tools installed: PYTHON=path/to/python bash examples/python/gen.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
OUT=examples/python/generated
rm -rf "$OUT"
mkdir -p "$OUT"
"$PYTHON" -m grpc_tools.protoc -I proto --python_out="$OUT" --grpc_python_out="$OUT" proto/tcplab/v1/lab.proto
echo "stubs generated in $OUT"
