"""Server-side sweeps: n samples for every prompt and alpha through the running batch, detectors counted.

Validation is linear in the request's size and touches no model. The samples still needed are then planned
lazily: units (one request per run of consecutive sample indices of one prompt and alpha) are made as they
are fed, a batch or two ahead of the work in flight, so other clients' requests keep taking turns and a
million-sample sweep costs no memory up front. The summary is kept as running sums per alpha. Seeds,
detectors and statistics are diffamp.common's, so a sweep run here, one resumed from a file and a replay
through Generate agree sample for sample.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from diffamp.common import detectors as detector_lib
from diffamp.common.defaults import SWEEP
from diffamp.common.seeds import chunked, derive_seed, missing_ranges
from diffamp.common.sweep import SummaryRow, SweepRecord, SweepSummary, estimate_is_exact, first_bad_name

from .errors import DiffampError, InvalidArgument, Overloaded
from .events import SampleEvent
from .request import (EncodedPrompt, Limits, PromptInput, Sampling, SamplingInput, SequenceRequest, check_alpha,
                      check_length, check_mode, check_prompt, resolve_sampling)
from .plan import SamplingParams

PROGRESS_INTERVAL_S = 0.5
SUMMARY_ROW_BYTES = 160
ENCODE_BATCH = 256
"""Prompts tokenized per trip to the tokenizer thread, so the event loop answers in between."""


@dataclass(frozen=True, kw_only=True)
class DetectorInput:
    name: str
    substring: str | None = None
    regex: str | None = None
    ignore_case: bool = False


@dataclass(frozen=True, kw_only=True)
class SweepInput:
    """A Sweep request's fields."""

    prompts: tuple[tuple[str, PromptInput], ...]
    alphas: tuple[float, ...]
    n: int
    sampling: SamplingInput
    seed: int
    detectors: tuple[DetectorInput, ...] = ()
    completed: tuple[tuple[str, str, float, tuple[tuple[int, int], ...]], ...] = ()
    """(prompt id, mode, alpha, ((first, count), ...)) already done."""
    modes: tuple[str, ...] = ("logits",)
    lora_layers: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SweepPlan:
    """A validated sweep."""

    inp: SweepInput
    sampling: Sampling
    detectors: tuple[detector_lib.Detector, ...]
    done: dict[tuple[int, str, int], list[tuple[int, int]]]
    """(prompt index, mode, alpha index) -> ranges of sample indices already done."""
    total: int
    skipped: int


@dataclass(frozen=True)
class SweepProgress:
    done: int
    total: int
    skipped: int
    tokens: int
    elapsed_s: float

    @property
    def samples_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float:
        rate = self.samples_per_s
        return (self.total - self.done) / rate if rate > 0 else 0.0


@dataclass(frozen=True)
class SweepSummaryItem:
    rows: list[SummaryRow]


SweepItem = SweepRecord | SweepProgress | SweepSummaryItem


async def validate_sweep(inp: SweepInput, limits: Limits, max_message_bytes: int, chunk: int = 256) -> SweepPlan:
    """Every rule of a Sweep request, in time linear in its size, yielding to the event loop every `chunk`
    prompts."""
    req = limits.request
    if not inp.prompts:
        raise InvalidArgument("prompts", "empty: give at least one prompt")
    if len(inp.prompts) > req.max_sweep_prompts:
        raise InvalidArgument("prompts", f"{len(inp.prompts)} prompts exceeds the limit of {req.max_sweep_prompts}")
    bad = first_bad_name(pid for pid, _ in inp.prompts)
    if bad:
        raise InvalidArgument(f"prompts[{bad[0]}].id", bad[1])
    for i, (_, prompt) in enumerate(inp.prompts):
        check_prompt(prompt, limits)
        if i % chunk == chunk - 1:
            await asyncio.sleep(0)
    if not inp.alphas:
        raise InvalidArgument("alphas", "empty: give at least one alpha")
    if len(inp.alphas) > req.max_alphas:
        raise InvalidArgument("alphas", f"{len(inp.alphas)} alphas exceeds the limit of {req.max_alphas}")
    seen: dict[float, int] = {}
    for i, alpha in enumerate(inp.alphas):
        check_alpha(alpha, limits, f"alphas[{i}]")
        if alpha in seen:
            raise InvalidArgument(f"alphas[{i}]", f"{alpha} repeats alphas[{seen[alpha]}]")
        seen[alpha] = i
    if inp.n < 1:
        raise InvalidArgument("n", f"{inp.n} is below 1")
    if not inp.modes or len(set(inp.modes)) != len(inp.modes):
        raise InvalidArgument("modes", "give each mode at most once")
    for i, mode in enumerate(inp.modes):
        check_mode(mode, inp.lora_layers if mode == "weights" else (), limits, prefix=f"modes[{i}].")
    if inp.lora_layers and "weights" not in inp.modes:
        raise InvalidArgument("lora_layers", "only weights mode scales layers")
    total = len(inp.prompts) * len(inp.modes) * len(inp.alphas) * inp.n
    if total > req.max_sweep_samples:
        raise InvalidArgument("n", f"{len(inp.prompts)} prompts x {len(inp.modes)} modes x {len(inp.alphas)} alphas x "
                                   f"n {inp.n} = {total:,} samples exceeds the server's limit of "
                                   f"{req.max_sweep_samples:,}; split the sweep")
    sampling = resolve_sampling(inp.sampling, SWEEP, limits)
    detectors = _detectors(inp.detectors, limits)
    summary_bytes = len(inp.modes) * len(inp.alphas) * sum(SUMMARY_ROW_BYTES + len(d.name) for d in detectors)
    if summary_bytes > max_message_bytes // 2:
        raise InvalidArgument("detectors", f"{len(inp.alphas)} alphas x {len(detectors)} detectors make a summary of "
                                           f"about {summary_bytes:,} bytes, more than the server sends in one message")
    done, skipped = _completed(inp, seen)
    return SweepPlan(inp=inp, sampling=sampling, detectors=detectors, done=done, total=total - skipped,
                     skipped=skipped)


def _detectors(items: tuple[DetectorInput, ...], limits: Limits) -> tuple[detector_lib.Detector, ...]:
    if len(items) > limits.request.max_detectors:
        raise InvalidArgument("detectors",
                              f"{len(items)} detectors exceeds the limit of {limits.request.max_detectors}")
    bad = first_bad_name(d.name for d in items)
    if bad:
        raise InvalidArgument(f"detectors[{bad[0]}].name", bad[1])
    out = []
    for i, d in enumerate(items):
        try:
            if d.regex is not None:
                out.append(detector_lib.regex(d.name, d.regex, limits.request.max_pattern_chars))
            elif d.substring is not None:
                out.append(detector_lib.substring(d.name, d.substring, d.ignore_case))
            else:
                raise ValueError("set substring or regex")
        except ValueError as exc:
            raise InvalidArgument(f"detectors[{i}]", str(exc)) from None
    return tuple(out)


def _completed(inp: SweepInput, alpha_index: dict[float, int]):
    prompt_index = {pid: i for i, (pid, _) in enumerate(inp.prompts)}
    done: dict[tuple[int, str, int], list[tuple[int, int]]] = {}
    for k, (pid, mode, alpha, ranges) in enumerate(inp.completed):
        if pid not in prompt_index:
            raise InvalidArgument(f"completed[{k}].prompt_id", f"{pid!r} is not a prompt of this sweep")
        if mode not in inp.modes:
            raise InvalidArgument(f"completed[{k}].mode", f"{mode} is not a mode of this sweep")
        if alpha not in alpha_index:
            raise InvalidArgument(f"completed[{k}].alpha", f"{alpha} is not an alpha of this sweep")
        for first, count in ranges:
            if count < 1 or first + count > inp.n:
                raise InvalidArgument(f"completed[{k}].ranges", f"[{first}, {first + count}) is not inside [0, n)")
        done.setdefault((prompt_index[pid], mode, alpha_index[alpha]), []).extend(ranges)
    skipped = 0
    for key, ranges in done.items():
        covered = inp.n - sum(count for _, count in missing_ranges(inp.n, ranges))
        skipped += covered
    return done, skipped


@dataclass(frozen=True)
class _Unit:
    number: int
    prompt_id: str
    mode: str
    alpha: float
    seed: int
    request: SequenceRequest


class _Partial:
    """A sample's text and summed logprobs while it streams in."""

    __slots__ = ("text", "token_ids", "after", "before", "sampled")

    def __init__(self):
        self.text, self.token_ids = "", []
        self.after = self.before = self.sampled = 0.0

    def add(self, event: SampleEvent) -> None:
        self.text += event.text
        self.token_ids += event.token_ids
        for lp in event.logprobs:
            self.after += lp.after
            self.before += lp.before
            self.sampled += lp.sampled


class _SweepInbox:
    """Every unit's events, tagged with their unit, in one queue; full (pausing the sweep's samples) while the
    sweep's consumer has fallen behind."""

    def __init__(self, limit: int):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.limit = limit

    @property
    def full(self) -> bool:
        return self.queue.qsize() >= self.limit

    def sink(self, unit: _Unit) -> "_UnitSink":
        return _UnitSink(self, unit)


class _UnitSink:
    def __init__(self, inbox: _SweepInbox, unit: _Unit):
        self.inbox, self.unit = inbox, unit

    @property
    def full(self) -> bool:
        return self.inbox.full

    def deliver(self, event: SampleEvent) -> None:
        self.inbox.queue.put_nowait((self.unit, event))

    def fail(self, error: DiffampError, drop_pending: bool = False) -> None:
        self.inbox.queue.put_nowait((self.unit, error))


async def _encode_all(gateway, plan: SweepPlan) -> list[EncodedPrompt]:
    """Every prompt, tokenized off the event loop a batch at a time, each checked against the context."""
    prompts = [p for _, p in plan.inp.prompts]
    encoded: list[EncodedPrompt] = []
    for start in range(0, len(prompts), ENCODE_BATCH):
        encoded += await gateway.encode_many(prompts[start:start + ENCODE_BATCH])
    for i, prompt in enumerate(encoded):
        try:
            check_length(prompt, plan.sampling.max_new_tokens, gateway.limits)
        except InvalidArgument as exc:
            field = exc.field if exc.field.startswith("sampling") else f"prompts[{i}].prompt"
            raise InvalidArgument(field, f"prompts[{i}]: {exc.description}") from None
    return encoded


def _units(plan: SweepPlan, encoded: list[EncodedPrompt], chunk: int) -> Iterator[_Unit]:
    inp, s = plan.inp, plan.sampling
    number = 0
    for p, (prompt_id, _) in enumerate(inp.prompts):
        for mode in inp.modes:
            layers = inp.lora_layers if mode == "weights" else ()
            for a, alpha in enumerate(inp.alphas):
                seed = derive_seed(inp.seed, prompt_id, alpha)
                for first, count in chunked(missing_ranges(inp.n, plan.done.get((p, mode, a), [])), chunk):
                    samples = tuple(SamplingParams(alpha=alpha, temperature=s.temperature, top_p=s.top_p,
                                                   top_k=s.top_k, seed=seed, sample_index=i, logprobs=0,
                                                   min_new_tokens=s.min_new_tokens, mode=mode, lora_layers=layers)
                                    for i in range(first, first + count))
                    number += 1
                    yield _Unit(number, prompt_id, mode, alpha, seed, SequenceRequest(
                        prompt=encoded[p], samples=samples, max_new_tokens=s.max_new_tokens, stop=s.stop, seed=seed,
                        logprobs=0))


async def run_sweep(gateway, plan: SweepPlan, client: str = "") -> AsyncIterator[SweepItem]:
    """Yields each finished sample as a SweepRecord, a SweepProgress at most every PROGRESS_INTERVAL_S and once
    at the end, then the summary of this call's samples."""
    encoded = await _encode_all(gateway, plan)
    slots = max(1, sum(r.slots for r in gateway.replicas.values()))
    units = _units(plan, encoded, chunk=slots)
    max_outstanding = 2 * slots
    inbox = _SweepInbox(limit=4 * slots)
    live: dict[int, tuple[object, list[int]]] = {}
    partial: dict[tuple[int, int], _Partial] = {}
    s = plan.sampling
    summary = SweepSummary([d.name for d in plan.detectors],
                           estimate_is_exact(s.temperature, s.top_p, s.top_k, s.min_new_tokens))
    done = tokens = outstanding = 0
    start = last_progress = time.monotonic()
    pending: _Unit | None = next(units, None)

    def feed() -> int:
        nonlocal pending
        submitted = 0
        while pending is not None and outstanding + submitted < max_outstanding:
            try:
                state = gateway.submit(pending.request, inbox.sink(pending), client)
            except Overloaded:
                break  # the queue is full of other work; try again after the next event
            live[pending.number] = (state, [state.n])
            submitted += state.n
            pending = next(units, None)
        return submitted

    try:
        outstanding += feed()
        while done < plan.total:
            try:
                unit, item = await asyncio.wait_for(inbox.queue.get(), PROGRESS_INTERVAL_S)
            except asyncio.TimeoutError:
                unit = item = None
            if isinstance(item, DiffampError):
                raise item
            if item is not None:
                key = (unit.number, item.index)
                sample = partial.get(key)
                if sample is None:
                    sample = partial[key] = _Partial()
                sample.add(item)
                if item.finish_reason:
                    del partial[key]
                    remaining = live[unit.number][1]
                    remaining[0] -= 1
                    if not remaining[0]:
                        del live[unit.number]
                    record = SweepRecord(
                        prompt_id=unit.prompt_id, alpha=unit.alpha, index=item.index, seed=unit.seed,
                        text=sample.text, token_ids=tuple(sample.token_ids), finish_reason=item.finish_reason,
                        detectors=tuple(d.name for d in plan.detectors if d(sample.text)),
                        logprob_after=sample.after, logprob_before=sample.before, logprob_sampled=sample.sampled,
                        mode=unit.mode)
                    summary.add_record(record)
                    done += 1
                    outstanding -= 1
                    tokens += item.completion_tokens
                    yield record
            outstanding += feed()
            now = time.monotonic()
            if now - last_progress >= PROGRESS_INTERVAL_S:
                last_progress = now
                yield SweepProgress(done, plan.total, plan.skipped, tokens, now - start)
        yield SweepProgress(done, plan.total, plan.skipped, tokens, time.monotonic() - start)
        yield SweepSummaryItem(summary.rows())
    finally:
        for state, _ in live.values():
            gateway.cancel(state)
