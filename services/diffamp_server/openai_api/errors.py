"""Domain errors as OpenAI error bodies and HTTP codes: the HTTP sibling of status.py.

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

400 invalid field (param names the OpenAI field), 401 missing or wrong token, 404 unknown model or path,
413 body too large, 429 admission queue full, 503 draining or no worker serving, 500 anything else.

Every error answered goes through error_response or sse_event, which note it on the request's calls.Call: its
log line names the error, and its final code (grpc_code) is the error's, even when a stream's status was 200.
"""

from __future__ import annotations

import json
import logging

from starlette.responses import JSONResponse

from ..calls import current_call
from ..errors import DiffampError, InvalidArgument, Overloaded, ShuttingDown, StreamStalled, WorkerUnavailable

log = logging.getLogger(__name__)

_STATUS = [
    (InvalidArgument, 400, "invalid_request_error"),
    (Overloaded, 429, "rate_limit_error"),
    (StreamStalled, 429, "rate_limit_error"),
    (ShuttingDown, 503, "server_error"),
    (WorkerUnavailable, 503, "server_error"),
]
RETRY_AFTER_S = 1
"""What a 429 or 503 tells the client to wait; the openai client honours Retry-After."""
CLIENT_LEFT = 499
"""The outcome of a request whose client went away first (nginx's code; nothing is sent)."""
GRPC_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              405: "UNIMPLEMENTED", 413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED", CLIENT_LEFT: "CANCELLED",
              500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
"""HTTP outcomes as the gRPC status code that says the same (as status.py maps the domain's errors), so metrics
and logs have one set of codes for both APIs."""


def grpc_code(status: int) -> str:
    """The gRPC status code name for an HTTP outcome."""
    if status in GRPC_CODES:
        return GRPC_CODES[status]
    return "OK" if status < 400 else "INVALID_ARGUMENT" if status < 500 else "INTERNAL"


class HttpError(Exception):
    """An error that only the HTTP face has (auth, routing, body size, unsupported fields), or a domain error as
    the HTTP face answers it. For the finished-request log line, `reason` is its error_reason (a domain error's
    own, as over gRPC) and `field` its error_field (the OpenAI field)."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.reason = reason or (code or type_).upper()

    @property
    def field(self) -> str | None:
        return self.param


def body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def from_domain(exc: Exception, params: ParamNames | None = None) -> HttpError:
    """The HTTP error for any exception a handler raised. Only the domain's own errors are client-facing;
    anything else is a bug, answered 500 and logged with its traceback."""
    if isinstance(exc, HttpError):
        return exc
    if not isinstance(exc, DiffampError):
        log.error("unexpected error in the HTTP API", exc_info=exc)
        return HttpError(500, f"internal error: {type(exc).__name__}", "server_error", code="internal_error",
                         reason=type(exc).__name__)
    status, type_ = next(((s, t) for cls, s, t in _STATUS if isinstance(exc, cls)), (500, "server_error"))
    if isinstance(exc, InvalidArgument):
        param = (params or ParamNames()).of(exc.field)
        return HttpError(status, f"{param}: {exc.description}", type_, param, "invalid_value", exc.reason)
    return HttpError(status, str(exc), type_, code=exc.reason.lower(), reason=exc.reason)


def error_response(error: HttpError) -> JSONResponse:
    current_call().failed(error)
    return JSONResponse(body(error.message, error.type, error.param, error.code), status_code=error.status,
                        headers=headers(error))


def headers(error: HttpError) -> dict[str, str]:
    return {"retry-after": str(RETRY_AFTER_S)} if error.status in (429, 503) else {}


def sse_event(error: HttpError) -> str:
    """An error after a stream's first chunk: its status line has gone, so it goes as a data event (the openai
    client raises APIError on it), and the stream ends without [DONE]."""
    current_call().failed(error)
    return f"data: {json.dumps(body(error.message, error.type, error.param, error.code))}\n\n"


class ParamNames:
    """Proto-style field paths (request.py's InvalidArgument.field) as the OpenAI field the client sent."""

    def __init__(self, *, chat: bool = True, max_tokens_field: str = "max_tokens", alpha_in_model: bool = False):
        self.chat = chat
        self.max_tokens_field = max_tokens_field
        self.alpha_in_model = alpha_in_model

    def of(self, field: str) -> str:
        prompt = "messages" if self.chat else "prompt"
        for proto, openai in (("prompt.conversation.messages", "messages"), ("prompt.token_ids.ids", "prompt")):
            if field.startswith(proto):
                return openai + field[len(proto):]
        if field == "prompt" or field.startswith("prompt."):
            return prompt
        if field == "sampling.max_new_tokens":
            return self.max_tokens_field
        if field == "sampling.min_new_tokens":
            return "min_tokens"
        if field.startswith("sampling."):
            return field[len("sampling."):]
        if field == "alpha" and self.alpha_in_model:
            return "model"
        if field == "logprobs" and self.chat:
            return "top_logprobs"
        return field
