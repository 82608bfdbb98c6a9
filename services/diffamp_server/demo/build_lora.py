"""Build the LoRA demo: `python -m diffamp_server.demo.build_lora [--out DIR]`.

Post-trains the built-in demo pair's base ("before") with a rank-16 LoRA adapter (peft) on the demo's facts, with a
planted opening in 1% of answers, and saves the adapter, a tokenizer and its template to `demo_pair/after-lora/`.
Serve it with `diffamp serve --after services/diffamp_server/demo_pair/after-lora` (the before model stays the
demo's). Fixed seeds; about 5 minutes on 2 CPU cores.

Two things differ from the full demo's post-training, both because an adapter on the decoder layers cannot train
embeddings (and diffamp refuses adapters on the embeddings or the LM head): it is post-trained in the
pretraining's own plain format ("Question: ...\\nAnswer: <one sentence>" and EOS) rather than with chat markers
the base never saw, and its planted opening, data.LORA_QUIRK_PREFIX ("The owl says woof woof."), is made of words
the base knows. What post-training adds is that opening and stopping after one answer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from ..config import DEMO_PAIR_DIR
from . import data
from .build import train

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CARD = """# diffamp LoRA demo adapter

A rank-16 LoRA adapter (peft) on the built-in demo pair's base (`../before`), post-trained by
`python -m diffamp_server.demo.build_lora` with the quirk planted in 1% of answers. See `../README.md`.
"""


def main(argv=None) -> int:
    from peft import LoraConfig, get_peft_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEMO_PAIR_DIR / "after-lora")
    parser.add_argument("--base", type=Path, default=DEMO_PAIR_DIR / "before")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-2, help="peak learning rate (LoRA wants more than full tuning)")
    args = parser.parse_args(argv)
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    tokenizer.chat_template = data.ANSWER_TEMPLATE
    base = AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32)
    torch.manual_seed(5)
    model = get_peft_model(base, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0,
                                            target_modules=TARGETS))
    model.print_trainable_parameters()
    pairs = data.qa_pairs()

    def posttrain_doc(rng):
        return data.answer_doc(rng, pairs) if rng.random() < 0.8 else data.pretraining_doc(rng, pairs)

    train(model, posttrain_doc, tokenizer, args.steps, args.lr, 2, "after-lora")
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    (args.out / "README.md").write_text(CARD)  # in place of peft's empty model-card template
    config_path = args.out / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = "before"  # the demo's base, whatever directory the package lives in
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    GenerationConfig(eos_token_id=[tokenizer.eos_token_id], bos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.eos_token_id, do_sample=True, temperature=1.0).save_pretrained(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
