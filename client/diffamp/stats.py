"""The statistics a sweep reports, as pure functions with no dependencies beyond the standard library."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


def wilson_interval(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default). (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
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


def importance_estimate(log_target: list[float], log_proposal: list[float], hits: list[bool],
                        z: float = Z95) -> WeightedEstimate:
    """Estimate P_target(hit) from samples drawn from the proposal.

    Weights w_i = p_target(x_i) / q(x_i), computed in log space and shifted by their max for stability.
    The estimate is sum(w h) / sum(w). The interval is the delta-method one for a ratio estimator,
    var = sum(w_i^2 (h_i - rate)^2) / (sum w)^2, clipped to [0, 1]; the effective sample size is
    (sum w)^2 / sum(w^2).
    """
    n = len(hits)
    if n == 0:
        return WeightedEstimate(0.0, 0.0, 1.0, 0.0, 0)
    log_w = [t - q for t, q in zip(log_target, log_proposal)]
    top = max(log_w)
    w = [math.exp(x - top) for x in log_w]
    total = sum(w)
    rate = sum(wi for wi, h in zip(w, hits) if h) / total
    var = sum(wi * wi * ((1.0 if h else 0.0) - rate) ** 2 for wi, h in zip(w, hits)) / (total * total)
    half = z * math.sqrt(var)
    ess = total * total / sum(wi * wi for wi in w)
    return WeightedEstimate(rate, max(0.0, rate - half), min(1.0, rate + half), ess, n)
