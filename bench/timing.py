"""Timing one piece of code on its own."""

from __future__ import annotations

import statistics
import time


def median_ms(fn, repeat: int = 200, warmup: int = 10) -> float:
    """Median milliseconds of fn() over `repeat` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)
