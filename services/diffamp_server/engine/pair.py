"""Both models of a pair in one process: the colocated placement, and the library API.

A worker call (`execute(plan)`): the row table takes the plan's moves and new prompts, the KV stores copy and
fill rows (no logits: each prompt's last token is fed by the first step), the rows' state and the call's
uniforms go to the device in one copy, then each step runs both forwards, the amplified sampling and the state
update (a CUDA graph replay per step on GPU), and the tokens come back in one copy at the end.
"""

from __future__ import annotations

import logging
import math
import time

import torch

from ..plan import BatchPlan, BatchResult, TokenLogprobs
from ..vocab import SharedVocab
from .buckets import Buckets
from .decode_step import DecodeState, StepKind, sample_step
from .graphs import StepGraphs
from .lora import WEIGHTS
from .pair_models import PairModels
from .rows import MODELS, RowTable, batched_copies
from .uniforms import call_uniforms

log = logging.getLogger(__name__)
STEP_KINDS = [StepKind(filters, logprobs) for filters in (False, True) for logprobs in (False, True)]
FULL = StepKind(filters=True, logprobs=True)
"""Compiled, every call runs the full step: the filters are exact no-ops for rows without top-k/top-p, so the
tokens are the same, and one graph compiles in a quarter of the time of four."""


class PairEngine:
    def __init__(self, models: PairModels, *, shared: SharedVocab, eos_ids: tuple[int, ...], max_rows: int,
                 max_steps: int, max_logprobs: int, compile: bool = False, cuda_graphs: bool | None = None,
                 pad_to_buckets: bool | None = None):
        """cuda_graphs: None = on for the static engine on CUDA. pad_to_buckets: None = when capturing graphs;
        True pads without graphs, which runs the captured code path's shapes eagerly (for tests on CPU)."""
        self.models = models
        models.limit_logits(shared.size)
        self.device = models.device
        self.engine = models.engine
        self.max_seq_len = models.max_seq_len
        self.table = RowTable(max_rows)
        self.state = DecodeState(rows=max_rows, steps=max_steps, vocab=shared.size, shared=shared.mask(),
                                 eos_ids=eos_ids, max_logprobs=min(max_logprobs, shared.size), device=self.device)
        static = self.engine == "static"
        if cuda_graphs is None:
            cuda_graphs = static and self.device.type == "cuda"
        if cuda_graphs and not static:
            raise ValueError("CUDA graphs need the static engine")
        if pad_to_buckets is None:
            pad_to_buckets = cuda_graphs
        self.buckets = Buckets.padded(max_rows, self.max_seq_len) if pad_to_buckets else \
            Buckets.exact(self.max_seq_len, min_batch=2 if compile and max_rows > 1 else 1)
        self._sample = sample_step
        self.compile_s = 0.0
        if compile:
            self._compile()
            log.info("compiled the decode step in %.1f s", self.compile_s)
        self.graphs = None
        if cuda_graphs:
            keys = [(b, kv, kind) for b in reversed(self.buckets.batch) for kv in reversed(self.buckets.kv)
                    for kind in STEP_KINDS]
            with torch.inference_mode():
                self.graphs = StepGraphs(lambda key: self._step(*key), keys, self._reset)

    def _compile(self) -> None:
        """torch.compile (inductor) each model's decode forward and the sampling step (its full kind), with
        dynamic batch and KV sizes, and compile them now, before the worker reports ready. A pair's two models
        usually share an architecture, and then the second model's forward reuses the first one's graph. The
        smallest batch is 2 (a batch of 1 would be a graph of its own). Prompt filling stays eager: compiling
        it with a dynamic width would double the start-up time for a few percent."""
        started = time.perf_counter()
        self.models.compile_decode()
        if self.device.type != "cuda":
            # Inductor's CUDA backend cannot yet lower the sampler's scan over the vocabulary ("NYI
            # TritonSplitDimKernel reductions", torch 2.11); there the sampler runs eagerly inside the graphs.
            self._sample = torch.compile(sample_step, dynamic=True, fullgraph=True)
        with torch.inference_mode():
            self._reset()
            self._step(self.buckets.batch_for(1), self.buckets.kv_for(1), FULL)
            self._reset()
        self.compile_s = time.perf_counter() - started

    # -- one step -----------------------------------------------------------------------------------------
    def _step(self, rows: int, kv_len: int, kind: StepKind) -> None:
        s = self.state
        after, before = self.models.decode(s.tokens["after"][:rows], s.tokens["before"][:rows],
                                           s.lengths["after"][:rows], s.lengths["before"][:rows], kv_len)
        self._sample(s, after, before, kind)

    def _reset(self) -> None:
        """All rows inactive at position 0 (free slots), for capturing graphs."""
        s = self.state
        s.active.zero_()
        s.step.zero_()
        for m in MODELS:
            s.lengths[m].zero_()
            s.tokens[m].zero_()

    # -- one worker call ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def execute(self, plan: BatchPlan) -> BatchResult:
        moves, work = self.table.apply(plan)
        for batch in moves:
            self.models.copy_rows([s for s, _ in batch], [d for _, d in batch])
        self.models.load_rows(self.table.params[:plan.num_rows])
        self.models.prefill(work["after"].first_row, work["after"].prompts, work["before"].prompts)
        for srcs, dsts, length in batched_copies(work["after"], work["before"]):
            self.models.copy_rows(srcs, dsts, length)
        inputs = self.table.inputs(plan)
        n = inputs.rows
        if inputs.steps == 0:
            return BatchResult(token_ids=[[] for _ in range(n)], logprobs=[[] for _ in range(n)])
        params = self.table.params[:n]
        keys = [(p.seed, p.sample_index, int(g)) for p, g in zip(params, self.table.generated[:n])]
        kind = FULL if self.compile_s else StepKind(filters=any(p.top_k > 0 or p.top_p < 1 for p in params),
                                                    logprobs=any(p.logprobs is not None for p in params))
        self.state.load(self.table, inputs, call_uniforms(keys, inputs.steps))
        ran = self._run_steps(n, inputs.steps, kind)
        out = self.state.read(n, ran, kind)
        self.table.advance(out["taken"])
        return to_result(out, params, kind)

    def _run_steps(self, n: int, steps: int, kind: StepKind) -> int:
        """Up to `steps` steps; stops early once no row is active. On CUDA the check reads the flag of the step
        before the one just launched, so the device never waits for the host."""
        rows = self.buckets.batch_for(n)
        longest = self.table.longest(n)
        kv = self.buckets.kv_for(longest + steps)
        if self.graphs is None:
            # Compiled, the step has one graph per step kind; checking only the guards that tell them apart
            # saves a third of a millisecond per step on CPU.
            with torch.compiler.set_stance("default", skip_guard_eval_unsafe=self.compile_s > 0):
                for step in range(steps):
                    self._step(rows, kv if self.engine == "static" else longest + step + 1, kind)
                    if not bool(self.state.any_active):
                        return step + 1
            return steps
        flags = torch.zeros(steps, dtype=torch.bool, pin_memory=True)
        events = [torch.cuda.Event() for _ in range(steps)]
        for step in range(steps):
            self.graphs.replay((rows, kv, kind))
            flags[step].copy_(self.state.any_active[0], non_blocking=True)
            events[step].record()
            if step:
                events[step - 1].synchronize()
                if not bool(flags[step - 1]):
                    return step + 1
        return steps


def to_result(out: dict, params, kind: StepKind) -> BatchResult:
    """Per row, the tokens it sampled (and their logprobs where the row asked for them)."""
    token_ids, logprobs = [], []
    for r, p in enumerate(params):
        taken = int(out["taken"][r])
        token_ids.append(out["tokens"][r, :taken].tolist())
        if not kind.logprobs or p.logprobs is None:
            logprobs.append([])
            continue
        k = p.logprobs
        # In weights mode (LoRA pairs) the second model of the row is the after model, and the base is not run.
        after, before, kl = ((out["before"], None, None) if p.mode == WEIGHTS else
                             (out["after"], out["before"], out["kl"]))
        logprobs.append([TokenLogprobs(
            amplified=float(out["amplified"][r, t]), after=float(after[r, t]),
            before=float(before[r, t]) if before is not None else math.nan, sampled=float(out["sampled"][r, t]),
            kl_after_before=float(kl[r, t]) if kl is not None else math.nan,
            top_ids=out["top_ids"][r, t, :k].tolist(), top_logprobs=out["top_logprobs"][r, t, :k].tolist())
            for t in range(taken)])
    return BatchResult(token_ids=token_ids, logprobs=logprobs)
