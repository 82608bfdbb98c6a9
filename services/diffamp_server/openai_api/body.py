"""A request body, bounded in size, parsed into its schema; every failure an HttpError naming the field."""

from __future__ import annotations

import json

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from .errors import HttpError
from .schemas import unsupported_fields


def _param(loc: tuple) -> str | None:
    """A pydantic error location as an OpenAI param: ('messages', 0, 'content', 'str') -> messages[0].content."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier() and part not in ("str", "int", "float", "bool", "list",
                                                                             "dict", "none"):
            out += ("." if out else "") + part
    return out or None


async def parse(request: Request, model: type[BaseModel], limit: int):
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise HttpError(413, f"the body of {length} bytes exceeds the limit of {limit}", code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"the body exceeds the limit of {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise HttpError(400, f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise HttpError(400, "the body must be a JSON object")
    try:
        req = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(first["loc"])
        raise HttpError(400, f"{param or 'body'}: {first['msg']}", param=param, code="invalid_type") from None
    if unsupported := unsupported_fields(req):
        field, why = unsupported[0]
        raise HttpError(400, f"{field}: {why}", param=field, code="unsupported_parameter")
    return req
