"""The gateway: admits requests into the running batch, runs one step loop per model replica, and hands each
request's events to its stream.

It decides and holds no weights: the tokenizers, the scheduler, the output processor and the replicas'
handles live here. Per replica, one asyncio task loops: plan -> one worker call -> output processing ->
deliver. Tokenizing runs in a thread, off the event loop that also answers health checks.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from time import perf_counter

from .calls import note_submitted
from .errors import ShuttingDown, StreamStalled, WorkerUnavailable
from .events import EventSink, SampleEvent
from .metrics import NO_METRICS
from .output import OutputProcessor
from .replica import Replica, ReplicaInfo, WorkerLost
from .request import (EncodedPrompt, GenerateInput, Limits, PromptInput, SequenceRequest, to_request,
                      validate_compare, validate_generate)
from .scheduler import RequestState, Scheduler
from .streams import StreamBuffer
from .tokenizer_pair import TokenizerPair
from .vocab import VocabReport

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    max_queued: int
    decode_steps: int
    stream_buffer_bytes: int
    stream_stall_s: float


@dataclass(frozen=True, kw_only=True)
class ReplicaLoad:
    info: ReplicaInfo
    healthy: bool
    admitting: bool
    live_sequences: int


@dataclass(frozen=True, kw_only=True)
class ServerInfo:
    replicas: tuple[ReplicaLoad, ...]
    live_sequences: int
    queued_sequences: int
    kv_tokens_used: int
    max_seq_len: int
    shared_vocab_size: int


GIL_SWITCH_INTERVAL_S = 0.001
"""Tokenizing in a thread holds the GIL for long stretches of Python (chat templates); a short switch interval
lets the event loop, which answers health checks, have it back within a millisecond instead of five."""


class Gateway:
    def __init__(self, tokenizers: TokenizerPair, limits: Limits, settings: GatewaySettings,
                 on_health_change=None):
        self.tokenizers = tokenizers
        self.limits = limits
        self.settings = settings
        self.output = OutputProcessor(tokenizers.after, tokenizers.eos_ids)
        self.scheduler = Scheduler(self.output, max_queued=settings.max_queued, decode_steps=settings.decode_steps)
        self.replicas: dict[str, Replica] = {}
        self.healthy: set[str] = set()
        self.admitting = True
        self.calls = 0
        self.metrics = NO_METRICS  # lifecycle.py sets a metrics.Metrics with --metrics-port
        self._on_health_change = on_health_change or (lambda serving: None)
        self._wakeups: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._watchdog: asyncio.Task | None = None
        self._tokenize = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffamp-tokenize")
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

    @property
    def serving(self) -> bool:
        return self.admitting and bool(self.healthy)

    # -- replicas ------------------------------------------------------------------------------------
    def add_replica(self, replica: Replica) -> None:
        """Start driving a replica whose workers are up."""
        self.replicas[replica.id] = replica
        self.scheduler.add_replica(replica.id, replica.slots)
        self._wakeups[replica.id] = asyncio.Event()
        self._tasks[replica.id] = asyncio.get_running_loop().create_task(self._run(replica),
                                                                           name=f"diffamp-replica-{replica.id}")
        self._set_healthy(replica.id, True)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch_stalls(), name="diffamp-stalls")

    async def remove_replica(self, replica_id: str, grace_s: float) -> None:
        """Admit nothing more to the replica, let its samples finish for up to grace_s, move the rest to other
        replicas (they continue from their tokens), then stop it."""
        self.scheduler.retire_replica(replica_id)
        deadline = asyncio.get_running_loop().time() + grace_s
        while self.scheduler.rows[replica_id] and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        task = self._tasks.pop(replica_id)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self.scheduler.remove_replica(replica_id)
        self._set_healthy(replica_id, False)
        self.replicas.pop(replica_id).shutdown()
        del self._wakeups[replica_id]
        self.wake()

    def wake(self) -> None:
        for event in self._wakeups.values():
            event.set()

    def _set_healthy(self, replica_id: str, healthy: bool) -> None:
        was = self.serving
        (self.healthy.add if healthy else self.healthy.discard)(replica_id)
        if self.serving != was:
            self._on_health_change(self.serving)

    # -- requests -------------------------------------------------------------------------------------
    async def encode(self, prompt: PromptInput) -> EncodedPrompt:
        """Tokenize off the event loop (a prompt's size is already bounded by validation)."""
        return await asyncio.get_running_loop().run_in_executor(self._tokenize, self.tokenizers.encode, prompt)

    async def encode_many(self, prompts: list[PromptInput]) -> list[EncodedPrompt]:
        return await asyncio.get_running_loop().run_in_executor(
            self._tokenize, lambda: [self.tokenizers.encode(p) for p in prompts])

    async def generate(self, inp: GenerateInput, client: str = "") -> AsyncIterator[SampleEvent]:
        self.check_admitting()
        spec = validate_generate(inp, self.limits)
        request = to_request(spec, await self.encode(inp.prompt), self.limits)
        async for event in self.stream(request, client):
            yield event

    async def compare(self, inp: GenerateInput, client: str = "") -> AsyncIterator[tuple[str, SampleEvent]]:
        self.check_admitting()
        spec = validate_compare(inp, self.limits)
        request = to_request(spec, await self.encode(inp.prompt), self.limits)
        async for event in self.stream(request, client):
            yield request.labels[event.index], event

    async def stream(self, request: SequenceRequest, client: str) -> AsyncIterator[SampleEvent]:
        """Submit a validated request and yield its events until every sample finished."""
        buffer = StreamBuffer(self.settings.stream_buffer_bytes, self.wake)
        state = self.submit(request, buffer, client)
        remaining = state.n
        try:
            while remaining:
                event = await buffer.get()
                if event.finish_reason:
                    remaining -= 1
                yield event
        finally:
            self.cancel(state)

    def submit(self, request: SequenceRequest, sink: EventSink, client: str = "") -> RequestState:
        self.check_admitting()
        state = self.scheduler.submit(request, sink, client)
        note_submitted(state)
        self.wake()
        return state

    def cancel(self, state: RequestState) -> None:
        if not state.finished:
            self.scheduler.cancel(state)
            self.wake()

    def check_admitting(self) -> None:
        if not self.admitting:
            raise ShuttingDown("the server is shutting down and admits no new requests")
        if not self.healthy:
            raise WorkerUnavailable("no model replica is serving (a worker is restarting); retry shortly")

    def check_tokenizers(self) -> VocabReport:
        return self.tokenizers.report

    async def info(self) -> ServerInfo:
        infos = await asyncio.gather(*(r.info() for r in self.replicas.values()))
        replicas = tuple(ReplicaLoad(info=info, healthy=info.id in self.healthy,
                                     admitting=info.id not in self.scheduler.retiring,
                                     live_sequences=len(self.scheduler.rows[info.id])) for info in infos)
        return ServerInfo(replicas=replicas, live_sequences=self.scheduler.live_sequences,
                          queued_sequences=self.scheduler.queued_sequences,
                          kv_tokens_used=self.scheduler.kv_tokens_used(), max_seq_len=self.limits.max_seq_len,
                          shared_vocab_size=self.tokenizers.shared.count)

    # -- the step loop, one per replica -----------------------------------------------------------------
    async def _run(self, replica: Replica) -> None:
        wakeup = self._wakeups[replica.id]
        while True:
            wakeup.clear()
            plan = self.scheduler.next_plan(replica.id)
            if plan is None:
                await wakeup.wait()
                continue
            try:
                started = perf_counter()
                result = await replica.execute(plan)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any worker failure is recovered from the same way
                await self._recover(replica, exc)
                continue
            self.calls += 1
            self.metrics.worker_call(replica.id, plan, result, perf_counter() - started)
            self.scheduler.succeeded(replica.id, plan)
            for sample, tokens, logprobs in zip(self.scheduler.samples_of(replica.id, plan), result.token_ids,
                                                result.logprobs):
                if not sample.done:
                    sample.owner.sink.deliver(self.output.advance(sample.output, tokens, logprobs))

    async def _recover(self, replica: Replica, exc: Exception) -> None:
        cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the worker's own exception
        message = f"model worker failed during a step ({type(cause).__name__}: {_first_line(cause)})"
        self.metrics.worker_restart(replica.id)
        for state in self.scheduler.failed_call(replica.id, worker_lost=isinstance(exc, WorkerLost)):
            log.error("replica %s: ending the request that failed the worker again when run alone", replica.id,
                      extra={"request_id": state.request_id})
            state.sink.fail(WorkerUnavailable(f"{message}; this request failed the worker again when retried alone, "
                                              f"so it was ended"))
            self.scheduler.cancel(state)
        moved = self.scheduler.requeue(replica.id)
        log.error("replica %s: %s; %d samples continue elsewhere or after its restart", replica.id, message, moved)
        self._set_healthy(replica.id, False)
        self.wake()
        delay = 1.0
        while True:
            try:
                await replica.recover()
                break
            except asyncio.CancelledError:
                raise
            except Exception as again:  # noqa: BLE001
                log.error("replica %s: recovery failed (%s); retrying in %.0f s", replica.id, _first_line(again), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        log.info("replica %s is back", replica.id)
        self._set_healthy(replica.id, True)

    async def _watch_stalls(self, every_s: float = 0.5) -> None:
        """End requests whose consumer has not taken an event for stream_stall_s while its buffer was full. Their
        rows and queue places are freed at once; the client gets the status when it next reads."""
        full_since: dict[int, float] = {}
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every_s)
            now = loop.time()
            live = {id(state): state for state in self.scheduler.live_requests()}
            full_since = {key: since for key, since in full_since.items() if key in live}
            for key, state in live.items():
                if not state.sink.full:
                    full_since.pop(key, None)
                    continue
                since = full_since.setdefault(key, now)
                if now - since >= self.settings.stream_stall_s:
                    log.warning("ending a request whose client read nothing for %.0f s", now - since,
                                extra={"request_id": state.request_id})
                    self.scheduler.cancel(state)
                    state.sink.fail(StreamStalled(f"the client read nothing for {self.settings.stream_stall_s:g} s "
                                                  f"while its stream buffer was full, so the server ended the "
                                                  f"stream"), drop_pending=True)
                    self.wake()

    # -- shutdown ------------------------------------------------------------------------------------------
    async def drain(self, grace_s: float) -> None:
        """Stop admitting, let in-flight streams finish for up to grace_s, then end the rest with UNAVAILABLE."""
        was = self.serving
        self.admitting = False
        if was:
            self._on_health_change(False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self.scheduler.has_work() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for state in self.scheduler.fail_all():
            state.sink.fail(ShuttingDown(f"the server shut down before this request finished "
                                         f"(drain period {grace_s:g} s)"))
        tasks = list(self._tasks.values()) + ([self._watchdog] if self._watchdog else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tokenize.shutdown(wait=False)

    def shutdown_replicas(self) -> None:
        for replica in self.replicas.values():
            replica.shutdown()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__

