"""A plain reference for amplified logprobs: full HF forwards without any cache, and the formula."""

import torch
from transformers import AutoModelForCausalLM


class ReferencePair:
    """`shared` is the pair's SharedVocab, or the number of ids both share (all of [0, n))."""

    def __init__(self, after_dir, before_dir, shared):
        self.after = AutoModelForCausalLM.from_pretrained(after_dir, dtype=torch.float32).eval()
        self.before = AutoModelForCausalLM.from_pretrained(before_dir, dtype=torch.float32).eval()
        self.size = shared if isinstance(shared, int) else shared.size
        self.outside = torch.ones(self.size, dtype=torch.bool)
        for start, stop in ((0, shared),) if isinstance(shared, int) else shared.ranges:
            self.outside[start:stop] = False

    @torch.no_grad()
    def next_token_logprobs(self, ids: list[int], alpha: float):
        """(amplified, after, before) log-softmax over the shared ids for the token after `ids` (-inf elsewhere)."""
        x = torch.tensor([ids])
        a = self.after(x).logits[0, -1, : self.size].double().masked_fill(self.outside, float("-inf"))
        b = self.before(x).logits[0, -1, : self.size].double().masked_fill(self.outside, float("-inf"))
        amplified = a + alpha * (a - b)
        amplified = amplified.masked_fill(self.outside, float("-inf"))
        return amplified.log_softmax(-1), a.log_softmax(-1), b.log_softmax(-1)
