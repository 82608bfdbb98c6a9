"""One model, its slot KV cache, and the two forwards a step needs: prefill and batched decode."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .kv_cache import SlotKVCache, attention_mask
from .loading import ModelSource, context_length, load_model, resolve_device, resolve_dtype
from .plan import BatchPlan


@dataclass(frozen=True)
class RunnerInfo:
    model_id: str
    architectures: tuple[str, ...]
    dtype: str
    device: str
    context_length: int
    logits_size: int
    kv_cache_bytes: int
    engine: str = "eager"


class ModelRunner:
    """Runs one model over the rows of a StepPlan and returns one row of logits per live sequence."""

    def __init__(self, model, model_id: str, max_batch_size: int, max_seq_len: int):
        self.model = model
        self.model_id = model_id
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.max_seq_len = min(max_seq_len, context_length(model.config))
        self.cache = SlotKVCache(
            model.config.num_hidden_layers,
            max_batch_size,
            self.max_seq_len,
            self.device,
        )
        self.lengths = torch.zeros(max_batch_size, dtype=torch.long, device=self.device)
        self._allocate_cache()

    @classmethod
    def load(cls, source: ModelSource, dtype: str, device: str, max_batch_size: int, max_seq_len: int):
        device = resolve_device(device)
        model = load_model(source, resolve_dtype(dtype, device), device)
        return cls(model, source.model_id, max_batch_size, max_seq_len)

    def _allocate_cache(self) -> None:
        """One dummy token through the model makes the cache allocate every layer's buffers."""
        self._forward(torch.zeros(1, 1, dtype=torch.long, device=self.device), slice(0, 1),
                      torch.zeros(1, 1, dtype=torch.long, device=self.device))

    @torch.inference_mode()
    def _forward(self, input_ids: torch.Tensor, rows: slice, positions: torch.Tensor) -> torch.Tensor:
        kv_len = int(positions.max()) + 1
        self.cache.target(rows, positions, kv_len)
        out = self.model(
            input_ids=input_ids,
            position_ids=positions,
            attention_mask=attention_mask(positions, kv_len, self.dtype),
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1]

    @torch.inference_mode()
    def run(self, plan: BatchPlan, model: str) -> torch.Tensor:
        """Apply the plan's moves, decode the old rows, prefill the new ones; logits for rows [0, plan.num_rows)."""
        for src, dst in plan.moves:
            length = int(self.lengths[src])
            self.cache.copy_row(src, dst, length)
            self.lengths[dst] = length
        parts = []
        if plan.num_decode_rows:
            tokens = torch.tensor(plan.decode_token_ids, dtype=torch.long, device=self.device)
            budgets = plan.budgets[: plan.num_decode_rows] or [1] * plan.num_decode_rows
            parts.append(self.decode(tokens, torch.tensor(budgets, device=self.device) > 0))
        if plan.prefills:
            parts.append(self._prefill(plan.num_decode_rows, [p.ids(model) for p in plan.prefills],
                                       [p.rows for p in plan.prefills]))
        return torch.cat(parts) if parts else torch.empty(0, device=self.device)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, advance: torch.Tensor) -> torch.Tensor:
        """One token into each of rows [0, len(tokens)); rows where `advance` is False rewrite their last
        position instead of growing (they have stopped, and their logits are ignored)."""
        b = tokens.shape[0]
        positions = self.lengths[:b].unsqueeze(-1)
        logits = self._forward(tokens.to(self.device).unsqueeze(-1), slice(0, b), positions)
        self.lengths[:b] += advance.to(self.device)
        return logits

    def _prefill(self, first_row: int, prompts: list[list[int]], rows: list[list[int]]) -> torch.Tensor:
        """All new prompts in one forward, left-padded so each prompt's last token is the last column.
        Padding is written at the slot's last position, which the mask hides until a real token overwrites it."""
        width = max(len(p) for p in prompts)
        ids = torch.zeros(len(prompts), width, dtype=torch.long)
        positions = torch.full((len(prompts), width), self.max_seq_len - 1, dtype=torch.long)
        for j, p in enumerate(prompts):
            n = len(p)
            ids[j, width - n:] = torch.tensor(p)
            positions[j, width - n:] = torch.arange(n)
        first = slice(first_row, first_row + len(prompts))
        logits = self._forward(ids.to(self.device), first, positions.to(self.device))
        parts = [logits]
        for j, (p, r) in enumerate(zip(prompts, rows)):
            n = len(p)
            self.lengths[first_row + j] = n
            for row in r[1:]:
                self.cache.copy_row(first_row + j, row, n)
                self.lengths[row] = n
            parts.append(logits[j].expand(len(r) - 1, -1))
        return torch.cat(parts)

    def info(self) -> RunnerInfo:
        config = self.model.config
        return RunnerInfo(
            model_id=self.model_id,
            architectures=tuple(getattr(config, "architectures", None) or [type(self.model).__name__]),
            dtype=str(self.dtype).removeprefix("torch."),
            device=str(self.device),
            context_length=context_length(config),
            logits_size=self.model.get_output_embeddings().weight.shape[0],
            kv_cache_bytes=self.cache.nbytes(),
        )
