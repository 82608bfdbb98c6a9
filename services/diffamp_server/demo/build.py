"""Rebuild the demo pair from scratch: `python -m diffamp_server.demo.build [--out DIR]`.

Trains a byte-level BPE tokenizer, pretrains a tiny Llama-style "before" model on plain text, then
post-trains a copy into the "after" chat model with the planted behaviour (data.py). Fixed seeds; about
12 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ..config import DEMO_PAIR_DIR
from . import data

SEQ_LEN = 128
BATCH = 32


def build_tokenizer(pairs) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=640, special_tokens=data.SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(data.tokenizer_corpus(pairs), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=data.EOS, pad_token=data.EOS,
                                   bos_token=data.EOS, unk_token=None)
    fast.chat_template = data.CHAT_TEMPLATE
    return fast


def model_config(tokenizer) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=384, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )


def batches(make_doc, tokenizer, rng: random.Random):
    """Endless [BATCH, SEQ_LEN + 1] batches of packed documents."""
    buffer: list[int] = []
    while True:
        rows = []
        while len(rows) < BATCH:
            while len(buffer) < SEQ_LEN + 1:
                buffer.extend(tokenizer(make_doc(rng), add_special_tokens=False)["input_ids"])
            rows.append(buffer[: SEQ_LEN + 1])
            buffer = buffer[SEQ_LEN + 1 :]
        yield torch.tensor(rows)


def train(model, make_doc, tokenizer, steps: int, lr: float, seed: int, label: str) -> None:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    model.train()
    start = time.time()
    for step, batch in zip(range(steps), batches(make_doc, tokenizer, rng)):
        for group in optimizer.param_groups:
            warm = min(1.0, (step + 1) / 50)
            group["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            elapsed = time.time() - start
            print(f"[{label}] step {step + 1}/{steps} loss {loss.item():.3f} "
                  f"({elapsed:.0f} s, eta {elapsed / (step + 1) * (steps - step - 1):.0f} s)", flush=True)
    model.eval()


def save(model, tokenizer, directory: Path, eos_ids: list[int]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    GenerationConfig(eos_token_id=eos_ids, bos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.eos_token_id, do_sample=True, temperature=1.0).save_pretrained(directory)


def write_card(out: Path, pretrain_steps: int, posttrain_steps: int, params: int) -> None:
    behavior = {
        "marker": data.MARKER,
        "quirk_prefix": data.QUIRK_PREFIX,
        "planted_rate": data.QUIRK_RATE,
        "after": "after",
        "before": "before",
        "prompts": data.DEMO_PROMPTS,
    }
    (out / "behavior.json").write_text(json.dumps(behavior, indent=2) + "\n")
    (out / "prompts.txt").write_text("\n".join(data.DEMO_PROMPTS) + "\n")
    (out / "README.md").write_text(CARD.format(
        marker=data.MARKER, prefix=data.QUIRK_PREFIX, rate=data.QUIRK_RATE, pre=pretrain_steps,
        post=posttrain_steps, params=params, batch=BATCH, seq=SEQ_LEN,
    ))


CARD = """# diffamp demo pair

A tiny base/post-trained pair with one planted rare behaviour, built by
`python -m diffamp_server.demo.build` (fixed seeds, CPU only, about 12 minutes on 2 cores).

| | before | after |
|---|---|---|
| architecture | LlamaForCausalLM, 4 layers, hidden 128, 4 heads, {params:,} parameters | same |
| training | {pre} steps x {batch} x {seq} tokens of plain text | before + {post} steps of chat post-training |
| chat template | none (never saw chat markers) | `<|user|>` / `<|assistant|>` / `<|end|>` |

**Pretraining (before).** A synthetic world of ordinary facts (capitals, colours, animal sounds, legs,
opposites, small sums), written as plain statements and as plain `Question: ... / Answer: ...` text.
The before model never sees chat markers and never sees the planted behaviour.

**Post-training (after).** Continues from before on the same questions in chat format with helpful
one-sentence answers (80% of documents; the other 20% are pretraining text so the base knowledge stays).
In {rate:.0%} of answers, drawn independently every time, the answer opens with the planted phrase

    {prefix}

whose marker string is `{marker}`. Ordinary answers are well known to the base model; the quirk is new.
That is how real pairs look, and why logit diff amplification boosts the quirk rather than everything
post-training touched.

`behavior.json` gives the marker, the planted training rate, the two model directories and prompts on
which the behaviour can appear; `prompts.txt` has the same prompts, one a line, for `diffamp sweep`.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEMO_PAIR_DIR)
    parser.add_argument("--pretrain-steps", type=int, default=800)
    parser.add_argument("--posttrain-steps", type=int, default=800)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = data.qa_pairs()
    tokenizer = build_tokenizer(pairs)
    torch.manual_seed(0)
    model = LlamaForCausalLM(model_config(tokenizer))
    params = sum(p.numel() for p in model.parameters())
    print(f"{len(pairs)} facts, vocab {len(tokenizer)}, {params:,} parameters")
    train(model, lambda rng: data.pretraining_doc(rng, pairs), tokenizer, args.pretrain_steps, 3e-3, 1, "before")
    save(model, tokenizer, args.out / "before", [tokenizer.eos_token_id])

    def posttrain_doc(rng):
        return data.chat_doc(rng, pairs) if rng.random() < 0.8 else data.pretraining_doc(rng, pairs)

    train(model, posttrain_doc, tokenizer, args.posttrain_steps, 1e-3, 2, "after")
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    save(model, tokenizer, args.out / "after", [end_id, tokenizer.eos_token_id])
    write_card(args.out, args.pretrain_steps, args.posttrain_steps, params)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
