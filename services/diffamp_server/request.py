"""Requests as the gateway sees them after the edge: plain fields in, a validated SequenceRequest out.

Every rule a field must meet lives here, so the gRPC servicer and the library API enforce the same ones.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import InvalidArgument
from .plan import SamplingParams

ROLES = ("system", "user", "assistant")
DEFAULT_ALPHA = 1.0
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_MAX_NEW_TOKENS = 80


@dataclass(frozen=True)
class Limits:
    """The bounds requests are checked against (from ServerConfig and the loaded models)."""

    max_n: int
    max_logprobs: int
    max_stop_strings: int
    max_stop_string_chars: int
    alpha_bound: float
    max_seq_len: int
    shared_vocab_size: int
    max_prompt_chars: int = 1_000_000


@dataclass(frozen=True)
class GenerateInput:
    """A Generate (or Compare) request's fields, unvalidated. None means "unset": use the default."""

    prompt: str = ""
    system_prompt: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    prompt_token_ids: tuple[int, ...] = ()
    raw_prompt: bool = False
    alpha: float | None = None
    n: int = 0
    max_new_tokens: int = 0
    temperature: float | None = None
    top_p: float | None = None
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    first_sample_index: int = 0
    min_new_tokens: int = 0


@dataclass(frozen=True)
class SequenceRequest:
    """A validated request: one prompt and the samples drawn from it."""

    prompt_ids: list[int]
    samples: list[SamplingParams]
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    seed: int = 0
    logprobs: int | None = None
    labels: tuple[str, ...] = field(default=())


def check_prompt_source(inp: GenerateInput, limits: Limits) -> None:
    """Exactly one of prompt, messages, prompt_token_ids; each well-formed."""
    given = [name for name, v in (("prompt", inp.prompt), ("messages", inp.messages),
                                  ("prompt_token_ids", inp.prompt_token_ids)) if v]
    if not given:
        raise InvalidArgument("prompt", "empty: set one of prompt, messages or prompt_token_ids")
    if len(given) > 1:
        raise InvalidArgument(given[1], f"set only one of prompt, messages, prompt_token_ids (got {', '.join(given)})")
    total_chars = len(inp.prompt) + len(inp.system_prompt) + sum(len(c) for _, c in inp.messages)
    if total_chars > limits.max_prompt_chars:
        raise InvalidArgument("prompt", f"{total_chars} characters exceeds the limit of {limits.max_prompt_chars}")
    for i, (role, content) in enumerate(inp.messages):
        if role not in ROLES:
            raise InvalidArgument(f"messages[{i}].role", f"{role!r} is not one of {', '.join(ROLES)}")
        if not content:
            raise InvalidArgument(f"messages[{i}].content", "empty")
    for i, token in enumerate(inp.prompt_token_ids):
        if not 0 <= token < limits.shared_vocab_size:
            raise InvalidArgument(
                f"prompt_token_ids[{i}]",
                f"{token} is outside the vocabulary both models share, [0, {limits.shared_vocab_size})",
            )


def _finite(field_name: str, value: float) -> None:
    if not math.isfinite(value):
        raise InvalidArgument(field_name, f"{value} is not finite")


def resolve_sampling(inp: GenerateInput, limits: Limits) -> tuple[float, float, float, int, int]:
    """alpha, temperature, top_p, top_k, max_new_tokens with defaults applied, each checked."""
    alpha = DEFAULT_ALPHA if inp.alpha is None else inp.alpha
    _finite("alpha", alpha)
    if abs(alpha) > limits.alpha_bound:
        raise InvalidArgument("alpha", f"{alpha} is outside [-{limits.alpha_bound:g}, {limits.alpha_bound:g}]")
    temperature = DEFAULT_TEMPERATURE if inp.temperature is None else inp.temperature
    _finite("temperature", temperature)
    if temperature < 0:
        raise InvalidArgument("temperature", f"{temperature} is negative; use 0 for greedy")
    top_p = DEFAULT_TOP_P if inp.top_p is None else inp.top_p
    if not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise InvalidArgument("top_p", f"{top_p} is outside (0, 1]")
    if inp.top_k < 0:
        raise InvalidArgument("top_k", f"{inp.top_k} is negative; use 0 to turn top-k off")
    max_new = inp.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    if max_new < 1:
        raise InvalidArgument("max_new_tokens", f"{max_new} is below 1")
    if not 0 <= inp.min_new_tokens <= max_new:
        raise InvalidArgument("min_new_tokens", f"{inp.min_new_tokens} is outside [0, max_new_tokens = {max_new}]")
    return alpha, temperature, top_p, inp.top_k, max_new


def check_options(inp: GenerateInput, limits: Limits) -> int:
    """n (with its default), stop strings and logprobs."""
    n = inp.n or 1
    if n < 1 or n > limits.max_n:
        raise InvalidArgument("n", f"{n} is outside [1, {limits.max_n}]")
    if len(inp.stop) > limits.max_stop_strings:
        raise InvalidArgument("stop", f"{len(inp.stop)} stop strings exceeds the limit of {limits.max_stop_strings}")
    for i, s in enumerate(inp.stop):
        if not s:
            raise InvalidArgument(f"stop[{i}]", "empty stop string")
        if len(s) > limits.max_stop_string_chars:
            raise InvalidArgument(f"stop[{i}]", f"{len(s)} characters exceeds the limit of {limits.max_stop_string_chars}")
    if inp.logprobs is not None and not 0 <= inp.logprobs <= limits.max_logprobs:
        raise InvalidArgument("logprobs", f"{inp.logprobs} is outside [0, {limits.max_logprobs}]")
    return n


def check_length(prompt_len: int, max_new_tokens: int, limits: Limits) -> None:
    if prompt_len == 0:
        raise InvalidArgument("prompt", "tokenizes to no tokens")
    if prompt_len + max_new_tokens > limits.max_seq_len:
        raise InvalidArgument(
            "max_new_tokens",
            f"prompt of {prompt_len} tokens + max_new_tokens {max_new_tokens} = {prompt_len + max_new_tokens} "
            f"exceeds the context limit of {limits.max_seq_len} tokens",
        )


def new_seed() -> int:
    return secrets.randbits(63)


def build_request(inp: GenerateInput, tokenize: Callable[[GenerateInput], list[int]], limits: Limits) -> SequenceRequest:
    """Validate `inp` into an amplified request of n samples; `tokenize` turns its prompt into ids."""
    check_prompt_source(inp, limits)
    alpha, temperature, top_p, top_k, max_new = resolve_sampling(inp, limits)
    n = check_options(inp, limits)
    prompt_ids = tokenize(inp)
    check_length(len(prompt_ids), max_new, limits)
    seed = new_seed() if inp.seed is None else inp.seed
    if not 0 <= inp.first_sample_index < 2**32:
        raise InvalidArgument("first_sample_index", f"{inp.first_sample_index} is outside [0, 2^32)")
    first = inp.first_sample_index
    samples = [SamplingParams(alpha, temperature, top_p, top_k, seed, i, inp.logprobs, inp.min_new_tokens)
               for i in range(first, first + n)]
    return SequenceRequest(prompt_ids, samples, max_new, inp.stop, seed, inp.logprobs)


def build_compare_request(inp: GenerateInput, tokenize: Callable[[GenerateInput], list[int]],
                          limits: Limits) -> SequenceRequest:
    """Two samples from one prefill: the after model alone (alpha 0) and the before model alone (alpha -1)."""
    check_prompt_source(inp, limits)
    _, temperature, top_p, top_k, max_new = resolve_sampling(inp, limits)
    check_options(inp, limits)
    prompt_ids = tokenize(inp)
    check_length(len(prompt_ids), max_new, limits)
    seed = new_seed() if inp.seed is None else inp.seed
    samples = [SamplingParams(a, temperature, top_p, top_k, seed, i, None, inp.min_new_tokens)
               for i, a in enumerate((0.0, -1.0))]
    return SequenceRequest(prompt_ids, samples, max_new, inp.stop, seed, None, labels=("after", "before"))
