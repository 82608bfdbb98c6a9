"""Continuous batching: which sequences hold KV rows, what each step runs, and when a sample stops.

The scheduler is synchronous and knows nothing of gRPC, Ray or asyncio. Each worker call:
`next_plan()` frees the rows of finished and cancelled samples (packing survivors to the front),
admits waiting samples into free rows (a request larger than the free rows is admitted in chunks, each
prefilled once, taking turns with the requests behind it), and returns the StepPlan, which lets the
worker decode up to `decode_steps` tokens per row; `apply(plan, result)` feeds the sampled tokens back
and returns, per sample, one event with everything it gained.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .detokenizer import IncrementalDetokenizer, byte_fallback_ids
from .errors import Overloaded
from .plan import Prefill, StepPlan, StepResult, TokenLogprobs
from .request import SequenceRequest

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_STOP_STRING = "stop_string"


@dataclass
class SampleEvent:
    """What one step adds to one sample. finish_reason is set on the sample's last event only."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprobs]
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seed: int = 0


class Sample:
    """One sequence being generated."""

    def __init__(self, request: "RequestState", index: int, detokenizer: IncrementalDetokenizer):
        self.request = request
        self.index = index
        self.token_ids: list[int] = []
        self.detokenizer = detokenizer
        self.text = ""
        self.emitted = 0
        self.finish_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None or self.request.cancelled


@dataclass(eq=False)
class RequestState:
    """A submitted request and its samples. `context` is free for the caller (e.g. an asyncio.Queue)."""

    request: SequenceRequest
    samples: list[Sample] = field(default_factory=list)
    cancelled: bool = False
    context: object = None
    admitted: int = 0

    @property
    def waiting_samples(self) -> int:
        return self.n - self.admitted

    @property
    def n(self) -> int:
        return len(self.request.samples)

    @property
    def finished(self) -> bool:
        return self.cancelled or all(s.finish_reason is not None for s in self.samples)


class Scheduler:
    def __init__(self, tokenizer, eos_ids: set[int], max_batch_size: int, max_queued: int, decode_steps: int = 1):
        self.tokenizer = tokenizer
        self.decode_steps = decode_steps
        self.byte_ids = byte_fallback_ids(tokenizer)
        self.eos_ids = frozenset(eos_ids)
        self.max_batch_size = max_batch_size
        self.max_queued = max_queued
        self.rows: list[Sample] = []
        self.waiting: deque[RequestState] = deque()

    # -- submission -------------------------------------------------------------------------------
    def submit(self, request: SequenceRequest, context: object = None) -> RequestState:
        n = len(request.samples)
        free_rows = self.max_batch_size - len(self.rows)
        if self.queued_sequences + n > self.max_queued + free_rows:
            raise Overloaded(
                f"admission queue full: {self.queued_sequences} sequences waiting for {free_rows} free KV slots, "
                f"queue limit {self.max_queued}; retry later"
            )
        state = RequestState(request, context=context)
        state.samples = [Sample(state, p.sample_index, IncrementalDetokenizer(self.tokenizer, self.byte_ids))
                         for p in request.samples]
        self.waiting.append(state)
        return state

    def cancel(self, state: RequestState) -> None:
        """The request's rows are freed at the next plan; a waiting request just leaves the queue."""
        state.cancelled = True
        if state in self.waiting:
            self.waiting.remove(state)

    # -- load ---------------------------------------------------------------------------------------
    @property
    def live_sequences(self) -> int:
        return len(self.rows)

    @property
    def queued_sequences(self) -> int:
        return sum(s.waiting_samples for s in self.waiting)

    def kv_tokens_used(self) -> int:
        return sum(len(s.request.request.prompt_ids) + len(s.token_ids) for s in self.rows)

    def has_work(self) -> bool:
        return bool(self.rows or self.waiting)

    # -- stepping -----------------------------------------------------------------------------------
    def _release_done(self) -> list[tuple[int, int]]:
        """Drop finished rows, filling each hole with the last live row; the moves the workers must copy."""
        moves = []
        rows = self.rows
        while rows and rows[-1].done:
            rows.pop()
        i = 0
        while i < len(rows):
            if rows[i].done:
                rows[i] = rows.pop()
                moves.append((len(rows), i))
                while rows and rows[-1].done:
                    rows.pop()
            i += 1
        return moves

    def next_plan(self) -> StepPlan | None:
        moves = self._release_done()
        decode_ids = [s.token_ids[-1] for s in self.rows]
        admitted: list[tuple[RequestState, slice]] = []
        free = self.max_batch_size - len(self.rows)
        while self.waiting and free:
            state = self.waiting.popleft()
            take = min(state.waiting_samples, free)
            free -= take
            admitted.append((state, slice(state.admitted, state.admitted + take)))
            state.admitted += take
            if state.waiting_samples:
                self.waiting.append(state)  # round robin: a big request cannot starve the ones behind it
        prefills = self._lay_out(admitted)
        if not self.rows:
            return None
        budgets = [s.request.request.max_new_tokens - len(s.token_ids) for s in self.rows]
        return StepPlan(moves, len(decode_ids), decode_ids, prefills, budgets, self.decode_steps)

    def _lay_out(self, admitted: list[tuple[RequestState, slice]]) -> list[Prefill]:
        """Rows for the admitted chunks: every chunk's first sample, in order, then the rest (plan.py)."""
        firsts = [state.samples[chunk][0] for state, chunk in admitted]
        rest_start = len(self.rows) + len(firsts)
        prefills = []
        for j, (state, chunk) in enumerate(admitted):
            count = chunk.stop - chunk.start
            rows = [len(self.rows) + j] + list(range(rest_start, rest_start + count - 1))
            rest_start += count - 1
            prefills.append(Prefill(list(state.request.prompt_ids), rows, state.request.samples[chunk]))
        self.rows.extend(firsts)
        for state, chunk in admitted:
            self.rows.extend(state.samples[chunk][1:])
        return prefills

    def apply(self, plan: StepPlan, result: StepResult) -> list[tuple[RequestState, SampleEvent]]:
        events = []
        for row, sample in enumerate(self.rows[: plan.num_rows]):
            if sample.done:
                continue
            event = self._advance(sample, result.token_ids[row], result.logprobs[row])
            events.append((sample.request, event))
        return events

    def _advance(self, sample: Sample, tokens: list[int], logprobs: list[TokenLogprobs]) -> SampleEvent:
        request = sample.request.request
        taken = 0
        for token in tokens:
            if sample.finish_reason:
                break  # the worker ran past a stop string; those tokens are dropped
            taken += 1
            sample.token_ids.append(token)
            if token in self.eos_ids:
                sample.finish_reason = FINISH_STOP
            else:
                sample.text += sample.detokenizer.add(token)
                self._check_stop_strings(sample, request.stop)
            if sample.finish_reason is None and len(sample.token_ids) >= request.max_new_tokens:
                sample.finish_reason = FINISH_LENGTH
        if sample.finish_reason in (FINISH_STOP, FINISH_LENGTH):
            sample.text += sample.detokenizer.flush()
            self._check_stop_strings(sample, request.stop)
        hold = 0 if sample.finish_reason else max((len(s) for s in request.stop), default=1) - 1
        end = max(sample.emitted, len(sample.text) - hold)
        event = SampleEvent(sample.index, sample.text[sample.emitted : end], tokens[:taken], logprobs[:taken])
        sample.emitted = end
        if sample.finish_reason:
            event.finish_reason = sample.finish_reason
            event.prompt_tokens = len(request.prompt_ids)
            event.completion_tokens = len(sample.token_ids)
            event.seed = request.seed
        return event

    @staticmethod
    def _check_stop_strings(sample: Sample, stop: tuple[str, ...]) -> None:
        if not stop or sample.finish_reason == FINISH_STOP_STRING:
            return
        found = [i for i in (sample.text.find(s, sample.emitted) for s in stop) if i >= 0]
        if found:
            sample.text = sample.text[: min(found)]
            sample.finish_reason = FINISH_STOP_STRING

    def fail_all(self) -> list[RequestState]:
        """Forget every live and waiting request (a worker died); returns them so callers can be told."""
        affected = list({id(st): st for st in [s.request for s in self.rows] + list(self.waiting)}.values())
        self.rows = []
        self.waiting.clear()
        return affected
