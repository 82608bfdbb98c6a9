"""OpenAI requests in, the domain's GenerateInput out (output.py does the way back).

Field by field: messages -> the chat template (developer is system); a completions prompt string is raw text
(no chat template), a list of ints is token ids; max_completion_tokens / max_tokens -> max_new_tokens;
min_tokens -> min_new_tokens; top_k, temperature, top_p, stop, n, seed as they are; alpha from the body or
the model name; chat's logprobs + top_logprobs and completions' integer logprobs -> logprobs K. Choice i is
diffamp sample i, so a seed gives the same tokens as gRPC's Generate with that seed.

Two values mean "unset" to the domain but not to OpenAI: n = 0 and max_tokens = 0. They are refused here,
with the domain's wording; every other value goes through as sent and request.py judges it.
"""

from __future__ import annotations

from ..errors import InvalidArgument
from ..request import GenerateInput, PromptInput, SamplingInput
from .errors import ParamNames
from .schemas import ChatRequest, Common, CompletionRequest

ROLE_ALIASES = {"developer": "system"}


def _alpha(req: Common, name_alpha: float | None) -> float | None:
    if name_alpha is not None and req.alpha is not None and req.alpha != name_alpha:
        raise InvalidArgument("alpha", f"{req.alpha} conflicts with the model name's alpha {name_alpha:g}; "
                                       f"set one of them")
    return name_alpha if req.alpha is None else req.alpha


def _sampling(req: Common, max_tokens: int | None) -> SamplingInput:
    if max_tokens == 0:
        raise InvalidArgument("sampling.max_new_tokens", "0 is below 1")
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    return SamplingInput(temperature=req.temperature, top_p=req.top_p, top_k=req.top_k or 0,
                         max_new_tokens=max_tokens or 0, min_new_tokens=req.min_tokens or 0, stop=stop)


def _n(req: Common) -> int:
    if req.n == 0:
        raise InvalidArgument("n", "0 is below 1")
    return req.n or 0


def _content(i: int, content) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise InvalidArgument(f"prompt.conversation.messages[{i}].content",
                                  f"only text content parts are supported (got {part.type!r})")
        texts.append(part.text)
    return "\n".join(texts)


def param_names(req: Common, name_alpha: float | None) -> ParamNames:
    """How this request's fields are named in errors."""
    chat = isinstance(req, ChatRequest)
    max_field = "max_completion_tokens" if chat and req.max_completion_tokens is not None else "max_tokens"
    return ParamNames(chat=chat, max_tokens_field=max_field,
                      alpha_in_model=req.alpha is None and name_alpha is not None)


def chat_input(req: ChatRequest, name_alpha: float | None) -> GenerateInput:
    if req.top_logprobs and not req.logprobs:
        raise InvalidArgument("logprobs", "top_logprobs needs logprobs: true")
    messages = tuple((ROLE_ALIASES.get(m.role, m.role), _content(i, m.content)) for i, m in enumerate(req.messages))
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    return GenerateInput(prompt=PromptInput(messages=messages), sampling=_sampling(req, max_tokens),
                         alpha=_alpha(req, name_alpha), n=_n(req), seed=req.seed,
                         logprobs=(req.top_logprobs or 0) if req.logprobs else None)


def completion_input(req: CompletionRequest, name_alpha: float | None) -> GenerateInput:
    prompt = req.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        if len(prompt) > 1:
            raise InvalidArgument("prompt", f"a batch of {len(prompt)} prompts; send one prompt per request")
        prompt = prompt[0]
    source = PromptInput(text=prompt, raw=True) if isinstance(prompt, str) else PromptInput(token_ids=tuple(prompt))
    return GenerateInput(prompt=source, sampling=_sampling(req, req.max_tokens), alpha=_alpha(req, name_alpha),
                         n=_n(req), seed=req.seed, logprobs=req.logprobs)
