"""Bearer-token auth for the HTTP API, the same rule as gRPC's interceptor: every path but /health needs
`Authorization: Bearer <token>`. And whom fairness counts a request against."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from .. import clients
from ..clients import peer_of
from .errors import HttpError, error_response

OPEN_PATHS = ("/health",)
"""Paths that answer without the bearer token: only health, as with gRPC."""


def client_key(request: Request) -> str:
    """Whom fairness counts a request against (clients.client_key): the same key as over gRPC."""
    peer = peer_of(request.client.host, request.client.port) if request.client else ""
    return clients.client_key(request.headers.get("authorization"), peer)


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
