"""The gRPC servicer: translate the proto in, call the gateway, translate the result out."""

from __future__ import annotations

from diffamp import detectors
from diffamp.detectors import Detector
from diffamp.sweep import SummaryRow, SweepPrompt, SweepSettings
from diffamp.v1 import diffamp_pb2 as pb
from diffamp.v1 import diffamp_pb2_grpc

from .gateway import Gateway, ServerInfo
from .model_runner import RunnerInfo
from .plan import TokenLogprobs
from .errors import InvalidArgument
from .request import GenerateInput
from .scheduler import FINISH_LENGTH, FINISH_STOP, FINISH_STOP_STRING
from .status import grpc_errors
from .sweep import SweepInput, SweepProgress

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
        min_new_tokens=req.min_new_tokens if "min_new_tokens" in has else 0,
    )


def sweep_input(req: pb.SweepRequest) -> SweepInput:
    """SweepRequest -> SweepInput. Unset options take the client's sweep defaults (SweepSettings): unfiltered
    sampling (temperature 1, top_p 1) and 48 new tokens."""
    options = GenerateInput(
        system_prompt=req.system_prompt, raw_prompt=req.raw_prompt,
        max_new_tokens=req.max_new_tokens or SweepSettings.max_new_tokens, min_new_tokens=req.min_new_tokens,
        temperature=req.temperature if req.HasField("temperature") else SweepSettings.temperature,
        top_p=req.top_p if req.HasField("top_p") else SweepSettings.top_p, top_k=req.top_k, stop=tuple(req.stop),
    )
    return SweepInput(
        prompts=tuple(SweepPrompt(p.id, p.prompt, tuple((m.role, m.content) for m in p.messages)) for p in req.prompts),
        alphas=tuple(req.alphas), n=req.n, options=options, seed=req.seed,
        detectors=tuple(_detector(i, d) for i, d in enumerate(req.detectors)),
        completed=frozenset((k.prompt_id, k.alpha, k.index) for k in req.completed),
    )


def _detector(index: int, d: pb.Detector) -> Detector:
    try:
        if d.WhichOneof("test") == "regex":
            return detectors.regex(d.name, d.regex)
        if d.WhichOneof("test") == "substring":
            return detectors.substring(d.name, d.substring, d.ignore_case)
    except ValueError as exc:
        raise InvalidArgument(f"detectors[{index}]", str(exc)) from None
    raise InvalidArgument(f"detectors[{index}]", "set substring or regex")


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
    async def Sweep(self, request, context):
        async for item in self.gateway.sweep(sweep_input(request)):
            if isinstance(item, dict):
                yield pb.SweepResponse(sample=pb.SweepSample(
                    prompt_id=item["prompt_id"], alpha=item["alpha"], index=item["index"], seed=item["seed"],
                    text=item["text"], token_ids=item["token_ids"],
                    finish_reason=FINISH_REASONS[item["finish_reason"]], detectors=item["detectors"],
                    logprob_after=item["logprob_after"], logprob_before=item["logprob_before"],
                    logprob_sampled=item["logprob_sampled"]))
            elif isinstance(item, SweepProgress):
                yield pb.SweepResponse(progress=pb.SweepProgress(
                    done=item.done, total=item.total, skipped=item.skipped, tokens=item.tokens,
                    elapsed_s=item.elapsed_s, samples_per_s=item.samples_per_s, eta_s=item.eta_s))
            else:
                yield pb.SweepResponse(summary=pb.SweepSummary(rows=[_summary_row(r) for r in item]))

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


def _summary_row(r: SummaryRow) -> pb.SweepSummaryRow:
    row = pb.SweepSummaryRow(alpha=r.alpha, detector=r.detector, hits=r.hits, n=r.n, rate=r.rate, wilson_low=r.low,
                             wilson_high=r.high)
    if r.estimate:
        e = r.estimate
        row.after_rate, row.after_rate_low, row.after_rate_high = e["after_rate"], e["low"], e["high"]
        row.ess, row.exact, row.warning = e["ess"], e["exact"], e["warning"]
    return row


def _model_info(info: RunnerInfo, node: str) -> pb.ModelInfo:
    return pb.ModelInfo(
        model_id=info.model_id, architectures=list(info.architectures), dtype=info.dtype, device=info.device,
        context_length=info.context_length, logits_size=info.logits_size, node=node,
    )
