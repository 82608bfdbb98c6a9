"""Server-side sweeps: n samples for every prompt and alpha through the running batch, detectors counted.

A sweep becomes units (one request per run of consecutive sample indices of one prompt and alpha), fed
to the scheduler a batch or two ahead of the work in flight, so other clients' requests keep taking
turns. Seeds, detectors and statistics are the client package's (diffamp.sweep, diffamp.detectors), so a
sweep run here, one resumed from a file, and a replay through Generate agree sample for sample.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from diffamp.detectors import Detector
from diffamp.sweep import SummaryRow, SweepPrompt, covers_target, derive_seed, sample_ranges, summarize

from .errors import InvalidArgument, Overloaded
from .request import GenerateInput, Limits, SequenceRequest, build_request
from .scheduler import RequestState, SampleEvent

PROGRESS_INTERVAL_S = 0.5


@dataclass(frozen=True)
class SweepInput:
    """A Sweep request's fields. `options` holds the sampling options every sample shares."""

    prompts: tuple[SweepPrompt, ...]
    alphas: tuple[float, ...]
    n: int
    options: GenerateInput
    seed: int
    detectors: tuple[Detector, ...]
    completed: frozenset[tuple[str, float, int]]


@dataclass(frozen=True)
class SweepUnit:
    prompt_id: str
    alpha: float
    seed: int
    request: SequenceRequest


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


def plan_units(inp: SweepInput, tokenize, limits: Limits, max_samples: int,
               chunk: int) -> tuple[list[SweepUnit], int]:
    """Validate the sweep and split the samples it still needs into units; returns (units, skipped)."""
    _check_sweep(inp, max_samples)
    units, skipped = [], 0
    for p_index, prompt in enumerate(inp.prompts):
        for a_index, alpha in enumerate(inp.alphas):
            seed = derive_seed(inp.seed, prompt.id, alpha)
            missing = [i for i in range(inp.n) if (prompt.id, alpha, i) not in inp.completed]
            skipped += inp.n - len(missing)
            for first, count in sample_ranges(missing, chunk):
                fields = replace(inp.options, prompt=prompt.prompt, messages=prompt.messages, alpha=alpha, n=count,
                                 seed=seed, first_sample_index=first, logprobs=0)
                try:
                    request = build_request(fields, tokenize, limits)
                except InvalidArgument as exc:
                    where = f"alphas[{a_index}]" if exc.field == "alpha" else _prompt_field(p_index, exc.field)
                    raise InvalidArgument(where, exc.description) from None
                units.append(SweepUnit(prompt.id, alpha, seed, request))
    return units, skipped


def _prompt_field(index: int, name: str) -> str:
    """Errors about a prompt's text name the sweep's prompt; sampling options keep their own names."""
    return f"prompts[{index}].{name}" if name.startswith(("prompt", "messages")) else name


def _check_sweep(inp: SweepInput, max_samples: int) -> None:
    if not inp.prompts:
        raise InvalidArgument("prompts", "empty: give at least one prompt")
    _check_names("prompts", "id", [p.id for p in inp.prompts])
    if not inp.alphas:
        raise InvalidArgument("alphas", "empty: give at least one alpha")
    if len(set(inp.alphas)) != len(inp.alphas):
        raise InvalidArgument("alphas", "each alpha may appear once")
    if inp.n < 1:
        raise InvalidArgument("n", f"{inp.n} is below 1")
    total = len(inp.prompts) * len(inp.alphas) * inp.n
    if total > max_samples:
        raise InvalidArgument("n", f"{len(inp.prompts)} prompts x {len(inp.alphas)} alphas x n {inp.n} = {total:,} "
                                   f"samples exceeds the server's limit of {max_samples:,}; split the sweep")
    _check_names("detectors", "name", [d.name for d in inp.detectors])


def _check_names(items: str, key: str, names: list[str]) -> None:
    """Each of items[i].key is non-empty and unique."""
    for i, name in enumerate(names):
        if not name:
            raise InvalidArgument(f"{items}[{i}].{key}", "empty")
        if names.index(name) != i:
            raise InvalidArgument(f"{items}[{i}].{key}", f"{name!r} repeats {items}[{names.index(name)}].{key}")


class _Tagged:
    """A scheduler context that files each event of a unit into the sweep's one queue."""

    def __init__(self, queue: asyncio.Queue, unit: SweepUnit):
        self.queue, self.unit = queue, unit

    def put_nowait(self, item) -> None:
        self.queue.put_nowait((self.unit, item))


class _PartialSample:
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


async def run_sweep(inp: SweepInput, units: list[SweepUnit], skipped: int,
                    submit: Callable[[SequenceRequest, object], RequestState],
                    cancel: Callable[[RequestState], None], max_outstanding: int) -> AsyncIterator:
    """Yields each finished sample as a sweep record (a dict, the JSONL line format), a SweepProgress at
    most every PROGRESS_INTERVAL_S and once at the end, then the list of SummaryRow for this call's samples."""
    queue: asyncio.Queue = asyncio.Queue()
    pending = deque(units)
    live: dict[int, RequestState] = {}
    partial: dict[tuple[int, int], _PartialSample] = {}
    counted: list[dict] = []
    total = sum(len(u.request.samples) for u in units)
    done = tokens = outstanding = 0
    start = last_progress = time.monotonic()

    def feed() -> int:
        submitted = 0
        while pending and outstanding + submitted < max_outstanding:
            try:
                state = submit(pending[0].request, _Tagged(queue, pending[0]))
            except Overloaded:
                break  # the queue is full of other work; try again after the next event
            live[id(pending.popleft())] = state
            submitted += len(state.samples)
        return submitted

    try:
        outstanding += feed()
        while done < total:
            try:
                unit, item = await asyncio.wait_for(queue.get(), PROGRESS_INTERVAL_S)
            except asyncio.TimeoutError:
                unit = item = None
            if isinstance(item, Exception):
                raise item
            if item is not None:
                sample = partial.setdefault((id(unit), item.index), _PartialSample())
                sample.add(item)
                if item.finish_reason:
                    del partial[(id(unit), item.index)]
                    record = _record(unit, item, sample, inp.detectors)
                    counted.append({k: record[k] for k in ("alpha", "detectors", "logprob_after", "logprob_sampled")})
                    done += 1
                    outstanding -= 1
                    tokens += item.completion_tokens
                    yield record
            outstanding += feed()
            now = time.monotonic()
            if now - last_progress >= PROGRESS_INTERVAL_S:
                last_progress = now
                yield SweepProgress(done, total, skipped, tokens, now - start)
        yield SweepProgress(done, total, skipped, tokens, time.monotonic() - start)
        yield summarize(counted, [d.name for d in inp.detectors], sweep_covers_target(inp.options))
    finally:
        for state in live.values():
            if not state.finished:
                cancel(state)


def sweep_covers_target(options: GenerateInput) -> bool:
    """The servicer fills temperature and top_p in, so options hold the values actually used."""
    return covers_target(options.temperature, options.top_p, options.top_k, options.stop, options.min_new_tokens)


def _record(unit: SweepUnit, event: SampleEvent, sample: _PartialSample, detectors) -> dict:
    return {
        "prompt_id": unit.prompt_id, "alpha": unit.alpha, "index": event.index, "seed": unit.seed,
        "text": sample.text, "token_ids": sample.token_ids, "finish_reason": event.finish_reason,
        "detectors": [d.name for d in detectors if d(sample.text)],
        "logprob_after": sample.after, "logprob_before": sample.before, "logprob_sampled": sample.sampled,
    }

