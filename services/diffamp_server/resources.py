"""Resource planning at startup: where the models go, how long a KV slot is, and how many slots fit.

Every limit derived from the models is computed here once: the context limit (the configured max_seq_len
capped by both models' context) and the KV slots (max_batch_size, capped by the KV memory budget).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .config import ServerConfig, parse_replicas
from .engine.kv_store import slot_bytes, slots_within_budget
from .loading import ModelSource, context_length, resolve_dtype

log = logging.getLogger(__name__)


def model_sources(config: ServerConfig) -> tuple[ModelSource, ModelSource]:
    """Where the after and before tokenizers (and the before weights) load from. For a LoRA pair the after
    tokenizer is the adapter's when it ships one (post-training often adds a chat template), else the base's."""
    before = ModelSource(config.before, config.tokenizer_class or None, config.trust_remote_code)
    after_id = config.after_adapter if config.after_adapter else config.after
    if config.lora and not (Path(after_id) / "tokenizer_config.json").is_file():
        after_id = config.before
    return ModelSource(after_id, config.tokenizer_class or None, config.trust_remote_code), before


def model_config(source: ModelSource):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(source.model_id, trust_remote_code=source.trust_remote_code).get_text_config()


def max_seq_len(configured: int, *model_configs) -> int:
    """Positions per KV slot: the configured length, capped at every model's context."""
    return min([configured] + [context_length(c) for c in model_configs])


def logits_size(*model_configs) -> int:
    """Ids past the smaller output layer cannot be scored by both models."""
    return min(c.vocab_size for c in model_configs)


def init_ray(config: ServerConfig) -> None:
    """Join the configured cluster, or start a local Ray bound to the loopback address only."""
    if not config.ray_address:
        # Read when ray is imported: with it off, every Ray server of a local instance listens on 127.0.0.1.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return
    if not config.ray_address:
        ray.init(num_cpus=config.ray_num_cpus or None, include_dashboard=False, log_to_driver=True)
        return
    deadline = time.monotonic() + 120
    while True:  # in a pod, the Ray head may still be starting
        try:
            ray.init(address=config.ray_address, log_to_driver=True)
            return
        except ConnectionError as exc:
            if time.monotonic() > deadline:
                raise ConnectionError(f"no Ray cluster at {config.ray_address}: {exc}") from exc
            log.info("waiting for the Ray cluster at %s", config.ray_address)
            time.sleep(2)


def resolve_placement(config: ServerConfig) -> tuple[str, str]:
    """(placement, device) from the flags and the Ray cluster's GPUs."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    device = config.device
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    if device.startswith("cuda"):
        device = "cuda:0"  # Ray gives each GPU actor its own CUDA_VISIBLE_DEVICES, so it sees cuda:0
    placement = config.placement
    if placement == "auto":
        placement = "split" if device.startswith("cuda") and gpus >= 2 else "colocated"
    return placement, device


@dataclass(frozen=True, kw_only=True)
class KvPlan:
    slots: int
    max_seq_len: int
    bytes_per_slot: int

    @property
    def total_bytes(self) -> int:
        return self.slots * self.bytes_per_slot


def plan_kv(config: ServerConfig, device: str, after_cfg, before_cfg) -> KvPlan:
    """KV slots of max_seq_len positions: max_batch_size of them, or as many as the memory budget holds."""
    length = max_seq_len(config.max_seq_len, after_cfg, before_cfg)
    dtype = resolve_dtype(config.dtype, device)
    per_slot = slot_bytes(after_cfg, length, dtype) + slot_bytes(before_cfg, length, dtype)
    slots = slots_within_budget(int(config.kv_cache_budget_mb * 2**20), per_slot, config.max_batch_size)
    return KvPlan(slots=slots, max_seq_len=length, bytes_per_slot=per_slot)


def worker_threads(config: ServerConfig, placement: str, device: str) -> int:
    """torch threads per model worker; 0 means every core the worker may use. On CPU with a local Ray every
    worker of every replica runs on this machine, and workers that each take every core slow one another several
    times over (two replicas on 2 cores: 5.6x slower than one), so the cores are divided among the workers the
    server starts with."""
    from .workers import available_cpus

    if config.torch_threads or config.ray_address or device != "cpu":
        return config.torch_threads
    workers = (parse_replicas(config.replicas) or 1) * (2 if placement == "split" else 1)
    return max(1, available_cpus() // workers) if workers > 1 else 0
