"""Request bodies as OpenAI's API documents them, plus diffamp's extra fields. Parsing checks only shapes and
types (a wrong type is a 400 naming the field); every rule on the values is request.py's, shared with gRPC.

Fields OpenAI has and diffamp does not honour are refused when set to anything but their no-op value, rather
than silently ignored; fields that change nothing here (user, metadata, store, ...) are ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Body):
    type: str
    text: str | None = None


class Message(_Body):
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class Common(_Body):
    model: str
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    # diffamp's extra body fields
    alpha: float | None = None
    top_k: int | None = None
    min_tokens: int | None = None
    return_token_ids: bool | None = False
    # OpenAI fields diffamp does not honour: refused unless at their no-op value (unsupported_fields)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None


class ChatRequest(Common):
    messages: list[Message]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(Common):
    prompt: str | list[int] | list[str] | list[list[int]]
    logprobs: int | None = None
    echo: bool | None = False
    best_of: int | None = None
    suffix: str | None = None


def unsupported_fields(req: Common) -> list[tuple[str, str]]:
    """(field, why) for each OpenAI field set to something diffamp cannot do."""
    out = []
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            out.append((name, "penalties are not supported; leave it unset or 0"))
    if req.logit_bias:
        out.append(("logit_bias", "not supported; leave it unset or empty"))
    if isinstance(req, ChatRequest):
        if req.tools and req.tool_choice != "none":
            out.append(("tools", "tool calls are not supported"))
        if req.response_format and req.response_format.get("type", "text") != "text":
            out.append(("response_format", "only {\"type\": \"text\"} is supported"))
    if isinstance(req, CompletionRequest):
        if req.echo:
            out.append(("echo", "echoing the prompt (and its logprobs) is not supported"))
        if req.suffix:
            out.append(("suffix", "not supported"))
        if req.best_of is not None and req.best_of != (req.n or 1):
            out.append(("best_of", "not supported; leave it unset or equal to n"))
    return out
