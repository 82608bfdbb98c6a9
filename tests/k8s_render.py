"""Render the k8s/ kustomizations offline: `resources` plus JSON 6902 `patches` (all that k8s/ uses), and
validate what comes out: RayClusters against the KubeRay CRD schema made strict, ServiceMonitors against the
repository's own strict subset schema, core objects with kubernetes-validate in strict mode."""

import copy
import json
from pathlib import Path

import jsonpatch
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "k8s" / "schemas"
KUBERNETES_VERSION = "1.30.0"


def render(directory: Path) -> list[dict]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    allowed = {"apiVersion", "kind", "resources", "patches"}
    if set(spec) - allowed:
        raise ValueError(f"{directory}: this renderer handles only {sorted(allowed)}, "
                         f"not {sorted(set(spec) - allowed)}")
    docs: list[dict] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        docs += render(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in spec.get("patches", []):
        target = patch["target"]
        matches = [d for d in docs if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
        if len(matches) != 1:
            raise ValueError(f"{directory}: patch target {target} matches {len(matches)} objects")
        i = docs.index(matches[0])
        docs[i] = jsonpatch.apply_patch(docs[i], yaml.safe_load(patch["patch"]))
    return docs


def strict(schema: dict) -> dict:
    """additionalProperties: false wherever an object lists properties and allows nothing else explicitly."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def raycluster_schema() -> dict:
    return strict(json.loads((SCHEMAS / "kuberay-raycluster-v1.json").read_text()))


def servicemonitor_schema() -> dict:
    """The repository's own strict schema of the ServiceMonitor fields it uses (k8s/schemas/README.md)."""
    return json.loads((SCHEMAS / "servicemonitor-v1.json").read_text())


def validate(docs: list[dict]) -> None:
    """Raises on the first invalid object."""
    schema = raycluster_schema()
    for doc in docs:
        if doc["kind"] == "RayCluster":
            jsonschema.validate(doc, schema)
        elif doc["kind"] == "ServiceMonitor":
            jsonschema.validate(doc, servicemonitor_schema())
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
