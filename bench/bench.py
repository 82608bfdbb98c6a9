"""Throughput and latency: the one-process reference against diffamp through its gRPC API, in one run.

    python bench/bench.py --pair demo          # the built-in demo pair
    python bench/bench.py --pair random30m     # a random ~30M-parameter Llama pair

Prints aggregate tokens/s, per-stream ms/token and the ratio to the reference for each concurrency, the
peak memory of the server's processes, and one final JSON line with every figure. The reference runs in
this process, interleaved with diffamp's rounds (as long as each round took), so drift in this machine's
speed touches both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import torch

sys.path.insert(0, str(Path(__file__).parent))
from pairs import demo_pair, parameters, random_pair  # noqa: E402
from reference import generate_one  # noqa: E402

from diffamp import messages  # noqa: E402
from diffamp.v1 import diffamp_pb2 as pb  # noqa: E402
from diffamp.v1 import diffamp_pb2_grpc  # noqa: E402

PROMPTS = ["What is the capital of France?", "What color is the sky?", "What sound does a dog make?",
           "What is 3 plus 4?", "What is the opposite of hot?"]


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_server(after: str, before: str, max_batch_size: int, *flags: str):
    """`diffamp serve` in its own process, as deployed: the benchmark's client threads must not share its GIL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "diffamp.cli", "serve", "--after", after, "--before", before,
                             "--port", str(port), "--max-batch-size", str(max_batch_size), "--max-seq-len", "256",
                             *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    grpc.channel_ready_future(grpc.insecure_channel(address)).result(timeout=300)
    return proc, address


def worker_pids() -> list[int]:
    """Every model worker (Ray actor) process on this machine."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"PairWorker" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def worker_pid() -> int:
    pids = worker_pids()
    if not pids:
        raise RuntimeError("no PairWorker process found")
    return pids[0]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Reference:
    """The seed's approach (reference.py) on one pair, loaded once, run a sample at a time."""

    def __init__(self, after_dir: str, before_dir: str, max_new: int, alpha: float):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(after_dir)
        self.after = AutoModelForCausalLM.from_pretrained(after_dir, dtype=torch.float32).eval()
        self.before = AutoModelForCausalLM.from_pretrained(before_dir, dtype=torch.float32).eval()
        self.shared = len(tok)
        self.eos = {tok.convert_tokens_to_ids("<|end|>"), tok.eos_token_id}
        self.generator = torch.Generator().manual_seed(0)
        prompts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                           tokenize=True) for p in PROMPTS]
        self.prompts = [list(p["input_ids"] if hasattr(p, "keys") else p) for p in prompts]
        self.max_new, self.alpha, self.count = max_new, alpha, 0
        self.sample(4)  # warm-up

    def sample(self, max_new: int | None = None) -> tuple[int, float]:
        """One sample: (tokens, seconds)."""
        prompt = self.prompts[self.count % len(self.prompts)]
        self.count += 1
        start = time.perf_counter()
        out = generate_one(self.after, self.before, prompt, self.shared, self.alpha, max_new or self.max_new, 1.0,
                           self.eos, self.generator)
        return len(out), time.perf_counter() - start

    def block(self, seconds: float) -> list[tuple[int, float]]:
        """Samples until about `seconds` have passed (at least one)."""
        samples = [self.sample()]
        while sum(t for _, t in samples) < seconds:
            samples.append(self.sample())
        return samples


def summarize_reference(samples: list[tuple[int, float]]) -> dict:
    tokens, seconds = sum(n for n, _ in samples), sum(t for _, t in samples)
    return {"samples": len(samples), "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "ms_per_token": sum(t / n * 1000 for n, t in samples) / len(samples)}


def run_concurrency(stub, reference: Reference | None, concurrency: int, max_new: int, alpha: float, seed: int,
                    min_tokens: int = 2000) -> dict:
    """Half the streams as separate n=1 requests, the other half as one request with n = concurrency / 2.
    Repeated in rounds until the figure rests on at least min_tokens tokens (and two rounds). After each
    round the reference runs for as long as the round took, so both see the same machine: on this shared
    2-core machine speed drifts by tens of percent within minutes."""
    rounds, ref_samples = [], []
    while len(rounds) < 2 or sum(r["tokens"] for r in rounds) < min_tokens:
        rounds.append(_one_round(stub, concurrency, max_new, alpha, seed + 7919 * len(rounds)))
        if reference:
            ref_samples += reference.block(rounds[-1]["seconds"])
    tokens = sum(r["tokens"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    per_token = [ms for r in rounds for ms in r["ms_per_token"]]
    row = {"concurrency": concurrency, "requests": rounds[0]["requests"], "rounds": len(rounds), "tokens": tokens,
           "seconds": seconds, "tokens_per_s": tokens / seconds, "ms_per_token": sum(per_token) / len(per_token)}
    if reference:
        ref = summarize_reference(ref_samples)
        row |= {"reference": ref, "throughput_ratio": row["tokens_per_s"] / ref["tokens_per_s"],
                "latency_ratio": row["ms_per_token"] / ref["ms_per_token"]}
    return row


def _one_round(stub, concurrency: int, max_new: int, alpha: float, seed: int) -> dict:
    """Per sample, ms/token = time from sending its request to its last token / its tokens, prefill included,
    as the reference measures it."""
    groups = [1] * (concurrency - concurrency // 2) + ([concurrency // 2] if concurrency > 1 else [])
    results, lock = [], threading.Lock()

    def one(i, n):
        req = pb.GenerateRequest(prompt=messages.prompt(PROMPTS[i % len(PROMPTS)]), n=n, alpha=alpha, seed=seed + i,
                                 sampling=messages.sampling(temperature=1.0, top_p=1.0, max_new_tokens=max_new))
        sent = time.perf_counter()
        tokens: dict[int, int] = {}
        for chunk in stub.Generate(req):
            tokens[chunk.index] = tokens.get(chunk.index, 0) + len(chunk.token_ids)
            if chunk.finish_reason:
                with lock:
                    results.append((tokens[chunk.index], time.perf_counter() - sent))

    threads = [threading.Thread(target=one, args=(i, n)) for i, n in enumerate(groups)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"requests": len(groups), "tokens": sum(n for n, _ in results), "seconds": wall,
            "ms_per_token": [seconds / n * 1000 for n, seconds in results]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", choices=["demo", "random30m"], default="demo")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--concurrency", default="1,8,32,128")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--max-batch-size", type=int, default=128)
    parser.add_argument("--server-args", default="", help='extra `diffamp serve` flags, e.g. "--decode-steps 1"')
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    root = Path(tempfile.gettempdir()) / "diffamp-bench"
    after, before = demo_pair() if args.pair == "demo" else random_pair(root)
    print(f"pair {args.pair}: {parameters(after):,} parameters per model; {os.cpu_count()} cores; "
          f"torch {torch.__version__}; {platform.processor() or platform.machine()}", flush=True)

    reference = Reference(after, before, args.max_new_tokens, args.alpha)
    started = time.perf_counter()
    server, address = start_server(after, before, args.max_batch_size, *args.server_args.split())
    start_s = time.perf_counter() - started
    print(f"server up in {start_s:.1f} s (diffamp serve {args.server_args})", flush=True)
    try:
        stub = diffamp_pb2_grpc.AmplificationServiceStub(grpc.insecure_channel(address))
        run_concurrency(stub, None, 4, 8, args.alpha, 999, min_tokens=0)  # warm-up, which also opens the channel
        rows = []
        for c in (int(x) for x in args.concurrency.split(",")):
            r = run_concurrency(stub, reference, c, args.max_new_tokens, args.alpha, 1000 * c)
            rows.append(r)
            print(f"{c:>3} streams ({r['requests']} requests x {r['rounds']} rounds): diffamp {r['tokens_per_s']:8.1f} "
                  f"tokens/s, {r['ms_per_token']:6.2f} ms/token per stream | reference alongside "
                  f"{r['reference']['tokens_per_s']:6.1f} tokens/s, {r['reference']['ms_per_token']:6.2f} ms/token | "
                  f"throughput {r['throughput_ratio']:.2f}x, latency {r['latency_ratio']:.2f}x", flush=True)
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        memory = {"gateway_peak_rss_mb": peak_rss_mb(server.pid), "worker_peak_rss_mb": peak_rss_mb(worker_pid()),
                  "kv_cache_mb": info.kv_cache_bytes / 2**20,
                  "reference_process_peak_rss_mb": peak_rss_mb(os.getpid())}
    finally:
        server.terminate()
        server.wait(60)
    print(f"peak memory: gateway {memory['gateway_peak_rss_mb']:.0f} MB, worker {memory['worker_peak_rss_mb']:.0f} MB "
          f"(KV caches {memory['kv_cache_mb']:.0f} MB); "
          f"reference process {memory['reference_process_peak_rss_mb']:.0f} MB")
    print(json.dumps({"pair": args.pair, "max_new_tokens": args.max_new_tokens, "alpha": args.alpha,
                      "server_args": args.server_args, "server_start_s": start_s,
                      "diffamp": rows, "memory": memory}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
