"""The device side of a worker call: every row's state in preallocated buffers, and the tensor-only step that
turns both models' logits into each row's next token and updates that state in place.

A call stages the rows' fields (sampling parameters, counts, pending inputs, KV lengths) and the call's
uniforms into one host buffer (pinned on CUDA) and copies it to the device once; the steps then run without a
host sync; at the end the sampled tokens (and logprobs, when asked for) come back in one copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import sampling
from .rows import MODELS, CallInputs, RowTable

FIELDS = ("alpha", "temperature", "top_p", "top_k", "min_new", "generated", "budget", "token_after",
          "token_before", "length_after", "length_before")
LOGPROB_FIELDS = ("amplified", "after", "before", "sampled", "kl")


@dataclass(frozen=True)
class StepKind:
    """Which optional work a step does; fixed for a whole call (and a key of its captured graphs)."""

    filters: bool
    """Some row uses top-k or top-p (one sort over the vocabulary)."""
    logprobs: bool
    """Some row asked for logprobs."""


class DecodeState:
    def __init__(self, *, rows: int, steps: int, vocab: int, shared: torch.Tensor, eos_ids: tuple[int, ...],
                 max_logprobs: int, device):
        self.rows, self.steps, self.vocab, self.device = rows, steps, vocab, torch.device(device)
        self.max_logprobs = max_logprobs
        d = self.device
        self.not_shared = ~shared.to(d)
        self.eos = torch.zeros(vocab, dtype=torch.bool, device=d)
        eos = [i for i in eos_ids if i < vocab]
        self.eos[eos] = True
        self.staged = torch.zeros(rows, len(FIELDS) + steps, dtype=torch.float64, device=d)
        self.host = torch.zeros(rows, len(FIELDS) + steps, dtype=torch.float64,
                                pin_memory=self.device.type == "cuda")
        self.alpha = torch.zeros(rows, device=d)
        self.temperature = torch.ones(rows, device=d)
        self.top_p = torch.ones(rows, device=d)
        self.top_k = torch.zeros(rows, dtype=torch.long, device=d)
        self.min_new = torch.zeros(rows, dtype=torch.long, device=d)
        self.generated = torch.zeros(rows, dtype=torch.long, device=d)
        self.budget = torch.zeros(rows, dtype=torch.long, device=d)
        self.active = torch.zeros(rows, dtype=torch.bool, device=d)
        self.tokens = {m: torch.zeros(rows, dtype=torch.long, device=d) for m in MODELS}
        self.lengths = {m: torch.zeros(rows, dtype=torch.long, device=d) for m in MODELS}
        self.uniforms = torch.zeros(rows, steps, dtype=torch.float64, device=d)
        self.step = torch.zeros(1, dtype=torch.long, device=d)
        self.any_active = torch.zeros(1, dtype=torch.bool, device=d)
        self.out_tokens = torch.zeros(rows, steps, dtype=torch.long, device=d)
        self.taken = torch.zeros(rows, dtype=torch.long, device=d)
        self.out_logprobs = {f: torch.zeros(rows, steps, device=d) for f in LOGPROB_FIELDS}
        self.top_ids = torch.zeros(rows, steps, max_logprobs, dtype=torch.long, device=d)
        self.top_logprobs = torch.zeros(rows, steps, max_logprobs, device=d)

    # -- per call -----------------------------------------------------------------------------------------
    def load(self, table: RowTable, inputs: CallInputs, uniforms: np.ndarray) -> None:
        """Stage rows [0, inputs.rows) from the row table and copy them to the device in one transfer; rows past
        it are left inactive."""
        n = inputs.rows
        host = self.host.numpy()
        host[:] = 0
        params = table.params[:n]
        host[:n, 0] = [p.logit_alpha for p in params]
        host[:n, 1] = [p.temperature for p in params]
        host[:n, 2] = [p.top_p for p in params]
        host[:n, 3] = [p.top_k for p in params]
        host[:n, 4] = [p.min_new_tokens for p in params]
        host[:n, 5] = table.generated[:n]
        host[:n, 6] = inputs.budgets
        host[:n, 7] = inputs.tokens["after"]
        host[:n, 8] = inputs.tokens["before"]
        host[:n, 9] = table.lengths["after"][:n]
        host[:n, 10] = table.lengths["before"][:n]
        host[:n, len(FIELDS):len(FIELDS) + uniforms.shape[1]] = uniforms
        self.staged.copy_(self.host, non_blocking=True)
        s = self.staged
        self.alpha.copy_(s[:, 0])
        self.temperature.copy_(s[:, 1])
        self.top_p.copy_(s[:, 2])
        self.top_k.copy_(s[:, 3])
        self.min_new.copy_(s[:, 4])
        self.generated.copy_(s[:, 5])
        self.budget.copy_(s[:, 6])
        self.tokens["after"].copy_(s[:, 7])
        self.tokens["before"].copy_(s[:, 8])
        self.lengths["after"].copy_(s[:, 9])
        self.lengths["before"].copy_(s[:, 10])
        self.uniforms.copy_(s[:, len(FIELDS):])
        self.active.copy_(self.budget > 0)
        self.step.zero_()
        self.taken.zero_()

    def read(self, rows: int, steps: int, kind: StepKind) -> dict[str, np.ndarray]:
        """The call's results for rows [0, rows) and its first `steps` steps, in one transfer per buffer."""
        out = {"tokens": self.out_tokens[:rows, :steps], "taken": self.taken[:rows]}
        if kind.logprobs:
            out |= {f: self.out_logprobs[f][:rows, :steps] for f in LOGPROB_FIELDS}
            out |= {"top_ids": self.top_ids[:rows, :steps], "top_logprobs": self.top_logprobs[:rows, :steps]}
        return {k: v.cpu().numpy() for k, v in out.items()}


def sample_step(s: DecodeState, after: torch.Tensor, before: torch.Tensor, kind: StepKind) -> None:
    """One token for each of rows [0, B) (B = len(after)) from both models' fp32 logits; updates the state in
    place: the pending inputs and KV lengths of both models, counts, budgets, which rows are still active."""
    b = after.shape[0]
    active = s.active[:b]
    amplified = sampling.amplify(after[:, : s.vocab], before[:, : s.vocab], s.alpha[:b])
    amplified = sampling.mask_ids(amplified, s.not_shared)
    allowed = sampling.ban_in_rows(amplified, s.eos, s.generated[:b] < s.min_new[:b])
    temperature = s.temperature[:b]
    drawn_from = sampling.scale_by_temperature(allowed, temperature)
    if kind.filters:
        drawn_from = sampling.filter_top_k_top_p(drawn_from, s.top_k[:b], s.top_p[:b])
    column = s.step.expand(b).unsqueeze(-1)
    uniforms = s.uniforms[:b].gather(1, column).squeeze(-1)
    token = sampling.sample(drawn_from, temperature == 0, uniforms)
    s.out_tokens[:b].scatter_(1, column, token.unsqueeze(-1))
    if kind.logprobs:
        _record_logprobs(s, b, column, token, amplified, after, before, drawn_from, temperature)
    advance = active.long()
    s.taken[:b] += advance
    s.generated[:b] += advance
    s.budget[:b] -= advance
    for m in MODELS:
        s.lengths[m][:b] += advance
        s.tokens[m][:b] = torch.where(active, token, s.tokens[m][:b])
    s.active[:b] = active & (s.budget[:b] > 0) & ~s.eos[token]
    s.step += 1
    s.any_active.copy_(s.active[:b].any().unsqueeze(0))


def _record_logprobs(s, b, column, token, amplified, after, before, drawn_from, temperature) -> None:
    after = sampling.mask_ids(after[:, : s.vocab].float(), s.not_shared)
    before = sampling.mask_ids(before[:, : s.vocab].float(), s.not_shared)
    amp_lp = amplified.log_softmax(-1)
    chosen = token.unsqueeze(-1)
    values = {
        "amplified": amp_lp.gather(-1, chosen).squeeze(-1),
        "after": sampling.token_logprobs(after, token),
        "before": sampling.token_logprobs(before, token),
        "sampled": torch.where(temperature > 0, sampling.token_logprobs(drawn_from, token), 0.0),
        "kl": sampling.kl_divergence(after, before),
    }
    for name, value in values.items():
        s.out_logprobs[name][:b].scatter_(1, column, value.unsqueeze(-1))
    if s.max_logprobs:
        top_lp, top_ids = amp_lp.topk(s.max_logprobs, dim=-1)
        index = column.unsqueeze(-1).expand(b, 1, s.max_logprobs)
        s.top_ids[:b].scatter_(1, index, top_ids.unsqueeze(1))
        s.top_logprobs[:b].scatter_(1, index, top_lp.unsqueeze(1))
