#!/usr/bin/env bash
# Regenerates the Python stubs in client/diffamp/v1/ from protos/. Run from anywhere.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python -m grpc_tools.protoc -I "$root/protos" \
  --python_out="$root/client" --grpc_python_out="$root/client" --pyi_out="$root/client" \
  "$root/protos/diffamp/v1/diffamp.proto"
