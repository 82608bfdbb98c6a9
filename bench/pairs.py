"""The pairs the benchmark runs on: the built-in demo pair, and a random ~30M-parameter Llama pair."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from diffamp_server.config import DEMO_PAIR_DIR


def demo_pair() -> tuple[str, str]:
    return str(DEMO_PAIR_DIR / "after"), str(DEMO_PAIR_DIR / "before")


def random_pair(root: Path, hidden=512, layers=8, heads=8, mlp=1408, vocab=8192) -> tuple[str, str]:
    """Two random Llama models (seeds 0 and 1) with the demo tokenizer; ids past it are never sampled."""
    dirs = []
    for seed, name in ((0, "after"), (1, "before")):
        directory = root / f"random-{name}"
        if not (directory / "model.safetensors").exists():
            torch.manual_seed(seed)
            config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
                                 num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=512,
                                 tie_word_embeddings=True)
            LlamaForCausalLM(config).save_pretrained(directory)
            for f in (DEMO_PAIR_DIR / name).iterdir():
                if f.name.startswith(("tokenizer", "chat_template", "generation_config")):
                    shutil.copy(f, directory / f.name)
        dirs.append(str(directory))
    return dirs[0], dirs[1]


def parameters(directory: str) -> int:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(directory)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    return sum(p.numel() for p in model.parameters())
