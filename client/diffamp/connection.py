"""Opening a channel to a diffamp server: address, TLS, bearer token, and status messages for people."""

from __future__ import annotations

import grpc
import grpc.aio

from diffamp.v1 import diffamp_pb2_grpc

DEFAULT_SERVER = "127.0.0.1:50051"


class _BearerToken(grpc.AuthMetadataPlugin):
    def __init__(self, token: str):
        self._token = token

    def __call__(self, context, callback):
        callback((("authorization", f"Bearer {self._token}"),), None)


def _tls_credentials(tls_ca: str, token: str | None) -> grpc.ChannelCredentials:
    with open(tls_ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    if token:
        creds = grpc.composite_channel_credentials(creds, grpc.metadata_call_credentials(_BearerToken(token)))
    return creds


def open_channel(server: str = DEFAULT_SERVER, *, tls_ca: str | None = None, token: str | None = None,
                 max_message_bytes: int = 64 * 1024 * 1024) -> grpc.Channel:
    """A channel to `server`. With tls_ca, TLS verified against that CA file; a token is sent as a bearer token.

    Without TLS the token is sent in clear text, which only makes sense on a trusted network or loopback.
    """
    options = [("grpc.max_receive_message_length", max_message_bytes)]
    if tls_ca:
        return grpc.secure_channel(server, _tls_credentials(tls_ca, token), options=options)
    channel = grpc.insecure_channel(server, options=options)
    if token:
        channel = grpc.intercept_channel(channel, _TokenInterceptor(token))
    return channel


def open_aio_channel(server: str = DEFAULT_SERVER, *, tls_ca: str | None = None,
                     token: str | None = None) -> grpc.aio.Channel:
    """open_channel for asyncio clients (the sweep)."""
    if tls_ca:
        return grpc.aio.secure_channel(server, _tls_credentials(tls_ca, token))
    return grpc.aio.insecure_channel(server, interceptors=[_AioTokenInterceptor(token)] if token else None)


class _AioTokenInterceptor(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str):
        self._metadata = (("authorization", f"Bearer {token}"),)

    async def intercept_unary_stream(self, continuation, details, request):
        details = details._replace(metadata=tuple(details.metadata or ()) + self._metadata)
        return await continuation(details, request)


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, token: str):
        self._metadata = (("authorization", f"Bearer {token}"),)

    def _details(self, details):
        return details._replace(metadata=tuple(details.metadata or ()) + self._metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


def stub(channel: grpc.Channel) -> diffamp_pb2_grpc.AmplificationServiceStub:
    return diffamp_pb2_grpc.AmplificationServiceStub(channel)


def check_server(channel: grpc.Channel, server: str, timeout_s: float = 5.0) -> None:
    """Fail fast, with a readable message, when nothing answers at `server`."""
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise ConnectionError(
            f"no diffamp server answers at {server} (waited {timeout_s:g} s). Start one with `diffamp serve`, "
            f"or point --server at it."
        ) from None


def describe_error(err: grpc.RpcError) -> str:
    code = err.code().name if hasattr(err, "code") and err.code() else "UNKNOWN"
    return f"{code}: {err.details() if hasattr(err, 'details') else err}"
