"""Where one stream's per-token time goes: each piece of the decode path timed on its own.

    python bench/profile_one_stream.py --pair demo|random30m

Pieces: the after and before forwards at batch 1 (slot KV cache), combine + sample, the scheduler's plan
and apply (detokenization included), and a Ray actor round trip with a StepPlan/StepResult of this size.
The last two are paid once per worker call, which decodes --decode-steps tokens, so they are divided by it.
Compare the sum with the end-to-end figure of bench.py.
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

from diffamp_server import Amplifier  # noqa: E402
from diffamp_server.plan import StepPlan, StepResult  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pair", choices=["demo", "random30m"], default="demo")
    parser.add_argument("--decode-steps", type=int, default=8, help="tokens per worker call, as the server's flag")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    after, before = demo_pair() if args.pair == "demo" else random_pair(Path(tempfile.gettempdir()) / "diffamp-bench")
    amp = Amplifier(after, before, device="cpu", max_batch_size=8, max_seq_len=256)
    engine, scheduler = amp.engine, amp.scheduler
    [c] = amp.generate("What is the capital of France?", max_new_tokens=1, seed=0)
    # one live row, 20 tokens in, then time single decode steps of each piece
    from diffamp_server.request import GenerateInput, build_request

    req = build_request(GenerateInput(prompt="What is the capital of France?", max_new_tokens=200, seed=1),
                        amp.tokenizers.prompt_ids, amp.limits)
    state = scheduler.submit(req, context=None)
    plan = scheduler.next_plan()
    scheduler.apply(plan, engine.step(plan))
    decode = StepPlan(num_decode_rows=1, decode_token_ids=[c.token_ids[0]])
    pieces = {}
    pieces["after forward (bs=1)"] = median_ms(lambda: (engine.after.run(decode), engine.after.lengths.sub_(1)))
    pieces["before forward (bs=1)"] = median_ms(lambda: (engine.before.run(decode), engine.before.lengths.sub_(1)))
    logits = engine.after.run(decode)
    engine.after.lengths.sub_(1)
    pieces["combine + sample"] = median_ms(lambda: engine.sampler.run(decode, logits, logits, next_logits=None))
    result = StepResult([[c.token_ids[0]] * args.decode_steps], [[]])

    def plan_and_apply():
        p = scheduler.next_plan()
        scheduler.apply(p, result)
        del state.samples[0].token_ids[-args.decode_steps:]

    pieces["scheduler plan + apply + detokenize"] = median_ms(plan_and_apply)
    scheduler.cancel(state)

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=1)
    class Echo:
        def step(self, plan):
            return StepResult([[1] * plan.max_steps] * plan.num_rows, [[]] * plan.num_rows)

    echo = Echo.remote()
    steps = args.decode_steps
    multi = StepPlan(num_decode_rows=1, decode_token_ids=[c.token_ids[0]], max_steps=steps)
    round_trip = median_ms(lambda: ray.get(echo.step.remote(multi)), 300)
    ray.shutdown()
    per_call = {"scheduler plan + apply + detokenize", f"Ray actor round trip (one call per {steps} tokens)"}
    pieces[f"Ray actor round trip (one call per {steps} tokens)"] = round_trip / steps
    pieces["scheduler plan + apply + detokenize"] /= steps
    total = sum(pieces.values())
    print(f"pair {args.pair}: per-token pieces of the 1-stream path (median ms; "
          f"{', '.join(sorted(per_call))} divided by --decode-steps {steps})")
    for name, ms in pieces.items():
        print(f"  {name:<56} {ms:7.3f}  ({ms / total:5.1%})")
    print(f"  {'sum':<56} {total:7.3f}")
    print(f"  (one Ray round trip: {round_trip:.3f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
