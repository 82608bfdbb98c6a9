"""Streaming overhead of the OpenAI-compatible HTTP API against gRPC, on the demo pair, in one run.

    python bench/http_vs_grpc.py [--rounds 12] [--concurrency 16] [--max-tokens 128]

Starts `diffamp serve --http-port` in its own process (the clients must not share its GIL), then streams the
same requests (chat prompt, alpha 1, temperature 1, same seeds, exactly --max-tokens tokens each) through
three clients, interleaved round by round so drift in this machine's speed touches all alike. Each client is
the fastest of its kind in Python, so the comparison is of the servers' sides:

* grpc: the generated synchronous stub, one thread per stream (grpc's C core works outside the GIL);
* http: a minimal HTTP/1.1 client reading the server-sent events over asyncio streams, one connection per
  stream (with one Python thread per stream instead, the client's own GIL contention made first tokens
  under load about 15% later than gRPC's, with the server's CPU time the same);
* openai: the `openai` package's AsyncOpenAI streaming client, what most tools (inspect-ai among them)
  use; its own parsing costs client CPU, which on a small machine the server shares.

Two figures per client: one stream at a time (first-token time: request sent to first token received, and
tokens/s of that stream), and --concurrency streams at once (aggregate tokens/s and median first-token
time). Medians over the rounds; the last line is JSON with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc

from diffamp import messages
from diffamp.v1 import diffamp_pb2 as pb
from diffamp.v1 import diffamp_pb2_grpc

PROMPTS = ["What is the capital of France?", "What color is the sky?", "What sound does a dog make?",
           "What is 3 plus 4?", "What is the opposite of hot?"]
ALPHA = 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(max_batch_size: int, torch_threads: int) -> tuple[subprocess.Popen, int, int]:
    grpc_port, http_port = _free_port(), _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "diffamp.cli", "serve", "--port", str(grpc_port), "--http-port",
                             str(http_port), "--max-batch-size", str(max_batch_size), "--max-seq-len", "256",
                             "--ray-num-cpus", "2", "--torch-threads", str(torch_threads)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, grpc_port, http_port
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("diffamp serve did not start") from None
            time.sleep(0.5)


class Grpc:
    """The generated (synchronous) stub, one thread per stream: grpc's C core does the work outside the GIL,
    gRPC's fastest Python client."""

    name = "grpc"

    def __init__(self, port: int, concurrency: int):
        self.stub = diffamp_pb2_grpc.AmplificationServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        self.pool = ThreadPoolExecutor(concurrency)

    async def stream(self, prompt: str, seed: int, max_tokens: int) -> tuple[float, float, int]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._stream, prompt, seed, max_tokens)

    def _stream(self, prompt: str, seed: int, max_tokens: int) -> tuple[float, float, int]:
        """(seconds to the first token, seconds to the end, tokens)."""
        req = pb.GenerateRequest(prompt=messages.prompt(messages=[("user", prompt)]), alpha=ALPHA, n=1, seed=seed,
                                 sampling=messages.sampling(temperature=1.0, max_new_tokens=max_tokens,
                                                            min_new_tokens=max_tokens))
        start, first, tokens = time.perf_counter(), None, 0
        for chunk in self.stub.Generate(req):
            if chunk.token_ids and first is None:
                first = time.perf_counter() - start
            tokens += len(chunk.token_ids)
        return first, time.perf_counter() - start, tokens


def _body(prompt: str, seed: int, max_tokens: int) -> dict:
    return {"model": f"diffamp@alpha={ALPHA:g}", "messages": [{"role": "user", "content": prompt}], "seed": seed,
            "temperature": 1.0, "max_tokens": max_tokens, "min_tokens": max_tokens, "stream": True,
            "return_token_ids": True}


class RawHttp:
    """HTTP/1.1 over asyncio streams, one connection per stream: the least a client can do."""

    name = "http"

    def __init__(self, port: int):
        self.port = port

    async def stream(self, prompt: str, seed: int, max_tokens: int) -> tuple[float, float, int]:
        body = json.dumps(_body(prompt, seed, max_tokens)).encode()
        start, first, tokens = time.perf_counter(), None, 0
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n" % len(body) + body)
            status = await reader.readline()
            assert b" 200 " in status, status
            while line := await reader.readline():
                if line.startswith(b"data: [DONE]"):
                    break
                if line.startswith(b"data: "):
                    for choice in json.loads(line[6:])["choices"]:
                        ids = choice.get("token_ids") or ()
                        if ids and first is None:
                            first = time.perf_counter() - start
                        tokens += len(ids)
        finally:
            writer.close()
        return first, time.perf_counter() - start, tokens


class OpenAIClient:
    name = "openai"

    def __init__(self, port: int):
        self.port = port
        self.client = None

    async def stream(self, prompt: str, seed: int, max_tokens: int) -> tuple[float, float, int]:
        if self.client is None:
            from openai import AsyncOpenAI

            self.client = AsyncOpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="none", max_retries=0,
                                      timeout=120)
        body = _body(prompt, seed, max_tokens)
        extra = {k: body.pop(k) for k in ("min_tokens", "return_token_ids")}
        body.pop("stream")
        start, first, tokens = time.perf_counter(), None, 0
        async for chunk in await self.client.chat.completions.create(**body, stream=True, extra_body=extra):
            for choice in chunk.choices:
                ids = (choice.model_extra or {}).get("token_ids") or ()
                if ids and first is None:
                    first = time.perf_counter() - start
                tokens += len(ids)
        return first, time.perf_counter() - start, tokens


async def one_at_a_time(client, rnd: int, max_tokens: int) -> dict:
    first, total, tokens = await client.stream(PROMPTS[rnd % len(PROMPTS)], 1000 + rnd, max_tokens)
    assert tokens == max_tokens, (client.name, tokens)
    return {"ttft_ms": first * 1000, "tokens_per_s": tokens / total}


async def concurrent(client, rnd: int, concurrency: int, max_tokens: int) -> dict:
    start = time.perf_counter()
    results = await asyncio.gather(*(client.stream(PROMPTS[i % len(PROMPTS)], 100_000 * rnd + i, max_tokens)
                                     for i in range(concurrency)))
    wall = time.perf_counter() - start
    assert all(t == max_tokens for _, _, t in results)
    return {"ttft_ms": statistics.median(f for f, _, _ in results) * 1000,
            "tokens_per_s": sum(t for _, _, t in results) / wall}


async def measure(clients, args) -> tuple[dict, dict]:
    for client in clients:  # warm-up: connections, the workers' first shapes
        await one_at_a_time(client, 0, args.max_tokens)
        await concurrent(client, 0, args.concurrency, args.max_tokens)
    single = {c.name: [] for c in clients}
    many = {c.name: [] for c in clients}
    for rnd in range(1, args.rounds + 1):
        order = clients[rnd % len(clients):] + clients[: rnd % len(clients)]
        for client in order:
            single[client.name].append(await one_at_a_time(client, rnd, args.max_tokens))
        for client in order:
            many[client.name].append(await concurrent(client, rnd, args.concurrency, args.max_tokens))
        print(f"round {rnd}/{args.rounds} done", file=sys.stderr, flush=True)
    return single, many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="the worker's torch threads; 1 keeps a busy shared machine from slowing it tenfold")
    args = parser.parse_args()
    proc, grpc_port, http_port = start_server(max(64, args.concurrency), args.torch_threads)
    try:
        clients = [Grpc(grpc_port, args.concurrency), RawHttp(http_port), OpenAIClient(http_port)]
        single, many = asyncio.run(measure(clients, args))
    finally:
        proc.terminate()
        proc.wait(60)

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "load_average": os.getloadavg(),
              "torch_threads": args.torch_threads, "rounds": args.rounds,
              "max_tokens": args.max_tokens, "concurrency": args.concurrency, "clients": {}}
    print(f"\n{'client':8} | {'1 stream: first token ms':>24} | {'tokens/s':>9} | "
          f"{args.concurrency} streams: {'first token ms':>14} | {'tokens/s':>9}")
    for name in single:
        row = {"single_ttft_ms": med(single[name], "ttft_ms"), "single_tokens_per_s": med(single[name], "tokens_per_s"),
               "concurrent_ttft_ms": med(many[name], "ttft_ms"),
               "concurrent_tokens_per_s": med(many[name], "tokens_per_s")}
        report["clients"][name] = row
        print(f"{name:8} | {row['single_ttft_ms']:24.1f} | {row['single_tokens_per_s']:9.1f} | "
              f"{'':12}{row['concurrent_ttft_ms']:14.1f} | {row['concurrent_tokens_per_s']:9.1f}")
    base = report["clients"]["grpc"]
    for name in ("http", "openai"):
        ratios = {k: report["clients"][name][k] / base[k] for k in base}
        report["clients"][name]["vs_grpc"] = ratios
        print(f"{name} / grpc: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
