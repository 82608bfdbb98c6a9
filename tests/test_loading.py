"""Loading pairs from local directories the way hub pairs load, and refusing incompatible tokenizers."""

import pytest
import torch

from diffamp_server.loading import ModelSource, load_tokenizer
from diffamp_server.tokenizer_pair import IncompatibleTokenizers, TokenizerPair
from pairs import build_tokenizer


def test_tokenizer_class_override(llama_pair):
    import transformers

    tok = load_tokenizer(ModelSource(str(llama_pair[0]), tokenizer_class="GPT2Tokenizer"))
    assert type(tok) is transformers.GPT2Tokenizer
    with pytest.raises(ValueError, match="NoSuchTokenizer"):
        load_tokenizer(ModelSource(str(llama_pair[0]), tokenizer_class="NoSuchTokenizer"))


def test_trailing_added_tokens_are_compatible(vocab_pair):
    pair = TokenizerPair.load(ModelSource(str(vocab_pair[0])), ModelSource(str(vocab_pair[1])), 10**6)
    r = pair.report
    assert r.compatible and r.after_vocab_size == r.before_vocab_size + 3 == r.shared_vocab_size + 3
    assert pair.eos_ids == {pair.after.convert_tokens_to_ids("<|end|>"), pair.after.eos_token_id}


def test_disagreeing_tokenizers_are_refused_with_the_first_mismatches(llama_pair, tmp_path):
    from pairs import CORPUS
    import pairs

    other = tmp_path / "other"
    original = list(CORPUS)
    try:
        pairs.CORPUS[:] = ["completely different words: zebra xylophone quartz"] * 50
        build_tokenizer(other)
    finally:
        pairs.CORPUS[:] = original
    with pytest.raises(IncompatibleTokenizers, match=r"disagree on .* shared ids \(id \d+: after '.*' vs before"):
        TokenizerPair.load(ModelSource(str(llama_pair[0])), ModelSource(str(other)), 10**6)


def test_trust_remote_code_is_logged_when_on(llama_pair, caplog):
    load_tokenizer(ModelSource(str(llama_pair[0]), trust_remote_code=True))
    assert "trust_remote_code is ON" in caplog.text
    caplog.clear()
    load_tokenizer(ModelSource(str(llama_pair[0])))
    assert "trust_remote_code" not in caplog.text


@pytest.mark.parametrize("pair", ["llama_pair", "gpt2_pair"])
def test_slot_bytes_is_what_the_cache_allocates(pair, request):
    from transformers import AutoConfig

    from diffamp_server.engine.kv_store import SlotKV, slot_bytes

    after, _ = request.getfixturevalue(pair)
    config = AutoConfig.from_pretrained(after)
    assert SlotKV(config, 3, 64, torch.float32, "cpu").nbytes() == 3 * slot_bytes(config, 64, torch.float32)


def test_the_kv_budget_caps_the_slots_and_must_hold_one():
    from diffamp_server.engine.kv_store import slots_within_budget

    assert slots_within_budget(0, 1000, 64) == 64
    assert slots_within_budget(10_500, 1000, 64) == 10
    assert slots_within_budget(10**9, 1000, 64) == 64
    with pytest.raises(ValueError, match="holds no slot"):
        slots_within_budget(999, 1000, 64)
