"""Worker failures: a killed worker process and an exception in forward end the affected streams with
UNAVAILABLE, health goes NOT_SERVING, the worker comes back, and new requests succeed, all without
restarting the gateway."""

import os
import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from diffamp_server.server import BackgroundServer
from diffamp.v1 import diffamp_pb2 as pb
from diffamp_server.config import ServerConfig
from service import client, collect, request

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def server(ray_cluster, llama_pair):
    after, before = llama_pair
    config = ServerConfig(after=str(after), before=str(before), port=0, max_batch_size=4, max_seq_len=128,
                          worker_cpus=1)
    srv = BackgroundServer(config)
    yield srv
    srv.stop()


def _health(server):
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
    return stub.Check(health_pb2.HealthCheckRequest(service="diffamp.v1.AmplificationService")).status


def _actor(server):
    return server.running.pool.actors[0]


class HealthWatcher:
    """Polls health in the background and records every status seen."""

    def __init__(self, server):
        self.server, self.seen, self.stop = server, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                self.seen.append(_health(self.server))
            except grpc.RpcError:
                pass
            time.sleep(0.01)

    def close(self):
        self.stop.set()
        self.thread.join(5)


def _wait_serving(server, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _health(server) == SERVING:
            return
        time.sleep(0.1)
    raise AssertionError("health never returned to SERVING")


def test_killed_worker_process(server):
    import ray

    stub = client(server.address)
    assert collect(stub.Generate(request(seed=1)))[0]["finish_reason"]
    pid = ray.get(_actor(server).__ray_call__.remote(lambda self: os.getpid()))
    call = stub.Generate(request(n=4, max_new_tokens=2000 // 20, prompt="long", seed=2, temperature=1.0))
    watcher = HealthWatcher(server)
    next(call)
    os.kill(pid, signal.SIGKILL)
    started = time.time()
    with pytest.raises(grpc.RpcError) as info:
        list(call)
    assert time.time() - started < 30
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "model worker failed" in info.value.details()
    _wait_serving(server)
    watcher.close()
    assert NOT_SERVING in watcher.seen
    new_pid = ray.get(_actor(server).__ray_call__.remote(lambda self: os.getpid()))
    assert new_pid != pid
    again = collect(stub.Generate(request(n=2, seed=1)))
    assert all(s["finish_reason"] for s in again.values())
    assert stub.GetModelInfo(pb.GetModelInfoRequest()).live_sequences == 0


def test_exception_in_forward(server):
    import ray

    def break_next_forward(worker):  # nested, so Ray pickles it by value into the actor
        runner = worker.engine.after
        original = runner.run

        def broken(plan):
            runner.run = original
            raise RuntimeError("injected forward failure")

        runner.run = broken

    stub = client(server.address)
    call = stub.Generate(request(n=3, max_new_tokens=100, prompt="boom", seed=3))
    next(call)
    ray.get(_actor(server).__ray_call__.remote(break_next_forward))
    with pytest.raises(grpc.RpcError) as info:
        list(call)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "injected forward failure" in info.value.details()
    _wait_serving(server)
    assert collect(stub.Generate(request(seed=4)))[0]["finish_reason"]
    assert stub.GetModelInfo(pb.GetModelInfoRequest()).live_sequences == 0
