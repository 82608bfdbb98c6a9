"""The gRPC servicer: translate the proto in, call the gateway, translate the result out."""

from __future__ import annotations

from diffamp.v1 import diffamp_pb2 as pb
from diffamp.v1 import diffamp_pb2_grpc

from .gateway import Gateway, ServerInfo
from .model_runner import RunnerInfo
from .plan import TokenLogprobs
from .request import GenerateInput
from .scheduler import FINISH_LENGTH, FINISH_STOP, FINISH_STOP_STRING
from .status import grpc_errors

FINISH_REASONS = {
    FINISH_STOP: pb.FINISH_REASON_STOP,
    FINISH_LENGTH: pb.FINISH_REASON_LENGTH,
    FINISH_STOP_STRING: pb.FINISH_REASON_STOP_STRING,
}
COMPARE_MODELS = {"after": pb.COMPARE_MODEL_AFTER, "before": pb.COMPARE_MODEL_BEFORE}


def _optional(msg, name):
    return getattr(msg, name) if msg.HasField(name) else None


def generate_input(req) -> GenerateInput:
    """GenerateRequest or CompareRequest -> GenerateInput (Compare has no alpha, n or logprobs)."""
    has = {f.name for f in req.DESCRIPTOR.fields}
    return GenerateInput(
        prompt=req.prompt,
        system_prompt=req.system_prompt,
        messages=tuple((m.role, m.content) for m in req.messages),
        prompt_token_ids=tuple(req.prompt_token_ids),
        raw_prompt=req.raw_prompt,
        alpha=_optional(req, "alpha") if "alpha" in has else None,
        n=req.n if "n" in has else 0,
        max_new_tokens=req.max_new_tokens,
        temperature=_optional(req, "temperature"),
        top_p=_optional(req, "top_p"),
        top_k=req.top_k,
        seed=_optional(req, "seed"),
        stop=tuple(req.stop),
        logprobs=_optional(req, "logprobs") if "logprobs" in has else None,
        first_sample_index=req.first_sample_index if "first_sample_index" in has else 0,
    )


class AmplificationServicer(diffamp_pb2_grpc.AmplificationServiceServicer):
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    @grpc_errors
    async def Generate(self, request, context):
        async for event in self.gateway.generate(generate_input(request)):
            yield pb.GenerateResponse(
                index=event.index,
                text=event.text,
                token_ids=event.token_ids,
                logprobs=[self._logprobs(t, lp) for t, lp in zip(event.token_ids, event.logprobs)],
                finish_reason=FINISH_REASONS.get(event.finish_reason, pb.FINISH_REASON_UNSPECIFIED),
                prompt_tokens=event.prompt_tokens,
                completion_tokens=event.completion_tokens,
                seed=event.seed,
            )

    @grpc_errors
    async def Compare(self, request, context):
        async for label, event in self.gateway.compare(generate_input(request)):
            yield pb.CompareResponse(
                model=COMPARE_MODELS[label],
                text=event.text,
                token_ids=event.token_ids,
                finish_reason=FINISH_REASONS.get(event.finish_reason, pb.FINISH_REASON_UNSPECIFIED),
                completion_tokens=event.completion_tokens,
                seed=event.seed,
            )

    @grpc_errors
    async def CheckTokenizers(self, request, context):
        r = self.gateway.check_tokenizers()
        return pb.CheckTokenizersResponse(
            compatible=r.compatible,
            after_vocab_size=r.after_vocab_size,
            before_vocab_size=r.before_vocab_size,
            shared_vocab_size=r.shared_vocab_size,
            mismatches=[pb.TokenMismatch(token_id=i, after_token=a, before_token=b) for i, a, b in r.mismatches],
        )

    @grpc_errors
    async def GetModelInfo(self, request, context):
        info: ServerInfo = await self.gateway.info()
        return pb.GetModelInfoResponse(
            after=_model_info(info.after, info.after_node),
            before=_model_info(info.before, info.before_node),
            placement=info.placement,
            live_sequences=info.live_sequences,
            queued_sequences=info.queued_sequences,
            max_batch_size=info.max_batch_size,
            max_seq_len=info.max_seq_len,
            kv_tokens_used=info.kv_tokens_used,
            kv_cache_bytes=info.after.kv_cache_bytes + info.before.kv_cache_bytes,
            shared_vocab_size=info.shared_vocab_size,
        )

    def _logprobs(self, token_id: int, lp: TokenLogprobs) -> pb.TokenLogprobs:
        text = self.gateway.tokenizers.token_text
        return pb.TokenLogprobs(
            token_id=token_id, token=text(token_id), amplified=lp.amplified, after=lp.after, before=lp.before, sampled=lp.sampled,
            kl_after_before=lp.kl_after_before,
            top=[pb.TopLogprob(token_id=i, token=text(i), logprob=v) for i, v in zip(lp.top_ids, lp.top_logprobs)],
        )


def _model_info(info: RunnerInfo, node: str) -> pb.ModelInfo:
    return pb.ModelInfo(
        model_id=info.model_id, architectures=list(info.architectures), dtype=info.dtype, device=info.device,
        context_length=info.context_length, logits_size=info.logits_size, node=node,
    )
