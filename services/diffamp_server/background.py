"""A whole server (gateway, workers, grpc.aio) on its own event loop in a thread, for notebooks, tests and
benchmarks: `srv = BackgroundServer(ServerConfig(port=0)); srv.address; srv.stop()`."""

from __future__ import annotations

import asyncio
import threading

from .config import ServerConfig
from .lifecycle import RunningServer, start_server


class BackgroundServer:
    def __init__(self, config: ServerConfig, start_timeout_s: float = 300):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="diffamp-server")
        self.thread.start()
        self.config = config
        self.running: RunningServer = self.run(start_server(config), timeout=start_timeout_s)
        self.address = f"{config.host}:{self.running.port}"

    def run(self, coro, timeout: float = 60):
        """Run a coroutine on the server's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace_s: float = 0.0) -> None:
        self.run(self.running.stop(grace_s))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
