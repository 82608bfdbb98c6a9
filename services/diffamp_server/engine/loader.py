"""Loading one model as a runner on the engine a worker was asked for (`--engine auto|static|eager`).

`auto` takes the static engine when the model passes its checks (no host-position RoPE, causal attention,
attention through transformers' AttentionInterface, keys of the shape its config describes) and the eager
engine otherwise, saying why in the log; `static` refuses such a model at start with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..config import ENGINES
from ..loading import ModelSource, context_length, resolve_device, resolve_dtype
from . import attention, lora
from .kv_store import SlotKV
from .model import CausalLM, UnsupportedModel
from .runners import EagerRunner, ModelRunner, StaticRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RunnerSpec:
    source: ModelSource
    dtype: str
    device: str
    engine: str
    max_rows: int
    max_seq_len: int
    adapter: str = ""
    """A PEFT LoRA adapter to load into the model's modules (a LoRA pair's after model)."""


def load_runner(spec: RunnerSpec) -> ModelRunner:
    if spec.engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {spec.engine!r}")
    attention.register()
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    lm = CausalLM.load(spec.source, dtype, device, _eager_attention(spec.source))
    if spec.adapter:
        lora.attach_adapter(lm.model, spec.adapter)
        lora.check_head_untouched(lm)
    store = SlotKV(lm.config, spec.max_rows, min(spec.max_seq_len, context_length(lm.config)), dtype, device)
    if spec.engine == "eager":
        return EagerRunner(lm, store)
    problem = lm.static_engine_problem() or _try_static(lm, store)
    if problem is None:
        return StaticRunner(lm, store)
    if spec.engine == "static":
        raise UnsupportedModel(f"{spec.source.model_id}: the static engine cannot run it: {problem}; "
                               "use --engine eager")
    log.warning("%s: using the eager engine: %s", spec.source.model_id, problem)
    lm.model.set_attn_implementation(_eager_attention(spec.source))
    return EagerRunner(lm, store)


def _eager_attention(source: ModelSource) -> str:
    """SDPA, or transformers' eager attention for models that soft-cap attention scores (SDPA cannot)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source.model_id, trust_remote_code=source.trust_remote_code)
    return "eager" if getattr(config.get_text_config(), "attn_logit_softcapping", None) else "sdpa"


@torch.inference_mode()
def _try_static(lm: CausalLM, store: SlotKV) -> str | None:
    """Run a two-token prompt and one decode step through the slot attention; the reason it fails, or None."""
    lm.model.set_attn_implementation(attention.IMPLEMENTATION)
    runner = StaticRunner(lm, store)
    try:
        original = store.write

        def checked_write(layer, rows, positions, key, value):
            store.check(layer, key)
            original(layer, rows, positions, key, value)

        store.write = checked_write
        runner.prefill(0, [[0, 0]])
        runner.decode(torch.zeros(1, dtype=torch.long, device=lm.device),
                      torch.full((1,), 2, dtype=torch.long, device=lm.device), min(store.max_seq_len, 64))
    except (NotImplementedError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        del store.write
    return None
