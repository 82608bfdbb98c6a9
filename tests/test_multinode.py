"""A 2-node Ray cluster on this machine (ray.cluster_utils.Cluster): the gateway joins with ray_address, each
model actor lands on its own node through custom resources, and the tokens equal colocated placement's."""

import pytest

from diffamp_server.background import BackgroundServer
from diffamp.v1 import diffamp_pb2 as pb
from diffamp_server import Amplifier
from diffamp_server.config import ServerConfig
from service import client, collect, request


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    c.add_node(num_cpus=1, resources={"after_node": 1})
    c.add_node(num_cpus=1, resources={"before_node": 1})
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def server(cluster, llama_pair):
    after, before = llama_pair
    config = ServerConfig(after=str(after), before=str(before), port=0, placement="split", ray_address=cluster.address,
                          after_resources='{"after_node": 1}', before_resources='{"before_node": 1}',
                          max_batch_size=8, max_seq_len=128, worker_cpus=1)
    srv = BackgroundServer(config)
    yield srv
    srv.stop()


def test_actors_on_different_nodes_give_colocated_tokens(server, llama_pair):
    import ray

    stub = client(server.address)
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.placement == "split"
    assert info.after.node != info.before.node
    nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes()}
    assert "after_node" in nodes[info.after.node] and "before_node" in nodes[info.before.node]
    got = collect(stub.Generate(request(n=4, seed=31, temperature=1.0, alpha=1.0, max_new_tokens=12)))
    amp = Amplifier(str(llama_pair[0]), str(llama_pair[1]), device="cpu", max_batch_size=8, max_seq_len=128)
    want = amp.generate("hello world", n=4, seed=31, temperature=1.0, alpha=1.0, max_new_tokens=12)
    assert [got[c.index]["token_ids"] for c in want] == [c.token_ids for c in want]
