"""Log output: `--log-format text` (one readable line per event) or `json` (one JSON object per line).

Structured fields travel on a record as `extra={"fields": {...}}` and are written as `key=value` pairs in
text and as top-level keys in JSON. Every record logged while an RPC runs (in its task) carries the RPC's
request id (calls.py); lines the gateway writes about a request elsewhere pass it in `extra` themselves.
"""

from __future__ import annotations

import json
import logging
import sys
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RESERVED = ("time", "level", "logger", "message")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (the running RPC's, or the one passed in `extra`) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            from .calls import current_request_id

            record.request_id = current_request_id()
        return True


def _fields(record: logging.LogRecord) -> dict:
    fields = dict(getattr(record, "fields", None) or {})
    request_id = getattr(record, "request_id", None)
    if request_id and "request_id" not in fields:
        fields = {"request_id": request_id, **fields}
    return fields


def _text_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(text, ensure_ascii=False) if (not text or any(c in text for c in ' "=\n')) else text


class TextFormatter(logging.Formatter):
    """The classic line, then the structured fields as key=value (values with spaces quoted)."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # a traceback stays below the line
        return head + " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items()) + sep + tail


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the structured fields, and
    the traceback under `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            entry[key if key not in RESERVED else f"field_{key}"] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(log_format: str = "text", level: int = logging.INFO, stream=None) -> logging.Handler:
    """Route every logger through one handler on stderr in the chosen format (replacing any earlier setup)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return handler
