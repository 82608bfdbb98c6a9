"""The gRPC servicer: translate the proto in, call the gateway, translate the result out."""

from __future__ import annotations

import asyncio

from diffamp.common.sweep import SummaryRow, SweepRecord
from diffamp.v1 import diffamp_pb2 as pb
from diffamp.v1 import diffamp_pb2_grpc

from . import clients
from .calls import current_call
from .errors import InvalidArgument
from .events import FINISH_LENGTH, FINISH_STOP, FINISH_STOP_STRING, SampleEvent
from .gateway import Gateway, ServerInfo
from .engine.model import RunnerInfo
from .plan import TokenLogprobs
from .request import GenerateInput, PromptInput, SamplingInput
from .status import grpc_errors
from .sweep import DetectorInput, SweepInput, SweepProgress, SweepSummaryItem, run_sweep, validate_sweep

FINISH_REASONS = {
    FINISH_STOP: pb.FINISH_REASON_STOP,
    FINISH_LENGTH: pb.FINISH_REASON_LENGTH,
    FINISH_STOP_STRING: pb.FINISH_REASON_STOP_STRING,
}
COMPARE_MODELS = {"after": pb.COMPARE_MODEL_AFTER, "before": pb.COMPARE_MODEL_BEFORE}


def prompt_input(p: pb.Prompt, prefix: str = "prompt", max_items: int | None = None) -> PromptInput:
    """A Prompt message as the domain's PromptInput. With max_items, a conversation or id list longer than that
    is refused before any of it is copied (each turn and id costs at least one token of the context)."""
    source = p.WhichOneof("source")
    if max_items is not None:
        count = (len(p.conversation.messages) if source == "conversation" else
                 len(p.token_ids.ids) if source == "token_ids" else 0)
        if count > max_items:
            kind = "conversation.messages" if source == "conversation" else "token_ids.ids"
            raise InvalidArgument(prefix, f"{count} {kind} cannot fit the context limit of {max_items} tokens")
    return PromptInput(
        text=p.text if source == "text" else "",
        messages=tuple((m.role, m.content) for m in p.conversation.messages) if source == "conversation" else (),
        token_ids=tuple(p.token_ids.ids) if source == "token_ids" else (),
        system_prompt=p.system_prompt, raw=p.raw, field_prefix=prefix)


def sampling_input(s: pb.SamplingOptions) -> SamplingInput:
    return SamplingInput(temperature=s.temperature if s.HasField("temperature") else None,
                         top_p=s.top_p if s.HasField("top_p") else None, top_k=s.top_k,
                         max_new_tokens=s.max_new_tokens, min_new_tokens=s.min_new_tokens, stop=tuple(s.stop))


def _optional(msg, name):
    return getattr(msg, name) if msg.HasField(name) else None


def mode_name(value: int) -> str:
    return "logits" if value == pb.AMPLIFICATION_MODE_UNSPECIFIED else \
        pb.AmplificationMode.Name(value).removeprefix("AMPLIFICATION_MODE_").lower()


MODES = {"logits": pb.AMPLIFICATION_MODE_LOGITS, "weights": pb.AMPLIFICATION_MODE_WEIGHTS}


def generate_input(req: pb.GenerateRequest, max_items: int) -> GenerateInput:
    return GenerateInput(prompt=prompt_input(req.prompt, max_items=max_items), sampling=sampling_input(req.sampling),
                         alpha=_optional(req, "alpha"), n=req.n, seed=_optional(req, "seed"),
                         logprobs=_optional(req, "logprobs"), first_sample_index=req.first_sample_index,
                         mode=mode_name(req.mode), lora_layers=tuple(req.lora_layers))


def compare_input(req: pb.CompareRequest, max_items: int) -> GenerateInput:
    return GenerateInput(prompt=prompt_input(req.prompt, max_items=max_items), sampling=sampling_input(req.sampling),
                         seed=_optional(req, "seed"))


async def sweep_input(req: pb.SweepRequest, max_items: int, chunk: int = 256) -> SweepInput:
    """The SweepRequest as a SweepInput; converting a big request yields to the event loop every `chunk` prompts."""
    prompts = []
    for i, p in enumerate(req.prompts):
        prompts.append((p.id, prompt_input(p.prompt, f"prompts[{i}].prompt", max_items)))
        if i % chunk == chunk - 1:
            await asyncio.sleep(0)
    return SweepInput(
        prompts=tuple(prompts), alphas=tuple(req.alphas), n=req.n, sampling=sampling_input(req.sampling),
        seed=req.seed,
        detectors=tuple(DetectorInput(name=d.name,
                                      substring=d.substring if d.WhichOneof("test") == "substring" else None,
                                      regex=d.regex if d.WhichOneof("test") == "regex" else None,
                                      ignore_case=d.ignore_case) for d in req.detectors),
        completed=tuple((c.prompt_id, mode_name(c.mode), c.alpha, tuple((r.first, r.count) for r in c.ranges))
                        for c in req.completed),
        modes=tuple(mode_name(m) for m in req.modes) or ("logits",), lora_layers=tuple(req.lora_layers))


def client_key(context) -> str:
    """Whom fairness counts a request against (clients.client_key)."""
    authorization = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), None)
    return clients.client_key(authorization, context.peer() or "")


class AmplificationServicer(diffamp_pb2_grpc.AmplificationServiceServicer):
    def __init__(self, gateway: Gateway, *, max_message_bytes: int):
        self.gateway = gateway
        self.max_message_bytes = max_message_bytes

    @grpc_errors
    async def Generate(self, request, context):
        call = current_call()
        call.note_prompt(request.prompt)
        inp = generate_input(request, self.gateway.limits.max_seq_len)
        async for event in self.gateway.generate(inp, client_key(context)):
            call.event(event)
            await context.write(self._generate_response(event))

    @grpc_errors
    async def Compare(self, request, context):
        call = current_call()
        call.note_prompt(request.prompt)
        inp = compare_input(request, self.gateway.limits.max_seq_len)
        async for label, event in self.gateway.compare(inp, client_key(context)):
            call.event(event)
            await context.write(pb.CompareResponse(
                model=COMPARE_MODELS[label], text=event.text, token_ids=event.token_ids,
                finish_reason=FINISH_REASONS.get(event.finish_reason, pb.FINISH_REASON_UNSPECIFIED),
                completion_tokens=event.completion_tokens, seed=event.seed))

    @grpc_errors
    async def Sweep(self, request, context):
        self.gateway.check_admitting()
        inp = await sweep_input(request, self.gateway.limits.max_seq_len)
        plan = await validate_sweep(inp, self.gateway.limits, self.max_message_bytes)
        call = current_call()
        async for item in run_sweep(self.gateway, plan, client_key(context)):
            if isinstance(item, SweepRecord):
                call.sweep_record(item)
            await context.write(_sweep_response(item))

    @grpc_errors
    async def CheckTokenizers(self, request, context):
        r = self.gateway.check_tokenizers()
        return pb.CheckTokenizersResponse(
            compatible=r.compatible, after_vocab_size=r.after_vocab_size, before_vocab_size=r.before_vocab_size,
            shared_vocab_size=self.gateway.tokenizers.shared.count,
            mismatches=[pb.TokenMismatch(token_id=i, after_token=a, before_token=b) for i, a, b in r.mismatches])

    @grpc_errors
    async def GetModelInfo(self, request, context):
        info: ServerInfo = await self.gateway.info()
        first = info.replicas[0].info
        return pb.GetModelInfoResponse(
            after=_model_info(first.after, first.after_node), before=_model_info(first.before, first.before_node),
            placement=first.placement, live_sequences=info.live_sequences, queued_sequences=info.queued_sequences,
            max_batch_size=sum(r.info.slots for r in info.replicas), max_seq_len=info.max_seq_len,
            kv_tokens_used=info.kv_tokens_used,
            kv_cache_bytes=sum(r.info.after.kv_cache_bytes + r.info.before.kv_cache_bytes for r in info.replicas),
            shared_vocab_size=info.shared_vocab_size, engine=first.after.engine,
            replicas=[_replica_load(r) for r in info.replicas], lora=self.gateway.limits.lora_layers is not None,
            layers=first.after.layers)

    def _generate_response(self, event: SampleEvent) -> pb.GenerateResponse:
        return pb.GenerateResponse(
            index=event.index, text=event.text, token_ids=event.token_ids,
            logprobs=[self._logprobs(t, lp) for t, lp in zip(event.token_ids, event.logprobs)],
            finish_reason=FINISH_REASONS.get(event.finish_reason, pb.FINISH_REASON_UNSPECIFIED),
            prompt_tokens=event.prompt_tokens, completion_tokens=event.completion_tokens, seed=event.seed)

    def _logprobs(self, token_id: int, lp: TokenLogprobs) -> pb.TokenLogprobs:
        text = self.gateway.tokenizers.token_text
        return pb.TokenLogprobs(
            token_id=token_id, token=text(token_id), amplified=lp.amplified, after=lp.after, before=lp.before,
            sampled=lp.sampled, kl_after_before=lp.kl_after_before,
            top=[pb.TopLogprob(token_id=i, token=text(i), logprob=v) for i, v in zip(lp.top_ids, lp.top_logprobs)])


class AdminServicer(diffamp_pb2_grpc.AdminServiceServicer):
    def __init__(self, gateway: Gateway, replicas):
        self.gateway = gateway
        self.replicas = replicas

    @grpc_errors
    async def SetReplicas(self, request, context):
        if request.replicas < 0:
            raise InvalidArgument("replicas", f"{request.replicas} is negative; 0 means auto")
        await self.replicas.scale_to(request.replicas)
        info = await self.gateway.info()
        return pb.SetReplicasResponse(replicas=[_replica_load(r) for r in info.replicas])


def _replica_load(r) -> pb.ReplicaLoad:
    return pb.ReplicaLoad(id=r.info.id, healthy=r.healthy, live_sequences=r.live_sequences, kv_slots=r.info.slots,
                          after_node=r.info.after_node, before_node=r.info.before_node, admitting=r.admitting)


def _sweep_response(item) -> pb.SweepResponse:
    if isinstance(item, SweepRecord):
        return pb.SweepResponse(sample=pb.SweepSample(
            prompt_id=item.prompt_id, alpha=item.alpha, index=item.index, seed=item.seed, text=item.text,
            token_ids=item.token_ids, finish_reason=FINISH_REASONS[item.finish_reason], detectors=item.detectors,
            logprob_after=item.logprob_after, logprob_before=item.logprob_before,
            logprob_sampled=item.logprob_sampled, mode=MODES[item.mode]))
    if isinstance(item, SweepProgress):
        return pb.SweepResponse(progress=pb.SweepProgress(
            done=item.done, total=item.total, skipped=item.skipped, tokens=item.tokens, elapsed_s=item.elapsed_s,
            samples_per_s=item.samples_per_s, eta_s=item.eta_s))
    if isinstance(item, SweepSummaryItem):
        return pb.SweepResponse(summary=pb.SweepSummary(rows=[_summary_row(r) for r in item.rows]))
    raise TypeError(f"not a sweep item: {type(item).__name__}")


def _summary_row(r: SummaryRow) -> pb.SweepSummaryRow:
    row = pb.SweepSummaryRow(alpha=r.alpha, detector=r.detector, hits=r.hits, n=r.n, rate=r.rate, wilson_low=r.low,
                             wilson_high=r.high, mode=MODES[r.mode])
    if r.estimate:
        e = r.estimate
        row.estimate.CopyFrom(pb.ImportanceEstimate(rate=e.rate, low=e.low, high=e.high, ess=e.ess, exact=e.exact,
                                                    warning=e.warning))
    return row


def _model_info(info: RunnerInfo, node: str) -> pb.ModelInfo:
    return pb.ModelInfo(
        model_id=info.model_id, architectures=list(info.architectures), dtype=info.dtype, device=info.device,
        context_length=info.context_length, logits_size=info.logits_size, node=node,
    )
