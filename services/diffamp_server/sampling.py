"""The math of amplified sampling, as pure functions on batched tensors.

Order: amplify in fp32 -> restrict to the shared vocabulary -> temperature -> top-k -> top-p
-> sample. Every function takes a batch: row i of every tensor argument belongs to sequence i.
"""

from __future__ import annotations

import hashlib
import struct

import torch

NEG_INF = float("-inf")


def amplify(after: torch.Tensor, before: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """after + alpha * (after - before), in fp32. alpha has one value per row."""
    after = after.float()
    before = before.float()
    return after + alpha.float().unsqueeze(-1) * (after - before)


def restrict_vocab(logits: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    """Cut logits to len(shared) columns and set ids outside the shared vocabulary to -inf."""
    logits = logits[..., : shared.shape[0]]
    return logits.masked_fill(~shared, NEG_INF)


def ban_tokens(logits: torch.Tensor, ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Set the given ids to -inf in the rows where `rows` is True (e.g. EOS before min_new_tokens)."""
    ids = ids[ids < logits.shape[-1]]
    banned = torch.zeros_like(logits, dtype=torch.bool)
    banned[:, ids] = True
    return logits.masked_fill(banned & rows.unsqueeze(-1), NEG_INF)


def apply_temperature(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Divide each row by its temperature; rows with temperature 0 (greedy) are left as they are."""
    t = torch.where(temperature > 0, temperature, torch.ones_like(temperature))
    return logits / t.unsqueeze(-1)


def apply_top_k(logits: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    """Keep each row's top_k largest logits (ties at the k-th value kept); top_k <= 0 keeps all."""
    vocab = logits.shape[-1]
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    sorted_desc = logits.sort(dim=-1, descending=True).values
    kth = sorted_desc.gather(-1, (k - 1).unsqueeze(-1))
    return logits.masked_fill(logits < kth, NEG_INF)


def apply_top_p(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p; top_p >= 1 keeps all."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = (mass_before >= top_p.unsqueeze(-1)) & (top_p.unsqueeze(-1) < 1)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def sampling_logits(
    amplified: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
) -> torch.Tensor:
    """The logits of the distribution actually sampled from: temperature, then top-k, then top-p.
    A filter no row uses is skipped (each costs a sort over the vocabulary)."""
    logits = apply_temperature(amplified, temperature)
    if bool((top_k > 0).any()):
        logits = apply_top_k(logits, top_k)
    if bool((top_p < 1).any()):
        logits = apply_top_p(logits, top_p)
    return logits


def seeded_uniform(seed: int, sample_index: int, position: int) -> float:
    """A uniform in [0, 1) that depends only on (seed, sample index, position)."""
    digest = hashlib.blake2b(struct.pack("<QQQ", seed, sample_index, position), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 11) / float(1 << 53)


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
    """KL(p || q) per row, in nats, from two rows of logits over the same ids."""
    log_p = p_logits.float().log_softmax(dim=-1)
    log_q = q_logits.float().log_softmax(dim=-1)
    terms = log_p.exp() * (log_p - log_q)
    return torch.nan_to_num(terms, nan=0.0).sum(dim=-1)
