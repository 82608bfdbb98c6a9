"""What Prometheus metrics cost decoding: throughput of `diffamp serve` with --metrics-port against without, in
one run.

    python bench/metrics_overhead.py                        # demo pair, 32 streams, 10 rounds per side
    python bench/metrics_overhead.py --concurrency 128 --rounds 6 --scrape-interval 1

Two servers run side by side, one with metrics on (and scraped every --scrape-interval seconds while it is
driven, far more often than a real Prometheus does), one with them off; only one is driven at a time. Rounds
alternate on-off-off-on..., so drift in this machine's speed touches both sides alike. Each round is the
throughput benchmark's round (bench/bench.py): half the streams as n=1 requests, half as one request. Prints
tokens/s of each side, the ratio, the median of the per-pair ratios, and one JSON line.

On a shared machine the rounds' speed can swing by several times, far more than 3%; so the run also measures
the hooks themselves in this process (CPU time per worker call, per chunk sent and per scrape, metrics on
against off) and turns them into a bound: hook CPU per token x tokens/s = the share of one core they take.
`--hooks-only` measures just that.
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
from diffamp_server.calls import Call  # noqa: E402
from diffamp_server.events import SampleEvent  # noqa: E402
from diffamp_server.metrics import NO_METRICS, Metrics  # noqa: E402
from diffamp_server.plan import BatchPlan, BatchResult  # noqa: E402


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


def _cpu_per(fn, count: int) -> float:
    """CPU seconds per call of fn(), best of 5 runs of `count` calls (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(count):
            fn()
        best = min(best, (time.process_time() - start) / count)
    return best


def hook_costs(rows: int = 32, steps: int = 8) -> dict:
    """What metrics add per worker call (rows x steps tokens) and per chunk sent (steps tokens), and per scrape."""
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    plan = BatchPlan(num_decode_rows=rows, decode_token_ids=[1] * rows, budgets=[steps] * rows, max_steps=steps)
    result = BatchResult(token_ids=[[1] * steps for _ in range(rows)], logprobs=[[] for _ in range(rows)])
    event = SampleEvent(0, "some text", [1] * steps)
    sample = SimpleNamespace(owner=SimpleNamespace(request=SimpleNamespace(prompt=SimpleNamespace(longest=20))),
                             output=SimpleNamespace(token_ids=[1] * 40))
    gateway = SimpleNamespace(scheduler=SimpleNamespace(rows={"r0": [sample] * rows}, slots={"r0": 128}, queued=64),
                              healthy={"r0"}, serving=True)
    on = Metrics(gateway, kv_bytes_per_slot=1 << 20, kv_positions_per_slot=256)
    costs = {}
    for name, metrics in (("on", on), ("off", NO_METRICS)):
        call_on = Call("Generate", "x", "peer", metrics)
        costs[f"worker_call_{name}_s"] = _cpu_per(lambda: metrics.worker_call("r0", plan, result, 0.01), 2000)
        costs[f"chunk_{name}_s"] = _cpu_per(lambda: call_on.event(event), 20000)
    costs["scrape_s"] = _cpu_per(lambda: generate_latest(on.registry), 20)
    per_token = ((costs["worker_call_on_s"] - costs["worker_call_off_s"]) / (rows * steps)
                 + (costs["chunk_on_s"] - costs["chunk_off_s"]) / steps)
    costs["per_token_s"] = per_token
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", choices=["demo", "random30m"], default="demo")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=10, help="rounds per side")
    parser.add_argument("--max-batch-size", type=int, default=128)
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--hooks-only", action="store_true", help="only measure the hooks' CPU time")
    args = parser.parse_args()
    hooks = hook_costs()
    print(f"hooks, CPU time: worker call of 32 rows x 8 steps {1e6 * hooks['worker_call_on_s']:.1f} us on, "
          f"{1e6 * hooks['worker_call_off_s']:.1f} us off; chunk of 8 tokens {1e6 * hooks['chunk_on_s']:.2f} us on, "
          f"{1e6 * hooks['chunk_off_s']:.2f} us off; scrape {1e3 * hooks['scrape_s']:.1f} ms; metrics add "
          f"{1e9 * hooks['per_token_s']:.0f} ns of gateway CPU per token", flush=True)
    if args.hooks_only:
        print(json.dumps({"hooks": hooks}))
        return 0
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
               "scrape_bytes": scraper.bytes, "hooks": hooks,
               "hook_share_of_a_core_at_on_rate": hooks["per_token_s"] * on
               + hooks["scrape_s"] / args.scrape_interval}
    print(f"metrics on {on:.1f} tokens/s, off {off:.1f} tokens/s: on/off {on / off:.3f} "
          f"(median of per-pair ratios {summary['median_pair_ratio']:.3f}); {len(scraper.seconds)} scrapes, "
          f"median {summary['scrape_ms_median'] or 0:.1f} ms, {scraper.bytes:,} bytes; the hooks take "
          f"{100 * summary['hook_share_of_a_core_at_on_rate']:.2f}% of one core at {on:.0f} tokens/s with a scrape "
          f"every {args.scrape_interval:g} s")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
