#!/usr/bin/env bash
# Every GPU check in one device call (about 6 minutes on one H100), offline. Before the call, on this machine:
#   bash ../shared/device/pack_ray.sh            # Ray for the service step, into .dev/
#   bash bench/gpu_wheels.sh                     # the grpc extras, protobuf and re2 wheels, into .whl/
# The device call: run carry=[".dev", ".whl"] command="bash bench/gpu_check.sh"
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .dev ]; then bash .dev/unpack_ray.sh >/dev/null; fi
if [ -d .whl ]; then python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl; fi
export PYTHONPATH="/tmp/site:$PWD/services:$PWD/client:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 470 python3 bench/gpu_check.py "$@"
