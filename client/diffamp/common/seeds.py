"""Seeds and sample indices of a sweep, derived the same way on both sides so any sample can be replayed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator


def derive_seed(base: int, prompt_id: str, alpha: float) -> int:
    """The seed of the samples of one (prompt, alpha) of a sweep with base seed `base`."""
    digest = hashlib.blake2b(f"{base}|{prompt_id}|{alpha!r}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def to_ranges(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Indices (any order, repeats allowed) -> sorted (first, count) runs of consecutive indices."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def missing_ranges(n: int, done: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """The runs of [0, n) that the (first, count) runs in `done` do not cover, in order."""
    start = 0
    for first, count in sorted(done):
        if first > start:
            yield start, min(first, n) - start
        start = max(start, first + count)
        if start >= n:
            return
    if start < n:
        yield start, n - start


def chunked(runs: Iterable[tuple[int, int]], size: int) -> Iterator[tuple[int, int]]:
    """Split each (first, count) run into runs of at most `size`."""
    for first, count in runs:
        for offset in range(0, count, size):
            yield first + offset, min(size, count - offset)
