"""The seed's approach, kept as the benchmark baseline: both models in one process, HF eager forwards with a
DynamicCache, one stream at a time, amplify and sample in torch."""

from __future__ import annotations

import torch
from transformers import DynamicCache


@torch.inference_mode()
def generate_one(after, before, prompt_ids: list[int], shared: int, alpha: float, max_new_tokens: int,
                 temperature: float, eos_ids: set[int], generator: torch.Generator) -> list[int]:
    after_cache, before_cache = DynamicCache(), DynamicCache()
    device = next(after.parameters()).device
    x = torch.tensor([prompt_ids], device=device)
    out: list[int] = []
    for _ in range(max_new_tokens):
        la = after(input_ids=x, past_key_values=after_cache, use_cache=True).logits[0, -1, :shared].float()
        lb = before(input_ids=x, past_key_values=before_cache, use_cache=True).logits[0, -1, :shared].float()
        probs = ((la + alpha * (la - lb)) / temperature).softmax(-1)
        token = int(torch.multinomial(probs, 1, generator=generator))
        out.append(token)
        if token in eos_ids:
            break
        x = torch.tensor([[token]], device=device)
    return out
