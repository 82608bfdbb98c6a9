"""CUDA graphs of a worker call's step, one per (batch bucket, KV bucket, step kind), captured at start, largest
first, in one shared memory pool, before the server reports SERVING. Replaying one launches the whole step
(both forwards, combine, sample, state update) as a single graph.

The step reads and writes only preallocated buffers (the KV store, the decode state), so replay needs nothing
but the inputs copied into those buffers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

import torch

log = logging.getLogger(__name__)


class StepGraphs:
    def __init__(self, step: Callable[[Hashable], None], keys: list, reset: Callable[[], None]):
        """step(key) runs one step at the key's shapes; reset() puts the state back to all-inactive. Keys are
        captured in the order given: largest first, so that smaller graphs reuse the pool's memory."""
        self.graphs: dict = {}
        self.capture_s = 0.0
        started = time.perf_counter()
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        for key in keys:
            reset()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                step(key)  # warm-up on a side stream, as torch.cuda.graph's documentation asks
            torch.cuda.current_stream().wait_stream(stream)
            reset()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                step(key)
            self.graphs[key] = graph
        reset()
        torch.cuda.synchronize()
        self.capture_s = time.perf_counter() - started
        log.info("captured %d CUDA graphs in %.1f s", len(self.graphs), self.capture_s)

    def replay(self, key) -> None:
        self.graphs[key].replay()
