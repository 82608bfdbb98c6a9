"""A LoRA pair served as an adapter on its base against the same pair served as two full models, in one run.

    python bench/lora_pair.py                       # random ~30M Llama base + rank-16 adapter, 1 and 32 streams
    python bench/lora_pair.py --rank 64 --rounds 6 --concurrency 1,32,128

Two `diffamp serve` processes run side by side on the same pair: one loads `--after ADAPTER --before BASE` (one
set of weights, both models in one forward over 2B rows), the other loads the adapter merged into a full after
model next to the base (two models, two forwards). Only one is driven at a time, and rounds alternate
adapter-full-full-adapter..., so drift in this machine's speed touches both alike. Each round is the throughput
benchmark's round (bench/bench.py). Prints tokens/s and ms/token of each side per concurrency with their ratio,
the weights each side loads and its worker's peak RSS, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import grpc
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench import _one_round, peak_rss_mb, start_server, worker_pids  # noqa: E402
from pairs import random_pair  # noqa: E402

from diffamp.v1 import diffamp_pb2 as pb  # noqa: E402
from diffamp.v1 import diffamp_pb2_grpc  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_pair(root: Path, rank: int) -> tuple[str, str, str]:
    """The random 30M pair's base ("before"), a random rank-`rank` adapter on every projection of it, and the
    adapter merged into a full model: (adapter_dir, base_dir, merged_dir)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, base_dir = random_pair(root)
    adapter_dir, merged_dir = root / f"lora-r{rank}-adapter", root / f"lora-r{rank}-merged"
    if not (merged_dir / "model.safetensors").exists():
        torch.manual_seed(11)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                               LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, init_lora_weights=False,
                                          target_modules=TARGETS))
        model.save_pretrained(adapter_dir)
        config_path = adapter_dir / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = base_dir
        config_path.write_text(json.dumps(config, indent=2))
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        for directory in (adapter_dir, merged_dir):
            tokenizer.save_pretrained(directory)
        model.merge_and_unload().save_pretrained(merged_dir)
        for f in Path(base_dir).glob("generation_config.json"):
            (merged_dir / f.name).write_bytes(f.read_bytes())
    return str(adapter_dir), base_dir, str(merged_dir)


def weights_mb(*directories: str) -> float:
    """The weights a worker loads from these directories (their safetensors files)."""
    return sum(f.stat().st_size for d in directories for f in Path(d).glob("*.safetensors")) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per side and concurrency")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--server-args", default="", help="extra `diffamp serve` flags for both servers")
    args = parser.parse_args()
    root = Path(tempfile.gettempdir()) / "diffamp-bench"
    adapter_dir, base_dir, merged_dir = lora_pair(root, args.rank)
    flags = args.server_args.split()

    known = set(worker_pids())
    servers = {}
    for side, after in (("adapter", adapter_dir), ("full", merged_dir)):
        proc, address = start_server(after, base_dir, 64, *flags)
        stub = diffamp_pb2_grpc.AmplificationServiceStub(grpc.insecure_channel(address))
        stub.GetModelInfo(pb.GetModelInfoRequest(), wait_for_ready=True, timeout=300)
        pids = [p for p in worker_pids() if p not in known]
        known |= set(pids)
        servers[side] = {"proc": proc, "stub": stub, "worker_pids": pids}
        print(f"{side}: diffamp serve --after {after} --before {base_dir}; workers {pids}", flush=True)
    try:
        for server in servers.values():
            _one_round(server["stub"], 4, 8, 1.0, 999)  # warm-up
        rows = []
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            measured = {side: [] for side in servers}
            order = ["adapter", "full", "full", "adapter"]
            for i in range(2 * args.rounds):
                side = order[i % 4]
                measured[side].append(_one_round(servers[side]["stub"], concurrency, args.max_new_tokens, 1.0,
                                                 1000 * concurrency + i))
            row = {"concurrency": concurrency}
            for side, rounds in measured.items():
                tokens, seconds = sum(r["tokens"] for r in rounds), sum(r["seconds"] for r in rounds)
                per_token = [ms for r in rounds for ms in r["ms_per_token"]]
                row[side] = {"tokens_per_s": tokens / seconds, "ms_per_token": statistics.mean(per_token),
                             "rounds": len(rounds)}
            row["throughput_ratio"] = row["adapter"]["tokens_per_s"] / row["full"]["tokens_per_s"]
            row["latency_ratio"] = row["adapter"]["ms_per_token"] / row["full"]["ms_per_token"]
            rows.append(row)
            print(f"{concurrency:>3} streams: adapter pair {row['adapter']['tokens_per_s']:8.1f} tokens/s "
                  f"{row['adapter']['ms_per_token']:6.2f} ms/token | "
                  f"two full models {row['full']['tokens_per_s']:8.1f} "
                  f"tokens/s {row['full']['ms_per_token']:6.2f} ms/token | throughput {row['throughput_ratio']:.2f}x, "
                  f"latency {row['latency_ratio']:.2f}x", flush=True)
        loads = {"adapter": (adapter_dir, base_dir), "full": (merged_dir, base_dir)}
        memory = {side: {"worker_peak_rss_mb": sum(peak_rss_mb(p) for p in server["worker_pids"]),
                         "weights_mb": weights_mb(*loads[side])} for side, server in servers.items()}
    finally:
        for server in servers.values():
            server["proc"].terminate()
        for server in servers.values():
            server["proc"].wait(60)
    one_model = weights_mb(base_dir)
    for side, m in memory.items():
        m["weights_vs_one_model"] = m["weights_mb"] / one_model
        print(f"{side}: worker peak RSS {m['worker_peak_rss_mb']:.0f} MB, model weights {m['weights_mb']:.1f} MB "
              f"({m['weights_vs_one_model']:.3f}x one model's {one_model:.1f} MB)")
    print(json.dumps({"rank": args.rank, "max_new_tokens": args.max_new_tokens, "server_args": args.server_args,
                      "rows": rows, "memory": memory}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
