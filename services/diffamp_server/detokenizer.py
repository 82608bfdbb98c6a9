"""Incremental detokenization: text deltas whose concatenation equals decoding all ids at once."""

from __future__ import annotations

import re

_BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


def byte_fallback_ids(tokenizer) -> frozenset[int]:
    """Ids of SentencePiece byte-fallback tokens (<0xNN>). A run of them decodes as one group, so text that
    ends in one is not stable yet: the next byte can turn an earlier character into replacement characters."""
    return frozenset(i for t, i in tokenizer.get_vocab().items() if _BYTE_TOKEN.match(t))


class IncrementalDetokenizer:
    """Emits text only once it is stable: never half of a multi-byte character or an open byte-token run.

    Decodes a short window (prefix_offset..) rather than the whole sequence, so each token costs O(1);
    the window keeps enough left context for SentencePiece and byte-level BPE spacing.
    """

    def __init__(self, tokenizer, byte_ids: frozenset[int] = frozenset()):
        self.tokenizer = tokenizer
        self.byte_ids = byte_ids
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        if token_id in self.byte_ids:
            return ""
        return self._advance(final=False)

    def flush(self) -> str:
        """Whatever is still held back (e.g. an incomplete character at the end)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        prefix_text = self.decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self.decode(self.ids[self.prefix_offset :])
        stable = final or (len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"))
        if not (stable and new_text.startswith(prefix_text)):
            return ""
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        return new_text[len(prefix_text) :]
