import asyncio
import threading
from pathlib import Path

import pytest

from pairs import build_pair


@pytest.fixture(scope="session")
def pair_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pairs")


@pytest.fixture(scope="session")
def llama_pair(pair_root):
    return build_pair(pair_root, "llama")


@pytest.fixture(scope="session")
def gpt2_pair(pair_root):
    return build_pair(pair_root, "gpt2")


@pytest.fixture(scope="session")
def vocab_pair(pair_root):
    return build_pair(pair_root, "vocab")


class ServerThread:
    """A real diffamp server (gateway + Ray workers + grpc.aio) on its own event loop in a thread."""

    def __init__(self, config):
        from diffamp_server.server import start_server

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running = self.run(start_server(config), timeout=180)
        self.address = f"127.0.0.1:{self.running.port}"

    def run(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace_s=0.0):
        self.run(self.running.stop(grace_s))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
