"""TLS and bearer-token auth end to end with the CLI, and a fuzz of garbage requests."""

import logging
import re
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certs import write_certs
from diffamp_server.background import BackgroundServer
from diffamp.v1 import diffamp_pb2 as pb
from diffamp.v1 import diffamp_pb2_grpc
from diffamp_server.config import ServerConfig
from service import collect, prompt_of, request, sampling_of

TOKEN = "s3cret-token-value"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return write_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(ray_cluster, llama_pair, certs):
    after, before = llama_pair
    config = ServerConfig(after=str(after), before=str(before), port=0, max_batch_size=8, max_seq_len=64,
                          max_n=4, auth_token=TOKEN, tls_cert=str(certs["cert"]), tls_key=str(certs["key"]))
    srv = BackgroundServer(config)
    yield srv
    srv.stop()


def _secure_stub(server, certs, token=None):
    creds = grpc.ssl_channel_credentials(root_certificates=certs["ca"].read_bytes())
    channel = grpc.secure_channel(server.address, creds)
    return channel, diffamp_pb2_grpc.AmplificationServiceStub(channel), token


def _cli(server, certs, *args):
    return subprocess.run([sys.executable, "-m", "diffamp.cli", *args, "--server", server.address,
                           "--tls-ca", str(certs["ca"])], capture_output=True, text=True, timeout=60)


def test_cli_with_tls_and_token(server, certs):
    out = _cli(server, certs, "generate", "hi", "--max-new-tokens", "4", "--seed", "1", "--json", "--token", TOKEN)
    assert out.returncode == 0, out.stderr
    assert '"finish_reason"' in out.stdout
    assert _cli(server, certs, "info", "--token", TOKEN).returncode == 0


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x"])
def test_missing_or_wrong_token_is_unauthenticated_and_does_no_work(server, certs, token):
    steps = server.running.gateway.calls
    args = ["generate", "hi", "--max-new-tokens", "4"] + (["--token", token] if token else [])
    out = _cli(server, certs, *args)
    assert out.returncode == 1 and "UNAUTHENTICATED" in out.stderr
    out = _cli(server, certs, "info", *(["--token", token] if token else []))
    assert "UNAUTHENTICATED" in out.stderr
    assert server.running.gateway.calls == steps


def test_health_stays_open_and_plaintext_is_refused(server, certs):
    channel, _, _ = _secure_stub(server, certs)
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    plain = diffamp_pb2_grpc.AmplificationServiceStub(grpc.insecure_channel(server.address))
    with pytest.raises(grpc.RpcError):
        plain.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)


def test_the_token_never_reaches_the_logs(server, certs, caplog):
    caplog.set_level(logging.DEBUG)
    _cli(server, certs, "info", "--token", "wrong-" + TOKEN)
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(server.running.config)


def test_a_refused_call_is_logged_with_its_code_and_the_request_id_the_cli_prints(server, certs, caplog):
    caplog.set_level(logging.INFO, logger="diffamp.requests")
    out = _cli(server, certs, "info", "--token", "wrong-" + TOKEN)
    found = re.search(r"UNAUTHENTICATED: .*\(request id ([0-9a-f]{32})\)", out.stderr)
    assert found, out.stderr
    deadline = time.time() + 10
    while not (mine := [r for r in caplog.records if getattr(r, "request_id", None) == found.group(1)]):
        assert time.time() < deadline, caplog.text
        time.sleep(0.05)
    assert mine[0].fields["rpc"] == "GetModelInfo" and mine[0].fields["code"] == "UNAUTHENTICATED"
    assert TOKEN not in caplog.text


FIELDS = st.fixed_dictionaries({}, optional={
    "prompt": st.text(max_size=200),
    "system_prompt": st.text(max_size=50),
    "messages": st.lists(st.tuples(st.sampled_from(["user", "system", "assistant", "", "root", "🤖"]),
                                   st.text(max_size=40)), max_size=3),
    "prompt_token_ids": st.lists(st.integers(-2**31, 2**31 - 1), max_size=20),
    "raw": st.booleans(),
    "alpha": st.floats(allow_nan=True, allow_infinity=True, width=32),
    "n": st.integers(-5, 10),
    "max_new_tokens": st.integers(-10, 100),
    "temperature": st.floats(allow_nan=True, allow_infinity=True, width=32),
    "top_p": st.floats(allow_nan=True, allow_infinity=True, width=32),
    "top_k": st.integers(-2**31, 2**31 - 1),
    "seed": st.integers(0, 2**64 - 1),
    "stop": st.lists(st.text(max_size=80), max_size=10),
    "logprobs": st.integers(-3, 30),
    "first_sample_index": st.integers(0, 2**32 - 1),
})
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


@pytest.fixture(scope="module")
def authed_stub(server, certs):
    creds = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=certs["ca"].read_bytes()),
        grpc.access_token_call_credentials(TOKEN))
    channel = grpc.secure_channel(server.address, creds)
    return channel, diffamp_pb2_grpc.AmplificationServiceStub(channel)


@settings(max_examples=450, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=FIELDS)
def test_fuzz_requests_always_get_a_status(authed_stub, fields):
    _, stub = authed_stub
    try:
        fields = dict(fields)
        message = pb.GenerateRequest(prompt=prompt_of(fields), sampling=sampling_of(fields), **fields)
        samples = collect(stub.Generate(message, timeout=30))
        code = grpc.StatusCode.OK
        assert all(s["finish_reason"] for s in samples.values())
    except grpc.RpcError as err:
        code = err.code()
    assert code in ALLOWED, fields


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=300))
def test_fuzz_garbage_bytes(authed_stub, garbage):
    channel, _ = authed_stub
    call = channel.unary_stream("/diffamp.v1.AmplificationService/Generate",
                                request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        list(call(garbage, timeout=30))
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_after_the_fuzz_a_normal_request_succeeds(authed_stub, server):
    _, stub = authed_stub
    samples = collect(stub.Generate(request(n=2, seed=5, max_new_tokens=6)))
    assert sorted(samples) == [0, 1] and all(s["finish_reason"] for s in samples.values())
    assert server.running.gateway.scheduler.live_sequences == 0


def test_reflection_needs_the_token_when_auth_is_on(server, certs, authed_stub):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    request = reflection_pb2.ServerReflectionRequest(list_services="")
    channel, _, _ = _secure_stub(server, certs)
    with pytest.raises(grpc.RpcError) as err:
        list(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request]), timeout=10))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    authed_channel, _ = authed_stub
    [answer] = list(reflection_pb2_grpc.ServerReflectionStub(authed_channel).ServerReflectionInfo(iter([request])))
    assert "diffamp.v1.AmplificationService" in {s.name for s in answer.list_services_response.service}
