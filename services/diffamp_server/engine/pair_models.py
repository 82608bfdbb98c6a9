"""The two models of a pair as the engine drives them: `PairModels`, and its plain form, two separate models.

A pair fills prompts into rows, copies rows, and for rows [0, B) turns each model's pending token into fp32
logits. `TwoModels` does that with two runners, each with its own weights and KV store; `LoraPair` (lora.py)
with one model whose LoRA adapter is switched per row.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..plan import SamplingParams
from .model import RunnerInfo
from .runners import ModelRunner


class PairModels(Protocol):
    engine: str
    device: torch.device
    max_seq_len: int

    def limit_logits(self, columns: int) -> None:
        """Logits for ids [0, columns) only."""

    def load_rows(self, params: list[SamplingParams]) -> None:
        """Per-row model settings for rows [0, len(params)) (an adapter's scale); before a call's prompts."""

    def copy_rows(self, src: list[int], dst: list[int], length: int | None = None) -> None:
        """KV of row src[i] into row dst[i], in both models (independent pairs; the first `length` positions)."""

    def prefill(self, first_row: int, after_prompts: list[list[int]], before_prompts: list[list[int]]) -> None:
        """Write each model's prompts into rows first_row, first_row + 1, ..."""

    def decode(self, tokens_after: torch.Tensor, tokens_before: torch.Tensor, lengths_after: torch.Tensor,
               lengths_before: torch.Tensor, kv_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """fp32 logits of both models for rows [0, len(tokens_after))."""

    def compile_decode(self) -> None:
        """torch.compile the decode forward(s)."""

    def info(self) -> tuple[RunnerInfo, RunnerInfo]: ...


class TwoModels:
    def __init__(self, after: ModelRunner, before: ModelRunner):
        self.after = after
        self.before = before
        self.device = after.lm.device
        self.engine = after.engine if after.engine == before.engine else "eager"
        self.max_seq_len = min(after.store.max_seq_len, before.store.max_seq_len)

    def limit_logits(self, columns: int) -> None:
        self.after.lm.limit_logits(columns)
        self.before.lm.limit_logits(columns)

    def load_rows(self, params: list[SamplingParams]) -> None:
        pass

    def copy_rows(self, src: list[int], dst: list[int], length: int | None = None) -> None:
        self.after.store.copy_rows(src, dst, length)
        self.before.store.copy_rows(src, dst, length)

    def prefill(self, first_row: int, after_prompts: list[list[int]], before_prompts: list[list[int]]) -> None:
        self.after.prefill(first_row, after_prompts)
        self.before.prefill(first_row, before_prompts)

    def decode(self, tokens_after, tokens_before, lengths_after, lengths_before, kv_len: int):
        after = self.after.decode(tokens_after, lengths_after, kv_len)
        before = self.before.decode(tokens_before, lengths_before, kv_len)
        return after, before.to(after.device)

    def compile_decode(self) -> None:
        self.after.compile_decode()
        self.before.compile_decode()

    def info(self) -> tuple[RunnerInfo, RunnerInfo]:
        return tuple(r.lm.info(r.store.nbytes(), r.engine) for r in (self.after, self.before))
