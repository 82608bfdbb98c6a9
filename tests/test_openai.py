"""The OpenAI-compatible HTTP API through the real `openai` client, against one running server (TLS and a bearer
token on both APIs) on the tiny Llama pair: chat and completions, streamed and not, n, stop strings, logprobs,
alpha from the body and from the model name, the same tokens as gRPC for a seed, errors, overload, drain."""

import json
import math
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import openai
import pytest
from openai import OpenAI

from diffamp_server.background import BackgroundServer
from diffamp_server.config import ServerConfig
from certs import write_certs
from service import collect, request
from subprocess_server import free_port

TOKEN = "open-sesame"
MAX_BATCH, MAX_QUEUED = 8, 16
BUFFER_MB = 0.25
MAX_SEQ_LEN = 128
MAX_LOGPROBS = 100
QUESTION = [{"role": "user", "content": "hello world"}]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return write_certs(tmp_path_factory.mktemp("openai-certs"))


@pytest.fixture(scope="module")
def server(ray_cluster, llama_pair, certs):
    after, before = llama_pair
    config = ServerConfig(after=str(after), before=str(before), port=0, http_port=free_port(), max_batch_size=MAX_BATCH,
                          max_queued=MAX_QUEUED, max_seq_len=MAX_SEQ_LEN, max_n=64, worker_cpus=1, auth_token=TOKEN,
                          tls_cert=str(certs["cert"]), tls_key=str(certs["key"]), stream_buffer_mb=BUFFER_MB,
                          max_logprobs=MAX_LOGPROBS)
    srv = BackgroundServer(config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def base_url(server):
    return f"https://127.0.0.1:{server.running.http_port}"


def _client(base_url, certs, token=TOKEN) -> OpenAI:
    tls = ssl.create_default_context(cafile=str(certs["ca"]))
    return OpenAI(base_url=base_url + "/v1", api_key=token, max_retries=0, timeout=60,
                  http_client=openai.DefaultHttpxClient(verify=tls))


@pytest.fixture(scope="module")
def oai(base_url, certs):
    return _client(base_url, certs)


@pytest.fixture(scope="module")
def grpc_stub(server, certs):
    from diffamp.v1 import diffamp_pb2_grpc

    creds = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=certs["ca"].read_bytes()),
        grpc.access_token_call_credentials(TOKEN))
    return diffamp_pb2_grpc.AmplificationServiceStub(
        grpc.secure_channel(server.address, creds, options=[("grpc.ssl_target_name_override", "localhost")]))


def _raw(base_url, certs, path, body=None, token=TOKEN):
    """(status, headers, text) of one request without the openai client, to see the bytes on the wire."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base_url + path, data=None if body is None else json.dumps(body).encode(),
                                 headers=headers)
    tls = ssl.create_default_context(cafile=str(certs["ca"]))
    try:
        with urllib.request.urlopen(req, context=tls, timeout=60) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def _stream_text(stream) -> tuple[dict[int, str], dict[int, str]]:
    texts, reasons = {}, {}
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content if hasattr(c, "delta") else c.text or "")
            if c.finish_reason:
                reasons[c.index] = c.finish_reason
    return texts, reasons


# -- chat and completions ---------------------------------------------------------------------------------------
def test_chat_n_samples_with_usage_and_the_same_text_streamed(oai):
    kw = dict(model="diffamp", messages=QUESTION, n=3, seed=11, temperature=1.0, max_tokens=12)
    whole = oai.chat.completions.create(**kw)
    assert [c.index for c in whole.choices] == [0, 1, 2]
    assert all(c.finish_reason in ("stop", "length") and c.message.role == "assistant" for c in whole.choices)
    assert len({c.message.content for c in whole.choices}) > 1
    assert whole.object == "chat.completion" and whole.model == "diffamp" and whole.model_extra["seed"] == 11
    assert whole.usage.prompt_tokens > 0 and whole.usage.completion_tokens <= 3 * 12
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    texts, reasons = _stream_text(oai.chat.completions.create(**kw, stream=True))
    assert texts == {c.index: c.message.content for c in whole.choices}
    assert reasons == {c.index: c.finish_reason for c in whole.choices}


def test_stream_is_openai_sse_ending_with_done_and_usage(base_url, certs):
    status, headers, text = _raw(base_url, certs, "/v1/chat/completions", {
        "model": "diffamp", "messages": QUESTION, "n": 2, "max_tokens": 6, "seed": 1, "stream": True,
        "stream_options": {"include_usage": True}})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [{"role": "assistant", "content": ""}] * 2
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_completions_text_is_raw_and_token_ids_give_the_same_sample(oai, tokenizer):
    prompt = "The quick brown fox"
    kw = dict(model="diffamp", seed=5, temperature=1.0, max_tokens=10, extra_body={"return_token_ids": True})
    by_text = oai.completions.create(prompt=prompt, **kw)
    ids = tokenizer(prompt)["input_ids"]
    by_ids = oai.completions.create(prompt=ids, **kw)
    assert by_text.usage.prompt_tokens == len(ids)  # no chat template around it
    assert by_text.choices[0].text == by_ids.choices[0].text
    assert by_text.choices[0].model_extra["token_ids"] == by_ids.choices[0].model_extra["token_ids"]
    texts, _ = _stream_text(oai.completions.create(prompt=prompt, stream=True, **kw))
    assert texts == {0: by_text.choices[0].text}


@pytest.fixture(scope="module")
def tokenizer(llama_pair):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llama_pair[0])


def test_same_seed_same_tokens_as_grpc(oai, grpc_stub):
    settings = dict(seed=1234, temperature=1.0, top_p=0.9, max_new_tokens=16)
    grpc_chat = collect(grpc_stub.Generate(request(prompt="", messages=[("user", "hello world")], n=3, alpha=1.5,
                                                   **settings)))
    http_chat = oai.chat.completions.create(model="diffamp", messages=QUESTION, n=3, seed=1234, temperature=1.0,
                                            top_p=0.9, max_tokens=16,
                                            extra_body={"alpha": 1.5, "return_token_ids": True})
    for c in http_chat.choices:
        assert c.model_extra["token_ids"] == grpc_chat[c.index]["token_ids"]
        assert c.message.content == grpc_chat[c.index]["text"]
    grpc_raw = collect(grpc_stub.Generate(request(prompt="hello world", raw=True, n=2, **settings)))
    texts, _ = _stream_text(oai.completions.create(model="diffamp", prompt="hello world", n=2, seed=1234,
                                                   temperature=1.0, top_p=0.9, max_tokens=16, stream=True))
    assert texts == {i: s["text"] for i, s in grpc_raw.items()}


def test_stop_strings_cut_the_text(oai):
    kw = dict(model="diffamp", messages=QUESTION, seed=9, temperature=1.0, max_tokens=20)
    base = oai.chat.completions.create(**kw).choices[0].message.content
    stop = base[len(base) // 2: len(base) // 2 + 2]
    assert stop
    cut = oai.chat.completions.create(**kw, stop=[stop, "zzzz"]).choices[0]
    assert cut.message.content == base[: base.index(stop)] and cut.finish_reason == "stop"
    texts, reasons = _stream_text(oai.chat.completions.create(**kw, stop=stop, stream=True))
    assert texts == {0: cut.message.content} and reasons == {0: "stop"}


def test_chat_logprobs_are_the_amplified_distribution_and_carry_after_and_before(oai, grpc_stub):
    r = oai.chat.completions.create(model="diffamp@alpha=2", messages=QUESTION, seed=3, temperature=1.0, max_tokens=8,
                                    logprobs=True, top_logprobs=3)
    [grpc_sample] = collect(grpc_stub.Generate(request(prompt="", messages=[("user", "hello world")], alpha=2.0,
                                                       seed=3, temperature=1.0, max_new_tokens=8,
                                                       logprobs=3))).values()
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == len(grpc_sample["logprobs"])
    for token, ref in zip(content, grpc_sample["logprobs"]):
        assert len(token.top_logprobs) == 3 and token.top_logprobs[0].logprob >= token.logprob - 1e-6
        assert token.token == ref.token and math.isclose(token.logprob, ref.amplified, abs_tol=1e-5)
        assert [t.token for t in token.top_logprobs] == [t.token for t in ref.top]
        extra = token.model_extra["diffamp"]
        assert math.isclose(extra["after"], ref.after, abs_tol=1e-5)
        assert math.isclose(extra["before"], ref.before, abs_tol=1e-5)
    eos = r.choices[0].finish_reason == "stop"
    text_tokens = content[:-1] if eos else content
    assert b"".join(bytes(t.bytes) for t in text_tokens).decode(errors="replace") == r.choices[0].message.content


def test_completions_logprobs_stream_and_not(oai):
    kw = dict(model="diffamp", prompt="hello", seed=4, max_tokens=6, logprobs=2)
    whole = oai.completions.create(**kw).choices[0]
    lp = whole.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert all(len(top) <= 2 for top in lp.top_logprobs) and lp.text_offset[0] == 0
    streamed = [c.choices[0].logprobs for c in oai.completions.create(**kw, stream=True)
                if c.choices and c.choices[0].logprobs]
    assert [t for part in streamed for t in part.tokens] == lp.tokens
    assert [o for part in streamed for o in part.text_offset] == lp.text_offset


def test_alpha_from_the_body_or_the_model_name(oai):
    def first_token(model, **extra):
        r = oai.chat.completions.create(model=model, messages=QUESTION, seed=2, max_tokens=3, logprobs=True,
                                        extra_body=extra or None)
        return r.choices[0].logprobs.content

    for token in first_token("diffamp@after"):  # alpha 0: amplified is the after model's distribution
        assert math.isclose(token.logprob, token.model_extra["diffamp"]["after"], abs_tol=1e-5)
    for token in first_token("diffamp@before"):  # alpha -1: the before model's
        assert math.isclose(token.logprob, token.model_extra["diffamp"]["before"], abs_tol=1e-5)
    for token in first_token("diffamp", alpha=0.0):
        assert math.isclose(token.logprob, token.model_extra["diffamp"]["after"], abs_tol=1e-5)
    by_body = [(t.token, t.logprob) for t in first_token("diffamp", alpha=2.5)]
    by_name = [(t.token, t.logprob) for t in first_token("diffamp@alpha=2.5")]
    assert by_body == by_name
    assert by_body != [(t.token, t.logprob) for t in first_token("diffamp@after")]


def test_top_k_and_min_tokens_from_the_body(oai):
    greedy = oai.chat.completions.create(model="diffamp", messages=QUESTION, temperature=0, max_tokens=10)
    top1 = oai.chat.completions.create(model="diffamp", messages=QUESTION, temperature=1.0, seed=8, max_tokens=10,
                                       extra_body={"top_k": 1})
    assert top1.choices[0].message.content == greedy.choices[0].message.content
    held = oai.chat.completions.create(model="diffamp", messages=QUESTION, seed=8, max_tokens=10,
                                       extra_body={"min_tokens": 10})
    assert held.choices[0].finish_reason == "length" and held.usage.completion_tokens == 10


def test_models_list_the_pair_and_a_name_may_carry_alpha(oai, llama_pair):
    listed = {m.id: m for m in oai.models.list()}
    assert set(listed) == {"diffamp", "diffamp@after", "diffamp@before"}
    assert listed["diffamp@before"].model_extra["alpha"] == -1.0
    assert listed["diffamp"].model_extra["after"] == str(llama_pair[0])
    assert oai.models.retrieve("diffamp@alpha=0.5").model_extra["alpha"] == 0.5
    with pytest.raises(openai.NotFoundError) as info:
        oai.models.retrieve("gpt-4o")
    assert info.value.code == "model_not_found"


# -- errors ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,param", [
    ({"top_p": 2.0}, "top_p"),
    ({"temperature": -1.0}, "temperature"),
    ({"n": 0}, "n"),
    ({"n": 65}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": MAX_SEQ_LEN}, "max_completion_tokens"),
    ({"seed": -1}, "seed"),
    ({"stop": ["x" * 100]}, "stop[0]"),
    ({"logprobs": True, "top_logprobs": MAX_LOGPROBS + 1}, "top_logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
    ({"model": "diffamp@alpha=1000"}, "model"),
    ({"extra_body": {"alpha": 1000}}, "alpha"),
    ({"extra_body": {"top_k": -1}}, "top_k"),
    ({"extra_body": {"min_tokens": 50}, "max_tokens": 10}, "min_tokens"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"n": "many"}, "n"),
])
def test_bad_chat_fields_are_400_naming_the_field(oai, kwargs, param):
    body = {"model": "diffamp", "messages": QUESTION, "max_tokens": 4, **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(**body)
    assert info.value.param == param and info.value.status_code == 400
    assert info.value.body["message"].startswith(param) and info.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize("prompt,param", [([5, 10**6], "prompt[1]"), ("", "prompt"), (["a", "b"], "prompt"),
                                          ("x" * 100_000, "prompt")])
def test_bad_completion_prompts_are_400(oai, prompt, param):
    with pytest.raises(openai.BadRequestError) as info:
        oai.completions.create(model="diffamp", prompt=prompt, max_tokens=4)
    assert info.value.param == param


def test_unknown_model_is_404_like_openai(oai):
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert info.value.code == "model_not_found" and info.value.param == "model"


def test_a_missing_or_wrong_token_is_401_and_health_stays_open(base_url, certs, server):
    before = server.running.gateway.scheduler.live_sequences
    with pytest.raises(openai.AuthenticationError) as info:
        _client(base_url, certs, token="wrong").chat.completions.create(model="diffamp", messages=QUESTION)
    assert info.value.code == "invalid_api_key"
    for path, body in (("/v1/chat/completions", {"model": "diffamp", "messages": QUESTION}), ("/v1/models", None)):
        status, headers, text = _raw(base_url, certs, path, body, token=None)  # the openai client always sends one
        assert status == 401 and json.loads(text)["error"]["code"] == "invalid_api_key"
        assert headers["www-authenticate"] == "Bearer"
    assert _raw(base_url, certs, "/health", token=None)[:3:2] == (200, '{"status":"serving"}')
    assert server.running.gateway.scheduler.live_sequences == before


def test_bad_json_and_unknown_paths_get_openai_error_bodies(base_url, certs):
    status, _, text = _raw(base_url, certs, "/v1/embeddings", {"model": "diffamp"})
    assert status == 404 and json.loads(text)["error"]["code"] == "not_found"
    req = urllib.request.Request(base_url + "/v1/completions", data=b"{nope",
                                 headers={"authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, context=ssl.create_default_context(cafile=str(certs["ca"])))
    assert info.value.code == 400 and "not valid JSON" in json.loads(info.value.read())["error"]["message"]


def test_more_than_the_queue_holds_is_429(oai, base_url, certs):
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model="diffamp", messages=QUESTION, n=MAX_BATCH + MAX_QUEUED + 1, max_tokens=4)
    assert info.value.code == "queue_full" and info.value.response.headers["retry-after"] == "1"


def test_a_burst_gets_429_for_the_excess_and_completes_the_rest(oai):
    def one(i):
        try:
            r = oai.chat.completions.create(model="diffamp", messages=QUESTION, n=6, seed=i, max_tokens=40,
                                            temperature=1.0, extra_body={"min_tokens": 40})
            return len(r.choices)
        except openai.RateLimitError:
            return 429

    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(one, range(10)))
    assert set(outcomes) <= {6, 429} and outcomes.count(429) > 0 and outcomes.count(6) > 0


def test_a_client_that_leaves_mid_stream_frees_its_rows(oai, server):
    stream = oai.chat.completions.create(model="diffamp", messages=QUESTION, n=4, max_tokens=100, stream=True,
                                        extra_body={"min_tokens": 100})
    next(iter(stream))
    stream.close()
    scheduler = server.running.gateway.scheduler
    deadline = time.monotonic() + 10
    while (scheduler.live_sequences or scheduler.queued_sequences) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scheduler.live_sequences == 0 and scheduler.queued_sequences == 0


def test_a_client_that_stops_reading_pauses_within_the_gateway_buffer_and_resumes_when_it_reads(server, certs):
    """The HTTP side adds no buffer of its own: uvicorn's send waits for the socket, so the gateway's bounded
    stream buffer fills and the scheduler stops advancing the request. 24 samples x 100 tokens with 100 top
    logprobs are about 14 MB of events, far more than the socket buffers (about 4 MB here) hold. Reading again
    resumes it: the buffer wakes the step loop once drained below half (it used to miss that wake-up when
    it drained a little at a time, and the stream hung)."""
    gateway = server.running.gateway
    body = json.dumps({"model": "diffamp", "messages": QUESTION, "n": MAX_BATCH + MAX_QUEUED, "max_tokens": 100,
                       "min_tokens": 100, "logprobs": True, "top_logprobs": MAX_LOGPROBS,
                       "stream": True}).encode()
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    raw.connect(("127.0.0.1", server.running.http_port))
    conn = ssl.create_default_context(cafile=str(certs["ca"])).wrap_socket(raw, server_hostname="127.0.0.1")
    conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
                 + f"authorization: Bearer {TOKEN}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
    try:
        deadline = time.monotonic() + 30
        states = []
        while not (states and states[0].sink.full) and time.monotonic() < deadline:
            states = gateway.scheduler.live_requests()
            time.sleep(0.05)
        [state] = states
        assert state.sink.full and not state.finished
        calls = gateway.calls
        time.sleep(1.0)
        assert gateway.calls == calls and not state.finished  # paused: no worker call advanced it
        one_call = MAX_BATCH * server.config.decode_steps * (64 + 48 + 32 * MAX_LOGPROBS)  # streams.event_bytes
        assert state.sink.bytes < BUFFER_MB * 2**20 + one_call  # the limit, passed by at most one worker call
        conn.settimeout(60)
        received = bytearray()
        while not received.endswith(b"\r\n0\r\n\r\n"):  # reading again resumes it, to the end of the body
            data = conn.recv(1 << 20)
            assert data, bytes(received[-300:])
            received += data
        assert b"data: [DONE]" in received[-100:]
        assert received.count(b'"finish_reason":"length"') == MAX_BATCH + MAX_QUEUED
    finally:
        conn.close()
    assert not gateway.scheduler.live_requests()


def test_draining_answers_503_and_lets_streams_finish(oai, server, base_url, certs):
    """Runs last: it drains the module's server."""
    stream = oai.chat.completions.create(model="diffamp", messages=QUESTION, max_tokens=60, stream=True, seed=1,
                                        extra_body={"min_tokens": 60})
    first = next(iter(stream))
    drain = threading.Thread(target=server.run, args=(server.running.gateway.drain(30),))
    drain.start()
    deadline = time.monotonic() + 5
    while server.running.gateway.admitting and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(openai.InternalServerError) as info:
        oai.chat.completions.create(model="diffamp", messages=QUESTION, max_tokens=4)
    assert info.value.status_code == 503 and info.value.code == "shutting_down"
    assert _raw(base_url, certs, "/health", token=None)[0] == 503
    rest = [c for c in stream]
    assert first.choices[0].delta.role == "assistant" and rest[-1].choices[0].finish_reason == "length"
    drain.join(30)
