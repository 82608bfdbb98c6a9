"""End to end through a real gRPC server with real Ray actors (colocated placement) on a tiny Llama pair."""

import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import torch
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from diffamp_server.background import BackgroundServer
from diffamp.v1 import diffamp_pb2 as pb
from diffamp_server.config import ServerConfig
from reference import ReferencePair
from service import bad_request_field, client, collect, compare_request, request

MAX_BATCH, MAX_QUEUED = 8, 16


@pytest.fixture(scope="module")
def server(ray_cluster, llama_pair):
    after, before = llama_pair
    config = ServerConfig(after=str(after), before=str(before), port=0, max_batch_size=MAX_BATCH,
                          max_queued=MAX_QUEUED, max_seq_len=128, max_n=64, worker_cpus=1)
    srv = BackgroundServer(config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def stub(server):
    return client(server.address)


@pytest.fixture(scope="module")
def tokenizer(llama_pair):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llama_pair[0])


def test_streams_a_chunk_per_worker_call_and_text_matches_ids(server, stub, tokenizer):
    [s] = collect(stub.Generate(request(max_new_tokens=12, seed=1))).values()
    assert s["completion_tokens"] == len(s["token_ids"])
    assert s["chunks"] == math.ceil(s["completion_tokens"] / server.config.decode_steps)
    assert s["finish_reason"] in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_STOP)
    ids = s["token_ids"][:-1] if s["finish_reason"] == pb.FINISH_REASON_STOP else s["token_ids"]
    assert s["text"] == tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert s["seed"] == 1 and s["prompt_tokens"] > 0


def test_n_samples_each_finish_once_with_their_own_tokens(stub):
    samples = collect(stub.Generate(request(n=5, seed=2, temperature=1.0)))
    assert sorted(samples) == list(range(5))
    assert all(s["finish_reason"] for s in samples.values())
    assert len({tuple(s["token_ids"]) for s in samples.values()}) > 1


def test_same_seed_same_completion_whatever_shares_the_batch(stub):
    target = request(n=2, seed=1234, temperature=1.0, max_new_tokens=16, logprobs=0)
    alone = collect(stub.Generate(target))

    def noise(i):
        return collect(stub.Generate(request(prompt=f"noise {i}", n=3, seed=i, max_new_tokens=5 + i)))

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(noise, i) for i in range(5)]
        time.sleep(0.05)
        together = pool.submit(lambda: collect(stub.Generate(target))).result()
        [f.result() for f in futures]
    for i in range(2):
        assert together[i]["token_ids"] == alone[i]["token_ids"]
        assert together[i]["text"] == alone[i]["text"]
        for a, b in zip(together[i]["logprobs"], alone[i]["logprobs"]):
            assert abs(a.amplified - b.amplified) < 1e-4


def test_greedy_is_argmax_of_the_amplified_logits(stub, llama_pair, tokenizer):
    [s] = collect(stub.Generate(request(temperature=0, alpha=3.0, logprobs=3, max_new_tokens=6))).values()
    ref = ReferencePair(*llama_pair, len(tokenizer))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hello world"}], add_generation_prompt=True,
                                           tokenize=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    for t, (token, lp) in enumerate(zip(s["token_ids"], s["logprobs"])):
        amplified, after, before = ref.next_token_logprobs(prompt + s["token_ids"][:t], 3.0)
        assert token == int(amplified.argmax()) == lp.top[0].token_id == lp.token_id
        assert abs(lp.amplified - float(amplified[token])) < 1e-4
        assert abs(lp.after - float(after[token])) < 1e-4 and abs(lp.before - float(before[token])) < 1e-4
        assert lp.sampled == 0.0 and lp.kl_after_before > 0


def test_stop_string_cuts_the_text(stub):
    base = collect(stub.Generate(request(seed=9, max_new_tokens=20, temperature=1.0)))[0]["text"]
    stop = base[len(base) // 2 : len(base) // 2 + 2]
    assert stop
    s = collect(stub.Generate(request(seed=9, max_new_tokens=20, temperature=1.0, stop=[stop])))[0]
    assert s["finish_reason"] == pb.FINISH_REASON_STOP_STRING
    assert s["text"] == base[: base.index(stop)]


def test_compare_streams_both_models(stub):
    got = {pb.COMPARE_MODEL_AFTER: [], pb.COMPARE_MODEL_BEFORE: []}
    finished = set()
    for chunk in stub.Compare(compare_request(prompt="hello", max_new_tokens=6, seed=3)):
        got[chunk.model].extend(chunk.token_ids)
        if chunk.finish_reason:
            finished.add(chunk.model)
    assert finished == {pb.COMPARE_MODEL_AFTER, pb.COMPARE_MODEL_BEFORE}
    after_alone = collect(stub.Generate(request(prompt="hello", max_new_tokens=6, seed=3, alpha=0.0)))[0]
    assert got[pb.COMPARE_MODEL_AFTER] == after_alone["token_ids"]


def test_tokenizers_and_model_info(stub, tokenizer):
    r = stub.CheckTokenizers(pb.CheckTokenizersRequest())
    assert r.compatible and r.shared_vocab_size == r.after_vocab_size == len(tokenizer)
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.placement == "colocated" and info.after.architectures == ["LlamaForCausalLM"]
    assert info.after.dtype == "float32" and info.after.device == "cpu" and info.max_batch_size == MAX_BATCH
    assert info.kv_cache_bytes > 0 and info.after.node


def test_health_and_reflection(server):
    channel = grpc.insecure_channel(server.address)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "diffamp.v1.AmplificationService"):
        assert (health.Check(health_pb2.HealthCheckRequest(service=service)).status
                == health_pb2.HealthCheckResponse.SERVING)
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    [answer] = list(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answer.list_services_response.service}
    assert {"diffamp.v1.AmplificationService", "grpc.health.v1.Health"} <= names


NAN = float("nan")


@pytest.mark.parametrize("fields,field", [
    ({"prompt": ""}, "prompt"),
    ({"prompt": "", "messages": [("wizard", "hi")]}, "prompt.conversation.messages[0].role"),
    ({"prompt": "", "messages": [("user", "")]}, "prompt.conversation.messages[0].content"),
    ({"prompt": "", "prompt_token_ids": [1, 10**6]}, "prompt.token_ids.ids[1]"),
    ({"prompt": "", "prompt_token_ids": [-3]}, "prompt.token_ids.ids[0]"),
    ({"prompt": "x" * 100_000}, "prompt"),
    ({"alpha": NAN}, "alpha"),
    ({"alpha": float("inf")}, "alpha"),
    ({"alpha": 1e6}, "alpha"),
    ({"temperature": -0.1}, "sampling.temperature"),
    ({"temperature": float("inf")}, "sampling.temperature"),
    ({"top_p": 0.0}, "sampling.top_p"),
    ({"top_p": 1.5}, "sampling.top_p"),
    ({"top_k": -1}, "sampling.top_k"),
    ({"max_new_tokens": -5}, "sampling.max_new_tokens"),
    ({"max_new_tokens": 500}, "sampling.max_new_tokens"),
    ({"min_new_tokens": 9}, "sampling.min_new_tokens"),
    ({"n": -1}, "n"),
    ({"n": 65}, "n"),
    ({"stop": [""]}, "sampling.stop[0]"),
    ({"stop": ["x" * 65]}, "sampling.stop[0]"),
    ({"stop": ["a"] * 9}, "sampling.stop"),
    ({"logprobs": 21}, "logprobs"),
    ({"logprobs": -1}, "logprobs"),
    ({"first_sample_index": 2**32 - 1, "n": 2}, "first_sample_index"),
])
def test_invalid_requests_get_invalid_argument_naming_the_field(stub, fields, field):
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Generate(request(**fields)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_field(info.value) == field
    assert info.value.details().startswith(field)


def test_context_limit_message_names_both_numbers(stub):
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Generate(request(max_new_tokens=126)))
    assert "126" in info.value.details() and "128" in info.value.details()


def test_oversized_message_is_refused(stub):
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Generate(request(prompt="x" * (5 * 1024 * 1024))))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _live(stub):
    return stub.GetModelInfo(pb.GetModelInfoRequest()).live_sequences


def test_cancelled_streams_free_their_slots(stub):
    calls = [stub.Generate(request(prompt=f"cancel {i}", n=2, max_new_tokens=100, seed=i)) for i in range(6)]
    for call in calls:
        next(call)
    assert _live(stub) > 0
    for call in calls:
        call.cancel()
    deadline = time.time() + 10
    while _live(stub) and time.time() < deadline:
        time.sleep(0.05)
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.live_sequences == 0 and info.queued_sequences == 0 and info.kv_tokens_used == 0


def test_deadline_is_honoured_and_frees_slots(stub):
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Generate(request(n=4, max_new_tokens=110, prompt="hi"), timeout=0.3))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.time() + 10
    while _live(stub) and time.time() < deadline:
        time.sleep(0.05)
    assert _live(stub) == 0


def test_overload_rejects_the_excess_and_completes_the_rest(stub):
    total = 4 * (MAX_BATCH + MAX_QUEUED)

    def one(i):
        try:
            s = collect(stub.Generate(request(prompt=f"load {i}", max_new_tokens=30, seed=i)))[0]
            return "ok" if s["completion_tokens"] == len(s["token_ids"]) and s["finish_reason"] else "bad"
        except grpc.RpcError as err:
            return err.code()

    with ThreadPoolExecutor(total) as pool:
        outcomes = list(pool.map(one, range(total)))
    assert set(outcomes) <= {"ok", grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) > 0
    assert outcomes.count("ok") >= MAX_BATCH + MAX_QUEUED


def _cli(*args, server):
    out = subprocess.run([sys.executable, "-m", "diffamp.cli", *args, "--server", server.address],
                         capture_output=True, text=True, timeout=60)
    return out


def test_cli_generate_json_and_human(server):
    out = _cli("generate", "hello", "--n", "3", "--seed", "5", "--max-new-tokens", "6", "--json",
               "--logprobs", "2", server=server)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(x["index"] for x in lines) == [0, 1, 2]
    assert all(len(x["logprobs"]) == len(x["token_ids"]) and len(x["logprobs"][0]["top"]) == 2 for x in lines)
    human = _cli("generate", "hello", "--n", "2", "--seed", "5", "--max-new-tokens", "6", server=server)
    assert human.returncode == 0 and "sample 0" in human.stdout and "sample 1" in human.stdout


def test_cli_explain_is_readable_without_colour(server):
    out = _cli("generate", "hello", "--explain", "--max-new-tokens", "8", "--seed", "2", "--alpha", "4", server=server)
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stdout
    legend, body = out.stdout.split("\n", 1)
    assert "log p_after - log p_before" in legend and "[[token]]" in legend
    assert "mean KL(after‖before)" in body and "8 tokens" in body


def test_cli_other_commands(server):
    assert '"placement": "colocated"' in _cli("info", server=server).stdout
    assert "compatible: True" in _cli("tokenizers", server=server).stdout
    compare = _cli("compare", "hi", "--max-new-tokens", "4", server=server)
    assert "after (post-trained)" in compare.stdout and "before (base)" in compare.stdout
    bad = _cli("generate", "hi", "--top-p", "3", server=server)
    assert bad.returncode == 1 and "INVALID_ARGUMENT: sampling.top_p" in bad.stderr


def test_cli_regression_fails_fast_without_a_server(tmp_path):
    out = subprocess.run([sys.executable, "-m", "diffamp.cli", "regression", "--server", "127.0.0.1:9"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no diffamp server answers at 127.0.0.1:9" in out.stderr


def test_cli_regression_runs_the_five_prompts(server, tmp_path):
    path = tmp_path / "reg.json"
    out = _cli("regression", "--alpha", "0.5", "--max-new-tokens", "16", "--output", str(path), server=server)
    assert out.returncode == 0, out.stderr
    saved = json.loads(path.read_text())
    assert len(saved) == 5 and saved[1]["prompt"] == "hey I feel bored" and saved[0]["alpha"] == 0.5


def test_cli_sweep_shows_progress_and_writes_samples_table_json_and_csv(server, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "greet", "prompt": "hello"}\n'
                       '{"id": "chat", "messages": [{"role": "user", "content": "the quick"}]}\n')
    out = _cli("sweep", "--prompts", str(prompts), "--alphas=-1,0.5", "--n", "4", "--max-new-tokens", "6",
               "--detector", "e=e", "--detector", "dot=re:\\.", "--output", str(tmp_path / "s.jsonl"), server=server)
    assert out.returncode == 0, out.stderr
    assert "sweep 16/16 samples" in out.stderr and "samples/s" in out.stderr
    lines = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert lines[0]["diffamp_sweep"] == 1 and lines[0]["sampling"]["max_new_tokens"] == 6
    records = lines[1:]
    assert sorted({(r["prompt_id"], r["alpha"]) for r in records}) == [("chat", -1.0), ("chat", 0.5),
                                                                       ("greet", -1.0), ("greet", 0.5)]
    assert len(records) == 16 and all(len(r["token_ids"]) <= 6 for r in records)
    summary = json.loads((tmp_path / "s.summary.json").read_text())
    assert [(r["alpha"], r["detector"]) for r in summary] == [(-1.0, "e"), (-1.0, "dot"), (0.5, "e"), (0.5, "dot")]
    assert (tmp_path / "s.summary.csv").read_text().count("\n") == 5
    assert "95% Wilson" in out.stdout


def _run_sweep(server, prompts, settings, detectors, path):
    import asyncio

    from diffamp.connection import stub as make_stub
    from diffamp.sweep_rpc import run_sweep

    async def go():
        async with grpc.aio.insecure_channel(server.address) as channel:
            return await run_sweep(make_stub(channel), prompts, settings, detectors, str(path), progress=False)
    return asyncio.run(go())


def test_sweep_resumes_to_the_same_samples_and_table(server, tmp_path):
    from diffamp.common.detectors import parse_spec, python_callable
    from diffamp.common.sweep import SweepPrompt, SweepSettings, summarize

    prompts = [SweepPrompt("a", "hello"), SweepPrompt("b", "the quick")]
    settings = SweepSettings(alphas=(0.0, 1.0), n=6, max_new_tokens=6)
    detectors = [parse_spec("e=e"), parse_spec("any=re:."), python_callable("long", lambda text: len(text) > 8)]
    full = _run_sweep(server, prompts, settings, detectors, tmp_path / "full.jsonl")
    assert len(full) == 24 and len({r.key for r in full}) == 24
    lines = (tmp_path / "full.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["diffamp_sweep"] == 1  # the header: settings and prompt fingerprints
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[:11]) + "\n" + lines[11][:15])
    resumed = _run_sweep(server, prompts, settings, detectors, tmp_path / "cut.jsonl")
    key = lambda r: (r.prompt_id, r.alpha, r.index, r.seed, r.text, r.token_ids)  # noqa: E731
    assert sorted(map(key, resumed)) == sorted(map(key, full))
    assert any("long" in r.detectors for r in full) and all(
        ("long" in r.detectors) == (len(r.text) > 8) for r in full)  # a Python callable runs on the client
    for a, b in zip(summarize(resumed, ["e", "any"], True), summarize(full, ["e", "any"], True), strict=True):
        assert (a.alpha, a.detector, a.hits, a.n, a.low, a.high) == (b.alpha, b.detector, b.hits, b.n, b.low, b.high)
        if a.estimate:  # logprobs from different batch companions agree to float rounding only
            assert a.estimate.rate == pytest.approx(b.estimate.rate, abs=1e-5)
    again = _run_sweep(server, prompts, settings, detectors, tmp_path / "cut.jsonl")
    assert len((tmp_path / "cut.jsonl").read_text().splitlines()) == 11 + 1 + 14  # nothing re-requested
    assert sorted(map(key, again)) == sorted(map(key, full))
    for r in full:
        if r.alpha == 0.0:
            assert abs(r.logprob_sampled - r.logprob_after) < 1e-3


def _sweep_request(**overrides):
    from diffamp import messages

    fields = dict(prompts=[pb.SweepPrompt(id="a", prompt=messages.prompt("hello")),
                           pb.SweepPrompt(id="b", prompt=messages.prompt("the quick"))],
                  alphas=[0.0, 2.0], n=5, sampling=messages.sampling(max_new_tokens=6), seed=3,
                  detectors=[pb.Detector(name="e", substring="E", ignore_case=True),
                             pb.Detector(name="dot", regex=r"\.")])
    fields.update(overrides)
    return pb.SweepRequest(**fields)


def test_sweep_rpc_streams_samples_progress_and_a_summary_that_replays(stub):
    from diffamp.common.sweep import summarize
    from diffamp.messages import sweep_record

    items = list(stub.Sweep(_sweep_request()))
    samples = [i.sample for i in items if i.HasField("sample")]
    progress = [i.progress for i in items if i.HasField("progress")]
    assert items[-1].HasField("summary") and progress and progress[-1].done == progress[-1].total == 20
    assert sorted((s.prompt_id, s.alpha, s.index) for s in samples) == sorted(
        (p, a, i) for p in "ab" for a in (0.0, 2.0) for i in range(5))
    for s in samples:
        assert list(s.detectors) == [d for d, hit in (("e", "e" in s.text.lower()), ("dot", "." in s.text)) if hit]
    want = summarize([sweep_record(s) for s in samples], ["e", "dot"], exact=True)
    got = items[-1].summary.rows
    assert [(r.alpha, r.detector, r.hits, r.n) for r in got] == [(r.alpha, r.detector, r.hits, r.n) for r in want]
    assert all(r.HasField("estimate") == (r.alpha != 0) and (r.estimate.exact or r.alpha == 0) for r in got)
    s = next(s for s in samples if s.alpha == 2.0 and s.index == 3)
    [replay] = collect(stub.Generate(request(prompt="hello" if s.prompt_id == "a" else "the quick", alpha=2.0,
                                             seed=s.seed, first_sample_index=3, max_new_tokens=6, temperature=1.0,
                                             top_p=1.0, logprobs=0))).values()
    assert replay["token_ids"] == list(s.token_ids)


def test_sweep_rpc_skips_completed_samples(stub):
    done = [pb.CompletedSamples(prompt_id="a", alpha=0.0, ranges=[pb.IndexRange(first=0, count=2),
                                                                   pb.IndexRange(first=2, count=3)])]
    items = list(stub.Sweep(_sweep_request(completed=done)))
    samples = [i.sample for i in items if i.HasField("sample")]
    assert len(samples) == 15 and not any(s.prompt_id == "a" and s.alpha == 0.0 for s in samples)
    last = [i.progress for i in items if i.HasField("progress")][-1]
    assert (last.done, last.total, last.skipped) == (15, 15, 5)


def _prompt(text):
    from diffamp import messages

    return messages.prompt(text)


@pytest.mark.parametrize("overrides, field", [
    ({"prompts": []}, "prompts"),
    ({"prompts": [pb.SweepPrompt(id="a", prompt=_prompt("x")), pb.SweepPrompt(id="a", prompt=_prompt("y"))]},
     "prompts[1].id"),
    ({"prompts": [pb.SweepPrompt(id="a")]}, "prompts[0].prompt"),
    ({"alphas": []}, "alphas"),
    ({"alphas": [0.0, 1e9]}, "alphas[1]"),
    ({"alphas": [0.0, 1.0, 0.0]}, "alphas[2]"),
    ({"n": 0}, "n"),
    ({"n": 10**6}, "n"),
    ({"sampling": pb.SamplingOptions(max_new_tokens=6, min_new_tokens=7)}, "sampling.min_new_tokens"),
    ({"detectors": [pb.Detector(name="x", regex="(")]}, "detectors[0]"),
    ({"detectors": [pb.Detector(name="x", regex=r"(a)\1")]}, "detectors[0]"),
    ({"detectors": [pb.Detector(name="x")]}, "detectors[0]"),
    ({"detectors": [pb.Detector(name="x", substring="a"), pb.Detector(name="x", substring="b")]}, "detectors[1].name"),
    ({"detectors": [pb.Detector(name=f"d{i}", substring="a") for i in range(65)]}, "detectors"),
    ({"completed": [pb.CompletedSamples(prompt_id="zz", alpha=0.0, ranges=[pb.IndexRange(first=0, count=1)])]},
     "completed[0].prompt_id"),
])
def test_sweep_rpc_rejects_bad_fields_by_name(stub, overrides, field):
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Sweep(_sweep_request(**overrides)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_field(err.value) == field


def test_cancelling_a_sweep_frees_its_rows(stub):
    call = stub.Sweep(_sweep_request(n=400, sampling=pb.SamplingOptions(max_new_tokens=40)))
    for item in call:
        if item.HasField("sample"):
            break
    call.cancel()
    deadline = time.time() + 30
    while _live(stub) and time.time() < deadline:
        time.sleep(0.05)
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.live_sequences == 0 and info.queued_sequences == 0


def test_min_new_tokens_holds_off_eos(stub):
    samples = collect(stub.Generate(request(n=6, seed=8, max_new_tokens=10, min_new_tokens=10, temperature=1.0)))
    assert all(s["completion_tokens"] == 10 and s["finish_reason"] == pb.FINISH_REASON_LENGTH
               for s in samples.values())
    with pytest.raises(grpc.RpcError) as err:
        collect(stub.Generate(request(max_new_tokens=4, min_new_tokens=5)))
    assert bad_request_field(err.value) == "sampling.min_new_tokens"


def _rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _cancel_round(stub, count, seed, wave=MAX_BATCH + MAX_QUEUED - 4):
    """`count` streams, opened `wave` at a time (the server admits 24), each cancelled after 3 tokens."""
    for first in range(0, count, wave):
        calls = [stub.Generate(request(prompt=f"c{i}", max_new_tokens=100, seed=seed + i))
                 for i in range(first, min(first + wave, count))]
        for call in calls:
            for _ in zip(range(3), call):  # a stream may also end on its own before 3 tokens
                pass
            call.cancel()
        deadline = time.time() + 30
        while _live(stub) and time.time() < deadline:
            time.sleep(0.02)


def test_cancelling_200_streams_leaks_nothing(server, stub):
    import gc
    import os

    import ray

    worker_pid = ray.get(server.running.gateway.replicas["r0"].actors[0].__ray_call__.remote(lambda self: os.getpid()))
    _cancel_round(stub, 200, 0)  # warm-up: allocator pools, gRPC buffers
    gc.collect()
    before = (_rss_mb(os.getpid()), _rss_mb(worker_pid))
    _cancel_round(stub, 200, 1000)
    gc.collect()
    after = (_rss_mb(os.getpid()), _rss_mb(worker_pid))
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.live_sequences == 0 and info.queued_sequences == 0 and info.kv_tokens_used == 0
    assert not server.running.gateway.scheduler.waiting and not server.running.gateway.scheduler.live_requests()
    for b, a in zip(before, after):
        assert a <= b * 1.05, f"memory grew from {b:.0f} MB to {a:.0f} MB"


def test_the_kv_cache_budget_caps_the_slots_and_admission_follows(ray_cluster, llama_pair):
    from transformers import AutoConfig

    from diffamp_server.engine.kv_store import slot_bytes

    after, before = llama_pair
    one_slot = sum(slot_bytes(AutoConfig.from_pretrained(d), 128, torch.float32) for d in (after, before))
    config = ServerConfig(after=str(after), before=str(before), port=0, max_batch_size=8, max_seq_len=128,
                          kv_cache_budget_mb=3.5 * one_slot / 2**20, worker_cpus=0.5)
    srv = BackgroundServer(config)
    try:
        budget_stub = client(srv.address)
        info = budget_stub.GetModelInfo(pb.GetModelInfoRequest())
        assert info.max_batch_size == 3 and info.kv_cache_bytes == 3 * one_slot
        samples = collect(budget_stub.Generate(request(n=7, seed=4, max_new_tokens=5)))
        assert sorted(samples) == list(range(7))  # admitted three at a time
    finally:
        srv.stop()
