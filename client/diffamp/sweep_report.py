"""A sweep's results for people: the progress line, the summary table, and the summary as JSON and CSV."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from diffamp.common.sweep import SummaryRow


class Progress:
    """One updating line from the server's progress messages: done/total, samples/s, tokens/s, ETA."""

    def __init__(self, resumed: int, out=sys.stderr):
        self.resumed, self.out = resumed, out

    def show(self, p) -> None:
        eta = "0s" if p.done >= p.total else f"{p.eta_s:,.0f}s" if p.samples_per_s > 0 else "?"
        self.out.write(f"\rsweep {p.done:,}/{p.total:,} samples · {p.samples_per_s:,.1f} samples/s · "
                       f"{p.tokens / max(p.elapsed_s, 1e-9):,.0f} tokens/s · ETA {eta}"
                       + (f" · {self.resumed:,} resumed" if self.resumed else "") + "   ")
        if p.done >= p.total:
            self.out.write("\n")
        self.out.flush()


def format_table(rows: list[SummaryRow]) -> str:
    modes = len({r.mode for r in rows}) > 1
    lines = [(f"{'mode':<8} " if modes else "") + f"{'alpha':>7}  {'detector':<16} {'hits/n':>12} {'rate':>8}  "
             f"{'95% Wilson':<20}  {'IS est. of alpha-0 rate':<32} {'ESS':>7}"]
    for r in rows:
        est, ess = "", ""
        if r.estimate:
            e = r.estimate
            est = f"{e.rate:.4%} [{e.low:.4%}, {e.high:.4%}]" + (" !" if e.warning else "")
            ess = f"{e.ess:.0f}"
        wilson = f"[{r.low:.3%}, {r.high:.3%}]"
        lines.append((f"{r.mode:<8} " if modes else "")
                     + f"{r.alpha:>7g}  {r.detector:<16} {f'{r.hits}/{r.n}':>12} {r.rate:>8.3%}  {wilson:<20}  "
                     f"{est:<32} {ess:>7}")
    warnings = {r.estimate.warning for r in rows if r.estimate and r.estimate.warning}
    lines += [f"! {w}" for w in sorted(warnings)]
    return "\n".join(lines)


CSV_COLUMNS = ("mode", "alpha", "detector", "hits", "n", "rate", "wilson_low", "wilson_high", "is_after_rate", "is_low",
               "is_high", "is_ess", "is_exact")


def write_summary(rows: list[SummaryRow], output: str) -> tuple[str, str]:
    """`<output>.summary.json` and `.summary.csv` beside the sweep file; returns their paths."""
    base = output[:-6] if output.endswith(".jsonl") else output
    json_path, csv_path = base + ".summary.json", base + ".summary.csv"
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump([asdict(r) for r in rows], f, indent=2)
    with open(csv_path, "w", encoding="utf-8") as f:
        f.write(",".join(CSV_COLUMNS) + "\n")
        for r in rows:
            e = r.estimate
            est = (e.rate, e.low, e.high, e.ess, e.exact) if e else ("",) * 5
            f.write(",".join(str(x) for x in (r.mode, r.alpha, r.detector, r.hits, r.n, r.rate, r.low, r.high, *est))
                    + "\n")
    return json_path, csv_path
