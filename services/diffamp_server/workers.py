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

from .engine.loader import RunnerSpec, load_runner
from .engine.model import RunnerInfo
from .engine.pair import PairEngine
from .engine.lora import LoraPair
from .engine.pair_models import PairModels, TwoModels
from .engine.split import AfterHalf, BeforeHalf
from .loading import ModelSource
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
    adapter: str = ""
    """A LoRA pair: the after model is this PEFT adapter on the before model."""
    torch_threads: int = 0
    engine: str = "auto"
    compile: bool = False
    compile_cache_dir: str = ""
    decode_steps: int = 8
    max_logprobs: int = 20

    def runner(self, which: str):
        return load_runner(RunnerSpec(source=getattr(self, which), dtype=self.dtype, device=self.device,
                                      engine=self.engine, max_rows=self.max_batch_size, max_seq_len=self.max_seq_len))

    def pair_models(self) -> PairModels:
        """Two models, or for a LoRA pair one model with the adapter and twice the KV rows."""
        if not self.adapter:
            return TwoModels(self.runner("after"), self.runner("before"))
        runner = load_runner(RunnerSpec(source=self.before, dtype=self.dtype, device=self.device, engine=self.engine,
                                        max_rows=2 * self.max_batch_size, max_seq_len=self.max_seq_len,
                                        adapter=self.adapter))
        return LoraPair(runner, self.max_batch_size)


def _prepare_process(spec: WorkerSpec) -> None:
    _set_threads(spec)
    if spec.compile_cache_dir:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = spec.compile_cache_dir
    # Ray forwards a worker's output to the gateway's log; progress bars there would break its lines.
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


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
        _prepare_process(spec)
        self.engine = PairEngine(spec.pair_models(), shared=spec.shared_vocab,
                                 eos_ids=spec.eos_ids, max_rows=spec.max_batch_size, max_steps=spec.decode_steps,
                                 max_logprobs=spec.max_logprobs, compile=spec.compile)

    def execute(self, plan: BatchPlan) -> BatchResult:
        return self.engine.execute(plan)

    def info(self) -> tuple[RunnerInfo, RunnerInfo]:
        return self.engine.models.info()

    def ping(self) -> str:
        return _node_id()


class _SplitWorker:
    """One model of a split pair, joined to its peer by a two-process torch.distributed group."""

    rank: int
    half: AfterHalf | BeforeHalf

    def address(self) -> tuple[str, int]:
        with socket.socket() as s:
            s.bind(("", 0))
            return socket.gethostbyname(socket.gethostname()), s.getsockname()[1]

    def join_group(self, master: tuple[str, int], timeout_s: float) -> None:
        import torch.distributed as dist

        backend = "nccl" if self.half.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://{master[0]}:{master[1]}", rank=self.rank,
                                world_size=2, timeout=timedelta(seconds=timeout_s))

    def execute(self, plan: BatchPlan):
        return self.half.execute(plan)

    def info(self) -> RunnerInfo:
        runner = self.half.runner
        return runner.lm.info(runner.store.nbytes(), runner.engine)

    def ping(self) -> str:
        return _node_id()


class AfterWorker(_SplitWorker):
    """The after model; samples, and tells the before worker which tokens to feed next."""

    rank = 0

    def __init__(self, spec: WorkerSpec):
        _prepare_process(spec)
        self.half = AfterHalf(spec.runner("after"), shared=spec.shared_vocab, eos_ids=spec.eos_ids,
                              max_rows=spec.max_batch_size, max_steps=spec.decode_steps,
                              max_logprobs=spec.max_logprobs, compile=spec.compile)


class BeforeWorker(_SplitWorker):
    """The before model: one forward per step, its logits sent to the after worker."""

    rank = 1

    def __init__(self, spec: WorkerSpec):
        _prepare_process(spec)
        self.half = BeforeHalf(spec.runner("before"), shared=spec.shared_vocab, max_rows=spec.max_batch_size,
                               compile=spec.compile)


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
