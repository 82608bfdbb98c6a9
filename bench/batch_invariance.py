"""How often a seeded sample changes with what shares its batch.

    python bench/batch_invariance.py [--pair demo|random30m] [--samples 200] [--engine static|eager]

Each sample (seed, index) is generated twice: alone (a batch of one), and in a batch of up to 64 rows churning
with other requests of other lengths. Sampling draws one uniform per (seed, index, position) and inverts that
row's CDF, so the draw depends only on the row's own logits; but the logits themselves come from matmuls and
attention whose reduction order depends on the batch shape, so they differ in the last bits. A token flips
when a uniform lands within that difference of a CDF boundary. Prints the share of samples whose tokens
differ, where they first differ, and the largest logprob difference seen on identical prefixes; one JSON line
at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from pairs import demo_pair, random_pair  # noqa: E402

from diffamp_server import Amplifier  # noqa: E402

PROMPT = "What is the capital of France?"
NOISE = ["What color is the sky?", "Tell me a story about a dog and a cat.", "What is 3 plus 4?", "hi"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", choices=["demo", "random30m"], default="demo")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--engine", default="static")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    after, before = demo_pair() if args.pair == "demo" else random_pair(Path(tempfile.gettempdir()) / "diffamp-bench")
    amp = Amplifier(after, before, device="cpu", engine=args.engine, max_batch_size=64, max_seq_len=256)
    options = dict(alpha=1.0, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens, seed=1234, logprobs=0)
    alone = [amp.generate(PROMPT, n=1, first_sample_index=i, **options)[0] for i in range(args.samples)]
    together = amp.generate_many([PROMPT] + NOISE, n=args.samples, **options)[0]
    differ, first_diff, worst = 0, [], 0.0
    for a, b in zip(alone, together):
        same = 0
        while same < min(len(a.token_ids), len(b.token_ids)) and a.token_ids[same] == b.token_ids[same]:
            same += 1
        if a.token_ids != b.token_ids:
            differ += 1
            first_diff.append(same)
        if same:
            worst = max(worst, float(np.abs(a.logprobs.amplified[:same] - b.logprobs.amplified[:same]).max()))
    tokens = sum(len(c.token_ids) for c in alone)
    print(f"{args.pair}, {args.engine} engine, fp32: {differ} of {args.samples} samples ({differ / args.samples:.1%}) "
          f"differ between alone and a churning batch of 64; {tokens:,} tokens compared; largest amplified-logprob "
          f"difference on identical prefixes {worst:.2e}"
          + (f"; first difference at token {sorted(first_diff)}" if first_diff else ""))
    print(json.dumps({"pair": args.pair, "engine": args.engine, "samples": args.samples, "differ": differ,
                      "tokens": tokens, "first_difference_at": first_diff, "max_logprob_diff": worst}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
