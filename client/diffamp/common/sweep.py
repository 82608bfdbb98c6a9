"""A sweep's types and its summary: what the server streams, what the client stores, and the table both print.

A sweep samples n completions for every prompt and alpha. Each record keeps the total log-probability of its
tokens under the after model and under the distribution it was drawn from, so samples drawn at alpha != 0
also estimate, by importance weighting, how often the after model itself (alpha = 0) does what a detector
looks for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields

from .defaults import SWEEP
from .stats import MIN_ESS, ImportanceSums, wilson_interval


@dataclass(frozen=True)
class SweepPrompt:
    """One prompt of a sweep: text (with the chat template unless raw), a conversation, or token ids."""

    id: str
    text: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    token_ids: tuple[int, ...] = ()
    system_prompt: str = ""
    raw: bool = False

    def fingerprint(self) -> str:
        """Changes whenever what the models see changes; stored with a sweep to refuse a mixed resume."""
        spec = [self.text, [list(m) for m in self.messages], list(self.token_ids), self.system_prompt, self.raw]
        return hashlib.sha256(json.dumps(spec, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SweepSettings:
    """Everything but the prompts and detectors. Unset fields take the sweep defaults (unfiltered sampling)."""

    alphas: tuple[float, ...]
    n: int
    seed: int = 0
    temperature: float = SWEEP.temperature
    top_p: float = SWEEP.top_p
    top_k: int = SWEEP.top_k
    max_new_tokens: int = SWEEP.max_new_tokens
    min_new_tokens: int = SWEEP.min_new_tokens
    stop: tuple[str, ...] = ()
    modes: tuple[str, ...] = ("logits",)
    """Techniques compared over every prompt and alpha: 'logits', and 'weights' for LoRA pairs."""
    lora_layers: tuple[int, ...] = ()
    """weights mode: the layers whose adapter delta is scaled (all when empty)."""

    RESUMABLE_CHANGES = ("alphas", "n", "modes")
    """Fields a resumed sweep may change: samples stay valid when alphas or modes are added or n grows."""

    @property
    def estimate_is_exact(self) -> bool:
        return estimate_is_exact(self.temperature, self.top_p, self.top_k, self.min_new_tokens)

    def sampling(self) -> dict:
        """The fields every stored sample depends on."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self) if f.name not in self.RESUMABLE_CHANGES}


def estimate_is_exact(temperature: float, top_p: float, top_k: int, min_new_tokens: int) -> bool:
    """Importance weights p_after / q_sampled are exact when q gives every sequence the after model allows a
    non-zero probability: any temperature > 0 does, top_p < 1, top_k and the EOS ban of min_new_tokens do not.
    Stop strings and max_new_tokens end a sample by a rule on its tokens alone, the same under both
    distributions, so they leave the weights exact."""
    return temperature > 0 and top_p >= 1.0 and top_k == 0 and min_new_tokens == 0


@dataclass(frozen=True)
class SweepRecord:
    """One finished sample of a sweep (one JSON line of a sweep file)."""

    prompt_id: str
    alpha: float
    index: int
    seed: int
    text: str
    token_ids: tuple[int, ...]
    finish_reason: str
    detectors: tuple[str, ...]
    logprob_after: float
    logprob_before: float
    logprob_sampled: float
    mode: str = "logits"

    @property
    def key(self) -> tuple[str, str, float, int]:
        return self.prompt_id, self.mode, self.alpha, self.index

    def to_json(self) -> dict:
        out = asdict(self)
        out["token_ids"], out["detectors"] = list(self.token_ids), list(self.detectors)
        return out

    @classmethod
    def from_json(cls, obj: dict) -> "SweepRecord":
        values = {f.name: obj[f.name] for f in fields(cls) if f.name in obj}
        values["token_ids"], values["detectors"] = tuple(values["token_ids"]), tuple(values["detectors"])
        return cls(**values)


@dataclass(frozen=True)
class Estimate:
    """The importance-weighted estimate of the after model's own (alpha = 0) rate."""

    rate: float
    low: float
    high: float
    ess: float
    exact: bool
    warning: str = ""


@dataclass(frozen=True)
class SummaryRow:
    alpha: float
    detector: str
    hits: int
    n: int
    rate: float
    low: float
    high: float
    estimate: Estimate | None = field(default=None)
    mode: str = "logits"


MODE_ORDER = ("logits", "weights")


class SweepSummary:
    """Per mode and alpha: sample counts, detector hits and importance sums, in constant memory."""

    def __init__(self, detectors: list[str], exact: bool, min_ess: float = MIN_ESS):
        self.detectors = list(detectors)
        self.exact = exact
        self.min_ess = min_ess
        self.groups: dict[tuple[str, float], ImportanceSums] = {}

    def add(self, alpha: float, fired: Iterable[str], logprob_after: float, logprob_sampled: float,
            mode: str = "logits") -> None:
        sums = self.groups.get((mode, alpha))
        if sums is None:
            sums = self.groups[(mode, alpha)] = ImportanceSums(len(self.detectors))
        fired = set(fired)
        sums.add(logprob_after, logprob_sampled, [d in fired for d in self.detectors])

    def add_record(self, record: SweepRecord) -> None:
        self.add(record.alpha, record.detectors, record.logprob_after, record.logprob_sampled, record.mode)

    def rows(self) -> list[SummaryRow]:
        """Per mode, alpha (ascending) and detector: hits/n with a 95% Wilson interval; for alpha != 0 also the
        importance-weighted estimate of the after model's own rate (in weights mode too: the weights use the
        after model's logprobs, which weights mode computes alongside)."""
        rows = []
        for mode, alpha in sorted(self.groups, key=lambda k: (MODE_ORDER.index(k[0]), k[1])):
            sums = self.groups[(mode, alpha)]
            for i, name in enumerate(self.detectors):
                hits = sums.hits[i]
                low, high = wilson_interval(hits, sums.n)
                estimate = None
                if alpha != 0:
                    est = sums.estimate(i, min_ess=self.min_ess)
                    estimate = Estimate(est.rate, est.low, est.high, est.ess, self.exact,
                                        estimate_warning(est.ess, sums.n, self.exact, self.min_ess))
                rows.append(SummaryRow(alpha, name, hits, sums.n, hits / sums.n, low, high, estimate, mode))
        return rows


def summarize(records: Iterable[SweepRecord], detectors: list[str], exact: bool,
              min_ess: float = MIN_ESS) -> list[SummaryRow]:
    summary = SweepSummary(detectors, exact, min_ess)
    for record in records:
        summary.add_record(record)
    return summary.rows()


def estimate_warning(ess: float, n: int, exact: bool, min_ess: float = MIN_ESS) -> str:
    notes = []
    if not exact:
        notes.append("sampling filters (top_p < 1, top_k, temperature 0 or min_new_tokens) cut sequences the after "
                     "model allows: the weights are not exact and this estimate is biased")
    if ess < min_ess:
        notes.append(f"effective sample size {ess:.0f} of {n} is small: the estimate is unreliable and its interval "
                     "was widened; lower alpha or sample more")
    return "; ".join(notes)


def first_bad_name(names: Iterable[str]) -> tuple[int, str] | None:
    """(index, problem) of the first empty or repeated name, or None. Linear time."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            return i, "empty"
        if name in seen:
            return i, f"{name!r} repeats index {seen[name]}"
        seen[name] = i
    return None
