"""Output processing: a sample's tokens become text, stop rules are applied, and each worker call's gain
becomes one SampleEvent. Kept out of the scheduler, which only allocates rows.

Text is emitted only once it is stable (detokenizer.py), and text that could still be the start of a stop
string is held back, so a client never sees part of a stop string.
"""

from __future__ import annotations

from .detokenizer import IncrementalDetokenizer, byte_fallback_ids
from .events import FINISH_LENGTH, FINISH_STOP, FINISH_STOP_STRING, SampleEvent
from .plan import TokenLogprobs


class SampleOutput:
    """The text side of one sample: its tokens, the text decoded so far, and how much was sent."""

    def __init__(self, detokenizer: IncrementalDetokenizer, prompt_tokens: int, max_new_tokens: int,
                 stop: tuple[str, ...], index: int, seed: int):
        self.detokenizer = detokenizer
        self.token_ids: list[int] = []
        self.text = ""
        self.emitted = 0
        self.finish_reason: str | None = None
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.stop = stop
        self.index = index
        self.seed = seed
        self.hold = max((len(s) for s in stop), default=1) - 1


class OutputProcessor:
    def __init__(self, tokenizer, eos_ids: set[int]):
        self.tokenizer = tokenizer
        self.eos_ids = frozenset(eos_ids)
        self.byte_ids = byte_fallback_ids(tokenizer)

    def new_sample(self, *, prompt_tokens: int, max_new_tokens: int, stop: tuple[str, ...], index: int,
                   seed: int) -> SampleOutput:
        return SampleOutput(IncrementalDetokenizer(self.tokenizer, self.byte_ids), prompt_tokens, max_new_tokens,
                            stop, index, seed)

    def advance(self, out: SampleOutput, tokens: list[int], logprobs: list[TokenLogprobs]) -> SampleEvent:
        """Take a worker call's tokens for one sample; returns what the client gets. Tokens past a finish
        (the worker ran past a stop string) are dropped."""
        start = len(out.token_ids)
        for token in tokens:
            if out.finish_reason:
                break
            out.token_ids.append(token)
            if token in self.eos_ids:
                out.finish_reason = FINISH_STOP
            else:
                out.text += out.detokenizer.add(token)
                self._check_stop_strings(out)
            if out.finish_reason is None and len(out.token_ids) >= out.max_new_tokens:
                out.finish_reason = FINISH_LENGTH
        if out.finish_reason in (FINISH_STOP, FINISH_LENGTH):
            out.text += out.detokenizer.flush()
            self._check_stop_strings(out)
        new_ids = out.token_ids[start:]
        hold = 0 if out.finish_reason else out.hold
        end = max(out.emitted, len(out.text) - hold)
        event = SampleEvent(out.index, out.text[out.emitted:end], new_ids, logprobs[:len(new_ids)])
        out.emitted = end
        if out.finish_reason:
            event.finish_reason = out.finish_reason
            event.prompt_tokens = out.prompt_tokens
            event.completion_tokens = len(out.token_ids)
            event.seed = out.seed
        return event

    def _check_stop_strings(self, out: SampleOutput) -> None:
        if not out.stop or out.finish_reason == FINISH_STOP_STRING:
            return
        hits = [(i, len(s)) for s in out.stop if (i := out.text.find(s, out.emitted)) >= 0]
        if not hits:
            return
        cut, length = min(hits)
        out.text = out.text[:cut]
        out.finish_reason = FINISH_STOP_STRING
        self._trim_tokens(out, cut + length)

    @staticmethod
    def _trim_tokens(out: SampleOutput, stop_end: int) -> None:
        """Keep the fewest tokens whose text reaches the end of the stop string. The text of byte-fallback
        tokens appears only when their run closes, one token late, so the last token may not belong."""
        keep = len(out.token_ids)
        while keep > 1 and len(out.detokenizer.decode(out.token_ids[: keep - 1])) >= stop_end:
            keep -= 1
        del out.token_ids[keep:]
