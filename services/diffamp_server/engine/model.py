"""One loaded causal LM as the engine uses it: its decoder (the base model, no LM head) and an LM head that
gives fp32 logits whatever the weights' dtype.

Amplification multiplies rounding error ((1 + alpha) * after - alpha * before), so logits are never rounded to
bf16: on CUDA the head's matmul writes fp32 directly (bf16 inputs, fp32 accumulate and output, no weight
copy); elsewhere the head's weight is kept in fp32.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..loading import ModelSource, context_length

HOST_POSITION_ROPE = ("dynamic", "longrope")
"""RoPE variants that read max(position_ids) on the host each forward; the static engine cannot run them."""


class UnsupportedModel(ValueError):
    """The model cannot run on the requested engine; the message names the architecture and the reason."""


@dataclass(frozen=True)
class RunnerInfo:
    model_id: str
    architectures: tuple[str, ...]
    dtype: str
    device: str
    context_length: int
    logits_size: int
    kv_cache_bytes: int
    engine: str
    layers: int = 0


class CausalLM:
    def __init__(self, model, model_id: str):
        self.model = model
        self.model_id = model_id
        self.config = model.config.get_text_config()
        self.base = model.base_model
        self.head = model.get_output_embeddings()
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.architecture = (getattr(self.config, "architectures", None) or [type(model).__name__])[0]
        self.softcap = getattr(self.config, "final_logit_softcapping", None)
        for name in ("logit_scale", "logits_scaling"):
            if getattr(self.config, name, None) not in (None, 1, 1.0):
                raise UnsupportedModel(f"{self.architecture} scales its logits ({name}); diffamp does not support it")
        self._columns = self.logits_size
        self._head_fp32 = self.head.weight if self.dtype == torch.float32 or self.device.type == "cuda" \
            else self.head.weight.float()
        self._head_bias = None if getattr(self.head, "bias", None) is None else self.head.bias.float()
        self.cache_argument = "cache" if "cache" in inspect.signature(self.base.forward).parameters \
            else "past_key_values"

    @classmethod
    def load(cls, source: ModelSource, dtype: torch.dtype, device: str, attn_implementation: str) -> "CausalLM":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(source.model_id, dtype=dtype,
                                                     trust_remote_code=source.trust_remote_code,
                                                     attn_implementation=attn_implementation)
        return cls(model.to(device).eval(), source.model_id)

    @property
    def logits_size(self) -> int:
        return self.head.weight.shape[0]

    def limit_logits(self, columns: int) -> None:
        """Compute logits for ids [0, columns) only: ids past the shared vocabulary are never sampled, and their
        rows of the LM head need not be read at every step."""
        self._columns = min(columns, self.logits_size)
        self._head_fp32 = self._head_fp32[: self._columns]
        if self._head_bias is not None:
            self._head_bias = self._head_bias[: self._columns]

    def static_engine_problem(self) -> str | None:
        """Why the static engine cannot run this model, or None."""
        rope = getattr(self.config, "rope_parameters", None) or {}
        types = [rope.get("rope_type")] + [v.get("rope_type") for v in rope.values() if isinstance(v, dict)]
        bad = [t for t in types if t in HOST_POSITION_ROPE]
        if bad:
            return f"{self.architecture} uses {bad[0]} RoPE, which reads positions on the host each step"
        if getattr(self.config, "use_bidirectional_attention", False):
            return f"{self.architecture} attends bidirectionally"
        return None

    def hidden(self, input_ids: torch.Tensor, positions: torch.Tensor, mask, **kwargs) -> torch.Tensor:
        """The decoder's last hidden states [B, q, H] (after the final norm)."""
        out = self.base(input_ids=input_ids, position_ids=positions, attention_mask=mask, **kwargs)
        return out.last_hidden_state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """fp32 logits [B, columns] for hidden states [B, H]."""
        if self.device.type == "cuda" and self.dtype != torch.float32:
            logits = torch.mm(hidden, self._head_fp32.t(), out_dtype=torch.float32)
        else:
            logits = F.linear(hidden.float(), self._head_fp32)
        if self._head_bias is not None:
            logits = logits + self._head_bias
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def info(self, kv_cache_bytes: int, engine: str) -> RunnerInfo:
        return RunnerInfo(model_id=self.model_id, architectures=tuple(getattr(self.config, "architectures", None)
                                                                      or [type(self.model).__name__]),
                          dtype=str(self.dtype).removeprefix("torch."), device=str(self.device),
                          context_length=context_length(self.config), logits_size=self.logits_size,
                          kv_cache_bytes=kv_cache_bytes, engine=engine, layers=self.config.num_hidden_layers)
