"""Tiny model pairs built from configs with fixed seeds (transformers' tester sizes), saved as HF directories."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, GenerationConfig, LlamaConfig, LlamaForCausalLM
from transformers import PreTrainedTokenizerFast

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


def build_pair(root: Path, kind: str) -> tuple[Path, Path]:
    """kind: 'llama', 'gpt2' or 'vocab' (Llama-style, after has 3 trailing added tokens and a padded embedding)."""
    after_dir, before_dir = root / f"{kind}-after", root / f"{kind}-before"
    extra = ["<|tool|>", "<|think|>", "<|quirk|>"] if kind == "vocab" else []
    after_tok = build_tokenizer(after_dir, extra)
    before_tok = build_tokenizer(before_dir)
    for seed, directory, tok in ((0, after_dir, after_tok), (1, before_dir, before_tok)):
        torch.manual_seed(seed)
        vocab = len(tok) + (5 if kind == "vocab" and directory == after_dir else 0)
        if kind == "gpt2":
            config = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
            model = GPT2LMHeadModel(config)
        else:
            config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
            model = LlamaForCausalLM(config)
        _save(model, tok, directory, [tok.convert_tokens_to_ids("<|end|>"), tok.eos_token_id])
    return after_dir, before_dir
