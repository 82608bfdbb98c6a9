"""Combining the two models' logits and sampling, next to the logits.

`PairEngine` is the worker-side interface every placement shares: `step(plan) -> StepResult`.
The colocated engine holds both runners in one process; the split placement feeds `Sampler` with the
before logits received over torch.distributed.
"""

from __future__ import annotations

import torch

from . import sampling
from .model_runner import ModelRunner
from .plan import SamplingParams, StepPlan, StepResult, TokenLogprobs


class RowParams:
    """Sampling parameters and positions of every live row, kept packed like the KV cache rows."""

    def __init__(self, max_batch_size: int):
        self.params: list[SamplingParams | None] = [None] * max_batch_size
        self.generated = [0] * max_batch_size

    def apply(self, plan: StepPlan) -> None:
        for src, dst in plan.moves:
            self.params[dst] = self.params[src]
            self.generated[dst] = self.generated[src]
        for prefill in plan.prefills:
            for row, params in zip(prefill.rows, prefill.params):
                self.params[row] = params
                self.generated[row] = 0

    def live(self, num_rows: int) -> list[SamplingParams]:
        return self.params[:num_rows]


class Sampler:
    """Turns one step's after and before logits into tokens, for the rows described by RowParams."""

    def __init__(self, shared_vocab: torch.Tensor, max_batch_size: int):
        self.shared_vocab = shared_vocab
        self.rows = RowParams(max_batch_size)

    def sample(self, plan: StepPlan, after: torch.Tensor, before: torch.Tensor) -> StepResult:
        self.rows.apply(plan)
        params = self.rows.live(plan.num_rows)
        device = after.device

        def column(name, dtype=torch.float32):
            return torch.tensor([getattr(p, name) for p in params], dtype=dtype, device=device)

        alpha, temperature, top_p = column("alpha"), column("temperature"), column("top_p")
        top_k = column("top_k", torch.long)
        after = sampling.restrict_vocab(after.float(), self.shared_vocab)
        before = sampling.restrict_vocab(before.float(), self.shared_vocab)
        amplified = sampling.amplify(after, before, alpha)
        filtered = sampling.sampling_logits(amplified, temperature, top_k, top_p)
        uniforms = torch.tensor(
            [sampling.seeded_uniform(p.seed, p.sample_index, self.rows.generated[i]) for i, p in enumerate(params)],
            dtype=torch.float64,
            device=device,
        )
        tokens = sampling.sample(filtered, temperature == 0, uniforms)
        for i in range(plan.num_rows):
            self.rows.generated[i] += 1
        token_list = tokens.tolist()
        if all(p.logprobs is None for p in params):
            return StepResult(token_list, [None] * plan.num_rows)
        return StepResult(token_list, _logprobs(params, tokens, amplified, after, before, filtered, temperature))


def _logprobs(params, tokens, amplified, after, before, filtered, temperature) -> list[TokenLogprobs | None]:
    amp_lp = amplified.log_softmax(-1)
    chosen = tokens.unsqueeze(-1)
    amp = amp_lp.gather(-1, chosen).squeeze(-1).tolist()
    aft = sampling.token_logprobs(after, tokens).tolist()
    bef = sampling.token_logprobs(before, tokens).tolist()
    sampled = torch.where(temperature > 0, sampling.token_logprobs(filtered, tokens), 0.0).tolist()
    kl = sampling.kl_divergence(after, before).tolist()
    max_k = max(p.logprobs or 0 for p in params)
    top_lp, top_ids = amp_lp.topk(max_k, dim=-1) if max_k else (None, None)
    out: list[TokenLogprobs | None] = []
    for i, p in enumerate(params):
        if p.logprobs is None:
            out.append(None)
            continue
        k = p.logprobs
        out.append(TokenLogprobs(
            amplified=amp[i], after=aft[i], before=bef[i], sampled=sampled[i], kl_after_before=kl[i],
            top_ids=top_ids[i, :k].tolist() if k else [],
            top_logprobs=top_lp[i, :k].tolist() if k else [],
        ))
    return out


class PairEngine:
    """Both models in one process (the colocated placement, and the library API)."""

    def __init__(self, after: ModelRunner, before: ModelRunner, shared_vocab: torch.Tensor, max_batch_size: int):
        self.after = after
        self.before = before
        self.sampler = Sampler(shared_vocab.to(after.device), max_batch_size)

    def step(self, plan: StepPlan) -> StepResult:
        after_logits = self.after.run(plan)
        before_logits = self.before.run(plan).to(after_logits.device)
        return self.sampler.sample(plan, after_logits, before_logits)
