"""How much one client's load costs another, through `diffamp serve` on the demo pair with default settings.

    python bench/isolation.py

1. Fairness: a 32-token request (min_new_tokens 32, so always 32 tokens) on an idle server, then while two
   n = 8192 requests of 200 tokens run. Prints the median and worst of 5 tries each and the ratio.
2. Event-loop freezes: a health check every 20 ms from another process while the worst requests the limits
   allow arrive (300,000 one-character messages; a 1,000,000-sample sweep; a 60,000-prompt sweep; 24 oversized
   prompts at once). Prints the worst and median health latency.

Prints one JSON line at the end with every figure.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent))
from bench import start_server  # noqa: E402
from pairs import demo_pair  # noqa: E402

from diffamp import messages  # noqa: E402
from diffamp.v1 import diffamp_pb2 as pb  # noqa: E402
from diffamp.v1 import diffamp_pb2_grpc  # noqa: E402

TRIES = 5
PROBE = str(Path(__file__).parent / "health_probe.py")


def _generate(text, **sampling) -> pb.GenerateRequest:
    return pb.GenerateRequest(prompt=messages.prompt(text), sampling=messages.sampling(**sampling))


def small_request_seconds(stub) -> float:
    request = _generate("What is the capital of France?", max_new_tokens=32, min_new_tokens=32)
    started = time.perf_counter()
    for _ in stub.Generate(request, timeout=300):
        pass
    return time.perf_counter() - started


def _drain(call) -> None:
    try:
        for _ in call:
            pass
    except grpc.RpcError:
        pass


def fairness(stub) -> dict:
    idle = [small_request_seconds(stub) for _ in range(TRIES)]
    bigs = []
    for i in range(2):
        request = _generate(f"Tell me a long story, number {i}.", max_new_tokens=200, min_new_tokens=200)
        request.n, request.seed = 8192, i
        call = stub.Generate(request)
        bigs.append(call)
        threading.Thread(target=_drain, args=(call,), daemon=True).start()  # their client reads, as it should
    time.sleep(3)
    busy = [small_request_seconds(stub) for _ in range(TRIES)]
    for call in bigs:
        call.cancel()
    return {"idle_median_s": statistics.median(idle), "idle_max_s": max(idle),
            "busy_median_s": statistics.median(busy), "busy_max_s": max(busy),
            "ratio_median": statistics.median(busy) / statistics.median(idle),
            "ratio_worst": max(busy) / statistics.median(idle)}


def _sweep(prompts, n) -> pb.SweepRequest:
    return pb.SweepRequest(prompts=[pb.SweepPrompt(id=f"p{i}", prompt=messages.prompt(p))
                                    for i, p in enumerate(prompts)],
                           alphas=[1.0], n=n, sampling=messages.sampling(max_new_tokens=4))


def _run_for(call, seconds):
    threading.Timer(seconds, call.cancel).start()
    try:
        for _ in call:
            pass
    except grpc.RpcError:
        pass


def health_latency(address, stub) -> dict:
    worst_inputs = [
        pb.GenerateRequest(prompt=messages.prompt("", messages=[("user", "x")] * 300_000)),
        _sweep(["What is the capital of France?"], 1_000_000),
        _sweep([f"What is {i} plus {i}?" for i in range(60_000)], 1),
    ]
    probe = subprocess.Popen([sys.executable, PROBE, address], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    assert probe.stdout.readline().strip() == "ready"
    try:
        list(stub.Generate(worst_inputs[0]))
    except grpc.RpcError:
        pass
    _run_for(stub.Sweep(worst_inputs[1]), 3.0)
    _run_for(stub.Sweep(worst_inputs[2]), 5.0)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: _run_for(stub.Generate(_generate("x" * 100_000)), 5.0), range(24)))
    out, _ = probe.communicate("", timeout=30)
    latencies = [float(x) for x in out.split()]
    return {"checks": len(latencies), "worst_ms": max(latencies) * 1000,
            "median_ms": statistics.median(latencies) * 1000}


def main() -> int:
    server, address = start_server(*demo_pair(), 64)
    try:
        stub = diffamp_pb2_grpc.AmplificationServiceStub(grpc.insecure_channel(address))
        small_request_seconds(stub)  # warm-up
        fair = fairness(stub)
        print(f"fairness: a 32-token request takes {fair['idle_median_s']:.2f} s idle (median of {TRIES}), "
              f"{fair['busy_median_s']:.2f} s beside two n=8192 requests (worst {fair['busy_max_s']:.2f} s): "
              f"{fair['ratio_median']:.2f}x (worst {fair['ratio_worst']:.2f}x)", flush=True)
        time.sleep(3)
        health = health_latency(address, stub)
        print(f"health: {health['checks']} checks while the worst requests arrived: worst {health['worst_ms']:.0f} ms, "
              f"median {health['median_ms']:.1f} ms", flush=True)
    finally:
        server.terminate()
        server.wait(60)
    print(json.dumps({"fairness": fair, "health": health}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
