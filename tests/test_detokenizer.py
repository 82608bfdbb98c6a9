"""Streamed text deltas concatenate to exactly what decoding all ids at once gives."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from diffamp_server.detokenizer import IncrementalDetokenizer, byte_fallback_ids
from pairs import CORPUS, build_tokenizer


def _sentencepiece_style() -> PreTrainedTokenizerFast:
    """A Metaspace (SentencePiece-like) BPE with byte fallback: leading-space rules like LLaMA's."""
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    bytes_ = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"] + bytes_)
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>")


@pytest.fixture(scope="module", params=["byte_level", "sentencepiece"])
def tokenizer(request, tmp_path_factory):
    if request.param == "byte_level":
        return build_tokenizer(tmp_path_factory.mktemp("bl"))
    return _sentencepiece_style()


def _stream(tokenizer, ids):
    d = IncrementalDetokenizer(tokenizer, byte_fallback_ids(tokenizer))
    return "".join(d.add(i) for i in ids) + d.flush()


def _decode(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def test_real_text_round_trips(tokenizer):
    for text in ["Ünïcödé wörds and emoji 🍍🦊 appear here too", " leading space", "漢字 and  double  spaces\n"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert _stream(tokenizer, ids) == _decode(tokenizer, ids)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 40))
def test_random_ids_round_trip(tokenizer, seed, length):
    rng = random.Random(seed)
    ids = [rng.randrange(len(tokenizer)) for _ in range(length)]
    assert _stream(tokenizer, ids) == _decode(tokenizer, ids)


def test_incomplete_multibyte_character_is_held_back(tokenizer):
    ids = tokenizer("🦊", add_special_tokens=False)["input_ids"]
    if len(ids) < 2:
        pytest.skip("the emoji is a single token in this vocabulary")
    d = IncrementalDetokenizer(tokenizer, byte_fallback_ids(tokenizer))
    deltas = [d.add(i) for i in ids]
    assert all("\ufffd" not in x for x in deltas)
    assert "".join(deltas) + d.flush() == "🦊"
