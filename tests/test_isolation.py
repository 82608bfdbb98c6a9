"""No request can hurt another, through a real `diffamp serve` process: one-sided prompt tokens, a client
that never reads, request checks that could freeze the event loop, fairness, limits that fit each other,
and what the server exposes.

The pair is the vocab pair: the after tokenizer has three added special tokens the before one lacks, the
"trailing added tokens" case the project supports.
"""

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffamp import messages
from diffamp.v1 import diffamp_pb2 as pb
from h2client import NonReadingClient
from service import bad_request_field, client, collect, request
from subprocess_server import listening_addresses, process_tree, serve

AFTER_ONLY = ["<|tool|>", "<|think|>", "<|quirk|>"]
STALL_S = 8


@pytest.fixture(scope="module")
def served(vocab_pair):
    srv = serve(*vocab_pair, "--max-batch-size", "8", "--max-seq-len", "128", "--max-n", "8192",
                "--stream-buffer-mb", "0.25", "--stream-stall-seconds", str(STALL_S), "--drain-seconds", "1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def stub(served):
    return client(served.address)


def _live(stub):
    return stub.GetModelInfo(pb.GetModelInfoRequest())


def _wait_idle(stub, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = _live(stub)
        if info.live_sequences == 0 and info.queued_sequences == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"still busy: {_live(stub)}")


# -- 1. one-sided prompt tokens ------------------------------------------------------------------------------
def test_a_prompt_with_after_only_tokens_fails_nobody(stub):
    victim = stub.Generate(request(prompt="victim", n=40, max_new_tokens=30, min_new_tokens=30, seed=1))
    first = next(victim)
    for req in (request(prompt="use <|tool|> then <|think|>", seed=2),
                request(prompt="raw <|quirk|> text", raw=True, seed=3),
                request(prompt="", messages=[("user", "a <|tool|> b"), ("assistant", "ok <|think|>")], seed=4),
                request(prompt="", prompt_token_ids=[5, 300, 6, 301, 302], seed=5)):
        samples = collect(stub.Generate(req))
        assert all(s["finish_reason"] for s in samples.values())
    rest = collect(victim)
    rest[first.index]["token_ids"][:0] = list(first.token_ids)
    assert sorted(rest) == list(range(40)) and all(len(s["token_ids"]) == 30 for s in rest.values())


def test_one_sided_tokens_read_by_the_before_model_in_its_own_tokens(vocab_pair):
    from diffamp_server import Amplifier

    amp = Amplifier(str(vocab_pair[0]), str(vocab_pair[1]), device="cpu", max_batch_size=4, max_seq_len=128)
    from diffamp_server.request import PromptInput

    encoded = amp.tokenizers.encode(PromptInput(text="hi <|tool|> there", raw=True))
    tool = amp.tokenizers.after.convert_tokens_to_ids("<|tool|>")
    assert tool in encoded.after_ids and tool not in encoded.before_ids
    assert amp.tokenizers.before.decode(list(encoded.before_ids)) == "hi <|tool|> there"
    assert max(encoded.before_ids) < len(amp.tokenizers.before)


def test_samples_sharing_a_retokenized_prompt_see_the_before_model_s_whole_prompt(vocab_pair):
    """n samples of one prompt share its prefill, copied row to row: the before model's copy must cover its own
    (longer, retokenized) prompt, so every sample is what it is when drawn alone."""
    from diffamp_server import Amplifier

    amp = Amplifier(str(vocab_pair[0]), str(vocab_pair[1]), device="cpu", max_batch_size=4, max_seq_len=128)
    options = dict(raw_prompt=True, max_new_tokens=6, min_new_tokens=6, seed=3, logprobs=0, temperature=1.0)
    prompt = "hi <|tool|> there <|think|> and"
    encoded = amp.tokenizers.encode(__import__("diffamp_server.request", fromlist=["PromptInput"]).PromptInput(
        text=prompt, raw=True))
    assert len(encoded.before_ids) > len(encoded.after_ids)
    together = amp.generate(prompt, n=4, **options)
    for i, sample in enumerate(together):
        [alone] = amp.generate(prompt, n=1, first_sample_index=i, **options)
        assert sample.token_ids == alone.token_ids
        assert sample.logprobs.before == pytest.approx(alone.logprobs.before, abs=1e-4)


def test_the_reject_policy_names_the_token_and_refuses_templates_that_emit_one(vocab_pair, tmp_path):
    import shutil

    from diffamp_server import Amplifier
    from diffamp_server.errors import InvalidArgument
    from diffamp_server.loading import ModelSource
    from diffamp_server.tokenizer_pair import IncompatibleTokenizers, TokenizerPair

    amp = Amplifier(str(vocab_pair[0]), str(vocab_pair[1]), device="cpu", max_batch_size=4, max_seq_len=128,
                    one_sided_tokens="reject")
    with pytest.raises(InvalidArgument, match=r"token '<\|tool\|>' \(id \d+\) exists only in the after model"):
        amp.generate("use <|tool|>", max_new_tokens=2)
    assert amp.generate("plain words", max_new_tokens=2, seed=1)[0].finish_reason

    thinking = tmp_path / "thinking-after"
    shutil.copytree(vocab_pair[0], thinking)
    template = (thinking / "chat_template.jinja")
    template.write_text(template.read_text().replace("<|assistant|>\n", "<|assistant|>\n<|think|>"))
    with pytest.raises(IncompatibleTokenizers, match="chat template emits tokens the before tokenizer lacks"):
        TokenizerPair.load(ModelSource(str(thinking)), ModelSource(str(vocab_pair[1])), 10**6, "reject")
    pair = TokenizerPair.load(ModelSource(str(thinking)), ModelSource(str(vocab_pair[1])), 10**6, "retokenize")
    from diffamp_server.request import PromptInput

    assert pair.encode(PromptInput(text="hi")).before_ids is not None


WORDS = st.sampled_from(AFTER_ONLY + ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>",
                                      "hello", " world", "🍍", "漢字", "\n", " "])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(WORDS, min_size=1, max_size=12), raw=st.booleans(),
       ids=st.lists(st.integers(0, 305), max_size=6))
def test_fuzzed_prompts_from_both_tokenizers_special_tokens_never_break_a_worker(stub, parts, raw, ids):
    text = "".join(parts)
    for req in (request(prompt=text, raw=raw, max_new_tokens=3),
                request(prompt="", prompt_token_ids=ids or [1], max_new_tokens=3)):
        try:
            collect(stub.Generate(req, timeout=60))
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (text, ids, err.details())


# -- 2. a client that never reads ------------------------------------------------------------------------------
def test_a_client_that_never_reads_costs_bounded_memory_and_no_one_else_waits(served, stub):
    _wait_idle(stub)
    quick = request(prompt="quick", max_new_tokens=32, min_new_tokens=32, seed=9)
    started = time.perf_counter()
    collect(stub.Generate(quick))
    idle_s = time.perf_counter() - started
    big = request(prompt="flood", n=2000, max_new_tokens=100, min_new_tokens=100, logprobs=20, seed=7)
    hostile = NonReadingClient("127.0.0.1", served.port)
    streams = [hostile.call("/diffamp.v1.AmplificationService/Generate", big.SerializeToString()) for _ in range(2)]
    time.sleep(2)
    rss_start = served.rss_mb()
    started = time.perf_counter()
    collect(stub.Generate(quick))
    busy_s = time.perf_counter() - started
    # The stall clock starts once a stream's buffer is full, which takes longer on a loaded machine.
    deadline = time.time() + STALL_S + 60
    while (info := _live(stub)).live_sequences + info.queued_sequences and time.time() < deadline:
        time.sleep(0.5)
    rss_end = served.rss_mb()
    assert (info.live_sequences, info.queued_sequences) == (0, 0)  # the stalled requests hold nothing any more
    assert rss_end - rss_start < 25, f"gateway grew from {rss_start:.0f} MB to {rss_end:.0f} MB"
    assert busy_s < 3 * idle_s + 0.5, (busy_s, idle_s)
    assert hostile.received < 2 * 2**20 and not hostile.ended
    hostile.start_reading()  # the client reads again: it learns why its streams ended
    deadline = time.time() + 30
    while len(hostile.ended) < len(streams) and time.time() < deadline:
        time.sleep(0.1)
    hostile.close()
    assert {s: hostile.ended.get(s, {}).get("grpc-status") for s in streams} == {s: "8" for s in streams}
    assert all("read nothing" in hostile.ended[s].get("grpc-message", "") for s in streams)
    _wait_idle(stub)


# -- 3. request checks never freeze the event loop ----------------------------------------------------------------
PROBE = str(Path(__file__).resolve().parent.parent / "bench" / "health_probe.py")


class HealthProbe:
    """Checks health every 20 ms from its own process (so this process's work cannot delay it) and records
    each answer's latency."""

    def __init__(self, address):
        self.proc = subprocess.Popen([sys.executable, PROBE, address], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def close(self) -> list[float]:
        out, _ = self.proc.communicate("", timeout=30)
        return [float(x) for x in out.split()]


def _sweep(prompts, n, alphas=(1.0,), **sampling):
    return pb.SweepRequest(prompts=[pb.SweepPrompt(id=f"p{i}", prompt=messages.prompt(p))
                                    for i, p in enumerate(prompts)],
                           alphas=list(alphas), n=n, sampling=messages.sampling(max_new_tokens=4, **sampling))


def _cancel_after(call, seconds):
    timer = threading.Timer(seconds, call.cancel)
    timer.start()
    try:
        for _ in call:
            pass
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.CANCELLED, err.details()
    finally:
        timer.cancel()


def test_health_answers_within_100_ms_while_the_worst_requests_arrive(served, stub):
    _wait_idle(stub)
    probe = HealthProbe(served.address)
    rejected = []

    def expect_invalid(call):
        try:
            list(call())
        except grpc.RpcError as err:
            rejected.append(err.code())

    expect_invalid(lambda: stub.Generate(pb.GenerateRequest(prompt=messages.prompt(
        "", messages=[("user", "x")] * 300_000), sampling=messages.sampling(max_new_tokens=4))))
    expect_invalid(lambda: stub.Sweep(_sweep(["hi"], 10, alphas=[float(a) for a in range(20_000)])))
    _cancel_after(stub.Sweep(_sweep(["hi"], 1_000_000)), 2.0)
    _cancel_after(stub.Sweep(_sweep([f"prompt {i}" for i in range(60_000)], 1)), 4.0)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: expect_invalid(lambda: stub.Generate(request(prompt="x" * 5000, seed=i))), range(24)))
    latencies = probe.close()
    assert set(rejected) == {grpc.StatusCode.INVALID_ARGUMENT}
    assert len(latencies) > 100
    assert max(latencies) <= 0.100, f"worst {max(latencies) * 1000:.0f} ms, median " \
                                    f"{statistics.median(latencies) * 1000:.1f} ms"
    _wait_idle(stub)


# -- 4. fairness ---------------------------------------------------------------------------------------------------
def test_a_small_request_is_served_while_two_huge_ones_run(stub):
    _wait_idle(stub)
    small = request(prompt="small", max_new_tokens=32, min_new_tokens=32, seed=11)
    started = time.perf_counter()
    collect(stub.Generate(small))
    idle_s = time.perf_counter() - started
    bigs = [stub.Generate(request(prompt=f"big {i}", n=8192, max_new_tokens=100, seed=20 + i)) for i in range(2)]
    for call in bigs:
        next(call)
    started = time.perf_counter()
    collect(stub.Generate(small, timeout=60))
    busy_s = time.perf_counter() - started
    for call in bigs:
        call.cancel()
    _wait_idle(stub)
    assert busy_s < 6 * idle_s + 1.0, f"{busy_s:.2f} s beside two n=8192 requests vs {idle_s:.2f} s idle"


# -- 5. limits that fit each other ---------------------------------------------------------------------------------
def test_resuming_a_sweep_with_a_quarter_million_done_samples_fits_one_message(stub):
    from diffamp.common.sweep import SweepPrompt, SweepSettings

    settings_ = SweepSettings(alphas=(0.0,), n=1_000_000, max_new_tokens=4)
    done = {("a", "logits", 0.0): list(range(250_000)) + list(range(300_000, 310_000))}
    req = messages.sweep_request([SweepPrompt("a", "hi")], settings_, [], done)
    assert req.ByteSize() < 200
    call = stub.Sweep(req)
    progress = next(item.progress for item in call if item.HasField("progress"))
    call.cancel()
    assert progress.skipped == 260_000 and progress.total == 740_000


def test_indices_past_two_to_the_31_are_served(stub):
    samples = collect(stub.Generate(request(first_sample_index=2**31 + 5, n=2, max_new_tokens=2, seed=3)))
    assert sorted(samples) == [2**31 + 5, 2**31 + 6]
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(request(first_sample_index=2**32 - 1, n=2, max_new_tokens=2)))
    assert bad_request_field(err.value) == "first_sample_index"


# -- 6. what the server exposes --------------------------------------------------------------------------------------
def test_a_local_ray_listens_on_loopback_only(served):
    listening = listening_addresses(process_tree(served.proc.pid))
    assert len(listening) >= 3  # gRPC, the GCS, the raylet at least
    outside = [(pid, addr, port) for pid, addr, port in listening if addr not in ("127.0.0.1", "::ffff:127.0.0.1")]
    assert not outside, outside
