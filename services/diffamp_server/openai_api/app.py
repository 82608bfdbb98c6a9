"""The Starlette app: routes and handlers. A handler parses the body (body.py), translates it (translate.py),
calls the gateway, and answers with JSON or server-sent events (sse.py): servicer.py's sibling. Auth is
auth.py's middleware; outside it, call_middleware.py gives each request its calls.Call, which the handlers
feed the prompt and every event, as servicer.py does.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from diffamp.common.defaults import GENERATE

from ..calls import Call, current_call
from ..gateway import Gateway
from ..metrics import NO_METRICS
from . import names
from .auth import BearerAuth, client_key
from .body import parse
from .call_middleware import CallMiddleware
from .errors import HttpError, ParamNames, error_response, from_domain, sse_event
from .schemas import ChatRequest, CompletionRequest
from .sse import ClientGone, EventStream, data, until_disconnected
from .token_bytes import token_bytes_fn
from .output import ChatOutput, CompletionOutput, Output
from .translate import chat_input, completion_input, param_names

TOKEN_TEXT_CACHE = 1 << 16
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    auth_token: str
    max_body_bytes: int
    after_model: str
    before_model: str
    log_prompts: bool = False


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
        call = current_call()
        params: ParamNames | None = None
        events = None
        try:
            name_alpha = names.alpha_of(req.model)
            params = param_names(req, name_alpha)
            inp = translate(req, name_alpha)
            call.note_prompt(inp.prompt)
            events = self.gateway.generate(inp, client_key(request))
            if not req.stream:
                await until_disconnected(request.receive, self._collect(events, output, call))
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
        return EventStream(self._sse(events, first, output, opening, include_usage, params, call),
                           headers=SSE_HEADERS)

    @staticmethod
    async def _collect(events: AsyncIterator, output: Output, call: Call) -> None:
        async for event in events:
            call.event(event)
            output.add(event)

    @staticmethod
    async def _sse(events: AsyncIterator, first, output: Output, opening: int, include_usage: bool,
                   params: ParamNames, call: Call) -> AsyncIterator[str]:
        try:
            if opening:
                for chunk in output.opening_chunks(opening):
                    yield data(chunk)
            event = first
            while event is not None:
                call.event(event)
                chunk = output.chunk(event)
                if chunk is not None:
                    yield data(chunk)
                event = await anext(events, None)
            if include_usage:
                yield data(output.usage_chunk())
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


def build_app(gateway: Gateway, settings: ApiSettings, metrics=NO_METRICS) -> CallMiddleware:
    """The Starlette app inside the CallMiddleware, outside even Starlette's own error handling, so that an
    unexpected error's 500 carries the request id too."""
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
    return CallMiddleware(app, metrics, settings.log_prompts)
