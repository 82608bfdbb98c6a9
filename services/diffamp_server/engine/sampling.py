"""The math of amplified sampling, as pure functions on batched tensors (row i of every argument belongs to
sequence i). No host syncs and no Python branch on data: they run eagerly, compiled, or in a CUDA graph.

Order: amplify in fp32 -> mask ids outside the shared vocabulary (after amplifying: -inf - -inf would be NaN)
-> the EOS ban before min_new_tokens -> temperature -> top-k -> top-p -> sample (temperature 0 = greedy).
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def amplify(after: torch.Tensor, before: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """after + alpha * (after - before), in fp32. alpha has one value per row."""
    after = after.float()
    before = before.float()
    return after + alpha.float().unsqueeze(-1) * (after - before)


def mask_ids(logits: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """-inf where masked[id] (a bool row over the vocabulary, or one per row) is True."""
    return logits.masked_fill(masked, NEG_INF)


def ban_in_rows(logits: torch.Tensor, banned: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """-inf at the banned ids (bool [V]) in the rows where `rows` (bool [B]) is True: EOS before min_new_tokens."""
    return logits.masked_fill(banned.unsqueeze(0) & rows.unsqueeze(-1), NEG_INF)


def scale_by_temperature(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Each row divided by its temperature after subtracting its maximum, so that no temperature, however small,
    overflows: the largest logit becomes 0 and the others are <= 0 (or -inf). Rows with temperature 0 (greedy)
    are only shifted, which keeps their argmax."""
    t = torch.where(temperature > 0, temperature, torch.ones_like(temperature)).unsqueeze(-1)
    return (logits - logits.amax(dim=-1, keepdim=True)) / t


def filter_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Keep each row's top_k largest logits (ties at the k-th value kept; top_k <= 0 keeps all), then the smallest
    set of those whose mass reaches top_p (top_p >= 1 keeps all). One sort serves both."""
    vocab = logits.shape[-1]
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    kth = sorted_logits.gather(-1, (k - 1).unsqueeze(-1))
    outside_k = sorted_logits < kth
    probs = sorted_logits.masked_fill(outside_k, NEG_INF).softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    outside_p = (mass_before >= top_p.unsqueeze(-1)) & (top_p.unsqueeze(-1) < 1)
    drop = torch.zeros_like(outside_k).scatter(-1, order, outside_k | outside_p)
    return logits.masked_fill(drop, NEG_INF)


def sample(logits: torch.Tensor, greedy: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Draw one token per row by inverting the CDF at that row's uniform; greedy rows take the argmax.

    Inverse-CDF sampling needs one number per row, so a row's draw depends only on its own logits and
    uniform, never on what else shares the batch.
    """
    probs = logits.float().softmax(dim=-1)
    cdf = probs.cumsum(dim=-1)
    target = (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
    drawn = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    drawn = drawn.clamp(max=logits.shape[-1] - 1)
    # searchsorted can land on a zero-probability id sitting on a flat stretch of the CDF's tail.
    drawn = torch.where(probs.gather(-1, drawn.unsqueeze(-1)).squeeze(-1) > 0, drawn, probs.argmax(-1))
    return torch.where(greedy, logits.argmax(dim=-1), drawn)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[row, tokens[row]] for every row."""
    return logits.float().log_softmax(dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, in nats, from two rows of logits over the same ids (-inf where an id is masked)."""
    log_p = p_logits.float().log_softmax(dim=-1)
    log_q = q_logits.float().log_softmax(dim=-1)
    terms = log_p.exp() * (log_p - log_q)
    return torch.nan_to_num(terms, nan=0.0).sum(dim=-1)
