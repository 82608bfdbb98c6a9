"""Every GPU check of the fast engine in one run (see gpu_check.sh), with the targets it asserts.

    python3 bench/gpu_check.py                       # one GPU: an OLMo-2-0425-1B-shaped random bf16 pair
    python3 bench/gpu_check.py --device cpu --tiny   # the same steps on a tiny pair on CPU (no targets)

Steps, each printed as it finishes, then one JSON line (also written to $OUT/gpu_check.json):
1. Versions, and whether this image's protobuf and grpcio run the generated stubs.
2. A random pair with the real vocabulary size (100,352 ids, all shared) and a word-level tokenizer of that size.
3. bf16 against fp32: the largest difference of the engine's amplified logprobs (bf16 weights, fp32 logits)
   from an fp32 reference (HF forwards in fp32 and the formula), over 32 sampled tokens at alpha 1.
4. The reference: the seed's loop (reference.py) at one stream, ms per step.
5. The in-process engine (static, CUDA graphs): start-up and capture time, then 1..256 streams of 32-token
   prompts and 128 new tokens: ms per step, tokens/s and peak memory (reset per row); and whether sample 0 of a
   seed draws the same tokens alone as among 32 rows (batch invariance).
   With --compile, also the engine with torch.compile under its graphs at 1, 32 and 256 streams.
6. The real service: `diffamp serve` with Ray actors and gRPC (one server, --wide-seq-len), 1 and 256 streams,
   the same workload.
7. A LoRA pair: the before model with a random rank-16 adapter (peft) on every projection, served as an adapter
   (one set of weights, one forward over 2B rows) against the same pair as two full models (the adapter merged),
   in-process at 1 and 32 streams: ms per step, tokens/s and peak memory of each (reported, no target).
Each step's result (or its error: the next step still runs) is saved to $OUT/gpu_check.json as it finishes.
Runs on record: bench/results/ (BENCHMARKS.md).
Targets (GPU only; exit 1 when one is missed): 1 stream <= 5 ms/step; 256 streams >= 30,000 tokens/s; the
service within 15% of the in-process engine on both.

KV memory: a slot holds max_seq_len positions (128 KiB per position per model for this shape), so 256 slots
of 2,048 positions would need 128 GiB for the pair. Rows 1..128 run at --max-seq-len (2048); the 256-stream row
runs at --wide-seq-len (256, enough for 160 positions) so 256 slots fit, and says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from reference import generate_one  # noqa: E402

SHAPES = {
    "olmo1b": dict(vocab_size=100352, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                   num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=4096),
    "tiny": dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=512),
}
PROMPT_TOKENS, NEW_TOKENS = 32, 128
TARGETS = {"one_stream_ms_per_step": 5.0, "streams_256_tokens_per_s": 30_000, "service_within": 0.15}


def log(msg: str) -> None:
    print(msg, flush=True)


def versions() -> dict:
    import grpc
    import google.protobuf
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__, "grpcio": grpc.__version__,
           "protobuf": google.protobuf.__version__}
    try:
        from diffamp.v1 import diffamp_pb2  # noqa: F401 - the generated stubs check the runtime themselves

        out["stubs"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, and the service step is skipped
        out["stubs"] = f"{type(exc).__name__}: {exc}"
    return out


def build_pair(root: Path, shape: dict, device: str) -> tuple[str, str]:
    """Two random Olmo2 models (seeds 0 and 1) and a word-level tokenizer with one token per id."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GenerationConfig, Olmo2Config, Olmo2ForCausalLM, PreTrainedTokenizerFast

    vocab = shape["vocab_size"]
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=f"t{vocab - 1}", unk_token="t0")
    dirs = []
    for seed, name in ((0, "after"), (1, "before")):
        directory = root / name
        torch.manual_seed(seed)
        with torch.device(device):
            config = Olmo2Config(**shape, eos_token_id=vocab - 1, pad_token_id=0, bos_token_id=None)
            model = Olmo2ForCausalLM(config).to(torch.bfloat16 if device == "cuda" else torch.float32)
        model.save_pretrained(directory)
        fast.save_pretrained(directory)
        GenerationConfig(eos_token_id=vocab - 1).save_pretrained(directory)
        dirs.append(str(directory))
        del model
    return dirs[0], dirs[1]


def prompt_ids(i: int, vocab: int) -> list[int]:
    return [(i * 7919 + k * 104729) % (vocab - 2) + 1 for k in range(PROMPT_TOKENS)]


def bf16_error(after: str, before: str, device: str, dtype: str) -> dict:
    """The engine's amplified logprobs (its dtype, fp32 logits) against fp32 HF forwards and the formula."""
    from transformers import AutoModelForCausalLM

    from diffamp_server import Amplifier

    amp = Amplifier(after, before, device=device, dtype=dtype, max_batch_size=4, max_seq_len=256)
    vocab = amp.tokenizers.shared.size
    prompt = prompt_ids(0, vocab)
    [c] = amp.generate(prompt_token_ids=prompt, alpha=1.0, temperature=1.0, top_p=1.0, max_new_tokens=32,
                       min_new_tokens=32, seed=5, logprobs=0)
    del amp
    ref = [AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).to(device).eval() for d in (after, before)]
    with torch.no_grad():
        ids = torch.tensor([prompt + c.token_ids], device=device)
        a, b = (m(ids).logits[0, len(prompt) - 1:-1, :vocab].double() for m in ref)
        amplified = (a + (a - b)).log_softmax(-1)
        want = amplified.gather(-1, ids[0, len(prompt):].unsqueeze(-1)).squeeze(-1).cpu()
    del ref
    if device == "cuda":
        torch.cuda.empty_cache()
    err = (torch.tensor(c.logprobs.amplified, dtype=torch.float64) - want).abs()
    return {"dtype": dtype, "tokens": len(c.token_ids), "max_abs_error": float(err.max()),
            "mean_abs_error": float(err.mean())}


def reference_ms(after: str, before: str, device: str, dtype: torch.dtype) -> float:
    from transformers import AutoModelForCausalLM

    models = [AutoModelForCausalLM.from_pretrained(d, dtype=dtype).to(device).eval() for d in (after, before)]
    vocab = models[0].config.vocab_size
    g = torch.Generator(device=device).manual_seed(0)
    generate_one(*models, prompt_ids(1, vocab), vocab, 1.0, 8, 1.0, set(), g)
    sync(device)
    start = time.perf_counter()
    out = generate_one(*models, prompt_ids(1, vocab), vocab, 1.0, NEW_TOKENS, 1.0, set(), g)
    sync(device)
    del models
    return (time.perf_counter() - start) / len(out) * 1000


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def engine_rows(after: str, before: str, device: str, dtype: str, streams: list[int], max_seq_len: int,
                invariance: bool = False, compile: bool = False) -> dict:
    from diffamp_server import Amplifier

    started = time.perf_counter()
    amp = Amplifier(after, before, device=device, dtype=dtype, max_batch_size=max(streams), max_seq_len=max_seq_len,
                    compile=compile)
    start_s = time.perf_counter() - started
    graphs = amp.engine.graphs
    out = {"start_s": start_s, "compile_s": amp.engine.compile_s, "capture_s": graphs.capture_s if graphs else None,
           "graphs": len(graphs.graphs) if graphs else 0, "engine": amp.engine.engine, "rows": []}
    vocab = amp.tokenizers.shared.size
    amp.generate(prompt_token_ids=prompt_ids(2, vocab), n=max(streams), max_new_tokens=8, min_new_tokens=8, seed=0)
    for n in streams:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        row = timed_row(amp, n, vocab, device) | {
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
            "max_seq_len": max_seq_len}
        out["rows"].append(row)
        log(f"  engine, {n:>3} streams (max_seq_len {max_seq_len}): {row['ms_per_step']:.2f} ms/step, "
            f"{row['tokens_per_s']:,.0f} tokens/s" + (f", peak {row['peak_gib']:.1f} GiB" if row["peak_gib"] else ""))
    if invariance:
        out["batch_invariance"] = batch_invariance(amp, vocab)
    del amp
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def timed_row(amp, n: int, vocab: int, device: str) -> dict:
    """n streams of one 32-token prompt, NEW_TOKENS each: tokens/s and ms per step, prefill included."""
    sync(device)
    start = time.perf_counter()
    done = amp.generate(prompt_token_ids=prompt_ids(3 + n, vocab), n=n, max_new_tokens=NEW_TOKENS,
                        min_new_tokens=NEW_TOKENS, temperature=1.0, top_p=1.0, seed=n)
    sync(device)
    wall = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for c in done)
    return {"streams": n, "tokens": tokens, "tokens_per_s": tokens / wall, "ms_per_step": wall / NEW_TOKENS * 1000}


def batch_invariance(amp, vocab: int) -> dict:
    """Sample 0 of a seed alone, and again as one of 32 rows: the same tokens and logprobs if the step is batch
    invariant (on GPU, kernels chosen by batch size may differ in the last bits)."""
    kwargs = dict(prompt_token_ids=prompt_ids(9, vocab), max_new_tokens=64, min_new_tokens=64, temperature=1.0,
                  top_p=1.0, seed=11, logprobs=0)
    [alone] = amp.generate(n=1, **kwargs)
    crowd = amp.generate(n=32, **kwargs)[0]
    same = next((i for i, (a, b) in enumerate(zip(alone.token_ids, crowd.token_ids)) if a != b), None)
    common = len(alone.token_ids) if same is None else same
    diff = max((abs(a - b) for a, b in zip(alone.logprobs.amplified[:common], crowd.logprobs.amplified[:common])),
               default=0.0)
    result = {"tokens": len(alone.token_ids), "first_different_token": same, "max_logprob_diff_before_it": diff}
    log(f"  batch invariance (1 row vs 32 rows): first different token {same}, max |logprob diff| {diff:.2e}")
    return result


def service_rows(after: str, before: str, device: str, dtype: str, streams: list[int], max_seq_len: int) -> dict:
    """`diffamp serve` in its own process (Ray actors, gRPC), the same workload through the API."""
    import grpc

    from diffamp.v1 import diffamp_pb2 as pb
    from diffamp.v1 import diffamp_pb2_grpc

    port = 50000 + os.getpid() % 10000
    log_path = Path(os.environ.get("OUT") or tempfile.gettempdir(), "service.log")
    started = time.perf_counter()
    with open(log_path, "w") as service_log:
        proc = subprocess.Popen([sys.executable, "-m", "diffamp.cli", "serve", "--after", after, "--before", before,
                                 "--device", device, "--dtype", dtype, "--port", str(port), "--max-batch-size",
                                 str(max(streams)), "--max-seq-len", str(max_seq_len), "--max-n", str(max(streams))],
                                stdout=service_log, stderr=subprocess.STDOUT)
    try:
        address = f"127.0.0.1:{port}"
        channel = grpc.insecure_channel(address)
        while True:
            try:
                grpc.channel_ready_future(channel).result(timeout=5)
                break
            except grpc.FutureTimeoutError:
                if proc.poll() is not None or time.perf_counter() - started > 300:
                    raise RuntimeError(f"diffamp serve did not start (exit {proc.poll()}): "
                                       + log_path.read_text()[-3000:])
        out = {"start_s": time.perf_counter() - started, "rows": []}
        stub = diffamp_pb2_grpc.AmplificationServiceStub(channel)
        vocab = SHAPE["vocab_size"]

        def run(n, seed, tokens):
            req = pb.GenerateRequest(prompt=pb.Prompt(token_ids=pb.TokenIds(ids=prompt_ids(seed, vocab))), n=n,
                                     seed=seed, sampling=pb.SamplingOptions(temperature=1.0, top_p=1.0,
                                                                             max_new_tokens=tokens,
                                                                             min_new_tokens=tokens))
            return sum(len(chunk.token_ids) for chunk in stub.Generate(req, timeout=600))

        run(max(streams), 2, 8)
        for n in streams:
            start = time.perf_counter()
            tokens = run(n, 3 + n, NEW_TOKENS)
            wall = time.perf_counter() - start
            row = {"streams": n, "tokens": tokens, "tokens_per_s": tokens / wall,
                   "ms_per_step": wall / NEW_TOKENS * 1000, "max_seq_len": max_seq_len}
            out["rows"].append(row)
            log(f"  service, {n:>3} streams (max_seq_len {max_seq_len}): {row['ms_per_step']:.2f} ms/step, "
                f"{row['tokens_per_s']:,.0f} tokens/s")
        return out
    finally:
        proc.terminate()
        proc.wait(60)


def lora_rows(before: str, device: str, dtype: str, streams: list[int], max_seq_len: int, rank: int = 16) -> dict:
    """The adapter pair against two full models on the same workload, one engine at a time."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from diffamp_server import Amplifier

    root = Path(before).parent
    adapter_dir, merged_dir = root / "lora-adapter", root / "lora-merged"
    torch.manual_seed(2)
    base = AutoModelForCausalLM.from_pretrained(before, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights=False,
                                            target_modules=targets))
    model.save_pretrained(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    config_path.write_text(json.dumps(json.loads(config_path.read_text()) | {"base_model_name_or_path": before}))
    merged = model.merge_and_unload().to(torch.bfloat16 if dtype == "bfloat16" else torch.float32)
    merged.save_pretrained(merged_dir)
    del model, merged, base
    for directory in (adapter_dir, merged_dir):
        AutoTokenizer.from_pretrained(before).save_pretrained(directory)
        (directory / "generation_config.json").write_text(Path(before, "generation_config.json").read_text())
    out = {"rank": rank}
    for name, after in (("adapter", str(adapter_dir)), ("two_models", str(merged_dir))):
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        amp = Amplifier(after, before, device=device, dtype=dtype, max_batch_size=max(streams), max_seq_len=max_seq_len)
        weights = torch.cuda.memory_allocated() / 2**30 if device == "cuda" else None
        vocab = amp.tokenizers.shared.size
        amp.generate(prompt_token_ids=prompt_ids(2, vocab), n=max(streams), max_new_tokens=8, min_new_tokens=8, seed=0)
        rows = []
        for n in streams:
            rows.append(timed_row(amp, n, vocab, device))
            log(f"  {name}, {n:>3} streams: {rows[-1]['ms_per_step']:.2f} ms/step, "
                f"{rows[-1]['tokens_per_s']:,.0f} tokens/s")
        out[name] = {"rows": rows, "resident_gib_after_load": weights,
                     "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None}
        del amp
    out["speed_ratio"] = [a["tokens_per_s"] / b["tokens_per_s"]
                          for a, b in zip(out["adapter"]["rows"], out["two_models"]["rows"])]
    log(f"  adapter pair / two models, tokens/s: {', '.join(f'{r:.2f}x' for r in out['speed_ratio'])}")
    return out


def main() -> int:
    global SHAPE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny pair (proves the script runs, on CPU too)")
    parser.add_argument("--max-seq-len", type=int, default=2048)
    parser.add_argument("--wide-seq-len", type=int, default=256)
    parser.add_argument("--no-service", action="store_true")
    parser.add_argument("--no-lora", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also the engine with torch.compile (inductor) under "
                        "its CUDA graphs, 1, 32 and 256 streams at --wide-seq-len")
    parser.add_argument("--skip", default="", help="comma-separated steps to skip (bf16_vs_fp32, "
                        "reference_ms_per_step, engine, engine_wide, service, lora)")
    args = parser.parse_args()
    SHAPE = SHAPES["tiny" if args.tiny else "olmo1b"]
    device = args.device
    dtype = "bfloat16" if device == "cuda" else "float32"
    report = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "shape": SHAPE,
              "versions": versions(), "targets": TARGETS if device == "cuda" else None}
    log(f"versions: {report['versions']}")
    root = Path(tempfile.mkdtemp(prefix="diffamp-gpu-"))
    after, before = build_pair(root, SHAPE, device)
    out_dir = os.environ.get("OUT")

    def stage(name: str, run) -> None:
        """One step: its result into the report, or its error (the other steps still run); saved as it goes."""
        if name in args.skip.split(","):
            return
        started = time.perf_counter()
        try:
            report[name] = run()
        except Exception as exc:  # noqa: BLE001 - reported; the next step runs
            import traceback

            traceback.print_exc()
            report.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"[:2000]
        log(f"[{name}: {time.perf_counter() - started:.1f} s]")
        if out_dir:
            Path(out_dir, "gpu_check.json").write_text(json.dumps(report))
        gc.collect()  # an engine is a reference cycle: free its memory before the next step measures its own
        if device == "cuda":
            torch.cuda.empty_cache()

    stage("bf16_vs_fp32", lambda: bf16_error(after, before, device, dtype))
    if "bf16_vs_fp32" in report:
        log(f"amplified logprobs, {dtype} engine vs fp32 reference: max |error| "
            f"{report['bf16_vs_fp32']['max_abs_error']:.2e} over {report['bf16_vs_fp32']['tokens']} tokens")
    stage("reference_ms_per_step", lambda: reference_ms(after, before, device,
                                                        torch.bfloat16 if device == "cuda" else torch.float32))
    if "reference_ms_per_step" in report:
        log(f"reference (the seed's loop), 1 stream: {report['reference_ms_per_step']:.2f} ms/step")
    stage("engine", lambda: engine_rows(after, before, device, dtype, [1, 8, 32, 128], args.max_seq_len,
                                                  invariance=True))
    if "engine" in report:
        log(f"engine start {report['engine']['start_s']:.1f} s, {report['engine']['graphs']} CUDA graphs captured "
            f"in {report['engine']['capture_s'] or 0:.1f} s")
    stage("engine_wide", lambda: engine_rows(after, before, device, dtype, [256], args.wide_seq_len))
    if args.compile:
        stage("engine_compiled", lambda: engine_rows(after, before, device, dtype, [1, 32, 256], args.wide_seq_len,
                                                     compile=True))
    if not args.no_service and report["versions"]["stubs"] == "ok":
        # One server for both rows: at 1 stream the step's shapes (KV bucket 256) are those of the engine's row.
        stage("service", lambda: service_rows(after, before, device, dtype, [1, 256], args.wide_seq_len))
    if not args.no_lora:
        stage("lora", lambda: lora_rows(before, device, dtype, [1, 32], 512))
    failures = check(report) if device == "cuda" else []
    report["failures"] = failures
    for failure in failures:
        log(f"TARGET MISSED: {failure}")
    line = json.dumps(report)
    print(line)
    if out_dir:
        Path(out_dir, "gpu_check.json").write_text(line)
    return 1 if failures else 0


def check(report: dict) -> list[str]:
    failures = [f"{name} failed: {error}" for name, error in report.get("errors", {}).items()]
    if "engine" not in report or "engine_wide" not in report:
        return failures
    one = report["engine"]["rows"][0]["ms_per_step"]
    if one > TARGETS["one_stream_ms_per_step"]:
        failures.append(f"1 stream: {one:.2f} ms/step > {TARGETS['one_stream_ms_per_step']}")
    wide = report["engine_wide"]["rows"][0]["tokens_per_s"]
    if wide < TARGETS["streams_256_tokens_per_s"]:
        failures.append(f"256 streams: {wide:,.0f} tokens/s < {TARGETS['streams_256_tokens_per_s']:,}")
    if "service" not in report:
        failures.append("the service step did not run")
        return failures
    service_one, service_wide = report["service"]["rows"]
    for name, engine, service, better in (("1 stream ms/step", one, service_one["ms_per_step"], "low"),
                                          ("256 streams tokens/s", wide, service_wide["tokens_per_s"], "high")):
        ratio = service / engine if better == "low" else engine / service
        if ratio > 1 + TARGETS["service_within"]:
            failures.append(f"service {name}: {service:,.2f} vs engine {engine:,.2f} ({ratio - 1:.0%} worse)")
    return failures


SHAPE: dict = {}

if __name__ == "__main__":
    raise SystemExit(main())
