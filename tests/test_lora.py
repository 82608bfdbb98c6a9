"""LoRA pairs: the after model as a PEFT adapter on the before model, one set of weights, both models in one
forward; logit-space amplification equal to the merged pair's, weight-space amplification equal to a model
whose LoRA delta is scaled by (1 + alpha), and mixed batches equal to each row alone."""

import pytest
import torch

from diffamp_server import Amplifier
from diffamp_server.request import PromptInput
from pairs import build_lora_pair, scaled_lora_model
from reference import ReferencePair

TOL = 1e-4


@pytest.fixture(scope="module")
def lora_pair(pair_root):
    return build_lora_pair(pair_root)


@pytest.fixture(scope="module")
def amp(lora_pair):
    adapter, base, _ = lora_pair
    return Amplifier(str(adapter), str(base), device="cpu", max_batch_size=8, max_seq_len=128)


def _ids(amp, text):
    return list(amp.tokenizers.encode(PromptInput(text=text)).after_ids)


def test_one_set_of_weights_and_a_lora_engine(amp, lora_pair):
    from transformers import AutoModelForCausalLM

    assert amp.limits.lora_layers == 2 and amp.engine.models.engine == "static"
    lm = amp.engine.models.runner.lm
    resident = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    adapter = sum(p.numel() * p.element_size() for n, p in lm.model.named_parameters() if "lora_" in n)
    one_model = sum(p.numel() * p.element_size()
                    for p in AutoModelForCausalLM.from_pretrained(lora_pair[1]).parameters())
    assert resident == one_model + adapter  # the base once, plus the adapter: not two models
    assert resident < 1.2 * one_model  # a rank-4 adapter on a 32-wide toy; real adapters are a fraction of a percent


@pytest.mark.parametrize("alpha", [0.0, 1.0, 4.0])
def test_logit_space_equals_the_merged_pair(amp, lora_pair, alpha):
    adapter, base, merged = lora_pair
    merged_amp = Amplifier(str(merged), str(base), device="cpu", max_batch_size=8, max_seq_len=128)
    options = dict(alpha=alpha, n=3, max_new_tokens=8, temperature=1.0, top_p=1.0, seed=21, logprobs=5)
    got, want = amp.generate("hello world", **options), merged_amp.generate("hello world", **options)
    assert [c.token_ids for c in got] == [c.token_ids for c in want]
    for g, w in zip(got, want):
        for name in ("amplified", "after", "before", "sampled"):
            assert abs(getattr(g.logprobs, name) - getattr(w.logprobs, name)).max() < TOL
    ref = ReferencePair(merged, base, amp.tokenizers.shared)
    prompt = _ids(amp, "hello world")
    for c in got:
        for t, token in enumerate(c.token_ids):
            amplified, after, before = ref.next_token_logprobs(prompt + c.token_ids[:t], alpha)
            assert abs(c.logprobs.amplified[t] - amplified[token]) < TOL
            assert abs(c.logprobs.before[t] - before[token]) < TOL


@pytest.mark.parametrize("alpha, layers", [(1.0, ()), (3.0, ()), (2.0, (1,))])
def test_weight_space_equals_the_delta_scaled_by_one_plus_alpha(amp, lora_pair, alpha, layers):
    adapter, base, merged = lora_pair
    scaled = scaled_lora_model(adapter, base, 1 + alpha, layers)
    plain = scaled_lora_model(adapter, base, 1.0)
    size = amp.tokenizers.shared.size
    [c] = amp.generate("the quick", alpha=alpha, mode="weights", lora_layers=layers, max_new_tokens=8,
                       temperature=1.0, top_p=1.0, seed=5, logprobs=5)
    prompt = _ids(amp, "the quick")
    with torch.no_grad():
        for t, token in enumerate(c.token_ids):
            x = torch.tensor([prompt + c.token_ids[:t]])
            want = scaled(x).logits[0, -1, :size].double().log_softmax(-1)
            after = plain(x).logits[0, -1, :size].double().log_softmax(-1)
            assert abs(c.logprobs.amplified[t] - want[token]) < TOL
            assert abs(c.logprobs.sampled[t] - want[token]) < TOL
            assert abs(c.logprobs.after[t] - after[token]) < TOL  # importance weights stay computable
            assert torch.allclose(torch.tensor(c.logprobs.top_logprobs[t], dtype=torch.float64), want.topk(5).values,
                                  atol=TOL)
    assert all(b != b for b in c.logprobs.before)  # the base is not run in weights mode: NaN, said plainly


def test_a_mixed_batch_of_modes_and_alphas_equals_each_row_alone(amp):
    from diffamp_server.amplifier import _generate_input
    from diffamp_server.request import validate_generate

    variants = [dict(mode="logits", alpha=0.0), dict(mode="logits", alpha=2.0), dict(mode="weights", alpha=1.0),
                dict(mode="weights", alpha=3.0, lora_layers=(0,)), dict(mode="logits", alpha=-1.0)]
    common = dict(max_new_tokens=10, temperature=1.0, top_p=1.0, seed=9, logprobs=0, n=2)
    requests = [amp._request(_generate_input("hello there", **v, **common), validate_generate) for v in variants]
    together = amp._run(requests, progress=False)
    for request, batch in zip(requests, together):
        alone = amp._run([request], progress=False)[0]
        assert [c.token_ids for c in batch] == [c.token_ids for c in alone]
        for a, b in zip(batch, alone):
            assert abs(a.logprobs.amplified - b.logprobs.amplified).max() < TOL


def test_weights_mode_needs_a_lora_pair_and_valid_layers(amp, llama_pair):
    from diffamp_server.errors import InvalidArgument

    plain = Amplifier(str(llama_pair[0]), str(llama_pair[1]), device="cpu", max_batch_size=2, max_seq_len=64)
    with pytest.raises(InvalidArgument, match="weights mode needs a LoRA pair"):
        plain.generate("hi", mode="weights", max_new_tokens=2)
    with pytest.raises(InvalidArgument) as err:
        amp.generate("hi", mode="weights", lora_layers=(5,), max_new_tokens=2)
    assert err.value.field == "lora_layers[0]"
    with pytest.raises(InvalidArgument, match="only weights mode"):
        amp.generate("hi", mode="logits", lora_layers=(0,), max_new_tokens=2)


def test_an_adapter_for_another_base_is_refused(lora_pair, gpt2_pair):
    from diffamp_server.engine.model import UnsupportedModel

    with pytest.raises(UnsupportedModel, match="was trained on .* but --before is"):
        Amplifier(str(lora_pair[0]), str(gpt2_pair[1]), device="cpu", max_batch_size=2, max_seq_len=64)


def test_the_service_serves_a_lora_pair_and_sweeps_both_techniques(ray_cluster, lora_pair, amp):
    from diffamp import messages
    from diffamp.v1 import diffamp_pb2 as pb
    from diffamp_server.background import BackgroundServer
    from diffamp_server.config import ServerConfig
    from service import client, collect, request

    adapter, base, _ = lora_pair
    srv = BackgroundServer(ServerConfig(after_adapter=str(adapter), before=str(base), port=0, max_batch_size=8,
                                        max_seq_len=128, worker_cpus=1))
    try:
        stub = client(srv.address)
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        assert info.lora and info.layers == 2 and info.max_batch_size == 8
        got = collect(stub.Generate(request(prompt="the quick", alpha=2.0, mode=pb.AMPLIFICATION_MODE_WEIGHTS, n=2,
                                            seed=4, max_new_tokens=6, temperature=1.0, top_p=1.0)))
        want = amp.generate("the quick", alpha=2.0, mode="weights", n=2, seed=4, max_new_tokens=6, temperature=1.0,
                            top_p=1.0)
        assert [got[c.index]["token_ids"] for c in want] == [c.token_ids for c in want]
        sweep = pb.SweepRequest(prompts=[pb.SweepPrompt(id="a", prompt=messages.prompt("hello"))], alphas=[0.0, 1.0],
                                n=4, seed=1, sampling=messages.sampling(max_new_tokens=5),
                                modes=[pb.AMPLIFICATION_MODE_LOGITS, pb.AMPLIFICATION_MODE_WEIGHTS],
                                detectors=[pb.Detector(name="e", substring="e")])
        items = list(stub.Sweep(sweep))
        samples = [i.sample for i in items if i.HasField("sample")]
        assert len(samples) == 16
        by = {(s.mode, s.alpha, s.index): list(s.token_ids) for s in samples}
        for i in range(4):  # at alpha 0 both techniques are the after model itself: the same samples
            assert by[(pb.AMPLIFICATION_MODE_LOGITS, 0.0, i)] == by[(pb.AMPLIFICATION_MODE_WEIGHTS, 0.0, i)]
        rows = items[-1].summary.rows
        assert [(r.mode, r.alpha) for r in rows] == [(pb.AMPLIFICATION_MODE_LOGITS, 0.0),
                                                     (pb.AMPLIFICATION_MODE_LOGITS, 1.0),
                                                     (pb.AMPLIFICATION_MODE_WEIGHTS, 0.0),
                                                     (pb.AMPLIFICATION_MODE_WEIGHTS, 1.0)]
    finally:
        srv.stop()
