"""Worker failures: a killed worker process or an exception in forward costs no sample: the affected samples
continue from the tokens they have once the worker is back (health is NOT_SERVING meanwhile), and the
client receives exactly what a quiet run gives. A request that breaks the worker every time fails alone."""

import os
import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from diffamp_server.background import BackgroundServer
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
    return server.running.gateway.replicas["r0"].actors[0]


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


def test_killed_worker_process_loses_no_sample(server):
    """The worker is SIGKILLed mid-stream: Ray restarts it, the stream's samples continue from the tokens they
    already had, and the client gets exactly what a quiet run gives."""
    import ray

    stub = client(server.address)
    req = request(n=4, max_new_tokens=100, prompt="long", seed=2, temperature=1.0, min_new_tokens=100)
    quiet = collect(stub.Generate(req))
    pid = ray.get(_actor(server).__ray_call__.remote(lambda self: os.getpid()))
    call = stub.Generate(req)
    watcher = HealthWatcher(server)
    first = next(call)
    os.kill(pid, signal.SIGKILL)
    rest = collect(call)
    watcher.close()
    rest.setdefault(first.index, {"token_ids": []})["token_ids"][:0] = list(first.token_ids)
    assert {i: s["token_ids"] for i, s in rest.items()} == {i: s["token_ids"] for i, s in quiet.items()}
    assert NOT_SERVING in watcher.seen
    _wait_serving(server)
    assert ray.get(_actor(server).__ray_call__.remote(lambda self: os.getpid())) != pid
    assert stub.GetModelInfo(pb.GetModelInfoRequest()).live_sequences == 0


def test_exception_in_forward_is_retried_elsewhere_once(server):
    import ray

    def break_next_forward(worker):  # nested, so Ray pickles it by value into the actor
        runner = worker.engine.models.after

        def broken(*args):
            del runner.decode
            raise RuntimeError("injected forward failure")

        runner.decode = broken

    stub = client(server.address)
    req = request(n=3, max_new_tokens=100, prompt="boom", seed=3, min_new_tokens=100)
    quiet = collect(stub.Generate(req))
    call = stub.Generate(req)
    first = next(call)
    ray.get(_actor(server).__ray_call__.remote(break_next_forward))
    rest = collect(call)
    rest[first.index]["token_ids"][:0] = list(first.token_ids)
    assert {i: s["token_ids"] for i, s in rest.items()} == {i: s["token_ids"] for i, s in quiet.items()}
    _wait_serving(server)


def test_a_request_that_breaks_the_worker_every_time_fails_alone(server):
    """Whatever makes a forward raise on every try ends that request with UNAVAILABLE after two tries; a
    request running beside it finishes every sample."""
    import ray

    def break_on_prompt(worker, poison):
        engine = worker.engine
        original = engine.execute

        def broken(plan):
            if any(p.after_ids[-len(poison):] == poison for p in plan.prefills):
                raise RuntimeError("this prompt breaks the worker")
            return original(plan)

        engine.execute = broken

    stub = client(server.address)
    poison_ids = [5, 6, 7, 8, 9]
    ray.get(_actor(server).__ray_call__.remote(break_on_prompt, poison_ids))
    try:
        victim = stub.Generate(request(n=3, max_new_tokens=60, min_new_tokens=60, seed=4, prompt="victim"))
        first = next(victim)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Generate(request(prompt="", prompt_token_ids=poison_ids, max_new_tokens=4)))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "this prompt breaks the worker" in info.value.details()
        samples = collect(victim)
        samples[first.index]["token_ids"][:0] = list(first.token_ids)
        assert sorted(samples) == [0, 1, 2] and all(len(s["token_ids"]) == 60 for s in samples.values())
    finally:
        ray.get(_actor(server).__ray_call__.remote(lambda worker: delattr(worker.engine, "execute")))
    _wait_serving(server)
