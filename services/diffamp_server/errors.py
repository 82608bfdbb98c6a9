"""Domain errors. The gRPC layer maps each to one status code; nothing else needs to know about gRPC."""

from __future__ import annotations


class DiffampError(Exception):
    """Base of every error a client may see. `reason` is the google.rpc.ErrorInfo reason."""

    reason = "INTERNAL"


class InvalidArgument(DiffampError):
    """A request field breaks a rule. The message names the field, the value and the limit."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, description: str):
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


class Overloaded(DiffampError):
    """The admission queue is full."""

    reason = "QUEUE_FULL"


class WorkerUnavailable(DiffampError):
    """A model worker died or is restarting."""

    reason = "WORKER_UNAVAILABLE"


class ShuttingDown(DiffampError):
    """The server is draining and admits no new work."""

    reason = "SHUTTING_DOWN"


class StreamStalled(DiffampError):
    """The client stopped reading its stream for longer than the server waits."""

    reason = "STREAM_STALLED"
