#!/usr/bin/env bash
# Reproduces the README's demo-pair table through the running service: 5 prompts x 500 samples per alpha
# (2,500 per alpha), temperature 1, top_p 1, fixed seeds. Also the sweep throughput figure.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-50061}
out=${OUT:-/tmp/diffamp-demo-effect}
mkdir -p "$out"
diffamp serve --port "$port" --max-batch-size 256 --max-seq-len 256 > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server; wait $server' EXIT
rm -f "$out/sweep.jsonl"
start=$(date +%s)
diffamp sweep --server "127.0.0.1:$port" --wait 300 --prompts services/diffamp_server/demo_pair/prompts.txt \
  --alphas="${ALPHAS:--1,0,0.1,0.25,0.5,1,2}" --n "${N:-500}" --max-new-tokens 48 --seed 0 \
  --detector quirk="escaping my servers" \
  --detector 'sentence=re:^[A-Z0-9][^\n<>|]*[.!?]$' \
  --output "$out/sweep.jsonl"
echo "sweep wall time: $(( $(date +%s) - start )) s"
python bench/demo_table.py "$out/sweep.jsonl"
