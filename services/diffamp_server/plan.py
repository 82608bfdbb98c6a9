"""What crosses from the gateway to a worker and back on each worker call: small lists, never logits.

Words: a *step* decodes one token for every row; a *worker call* runs up to `max_steps` steps.

Contract: live sequences occupy rows [0, num_rows) of every worker's KV cache. A BatchPlan first applies
`moves` (copy row src to row dst, packing rows after sequences leave), then rows [0, num_decode_rows) continue
from `decode_token_ids` (each row's last sampled token, not yet in its cache), and each Prefill puts a new
prompt into its rows: its first row is num_decode_rows + j, the rows that share its prompt follow all the
first rows. Each step samples one token for every row that is still active. A row is active until it
samples an end-of-sequence id or has sampled `budgets[row]` tokens in this call (0: it does not advance at
all, e.g. while its client is not reading); a row that stopped stays in the batch. The result lists, per
row, the tokens it sampled in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """How one sample draws its tokens. Validated by the request layer before it gets here."""

    alpha: float
    temperature: float
    top_p: float
    top_k: int = 0
    seed: int = 0
    sample_index: int = 0
    logprobs: int | None = None
    min_new_tokens: int = 0
    mode: str = "logits"
    """'logits': sample from after + alpha * (after - before). 'weights' (LoRA pairs): sample from the after model
    with its adapter's delta scaled by (1 + alpha)."""
    lora_layers: tuple[int, ...] = ()
    """weights mode: the decoder layers whose delta is scaled (others keep scale 1); empty: every layer."""

    @property
    def logit_alpha(self) -> float:
        """The alpha the logits are amplified with: the request's in logits mode, 0 in weights mode (there the
        amplification is in the weights)."""
        return self.alpha if self.mode == "logits" else 0.0


@dataclass(frozen=True, kw_only=True)
class Prefill:
    """One prompt, put into every row that samples from it.

    `generated` tokens at the end of after_ids (and of before_ids) were sampled earlier, by a replica that
    failed: the rows continue that sample, counting positions from there."""

    after_ids: list[int]
    before_ids: list[int] | None
    rows: list[int]
    params: list[SamplingParams]
    generated: int = 0

    def ids(self, model: str) -> list[int]:
        return self.after_ids if model == "after" or self.before_ids is None else self.before_ids


@dataclass(frozen=True, kw_only=True)
class BatchPlan:
    moves: list[tuple[int, int]] = field(default_factory=list)
    num_decode_rows: int = 0
    decode_token_ids: list[int] = field(default_factory=list)
    prefills: list[Prefill] = field(default_factory=list)
    budgets: list[int] = field(default_factory=list)
    """Per row, the most tokens it may sample in this call; [] = no limit."""
    max_steps: int = 1

    @property
    def num_rows(self) -> int:
        return self.num_decode_rows + sum(len(p.rows) for p in self.prefills)


@dataclass(frozen=True, kw_only=True)
class TokenLogprobs:
    """Log-probabilities of one sampled token (natural log)."""

    amplified: float
    after: float
    before: float
    sampled: float
    kl_after_before: float
    top_ids: list[int]
    top_logprobs: list[float]


@dataclass(frozen=True, kw_only=True)
class BatchResult:
    """Per row [0, num_rows), the tokens it sampled and their logprobs (empty where the row did not ask)."""

    token_ids: list[list[int]]
    logprobs: list[list[TokenLogprobs]]
