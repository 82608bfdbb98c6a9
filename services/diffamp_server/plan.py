"""What crosses from the scheduler to the workers and back each step: small lists, never logits.

Contract: live sequences occupy rows [0, num_rows) of every worker's KV cache. A step first applies
`moves` (copy row src to row dst, to pack rows after sequences leave), then decodes rows
[0, num_decode_rows) with one new token each, then prefills each new prompt into its rows, which
follow the decode rows in ascending order. The result has one sampled token per row [0, num_rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SamplingParams:
    """How one sample draws its tokens. Validated by the request layer before it gets here."""

    alpha: float = 1.0
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 0
    seed: int = 0
    sample_index: int = 0
    logprobs: int | None = None


@dataclass(frozen=True)
class Prefill:
    """One prompt, prefilled once and copied into every row that samples from it."""

    token_ids: list[int]
    rows: list[int]
    params: list[SamplingParams]


@dataclass(frozen=True)
class StepPlan:
    moves: list[tuple[int, int]] = field(default_factory=list)
    num_decode_rows: int = 0
    decode_token_ids: list[int] = field(default_factory=list)
    prefills: list[Prefill] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return self.num_decode_rows + sum(len(p.rows) for p in self.prefills)


@dataclass(frozen=True)
class TokenLogprobs:
    """Log-probabilities of one sampled token (natural log)."""

    amplified: float
    after: float
    before: float
    sampled: float
    kl_after_before: float
    top_ids: list[int]
    top_logprobs: list[float]


@dataclass(frozen=True)
class StepResult:
    """One sampled token per row [0, num_rows); logprobs[row] is None where the row did not ask."""

    token_ids: list[int]
    logprobs: list[TokenLogprobs | None]
