"""Combining the two models' logits and sampling, next to the logits.

`PairEngine` is the worker-side interface every placement shares: `step(plan) -> BatchResult`.
The colocated engine holds both runners in one process; the split placement feeds `Sampler` with the
before logits received over torch.distributed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import sampling
from .model_runner import ModelRunner
from .plan import BatchPlan, BatchResult, SamplingParams, TokenLogprobs


class RowParams:
    """Sampling parameters and token counts of every live row, kept packed like the KV cache rows."""

    def __init__(self, max_batch_size: int):
        self.params: list[SamplingParams | None] = [None] * max_batch_size
        self.generated = [0] * max_batch_size

    def apply(self, plan: BatchPlan) -> None:
        for src, dst in plan.moves:
            self.params[dst] = self.params[src]
            self.generated[dst] = self.generated[src]
        for prefill in plan.prefills:
            for row, params in zip(prefill.rows, prefill.params):
                self.params[row] = params
                self.generated[row] = prefill.generated

    def live(self, num_rows: int) -> list[SamplingParams]:
        return self.params[:num_rows]


@dataclass(frozen=True)
class RowColumns:
    """The live rows' sampling parameters as tensors, built once per worker call."""

    alpha: torch.Tensor
    temperature: torch.Tensor
    top_p: torch.Tensor
    top_k: torch.Tensor
    min_new_tokens: torch.Tensor | None  # None when no row holds EOS back
    wants_logprobs: bool

    @classmethod
    def of(cls, params: list[SamplingParams], device) -> "RowColumns":
        def column(name, dtype=torch.float32):
            return torch.tensor([getattr(p, name) for p in params], dtype=dtype, device=device)

        min_new = column("min_new_tokens", torch.long) if any(p.min_new_tokens for p in params) else None
        return cls(column("alpha"), column("temperature"), column("top_p"), column("top_k", torch.long), min_new,
                   any(p.logprobs is not None for p in params))


class Sampler:
    """Turns one step's after and before logits into tokens, for the rows described by RowParams."""

    def __init__(self, shared_vocab: torch.Tensor, eos_ids: tuple[int, ...], max_batch_size: int):
        self.shared_vocab = shared_vocab
        self.eos_ids = torch.tensor(sorted(eos_ids), dtype=torch.long, device=shared_vocab.device)
        self.eos_ids = self.eos_ids[self.eos_ids < shared_vocab.shape[0]]
        self.rows = RowParams(max_batch_size)

    def run(self, plan: BatchPlan, after: torch.Tensor, before: torch.Tensor, next_logits) -> BatchResult:
        """Sample the plan's first step from (after, before), then keep going as the plan allows;
        next_logits(tokens, active) -> (after, before) runs one more decode step on both models."""
        self.rows.apply(plan)
        params = self.rows.live(plan.num_rows)
        columns = RowColumns.of(params, after.device)
        budget = torch.tensor(plan.budgets or [1 << 30] * plan.num_rows, dtype=torch.long, device=after.device)
        active = budget > 0
        token_ids: list[list[int]] = [[] for _ in params]
        logprobs: list[list[TokenLogprobs]] = [[] for _ in params]
        for step in range(plan.max_steps):
            tokens, step_logprobs = self._sample(params, columns, after, before)
            taking = active.tolist()
            for row, token in enumerate(tokens.tolist()):
                if taking[row]:
                    token_ids[row].append(token)
                    self.rows.generated[row] += 1
                    if step_logprobs[row] is not None:
                        logprobs[row].append(step_logprobs[row])
            budget -= active.long()
            active &= (budget > 0) & ~torch.isin(tokens, self.eos_ids)
            if step + 1 == plan.max_steps or not bool(active.any()):
                break
            after, before = next_logits(tokens, active)
        return BatchResult(token_ids=token_ids, logprobs=logprobs)

    def _sample(self, params: list[SamplingParams], columns: "RowColumns", after: torch.Tensor, before: torch.Tensor):
        device = after.device
        generated = self.rows.generated
        after = sampling.restrict_vocab(after.float(), self.shared_vocab)
        before = sampling.restrict_vocab(before.float(), self.shared_vocab)
        amplified = sampling.amplify(after, before, columns.alpha)
        allowed = amplified
        if columns.min_new_tokens is not None:
            too_early = torch.tensor(generated[: len(params)], device=device) < columns.min_new_tokens
            allowed = sampling.ban_tokens(amplified, self.eos_ids, too_early)
        temperature = columns.temperature
        filtered = sampling.sampling_logits(allowed, temperature, columns.top_k, columns.top_p)
        uniforms = torch.tensor(
            [sampling.seeded_uniform(p.seed, p.sample_index, generated[i]) for i, p in enumerate(params)],
            dtype=torch.float64,
            device=device,
        )
        tokens = sampling.sample(filtered, temperature == 0, uniforms)
        if not columns.wants_logprobs:
            return tokens, [None] * len(params)
        return tokens, _logprobs(params, tokens, amplified, after, before, filtered, temperature)


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

    def __init__(self, after: ModelRunner, before: ModelRunner, shared_vocab: torch.Tensor,
                 eos_ids: tuple[int, ...], max_batch_size: int):
        self.after = after
        self.before = before
        self.sampler = Sampler(shared_vocab.to(after.device), eos_ids, max_batch_size)

    def step(self, plan: BatchPlan) -> BatchResult:
        after_logits = self.after.run(plan, "after")
        before_logits = self.before.run(plan, "before").to(after_logits.device)
        return self.sampler.run(plan, after_logits, before_logits, self._decode)

    def _decode(self, tokens: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        after_logits = self.after.decode(tokens, active)
        return after_logits, self.before.decode(tokens, active).to(after_logits.device)
