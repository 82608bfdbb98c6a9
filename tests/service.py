"""Helpers for tests that talk to a real server."""

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from diffamp import messages
from diffamp.v1 import diffamp_pb2 as pb
from diffamp.v1 import diffamp_pb2_grpc

PROMPT_FIELDS = ("prompt", "messages", "prompt_token_ids", "system_prompt", "raw")
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "max_new_tokens", "min_new_tokens", "stop")


def client(address: str) -> diffamp_pb2_grpc.AmplificationServiceStub:
    return diffamp_pb2_grpc.AmplificationServiceStub(grpc.insecure_channel(address))


def collect(stream) -> dict[int, dict]:
    """Chunks of a Generate stream, grouped per sample."""
    samples: dict[int, dict] = {}
    for chunk in stream:
        s = samples.setdefault(chunk.index, {"text": "", "token_ids": [], "logprobs": [], "chunks": 0,
                                             "finish_reason": 0})
        s["text"] += chunk.text
        s["token_ids"] += list(chunk.token_ids)
        s["logprobs"] += list(chunk.logprobs)
        s["chunks"] += 1
        if chunk.finish_reason:
            assert s["finish_reason"] == 0, "a sample finished twice"
            s.update(finish_reason=chunk.finish_reason, completion_tokens=chunk.completion_tokens,
                     prompt_tokens=chunk.prompt_tokens, seed=chunk.seed)
    return samples


def bad_request_field(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return bad.field_violations[0].field
    raise AssertionError(f"no BadRequest detail in {status}")


def prompt_of(fields: dict) -> pb.Prompt:
    return messages.prompt(fields.pop("prompt", ""), messages=fields.pop("messages", ()),
                           token_ids=fields.pop("prompt_token_ids", ()), system_prompt=fields.pop("system_prompt", ""),
                           raw=fields.pop("raw", False))


def sampling_of(fields: dict) -> pb.SamplingOptions:
    return messages.sampling(**{k: fields.pop(k) for k in SAMPLING_FIELDS if k in fields})


def request(**fields) -> pb.GenerateRequest:
    """A GenerateRequest from flat keyword fields (prompt defaults to "hello world", max_new_tokens to 8)."""
    fields.setdefault("prompt", "hello world")
    fields.setdefault("max_new_tokens", 8)
    return pb.GenerateRequest(prompt=prompt_of(fields), sampling=sampling_of(fields), **fields)


def compare_request(**fields) -> pb.CompareRequest:
    return pb.CompareRequest(prompt=prompt_of(fields), sampling=sampling_of(fields), **fields)
