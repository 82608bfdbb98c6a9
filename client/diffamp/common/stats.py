"""The statistics a sweep reports, as pure functions with no dependencies beyond the standard library."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054
MIN_ESS = 100.0
"""Below this effective sample size an importance estimate is flagged and its interval widened."""


MIN_EFFECTIVE_HITS = 5
"""Below this many effective hits (or misses) the delta-method interval is not trusted on its own."""


def wilson_interval(hits: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default); (0, 1) when n is 0.

    n may be fractional (an effective sample size), hits then being rate * n."""
    if n <= 0:
        return 0.0, 1.0
    p = min(1.0, max(0.0, hits / n))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class WeightedEstimate:
    """A self-normalised importance-sampling estimate of a rate under the target distribution."""

    rate: float
    low: float
    high: float
    ess: float
    n: int

    @property
    def width(self) -> float:
        return self.high - self.low


class ImportanceSums:
    """Running sums for self-normalised importance sampling over one set of samples and several hit tests.

    Weights w_i = p_target(x_i) / q(x_i) are kept relative to the largest log-weight seen so far (earlier
    sums are rescaled when it grows), so sequence log-probabilities of -1000 nats neither underflow nor
    overflow. Memory is constant in the number of samples.
    """

    def __init__(self, tests: int):
        self.n = 0
        self.top = -math.inf
        self.w = self.w2 = 0.0
        self.hits = [0] * tests
        self.hit_w = [0.0] * tests
        self.hit_w2 = [0.0] * tests

    def add(self, log_target: float, log_proposal: float, hits: Sequence[bool]) -> None:
        log_w = log_target - log_proposal
        if log_w > self.top:
            scale = math.exp(self.top - log_w) if self.top > -math.inf else 0.0
            self.w, self.w2 = self.w * scale, self.w2 * scale * scale
            self.hit_w = [x * scale for x in self.hit_w]
            self.hit_w2 = [x * scale * scale for x in self.hit_w2]
            self.top = log_w
        w = math.exp(log_w - self.top)
        self.n += 1
        self.w += w
        self.w2 += w * w
        for i, hit in enumerate(hits):
            if hit:
                self.hits[i] += 1
                self.hit_w[i] += w
                self.hit_w2[i] += w * w

    def estimate(self, test: int, z: float = Z95, min_ess: float = MIN_ESS) -> WeightedEstimate:
        """The estimate of P_target(test hits).

        The interval is the delta-method one for a ratio estimator, var = sum(w_i^2 (h_i - rate)^2) / (sum w)^2.
        That variance is 0 when no sample (or every sample) hit, and tiny when one weight dominates, so the
        interval would collapse to a point exactly when it is least trustworthy. In those cases (fewer than
        MIN_EFFECTIVE_HITS effective hits or misses, rate x ESS, which covers no hits, no misses and hits whose
        weights are negligible; or ESS below min_ess) it is widened to cover a Wilson interval at the effective
        sample size too: the uncertainty that so few effective samples deserve.
        """
        if self.n == 0:
            return WeightedEstimate(0.0, 0.0, 1.0, 0.0, 0)
        rate = self.hit_w[test] / self.w
        h2 = self.hit_w2[test]
        var = ((1 - rate) ** 2 * h2 + rate * rate * (self.w2 - h2)) / (self.w * self.w)
        half = z * math.sqrt(max(var, 0.0))
        ess = self.w * self.w / self.w2
        low, high = rate - half, rate + half
        if min(rate, 1 - rate) * ess < MIN_EFFECTIVE_HITS or ess < min_ess:
            wilson_low, wilson_high = wilson_interval(rate * ess, ess, z)
            low, high = min(low, wilson_low), max(high, wilson_high)
        return WeightedEstimate(rate, max(0.0, low), min(1.0, high), ess, self.n)


def importance_estimate(log_target: Sequence[float], log_proposal: Sequence[float], hits: Sequence[bool],
                        z: float = Z95, min_ess: float = MIN_ESS) -> WeightedEstimate:
    """Estimate P_target(hit) from samples drawn from the proposal (see ImportanceSums.estimate)."""
    sums = ImportanceSums(1)
    for t, q, h in zip(log_target, log_proposal, hits):
        sums.add(t, q, (h,))
    return sums.estimate(0, z, min_ess)
