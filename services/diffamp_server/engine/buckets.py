"""Shapes for a worker call, chosen inside the engine (the scheduler never sees them): a batch size and a
KV length. With CUDA graphs both are padded to buckets (powers of two, and the maximum), so that a few dozen
graphs cover every call; padding rows point at free slots and never advance. Without graphs the batch is
exact and the KV length rounds up to a multiple of 64.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

KV_STEP = 64


def _powers_of_two_upto(limit: int, start: int = 1) -> tuple[int, ...]:
    sizes = set()
    size = start
    while size < limit:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes | {limit}))


@dataclass(frozen=True)
class Buckets:
    batch: tuple[int, ...] | None
    """Padded batch sizes, or None for exact batches."""
    kv: tuple[int, ...]
    min_batch: int = 1

    @classmethod
    def padded(cls, max_rows: int, max_seq_len: int) -> "Buckets":
        return cls(_powers_of_two_upto(max_rows), _powers_of_two_upto(max_seq_len, start=min(128, max_seq_len)))

    @classmethod
    def exact(cls, max_seq_len: int, min_batch: int = 1) -> "Buckets":
        return cls(None, tuple(range(KV_STEP, max_seq_len, KV_STEP)) + (max_seq_len,), min_batch)

    def batch_for(self, rows: int) -> int:
        if self.batch is None:
            return max(rows, self.min_batch)
        return self.batch[bisect.bisect_left(self.batch, rows)]

    def kv_for(self, positions: int) -> int:
        return self.kv[bisect.bisect_left(self.kv, min(positions, self.kv[-1]))]
