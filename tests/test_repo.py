"""The repository stands alone: nothing in it reads files from outside its own tree."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ("../shared", "parent / \"shared\"", "parents[2]")


def test_no_tracked_file_reaches_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for name in files:
        path = ROOT / name
        if path.suffix in (".json", ".safetensors") or not path.is_file() or name == "tests/test_repo.py":
            continue
        text = path.read_text(errors="replace")
        offenders += [f"{name}: {needle}" for needle in OUTSIDE if needle in text]
    assert not offenders, offenders


def test_the_kuberay_schema_is_vendored():
    assert (ROOT / "k8s" / "schemas" / "kuberay-raycluster-v1.json").stat().st_size > 100_000
