"""Throughput and latency: the one-process reference against diffamp through its gRPC API, in one run.

    python bench/bench.py --pair demo          # the built-in demo pair
    python bench/bench.py --pair random30m     # a random ~30M-parameter Llama pair

Prints aggregate tokens/s, per-stream ms/token and the ratio to the reference for each concurrency, the
peak memory of the server's processes, and one final JSON line with every figure.
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


def worker_pid() -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"PairWorker" in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    raise RuntimeError("no PairWorker process found")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_reference(after_dir, before_dir, streams: int, max_new: int, alpha: float) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(after_dir)
    after = AutoModelForCausalLM.from_pretrained(after_dir, dtype=torch.float32).eval()
    before = AutoModelForCausalLM.from_pretrained(before_dir, dtype=torch.float32).eval()
    shared = len(tok)
    eos = {tok.convert_tokens_to_ids("<|end|>"), tok.eos_token_id}
    g = torch.Generator().manual_seed(0)
    prompts = [tok.apply_chat_template([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                                       add_generation_prompt=True, tokenize=True) for i in range(streams)]
    prompts = [list(p["input_ids"] if hasattr(p, "keys") else p) for p in prompts]
    generate_one(after, before, prompts[0], shared, alpha, 4, 1.0, eos, g)  # warm-up
    tokens, per_token = 0, []
    start = time.perf_counter()
    for p in prompts:
        t0 = time.perf_counter()
        out = generate_one(after, before, p, shared, alpha, max_new, 1.0, eos, g)
        per_token.append((time.perf_counter() - t0) / len(out) * 1000)
        tokens += len(out)
    wall = time.perf_counter() - start
    return {"streams": streams, "tokens": tokens, "seconds": wall, "tokens_per_s": tokens / wall,
            "ms_per_token": sum(per_token) / len(per_token)}


def run_concurrency(address: str, concurrency: int, max_new: int, alpha: float, seed: int) -> dict:
    """Half the streams as separate n=1 requests, the other half as one request with n = concurrency / 2.
    Repeated in rounds (more for few streams) so that every figure rests on at least ~1,000 tokens."""
    rounds = [_one_round(address, concurrency, max_new, alpha, seed + 7919 * r) for r in range(max(1, 64 // concurrency))]
    tokens = sum(r["tokens"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    gaps = [g for r in rounds for g in r["gaps"]]
    return {"concurrency": concurrency, "requests": rounds[0]["requests"], "rounds": len(rounds), "tokens": tokens,
            "seconds": seconds, "tokens_per_s": tokens / seconds, "ms_per_token": sum(gaps) / len(gaps)}


def _one_round(address: str, concurrency: int, max_new: int, alpha: float, seed: int) -> dict:
    stub = diffamp_pb2_grpc.AmplificationServiceStub(grpc.insecure_channel(address))
    groups = [1] * (concurrency - concurrency // 2) + ([concurrency // 2] if concurrency > 1 else [])
    results, lock = [], threading.Lock()

    def one(i, n):
        req = pb.GenerateRequest(prompt=PROMPTS[i % len(PROMPTS)], n=n, alpha=alpha, temperature=1.0, top_p=1.0,
                                 max_new_tokens=max_new, seed=seed + i)
        stamps: dict[int, list[float]] = {}
        for chunk in stub.Generate(req):
            stamps.setdefault(chunk.index, []).append(time.perf_counter())
        with lock:
            results.extend(stamps.values())

    threads = [threading.Thread(target=one, args=(i, n)) for i, n in enumerate(groups)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    gaps = [(s[-1] - s[0]) / (len(s) - 1) * 1000 for s in results if len(s) > 1]
    return {"requests": len(groups), "tokens": sum(len(s) for s in results), "seconds": wall, "gaps": gaps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", choices=["demo", "random30m"], default="demo")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--reference-streams", type=int, default=32)
    parser.add_argument("--concurrency", default="1,8,32,128")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--max-batch-size", type=int, default=128)
    parser.add_argument("--decode-steps", type=int, default=None, help="server's decode steps per worker call")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    root = Path(tempfile.gettempdir()) / "diffamp-bench"
    after, before = demo_pair() if args.pair == "demo" else random_pair(root)
    print(f"pair {args.pair}: {parameters(after):,} parameters per model; {os.cpu_count()} cores; "
          f"torch {torch.__version__}; {platform.processor() or platform.machine()}", flush=True)

    ref = run_reference(after, before, args.reference_streams, args.max_new_tokens, args.alpha)
    print(f"reference (one process, eager, one stream at a time): {ref['tokens_per_s']:.1f} tokens/s, "
          f"{ref['ms_per_token']:.2f} ms/token over {ref['streams']} streams", flush=True)

    flags = ["--decode-steps", str(args.decode_steps)] if args.decode_steps else []
    server, address = start_server(after, before, args.max_batch_size, *flags)
    try:
        run_concurrency(address, 4, 8, args.alpha, 999)  # warm-up
        rows = []
        for c in (int(x) for x in args.concurrency.split(",")):
            r = run_concurrency(address, c, args.max_new_tokens, args.alpha, 1000 * c)
            r["throughput_ratio"] = r["tokens_per_s"] / ref["tokens_per_s"]
            r["latency_ratio"] = r["ms_per_token"] / ref["ms_per_token"]
            rows.append(r)
            print(f"diffamp gRPC, {c:>3} streams ({r['requests']} requests x {r['rounds']} rounds): {r['tokens_per_s']:8.1f} tokens/s "
                  f"({r['throughput_ratio']:.2f}x reference), {r['ms_per_token']:.2f} ms/token per stream "
                  f"({r['latency_ratio']:.2f}x reference)", flush=True)
        info = diffamp_pb2_grpc.AmplificationServiceStub(grpc.insecure_channel(address)).GetModelInfo(
            pb.GetModelInfoRequest())
        memory = {"gateway_peak_rss_mb": peak_rss_mb(server.pid), "worker_peak_rss_mb": peak_rss_mb(worker_pid()),
                  "reference_process_peak_rss_mb": peak_rss_mb(os.getpid()),
                  "kv_cache_mb": info.kv_cache_bytes / 2**20}
    finally:
        server.terminate()
        server.wait(60)
    print(f"peak memory: gateway {memory['gateway_peak_rss_mb']:.0f} MB, worker {memory['worker_peak_rss_mb']:.0f} MB "
          f"(KV caches {memory['kv_cache_mb']:.0f} MB); reference process {memory['reference_process_peak_rss_mb']:.0f} MB")
    print(json.dumps({"pair": args.pair, "max_new_tokens": args.max_new_tokens, "alpha": args.alpha,
                      "decode_steps": args.decode_steps or "default",
                      "reference": ref, "diffamp": rows, "memory": memory}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
