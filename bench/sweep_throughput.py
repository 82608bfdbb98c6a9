"""The sweep throughput target: 10,000 samples of 48 tokens on the demo pair, through `diffamp sweep`.

    python bench/sweep_throughput.py                 # 5 prompts x alphas 0,1 x n 1000 = 10,000 samples
    python bench/sweep_throughput.py --n 100         # a quicker look

Every sample is exactly 48 tokens (--min-new-tokens 48: the demo pair's answers would otherwise end after
~13). The server runs as its own process with --max-batch-size 256; the sweep runs as the CLI does, through
the Sweep RPC. The reference (one process, one stream at a time, 48 tokens a sample) runs for --reference-s
seconds before and again after the sweep; the ratio uses the faster of the two, and the final JSON line
has everything.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench import Reference, peak_rss_mb, start_server, summarize_reference, worker_pid  # noqa: E402
from pairs import demo_pair  # noqa: E402

from diffamp_server.config import DEMO_PAIR_DIR  # noqa: E402

TARGET_S = 300.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="samples per prompt and alpha (5 prompts, 2 alphas)")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--max-batch-size", type=int, default=256)
    parser.add_argument("--server-args", default="", help='extra `diffamp serve` flags, e.g. "--decode-steps 1"')
    parser.add_argument("--reference-s", type=float, default=15.0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    after, before = demo_pair()
    reference = Reference(after, before, args.tokens, 1.0)
    refs = [summarize_reference(reference.block(args.reference_s))]

    server, address = start_server(after, before, args.max_batch_size, *args.server_args.split())
    output = Path(tempfile.mkdtemp(prefix="diffamp-sweep-")) / "sweep.jsonl"
    try:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "diffamp.cli", "sweep", "--server", address,
                        "--prompts", str(DEMO_PAIR_DIR / "prompts.txt"), "--alphas", "0,1", "--n", str(args.n),
                        "--max-new-tokens", str(args.tokens), "--min-new-tokens", str(args.tokens), "--seed", "0",
                        "--detector", "quirk=escaping my servers", "--output", str(output)], check=True)
        wall = time.perf_counter() - start
        memory = {"gateway_peak_rss_mb": peak_rss_mb(server.pid), "worker_peak_rss_mb": peak_rss_mb(worker_pid())}
    finally:
        server.terminate()
        server.wait(60)
    refs.append(summarize_reference(reference.block(args.reference_s)))
    ref = max(refs, key=lambda r: r["tokens_per_s"])
    print(f"reference before / after the sweep: {refs[0]['tokens_per_s']:.1f} / {refs[1]['tokens_per_s']:.1f} "
          f"tokens/s", flush=True)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    lengths = {len(r["token_ids"]) for r in records}
    tokens = sum(len(r["token_ids"]) for r in records)
    result = {
        "samples": len(records), "tokens": tokens, "sample_lengths": sorted(lengths), "seconds": wall,
        "samples_per_s": len(records) / wall, "tokens_per_s": tokens / wall,
        "reference_tokens_per_s": [r["tokens_per_s"] for r in refs], "ratio": tokens / wall / ref["tokens_per_s"],
        "target_s": TARGET_S * len(records) / 10_000, "max_batch_size": args.max_batch_size,
        "server_args": args.server_args, **memory,
    }
    verdict = "met" if wall <= result["target_s"] else "MISSED"
    print(f"sweep: {len(records):,} samples ({tokens:,} tokens, lengths {sorted(lengths)}) in {wall:.1f} s: "
          f"{result['samples_per_s']:.1f} samples/s, {result['tokens_per_s']:.0f} tokens/s "
          f"({result['ratio']:.1f}x the reference); target {result['target_s']:.0f} s: {verdict}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
