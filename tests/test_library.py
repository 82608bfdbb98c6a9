"""The library API (Amplifier) accepts what the service accepts, with the service's limits and errors."""

import pytest

from diffamp.common.defaults import LIMITS
from diffamp_server import Amplifier
from diffamp_server.errors import InvalidArgument


@pytest.fixture(scope="module")
def amp(llama_pair):
    return Amplifier(str(llama_pair[0]), str(llama_pair[1]), device="cpu", max_batch_size=8, max_seq_len=128)


def test_compare_takes_every_prompt_form_generate_takes(amp):
    ids = list(amp.tokenizers.encode(__import__("diffamp_server.request", fromlist=["x"]).PromptInput(
        text="hello")).after_ids)
    by_text = amp.compare("hello", max_new_tokens=4, temperature=0.0)
    by_messages = amp.compare(messages=[{"role": "user", "content": "hello"}], max_new_tokens=4, temperature=0.0)
    by_ids = amp.compare(prompt_token_ids=ids, max_new_tokens=4, temperature=0.0)
    for other in (by_messages, by_ids):
        assert other["after"].token_ids == by_text["after"].token_ids
        assert other["before"].token_ids == by_text["before"].token_ids
    [after_alone] = amp.generate("hello", alpha=0.0, max_new_tokens=4, temperature=0.0)
    assert after_alone.token_ids == by_text["after"].token_ids


@pytest.mark.parametrize("options, field", [
    ({"seed": -1}, "seed"),
    ({"seed": 2**64}, "seed"),
    ({"logprobs": LIMITS.max_logprobs + 1}, "logprobs"),
    ({"stop": ["x"] * (LIMITS.max_stop_strings + 1)}, "sampling.stop"),
    ({"stop": ["x" * (LIMITS.max_stop_string_chars + 1)]}, "sampling.stop[0]"),
    ({"alpha": LIMITS.alpha_bound * 2}, "alpha"),
    ({"temperature": 1e-40, "n": LIMITS.max_n + 1}, "n"),
])
def test_the_library_refuses_what_the_server_refuses(amp, options, field):
    with pytest.raises(InvalidArgument) as err:
        amp.generate("hello", max_new_tokens=2, **options)
    assert err.value.field == field
    assert amp.limits.request == LIMITS


def test_a_tiny_temperature_is_greedy_and_finite(amp):
    [tiny] = amp.generate("hello", max_new_tokens=6, temperature=1e-40, seed=1, logprobs=2)
    [greedy] = amp.generate("hello", max_new_tokens=6, temperature=0.0, logprobs=2)
    assert tiny.token_ids == greedy.token_ids
    assert all(abs(x) < 1e-6 for x in tiny.logprobs.sampled)
