"""Output processing with real tokenizers: stop strings cut the text and the tokens at the same place."""

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers
from transformers import PreTrainedTokenizerFast

from diffamp_server.events import FINISH_LENGTH, FINISH_STOP_STRING
from diffamp_server.output import OutputProcessor

WORDS = ["▁hello", "▁world", "▁again", "▁"]


@pytest.fixture(scope="module")
def byte_fallback_tokenizer():
    """A SentencePiece-style tokenizer with byte fallback: characters outside the vocabulary, like "\\n", are
    <0xNN> tokens, whose text appears only once the next non-byte token closes the run."""
    vocab = {"<unk>": 0, "</s>": 1}
    vocab |= {f"<0x{b:02X}>": 2 + b for b in range(256)}
    vocab |= {w: 258 + i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>")


def _run(tokenizer, tokens, stop, chunk=1):
    processor = OutputProcessor(tokenizer, {tokenizer.eos_token_id})
    out = processor.new_sample(prompt_tokens=3, max_new_tokens=20, stop=stop, index=0, seed=0)
    events = [processor.advance(out, tokens[i:i + chunk], []) for i in range(0, len(tokens), chunk)]
    events = [e for e in events if e.token_ids or e.text or e.finish_reason]
    return out, events


@pytest.mark.parametrize("chunk", [1, 2, 8])
def test_a_stop_string_made_of_byte_tokens_ends_the_tokens_where_the_text_ends(byte_fallback_tokenizer, chunk):
    tok = byte_fallback_tokenizer
    hello, world, again = (tok.convert_tokens_to_ids(w) for w in WORDS[:3])
    newline = tok.convert_tokens_to_ids("<0x0A>")
    out, events = _run(tok, [hello, newline, world, again], stop=("\n",), chunk=chunk)
    assert out.finish_reason == FINISH_STOP_STRING
    assert out.text == "hello"
    assert out.token_ids == [hello, newline]  # not the token after the stop string
    sent = [t for e in events for t in e.token_ids]
    assert sent == [hello, newline] and events[-1].completion_tokens == 2


def test_a_stop_string_inside_a_word_keeps_the_token_that_completes_it(byte_fallback_tokenizer):
    tok = byte_fallback_tokenizer
    hello, world, again = (tok.convert_tokens_to_ids(w) for w in WORDS[:3])
    out, _ = _run(tok, [hello, world, again], stop=("wor",))
    assert out.text == "hello " and out.token_ids == [hello, world]


def test_without_a_stop_string_every_token_is_kept(byte_fallback_tokenizer):
    tok = byte_fallback_tokenizer
    ids = tok("hello\nworld")["input_ids"]
    processor = OutputProcessor(tok, {tok.eos_token_id})
    out = processor.new_sample(prompt_tokens=3, max_new_tokens=len(ids), stop=(), index=0, seed=0)
    event = processor.advance(out, ids, [])
    assert out.finish_reason == FINISH_LENGTH and out.token_ids == ids and event.text == " hello\nworld".lstrip()
