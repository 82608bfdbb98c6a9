"""The static engine against the eager one, and the static step's capturability, on CPU.

The static engine runs here with padded buckets (the shapes CUDA graphs are captured at) but without graphs:
the code a graph would capture runs eagerly. Both engines must give the same tokens for the same seeds
through multi-step calls with churn: rows finishing mid-call, slots reused, min_new_tokens, top-k, top-p and
logprobs, batches smaller than their bucket.
"""

import random

import pytest

from diffamp_server.engine.decode_step import StepKind
from diffamp_server.engine.loader import RunnerSpec, load_runner
from diffamp_server.engine.pair import PairEngine
from diffamp_server.engine.pair_models import TwoModels
from diffamp_server.events import ListSink
from diffamp_server.loading import ModelSource
from diffamp_server.output import OutputProcessor
from diffamp_server.plan import SamplingParams
from diffamp_server.request import EncodedPrompt, SequenceRequest
from diffamp_server.scheduler import Scheduler
from diffamp_server.tokenizer_pair import TokenizerPair

ROWS, STEPS = 6, 4


def _engine(pair, engine: str, padded: bool) -> tuple[PairEngine, TokenizerPair]:
    runners = [load_runner(RunnerSpec(source=ModelSource(str(d)), dtype="float32", device="cpu", engine=engine,
                                      max_rows=ROWS, max_seq_len=128)) for d in pair]
    tokenizers = TokenizerPair.load(ModelSource(str(pair[0])), ModelSource(str(pair[1])), 10**6)
    return PairEngine(TwoModels(*runners), shared=tokenizers.shared, eos_ids=tuple(sorted(tokenizers.eos_ids)),
                      max_rows=ROWS, max_steps=STEPS, max_logprobs=4, pad_to_buckets=padded), tokenizers


def _requests(seed: int) -> list[SequenceRequest]:
    rng = random.Random(seed)
    requests = []
    for r in range(14):
        prompt = tuple(rng.randrange(5, 290) for _ in range(rng.randint(1, 9)))
        n = rng.randint(1, 3)
        samples = tuple(SamplingParams(alpha=rng.choice([0.0, 1.0, 3.0, -1.0]), temperature=rng.choice([0.0, 0.7, 1.0]),
                                       top_p=rng.choice([1.0, 0.9]), top_k=rng.choice([0, 0, 5]), seed=r,
                                       sample_index=i, logprobs=rng.choice([None, 0, 3]),
                                       min_new_tokens=rng.choice([0, 0, 4])) for i in range(n))
        requests.append(SequenceRequest(prompt=EncodedPrompt(after_ids=prompt), samples=samples,
                                        max_new_tokens=rng.randint(1, 14), stop=(), seed=r))
    return requests


def _run(engine: PairEngine, tokenizers: TokenizerPair, requests) -> list[dict]:
    """Every request through the real scheduler (6 rows, 4 steps per call): rows churn and slots are reused."""
    scheduler = Scheduler(OutputProcessor(tokenizers.after, tokenizers.eos_ids), max_queued=1000, decode_steps=STEPS)
    scheduler.add_replica("r", ROWS)
    sinks = [ListSink() for _ in requests]
    for request, sink in zip(requests, sinks):
        scheduler.submit(request, sink)
    while (plan := scheduler.next_plan("r")) is not None:
        result = engine.execute(plan)
        for sample, tokens, logprobs in zip(scheduler.samples_of("r", plan), result.token_ids, result.logprobs):
            if not sample.done:
                sample.owner.sink.deliver(scheduler.output.advance(sample.output, tokens, logprobs))
    out = []
    for sink in sinks:
        out.append({i: ([t for e in events for t in e.token_ids], [lp for e in events for lp in e.logprobs])
                    for i, events in sink.events.items()})
    return out


@pytest.mark.parametrize("pair_name", ["llama_pair", "mistral_pair"])
def test_static_and_eager_engines_give_the_same_tokens_through_churn(pair_name, request):
    pair = request.getfixturevalue(pair_name)
    requests = _requests(7)
    static, tokenizers = _engine(pair, "static", padded=True)
    eager, _ = _engine(pair, "eager", padded=False)
    assert static.buckets.batch is not None and eager.buckets.batch is None
    got, want = _run(static, tokenizers, requests), _run(eager, tokenizers, requests)
    assert sum(len(tokens) for r in want for tokens, _ in r.values()) > 150
    for g, w in zip(got, want):
        assert {i: t for i, (t, _) in g.items()} == {i: t for i, (t, _) in w.items()}
        for i in w:
            for a, b in zip(g[i][1], w[i][1]):
                assert abs(a.amplified - b.amplified) < 1e-4 and abs(a.sampled - b.sampled) < 1e-4
                assert a.top_ids[:1] == b.top_ids[:1]


def test_the_static_step_compiles_as_one_graph_without_recompiles(llama_pair):
    """torch.compile(step, backend="eager", fullgraph=True) with error_on_recompile over 20 steps of changing
    lengths and sampling parameters at one bucket: no graph break (fullgraph) and no recompile. What CUDA graph
    capture needs: no host sync, no data-dependent Python branch, fixed shapes per bucket."""
    import numpy as np
    import torch._dynamo

    from diffamp_server.engine.rows import CallInputs

    engine, _ = _engine(llama_pair, "static", padded=True)
    rows, kv = engine.buckets.batch_for(3), engine.buckets.kv_for(40)
    kind = StepKind(filters=True, logprobs=True)
    compiled = torch.compile(engine._step, backend="eager", fullgraph=True)
    rng = np.random.default_rng(0)
    previous = torch._dynamo.config.error_on_recompile
    torch._dynamo.config.error_on_recompile = True
    torch._dynamo.reset()
    try:
        with torch.inference_mode():
            for step in range(20):
                n = int(rng.integers(1, rows + 1))
                for r in range(n):
                    engine.table.params[r] = SamplingParams(
                        alpha=float(rng.normal()), temperature=float(rng.choice([0.0, 0.5, 1.0])),
                        top_p=float(rng.choice([0.8, 1.0])), top_k=int(rng.choice([0, 3])), seed=step, sample_index=r,
                        min_new_tokens=int(rng.integers(0, 3)))
                    engine.table.generated[r] = int(rng.integers(0, 5))
                    for m in ("after", "before"):
                        engine.table.lengths[m][r] = int(rng.integers(0, 30))
                tokens = {m: rng.integers(5, 200, n) for m in ("after", "before")}
                engine.state.load(engine.table, CallInputs(rows=n, steps=STEPS, budgets=np.full(n, STEPS),
                                                           tokens=tokens), rng.random((n, STEPS)))
                compiled(rows, kv, kind)
                assert not engine.state.out_logprobs["amplified"][:n, 0].isnan().any()
    finally:
        torch._dynamo.config.error_on_recompile = previous
        torch._dynamo.reset()
