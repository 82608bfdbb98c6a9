"""The library API's logprobs equal a direct reference (HF forward of each model + the formula) within 1e-4,
on both engines.

The library API shares the scheduler, slot KV store, runners and sampler with the service workers, so this
covers the batched, cached decode path: several samples in one batch, several steps deep. The pairs cover
GPT-2 (absolute positions), Llama (GQA), trailing added tokens, a gap in the shared vocabulary, and sliding
windows (Mistral: every layer; Gemma 2: alternating, with soft-capped attention and logits; Gemma 3: hybrid
layers with a RoPE per layer type), with sequences several times longer than the window, and OLMo-2 (the
shape of allenai/OLMo-2-0425-1B: post-norms, RMS-normed queries and keys), loaded from local directories.
"""

import pytest
import torch

from diffamp_server import Amplifier
from reference import ReferencePair

ALPHAS = [0.0, -1.0, 1.0, 4.0]
TOL = 1e-4


PAIRS = ["llama_pair", "gpt2_pair", "vocab_pair", "gap_pair", "mistral_pair", "gemma2_pair", "gemma3_pair",
         "olmo2_pair"]


@pytest.fixture(scope="module", params=[(p, e) for p in PAIRS for e in ("static", "eager")],
                ids=lambda v: f"{v[0].removesuffix('_pair')}-{v[1]}")
def pair(request):
    name, engine = request.param
    after_dir, before_dir = request.getfixturevalue(name)
    amp = Amplifier(str(after_dir), str(before_dir), device="cpu", dtype="float32", max_batch_size=16,
                    max_seq_len=128, engine=engine)
    assert amp.engine.engine == engine
    return amp, ReferencePair(after_dir, before_dir, amp.tokenizers.shared)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_amplified_topk_logprobs_match_reference(pair, alpha):
    amp, ref = pair
    completions = amp.generate("hello world", alpha=alpha, n=3, max_new_tokens=8, temperature=1.0, top_p=1.0,
                               seed=11, logprobs=5)
    prompt = _ids(amp, "hello world")
    assert len({tuple(c.token_ids) for c in completions}) > 1, "samples should differ"
    for c in completions:
        for t, token in enumerate(c.token_ids):
            amplified, after, before = ref.next_token_logprobs(prompt + c.token_ids[:t], alpha)
            want_lp, want_ids = amplified.topk(5)
            got_ids = torch.tensor(c.logprobs.top_ids[t])
            assert torch.allclose(torch.tensor(c.logprobs.top_logprobs[t], dtype=torch.float64), want_lp, atol=TOL)
            assert torch.allclose(amplified[got_ids], want_lp, atol=TOL)  # ids agree up to exact ties
            assert abs(c.logprobs.amplified[t] - amplified[token]) < TOL
            assert abs(c.logprobs.after[t] - after[token]) < TOL
            assert abs(c.logprobs.before[t] - before[token]) < TOL
            assert abs(c.logprobs.sampled[t] - amplified[token]) < TOL  # temperature 1, no filters


def test_prompts_of_different_lengths_prefilled_together_match_the_reference(pair):
    """One batched, left-padded prefill for all prompts, then multi-step decoding of the mixed batch."""
    amp, ref = pair
    prompts = ["hi", "hello world, how are you", "the quick brown fox jumps"]
    batches = amp.generate_many(prompts, alpha=1.0, n=2, max_new_tokens=6, temperature=1.0, top_p=1.0, seed=5,
                                logprobs=0)
    for prompt, completions in zip(prompts, batches):
        ids = _ids(amp, prompt)
        for c in completions:
            for t, token in enumerate(c.token_ids):
                amplified, after, _ = ref.next_token_logprobs(ids + c.token_ids[:t], 1.0)
                assert abs(c.logprobs.amplified[t] - amplified[token]) < TOL
                assert abs(c.logprobs.after[t] - after[token]) < TOL
    alone = [amp.generate(p, alpha=1.0, n=2, max_new_tokens=6, temperature=1.0, top_p=1.0, seed=5) for p in prompts]
    assert [[c.token_ids for c in b] for b in batches] == [[c.token_ids for c in b] for b in alone]


def test_greedy_equals_argmax_of_reference(pair):
    amp, ref = pair
    [c] = amp.generate("the quick", alpha=2.0, max_new_tokens=6, temperature=0.0)
    prompt = _ids(amp, "the quick")
    for t, token in enumerate(c.token_ids):
        amplified, _, _ = ref.next_token_logprobs(prompt + c.token_ids[:t], 2.0)
        assert token == int(amplified.argmax())


def test_never_samples_an_id_outside_the_shared_vocabulary(vocab_pair):
    after_dir, before_dir = vocab_pair
    amp = Amplifier(str(after_dir), str(before_dir), device="cpu", max_batch_size=32, max_seq_len=128)
    assert amp.tokenizers.report.after_vocab_size == amp.tokenizers.report.before_vocab_size + 3
    shared = amp.tokenizers.shared.size
    for c in amp.generate("hi", alpha=8.0, n=24, max_new_tokens=12, temperature=2.0, top_p=1.0, seed=3):
        assert max(c.token_ids) < shared


def _ids(amp, prompt):
    from diffamp_server.request import PromptInput

    return list(amp.tokenizers.encode(PromptInput(text=prompt)).after_ids)


def test_library_compare_is_each_model_alone(pair):
    amp, ref = pair
    both = amp.compare("hello", max_new_tokens=5, temperature=0.0)
    prompt = _ids(amp, "hello")
    for name, alpha in (("after", 0.0), ("before", -1.0)):
        tokens = both[name].token_ids
        for t, token in enumerate(tokens):
            amplified, _, _ = ref.next_token_logprobs(prompt + tokens[:t], alpha)
            assert token == int(amplified.argmax())


@pytest.mark.parametrize("engine", ["static", "eager"])
def test_a_gap_in_the_shared_vocabulary_is_never_sampled_and_never_makes_nan(gap_pair, engine):
    """The before tokenizer lacks one id in the middle of the range. Masked before amplifying, that id's logit
    was -inf - (-inf) = NaN, the row's softmax NaN, and sampling returned token 0 (greedy: the gap itself)."""
    import math

    amp = Amplifier(str(gap_pair[0]), str(gap_pair[1]), device="cpu", max_batch_size=32, max_seq_len=128,
                    engine=engine)
    (gap,) = [i for i in range(amp.tokenizers.shared.size) if i not in amp.tokenizers.shared.ids()]
    sampled = amp.generate("the quick", alpha=6.0, n=24, max_new_tokens=12, temperature=2.0, top_p=1.0, seed=3,
                           logprobs=5)
    greedy = amp.generate("the quick", alpha=6.0, max_new_tokens=12, temperature=0.0, logprobs=5)
    for c in sampled + greedy:
        assert gap not in c.token_ids and 0 not in c.token_ids[:1]
        lp = c.logprobs
        assert all(math.isfinite(x) for arr in (lp.amplified, lp.after, lp.before, lp.sampled) for x in arr)
        assert all(gap not in top for top in lp.top_ids)
