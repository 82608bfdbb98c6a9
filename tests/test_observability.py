"""Observability (issue 16): a real Prometheus scrapes a real `diffamp serve` and is queried; JSON log lines carry
request ids and no prompt text; request ids travel in metadata and reach the CLI's errors; the dashboard's
queries run; the gateway's worker-side metrics and load gauges are checked against a fake replica."""

import asyncio
import io
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from types import SimpleNamespace

import grpc
import pytest

from diffamp import messages
from diffamp.v1 import diffamp_pb2 as pb
from diffamp_server.calls import Call, accepted_request_id, current_request_id, note_submitted
from diffamp_server.errors import WorkerUnavailable
from diffamp_server.events import ListSink, SampleEvent
from diffamp_server.gateway import Gateway, GatewaySettings
from diffamp_server.logs import JsonFormatter, TextFormatter, setup_logging
from diffamp_server.metrics import Metrics
from diffamp_server.openai_api.app import ApiSettings, build_app
from k8s_render import ROOT
from service import client, collect, compare_request, request
from subprocess_server import free_port, serve
from test_scheduler import EOS, CharTokenizer, FakeWorker
from test_scheduler import request as sequence_request

MAX_BATCH = 8
MARKER = "purple-elephant-7781"
DASHBOARD = ROOT / "k8s" / "grafana" / "diffamp-dashboard.json"
COUNTERS = r"diffamp_.*_(total|count)"


# -- a real diffamp serve, metrics on, JSON logs ------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(llama_pair):
    after, before = llama_pair
    metrics_port = free_port()
    # --decode-steps 1: a long request takes ~100 worker calls, so the stream cancelled below is still running
    # when its cancellation arrives.
    s = serve(after, before, "--metrics-port", str(metrics_port), "--log-format", "json", "--max-batch-size",
              str(MAX_BATCH), "--max-seq-len", "128", "--decode-steps", "1", "--worker-cpus", "1")
    s.metrics_port = metrics_port
    yield s
    s.stop()


def scrape(port: int, pattern: str = COUNTERS) -> dict:
    """The server's own /metrics: {(sample name, labels): value} for sample names matching `pattern`."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if re.fullmatch(pattern, s.name)}


def _log_objects(served) -> list[dict]:
    """The JSON lines of the server's output (Ray forwards model workers' output into the same stream)."""
    return [json.loads(line[line.index('{"time"'):]) for line in list(served.lines) if '{"time"' in line]


def _finished_line(served, request_id: str, timeout_s: float = 20) -> dict:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for obj in _log_objects(served):
            if obj.get("event") == "request_finished" and obj.get("request_id") == request_id:
                return obj
        time.sleep(0.05)
    raise AssertionError(f"no finished-request line for {request_id}:\n" + "".join(served.lines[-30:]))


# -- Prometheus ------------------------------------------------------------------------------------------------------
def _install_prometheus() -> str:
    """Debian's package, as .ci/run installs it; returns why it failed, or ''."""
    apt = shutil.which("apt-get")
    if not apt:
        return "apt-get is not available"
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        return "not root and no sudo to run apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = sudo + ["env", "DEBIAN_FRONTEND=noninteractive", apt, "install", "-y", "-q", "--no-install-recommends",
                      "prometheus"]
    out = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if out.returncode:
        subprocess.run(sudo + [apt, "update", "-q"], capture_output=True, text=True, env=env, timeout=600)
        out = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    return "" if out.returncode == 0 else f"apt-get install prometheus failed: {(out.stderr or out.stdout)[-400:]}"


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (os.path.exists("/usr/bin/prometheus") and "/usr/bin/prometheus")
    if not found:
        reason = _install_prometheus()
        found = shutil.which("prometheus") or (os.path.exists("/usr/bin/prometheus") and "/usr/bin/prometheus")
        if not found:
            pytest.skip(f"needs a Prometheus server (Debian package `prometheus`), which is not installed and could "
                        f"not be installed here: {reason or 'no prometheus binary after installing'}")
    return found


class Prometheus:
    """A real Prometheus in a temp dir, scraping one target every second, queried over its HTTP API."""

    def __init__(self, binary: str, directory, target_port: int):
        self.port = free_port()
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: diffamp\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n")
        self.log = open(directory / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.directory = directory
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(self._url("/-/ready"), timeout=2).status == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("Prometheus did not start:\n" + (directory / "prometheus.log").read_text())
            time.sleep(0.2)

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def query(self, expr: str) -> list[tuple[dict, float]]:
        url = self._url("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        body = json.loads(urllib.request.urlopen(url, timeout=10).read())
        assert body["status"] == "success", (expr, body)
        data = body["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def value(self, expr: str) -> float:
        result = self.query(expr)
        assert len(result) == 1, (expr, result)
        return result[0][1]

    def counters(self) -> dict:
        """Every diffamp counter and histogram count as Prometheus has them now, keyed like scrape()."""
        out = {}
        for metric, value in self.query(f'{{__name__=~"{COUNTERS}", job="diffamp"}}'):
            name = metric.pop("__name__")
            labels = {k: v for k, v in metric.items() if k not in ("job", "instance")}
            out[(name, tuple(sorted(labels.items())))] = value
        return out

    def caught_up(self, target_port: int, timeout_s: float = 30) -> dict:
        """Wait until Prometheus has scraped the target's current counters (they are still), then return them."""
        deadline = time.time() + timeout_s
        while True:
            direct, seen = scrape(target_port), self.counters()
            if direct == seen:
                return seen
            if time.time() > deadline:
                missing = {k: (v, seen.get(k)) for k, v in direct.items() if seen.get(k) != v}
                raise AssertionError(f"Prometheus did not catch up with the server: {missing}")
            time.sleep(0.25)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _delta(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def _sum_delta(before: dict, after: dict, name: str, **labels) -> float:
    """Summed over the series of `name` that carry `labels` (and any others)."""
    def total(d):
        return sum(v for (n, ls), v in d.items() if n == name and set(labels.items()) <= set(ls))
    return total(after) - total(before)


def _sweep_request() -> pb.SweepRequest:
    return pb.SweepRequest(
        prompts=[pb.SweepPrompt(id="a", prompt=messages.prompt("hello there")),
                 pb.SweepPrompt(id="b", prompt=messages.prompt("tell me more"))],
        alphas=[0.0, 1.0], n=2, seed=5, sampling=messages.sampling(max_new_tokens=12),
        detectors=[pb.Detector(name="has_e", substring="e"), pb.Detector(name="any", regex=".")])


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_a_real_prometheus_scrapes_the_counters_and_histograms(served, tmp_path):
    binary = prometheus_binary()
    stub = client(served.address)
    prom = Prometheus(binary, tmp_path, served.metrics_port)
    try:
        before = prom.caught_up(served.metrics_port)

        ok = collect(stub.Generate(request(prompt="hello world", n=3, seed=1, temperature=1.0, max_new_tokens=20)))
        ok_tokens = sum(len(s["token_ids"]) for s in ok.values())
        prompt_tokens = ok[0]["prompt_tokens"]
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as err:
                list(stub.Generate(request(temperature=-1.0)))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # A stream cancelled by its client after its first chunk (~100 calls from its end).
        long = stub.Generate(request(prompt="hello world", n=MAX_BATCH, seed=2, temperature=1.0,
                                     max_new_tokens=100, min_new_tokens=100))
        first = next(long)
        long.cancel()
        with pytest.raises(grpc.RpcError) as err:
            list(long)
        assert err.value.code() == grpc.StatusCode.CANCELLED
        compared = list(stub.Compare(compare_request(prompt="hello world", max_new_tokens=6, seed=3)))
        sweep = [r.sample for r in stub.Sweep(_sweep_request()) if r.HasField("sample")]
        stub.GetModelInfo(pb.GetModelInfoRequest())

        # The server counts the cancelled stream once its handler sees the cancellation.
        cancelled = ("diffamp_requests_total", (("code", "CANCELLED"), ("rpc", "Generate")))
        deadline = time.time() + 20
        while scrape(served.metrics_port).get(cancelled, 0) - before.get(cancelled, 0) < 1:
            assert time.time() < deadline, "the server never counted the cancelled stream"
            time.sleep(0.1)
        after = prom.caught_up(served.metrics_port)

        # Requests by RPC and final code.
        for rpc, code, count in (("Generate", "OK", 1), ("Generate", "INVALID_ARGUMENT", 2),
                                 ("Generate", "CANCELLED", 1), ("Compare", "OK", 1), ("Sweep", "OK", 1),
                                 ("GetModelInfo", "OK", 1)):
            assert _delta(before, after, "diffamp_requests_total", rpc=rpc, code=code) == count, (rpc, code)
        assert _sum_delta(before, after, "diffamp_requests_total") == 7
        assert _delta(before, after, "diffamp_request_duration_seconds_count", rpc="Generate") == 4

        # Tokens: the OK request's exactly; the cancelled one sent at least what its client read, at most all.
        assert _delta(before, after, "diffamp_prompt_tokens_total", rpc="Generate") == 2 * prompt_tokens
        generated = _delta(before, after, "diffamp_generated_tokens_total", rpc="Generate")
        assert ok_tokens + len(first.token_ids) <= generated <= ok_tokens + MAX_BATCH * 100
        assert _delta(before, after, "diffamp_generated_tokens_total", rpc="Compare") == \
            sum(len(c.token_ids) for c in compared)
        assert _sum_delta(before, after, "diffamp_samples_finished_total", rpc="Generate") == 3
        assert _sum_delta(before, after, "diffamp_samples_finished_total", rpc="Compare") == 2
        assert _sum_delta(before, after, "diffamp_worker_sampled_tokens_total", replica="r0") >= \
            generated + sum(len(s.token_ids) for s in sweep)

        # Sweeps: samples done and detector hits, and their tokens.
        assert len(sweep) == 8
        assert _delta(before, after, "diffamp_sweep_samples_total") == 8
        assert _delta(before, after, "diffamp_sweep_detector_hits_total") == sum(len(s.detectors) for s in sweep)
        assert _delta(before, after, "diffamp_generated_tokens_total", rpc="Sweep") == \
            sum(len(s.token_ids) for s in sweep)

        # Histograms have samples.
        assert _delta(before, after, "diffamp_time_to_first_token_seconds_count", rpc="Generate") == 2
        assert _delta(before, after, "diffamp_time_to_first_token_seconds_count", rpc="Compare") == 1
        assert _delta(before, after, "diffamp_inter_token_latency_seconds_count", rpc="Generate") > 0
        assert _delta(before, after, "diffamp_request_queue_seconds_count", rpc="Generate") == 2
        assert _delta(before, after, "diffamp_worker_call_duration_seconds_count", replica="r0") > 0
        assert _delta(before, after, "diffamp_worker_step_duration_seconds_count", replica="r0") > 0
        assert _delta(before, after, "diffamp_worker_batch_size_count", replica="r0") > 0
        assert after.get(("diffamp_worker_restarts_total", (("replica", "r0"),))) == 0
        p50 = prom.value("histogram_quantile(0.5, sum by (le) (rate(diffamp_time_to_first_token_seconds_bucket[1m])))")
        assert 0 < p50 < 60

        # Load gauges, read at scrape time.
        assert prom.value('diffamp_kv_slots_capacity{replica="r0"}') == MAX_BATCH
        assert prom.value('diffamp_kv_bytes_capacity{replica="r0"}') > 0
        assert prom.value("diffamp_sequences_queued") == 0
        assert prom.value('diffamp_replica_up{replica="r0"}') == 1 and prom.value("diffamp_serving") == 1

        # Every query of the Grafana dashboard runs, and the first panels an operator opens have data.
        for expr in _dashboard_exprs():
            prom.query(expr.replace("$__rate_interval", "1m"))
        throughput = prom.value("sum(rate(diffamp_generated_tokens_total[1m]))")
        assert throughput > 0 and not math.isnan(throughput)
    finally:
        prom.stop()


# -- logs and request ids -------------------------------------------------------------------------------------------
def test_json_log_lines_parse_carry_the_request_id_and_hold_no_prompt_text(served):
    stub = client(served.address)
    request_id = "test-json-log-1"
    call = stub.Generate(request(prompt=f"say {MARKER} twice", n=2, seed=7, temperature=1.0, max_new_tokens=10),
                         metadata=(("x-request-id", request_id),))
    samples = collect(call)
    assert dict(call.initial_metadata())["x-request-id"] == request_id
    assert dict(call.trailing_metadata())["x-request-id"] == request_id
    # An error whose message would quote the request: not logged without --log-prompts.
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(request(prompt="", messages=[(MARKER, "hello")]),
                           metadata=(("x-request-id", "test-json-log-2"),)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and MARKER in err.value.details()
    assert dict(err.value.trailing_metadata())["x-request-id"] == "test-json-log-2"
    # No id given, or an unusable one: the server makes one and returns it.
    compare = stub.Compare(compare_request(prompt=MARKER, max_new_tokens=4), metadata=(("x-request-id", "bad id"),))
    list(compare)
    made_id = dict(compare.initial_metadata())["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made_id)

    line = _finished_line(served, request_id)
    assert line["rpc"] == "Generate" and line["code"] == "OK" and line["level"] == "INFO"
    assert line["samples"] == 2 and line["samples_finished"] == 2
    assert line["prompt_tokens"] == samples[0]["prompt_tokens"]
    assert line["generated_tokens"] == sum(len(s["token_ids"]) for s in samples.values())
    assert line["peer"].startswith("ipv4:127.0.0.1:")
    for key in ("queue_s", "first_token_s", "total_s"):
        assert isinstance(line[key], float) and 0 <= line[key] < 60, key
    assert line["queue_s"] <= line["first_token_s"] <= line["total_s"]
    refused = _finished_line(served, "test-json-log-2")
    assert refused["code"] == "INVALID_ARGUMENT" and refused["error_field"].endswith("messages[0].role")
    assert "error" not in refused and _finished_line(served, made_id)["rpc"] == "Compare"

    objects = _log_objects(served)
    for obj in objects:
        assert {"time", "level", "logger", "message"} <= obj.keys()
    events = {obj.get("event") for obj in objects}
    assert {"configuration", "metrics_started", "startup", "request_finished"} <= events
    text_line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")
    assert not [line for line in served.lines if text_line.match(line)], "a diffamp log line that is not JSON"
    assert not [line for line in served.lines if MARKER in line], "prompt text reached the logs"


def test_the_cli_prints_the_request_id_on_errors(served):
    out = subprocess.run([sys.executable, "-m", "diffamp.cli", "generate", "hi", "--temperature", "-1", "--server",
                          served.address], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    found = re.search(r"INVALID_ARGUMENT: .*\(request id ([0-9a-f]{32})\)", out.stderr)
    assert found, out.stderr
    assert _finished_line(served, found.group(1))["code"] == "INVALID_ARGUMENT"
    nobody = subprocess.run([sys.executable, "-m", "diffamp.cli", "info", "--server", f"127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, timeout=60)
    assert "no diffamp server answers" in nobody.stderr and "request id" not in nobody.stderr


def test_shutdown_is_logged(served):
    """Last of the tests on `served`: it stops the server."""
    served.stop()
    time.sleep(0.5)  # the reader thread takes the last lines
    events = [obj.get("event") for obj in _log_objects(served)]
    assert "shutdown_started" in events and "shutdown_complete" in events
    assert events.index("shutdown_started") < events.index("shutdown_complete")


# -- in process: log records -----------------------------------------------------------------------------------------
def _record(**extra) -> logging.LogRecord:
    record = logging.LogRecord("diffamp.requests", logging.INFO, __file__, 1, "Generate %s", ("OK",), None)
    record.__dict__.update(extra)
    return record


def test_formatters_write_the_fields_and_the_request_id():
    record = _record(fields={"rpc": "Generate", "total_s": 0.25, "note": "two words"}, request_id="abc")
    obj = json.loads(JsonFormatter().format(record))
    assert obj["message"] == "Generate OK" and obj["request_id"] == "abc" and obj["total_s"] == 0.25
    assert obj["level"] == "INFO" and obj["logger"] == "diffamp.requests" and obj["time"].endswith("Z")
    text = TextFormatter().format(record)
    assert text.endswith('Generate OK request_id=abc rpc=Generate total_s=0.2500 note="two words"')


def test_every_line_logged_inside_an_rpc_carries_its_request_id():
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("json", stream=stream)

        async def rpc():
            Call("Generate", "rid-42", "peer").begin()
            assert current_request_id() == "rid-42"
            logging.getLogger("diffamp.anything").warning("inside")

        asyncio.run(rpc())
        logging.getLogger("diffamp.anything").warning("outside")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    inside, outside = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert inside["request_id"] == "rid-42" and "request_id" not in outside


def test_prompts_and_completions_are_logged_only_with_log_prompts(caplog):
    caplog.set_level(logging.INFO, logger="diffamp.requests")
    prompt = messages.prompt(MARKER, system_prompt="sys")
    for log_prompts in (False, True):
        call = Call("Generate", f"rid-{log_prompts}", "peer", log_prompts=log_prompts)
        call.note_prompt(prompt)
        call.event(SimpleNamespace(index=0, text=f"completion {MARKER}", token_ids=[1, 2], finish_reason="length"))
        call.failed(ValueError(f"quoting {MARKER}"))
        fields = call.finish("INTERNAL")
        assert (MARKER in json.dumps(fields)) == log_prompts
        assert fields["generated_tokens"] == 2 and fields["samples_finished"] == 1
    assert fields["prompt"] == {"text": MARKER, "system_prompt": "sys"}
    assert fields["completions"] == [f"completion {MARKER}"] and fields["error"] == f"quoting {MARKER}"
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]


def test_request_ids_from_clients_are_kept_only_when_safe():
    assert accepted_request_id("trace-1:abc/DEF_2.x") == "trace-1:abc/DEF_2.x"
    for bad in ("", "has space", "x" * 129, "new\nline", None, "é"):
        made = accepted_request_id(bad)
        assert made != bad and re.fullmatch(r"[0-9a-f]{32}", made)


# -- in process: the HTTP API's calls, with a scripted gateway ---------------------------------------------------------
class ScriptedGateway:
    """Enough of a gateway for the HTTP app: a request is queued (noted on the running call, as the real gateway
    does) and sends one event; then it fails with `error`, waits for ever (`hang`), or finishes."""

    tokenizers = SimpleNamespace(token_text=str, after=None)
    limits = SimpleNamespace(max_seq_len=128)
    serving = True

    def __init__(self, error: Exception | None = None, hang: bool = False):
        self.error, self.hang = error, hang

    async def generate(self, inp, client=""):
        note_submitted(SimpleNamespace(n=1, request=SimpleNamespace(prompt=SimpleNamespace(after_ids=[1, 2, 3]))))
        yield SampleEvent(index=0, text="hi", token_ids=[5, 6], finish_reason=None if self.error or self.hang
                          else "length")
        if self.hang:
            await asyncio.Event().wait()
        if self.error:
            raise self.error


def _asgi(app, path: str, body: dict | None = None, headers: dict | None = None, leave_mid_stream=False) -> dict:
    """One request through the ASGI app, from 127.0.0.1:5555: {"status", "headers", "body"}. The client waits
    for the whole response, or with leave_mid_stream goes away after the first chunk."""
    sent = []

    async def main():
        gone = asyncio.Event()
        incoming = [{"type": "http.request", "body": json.dumps(body).encode() if body else b"", "more_body": False}]

        async def receive():
            if incoming:
                return incoming.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)
            if message["type"] == "http.response.body" and (leave_mid_stream or not message.get("more_body")):
                gone.set()

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
                 "method": "POST" if body else "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "server": ("testserver", 80), "client": ("127.0.0.1", 5555),
                 "headers": [(k.encode(), v.encode()) for k, v in
                             {"content-type": "application/json", **(headers or {})}.items()]}
        await asyncio.wait_for(app(scope, receive, send), 10)

    asyncio.run(main())
    start = next(m for m in sent if m["type"] == "http.response.start")
    return {"status": start["status"], "headers": {k.decode(): v.decode() for k, v in start["headers"]},
            "body": b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()}


def _http_app(gateway, token: str = "", log_prompts: bool = False):
    metrics = Metrics()
    settings = ApiSettings(auth_token=token, max_body_bytes=1 << 20, after_model="a", before_model="b",
                           log_prompts=log_prompts)
    return build_app(gateway, settings, metrics), metrics.registry.get_sample_value


def _requests(value, rpc: str) -> dict:
    codes = ("OK", "INVALID_ARGUMENT", "UNAUTHENTICATED", "NOT_FOUND", "UNAVAILABLE", "CANCELLED", "INTERNAL")
    counts = {code: value("diffamp_requests_total", {"rpc": rpc, "code": code}) for code in codes}
    return {code: n for code, n in counts.items() if n}


def _finished_records(caplog) -> list[dict]:
    return [r.fields for r in caplog.records if getattr(r, "fields", {}).get("event") == "request_finished"]


CHAT = {"model": "diffamp", "messages": [{"role": "user", "content": MARKER}], "max_tokens": 4}


def test_an_http_stream_that_ends_with_an_error_event_is_counted_with_its_code(caplog):
    caplog.set_level(logging.INFO, logger="diffamp.requests")
    app, value = _http_app(ScriptedGateway(error=WorkerUnavailable("a worker died")))
    response = _asgi(app, "/v1/chat/completions", {**CHAT, "stream": True}, {"x-request-id": "rid-stream-error"})
    assert response["status"] == 200 and response["headers"]["x-request-id"] == "rid-stream-error"
    assert '"code": "worker_unavailable"' in response["body"] and "[DONE]" not in response["body"]
    assert _requests(value, "http.chat.completions") == {"UNAVAILABLE": 1.0}
    assert value("diffamp_generated_tokens_total", {"rpc": "http.chat.completions"}) == 2
    assert value("diffamp_prompt_tokens_total", {"rpc": "http.chat.completions"}) == 3
    [fields] = _finished_records(caplog)
    assert fields["request_id"] == "rid-stream-error" and fields["rpc"] == "http.chat.completions"
    assert fields["code"] == "UNAVAILABLE" and fields["error_reason"] == "WORKER_UNAVAILABLE"
    assert fields["peer"] == "ipv4:127.0.0.1:5555" and fields["prompt_tokens"] == 3
    assert fields["generated_tokens"] == 2 and fields["first_token_s"] is not None
    assert MARKER not in json.dumps(fields)


def test_an_http_client_that_leaves_is_cancelled_and_each_outcome_has_its_code(caplog):
    caplog.set_level(logging.INFO, logger="diffamp.requests")
    app, value = _http_app(ScriptedGateway(hang=True), token="sesame", log_prompts=True)
    auth = {"authorization": "Bearer sesame"}
    left = _asgi(app, "/v1/completions", {**CHAT, "prompt": "x", "stream": True}, auth, leave_mid_stream=True)
    assert left["status"] == 200 and re.fullmatch(r"[0-9a-f]{32}", left["headers"]["x-request-id"])
    refused = _asgi(app, "/v1/chat/completions", CHAT, {"x-request-id": "rid-401"})
    assert refused["status"] == 401 and refused["headers"]["x-request-id"] == "rid-401"
    bad = _asgi(app, "/v1/chat/completions", {**CHAT, "n": "many"}, auth)
    assert bad["status"] == 400
    assert _asgi(app, "/v1/models/gpt-4o", headers=auth)["status"] == 404
    assert _asgi(app, "/v1/models", headers=auth)["status"] == 200
    assert _asgi(app, "/health")["status"] == 200 and "x-request-id" not in _asgi(app, "/health")["headers"]
    assert _requests(value, "http.completions") == {"CANCELLED": 1.0}
    assert _requests(value, "http.chat.completions") == {"UNAUTHENTICATED": 1.0, "INVALID_ARGUMENT": 1.0}
    assert _requests(value, "http.models") == {"OK": 1.0, "NOT_FOUND": 1.0}
    by_id = {f["request_id"]: f for f in _finished_records(caplog)}
    assert by_id["rid-401"]["error_reason"] == "INVALID_API_KEY"
    assert by_id[bad["headers"]["x-request-id"]]["error_field"] == "n"
    cancelled = by_id[left["headers"]["x-request-id"]]  # --log-prompts: the prompt and what was sent
    assert cancelled["prompt"] == {"text": "x"} and cancelled["completions"] == ["hi"]


# -- in process: the gateway's worker-side metrics and load gauges with a fake replica -------------------------------
class GatedReplica:
    """A fake replica: its first call waits for the test and then fails (a worker crash), the rest run."""

    id, slots = "r0", 4

    def __init__(self):
        self.worker = FakeWorker(self.slots)
        self.in_call = asyncio.Event()
        self.go = asyncio.Event()
        self.calls = self.recoveries = 0

    async def execute(self, plan):
        self.calls += 1
        if self.calls == 1:
            self.in_call.set()
            await self.go.wait()
            raise RuntimeError("injected worker crash")
        await asyncio.sleep(0)
        return self.worker.execute(plan)

    async def recover(self):
        self.worker = FakeWorker(self.slots)  # a restarted worker has an empty KV cache
        self.recoveries += 1

    def shutdown(self):
        pass


def test_gateway_metrics_with_a_fake_replica():
    async def main():
        gateway = Gateway(SimpleNamespace(after=CharTokenizer(), eos_ids={EOS}), None, GatewaySettings(
            max_queued=16, decode_steps=4, stream_buffer_bytes=1 << 20, stream_stall_s=60))
        metrics = Metrics()
        gateway.metrics = metrics
        metrics.watch(gateway, kv_bytes_per_slot=1000, kv_positions_per_slot=100)  # 10 bytes per position
        value = metrics.registry.get_sample_value
        r0 = {"replica": "r0"}
        replica = GatedReplica()
        call = Call("Generate", "rid-gw", "peer", metrics)
        call.begin()
        gateway.add_replica(replica)
        state = gateway.submit(sequence_request([1, 2, 3], n=2, max_new=12), ListSink())
        assert state.request_id == "rid-gw" and call.samples == 2 and call.prompt_tokens == 3
        assert value("diffamp_sequences_queued") == 2 and value("diffamp_sequences_live", r0) == 0

        await asyncio.wait_for(replica.in_call.wait(), 10)  # both samples hold rows in the first call
        assert value("diffamp_sequences_queued") == 0 and value("diffamp_sequences_live", r0) == 2
        assert value("diffamp_kv_slots_used", r0) == 2 and value("diffamp_kv_slots_capacity", r0) == 4
        assert value("diffamp_kv_tokens_used", r0) == 6 and value("diffamp_kv_bytes_used", r0) == 60
        assert value("diffamp_kv_bytes_capacity", r0) == 4000
        assert value("diffamp_replica_up", r0) == 1 and value("diffamp_serving") == 1
        assert value("diffamp_prompt_tokens_total", {"rpc": "Generate"}) == 3

        replica.go.set()  # the call fails; the replica restarts and the samples run from the start again
        deadline = time.monotonic() + 10
        while not state.finished:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert replica.recoveries == 1 and value("diffamp_worker_restarts_total", r0) == 1
        assert value("diffamp_worker_sampled_tokens_total", r0) == 24  # 2 samples x 12 tokens, no EOS
        calls = replica.calls - 1
        assert value("diffamp_worker_call_duration_seconds_count", r0) == calls == 3  # 12 tokens, 4 per call
        assert value("diffamp_worker_batch_size_sum", r0) == 2 * calls
        assert value("diffamp_worker_step_duration_seconds_count", r0) == calls
        assert value("diffamp_sequences_live", r0) == 0 and value("diffamp_replica_up", r0) == 1
        fields = call.finish("OK")
        assert fields["queue_s"] is not None and 0 <= fields["queue_s"] < 10
        assert value("diffamp_requests_total", {"rpc": "Generate", "code": "OK"}) == 1
        assert value("diffamp_request_queue_seconds_count", {"rpc": "Generate"}) == 1
        await gateway.drain(0)

    asyncio.run(main())


# -- the dashboard and the README ------------------------------------------------------------------------------------
def exported_names() -> set[str]:
    """Every sample name the server can export (histograms as _bucket/_count/_sum, counters as _total)."""
    gateway = SimpleNamespace(scheduler=SimpleNamespace(rows={}, slots={}, queued=0), healthy=set(), serving=True)
    metrics = Metrics(gateway, kv_bytes_per_slot=1, kv_positions_per_slot=1)
    names = set()
    for family in metrics.registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(family.type, ("",))
        names |= {family.name + s for s in suffixes}
    return {n for n in names if n.startswith("diffamp_")}


def test_the_dashboard_reads_only_metrics_the_server_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "diffamp"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for first_opened in ("throughput", "time to first token", "sequences", "kv cache", "errors by code", "restarts"):
        assert first_opened in titles
    exported = exported_names()
    used = {name for expr in _dashboard_exprs() for name in re.findall(r"diffamp_[a-z_]+", expr)}
    assert used and used <= exported, used - exported
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_readme_lists_every_metric():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Metrics"):]
    section = section[: section.index("\n## ", 1)]
    bases = {re.sub(r"_(bucket|count|sum)$", "", n) for n in exported_names()}
    missing = [n for n in sorted(bases) if f"`{n}`" not in section]
    assert not missing, missing
