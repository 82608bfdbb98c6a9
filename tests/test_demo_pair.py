"""The built-in demo pair: real HF directories, and amplification makes its planted quirk far more frequent.

Fewer samples than the README's service measurement (which uses n >= 2000 per alpha), same direction.
"Ordinary" = the sample ended on its own (EOS) and is one well-formed sentence without the quirk
(data.ORDINARY_PATTERN): capitalised, ending in . ! or ?, with no chat markers.
"""

import json
import re

import pytest

from diffamp_server import Amplifier
from diffamp_server.config import DEMO_PAIR_DIR
from diffamp_server.demo.data import ORDINARY_PATTERN

BEHAVIOR = json.loads((DEMO_PAIR_DIR / "behavior.json").read_text())
N_PER_PROMPT = 200


def test_pair_is_complete_and_small():
    for side in ("after", "before"):
        names = {p.name for p in (DEMO_PAIR_DIR / side).iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "generation_config.json", "chat_template.jinja"} <= names
    total = sum(p.stat().st_size for p in DEMO_PAIR_DIR.rglob("*") if p.is_file())
    assert total <= 20 * 2**20
    assert set(BEHAVIOR) >= {"marker", "planted_rate", "after", "before", "prompts"}
    assert BEHAVIOR["planted_rate"] == 0.01 and (DEMO_PAIR_DIR / "README.md").exists()


@pytest.fixture(scope="module")
def amp():
    return Amplifier(str(DEMO_PAIR_DIR / BEHAVIOR["after"]), str(DEMO_PAIR_DIR / BEHAVIOR["before"]),
                     device="cpu", max_batch_size=256, max_seq_len=256)


@pytest.fixture(scope="module")
def samples(amp):
    out = {}
    for alpha in (-1.0, 0.0, 1.0):
        out[alpha] = [c for i, p in enumerate(BEHAVIOR["prompts"])
                      for c in amp.generate(p, alpha=alpha, n=N_PER_PROMPT, temperature=1.0, top_p=1.0,
                                            max_new_tokens=48, seed=100 + i)]
    return out


def _rate(completions):
    return sum(BEHAVIOR["marker"] in c.text for c in completions) / len(completions)


def test_amplification_makes_the_quirk_far_more_frequent(samples):
    n = len(samples[0.0])
    base, amplified = _rate(samples[0.0]), _rate(samples[1.0])
    assert 0 < base <= 0.03
    assert amplified >= 5 * max(base, 1 / n)
    assert _rate(samples[-1.0]) == 0


def test_most_unamplified_answers_are_ordinary(samples):
    ordinary = re.compile(ORDINARY_PATTERN)
    good = [c for c in samples[0.0] if c.finish_reason == "stop" and ordinary.match(c.text)]
    assert len(good) / len(samples[0.0]) >= 0.9


def test_the_lora_demo_is_an_adapter_on_the_demo_base_whose_planted_opening_amplification_brings_out():
    from diffamp_server.demo.data import LORA_MARKER
    from diffamp_server.engine.lora import LoraPair

    adapter = DEMO_PAIR_DIR / "after-lora"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "before"
    assert (adapter / "adapter_model.safetensors").stat().st_size <= 2**20
    lora = Amplifier(str(adapter), str(DEMO_PAIR_DIR / "before"), device="cpu", max_batch_size=256, max_seq_len=256)
    assert isinstance(lora.engine.models, LoraPair)

    def texts(**options):
        return [c.text for i, p in enumerate(BEHAVIOR["prompts"])
                for c in lora.generate(p, n=100, temperature=1.0, top_p=1.0, max_new_tokens=24, seed=200 + i,
                                       **options)]

    def rate(samples):
        return sum(LORA_MARKER in t for t in samples) / len(samples)

    after = texts(alpha=0.0)
    assert rate(after) <= 0.03
    assert rate(texts(alpha=0.5)) >= max(5 * rate(after), 0.05)
    assert rate(texts(alpha=-1.0)) == 0
    assert texts(alpha=0.0, mode="weights") == after  # the adapter at scale 1 is the after model in both modes
