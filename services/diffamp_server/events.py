"""What the gateway hands to a request's consumer: one event per sample per worker call, and the sink
interface every consumer (a gRPC stream, a sweep, the library API) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .errors import DiffampError
from .plan import TokenLogprobs

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_STOP_STRING = "stop_string"


@dataclass
class SampleEvent:
    """What one worker call adds to one sample. finish_reason is set on the sample's last event only."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprobs] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seed: int = 0


class EventSink(Protocol):
    """Where a request's events go. The scheduler stops advancing a request's samples while its sink is full."""

    @property
    def full(self) -> bool: ...

    def deliver(self, event: SampleEvent) -> None: ...

    def fail(self, error: DiffampError, drop_pending: bool = False) -> None:
        """End the request with `error`: after the events already delivered, or instead of them."""


class ListSink:
    """Collects every event in memory, per sample index: for the library API and tests. Never full."""

    full = False

    def __init__(self):
        self.events: dict[int, list[SampleEvent]] = {}
        self.error: DiffampError | None = None

    def deliver(self, event: SampleEvent) -> None:
        self.events.setdefault(event.index, []).append(event)

    def fail(self, error: DiffampError, drop_pending: bool = False) -> None:
        self.error = error
