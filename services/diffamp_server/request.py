"""Generate and Compare requests as the gateway sees them after the edge: plain fields in, a validated
SequenceRequest out.

The rules on prompts, sampling options, n, seeds and logprobs live here and are shared by the gRPC servicer,
the library API and the sweep; the sweep's own rules (prompt ids, alphas, detectors, totals) are in sweep.py.
Validation happens in two steps so that nothing expensive runs before the cheap checks pass:
`validate_generate` checks every field without tokenizing (prompt size is bounded by the context first), then
`to_request` takes the tokenized prompt and checks its length.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field

from diffamp.common.defaults import GENERATE, MAX_SAMPLE_INDEX, RequestLimits, SamplingDefaults

from .errors import InvalidArgument
from .plan import SamplingParams

ROLES = ("system", "user", "assistant")
MODES = ("logits", "weights")
MAX_SEED = 2**64


@dataclass(frozen=True, kw_only=True)
class PromptInput:
    """Exactly one of text, messages or token_ids. system_prompt and raw apply to text."""

    text: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    token_ids: tuple[int, ...] = ()
    system_prompt: str = ""
    raw: bool = False
    field_prefix: str = "prompt"


@dataclass(frozen=True, kw_only=True)
class SamplingInput:
    """Sampling options as sent; None (and 0 for the integers) means "the default"."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int = 0
    max_new_tokens: int = 0
    min_new_tokens: int = 0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class GenerateInput:
    prompt: PromptInput
    sampling: SamplingInput = field(default_factory=SamplingInput)
    alpha: float | None = None
    n: int = 0
    seed: int | None = None
    logprobs: int | None = None
    first_sample_index: int = 0
    mode: str = "logits"
    lora_layers: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Limits:
    """The bounds requests are checked against: the configured request limits and the loaded models."""

    request: RequestLimits
    max_seq_len: int
    max_token_chars: int
    """The longest token in the after vocabulary, in characters: a prompt of c characters has at least
    c / max_token_chars tokens, which bounds the prompt before it is tokenized."""
    lora_layers: int | None = None
    """Decoder layers, when the pair is a LoRA adapter on its base (weights mode is then available)."""


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """Sampling options with defaults applied, every one checked."""

    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    min_new_tokens: int
    stop: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class EncodedPrompt:
    """The prompt as each model sees it. before_ids is None when the before model sees the same ids."""

    after_ids: tuple[int, ...]
    before_ids: tuple[int, ...] | None = None

    @property
    def longest(self) -> int:
        return max(len(self.after_ids), len(self.before_ids or ()))


@dataclass(frozen=True, kw_only=True)
class GenerateSpec:
    """A validated Generate or Compare request, its prompt not yet tokenized."""

    sampling: Sampling
    alphas: tuple[float, ...]
    """One alpha per sample (Compare: 0 then -1; Generate: n times the same)."""
    first_index: int
    seed: int
    logprobs: int | None
    labels: tuple[str, ...] = ()
    mode: str = "logits"
    lora_layers: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SequenceRequest:
    """A validated request: one prompt and the samples drawn from it."""

    prompt: EncodedPrompt
    samples: tuple[SamplingParams, ...]
    max_new_tokens: int
    stop: tuple[str, ...]
    seed: int
    logprobs: int | None = None
    labels: tuple[str, ...] = ()


def check_prompt(prompt: PromptInput, limits: Limits) -> None:
    """Exactly one source, each well-formed, and not obviously longer than the context: all before tokenizing."""
    p = prompt.field_prefix
    sources = [(name, value) for name, value in (("text", prompt.text), ("conversation", prompt.messages),
                                                 ("token_ids", prompt.token_ids)) if value]
    if not sources:
        raise InvalidArgument(p, "empty: set one of text, conversation or token_ids")
    if len(sources) > 1:
        raise InvalidArgument(f"{p}.{sources[1][0]}", f"set only one of text, conversation, token_ids "
                                                      f"(got {', '.join(n for n, _ in sources)})")
    for i, (role, content) in enumerate(prompt.messages):
        if role not in ROLES:
            raise InvalidArgument(f"{p}.conversation.messages[{i}].role", f"{role!r} is not one of {', '.join(ROLES)}")
        if not content:
            raise InvalidArgument(f"{p}.conversation.messages[{i}].content", "empty")
    chars = len(prompt.text) + len(prompt.system_prompt) + sum(len(c) for _, c in prompt.messages)
    if chars > limits.request.max_prompt_chars:
        raise InvalidArgument(p, f"{chars} characters exceeds the limit of {limits.request.max_prompt_chars}")
    fewest_tokens = max(math.ceil(chars / max(limits.max_token_chars, 1)), len(prompt.messages),
                        len(prompt.token_ids))
    if fewest_tokens > limits.max_seq_len:
        raise InvalidArgument(p, f"at least {fewest_tokens} tokens ({chars} characters, {len(prompt.messages)} "
                                 f"messages, {len(prompt.token_ids)} ids) cannot fit the context limit of "
                                 f"{limits.max_seq_len} tokens")


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise InvalidArgument(name, f"{value} is not finite")


def check_alpha(alpha: float, limits: Limits, name: str = "alpha") -> float:
    _finite(name, alpha)
    bound = limits.request.alpha_bound
    if abs(alpha) > bound:
        raise InvalidArgument(name, f"{alpha} is outside [-{bound:g}, {bound:g}]")
    return alpha


def resolve_sampling(s: SamplingInput, defaults: SamplingDefaults, limits: Limits,
                     prefix: str = "sampling") -> Sampling:
    """Defaults applied, each option checked."""
    temperature = defaults.temperature if s.temperature is None else s.temperature
    _finite(f"{prefix}.temperature", temperature)
    if temperature < 0:
        raise InvalidArgument(f"{prefix}.temperature", f"{temperature} is negative; use 0 for greedy")
    top_p = defaults.top_p if s.top_p is None else s.top_p
    if not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise InvalidArgument(f"{prefix}.top_p", f"{top_p} is outside (0, 1]")
    if s.top_k < 0:
        raise InvalidArgument(f"{prefix}.top_k", f"{s.top_k} is negative; use 0 to turn top-k off")
    max_new = s.max_new_tokens or defaults.max_new_tokens
    if max_new < 1:
        raise InvalidArgument(f"{prefix}.max_new_tokens", f"{max_new} is below 1")
    if max_new >= limits.max_seq_len:
        raise InvalidArgument(f"{prefix}.max_new_tokens",
                              f"{max_new} leaves no room for a prompt in the context limit of {limits.max_seq_len}")
    if not 0 <= s.min_new_tokens <= max_new:
        raise InvalidArgument(f"{prefix}.min_new_tokens",
                              f"{s.min_new_tokens} is outside [0, max_new_tokens = {max_new}]")
    if len(s.stop) > limits.request.max_stop_strings:
        raise InvalidArgument(f"{prefix}.stop", f"{len(s.stop)} stop strings exceeds the limit of "
                                                f"{limits.request.max_stop_strings}")
    for i, stop in enumerate(s.stop):
        if not stop:
            raise InvalidArgument(f"{prefix}.stop[{i}]", "empty stop string")
        if len(stop) > limits.request.max_stop_string_chars:
            raise InvalidArgument(f"{prefix}.stop[{i}]", f"{len(stop)} characters exceeds the limit of "
                                                         f"{limits.request.max_stop_string_chars}")
    return Sampling(temperature=temperature, top_p=top_p, top_k=s.top_k, max_new_tokens=max_new,
                    min_new_tokens=s.min_new_tokens, stop=tuple(s.stop))


def check_mode(mode: str, lora_layers: tuple[int, ...], limits: Limits,
               prefix: str = "") -> tuple[str, tuple[int, ...]]:
    """Weights mode needs a LoRA pair; lora_layers go with weights mode only, each a distinct decoder layer."""
    if mode not in MODES:
        raise InvalidArgument(f"{prefix}mode", f"{mode!r} is not one of {', '.join(MODES)}")
    if mode == "weights" and limits.lora_layers is None:
        raise InvalidArgument(f"{prefix}mode", "weights mode needs a LoRA pair: serve the after model as an adapter on "
                                               "the before model (--after-adapter)")
    if lora_layers and mode != "weights":
        raise InvalidArgument("lora_layers", "only weights mode scales layers")
    for i, layer in enumerate(lora_layers):
        if not 0 <= layer < (limits.lora_layers or 0):
            raise InvalidArgument(f"lora_layers[{i}]", f"{layer} is not a decoder layer, [0, {limits.lora_layers})")
    if len(set(lora_layers)) != len(lora_layers):
        raise InvalidArgument("lora_layers", "a layer appears twice")
    return mode, tuple(lora_layers)


def check_seed(seed: int | None) -> int:
    """The request's seed, or a fresh one."""
    if seed is None:
        return secrets.randbits(63)
    if not 0 <= seed < MAX_SEED:
        raise InvalidArgument("seed", f"{seed} is outside [0, 2^64)")
    return seed


def validate_generate(inp: GenerateInput, limits: Limits) -> GenerateSpec:
    """Every field of a Generate request except the prompt's length in tokens."""
    check_prompt(inp.prompt, limits)
    sampling = resolve_sampling(inp.sampling, GENERATE, limits)
    alpha = check_alpha(GENERATE.alpha if inp.alpha is None else inp.alpha, limits)
    n = inp.n or 1
    if not 1 <= n <= limits.request.max_n:
        raise InvalidArgument("n", f"{n} is outside [1, {limits.request.max_n}]")
    if inp.logprobs is not None and not 0 <= inp.logprobs <= limits.request.max_logprobs:
        raise InvalidArgument("logprobs", f"{inp.logprobs} is outside [0, {limits.request.max_logprobs}]")
    if not 0 <= inp.first_sample_index or inp.first_sample_index + n > MAX_SAMPLE_INDEX:
        raise InvalidArgument("first_sample_index", f"first_sample_index {inp.first_sample_index} + n {n} is outside "
                                                    f"[0, 2^32]")
    mode, lora_layers = check_mode(inp.mode, inp.lora_layers, limits)
    return GenerateSpec(sampling=sampling, alphas=(alpha,) * n, first_index=inp.first_sample_index,
                        seed=check_seed(inp.seed), logprobs=inp.logprobs, mode=mode, lora_layers=lora_layers)


def validate_compare(inp: GenerateInput, limits: Limits) -> GenerateSpec:
    """Two samples from one prefill: the after model alone (alpha 0, sample 0) and the before model alone
    (alpha -1, sample 1)."""
    check_prompt(inp.prompt, limits)
    sampling = resolve_sampling(inp.sampling, GENERATE, limits)
    return GenerateSpec(sampling=sampling, alphas=(0.0, -1.0), first_index=0, seed=check_seed(inp.seed),
                        logprobs=None, labels=("after", "before"))


def check_length(prompt: EncodedPrompt, max_new_tokens: int, limits: Limits, name: str = "prompt") -> None:
    if not prompt.after_ids:
        raise InvalidArgument(name, "tokenizes to no tokens")
    if prompt.longest + max_new_tokens > limits.max_seq_len:
        raise InvalidArgument(
            "sampling.max_new_tokens",
            f"prompt of {prompt.longest} tokens + max_new_tokens {max_new_tokens} = {prompt.longest + max_new_tokens} "
            f"exceeds the context limit of {limits.max_seq_len} tokens",
        )


def to_request(spec: GenerateSpec, prompt: EncodedPrompt, limits: Limits) -> SequenceRequest:
    """The validated request, once its prompt is tokenized."""
    s = spec.sampling
    check_length(prompt, s.max_new_tokens, limits)
    samples = tuple(SamplingParams(alpha=alpha, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                   seed=spec.seed, sample_index=spec.first_index + i, logprobs=spec.logprobs,
                                   min_new_tokens=s.min_new_tokens, mode=spec.mode, lora_layers=spec.lora_layers)
                    for i, alpha in enumerate(spec.alphas))
    return SequenceRequest(prompt=prompt, samples=samples, max_new_tokens=s.max_new_tokens, stop=s.stop,
                           seed=spec.seed, logprobs=spec.logprobs, labels=spec.labels)
