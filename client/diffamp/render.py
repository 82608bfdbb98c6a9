"""Turning streamed responses into terminal output or JSON lines."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from diffamp.messages import finish_name


@dataclass
class SampleText:
    """One sample put back together from its chunks."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list = field(default_factory=list)
    finish_reason: str = ""
    completion_tokens: int = 0
    seed: int = 0

    def add(self, chunk) -> None:
        self.text += chunk.text
        self.token_ids.extend(chunk.token_ids)
        self.logprobs.extend(getattr(chunk, "logprobs", ()))
        if chunk.finish_reason:
            self.finish_reason = finish_name(chunk.finish_reason)
            self.completion_tokens = chunk.completion_tokens
            self.seed = chunk.seed

    def as_json(self, with_logprobs: bool) -> dict:
        out = {"index": self.index, "text": self.text, "token_ids": self.token_ids,
               "finish_reason": self.finish_reason, "seed": self.seed}
        if with_logprobs:
            out["logprobs"] = [
                {"token_id": lp.token_id, "token": lp.token, "amplified": lp.amplified, "after": lp.after,
                 "before": lp.before, "sampled": lp.sampled, "kl_after_before": lp.kl_after_before,
                 "top": [{"token_id": t.token_id, "token": t.token, "logprob": t.logprob} for t in lp.top]}
                for lp in self.logprobs
            ]
        return out


def logprob_table(sample: SampleText, token_text) -> str:
    rows = [f"  {'token':<18} {'amplified':>9} {'after':>8} {'before':>8}  top"]
    for lp in sample.logprobs:
        top = "  ".join(f"{t.token!r}:{t.logprob:.2f}" for t in lp.top)
        rows.append(f"  {token_text(lp):<18} {lp.amplified:>9.3f} {lp.after:>8.3f} {lp.before:>8.3f}  {top}")
    return "\n".join(rows)


class Printer:
    """Streams one sample's text as it arrives; with n > 1, prints each sample whole when it finishes."""

    def __init__(self, n: int, as_json: bool, with_logprobs: bool, out=sys.stdout):
        self.n = n
        self.as_json = as_json
        self.with_logprobs = with_logprobs
        self.out = out
        self.samples: dict[int, SampleText] = {}

    def feed(self, chunk) -> None:
        sample = self.samples.setdefault(chunk.index, SampleText(chunk.index))
        sample.add(chunk)
        if self.as_json:
            if chunk.finish_reason:
                self.out.write(json.dumps(sample.as_json(self.with_logprobs), ensure_ascii=False) + "\n")
        elif self.n == 1:
            self.out.write(chunk.text)
            if chunk.finish_reason:
                self.out.write(f"\n[{sample.finish_reason} · {sample.completion_tokens} tokens · seed {sample.seed}]\n")
                self._logprobs(sample)
        elif chunk.finish_reason:
            self.out.write(f"── sample {sample.index} · {sample.finish_reason} · "
                           f"{sample.completion_tokens} tokens ──\n")
            self.out.write(sample.text + "\n")
            self._logprobs(sample)
        self.out.flush()

    def _logprobs(self, sample: SampleText) -> None:
        if self.with_logprobs and sample.logprobs:
            self.out.write(logprob_table(sample, lambda lp: repr(lp.token)) + "\n")


# log p_after - log p_before bins, strongest first: (lower bound, ANSI colour, plain-text wrapper)
EXPLAIN_BINS = [
    (2.0, "\x1b[1;97;41m", "[[{}]]"),
    (1.0, "\x1b[31m", "[{}]"),
    (0.5, "\x1b[33m", "{}"),
    (-0.5, "", "{}"),
    (float("-inf"), "\x1b[34m", "{{{}}}"),
]
RESET = "\x1b[0m"


def explain_token(token: str, push: float, colour: bool) -> str:
    for lower, ansi, plain in EXPLAIN_BINS:
        if push >= lower:
            if colour:
                return f"{ansi}{token}{RESET}" if ansi else token
            return plain.format(token) if token.strip() else token
    return token


def explain_legend(colour: bool) -> str:
    if colour:
        return ("post-training push, log p_after - log p_before: "
                f"{EXPLAIN_BINS[0][1]} >= 2 {RESET} {EXPLAIN_BINS[1][1]}1..2{RESET} {EXPLAIN_BINS[2][1]}0.5..1{RESET} "
                f"plain -0.5..0.5 {EXPLAIN_BINS[4][1]}<= -0.5{RESET}")
    return ("post-training push, log p_after - log p_before: [[token]] >= 2, [token] 1..2, "
            "{token} <= -0.5, unmarked otherwise")


class ExplainPrinter:
    """Prints each token marked by how strongly post-training pushed it; colour only on a colour terminal."""

    def __init__(self, n: int, colour: bool, out=sys.stdout):
        self.n, self.colour, self.out = n, colour, out
        self.samples: dict[int, SampleText] = {}
        self.out.write(explain_legend(colour) + "\n")

    def _marked(self, logprobs) -> str:
        return "".join(explain_token(lp.token, lp.after - lp.before, self.colour) for lp in logprobs)

    def feed(self, chunk) -> None:
        sample = self.samples.setdefault(chunk.index, SampleText(chunk.index))
        sample.add(chunk)
        if self.n == 1:
            self.out.write(self._marked(chunk.logprobs))
        if chunk.finish_reason:
            kl = [lp.kl_after_before for lp in sample.logprobs]
            summary = f"[{sample.finish_reason} · {sample.completion_tokens} tokens · mean KL(after‖before) " \
                      f"{sum(kl) / max(len(kl), 1):.3f} nats · max {max(kl, default=0):.3f}]"
            if self.n == 1:
                self.out.write("\n" + summary + "\n")
            else:
                self.out.write(f"── sample {sample.index} ──\n{self._marked(sample.logprobs)}\n{summary}\n")
        self.out.flush()
