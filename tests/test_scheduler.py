"""The scheduler's bookkeeping against a fake worker that keeps per-row histories like a KV cache does."""

import hashlib
import random

import pytest

from diffamp_server.errors import Overloaded
from diffamp_server.plan import SamplingParams, StepPlan, StepResult
from diffamp_server.request import SequenceRequest
from diffamp_server.scheduler import FINISH_LENGTH, FINISH_STOP, FINISH_STOP_STRING, Scheduler

ALPHABET = "abcdefghij .!"
EOS = len(ALPHABET)


class CharTokenizer:
    def get_vocab(self):
        return {c: i for i, c in enumerate(ALPHABET)} | {"</s>": EOS}

    def decode(self, ids, **_):
        return "".join(ALPHABET[i] if i < EOS else "</s>" for i in ids)


class FakeWorker:
    """Row r's 'KV' is the list of tokens it has seen; the next token is a hash of (history, seed, index).
    It follows the plan contract (plan.py) in the plainest way, multi-step decoding included."""

    def __init__(self, slots, eos_after=None):
        self.history = [None] * slots
        self.params = [None] * slots
        self.eos_after = eos_after

    def step(self, plan: StepPlan) -> StepResult:
        for src, dst in plan.moves:
            self.history[dst] = list(self.history[src])
            self.params[dst] = self.params[src]
        for row in range(plan.num_decode_rows):
            self.history[row].append(plan.decode_token_ids[row])
        for p in plan.prefills:
            for row, params in zip(p.rows, p.params):
                self.history[row] = list(p.token_ids)
                self.params[row] = params
        rows = range(plan.num_rows)
        out = [[] for _ in rows]
        budgets = list(plan.budgets)
        for step in range(plan.max_steps):
            live = [r for r in rows if budgets[r] > 0 and EOS not in out[r]]
            if not live:
                break
            if step:
                for r in live:
                    self.history[r].append(out[r][-1])
            for r in live:
                out[r].append(self._next(r))
                budgets[r] -= 1
        return StepResult(out, [[] for _ in rows])

    def _next(self, row):
        h, prm = self.history[row], self.params[row]
        if self.eos_after is not None and len(h) - h.index(-1) > self.eos_after:
            return EOS
        digest = hashlib.sha256(repr((h, prm.seed, prm.sample_index)).encode()).digest()
        return digest[0] % len(ALPHABET)


def request(prompt, n=1, max_new=10, seed=0, stop=()):
    samples = [SamplingParams(seed=seed, sample_index=i) for i in range(n)]
    return SequenceRequest(list(prompt), samples, max_new, tuple(stop), seed)


def run(scheduler, worker, on_step=None):
    events = {}
    step = 0
    while scheduler.has_work():
        plan = scheduler.next_plan()
        if plan is None:
            break
        for state, e in scheduler.apply(plan, worker.step(plan)):
            events.setdefault((id(state), e.index), []).append(e)
        step += 1
        if on_step:
            on_step(step)
    return events


def texts(events, state):
    return ["".join(e.text for e in events[(id(state), s.index)]) for s in state.samples]


@pytest.mark.parametrize("decode_steps", [1, 4])
def test_samples_are_the_same_alone_and_in_a_churning_batch(decode_steps):
    rng = random.Random(0)
    reqs = [request([-1, rng.randrange(10)], n=rng.randint(1, 4), max_new=rng.randint(1, 12), seed=i)
            for i in range(30)]
    alone = []
    for r in reqs:
        s = Scheduler(CharTokenizer(), {EOS}, 8, 100)
        st = s.submit(r)
        alone.append(texts(run(s, FakeWorker(8)), st))
    s = Scheduler(CharTokenizer(), {EOS}, 8, 1000, decode_steps)
    states = [s.submit(r) for r in reqs]
    together = run(s, FakeWorker(8))
    assert [texts(together, st) for st in states] == alone
    assert s.live_sequences == 0


def test_rows_stay_packed_and_moves_fill_holes():
    s = Scheduler(CharTokenizer(), {EOS}, 6, 100)
    short = s.submit(request([-1, 1], n=2, max_new=1))
    long = s.submit(request([-1, 2], n=3, max_new=5))
    worker = FakeWorker(6)
    plan = s.next_plan()
    assert [p.rows for p in plan.prefills] == [[0, 2], [1, 3, 4]]  # first rows of each prompt together
    s.apply(plan, worker.step(plan))
    assert short.finished
    plan = s.next_plan()
    assert sorted(plan.moves) == [(3, 2), (4, 0)]
    assert plan.num_decode_rows == 3 and s.live_sequences == 3
    assert {smp.index for smp in s.rows} == {0, 1, 2} and all(smp.request is long for smp in s.rows)


@pytest.mark.parametrize("decode_steps", [1, 5])
def test_finish_reasons_and_stop_string_is_cut(decode_steps):
    s = Scheduler(CharTokenizer(), {EOS}, 4, 100, decode_steps)
    length = s.submit(request([-1, 0], max_new=3, seed=1))
    stop = s.submit(request([-1, 0], max_new=50, seed=2, stop=("a",)))
    events = run(s, FakeWorker(4))
    last = {k: v[-1] for k, v in events.items()}
    assert last[(id(length), 0)].finish_reason == FINISH_LENGTH and last[(id(length), 0)].completion_tokens == 3
    stopped = last[(id(stop), 0)]
    assert stopped.finish_reason == FINISH_STOP_STRING
    assert "a" not in texts(events, stop)[0]


@pytest.mark.parametrize("decode_steps", [1, 5])
def test_eos_finishes_and_is_not_in_the_text(decode_steps):
    s = Scheduler(CharTokenizer(), {EOS}, 4, 100, decode_steps)
    st = s.submit(request([-1, 0], max_new=50))
    events = run(s, FakeWorker(4, eos_after=3))
    last = events[(id(st), 0)][-1]
    assert last.finish_reason == FINISH_STOP and last.token_ids[-1] == EOS
    assert "</s>" not in texts(events, st)[0] and last.completion_tokens == 3


@pytest.mark.parametrize("decode_steps", [1, 3])
def test_held_back_text_never_contains_a_partial_stop_string(decode_steps):
    s = Scheduler(CharTokenizer(), {EOS}, 4, 100, decode_steps)
    st = s.submit(request([-1, 3], max_new=40, seed=5, stop=("zz-never", "b.")))
    events = run(s, FakeWorker(4))
    chunks = [e.text for e in events[(id(st), 0)]]
    assert "b." not in "".join(chunks)


def test_cancel_frees_rows_at_the_next_plan_and_removes_waiting():
    s = Scheduler(CharTokenizer(), {EOS}, 2, 100)
    worker = FakeWorker(2)
    running = s.submit(request([-1, 0], n=2, max_new=50))
    waiting = s.submit(request([-1, 1], n=1, max_new=50))
    plan = s.next_plan()
    s.apply(plan, worker.step(plan))
    s.cancel(waiting)
    assert s.queued_sequences == 0
    s.cancel(running)
    assert s.next_plan() is None and s.live_sequences == 0 and not s.has_work()


def test_overload_counts_free_slots_plus_the_queue():
    s = Scheduler(CharTokenizer(), {EOS}, 4, 5)
    s.submit(request([-1, 0], n=9))
    with pytest.raises(Overloaded):
        s.submit(request([-1, 0], n=1))
    s.next_plan()  # 4 admitted: the queue holds 5 of 5
    with pytest.raises(Overloaded):
        s.submit(request([-1, 0], n=1))


def test_a_request_larger_than_the_batch_is_admitted_in_chunks():
    s = Scheduler(CharTokenizer(), {EOS}, 4, 100)
    s.submit(request([-1, 0], n=10))
    plan = s.next_plan()
    assert [p.rows for p in plan.prefills] == [[0, 1, 2, 3]]
    assert [p.sample_index for p in plan.prefills[0].params] == [0, 1, 2, 3]
    assert s.queued_sequences == 6

    s = Scheduler(CharTokenizer(), {EOS}, 4, 100)
    big = s.submit(request([-1, 0], n=10, max_new=3, seed=4))
    together = texts(run(s, FakeWorker(4)), big)
    alone = []
    for i in range(10):
        solo = Scheduler(CharTokenizer(), {EOS}, 4, 100)
        st = solo.submit(SequenceRequest([-1, 0], [SamplingParams(seed=4, sample_index=i)], 3, (), 4))
        alone.append(texts(run(solo, FakeWorker(4)), st)[0])
    assert together == alone


def test_a_big_request_takes_turns_with_later_ones():
    s = Scheduler(CharTokenizer(), {EOS}, 2, 100)
    worker = FakeWorker(2)
    big = s.submit(request([-1, 0], n=50, max_new=1))
    small = s.submit(request([-1, 1], n=1, max_new=1))
    for _ in range(3):
        plan = s.next_plan()
        s.apply(plan, worker.step(plan))
    assert small.finished and not big.finished


def test_fail_all_returns_every_request_once():
    s = Scheduler(CharTokenizer(), {EOS}, 4, 100)
    a = s.submit(request([-1, 0], n=3))
    b = s.submit(request([-1, 0], n=3))
    plan = s.next_plan()
    s.apply(plan, FakeWorker(4).step(plan))
    assert s.fail_all() == [a, b]
    assert not s.has_work()
