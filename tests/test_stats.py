"""Interval maths on known binomial cases; the importance-sampling estimator where the answer is known."""

import math
import random

import pytest

from diffamp.common.stats import importance_estimate, wilson_interval


@pytest.mark.parametrize("hits,n,low,high", [
    (0, 10, 0.0, 0.2775),
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (1, 100, 0.0018, 0.0545),
])
def test_wilson_known_cases(hits, n, low, high):
    got = wilson_interval(hits, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_empty_is_uninformative():
    assert wilson_interval(0, 0) == (0.0, 1.0)


TARGET = [0.97, 0.02, 0.01]   # the hit is outcome 2: true rate 1%
PROPOSAL = [0.5, 0.2, 0.3]    # amplified: the hit is 30% of samples


def _draw(rng, n):
    outcomes = rng.choices(range(3), weights=PROPOSAL, k=n)
    return ([math.log(TARGET[o]) for o in outcomes], [math.log(PROPOSAL[o]) for o in outcomes],
            [o == 2 for o in outcomes])


def test_importance_estimate_recovers_a_known_rate():
    est = importance_estimate(*_draw(random.Random(0), 20000))
    assert est.rate == pytest.approx(0.01, abs=0.001)
    assert est.low < 0.01 < est.high
    # ESS from the closed form: n / E_q[w^2] with E_q[w^2] = sum p^2/q
    expected_ess = 20000 / sum(p * p / q for p, q in zip(TARGET, PROPOSAL))
    assert est.ess == pytest.approx(expected_ess, rel=0.05)


def test_importance_interval_covers_about_95_percent():
    rng = random.Random(1)
    trials = [importance_estimate(*_draw(rng, 2000)) for _ in range(300)]
    covered = sum(t.low <= 0.01 <= t.high for t in trials) / len(trials)
    assert 0.90 <= covered <= 0.99


def test_importance_estimate_beats_direct_sampling_of_the_target():
    rng = random.Random(2)
    est = importance_estimate(*_draw(rng, 2000))
    direct_hits = sum(rng.random() < 0.01 for _ in range(2000))
    low, high = wilson_interval(direct_hits, 2000)
    assert est.width < high - low


def test_weights_are_stable_for_long_sequences():
    """Sequence log-probabilities of -1000 nats must not underflow to 0/0."""
    est = importance_estimate([-1000.0, -1001.0], [-1000.5, -1000.5], [True, False])
    w1, w2 = math.exp(0.5), math.exp(-0.5)
    assert est.rate == pytest.approx(w1 / (w1 + w2))


def test_no_hits_never_gives_a_zero_width_interval():
    rng = random.Random(3)
    logs = [(math.log(0.5), math.log(0.4)) for _ in range(50)] + [(math.log(0.3), math.log(0.6)) for _ in range(50)]
    rng.shuffle(logs)
    est = importance_estimate([t for t, _ in logs], [q for _, q in logs], [False] * 100)
    assert est.rate == 0.0 and est.low == 0.0
    assert est.high >= wilson_interval(0, est.ess)[1] > 0.02  # no hits in ~90 effective samples: up to ~4%


def test_hits_with_negligible_weight_do_not_give_a_zero_width_interval():
    """6 hits of 1,000 samples, all where the target is e^-30 times less likely than the proposal (seen on the
    LoRA demo in weights mode: the sweep printed 0.0000% [0.0000%, 0.0000%] at an ESS of 165)."""
    log_target = [-30.0] * 6 + [0.0] * 994
    est = importance_estimate(log_target, [0.0] * 1000, [True] * 6 + [False] * 994)
    assert est.rate < 1e-12 and est.ess > 900
    assert est.high >= wilson_interval(0, est.ess)[1] > 0.002


def test_one_dominant_weight_gives_a_wide_interval_not_a_point():
    log_target = [0.0] + [-30.0] * 99
    log_proposal = [-30.0] + [0.0] * 99
    est = importance_estimate(log_target, log_proposal, [True] + [False] * 99)
    assert est.rate > 0.999 and est.ess < 1.01
    assert est.low < 0.25 and est.high == 1.0


def test_streaming_sums_equal_the_batch_estimate():
    from diffamp.common.stats import ImportanceSums

    rng = random.Random(4)
    draws = _draw(rng, 3000)
    sums = ImportanceSums(2)
    for t, q, h in zip(*draws):
        sums.add(t, q, (h, not h))
    direct = importance_estimate(*draws)
    assert sums.estimate(0).rate == pytest.approx(direct.rate, rel=1e-9)
    assert sums.estimate(0).ess == pytest.approx(direct.ess, rel=1e-9)
    assert sums.estimate(1).rate == pytest.approx(1 - direct.rate, rel=1e-9)
