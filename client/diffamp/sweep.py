"""Sweeps: many samples per prompt and alpha, detectors counted, with honest error bars.

A sweep writes one JSON line per sample as it finishes, so an interrupted sweep resumes where it stopped:
rerunning with the same output file skips every (prompt id, alpha, index, seed) already there. Seeds are
derived from (base seed, prompt id, alpha), so a rerun asks for exactly the samples that are missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import sys
import time
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
    chunk: int = 512
    max_in_flight: int = 4096

    @property
    def covers_target(self) -> bool:
        """Importance weights are exact only when the sampled distribution is the amplified one, unfiltered."""
        return self.temperature == 1.0 and self.top_p == 1.0 and self.top_k == 0 and not self.stop


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


def _ranges(indices: list[int], chunk: int) -> list[tuple[int, int]]:
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
    """One updating stderr line: done/total, samples/s, ETA."""

    def __init__(self, total: int, skipped: int, out=sys.stderr):
        self.total, self.done, self.out = total, 0, out
        self.skipped = skipped
        self.start = self.last = time.monotonic()

    def update(self, k: int = 1, force: bool = False) -> None:
        self.done += k
        now = time.monotonic()
        if not force and now - self.last < 0.5 and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        eta_text = f"{eta:,.0f}s" if math.isfinite(eta) else "?"
        self.out.write(f"\rsweep {self.done:,}/{self.total:,} samples · {rate:,.1f} samples/s · ETA {eta_text}"
                       + (f" · {self.skipped:,} resumed" if self.skipped else "") + "   ")
        if self.done >= self.total:
            self.out.write("\n")
        self.out.flush()


RETRYABLE = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)


async def _run_chunk(stub, prompt: SweepPrompt, alpha: float, seed: int, first: int, count: int,
                     settings: SweepSettings, detectors: list[Detector], sink, timeout: float | None,
                     attempts: int = 8) -> None:
    """Generate samples first..first+count-1; on RESOURCE_EXHAUSTED or UNAVAILABLE, back off and ask again
    for the samples that did not finish."""
    finished: set[int] = set()
    delay = 0.5
    for attempt in range(attempts):
        missing = [i for i in range(first, first + count) if i not in finished]
        try:
            for start, n in _ranges(missing, count):
                await _stream_samples(stub, prompt, alpha, seed, start, n, settings, detectors, sink, finished,
                                      timeout)
            return
        except grpc.aio.AioRpcError as err:
            if err.code() not in RETRYABLE or attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _stream_samples(stub, prompt, alpha, seed, first, count, settings, detectors, sink, finished, timeout):
    request = pb.GenerateRequest(
        prompt=prompt.prompt, messages=[pb.ChatMessage(role=r, content=c) for r, c in prompt.messages],
        system_prompt=settings.system_prompt, raw_prompt=settings.raw_prompt, alpha=alpha, n=count,
        first_sample_index=first, max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
        top_p=settings.top_p, top_k=settings.top_k, seed=seed, stop=list(settings.stop), logprobs=0,
    )
    partial: dict[int, dict] = {}
    async for chunk in stub.Generate(request, timeout=timeout):
        s = partial.setdefault(chunk.index, {"text": "", "token_ids": [], "after": 0.0, "before": 0.0, "sampled": 0.0})
        s["text"] += chunk.text
        s["token_ids"].extend(chunk.token_ids)
        for lp in chunk.logprobs:
            s["after"] += lp.after
            s["before"] += lp.before
            s["sampled"] += lp.sampled
        if chunk.finish_reason:
            done = partial.pop(chunk.index)
            finished.add(chunk.index)
            sink({
                "prompt_id": prompt.id, "alpha": alpha, "index": chunk.index, "seed": seed,
                "text": done["text"], "token_ids": done["token_ids"], "finish_reason": finish_name(chunk.finish_reason),
                "detectors": [d.name for d in detectors if d(done["text"])],
                "logprob_after": done["after"], "logprob_before": done["before"], "logprob_sampled": done["sampled"],
                "temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k,
            })


async def run_sweep(channel: grpc.aio.Channel, prompts: list[SweepPrompt], settings: SweepSettings,
                    detectors: list[Detector], output: str, progress: bool = True,
                    timeout: float | None = None) -> list[dict]:
    """Run the missing samples of the sweep, appending to `output`; returns the sweep's records."""
    existing = read_records(output)
    done = {(r["prompt_id"], r["alpha"], r["index"], r["seed"]) for r in existing}
    jobs = []
    for prompt in prompts:
        for alpha in settings.alphas:
            seed = derive_seed(settings.seed, prompt.id, alpha)
            missing = [i for i in range(settings.n) if (prompt.id, alpha, i, seed) not in done]
            jobs += [(prompt, alpha, seed, first, count) for first, count in _ranges(missing, settings.chunk)]
    total = sum(j[4] for j in jobs)
    bar = Progress(total, len(prompts) * len(settings.alphas) * settings.n - total) if progress and total else None
    stub = diffamp_pb2_grpc.AmplificationServiceStub(channel)
    budget = asyncio.Semaphore(max(1, settings.max_in_flight // max(1, settings.chunk)))
    _end_with_newline(output)
    with open(output, "a", encoding="utf-8") as out:
        def sink(record: dict) -> None:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            if bar:
                bar.update()

        async def one(job):
            async with budget:
                await _run_chunk(stub, *job, settings, detectors, sink, timeout)

        await asyncio.gather(*(one(j) for j in jobs))
    keys = {(p.id, a, i, derive_seed(settings.seed, p.id, a)) for p in prompts for a in settings.alphas
            for i in range(settings.n)}
    latest = {}
    for r in read_records(output):
        key = (r["prompt_id"], r["alpha"], r["index"], r["seed"])
        if key in keys:
            latest[key] = r
    return [latest[k] for k in sorted(latest, key=lambda k: (k[1], k[0], k[2]))]


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
        notes.append("sampling filters (temperature != 1, top_p < 1, top_k or stop strings) cut tokens the after "
                     "model allows: the weights are not exact and this estimate is biased")
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
