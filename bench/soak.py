"""Soak: 64 concurrent streams for 2 minutes with random cancellations and seeds, then a quiet replay.

    python bench/soak.py [--seconds 120] [--streams 64] [--replicas 2 --kill-every 20]

With --kill-every, a model worker (a replica's actor) is SIGKILLed every that many seconds: its samples must
continue on the other replica (or on it once Ray restarted it) without a failed stream or a changed token.

Every completed stream's tokens must equal a replay of the same request once the load is over (16 replays
at a time, so each meets different batch companions than it had under load), every
sample must carry exactly completion_tokens tokens (none lost or duplicated), and the gateway's and
worker's memory must stay flat. Prints the figures and a final JSON line; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent))
from bench import peak_rss_mb, start_server, worker_pid, worker_pids  # noqa: E402,F401
from pairs import demo_pair  # noqa: E402

from diffamp import messages  # noqa: E402
from diffamp.v1 import diffamp_pb2 as pb  # noqa: E402
from diffamp.v1 import diffamp_pb2_grpc  # noqa: E402

PROMPTS = ["What is the capital of France?", "What color is the sky?", "What sound does a dog make?",
           "What is 3 plus 4?", "What is the opposite of hot?"]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def run_request(stub, req, cancel_after: int | None):
    """(samples, cancelled): samples maps index -> token ids; raises on a failed stream."""
    call = stub.Generate(req, timeout=120)
    samples, counts, seen = {}, {}, 0
    for chunk in call:
        samples.setdefault(chunk.index, []).extend(chunk.token_ids)
        seen += 1
        if chunk.finish_reason:
            counts[chunk.index] = chunk.completion_tokens
        if cancel_after is not None and seen >= cancel_after:
            call.cancel()
            return None, True
    for index, tokens in samples.items():
        if len(tokens) != counts.get(index, -1):
            raise AssertionError(f"sample {index}: {len(tokens)} tokens streamed, "
                                 f"completion_tokens {counts.get(index)}")
    return samples, False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--kill-every", type=float, default=0, help="SIGKILL a model worker this often (seconds)")
    args = parser.parse_args()
    server, address = start_server(*demo_pair(), 64, "--replicas", str(args.replicas))
    stub = diffamp_pb2_grpc.AmplificationServiceStub(grpc.insecure_channel(address))
    stats = {"requests": 0, "completed": 0, "cancelled": 0, "failed": 0, "tokens": 0}
    completed, lock = [], threading.Lock()
    try:
        run_request(stub, pb.GenerateRequest(prompt=messages.prompt(PROMPTS[0]), n=8, seed=1), None)  # warm-up
        pids = (server.pid, worker_pid())
        memory_before = [rss_mb(p) for p in pids]
        stop_at = time.monotonic() + args.seconds

        def worker(k):
            rng = random.Random(k)
            while time.monotonic() < stop_at:
                req = pb.GenerateRequest(prompt=messages.prompt(rng.choice(PROMPTS)), n=rng.randint(1, 3),
                                         seed=rng.getrandbits(62), alpha=rng.choice([0.0, 0.5, 1.0]),
                                         sampling=messages.sampling(max_new_tokens=rng.randint(8, 48), temperature=1.0))
                cancel = rng.randint(1, 6) if rng.random() < 0.3 else None
                try:
                    samples, cancelled = run_request(stub, req, cancel)
                    with lock:
                        stats["requests"] += 1
                        stats["cancelled" if cancelled else "completed"] += 1
                        if samples:
                            stats["tokens"] += sum(len(t) for t in samples.values())
                            completed.append((req, samples))
                except (grpc.RpcError, AssertionError) as err:
                    with lock:
                        stats["requests"] += 1
                        stats["failed"] += 1
                    print(f"failed: {err}", file=sys.stderr)

        kills = []

        def killer():
            rng = random.Random(99)
            while time.monotonic() + args.kill_every < stop_at:
                time.sleep(args.kill_every)
                victim = rng.choice(worker_pids())
                os.kill(victim, signal.SIGKILL)
                kills.append(victim)
                print(f"killed model worker {victim}", flush=True)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.streams)]
        if args.kill_every:
            threads.append(threading.Thread(target=killer))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(1)
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        memory_after = [rss_mb(server.pid), rss_mb(worker_pid())]
        print(f"load done: {stats}; replaying {len(completed)} completed requests", flush=True)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(16) as pool:  # replays share batches only with each other
            replays = list(pool.map(lambda item: run_request(stub, item[0], None)[0], completed))
        mismatches = sum(replay != samples for replay, (_, samples) in zip(replays, completed))
    finally:
        server.terminate()
        server.wait(60)
    growth = [a / b - 1 for a, b in zip(memory_after, memory_before)]
    report = {**stats, "replicas": args.replicas, "workers_killed": len(kills), "replayed": len(completed),
              "replay_mismatches": mismatches,
              "live_after": info.live_sequences, "kv_tokens_after": info.kv_tokens_used,
              "gateway_rss_mb": [memory_before[0], memory_after[0]],
              "worker_rss_mb": [memory_before[1], memory_after[1]],
              "memory_growth": growth}
    print(f"{args.replicas} replicas, {len(kills)} workers killed; "
          f"{stats['requests']} requests ({stats['completed']} completed, {stats['cancelled']} cancelled, "
          f"{stats['failed']} failed), {stats['tokens']:,} tokens; replayed {len(completed)}: {mismatches} mismatches; "
          f"live after {info.live_sequences}; gateway {memory_before[0]:.0f} -> {memory_after[0]:.0f} MB, "
          f"worker {memory_before[1]:.0f} -> {memory_after[1]:.0f} MB")
    print(json.dumps(report))
    steady = growth[:1] if kills else growth  # killed workers restart with fresh memory
    ok = stats["failed"] == 0 and mismatches == 0 and info.live_sequences == 0 and max(steady) <= 0.05
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
