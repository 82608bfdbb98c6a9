"""The two halves of a split pair, each model in its own process (and on its own GPU), joined by a
two-process torch.distributed group (NCCL on GPUs, gloo on CPU). Per step the before half sends its logits
(fp32, the shared vocabulary only) and the after half, which samples, answers with a small control tensor:
the next input tokens, which rows advanced, and whether another step follows. Each half keeps its own row
table; both derive the same shapes from the same plan. On CUDA each forward (and the after half's sampling
step) replays a captured graph; the sends and receives stay outside the graphs.
"""

from __future__ import annotations

import torch

from ..plan import BatchPlan, BatchResult
from ..vocab import SharedVocab
from .buckets import Buckets
from .decode_step import DecodeState, StepKind, sample_step
from .graphs import StepGraphs
from .pair import STEP_KINDS, to_result
from .rows import RowTable, batched_copies
from .runners import ModelRunner
from .uniforms import call_uniforms

AFTER_RANK, BEFORE_RANK = 0, 1


class _Half:
    def __init__(self, runner: ModelRunner, model: str, shared: SharedVocab, max_rows: int, compile: bool):
        self.runner = runner
        if compile:
            runner.compile_decode()
        runner.lm.limit_logits(shared.size)
        self.model = model
        self.vocab = shared.size
        self.device = runner.lm.device
        self.table = RowTable(max_rows)
        self.static = runner.engine == "static"
        self.cuda_graphs = self.static and self.device.type == "cuda"
        self.buckets = (Buckets.padded(max_rows, runner.store.max_seq_len) if self.cuda_graphs
                        else Buckets.exact(runner.store.max_seq_len))
        self.logits = torch.zeros(max_rows, shared.size, device=self.device)

    def _prepare(self, plan: BatchPlan):
        moves, work = self.table.apply(plan)
        for batch in moves:
            self.runner.store.copy_rows([s for s, _ in batch], [d for _, d in batch])
        w = work[self.model]
        self.runner.prefill(w.first_row, w.prompts)
        for srcs, dsts, length in batched_copies(w):
            self.runner.store.copy_rows(srcs, dsts, length)
        inputs = self.table.inputs(plan)
        rows = self.buckets.batch_for(inputs.rows)
        longest = self.table.longest(inputs.rows)
        return inputs, rows, longest, self.buckets.kv_for(longest + inputs.steps)

    def _forward(self, tokens, lengths, rows: int, kv: int) -> None:
        self.logits[:rows].copy_(self.runner.decode(tokens[:rows], lengths[:rows], kv))

    def _kv(self, kv_bucket: int, longest: int, step: int) -> int:
        return kv_bucket if self.static else longest + step + 1


class AfterHalf(_Half):
    """Holds the after model and samples."""

    def __init__(self, runner: ModelRunner, *, shared: SharedVocab, eos_ids: tuple[int, ...], max_rows: int,
                 max_steps: int, max_logprobs: int, compile: bool = False):
        super().__init__(runner, "after", shared, max_rows, compile)
        self.state = DecodeState(rows=max_rows, steps=max_steps, vocab=shared.size, shared=shared.mask(),
                                 eos_ids=eos_ids, max_logprobs=min(max_logprobs, shared.size), device=self.device)
        self.before_logits = torch.zeros(max_rows, shared.size, device=self.device)
        self.advanced = torch.zeros(max_rows, dtype=torch.long, device=self.device)
        self.forward_graphs = self.sample_graphs = None
        if self.cuda_graphs:
            s = self.state
            with torch.inference_mode():
                self.forward_graphs = StepGraphs(
                    lambda key: self._forward(s.tokens["after"], s.lengths["after"], *key),
                    [(b, kv) for b in self.buckets.batch for kv in self.buckets.kv], lambda: None)
                self.sample_graphs = StepGraphs(lambda key: self._sample(*key),
                                                [(b, kind) for b in self.buckets.batch for kind in STEP_KINDS],
                                                self.state.active.zero_)

    def _sample(self, rows: int, kind: StepKind) -> None:
        self.advanced[:rows].copy_(self.state.active[:rows])
        sample_step(self.state, self.logits[:rows], self.before_logits[:rows], kind)

    @torch.inference_mode()
    def execute(self, plan: BatchPlan) -> BatchResult:
        import torch.distributed as dist

        inputs, rows, longest, kv = self._prepare(plan)
        n = inputs.rows
        if inputs.steps == 0:
            return BatchResult(token_ids=[[] for _ in range(n)], logprobs=[[] for _ in range(n)])
        params = self.table.params[:n]
        kind = StepKind(filters=any(p.top_k > 0 or p.top_p < 1 for p in params),
                        logprobs=any(p.logprobs is not None for p in params))
        keys = [(p.seed, p.sample_index, int(g)) for p, g in zip(params, self.table.generated[:n])]
        s = self.state
        s.load(self.table, inputs, call_uniforms(keys, inputs.steps))
        control = torch.zeros(2 * rows + 1, dtype=torch.long, device=self.device)
        ran = inputs.steps
        for step in range(inputs.steps):
            if self.forward_graphs:
                self.forward_graphs.replay((rows, kv))
            else:
                self._forward(s.tokens["after"], s.lengths["after"], rows, self._kv(kv, longest, step))
            dist.recv(self.before_logits[:rows], src=BEFORE_RANK)
            if self.sample_graphs:
                self.sample_graphs.replay((rows, kind))
            else:
                self._sample(rows, kind)
            go = step + 1 < inputs.steps and bool(s.any_active)
            control[:rows].copy_(s.tokens["after"][:rows])
            control[rows:2 * rows].copy_(self.advanced[:rows])
            control[-1] = int(go)
            dist.send(control, dst=BEFORE_RANK)
            if not go:
                ran = step + 1
                break
        out = s.read(n, ran, kind)
        self.table.advance(out["taken"])
        return to_result(out, params, kind)


class BeforeHalf(_Half):
    """Holds the before model: a forward per step, its logits to the after half, the next tokens back."""

    def __init__(self, runner: ModelRunner, *, shared: SharedVocab, max_rows: int, compile: bool = False):
        super().__init__(runner, "before", shared, max_rows, compile)
        self.tokens = torch.zeros(max_rows, dtype=torch.long, device=self.device)
        self.lengths = torch.zeros(max_rows, dtype=torch.long, device=self.device)
        self.forward_graphs = None
        if self.cuda_graphs:
            with torch.inference_mode():
                self.forward_graphs = StepGraphs(lambda key: self._forward(self.tokens, self.lengths, *key),
                                                 [(b, kv) for b in self.buckets.batch for kv in self.buckets.kv],
                                                 lambda: None)

    @torch.inference_mode()
    def execute(self, plan: BatchPlan) -> None:
        import torch.distributed as dist

        inputs, rows, longest, kv = self._prepare(plan)
        n = inputs.rows
        if inputs.steps == 0:
            return
        self.tokens.zero_()
        self.lengths.zero_()
        self.tokens[:n].copy_(torch.from_numpy(inputs.tokens["before"]))
        self.lengths[:n].copy_(torch.from_numpy(self.table.lengths["before"][:n]))
        control = torch.zeros(2 * rows + 1, dtype=torch.long, device=self.device)
        taken = torch.zeros(rows, dtype=torch.long, device=self.device)
        for step in range(inputs.steps):
            if self.forward_graphs:
                self.forward_graphs.replay((rows, kv))
            else:
                self._forward(self.tokens, self.lengths, rows, self._kv(kv, longest, step))
            dist.send(self.logits[:rows], dst=AFTER_RANK)
            dist.recv(control, src=AFTER_RANK)
            advanced = control[rows:2 * rows]
            self.tokens[:rows] = torch.where(advanced.bool(), control[:rows], self.tokens[:rows])
            self.lengths[:rows] += advanced
            taken += advanced
            if not int(control[-1]):
                break
        self.table.advance(taken[:n].cpu().numpy())
