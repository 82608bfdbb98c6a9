"""Sweeps: many samples per prompt and alpha, detectors counted, with honest error bars.

The server runs the sweep (the Sweep RPC) and streams each sample back; the client writes one JSON line
per sample as it arrives, so an interrupted sweep resumes where it stopped: rerunning with the same
output file sends the samples already there as `completed`, and the server skips them. Seeds are derived
from (base seed, prompt id, alpha) on both sides, so a resumed sweep gives the same samples and table.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field

import grpc

from diffamp.detectors import Detector
from diffamp.render import finish_name
from diffamp.stats import importance_estimate, wilson_interval
from diffamp.v1 import diffamp_pb2 as pb
from diffamp.v1 import diffamp_pb2_grpc


@dataclass(frozen=True)
class SweepPrompt:
    id: str
    prompt: str = ""
    messages: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SweepSettings:
    alphas: tuple[float, ...]
    n: int
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    system_prompt: str = ""
    raw_prompt: bool = False
    stop: tuple[str, ...] = ()
    min_new_tokens: int = 0

    @property
    def covers_target(self) -> bool:
        return covers_target(self.temperature, self.top_p, self.top_k, self.stop, self.min_new_tokens)


def covers_target(temperature: float, top_p: float, top_k: int, stop, min_new_tokens: int) -> bool:
    """Importance weights are exact only when the sampled distribution is the amplified one, unfiltered."""
    return temperature == 1.0 and top_p == 1.0 and top_k == 0 and not stop and min_new_tokens == 0


def load_prompts(path: str) -> list[SweepPrompt]:
    """Text lines (one prompt each) or JSONL objects with "prompt" or "messages" and an optional "id"."""
    prompts = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.lstrip().startswith("{"):
                obj = json.loads(line)
                messages = tuple((m["role"], m["content"]) for m in obj.get("messages", ()))
                prompts.append(SweepPrompt(str(obj.get("id", f"p{number}")), obj.get("prompt", ""), messages))
            else:
                prompts.append(SweepPrompt(f"p{number}", line))
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    if len({p.id for p in prompts}) != len(prompts):
        raise ValueError(f"{path}: prompt ids must be unique")
    return prompts


def derive_seed(base: int, prompt_id: str, alpha: float) -> int:
    digest = hashlib.blake2b(f"{base}|{prompt_id}|{alpha!r}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def sample_ranges(indices: list[int], chunk: int) -> list[tuple[int, int]]:
    """Sorted indices -> (first, count) runs of consecutive indices, each at most `chunk` long."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][0] + runs[-1][1] == i and runs[-1][1] < chunk:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def read_records(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by an interrupted run; its sample is simply redone
    return records


def _end_with_newline(path: str) -> None:
    """An interrupted run can leave half a line; new records must start on a line of their own."""
    if os.path.exists(path) and os.path.getsize(path):
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


class Progress:
    """One updating stderr line from the server's progress messages: done/total, samples/s, ETA."""

    def __init__(self, resumed: int, out=sys.stderr):
        self.resumed, self.out = resumed, out

    def show(self, p: pb.SweepProgress) -> None:
        eta = "0s" if p.done >= p.total else f"{p.eta_s:,.0f}s" if p.samples_per_s > 0 else "?"
        self.out.write(f"\rsweep {p.done:,}/{p.total:,} samples · {p.samples_per_s:,.1f} samples/s · "
                       f"{p.tokens / max(p.elapsed_s, 1e-9):,.0f} tokens/s · ETA {eta}"
                       + (f" · {self.resumed:,} resumed" if self.resumed else "") + "   ")
        if p.done >= p.total:
            self.out.write("\n")
        self.out.flush()


RETRYABLE = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)


def sweep_request(prompts: list[SweepPrompt], settings: SweepSettings, detectors: list[Detector],
                  completed: set[tuple[str, float, int]]) -> pb.SweepRequest:
    return pb.SweepRequest(
        prompts=[pb.SweepPrompt(id=p.id, prompt=p.prompt, messages=[pb.ChatMessage(role=r, content=c)
                                                                     for r, c in p.messages]) for p in prompts],
        system_prompt=settings.system_prompt, raw_prompt=settings.raw_prompt, alphas=list(settings.alphas),
        n=settings.n, max_new_tokens=settings.max_new_tokens, min_new_tokens=settings.min_new_tokens,
        temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k, seed=settings.seed,
        stop=list(settings.stop),
        detectors=[pb.Detector(name=d.name, substring=d.substring, ignore_case=d.ignore_case) if d.substring is not None
                   else pb.Detector(name=d.name, regex=d.regex) for d in detectors if d.portable],
        completed=[pb.SampleKey(prompt_id=p, alpha=a, index=i) for p, a, i in sorted(completed)],
    )


def sample_record(s: pb.SweepSample, local_detectors: list[Detector], settings: SweepSettings) -> dict:
    """A SweepSample as a JSONL record; detectors that only run here (Python callables) are added."""
    return {
        "prompt_id": s.prompt_id, "alpha": s.alpha, "index": s.index, "seed": s.seed, "text": s.text,
        "token_ids": list(s.token_ids), "finish_reason": finish_name(s.finish_reason),
        "detectors": list(s.detectors) + [d.name for d in local_detectors if d(s.text)],
        "logprob_after": s.logprob_after, "logprob_before": s.logprob_before, "logprob_sampled": s.logprob_sampled,
        "temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k,
        "min_new_tokens": settings.min_new_tokens,
    }


async def run_sweep(channel: grpc.aio.Channel, prompts: list[SweepPrompt], settings: SweepSettings,
                    detectors: list[Detector], output: str, progress: bool = True,
                    timeout: float | None = None, attempts: int = 8) -> list[dict]:
    """Run the samples of the sweep that `output` lacks, appending them to it; returns the sweep's records.
    On RESOURCE_EXHAUSTED or UNAVAILABLE it backs off and resumes from the file."""
    keys = {(p.id, a, i): derive_seed(settings.seed, p.id, a) for p in prompts for a in settings.alphas
            for i in range(settings.n)}
    local = [d for d in detectors if not d.portable]
    stub = diffamp_pb2_grpc.AmplificationServiceStub(channel)
    delay = 0.5
    for attempt in range(attempts):
        completed = _completed(output, keys)
        if len(completed) == len(keys):
            break
        bar = Progress(len(completed)) if progress else None
        _end_with_newline(output)
        try:
            with open(output, "a", encoding="utf-8") as out:
                async for item in stub.Sweep(sweep_request(prompts, settings, detectors, set(completed)),
                                             timeout=timeout):
                    if item.HasField("sample"):
                        record = sample_record(item.sample, local, settings)
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")
                        out.flush()
                    elif item.HasField("progress") and bar:
                        bar.show(item.progress)
            break
        except grpc.aio.AioRpcError as err:
            if err.code() not in RETRYABLE or attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    latest = _completed(output, keys)
    return [latest[k] for k in sorted(latest, key=lambda k: (k[1], k[0], k[2]))]


def _completed(output: str, keys: dict) -> dict[tuple[str, float, int], dict]:
    """The records in `output` that belong to this sweep (same prompt, alpha, index and derived seed)."""
    latest = {}
    for r in read_records(output):
        key = (r["prompt_id"], r["alpha"], r["index"])
        if keys.get(key) == r["seed"]:
            latest[key] = r
    return latest


@dataclass
class SummaryRow:
    alpha: float
    detector: str
    hits: int
    n: int
    rate: float
    low: float
    high: float
    estimate: dict | None = field(default=None)


def summarize(records: list[dict], detectors: list[str], covers_target: bool, min_ess: float = 100.0) -> list[SummaryRow]:
    """Per alpha and detector: hits/n, rate and a 95% Wilson interval; for alpha != 0 also the
    importance-weighted estimate of the after model's own (alpha = 0) rate."""
    rows = []
    for alpha in sorted({r["alpha"] for r in records}):
        group = [r for r in records if r["alpha"] == alpha]
        for name in detectors:
            hits = [name in r["detectors"] for r in group]
            low, high = wilson_interval(sum(hits), len(hits))
            row = SummaryRow(alpha, name, sum(hits), len(hits), sum(hits) / len(hits), low, high)
            if alpha != 0:
                est = importance_estimate([r["logprob_after"] for r in group], [r["logprob_sampled"] for r in group], hits)
                row.estimate = {
                    "after_rate": est.rate, "low": est.low, "high": est.high, "ess": est.ess,
                    "method": "self-normalised importance sampling, delta-method 95% interval",
                    "exact": covers_target,
                    "warning": _estimate_warning(est.ess, len(hits), covers_target, min_ess),
                }
            rows.append(row)
    return rows


def _estimate_warning(ess: float, n: int, covers_target: bool, min_ess: float) -> str:
    notes = []
    if not covers_target:
        notes.append("sampling filters (temperature != 1, top_p < 1, top_k, stop strings or min_new_tokens) cut "
                     "tokens the after model allows: the weights are not exact and this estimate is biased")
    if ess < min_ess:
        notes.append(f"effective sample size {ess:.0f} of {n} is small: the estimate is unreliable; "
                     "lower alpha or sample more")
    return "; ".join(notes)


def format_table(rows: list[SummaryRow]) -> str:
    lines = [f"{'alpha':>7}  {'detector':<16} {'hits/n':>12} {'rate':>8}  {'95% Wilson':<20}  "
             f"{'IS est. of alpha-0 rate':<32} {'ESS':>7}"]
    for r in rows:
        est, ess = "", ""
        if r.estimate:
            e = r.estimate
            est = f"{e['after_rate']:.4%} [{e['low']:.4%}, {e['high']:.4%}]" + (" !" if e["warning"] else "")
            ess = f"{e['ess']:.0f}"
        wilson = f"[{r.low:.3%}, {r.high:.3%}]"
        lines.append(f"{r.alpha:>7g}  {r.detector:<16} {f'{r.hits}/{r.n}':>12} {r.rate:>8.3%}  {wilson:<20}  "
                     f"{est:<32} {ess:>7}")
    warnings = {r.estimate["warning"] for r in rows if r.estimate and r.estimate["warning"]}
    lines += [f"! {w}" for w in sorted(warnings)]
    return "\n".join(lines)


def write_summary(rows: list[SummaryRow], output: str) -> tuple[str, str]:
    base = output[:-6] if output.endswith(".jsonl") else output
    json_path, csv_path = base + ".summary.json", base + ".summary.csv"
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump([r.__dict__ for r in rows], f, indent=2)
    with open(csv_path, "w", encoding="utf-8") as f:
        f.write("alpha,detector,hits,n,rate,wilson_low,wilson_high,is_after_rate,is_low,is_high,is_ess,is_exact\n")
        for r in rows:
            e = r.estimate or {}
            f.write(",".join(str(x) for x in (
                r.alpha, r.detector, r.hits, r.n, r.rate, r.low, r.high, e.get("after_rate", ""), e.get("low", ""),
                e.get("high", ""), e.get("ess", ""), e.get("exact", ""))) + "\n")
    return json_path, csv_path
