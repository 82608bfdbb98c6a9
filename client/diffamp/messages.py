"""The client's translation between the neutral types (diffamp.common) and the generated messages."""

from __future__ import annotations

from diffamp.common.detectors import Detector
from diffamp.common.seeds import to_ranges
from diffamp.common.sweep import SweepPrompt, SweepRecord, SweepSettings
from diffamp.v1 import diffamp_pb2 as pb


def finish_name(value: int) -> str:
    return pb.FinishReason.Name(value).removeprefix("FINISH_REASON_").lower()


def mode_value(name: str) -> int:
    """'logits' / 'weights' -> AmplificationMode."""
    return pb.AmplificationMode.Value(f"AMPLIFICATION_MODE_{name.upper()}")


def mode_name(value: int) -> str:
    return "logits" if value == pb.AMPLIFICATION_MODE_UNSPECIFIED else \
        pb.AmplificationMode.Name(value).removeprefix("AMPLIFICATION_MODE_").lower()


def prompt(text: str = "", *, messages=(), token_ids=(), system_prompt: str = "", raw: bool = False) -> pb.Prompt:
    """A Prompt message from exactly one of text, messages ((role, content) pairs or dicts) or token ids."""
    if messages:
        turns = [pb.ChatMessage(role=m["role"], content=m["content"]) if isinstance(m, dict)
                 else pb.ChatMessage(role=m[0], content=m[1]) for m in messages]
        return pb.Prompt(conversation=pb.Conversation(messages=turns))
    if token_ids:
        return pb.Prompt(token_ids=pb.TokenIds(ids=list(token_ids)))
    return pb.Prompt(text=text, system_prompt=system_prompt, raw=raw)


def sampling(*, temperature: float | None = None, top_p: float | None = None, top_k: int = 0,
             max_new_tokens: int = 0, min_new_tokens: int = 0, stop=()) -> pb.SamplingOptions:
    """SamplingOptions; None and 0 leave a field unset (the server's default)."""
    options = pb.SamplingOptions(top_k=top_k, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                                 stop=list(stop))
    if temperature is not None:
        options.temperature = temperature
    if top_p is not None:
        options.top_p = top_p
    return options


def sweep_prompt(p: SweepPrompt) -> pb.SweepPrompt:
    return pb.SweepPrompt(id=p.id, prompt=prompt(p.text, messages=p.messages, token_ids=p.token_ids,
                                                  system_prompt=p.system_prompt, raw=p.raw))


def detector(d: Detector) -> pb.Detector:
    if d.regex is not None:
        return pb.Detector(name=d.name, regex=d.regex)
    return pb.Detector(name=d.name, substring=d.substring, ignore_case=d.ignore_case)


def sweep_request(prompts: list[SweepPrompt], settings: SweepSettings, detectors: list[Detector],
                  completed: dict[tuple[str, str, float], list[int]]) -> pb.SweepRequest:
    """A SweepRequest; `completed` maps (prompt id, mode, alpha) to the sample indices already done."""
    return pb.SweepRequest(
        prompts=[sweep_prompt(p) for p in prompts], alphas=list(settings.alphas), n=settings.n, seed=settings.seed,
        sampling=sampling(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k,
                          max_new_tokens=settings.max_new_tokens, min_new_tokens=settings.min_new_tokens,
                          stop=settings.stop),
        detectors=[detector(d) for d in detectors if d.portable],
        completed=[pb.CompletedSamples(prompt_id=p, alpha=a, mode=mode_value(m),
                                       ranges=[pb.IndexRange(first=f, count=c) for f, c in to_ranges(indices)])
                   for (p, m, a), indices in sorted(completed.items()) if indices],
        modes=[mode_value(m) for m in settings.modes], lora_layers=list(settings.lora_layers),
    )


def sweep_record(s: pb.SweepSample) -> SweepRecord:
    return SweepRecord(prompt_id=s.prompt_id, alpha=s.alpha, index=s.index, seed=s.seed, text=s.text,
                       token_ids=tuple(s.token_ids), finish_reason=finish_name(s.finish_reason),
                       detectors=tuple(s.detectors), logprob_after=s.logprob_after,
                       logprob_before=s.logprob_before, logprob_sampled=s.logprob_sampled, mode=mode_name(s.mode))
