"""Opening a channel to a diffamp server: address, TLS, bearer token, and status messages for people."""

from __future__ import annotations

import grpc
import grpc.aio

from diffamp.v1 import diffamp_pb2_grpc

DEFAULT_SERVER = "127.0.0.1:50051"
_CONNECT_FAILURES = ("failed to connect", "Connection refused", "connections to all backends failing",
                     "DNS resolution failed", "Socket closed")


def _options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)]


def _tls(tls_ca: str) -> grpc.ChannelCredentials:
    with open(tls_ca, "rb") as f:
        return grpc.ssl_channel_credentials(root_certificates=f.read())


def open_channel(server: str = DEFAULT_SERVER, *, tls_ca: str | None = None,
                 max_message_bytes: int = 64 * 1024 * 1024) -> grpc.Channel:
    """A channel to `server`; with tls_ca, TLS verified against that CA file."""
    if tls_ca:
        return grpc.secure_channel(server, _tls(tls_ca), options=_options(max_message_bytes))
    return grpc.insecure_channel(server, options=_options(max_message_bytes))


def open_aio_channel(server: str = DEFAULT_SERVER, *, tls_ca: str | None = None,
                     max_message_bytes: int = 64 * 1024 * 1024) -> grpc.aio.Channel:
    """open_channel for asyncio clients (the sweep)."""
    if tls_ca:
        return grpc.aio.secure_channel(server, _tls(tls_ca), options=_options(max_message_bytes))
    return grpc.aio.insecure_channel(server, options=_options(max_message_bytes))


REQUEST_ID_KEY = "x-request-id"


def new_request_id() -> str:
    """An id for one CLI invocation: the server logs every line about its calls with it, and returns it."""
    import uuid

    return uuid.uuid4().hex


class MetadataStub:
    """A generated stub, synchronous or asyncio, that sends `metadata` with every call."""

    def __init__(self, stub, metadata: tuple[tuple[str, str], ...]):
        self._stub = stub
        self._metadata = tuple(metadata)

    def __getattr__(self, name: str):
        method = getattr(self._stub, name)

        def call(request, **kwargs):
            kwargs["metadata"] = tuple(kwargs.get("metadata") or ()) + self._metadata
            return method(request, **kwargs)

        return call


class BearerTokenStub(MetadataStub):
    """A stub that sends `authorization: Bearer <token>` with every call.

    Without TLS the token travels in clear text, which only makes sense on loopback or a trusted network."""

    def __init__(self, stub, token: str):
        super().__init__(stub, (("authorization", f"Bearer {token}"),))


def stub(channel, token: str | None = None, request_id: str | None = None):
    """The AmplificationService stub on `channel` (sync or asyncio), sending `token` and an `x-request-id` when
    given."""
    plain = diffamp_pb2_grpc.AmplificationServiceStub(channel)
    metadata = ((("authorization", f"Bearer {token}"),) if token else ()) + \
        (((REQUEST_ID_KEY, request_id),) if request_id else ())
    return MetadataStub(plain, metadata) if metadata else plain


def no_server_message(server: str) -> str:
    return (f"no diffamp server answers at {server}. Start one with `diffamp serve`, or point --server at it "
            f"(add --wait SECONDS right after starting one).")


def check_server(channel: grpc.Channel, server: str, timeout_s: float = 5.0) -> None:
    """Wait up to timeout_s for `server` to answer; a readable ConnectionError when it does not."""
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise ConnectionError(no_server_message(server) + f" (waited {timeout_s:g} s)") from None


def request_id_of(err) -> str | None:
    """The request id the server returned with a failed call (trailing metadata, else initial), if any."""
    for name in ("trailing_metadata", "initial_metadata"):
        try:
            metadata = getattr(err, name)() if hasattr(err, name) else None
        except Exception:  # noqa: BLE001 - a call that never reached the server has none
            metadata = None
        for key, value in metadata or ():
            if key == REQUEST_ID_KEY:
                return value.decode() if isinstance(value, bytes) else value
    return None


def describe_error(err: grpc.RpcError, server: str, request_id: str | None = None) -> str:
    """A status for people: the code and message, or a sentence when nothing listens at `server`. The request id
    the server returned (else `request_id`, the one sent) follows, to find the call in the server's logs."""
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    if code == grpc.StatusCode.UNAVAILABLE and any(s in (details or "") for s in _CONNECT_FAILURES):
        return no_server_message(server)
    text = f"{code.name if code else 'UNKNOWN'}: {details}"
    request_id = request_id_of(err) or request_id
    return f"{text} (request id {request_id})" if request_id else text
