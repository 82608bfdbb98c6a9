"""Two ways to run one model over the slot KV store, behind one small protocol.

* StaticRunner: transformers' forward with diffamp's slot attention (attention.py). Shapes are whatever the
  caller passes, so a caller that pads to buckets gets static shapes: compilable with fullgraph and
  capturable in CUDA graphs.
* EagerRunner: transformers' forward with its own SDPA (or eager) attention and the KV store behind the
  Cache interface: the fallback for any architecture the static runner refuses.

Both fill prompts without computing logits (each prompt's last token is fed by the first decode step), attend
over the prompt width only when filling, and give fp32 logits when decoding.
"""

from __future__ import annotations

import inspect
from typing import Protocol

import torch
from transformers.cache_utils import Cache

from . import attention
from .attention import SlotBatch
from .kv_store import SlotKV
from .model import CausalLM


class ModelRunner(Protocol):
    lm: CausalLM
    store: SlotKV
    engine: str

    def prefill(self, first_row: int, prompts: list[list[int]]) -> None:
        """Write every token of each prompt into rows first_row, first_row + 1, ... at positions 0, 1, ..."""

    def decode(self, tokens: torch.Tensor, lengths: torch.Tensor, kv_len: int) -> torch.Tensor:
        """Feed tokens[r] at position lengths[r] of row r for rows [0, len(tokens)), attending over [0, kv_len);
        returns fp32 logits [rows, logits_size]."""


def _prefill_inputs(prompts: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Right-padded ids and positions 0..width-1: padding lands past each prompt's end, where nothing reads it
    before a real token overwrites it."""
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    for j, p in enumerate(prompts):
        ids[j, : len(p)] = torch.tensor(p, dtype=torch.long)
    positions = torch.arange(width).repeat(len(prompts), 1)
    return ids.to(device), positions.to(device), width


class _PromptFill:
    """Prompts go in through the runner's own forward: one right-padded forward over all of them."""

    @torch.inference_mode()
    def prefill(self, first_row: int, prompts: list[list[int]]) -> None:
        if not any(prompts):
            return
        ids, positions, width = _prefill_inputs(prompts, self.lm.device)
        self._forward(ids, first_row, positions, width)


class StaticRunner(_PromptFill):
    engine = "static"

    def __init__(self, lm: CausalLM, store: SlotKV):
        self.lm = lm
        self.store = store
        self._decode = self._decode_logits

    def compile_decode(self) -> None:
        """Decode through torch.compile (inductor; dynamic batch and KV length)."""
        self._decode = torch.compile(self._decode_logits, dynamic=True, fullgraph=True)

    def _forward(self, ids: torch.Tensor, first_row: int, positions: torch.Tensor, kv_len: int) -> torch.Tensor:
        batch = SlotBatch(self.store, first_row, positions, kv_len)
        return self.lm.hidden(ids, positions, batch.mask(), use_cache=False, diffamp_slots=batch)

    def decode(self, tokens: torch.Tensor, lengths: torch.Tensor, kv_len: int) -> torch.Tensor:
        return self._decode(tokens, lengths, kv_len)

    def _decode_logits(self, tokens: torch.Tensor, lengths: torch.Tensor, kv_len: int) -> torch.Tensor:
        hidden = self._forward(tokens.unsqueeze(-1), 0, lengths.unsqueeze(-1), kv_len)
        return self.lm.logits(hidden[:, -1])


class SlotCache(Cache):
    """The KV store behind transformers' Cache interface, for one forward."""

    def __init__(self, batch: SlotBatch, layers: int):
        super().__init__(layers=[])
        self.batch = batch
        self.num_layers = layers

    def __len__(self) -> int:
        return self.num_layers

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        b = self.batch
        b.store.write(layer_idx, b.rows, b.positions, key_states, value_states)
        return b.store.read(layer_idx, b.first_row, key_states.shape[0], b.kv_len)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.batch.kv_len


class EagerRunner(_PromptFill):
    engine = "eager"

    def compile_decode(self) -> None:
        """The eager engine is not compiled."""

    def __init__(self, lm: CausalLM, store: SlotKV):
        self.lm = lm
        self.store = store
        config = lm.config
        types = set(getattr(config, "layer_types", None) or ())
        self.mask_by_layer_type = "causal_mask_mapping" in inspect.getsource(type(lm.base).forward)
        self.window = getattr(config, "sliding_window", None) if ("sliding_attention" in types or not types) else None

    def _mask(self, batch: SlotBatch):
        """As transformers expects it: additive (its eager attention adds the mask to the scores), and a dict per
        layer type for models that look masks up that way, else one mask, windowed when every layer slides."""
        if self.mask_by_layer_type:
            return {"full_attention": self._additive(batch.mask()),
                    "sliding_attention": self._additive(batch.mask(self.window))}
        return self._additive(batch.mask(self.window))

    def _additive(self, visible: torch.Tensor) -> torch.Tensor:
        dtype = self.lm.dtype
        return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill(~visible,
                                                                                          torch.finfo(dtype).min)

    def _forward(self, ids: torch.Tensor, first_row: int, positions: torch.Tensor, kv_len: int) -> torch.Tensor:
        batch = SlotBatch(self.store, first_row, positions, kv_len)
        cache = SlotCache(batch, len(self.store.keys))
        return self.lm.hidden(ids, positions, self._mask(batch), use_cache=True, **{self.lm.cache_argument: cache})

    def decode(self, tokens: torch.Tensor, lengths: torch.Tensor, kv_len: int) -> torch.Tensor:
        hidden = self._forward(tokens.unsqueeze(-1), 0, lengths.unsqueeze(-1), kv_len)
        return self.lm.logits(hidden[:, -1])


ATTENTION = {"static": attention.IMPLEMENTATION, "eager": "sdpa"}
RUNNERS = {"static": StaticRunner, "eager": EagerRunner}
