"""Domain errors to gRPC statuses, with google.rpc details (ErrorInfo, and BadRequest for invalid fields)."""

from __future__ import annotations

import functools
import inspect
import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .calls import REQUEST_ID_KEY, current_call
from .errors import DiffampError, InvalidArgument, Overloaded, ShuttingDown, StreamStalled, WorkerUnavailable
from .interceptors import Undecodable

log = logging.getLogger(__name__)
DOMAIN = "diffamp.v1"

_CODES = {
    InvalidArgument: code_pb2.INVALID_ARGUMENT,
    Overloaded: code_pb2.RESOURCE_EXHAUSTED,
    WorkerUnavailable: code_pb2.UNAVAILABLE,
    ShuttingDown: code_pb2.UNAVAILABLE,
    StreamStalled: code_pb2.RESOURCE_EXHAUSTED,
}


def to_status(exc: DiffampError) -> grpc.Status:
    code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), code_pb2.INTERNAL)
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN))
    details.append(info)
    if isinstance(exc, InvalidArgument):
        bad = any_pb2.Any()
        bad.Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.description)]))
        details.append(bad)
    return rpc_status.to_status(status_pb2.Status(code=code, message=str(exc), details=details))


def grpc_errors(method):
    """Aborts the RPC with a mapped status when a handler raises. Only the domain's own errors (errors.py) become
    client-facing codes; anything else is a bug and answers INTERNAL, logged with its traceback."""

    async def abort(context, exc: Exception):
        call = current_call()
        call.failed(exc)
        if isinstance(exc, DiffampError):
            status = to_status(exc)
            # abort replaces the trailing metadata set earlier: the request id goes in again beside the details
            trailing = tuple(status.trailing_metadata)
            if call.id:
                trailing += ((REQUEST_ID_KEY, call.id),)
            await context.abort(status.code, status.details, trailing)
        log.error("unexpected error in %s", method.__name__, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

    if _is_async_gen(method):
        @functools.wraps(method)
        async def stream_wrapper(self, request, context):
            try:
                _check_decoded(request)
                async for item in method(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status
                await abort(context, exc)
        return stream_wrapper

    @functools.wraps(method)
    async def unary_wrapper(self, request, context):
        try:
            _check_decoded(request)
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await abort(context, exc)
    return unary_wrapper


def _check_decoded(request) -> None:
    if isinstance(request, Undecodable):
        raise InvalidArgument("request", f"not a valid message for this method ({request.error})")


def _is_async_gen(fn) -> bool:
    return inspect.isasyncgenfunction(fn)
