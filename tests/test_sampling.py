"""The sampling math against plain per-row reference implementations."""

import math

import pytest
import torch

from diffamp_server.engine import sampling
from diffamp_server.engine.uniforms import seeded_uniform


def test_amplify_is_the_formula_and_its_endpoints():
    after, before = torch.randn(3, 11), torch.randn(3, 11)
    alpha = torch.tensor([0.0, -1.0, 2.5])
    out = sampling.amplify(after, before, alpha)
    assert torch.allclose(out[0], after[0])
    assert torch.allclose(out[1], before[1])
    assert torch.allclose(out[2], after[2] + 2.5 * (after[2] - before[2]))


def test_amplify_matches_power_ratio_of_probabilities():
    after, before = torch.randn(1, 7), torch.randn(1, 7)
    p_amp = sampling.amplify(after, before, torch.tensor([0.7])).softmax(-1)
    pa, pb = after.softmax(-1), before.softmax(-1)
    ratio = pa ** 1.7 / pb ** 0.7
    assert torch.allclose(p_amp, ratio / ratio.sum(), atol=1e-6)


def test_masking_after_amplifying_never_makes_nan():
    """An id outside the shared vocabulary in the middle of the range: -inf - (-inf) would be NaN if it were
    masked before amplifying."""
    after, before = torch.randn(2, 6), torch.randn(2, 6)
    hole = torch.tensor([False, False, True, False, False, False])
    amplified = sampling.mask_ids(sampling.amplify(after, before, torch.tensor([1.0, 4.0])), hole)
    assert not amplified.isnan().any() and (amplified[:, 2] == float("-inf")).all()
    assert amplified.softmax(-1)[:, 2].eq(0).all() and not amplified.softmax(-1).isnan().any()
    masked_first = sampling.amplify(sampling.mask_ids(after, hole), sampling.mask_ids(before, hole),
                                    torch.tensor([1.0, 4.0]))
    assert masked_first.isnan().any()  # the order that went wrong


def test_tiny_temperatures_neither_overflow_nor_make_nan():
    logits = torch.tensor([[5.0, 4.0, -3.0, float("-inf")], [0.0, 0.0, 1.0, 2.0]])
    for t in (1e-40, 1e-30, 1e-8, 1e-3):
        scaled = sampling.scale_by_temperature(logits, torch.tensor([t, t]))
        assert not scaled.isnan().any() and not (scaled == float("inf")).any()
        token = sampling.sample(scaled, torch.tensor([False, False]), torch.tensor([0.5, 0.999], dtype=torch.float64))
        assert token.tolist() == [0, 3]
        lp = sampling.token_logprobs(scaled, token)
        assert lp.isfinite().all() and lp.abs().max() < 1e-6


def _ref_top_k(row, k):
    if k <= 0 or k >= len(row):
        return row
    kth = sorted(row.tolist(), reverse=True)[k - 1]
    return torch.tensor([v if v >= kth else -math.inf for v in row.tolist()])


def _ref_top_p(row, p):
    if p >= 1:
        return row
    probs = row.softmax(-1).tolist()
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    keep, mass = set(), 0.0
    for i in order:
        keep.add(i)
        mass += probs[i]
        if mass >= p:
            break
    return torch.tensor([v if i in keep else -math.inf for i, v in enumerate(row.tolist())])


@pytest.mark.parametrize("seed", range(5))
def test_filters_match_reference(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 13, generator=g) * 3
    top_k = torch.tensor([0, 1, 3, 20])
    top_p = torch.tensor([1.0, 0.5, 0.9, 0.3])
    got_k = sampling.filter_top_k_top_p(logits, top_k, torch.ones(4))
    got_p = sampling.filter_top_k_top_p(logits, torch.zeros(4, dtype=torch.long), top_p)
    got_both = sampling.filter_top_k_top_p(logits, top_k, top_p)
    for i in range(4):
        assert torch.equal(got_k[i], _ref_top_k(logits[i], int(top_k[i])))
        assert torch.equal(got_p[i], _ref_top_p(logits[i], float(top_p[i])))
        assert torch.equal(got_both[i], _ref_top_p(_ref_top_k(logits[i], int(top_k[i])), float(top_p[i])))


def test_temperature_zero_rows_keep_their_argmax_and_greedy_takes_it():
    logits = torch.tensor([[1.0, 3.0, 2.0], [1.0, 3.0, 2.0]])
    out = sampling.scale_by_temperature(logits, torch.tensor([0.0, 2.0]))
    assert torch.equal(out[0], logits[0] - 3) and torch.allclose(out[1], (logits[1] - 3) / 2)
    tokens = sampling.sample(out, torch.tensor([True, True]), torch.tensor([0.999, 0.0], dtype=torch.float64))
    assert tokens.tolist() == [1, 1]


def test_inverse_cdf_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.1, 0.0, 0.6, 0.3]]))
    counts = [0, 0, 0, 0]
    for i in range(4000):
        u = torch.tensor([seeded_uniform(7, 0, i)], dtype=torch.float64)
        counts[int(sampling.sample(logits, torch.tensor([False]), u))] += 1
    assert counts[1] == 0
    for got, want in zip(counts, [0.1, 0.0, 0.6, 0.3]):
        assert abs(got / 4000 - want) < 0.03


def test_seeded_uniform_depends_only_on_its_key():
    a = seeded_uniform(1, 2, 3)
    assert a == seeded_uniform(1, 2, 3)
    assert len({a, seeded_uniform(1, 2, 4), seeded_uniform(1, 3, 3), seeded_uniform(2, 2, 3)}) == 4
    assert 0 <= a < 1


def test_sampled_row_does_not_depend_on_batch_companions():
    g = torch.Generator().manual_seed(0)
    row = torch.randn(1, 50, generator=g)
    others = torch.randn(5, 50, generator=g)
    u = torch.tensor([0.4242], dtype=torch.float64)
    alone = sampling.sample(row, torch.tensor([False]), u)
    batch = torch.cat([others[:2], row, others[2:]])
    us = torch.tensor([0.1, 0.9, 0.4242, 0.3, 0.5, 0.7], dtype=torch.float64)
    together = sampling.sample(batch, torch.zeros(6, dtype=torch.bool), us)
    assert together[2] == alone[0]


def test_kl_divergence_matches_definition():
    p, q = torch.randn(2, 9), torch.randn(2, 9)
    lp, lq = p.log_softmax(-1), q.log_softmax(-1)
    want = (lp.exp() * (lp - lq)).sum(-1)
    assert torch.allclose(sampling.kl_divergence(p, q), want, atol=1e-6)
    assert torch.allclose(sampling.kl_divergence(p, p), torch.zeros(2), atol=1e-6)


class FixedRunner:
    """A runner whose next-token logits are always the same row: enough to test the decode loop."""

    engine = "eager"

    def __init__(self, logits):
        from types import SimpleNamespace

        self.row = logits
        self.lm = SimpleNamespace(device=torch.device("cpu"), logits_size=logits.shape[-1],
                                  limit_logits=lambda columns: None)
        self.store = SimpleNamespace(max_seq_len=64, copy_rows=lambda *a, **k: None)
        self.fed = []

    def prefill(self, first_row, prompts):
        pass

    def decode(self, tokens, lengths, kv_len):
        self.fed.append(tokens.tolist())
        return self.row.expand(tokens.shape[0], -1).clone()


def _engine(logits, eos_ids, rows):
    from diffamp_server.engine.pair import PairEngine
    from diffamp_server.engine.pair_models import TwoModels
    from diffamp_server.vocab import SharedVocab

    after, before = FixedRunner(logits), FixedRunner(logits)
    engine = PairEngine(TwoModels(after, before), shared=SharedVocab(((0, logits.shape[-1]),)), eos_ids=eos_ids,
                        max_rows=rows, max_steps=10, max_logprobs=4)
    return engine, after


def test_decode_loop_holds_eos_back_until_min_new_tokens_and_stops_each_row_on_its_own():
    from diffamp_server.plan import BatchPlan, Prefill, SamplingParams

    vocab, eos = 6, 0
    favour_eos = torch.zeros(vocab)
    favour_eos[eos] = 50.0  # p(EOS) = 1 - 3e-21
    params = [SamplingParams(alpha=0.0, temperature=1.0, top_p=1.0, seed=1, sample_index=i, logprobs=0,
                             min_new_tokens=m) for i, m in enumerate((3, 0))]
    plan = BatchPlan(prefills=[Prefill(after_ids=[1, 2], before_ids=None, rows=[0], params=params[:1]),
                               Prefill(after_ids=[1, 2], before_ids=None, rows=[1], params=params[1:])],
                     budgets=[10, 10], max_steps=10)
    engine, after = _engine(favour_eos, (eos,), rows=2)
    result = engine.execute(plan)
    held, free = result.token_ids
    assert len(held) == 4 and eos not in held[:3] and held[3] == eos
    assert free == [eos]
    assert len(after.fed) == 4  # the loop ends once row 0 samples EOS; row 1 stopped after its first token
    # while EOS is banned, the sampled distribution is the other five ids renormalised
    assert all(abs(lp.sampled - math.log(1 / 5)) < 1e-5 for lp in result.logprobs[0][:3])
    assert abs(result.logprobs[0][3].sampled) < 1e-5 and len(result.logprobs[1]) == 1


def test_decode_loop_respects_budgets_and_max_steps():
    from diffamp_server.plan import BatchPlan, Prefill, SamplingParams

    vocab = 8
    params = [SamplingParams(alpha=1.0, temperature=1.0, top_p=1.0, seed=2, sample_index=i) for i in range(3)]
    plan = BatchPlan(prefills=[Prefill(after_ids=[1], before_ids=None, rows=[0, 1, 2], params=params)],
                     budgets=[2, 7, 30], max_steps=5)
    engine, _ = _engine(torch.zeros(vocab), (vocab + 5,), rows=3)
    result = engine.execute(plan)
    assert [len(t) for t in result.token_ids] == [2, 5, 5]
    assert all(lps == [] for lps in result.logprobs)  # no row asked for logprobs


def test_a_row_with_no_budget_does_not_advance_and_keeps_its_pending_token():
    from diffamp_server.plan import BatchPlan, Prefill, SamplingParams

    params = [SamplingParams(alpha=1.0, temperature=1.0, top_p=1.0, seed=3, sample_index=i) for i in range(2)]
    engine, after = _engine(torch.zeros(8), (99,), rows=2)
    engine.execute(BatchPlan(prefills=[Prefill(after_ids=[1, 7], before_ids=None, rows=[0, 1], params=params)],
                             budgets=[1, 1], max_steps=1))
    lengths = engine.table.lengths["after"][:2].tolist()
    result = engine.execute(BatchPlan(num_decode_rows=2, decode_token_ids=[5, 6], budgets=[0, 3], max_steps=3))
    assert result.token_ids[0] == [] and len(result.token_ids[1]) == 3
    assert after.fed[1][0] == 5 and all(step[0] == 5 for step in after.fed[1:])  # row 0's input never consumed
    assert engine.table.lengths["after"][:2].tolist() == [lengths[0], lengths[1] + 3]
