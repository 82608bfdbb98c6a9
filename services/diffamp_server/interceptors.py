"""Server interceptors: request ids, counting and the finished-request log line (outermost); bearer-token
auth; and undecodable requests turned into INVALID_ARGUMENT."""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from .calls import REQUEST_ID_KEY, SERVICE_PREFIX, Call, accepted_request_id
from .metrics import NO_METRICS

log = logging.getLogger(__name__)

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


class CallInterceptor(grpc.aio.ServerInterceptor):
    """A calls.Call for every AmplificationService RPC (health and reflection are left alone): the request id is
    taken from `x-request-id` or made, sent back in the initial metadata at once and in the trailing metadata
    with the status; when the RPC ends it is counted and logged with its final code. Put it first, so a request
    refused for its token is counted too."""

    def __init__(self, metrics=NO_METRICS, log_prompts: bool = False):
        self.metrics = metrics
        self.log_prompts = log_prompts

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(SERVICE_PREFIX):
            return handler
        rpc = method[len(SERVICE_PREFIX):]
        given = next((v for k, v in handler_call_details.invocation_metadata or () if k == REQUEST_ID_KEY), None)
        if handler.unary_unary:
            return handler._replace(unary_unary=self._wrap(handler.unary_unary, rpc, given))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._wrap(handler.unary_stream, rpc, given))
        return handler

    def _begin(self, rpc: str, given, context) -> Call:
        call = Call(rpc, accepted_request_id(given), context.peer() or "", self.metrics, self.log_prompts)
        call.begin()
        context.set_trailing_metadata(((REQUEST_ID_KEY, call.id),))
        return call

    @staticmethod
    async def _announce(call: Call, context) -> None:
        try:
            await context.send_initial_metadata(((REQUEST_ID_KEY, call.id),))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the client may be gone already; the RPC's own code will say so
            log.debug("could not send the initial metadata", exc_info=True)

    @staticmethod
    def _end(call: Call, error: BaseException | None, context) -> None:
        try:
            call.finish(_final_code(error, context))
        except Exception:  # noqa: BLE001 - accounting must never change an RPC's outcome
            log.exception("could not record the end of an RPC")

    def _wrap(self, behavior, rpc: str, given):
        if inspect.isasyncgenfunction(behavior):
            async def stream_behavior(request, context):
                call = self._begin(rpc, given, context)
                error = None
                try:
                    await self._announce(call, context)
                    async for item in behavior(request, context):
                        yield item
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    self._end(call, error, context)
            return stream_behavior

        async def unary_behavior(request, context):
            call = self._begin(rpc, given, context)
            error = None
            try:
                await self._announce(call, context)
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._end(call, error, context)
        return unary_behavior


def _final_code(error: BaseException | None, context) -> str:
    """The status the client gets: what the handler aborted with, CANCELLED or DEADLINE_EXCEEDED when its task
    was cancelled, UNKNOWN for an exception grpc answers itself, else OK."""
    if isinstance(error, asyncio.CancelledError):
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    code = context.code()
    if code is not None:
        return code.name
    return "OK" if error is None else "UNKNOWN"
