"""Server interceptors: bearer-token auth, and undecodable requests turned into INVALID_ARGUMENT."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
"""Methods that answer without the bearer token: only health, so probes work. Reflection needs the token."""


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        if hmac.compare_digest(given.encode() if isinstance(given, str) else given, self._expected):
            return handler
        return _rejecting(handler)


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request whose bytes are not a valid message; handlers answer INVALID_ARGUMENT."""

    error: str


class DecodeGuardInterceptor(grpc.aio.ServerInterceptor):
    """Without it, garbage bytes make grpc answer UNKNOWN from inside its own deserializer."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer

        def guarded(data: bytes):
            try:
                return decode(data)
            except DecodeError as exc:
                return Undecodable(str(exc))

        return handler._replace(request_deserializer=guarded)


def _rejecting(handler):
    """A handler of the same kind as `handler` that answers UNAUTHENTICATED and does nothing else."""

    async def reject(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

    async def reject_stream(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        yield  # pragma: no cover - makes this an async generator, as a streaming handler must be

    args = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(reject, **args)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(reject_stream, **args)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(reject, **args)
    return grpc.stream_stream_rpc_method_handler(reject_stream, **args)
