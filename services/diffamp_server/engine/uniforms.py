"""The noise of seeded sampling: one uniform per (seed, sample index, position), whatever else shares a batch."""

from __future__ import annotations

import hashlib
import struct

import numpy as np


def seeded_uniform(seed: int, sample_index: int, position: int) -> float:
    """A uniform in [0, 1) that depends only on (seed, sample index, position)."""
    digest = hashlib.blake2b(struct.pack("<QQQ", seed, sample_index, position), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 11) / float(1 << 53)


def call_uniforms(keys: list[tuple[int, int, int]], steps: int) -> np.ndarray:
    """[rows, steps] uniforms for a worker call: row r draws step s's token at position generated_r + s, where
    keys[r] = (seed, sample index, generated_r)."""
    out = np.empty((len(keys), steps), dtype=np.float64)
    for r, (seed, index, generated) in enumerate(keys):
        for s in range(steps):
            out[r, s] = seeded_uniform(seed, index, generated + s)
    return out
