"""Split placement: one Ray actor per model, before logits sent to the after actor over gloo.

Gives the same tokens as the in-process (colocated) engine for the same seeds.
"""

import pickle

import pytest
import torch

from diffamp_server.background import BackgroundServer
from diffamp_server import Amplifier
from diffamp_server.config import ServerConfig
from diffamp_server.plan import BatchPlan, Prefill, SamplingParams
from diffamp_server.workers import PairWorker, WorkerSpec
from diffamp_server.loading import ModelSource
from diffamp_server.vocab import SharedVocab
from service import client, collect, request


@pytest.fixture(scope="module")
def split_server(ray_cluster, gpt2_pair):
    after, before = gpt2_pair
    config = ServerConfig(after=str(after), before=str(before), port=0, placement="split", max_batch_size=8,
                          max_seq_len=128, worker_cpus=1)
    srv = BackgroundServer(config)
    yield srv
    srv.stop()


def test_split_gives_the_same_tokens_as_colocated(split_server, gpt2_pair):
    stub = client(split_server.address)
    info = stub.GetModelInfo(__import__("diffamp.v1.diffamp_pb2", fromlist=["x"]).GetModelInfoRequest())
    assert info.placement == "split"
    got = collect(stub.Generate(request(n=3, seed=77, temperature=1.0, alpha=1.5, max_new_tokens=10, logprobs=1)))
    amp = Amplifier(str(gpt2_pair[0]), str(gpt2_pair[1]), device="cpu", max_batch_size=8, max_seq_len=128)
    want = amp.generate("hello world", n=3, seed=77, temperature=1.0, alpha=1.5, max_new_tokens=10, logprobs=1)
    for c in want:
        assert got[c.index]["token_ids"] == c.token_ids
        assert got[c.index]["text"] == c.text
        assert max(abs(a.amplified - b) for a, b in zip(got[c.index]["logprobs"], c.logprobs.amplified)) < 1e-4


def _tensors_inside(obj, seen=None):
    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, (list, tuple)):
        return any(_tensors_inside(x) for x in obj)
    if hasattr(obj, "__dict__"):
        return any(_tensors_inside(v) for v in vars(obj).values())
    if hasattr(obj, "__dataclass_fields__"):
        return any(_tensors_inside(getattr(obj, f)) for f in obj.__dataclass_fields__)
    return False


def test_what_crosses_ray_per_step_holds_no_logits(llama_pair):
    """A step's plan and result are token ids and a few floats per row, whatever the vocabulary size."""
    after, before = llama_pair
    spec = WorkerSpec(after=ModelSource(str(after)), before=ModelSource(str(before)), dtype="float32", device="cpu",
                      max_batch_size=8, max_seq_len=128, shared_vocab=SharedVocab(((0, 300),)))
    worker = PairWorker(spec)
    params = [SamplingParams(alpha=1.0, temperature=1.0, top_p=1.0, seed=1, sample_index=i, logprobs=2)
              for i in range(4)]
    plan = BatchPlan(prefills=[Prefill(after_ids=[1, 2, 3], before_ids=None, rows=[0, 1, 2, 3], params=params)])
    result = worker.execute(plan)
    assert not _tensors_inside(plan) and not _tensors_inside(result)
    assert len(result.token_ids) == 4
    vocab = 300
    assert len(pickle.dumps(result)) < 4 * vocab  # a logits row alone would be 4 * vocab bytes per row
