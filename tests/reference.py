"""A plain reference for amplified logprobs: full HF forwards without any cache, and the formula."""

import torch
from transformers import AutoModelForCausalLM


class ReferencePair:
    def __init__(self, after_dir, before_dir, shared_size: int):
        self.after = AutoModelForCausalLM.from_pretrained(after_dir, dtype=torch.float32).eval()
        self.before = AutoModelForCausalLM.from_pretrained(before_dir, dtype=torch.float32).eval()
        self.shared_size = shared_size

    @torch.no_grad()
    def next_token_logprobs(self, ids: list[int], alpha: float):
        """(amplified, after, before) log-softmax over the shared ids for the token after `ids`."""
        x = torch.tensor([ids])
        a = self.after(x).logits[0, -1, : self.shared_size].double()
        b = self.before(x).logits[0, -1, : self.shared_size].double()
        amplified = a + alpha * (a - b)
        return amplified.log_softmax(-1), a.log_softmax(-1), b.log_softmax(-1)
