#!/usr/bin/env bash
# Packs Ray for the GPU image (Python 3.12, no Ray, no internet) into .dev/ (ignored by git; carried by the device
# tool): its wheel without the parts the service never imports (Java, RLlib, Data, Train, Tune, Serve, the
# dashboard's web client), xz-compressed to about 28 MB, and the pure wheels Ray needs that the image lacks.
# On the GPU machine, gpu_check.sh unpacks it into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-$(python3 -c 'import ray; print(ray.__version__)')}"
grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo '/.dev/' >> .git/info/exclude
mkdir -p .dev
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
  -d "$work" "ray==$version"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
  -d .dev jsonschema referencing rpds-py jsonschema-specifications
mkdir "$work/ray" && python3 -m zipfile -e "$work"/ray-*.whl "$work/ray"
rm -rf "$work/ray/ray/"{jars,rllib,data,train,tune,serve,llm,workflow,air/examples,dashboard/client}
chmod +x "$work/ray/ray/core/src/ray/raylet/raylet" "$work/ray/ray/core/src/ray/gcs/gcs_server" 2>/dev/null || true
tar -C "$work/ray" -cJf .dev/ray-cp312.tar.xz .
du -sh .dev
