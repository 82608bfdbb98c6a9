"""Loading a model and its tokenizer from a hub id or a local directory."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """'auto' means bfloat16 on CUDA and float32 elsewhere."""
    if name == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(DTYPES)}; got {name!r}")
    return DTYPES[name]


def resolve_device(name: str) -> str:
    """'auto' means cuda:0 when a GPU is visible, else cpu."""
    if name == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    return name


@dataclass(frozen=True)
class ModelSource:
    """Where and how to load one model."""

    model_id: str
    tokenizer_class: str | None = None
    trust_remote_code: bool = False


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    if source.trust_remote_code:
        log.warning("trust_remote_code is ON for %s: its repository's Python code will run", source.model_id)
    if source.tokenizer_class:
        import transformers

        cls = getattr(transformers, source.tokenizer_class, None)
        if cls is None:
            raise ValueError(f"tokenizer class {source.tokenizer_class!r} does not exist in transformers")
        return cls.from_pretrained(source.model_id, trust_remote_code=source.trust_remote_code)
    return AutoTokenizer.from_pretrained(source.model_id, trust_remote_code=source.trust_remote_code)


def load_model(source: ModelSource, dtype: torch.dtype, device: str):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        source.model_id,
        dtype=dtype,
        trust_remote_code=source.trust_remote_code,
        attn_implementation="sdpa",
    )
    return model.to(device).eval()


def load_eos_ids(source: ModelSource, tokenizer) -> set[int]:
    """EOS ids from the model's generation config, falling back to the tokenizer's."""
    from transformers import GenerationConfig

    ids: set[int] = set()
    try:
        config = GenerationConfig.from_pretrained(source.model_id, trust_remote_code=source.trust_remote_code)
        eos = config.eos_token_id
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    except OSError:
        pass
    if not ids and tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def context_length(config) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048
