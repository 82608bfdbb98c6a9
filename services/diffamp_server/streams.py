"""A bounded buffer between the step loop and one client's stream.

The step loop delivers events without waiting; the stream handler takes them as its client reads. When the
buffered bytes pass the limit the buffer reports `full`, the scheduler stops advancing the request's samples
(they keep their KV rows), and once the handler has drained it below half the limit the step loop is woken.
While other requests wait for rows, the scheduler gives a paused request's rows up (its samples continue later
from their tokens), so a slow reader costs a bounded amount of memory and never slows anyone else; one that
stays full for the stall limit has its request cancelled (gateway.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from .errors import DiffampError
from .events import SampleEvent

EVENT_OVERHEAD_BYTES = 64
LOGPROB_BYTES = 48
TOP_LOGPROB_BYTES = 32


def event_bytes(event: SampleEvent) -> int:
    """About what the event costs in memory and on the wire."""
    return (EVENT_OVERHEAD_BYTES + 4 * len(event.text) + 8 * len(event.token_ids)
            + sum(LOGPROB_BYTES + TOP_LOGPROB_BYTES * len(lp.top_ids) for lp in event.logprobs))


class StreamBuffer:
    def __init__(self, limit_bytes: int, on_drained: Callable[[], None]):
        self.limit_bytes = limit_bytes
        self.on_drained = on_drained
        self.items: deque[SampleEvent] = deque()
        self.bytes = 0
        self.error: DiffampError | None = None
        self._ready = asyncio.Event()
        self._paused = False
        """Set once the buffer was full (the scheduler may have paused the request); cleared by the wake-up."""

    @property
    def full(self) -> bool:
        return self.bytes >= self.limit_bytes

    def deliver(self, event: SampleEvent) -> None:
        self.items.append(event)
        self.bytes += event_bytes(event)
        self._paused = self._paused or self.full
        self._ready.set()

    def fail(self, error: DiffampError, drop_pending: bool = False) -> None:
        """End the stream with `error`, after the events already buffered unless drop_pending."""
        self.error = error
        if drop_pending:
            self.items.clear()
            self.bytes = 0
        self._ready.set()

    async def get(self) -> SampleEvent:
        """The next event; raises the error the request failed with once the events before it are taken."""
        while not self.items:
            if self.error is not None:
                raise self.error
            self._ready.clear()
            await self._ready.wait()
        event = self.items.popleft()
        self.bytes -= event_bytes(event)
        if self._paused and self.bytes < self.limit_bytes // 2:
            # Whatever the events' sizes: the pop that leaves the buffer below half is rarely the one that took it
            # below the limit, and without this wake-up a paused request on an idle server would wait forever.
            self._paused = False
            self.on_drained()
        return event
