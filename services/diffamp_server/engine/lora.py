"""A LoRA pair: the after model is a PEFT LoRA adapter on the before model. One set of weights, and both
"models" of every sample in one forward over 2B rows whose KV caches are rows of one store: row 2r is sample r
with the adapter, row 2r+1 the same sample's second model.

The adapter's strength is a per-row, per-layer tensor, so one batch mixes rows with the adapter off, on, or
scaled, and the choice is data, not a Python branch: the same step runs eagerly, compiled or in a CUDA graph.
PEFT does the LoRA math (A, then B, times its scaling); a forward hook on each LoRA A projection multiplies its
output by the row's scale, which by linearity scales that row's delta B(A(x)) * scaling.

* logits mode (the default): row 2r has the adapter at scale 1 (the after model), row 2r+1 scale 0 (the base);
  the engine amplifies their logits.
* weights mode: row 2r has the adapter's delta scaled by (1 + alpha) (on the requested layers, 1 elsewhere),
  W + (1 + alpha) * dW as amplified-vllm does, and is sampled from directly; row 2r+1 has scale 1, so each token
  still gets its logprob under the after model (importance weights stay computable).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import torch

from ..plan import SamplingParams
from .model import RunnerInfo, UnsupportedModel
from .runners import ModelRunner

log = logging.getLogger(__name__)
LAYER = re.compile(r"\.layers\.(\d+)\.")
WEIGHTS = "weights"


def adapter_base(adapter: str) -> str:
    """The base model an adapter names (its adapter_config's base_model_name_or_path)."""
    from peft import PeftConfig

    return PeftConfig.from_pretrained(adapter).base_model_name_or_path or ""


def check_base(adapter: str, before: str) -> None:
    """The adapter must name --before as its base: the same hub id or directory, or a directory whose config
    matches the named base's."""
    named = adapter_base(adapter)
    if not named or named == before or Path(named).name == Path(before).name:
        return
    if Path(named).is_dir() and Path(before).is_dir():
        a, b = (json.loads((Path(d) / "config.json").read_text()) for d in (named, before))
        drop = ("_name_or_path", "transformers_version", "dtype", "torch_dtype")
        if {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}:
            return
    raise UnsupportedModel(f"the adapter {adapter} was trained on {named!r}, but --before is {before!r}: point "
                           f"--before at the adapter's base model")


def attach_adapter(model, adapter: str) -> None:
    """Load the PEFT adapter into `model`'s modules, in place: the same model object then serves both models."""
    from peft import PeftModel

    PeftModel.from_pretrained(model, adapter, is_trainable=False)


def check_head_untouched(lm) -> None:
    """The engine computes fp32 logits from the LM head's weight directly, so the adapter may not touch it."""
    head, embeddings = lm.model.get_output_embeddings(), lm.model.get_input_embeddings()
    if hasattr(head, "lora_A") or hasattr(embeddings, "lora_embedding_A"):
        raise UnsupportedModel("the adapter changes the LM head or the embeddings; diffamp supports adapters on "
                               "the decoder layers only")


class LoraPair:
    def __init__(self, runner: ModelRunner, max_rows: int):
        self.runner = runner
        self.device = runner.lm.device
        self.engine = runner.engine
        self.max_seq_len = runner.store.max_seq_len
        layers = runner.lm.config.num_hidden_layers
        self.scales = torch.zeros(layers, 2 * max_rows, device=self.device, dtype=runner.lm.dtype)
        self._hooks = []
        for name, module in runner.lm.model.named_modules():
            if not hasattr(module, "lora_A"):
                continue
            if getattr(module, "lora_variant", None) or getattr(module, "lora_embedding_A", None):
                raise UnsupportedModel(f"{name} is not a plain LoRA linear layer (DoRA and embedding adapters are "
                                       f"not supported)")
            match = LAYER.search(name + ".")
            if match is None:
                raise UnsupportedModel(f"the LoRA module {name} belongs to no decoder layer")
            for lora_a in module.lora_A.values():
                self._hooks.append(lora_a.register_forward_hook(self._scaler(int(match.group(1)))))
        if not self._hooks:
            raise UnsupportedModel("the adapter has no LoRA linear layers")

    def _scaler(self, layer: int):
        def scale(module, inputs, output):
            rows = output.shape[0]
            return output * self.scales[layer, :rows].view(rows, *[1] * (output.dim() - 1))
        return scale

    def limit_logits(self, columns: int) -> None:
        self.runner.lm.limit_logits(columns)

    def load_rows(self, params: list[SamplingParams]) -> None:
        """Each row pair's adapter scales, per layer, for the call about to run."""
        layers = self.scales.shape[0]
        host = np.zeros((layers, 2 * len(params)), dtype=np.float32)
        for r, p in enumerate(params):
            if p.mode == WEIGHTS:
                boost = np.ones(layers, dtype=np.float32)
                boost[list(p.lora_layers) if p.lora_layers else slice(None)] = 1.0 + p.alpha
                host[:, 2 * r] = boost
                host[:, 2 * r + 1] = 1.0
            else:
                host[:, 2 * r] = 1.0
        self.scales[:, : host.shape[1]].copy_(torch.from_numpy(host), non_blocking=True)

    def copy_rows(self, src: list[int], dst: list[int], length: int | None = None) -> None:
        self.runner.store.copy_rows([2 * s + k for s in src for k in (0, 1)], [2 * d + k for d in dst for k in (0, 1)],
                                    length)

    def prefill(self, first_row: int, after_prompts: list[list[int]], before_prompts: list[list[int]]) -> None:
        self.runner.prefill(2 * first_row, [p for pair in zip(after_prompts, before_prompts) for p in pair])

    def decode(self, tokens_after, tokens_before, lengths_after, lengths_before, kv_len: int):
        tokens = torch.stack((tokens_after, tokens_before), dim=1).reshape(-1)
        lengths = torch.stack((lengths_after, lengths_before), dim=1).reshape(-1)
        logits = self.runner.decode(tokens, lengths, kv_len)
        return logits[0::2], logits[1::2]

    def compile_decode(self) -> None:
        self.runner.compile_decode()

    def info(self) -> tuple[RunnerInfo, RunnerInfo]:
        lm = self.runner.lm
        info = lm.info(self.runner.store.nbytes(), self.engine)
        return info, info

