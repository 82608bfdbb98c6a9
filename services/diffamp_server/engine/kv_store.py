"""The slot KV store: one model's keys and values for every live sequence, preallocated at start.

Each live sequence owns a row ("slot") of [max_batch_size, kv_heads, max_seq_len, head_dim] buffers per layer.
Live rows are kept packed at the front by the scheduler, so a step works on rows [0, B) as a view. Keys are
written by index at each row's own positions and read through fixed views; nothing is allocated after start.
"""

from __future__ import annotations

import torch


def kv_shape(config) -> tuple[int, int, int]:
    """(layers, kv_heads, head_dim) of a transformers config (GPT-2 style names are aliased by transformers)."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim


def slot_bytes(config, max_seq_len: int, dtype: torch.dtype) -> int:
    """Bytes one KV slot of `max_seq_len` positions takes in one model (keys and values, every layer)."""
    layers, kv_heads, head_dim = kv_shape(config)
    element = torch.empty(0, dtype=dtype).element_size()
    return layers * 2 * kv_heads * head_dim * max_seq_len * element


def slots_within_budget(budget_bytes: int, per_slot_bytes: int, max_batch_size: int) -> int:
    """How many KV slots fit the budget (0 = no budget), at most max_batch_size; at least one must fit."""
    if budget_bytes <= 0:
        return max_batch_size
    fitting = budget_bytes // per_slot_bytes
    if fitting < 1:
        raise ValueError(f"the KV cache budget of {budget_bytes / 2**20:,.1f} MiB holds no slot: "
                         f"one slot of both models takes {per_slot_bytes / 2**20:,.1f} MiB; "
                         "raise the budget or lower --max-seq-len")
    return min(max_batch_size, fitting)


class SlotKV:
    def __init__(self, config, slots: int, max_seq_len: int, dtype: torch.dtype, device):
        layers, kv_heads, head_dim = kv_shape(config)
        self.grouped_queries = config.num_attention_heads != kv_heads
        shape = (slots, kv_heads, max_seq_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.slots = slots
        self.max_seq_len = max_seq_len

    def check(self, layer: int, key: torch.Tensor) -> None:
        """Refuse a model whose attention does not produce the keys its config describes."""
        expected = self.keys[layer].shape
        if key.shape[1] != expected[1] or key.shape[-1] != expected[-1] or key.dtype != self.keys[layer].dtype:
            raise ValueError(f"layer {layer} produces keys of {key.shape[1]} heads x {key.shape[-1]} ({key.dtype}), "
                             f"not the {expected[1]} x {expected[-1]} ({self.keys[layer].dtype}) its config describes")

    def write(self, layer: int, rows: torch.Tensor, positions: torch.Tensor, key: torch.Tensor,
              value: torch.Tensor) -> None:
        """key/value [B, heads, q, dim] into rows[B, 1] at positions[B, q]."""
        self.keys[layer][rows, :, positions] = key.transpose(1, 2)
        self.values[layer][rows, :, positions] = value.transpose(1, 2)

    def read(self, layer: int, first_row: int, count: int, kv_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of rows [first_row, first_row + count), positions [0, kv_len)."""
        rows = slice(first_row, first_row + count)
        return self.keys[layer][rows, :, :kv_len], self.values[layer][rows, :, :kv_len]

    def copy_rows(self, src: list[int], dst: list[int], length: int | None = None) -> None:
        """Row src[i] into row dst[i], in every layer (the first `length` positions, or all). The pairs must be
        independent: no dst is also a src."""
        if not src:
            return
        index = torch.tensor(src, device=self.keys[0].device)
        target = torch.tensor(dst, device=self.keys[0].device)
        positions = slice(0, length)
        for buffers in (self.keys, self.values):
            for layer in buffers:
                layer[target, :, positions] = layer[index, :, positions]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)
