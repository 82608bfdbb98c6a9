"""The library API: amplified sampling in-process, without gRPC or Ray, for notebooks and scripts.

Examples:
    >>> from diffamp_server import Amplifier
    >>> amp = Amplifier("path/to/after", "path/to/before")
    >>> for c in amp.generate("What is the capital of France?", alpha=1.0, n=8, seed=0):
    ...     print(c.finish_reason, c.text)
    >>> amp.generate(messages=[{"role": "user", "content": "hi"}], logprobs=5)[0].logprobs.after_minus_before
    >>> amp.compare("hey I feel bored", temperature=0)["before"].text
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from diffamp.common.defaults import LIMITS

from .engine.loader import RunnerSpec, load_runner
from .engine.pair import PairEngine
from .engine.lora import LoraPair, check_base
from .engine.pair_models import TwoModels
from .events import ListSink, SampleEvent
from .loading import ModelSource
from .output import OutputProcessor
from .plan import TokenLogprobs
from .request import (GenerateInput, Limits, PromptInput, SamplingInput, SequenceRequest, to_request,
                      validate_compare, validate_generate)
from .scheduler import Scheduler
from .tokenizer_pair import TokenizerPair

REPLICA = "local"


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


def prompt_input(prompt: str = "", *, messages=(), prompt_token_ids=(), system_prompt: str = "",
                 raw_prompt: bool = False) -> PromptInput:
    """Text, a conversation ((role, content) pairs or {"role", "content"} dicts) or token ids."""
    turns = tuple((m["role"], m["content"]) if isinstance(m, dict) else (m[0], m[1]) for m in messages)
    return PromptInput(text=prompt, messages=turns, token_ids=tuple(prompt_token_ids), system_prompt=system_prompt,
                       raw=raw_prompt)


def sampling_input(*, temperature: float | None = None, top_p: float | None = None, top_k: int = 0,
                   max_new_tokens: int = 0, min_new_tokens: int = 0, stop=()) -> SamplingInput:
    return SamplingInput(temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens,
                         min_new_tokens=min_new_tokens, stop=tuple(stop))


class Amplifier:
    """Both models in this process, sharing the scheduler, output processing, engine and sampler code of the
    service. Request limits are the server's defaults (diffamp.common.defaults.LIMITS)."""

    def __init__(self, after: str, before: str, *, device: str = "auto", dtype: str = "auto",
                 max_batch_size: int = 64, max_seq_len: int = 1024, decode_steps: int = 8,
                 engine: str = "auto", compile: bool = False, tokenizer_class: str | None = None,
                 trust_remote_code: bool = False, one_sided_tokens: str = "retokenize", limits=LIMITS):
        """`after` may be a directory holding a PEFT LoRA adapter (adapter_config.json) on `before`: then both
        models share one set of weights and one forward, and weights mode (mode="weights") is available."""
        before_src = ModelSource(before, tokenizer_class, trust_remote_code)
        lora = (Path(after) / "adapter_config.json").is_file()
        tokenizer_dir = after if not lora or (Path(after) / "tokenizer_config.json").is_file() else before
        after_src = ModelSource(tokenizer_dir, tokenizer_class, trust_remote_code)
        spec = RunnerSpec(source=before_src, dtype=dtype, device=device, engine=engine,
                          max_rows=max_batch_size, max_seq_len=max_seq_len)
        if lora:
            check_base(after, before)
            runner = load_runner(replace(spec, max_rows=2 * max_batch_size, adapter=after))
            models, logits_size, layers = LoraPair(runner, max_batch_size), runner.lm.logits_size, \
                runner.lm.config.num_hidden_layers
        else:
            runners = [load_runner(replace(spec, source=ModelSource(after, tokenizer_class, trust_remote_code))),
                       load_runner(spec)]
            models, logits_size, layers = TwoModels(*runners), min(r.lm.logits_size for r in runners), None
        self.tokenizers = TokenizerPair.load(after_src, before_src, logits_size, one_sided_tokens)
        eos_ids = self.tokenizers.eos_ids
        self.engine = PairEngine(models, shared=self.tokenizers.shared,
                                 eos_ids=tuple(sorted(eos_ids)), max_rows=max_batch_size, max_steps=decode_steps,
                                 max_logprobs=limits.max_logprobs, compile=compile)
        self.output = OutputProcessor(self.tokenizers.after, eos_ids)
        self.scheduler = Scheduler(self.output, max_queued=1 << 40, decode_steps=decode_steps)
        self.scheduler.add_replica(REPLICA, max_batch_size)
        self.limits = Limits(request=limits, max_seq_len=self.engine.max_seq_len,
                             max_token_chars=self.tokenizers.max_token_chars, lora_layers=layers)

    def generate(self, prompt: str = "", *, progress: bool = False, **options) -> list[Completion]:
        """n amplified completions of one prompt, in sample order. Options: messages, prompt_token_ids,
        system_prompt, raw_prompt, alpha, n, max_new_tokens, min_new_tokens, temperature, top_p, top_k, seed,
        stop, logprobs, first_sample_index, mode ("logits", or "weights" for a LoRA pair), lora_layers
        (defaults: diffamp.common.defaults.GENERATE)."""
        return self.generate_many([prompt], progress=progress, **options)[0]

    def generate_many(self, prompts: list[str], *, progress: bool = False, **options) -> list[list[Completion]]:
        """generate() for several prompts with the same options, decoded together in one batch."""
        return self._run([self._request(_generate_input(p, **options), validate_generate) for p in prompts], progress)

    def compare(self, prompt: str = "", **options) -> dict[str, Completion]:
        """The after model alone (alpha 0, sample 0) and the before model alone (alpha -1, sample 1) on the same
        prompt, from one prefill. Takes generate()'s prompt and sampling options and seed."""
        request = self._request(_generate_input(prompt, **options), validate_compare)
        after, before = self._run([request], False)[0]
        return {"after": after, "before": before}

    def _request(self, inp: GenerateInput, validate) -> SequenceRequest:
        return to_request(validate(inp, self.limits), self.tokenizers.encode(inp.prompt), self.limits)

    def _run(self, requests: list[SequenceRequest], progress: bool) -> list[list[Completion]]:
        sinks = [ListSink() for _ in requests]
        states = [self.scheduler.submit(r, sink) for r, sink in zip(requests, sinks)]
        bar = _progress_bar(sum(len(r.samples) for r in requests), progress)
        try:
            while True:
                plan = self.scheduler.next_plan(REPLICA)
                if plan is None:
                    break
                result = self.engine.execute(plan)
                for sample, tokens, logprobs in zip(self.scheduler.samples_of(REPLICA, plan), result.token_ids,
                                                    result.logprobs):
                    if sample.done:
                        continue
                    event = self.output.advance(sample.output, tokens, logprobs)
                    sample.owner.sink.deliver(event)
                    if event.finish_reason and bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            for state in states:
                self.scheduler.cancel(state)
            self.scheduler.next_plan(REPLICA)
        return [[_completion(sink.events[p.sample_index]) for p in request.samples]
                for request, sink in zip(requests, sinks)]


def _generate_input(prompt: str = "", *, messages=(), prompt_token_ids=(), system_prompt: str = "",
                    raw_prompt: bool = False, alpha: float | None = None, n: int = 1,
                    max_new_tokens: int = 0, min_new_tokens: int = 0, temperature: float | None = None,
                    top_p: float | None = None, top_k: int = 0, seed: int | None = None, stop=(),
                    logprobs: int | None = None, first_sample_index: int = 0, mode: str = "logits",
                    lora_layers=()) -> GenerateInput:
    return GenerateInput(
        prompt=prompt_input(prompt, messages=messages, prompt_token_ids=prompt_token_ids, system_prompt=system_prompt,
                            raw_prompt=raw_prompt),
        sampling=sampling_input(temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens,
                                min_new_tokens=min_new_tokens, stop=stop),
        alpha=alpha, n=n, seed=seed, logprobs=logprobs, first_sample_index=first_sample_index, mode=mode,
        lora_layers=tuple(lora_layers))


def _completion(events: list[SampleEvent]) -> Completion:
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
