"""The gateway's SampleEvents in, OpenAI objects out: whole responses, or chunks while streaming.

Extra body field `return_token_ids: true` (as vLLM names it) adds each choice's sampled `token_ids` (per chunk
while streaming), end-of-sequence token included.

Logprobs: `logprob` and `top_logprobs` are the amplified distribution's (before temperature and filters),
as gRPC's TokenLogprobs.amplified; each token also carries `diffamp` = {after, before, sampled,
kl_after_before}; a log-probability of -inf is sent as -9999. The end-of-sequence token a sample stopped on
is listed too (its text is not in the content), so a completion's log-probability sums over every sampled
token.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..events import FINISH_LENGTH, FINISH_STOP, FINISH_STOP_STRING, SampleEvent
from ..plan import TokenLogprobs

FINISH_REASONS = {FINISH_STOP: "stop", FINISH_STOP_STRING: "stop", FINISH_LENGTH: "length"}

TokenText = Callable[[int], str]
TokenBytes = Callable[[int], bytes]
IMPOSSIBLE = -9999.0
"""What a log-probability of -inf is sent as (as vLLM does): JSON has no infinities."""


def _lp(value: float) -> float | None:
    if math.isfinite(value):
        return value
    return IMPOSSIBLE if value < 0 else None


def _extras(lp: TokenLogprobs) -> dict:
    return {"after": _lp(lp.after), "before": _lp(lp.before), "sampled": _lp(lp.sampled),
            "kl_after_before": _lp(lp.kl_after_before)}


@dataclass
class Choice:
    """One sample as it grows, for a whole (non-streamed) response."""

    text: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list = field(default_factory=list)
    finish_reason: str | None = None


class Output:
    """What one request's events become: chunks while streaming, or one object at the end."""

    object_whole: str
    object_chunk: str
    id_prefix: str

    def __init__(self, *, model: str, token_text: TokenText, token_bytes: TokenBytes, logprobs: bool,
                 token_ids: bool = False):
        self.id = self.id_prefix + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model
        self.token_text = token_text
        self.token_bytes = token_bytes
        self.with_logprobs = logprobs
        self.with_token_ids = token_ids
        self.choices: dict[int, Choice] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.seed: int | None = None

    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def _count(self, event: SampleEvent) -> None:
        if event.finish_reason:
            self.prompt_tokens = event.prompt_tokens
            self.completion_tokens += event.completion_tokens
            self.seed = event.seed

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def add(self, event: SampleEvent) -> None:
        """Keep an event for the whole response."""
        self._count(event)
        choice = self.choices.setdefault(event.index, Choice())
        choice.text.append(event.text)
        choice.token_ids += event.token_ids
        if self.with_logprobs:
            choice.logprobs.append(self._logprobs(event))
        if event.finish_reason:
            choice.finish_reason = FINISH_REASONS[event.finish_reason]

    def whole(self) -> dict:
        out = self._head(self.object_whole)
        out["choices"] = [self._with_ids(self._whole_choice(i, c), c.token_ids)
                          for i, c in sorted(self.choices.items())]
        out["usage"] = self.usage()
        out["system_fingerprint"] = None
        out["seed"] = self.seed
        return out

    def chunk(self, event: SampleEvent) -> dict | None:
        """The chunk for one event; None when it carries nothing a client would see."""
        self._count(event)
        if not (event.text or event.finish_reason or ((self.with_logprobs or self.with_token_ids) and event.token_ids)):
            return None
        out = self._head(self.object_chunk)
        out["choices"] = [self._with_ids(self._chunk_choice(event), event.token_ids)]
        return out

    def _with_ids(self, choice: dict, token_ids: list[int]) -> dict:
        if self.with_token_ids:
            choice["token_ids"] = list(token_ids)
        return choice

    def usage_chunk(self) -> dict:
        out = self._head(self.object_chunk)
        out["choices"] = []
        out["usage"] = self.usage()
        out["seed"] = self.seed
        return out

    def _logprobs(self, event: SampleEvent):
        raise NotImplementedError

    def _whole_choice(self, index: int, choice: Choice) -> dict:
        raise NotImplementedError

    def _chunk_choice(self, event: SampleEvent) -> dict:
        raise NotImplementedError


class ChatOutput(Output):
    object_whole, object_chunk, id_prefix = "chat.completion", "chat.completion.chunk", "chatcmpl-"

    def opening_chunks(self, n: int) -> list[dict]:
        """The first chunk of each choice names the role, as OpenAI's do."""
        chunks = []
        for i in range(n):
            out = self._head(self.object_chunk)
            out["choices"] = [{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                               "finish_reason": None}]
            chunks.append(out)
        return chunks

    def _token(self, token_id: int, lp: TokenLogprobs) -> dict:
        top = [{"token": self.token_text(i), "logprob": _lp(v), "bytes": list(self.token_bytes(i))}
               for i, v in zip(lp.top_ids, lp.top_logprobs)]
        return {"token": self.token_text(token_id), "logprob": _lp(lp.amplified),
                "bytes": list(self.token_bytes(token_id)),
                "top_logprobs": top, "diffamp": _extras(lp)}

    def _logprobs(self, event: SampleEvent) -> list[dict]:
        return [self._token(t, lp) for t, lp in zip(event.token_ids, event.logprobs)]

    def _whole_choice(self, index: int, choice: Choice) -> dict:
        logprobs = {"content": [t for part in choice.logprobs for t in part]} if self.with_logprobs else None
        return {"index": index, "message": {"role": "assistant", "content": "".join(choice.text)},
                "logprobs": logprobs, "finish_reason": choice.finish_reason}

    def _chunk_choice(self, event: SampleEvent) -> dict:
        delta = {"content": event.text} if event.text else {}
        return {"index": event.index, "delta": delta,
                "logprobs": {"content": self._logprobs(event)} if self.with_logprobs else None,
                "finish_reason": FINISH_REASONS.get(event.finish_reason)}


class CompletionOutput(Output):
    object_whole, object_chunk, id_prefix = "text_completion", "text_completion", "cmpl-"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.offsets: dict[int, int] = {}

    def _logprobs(self, event: SampleEvent) -> dict:
        tokens, offsets = [], []
        offset = self.offsets.get(event.index, 0)
        for t in event.token_ids:
            tokens.append(self.token_text(t))
            offsets.append(offset)
            offset += len(tokens[-1])
        self.offsets[event.index] = offset
        lps = event.logprobs
        return {"tokens": tokens, "token_logprobs": [_lp(lp.amplified) for lp in lps],
                "top_logprobs": [{self.token_text(i): _lp(v) for i, v in zip(lp.top_ids, lp.top_logprobs)}
                                 for lp in lps],
                "text_offset": offsets, "diffamp": [_extras(lp) for lp in lps]}

    def _whole_choice(self, index: int, choice: Choice) -> dict:
        logprobs = None
        if self.with_logprobs:
            logprobs = {key: [v for part in choice.logprobs for v in part[key]] for key in
                        ("tokens", "token_logprobs", "top_logprobs", "text_offset", "diffamp")}
        return {"index": index, "text": "".join(choice.text), "logprobs": logprobs,
                "finish_reason": choice.finish_reason}

    def _chunk_choice(self, event: SampleEvent) -> dict:
        return {"index": event.index, "text": event.text,
                "logprobs": self._logprobs(event) if self.with_logprobs else None,
                "finish_reason": FINISH_REASONS.get(event.finish_reason)}
