"""Two model-pair replicas behind one gateway, on a 2-node Ray cluster on this machine (one CPU per node):
both get work, tokens equal a single replica's, a killed replica loses no sample and duplicates no token, and
replicas come and go while serving without failing a stream."""

import os
import signal
import threading
import time

import pytest

from diffamp.v1 import diffamp_pb2 as pb
from diffamp.v1 import diffamp_pb2_grpc
from diffamp_server import Amplifier
from diffamp_server.background import BackgroundServer
from diffamp_server.config import ServerConfig
from service import client, collect, request

SLOTS = 4


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def server(cluster, llama_pair):
    after, before = llama_pair
    config = ServerConfig(after=str(after), before=str(before), port=0, ray_address=cluster.address, replicas="2",
                          max_batch_size=SLOTS, max_seq_len=128, worker_cpus=1, torch_threads=1, drain_seconds=1)
    srv = BackgroundServer(config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def quiet(llama_pair):
    """The same samples from one in-process replica, with nothing else running."""
    amp = Amplifier(str(llama_pair[0]), str(llama_pair[1]), device="cpu", max_batch_size=SLOTS, max_seq_len=128)

    def replay(req: pb.GenerateRequest) -> dict[int, list[int]]:
        s = req.sampling
        out = amp.generate(req.prompt.text, alpha=req.alpha, n=req.n, seed=req.seed, max_new_tokens=s.max_new_tokens,
                           min_new_tokens=s.min_new_tokens, temperature=s.temperature, top_p=s.top_p)
        return {c.index: c.token_ids for c in out}
    return replay


def _admin(server):
    import grpc

    return diffamp_pb2_grpc.AdminServiceStub(grpc.insecure_channel(server.address))


def _tokens(samples) -> dict[int, list[int]]:
    return {i: s["token_ids"] for i, s in samples.items()}


def _long(seed, n=8):
    return request(prompt=f"long {seed}", n=n, seed=seed, max_new_tokens=60, min_new_tokens=60, temperature=1.0,
                   top_p=1.0, alpha=1.0)


def test_both_replicas_get_work_and_tokens_equal_one_replicas(server, quiet):
    stub = client(server.address)
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert [r.id for r in info.replicas] == ["r0", "r1"] and info.max_batch_size == 2 * SLOTS
    assert len({r.after_node for r in info.replicas}) == 2  # one replica per node
    req = _long(1)
    seen, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            seen.update(r.id for r in stub.GetModelInfo(pb.GetModelInfoRequest()).replicas if r.live_sequences)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    got = collect(stub.Generate(req))
    done.set()
    watcher.join(5)
    assert seen == {"r0", "r1"}
    assert _tokens(got) == quiet(req)


def test_a_killed_replica_loses_no_sample_and_duplicates_no_token(server, quiet):
    import ray

    stub = client(server.address)
    reqs = [_long(seed) for seed in (2, 3)]
    calls = [stub.Generate(r) for r in reqs]
    firsts = [next(c) for c in calls]
    victim = server.running.gateway.replicas["r1"].actors[0]
    os.kill(ray.get(victim.__ray_call__.remote(lambda self: os.getpid())), signal.SIGKILL)
    for req, call, first in zip(reqs, calls, firsts):
        got = collect(call)
        got.setdefault(first.index, {"token_ids": []})["token_ids"][:0] = list(first.token_ids)
        assert _tokens(got) == quiet(req)
        assert all(len(t) == 60 for t in _tokens(got).values())  # nothing lost, nothing twice


def test_replicas_are_removed_and_added_while_serving_without_failing_a_stream(server, quiet):
    stub = client(server.address)
    admin = _admin(server)
    reqs = [_long(seed, n=6) for seed in (4, 5, 6)]
    results, errors = {}, []

    def run(req):
        try:
            results[req.seed] = collect(stub.Generate(req))
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in reqs]
    for t in threads:
        t.start()
    time.sleep(0.5)
    shrunk = admin.SetReplicas(pb.SetReplicasRequest(replicas=1))
    assert [r.id for r in shrunk.replicas] == ["r0"]
    grown = admin.SetReplicas(pb.SetReplicasRequest(replicas=2))
    assert sorted(r.id for r in grown.replicas) == ["r0", "r2"]
    for t in threads:
        t.join(120)
    assert not errors
    for req in reqs:
        assert _tokens(results[req.seed]) == quiet(req)
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.live_sequences == 0 and info.queued_sequences == 0
