"""A token's own bytes, for OpenAI's `bytes` field: a token that ends mid-character (byte-level BPE, SentencePiece
byte fallback) decodes alone to U+FFFD, so its bytes come from its vocabulary piece instead. Concatenated,
the bytes of a completion's tokens are its UTF-8 text."""

from __future__ import annotations

import re
from collections.abc import Callable

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
REPLACEMENT = "\ufffd"


def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: the printable character that stands for each byte -> the byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


BYTE_LEVEL = _byte_level_decoder()


def token_bytes_fn(tokenizer, token_text: Callable[[int], str]) -> Callable[[int], bytes]:
    def token_bytes(token_id: int) -> bytes:
        text = token_text(token_id)
        if REPLACEMENT not in text:
            return text.encode()
        piece = tokenizer.convert_ids_to_tokens(token_id) or ""
        if match := _BYTE_PIECE.match(piece):
            return bytes([int(match.group(1), 16)])
        if piece and all(c in BYTE_LEVEL for c in piece):
            return bytes(BYTE_LEVEL[c] for c in piece)
        return text.encode()
    return token_bytes
