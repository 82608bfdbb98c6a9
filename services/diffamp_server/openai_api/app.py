"""The Starlette app: routes, bearer-token auth, bounded bodies, server-sent events. Handlers translate in,
call the gateway, translate out (servicer.py's sibling).

Buffering: a stream sends each event as the gateway yields it, and uvicorn's send waits while the socket's
write buffer is full, so a slow reader stops pulling from the gateway, whose own bounded buffer (streams.py)
then pauses the request's samples. Nothing here holds more than one event per stream. A client that goes
away, streaming or not, has its request cancelled at once: its rows leave the batch at the next step.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from diffamp.common.defaults import GENERATE

from ..gateway import Gateway
from . import names
from .errors import HttpError, ParamNames, body, from_domain, headers, sse_event
from .token_bytes import token_bytes_fn
from .schemas import ChatRequest, CompletionRequest, unsupported_fields
from .translate import ChatOutput, CompletionOutput, Output, chat_input, completion_input, param_names

OPEN_PATHS = ("/health",)
"""Paths that answer without the bearer token: only health, as with gRPC."""
TOKEN_TEXT_CACHE = 1 << 16
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    auth_token: str
    max_body_bytes: int
    after_model: str
    before_model: str


class ClientGone(Exception):
    """The client disconnected before its response was ready."""


def error_response(error: HttpError) -> JSONResponse:
    return JSONResponse(body(error.message, error.type, error.param, error.code), status_code=error.status,
                        headers=headers(error))


def _data(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnected(receive, awaitable):
    """The awaitable's result, or ClientGone (the awaitable cancelled) if the client leaves first."""
    task = asyncio.ensure_future(awaitable)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, watch, return_exceptions=True)
    if task.cancelled():
        raise ClientGone()
    return task.result()


class EventStream(StreamingResponse):
    """Server-sent events whose generator is closed as soon as the client leaves, even while it waits for the
    gateway's next event (Starlette alone notices only when it next sends, depending on the ASGI version)."""

    media_type = "text/event-stream"

    async def __call__(self, scope, receive, send) -> None:
        try:
            await until_disconnected(receive, self.stream_response(send))
        except (ClientGone, OSError):
            pass
        finally:
            await self.body_iterator.aclose()


def client_key(request: Request) -> str:
    """Whom fairness counts a request against, as servicer.client_key: the token when there is one (the same
    key as over gRPC), else the client's address."""
    auth = request.headers.get("authorization")
    if auth:
        return "token:" + hashlib.sha256(auth.encode()).hexdigest()[:12]
    return request.client.host if request.client else ""


class BearerAuth:
    """ASGI middleware: every path but /health needs `Authorization: Bearer <token>`."""

    def __init__(self, app, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if hmac.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        response = error_response(HttpError(401, "missing or invalid bearer token (Authorization: Bearer TOKEN)",
                                            code="invalid_api_key"))
        response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)


def _param(loc: tuple) -> str | None:
    """A pydantic error location as an OpenAI param: ('messages', 0, 'content', 'str') -> messages[0].content."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier() and part not in ("str", "int", "float", "bool", "list",
                                                                             "dict", "none"):
            out += ("." if out else "") + part
    return out or None


async def parse(request: Request, model: type[BaseModel], limit: int):
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise HttpError(413, f"the body of {length} bytes exceeds the limit of {limit}", code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"the body exceeds the limit of {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise HttpError(400, f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise HttpError(400, "the body must be a JSON object")
    try:
        req = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(first["loc"])
        raise HttpError(400, f"{param or 'body'}: {first['msg']}", param=param, code="invalid_type") from None
    if unsupported := unsupported_fields(req):
        field, why = unsupported[0]
        raise HttpError(400, f"{field}: {why}", param=field, code="unsupported_parameter")
    return req


class Api:
    def __init__(self, gateway: Gateway, settings: ApiSettings):
        self.gateway = gateway
        self.settings = settings
        self.created = int(time.time())
        cache = functools.lru_cache(maxsize=TOKEN_TEXT_CACHE)
        self.token_text = cache(gateway.tokenizers.token_text)
        self.token_bytes = cache(token_bytes_fn(gateway.tokenizers.after, self.token_text))

    # -- generation ------------------------------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        try:
            req = await parse(request, ChatRequest, self.settings.max_body_bytes)
        except HttpError as exc:
            return error_response(exc)
        output = ChatOutput(model=req.model, token_text=self.token_text, token_bytes=self.token_bytes,
                            logprobs=bool(req.logprobs),
                            token_ids=bool(req.return_token_ids))
        return await self._generate(request, req, chat_input, output, opening=req.n or 1)

    async def completions(self, request: Request) -> Response:
        try:
            req = await parse(request, CompletionRequest, self.settings.max_body_bytes)
        except HttpError as exc:
            return error_response(exc)
        output = CompletionOutput(model=req.model, token_text=self.token_text, token_bytes=self.token_bytes,
                                  logprobs=req.logprobs is not None,
                                  token_ids=bool(req.return_token_ids))
        return await self._generate(request, req, completion_input, output, opening=0)

    async def _generate(self, request: Request, req, translate, output: Output, opening: int) -> Response:
        params: ParamNames | None = None
        events = None
        try:
            name_alpha = names.alpha_of(req.model)
            params = param_names(req, name_alpha)
            events = self.gateway.generate(translate(req, name_alpha), client_key(request))
            if not req.stream:
                await until_disconnected(request.receive, self._collect(events, output))
                return JSONResponse(output.whole())
            first = await until_disconnected(request.receive, anext(events))
        except ClientGone:
            return Response(status_code=499)
        except names.ModelNotFound as exc:
            return error_response(HttpError(404, str(exc), param="model", code="model_not_found"))
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error body
            if events is not None:
                await events.aclose()
            return error_response(from_domain(exc, params))
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return EventStream(self._sse(events, first, output, opening, include_usage, params), headers=SSE_HEADERS)

    @staticmethod
    async def _collect(events: AsyncIterator, output: Output) -> None:
        async for event in events:
            output.add(event)

    @staticmethod
    async def _sse(events: AsyncIterator, first, output: Output, opening: int, include_usage: bool,
                   params: ParamNames) -> AsyncIterator[str]:
        try:
            if opening:
                for chunk in output.opening_chunks(opening):
                    yield _data(chunk)
            event = first
            while event is not None:
                chunk = output.chunk(event)
                if chunk is not None:
                    yield _data(chunk)
                event = await anext(events, None)
            if include_usage:
                yield _data(output.usage_chunk())
            yield "data: [DONE]\n\n"
        except Exception as exc:  # noqa: BLE001 - after the first chunk an error can only be an event
            yield sse_event(from_domain(exc, params))
        finally:
            await events.aclose()

    # -- the rest --------------------------------------------------------------------------------------------
    def _model(self, name: str, alpha: float | None) -> dict:
        return {"id": name, "object": "model", "created": self.created, "owned_by": "diffamp",
                "alpha": GENERATE.alpha if alpha is None else alpha,
                "alpha_from": "request" if alpha is None else "name",
                "after": self.settings.after_model, "before": self.settings.before_model,
                "max_model_len": self.gateway.limits.max_seq_len}

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [self._model(n, a) for n, a in names.listed()]})

    async def model(self, request: Request) -> Response:
        name = request.path_params["model"]
        try:
            return JSONResponse(self._model(name, names.alpha_of(name)))
        except names.ModelNotFound as exc:
            return error_response(HttpError(404, str(exc), param="model", code="model_not_found"))

    async def health(self, request: Request) -> Response:
        serving = self.gateway.serving
        return JSONResponse({"status": "serving" if serving else "not_serving"}, status_code=200 if serving else 503)


async def _http_exception(request: Request, exc: HTTPException) -> Response:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return error_response(HttpError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=code))


def build_app(gateway: Gateway, settings: ApiSettings) -> Starlette:
    api = Api(gateway, settings)
    app = Starlette(routes=[
        Route("/v1/chat/completions", api.chat, methods=["POST"]),
        Route("/v1/completions", api.completions, methods=["POST"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/models/{model:path}", api.model, methods=["GET"]),
        Route("/health", api.health, methods=["GET"]),
    ], exception_handlers={HTTPException: _http_exception})
    if settings.auth_token:
        app.add_middleware(BearerAuth, token=settings.auth_token)
    return app
