#!/usr/bin/env bash
# Downloads, for the GPU image's Python 3.12, the wheels the service needs there and the image lacks (its
# torch, transformers and grpcio stay): the grpc health/reflection/status packages, googleapis-common-protos,
# a protobuf the generated stubs accept, google-re2, and peft (with accelerate and psutil) for the LoRA case. Into .whl/ (ignored by git; carried by the device tool).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
# The grpc extras are released less often than grpcio: the newest of the same minor version.
minor=$(python3 -c 'import grpc; print(".".join(grpc.__version__.split(".")[:2]))')
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl \
  "grpcio-health-checking~=$minor.0" \
  "grpcio-reflection~=$minor.0" \
  "grpcio-status~=$minor.0" \
  "grpcio==$(python3 -c 'import grpc; print(grpc.__version__)')" \
  "protobuf==$(python3 -c 'import google.protobuf as p; print(p.__version__)')" \
  googleapis-common-protos google-re2 \
  "peft==$(python3 -c 'import peft; print(peft.__version__)')" accelerate psutil
du -sh .whl
