"""Domain errors as OpenAI error bodies and HTTP codes: the HTTP sibling of status.py.

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

400 invalid field (param names the OpenAI field), 401 missing or wrong token, 404 unknown model or path,
413 body too large, 429 admission queue full, 503 draining or no worker serving, 500 anything else.
"""

from __future__ import annotations

import json
import logging

from starlette.responses import JSONResponse

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


class HttpError(Exception):
    """An error that only the HTTP face has (auth, routing, body size, unsupported fields)."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def from_domain(exc: Exception, params: ParamNames | None = None) -> HttpError:
    """The HTTP error for any exception a handler raised. Only the domain's own errors are client-facing;
    anything else is a bug, answered 500 and logged with its traceback."""
    if isinstance(exc, HttpError):
        return exc
    if not isinstance(exc, DiffampError):
        log.error("unexpected error in the HTTP API", exc_info=exc)
        return HttpError(500, f"internal error: {type(exc).__name__}", "server_error", code="internal_error")
    status, type_ = next(((s, t) for cls, s, t in _STATUS if isinstance(exc, cls)), (500, "server_error"))
    if isinstance(exc, InvalidArgument):
        param = (params or ParamNames()).of(exc.field)
        return HttpError(status, f"{param}: {exc.description}", type_, param, "invalid_value")
    return HttpError(status, str(exc), type_, code=exc.reason.lower())


def error_response(error: HttpError) -> JSONResponse:
    return JSONResponse(body(error.message, error.type, error.param, error.code), status_code=error.status,
                        headers=headers(error))


def headers(error: HttpError) -> dict[str, str]:
    return {"retry-after": str(RETRY_AFTER_S)} if error.status in (429, 503) else {}


def sse_event(error: HttpError) -> str:
    """An error after a stream's first chunk: its status line has gone, so it goes as a data event (the openai
    client raises APIError on it), and the stream ends without [DONE]."""
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
