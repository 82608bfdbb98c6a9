"""What one forward of one model costs at each batch shape: decode steps at batch 1..256, and a prefill.

    python bench/step_shapes.py --pair demo|random30m

Median ms per forward on the slot KV cache (ModelRunner), torch threads = all cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from pairs import demo_pair, random_pair  # noqa: E402
from timing import median_ms  # noqa: E402

from diffamp_server.loading import ModelSource  # noqa: E402
from diffamp_server.model_runner import ModelRunner  # noqa: E402
from diffamp_server.plan import Prefill, SamplingParams, StepPlan  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pair", choices=["demo", "random30m"], default="demo")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    after, _ = demo_pair() if args.pair == "demo" else random_pair(Path(tempfile.gettempdir()) / "diffamp-bench")
    runner = ModelRunner.load(ModelSource(after), "float32", "cpu", max_batch_size=256, max_seq_len=256)
    prompt = list(range(5, 30))
    print(f"pair {args.pair}, one model, median ms per forward:")
    for batch in (1, 8, 32, 128, 256):
        runner.run(StepPlan(prefills=[Prefill(prompt, list(range(batch)), [SamplingParams()] * batch)]))
        step = StepPlan(num_decode_rows=batch, decode_token_ids=[7] * batch)
        ms = median_ms(lambda: (runner.run(step), runner.lengths[:batch].sub_(1)), repeat=30, warmup=3)
        print(f"  decode step, batch {batch:>3}: {ms:7.2f}")
    for prompts in (1, 4):
        plan = StepPlan(prefills=[Prefill(prompt, [i], [SamplingParams()]) for i in range(prompts)])
        ms = median_ms(lambda: runner.run(plan), repeat=30, warmup=3)
        print(f"  prefill of {prompts} prompt(s) x {len(prompt)} tokens, one forward: {ms:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
