"""The importance-weighted estimate of the after model's own quirk rate, validated on the demo pair.

Samples at alpha = 0.25 (where the quirk is a few percent of samples, so hits are common but the weights
stay tame) estimate the alpha-0 rate; a direct alpha-0 measurement with 10x the samples must fall inside
the estimate's interval, and the estimate's interval must be narrower than a direct measurement's with
the same number of samples.
"""

import json

import pytest

from diffamp.common.stats import importance_estimate, wilson_interval
from diffamp_server import Amplifier
from diffamp_server.config import DEMO_PAIR_DIR

BEHAVIOR = json.loads((DEMO_PAIR_DIR / "behavior.json").read_text())
PER_PROMPT = 200
ALPHA = 0.25


@pytest.fixture(scope="module")
def amp():
    return Amplifier(str(DEMO_PAIR_DIR / "after"), str(DEMO_PAIR_DIR / "before"), device="cpu",
                     max_batch_size=256, max_seq_len=256)


def _samples(amp, alpha, per_prompt, seed, logprobs):
    out = []
    for i, prompt in enumerate(BEHAVIOR["prompts"]):
        out += amp.generate(prompt, alpha=alpha, n=per_prompt, temperature=1.0, top_p=1.0, max_new_tokens=48,
                            seed=seed + i, logprobs=logprobs)
    return out


def test_estimate_from_amplified_samples_covers_the_direct_rate(amp):
    amplified = _samples(amp, ALPHA, PER_PROMPT, 500, 0)
    hits = [BEHAVIOR["marker"] in c.text for c in amplified]
    est = importance_estimate([float(c.logprobs.after.sum()) for c in amplified],
                              [float(c.logprobs.sampled.sum()) for c in amplified], hits)
    direct = _samples(amp, 0.0, 10 * PER_PROMPT, 900, None)
    direct_rate = sum(BEHAVIOR["marker"] in c.text for c in direct) / len(direct)
    assert est.low <= direct_rate <= est.high, (est, direct_rate)
    low, high = wilson_interval(round(direct_rate * len(amplified)), len(amplified))
    assert est.width < high - low
    assert sum(hits) > 3 * direct_rate * len(amplified)  # alpha 0.25 really does amplify
    assert est.ess > 0.5 * len(amplified)


def test_sampled_logprob_is_the_after_logprob_at_alpha_zero(amp):
    [c] = amp.generate(BEHAVIOR["prompts"][0], alpha=0.0, temperature=1.0, top_p=1.0, seed=3, logprobs=0)
    assert abs(c.logprobs.sampled.sum() - c.logprobs.after.sum()) < 1e-4
