"""One record per RPC: its request id, what it asked for and got, and its timings. The CallInterceptor
(interceptors.py) makes it, returns the id to the client and, when the RPC ends, has it counted (metrics.py)
and its one finished-request log line written. The HTTP API's requests get one the same way
(openai_api/call_middleware.py). No gRPC here: the gateway notes its requests through it.

Request ids: a client's `x-request-id` metadata is used when it is a short token of safe characters, else
the server makes one. The id goes back in the initial metadata at the start of every RPC and in the trailing
metadata with its status (errors included), so a client can quote it, and it is on every log line written
in the RPC's task (logs.py). Prompts, completions and error messages (which can quote the request) are logged
only with --log-prompts.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from time import perf_counter

from .metrics import NO_METRICS

REQUEST_ID_KEY = "x-request-id"
SERVICE_PREFIX = "/diffamp.v1.AmplificationService/"
_VALID_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_CURRENT: contextvars.ContextVar["Call | None"] = contextvars.ContextVar("diffamp_call", default=None)

log = logging.getLogger("diffamp.requests")

_LEVELS = {"INTERNAL": logging.ERROR, "UNKNOWN": logging.ERROR, "DATA_LOSS": logging.ERROR,
           "UNAVAILABLE": logging.WARNING, "RESOURCE_EXHAUSTED": logging.WARNING, "DEADLINE_EXCEEDED": logging.WARNING}


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(given) -> str:
    """The client's id when it is acceptable (1-128 characters of A-Z a-z 0-9 . _ : / + = @ -), else a new one."""
    if isinstance(given, bytes):
        given = given.decode("ascii", "replace")
    return given if isinstance(given, str) and _VALID_ID.fullmatch(given) else new_request_id()


def current_call() -> "Call | NullCall":
    """The running RPC's record, or a stand-in that records nothing (library API, tests)."""
    return _CURRENT.get() or NULL_CALL


def current_request_id() -> str | None:
    call = _CURRENT.get()
    return call.id if call else None


def note_submitted(state) -> None:
    """The gateway queued a request (a sweep queues several) for the running RPC."""
    call = _CURRENT.get()
    if call is not None:
        call.submitted(state)


class NullCall:
    id = ""

    def submitted(self, state) -> None: ...

    def event(self, event) -> None: ...

    def sweep_record(self, record) -> None: ...

    def failed(self, exc: BaseException) -> None: ...

    def note_prompt(self, prompt) -> None: ...


NULL_CALL = NullCall()


class Call:
    """What one RPC did. Times are perf_counter seconds; the *_s figures are measured from the RPC's start."""

    def __init__(self, rpc: str, request_id: str, peer: str, metrics=NO_METRICS, log_prompts: bool = False):
        self.rpc = rpc
        self.id = request_id
        self.peer = peer
        self.started = perf_counter()
        self.m = metrics.rpc(rpc)
        self.log_prompts = log_prompts
        self.samples = 0
        self.finished = 0
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.detector_hits = 0
        self.submitted_at: float | None = None
        self.first_state = None
        self.first_token_at: float | None = None
        self._last_at: dict[int, float] = {}
        self.error: BaseException | None = None
        self.prompt = None
        self.completions: dict[int, str] | None = {} if log_prompts else None

    # -- while it runs ----------------------------------------------------------------------------------
    def submitted(self, state) -> None:
        state.request_id = self.id
        if self.submitted_at is None:
            self.submitted_at = perf_counter()
            self.first_state = state
        self.samples += state.n
        tokens = len(state.request.prompt.after_ids)
        self.prompt_tokens += tokens
        self.m.prompt_tokens.inc(tokens)

    def event(self, event) -> None:
        """A Generate or Compare event on its way to the client."""
        n = len(event.token_ids)
        if n:
            now = perf_counter()
            if self.first_token_at is None:
                self.first_token_at = now
            last = self._last_at.get(event.index)
            if last is not None:
                self.m.inter_token.observe((now - last) / n)
            self._last_at[event.index] = now
            self.generated_tokens += n
            self.m.generated_tokens.inc(n)
        if self.completions is not None:
            self.completions[event.index] = self.completions.get(event.index, "") + event.text
        if event.finish_reason:
            self.finished += 1
            self.m.finished(event.finish_reason)

    def sweep_record(self, record) -> None:
        """A finished Sweep sample on its way to the client."""
        self.finished += 1
        n = len(record.token_ids)
        self.generated_tokens += n
        self.m.generated_tokens.inc(n)
        self.m.finished(record.finish_reason)
        hits = len(record.detectors)
        self.detector_hits += hits
        self.m.sweep_sample(hits)

    def failed(self, exc: BaseException) -> None:
        self.error = exc

    def note_prompt(self, prompt) -> None:
        """The request's Prompt message, kept only with --log-prompts."""
        if self.log_prompts:
            self.prompt = prompt

    # -- when it ends ----------------------------------------------------------------------------------
    def begin(self) -> contextvars.Token:
        """Make this the running RPC's call (each RPC runs in its own task, so the value stays with it, and tasks
        it starts see it too). The token undoes it, for a caller that shares its task."""
        return _CURRENT.set(self)

    def finish(self, code: str) -> dict:
        """Count the RPC and write its log line; `code` is the final status code's name."""
        end = perf_counter()
        total = end - self.started
        first_token = None if self.first_token_at is None else self.first_token_at - self.started
        queue = None
        if self.submitted_at is not None:
            admitted = getattr(self.first_state, "admitted_at", None)
            queue = (admitted if admitted is not None else end) - self.submitted_at
        self.m.finished_request(code, total, first_token, queue)
        fields = {"event": "request_finished", "request_id": self.id, "peer": self.peer, "rpc": self.rpc,
                  "code": code, "samples": self.samples, "samples_finished": self.finished,
                  "prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens,
                  "queue_s": _round(queue), "first_token_s": _round(first_token), "total_s": _round(total)}
        if self.rpc == "Sweep":
            fields["detector_hits"] = self.detector_hits
        if self.error is not None:
            fields["error_reason"] = getattr(self.error, "reason", type(self.error).__name__)
            if getattr(self.error, "field", None):
                fields["error_field"] = self.error.field
            if self.log_prompts:
                fields["error"] = str(self.error)
        if self.log_prompts and self.prompt is not None:
            fields["prompt"] = _prompt_text(self.prompt)
        if self.completions:
            fields["completions"] = [self.completions[i] for i in sorted(self.completions)]
        log.log(_LEVELS.get(code, logging.INFO), "%s %s in %.3f s", self.rpc, code, total,
                extra={"fields": fields, "request_id": self.id})
        return fields


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)


def _prompt_text(prompt) -> dict:
    """A Prompt message (gRPC) or a request.PromptInput (the HTTP API) as plain data for the log."""
    if not hasattr(prompt, "WhichOneof"):
        return _prompt_input_text(prompt)
    source = prompt.WhichOneof("source")
    out: dict = {}
    if source == "text":
        out["text"] = prompt.text
    elif source == "conversation":
        out["messages"] = [{"role": m.role, "content": m.content} for m in prompt.conversation.messages]
    elif source == "token_ids":
        out["token_ids"] = list(prompt.token_ids.ids)
    if prompt.system_prompt:
        out["system_prompt"] = prompt.system_prompt
    return out


def _prompt_input_text(prompt) -> dict:
    out: dict = {}
    if prompt.messages:
        out["messages"] = [{"role": role, "content": content} for role, content in prompt.messages]
    elif prompt.token_ids:
        out["token_ids"] = list(prompt.token_ids)
    else:
        out["text"] = prompt.text
    if prompt.system_prompt:
        out["system_prompt"] = prompt.system_prompt
    return out
