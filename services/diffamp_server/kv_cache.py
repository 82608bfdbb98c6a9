"""A slot-based KV cache that lets one forward serve sequences of different lengths.

Each live sequence owns a row ("slot") of preallocated key/value buffers of shape
[max_batch_size, kv_heads, max_seq_len, head_dim] per layer. The scheduler keeps live rows packed at
the front, so a decode step works on rows [0, B) as a view, with no gathering. New keys are written at
each row's own positions; a 4D mask hides every position a row has not written yet.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache


class SlotKVCache(Cache):
    """Preallocated per-row KV buffers. Buffers are created on the first write, when head sizes are known."""

    def __init__(self, num_layers: int, max_batch_size: int, max_seq_len: int, device):
        super().__init__(layers=[])
        self.num_layers = num_layers
        self.num_slots = max_batch_size
        self.slot_len = max_seq_len
        self.device = torch.device(device)
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self._rows = slice(0, 0)
        self._positions: torch.Tensor | None = None
        self._kv_len = 0

    def __len__(self) -> int:
        return self.num_layers

    def target(self, rows: slice, positions: torch.Tensor, kv_len: int) -> None:
        """Aim the next forward at rows[i] writing at positions[i, :] and attending to [0, kv_len)."""
        self._rows = rows
        self._positions = positions
        self._kv_len = kv_len

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if self.keys[layer_idx] is None:
            _, heads, _, head_dim = key_states.shape
            shape = (self.num_slots, heads, self.slot_len, head_dim)
            self.keys[layer_idx] = torch.zeros(shape, dtype=key_states.dtype, device=self.device)
            self.values[layer_idx] = torch.zeros(shape, dtype=value_states.dtype, device=self.device)
        keys = self.keys[layer_idx][self._rows]
        values = self.values[layer_idx][self._rows]
        batch = torch.arange(keys.shape[0], device=self.device).unsqueeze(-1)
        keys[batch, :, self._positions] = key_states.transpose(1, 2)
        values[batch, :, self._positions] = value_states.transpose(1, 2)
        return keys[:, :, : self._kv_len], values[:, :, : self._kv_len]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._kv_len

    def copy_row(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` positions of row src into row dst, in every layer."""
        for buffers in (self.keys, self.values):
            for layer in buffers:
                if layer is not None:
                    layer[dst, :, :length] = layer[src, :, :length]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


def slot_bytes(config, max_seq_len: int, dtype: torch.dtype) -> int:
    """Bytes one KV slot of `max_seq_len` positions takes in one model (keys and values, every layer)."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    element = torch.empty(0, dtype=dtype).element_size()
    return config.num_hidden_layers * 2 * kv_heads * head_dim * max_seq_len * element


def slots_within_budget(budget_bytes: int, per_slot_bytes: int, max_batch_size: int) -> int:
    """How many KV slots fit the budget (0 = no budget), at most max_batch_size; at least one must fit."""
    if budget_bytes <= 0:
        return max_batch_size
    fitting = budget_bytes // per_slot_bytes
    if fitting < 1:
        raise ValueError(f"the KV cache budget of {budget_bytes / 2**20:,.1f} MiB holds no slot: one slot of both models "
                         f"takes {per_slot_bytes / 2**20:,.1f} MiB; raise the budget or lower --max-seq-len")
    return min(max_batch_size, fitting)


def attention_mask(positions: torch.Tensor, kv_len: int, dtype: torch.dtype) -> torch.Tensor:
    """A [B, 1, q, kv_len] additive mask: query at position p sees keys at positions <= p."""
    key_positions = torch.arange(kv_len, device=positions.device)
    visible = key_positions.view(1, 1, -1) <= positions.unsqueeze(-1)
    mask = torch.zeros(visible.shape, dtype=dtype, device=positions.device)
    mask.masked_fill_(~visible, torch.finfo(dtype).min)
    return mask.unsqueeze(1)
