"""Where a GPU decode step's time goes: torch.profiler over a few steps at 1 and 256 streams, with the CUDA
graphs (wall per step) and eagerly (the kernels, by GPU time). Prints the tables; no targets.

    python3 bench/gpu_profile.py          # on the GPU machine, through gpu_check.sh's environment
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
import gpu_check  # noqa: E402

from diffamp_server import Amplifier  # noqa: E402

STEPS = 16


def run(amp, n: int, vocab: int) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    amp.generate(prompt_token_ids=gpu_check.prompt_ids(n, vocab), n=n, max_new_tokens=STEPS, min_new_tokens=STEPS,
                 temperature=1.0, top_p=1.0, seed=n)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / STEPS * 1000


def main() -> None:
    shape = gpu_check.SHAPES["olmo1b"]
    after, before = gpu_check.build_pair(Path(tempfile.mkdtemp(prefix="diffamp-prof-")), shape, "cuda")
    amp = Amplifier(after, before, device="cuda", dtype="bfloat16", max_batch_size=256, max_seq_len=256)
    vocab = amp.tokenizers.shared.size
    graphs = amp.engine.graphs
    for label, use_graphs in (("graphs", True), ("eager", False)):
        amp.engine.graphs = graphs if use_graphs else None
        for n in (1, 256):
            run(amp, n, vocab)
            wall = run(amp, n, vocab)
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                run(amp, n, vocab)
            events = prof.key_averages()
            gpu_us = sum(e.self_device_time_total for e in events) / STEPS
            print(f"\n=== {label}, {n} streams: {wall:.2f} ms/step wall, {gpu_us / 1000:.2f} ms/step of GPU kernels",
                  flush=True)
            print(events.table(sort_by="self_device_time_total", row_limit=18, max_name_column_width=70), flush=True)


if __name__ == "__main__":
    main()
