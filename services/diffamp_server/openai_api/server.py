"""uvicorn serving the app in the gateway's own event loop, as one more task beside grpc.aio.

The socket is bound here (host as --host, port --http-port, 0 picks a free one), so a busy port fails start
with OSError like the gRPC port does, and the bound port is known. uvicorn's signal handling is off: SIGTERM
belongs to lifecycle.serve, which drains the gateway first and then stops this server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

from ..gateway import Gateway
from ..metrics import NO_METRICS
from .app import ApiSettings, build_app

log = logging.getLogger(__name__)
KEEP_ALIVE_S = 30
CLOSE_TIMEOUT_S = 2


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        yield


def bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class HttpServer:
    def __init__(self, server: _Server, task: asyncio.Task, port: int):
        self.server = server
        self.task = task
        self.port = port

    async def stop(self) -> None:
        """Stop accepting and close the connections. The gateway has drained by now, so streams have ended; idle
        keep-alive connections are cut rather than closed politely (a TLS close waits for the client's reply,
        which an idle client never sends), and anything still open gets CLOSE_TIMEOUT_S."""
        for connection in list(self.server.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if transport is not None and (cycle is None or cycle.response_complete):
                transport.abort()
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), CLOSE_TIMEOUT_S + 2)
        except asyncio.TimeoutError:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def start_http(gateway: Gateway, settings: ApiSettings, *, host: str, port: int, tls_cert: str = "",
                     tls_key: str = "", metrics=NO_METRICS) -> HttpServer:
    sock = bind(host, port)
    config = uvicorn.Config(build_app(gateway, settings, metrics), lifespan="off", log_config=None, access_log=False,
                            ssl_certfile=tls_cert or None, ssl_keyfile=tls_key or None, timeout_keep_alive=KEEP_ALIVE_S,
                            timeout_graceful_shutdown=CLOSE_TIMEOUT_S, server_header=False)
    server = _Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="diffamp-http")
    while not server.started:
        if task.done():
            sock.close()
            task.result()
            raise RuntimeError("the HTTP server stopped while starting")
        await asyncio.sleep(0.01)
    return HttpServer(server, task, sock.getsockname()[1])
