"""OpenAI requests in, the domain's GenerateInput out; the gateway's SampleEvents in, OpenAI objects out.

Field by field: messages -> the chat template (developer is system); a completions prompt string is raw text
(no chat template), a list of ints is token ids; max_completion_tokens / max_tokens -> max_new_tokens;
min_tokens -> min_new_tokens; top_k, temperature, top_p, stop, n, seed as they are; alpha from the body or
the model name; chat's logprobs + top_logprobs and completions' integer logprobs -> logprobs K. Choice i is
diffamp sample i, so a seed gives the same tokens as gRPC's Generate with that seed.

Two values mean "unset" to the domain but not to OpenAI: n = 0 and max_tokens = 0. They are refused here,
with the domain's wording; every other value goes through as sent and request.py judges it.

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

from ..errors import InvalidArgument
from ..events import FINISH_LENGTH, FINISH_STOP, FINISH_STOP_STRING, SampleEvent
from ..plan import TokenLogprobs
from ..request import GenerateInput, PromptInput, SamplingInput
from .errors import ParamNames
from .schemas import ChatRequest, Common, CompletionRequest

FINISH_REASONS = {FINISH_STOP: "stop", FINISH_STOP_STRING: "stop", FINISH_LENGTH: "length"}
ROLE_ALIASES = {"developer": "system"}

TokenText = Callable[[int], str]
TokenBytes = Callable[[int], bytes]


# -- requests ------------------------------------------------------------------------------------------------
def _alpha(req: Common, name_alpha: float | None) -> float | None:
    if name_alpha is not None and req.alpha is not None and req.alpha != name_alpha:
        raise InvalidArgument("alpha", f"{req.alpha} conflicts with the model name's alpha {name_alpha:g}; "
                                       f"set one of them")
    return name_alpha if req.alpha is None else req.alpha


def _sampling(req: Common, max_tokens: int | None) -> SamplingInput:
    if max_tokens == 0:
        raise InvalidArgument("sampling.max_new_tokens", "0 is below 1")
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    return SamplingInput(temperature=req.temperature, top_p=req.top_p, top_k=req.top_k or 0,
                         max_new_tokens=max_tokens or 0, min_new_tokens=req.min_tokens or 0, stop=stop)


def _n(req: Common) -> int:
    if req.n == 0:
        raise InvalidArgument("n", "0 is below 1")
    return req.n or 0


def _content(i: int, content) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise InvalidArgument(f"prompt.conversation.messages[{i}].content",
                                  f"only text content parts are supported (got {part.type!r})")
        texts.append(part.text)
    return "\n".join(texts)


def param_names(req: Common, name_alpha: float | None) -> ParamNames:
    """How this request's fields are named in errors."""
    chat = isinstance(req, ChatRequest)
    max_field = "max_completion_tokens" if chat and req.max_completion_tokens is not None else "max_tokens"
    return ParamNames(chat=chat, max_tokens_field=max_field,
                      alpha_in_model=req.alpha is None and name_alpha is not None)


def chat_input(req: ChatRequest, name_alpha: float | None) -> GenerateInput:
    if req.top_logprobs and not req.logprobs:
        raise InvalidArgument("logprobs", "top_logprobs needs logprobs: true")
    messages = tuple((ROLE_ALIASES.get(m.role, m.role), _content(i, m.content)) for i, m in enumerate(req.messages))
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    return GenerateInput(prompt=PromptInput(messages=messages), sampling=_sampling(req, max_tokens),
                         alpha=_alpha(req, name_alpha), n=_n(req), seed=req.seed,
                         logprobs=(req.top_logprobs or 0) if req.logprobs else None)


def completion_input(req: CompletionRequest, name_alpha: float | None) -> GenerateInput:
    prompt = req.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        if len(prompt) > 1:
            raise InvalidArgument("prompt", f"a batch of {len(prompt)} prompts; send one prompt per request")
        prompt = prompt[0]
    source = PromptInput(text=prompt, raw=True) if isinstance(prompt, str) else PromptInput(token_ids=tuple(prompt))
    return GenerateInput(prompt=source, sampling=_sampling(req, req.max_tokens), alpha=_alpha(req, name_alpha),
                         n=_n(req), seed=req.seed, logprobs=req.logprobs)


# -- responses -----------------------------------------------------------------------------------------------
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
