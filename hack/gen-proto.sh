#!/usr/bin/env bash
# Generate the Python gRPC code from protos/ into nfd/_proto (never committed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
out=nfd/_proto
rm -rf "$out"; mkdir -p "$out"
touch "$out/__init__.py"
shopt -s nullglob
protos=(protos/*.proto)
[ ${#protos[@]} -eq 0 ] && exit 0
# Mapping protos/ to the virtual directory nfd/_proto makes the generated
# modules import each other as nfd._proto.<name>_pb2.
"$PY" -m grpc_tools.protoc -Infd/_proto=protos --python_out=. --grpc_python_out=. --pyi_out=. \
  $(for p in "${protos[@]}"; do echo "nfd/_proto/$(basename "$p")"; done)
