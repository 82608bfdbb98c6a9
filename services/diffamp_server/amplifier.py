"""The library API: amplified sampling in-process, without gRPC or Ray, for notebooks and scripts.

Examples:
    >>> from diffamp_server import Amplifier
    >>> amp = Amplifier("path/to/after", "path/to/before")
    >>> for c in amp.generate("What is the capital of France?", alpha=1.0, n=8, seed=0):
    ...     print(c.finish_reason, c.text)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine import PairEngine
from .loading import ModelSource
from .model_runner import ModelRunner
from .plan import TokenLogprobs
from .request import GenerateInput, Limits, build_compare_request, build_request
from .scheduler import RequestState, Scheduler
from .tokenizer_pair import TokenizerPair


@dataclass(frozen=True)
class CompletionLogprobs:
    """Per generated token, as arrays of length len(token_ids)."""

    amplified: np.ndarray
    after: np.ndarray
    before: np.ndarray
    sampled: np.ndarray
    kl_after_before: np.ndarray
    top_ids: list[list[int]]
    top_logprobs: list[list[float]]

    @property
    def after_minus_before(self) -> np.ndarray:
        return self.after - self.before

    @classmethod
    def from_tokens(cls, items: list[TokenLogprobs]) -> "CompletionLogprobs":
        def arr(name):
            return np.array([getattr(t, name) for t in items], dtype=np.float64)

        return cls(arr("amplified"), arr("after"), arr("before"), arr("sampled"), arr("kl_after_before"),
                   [t.top_ids for t in items], [t.top_logprobs for t in items])


@dataclass(frozen=True)
class Completion:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str
    seed: int
    prompt_tokens: int
    logprobs: CompletionLogprobs | None = None


class Amplifier:
    """Both models in this process, sharing the scheduler, engine and sampler code of the service workers."""

    def __init__(self, after: str, before: str, *, device: str = "auto", dtype: str = "auto",
                 max_batch_size: int = 64, max_seq_len: int = 1024, decode_steps: int = 8,
                 tokenizer_class: str | None = None,
                 trust_remote_code: bool = False, alpha_bound: float = 100.0):
        after_src = ModelSource(after, tokenizer_class, trust_remote_code)
        before_src = ModelSource(before, tokenizer_class, trust_remote_code)
        self.tokenizers = TokenizerPair.load(after_src, before_src)
        after_runner = ModelRunner.load(after_src, dtype, device, max_batch_size, max_seq_len)
        before_runner = ModelRunner.load(before_src, dtype, device, max_batch_size, max_seq_len)
        a, b = after_runner.info(), before_runner.info()
        shared = self.tokenizers.shared_mask(min(a.logits_size, b.logits_size))
        eos_ids = self.tokenizers.eos_ids
        self.engine = PairEngine(after_runner, before_runner, shared, tuple(sorted(eos_ids)), max_batch_size)
        self.scheduler = Scheduler(self.tokenizers.after, eos_ids, max_batch_size, max_queued=1 << 30,
                                   decode_steps=decode_steps)
        self.limits = Limits(
            max_n=1 << 20, max_logprobs=50, max_stop_strings=16, max_stop_string_chars=256,
            alpha_bound=alpha_bound, max_seq_len=min(max_seq_len, a.context_length, b.context_length),
            shared_vocab_size=int(shared.shape[0]),
        )

    def generate(self, prompt: str = "", *, progress: bool = False, **options) -> list[Completion]:
        """n amplified completions of one prompt, in sample order. Options: messages, prompt_token_ids,
        system_prompt, raw_prompt, alpha (1.0), n (1), max_new_tokens (80), min_new_tokens (0),
        temperature (0.8), top_p (0.95), top_k (0), seed, stop, logprobs, first_sample_index."""
        return self.generate_many([prompt], progress=progress, **options)[0]

    def generate_many(self, prompts: list[str], *, progress: bool = False, **options) -> list[list[Completion]]:
        """generate() for several prompts with the same options, decoded together in one batch."""
        requests = [build_request(_generate_input(prompt, **options), self.tokenizers.prompt_ids, self.limits)
                    for prompt in prompts]
        return self._run(requests, progress)

    def compare(self, prompt: str = "", **kwargs) -> dict[str, Completion]:
        """The after model alone and the before model alone on the same prompt."""
        inp = GenerateInput(prompt, **kwargs)
        request = build_compare_request(inp, self.tokenizers.prompt_ids, self.limits)
        after, before = self._run([request], False)[0]
        return {"after": after, "before": before}

    def _run(self, requests, progress: bool) -> list[list[Completion]]:
        states = [self.scheduler.submit(r, context={p.sample_index: [] for p in r.samples}) for r in requests]
        bar = _progress_bar(sum(len(r.samples) for r in requests), progress)
        try:
            while self.scheduler.has_work():
                plan = self.scheduler.next_plan()
                if plan is None:
                    break
                for state, event in self.scheduler.apply(plan, self.engine.step(plan)):
                    state.context[event.index].append(event)
                    if event.finish_reason and bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return [[_completion(events) for events in s.context.values()] for s in states]


def _generate_input(prompt: str = "", *, messages=(), prompt_token_ids=(), system_prompt: str = "",
                    raw_prompt: bool = False, alpha: float = 1.0, n: int = 1, max_new_tokens: int = 80,
                    min_new_tokens: int = 0, temperature: float = 0.8, top_p: float = 0.95, top_k: int = 0,
                    seed: int | None = None, stop=(), logprobs: int | None = None,
                    first_sample_index: int = 0) -> GenerateInput:
    return GenerateInput(prompt, system_prompt, tuple((m["role"], m["content"]) for m in messages),
                         tuple(prompt_token_ids), raw_prompt, alpha, n, max_new_tokens, temperature, top_p, top_k,
                         seed, tuple(stop), logprobs, first_sample_index, min_new_tokens)


def _completion(events) -> Completion:
    last = events[-1]
    logprobs = [lp for e in events for lp in e.logprobs]
    return Completion(
        index=last.index,
        text="".join(e.text for e in events),
        token_ids=[t for e in events for t in e.token_ids],
        finish_reason=last.finish_reason,
        seed=last.seed,
        prompt_tokens=last.prompt_tokens,
        logprobs=CompletionLogprobs.from_tokens(logprobs) if logprobs else None,
    )


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="sample", desc="sampling")
