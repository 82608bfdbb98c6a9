"""Opening a channel to a diffamp server: address, TLS, bearer token, and status messages for people."""

from __future__ import annotations

import grpc

from diffamp.v1 import diffamp_pb2_grpc

DEFAULT_SERVER = "127.0.0.1:50051"


class _BearerToken(grpc.AuthMetadataPlugin):
    def __init__(self, token: str):
        self._token = token

    def __call__(self, context, callback):
        callback((("authorization", f"Bearer {self._token}"),), None)


def open_channel(server: str = DEFAULT_SERVER, *, tls_ca: str | None = None, token: str | None = None,
                 max_message_bytes: int = 64 * 1024 * 1024) -> grpc.Channel:
    """A channel to `server`. With tls_ca, TLS verified against that CA file; a token is sent as a bearer token.

    Without TLS the token is sent in clear text, which only makes sense on a trusted network or loopback.
    """
    options = [("grpc.max_receive_message_length", max_message_bytes)]
    if tls_ca:
        with open(tls_ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        if token:
            creds = grpc.composite_channel_credentials(creds, grpc.metadata_call_credentials(_BearerToken(token)))
        return grpc.secure_channel(server, creds, options=options)
    channel = grpc.insecure_channel(server, options=options)
    if token:
        channel = grpc.intercept_channel(channel, _TokenInterceptor(token))
    return channel


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
