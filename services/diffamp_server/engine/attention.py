"""Attention over the slot KV store, registered with transformers' AttentionInterface as "diffamp_slots".

A model loaded with this implementation and called with `diffamp_slots=SlotBatch(...)` writes each layer's new
keys and values into the store at every row's own positions, then attends over positions [0, kv_len) of its
rows through a boolean mask built once per forward: causal per row, and windowed for sliding-window layers
(transformers passes each layer's `sliding_window`; None on full-attention layers). No host syncs, no Python
branch on data, no allocation that depends on lengths: the same code runs eagerly, compiled, or inside a
CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .kv_store import SlotKV

IMPLEMENTATION = "diffamp_slots"
KNOWN_KWARGS = {"position_ids", "use_cache", "output_attentions", "output_hidden_states", "cache_position",
                "is_causal", "diffamp_slots"}


@dataclass(eq=False)
class SlotBatch:
    """Where one forward writes and what it reads: rows [first_row, first_row + B) of the store, new keys at
    `positions` [B, q], attention over [0, kv_len)."""

    store: SlotKV
    first_row: int
    positions: torch.Tensor
    kv_len: int
    _masks: dict = field(default_factory=dict)

    def __post_init__(self):
        count = self.positions.shape[0]
        self.rows = torch.arange(self.first_row, self.first_row + count, device=self.positions.device).unsqueeze(-1)
        self.key_positions = torch.arange(self.kv_len, device=self.positions.device)

    def mask(self, sliding_window: int | None = None) -> torch.Tensor:
        """[B, 1, q, kv_len] bool: query at position p sees keys at positions k <= p (and k > p - window)."""
        if sliding_window not in self._masks:
            p = self.positions.unsqueeze(-1)
            k = self.key_positions.view(1, 1, -1)
            visible = k <= p
            if sliding_window:
                visible = visible & (k > p - sliding_window)
            self._masks[sliding_window] = visible.unsqueeze(1)
        return self._masks[sliding_window]


def slot_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, sliding_window=None,
                   softcap=None, **kwargs):
    """transformers' attention-function signature: q/k/v [B, heads, q, dim] (RoPE applied); returns
    ([B, q, heads, dim], None)."""
    unknown = set(kwargs) - KNOWN_KWARGS
    if unknown:
        raise NotImplementedError(f"{type(module).__name__} passes {sorted(unknown)} to its attention function, "
                                  f"which diffamp's static engine does not implement")
    if not getattr(module, "is_causal", True):
        raise NotImplementedError(f"{type(module).__name__} attends bidirectionally; the static engine is causal")
    batch: SlotBatch = kwargs["diffamp_slots"]
    layer = module.layer_idx
    batch.store.write(layer, batch.rows, batch.positions, key, value)
    keys, values = batch.store.read(layer, batch.first_row, query.shape[0], batch.kv_len)
    mask = batch.mask(sliding_window)
    if softcap:
        out = _softcapped(query, keys, values, mask, scaling, softcap)
    else:
        out = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=scaling,
                                             enable_gqa=batch.store.grouped_queries)
    return out.transpose(1, 2).contiguous(), None


def _softcapped(query, keys, values, mask, scaling, softcap):
    """Attention with tanh soft-capped scores (Gemma 2): scores = cap * tanh(q.k * scale / cap)."""
    groups = query.shape[1] // keys.shape[1]
    keys = keys.repeat_interleave(groups, dim=1)
    values = values.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, keys.transpose(-1, -2)) * scale
    scores = torch.tanh(scores / softcap) * softcap
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(scores.float().softmax(-1).to(values.dtype), values)


def register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(IMPLEMENTATION, slot_attention)
