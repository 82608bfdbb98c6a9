"""The scheduler's bookkeeping against a fake worker that keeps per-row histories like a KV cache does."""

import hashlib
import random

import pytest

from diffamp_server.errors import Overloaded
from diffamp_server.events import FINISH_LENGTH, FINISH_STOP, FINISH_STOP_STRING, ListSink
from diffamp_server.output import OutputProcessor
from diffamp_server.plan import BatchPlan, BatchResult, SamplingParams
from diffamp_server.request import EncodedPrompt, SequenceRequest
from diffamp_server.scheduler import Scheduler

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
        self.calls = 0

    def execute(self, plan: BatchPlan) -> BatchResult:
        self.calls += 1
        for src, dst in plan.moves:
            self.history[dst] = list(self.history[src])
            self.params[dst] = self.params[src]
        for row in range(plan.num_decode_rows):
            if plan.budgets[row]:
                self.history[row].append(plan.decode_token_ids[row])
        for p in plan.prefills:
            for row, params in zip(p.rows, p.params):
                self.history[row] = list(p.after_ids)
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
        return BatchResult(token_ids=out, logprobs=[[] for _ in rows])

    def _next(self, row):
        h, prm = self.history[row], self.params[row]
        if self.eos_after is not None and len(h) - h.index(-1) > self.eos_after:
            return EOS
        digest = hashlib.sha256(repr((h, prm.seed, prm.sample_index)).encode()).digest()
        return digest[0] % len(ALPHABET)


def request(prompt, n=1, max_new=10, seed=0, stop=()):
    samples = tuple(SamplingParams(alpha=1.0, temperature=1.0, top_p=1.0, seed=seed, sample_index=i)
                    for i in range(n))
    return SequenceRequest(prompt=EncodedPrompt(after_ids=tuple(prompt)), samples=samples, max_new_tokens=max_new,
                           stop=tuple(stop), seed=seed)


def scheduler(slots, max_queued=100, decode_steps=1, replicas=("r0",)):
    s = Scheduler(OutputProcessor(CharTokenizer(), {EOS}), max_queued=max_queued, decode_steps=decode_steps)
    for r in replicas:
        s.add_replica(r, slots)
    return s


def deliver(s, plan, result, replica="r0"):
    for sample, tokens, lps in zip(s.samples_of(replica, plan), result.token_ids, result.logprobs):
        if not sample.done:
            sample.owner.sink.deliver(s.output.advance(sample.output, tokens, lps))


def run_once(s, worker, replica="r0"):
    plan = s.next_plan(replica)
    if plan is None:
        return False
    deliver(s, plan, worker.execute(plan), replica)
    return True


def run(s, worker, replica="r0"):
    while s.has_work() and run_once(s, worker, replica):
        pass


def submit(s, req, client=""):
    sink = ListSink()
    return s.submit(req, sink, client), sink


def texts(sink, n):
    return ["".join(e.text for e in sink.events[i]) for i in range(n)]


@pytest.mark.parametrize("decode_steps", [1, 4])
def test_samples_are_the_same_alone_and_in_a_churning_batch(decode_steps):
    rng = random.Random(0)
    reqs = [request([-1, rng.randrange(10)], n=rng.randint(1, 4), max_new=rng.randint(1, 12), seed=i)
            for i in range(30)]
    alone = []
    for r in reqs:
        s = scheduler(8)
        _, sink = submit(s, r)
        run(s, FakeWorker(8))
        alone.append(texts(sink, len(r.samples)))
    s = scheduler(8, max_queued=1000, decode_steps=decode_steps)
    sinks = [submit(s, r)[1] for r in reqs]
    run(s, FakeWorker(8))
    assert [texts(sink, len(r.samples)) for r, sink in zip(reqs, sinks)] == alone
    s.next_plan("r0")
    assert s.live_sequences == 0 and s.queued_sequences == 0


def test_rows_stay_packed_and_moves_fill_holes():
    s = scheduler(6)
    short, _ = submit(s, request([-1, 1], n=2, max_new=1))
    long, _ = submit(s, request([-1, 2], n=3, max_new=5))
    worker = FakeWorker(6)
    plan = s.next_plan("r0")
    assert [p.rows for p in plan.prefills] == [[0, 2], [1, 3, 4]]  # first rows of each prompt together
    deliver(s, plan, worker.execute(plan))
    plan = s.next_plan("r0")
    assert short.finished
    assert sorted(plan.moves) == [(3, 2), (4, 0)]
    assert plan.num_decode_rows == 3 and s.live_sequences == 3
    assert {smp.params.sample_index for smp in s.rows["r0"]} == {0, 1, 2}
    assert all(smp.owner is long for smp in s.rows["r0"])


@pytest.mark.parametrize("decode_steps", [1, 5])
def test_finish_reasons_and_stop_string_is_cut(decode_steps):
    s = scheduler(4, decode_steps=decode_steps)
    _, length = submit(s, request([-1, 0], max_new=3, seed=1))
    _, stop = submit(s, request([-1, 0], max_new=50, seed=2, stop=("a",)))
    run(s, FakeWorker(4))
    last = length.events[0][-1]
    assert last.finish_reason == FINISH_LENGTH and last.completion_tokens == 3
    stopped = stop.events[0][-1]
    assert stopped.finish_reason == FINISH_STOP_STRING
    assert "a" not in texts(stop, 1)[0]
    ids = [t for e in stop.events[0] for t in e.token_ids]
    assert ALPHABET[ids[-1]] == "a" and stopped.completion_tokens == len(ids)  # nothing past the stop string


@pytest.mark.parametrize("decode_steps", [1, 5])
def test_eos_finishes_and_is_not_in_the_text(decode_steps):
    s = scheduler(4, decode_steps=decode_steps)
    _, sink = submit(s, request([-1, 0], max_new=50))
    run(s, FakeWorker(4, eos_after=3))
    last = sink.events[0][-1]
    assert last.finish_reason == FINISH_STOP and last.token_ids[-1] == EOS
    assert "</s>" not in texts(sink, 1)[0] and last.completion_tokens == 3


@pytest.mark.parametrize("decode_steps", [1, 3])
def test_held_back_text_never_contains_a_partial_stop_string(decode_steps):
    s = scheduler(4, decode_steps=decode_steps)
    _, sink = submit(s, request([-1, 3], max_new=40, seed=5, stop=("zz-never", "b.")))
    run(s, FakeWorker(4))
    assert "b." not in "".join(e.text for e in sink.events[0])


def test_cancel_frees_rows_at_the_next_plan_and_removes_waiting():
    s = scheduler(2)
    worker = FakeWorker(2)
    running, _ = submit(s, request([-1, 0], n=2, max_new=50))
    run_once(s, worker)
    waiting, _ = submit(s, request([-1, 1], n=1, max_new=50))
    assert s.queued_sequences == 1
    s.cancel(waiting)
    assert s.queued_sequences == 0 and not s.waiting
    s.cancel(running)
    assert s.next_plan("r0") is None and s.live_sequences == 0 and not s.has_work()


def test_overload_counts_free_slots_plus_the_queue():
    s = scheduler(4, max_queued=5)
    submit(s, request([-1, 0], n=9))
    with pytest.raises(Overloaded):
        submit(s, request([-1, 0], n=1))
    s.next_plan("r0")  # 4 admitted: the queue holds 5 of 5
    with pytest.raises(Overloaded):
        submit(s, request([-1, 0], n=1))


def test_a_request_larger_than_the_batch_is_admitted_in_chunks():
    s = scheduler(4)
    submit(s, request([-1, 0], n=10))
    plan = s.next_plan("r0")
    assert [p.rows for p in plan.prefills] == [[0, 1, 2, 3]]
    assert [p.sample_index for p in plan.prefills[0].params] == [0, 1, 2, 3]
    assert s.queued_sequences == 6

    s = scheduler(4)
    _, big = submit(s, request([-1, 0], n=10, max_new=3, seed=4))
    run(s, FakeWorker(4))
    together = texts(big, 10)
    alone = []
    for i in range(10):
        solo = scheduler(4)
        req = request([-1, 0], n=10, max_new=3, seed=4)
        one = SequenceRequest(prompt=req.prompt, samples=req.samples[i:i + 1], max_new_tokens=3, stop=(), seed=4)
        _, sink = submit(solo, one)
        run(solo, FakeWorker(4))
        alone.append("".join(e.text for e in sink.events[i]))
    assert together == alone


def test_free_rows_go_to_the_request_holding_the_fewest():
    """Two big requests fill the batch; a small one arriving later gets the next free row, not a big one."""
    s = scheduler(4, max_queued=1000)
    worker = FakeWorker(4)
    big1, _ = submit(s, request([-1, 0], n=50, max_new=2, seed=1))
    big2, _ = submit(s, request([-1, 1], n=50, max_new=3, seed=2))
    run_once(s, worker)
    assert (big1.held, big2.held) == (2, 2)
    small, sink = submit(s, request([-1, 2], n=1, max_new=2, seed=3))
    for _ in range(3):
        run_once(s, worker)
    assert small.held == 1 or sink.events[0][-1].finish_reason


def test_per_client_fairness_counts_all_of_a_clients_requests():
    s = scheduler(4, max_queued=1000)
    for i in range(6):
        submit(s, request([-1, 0], n=1, max_new=20, seed=i), client="busy")
    quiet, _ = submit(s, request([-1, 1], n=3, max_new=20, seed=9), client="quiet")
    s.next_plan("r0")
    assert quiet.held == 2  # 4 rows: 2 to the busy client's requests, 2 to the quiet one


def test_a_paused_request_does_not_advance_and_others_do():
    class FullSink(ListSink):
        full = True

    s = scheduler(4)
    worker = FakeWorker(4)
    paused = ListSink()
    s.submit(request([-1, 0], n=2, max_new=20), paused)
    run_once(s, worker)
    paused.full = True
    s.submit(request([-1, 0], n=1, max_new=20), FullSink())
    _, running = submit(s, request([-1, 1], n=1, max_new=5))
    plan = s.next_plan("r0")
    assert plan.budgets == [0, 0, 1]  # the full request's rows wait; the other full request is not admitted
    result = worker.execute(plan)
    assert result.token_ids[:2] == [[], []] and len(result.token_ids[2]) == 1
    deliver(s, plan, result)
    run(s, worker)
    assert running.events[0][-1].finish_reason
    assert s.next_plan("r0") is None and s.live_sequences == 2 and s.queued_sequences == 1  # rows kept


def test_a_failed_replicas_samples_continue_on_another_with_the_same_tokens():
    reqs = [request([-1, i], n=3, max_new=12, seed=i) for i in range(4)]
    quiet = scheduler(16)
    quiet_sinks = [submit(quiet, r)[1] for r in reqs]
    run(quiet, FakeWorker(16))

    s = scheduler(8, replicas=("a", "b"))
    workers = {"a": FakeWorker(8), "b": FakeWorker(8)}
    sinks = [submit(s, r)[1] for r in reqs]
    run_once(s, workers["a"], "a")
    run_once(s, workers["b"], "b")
    run_once(s, workers["a"], "a")
    moved = s.requeue("a")
    assert moved > 0 and not s.rows["a"]
    s.remove_replica("a")
    run(s, workers["b"], "b")
    for got, want, r in zip(sinks, quiet_sinks, reqs):
        assert texts(got, 3) == texts(want, 3)
        for i in range(3):
            assert [t for e in got.events[i] for t in e.token_ids] == [t for e in want.events[i] for t in e.token_ids]


def test_a_retiring_replica_gets_no_new_rows():
    s = scheduler(4, replicas=("a", "b"))
    s.retire_replica("a")
    submit(s, request([-1, 0], n=3))
    assert s.next_plan("a") is None
    assert s.next_plan("b").num_rows == 3


def test_fail_all_returns_every_request_once():
    s = scheduler(4)
    a, _ = submit(s, request([-1, 0], n=3))
    b, _ = submit(s, request([-1, 0], n=3))
    run_once(s, FakeWorker(4))
    assert {id(x) for x in s.fail_all()} == {id(a), id(b)}
    assert not s.has_work()


def _fail_until_blamed(worker_lost: bool, limit: int = 10) -> tuple[int, object, object]:
    """Two requests share a call that fails; then every call fails. Returns how many failed calls it took
    to blame a request, the one blamed and the other."""
    s = scheduler(8)
    a, _ = submit(s, request([-1, 0], n=2, max_new=50))
    b, _ = submit(s, request([-1, 1], n=2, max_new=50, seed=1))
    for calls in range(1, limit + 1):
        assert s.next_plan("r0") is not None
        guilty = s.failed_call("r0", worker_lost=worker_lost)
        s.requeue("r0")
        if guilty:
            return calls, guilty[0], b if guilty[0] is a else a
    return limit, None, None


def test_a_request_whose_step_raises_again_alone_is_blamed_at_once():
    calls, guilty, other = _fail_until_blamed(worker_lost=False)
    assert calls == 2 and guilty is not None and not other.cancelled


def test_a_lost_worker_blames_a_lone_suspect_only_after_repeated_losses():
    """A worker killed from outside takes whichever request runs alone at that moment (the soak saw requests
    ended this way while a replica was killed every 20 s)."""
    from diffamp_server.scheduler import LOST_ALONE_LIMIT

    calls, guilty, _ = _fail_until_blamed(worker_lost=True)
    assert guilty is not None and calls == 1 + LOST_ALONE_LIMIT
