"""What Prometheus metrics cost decoding: throughput of `diffamp serve` with --metrics-port against without, in
one run.

    python bench/metrics_overhead.py                        # demo pair, 32 streams, 10 rounds per side
    python bench/metrics_overhead.py --concurrency 128 --rounds 6 --scrape-interval 1

Two servers run side by side, one with metrics on (and scraped every --scrape-interval seconds while it is
driven, far more often than a real Prometheus does), one with them off; only one is driven at a time. Rounds
alternate on-off-off-on..., so drift in this machine's speed touches both sides alike. Each round is the
throughput benchmark's round (bench/bench.py): half the streams as n=1 requests, half as one request. Prints
tokens/s of each side, the ratio, the median of the per-pair ratios, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent))
from bench import _free_port, _one_round, start_server  # noqa: E402
from pairs import demo_pair, random_pair  # noqa: E402

from diffamp.v1 import diffamp_pb2_grpc  # noqa: E402


class Scraper:
    """GETs /metrics every `interval` seconds while on; records how long each scrape took."""

    def __init__(self, port: int, interval: float):
        self.url, self.interval = f"http://127.0.0.1:{port}/metrics", interval
        self.on = threading.Event()
        self.stop = threading.Event()
        self.seconds: list[float] = []
        self.bytes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            if self.on.wait(0.1):
                start = time.perf_counter()
                body = urllib.request.urlopen(self.url, timeout=10).read()
                self.seconds.append(time.perf_counter() - start)
                self.bytes = len(body)
                self.stop.wait(self.interval)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", choices=["demo", "random30m"], default="demo")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=10, help="rounds per side")
    parser.add_argument("--max-batch-size", type=int, default=128)
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=1.0)
    args = parser.parse_args()
    after, before = demo_pair() if args.pair == "demo" else random_pair(Path("/tmp/diffamp-bench"))
    metrics_port = _free_port()
    servers = {}
    try:
        servers["off"] = start_server(after, before, args.max_batch_size)
        servers["on"] = start_server(after, before, args.max_batch_size, "--metrics-port", str(metrics_port))
        stubs = {side: diffamp_pb2_grpc.AmplificationServiceStub(grpc.insecure_channel(address))
                 for side, (_, address) in servers.items()}
        scraper = Scraper(metrics_port, args.scrape_interval)
        for side, stub in stubs.items():  # warm-up, which also opens the channels
            _one_round(stub, 4, 8, args.alpha, 999)
        order = ["on", "off", "off", "on"] * ((args.rounds + 1) // 2)
        results: dict[str, list[dict]] = {"on": [], "off": []}
        for i, side in enumerate(order[: 2 * args.rounds]):
            if side == "on":
                scraper.on.set()
            r = _one_round(stubs[side], args.concurrency, args.max_new_tokens, args.alpha, 1000 + i)
            scraper.on.clear()
            results[side].append(r)
            print(f"round {i + 1:>2} metrics {side:>3}: {r['tokens'] / r['seconds']:8.1f} tokens/s", flush=True)
        scraper.stop.set()
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(60)

    def rate(rows):
        return sum(r["tokens"] for r in rows) / sum(r["seconds"] for r in rows)

    on, off = rate(results["on"]), rate(results["off"])
    pairs = [a["tokens"] / a["seconds"] / (b["tokens"] / b["seconds"]) for a, b in zip(results["on"], results["off"])]
    summary = {"pair": args.pair, "concurrency": args.concurrency, "max_new_tokens": args.max_new_tokens,
               "rounds_per_side": args.rounds, "scrape_interval_s": args.scrape_interval,
               "tokens_per_s_on": on, "tokens_per_s_off": off, "ratio_on_off": on / off,
               "median_pair_ratio": statistics.median(pairs), "scrapes": len(scraper.seconds),
               "scrape_ms_median": 1000 * statistics.median(scraper.seconds) if scraper.seconds else None,
               "scrape_bytes": scraper.bytes}
    print(f"metrics on {on:.1f} tokens/s, off {off:.1f} tokens/s: on/off {on / off:.3f} "
          f"(median of per-pair ratios {summary['median_pair_ratio']:.3f}); {len(scraper.seconds)} scrapes, "
          f"median {summary['scrape_ms_median'] or 0:.1f} ms, {scraper.bytes:,} bytes")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
