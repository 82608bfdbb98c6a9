"""Tiny model pairs built from configs with fixed seeds (transformers' tester sizes), saved as HF directories."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig, GenerationConfig,
                          GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Olmo2Config, Olmo2ForCausalLM, PreTrainedTokenizerFast)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Ünïcödé wörds and emoji 🍍🦊 appear here too, with multi-byte characters like 漢字.",
    "hello world, hello there, general kenobi!",
] * 20
SPECIALS = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]


def build_tokenizer(directory: Path, extra_tokens: list[str] = ()) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    if extra_tokens:
        fast.add_tokens(list(extra_tokens), special_tokens=True)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)
    return fast


def _save(model, tokenizer, directory: Path, eos_ids: list[int]) -> None:
    model.save_pretrained(directory)
    GenerationConfig(eos_token_id=eos_ids).save_pretrained(directory)


WINDOW = 4
"""Sliding window of the sliding-window pairs: far shorter than their test sequences."""


def _model(kind: str, vocab: int):
    small = dict(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=128)
    if kind == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=128))
    if kind == "mistral":  # one window on every layer
        return MistralForCausalLM(MistralConfig(**small, sliding_window=WINDOW))
    if kind == "gemma2":  # sliding and full layers alternate; attention and final logits are soft-capped
        return Gemma2ForCausalLM(Gemma2Config(**small, head_dim=8, sliding_window=WINDOW, query_pre_attn_scalar=8,
                                              attn_logit_softcapping=5.0, final_logit_softcapping=3.0))
    if kind == "gemma3":  # two sliding layers, then a full one, each type with its own RoPE
        return Gemma3ForCausalLM(Gemma3TextConfig(**{**small, "num_hidden_layers": 3}, head_dim=8,
                                                  sliding_window=WINDOW, query_pre_attn_scalar=8,
                                                  layer_types=["sliding_attention", "sliding_attention",
                                                               "full_attention"]))
    if kind == "olmo2":  # OLMo-2's shape: norms after attention and MLP, RMS-normed queries and keys
        return Olmo2ForCausalLM(Olmo2Config(**small))
    return LlamaForCausalLM(LlamaConfig(**small))


def _drop_token(directory: Path, token: str) -> None:
    """Remove one token (and the merges that make it) from a saved tokenizer: its id becomes a gap."""
    path = directory / "tokenizer.json"
    data = json.loads(path.read_text())
    del data["model"]["vocab"][token]
    data["model"]["merges"] = [m for m in data["model"]["merges"]
                               if "".join(m if isinstance(m, list) else m.split(" ")) != token]
    path.write_text(json.dumps(data))


def build_pair(root: Path, kind: str) -> tuple[Path, Path]:
    """kind: 'llama', 'gpt2', 'vocab' (Llama-style; after has 3 trailing added tokens and a padded embedding),
    'gap' (Llama-style; the before tokenizer lacks one token in the middle of the vocabulary), 'mistral', 'gemma2'
    or 'gemma3' (sliding windows of WINDOW tokens), 'olmo2' (as allenai/OLMo-2-0425-1B, in miniature)."""
    after_dir, before_dir = root / f"{kind}-after", root / f"{kind}-before"
    extra = ["<|tool|>", "<|think|>", "<|quirk|>"] if kind == "vocab" else []
    after_tok = build_tokenizer(after_dir, extra)
    before_tok = build_tokenizer(before_dir)
    if kind == "gap":
        _drop_token(before_dir, GAP_TOKEN)
    for seed, directory, tok in ((0, after_dir, after_tok), (1, before_dir, before_tok)):
        torch.manual_seed(seed)
        vocab = len(tok) + (5 if kind == "vocab" and directory == after_dir else 0)
        model = _model(kind, vocab)
        _save(model, tok, directory, [tok.convert_tokens_to_ids("<|end|>"), tok.eos_token_id])
    return after_dir, before_dir


GAP_TOKEN = "Ġthe"


def build_lora_pair(root: Path) -> tuple[Path, Path, Path]:
    """A tiny Llama base, a rank-4 LoRA adapter on it (random, non-zero, on every projection of every layer), and
    the adapter merged into a full model: (adapter_dir, base_dir, merged_dir)."""
    from peft import LoraConfig, get_peft_model

    base_dir, adapter_dir, merged_dir = root / "lora-base", root / "lora-adapter", root / "lora-merged"
    tok = build_tokenizer(base_dir)
    torch.manual_seed(3)
    base = _model("llama", len(tok))
    _save(base, tok, base_dir, [tok.convert_tokens_to_ids("<|end|>"), tok.eos_token_id])
    torch.manual_seed(4)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)  # large enough that the adapter changes what the model says
    peft_model.save_pretrained(adapter_dir)
    tok.save_pretrained(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    adapter_config = json.loads(config_path.read_text())
    adapter_config["base_model_name_or_path"] = str(base_dir)
    config_path.write_text(json.dumps(adapter_config))
    merged = peft_model.merge_and_unload()
    _save(merged, tok, merged_dir, [tok.convert_tokens_to_ids("<|end|>"), tok.eos_token_id])
    tok.save_pretrained(merged_dir)
    return adapter_dir, base_dir, merged_dir


def scaled_lora_model(adapter_dir: Path, base_dir: Path, factor: float, layers=()):
    """The base with the adapter's delta scaled by `factor` (on `layers`, all when empty), built with peft and
    merged: the reference for weight-space amplification."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir)
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and (not layers or any(f".layers.{i}." in name + "." for i in layers)):
            for adapter in module.scaling:
                module.scaling[adapter] *= factor
    return model.merge_and_unload().eval()
