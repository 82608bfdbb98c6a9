"""SIGTERM: stop admitting, NOT_SERVING, in-flight streams get the drain period, the rest end UNAVAILABLE, exit 0."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service import client, collect, request


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(llama_pair):
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "diffamp.cli", "serve", "--after", str(llama_pair[0]), "--before", str(llama_pair[1]),
         "--port", str(port), "--drain-seconds", "3", "--max-batch-size", "4", "--max-seq-len", "128",
         "--ray-num-cpus", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    deadline = time.time() + 180
    for line in proc.stdout:
        lines.append(line)
        if "diffamp serving on" in line or time.time() > deadline:
            break
    assert proc.poll() is None, "".join(lines)
    threading.Thread(target=lambda: [lines.append(x) for x in proc.stdout], daemon=True).start()
    yield proc, f"127.0.0.1:{port}", lines
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sigterm_drains_then_exits_zero(served):
    proc, address, lines = served
    stub = client(address)
    outcome = {}

    def long_stream():
        try:
            collect(stub.Generate(request(n=400, max_new_tokens=100, prompt="long", seed=1)))
            outcome["long"] = "ok"
        except grpc.RpcError as err:
            outcome["long"] = (err.code(), err.details())

    def short_stream():
        outcome["short"] = collect(stub.Generate(request(n=1, max_new_tokens=60, seed=2)))[0]["finish_reason"]

    threads = [threading.Thread(target=short_stream), threading.Thread(target=long_stream)]
    for t in threads:
        t.start()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Generate(request(seed=3)))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    started = time.time()
    for t in threads:
        t.join(30)
    assert outcome["short"]  # finished within the drain period
    code, details = outcome["long"]
    assert code == grpc.StatusCode.UNAVAILABLE and "drain period 3 s" in details
    assert proc.wait(60) == 0, "".join(lines)
    assert time.time() - started < 30
