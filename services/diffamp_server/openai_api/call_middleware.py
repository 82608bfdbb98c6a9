"""The HTTP sibling of interceptors.CallInterceptor: a calls.Call for every request to the API's routes (health and
unknown paths are left alone), so HTTP requests are counted and logged as RPCs are, with `rpc` values of their
own (RPCS). The request id is the client's `x-request-id` header when acceptable, else a new one, and goes back
in the `x-request-id` response header, a stream's before its first event. The call is the running request's
(calls.current_call) in the request's task and in the tasks it starts, where a stream's body runs. When the
request ends it is counted and logged with the gRPC code for its outcome (errors.grpc_code): the client leaving
first is CANCELLED, an error answered is its own code even after a stream's 200, else the response's status.
Put it outside everything else, so a request refused for its token is counted too.
"""

from __future__ import annotations

import asyncio
import logging

from ..calls import REQUEST_ID_KEY, Call, accepted_request_id
from ..clients import peer_of
from ..metrics import NO_METRICS
from .errors import CLIENT_LEFT, HttpError, grpc_code

log = logging.getLogger(__name__)

RPCS = {"/v1/chat/completions": "http.chat.completions", "/v1/completions": "http.completions",
        "/v1/models": "http.models"}
MODEL_PATH = "/v1/models/"
REQUEST_ID_HEADER = REQUEST_ID_KEY.encode()


def rpc_of(path: str) -> str | None:
    """The `rpc` label of a path, None for paths that are not counted."""
    return RPCS.get(path) or (RPCS["/v1/models"] if path.startswith(MODEL_PATH) else None)


def peer(scope) -> str:
    """The client's address as gRPC writes a peer, so log lines match."""
    client = scope.get("client")
    return peer_of(client[0], client[1]) if client else ""


class Exchange:
    """The request's receive and send, watched: the response's status, whether its body has gone in full, and
    whether the client left before that. The request id is added to the response's headers."""

    def __init__(self, receive, send, request_id: str):
        self._receive, self._send = receive, send
        self._id_header = (REQUEST_ID_HEADER, request_id.encode())
        self.status: int | None = None
        self.complete = False
        self.client_left = False

    async def receive(self):
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.complete:
            self.client_left = True
        return message

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message = {**message, "headers": [*message.get("headers", ()), self._id_header]}
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        await self._send(message)

    def outcome(self, error: BaseException | None, raised: BaseException | None) -> int:
        """The HTTP status that says how the request ended; `error` is the one answered, `raised` what escaped."""
        if self.client_left or isinstance(raised, asyncio.CancelledError):
            return CLIENT_LEFT
        if isinstance(error, HttpError):
            return error.status
        return self.status or 500


class CallMiddleware:
    def __init__(self, app, metrics=NO_METRICS, log_prompts: bool = False):
        self.app = app
        self.metrics = metrics
        self.log_prompts = log_prompts
        metrics.expect(sorted(set(RPCS.values())))

    async def __call__(self, scope, receive, send) -> None:
        rpc = rpc_of(scope["path"]) if scope["type"] == "http" else None
        if rpc is None:
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope["headers"] if k == REQUEST_ID_HEADER), None)
        call = Call(rpc, accepted_request_id(given), peer(scope), self.metrics, self.log_prompts)
        exchange = Exchange(receive, send, call.id)
        token = call.begin()
        raised = None
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except BaseException as exc:
            raised = exc
            raise
        finally:
            try:
                call.finish(grpc_code(exchange.outcome(call.error, raised)))
            except Exception:  # noqa: BLE001 - accounting must never change a request's outcome
                log.exception("could not record the end of an HTTP request")
            token.var.reset(token)
