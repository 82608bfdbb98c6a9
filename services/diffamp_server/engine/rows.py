"""The host-side row table: every live row's sampling parameters, token count and KV length per model, kept
packed like the KV rows. It knows everything a worker call's shapes depend on (rows, the longest row, the
step budget) without reading anything back from the device.

A row's KV cache holds every token it has seen but the last one, which is its pending input: the last sampled
token of a decoding row, or the last prompt token of a new one. Each decode step feeds the pending input and
samples the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..plan import BatchPlan, SamplingParams

MODELS = ("after", "before")


@dataclass(frozen=True)
class PrefillWork:
    """For one model: prompts (all but their last token) for the contiguous rows from first_row, and the rows
    each first row is then copied into."""

    first_row: int
    prompts: list[list[int]]
    copies: list[tuple[int, int, int]]
    """(src, dst, length) KV copies for rows that share a prompt."""


def batched_copies(*works: PrefillWork) -> list[tuple[list[int], list[int], int]]:
    """The KV copies of one or more models' prefill work as few copy_rows calls: (srcs, dsts, length), one per
    distinct length. A copy shared by several models takes the longest of their prompt lengths (a retokenized
    prompt is longer for the before model); positions past a model's own prompt are written before they are
    read."""
    lengths: dict[tuple[int, int], int] = {}
    for work in works:
        for src, dst, length in work.copies:
            lengths[src, dst] = max(length, lengths.get((src, dst), 0))
    groups: dict[int, tuple[list[int], list[int]]] = {}
    for (src, dst), length in lengths.items():
        srcs, dsts = groups.setdefault(length, ([], []))
        srcs.append(src)
        dsts.append(dst)
    return [(srcs, dsts, length) for length, (srcs, dsts) in groups.items()]


@dataclass(frozen=True)
class CallInputs:
    """What a worker call starts from, for rows [0, rows)."""

    rows: int
    steps: int
    budgets: np.ndarray
    tokens: dict[str, np.ndarray]
    """The pending input token of every row, per model."""


class RowTable:
    def __init__(self, max_rows: int):
        self.params: list[SamplingParams | None] = [None] * max_rows
        self.generated = np.zeros(max_rows, dtype=np.int64)
        self.lengths = {m: np.zeros(max_rows, dtype=np.int64) for m in MODELS}

    def apply(self, plan: BatchPlan) -> tuple[list[list[tuple[int, int]]], dict[str, PrefillWork]]:
        """Apply the plan's moves and new prompts to the table. Returns the moves as batches of independent
        (src, dst) pairs, and per model the prefill work for the KV store."""
        batches = independent_batches(plan.moves)
        for batch in batches:
            src = [s for s, _ in batch]
            dst = [d for _, d in batch]
            for i, (s, d) in enumerate(batch):
                self.params[d] = self.params[s]
            self.generated[dst] = self.generated[src]
            for m in MODELS:
                self.lengths[m][dst] = self.lengths[m][src]
        work = {m: self._prefill_work(plan, m) for m in MODELS}
        for prefill in plan.prefills:
            for row, params in zip(prefill.rows, prefill.params):
                self.params[row] = params
                self.generated[row] = prefill.generated
                for m in MODELS:
                    self.lengths[m][row] = len(prefill.ids(m)) - 1
        return batches, work

    @staticmethod
    def _prefill_work(plan: BatchPlan, model: str) -> PrefillWork:
        first = plan.num_decode_rows
        prompts, copies = [], []
        for j, prefill in enumerate(plan.prefills):
            ids = prefill.ids(model)
            prompts.append(list(ids[:-1]))
            copies += [(first + j, row, len(ids) - 1) for row in prefill.rows[1:]]
        return PrefillWork(first, prompts, copies)

    def inputs(self, plan: BatchPlan) -> CallInputs:
        rows = plan.num_rows
        budgets = np.asarray(plan.budgets or [1 << 30] * rows, dtype=np.int64)
        tokens = {}
        for m in MODELS:
            t = np.empty(rows, dtype=np.int64)
            t[: plan.num_decode_rows] = plan.decode_token_ids
            for j, prefill in enumerate(plan.prefills):
                for row in prefill.rows:
                    t[row] = prefill.ids(m)[-1]
            tokens[m] = t
        steps = int(min(plan.max_steps, budgets.max(initial=0)))
        return CallInputs(rows=rows, steps=steps, budgets=budgets, tokens=tokens)

    def longest(self, rows: int) -> int:
        """The most KV positions any of rows [0, rows) holds, in either model."""
        return int(max(self.lengths[m][:rows].max(initial=0) for m in MODELS))

    def advance(self, taken: np.ndarray) -> None:
        """Rows [0, len(taken)) sampled taken[r] tokens, each feeding one pending input first."""
        rows = len(taken)
        self.generated[:rows] += taken
        for m in MODELS:
            self.lengths[m][:rows] += taken


def independent_batches(moves: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Split sequential (src, dst) moves into batches that can be applied at once: within a batch no row is
    both written and read."""
    batches: list[list[tuple[int, int]]] = []
    written: set[int] = set()
    read: set[int] = set()
    for src, dst in moves:
        if not batches or src in written or dst in read or dst in written:
            batches.append([])
            written, read = set(), set()
        batches[-1].append((src, dst))
        written.add(dst)
        read.add(src)
    return batches
