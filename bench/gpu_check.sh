#!/usr/bin/env bash
# Every GPU check in one device call (174 s on one H200, machine start not counted), offline. Before the call, on this machine:
#   bash bench/gpu_pack_ray.sh                   # Ray for the service step, into .dev/
#   bash bench/gpu_wheels.sh                     # the grpc extras, protobuf and re2 wheels, into .whl/
# The device call: run carry=[".dev", ".whl"] command="bash bench/gpu_check.sh"
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .dev ]; then
  mkdir -p /tmp/site && tar -xJf .dev/ray-cp312.tar.xz -C /tmp/site
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .dev/*.whl
fi
if [ -d .whl ]; then python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl; fi
export PYTHONPATH="/tmp/site:$PWD/services:$PWD/client:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout "${GPU_CHECK_TIMEOUT:-470}" python3 bench/gpu_check.py "$@"
