"""The gateway: admits requests into the running batch, runs the step loop, hands events to streams.

It decides and holds no weights: the tokenizers, the scheduler and a WorkerPool live here. One asyncio
task runs the loop: plan -> one step on the workers -> apply -> wake each request's stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .errors import ShuttingDown, WorkerUnavailable
from .model_runner import RunnerInfo
from .request import GenerateInput, Limits, build_compare_request, build_request
from .scheduler import RequestState, SampleEvent, Scheduler
from .sweep import SweepInput, plan_units, run_sweep
from .tokenizer_pair import TokenizerPair
from .vocab import VocabReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerInfo:
    after: RunnerInfo
    after_node: str
    before: RunnerInfo
    before_node: str
    placement: str
    live_sequences: int
    queued_sequences: int
    max_batch_size: int
    max_seq_len: int
    kv_tokens_used: int
    shared_vocab_size: int


class Gateway:
    def __init__(self, tokenizers: TokenizerPair, pool, limits: Limits, max_batch_size: int, max_queued: int,
                 decode_steps: int = 1, max_sweep_samples: int = 1_000_000, on_health_change=None):
        self.tokenizers = tokenizers
        self.pool = pool
        self.limits = limits
        self.max_sweep_samples = max_sweep_samples
        self.scheduler = Scheduler(tokenizers.after, tokenizers.eos_ids, max_batch_size, max_queued, decode_steps)
        self.admitting = True
        self.healthy = True
        self._on_health_change = on_health_change or (lambda serving: None)
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self.steps = 0

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._run_loop(), name="diffamp-step-loop")

    @property
    def serving(self) -> bool:
        return self.admitting and self.healthy

    # -- requests ------------------------------------------------------------------------------------
    async def generate(self, inp: GenerateInput) -> AsyncIterator[SampleEvent]:
        self._check_admitting()
        request = build_request(inp, self.tokenizers.prompt_ids, self.limits)
        async for event in self._stream(request):
            yield event

    async def compare(self, inp: GenerateInput) -> AsyncIterator[tuple[str, SampleEvent]]:
        self._check_admitting()
        request = build_compare_request(inp, self.tokenizers.prompt_ids, self.limits)
        async for event in self._stream(request):
            yield request.labels[event.index], event

    async def sweep(self, inp: SweepInput) -> AsyncIterator:
        """Sweep records, progress and the summary, as sweep.run_sweep yields them."""
        self._check_admitting()
        units, skipped = plan_units(inp, self.tokenizers.prompt_ids, self.limits, self.max_sweep_samples,
                                    chunk=self.scheduler.max_batch_size)
        async for item in run_sweep(inp, units, skipped, self._submit, self._cancel,
                                    max_outstanding=2 * self.scheduler.max_batch_size):
            yield item

    async def _stream(self, request) -> AsyncIterator[SampleEvent]:
        queue: asyncio.Queue = asyncio.Queue()
        state = self._submit(request, queue)
        remaining = state.n
        try:
            while remaining:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                if item.finish_reason:
                    remaining -= 1
                yield item
        finally:
            self._cancel(state)

    def _submit(self, request, context) -> RequestState:
        state = self.scheduler.submit(request, context=context)
        self._wake.set()
        return state

    def _cancel(self, state: RequestState) -> None:
        if not state.finished:
            self.scheduler.cancel(state)
            self._wake.set()

    def _check_admitting(self) -> None:
        if not self.admitting:
            raise ShuttingDown("the server is shutting down and admits no new requests")
        if not self.healthy:
            raise WorkerUnavailable("a model worker is restarting; retry shortly")

    def check_tokenizers(self) -> VocabReport:
        return self.tokenizers.report

    async def info(self) -> ServerInfo:
        (after, after_node), (before, before_node) = await self.pool.info()
        return ServerInfo(
            after, after_node, before, before_node, self.pool.placement,
            self.scheduler.live_sequences, self.scheduler.queued_sequences, self.scheduler.max_batch_size,
            self.limits.max_seq_len, self.scheduler.kv_tokens_used(), self.limits.shared_vocab_size,
        )

    # -- the step loop ---------------------------------------------------------------------------------
    async def _run_loop(self) -> None:
        while True:
            plan = self.scheduler.next_plan()
            if plan is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                result = await self.pool.step(plan)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any worker failure ends the affected streams the same way
                await self._recover(exc)
                continue
            self.steps += 1
            for state, event in self.scheduler.apply(plan, result):
                state.context.put_nowait(event)

    async def _recover(self, exc: Exception) -> None:
        cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the worker's own exception
        message = f"model worker failed during a step ({type(cause).__name__}: {_first_line(cause)})"
        log.error("%s; ending %d live streams and recovering", message, self.scheduler.live_sequences)
        self._set_healthy(False)
        for state in self.scheduler.fail_all():
            state.context.put_nowait(WorkerUnavailable(message))
        delay = 1.0
        while True:
            try:
                await self.pool.recover()
                break
            except asyncio.CancelledError:
                raise
            except Exception as again:  # noqa: BLE001
                log.error("worker recovery failed (%s); retrying in %.0f s", _first_line(again), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        log.info("model workers are back")
        self._set_healthy(True)

    def _set_healthy(self, healthy: bool) -> None:
        self.healthy = healthy
        self._on_health_change(self.serving)

    # -- shutdown ----------------------------------------------------------------------------------------
    async def drain(self, grace_s: float) -> None:
        """Stop admitting, let in-flight streams finish for up to grace_s, then end the rest with UNAVAILABLE."""
        self.admitting = False
        self._on_health_change(False)
        deadline = asyncio.get_running_loop().time() + grace_s
        while self.scheduler.has_work() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for state in self.scheduler.fail_all():
            state.context.put_nowait(ShuttingDown(f"the server shut down before this request finished "
                                                  f"(drain period {grace_s:g} s)"))
        if self._loop_task:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
