#!/usr/bin/env bash
# Every GPU check in one call, within 6 minutes on one H100, offline, without Ray:
#   device run: bash bench/gpu_check.sh
# The image must already have torch (CUDA), transformers and grpcio; the repo travels as the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/services:$PWD/client:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 330 python bench/gpu_check.py
