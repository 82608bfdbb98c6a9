"""GPU checks in one call (see gpu_check.sh): an OLMo-2-0425-1B-shaped random pair in bf16, the seed-style
reference against diffamp's engine, at 1 to 256 concurrent streams.

Runs without Ray (the GPU image has none): diffamp is driven through its in-process library API, which
shares the scheduler, slot KV cache, runner and sampler with the Ray workers; the gRPC and Ray overheads
are measured on CPU by bench.py. Prints one JSON line at the end.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import Olmo2Config, Olmo2ForCausalLM

sys.path.insert(0, str(Path(__file__).parent))
from reference import generate_one  # noqa: E402

from diffamp_server import Amplifier  # noqa: E402
from diffamp_server.config import DEMO_PAIR_DIR  # noqa: E402


def build_pair(root: Path) -> tuple[str, str]:
    dirs = []
    for seed, name in ((0, "after"), (1, "before")):
        directory = root / name
        torch.manual_seed(seed)
        config = Olmo2Config(vocab_size=100352, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                             num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=4096)
        with torch.device("cuda"):
            model = Olmo2ForCausalLM(config).to(torch.bfloat16)
        model.save_pretrained(directory)
        for f in (DEMO_PAIR_DIR / name).iterdir():
            if f.name.startswith(("tokenizer", "chat_template", "generation_config")):
                (directory / f.name).write_bytes(f.read_bytes())
        dirs.append(str(directory))
        del model
    return dirs[0], dirs[1]


def reference(after_dir, before_dir, tokens: int) -> dict:
    from transformers import AutoModelForCausalLM

    after = AutoModelForCausalLM.from_pretrained(after_dir, dtype=torch.bfloat16).cuda().eval()
    before = AutoModelForCausalLM.from_pretrained(before_dir, dtype=torch.bfloat16).cuda().eval()
    g = torch.Generator(device="cuda").manual_seed(0)
    prompt = list(range(5, 25))
    generate_one(after, before, prompt, 640, 1.0, 8, 1.0, set(), g)
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = generate_one(after, before, prompt, 640, 1.0, tokens, 1.0, set(), g)
    torch.cuda.synchronize()
    ms = (time.perf_counter() - start) / len(out) * 1000
    del after, before
    torch.cuda.empty_cache()
    return {"ms_per_step": ms, "tokens_per_s": 1000 / ms}


def diffamp(after_dir, before_dir, streams: int, tokens: int) -> dict:
    amp = Amplifier(after_dir, before_dir, device="cuda", dtype="bfloat16", max_batch_size=max(streams, 1),
                    max_seq_len=128)
    prompt_ids = list(range(5, 25))
    amp.generate(prompt_token_ids=prompt_ids, n=streams, max_new_tokens=4, temperature=1.0, seed=0)
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = amp.generate(prompt_token_ids=prompt_ids, n=streams, max_new_tokens=tokens, min_new_tokens=tokens,
                       temperature=1.0, seed=1)
    torch.cuda.synchronize()
    wall = time.perf_counter() - start
    generated = sum(len(c.token_ids) for c in out)
    steps = max(len(c.token_ids) for c in out)
    result = {"streams": streams, "tokens": generated, "tokens_per_s": generated / wall,
              "ms_per_step": wall / steps * 1000, "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30}
    del amp
    torch.cuda.empty_cache()
    return result


def main() -> int:
    tokens = 64
    root = Path(tempfile.mkdtemp(prefix="diffamp-gpu-"))
    after, before = build_pair(root)
    ref = reference(after, before, tokens)
    print(f"reference bs=1: {ref['ms_per_step']:.2f} ms/step ({ref['tokens_per_s']:.1f} tokens/s)", flush=True)
    rows = []
    for streams in (1, 8, 32, 128, 256):
        r = diffamp(after, before, streams, tokens)
        r["throughput_ratio"] = r["tokens_per_s"] / ref["tokens_per_s"]
        rows.append(r)
        print(f"diffamp engine, {streams:>3} streams: {r['ms_per_step']:.2f} ms/step, {r['tokens_per_s']:,.0f} tokens/s "
              f"({r['throughput_ratio']:.1f}x reference), peak {r['peak_gpu_gb']:.1f} GB", flush=True)
    print(json.dumps({"device": torch.cuda.get_device_name(), "reference": ref, "diffamp": rows,
                      "targets": {"one_stream_ms_per_step": 8.0, "streams_256_tokens_per_s": 20000}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
