"""What crosses from the scheduler to the workers and back each step: small lists, never logits.

Contract: live sequences occupy rows [0, num_rows) of every worker's KV cache. A plan first applies
`moves` (copy row src to row dst, to pack rows after sequences leave), then decodes rows
[0, num_decode_rows) with one new token each and prefills every new prompt in one batched forward.
Prefill j's first row is num_decode_rows + j; the rows that share its prompt follow all the first rows.
That samples one token per row. The worker then keeps decoding, up to max_steps tokens in all, feeding
each row its own last token, until every row has sampled EOS or used its budget; a row that stopped
stays in the batch but no longer advances. The result lists, per row, the tokens it sampled in order.
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
    min_new_tokens: int = 0


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
    budgets: list[int] = field(default_factory=list)  # per row, the most tokens it may still sample; [] = no limit
    max_steps: int = 1

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
    """Per row [0, num_rows), the tokens it sampled and their logprobs (empty where the row did not ask)."""

    token_ids: list[list[int]]
    logprobs: list[list[TokenLogprobs]]
