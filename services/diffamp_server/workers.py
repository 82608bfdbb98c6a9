"""The Ray actors that hold the models (replica.py drives them).

colocated: one PairWorker holds both models; logits are handed over by reference in its process.
split: an AfterWorker and a BeforeWorker, each with its own device; the before logits reach the after
worker over a torch.distributed group (NCCL on GPUs, gloo on CPU), never through the object store.
Only BatchPlans (token ids, rows, sampling parameters) and BatchResults (token ids, logprobs) travel by Ray.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import torch

from .engine import PairEngine, Sampler
from .loading import ModelSource
from .model_runner import ModelRunner, RunnerInfo
from .plan import BatchPlan, BatchResult
from .vocab import SharedVocab

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WorkerSpec:
    """Everything a worker needs to (re)build itself; Ray re-runs __init__ with it on restart."""

    after: ModelSource
    before: ModelSource
    dtype: str
    device: str
    max_batch_size: int
    max_seq_len: int
    shared_vocab: SharedVocab
    eos_ids: tuple[int, ...] = ()
    torch_threads: int = 0


def _set_threads(spec: WorkerSpec) -> None:
    """Default: every core this process may use. With several decode steps per call the gateway needs little
    CPU, and all cores measured faster at every concurrency (bench/bench.py, BENCHMARKS.md). Ray sets
    OMP_NUM_THREADS to the actor's CPUs, so the count is set here explicitly."""
    torch.set_num_threads(spec.torch_threads or available_cpus())


def available_cpus() -> int:
    """Cores this process may run on, within a cgroup CPU limit (a container's) when there is one."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cpus


class PairWorker:
    """Both models in one process (colocated placement)."""

    def __init__(self, spec: WorkerSpec):
        _set_threads(spec)
        after = ModelRunner.load(spec.after, spec.dtype, spec.device, spec.max_batch_size, spec.max_seq_len)
        before = ModelRunner.load(spec.before, spec.dtype, spec.device, spec.max_batch_size, spec.max_seq_len)
        self.engine = PairEngine(after, before, spec.shared_vocab.mask(), spec.eos_ids, spec.max_batch_size)

    def execute(self, plan: BatchPlan) -> BatchResult:
        return self.engine.step(plan)

    def info(self) -> tuple[RunnerInfo, RunnerInfo]:
        return self.engine.after.info(), self.engine.before.info()

    def ping(self) -> str:
        return _node_id()


class _SplitWorker:
    """One model of a split pair, joined to its peer by a two-process torch.distributed group."""

    rank: int

    def __init__(self, spec: WorkerSpec, source: ModelSource, device: str):
        _set_threads(spec)
        self.runner = ModelRunner.load(source, spec.dtype, device, spec.max_batch_size, spec.max_seq_len)
        self.vocab = spec.shared_vocab.size

    def address(self) -> tuple[str, int]:
        with socket.socket() as s:
            s.bind(("", 0))
            return socket.gethostbyname(socket.gethostname()), s.getsockname()[1]

    def join_group(self, master: tuple[str, int], timeout_s: float) -> None:
        import torch.distributed as dist

        backend = "nccl" if self.runner.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://{master[0]}:{master[1]}", rank=self.rank,
                                world_size=2, timeout=timedelta(seconds=timeout_s))

    def info(self) -> RunnerInfo:
        return self.runner.info()

    def ping(self) -> str:
        return _node_id()


class AfterWorker(_SplitWorker):
    """Samples. After each token it tells the before worker which tokens to feed next, or to stop."""

    rank = 0

    def __init__(self, spec: WorkerSpec):
        super().__init__(spec, spec.after, spec.device)
        self.sampler = Sampler(spec.shared_vocab.mask(self.runner.device), spec.eos_ids, spec.max_batch_size)

    def execute(self, plan: BatchPlan) -> BatchResult:
        result = self.sampler.run(plan, self.runner.run(plan, "after"), self._receive_logits(plan.num_rows),
                                  self._decode)
        _send_control(torch.zeros(plan.num_rows, dtype=torch.long), torch.zeros(plan.num_rows, dtype=torch.bool),
                      go=False, device=self.runner.device)
        return result

    def _decode(self, tokens: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _send_control(tokens, active, go=True, device=self.runner.device)
        return self.runner.decode(tokens, active), self._receive_logits(tokens.shape[0])

    def _receive_logits(self, rows: int) -> torch.Tensor:
        import torch.distributed as dist

        before = torch.empty(rows, self.vocab, dtype=torch.float32, device=self.runner.device)
        dist.recv(before, src=1)
        return before


class BeforeWorker(_SplitWorker):
    """Runs the plan's first step, then one decode step per 'go' from the after worker, sending logits back."""

    rank = 1

    def __init__(self, spec: WorkerSpec):
        super().__init__(spec, spec.before, spec.device)

    def execute(self, plan: BatchPlan) -> None:
        import torch.distributed as dist

        self._send_logits(self.runner.run(plan, "before"))
        control = torch.empty(2 * plan.num_rows + 1, dtype=torch.long, device=self.runner.device)
        while True:
            dist.recv(control, src=0)
            tokens, active, go = control[: plan.num_rows], control[plan.num_rows: -1], control[-1]
            if not int(go):
                return
            self._send_logits(self.runner.decode(tokens, active.bool()))

    def _send_logits(self, logits: torch.Tensor) -> None:
        import torch.distributed as dist

        dist.send(logits[:, : self.vocab].float().contiguous(), dst=0)


def _send_control(tokens: torch.Tensor, active: torch.Tensor, go: bool, device) -> None:
    """[tokens..., active..., go] from the after worker to the before worker: one small int tensor per token."""
    import torch.distributed as dist

    go_flag = torch.tensor([int(go)], dtype=torch.long, device=device)
    dist.send(torch.cat([tokens.to(device), active.to(device).long(), go_flag]), dst=1)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def actor_options(device: str, cpus: float, resources: dict | None, max_restarts: int) -> dict:
    options = {"num_cpus": cpus, "max_restarts": max_restarts, "max_task_retries": 0}
    if str(device).startswith("cuda"):
        options["num_gpus"] = 1
    if resources:
        options["resources"] = resources
    return options
