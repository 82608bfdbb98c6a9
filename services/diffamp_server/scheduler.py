"""Continuous batching: which samples hold KV rows on which replica, what each worker call runs, and who gets
the next free rows. Synchronous; knows nothing of gRPC, Ray or asyncio.

Per replica, `next_plan(replica)` frees the rows of finished and cancelled samples (packing survivors to the
front), admits waiting samples into the free rows and returns the BatchPlan; `samples_of(replica, plan)`
names the sample each result row belongs to. Output (text, stop rules) is output.py's job.

Failures: when a worker call fails, every request in it becomes a suspect and its samples return to the
queue. Suspects are re-admitted one request at a time, alone among suspects on the replica; a request whose
step raises again while it is the only suspect in the call is the cause, and the caller ends it. A worker
that was lost (its process killed, out of memory, its node gone) proves less: a request is blamed only after
LOST_ALONE_LIMIT such losses while it was the only suspect, since a worker killed from outside takes whichever
request happens to run. Everyone else continues.

Fairness: free rows go one at a time to the client holding the fewest rows across all replicas, and within
that client to the request holding the fewest; ties go to the earliest. When a waiting request finds too few
rows free, requests holding more than their share give up their youngest rows, so a small request never
waits for a big one's samples to finish. Rows of a client that is not reading are given up too. A request
larger than the free rows is admitted in chunks, each prefilled once. Samples of a failed replica return to the
queue and continue elsewhere from the tokens they already have.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from time import perf_counter

from .errors import Overloaded
from .events import EventSink
from .output import OutputProcessor, SampleOutput
from .plan import BatchPlan, Prefill, SamplingParams
from .request import SequenceRequest

LOST_ALONE_LIMIT = 3
"""Worker losses while a request is the only suspect in the call before it is blamed for them."""


class Sample:
    """One sequence being generated."""

    __slots__ = ("owner", "params", "output", "evicted")

    def __init__(self, owner: "RequestState", params: SamplingParams, output: SampleOutput):
        self.owner = owner
        self.params = params
        self.output = output
        self.evicted = False

    @property
    def token_ids(self) -> list[int]:
        return self.output.token_ids

    @property
    def finished(self) -> bool:
        return self.output.finish_reason is not None or self.owner.cancelled

    @property
    def done(self) -> bool:
        """Leaves its row at the next plan: finished, or evicted to wait for a row again."""
        return self.evicted or self.finished


class RequestState:
    """A submitted request: where its events go, how many of its samples were admitted, and what it holds."""

    def __init__(self, request: SequenceRequest, sink: EventSink, client: str, seq: int):
        self.request = request
        self.sink = sink
        self.client = client
        self.seq = seq
        self.admitted = 0
        self.held = 0
        self.resume: deque[Sample] = deque()
        self.cancelled = False
        self.released = 0
        self.losses_alone = 0
        self.suspect = False
        self.request_id = ""  # the RPC's, for logs (calls.py)
        self.admitted_at: float | None = None  # perf_counter time its first sample got a row

    @property
    def n(self) -> int:
        return len(self.request.samples)

    @property
    def waiting(self) -> int:
        return 0 if self.cancelled else self.n - self.admitted + len(self.resume)

    @property
    def finished(self) -> bool:
        return self.cancelled or self.released == self.n


class Scheduler:
    def __init__(self, output: OutputProcessor, *, max_queued: int, decode_steps: int = 1):
        self.output = output
        self.max_queued = max_queued
        self.decode_steps = decode_steps
        self.rows: dict[str, list[Sample]] = {}
        self.slots: dict[str, int] = {}
        self.retiring: set[str] = set()
        self.pending_moves: dict[str, list[tuple[int, int]]] = {}
        self.waiting: dict[str, list[RequestState]] = {}
        self.client_held: dict[str, int] = {}
        self.queued = 0
        self._seq = itertools.count()

    # -- replicas -----------------------------------------------------------------------------------
    def add_replica(self, replica: str, slots: int) -> None:
        self.rows[replica] = []
        self.slots[replica] = slots
        self.pending_moves[replica] = []

    def retire_replica(self, replica: str) -> None:
        """Admit nothing more to `replica`; its live samples run to the end."""
        self.retiring.add(replica)

    def remove_replica(self, replica: str) -> None:
        """Forget `replica`; its live samples go back to the queue, to continue elsewhere."""
        self.requeue(replica)
        del self.rows[replica], self.slots[replica], self.pending_moves[replica]
        self.retiring.discard(replica)

    def failed_call(self, replica: str, worker_lost: bool = False) -> list[RequestState]:
        """Record that a call of `replica` failed, by an exception in its step or, with worker_lost, by losing
        its worker; returns the requests found to cause it (see the module docstring). Call before requeue()."""
        in_call = {id(s.owner): s.owner for s in self.rows[replica] if not s.done}.values()
        suspects = [state for state in in_call if state.suspect]
        for state in in_call:
            state.suspect = True
        if len(suspects) != 1:
            return []
        [alone] = suspects
        if not worker_lost:
            return [alone]
        alone.losses_alone += 1
        return [alone] if alone.losses_alone >= LOST_ALONE_LIMIT else []

    def succeeded(self, replica: str, plan: BatchPlan) -> None:
        """A call went through: the requests in it are no longer suspects."""
        for sample in self.samples_of(replica, plan):
            sample.owner.suspect = False

    def requeue(self, replica: str) -> int:
        """The replica lost its KV cache (it failed): its unfinished samples wait for rows again, keeping the
        tokens they have. Returns how many."""
        count = 0
        for sample in self.rows[replica]:
            self._unhold(sample.owner)
            if sample.finished:
                self._released(sample.owner)
                continue
            self._wait_again(sample)
            count += 1
        self.rows[replica] = []
        self.pending_moves[replica] = []
        return count

    # -- submission -----------------------------------------------------------------------------------
    def submit(self, request: SequenceRequest, sink: EventSink, client: str = "") -> RequestState:
        n = len(request.samples)
        free = self.free_slots
        if self.queued + n > self.max_queued + free:
            raise Overloaded(f"admission queue full: {self.queued} sequences waiting for {free} free KV slots, "
                             f"queue limit {self.max_queued}; retry later")
        state = RequestState(request, sink, client, next(self._seq))
        self.waiting.setdefault(client, []).append(state)
        self.queued += n
        return state

    def cancel(self, state: RequestState) -> None:
        """A waiting request leaves the queue now; its rows are freed at the next plan of their replica."""
        if state.cancelled:
            return
        self.queued -= state.waiting
        state.cancelled = True
        queue = self.waiting.get(state.client)
        if queue and state in queue:
            queue.remove(state)
            if not queue:
                del self.waiting[state.client]

    # -- load -------------------------------------------------------------------------------------------
    @property
    def live_sequences(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    @property
    def queued_sequences(self) -> int:
        return self.queued

    @property
    def free_slots(self) -> int:
        return sum(self.slots[r] - len(rows) for r, rows in self.rows.items() if r not in self.retiring)

    def kv_tokens_used(self) -> int:
        return sum(s.owner.request.prompt.longest + len(s.token_ids) for rows in self.rows.values() for s in rows)

    def has_work(self) -> bool:
        return bool(self.queued or any(self.rows.values()))

    def live_requests(self) -> list[RequestState]:
        states = {id(s.owner): s.owner for rows in self.rows.values() for s in rows}
        for queue in self.waiting.values():
            states.update((id(s), s) for s in queue)
        return list(states.values())

    # -- planning ----------------------------------------------------------------------------------------
    def _unhold(self, state: RequestState) -> None:
        state.held -= 1
        self.client_held[state.client] -= 1
        if not self.client_held[state.client]:
            del self.client_held[state.client]

    def _released(self, state: RequestState) -> None:
        state.released += 1

    def _wait_again(self, sample: Sample) -> None:
        """An unfinished sample lost its row: it waits for one again and will continue from its tokens."""
        sample.evicted = False
        state = sample.owner
        if not state.waiting:
            self.waiting.setdefault(state.client, []).append(state)
        state.resume.append(sample)
        self.queued += 1

    def _leave_row(self, sample: Sample) -> None:
        self._unhold(sample.owner)
        if sample.finished:
            self._released(sample.owner)
        else:
            self._wait_again(sample)

    def _preempt_for_waiting(self, replica: str) -> None:
        """While requests that could run wait and too few rows are free, a request holding more than its share
        of the replica's rows (rows / requests running or ready) gives up its youngest rows beyond that share:
        just as many as the waiting requests need to reach their share. The evicted samples continue later
        from their tokens."""
        rows = self.rows[replica]
        ready = [s for queue in self.waiting.values() for s in queue if not s.sink.full and not s.suspect]
        if not ready:
            return
        holding: dict[RequestState, list[Sample]] = {}
        for sample in rows:
            if not sample.done:
                holding.setdefault(sample.owner, []).append(sample)
        share = max(1, self.slots[replica] // len(set(holding) | set(ready)))
        need = sum(min(s.waiting, max(0, share - len(holding.get(s, ())))) for s in ready)
        excess = need - (self.slots[replica] - sum(len(v) for v in holding.values()))
        for state, samples in sorted(holding.items(), key=lambda kv: -len(kv[1])):
            if excess <= 0 or len(samples) <= share:
                break
            samples.sort(key=lambda s: len(s.token_ids))
            for sample in samples[: min(excess, len(samples) - share)]:
                sample.evicted = True
                excess -= 1

    def _evict_paused(self, replica: str) -> None:
        """While a request that could run waits for rows, rows whose client is not reading are given up."""
        rows = self.rows[replica]
        if len(rows) < self.slots[replica] or not any(
                not s.sink.full for queue in self.waiting.values() for s in queue):
            return
        for sample in rows:
            if not sample.done and sample.owner.sink.full:
                sample.evicted = True

    def _release_done(self, replica: str) -> list[tuple[int, int]]:
        """Drop finished rows, filling each hole with the last live row; the moves the worker must copy."""
        rows = self.rows[replica]
        moves = []

        def pop_done_tail():
            while rows and rows[-1].done:
                self._leave_row(rows.pop())

        pop_done_tail()
        i = 0
        while i < len(rows):
            if rows[i].done:
                self._leave_row(rows[i])
                rows[i] = rows.pop()
                moves.append((len(rows), i))
                pop_done_tail()
            i += 1
        return moves

    def _pick(self, replica: str, free: int) -> dict[RequestState, int]:
        """How many rows each waiting request gets: one row at a time to the client, then the request, that
        holds the fewest (counting rows given in this round); ties to the earliest. A request whose client is
        not reading (its sink is full) gets none; at most one suspect request is let in, and only when no
        suspect runs on the replica."""
        picks: dict[RequestState, int] = {}
        requests: dict[str, list] = {}
        suspect_allowed = not any(s.owner.suspect for s in self.rows[replica])
        suspects = sorted((s for queue in self.waiting.values() for s in queue if s.suspect), key=lambda s: s.seq)
        admitted_suspect = suspects[0] if suspect_allowed and suspects else None
        for client, queue in self.waiting.items():
            ready = [(s.held, s.seq, s) for s in queue
                     if not s.sink.full and (not s.suspect or s is admitted_suspect)]
            if ready:
                heapq.heapify(ready)
                requests[client] = ready
        clients = [(self.client_held.get(c, 0), heap[0][1], c) for c, heap in requests.items()]
        heapq.heapify(clients)
        while free and clients:
            held, _, client = heapq.heappop(clients)
            heap = requests[client]
            state_held, seq, state = heapq.heappop(heap)
            picks[state] = picks.get(state, 0) + 1
            free -= 1
            if state.waiting > picks[state]:
                heapq.heappush(heap, (state_held + 1, seq, state))
            if heap:
                heapq.heappush(clients, (held + 1, heap[0][1], client))
        return picks

    def _admit(self, replica: str, picks: dict[RequestState, int]) -> list[Prefill]:
        """Rows for the picked samples: every prefill's first row, in order, then the rest (plan.py)."""
        rows = self.rows[replica]
        groups: list[list[Sample]] = []
        for state, count in picks.items():
            if state.admitted_at is None:
                state.admitted_at = perf_counter()
            while count and state.resume:
                groups.append([state.resume.popleft()])
                count -= 1
            if count:
                groups.append([self._new_sample(state, state.admitted + i) for i in range(count)])
                state.admitted += count
            taken = picks[state]
            state.held += taken
            self.client_held[state.client] = self.client_held.get(state.client, 0) + taken
            self.queued -= taken
            if not state.waiting:
                queue = self.waiting[state.client]
                queue.remove(state)
                if not queue:
                    del self.waiting[state.client]
        first_row = len(rows)
        rest_row = first_row + len(groups)
        prefills = []
        for j, group in enumerate(groups):
            head = group[0]
            prompt = head.owner.request.prompt
            continued = list(head.token_ids)
            prefills.append(Prefill(
                after_ids=list(prompt.after_ids) + continued,
                before_ids=None if prompt.before_ids is None else list(prompt.before_ids) + continued,
                rows=[first_row + j] + list(range(rest_row, rest_row + len(group) - 1)),
                params=[s.params for s in group], generated=len(continued)))
            rest_row += len(group) - 1
        rows.extend(group[0] for group in groups)
        for group in groups:
            rows.extend(group[1:])
        return prefills

    def _new_sample(self, state: RequestState, i: int) -> Sample:
        request = state.request
        params = request.samples[i]
        output = self.output.new_sample(prompt_tokens=len(request.prompt.after_ids),
                                        max_new_tokens=request.max_new_tokens, stop=request.stop,
                                        index=params.sample_index, seed=request.seed)
        return Sample(state, params, output)

    def next_plan(self, replica: str) -> BatchPlan | None:
        """The next worker call of `replica`, or None when it has nothing to advance. Moves of a call that
        never happened are kept for the next one."""
        if self.queued:
            self._evict_paused(replica)
            self._preempt_for_waiting(replica)
        moves = self.pending_moves[replica] + self._release_done(replica)
        rows = self.rows[replica]
        decode_ids = [s.token_ids[-1] for s in rows]
        prefills = []
        if replica not in self.retiring and self.queued:
            prefills = self._admit(replica, self._pick(replica, self.slots[replica] - len(rows)))
        budgets = [0 if s.owner.sink.full else
                   min(self.decode_steps, s.owner.request.max_new_tokens - len(s.token_ids)) for s in rows]
        if not prefills and not any(budgets):
            self.pending_moves[replica] = moves
            return None
        self.pending_moves[replica] = []
        return BatchPlan(moves=moves, num_decode_rows=len(decode_ids), decode_token_ids=decode_ids,
                         prefills=prefills, budgets=budgets, max_steps=self.decode_steps)

    def samples_of(self, replica: str, plan: BatchPlan) -> list[Sample]:
        """The sample each row of `plan`'s result belongs to (rows of `replica` as the plan left them)."""
        return self.rows[replica][: plan.num_rows]

    def fail_all(self) -> list[RequestState]:
        """Forget every live and waiting request; returns them so callers can tell their clients."""
        affected = self.live_requests()
        for replica in self.rows:
            self.rows[replica] = []
            self.pending_moves[replica] = []
        self.waiting.clear()
        self.client_held.clear()
        self.queued = 0
        for state in affected:
            state.cancelled = True
        return affected
